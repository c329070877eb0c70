//! What only PostgreSQL does: session settings, ranking with pgvector (checked against the
//! engine), and the change feed between servers.

use std::time::Duration;

use reco_engine::{
    ChangeId, CheckedEntities, Engine, EngineConfig, EntityId, Filter, Metric, SearchOptions,
    Stamp, TenantName,
};
use reco_storage::{Change, DbSearch, PostgresSettings, StorageError, Store};
use sqlx::Row;

use crate::helpers::{
    Backend, Fixture, interaction, random_entities, record, spec, tenant, upsert,
};

#[tokio::test]
async fn every_connection_gets_the_session_settings() {
    let (fixture, _) = Fixture::new(Backend::Postgres).await;
    let settings = PostgresSettings {
        max_connections: 5,
        min_connections: 3,
        ..PostgresSettings::default()
    };
    let store = reco_storage::PgStore::connect(fixture.url(), settings)
        .await
        .unwrap();
    // Every connection of the pool, not only the first, runs the SET statements.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(store.pool().acquire().await.unwrap());
    }
    for conn in &mut held {
        let row = sqlx::query(
            "SELECT current_setting('statement_timeout'), current_setting('work_mem'), \
             current_setting('max_parallel_workers_per_gather'), current_setting('hnsw.ef_search')",
        )
        .fetch_one(&mut **conn)
        .await
        .unwrap();
        let got: (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        assert_eq!(got, ("10s".into(), "16MB".into(), "4".into(), "100".into()));
    }
    let stats = store.pool_stats();
    assert_eq!(
        (stats.size, stats.idle, stats.waiting, stats.max),
        (3, 0, 0, 5)
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.pool_stats().idle, 3);
}

