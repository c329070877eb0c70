//! `reco import`: JSON lines or CSV of entities or interactions into a tenant, through the HTTP
//! API (so the service validates, stores and serves them at once, and other servers hear of it).
//!
//! The whole file is checked first, by the server's own rules, and a file with any bad line
//! writes nothing: bad lines are reported by number. Then it goes in batches, each all or
//! nothing. After each batch the number of lines sent is written beside the file
//! (`<file>.reco-import`), keyed by the service, the tenant's incarnation (its lineage), the
//! kind and the file's size and hash, so a run that stopped resumes where it stopped, and
//! importing the same file elsewhere starts from the beginning. Each interaction line carries
//! an id (its own, or one derived from its content), so no rerun, resumed, restarted
//! (`--restart`) or after fixing the file, records an interaction twice.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use reco_engine::{CheckedEntities, CheckedInteractions, EngineError, Metric, Millis, TenantSpec};

use reco_server::api::{self, EntityBody, InteractionBody};

use super::client::{CliError as ImportError, Client};

/// What the lines hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Entities: id, vector, category, tags, attributes.
    Entities,
    /// Interactions: user, entity, kind, weight, timestamp.
    Interactions,
}

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// One JSON object a line, shaped as in the API.
    Jsonl,
    /// A header row, then one row a line. Vectors are numbers separated by spaces (or a JSON
    /// array); tags are separated by `|`; attributes are a JSON object.
    Csv,
}

/// Where and how to import.
#[derive(Debug, Clone, clap::Args)]
pub struct ImportArgs {
    /// The file to read.
    pub file: PathBuf,
    /// The tenant to write into.
    #[arg(long)]
    pub tenant: String,
    /// What the lines hold.
    #[arg(long, value_enum)]
    pub kind: Kind,
    /// How the file is written; by default from its extension (`.csv`, else JSON lines).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Lines per request (at most 10000).
    #[arg(long, default_value_t = 1000)]
    pub batch_size: usize,
    /// The service.
    #[arg(long, env = "RECO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// A key that opens the tenant (or the admin key).
    #[arg(long, env = "RECO_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// Start at the first line, whatever an earlier run sent (interactions are still recorded
    /// once: each line carries an id).
    #[arg(long)]
    pub restart: bool,
}

/// How far a run got with one file into one incarnation of one tenant on one service.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Progress {
    url: String,
    tenant: String,
    lineage: String,
    kind: String,
    size: u64,
    sha256: String,
    lines_sent: usize,
}

impl Progress {
    fn same_run(&self, other: &Progress) -> bool {
        (
            &self.url,
            &self.tenant,
            &self.lineage,
            &self.kind,
            self.size,
            &self.sha256,
        ) == (
            &other.url,
            &other.tenant,
            &other.lineage,
            &other.kind,
            other.size,
            &other.sha256,
        )
    }
}

/// How an import went.
#[derive(Debug, PartialEq, Eq)]
pub struct Imported {
    /// Lines sent by this run.
    pub written: usize,
    /// Lines a run before had sent.
    pub skipped: usize,
    /// Interactions of this run the tenant already held (by id): not recorded again.
    pub duplicates: usize,
}

fn progress_path(file: &Path) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".reco-import");
    PathBuf::from(name)
}

