//! Tenant images on disk: one file per tenant in a server's data folder, written at shutdown
//! and now and then, read at start so that a restart neither reads every row from storage nor
//! builds a graph again (see the engine's `TenantImage`).
//!
//! # Format
//!
//! `RECOIMG\0`, the format's version (u32), the payload's length (u64) and its CRC-32 (u32),
//! all little-endian, then the payload: postcard (a compact, documented, stable serde format)
//! of the image's small fields and of its large arrays as raw little-endian bytes (vectors as
//! f32, the graph's links as u32, cast with bytemuck rather than encoded number by number). A
//! file is written beside its place and renamed over it after an fsync, so a reader finds the
//! old file or the new one, whole. A file of another version, a wrong checksum, or a payload
//! that does not decode is refused with a reason; the caller then loads from storage.
//!
//! Why not memory-mapped and zero-copy (rkyv with memmap2): the engine owns its rows in
//! copy-on-write chunks, so every row is copied into them once either way; what a restart
//! saves is the graph's build and storage's row reads, and a plain read of the file keeps the
//! format a few lines of serde.

use std::io::Write;
use std::path::{Path, PathBuf};

use reco_engine::{
    EntityId, GraphParts, Lineage, Metric, NewEntity, SegmentParts, Stamp, TenantImage, TenantName,
    TenantSpec,
};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StorageError};

const MAGIC: &[u8; 8] = b"RECOIMG\0";
/// The format's version: a file of another is ignored (and the tenant loaded from storage).
pub const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8 + 4;

#[derive(Serialize, Deserialize)]
struct Payload {
    name: String,
    dimension: usize,
    metric: Option<String>,
    lineage: u64,
    stamp: u64,
    slot_count: usize,
    entities: Vec<Entity>,
    /// Every entity's vector, then every free slot's, as f32 bytes.
    #[serde(with = "serde_bytes")]
    vectors: Vec<u8>,
    free_slots: Vec<u32>,
    graph: Option<Graph>,
}

#[derive(Serialize, Deserialize)]
struct Entity {
    id: String,
    slot: u32,
    category: Option<String>,
    tags: Vec<String>,
    attributes: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Graph {
    connectivity: usize,
    expansion_add: usize,
    expansion_search: usize,
    entry: u64,
    draws: u64,
    deleted: usize,
    segments: Vec<Segment>,
}

#[derive(Serialize, Deserialize)]
struct Segment {
    #[serde(with = "serde_bytes")]
    bottom: Vec<u8>,
    #[serde(with = "serde_bytes")]
    state: Vec<u8>,
    #[serde(with = "serde_bytes")]
    upper_at: Vec<u8>,
    #[serde(with = "serde_bytes")]
    upper: Vec<u8>,
    upper_used: usize,
}

fn bad(reason: impl std::fmt::Display) -> StorageError {
    StorageError::Image(reason.to_string())
}

/// Little-endian bytes of u32s or f32s (this format is little-endian, as are the hosts it
/// runs on; `check_host` refuses others).
fn bytes_of<T: bytemuck::Pod>(values: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(values).to_vec()
}

fn values_of<T: bytemuck::Pod>(bytes: &[u8]) -> Result<Vec<T>> {
    if !bytes.len().is_multiple_of(size_of::<T>()) {
        return Err(bad("an array's length is not a whole number of values"));
    }
    Ok(bytemuck::pod_collect_to_vec(bytes))
}

fn check_host() -> Result<()> {
    if cfg!(target_endian = "little") {
        Ok(())
    } else {
        Err(bad(
            "tenant images are written and read on little-endian hosts only",
        ))
    }
}

/// The files of one server's tenant images.
#[derive(Debug, Clone)]
pub struct ImageFiles {
    dir: PathBuf,
}

impl ImageFiles {
    /// Images kept in `dir` (made when the first is written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, tenant: &TenantName) -> PathBuf {
        self.dir.join(format!("{tenant}.img"))
    }

    /// Writes a tenant's image in place of the one before, whole or not at all, and returns
    /// its size in bytes. Blocking: hosts run it off their async workers.
    pub fn write(&self, image: &TenantImage) -> Result<u64> {
        check_host()?;
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| bad(format!("{}: {e}", self.dir.display())))?;
        let payload = postcard::to_allocvec(&encode(image)).map_err(bad)?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&VERSION.to_le_bytes());
        header.extend_from_slice(&(payload.len() as u64).to_le_bytes());
        header.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let path = self.path(&image.name);
        let partial = path.with_extension("img.partial");
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&partial)?;
            file.write_all(&header)?;
            file.write_all(&payload)?;
            file.sync_all()?;
            std::fs::rename(&partial, &path)?;
            // The rename is durable once the folder is.
            std::fs::File::open(&self.dir)?.sync_all()
        })();
        written.map_err(|e| bad(format!("{}: {e}", path.display())))?;
        Ok((HEADER + payload.len()) as u64)
    }

    /// A tenant's image, `None` when there is no file. A file that is not a whole image of
    /// this version is an error that says why.
    pub fn read(&self, tenant: &TenantName) -> Result<Option<TenantImage>> {
        check_host()?;
        let path = self.path(tenant);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(bad(format!("{}: {e}", path.display()))),
        };
        let image = decode_file(&bytes)?;
        if &image.name != tenant {
            return Err(bad(format!("the file holds tenant `{}`", image.name)));
        }
        Ok(Some(image))
    }

    /// Removes a tenant's image, if any (a deleted tenant leaves none behind).
    pub fn remove(&self, tenant: &TenantName) -> Result<()> {
        match std::fs::remove_file(self.path(tenant)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(bad(e)),
        }
    }
}