/// A pool asked for generic plans sets them on every session, and its writes (each statement
/// run more times than PostgreSQL's five custom plans) and loads give what the default gives.
#[tokio::test]
async fn a_pool_with_generic_plans_writes_and_loads_alike() {
    let (fixture, _) = Fixture::new(Backend::Postgres).await;
    let settings = PostgresSettings {
        generic_plans: true,
        ..crate::helpers::small_pool()
    };
    let store = Store::open(
        Some(fixture.url()),
        settings,
        reco_storage::SqliteSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(plan_cache_mode(&store).await, "force_generic_plan");
    let t = tenant("shop");
    store.create_tenant(&t, spec(4, Metric::Dot)).await.unwrap();
    for n in 0..12 {
        let mut one = random_entities(1, 4);
        one[0].id = EntityId::parse(&format!("g{n:02}")).unwrap();
        upsert(&store, &t, &one).await.unwrap();
        record(&store, &t, vec![interaction(n, n, 1_000)])
            .await
            .unwrap();
    }
    let mut count = Count::default();
    store
        .load_tenant(&t, 0, 5, &indicatif::ProgressBar::hidden(), &mut count)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(count.entities, 12);
    assert_eq!(count.record.unwrap().version.get(), 24);
    // The default leaves PostgreSQL's own choice.
    assert_eq!(plan_cache_mode(&fixture.open().await).await, "auto");
}

/// The `plan_cache_mode` of a session of the store's pool.
async fn plan_cache_mode(store: &Store) -> String {
    let Store::Postgres(pg) = store else {
        panic!("PostgreSQL")
    };
    sqlx::query_scalar("SELECT current_setting('plan_cache_mode')")
        .fetch_one(pg.pool())
        .await
        .unwrap()
}

/// pgvector's exact order is the engine's exact order, for every metric, with filters.
#[tokio::test]
async fn pgvector_exact_order_matches_the_engine() {
    let (_, store) = Fixture::new(Backend::Postgres).await;
    for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
        let t = tenant(metric.as_str());
        let dimension = 16;
        store
            .create_tenant(&t, spec(dimension, metric))
            .await
            .unwrap();
        let batch = random_entities(400, dimension);
        upsert(&store, &t, &batch).await.unwrap();
        let engine = Engine::new(EngineConfig::default()).unwrap();
        engine
            .create_tenant(t.clone(), spec(dimension, metric))
            .unwrap();
        engine.upsert(&t, batch.clone()).unwrap();
        let filters = [
            Filter::default(),
            Filter {
                category: Some("c1".into()),
                ..Filter::default()
            },
            Filter {
                tags_any: vec!["t0".into(), "t2".into()],
                ..Filter::default()
            },
            Filter {
                tags_all: vec!["t3".into(), "all".into()],
                exclude: vec![EntityId::parse("e00007").unwrap()],
                ..Filter::default()
            },
        ];
        for (q, filter) in filters.iter().enumerate() {
            let target = &batch[q * 37];
            let options = SearchOptions {
                k: 20,
                offset: 3,
                filter: filter.clone(),
                exact: true,
                ..SearchOptions::default()
            };
            let expected = engine
                .similar(&t, &target.id, &options)
                .unwrap()
                .ranking
                .results
                .clone();
            let query = DbSearch {
                vector: &target.vector,
                k: 20,
                offset: 3,
                filter,
                exclude: std::slice::from_ref(&target.id),
                score_threshold: None,
                exact: true,
            };
            let got = store
                .search(&t, spec(dimension, metric), &query)
                .await
                .unwrap();
            assert_eq!(got.len(), expected.len(), "{metric} filter {q}");
            for (i, ((id, score), want)) in got.iter().zip(&expected).enumerate() {
                assert!(
                    (score - want.score).abs() < 1e-4,
                    "{metric} {q} #{i}: {score} vs {}",
                    want.score
                );
                // Ids agree except within float ties.
                if id != &want.id {
                    let tied = expected
                        .iter()
                        .any(|e| &e.id == id && (e.score - want.score).abs() < 1e-4);
                    assert!(
                        tied,
                        "{metric} {q} #{i}: {id} where the engine has {}",
                        want.id
                    );
                }
            }
        }
        // The HNSW index answers too, close to exact, and thresholds hold.
        let target = &batch[0];
        let approximate = DbSearch {
            vector: &target.vector,
            k: 10,
            offset: 0,
            filter: &Filter::default(),
            exclude: std::slice::from_ref(&target.id),
            score_threshold: None,
            exact: false,
        };
        let exact = DbSearch {
            exact: true,
            ..approximate.clone()
        };
        let hnsw = store
            .search(&t, spec(dimension, metric), &approximate)
            .await
            .unwrap();
        let full = store
            .search(&t, spec(dimension, metric), &exact)
            .await
            .unwrap();
        let hits = hnsw
            .iter()
            .filter(|(id, _)| full.iter().any(|(f, _)| f == id))
            .count();
        assert!(hits >= 8, "{metric}: recall@10 of HNSW is {hits}/10");
        // Halfway between the fifth and the sixth: clear of rounding at either.
        let bar = (full[4].1 + full[5].1) / 2.0;
        let limited = DbSearch {
            score_threshold: Some(bar),
            ..exact.clone()
        };
        let within = store
            .search(&t, spec(dimension, metric), &limited)
            .await
            .unwrap();
        assert_eq!(
            within.len(),
            5,
            "{metric}: the threshold keeps the first five"
        );
    }
}

