//! A tenant's interactions: what each user did, and a log of events for trending.
//!
//! A user's history is one decayed accumulator per entity, so its memory is bounded by the
//! entities the user touched, not by the events they sent, and the decay is exact for any order
//! of arrival. The trending log keeps events for the retention window in chunks that remember
//! their newest event, so a query skips whole chunks older than its window.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::distance::narrow;
use crate::model::{EntityId, Millis, UserId};
use crate::stamp::{Generation, Stamp};

/// Events per chunk of the trending log.
const EVENTS_PER_CHUNK: usize = 4096;

/// `2^(-age / half_life)`, with events from the future counted as now.
#[inline]
pub(crate) fn decay(age: Millis, half_life: Millis) -> f64 {
    if age <= 0 {
        1.0
    } else {
        (-(age as f64) / half_life as f64).exp2()
    }
}

/// A weight that halves every half-life: its value at `at`, and every weight given to it
/// undecayed (`mass`), for the floor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decayed {
    value: f64,
    at: Millis,
    mass: f64,
}

impl Decayed {
    fn new(weight: f64, at: Millis) -> Self {
        Self {
            value: weight,
            at,
            mass: weight,
        }
    }

    /// Adds `weight`, given at time `t`.
    fn add(&mut self, weight: f64, t: Millis, half_life: Millis) {
        if t >= self.at {
            self.value = self.value * decay(t - self.at, half_life) + weight;
            self.at = t;
        } else {
            self.value += weight * decay(self.at - t, half_life);
        }
        self.mass += weight;
    }

    /// The time of the newest weight given.
    pub fn last(&self) -> Millis {
        self.at
    }

    /// Every weight given, undecayed.
    pub fn given(&self) -> f64 {
        self.mass
    }

    /// The value at `t`, and never less in size than `floor` times the weight given: decay
    /// fades an interaction, the floor keeps it counting. Computed in `f64`, where no age a log
    /// can have underflows to zero before the floor takes over.
    pub fn value_at(&self, t: Millis, half_life: Millis, floor: f64) -> f64 {
        let decayed = self.value * decay(t - self.at, half_life);
        let least = floor * self.mass;
        if decayed.abs() < least.abs() {
            least
        } else {
            decayed
        }
    }
}

/// What one user did, folded per entity. Kept in id order, so that a preference vector sums in
/// the same order on every server and comes out bit for bit the same.
#[derive(Debug, Clone)]
pub(crate) struct UserProfile {
    pub items: BTreeMap<EntityId, Decayed>,
    /// The time of the user's newest interaction: what their history decays towards.
    pub newest: Millis,
    /// Grows with every interaction of this user; part of the preference cache key.
    pub version: u64,
}

#[derive(Debug, Clone, Copy)]
struct Event {
    at: Millis,
    key: u32,
    weight: f32,
}

#[derive(Debug, Clone, Default)]
struct EventChunk {
    events: Vec<Event>,
    newest: Millis,
}

impl UserProfile {
    /// Each entity the user touched and its weight now: decayed towards the user's newest
    /// interaction, never below `floor` of what was given. The one rule a preference, a
    /// training and a fold-in all read a history by.
    pub fn weights(&self, half_life: Millis, floor: f64) -> impl Iterator<Item = (&EntityId, f64)> {
        self.items
            .iter()
            .map(move |(entity, decayed)| (entity, decayed.value_at(self.newest, half_life, floor)))
    }

    /// The slots of `index` that hold an entity the user touched.
    pub fn touched(&self, index: &crate::index::EntityIndex) -> roaring::RoaringBitmap {
        self.items
            .keys()
            .filter_map(|e| index.slot_of(e.as_str()))
            .collect()
    }
}

impl Default for UserProfile {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
            newest: Millis::MIN,
            version: 0,
        }
    }
}

/// An interaction checked and weighted, ready to apply.
#[derive(Debug, Clone)]
pub(crate) struct Weighted {
    pub user: UserId,
    pub entity: EntityId,
    pub weight: f64,
    pub at: Millis,
}

