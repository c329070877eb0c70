//! Recommendations for a user: a preference vector from their time-decayed history (cached by
//! the user's version), or what is trending when they have no usable history.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::collaborative::Collaborative;
use super::prepared::Question;
use super::trending::Trend;
use super::{Engine, Prepared, plans, prepared};
use crate::cache::PreferenceKey;
use crate::config::millis;
use crate::distance::{Probe, narrow};
use crate::error::Result;
use crate::index::EntityIndex;
use crate::interactions::UserProfile;
use crate::mmr;
use crate::model::{
    EntityId, HistoryItem, Metric, Millis, Scored, TenantName, UserHistory, UserId,
};
use crate::query::{Ranking, SearchOptions, Space, Strategy, UserStrategy, Window};
use crate::stamp::Generation;
use crate::topk::Candidate;

pub(super) fn prepare(
    engine: &Engine,
    name: &TenantName,
    user: &UserId,
    options: &SearchOptions,
    strategy: UserStrategy,
) -> Result<Prepared> {
    options.validate()?;
    let space = match strategy {
        UserStrategy::Auto if engine.tenant(name)?.collaborative.load().is_some() => {
            Space::Collaborative
        }
        UserStrategy::Collaborative | UserStrategy::Hybrid => Space::Collaborative,
        UserStrategy::Auto | UserStrategy::Content | UserStrategy::Trending => Space::Content,
    };
    prepared::bind(
        engine,
        name,
        true,
        space,
        Question::User(user.clone(), options.clone(), strategy),
    )
}

pub(super) fn history(
    engine: &Engine,
    name: &TenantName,
    user: &UserId,
    limit: usize,
) -> Result<Option<UserHistory>> {
    let tenant = engine.tenant(name)?;
    let log = tenant.interactions.load();
    let Some(profile) = log.user(user) else {
        return Ok(None);
    };
    let (half_life, floor) = (millis(engine.config.half_life), engine.config.history_floor);
    let mut items: Vec<HistoryItem> = profile
        .items
        .iter()
        .zip(profile.weights(half_life, floor))
        .map(|((entity, decayed), (_, weight))| HistoryItem {
            entity: entity.clone(),
            last: decayed.last(),
            given: decayed.given(),
            weight,
        })
        .collect();
    items.sort_by(|a, b| b.last.cmp(&a.last).then_with(|| a.entity.cmp(&b.entity)));
    let entities = items.len();
    items.truncate(limit);
    Ok(Some(UserHistory {
        newest: profile.newest,
        entities,
        items,
    }))
}

impl Prepared {
    pub(super) fn rank_user(
        &self,
        user: &UserId,
        options: &SearchOptions,
        strategy: UserStrategy,
    ) -> Result<Ranking> {
        let index = &self.index;
        let log = self.log.as_ref().expect("user questions read the log");
        let now = self.clock.now();
        // Trending asked for: the history only says what to leave out.
        let profile = log.user(user);
        let steering = profile.filter(|_| strategy != UserStrategy::Trending);
        let interacted = profile.map_or_else(RoaringBitmap::new, |p| p.touched(index));
        let folded = match (&self.collaborative, steering) {
            (Some(model), Some(profile)) => self.folded(model, user, profile),
            (Some(_) | None, _) => Arc::new(None),
        };
        let preference =
            || steering.map_or_else(|| Arc::new(None), |profile| self.preference(user, profile));
        if let (Some(model), Some(profile), Some(factors)) =
            (&self.collaborative, steering, folded.as_ref())
        {
            let touched = profile.touched(&model.index);
            // `auto` blends content in wherever the model can: its content map gives the
            // entities it did not learn a place in its space.
            let blend = strategy == UserStrategy::Hybrid
                || (strategy == UserStrategy::Auto && model.blends_content());
            if blend {
                return Ok(Ranking {
                    results: self.hybrid(model, factors, touched, profile, options),
                    missing: Vec::new(),
                    strategy: Strategy::Hybrid,
                });
            }
            // What the user touched is left out of the model's space by id, as above.
            let probe = Probe::new(factors, Metric::Dot);
            return Ok(Ranking {
                results: plans::rank(&model.index, options, touched, Some(factors), |v, n| {
                    probe.goodness(v, n)
                }),
                missing: Vec::new(),
                strategy: Strategy::Collaborative,
            });
        }
        if let Some(vector) = preference().as_ref() {
            let probe = Probe::new(vector, index.spec().metric);
            return Ok(Ranking {
                results: plans::rank(index, options, interacted, Some(vector), |v, n| {
                    probe.goodness(v, n)
                }),
                missing: Vec::new(),
                strategy: Strategy::Personalized,
            });
        }
        let window = Window::from_millis(millis(self.config.cold_start_window))?;
        let trend = Trend {
            now,
            window,
            half_life: millis(self.config.trending_half_life),
        };
        Ok(Ranking {
            results: trend.rank(
                index,
                log,
                &options.filter,
                interacted,
                options.k,
                options.offset,
            ),
            missing: Vec::new(),
            strategy: Strategy::Trending,
        })
    }

