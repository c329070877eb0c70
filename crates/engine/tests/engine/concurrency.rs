//! Readers during writes: no half-applied batch is ever seen, and concurrent writers lose
//! nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use reco_engine::{
    Engine, EngineConfig, Installed, Lineage, Metric, NewEntity, SearchOptions, Stamp, TenantName,
    TenantSpec,
};

use crate::reference::{Model, assert_agrees};
use crate::support::{all_scores, batch, engine, id};

const ENTITIES: usize = 300;
const VERSIONS: usize = 150;

/// Every batch gives all entities the vector `[v, 1]`: within one snapshot, every similar score
/// is `v * v + 1`. A reader that saw scores of two versions would have seen half a batch.
#[test]
fn readers_never_see_half_a_batch() {
    let (engine, tenant, _) = engine(Metric::Dot, 2, false);
    let version = |v: usize| -> Vec<NewEntity> {
        (0..ENTITIES)
            .map(|n| NewEntity {
                id: id(n),
                vector: vec![v as f32, 1.0],
                category: Some(format!("v{v}")),
                tags: Vec::new(),
                attributes: None,
            })
            .collect()
    };
    engine.upsert(&tenant, version(0)).unwrap();
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let readers: Vec<_> = (0..3)
            .map(|_| {
                s.spawn(|| {
                    let mut last = 0.0f32;
                    let mut reads = 0;
                    while !done.load(Ordering::Acquire) || reads == 0 {
                        let answer = engine
                            .similar(&tenant, &id(0), &SearchOptions::top(100))
                            .unwrap();
                        let results = &answer.ranking.results;
                        assert_eq!(results.len(), 100);
                        let first = results[0].score;
                        assert!(
                            results.iter().all(|r| r.score == first),
                            "a half-applied batch"
                        );
                        assert!(first >= last, "a reader went back in time");
                        last = first;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        for v in 1..=VERSIONS {
            engine.upsert(&tenant, version(v)).unwrap();
            if v % 10 == 0 {
                assert!(engine.delete(&tenant, &id(ENTITIES - 1)).unwrap());
                engine.upsert(&tenant, version(v)).unwrap();
            }
        }
        done.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
    });
    let last = engine.get(&tenant, &id(0)).unwrap();
    assert_eq!(last.vector, [VERSIONS as f32, 1.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Two writers on disjoint ids, concurrently: the end state is both of their writes.
    #[test]
    fn concurrent_writers_lose_nothing(
        left in prop::collection::vec(batch(3, Metric::Euclidean), 1..6),
        right in prop::collection::vec(batch(3, Metric::Euclidean), 1..6),
    ) {
        let (engine, tenant, _) = engine(Metric::Euclidean, 3, false);
        // Left writes even ids and right odd ones, so the order between them does not matter.
        let keep = |batches: Vec<Vec<NewEntity>>, parity: usize| -> Vec<Vec<NewEntity>> {
            batches
                .into_iter()
                .map(|b| b.into_iter().filter(|e| e.id.as_str()[1..].parse::<usize>().unwrap() % 2 == parity).collect())
                .collect()
        };
        let (left, right) = (keep(left, 0), keep(right, 1));
        thread::scope(|s| {
            for batches in [&left, &right] {
                let (engine, tenant) = (&engine, &tenant);
                s.spawn(move || {
                    for b in batches {
                        engine.upsert(tenant, b.clone()).unwrap();
                    }
                });
            }
        });
        let mut model = Model::new(Metric::Euclidean);
        for b in left.iter().chain(&right) {
            model.upsert(b);
        }
        prop_assert_eq!(engine.tenant_info(&tenant).unwrap().entities, model.items.len());
        for (target, item) in &model.items {
            let answer = engine.similar(&tenant, &reco_engine::EntityId::parse(target).unwrap(), &SearchOptions::top(50)).unwrap();
            let conditions = crate::reference::Conditions { exclude: vec![target.clone()], ..Default::default() };
            let expected = model.rank(&conditions, None, 50, 0, |other| model.score(&item.vector, &other.vector));
            let scores = all_scores(&model, |id| model.score(&item.vector, &model.items[id].vector));
            assert_agrees(&answer.ranking.results, &expected, &scores, 0.0);
        }
    }
}

/// A row of 16 components from a few residues of `n`.
fn sixteen(n: usize, scale: usize) -> NewEntity {
    NewEntity {
        id: id(n),
        vector: (0..16)
            .map(|d| ((n * 31 + d * 17) % scale) as f32 + 1.0)
            .collect(),
        category: None,
        tags: Vec::new(),
        attributes: None,
    }
}

/// Starts a write that holds `busy` for a second or more (a graph build of 15,000 entities,
/// in tests), and returns once it holds the tenant's writer.
fn start_a_long_write<'s>(s: &'s thread::Scope<'s, '_>, engine: &'s Engine, busy: &'s TenantName) {
    let rows: Vec<NewEntity> = (0..15_000).map(|n| sixteen(n, 97)).collect();
    let (started, starting) = mpsc::channel();
    s.spawn(move || {
        started.send(()).unwrap();
        engine.upsert(busy, rows).unwrap();
    });
    starting.recv().unwrap();
    // The batch is checked in a few milliseconds; then its write holds the tenant.
    thread::sleep(Duration::from_millis(300));
}

/// Installing a reloaded tenant waits for that tenant's writer, and for nothing else: while a
/// long write holds one tenant (a graph build of 15,000 entities, a second or more in tests), the
/// install waits for it, and another tenant is written and read meanwhile. The install used to
/// wait holding the registry's lock, which stalled every tenant until the long write ended.
#[test]
fn installing_a_tenant_waits_for_its_writer_without_stalling_the_others() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let busy = TenantName::parse("busy").unwrap();
    let other = TenantName::parse("other").unwrap();
    let spec = TenantSpec::new(16, Metric::Cosine).unwrap();
    engine.create_tenant(busy.clone(), spec).unwrap();
    engine.create_tenant(other.clone(), spec).unwrap();
    let row = &sixteen;
    thread::scope(|s| {
        start_a_long_write(s, &engine, &busy);
        let staged = engine
            .stage_tenant(busy.clone(), spec, Lineage::new(1), Stamp::ZERO)
            .unwrap();
        let install = s.spawn(|| engine.install(staged));
        thread::sleep(Duration::from_millis(50));
        // The other tenant's write takes microseconds; a second is far more than it needs and
        // far less than what is left of the busy write.
        let (done, finished) = mpsc::channel();
        let (engine, other, row) = (&engine, &other, &row);
        s.spawn(move || {
            engine.upsert(other, vec![row(1, 7)]).unwrap();
            done.send(engine.tenant_info(other).unwrap().entities)
                .unwrap();
        });
        assert_eq!(
            finished.recv_timeout(Duration::from_secs(1)),
            Ok(1),
            "the other tenant waited for the busy one's write"
        );
        assert_eq!(install.join().unwrap(), Installed::Replaced);
    });
    assert_eq!(engine.lineage(&busy).unwrap(), Lineage::new(1));
}

/// Which stamp a tenant has applied is read without waiting for a write in progress: an async
/// host asks it from its event loop while a write may hold the tenant for seconds. It used to
/// take the writer's lock, so the host's thread stalled for the whole write.
#[test]
fn the_applied_stamp_is_read_without_waiting_for_a_write() {
    let engine = Engine::new(EngineConfig::default()).unwrap();
    let busy = TenantName::parse("busy").unwrap();
    let spec = TenantSpec::new(16, Metric::Cosine).unwrap();
    engine.create_tenant(busy.clone(), spec).unwrap();
    thread::scope(|s| {
        start_a_long_write(s, &engine, &busy);
        let (done, finished) = mpsc::channel();
        let (engine, busy) = (&engine, &busy);
        s.spawn(move || done.send(engine.applied(busy).unwrap()).unwrap());
        // The write takes a second or more here; the read must not wait for it. (On a machine
        // fast enough to finish the write first, the stamp read is 1, and that is no failure.)
        let read = finished.recv_timeout(Duration::from_secs(1));
        assert!(
            matches!(read, Ok(stamp) if stamp <= Stamp::new(1)),
            "the stamp was read after the write, not during it: {read:?}"
        );
    });
    assert_eq!(engine.applied(&busy).unwrap(), Stamp::new(1));
}
