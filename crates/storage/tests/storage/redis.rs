//! Redis: TTL tiers, and a server that goes down and comes back.

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
    let url = required_env("RECO_TEST_REDIS_URL");
    let redis = cache(&url);
    redis.ping().await.unwrap();
    let t = tenant(&format!("ttl{}", std::process::id()));
    redis
        .set(Tier::Recommendations, &t, "similar:a", b"answer")
        .await
        .unwrap();
    assert!(redis.set(Tier::Trending, &t, "24h", b"hot").await.unwrap());
    // Issue 14, F18: a value over the limit is not kept (Redis is shared by every tenant).
    let large = vec![b'x'; RedisSettings::default().max_value_bytes + 1];
    assert!(!redis.set(Tier::Trending, &t, "deep", &large).await.unwrap());
    assert_eq!(redis.get(Tier::Trending, &t, "deep").await.unwrap(), None);
    // Read each entry's TTL over a plain connection: the tiers are the reference's.
    let mut raw = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let mut ttls = Vec::new();
    for key in [
        format!("reco:{t}:rec:similar:a"),
        format!("reco:{t}:trend:24h"),
    ] {
        let left: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut raw)
            .await
            .unwrap();
        ttls.push(left);
    }
    assert!((590..=600).contains(&ttls[0]), "{ttls:?}");
    assert!((7190..=7200).contains(&ttls[1]), "{ttls:?}");
    let got = redis
        .get(Tier::Recommendations, &t, "similar:a")
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"answer"[..]));
    assert_eq!(
        redis.get(Tier::Recommendations, &t, "nope").await.unwrap(),
        None
    );
    // Tiers and tenants are apart: the same key in another tier or tenant is another entry.
    assert_eq!(
        redis.get(Tier::Trending, &t, "similar:a").await.unwrap(),
        None
    );
    let other = tenant(&format!("ttl{}b", std::process::id()));
    assert_eq!(
        redis
            .get(Tier::Recommendations, &other, "similar:a")
            .await
            .unwrap(),
        None
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
    redis.set(Tier::Trending, &t, "k", b"v").await.unwrap();
    server.stop().await;

    // The first call after the failure spends at most its budget, and says so with a type.
    let started = Instant::now();
    let err = redis.get(Tier::Trending, &t, "k").await.unwrap_err();
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
            redis.get(Tier::Trending, &t, "k").await,
            Err(StorageError::RedisUnavailable(_))
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(100),
        "took {:?}",
        started.elapsed()
    );

    let server = OwnRedis::start(server.port).await;
    let started = Instant::now();
    loop {
        match redis.set(Tier::Trending, &t, "k", b"back").await {
            Ok(_) => break,
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
    let got = redis.get(Tier::Trending, &t, "k").await.unwrap();
    assert_eq!(got.as_deref(), Some(&b"back"[..]));
    drop(server);
}

/// Issue 14, F17: while Redis is down, no request waits on it. A server that accepts
/// connections and never answers makes every attempt wait out its budget; only the first call
/// pays it, then the breaker stays open and the probe runs in the background (it ran on a
/// request, about one a second, each waiting the whole budget).
#[tokio::test]
async fn a_silent_redis_is_probed_in_the_background_not_on_requests() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let settings = RedisSettings {
        command_timeout: Duration::from_millis(200),
        down_for: Duration::from_millis(50),
        ..RedisSettings::default()
    };
    let redis = RedisCache::new(
        &format!("redis://127.0.0.1:{port}"),
        settings,
        CacheConfig::default(),
    )
    .unwrap();
    let t = tenant("silent");
    assert!(redis.get(Tier::Trending, &t, "k").await.is_err());
    // Several probe periods pass; every call is refused at once all along.
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(800) {
        let call = Instant::now();
        let err = redis.get(Tier::Trending, &t, "k").await.unwrap_err();
        assert!(matches!(err, StorageError::RedisUnavailable(_)), "{err:?}");
        slowest = slowest.max(call.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        slowest < Duration::from_millis(50),
        "a call waited {slowest:?}"
    );
    held.abort();
}