#[tokio::test]
async fn the_database_mode_uses_the_hnsw_index_unless_exact() {
    let (fixture, store) = Fixture::new(Backend::Postgres).await;
    let t = tenant("shop");
    store
        .create_tenant(&t, spec(8, Metric::Cosine))
        .await
        .unwrap();
    upsert(&store, &t, &random_entities(2_000, 8))
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect(fixture.url()).await.unwrap();
    sqlx::query("ANALYZE entities")
        .execute(&mut conn)
        .await
        .unwrap();
    let plan = |sql: &'static str| {
        let url = fixture.url().to_owned();
        async move {
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let rows = sqlx::query(sql).fetch_all(&mut conn).await.unwrap();
            rows.iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let approximate = plan(
        "EXPLAIN SELECT id FROM entities WHERE tenant = 'shop' \
         ORDER BY (embedding::vector(8)) <=> '[1,0,0,0,0,0,0,0]'::vector(8) LIMIT 10",
    )
    .await;
    assert!(approximate.contains("entities_hnsw_"), "{approximate}");
    let exact = plan(
        "EXPLAIN SELECT id FROM entities WHERE tenant = 'shop' \
         ORDER BY embedding <=> '[1,0,0,0,0,0,0,0]'::vector LIMIT 10",
    )
    .await;
    assert!(!exact.contains("hnsw"), "{exact}");
    let by_batch =
        plan("EXPLAIN SELECT id FROM entities WHERE tenant = 'shop' AND batch = 3").await;
    assert!(by_batch.contains("entities_batch"), "{by_batch}");
    let recent =
        plan("EXPLAIN SELECT seq FROM interactions WHERE tenant = 'shop' AND at_ms >= 5").await;
    assert!(
        recent.contains("interactions_recent") || recent.contains("Seq Scan on interactions"),
        "{recent}"
    );
    let key = plan("EXPLAIN SELECT tenant FROM api_keys WHERE hash = '\\x00'").await;
    assert!(key.contains("api_keys_pkey"), "{key}");
}

use sqlx::Connection;

/// Two servers on one database: what one writes, the other hears within a second.
#[tokio::test]
async fn the_change_feed_reaches_another_server_within_a_second() {
    let (fixture, writer) = Fixture::new(Backend::Postgres).await;
    let reader = fixture.open().await;
    let mut feed = reader
        .subscribe()
        .await
        .unwrap()
        .expect("PostgreSQL has a feed");
    let mut own = writer
        .subscribe()
        .await
        .unwrap()
        .expect("PostgreSQL has a feed");
    let t = tenant("shop");
    let (_, lineage) = writer
        .create_tenant(&t, spec(4, Metric::Dot))
        .await
        .unwrap();
    let batch = random_entities(30, 4);
    let at = |n: u64| ChangeId::new(lineage, Stamp::new(n));
    assert_eq!(upsert(&writer, &t, &batch).await.unwrap(), at(1));
    let recorded = record(
        &writer,
        &t,
        vec![interaction(1, 2, 3), interaction(4, 5, 6)],
    )
    .await
    .unwrap();
    assert_eq!(recorded, at(2));
    let deleted = writer.delete_entity(&t, &batch[0].id).await.unwrap();
    assert_eq!(deleted, Some(at(3)));
    writer.delete_tenant(&t).await.unwrap();

    let mut heard = Vec::new();
    for _ in 0..5 {
        let change = tokio::time::timeout(Duration::from_secs(1), feed.next()).await;
        heard.push(change.expect("within a second").unwrap());
    }
    let expected = vec![
        Change::TenantCreated {
            tenant: t.clone(),
            lineage,
        },
        Change::Entities {
            tenant: t.clone(),
            change: at(1),
        },
        Change::Interactions {
            tenant: t.clone(),
            change: at(2),
        },
        Change::EntityDeleted {
            tenant: t.clone(),
            change: at(3),
            id: batch[0].id.clone(),
        },
        Change::TenantDeleted {
            tenant: t.clone(),
            lineage,
        },
    ];
    assert_eq!(heard, expected);
    // The writer hears its own changes too, the same ones in the same order: the engine
    // applies each stamp once, whoever hears it first.
    for change in expected {
        let mine = tokio::time::timeout(Duration::from_secs(1), own.next()).await;
        assert_eq!(mine.expect("within a second").unwrap(), change);
    }
}

#[tokio::test]
async fn a_notified_batch_can_be_fetched() {
    let (fixture, writer) = Fixture::new(Backend::Postgres).await;
    let reader = fixture.open().await;
    let Store::Postgres(pg) = &reader else {
        panic!("PostgreSQL")
    };
    let mut feed = reader.subscribe().await.unwrap().unwrap();
    let t = tenant("shop");
    writer
        .create_tenant(&t, spec(4, Metric::Dot))
        .await
        .unwrap();
    let batch = random_entities(12, 4);
    upsert(&writer, &t, &batch).await.unwrap();
    let sent = vec![interaction(1, 2, 3), interaction(4, 5, 6)];
    record(&writer, &t, sent.clone()).await.unwrap();
    let _created = feed.next().await.unwrap();
    let Change::Entities { change: b, .. } = feed.next().await.unwrap() else {
        panic!()
    };
    let mut got = pg.entities_in_batch(&t, b).await.unwrap();
    got.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        got.iter().map(|e| &e.vector).collect::<Vec<_>>(),
        batch.iter().map(|e| &e.vector).collect::<Vec<_>>()
    );
    let Change::Interactions { change: b, .. } = feed.next().await.unwrap() else {
        panic!()
    };
    assert_eq!(pg.interactions_in_batch(&t, b).await.unwrap(), sent);
    // A change names its incarnation: made again, the tenant's change of the same stamp is
    // another, and the old change's rows are gone with the old incarnation.
    writer.delete_tenant(&t).await.unwrap();
    writer
        .create_tenant(&t, spec(4, Metric::Dot))
        .await
        .unwrap();
    upsert(&writer, &t, &batch).await.unwrap();
    record(&writer, &t, sent.clone()).await.unwrap();
    assert!(pg.interactions_in_batch(&t, b).await.unwrap().is_empty());
    let again = ChangeId::new(b.lineage, Stamp::new(1));
    assert!(pg.entities_in_batch(&t, again).await.unwrap().is_empty());
}

