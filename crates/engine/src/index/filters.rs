//! Filters: category and tag bitmaps of slots, exclusions, and the candidates a query may
//! return.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::EntityIndex;
use crate::model::EntityId;

/// Which slots a scan visits.
#[derive(Debug)]
pub(crate) enum Candidates {
    /// Every live slot but the excluded ones.
    All { excluded: RoaringBitmap },
    /// Exactly these live slots.
    Only(RoaringBitmap),
}

/// The category, tag and id conditions a result must meet.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Only entities of this category.
    pub category: Option<String>,
    /// Only entities with at least one of these tags (no condition when empty).
    pub tags_any: Vec<String>,
    /// Only entities with every one of these tags.
    pub tags_all: Vec<String>,
    /// Never these entities. Ids that do not exist are ignored.
    pub exclude: Vec<EntityId>,
}

impl EntityIndex {
    /// `excluded` and the slots of `ids` (those that exist).
    pub fn excluding(&self, ids: &[EntityId], mut excluded: RoaringBitmap) -> RoaringBitmap {
        excluded.extend(ids.iter().filter_map(|id| self.slot_of(id.as_str())));
        excluded
    }
    /// The slots a filter allows, less `excluded`.
    pub fn candidates(&self, filter: &Filter, excluded: RoaringBitmap) -> Candidates {
        let excluded = self.excluding(&filter.exclude, excluded);
        let lookup = |labels: &imbl::HashMap<Arc<str>, Arc<RoaringBitmap>>, l: &str| {
            labels.get(l).map(|b| (**b).clone()).unwrap_or_default()
        };
        let mut allowed: Option<RoaringBitmap> = filter
            .category
            .as_deref()
            .map(|c| lookup(&self.categories, c));
        let intersect = |allowed: Option<RoaringBitmap>, other: RoaringBitmap| match allowed {
            Some(a) => a & other,
            None => other,
        };
        if !filter.tags_any.is_empty() {
            let mut any = RoaringBitmap::new();
            for tag in &filter.tags_any {
                if let Some(b) = self.tags.get(tag.as_str()) {
                    any |= &**b;
                }
            }
            allowed = Some(intersect(allowed, any));
        }
        for tag in &filter.tags_all {
            allowed = Some(intersect(allowed, lookup(&self.tags, tag)));
        }
        match allowed {
            Some(mut only) => {
                only -= excluded;
                Candidates::Only(only)
            }
            None => Candidates::All { excluded },
        }
    }
}
