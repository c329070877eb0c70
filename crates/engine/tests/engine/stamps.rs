//! Stamped writes: a host that orders its changes gets each applied once and in order, and two
//! engines that applied the same stamps name their answers alike, so a shared cache can hold them.

use reco_engine::{
    Applied, CacheStatus, ChangeId, CheckedEntities, CheckedInteractions, Engine, EngineConfig,
    EngineError, Installed, Interaction, InteractionKind, Lineage, Metric, NewEntity,
    SearchOptions, Stamp, TenantName, TenantSpec, TrendingQuery, UserId, Window,
};

use crate::support::{START, engine, id};

fn entity(n: usize, vector: [f32; 2]) -> NewEntity {
    NewEntity {
        id: id(n),
        vector: vector.to_vec(),
        category: None,
        tags: Vec::new(),
        attributes: None,
    }
}

fn view(user: &str, n: usize) -> Interaction {
    Interaction {
        user: UserId::parse(user).unwrap(),
        entity: id(n),
        kind: InteractionKind::Like,
        weight: None,
        timestamp: START,
    }
}

/// Change `n` of the incarnation of `t` that `engine` holds.
fn at(engine: &Engine, t: &TenantName, n: u64) -> ChangeId {
    ChangeId::new(engine.lineage(t).unwrap(), Stamp::new(n))
}

/// A batch checked as a host checks it before storage, for the `*_at` writes.
fn checked(batch: Vec<NewEntity>) -> CheckedEntities {
    CheckedEntities::new(TenantSpec::new(2, Metric::Dot).unwrap(), batch).unwrap()
}

fn checked_interactions(batch: Vec<Interaction>) -> CheckedInteractions {
    CheckedInteractions::new(batch).unwrap()
}

fn stamped_engine(lineage: u64) -> (Engine, TenantName) {
    let (engine, _, _) = engine(Metric::Dot, 2, true);
    let tenant = TenantName::parse("stamped").unwrap();
    let spec = TenantSpec::new(2, Metric::Dot).unwrap();
    engine
        .create_tenant_at(tenant.clone(), spec, Lineage::new(lineage), Stamp::ZERO)
        .unwrap();
    (engine, tenant)
}

#[test]
fn stamps_apply_once_and_in_order() {
    let (engine, t) = stamped_engine(7);
    let first = vec![entity(1, [1.0, 0.0]), entity(2, [0.0, 1.0])];
    assert_eq!(
        engine
            .upsert_at(&t, at(&engine, &t, 1), checked(first))
            .unwrap(),
        Applied::Done(2)
    );
    // The same stamp again changes nothing, even with other rows.
    let again = vec![entity(3, [1.0, 1.0])];
    assert_eq!(
        engine
            .upsert_at(&t, at(&engine, &t, 1), checked(again))
            .unwrap(),
        Applied::Already
    );
    assert!(matches!(
        engine.get(&t, &id(3)),
        Err(EngineError::EntityNotFound(_))
    ));
    // A gap is refused and changes nothing.
    let late = engine.upsert_at(&t, at(&engine, &t, 3), checked(vec![entity(4, [1.0, 1.0])]));
    assert_eq!(
        late,
        Err(EngineError::OutOfOrder {
            tenant: t.clone(),
            stamp: Stamp::new(3),
            expected: Stamp::new(2)
        })
    );
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 2);
    assert_eq!(engine.applied(&t).unwrap(), Stamp::new(1));
    // Interactions and deletes take stamps from the same sequence; a delete of an entity that
    // is not there still takes its stamp.
    let recorded = engine
        .record_at(
            &t,
            at(&engine, &t, 2),
            checked_interactions(vec![view("u", 1)]),
        )
        .unwrap();
    assert_eq!(recorded, Applied::Done(1));
    assert_eq!(
        engine.delete_at(&t, at(&engine, &t, 3), &id(9)).unwrap(),
        Applied::Done(false)
    );
    assert_eq!(
        engine.delete_at(&t, at(&engine, &t, 4), &id(2)).unwrap(),
        Applied::Done(true)
    );
    assert_eq!(
        engine.delete_at(&t, at(&engine, &t, 4), &id(1)).unwrap(),
        Applied::Already
    );
    assert_eq!(engine.applied(&t).unwrap(), Stamp::new(4));
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 1);
    // Unstamped writes take the next stamp.
    engine.upsert(&t, vec![entity(5, [0.5, 0.5])]).unwrap();
    assert_eq!(engine.applied(&t).unwrap(), Stamp::new(5));
}

