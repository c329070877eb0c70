//! Redis: TTL tiers, pipelining, generation keys, and a server that goes down and comes back.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reco_engine::CacheConfig;
use reco_storage::{RedisCache, RedisSettings, StorageError, Tier};
use tokio::process::{Child, Command};

use crate::helpers::{required_env, tenant};

fn cache(url: &str) -> RedisCache {
    RedisCache::new(url, RedisSettings::default(), CacheConfig::default()).unwrap()
}

#[tokio::test]
async fn entries_live_for_their_tier() {
    let redis = cache(&required_env("RECO_TEST_REDIS_URL"));
    redis.ping().await.unwrap();
    let t = tenant(&format!("ttl{}", std::process::id()));
    let generation = redis.bump_generation(&t).await.unwrap();
    redis
        .set(
            Tier::Recommendations,
            &t,
            generation,
            "similar:a",
            b"answer",
        )
        .await
        .unwrap();
    redis
        .set(Tier::Trending, &t, generation, "24h", b"hot")
        .await
        .unwrap();
    redis
        .set(Tier::UserPreferences, &t, generation, "u1", b"vector")
        .await
        .unwrap();
    redis
        .set(Tier::EntityFeatures, &t, generation, "a", b"row")
        .await
        .unwrap();
    let ttl = |tier, key: &'static str| {
        let (redis, t) = (redis.clone(), t.clone());
        async move { redis.ttl(tier, &t, generation, key).await.unwrap().unwrap() }
    };
    assert!((590..=600).contains(&ttl(Tier::Recommendations, "similar:a").await));
    assert!((7190..=7200).contains(&ttl(Tier::Trending, "24h").await));
    assert!((890..=900).contains(&ttl(Tier::UserPreferences, "u1").await));
    assert!((7190..=7200).contains(&ttl(Tier::EntityFeatures, "a").await));
    let got = redis
        .get(Tier::Recommendations, &t, generation, "similar:a")
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"answer"[..]));
    assert_eq!(
        redis
            .get(Tier::Recommendations, &t, generation, "nope")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn batches_are_pipelined_and_generations_invalidate() {
    let redis = cache(&required_env("RECO_TEST_REDIS_URL"));
    let t = tenant(&format!("gen{}", std::process::id()));
    let first = redis.bump_generation(&t).await.unwrap();
    assert_eq!(redis.generation(&t).await.unwrap(), first);
    let items: Vec<(String, Vec<u8>)> = (0..100)
        .map(|i| (format!("k{i}"), vec![i as u8; 3]))
        .collect();
    let borrowed: Vec<(&str, &[u8])> = items
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_slice()))
        .collect();
    redis
        .set_many(Tier::Recommendations, &t, first, &borrowed)
        .await
        .unwrap();
    let keys: Vec<&str> = items
        .iter()
        .map(|(k, _)| k.as_str())
        .chain(["missing"])
        .collect();
    let got = redis
        .get_many(Tier::Recommendations, &t, first, &keys)
        .await
        .unwrap();
    assert_eq!(got.len(), 101);
    assert!(
        got[..100]
            .iter()
            .zip(&items)
            .all(|(g, (_, v))| g.as_deref() == Some(v.as_slice()))
    );
    assert_eq!(got[100], None);
    let second = redis.bump_generation(&t).await.unwrap();
    assert!(second > first);
    let after = redis
        .get_many(Tier::Recommendations, &t, second, &keys[..3])
        .await
        .unwrap();
    assert!(
        after.iter().all(Option::is_none),
        "a new generation sees no old entry"
    );
}

/// A valkey-server of the test's own, on a free port, so stopping it disturbs no other test.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    async fn start(port: u16) -> Self {
        let child = Command::new(required_env("RECO_VALKEY_BIN"))
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("valkey-server starts");
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "valkey-server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Self {
            port,
            child: Some(child),
        }
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn redis_going_down_fails_fast_and_coming_back_recovers() {
    let mut server = OwnRedis::start(free_port()).await;
    let redis = cache(&format!("redis://127.0.0.1:{}", server.port));
    let t = tenant("down");
    redis.set(Tier::Trending, &t, 1, "k", b"v").await.unwrap();
    server.stop().await;

    // The first call after the failure spends at most its budget, and says so with a type.
    let started = Instant::now();
    let err = redis.get(Tier::Trending, &t, 1, "k").await.unwrap_err();
    assert!(matches!(err, StorageError::RedisUnavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(600),
        "took {:?}",
        started.elapsed()
    );
    // Then calls fail at once while the breaker is open: no hang per request.
    let started = Instant::now();
    for _ in 0..100 {
        assert!(matches!(
            redis.get(Tier::Trending, &t, 1, "k").await,
            Err(StorageError::RedisUnavailable(_))
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );
    assert!(redis.is_down());

    let server = OwnRedis::start(server.port).await;
    let started = Instant::now();
    loop {
        match redis.set(Tier::Trending, &t, 1, "k", b"back").await {
            Ok(()) => break,
            Err(e) => {
                assert!(e.is_transient(), "{e:?}");
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "Redis did not come back: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let got = redis.get(Tier::Trending, &t, 1, "k").await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"back"[..]));
    assert!(!redis.is_down());
    drop(server);
}