/// Runs an import; see the module documentation.
pub async fn run(args: &ImportArgs, bar: &ProgressBar) -> Result<Imported, ImportError> {
    let bytes = std::fs::read(&args.file).map_err(|e| ImportError::File {
        path: args.file.clone(),
        reason: e.to_string(),
    })?;
    let text = String::from_utf8(bytes.clone()).map_err(|e| ImportError::File {
        path: args.file.clone(),
        reason: format!("not UTF-8: {e}"),
    })?;
    let format =
        args.format
            .unwrap_or_else(|| match args.file.extension().and_then(|e| e.to_str()) {
                Some("csv") => Format::Csv,
                _ => Format::Jsonl,
            });
    let client = Client::new(&args.url, args.key.as_deref());
    let tenant: Value = client.get(&format!("/v1/tenants/{}", args.tenant)).await?;
    let (mut rows, mut bad) = parse(&text, format, args.kind);
    match args.kind {
        Kind::Entities => bad.extend(entity_problems(&rows, tenant_spec(&tenant)?)),
        Kind::Interactions => {
            let now = reco_engine::Clock::now(&reco_engine::SystemClock);
            bad.extend(interaction_problems(&rows, now));
            give_ids(&mut rows);
        }
    }
    if !bad.is_empty() {
        bad.sort_by_key(|(line, _)| *line);
        let lines = bad
            .into_iter()
            .map(|(line, e)| format!("line {line}: {e}"))
            .collect();
        return Err(ImportError::BadLines(lines));
    }

    let fingerprint = Progress {
        url: client.base().to_owned(),
        tenant: args.tenant.clone(),
        lineage: tenant["lineage"].as_str().unwrap_or_default().to_owned(),
        kind: format!("{:?}", args.kind).to_lowercase(),
        size: bytes.len() as u64,
        sha256: hex::encode(Sha256::digest(&bytes)),
        lines_sent: 0,
    };
    let marker = progress_path(&args.file);
    // Every run of this file is kept (another tenant, service or kind is another run); a
    // marker this version cannot read counts as none.
    let mut runs: Vec<Progress> = std::fs::read_to_string(&marker)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let skipped = runs
        .iter()
        .find(|p| p.same_run(&fingerprint))
        .filter(|_| !args.restart)
        .map_or(0, |p| p.lines_sent.min(rows.len()));
    bar.set_length(rows.len() as u64);
    bar.set_position(skipped as u64);
    let (path, field) = match args.kind {
        Kind::Entities => (format!("/v1/tenants/{}/entities", args.tenant), "entities"),
        Kind::Interactions => (
            format!("/v1/tenants/{}/interactions", args.tenant),
            "interactions",
        ),
    };
    let mut sent = skipped;
    let mut duplicates = 0;
    for batch in rows[skipped..].chunks(args.batch_size.clamp(1, api::MAX_BATCH)) {
        let items: Vec<&Value> = batch.iter().map(|(_, row)| row).collect();
        let body = json!({ field: items });
        let answer = match args.kind {
            Kind::Entities => client.send(reqwest::Method::PUT, &path, &body).await?,
            Kind::Interactions => client.send(reqwest::Method::POST, &path, &body).await?,
        };
        duplicates += answer["duplicates"]
            .as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        sent += batch.len();
        runs.retain(|p| !p.same_run(&fingerprint));
        runs.push(Progress {
            lines_sent: sent,
            ..fingerprint.clone()
        });
        std::fs::write(&marker, serde_json::to_string(&runs).expect("plain data")).map_err(
            |e| ImportError::File {
                path: marker.clone(),
                reason: e.to_string(),
            },
        )?;
        bar.set_position(sent as u64);
    }
    Ok(Imported {
        written: sent - skipped,
        skipped,
        duplicates,
    })
}

/// The tenant's settings, from its `GET /v1/tenants/{tenant}` answer.
fn tenant_spec(tenant: &Value) -> Result<TenantSpec, ImportError> {
    if tenant["dimension"].is_null() && tenant["metric"].is_null() {
        return Ok(TenantSpec::WITHOUT_VECTORS);
    }
    let dimension = tenant["dimension"].as_u64().unwrap_or_default();
    let metric = Metric::parse(tenant["metric"].as_str().unwrap_or_default());
    metric
        .and_then(|m| TenantSpec::new(usize::try_from(dimension).unwrap_or(usize::MAX), m))
        .map_err(|e| ImportError::Tenant(e.to_string()))
}

/// Every entity line the server would refuse, by the engine's own check (the one the server
/// runs): vectors against the tenant's dimension and metric, labels, and ids seen twice.
fn entity_problems(rows: &[(usize, Value)], spec: TenantSpec) -> Vec<(usize, String)> {
    let mut bad = Vec::new();
    let mut entities = Vec::with_capacity(rows.len());
    let mut lines = Vec::with_capacity(rows.len());
    for (line, row) in rows {
        let entity = serde_json::from_value::<EntityBody>(row.clone())
            .map_err(|e| e.to_string())
            .and_then(EntityBody::into_entity);
        match entity {
            Ok(entity) => {
                entities.push(entity);
                lines.push(*line);
            }
            Err(e) => bad.push((*line, e)),
        }
    }
    for (index, problem) in CheckedEntities::problems(spec, &entities) {
        bad.push((lines[index], problem.to_string()));
    }
    bad
}

