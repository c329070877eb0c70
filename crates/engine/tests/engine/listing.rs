//! Listing a tenant's entities a page at a time, in id order.

use proptest::prelude::*;
use reco_engine::{EntityId, Metric, NewEntity};

use crate::reference::Model;
use crate::support::{apply, engine, ops};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Paging through every entity, `limit` at a time, finds each live one once, in byte
    /// order, with its vector, whatever writes and deletes came before.
    #[test]
    fn pages_cover_every_entity_once_in_id_order(ops in ops(3, Metric::Dot), limit in 1usize..7) {
        let (engine, tenant, _) = engine(Metric::Dot, 3, false);
        let mut model = Model::new(Metric::Dot);
        apply(&engine, &tenant, &mut model, &ops);
        let mut seen = Vec::new();
        let mut after: Option<EntityId> = None;
        loop {
            let (page, more) = engine.entities(&tenant, after.as_ref(), limit).unwrap();
            prop_assert!(page.len() <= limit);
            for e in &page {
                prop_assert_eq!(&e.vector, &model.items[e.id.as_str()].vector);
            }
            seen.extend(page.iter().map(|e| e.id.to_string()));
            after = page.last().map(|e| e.id.clone());
            if !more {
                break;
            }
            prop_assert_eq!(page.len(), limit, "a page short of the limit has nothing after it");
        }
        let expected: Vec<String> = model.items.keys().cloned().collect();
        prop_assert_eq!(seen, expected);
    }
}

/// Ids sort by their bytes, and `after` need not be an id that exists.
#[test]
fn ids_sort_by_bytes_and_after_may_name_no_entity() {
    let (engine, tenant, _) = engine(Metric::Dot, 1, false);
    let batch = ["b", "a", "ä", "a0", "Z", "😀"]
        .iter()
        .map(|id| NewEntity {
            id: EntityId::parse(id).unwrap(),
            vector: vec![1.0],
            category: None,
            tags: Vec::new(),
            attributes: None,
        })
        .collect();
    engine.upsert(&tenant, batch).unwrap();
    let ids = |after: Option<&str>, limit| {
        let after = after.map(|a| EntityId::parse(a).unwrap());
        let (page, more) = engine.entities(&tenant, after.as_ref(), limit).unwrap();
        (
            page.iter().map(|e| e.id.to_string()).collect::<Vec<_>>(),
            more,
        )
    };
    assert_eq!(ids(None, 10).0, ["Z", "a", "a0", "b", "ä", "😀"]);
    assert_eq!(
        ids(Some("a00"), 2),
        (vec!["b".to_owned(), "ä".to_owned()], true)
    );
    assert_eq!(ids(Some("ä"), 2), (vec!["😀".to_owned()], false));
}
