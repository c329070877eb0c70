//! One suite, run against both backends: they must behave alike.

use std::collections::BTreeSet;

use reco_engine::{
    CheckedEntities, Created, EntityId, InteractionId, LearnParams, Learning, Metric, ModelInfo,
    ModelParts, Stamp, TenantSpec,
};
use reco_storage::{StorageError, Store};

use crate::helpers::{
    Backend, Fixture, entity, id, interaction, random_entities, record, record_with_ids, same_json,
    spec, tenant, upsert,
};

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $test() { super::$test(crate::helpers::Backend::Postgres).await; })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $test() { super::$test(crate::helpers::Backend::Sqlite).await; })*
        }
    };
}

suite!(
    tenants_are_made_once_and_conflicts_refused,
    entities_round_trip_exactly,
    a_bad_row_rejects_the_whole_batch,
    a_batch_checked_against_other_settings_is_refused,
    deleting_a_tenant_removes_all_its_data,
    concurrent_interactions_are_all_committed,
    a_restart_keeps_all_data,
    streams_page_through_large_tenants,
    api_keys_are_found_by_hash,
    loading_reports_progress,
    models_are_kept_by_version_and_go_with_their_tenant,
    interactions_with_an_id_are_recorded_once,
);

/// An interaction's id is kept per tenant: sent again (in the same batch, in a later one, from
/// concurrent writers that share a commit, after a restart) it is not recorded again, and a
/// batch of duplicates alone is still a change of its own. Another tenant may use the same id.
async fn interactions_with_an_id_are_recorded_once(backend: Backend) {
    let (fixture, store) = Fixture::new(backend).await;
    let (t, other) = (tenant("shop"), tenant("other"));
    for name in [&t, &other] {
        store
            .create_tenant(name, spec(2, Metric::Dot))
            .await
            .unwrap();
    }
    let key = |k: &str| Some(InteractionId::parse(k).unwrap());
    let batch: Vec<_> = (0..4).map(|i| interaction(i, i, 10)).collect();
    let first = record_with_ids(
        &store,
        &t,
        batch.clone(),
        vec![key("a"), None, key("b"), key("a")],
    )
    .await
    .unwrap();
    assert_eq!(first.fresh, [true, true, true, false]);
    let again = record_with_ids(&store, &t, batch[..2].to_vec(), vec![key("a"), key("b")])
        .await
        .unwrap();
    assert_eq!(
        (again.fresh.clone(), again.duplicates()),
        (vec![false, false], 2)
    );
    assert_eq!(again.change.stamp.get(), first.change.stamp.get() + 1);
    let elsewhere = record_with_ids(&store, &other, batch[..1].to_vec(), vec![key("a")])
        .await
        .unwrap();
    assert_eq!(elsewhere.fresh, [true]);
    // Concurrent writers of one id, committed together or not: exactly one records it.
    let writers = (0..8).map(|w| {
        let (store, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            record_with_ids(&store, &t, vec![interaction(w, 9, 20)], vec![key("c")]).await
        })
    });
    let fresh: usize = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(|r| r.unwrap().unwrap().fresh.iter().filter(|f| **f).count())
        .sum();
    assert_eq!(fresh, 1);
    assert_eq!(store.counts(&t).await.unwrap().1, 4);
    drop(store);
    let store = fixture.open().await;
    let after = record_with_ids(&store, &t, batch[..1].to_vec(), vec![key("b")])
        .await
        .unwrap();
    assert_eq!(after.fresh, [false]);
    assert_eq!(store.counts(&t).await.unwrap().1, 4);
}