#[test]
fn engines_with_the_same_stamps_share_keys_and_answers() {
    let (a, t) = stamped_engine(42);
    let (b, _) = stamped_engine(42);
    let rows = vec![
        entity(1, [1.0, 0.0]),
        entity(2, [0.9, 0.2]),
        entity(3, [0.0, 1.0]),
    ];
    for engine in [&a, &b] {
        engine
            .upsert_at(&t, at(engine, &t, 1), checked(rows.clone()))
            .unwrap();
    }
    // `b` hears the change twice, as a server hears its own write through the feed.
    assert_eq!(
        b.upsert_at(&t, at(&b, &t, 1), checked(rows)).unwrap(),
        Applied::Already
    );
    let options = SearchOptions::top(2);
    let similar_a = a.prepare_similar(&t, &id(1), &options).unwrap();
    let similar_b = b.prepare_similar(&t, &id(1), &options).unwrap();
    assert_eq!(similar_a.shared_key(), similar_b.shared_key());

    // What `a` ranked, kept by `b`, is served by `b` from its own cache afterwards.
    assert!(similar_a.cached().is_none());
    let ranked = similar_a.answer().unwrap();
    assert_eq!(ranked.cache, CacheStatus::Miss);
    assert!(similar_b.cached().is_none());
    let kept = similar_b.keep(ranked.ranking.as_ref().clone());
    assert_eq!(kept.cache, CacheStatus::Hit);
    let again = b.prepare_similar(&t, &id(1), &options).unwrap();
    assert_eq!(again.cached().unwrap().ranking, ranked.ranking);
    assert_eq!(
        b.similar(&t, &id(1), &options).unwrap().cache,
        CacheStatus::Hit
    );

    // An interaction changes the key of user and trending answers, not of similar ones.
    let user = UserId::parse("u").unwrap();
    let trending = TrendingQuery {
        k: 3,
        offset: 0,
        category: None,
        window: Window::DEFAULT,
    };
    let before = (
        a.prepare_similar(&t, &id(1), &options)
            .unwrap()
            .shared_key(),
        a.prepare_user(&t, &user, &options).unwrap().shared_key(),
        a.prepare_trending(&t, &trending).unwrap().shared_key(),
    );
    a.record_at(&t, at(&a, &t, 2), checked_interactions(vec![view("u", 3)]))
        .unwrap();
    let after = (
        a.prepare_similar(&t, &id(1), &options)
            .unwrap()
            .shared_key(),
        a.prepare_user(&t, &user, &options).unwrap().shared_key(),
        a.prepare_trending(&t, &trending).unwrap().shared_key(),
    );
    assert_eq!(before.0, after.0);
    assert_ne!(before.1, after.1);
    assert_ne!(before.2, after.2);
    // An entity write changes them all.
    a.upsert_at(&t, at(&a, &t, 3), checked(vec![entity(2, [0.0, 1.0])]))
        .unwrap();
    let changed = a.prepare_similar(&t, &id(1), &options).unwrap();
    assert_ne!(changed.shared_key(), after.0);
    assert_eq!(changed.cached(), None);
    // Other questions have other keys.
    let other = a.prepare_similar(&t, &id(2), &options).unwrap();
    assert_ne!(other.shared_key(), changed.shared_key());
}

