//! A question checked and bound to the snapshots it reads: its cache keys (the engine's, and
//! the one shared between processes), the cache lookups, and the dispatch to each mode's
//! ranking.

use std::sync::Arc;

use super::collaborative::Collaborative;
use super::tenants::Tenant;
use super::{Engine, recommend, similar};
use crate::cache::{CacheTier, Caches, Key, QueryKey, SharedKey};
use crate::config::{Clock, EngineConfig, millis};
use crate::error::{EngineError, Result};
use crate::index::EntityIndex;
use crate::interactions::InteractionLog;
use crate::interrupt::{self, Interrupt};
use crate::model::{EntityId, TenantName, UserId};
use crate::query::{
    Answer, CacheStatus, Ranking, RecommendRequest, SearchOptions, Space, TrendingQuery,
    UserStrategy,
};
use crate::stamp::Generation;

/// Binds a question to the tenant's current snapshots. In [`Space::Collaborative`] it binds the
/// model too (refused when there is none): a similar question then searches the model's item
/// factors, and a user's question folds the user in against them.
pub(super) fn bind(
    engine: &Engine,
    name: &TenantName,
    with_log: bool,
    space: Space,
    question: Question,
) -> Result<Prepared> {
    let tenant = engine.tenant(name)?;
    let needs_vectors = match &question {
        Question::Similar { .. } | Question::Recommend(_) => space == Space::Content,
        Question::User(_, _, strategy) => {
            matches!(strategy, UserStrategy::Content | UserStrategy::Hybrid)
        }
        Question::Trending(_) => false,
    };
    if needs_vectors && !tenant.spec.has_vectors() {
        return Err(EngineError::NoContentVectors(name.clone()));
    }
    let collaborative = match space {
        Space::Content => None,
        Space::Collaborative => Some(
            tenant
                .collaborative
                .load_full()
                .ok_or_else(|| EngineError::NoModel(name.clone()))?,
        ),
    };
    let index = match (&collaborative, &question) {
        (Some(model), Question::Similar { .. }) => model.index.clone(),
        (Some(_) | None, _) => tenant.entities.load_full(),
    };
    let log = with_log.then(|| tenant.interactions.load_full());
    let prepared = Prepared {
        config: engine.config.clone(),
        clock: engine.clock.clone(),
        caches: engine.caches.clone(),
        tenant,
        index,
        log,
        collaborative,
        question,
        looked_up: None,
    };
    prepared.within_budget()?;
    Ok(prepared)
}

/// A question, as [`Prepared`] keeps it.
#[derive(Debug)]
pub(super) enum Question {
    /// The neighbours of `id`, whose slot in the bound index is `slot` when preparing looked
    /// it up (it does not when the answer was in the cache: see [`Prepared::looked_up`]).
    Similar {
        id: EntityId,
        slot: Option<u32>,
        options: SearchOptions,
    },
    Recommend(RecommendRequest),
    User(UserId, SearchOptions, UserStrategy),
    Trending(TrendingQuery),
}

/// A question checked and bound to the snapshots it will be answered from.
///
/// It lets a host put a cache of its own behind the engine's: look in the engine's cache
/// ([`Prepared::cached`]), then in the host's under [`Prepared::shared_key`], keeping what it
/// finds there ([`Prepared::keep`]), and only then rank ([`Prepared::answer`]). It owns what
/// it reads, so a host may hand it to another thread and answer many together
/// ([`Prepared::answer_all`]).
#[derive(Debug)]
pub struct Prepared {
    pub(super) config: Arc<EngineConfig>,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) caches: Arc<Caches>,
    pub(super) tenant: Arc<Tenant>,
    pub(super) index: Arc<EntityIndex>,
    pub(super) log: Option<Arc<InteractionLog>>,
    /// The collaborative model the question is asked of, in that space.
    pub(super) collaborative: Option<Arc<Collaborative>>,
    pub(super) question: Question,
    /// What preparing found in the engine's cache, when it looked there: `Some(None)` for
    /// nothing. A similar question looks before it checks that its entity exists (an answer
    /// kept about this snapshot proves it does), so a hit costs no lookup of the id.
    pub(super) looked_up: Option<Option<Arc<Ranking>>>,
}

impl Prepared {
    /// The TTL tier its answer is cached in.
    pub fn tier(&self) -> CacheTier {
        match self.question {
            Question::Trending(_) => CacheTier::Trending,
            Question::Similar { .. } | Question::Recommend(_) | Question::User(..) => {
                CacheTier::Recommendations
            }
        }
    }

    fn query_key(&self) -> QueryKey {
        match &self.question {
            Question::Similar { id, options, .. } => QueryKey::Similar(id.clone(), options.into()),
            Question::Recommend(r) => {
                QueryKey::recommend(&r.positive, &r.negative, r.strategy, &r.options)
            }
            Question::User(user, options, strategy) => {
                QueryKey::User(user.clone(), options.into(), *strategy)
            }
            Question::Trending(query) => QueryKey::trending(query),
        }
    }