async fn tenants_are_made_once_and_conflicts_refused(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    let (created, lineage) = store
        .create_tenant(&t, spec(4, Metric::Cosine))
        .await
        .unwrap();
    assert_eq!(created, Created::Created);
    assert_eq!(
        store
            .create_tenant(&t, spec(4, Metric::Cosine))
            .await
            .unwrap(),
        (Created::Existed, lineage),
        "found again, with the same lineage"
    );
    // Deleted and made again, it is another incarnation.
    assert!(store.delete_tenant(&t).await.unwrap());
    let (again, other) = store
        .create_tenant(&t, spec(4, Metric::Cosine))
        .await
        .unwrap();
    assert_eq!(again, Created::Created);
    assert_ne!(other, lineage);
    let conflict = store
        .create_tenant(&t, spec(8, Metric::Dot))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &conflict,
            StorageError::TenantConflict { settings, .. }
                if settings.starts_with("dimension 4 and metric cosine")
        ),
        "{conflict:?}"
    );
    // Without content vectors, and with its own learning: made once, found again, and other
    // learning is a conflict.
    let log = tenant("log");
    let learning = Learning {
        enabled: false,
        params: LearnParams {
            factors: 12,
            ..LearnParams::default()
        },
    };
    let (made, _) = store
        .create_tenant_with(&log, TenantSpec::WITHOUT_VECTORS, &learning, None)
        .await
        .unwrap();
    assert_eq!(made, Created::Created);
    let (found, _) = store
        .create_tenant_with(&log, TenantSpec::WITHOUT_VECTORS, &learning, None)
        .await
        .unwrap();
    assert_eq!(found, Created::Existed);
    assert!(matches!(
        store.create_tenant(&log, TenantSpec::WITHOUT_VECTORS).await,
        Err(StorageError::TenantConflict { .. })
    ));
    assert_eq!(
        store.tenant(&log).await.unwrap(),
        Some(TenantSpec::WITHOUT_VECTORS)
    );
    let bare = vec![entity(1, Vec::new()), entity(2, Vec::new())];
    upsert(&store, &log, &bare).await.unwrap();
    let (entities, _) = read_back(&store, &log, 0).await;
    assert_eq!(entities.len(), 2);
    assert!(entities.iter().all(|e| e.vector.is_empty()));
    let mut pages = (Vec::new(), Vec::new());
    let loaded = load(
        &store,
        &log,
        0,
        &indicatif::ProgressBar::hidden(),
        &mut pages.0,
        &mut pages.1,
    )
    .await;
    assert_eq!(loaded.record.spec, TenantSpec::WITHOUT_VECTORS);
    assert_eq!(loaded.record.learning, learning);
    store
        .create_tenant(&tenant("blog"), spec(2, Metric::Euclidean))
        .await
        .unwrap();
    let all = store.tenants().await.unwrap();
    assert_eq!(
        all,
        vec![
            (tenant("blog"), spec(2, Metric::Euclidean)),
            (log.clone(), TenantSpec::WITHOUT_VECTORS),
            (t.clone(), spec(4, Metric::Cosine))
        ]
    );
    assert_eq!(
        store.tenant(&t).await.unwrap(),
        Some(spec(4, Metric::Cosine))
    );
    assert!(store.delete_tenant(&t).await.unwrap());
    assert!(!store.delete_tenant(&t).await.unwrap());
    assert_eq!(store.tenant(&t).await.unwrap(), None);
    store.ping().await.unwrap();
}

