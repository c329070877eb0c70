//! The one check a write goes through. A batch of entities is checked against its tenant's
//! spec once, here, and becomes a [`CheckedEntities`]; a batch of interactions becomes a
//! [`CheckedInteractions`]. Storage writes what these hold and the engine applies it, neither
//! checking again, and the import command runs the same check on a file before it sends a
//! line. So the rules live in one place, and a batch one layer accepts no other layer refuses.

use std::collections::HashSet;

use crate::error::{EngineError, Result};
use crate::model::{Embedding, Interaction, Millis, NewEntity, TenantSpec, check_label};

/// A batch of entities checked against a tenant's spec: every vector fits it, every label is
/// well formed, no id appears twice, and repeated tags are folded. Only [`CheckedEntities::new`]
/// makes one.
#[derive(Debug, Clone)]
pub struct CheckedEntities {
    spec: TenantSpec,
    entities: Vec<NewEntity>,
}

impl CheckedEntities {
    /// Checks a batch whole: the first bad item refuses it, and the error names the item.
    pub fn new(spec: TenantSpec, mut batch: Vec<NewEntity>) -> Result<Self> {
        if let Some((index, error)) = Self::problems(spec, &batch).into_iter().next() {
            return Err(error.at(index));
        }
        for entity in &mut batch {
            let mut unique = HashSet::with_capacity(entity.tags.len());
            entity.tags.retain(|t| unique.insert(t.clone()));
        }
        Ok(Self {
            spec,
            entities: batch,
        })
    }

    /// Every bad item of a batch, in order, with its position: what [`CheckedEntities::new`]
    /// refuses, all at once (the import command names every bad line of a file).
    pub fn problems(spec: TenantSpec, batch: &[NewEntity]) -> Vec<(usize, EngineError)> {
        let mut seen = HashSet::with_capacity(batch.len());
        let mut problems = Vec::new();
        for (index, entity) in batch.iter().enumerate() {
            let mut check = || -> Result<()> {
                if !seen.insert(&entity.id) {
                    return Err(EngineError::InvalidArgument(format!(
                        "entity `{}` appears twice in the batch",
                        entity.id
                    )));
                }
                Embedding::check(&entity.vector, spec)?;
                if let Some(category) = &entity.category {
                    check_label("a category", category)?;
                }
                entity
                    .tags
                    .iter()
                    .try_for_each(|tag| check_label("a tag", tag))
            };
            if let Err(error) = check() {
                problems.push((index, error));
            }
        }
        problems
    }

    /// The spec the batch was checked against.
    pub fn spec(&self) -> TenantSpec {
        self.spec
    }

    /// The entities, in the batch's order.
    pub fn entities(&self) -> &[NewEntity] {
        &self.entities
    }

    /// How many entities the batch holds.
    pub fn len(&self) -> usize {
        self.entities.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.entities.is_empty()
    }

    /// The entities, given back.
    pub fn into_entities(self) -> Vec<NewEntity> {
        self.entities
    }
}

/// A batch of interactions whose weights are all finite. Only [`CheckedInteractions::new`]
/// makes one.
#[derive(Debug, Clone)]
pub struct CheckedInteractions {
    interactions: Vec<Interaction>,
}

/// The largest size of an interaction's weight (the contract's rule): with the kinds' weights
/// (at most 8) a trending sum stays far inside f32, so every score is finite.
pub const MAX_WEIGHT: f32 = 1e6;

/// How far in the future an interaction's timestamp may lie: an hour of clock skew.
pub const MAX_FUTURE: Millis = 3_600_000;

impl CheckedInteractions {
    /// Checks a batch whole: every weight finite and at most [`MAX_WEIGHT`] in size. The first
    /// bad item refuses it, and the error names the item.
    pub fn new(batch: Vec<Interaction>) -> Result<Self> {
        if let Some(index) = batch.iter().position(|i| {
            i.weight
                .is_some_and(|w| !(w.is_finite() && w.abs() <= MAX_WEIGHT))
        }) {
            return Err(EngineError::InvalidArgument(
                "an interaction's weight must be a finite number of at most 1e6 in size".into(),
            )
            .at(index));
        }
        Ok(Self {
            interactions: batch,
        })
    }

    /// [`CheckedInteractions::new`], and every timestamp at most [`MAX_FUTURE`] after `now`: a
    /// new batch, as a host accepts it (rows read back from storage were checked when written).
    pub fn new_at(batch: Vec<Interaction>, now: Millis) -> Result<Self> {
        let latest = now.saturating_add(MAX_FUTURE);
        if let Some(index) = batch.iter().position(|i| i.timestamp > latest) {
            return Err(EngineError::InvalidArgument(
                "an interaction's timestamp may lie at most one hour in the future".into(),
            )
            .at(index));
        }
        Self::new(batch)
    }

    /// The interactions, in the order they were recorded.
    pub fn interactions(&self) -> &[Interaction] {
        &self.interactions
    }

