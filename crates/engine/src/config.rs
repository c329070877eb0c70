//! The engine's settings, and the clock it reads time from.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{EngineError, Result};
use crate::model::{InteractionKind, Millis};

const DAY: Duration = Duration::from_secs(86_400);

/// The base weight of each kind of interaction; an interaction's own weight multiplies it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KindWeights {
    /// Default 1.
    pub view: f32,
    /// Default 2.
    pub click: f32,
    /// Default 4.
    pub like: f32,
    /// Default 8.
    pub purchase: f32,
    /// Default −4: a dislike pushes away.
    pub dislike: f32,
}

impl Default for KindWeights {
    fn default() -> Self {
        Self {
            view: 1.0,
            click: 2.0,
            like: 4.0,
            purchase: 8.0,
            dislike: -4.0,
        }
    }
}

impl KindWeights {
    /// The weight of `kind`.
    pub fn of(&self, kind: InteractionKind) -> f32 {
        match kind {
            InteractionKind::View => self.view,
            InteractionKind::Click => self.click,
            InteractionKind::Like => self.like,
            InteractionKind::Purchase => self.purchase,
            InteractionKind::Dislike => self.dislike,
        }
    }
}

/// How long each tier of the in-process cache keeps an answer, and how many it keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    /// Off: every request computes its answer.
    pub enabled: bool,
    /// Similar, recommend and per-user answers. Default 600 s.
    pub recommendations_ttl: Duration,
    /// Trending answers. Default 7200 s.
    pub trending_ttl: Duration,
    /// Users' preference vectors. Default 900 s.
    pub user_preferences_ttl: Duration,
    /// Entity rows in a shared (L2) cache. Default 7200 s. The engine itself reads entities
    /// straight from its snapshot, which is cheaper than a cache probe; this tier is here so that
    /// every layer takes its TTLs from one place.
    pub entity_features_ttl: Duration,
    /// The most bytes each tier keeps (keys and answers, roughly as they lie in memory); the
    /// least recently useful entries go first. Default 64 MiB.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            recommendations_ttl: Duration::from_secs(600),
            trending_ttl: Duration::from_secs(7200),
            user_preferences_ttl: Duration::from_secs(900),
            entity_features_ttl: Duration::from_secs(7200),
            max_bytes: 64 << 20,
        }
    }
}

/// Everything the engine can be told.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Weights of the interaction kinds.
    pub kind_weights: KindWeights,
    /// A user's interaction counts half as much for every half-life between it and the user's
    /// newest interaction (not the clock: a log imported from years ago ranks as a fresh one).
    /// Default 7 days.
    pub half_life: Duration,
    /// The least part of its weight an interaction keeps however old it is next to the user's
    /// newest, so a returning user's history still counts. From 0 (pure decay) to 1 (no
    /// decay). Default 1/20.
    pub history_floor: f64,
    /// Trending weight halves after this long. Default 1 day.
    pub trending_half_life: Duration,
    /// Events older than this are dropped from trending; also the longest window. Default 30 days.
    pub trending_retention: Duration,
    /// The trending window a user with no usable history is answered from. Default 7 days.
    pub cold_start_window: Duration,
    /// The in-process cache.
    pub cache: CacheConfig,
    /// How searches are answered: an approximate index above a size, or always exactly.
    pub search: SearchConfig,
    /// The most work one question may take, in vector components its ranking reads (see
    /// [`crate::Cost`]); a question estimated over it is refused
    /// ([`crate::EngineError::OverBudget`]). Default 2,000,000,000: about half a second of one
    /// core, 800 exact scans of 20,000 vectors of 128 dimensions.
    pub work_budget: u64,
}

/// The default [`EngineConfig::work_budget`].
pub const DEFAULT_WORK_BUDGET: u64 = 2_000_000_000;