#[test]
fn another_lineage_is_another_tenant() {
    let (a, t) = stamped_engine(1);
    let (b, _) = stamped_engine(2);
    for engine in [&a, &b] {
        engine
            .upsert_at(
                &t,
                at(engine, &t, 1),
                checked(vec![entity(1, [1.0, 0.0]), entity(2, [0.0, 1.0])]),
            )
            .unwrap();
    }
    let options = SearchOptions::top(1);
    let key = |e: &Engine| {
        e.prepare_similar(&t, &id(1), &options)
            .unwrap()
            .shared_key()
    };
    assert_ne!(key(&a), key(&b));
    let spec = TenantSpec::new(2, Metric::Dot).unwrap();
    assert!(matches!(
        a.create_tenant_at(t.clone(), spec, Lineage::new(3), Stamp::ZERO),
        Err(EngineError::TenantConflict { .. })
    ));
    assert!(
        a.create_tenant_at(t, spec, Lineage::new(1), Stamp::ZERO)
            .is_ok()
    );
}

#[test]
fn a_staged_tenant_is_installed_whole_unless_the_live_one_is_newer() {
    let (engine, t) = stamped_engine(5);
    let spec = TenantSpec::new(2, Metric::Dot).unwrap();
    engine
        .upsert_at(&t, at(&engine, &t, 1), checked(vec![entity(1, [1.0, 0.0])]))
        .unwrap();
    // A load of version 2 (entities 1 and 2, one interaction): readers keep the live tenant
    // until it is installed.
    let staged = engine
        .stage_tenant(t.clone(), spec, Lineage::new(5), Stamp::new(2))
        .unwrap();
    engine
        .restore_entities(&staged, vec![entity(1, [1.0, 0.0]), entity(2, [0.0, 1.0])])
        .unwrap();
    engine
        .restore_interactions(&staged, vec![view("u", 2)])
        .unwrap();
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 1);
    assert_eq!(engine.install(staged), Installed::Replaced);
    let info = engine.tenant_info(&t).unwrap();
    assert_eq!((info.entities, info.interactions), (2, 1));
    assert_eq!(
        engine.applied(&t).unwrap(),
        Stamp::new(2),
        "restores take no stamp"
    );
    // The live tenant moved past a snapshot taken earlier: that snapshot is not installed, and
    // none is needed, since the live tenant holds every change the snapshot does.
    engine
        .upsert_at(&t, at(&engine, &t, 3), checked(vec![entity(3, [1.0, 1.0])]))
        .unwrap();
    let stale = engine
        .stage_tenant(t.clone(), spec, Lineage::new(5), Stamp::new(2))
        .unwrap();
    assert_eq!(engine.install(stale), Installed::Kept);
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 3);
    // A load at the live stamp holds what the live tenant holds: the live one stays, and with
    // it its generation (this one is left empty to tell them apart).
    let same = engine
        .stage_tenant(t.clone(), spec, Lineage::new(5), Stamp::new(3))
        .unwrap();
    assert_eq!(engine.install(same), Installed::Kept);
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 3);
    // Another incarnation replaces it whatever its stamps.
    let reborn = engine
        .stage_tenant(t.clone(), spec, Lineage::new(6), Stamp::new(0))
        .unwrap();
    assert_eq!(engine.install(reborn), Installed::Replaced);
    assert_eq!(engine.lineage(&t).unwrap(), Lineage::new(6));
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 0);
}

/// A host checks a batch, then the tenant is deleted and made again with other settings before
/// the batch is applied: the engine checks it again against the tenant it now has.
#[test]
fn a_batch_checked_against_other_settings_is_checked_again() {
    let (engine, t) = stamped_engine(7);
    let batch = checked(vec![entity(1, [1.0, 0.0])]);
    engine.drop_tenant(&t).unwrap();
    let wider = TenantSpec::new(3, Metric::Dot).unwrap();
    engine
        .create_tenant_at(t.clone(), wider, Lineage::new(8), Stamp::ZERO)
        .unwrap();
    let err = engine.upsert_at(&t, at(&engine, &t, 1), batch).unwrap_err();
    assert!(
        matches!(err, EngineError::InvalidItem { index: 0, .. }),
        "{err:?}"
    );
    assert_eq!(engine.tenant_info(&t).unwrap().entities, 0);
    assert_eq!(engine.applied(&t).unwrap(), Stamp::new(0));
}