async fn entities_round_trip_exactly(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    store.create_tenant(&t, spec(3, Metric::Dot)).await.unwrap();
    let mut batch = vec![
        entity(1, vec![0.1, -2.5e-7, 3.402_823e38]),
        entity(2, vec![1.0, 2.0, 3.0]),
    ];
    batch[1].category = None;
    batch[1].tags = Vec::new();
    batch[1].attributes = None;
    upsert(&store, &t, &batch).await.unwrap();
    for e in &batch {
        let got = store.get_entity(&t, &e.id).await.unwrap().expect("stored");
        assert_eq!(got.vector, e.vector, "vectors are stored bit for bit");
        assert_eq!(got.category, e.category);
        assert_eq!(got.tags, e.tags);
        assert!(same_json(
            got.attributes.as_deref(),
            e.attributes.as_deref()
        ));
    }
    let mut changed = batch[0].clone();
    changed.vector = vec![9.0, 9.0, 9.0];
    changed.tags = vec!["new".into()];
    upsert(&store, &t, std::slice::from_ref(&changed))
        .await
        .unwrap();
    let got = store.get_entity(&t, &changed.id).await.unwrap().unwrap();
    assert_eq!((got.vector, got.tags), (changed.vector, changed.tags));
    assert_eq!(store.counts(&t).await.unwrap(), (2, 0));
    assert!(
        store
            .delete_entity(&t, &batch[1].id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(store.delete_entity(&t, &batch[1].id).await.unwrap(), None);
    assert!(store.get_entity(&t, &batch[1].id).await.unwrap().is_none());
    assert_eq!(store.counts(&t).await.unwrap(), (1, 0));
}

async fn a_bad_row_rejects_the_whole_batch(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    store
        .create_tenant(&t, spec(2, Metric::Cosine))
        .await
        .unwrap();
    upsert(&store, &t, &[entity(0, vec![1.0, 0.0])])
        .await
        .unwrap();
    let bad_rows = [
        vec![f32::NAN, 1.0],
        vec![1.0, 2.0, 3.0],
        vec![0.0, 0.0],
        vec![f32::INFINITY, 0.0],
    ];
    for bad in bad_rows {
        let batch = vec![
            entity(0, vec![0.5, 0.5]),
            entity(1, vec![1.0, 1.0]),
            entity(2, bad.clone()),
        ];
        let err = upsert(&store, &t, &batch).await.unwrap_err();
        assert!(
            matches!(err, StorageError::InvalidRow { index: 2, .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(store.counts(&t).await.unwrap(), (1, 0), "{bad:?}");
        assert_eq!(
            store
                .get_entity(&t, &id("e00000"))
                .await
                .unwrap()
                .unwrap()
                .vector,
            [1.0, 0.0]
        );
    }
    let twice = vec![entity(5, vec![1.0, 0.0]), entity(5, vec![0.0, 1.0])];
    assert!(matches!(
        upsert(&store, &t, &twice).await,
        Err(StorageError::InvalidRow { index: 1, .. })
    ));
    let ghost = tenant("ghost");
    let err = upsert(&store, &ghost, &[entity(0, vec![1.0, 0.0])])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TenantNotFound(_)), "{err:?}");
    let err = record(&store, &ghost, vec![interaction(1, 1, 0)])
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::TenantNotFound(_)), "{err:?}");
    let mut nan_weight = interaction(1, 1, 0);
    nan_weight.weight = Some(f32::NAN);
    let err = record(&store, &t, vec![interaction(1, 1, 0), nan_weight])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::InvalidRow { index: 1, .. }),
        "{err:?}"
    );
    assert_eq!(store.counts(&t).await.unwrap(), (1, 0));
}

/// The engine checks a batch once; storage only makes sure it was checked against the tenant's
/// settings as stored, which differ when the tenant was made again in between.
async fn a_batch_checked_against_other_settings_is_refused(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    store
        .create_tenant(&t, spec(2, Metric::Cosine))
        .await
        .unwrap();
    let checked = CheckedEntities::new(
        spec(3, Metric::Cosine),
        vec![entity(0, vec![1.0, 0.0, 0.0])],
    )
    .unwrap();
    let err = store.upsert_entities(&t, &checked).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::TenantConflict { settings, .. } if settings.starts_with("dimension 2")),
        "{err:?}"
    );
    assert_eq!(store.counts(&t).await.unwrap(), (0, 0));
    let right =
        CheckedEntities::new(spec(2, Metric::Cosine), vec![entity(0, vec![1.0, 0.0])]).unwrap();
    let change = store.upsert_entities(&t, &right).await.unwrap();
    assert_eq!(change.stamp, Stamp::new(1));
}

async fn deleting_a_tenant_removes_all_its_data(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let (t, other) = (tenant("shop"), tenant("news1"));
    for name in [&t, &other] {
        store
            .create_tenant(name, spec(2, Metric::Dot))
            .await
            .unwrap();
        upsert(&store, name, &[entity(0, vec![1.0, 0.0])])
            .await
            .unwrap();
        record(&store, name, vec![interaction(1, 0, 5)])
            .await
            .unwrap();
        store
            .add_api_key(name, [u8::try_from(name.as_str().len()).unwrap(); 32])
            .await
            .unwrap();
    }
    assert!(store.delete_tenant(&t).await.unwrap());
    store.create_tenant(&t, spec(2, Metric::Dot)).await.unwrap();
    assert_eq!(
        store.counts(&t).await.unwrap(),
        (0, 0),
        "nothing of the old tenant is left"
    );
    assert_eq!(store.find_api_key([4; 32]).await.unwrap(), None);
    assert_eq!(
        store.counts(&other).await.unwrap(),
        (1, 1),
        "the other tenant is untouched"
    );
    assert_eq!(store.find_api_key([5; 32]).await.unwrap(), Some(other));
}