/// A snapshot of a tenant's interactions.
#[derive(Debug, Clone)]
pub(crate) struct InteractionLog {
    /// Unique across the engine's life; cached answers carry it in their key.
    pub generation: Generation,
    /// The host's stamp of the last change written to this snapshot (see `Engine::record_at`).
    pub stamp: Stamp,
    users: imbl::HashMap<UserId, Arc<UserProfile>>,
    /// Entity ids seen in events, interned to dense keys for the trending scan.
    keys: imbl::HashMap<EntityId, u32>,
    names: imbl::Vector<EntityId>,
    chunks: Vec<Arc<EventChunk>>,
    total: u64,
}

impl InteractionLog {
    pub fn new(generation: Generation) -> Self {
        Self {
            generation,
            stamp: Stamp::ZERO,
            users: imbl::HashMap::new(),
            keys: imbl::HashMap::new(),
            names: imbl::Vector::new(),
            chunks: Vec::new(),
            total: 0,
        }
    }

    /// How many interactions were recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counts interactions recorded elsewhere and not restored here.
    pub fn count_unrestored(&mut self, count: u64) {
        self.total += count;
    }

    pub fn user(&self, user: &UserId) -> Option<&Arc<UserProfile>> {
        self.users.get(user)
    }

    /// Every user and their history, in id order (so that whatever numbers them, numbers them
    /// alike on every run).
    pub fn users(&self) -> Vec<(&UserId, &Arc<UserProfile>)> {
        let mut users: Vec<_> = self.users.iter().collect();
        users.sort_by(|a, b| a.0.cmp(b.0));
        users
    }

    /// Records a batch, then drops trending chunks with nothing newer than `now - retention`.
    pub fn record(
        &mut self,
        batch: Vec<Weighted>,
        half_life: Millis,
        now: Millis,
        retention: Millis,
    ) {
        for event in batch {
            let profile = Arc::make_mut(self.users.entry(event.user).or_default());
            profile
                .items
                .entry(event.entity.clone())
                .and_modify(|d| d.add(event.weight, event.at, half_life))
                .or_insert_with(|| Decayed::new(event.weight, event.at));
            profile.version += 1;
            profile.newest = profile.newest.max(event.at);
            let key = self.intern(event.entity);
            self.push(Event {
                at: event.at,
                key,
                weight: narrow(event.weight),
            });
            self.total += 1;
        }
        let cutoff = now.saturating_sub(retention);
        self.chunks.retain(|c| c.newest >= cutoff);
    }

    fn intern(&mut self, entity: EntityId) -> u32 {
        if let Some(&key) = self.keys.get(&entity) {
            return key;
        }
        let key = u32::try_from(self.names.len())
            .expect("a tenant has fewer than 2^32 entities with interactions");
        self.names.push_back(entity.clone());
        self.keys.insert(entity, key);
        key
    }

    fn push(&mut self, event: Event) {
        if self
            .chunks
            .last()
            .is_none_or(|c| c.events.len() == EVENTS_PER_CHUNK)
        {
            self.chunks.push(Arc::new(EventChunk {
                events: Vec::new(),
                newest: Millis::MIN,
            }));
        }
        let chunk = Arc::make_mut(self.chunks.last_mut().expect("a chunk was just ensured"));
        chunk.newest = chunk.newest.max(event.at);
        chunk.events.push(event);
    }

