//! Tenant image files: what is written is read back equal; a file cut short, changed, of
//! another version or of another tenant is refused with a reason, never read as an image.

use reco_engine::{
    Engine, EngineConfig, EntityId, Lineage, Metric, NewEntity, Stamp, TenantImage, TenantName,
    TenantSpec,
};
use reco_storage::{ImageFiles, StorageError};

fn image() -> TenantImage {
    let mut config = EngineConfig::default();
    config.search.threshold = 100;
    let engine = Engine::new(config).unwrap();
    let t = TenantName::parse("shop").unwrap();
    engine
        .create_tenant_at(
            t.clone(),
            TenantSpec::new(8, Metric::Dot).unwrap(),
            Lineage::new(u64::MAX - 3),
            Stamp::ZERO,
        )
        .unwrap();
    let batch = (0..300)
        .map(|i: usize| NewEntity {
            id: EntityId::parse(&format!("é{i}")).unwrap(),
            vector: (0..8)
                .map(|d| ((i * 13 + d * 7) % 23) as f32 - 11.5)
                .collect(),
            category: i.is_multiple_of(2).then(|| "even".to_owned()),
            tags: vec![format!("t{}", i % 4), "all".into()],
            attributes: Some(format!("{{\"i\": {i}, \"s\": \"\\u00e9\"}}").into()),
        })
        .collect();
    engine.upsert(&t, batch).unwrap();
    engine.delete(&t, &EntityId::parse("é5").unwrap()).unwrap();
    engine.image(&t).unwrap()
}

fn folder() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("reco_images_{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_image_is_read_back_as_written() {
    let files = ImageFiles::new(folder());
    let image = image();
    assert!(image.graph.is_some() && !image.free.is_empty());
    let t = image.name.clone();
    assert!(files.read(&t).unwrap().is_none(), "no file, no image");
    let bytes = files.write(&image).unwrap();
    assert!(bytes > 300 * 8 * 4, "{bytes}");
    assert_eq!(files.read(&t).unwrap(), Some(image.clone()));
    // Written again, it replaces the file whole.
    files.write(&image).unwrap();
    assert_eq!(files.read(&t).unwrap(), Some(image));
    files.remove(&t).unwrap();
    assert!(files.read(&t).unwrap().is_none());
}

#[test]
fn a_damaged_file_is_refused_with_its_reason() {
    let dir = folder();
    let files = ImageFiles::new(&dir);
    let image = image();
    let t = image.name.clone();
    files.write(&image).unwrap();
    let path = dir.join("shop.img");
    let good = std::fs::read(&path).unwrap();
    let refused = |bytes: &[u8], reason: &str| {
        std::fs::write(&path, bytes).unwrap();
        match files.read(&t) {
            Err(StorageError::Image(why)) => assert!(why.contains(reason), "{why}"),
            other => panic!("{reason}: {other:?}"),
        }
    };
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    refused(&flipped, "checksum");
    refused(&good[..good.len() - 100], "cut short");
    refused(&good[..10], "not a tenant image");
    let mut other_version = good.clone();
    other_version[8] = 99;
    refused(&other_version, "format version 99");
    // The file of one tenant, found under another's name.
    std::fs::write(&path, &good).unwrap();
    std::fs::copy(&path, dir.join("blog.img")).unwrap();
    let blog = TenantName::parse("blog").unwrap();
    match files.read(&blog) {
        Err(StorageError::Image(why)) => assert!(why.contains("tenant `shop`"), "{why}"),
        other => panic!("{other:?}"),
    }
}