    /// How many interactions the batch holds.
    pub fn len(&self) -> usize {
        self.interactions.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.interactions.is_empty()
    }

    /// The interactions, given back.
    pub fn into_interactions(self) -> Vec<Interaction> {
        self.interactions
    }

    /// Keeps the interactions whose place in `keep` is true (a subset of a checked batch is
    /// checked): what storage recorded of a batch some of which it already held.
    ///
    /// # Panics
    /// When `keep` is not as long as the batch.
    pub fn retain(&mut self, keep: &[bool]) {
        assert_eq!(
            keep.len(),
            self.interactions.len(),
            "one flag per interaction"
        );
        let mut flags = keep.iter();
        self.interactions
            .retain(|_| flags.next().copied().unwrap_or(false));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EntityId, InteractionKind, Metric, UserId};

    fn interaction(weight: Option<f32>, timestamp: Millis) -> Interaction {
        Interaction {
            user: UserId::parse("u").unwrap(),
            entity: EntityId::parse("e").unwrap(),
            kind: InteractionKind::Like,
            weight,
            timestamp,
        }
    }

    /// The contract's time and weight rules: a weight finite and at most 1e6 in size (1e38 made
    /// a trending score infinite), a timestamp at most an hour ahead (9999-12-31 pinned an
    /// entity at full weight in every window).
    #[test]
    fn weights_past_1e6_and_timestamps_past_an_hour_ahead_are_refused() {
        let now = 1_750_000_000_000;
        let fine = vec![
            interaction(Some(1e6), now),
            interaction(Some(-1e6), 0),
            interaction(None, now + MAX_FUTURE),
        ];
        assert_eq!(CheckedInteractions::new_at(fine, now).unwrap().len(), 3);
        for weight in [1e38, -1e38, 1.000_001e6, f32::NAN] {
            let batch = vec![interaction(None, now), interaction(Some(weight), now)];
            let Err(EngineError::InvalidItem { index, .. }) = CheckedInteractions::new(batch)
            else {
                panic!("weight {weight} was taken");
            };
            assert_eq!(index, 1);
        }
        let ahead = vec![interaction(None, now + MAX_FUTURE + 1)];
        assert!(CheckedInteractions::new_at(ahead.clone(), now).is_err());
        assert!(
            CheckedInteractions::new(ahead).is_ok(),
            "rows read back from storage are not judged by today's clock"
        );
    }

    fn entity(id: &str, vector: Vec<f32>, tags: &[&str]) -> NewEntity {
        NewEntity {
            id: EntityId::parse(id).unwrap(),
            vector,
            category: None,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            attributes: None,
        }
    }

    #[test]
    fn every_bad_item_is_named_and_the_first_refuses_the_batch() {
        let spec = TenantSpec::new(2, Metric::Cosine).unwrap();
        let batch = vec![
            entity("a", vec![1.0, 0.0], &[]),
            entity("b", vec![0.0, 0.0], &[]),
            entity("a", vec![0.0, 1.0], &[]),
            entity("c", vec![1.0], &[""]),
        ];
        let problems: Vec<usize> = CheckedEntities::problems(spec, &batch)
            .into_iter()
            .map(|(index, _)| index)
            .collect();
        assert_eq!(problems, [1, 2, 3]);
        let Err(EngineError::InvalidItem { index: 1, source }) = CheckedEntities::new(spec, batch)
        else {
            panic!("the first bad item refuses the batch");
        };
        assert!(matches!(*source, EngineError::InvalidVector(_)));
    }

    #[test]
    fn a_checked_batch_folds_repeated_tags_and_keeps_its_order() {
        let spec = TenantSpec::new(2, Metric::Dot).unwrap();
        let batch = vec![
            entity("b", vec![1.0, 0.0], &["x", "y", "x"]),
            entity("a", vec![0.0, 1.0], &[]),
        ];
        let checked = CheckedEntities::new(spec, batch).unwrap();
        assert_eq!(checked.spec(), spec);
        let ids: Vec<&str> = checked.entities().iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["b", "a"]);
        assert_eq!(checked.entities()[0].tags, ["x", "y"]);
    }

    #[test]
    fn interactions_with_a_weight_that_is_not_finite_are_refused() {
        let interaction = |weight: Option<f32>| Interaction {
            user: UserId::parse("u").unwrap(),
            entity: EntityId::parse("e").unwrap(),
            kind: InteractionKind::View,
            weight,
            timestamp: 0,
        };
        let batch = vec![
            interaction(Some(2.0)),
            interaction(None),
            interaction(Some(f32::NAN)),
        ];
        assert!(matches!(
            CheckedInteractions::new(batch),
            Err(EngineError::InvalidItem { index: 2, .. })
        ));
        assert_eq!(
            CheckedInteractions::new(vec![interaction(Some(-1.0))])
                .unwrap()
                .len(),
            1
        );
    }
}
