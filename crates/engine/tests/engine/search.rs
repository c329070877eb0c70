//! Similar-by-id against the reference: filters, offsets, thresholds, ties and deletes.

use std::collections::BTreeSet;

use proptest::prelude::*;
use reco_engine::{EntityId, Metric, SearchOptions};

use crate::reference::{Model, assert_agrees};
use crate::support::{Op, QuerySpec, all_scores, apply, engine, metric, ops, query, tolerance};

fn scenario() -> impl Strategy<Value = (Metric, usize, Vec<Op>, Vec<QuerySpec>)> {
    (metric(), 1..6usize).prop_flat_map(|(m, d)| {
        (
            Just(m),
            Just(d),
            ops(d, m),
            prop::collection::vec(query(), 1..4),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn similar_matches_the_reference((metric, dim, ops, queries) in scenario()) {
        let (engine, tenant, _) = engine(metric, dim, false);
        let mut model = Model::new(metric);
        apply(&engine, &tenant, &mut model, &ops);
        prop_assert_eq!(engine.tenant_info(&tenant).unwrap().entities, model.items.len());
        for (id, item) in &model.items {
            let view = engine.get(&tenant, &EntityId::parse(id).unwrap()).unwrap();
            prop_assert_eq!(&view.vector, &item.vector);
            prop_assert_eq!(view.category.as_deref(), item.category.as_deref());
            let tags: BTreeSet<String> = view.tags.iter().map(|t| t.to_string()).collect();
            prop_assert_eq!(&tags, &item.tags);
        }
        for spec in &queries {
            for target in model.items.keys().take(3) {
                let id = EntityId::parse(target).unwrap();
                let answer = engine.similar(&tenant, &id, &spec.options(metric)).unwrap();
                let q = &model.items[target].vector;
                let conditions = spec.conditions.and_exclude([target.clone()]);
                let score = |v: &[f32]| model.score(q, v);
                let expected = model.rank(&conditions, spec.threshold(metric), spec.k, spec.offset, |item| score(&item.vector));
                let scores = all_scores(&model, |id| score(&model.items[id].vector));
                assert_agrees(&answer.ranking.results, &expected, &scores, tolerance(metric));
            }
        }
    }

    /// Diversity only reorders and picks among allowed candidates, and 0 changes nothing.
    #[test]
    fn diversity_keeps_the_rules(
        (metric, dim, ops, queries) in scenario(),
        diversity in 0.05f32..=1.0,
    ) {
        let (engine, tenant, _) = engine(metric, dim, false);
        let mut model = Model::new(metric);
        apply(&engine, &tenant, &mut model, &ops);
        for spec in &queries {
            let Some(target) = model.items.keys().next() else { break };
            let id = EntityId::parse(target).unwrap();
            let plain = spec.options(metric);
            let zero = SearchOptions { diversity: 0.0, ..plain.clone() };
            prop_assert_eq!(
                engine.similar(&tenant, &id, &plain).unwrap(),
                engine.similar(&tenant, &id, &zero).unwrap()
            );
            let diverse = SearchOptions { diversity, ..plain.clone() };
            let results = engine.similar(&tenant, &id, &diverse).unwrap().ranking.results.clone();
            let conditions = spec.conditions.and_exclude([target.clone()]);
            let q = &model.items[target].vector;
            let allowed = model.rank(&conditions, spec.threshold(metric), usize::MAX, 0, |item| model.score(q, &item.vector));
            let allowed: BTreeSet<&str> = allowed.iter().map(|(id, _)| id.as_str()).collect();
            let distinct: BTreeSet<&str> = results.iter().map(|s| s.id.as_str()).collect();
            prop_assert_eq!(distinct.len(), results.len());
            prop_assert!(distinct.is_subset(&allowed));
            let expected_len = allowed.len().saturating_sub(spec.offset).min(spec.k);
            prop_assert_eq!(results.len(), expected_len);
        }
    }
}
