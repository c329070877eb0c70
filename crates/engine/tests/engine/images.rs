//! A tenant's image (issue 15's snapshots): taken, staged in another engine and installed, it
//! answers exactly as the tenant did, slot for slot and link for link; an image that does not
//! describe a tenant is refused whole.

use reco_engine::{
    Engine, EngineConfig, EngineError, EntityId, Lineage, Metric, NewEntity, SearchOptions, Stamp,
    TenantImage, TenantName, TenantSpec,
};

/// An engine whose tenant `t` (16-d cosine) holds 1,500 entities with a graph, labels and
/// attributes, some deleted and some written again, so that it has free slots.
fn tenant_with_a_graph() -> (Engine, TenantName) {
    let mut config = EngineConfig::default();
    config.search.threshold = 500;
    config.cache.enabled = false;
    let engine = Engine::new(config).unwrap();
    let t = TenantName::parse("t").unwrap();
    engine
        .create_tenant_at(
            t.clone(),
            TenantSpec::new(16, Metric::Cosine).unwrap(),
            Lineage::new(7),
            Stamp::ZERO,
        )
        .unwrap();
    let entity = |i: usize| NewEntity {
        id: EntityId::parse(&format!("e{i}")).unwrap(),
        vector: (0..16)
            .map(|d| (((i * 31 + d * 17) % 97) as f32 - 48.0) / 10.0 + 0.01)
            .collect(),
        category: Some(format!("c{}", i % 5)),
        tags: vec![format!("t{}", i % 3)],
        attributes: Some(format!("{{\"n\": {i}}}").into()),
    };
    engine.upsert(&t, (0..1500).map(entity).collect()).unwrap();
    for i in (0..1500).step_by(7) {
        engine
            .delete(&t, &EntityId::parse(&format!("e{i}")).unwrap())
            .unwrap();
    }
    engine
        .upsert(&t, (0..30).map(|i| entity(i * 7)).collect())
        .unwrap();
    (engine, t)
}

fn answers(engine: &Engine, t: &TenantName) -> Vec<Vec<(String, f32)>> {
    (0..1500)
        .step_by(11)
        .filter_map(|i| {
            let id = EntityId::parse(&format!("e{i}")).unwrap();
            let options = SearchOptions {
                k: 10,
                ..SearchOptions::default()
            };
            let answer = engine.similar(t, &id, &options).ok()?;
            Some(
                answer
                    .ranking
                    .results
                    .iter()
                    .map(|s| (s.id.to_string(), s.score))
                    .collect(),
            )
        })
        .collect()
}

fn restored(image: TenantImage) -> Result<Engine, EngineError> {
    let mut config = EngineConfig::default();
    config.search.threshold = 500;
    config.cache.enabled = false;
    let engine = Engine::new(config).unwrap();
    let staged = engine.stage_image(image)?;
    engine.install(staged);
    Ok(engine)
}

#[test]
fn an_image_comes_back_slot_for_slot_and_answers_alike() {
    let (engine, t) = tenant_with_a_graph();
    let image = engine.image(&t).unwrap();
    assert!(image.graph.is_some(), "the tenant has a graph");
    assert!(!image.free.is_empty(), "and free slots");
    assert_eq!(image.lineage, Lineage::new(7));
    assert_eq!(image.stamp, engine.applied(&t).unwrap());
    let again = restored(image.clone()).unwrap();
    assert_eq!(
        again.image(&t).unwrap(),
        image,
        "the same slots, rows and links"
    );
    assert_eq!(answers(&again, &t), answers(&engine, &t));
    assert_eq!(
        again.tenant_info(&t).unwrap().entities,
        engine.tenant_info(&t).unwrap().entities
    );
    let a = EntityId::parse("e1").unwrap();
    assert_eq!(again.get(&t, &a).unwrap(), engine.get(&t, &a).unwrap());
    // The restored tenant takes writes as the original does.
    let more = NewEntity {
        id: EntityId::parse("new").unwrap(),
        vector: vec![1.0; 16],
        category: None,
        tags: Vec::new(),
        attributes: None,
    };
    engine.upsert(&t, vec![more.clone()]).unwrap();
    again.upsert(&t, vec![more]).unwrap();
    assert_eq!(answers(&again, &t), answers(&engine, &t));
}

#[test]
fn an_image_that_describes_no_tenant_is_refused() {
    let (engine, t) = tenant_with_a_graph();
    let image = engine.image(&t).unwrap();
    let refused = |change: &dyn Fn(&mut TenantImage)| {
        let mut bad = image.clone();
        change(&mut bad);
        let error = restored(bad).expect_err("refused");
        assert!(error.to_string().contains("the tenant's image"), "{error}");
    };
    refused(&|i| i.entities[3].vector.pop().map(drop).unwrap_or_default());
    refused(&|i| i.entity_slots[1] = i.entity_slots[0]);
    refused(&|i| i.slot_count += 1);
    refused(&|i| i.free[0].1.push(0.0));
    refused(&|i| {
        let graph = i.graph.as_mut().unwrap();
        graph.segments[0].bottom[1] = u32::MAX;
        // The first node's list must be long enough for its first link to be read.
        graph.segments[0].bottom[0] = graph.segments[0].bottom[0].max(1);
        graph.segments[0].state[0] = graph.segments[0].state[0].max(1);
    });
    refused(&|i| {
        i.graph.as_mut().unwrap().segments[0]
            .bottom
            .pop()
            .map(drop)
            .unwrap_or_default()
    });
    refused(&|i| i.entities[5].id = i.entities[4].id.clone());
}
