//! Ranked answers through two caches: the engine's own (L1), then Redis (L2), which servers
//! sharing a database share.
//!
//! An L2 entry is named by the engine's [`Prepared::shared_key`]: a versioned encoding of the
//! tenant's lineage, the stamps of the data the answer read, every setting that changes an
//! answer, and the question. Every server that applied the same stamps holds the same data, so
//! an entry made by one is right for every server with the same settings; after a write the
//! stamps move on and no server can reach an answer about the old data. A server that has not
//! heard of a write yet reads entries of the stamps it has, which is as fresh as its own memory.
//! Redis is never in the way: a failed or slow call (see `RedisCache`) is a miss, and entries
//! are written in the background.

use reco_engine::{Answer, CacheStatus, CacheTier, EntityId, Prepared, Ranking, Scored, Strategy};
use reco_storage::{RedisCache, Tier};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

/// An answer as L2 keeps it.
#[derive(Debug, Serialize, Deserialize)]
struct Stored {
    strategy: String,
    results: Vec<(String, f32)>,
    missing: Vec<String>,
}

fn encode(ranking: &Ranking) -> Vec<u8> {
    let stored = Stored {
        strategy: ranking.strategy.as_str().to_owned(),
        results: ranking
            .results
            .iter()
            .map(|s| (s.id.to_string(), s.score))
            .collect(),
        missing: ranking.missing.iter().map(ToString::to_string).collect(),
    };
    serde_json::to_vec(&stored).expect("an answer serializes")
}

/// The answer in `bytes`, or `None` when they are not one (written by another version).
fn decode(bytes: &[u8]) -> Option<Ranking> {
    let stored: Stored = serde_json::from_slice(bytes).ok()?;
    let id = |text: &str| EntityId::parse(text).ok();
    Some(Ranking {
        strategy: Strategy::parse(&stored.strategy)?,
        results: stored
            .results
            .iter()
            .map(|(text, score)| {
                Some(Scored {
                    id: id(text)?,
                    score: *score,
                })
            })
            .collect::<Option<_>>()?,
        missing: stored
            .missing
            .iter()
            .map(|text| id(text))
            .collect::<Option<_>>()?,
    })
}

fn tiers(tier: CacheTier) -> (&'static str, Tier) {
    match tier {
        CacheTier::Recommendations => ("recommendations", Tier::Recommendations),
        CacheTier::Trending => ("trending", Tier::Trending),
    }
}

/// The L2 key of a prepared question: a digest of its shared key (which holds raw vectors of
/// examples and can be long).
fn l2_key(prepared: &Prepared) -> String {
    hex::encode(Sha256::digest(prepared.shared_key().as_bytes()))
}

/// The answer to `prepared`: from L1 (looked up on the calling worker), else from L2 (kept in
/// L1 then), else ranked now (and kept in both): on this worker when cheap, else on the
/// rankers.
pub async fn answer(
    state: &AppState,
    tenant: &reco_engine::TenantName,
    prepared: Prepared,
) -> Result<Answer, ApiError> {
    let (tier, _) = tiers(prepared.tier());
    let metrics = &state.metrics;
    let cache = state.engine.config().cache.enabled;
    // A hit is answered here, on the HTTP worker: a hop to the rankers and back (two thread
    // wake-ups) would cost a cached answer several times what finding it does.
    if cache && let Some(hit) = prepared.cached() {
        metrics.observe_cache(tier, "memory", CacheStatus::Hit);
        return Ok(hit);
    }
    let Some(redis) = state.redis.as_ref().filter(|_| cache) else {
        let answer = rank(state, prepared).await?;
        metrics.observe_cache(tier, "memory", answer.cache);
        return Ok(answer);
    };
    metrics.observe_cache(tier, "memory", CacheStatus::Miss);
    // Boxed: Redis's futures are large, and every handler's future (which actix moves into a
    // box of its own for each request) would carry their size even when answered from L1.
    Box::pin(through_redis(state, redis, tenant, prepared)).await
}

/// The answer to a question L1 does not hold: from L2, else ranked and kept in both.
async fn through_redis(
    state: &AppState,
    redis: &RedisCache,
    tenant: &reco_engine::TenantName,
    prepared: Prepared,
) -> Result<Answer, ApiError> {
    let (tier, redis_tier) = tiers(prepared.tier());
    let metrics = &state.metrics;
    let key = l2_key(&prepared);
    match redis.get(redis_tier, tenant, &key).await {
        Ok(Some(bytes)) => match decode(&bytes) {
            Some(ranking) => {
                metrics.observe_cache(tier, "redis", CacheStatus::Hit);
                return Ok(prepared.keep(ranking));
            }
            None => tracing::warn!(key, "an L2 entry is not an answer; ranking instead"),
        },
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "L2 read failed; ranking instead"),
    }
    metrics.observe_cache(tier, "redis", CacheStatus::Miss);
    let answer = rank(state, prepared).await?;
    if answer.cache == CacheStatus::Miss {
        keep_shared(
            redis.clone(),
            redis_tier,
            tenant.clone(),
            key,
            &answer.ranking,
        );
    }
    Ok(answer)
}

/// Ranks on the rankers' threads, stopped with the request's time limit.
async fn rank(state: &AppState, prepared: Prepared) -> Result<Answer, ApiError> {
    let deadline = std::time::Instant::now() + state.settings.request_timeout;
    state.rankers.answer(prepared, deadline).await
}

/// Writes an answer to L2 in the background: the response does not wait for Redis.
fn keep_shared(
    redis: RedisCache,
    tier: Tier,
    tenant: reco_engine::TenantName,
    key: String,
    ranking: &Ranking,
) {
    let bytes = encode(ranking);
    actix_web::rt::spawn(async move {
        if let Err(e) = redis.set(tier, &tenant, &key, &bytes).await {
            tracing::debug!(error = %e, "L2 write failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_their_l2_form() {
        let ranking = Ranking {
            results: vec![
                Scored {
                    id: EntityId::parse("a b").unwrap(),
                    score: 0.1 + 0.2,
                },
                Scored {
                    id: EntityId::parse("é").unwrap(),
                    score: -3.5e-7,
                },
            ],
            missing: vec![EntityId::parse("gone").unwrap()],
            strategy: Strategy::BestScore,
        };
        assert_eq!(decode(&encode(&ranking)), Some(ranking));
        assert_eq!(decode(b"not json"), None);
        assert_eq!(
            decode(br#"{"strategy":"other","results":[],"missing":[]}"#),
            None
        );
    }
}