    /// The time-decayed weight of every entity with events in `[now - window, ∞)`, as
    /// (entity, score) pairs with a positive score, in no particular order.
    pub fn trending(
        &self,
        now: Millis,
        window: Millis,
        half_life: Millis,
    ) -> Vec<(&EntityId, f64)> {
        let cutoff = now.saturating_sub(window);
        let mut scores = vec![0.0f64; self.names.len()];
        for chunk in self.chunks.iter().filter(|c| c.newest >= cutoff) {
            for e in chunk.events.iter().filter(|e| e.at >= cutoff) {
                scores[e.key as usize] += f64::from(e.weight) * decay(now - e.at, half_life);
            }
        }
        scores
            .iter()
            .enumerate()
            .filter(|(_, s)| **s > 0.0)
            .map(|(key, s)| (&self.names[key], *s))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Millis = 3_600_000;

    fn weighted(user: &str, entity: &str, weight: f64, at: Millis) -> Weighted {
        Weighted {
            user: UserId::parse(user).unwrap(),
            entity: EntityId::parse(entity).unwrap(),
            weight,
            at,
        }
    }

    #[test]
    fn decay_halves_each_half_life_in_any_order() {
        let mut in_order = Decayed::new(4.0, 0);
        in_order.add(2.0, HOUR, HOUR);
        let mut reversed = Decayed::new(2.0, HOUR);
        reversed.add(4.0, 0, HOUR);
        for d in [in_order, reversed] {
            assert!((d.value_at(HOUR, HOUR, 0.0) - 4.0).abs() < 1e-12);
            assert!((d.value_at(2 * HOUR, HOUR, 0.0) - 2.0).abs() < 1e-12);
        }
        assert_eq!(decay(-5, HOUR), 1.0, "the future counts as now");
    }

    #[test]
    fn the_floor_keeps_an_old_weight_counting_at_any_age() {
        let mut d = Decayed::new(4.0, 0);
        d.add(4.0, 0, HOUR);
        // 8 given; after two half-lives 2 is left, above a floor of 1/20 (0.4).
        assert!((d.value_at(2 * HOUR, HOUR, 0.05) - 2.0).abs() < 1e-12);
        // Thirty years of hourly half-lives would underflow any float: the floor holds.
        let ancient = 30 * 365 * 24 * HOUR;
        assert_eq!(d.value_at(ancient, HOUR, 0.0), 0.0, "pure decay underflows");
        assert!((d.value_at(ancient, HOUR, 0.05) - 0.4).abs() < 1e-12);
        // A dislike keeps its sign under the floor.
        let dislike = Decayed::new(-4.0, 0);
        assert!((dislike.value_at(ancient, HOUR, 0.05) + 0.2).abs() < 1e-12);
    }

    #[test]
    fn trending_sums_decayed_weights_inside_the_window() {
        let mut log = InteractionLog::new(Generation(1));
        let now = 100 * HOUR;
        log.record(
            vec![
                weighted("u", "a", 2.0, now),
                weighted("v", "a", 2.0, now - HOUR),
                weighted("u", "b", 8.0, now - 3 * HOUR),
                weighted("u", "c", -4.0, now),
            ],
            HOUR,
            now,
            1000 * HOUR,
        );
        let mut trending: Vec<(String, f64)> = log
            .trending(now, 2 * HOUR, HOUR)
            .into_iter()
            .map(|(id, s)| (id.to_string(), s))
            .collect();
        trending.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            trending,
            [("a".to_owned(), 3.0)],
            "b is outside, c is negative"
        );
        assert_eq!(log.total(), 4);
        assert_eq!(
            log.user(&UserId::parse("u").unwrap()).unwrap().items.len(),
            3
        );
    }

    #[test]
    fn old_chunks_are_dropped_after_retention() {
        let mut log = InteractionLog::new(Generation(1));
        let events = (0..EVENTS_PER_CHUNK)
            .map(|_| weighted("u", "a", 1.0, 0))
            .collect();
        log.record(events, HOUR, 0, HOUR);
        log.record(
            vec![weighted("u", "b", 1.0, 10 * HOUR)],
            HOUR,
            10 * HOUR,
            HOUR,
        );
        assert_eq!(log.chunks.len(), 1, "the full chunk of old events is gone");
        assert_eq!(
            log.total(),
            EVENTS_PER_CHUNK as u64 + 1,
            "the count keeps them"
        );
    }
}