    /// The user's factors against `model`, folded in from their history now, cached against
    /// the model's space (whose generation no content snapshot shares).
    fn folded(
        &self,
        model: &Collaborative,
        user: &UserId,
        profile: &UserProfile,
    ) -> Arc<Option<Vec<f32>>> {
        let (half_life, floor) = (millis(self.config.half_life), self.config.history_floor);
        self.user_vector(user, profile, model.index.generation, || {
            model.fold_in(profile, half_life, floor)
        })
    }

    /// The user's preference vector in the content space, cached against the entities.
    fn preference(&self, user: &UserId, profile: &UserProfile) -> Arc<Option<Vec<f32>>> {
        let (half_life, floor) = (millis(self.config.half_life), self.config.history_floor);
        self.user_vector(user, profile, self.index.generation, || {
            preference(&self.index, profile, half_life, floor)
        })
    }

    /// A vector of the user's, from the cache of preferences: by the user's version and the
    /// generation of the space it was computed against.
    fn user_vector(
        &self,
        user: &UserId,
        profile: &UserProfile,
        generation: Generation,
        compute: impl FnOnce() -> Option<Vec<f32>>,
    ) -> Arc<Option<Vec<f32>>> {
        let key = || PreferenceKey {
            tenant: self.tenant.name.clone(),
            user: user.clone(),
            entity_generation: generation,
            user_version: profile.version,
        };
        self.caches.preference(key, || Arc::new(compute()))
    }

    /// The model's ranking of one user over every entity: the learnt ones by their factors,
    /// the others by the factors their content maps to (`Collaborative::cold`), in one order of
    /// the same dot product. Each space is searched under the question's filters for the page
    /// (or the pool diversity needs), and the two are merged; diversity then re-ranks the merged
    /// pool by content vectors.
    fn hybrid(
        &self,
        model: &Collaborative,
        factors: &[f32],
        touched_in_model: RoaringBitmap,
        profile: &UserProfile,
        options: &SearchOptions,
    ) -> Vec<Scored> {
        let content = &self.index;
        let want = options.k + options.offset;
        let deep = SearchOptions {
            k: plans::pool_size(options),
            offset: 0,
            diversity: 0.0,
            ..options.clone()
        };
        let probe = Probe::new(factors, Metric::Dot);
        let mut merged = plans::rank(
            &model.index,
            &deep,
            touched_in_model,
            Some(factors),
            |v, n| probe.goodness(v, n),
        );
        merged.extend(plans::rank(
            &model.cold,
            &deep,
            profile.touched(&model.cold),
            Some(factors),
            |v, n| probe.goodness(v, n),
        ));
        // Dot products: higher is better, ties by id.
        merged.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        if options.diversity > 0.0 {
            let pool: Vec<Candidate<'_>> = merged
                .iter()
                .filter_map(|s| {
                    Some(Candidate {
                        goodness: s.score,
                        slot: content.slot_of(s.id.as_str())?,
                        id: s.id.as_str(),
                    })
                })
                .collect();
            let picked = mmr::rerank(content, pool, want, options.diversity);
            return picked
                .into_iter()
                .skip(options.offset)
                .map(|c| Scored {
                    id: EntityId::parse(c.id).expect("an entity's own id"),
                    score: c.goodness,
                })
                .collect();
        }
        merged.into_iter().take(want).skip(options.offset).collect()
    }
}

/// A user's preference vector: the weighted sum of the vectors of the entities they touched
/// (unit vectors under cosine), negatives subtracting, each weight decayed from the user's
/// newest interaction and held above `floor` of what was given. Under euclidean it is divided by
/// the total positive weight, so that it is a point among the entities. `None` when no entity
/// with a positive weight is left. It depends on the user's history and the entities only, not
/// on the clock, so it is cached exactly by the user's version and the entities' generation.
fn preference(
    index: &EntityIndex,
    profile: &UserProfile,
    half_life: Millis,
    floor: f64,
) -> Option<Vec<f32>> {
    if !index.spec().has_vectors() {
        return None;
    }
    let metric = index.spec().metric;
    let mut sum = vec![0.0f64; index.spec().dimension];
    let mut positive_total = 0.0f64;
    for (entity, weight) in profile.weights(half_life, floor) {
        let Some(row) = index.row_of(entity.as_str()) else {
            continue;
        };
        if weight > 0.0 {
            positive_total += weight;
        }
        let unit = if metric == Metric::Cosine {
            row.inverse_norm
        } else {
            1.0
        };
        let scale = weight * f64::from(unit);
        for (s, x) in sum.iter_mut().zip(row.vector) {
            *s += scale * f64::from(*x);
        }
    }
    if positive_total <= 0.0 {
        return None;
    }
    let divisor = if metric == Metric::Euclidean {
        positive_total
    } else {
        1.0
    };
    let vector: Vec<f32> = sum.into_iter().map(|s| narrow(s / divisor)).collect();
    let usable = vector.iter().all(|x| x.is_finite())
        && !(metric == Metric::Cosine && vector.iter().all(|x| *x == 0.0));
    usable.then_some(vector)
}
