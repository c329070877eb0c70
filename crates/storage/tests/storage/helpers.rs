//! Fresh databases and test data.

use std::path::PathBuf;

use rand::Rng;
use reco_engine::{
    ChangeId, CheckedEntities, CheckedInteractions, EngineError, EntityId, Interaction,
    InteractionId, InteractionKind, Metric, NewEntity, TenantName, TenantSpec, UserId,
};
use reco_storage::{PostgresSettings, Recorded, SqliteSettings, StorageError, Store};
use sqlx::Connection;

#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// A variable the README's test command sets, with a message that says so when it is missing.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the tests with ./scripts/test, which starts the services")
    })
}

fn random_name(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::rng().random::<u64>())
}

/// Where a fresh database lives, so it can be opened again as after a restart.
#[derive(Debug, Clone)]
pub struct Fixture {
    url: Option<String>,
    path: PathBuf,
}

pub fn small_pool() -> PostgresSettings {
    PostgresSettings {
        max_connections: 8,
        min_connections: 1,
        ..PostgresSettings::default()
    }
}

impl Fixture {
    /// Makes an empty database, migrated.
    pub async fn new(backend: Backend) -> (Self, Store) {
        let fixture = match backend {
            Backend::Postgres => {
                let admin = required_env("RECO_TEST_DATABASE_URL");
                let name = random_name("reco_test");
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("the test server");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("a fresh database");
                let url = match admin.rsplit_once('/') {
                    Some((base, _)) => format!("{base}/{name}"),
                    None => panic!("RECO_TEST_DATABASE_URL names no database"),
                };
                Fixture {
                    url: Some(url),
                    path: PathBuf::new(),
                }
            }
            Backend::Sqlite => {
                let dir = std::env::temp_dir().join(random_name("reco_test"));
                Fixture {
                    url: None,
                    path: dir.join("data").join("reco.db"),
                }
            }
        };
        let store = fixture.open().await;
        store.migrate().await.expect("migrations");
        (fixture, store)
    }

    /// Opens the database (again).
    pub async fn open(&self) -> Store {
        let sqlite = SqliteSettings {
            path: self.path.clone(),
            ..SqliteSettings::default()
        };
        Store::open(self.url.as_deref(), small_pool(), sqlite)
            .await
            .expect("the store opens")
    }

    pub fn url(&self) -> &str {
        self.url.as_deref().expect("a PostgreSQL fixture")
    }
}

pub fn tenant(name: &str) -> TenantName {
    TenantName::parse(name).unwrap()
}

pub fn spec(dimension: usize, metric: Metric) -> TenantSpec {
    TenantSpec::new(dimension, metric).unwrap()
}

pub fn id(s: &str) -> EntityId {
    EntityId::parse(s).unwrap()
}

pub fn entity(n: usize, vector: Vec<f32>) -> NewEntity {
    NewEntity {
        id: id(&format!("e{n:05}")),
        vector,
        category: Some(format!("c{}", n % 3)),
        tags: vec![format!("t{}", n % 4), "all".to_owned()],
        attributes: Some(format!(r#"{{"n": {n}, "name": "item \"{n}\""}}"#).into()),
    }
}

pub fn random_entities(n: usize, dimension: usize) -> Vec<NewEntity> {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            entity(
                i,
                (0..dimension)
                    .map(|_| rng.random_range(-1.0f32..1.0))
                    .collect(),
            )
        })
        .collect()
}

pub fn interaction(user: usize, entity: usize, at: i64) -> Interaction {
    Interaction {
        user: UserId::parse(&format!("u{user}")).unwrap(),
        entity: id(&format!("e{entity:05}")),
        kind: InteractionKind::ALL[(user + entity) % 5],
        weight: if entity.is_multiple_of(2) {
            None
        } else {
            Some(1.5)
        },
        timestamp: at,
    }
}

/// Attributes compared as JSON values: PostgreSQL's jsonb rewrites spacing.
pub fn same_json(a: Option<&str>, b: Option<&str>) -> bool {
    let parse = |s: Option<&str>| s.map(|s| serde_json::from_str::<serde_json::Value>(s).unwrap());
    parse(a) == parse(b)
}

/// The engine's refusal of a batch, as the item it names.
fn refused(error: EngineError) -> StorageError {
    let EngineError::InvalidItem { index, source } = error else {
        panic!("a batch check fails on an item, not with {error:?}");
    };
    StorageError::InvalidRow {
        index,
        reason: source.to_string(),
    }
}

/// Writes a batch as the server does: checked once by the engine against the tenant's stored
/// settings, then written. A refused batch reaches storage as nothing at all.
pub async fn upsert(
    store: &Store,
    tenant: &TenantName,
    batch: &[NewEntity],
) -> reco_storage::Result<ChangeId> {
    let spec = store
        .tenant(tenant)
        .await?
        .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
    let checked = CheckedEntities::new(spec, batch.to_vec()).map_err(refused)?;
    store.upsert_entities(tenant, &checked).await
}

/// Records a batch as the server does: checked once by the engine, then written.
pub async fn record(
    store: &Store,
    tenant: &TenantName,
    batch: Vec<Interaction>,
) -> reco_storage::Result<ChangeId> {
    let ids = vec![None; batch.len()];
    record_with_ids(store, tenant, batch, ids)
        .await
        .map(|recorded| recorded.change)
}

/// [`record`], each interaction with the id its client gave (or none).
pub async fn record_with_ids(
    store: &Store,
    tenant: &TenantName,
    batch: Vec<Interaction>,
    ids: Vec<Option<InteractionId>>,
) -> reco_storage::Result<Recorded> {
    let checked = CheckedInteractions::new(batch).map_err(refused)?;
    store.record_interactions(tenant, checked, ids).await
}