/// Every interaction line the server would refuse: its fields as the server reads them
/// (`InteractionBody::into_interaction`), then the engine's check of a new batch (weights,
/// timestamps at most an hour ahead of `now`).
fn interaction_problems(rows: &[(usize, Value)], now: Millis) -> Vec<(usize, String)> {
    rows.iter()
        .filter_map(|(line, row)| {
            let problem = serde_json::from_value::<InteractionBody>(row.clone())
                .map_err(|e| e.to_string())
                .and_then(|body| body.into_interaction(now))
                .and_then(|(interaction, _)| {
                    CheckedInteractions::new_at(vec![interaction], now)
                        .map(drop)
                        .map_err(|e| {
                            // The item's place in a batch of one says nothing; its line does.
                            let EngineError::InvalidItem { source, .. } = e else {
                                return e.to_string();
                            };
                            source.to_string()
                        })
                });
            problem.err().map(|e| (*line, e))
        })
        .collect()
}

/// Gives each interaction line without an `id` one derived from its content (and how many
/// lines before had the same), so that sending a line again, from a rerun or a fixed file,
/// records it once: the service keeps interaction ids per tenant.
fn give_ids(rows: &mut [(usize, Value)]) {
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (_, row) in rows.iter_mut() {
        let Some(object) = row.as_object_mut() else {
            continue;
        };
        if object.contains_key("id") {
            continue;
        }
        // serde_json's maps are sorted, so the text names the content whatever the key order.
        let digest = hex::encode(Sha256::digest(Value::Object(object.clone()).to_string()));
        let count = seen.entry(digest[..32].to_owned()).or_default();
        object.insert(
            "id".into(),
            Value::from(format!("import-{}-{count}", &digest[..32])),
        );
        *count += 1;
    }
}

/// Parses every line into the API's JSON shape, checking its fields: the good rows, and the
/// bad lines with what is wrong with each.
pub(super) type Parsed = (Vec<(usize, Value)>, Vec<(usize, String)>);

pub(super) fn parse(text: &str, format: Format, kind: Kind) -> Parsed {
    let mut rows = Vec::new();
    let mut bad = Vec::new();
    let mut check = |line: usize, row: Result<Value, String>| match row.and_then(|v| shape(v, kind))
    {
        Ok(v) => rows.push((line, v)),
        Err(e) => bad.push((line, e)),
    };
    match format {
        Format::Jsonl => {
            for (i, line) in text.lines().enumerate() {
                if !line.trim().is_empty() {
                    check(i + 1, serde_json::from_str(line).map_err(|e| e.to_string()));
                }
            }
        }
        Format::Csv => {
            let mut reader = csv::ReaderBuilder::new()
                .flexible(false)
                .from_reader(text.as_bytes());
            let headers = match reader.headers() {
                Ok(headers) => headers.clone(),
                Err(e) => {
                    check(1, Err(e.to_string()));
                    return (rows, bad);
                }
            };
            for record in reader.records() {
                match record {
                    Ok(record) => {
                        let line = record.position().map_or(0, |p| line_number(p.line()));
                        check(line, csv_row(&headers, &record, kind));
                    }
                    Err(e) => {
                        let line = e.position().map_or(0, |p| line_number(p.line()));
                        check(line, Err(e.to_string()));
                    }
                }
            }
        }
    }
    (rows, bad)
}

/// Checks that a row has the API's shape for its kind.
fn shape(row: Value, kind: Kind) -> Result<Value, String> {
    let checked = match kind {
        Kind::Entities => serde_json::from_value::<EntityBody>(row.clone()).map(drop),
        Kind::Interactions => serde_json::from_value::<InteractionBody>(row.clone()).map(drop),
    };
    checked.map_err(|e| e.to_string())?;
    Ok(row)
}

