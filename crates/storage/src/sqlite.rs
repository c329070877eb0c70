//! SQLite, the embedded default: one file, no server. It keeps data durable for a single reco
//! process; it has no change feed and does not rank (the engine does).

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use reco_engine::{
    ChangeId, CheckedEntities, Created, EntityId, Interaction, InteractionId, Learning, Lineage,
    ModelParts, NewEntity, Stamp, TenantName, TenantSpec,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Row, Sqlite, SqlitePool};

use crate::error::{Result, StorageError, unavailable};
use crate::group_commit::GroupCommit;
use crate::load::Snapshot;
use crate::model::{KeyedInteraction, PoolStats, Recorded, TenantRecord};
use crate::rows;
use crate::settings::SqliteSettings;
use crate::trained::{self, COLUMNS, ModelRow};

/// The embedded backend.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    interactions: GroupCommit<Vec<KeyedInteraction>, Recorded>,
    settings: SqliteSettings,
}

impl SqliteStore {
    /// Opens (or makes) the database file, with its folder. Commits are durable when they
    /// return: write-ahead log with `synchronous = FULL`.
    pub async fn open(settings: SqliteSettings) -> Result<Self> {
        if let Some(parent) = settings.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StorageError::InvalidSetting(format!("cannot make {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::from_str("sqlite://")
            .map_err(|e| StorageError::InvalidSetting(e.to_string()))?
            .filename(&settings.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections.max(1))
            .connect_with(options)
            .await?;
        let writer = pool.clone();
        let interactions = GroupCommit::start(move |group| {
            let pool = writer.clone();
            async move { insert_interactions(&pool, group).await }
        });
        Ok(Self {
            pool,
            interactions,
            settings,
        })
    }

    /// Applies the migrations in `migrations/sqlite`.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../../migrations/sqlite")
            .run(&self.pool)
            .await?;
        Ok(())
    }

    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            waiting: 0,
            max: self.settings.max_connections,
        }
    }

    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn create_tenant(
        &self,
        name: &TenantName,
        spec: TenantSpec,
        learning: &Learning,
        rate_limit: Option<NonZeroU32>,
    ) -> Result<(Created, Lineage)> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // Without content vectors, `vectors` is 0 and the dimension and metric columns (which
        // cannot be NULL here) hold a placeholder nothing reads.
        let (dimension, metric) = rows::spec_columns(spec)?;
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO tenants (name, dimension, metric, vectors, learning, rate_limit, lineage) \
             VALUES ($1, $2, $3, $4, $5, $6, random()) \
             ON CONFLICT (name) DO NOTHING RETURNING lineage",
        )
        .bind(name.as_str())
        .bind(dimension.unwrap_or(1))
        .bind(metric.unwrap_or("dot"))
        .bind(i64::from(spec.has_vectors()))
        .bind(rows::learning_to_json(learning))
        .bind(rate_limit.map(|n| i64::from(n.get())))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(lineage) = inserted {
            tx.commit().await?;
            return Ok((Created::Created, rows::lineage_of(lineage)));
        }
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS}, lineage FROM tenants WHERE name = $1"
        )))
        .bind(name.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let (stored, stored_learning, stored_rate) = tenant_columns(name.as_str(), &row)?;
        let stored = (stored, &stored_learning, stored_rate);
        match rows::conflict(name, stored, (spec, learning, rate_limit)) {
            None => Ok((Created::Existed, rows::lineage_of(row.try_get(4)?))),
            Some(conflict) => Err(conflict),
        }
    }

    pub async fn delete_tenant(&self, name: &TenantName) -> Result<bool> {
        let deleted = sqlx::query("DELETE FROM tenants WHERE name = $1")
            .bind(name.as_str())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(deleted > 0)
    }

    pub async fn tenant(&self, name: &TenantName) -> Result<Option<TenantSpec>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"
        )))
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|row| Ok(tenant_columns(name.as_str(), &row)?.0))
            .transpose()
    }

    pub async fn tenants(&self) -> Result<Vec<(TenantName, TenantSpec)>> {
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS}, name FROM tenants ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        found
            .iter()
            .map(|row| {
                let name: &str = row.try_get(4)?;
                let (spec, ..) = tenant_columns(name, row)?;
                Ok((TenantName::parse(name).map_err(rows::corrupt)?, spec))
            })
            .collect()
    }

    /// Writes a whole batch (checked against the tenant by `Store::upsert_entities`) in one transaction, or nothing, and returns its stamp.
    pub(crate) async fn upsert_entities(
        &self,
        tenant: &TenantName,
        batch: &CheckedEntities,
    ) -> Result<ChangeId> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let stamp = bump(&mut tx, tenant).await?;
        // The write holds the database's write lock from here: the settings read are those
        // the rows will be written under.
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"
        )))
        .bind(tenant.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let (stored, ..) = tenant_columns(tenant.as_str(), &row)?;
        rows::checked_for(tenant, stored, batch)?;
        for e in batch.entities() {
            sqlx::query(
                "INSERT INTO entities (tenant, id, embedding, category, tags, attributes) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (tenant, id) DO UPDATE SET embedding = excluded.embedding, \
                   category = excluded.category, tags = excluded.tags, \
                   attributes = excluded.attributes",
            )
            .bind(tenant.as_str())
            .bind(e.id.as_str())
            .bind(rows::vector_to_blob(&e.vector))
            .bind(e.category.as_deref())
            .bind(rows::tags_to_json(&e.tags))
            .bind(e.attributes.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stamp)
    }

    /// Deletes an entity and returns the change's stamp; `None` when it did not exist.
    pub async fn delete_entity(
        &self,
        tenant: &TenantName,
        id: &EntityId,
    ) -> Result<Option<ChangeId>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let deleted = sqlx::query("DELETE FROM entities WHERE tenant = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Ok(None);
        }
        let stamp = bump(&mut tx, tenant).await?;
        tx.commit().await?;
        Ok(Some(stamp))
    }

    /// Keeps a model unless the tenant's stored one is as new or newer; true when kept.
    pub async fn save_model(&self, tenant: &TenantName, parts: &ModelParts) -> Result<bool> {
        let c = trained::columns(parts);
        let kept = sqlx::query(
            "INSERT INTO models (tenant, version, trained_at, interactions, users, items, \
               factors, seconds, recorded, params, item_ids, item_factors) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant) DO UPDATE SET version = excluded.version, \
               trained_at = excluded.trained_at, interactions = excluded.interactions, \
               users = excluded.users, items = excluded.items, factors = excluded.factors, \
               seconds = excluded.seconds, recorded = excluded.recorded, \
               params = excluded.params, item_ids = excluded.item_ids, \
               item_factors = excluded.item_factors \
             WHERE models.version < excluded.version",
        )
        .bind(tenant.as_str())
        .bind(c.version)
        .bind(c.trained_at)
        .bind(c.interactions)
        .bind(c.users)
        .bind(c.items)
        .bind(c.factors)
        .bind(c.seconds)
        .bind(c.recorded)
        .bind(&c.params)
        .bind(&c.item_ids)
        .bind(&c.item_factors)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(kept > 0)
    }

    /// The tenant's stored model, when it has one.
    pub async fn load_model(&self, tenant: &TenantName) -> Result<Option<ModelParts>> {
        let row: Option<ModelRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM models WHERE tenant = $1"
        )))
        .bind(tenant.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(trained::parts).transpose()
    }

    /// The version of the tenant's stored model, when it has one.
    pub async fn model_version(&self, tenant: &TenantName) -> Result<Option<u64>> {
        let version: Option<(i64,)> =
            sqlx::query_as("SELECT version FROM models WHERE tenant = $1")
                .bind(tenant.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(version.map(|(v,)| v.unsigned_abs()))
    }

    /// Records interactions and returns their stamp once committed. An empty batch changes
    /// nothing and answers the current version.
    pub async fn record_interactions(
        &self,
        tenant: &TenantName,
        batch: Vec<KeyedInteraction>,
    ) -> Result<Recorded> {
        let version: Option<(i64, i64)> =
            sqlx::query_as("SELECT lineage, version FROM tenants WHERE name = $1")
                .bind(tenant.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let Some((lineage, version)) = version else {
            return Err(StorageError::TenantNotFound(tenant.clone()));
        };
        if batch.is_empty() {
            return Ok(Recorded {
                change: rows::change(lineage, version),
                fresh: Vec::new(),
            });
        }
        self.interactions.write(tenant.clone(), batch).await
    }

    pub async fn get_entity(
        &self,
        tenant: &TenantName,
        id: &EntityId,
    ) -> Result<Option<NewEntity>> {
        let row = sqlx::query(
            "SELECT id, embedding, category, tags, attributes FROM entities \
             WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(entity_row).transpose()
    }

    pub async fn counts(&self, tenant: &TenantName) -> Result<(u64, u64)> {
        let (entities, interactions): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM entities WHERE tenant = $1), \
                    (SELECT count(*) FROM interactions WHERE tenant = $1)",
        )
        .bind(tenant.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok((entities.unsigned_abs(), interactions.unsigned_abs()))
    }

    pub async fn add_api_key(&self, tenant: &TenantName, hash: [u8; 32]) -> Result<()> {
        if self.tenant(tenant).await?.is_none() {
            return Err(StorageError::TenantNotFound(tenant.clone()));
        }
        sqlx::query("INSERT INTO api_keys (hash, tenant) VALUES ($1, $2)")
            .bind(&hash[..])
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<TenantName>> {
        let tenant: Option<String> =
            sqlx::query_scalar("SELECT tenant FROM api_keys WHERE hash = $1")
                .bind(&hash[..])
                .fetch_optional(&self.pool)
                .await?;
        tenant
            .map(|t| TenantName::parse(&t).map_err(rows::corrupt))
            .transpose()
    }
}

/// A tenant's dimension and metric (NULL without content vectors), learning and rate limit, as
/// the first four columns.
const TENANT_COLUMNS: &str = "CASE WHEN vectors = 1 THEN dimension END, \
     CASE WHEN vectors = 1 THEN metric END, learning, rate_limit";

/// A tenant's settings from [`TENANT_COLUMNS`].
fn tenant_columns(
    name: &str,
    row: &sqlx::sqlite::SqliteRow,
) -> Result<(TenantSpec, Learning, Option<NonZeroU32>)> {
    let (_, spec) = rows::tenant(name, row.try_get(0)?, row.try_get(1)?)?;
    let learning = rows::learning_from_json(row.try_get(2)?)?;
    Ok((spec, learning, rows::rate_limit(row.try_get(3)?)?))
}

/// Moves a tenant to its next version in `tx` and returns it: the stamp of the change `tx`
/// makes.
async fn bump(tx: &mut sqlx::SqliteConnection, tenant: &TenantName) -> Result<ChangeId> {
    let version: Option<(i64, i64)> = sqlx::query_as(
        "UPDATE tenants SET version = version + 1 WHERE name = $1 RETURNING lineage, version",
    )
    .bind(tenant.as_str())
    .fetch_optional(tx)
    .await?;
    version
        .map(|(lineage, version)| rows::change(lineage, version))
        .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))
}