fn decode_file(bytes: &[u8]) -> Result<TenantImage> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(bad("not a tenant image"));
    }
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let version = word(8);
    if version != VERSION {
        return Err(bad(format!("format version {version}, not {VERSION}")));
    }
    let length = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != length {
        return Err(bad(format!(
            "{} payload bytes where the header says {length} (cut short?)",
            payload.len()
        )));
    }
    if crc32fast::hash(payload) != word(20) {
        return Err(bad("the checksum does not match"));
    }
    let payload: Payload = postcard::from_bytes(payload).map_err(bad)?;
    decode(payload)
}

fn encode(image: &TenantImage) -> Payload {
    let spec = image.spec;
    let mut vectors = Vec::with_capacity(
        (image.entities.len() + image.free.len()) * spec.dimension * size_of::<f32>(),
    );
    for entity in &image.entities {
        vectors.extend_from_slice(bytemuck::cast_slice(&entity.vector));
    }
    for (_, vector) in &image.free {
        vectors.extend_from_slice(bytemuck::cast_slice(vector));
    }
    Payload {
        name: image.name.to_string(),
        dimension: spec.dimension,
        metric: spec.has_vectors().then(|| spec.metric.as_str().to_owned()),
        lineage: image.lineage.get(),
        stamp: image.stamp.get(),
        slot_count: image.slot_count,
        entities: image
            .entities
            .iter()
            .zip(&image.entity_slots)
            .map(|(e, slot)| Entity {
                id: e.id.to_string(),
                slot: *slot,
                category: e.category.clone(),
                tags: e.tags.clone(),
                attributes: e.attributes.as_deref().map(str::to_owned),
            })
            .collect(),
        vectors,
        free_slots: image.free.iter().map(|(slot, _)| *slot).collect(),
        graph: image.graph.as_ref().map(|g| Graph {
            connectivity: g.connectivity,
            expansion_add: g.expansion_add,
            expansion_search: g.expansion_search,
            entry: g.entry,
            draws: g.draws,
            deleted: g.deleted,
            segments: g
                .segments
                .iter()
                .map(|s| Segment {
                    bottom: bytes_of(&s.bottom),
                    state: s.state.clone(),
                    upper_at: bytes_of(&s.upper_at),
                    upper: bytes_of(&s.upper),
                    upper_used: s.upper_used,
                })
                .collect(),
        }),
    }
}

fn decode(p: Payload) -> Result<TenantImage> {
    let name = TenantName::parse(&p.name).map_err(bad)?;
    let spec = match &p.metric {
        None => TenantSpec::WITHOUT_VECTORS,
        Some(metric) => {
            TenantSpec::new(p.dimension, Metric::parse(metric).map_err(bad)?).map_err(bad)?
        }
    };
    let dim = spec.dimension;
    let floats: Vec<f32> = values_of(&p.vectors)?;
    if floats.len() != (p.entities.len() + p.free_slots.len()) * dim {
        return Err(bad("the vectors do not add up to the slots"));
    }
    let mut rows = floats.chunks_exact(dim.max(1));
    let mut next_vector = || -> Vec<f32> {
        if dim == 0 {
            Vec::new()
        } else {
            rows.next().map(<[f32]>::to_vec).unwrap_or_default()
        }
    };
    let mut entities = Vec::with_capacity(p.entities.len());
    let mut entity_slots = Vec::with_capacity(p.entities.len());
    for e in p.entities {
        entities.push(NewEntity {
            id: EntityId::parse(&e.id).map_err(bad)?,
            vector: next_vector(),
            category: e.category,
            tags: e.tags,
            attributes: e.attributes.map(Into::into),
        });
        entity_slots.push(e.slot);
    }
    let free = p
        .free_slots
        .into_iter()
        .map(|slot| (slot, next_vector()))
        .collect();
    let graph = match p.graph {
        None => None,
        Some(g) => Some(GraphParts {
            connectivity: g.connectivity,
            expansion_add: g.expansion_add,
            expansion_search: g.expansion_search,
            entry: g.entry,
            draws: g.draws,
            deleted: g.deleted,
            segments: g
                .segments
                .into_iter()
                .map(|s| {
                    Ok(SegmentParts {
                        bottom: values_of(&s.bottom)?,
                        state: s.state,
                        upper_at: values_of(&s.upper_at)?,
                        upper: values_of(&s.upper)?,
                        upper_used: s.upper_used,
                    })
                })
                .collect::<Result<_>>()?,
        }),
    };
    Ok(TenantImage {
        name,
        spec,
        lineage: Lineage::new(p.lineage),
        stamp: Stamp::new(p.stamp),
        slot_count: p.slot_count,
        entities,
        entity_slots,
        free,
        graph,
    })
}