fn csv_row(
    headers: &csv::StringRecord,
    record: &csv::StringRecord,
    kind: Kind,
) -> Result<Value, String> {
    let mut object = serde_json::Map::new();
    for (name, field) in headers.iter().zip(record.iter()) {
        if field.is_empty() {
            continue;
        }
        let value = match (kind, name) {
            (Kind::Entities, "vector") => vector_field(field)?,
            (Kind::Entities, "tags") => {
                Value::from(field.split('|').map(str::to_owned).collect::<Vec<_>>())
            }
            (Kind::Entities, "attributes") => {
                // Checked as written: parsed into a value, a key given twice would be lost.
                reco_server::attributes::check(field)?;
                serde_json::from_str(field).map_err(|e| format!("attributes: {e}"))?
            }
            (Kind::Interactions, "weight") => Value::from(
                field
                    .parse::<f64>()
                    .map_err(|_| format!("weight `{field}` is not a number"))?,
            ),
            _ => Value::from(field),
        };
        object.insert(name.to_owned(), value);
    }
    Ok(Value::Object(object))
}

/// A CSV reader's line number as the report counts lines.
fn line_number(line: u64) -> usize {
    usize::try_from(line).unwrap_or(usize::MAX)
}

fn vector_field(field: &str) -> Result<Value, String> {
    if field.trim_start().starts_with('[') {
        return serde_json::from_str(field).map_err(|e| format!("vector: {e}"));
    }
    field
        .split_whitespace()
        .map(|x| {
            x.parse::<f64>()
                .map_err(|_| format!("vector component `{x}` is not a number"))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Value::from)
}

/// The progress bar of an import.
pub fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} lines ({per_sec}, {eta} left)")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_api_objects() {
        let text = "id,vector,category,tags,attributes\na,1 2 3,books,new|sale,\"{\"\"p\"\": 1}\"\nb,\"[4, 5, 6]\",,,\n";
        let (rows, bad) = parse(text, Format::Csv, Kind::Entities);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(rows[0].0, 2);
        assert_eq!(
            rows[0].1,
            json!({"id": "a", "vector": [1.0, 2.0, 3.0], "category": "books", "tags": ["new", "sale"], "attributes": {"p": 1}})
        );
        assert_eq!(rows[1].1, json!({"id": "b", "vector": [4, 5, 6]}));
    }

    #[test]
    fn bad_lines_are_all_named() {
        let text = "{\"id\": \"a\", \"vector\": [1]}\nnot json\n\n{\"id\": \"b\"}\n{\"id\": \"c\", \"vector\": [1], \"colour\": 1}\n";
        let (rows, bad) = parse(text, Format::Jsonl, Kind::Entities);
        let numbers: Vec<usize> = bad.iter().map(|(line, _)| *line).collect();
        assert_eq!(numbers, [2, 5]);
        assert_eq!(rows.len(), 2);
        // A line without a vector has the right shape; the tenant's check names it when the
        // tenant has a dimension, and takes it when it has none.
        let with_vectors = TenantSpec::new(1, Metric::Dot).unwrap();
        let problems = entity_problems(&rows, with_vectors);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 4);
        assert!(
            problems[0].1.contains("`vector` is required"),
            "{problems:?}"
        );
        let without = entity_problems(&rows[1..], TenantSpec::WITHOUT_VECTORS);
        assert!(without.is_empty(), "{without:?}");
    }

    #[test]
    fn entity_lines_are_checked_as_the_server_checks_them() {
        let rows = |vectors: &[Value]| -> Vec<(usize, Value)> {
            vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (i + 1, json!({"id": format!("e{i}"), "vector": v})))
                .collect()
        };
        let cosine = TenantSpec::new(2, Metric::Cosine).unwrap();
        let bad = entity_problems(&rows(&[json!([1, 2, 3])]), cosine);
        assert!(bad[0].1.contains("dimension"), "{bad:?}");
        assert_eq!(entity_problems(&rows(&[json!([0, 0])]), cosine).len(), 1);
        assert_eq!(entity_problems(&rows(&[json!([1e39, 0])]), cosine).len(), 1);
        assert!(entity_problems(&rows(&[json!([1, 0])]), cosine).is_empty());
        // An id seen twice is named at its second line, as the server would name the item.
        let twice = vec![
            (1, json!({"id": "a", "vector": [1, 0]})),
            (2, json!({"id": "a", "vector": [0, 1]})),
        ];
        let bad = entity_problems(&twice, cosine);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 2);
        assert!(bad[0].1.contains("twice"), "{bad:?}");
    }
}