/// Writes a group of batches in one transaction; each batch is a change with its own stamp.
async fn insert_interactions(
    pool: &SqlitePool,
    group: Vec<(TenantName, Vec<KeyedInteraction>)>,
) -> Result<Vec<Recorded>> {
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let mut recorded = Vec::with_capacity(group.len());
    for (tenant, batch) in &group {
        let change = bump(&mut tx, tenant).await?;
        let mut fresh = Vec::with_capacity(batch.len());
        for (i, id) in batch {
            // An id the tenant holds already (or that this batch gave before) is not recorded
            // again: the partial unique index says so, and nothing is inserted.
            let written = sqlx::query(
                "INSERT INTO interactions (tenant, user_id, entity_id, kind, weight, at_ms, key) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (tenant, key) WHERE key IS NOT NULL DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(i.user.as_str())
            .bind(i.entity.as_str())
            .bind(i.kind.as_str())
            .bind(i.weight)
            .bind(i.timestamp)
            .bind(id.as_ref().map(InteractionId::as_str))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if let sqlx::Error::Database(db) = &e
                    && db.is_foreign_key_violation()
                {
                    StorageError::TenantNotFound(tenant.clone())
                } else {
                    StorageError::from(e)
                }
            })?;
            fresh.push(written.rows_affected() == 1);
        }
        recorded.push(Recorded { change, fresh });
    }
    tx.commit().await?;
    Ok(recorded)
}