async fn concurrent_interactions_are_all_committed(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let (t, ghost) = (tenant("shop"), tenant("ghost"));
    store.create_tenant(&t, spec(2, Metric::Dot)).await.unwrap();
    let writers = (0..40).map(|w| {
        let store = store.clone();
        let (t, ghost) = (t.clone(), ghost.clone());
        tokio::spawn(async move {
            // Every fifth writer names a tenant that does not exist: it alone must fail.
            let target = if w % 5 == 4 { ghost } else { t };
            let batch = (0..25)
                .map(|i| interaction(w, i, i64::try_from(w * 100 + i).unwrap()))
                .collect();
            record(&store, &target, batch).await
        })
    });
    let results = futures::future::join_all(writers).await;
    let mut stamps = Vec::new();
    for (w, result) in results.into_iter().enumerate() {
        match result.unwrap() {
            Ok(change) => {
                assert_ne!(w % 5, 4);
                stamps.push(change.stamp.get());
            }
            Err(StorageError::TenantNotFound(_)) => assert_eq!(w % 5, 4),
            Err(other) => panic!("writer {w}: {other:?}"),
        }
    }
    // Each batch is a change of its own: the stamps are 1 to 32, each once, even where
    // batches shared a commit.
    stamps.sort_unstable();
    assert_eq!(stamps, (1..=32).collect::<Vec<u64>>());
    assert_eq!(store.counts(&t).await.unwrap().1, 32 * 25);
    let stored: Vec<_> = read_back(&store, &t, 0).await.1;
    let mut expected: Vec<_> = (0..40)
        .filter(|w| w % 5 != 4)
        .flat_map(|w| (0..25).map(move |i| interaction(w, i, i64::try_from(w * 100 + i).unwrap())))
        .collect();
    let key = |i: &reco_engine::Interaction| (i.user.to_string(), i.timestamp);
    let mut got = stored.clone();
    got.sort_by_key(key);
    expected.sort_by_key(key);
    assert_eq!(
        got, expected,
        "every acknowledged interaction is stored, exactly"
    );
    // Within one batch, the order of arrival is kept.
    let u1: Vec<i64> = stored
        .iter()
        .filter(|i| i.user.as_str() == "u1")
        .map(|i| i.timestamp)
        .collect();
    assert_eq!(u1, (100..125).collect::<Vec<i64>>());
    let recent: Vec<_> = read_back(&store, &t, 3_000).await.1;
    assert!(recent.iter().all(|i| i.timestamp >= 3_000) && !recent.is_empty());
}