    fn key(&self) -> Key {
        Key {
            tenant: self.tenant.name.clone(),
            generations: [
                self.index.generation,
                self.log
                    .as_ref()
                    .map_or(Generation::default(), |log| log.generation),
                self.collaborative
                    .as_ref()
                    .map_or(Generation::default(), |model| model.index.generation),
            ],
            query: self.query_key(),
        }
    }

    /// A name for the question and the data it reads that means the same in every engine
    /// applying the same stamped changes (see [`Engine::upsert_at`]) with the same settings:
    /// a versioned encoding of the tenant's lineage, the stamps of the snapshots read, every
    /// setting that can change an answer (exact, breadth, codes, oversampling, the graph's
    /// shape and threshold, kind weights, half-lives and windows) and the question. A host may
    /// share answers between processes under it: two servers whose settings differ never serve
    /// each other's answers. The tenant's name is not part of it.
    pub fn shared_key(&self) -> String {
        let mut key = SharedKey::new();
        key.number(self.tenant.lineage.get())
            .number(self.index.stamp.get())
            .number(self.log.as_ref().map_or(0, |log| log.stamp.get()))
            .number(
                self.collaborative
                    .as_ref()
                    .map_or(0, |model| model.info.version),
            );
        let config = &self.config;
        let search = &config.search;
        key.flag(search.exact)
            .number(search.threshold as u64)
            .number(search.connectivity as u64)
            .number(search.expansion_add as u64)
            .number(self.index.search_breadth() as u64)
            .number(search.oversample as u64)
            .flag(search.quantized);
        let weights = config.kind_weights;
        for weight in [
            weights.view,
            weights.click,
            weights.like,
            weights.purchase,
            weights.dislike,
        ] {
            key.float(weight);
        }
        for duration in [
            config.half_life,
            config.trending_half_life,
            config.trending_retention,
            config.cold_start_window,
        ] {
            key.number(millis(duration).unsigned_abs());
        }
        key.number(config.history_floor.to_bits());
        self.query_key().encode(&mut key);
        key.finish()
    }

    /// The answer from the engine's cache, when it holds one. A similar question looks there
    /// once, as it is prepared, and this returns what it found then.
    pub fn cached(&self) -> Option<Answer> {
        match &self.looked_up {
            Some(found) => found.clone(),
            None => self.peek(),
        }
        .map(|ranking| Answer {
            ranking,
            cache: CacheStatus::Hit,
        })
    }

    /// Looks the question up in the engine's cache (building no key when the cache is off).
    pub(super) fn peek(&self) -> Option<Arc<Ranking>> {
        self.caches.peek(self.tier(), || self.key())
    }

    /// Keeps an answer found elsewhere (under [`Prepared::shared_key`]) in the engine's cache,
    /// and returns it as a hit.
    pub fn keep(&self, ranking: Ranking) -> Answer {
        let ranking = Arc::new(ranking);
        self.caches.keep(self.tier(), self.key(), ranking.clone());
        Answer {
            ranking,
            cache: CacheStatus::Hit,
        }
    }

    /// The answer: from the engine's cache, or ranked now and kept there.
    pub fn answer(self) -> Result<Answer> {
        if let Some(Some(ranking)) = &self.looked_up {
            return Ok(Answer {
                ranking: ranking.clone(),
                cache: CacheStatus::Hit,
            });
        }
        let key = || self.key();
        self.caches.ranking(self.tier(), key, || self.rank())
    }

    /// The answer, as [`Prepared::answer`], ranked under `interrupt`: stopped (by the host or
    /// its deadline) before the ranking finished, it is [`EngineError::Interrupted`] and nothing
    /// is cached. See [`Interrupt`].
    pub fn answer_until(self, interrupt: &Arc<Interrupt>) -> Result<Answer> {
        interrupt::within(interrupt, || self.answer())
    }

    /// Keeps a ranking made now in the engine's cache, and returns it as a miss.
    pub(super) fn store(&self, ranking: Ranking) -> Answer {
        let ranking = Arc::new(ranking);
        self.caches.keep(self.tier(), self.key(), ranking.clone());
        Answer {
            ranking,
            cache: CacheStatus::Miss,
        }
    }

    /// Ranks the question; [`EngineError::Interrupted`] when the current interrupt stopped it
    /// before it finished (its loops ended early, so what they made is not the answer).
    pub(super) fn rank(&self) -> Result<Ranking> {
        let index = &self.index;
        let ranking = match &self.question {
            Question::Similar { id, slot, options } => similar::rank(index, id, *slot, options),
            Question::Recommend(request) => recommend::rank(index, request),
            Question::User(user, options, strategy) => self.rank_user(user, options, *strategy),
            Question::Trending(query) => self.rank_trending(query),
        }?;
        if interrupt::stopped() {
            return Err(EngineError::Interrupted);
        }
        Ok(ranking)
    }
}