#[tokio::test]
async fn sqlite_does_not_rank() {
    let (_, store) = Fixture::new(Backend::Sqlite).await;
    let t: TenantName = tenant("shop");
    store.create_tenant(&t, spec(2, Metric::Dot)).await.unwrap();
    let query = DbSearch {
        vector: &[1.0, 0.0],
        k: 1,
        offset: 0,
        filter: &Filter::default(),
        exclude: &[],
        score_threshold: None,
        exact: true,
    };
    let err = store
        .search(&t, spec(2, Metric::Dot), &query)
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unsupported(_)));
    assert!(store.subscribe().await.unwrap().is_none());
}

/// Counts what a load hands over.
#[derive(Default)]
struct Count {
    record: Option<reco_storage::TenantRecord>,
    entities: usize,
}

impl reco_storage::LoadSink for Count {
    fn tenant(&mut self, record: reco_storage::TenantRecord) -> reco_storage::Result<()> {
        self.record = Some(record);
        Ok(())
    }
    fn entities(&mut self, batch: Vec<reco_engine::NewEntity>) -> reco_storage::Result<()> {
        self.entities += batch.len();
        Ok(())
    }
    fn interactions(&mut self, _: Vec<reco_engine::Interaction>) -> reco_storage::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn a_load_during_writes_is_exactly_the_state_of_its_version() {
    let (fixture, writer) = Fixture::new(Backend::Postgres).await;
    let reader = fixture.open().await;
    let t = tenant("shop");
    writer
        .create_tenant(&t, spec(4, Metric::Dot))
        .await
        .unwrap();
    // Every change adds exactly one new entity, so a consistent load holds as many entities
    // as its version says changes were made.
    let writes = tokio::spawn({
        let (writer, t) = (writer.clone(), t.clone());
        async move {
            for n in 0..300 {
                let mut one = random_entities(1, 4);
                one[0].id = EntityId::parse(&format!("w{n:04}")).unwrap();
                upsert(&writer, &t, &one).await.unwrap();
            }
        }
    });
    let mut seen = Vec::new();
    while !writes.is_finished() {
        let mut count = Count::default();
        // Pages of 7 rows: many round trips, so writes land between them.
        reader
            .load_tenant(&t, 0, 7, &indicatif::ProgressBar::hidden(), &mut count)
            .await
            .unwrap()
            .unwrap();
        let version = count.record.unwrap().version;
        assert_eq!(
            count.entities as u64,
            version.get(),
            "rows and version agree"
        );
        seen.push(version);
    }
    writes.await.unwrap();
    assert!(
        seen.iter().any(|v| (1..300).contains(&v.get())),
        "some load ran while writes were landing: {seen:?}"
    );
}

#[tokio::test]
async fn concurrent_upserts_each_get_their_own_stamp_and_a_bad_one_fails_alone() {
    let (_, store) = Fixture::new(Backend::Postgres).await;
    let (t, ghost) = (tenant("shop"), tenant("ghost"));
    store.create_tenant(&t, spec(4, Metric::Dot)).await.unwrap();
    let writers = (0..30).map(|w| {
        let store = store.clone();
        let (t, ghost) = (t.clone(), ghost.clone());
        tokio::spawn(async move {
            let target = if w == 7 { ghost } else { t };
            let mut batch = random_entities(3, 4);
            for (i, e) in batch.iter_mut().enumerate() {
                e.id = EntityId::parse(&format!("w{w}-{i}")).unwrap();
            }
            upsert(&store, &target, &batch).await
        })
    });
    let mut stamps = Vec::new();
    for (w, result) in futures::future::join_all(writers)
        .await
        .into_iter()
        .enumerate()
    {
        match result.unwrap() {
            Ok(change) => stamps.push(change.stamp.get()),
            Err(StorageError::TenantNotFound(_)) => assert_eq!(w, 7),
            Err(other) => panic!("writer {w}: {other:?}"),
        }
    }
    stamps.sort_unstable();
    assert_eq!(stamps, (1..=29).collect::<Vec<u64>>());
    assert_eq!(store.counts(&t).await.unwrap().0, 29 * 3);
}

/// Batches checked against the tenant's settings and batches checked against other settings
/// (the tenant was made again in between) arrive together and share commits: the statement
/// that takes the tenant's version checks the settings, so the others are refused, each alone,
/// and every right one is written with a stamp of its own.
#[tokio::test]
async fn grouped_upserts_checked_against_other_settings_fail_alone() {
    let (_, store) = Fixture::new(Backend::Postgres).await;
    let t = tenant("shop");
    store.create_tenant(&t, spec(2, Metric::Dot)).await.unwrap();
    let writers = (0..40).map(|w| {
        let (store, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            let dimension = if w % 4 == 3 { 3 } else { 2 };
            let mut batch = random_entities(2, dimension);
            for (i, e) in batch.iter_mut().enumerate() {
                e.id = EntityId::parse(&format!("w{w}-{i}")).unwrap();
            }
            let checked = CheckedEntities::new(spec(dimension, Metric::Dot), batch).unwrap();
            (w, store.upsert_entities(&t, &checked).await)
        })
    });
    let mut stamps = Vec::new();
    for (w, result) in futures::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
    {
        match result {
            Ok(change) if w % 4 != 3 => stamps.push(change.stamp.get()),
            Err(StorageError::TenantConflict { settings, .. }) if w % 4 == 3 => {
                assert!(settings.starts_with("dimension 2"), "{settings}");
            }
            other => panic!("writer {w}: {other:?}"),
        }
    }
    stamps.sort_unstable();
    assert_eq!(stamps, (1..=30).collect::<Vec<u64>>());
    assert_eq!(store.counts(&t).await.unwrap().0, 30 * 2);
}