async fn a_restart_keeps_all_data(backend: Backend) {
    let (fixture, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    store
        .create_tenant(&t, spec(8, Metric::Euclidean))
        .await
        .unwrap();
    let batch = random_entities(300, 8);
    upsert(&store, &t, &batch).await.unwrap();
    let interactions: Vec<_> = (0..50)
        .map(|i| interaction(i % 7, i, i64::try_from(i).unwrap()))
        .collect();
    record(&store, &t, interactions.clone()).await.unwrap();
    store.add_api_key(&t, [7; 32]).await.unwrap();
    drop(store);
    let store = fixture.open().await;
    store.migrate().await.expect("migrating again is a no-op");
    assert_eq!(
        store.tenants().await.unwrap(),
        vec![(t.clone(), spec(8, Metric::Euclidean))]
    );
    let mut entities: Vec<_> = read_back(&store, &t, 0).await.0;
    entities.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(entities.len(), batch.len());
    for (got, want) in entities.iter().zip(&batch) {
        assert_eq!(
            (&got.id, &got.vector, &got.category, &got.tags),
            (&want.id, &want.vector, &want.category, &want.tags)
        );
    }
    let stored: Vec<_> = read_back(&store, &t, 0).await.1;
    assert_eq!(stored, interactions);
    assert_eq!(store.find_api_key([7; 32]).await.unwrap(), Some(t));
}

async fn streams_page_through_large_tenants(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("big");
    store.create_tenant(&t, spec(4, Metric::Dot)).await.unwrap();
    // More than two pages, written as one batch of 10,000 and one of 2,000.
    let all = random_entities(12_000, 4);
    upsert(&store, &t, &all[..10_000]).await.unwrap();
    upsert(&store, &t, &all[10_000..]).await.unwrap();
    let streamed: Vec<_> = read_back(&store, &t, 0).await.0;
    let ids: BTreeSet<_> = streamed.iter().map(|e| e.id.clone()).collect();
    assert_eq!((streamed.len(), ids.len()), (12_000, 12_000));
}

async fn api_keys_are_found_by_hash(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    store.create_tenant(&t, spec(2, Metric::Dot)).await.unwrap();
    store.add_api_key(&t, [1; 32]).await.unwrap();
    assert_eq!(store.find_api_key([1; 32]).await.unwrap(), Some(t.clone()));
    assert_eq!(store.find_api_key([2; 32]).await.unwrap(), None);
    assert!(matches!(
        store.add_api_key(&tenant("ghost"), [3; 32]).await,
        Err(StorageError::TenantNotFound(_))
    ));
}

async fn loading_reports_progress(backend: Backend) {
    let (_, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    store
        .create_tenant(&t, spec(4, Metric::Cosine))
        .await
        .unwrap();
    upsert(&store, &t, &random_entities(250, 4)).await.unwrap();
    let old = (0..10).map(|i| interaction(1, i, 10)).collect();
    let new: Vec<_> = (0..30)
        .map(|i| interaction(2, i, 1_000 + i64::try_from(i).unwrap()))
        .collect();
    record(&store, &t, old).await.unwrap();
    record(&store, &t, new.clone()).await.unwrap();
    let progress = indicatif::ProgressBar::hidden();
    let (mut entities, mut interactions) = (Vec::new(), Vec::new());
    let loaded = load(
        &store,
        &t,
        1_000,
        &progress,
        &mut entities,
        &mut interactions,
    )
    .await;
    assert_eq!((loaded.entities, loaded.interactions), (250, 30));
    assert_eq!(
        loaded.record.version,
        Stamp::new(3),
        "three changes: the entities and two interaction batches"
    );
    assert_eq!(loaded.record.spec, spec(4, Metric::Cosine));
    let missing = store
        .load_tenant(&tenant("ghost"), 0, 100, &progress, &mut NoRows)
        .await
        .unwrap();
    assert!(missing.is_none());
    assert_eq!(
        entities.iter().map(Vec::len).max(),
        Some(100),
        "batches of 100"
    );
    assert_eq!(
        interactions.concat(),
        new,
        "only interactions since the horizon, in order"
    );
    assert_eq!(progress.position(), 280);
    assert_eq!(
        progress.length(),
        Some(280),
        "the length counts the rows to load: the entities and the interactions since the horizon"
    );
    // One bar across tenants: each adds its rows to the total, and the count never passes it.
    let two = tenant("two");
    store
        .create_tenant(&two, spec(4, Metric::Cosine))
        .await
        .unwrap();
    upsert(&store, &two, &random_entities(20, 4)).await.unwrap();
    load(
        &store,
        &two,
        1_000,
        &progress,
        &mut Vec::new(),
        &mut Vec::new(),
    )
    .await;
    assert_eq!((progress.position(), progress.length()), (300, Some(300)));
}

/// A sink that must not be given anything.
struct NoRows;

impl reco_storage::LoadSink for NoRows {
    fn tenant(&mut self, record: reco_storage::TenantRecord) -> reco_storage::Result<()> {
        panic!("no tenant expected: {record:?}")
    }
    fn entities(&mut self, _: Vec<reco_engine::NewEntity>) -> reco_storage::Result<()> {
        panic!("no rows expected")
    }
    fn interactions(&mut self, _: Vec<reco_engine::Interaction>) -> reco_storage::Result<()> {
        panic!("no rows expected")
    }
}

/// Everything a load gives of a tenant: its entities, and its interactions since `since_ms`.
async fn read_back(
    store: &Store,
    t: &reco_engine::TenantName,
    since_ms: i64,
) -> (Vec<reco_engine::NewEntity>, Vec<reco_engine::Interaction>) {
    let (mut entities, mut interactions) = (Vec::new(), Vec::new());
    let progress = indicatif::ProgressBar::hidden();
    load(
        store,
        t,
        since_ms,
        &progress,
        &mut entities,
        &mut interactions,
    )
    .await;
    (entities.concat(), interactions.concat())
}

async fn load(
    store: &Store,
    t: &reco_engine::TenantName,
    since_ms: i64,
    progress: &indicatif::ProgressBar,
    entities: &mut Vec<Vec<reco_engine::NewEntity>>,
    interactions: &mut Vec<Vec<reco_engine::Interaction>>,
) -> reco_storage::Loaded {
    struct Collect<'a> {
        records: Vec<reco_storage::TenantRecord>,
        entities: &'a mut Vec<Vec<reco_engine::NewEntity>>,
        interactions: &'a mut Vec<Vec<reco_engine::Interaction>>,
    }
    impl reco_storage::LoadSink for Collect<'_> {
        fn tenant(&mut self, record: reco_storage::TenantRecord) -> reco_storage::Result<()> {
            assert!(self.entities.is_empty(), "the record comes before any row");
            self.records.push(record);
            Ok(())
        }
        fn entities(&mut self, batch: Vec<reco_engine::NewEntity>) -> reco_storage::Result<()> {
            self.entities.push(batch);
            Ok(())
        }
        fn interactions(
            &mut self,
            batch: Vec<reco_engine::Interaction>,
        ) -> reco_storage::Result<()> {
            self.interactions.push(batch);
            Ok(())
        }
    }
    let mut sink = Collect {
        records: Vec::new(),
        entities,
        interactions,
    };
    let loaded = store
        .load_tenant(t, since_ms, 100, progress, &mut sink)
        .await
        .unwrap()
        .expect("the tenant exists");
    assert_eq!(sink.records, vec![loaded.record]);
    loaded
}

