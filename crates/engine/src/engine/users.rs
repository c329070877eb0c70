//! Recommendations for a user: a preference vector from their time-decayed history (cached by
//! the user's version), or what is trending when they have no usable history.

use std::sync::Arc;

use roaring::RoaringBitmap;

use super::prepared::Question;
use super::trending::Trend;
use super::{Engine, Prepared, plans, prepared};
use crate::cache::PreferenceKey;
use crate::config::millis;
use crate::distance::{Probe, narrow};
use crate::error::Result;
use crate::index::EntityIndex;
use crate::interactions::UserProfile;
use crate::model::{Metric, Millis, TenantName, UserId};
use crate::query::{Ranking, SearchOptions, Space, Strategy, UserStrategy, Window};

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
        UserStrategy::Collaborative => Space::Collaborative,
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
        if let (Some(model), Some(profile)) = (&self.collaborative, steering) {
            let half_life = millis(self.config.half_life);
            // A fold-in is cached as a preference is: by the user's version, against the
            // model's space (whose generation no content snapshot shares).
            let key = || PreferenceKey {
                tenant: self.tenant.name.clone(),
                user: user.clone(),
                entity_generation: model.index.generation,
                user_version: profile.version,
            };
            let folded = self.caches.preference(key, || {
                Arc::new(model.fold_in(profile, half_life, self.config.history_floor))
            });
            if let Some(factors) = folded.as_ref() {
                // What the user touched is left out of the model's space by id, as above.
                let space = &model.index;
                let touched = profile.touched(space);
                let probe = Probe::new(factors, Metric::Dot);
                return Ok(Ranking {
                    results: plans::rank(space, options, touched, Some(factors), |v, n| {
                        probe.goodness(v, n)
                    }),
                    missing: Vec::new(),
                    strategy: Strategy::Collaborative,
                });
            }
        }
        let preference = steering.map_or_else(
            || Arc::new(None),
            |profile| {
                let key = || PreferenceKey {
                    tenant: self.tenant.name.clone(),
                    user: user.clone(),
                    entity_generation: index.generation,
                    user_version: profile.version,
                };
                let half_life = millis(self.config.half_life);
                let floor = self.config.history_floor;
                self.caches.preference(key, || {
                    Arc::new(preference(index, profile, half_life, floor))
                })
            },
        );
        if let Some(vector) = preference.as_ref() {
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
        let Some(row) = index.slot_of(entity.as_str()).and_then(|s| index.row(s)) else {
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