/// Writers that share commits write the same ids: each still gets a stamp of its own and a
/// notice, and each entity ends as the writer with the highest stamp left it, as if the
/// batches had been written one after the other.
#[tokio::test]
async fn grouped_upserts_of_the_same_ids_end_as_the_last_batch_left_them() {
    let (fixture, store) = Fixture::new(Backend::Postgres).await;
    let reader = fixture.open().await;
    let Store::Postgres(pg) = &reader else {
        panic!("PostgreSQL")
    };
    let mut feed = reader.subscribe().await.unwrap().unwrap();
    let t = tenant("shop");
    store.create_tenant(&t, spec(2, Metric::Dot)).await.unwrap();
    let writers = (0..40u8).map(|w| {
        let (store, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            let mut batch = random_entities(3, 2);
            for (i, e) in batch.iter_mut().enumerate() {
                e.id = EntityId::parse(&format!("x{i}")).unwrap();
                e.vector = vec![f32::from(w), 1.0];
            }
            (w, upsert(&store, &t, &batch).await.unwrap())
        })
    });
    let mut written: Vec<(u8, ChangeId)> = futures::future::join_all(writers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    written.sort_by_key(|(_, change)| change.stamp);
    let stamps: Vec<u64> = written.iter().map(|(_, c)| c.stamp.get()).collect();
    assert_eq!(stamps, (1..=40).collect::<Vec<u64>>());
    let (last, change) = *written.last().unwrap();
    let mut rows = pg.entities_in_batch(&t, change).await.unwrap();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row.vector, vec![f32::from(last), 1.0]);
    }
    assert_eq!(store.counts(&t).await.unwrap().0, 3);
    // The feed brings every stamp, in order.
    let _created = feed.next().await.unwrap();
    for want in 1..=40 {
        let Change::Entities { change, .. } = feed.next().await.unwrap() else {
            panic!("an entity change")
        };
        assert_eq!(change.stamp.get(), want);
    }
}

