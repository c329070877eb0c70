//! The in-process cache: one moka cache per TTL tier.
//!
//! A key holds the generations of the snapshots its answer was computed from. Every write makes
//! a snapshot with a new generation, so after a write no key can find an answer about older data:
//! invalidation needs no scan and cannot race with a reader. Stale entries age out by TTL or
//! size. Concurrent misses on one key compute once: moka runs one initializer per key and the
//! other callers wait for its value.

use std::hash::Hash;
use std::sync::Arc;

use moka::sync::Cache;

use crate::config::CacheConfig;
use crate::error::Result;
use crate::index::Filter;
use crate::model::{EntityId, Scored, TenantName, UserId};
use crate::query::{
    Answer, CacheStatus, Example, ExampleStrategy, ExampleTarget, Ranking, SearchOptions, Space,
    TrendingQuery, UserStrategy,
};
use crate::stamp::Generation;

/// The TTL tiers of ranked answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheTier {
    /// Similar, recommend and per-user answers.
    Recommendations,
    /// Trending answers.
    Trending,
}

/// A cached answer's identity: the tenant, the data it was made from, and the question.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub tenant: TenantName,
    /// Generations of the snapshots it depends on (0 for none): the entities searched, the
    /// interactions, and the collaborative model a user's factors were folded in against.
    pub generations: [Generation; 3],
    pub query: QueryKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum QueryKey {
    Similar(EntityId, OptionsKey),
    Recommend {
        positive: Vec<ExampleKey>,
        negative: Vec<ExampleKey>,
        best_score: bool,
        options: OptionsKey,
    },
    User(UserId, OptionsKey, UserStrategy),
    Trending {
        k: usize,
        offset: usize,
        category: Option<String>,
        window: i64,
    },
}

/// [`SearchOptions`] with floats as bit patterns, so they hash.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct OptionsKey {
    k: usize,
    offset: usize,
    filter: (Option<String>, Vec<String>, Vec<String>, Vec<EntityId>),
    score_threshold: Option<u32>,
    diversity: u32,
    exact: bool,
    collaborative: bool,
}