/// Servers share answers under the shared key only when their settings would give the same
/// answer: any setting that changes an answer changes the key. The key once left them out, so
/// a server with a narrow search breadth could serve its approximate answers to one that asked
/// for exact ones.
#[test]
fn engines_whose_settings_differ_never_share_keys() {
    let rows = || checked(vec![entity(1, [1.0, 0.0]), entity(2, [0.9, 0.2])]);
    let key_with = |change: &dyn Fn(&mut EngineConfig)| {
        let mut config = EngineConfig::default();
        change(&mut config);
        let engine = Engine::new(config).unwrap();
        let t = TenantName::parse("stamped").unwrap();
        let spec = TenantSpec::new(2, Metric::Dot).unwrap();
        engine
            .create_tenant_at(t.clone(), spec, Lineage::new(42), Stamp::ZERO)
            .unwrap();
        engine.upsert_at(&t, at(&engine, &t, 1), rows()).unwrap();
        engine
            .prepare_similar(&t, &id(1), &SearchOptions::top(2))
            .unwrap()
            .shared_key()
    };
    let plain = key_with(&|_| {});
    assert!(plain.starts_with("reco.answer.v1/"), "{plain}");
    assert_eq!(plain, key_with(&|_| {}), "the same settings share");
    type Change<'a> = (&'a str, &'a dyn Fn(&mut EngineConfig));
    let changes: [Change<'_>; 6] = [
        ("exact", &|c| c.search.exact = true),
        ("breadth", &|c| c.search.expansion_search = 16),
        ("codes", &|c| c.search.quantized = false),
        ("oversampling", &|c| c.search.oversample = 5),
        ("threshold", &|c| c.search.threshold = 10),
        ("weights", &|c| c.kind_weights.like = 3.0),
    ];
    for (what, change) in changes {
        assert_ne!(plain, key_with(change), "{what} changes the key");
    }
}

/// Texts are written with their lengths, so ids and labels cannot be cut to look alike.
#[test]
fn shared_keys_cannot_be_forged_by_the_text_of_a_question() {
    let (engine, t) = stamped_engine(1);
    engine
        .upsert_at(&t, at(&engine, &t, 1), checked(vec![entity(1, [1.0, 0.0])]))
        .unwrap();
    let with = |category: &str, tag: &str| {
        let mut options = SearchOptions::top(2);
        options.filter.category = Some(category.to_owned());
        options.filter.tags_any = vec![tag.to_owned()];
        engine
            .prepare_similar(&t, &id(1), &options)
            .unwrap()
            .shared_key()
    };
    assert_ne!(with("a/1:b", "c"), with("a", "b/1:c"));
}

/// A change is named by its incarnation and its stamp: one made in an incarnation of the
/// tenant that was deleted since is not applied to the tenant made again under that name,
/// even where the stamp would fit. Stamps were bare numbers, and a write that waited its turn
/// while the tenant was made again landed in the new one as its change 1.
#[test]
fn a_change_of_another_incarnation_is_not_applied() {
    let (engine, t) = stamped_engine(7);
    let old = at(&engine, &t, 1);
    engine.drop_tenant(&t).unwrap();
    let spec = TenantSpec::new(2, Metric::Dot).unwrap();
    engine
        .create_tenant_at(t.clone(), spec, Lineage::new(8), Stamp::ZERO)
        .unwrap();
    let rows = checked(vec![entity(1, [1.0, 0.0])]);
    assert_eq!(
        engine.upsert_at(&t, old, rows.clone()).unwrap(),
        Applied::OtherLineage
    );
    assert_eq!(
        engine
            .record_at(&t, old, checked_interactions(vec![view("u", 1)]))
            .unwrap(),
        Applied::OtherLineage
    );
    assert_eq!(
        engine.delete_at(&t, old, &id(1)).unwrap(),
        Applied::OtherLineage
    );
    let info = engine.tenant_info(&t).unwrap();
    assert_eq!((info.entities, info.interactions), (0, 0));
    assert_eq!(engine.applied(&t).unwrap(), Stamp::ZERO);
    // The same stamp of the incarnation that is here is applied.
    let here = at(&engine, &t, 1);
    assert_eq!(engine.upsert_at(&t, here, rows).unwrap(), Applied::Done(1));
}