fn model(version: u64, items: usize) -> ModelParts {
    model_of(version, items, 3)
}

fn model_of(version: u64, items: usize, factors: usize) -> ModelParts {
    ModelParts {
        info: ModelInfo {
            version,
            trained_at: 1_000 * i64::try_from(version).unwrap(),
            interactions: 10 * items,
            users: 5,
            items,
            factors,
            seconds: 0.5,
            fold_ins: 0,
            recorded: 12,
        },
        params: LearnParams {
            factors,
            seed: version,
            ..LearnParams::default()
        },
        items: (0..items)
            .map(|n| EntityId::parse(&format!("item-{n}")).unwrap())
            .collect(),
        factors: (0..items * factors)
            .map(|n| f32::from(u16::try_from(n % 60_000).unwrap()) * 0.25 - 1.0)
            .collect(),
    }
}

async fn models_are_kept_by_version_and_go_with_their_tenant(backend: Backend) {
    let (fixture, store) = Fixture::new(backend).await;
    let t = tenant("shop");
    assert!(matches!(
        store.save_model(&t, &model(1, 4)).await,
        Err(StorageError::TenantNotFound(_))
    ));
    store.create_tenant(&t, spec(4, Metric::Dot)).await.unwrap();
    assert_eq!(store.load_model(&t).await.unwrap(), None);
    assert_eq!(store.model_version(&t).await.unwrap(), None);
    assert!(store.save_model(&t, &model(1, 4)).await.unwrap());
    assert!(store.save_model(&t, &model(2, 6)).await.unwrap());
    // An older or equal version changes nothing: versions only go up.
    assert!(!store.save_model(&t, &model(2, 9)).await.unwrap());
    assert!(!store.save_model(&t, &model(1, 4)).await.unwrap());
    assert_eq!(store.model_version(&t).await.unwrap(), Some(2));
    // What a restart reads back is the model kept, exactly (the threads are this machine's).
    drop(store);
    let store = fixture.open().await;
    let mut loaded = store.load_model(&t).await.unwrap().unwrap();
    loaded.params.threads = model(2, 6).params.threads;
    assert_eq!(loaded, model(2, 6));
    // The training lock is given (that a second holder is refused meanwhile is PostgreSQL's:
    // see `one_server_trains_at_a_time_and_the_others_hear_of_the_model`).
    let held = store.training_lock(&t).await.unwrap();
    assert!(held.is_some());
    drop(held);
    // An EASE model says its item count in `factors`: up to EASE's 2,500 items are kept.
    let ease = model_of(3, 2_500, 2_500);
    assert!(store.save_model(&t, &ease).await.unwrap());
    let mut loaded = store.load_model(&t).await.unwrap().unwrap();
    loaded.params.threads = ease.params.threads;
    assert_eq!(loaded, ease);
    // Deleting the tenant deletes its model.
    store.delete_tenant(&t).await.unwrap();
    store.create_tenant(&t, spec(4, Metric::Dot)).await.unwrap();
    assert_eq!(store.load_model(&t).await.unwrap(), None);
}