impl From<&SearchOptions> for OptionsKey {
    fn from(o: &SearchOptions) -> Self {
        let Filter {
            category,
            tags_any,
            tags_all,
            exclude,
        } = &o.filter;
        Self {
            k: o.k,
            offset: o.offset,
            filter: (
                category.clone(),
                tags_any.clone(),
                tags_all.clone(),
                exclude.clone(),
            ),
            score_threshold: o.score_threshold.map(f32::to_bits),
            diversity: o.diversity.to_bits(),
            exact: o.exact,
            collaborative: o.space == Space::Collaborative,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ExampleKey {
    Id(EntityId, u32),
    Vector(Vec<u32>, u32),
}

impl From<&Example> for ExampleKey {
    fn from(e: &Example) -> Self {
        match &e.target {
            ExampleTarget::Id(id) => ExampleKey::Id(id.clone(), e.weight.to_bits()),
            ExampleTarget::Vector(v) => {
                ExampleKey::Vector(v.iter().map(|x| x.to_bits()).collect(), e.weight.to_bits())
            }
        }
    }
}

impl QueryKey {
    pub fn recommend(
        positive: &[Example],
        negative: &[Example],
        strategy: ExampleStrategy,
        options: &SearchOptions,
    ) -> Self {
        QueryKey::Recommend {
            positive: positive.iter().map(ExampleKey::from).collect(),
            negative: negative.iter().map(ExampleKey::from).collect(),
            best_score: strategy == ExampleStrategy::BestScore,
            options: options.into(),
        }
    }

    pub fn trending(query: &TrendingQuery) -> Self {
        QueryKey::Trending {
            k: query.k,
            offset: query.offset,
            category: query.category.clone(),
            window: query.window.millis(),
        }
    }
}

/// The key an answer is shared under between processes: a versioned, unambiguous encoding,
/// field by field, never `Debug` output. A text is written with its length first, so no
/// choice of ids or labels can make two questions encode alike.
#[derive(Debug)]
pub(crate) struct SharedKey(String);

impl SharedKey {
    /// The version of the encoding. Change it whenever what a key holds changes, so that
    /// servers of two versions never serve each other's answers.
    pub const VERSION: &'static str = "reco.answer.v1";

    pub fn new() -> Self {
        Self(Self::VERSION.to_owned())
    }

    pub fn number(&mut self, n: u64) -> &mut Self {
        self.0.push('/');
        self.0.push_str(&n.to_string());
        self
    }

    pub fn float(&mut self, x: f32) -> &mut Self {
        self.number(u64::from(x.to_bits()))
    }

    pub fn flag(&mut self, on: bool) -> &mut Self {
        self.number(u64::from(on))
    }

    pub fn text(&mut self, text: &str) -> &mut Self {
        self.0.push('/');
        self.0.push_str(&text.len().to_string());
        self.0.push(':');
        self.0.push_str(text);
        self
    }

    pub fn maybe_text(&mut self, text: Option<&str>) -> &mut Self {
        match text {
            Some(text) => self.flag(true).text(text),
            None => self.flag(false),
        }
    }

    pub fn texts<'a>(&mut self, texts: impl ExactSizeIterator<Item = &'a str>) -> &mut Self {
        self.number(texts.len() as u64);
        texts.for_each(|t| {
            self.text(t);
        });
        self
    }

    pub fn finish(self) -> String {
        self.0
    }
}

impl QueryKey {
    /// Writes the question into a shared key.
    pub fn encode(&self, key: &mut SharedKey) {
        match self {
            QueryKey::Similar(id, options) => {
                key.text("similar").text(id.as_str());
                options.encode(key);
            }
            QueryKey::Recommend {
                positive,
                negative,
                best_score,
                options,
            } => {
                key.text("recommend").flag(*best_score);
                for list in [positive, negative] {
                    key.number(list.len() as u64);
                    list.iter().for_each(|e| e.encode(key));
                }
                options.encode(key);
            }
            QueryKey::User(user, options, strategy) => {
                key.text("user").text(user.as_str());
                options.encode(key);
                key.text(strategy.as_str());
            }
            QueryKey::Trending {
                k,
                offset,
                category,
                window,
            } => {
                key.text("trending")
                    .number(*k as u64)
                    .number(*offset as u64)
                    .maybe_text(category.as_deref())
                    .number(window.unsigned_abs());
            }
        }
    }
}

impl OptionsKey {
    fn encode(&self, key: &mut SharedKey) {
        let (category, tags_any, tags_all, exclude) = &self.filter;
        key.number(self.k as u64)
            .number(self.offset as u64)
            .maybe_text(category.as_deref())
            .texts(tags_any.iter().map(String::as_str))
            .texts(tags_all.iter().map(String::as_str))
            .texts(exclude.iter().map(EntityId::as_str))
            .flag(self.score_threshold.is_some())
            .number(u64::from(self.score_threshold.unwrap_or_default()))
            .number(u64::from(self.diversity))
            .flag(self.exact)
            .flag(self.collaborative);
    }
}

impl ExampleKey {
    fn encode(&self, key: &mut SharedKey) {
        match self {
            ExampleKey::Id(id, weight) => {
                key.text("id").text(id.as_str()).number(u64::from(*weight));
            }
            ExampleKey::Vector(vector, weight) => {
                key.text("vector").number(vector.len() as u64);
                vector.iter().for_each(|x| {
                    key.number(u64::from(*x));
                });
                key.number(u64::from(*weight));
            }
        }
    }
}

/// A user's preference vector, for one entity snapshot and one version of the user's history.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct PreferenceKey {
    pub tenant: TenantName,
    pub user: UserId,
    pub entity_generation: Generation,
    pub user_version: u64,
}

/// `None` when the user has no usable history.
pub(crate) type Preference = Arc<Option<Vec<f32>>>;

/// The tiers, or nothing when the cache is off.
#[derive(Debug)]
pub(crate) struct Caches {
    tiers: Option<Tiers>,
}

#[derive(Debug)]
struct Tiers {
    recommendations: Cache<Key, Arc<Ranking>, Hasher>,
    trending: Cache<Key, Arc<Ranking>, Hasher>,
    preferences: Cache<PreferenceKey, Preference, Hasher>,
}

/// What a cache entry costs in memory, roughly: its key and value as they lie on the heap,
/// plus the cache's own bookkeeping. The tiers are bounded by these bytes, not by entries: an
/// answer of a thousand results weighs a hundred of ten.
trait Weight {
    fn bytes(&self) -> usize;
}

/// The cache's bookkeeping per entry, about.
const ENTRY_OVERHEAD: usize = 128;

impl Weight for Key {
    fn bytes(&self) -> usize {
        let mut encoded = SharedKey::new();
        self.query.encode(&mut encoded);
        size_of::<Self>() + self.tenant.as_str().len() + encoded.finish().len()
    }
}

impl Weight for Arc<Ranking> {
    fn bytes(&self) -> usize {
        let scored = self
            .results
            .iter()
            .map(|s| size_of::<Scored>() + s.id.as_str().len())
            .sum::<usize>();
        let missing = self
            .missing
            .iter()
            .map(|id| size_of::<EntityId>() + id.as_str().len())
            .sum::<usize>();
        size_of::<Ranking>() + scored + missing
    }
}

impl Weight for PreferenceKey {
    fn bytes(&self) -> usize {
        size_of::<Self>() + self.tenant.as_str().len() + self.user.as_str().len()
    }
}

impl Weight for Preference {
    fn bytes(&self) -> usize {
        size_of::<Option<Vec<f32>>>() + self.as_ref().as_ref().map_or(0, |v| v.len() * 4)
    }
}

/// The tiers' hasher: foldhash, seeded at random per process (see the workspace's manifest).
type Hasher = foldhash::quality::RandomState;

fn tier<K, V>(config: &CacheConfig, ttl: std::time::Duration) -> Cache<K, V, Hasher>
where
    K: Hash + Eq + Send + Sync + Weight + 'static,
    V: Clone + Send + Sync + Weight + 'static,
{
    Cache::builder()
        .max_capacity(config.max_bytes)
        .weigher(|key: &K, value: &V| {
            u32::try_from(ENTRY_OVERHEAD + key.bytes() + value.bytes()).unwrap_or(u32::MAX)
        })
        .time_to_live(ttl)
        .build_with_hasher(Hasher::default())
}

/// Looks `key` up in `cache`, computing it once on a miss however many callers ask at once.
/// Errors are not cached.
fn get_or_compute<K, V>(
    cache: &Cache<K, V, Hasher>,
    key: K,
    compute: impl FnOnce() -> Result<V>,
) -> Result<(V, CacheStatus)>
where
    K: Hash + Eq + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    let entry = cache
        .entry(key)
        .or_try_insert_with(compute)
        .map_err(|e| (*e).clone())?;
    let status = if entry.is_fresh() {
        CacheStatus::Miss
    } else {
        CacheStatus::Hit
    };
    Ok((entry.into_value(), status))
}