/// Approximate search: an HNSW graph per tenant once it is large enough, its candidates
/// rescored exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchConfig {
    /// Scan every candidate exactly, always, as if every query said `exact`. Default off.
    pub exact: bool,
    /// Tenants with at least this many entities get a graph; smaller ones are scanned, which
    /// is as fast at that size. Default 5,000.
    pub threshold: usize,
    /// Links per node of the graph (HNSW's M). Default 16.
    pub connectivity: usize,
    /// Candidates considered while inserting. Default 200.
    pub expansion_add: usize,
    /// Candidates considered while searching (HNSW's ef), for tenants under 50,000 entities;
    /// larger ones use twice as many, and from 500,000 three times as many, which keeps
    /// recall@10 at 0.99 or more to 100,000 entities and about 0.97 at 1,000,000 on clustered
    /// data.
    /// Default 64.
    pub expansion_search: usize,
    /// How many candidates the int8 scan keeps per result wanted; they are rescored exactly
    /// and the best kept. (The graph returns its whole final beam, at least one and a half
    /// times the page.) Default 3.
    pub oversample: usize,
    /// Keep an int8 copy of every row beside the f32 one, and answer approximate searches that
    /// scan (tenants without a graph, filters too selective for it) by scanning the copies
    /// first and rescoring the best `oversample` times the page in f32. The graph's walks read
    /// the copies too (a quarter of the bytes); without them they read the f32 rows. Costs a
    /// quarter more row memory. Default on.
    pub quantized: bool,
    /// Threads a graph's first build (and any batch of 256 entities or more) inserts on.
    /// Default: every core the process may use.
    pub build_threads: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            exact: false,
            threshold: 5_000,
            connectivity: 16,
            expansion_add: 200,
            expansion_search: 64,
            oversample: 3,
            quantized: true,
            build_threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            kind_weights: KindWeights::default(),
            half_life: 7 * DAY,
            history_floor: 0.05,
            trending_half_life: DAY,
            trending_retention: 30 * DAY,
            cold_start_window: 7 * DAY,
            cache: CacheConfig::default(),
            search: SearchConfig::default(),
            work_budget: DEFAULT_WORK_BUDGET,
        }
    }
}

pub(crate) fn millis(d: Duration) -> Millis {
    Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)
}

impl EngineConfig {
    /// Checks that every setting is usable.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(EngineError::InvalidArgument(what.to_owned()));
        if InteractionKind::ALL
            .iter()
            .any(|k| !self.kind_weights.of(*k).is_finite())
        {
            return bad("every interaction kind weight must be a finite number");
        }
        for (name, d) in [
            ("half_life", self.half_life),
            ("trending_half_life", self.trending_half_life),
            ("trending_retention", self.trending_retention),
            ("cold_start_window", self.cold_start_window),
        ] {
            if millis(d) < 1 {
                return bad(&format!("{name} must be at least a millisecond"));
            }
        }
        if !(0.0..=1.0).contains(&self.history_floor) {
            return bad("history_floor is from 0 to 1");
        }
        if self.cold_start_window > self.trending_retention {
            return bad("cold_start_window must not exceed trending_retention");
        }
        if self.work_budget == 0 {
            return bad("work_budget must be at least 1");
        }
        let search = &self.search;
        if !(2..=256).contains(&search.connectivity) {
            return bad("search.connectivity is from 2 to 256");
        }
        if !(1..=4096).contains(&search.expansion_add)
            || !(1..=4096).contains(&search.expansion_search)
        {
            return bad("search.expansion_add and expansion_search are from 1 to 4096");
        }
        if !(1..=64).contains(&search.oversample) {
            return bad("search.oversample is from 1 to 64");
        }
        if !(1..=256).contains(&search.build_threads) {
            return bad("search.build_threads is from 1 to 256");
        }
        Ok(())
    }
}

/// Where the engine reads the time. Tests use a [`ManualClock`].
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, millis)
    }
}

/// A clock that moves only when told.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock that reads `now`.
    pub fn new(now: Millis) -> Self {
        Self(AtomicI64::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: Millis) {
        self.0.store(now, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(millis(by), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference_design() {
        let c = EngineConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.kind_weights.of(InteractionKind::Purchase), 8.0);
        assert_eq!(c.kind_weights.of(InteractionKind::Dislike), -4.0);
        assert_eq!(c.half_life, 7 * DAY);
        assert_eq!(c.cache.recommendations_ttl.as_secs(), 600);
        assert_eq!(c.cache.trending_ttl.as_secs(), 7200);
        assert_eq!(c.cache.user_preferences_ttl.as_secs(), 900);
        assert_eq!(c.cache.entity_features_ttl.as_secs(), 7200);
    }

    #[test]
    fn bad_settings_are_refused() {
        let mut c = EngineConfig::default();
        c.kind_weights.like = f32::NAN;
        assert!(c.validate().is_err());
        let c = EngineConfig {
            half_life: Duration::ZERO,
            ..EngineConfig::default()
        };
        assert!(c.validate().is_err());
        let c = EngineConfig {
            cold_start_window: 40 * DAY,
            ..EngineConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let clock = ManualClock::new(5);
        clock.advance(Duration::from_millis(10));
        assert_eq!(clock.now(), 15);
        clock.set(1);
        assert_eq!(clock.now(), 1);
        assert!(SystemClock.now() > 1_700_000_000_000);
    }
}