#[tokio::test]
async fn the_vector_index_is_kept_only_when_asked_for() {
    let (fixture, _) = Fixture::new(Backend::Postgres).await;
    let open = |vector_index: bool| {
        let url = fixture.url().to_owned();
        async move {
            let settings = PostgresSettings {
                vector_index,
                ..crate::helpers::small_pool()
            };
            Store::open(
                Some(&url),
                settings,
                reco_storage::SqliteSettings::default(),
            )
            .await
            .unwrap()
        }
    };
    let indexes = |store: Store| async move {
        let Store::Postgres(pg) = store else {
            panic!("PostgreSQL")
        };
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_indexes WHERE indexname LIKE 'entities_hnsw_%'",
        )
        .fetch_one(pg.pool())
        .await
        .unwrap();
        n
    };
    let memory = open(false).await;
    memory
        .create_tenant(&tenant("shop"), spec(4, Metric::Dot))
        .await
        .unwrap();
    upsert(&memory, &tenant("shop"), &random_entities(20, 4))
        .await
        .unwrap();
    memory.migrate().await.unwrap();
    assert_eq!(
        indexes(memory).await,
        0,
        "writes do not maintain an unused index"
    );
    // A server that ranks in the database builds what is missing when it migrates.
    let database = open(true).await;
    database.migrate().await.unwrap();
    database
        .create_tenant(&tenant("blog"), spec(2, Metric::Cosine))
        .await
        .unwrap();
    assert_eq!(indexes(database.clone()).await, 2);
    // A server that ranks in memory again drops them, and every row stays.
    let memory = open(false).await;
    memory.migrate().await.unwrap();
    assert_eq!(
        indexes(memory.clone()).await,
        0,
        "indexes another mode built are not kept"
    );
    assert_eq!(memory.counts(&tenant("shop")).await.unwrap().0, 20);
}