/// One tenant's rows as of one moment: reads in one transaction.
pub(crate) struct SqliteSnapshot(sqlx::Transaction<'static, Sqlite>);

impl SqliteStore {
    pub(crate) async fn snapshot(&self) -> Result<SqliteSnapshot> {
        Ok(SqliteSnapshot(
            self.pool.begin().await.map_err(unavailable)?,
        ))
    }
}

impl Snapshot for SqliteSnapshot {
    async fn record(&mut self, tenant: &TenantName) -> Result<Option<TenantRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS}, lineage, version FROM tenants WHERE name = $1"
        )))
        .bind(tenant.as_str())
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|row| {
            let (spec, learning, rate_limit) = tenant_columns(tenant.as_str(), &row)?;
            Ok(TenantRecord {
                spec,
                learning,
                rate_limit,
                lineage: rows::lineage_of(row.try_get(4)?),
                version: Stamp::new(row.try_get::<i64, _>(5)?.unsigned_abs()),
            })
        })
        .transpose()
    }

    crate::load::snapshot_pages!();

    async fn changed_since(
        &mut self,
        _tenant: &TenantName,
        _stamp: i64,
    ) -> Result<(Vec<NewEntity>, Vec<EntityId>)> {
        Err(StorageError::Unsupported(
            "catching an image up from its stamp",
        ))
    }
}

/// A page of a tenant's entities in id order.
const ENTITIES_AFTER: &str = "SELECT id, embedding, category, tags, attributes \
     FROM entities WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3";

/// A page of a tenant's interactions in the order they were recorded.
const INTERACTIONS_AFTER: &str = "SELECT user_id, entity_id, kind, weight, at_ms, seq \
     FROM interactions WHERE tenant = $1 AND at_ms >= $2 AND seq > $3 ORDER BY seq LIMIT $4";

fn entity_row(row: &sqlx::sqlite::SqliteRow) -> Result<NewEntity> {
    let blob: Vec<u8> = row.try_get(1)?;
    rows::entity(
        row.try_get(0)?,
        rows::vector_from_blob(&blob)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    )
}

fn interaction_row(row: &sqlx::sqlite::SqliteRow) -> Result<Interaction> {
    rows::interaction(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    )
}