impl Caches {
    pub fn new(config: &CacheConfig) -> Self {
        let tiers = config.enabled.then(|| Tiers {
            recommendations: tier(config, config.recommendations_ttl),
            trending: tier(config, config.trending_ttl),
            preferences: tier(config, config.user_preferences_ttl),
        });
        Self { tiers }
    }

    /// A ranked answer from `tier`, or `compute`d and kept there.
    pub fn ranking(
        &self,
        tier: CacheTier,
        key: impl FnOnce() -> Key,
        compute: impl FnOnce() -> Result<Ranking>,
    ) -> Result<Answer> {
        let Some(cache) = self.tier(tier) else {
            return Ok(Answer {
                ranking: Arc::new(compute()?),
                cache: CacheStatus::Miss,
            });
        };
        let (ranking, cache) = get_or_compute(cache, key(), || compute().map(Arc::new))?;
        Ok(Answer { ranking, cache })
    }

    fn tier(&self, tier: CacheTier) -> Option<&Cache<Key, Arc<Ranking>, Hasher>> {
        let tiers = self.tiers.as_ref()?;
        Some(match tier {
            CacheTier::Recommendations => &tiers.recommendations,
            CacheTier::Trending => &tiers.trending,
        })
    }

    /// The answer kept under `key` (built only when the cache is on), if any.
    pub fn peek(&self, tier: CacheTier, key: impl FnOnce() -> Key) -> Option<Arc<Ranking>> {
        self.tier(tier)?.get(&key())
    }

    /// Keeps an answer made elsewhere.
    pub fn keep(&self, tier: CacheTier, key: Key, ranking: Arc<Ranking>) {
        if let Some(cache) = self.tier(tier) {
            cache.insert(key, ranking);
        }
    }