/// A group of writes takes its tenants' row locks in name order, whatever order its writes
/// arrived in, as interaction groups do: then two servers' groups can never wait for each other
/// in a cycle. Entity groups once locked in arrival order, and PostgreSQL aborted one of two
/// such groups as a deadlock. Here a transaction plays the other server: it holds `a` and then
/// asks for `b`, while a group that arrived as `b, a` is waiting.
#[tokio::test]
async fn a_group_locks_its_tenants_in_name_order() {
    let (fixture, store) = Fixture::new(Backend::Postgres).await;
    let (a, b, c) = (tenant("a"), tenant("b"), tenant("c"));
    for t in [&a, &b, &c] {
        store.create_tenant(t, spec(4, Metric::Dot)).await.unwrap();
    }
    let lock = async |name: &str| {
        let mut conn = sqlx::PgConnection::connect(fixture.url()).await.unwrap();
        sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
        sqlx::query("SELECT 1 FROM tenants WHERE name = $1 FOR UPDATE")
            .bind(name)
            .execute(&mut conn)
            .await
            .unwrap();
        conn
    };
    // The writer is kept busy on `c`, so that the next two writes queue up and go as one
    // group, in the order they arrived: `b`, then `a`.
    let mut holds_c = lock("c").await;
    let write = |t: &TenantName, who: &str| {
        let (store, t) = (store.clone(), t.clone());
        let mut rows = random_entities(3, 4);
        for (i, e) in rows.iter_mut().enumerate() {
            e.id = EntityId::parse(&format!("{who}-{i}")).unwrap();
        }
        tokio::spawn(async move { upsert(&store, &t, &rows).await })
    };
    let first = write(&c, "first");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let to_b = write(&b, "b");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let to_a = write(&a, "a");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut other = lock("a").await;
    sqlx::query("COMMIT").execute(&mut holds_c).await.unwrap();
    first.await.unwrap().unwrap();
    // The group now waits for `a`. Holding nothing else, it lets the other take `b`.
    tokio::time::sleep(Duration::from_millis(200)).await;
    sqlx::query("SET lock_timeout = '500ms'")
        .execute(&mut other)
        .await
        .unwrap();
    let took_b = sqlx::query("SELECT 1 FROM tenants WHERE name = 'b' FOR UPDATE")
        .execute(&mut other)
        .await;
    sqlx::query(if took_b.is_ok() { "COMMIT" } else { "ROLLBACK" })
        .execute(&mut other)
        .await
        .unwrap();
    assert!(
        took_b.is_ok(),
        "the group held `b` while it waited for `a`: {took_b:?}"
    );
    to_b.await.unwrap().unwrap();
    to_a.await.unwrap().unwrap();
}

/// Servers sharing the database train a tenant one at a time: the advisory lock goes to one
/// holder until it is dropped (also when its connection dies with its process), and a kept
/// model is announced to every server with its incarnation and version.
#[tokio::test]
async fn one_server_trains_at_a_time_and_the_others_hear_of_the_model() {
    let (fixture, one) = Fixture::new(Backend::Postgres).await;
    let two = fixture.open().await;
    let t = tenant("shop");
    let (_, lineage) = one.create_tenant(&t, spec(4, Metric::Dot)).await.unwrap();
    let mut feed = two.subscribe().await.unwrap().unwrap();
    let held = one.training_lock(&t).await.unwrap().expect("free at first");
    assert!(
        two.training_lock(&t).await.unwrap().is_none(),
        "held by the first"
    );
    assert!(
        one.training_lock(&tenant("other")).await.unwrap().is_some(),
        "one lock per tenant"
    );
    drop(held);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let again = loop {
        if let Some(lock) = two.training_lock(&t).await.unwrap() {
            break lock;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    drop(again);
    let parts = reco_engine::ModelParts {
        info: reco_engine::ModelInfo {
            version: 1,
            trained_at: 5,
            interactions: 1,
            users: 1,
            items: 1,
            factors: 2,
            seconds: 0.1,
            fold_ins: 0,
            recorded: 1,
        },
        params: reco_engine::LearnParams {
            factors: 2,
            ..reco_engine::LearnParams::default()
        },
        items: vec![EntityId::parse("a").unwrap()],
        factors: vec![1.0, 2.0],
    };
    assert!(one.save_model(&t, &parts).await.unwrap());
    let heard = loop {
        let change = tokio::time::timeout(Duration::from_secs(1), feed.next())
            .await
            .expect("within a second")
            .unwrap();
        if let Change::Model { .. } = change {
            break change;
        }
    };
    assert_eq!(
        heard,
        Change::Model {
            tenant: t.clone(),
            lineage,
            version: 1
        }
    );
    // A model not kept (not newer) is not announced.
    assert!(!one.save_model(&t, &parts).await.unwrap());
    assert!(
        tokio::time::timeout(Duration::from_millis(300), feed.next())
            .await
            .is_err()
    );
}