    /// A user's preference vector, or `compute`d and kept.
    pub fn preference(
        &self,
        key: impl FnOnce() -> PreferenceKey,
        compute: impl FnOnce() -> Preference,
    ) -> Preference {
        match &self.tiers {
            Some(tiers) => tiers.preferences.get_with(key(), compute),
            None => compute(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::thread;
    use std::time::Duration;

    use super::*;
    use crate::query::Strategy;

    fn key(generation: u64) -> Key {
        Key {
            tenant: TenantName::parse("t").unwrap(),
            generations: [Generation(generation), Generation(0), Generation(0)],
            query: QueryKey::Similar(
                EntityId::parse("a").unwrap(),
                (&SearchOptions::default()).into(),
            ),
        }
    }

    /// Issue 14, F18: 12,500 answers of a thousand results took 68 MiB under a bound of
    /// entries; the bound is in bytes now.
    #[test]
    fn tiers_are_bounded_by_bytes_not_entries() {
        let config = CacheConfig {
            max_bytes: 1 << 20,
            ..CacheConfig::default()
        };
        let caches = Caches::new(&config);
        let thousand = Arc::new(Ranking {
            results: (0..1000)
                .map(|n| Scored {
                    id: EntityId::parse(&format!("entity-{n:08}")).unwrap(),
                    score: 0.5,
                })
                .collect(),
            missing: Vec::new(),
            strategy: Strategy::Similar,
        });
        let one = thousand.bytes();
        assert!(one > 30_000, "{one}");
        for generation in 0..200 {
            caches.keep(
                CacheTier::Recommendations,
                key(generation),
                thousand.clone(),
            );
        }
        let tier = &caches.tiers.as_ref().unwrap().recommendations;
        tier.run_pending_tasks();
        assert!(
            tier.weighted_size() <= config.max_bytes,
            "{}",
            tier.weighted_size()
        );
        let kept = tier.entry_count();
        assert!(
            (5..=30).contains(&kept),
            "{kept} answers of {one} bytes kept"
        );
    }

    fn ranking() -> Ranking {
        Ranking {
            results: Vec::new(),
            missing: Vec::new(),
            strategy: Strategy::Similar,
        }
    }

    #[test]
    fn concurrent_misses_compute_once() {
        let caches = Caches::new(&CacheConfig::default());
        let computed = AtomicUsize::new(0);
        let statuses: Vec<CacheStatus> = thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        let compute = || {
                            computed.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(50));
                            Ok(ranking())
                        };
                        caches
                            .ranking(CacheTier::Recommendations, || key(1), compute)
                            .unwrap()
                            .cache
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        assert_eq!(
            statuses.iter().filter(|s| **s == CacheStatus::Miss).count(),
            1
        );
    }

    #[test]
    fn a_new_generation_misses_and_errors_are_not_kept() {
        let caches = Caches::new(&CacheConfig::default());
        let get = |g| caches.ranking(CacheTier::Recommendations, || key(g), || Ok(ranking()));
        assert_eq!(get(1).unwrap().cache, CacheStatus::Miss);
        assert_eq!(get(1).unwrap().cache, CacheStatus::Hit);
        assert_eq!(get(2).unwrap().cache, CacheStatus::Miss);
        let fail = || Err(crate::EngineError::EntityNotFound("a".into()));
        assert!(
            caches
                .ranking(CacheTier::Trending, || key(3), fail)
                .is_err()
        );
        let ok = caches.ranking(CacheTier::Trending, || key(3), || Ok(ranking()));
        assert_eq!(
            ok.unwrap().cache,
            CacheStatus::Miss,
            "the error was not cached"
        );
    }

    #[test]
    fn expired_answers_are_computed_again() {
        let config = CacheConfig {
            recommendations_ttl: Duration::from_millis(1),
            ..CacheConfig::default()
        };
        let caches = Caches::new(&config);
        let get = || caches.ranking(CacheTier::Recommendations, || key(1), || Ok(ranking()));
        assert_eq!(get().unwrap().cache, CacheStatus::Miss);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(get().unwrap().cache, CacheStatus::Miss);
    }

    #[test]
    fn a_disabled_cache_always_computes() {
        let caches = Caches::new(&CacheConfig {
            enabled: false,
            ..CacheConfig::default()
        });
        for _ in 0..2 {
            let a = caches.ranking(CacheTier::Recommendations, || key(1), || Ok(ranking()));
            assert_eq!(a.unwrap().cache, CacheStatus::Miss);
        }
    }
}
