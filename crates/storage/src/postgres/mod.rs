//! PostgreSQL with pgvector.
//!
//! Entity vectors live in one untyped `vector` column; each tenant gets its own HNSW index, a
//! partial expression index that casts to the tenant's dimension (`(embedding::vector(128))`),
//! made with the tenant. A query uses it by naming the same expression and the tenant as a
//! literal; the exact mode names the uncast column, which no index covers.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use reco_engine::{
    ChangeId, CheckedEntities, Created, EntityId, Interaction, Learning, Lineage, Metric,
    NewEntity, Stamp, TenantName, TenantSpec,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, PgPool, Postgres, Row};

use crate::error::{Result, StorageError, unavailable};
use crate::group_commit::GroupCommit;
use crate::model::{KeyedInteraction, PoolStats, Recorded};
use crate::notice::{CHANNEL, ChangeKind, new_origin, notice};
use crate::rows;
use crate::settings::PostgresSettings;

mod groups;
mod models;
mod search;
mod snapshot;

use groups::{insert_interactions, notify, upsert_group, write_error};
use snapshot::{entity_row, interaction_row};

/// The PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    entities: GroupCommit<CheckedEntities>,
    interactions: GroupCommit<Vec<KeyedInteraction>, Recorded>,
    /// Names this server in its change notices, for people reading them.
    origin: Arc<str>,
    waiting: Arc<AtomicU32>,
    settings: PostgresSettings,
}

pub(super) fn operator(metric: Metric) -> (&'static str, &'static str) {
    match metric {
        Metric::Cosine => ("<=>", "vector_cosine_ops"),
        Metric::Dot => ("<#>", "vector_ip_ops"),
        Metric::Euclidean => ("<->", "vector_l2_ops"),
    }
}

/// The name of a tenant's HNSW index, from its small id.
fn index_name(tid: i64) -> String {
    format!("entities_hnsw_{tid}")
}

/// The statement that makes a tenant's HNSW index: a partial expression index on its rows,
/// cast to its dimension, with its metric's operator class.
fn vector_index_ddl(tid: i64, name: &TenantName, spec: TenantSpec, if_missing: bool) -> String {
    let (_, ops) = operator(spec.metric);
    format!(
        "CREATE INDEX {}{} ON entities USING hnsw ((embedding::vector({})) {ops}) WHERE tenant = {}",
        if if_missing { "IF NOT EXISTS " } else { "" },
        index_name(tid),
        spec.dimension,
        literal(name)
    )
}

/// A tenant name as an SQL literal. Names are `[a-z0-9_-]` by construction, so this cannot
/// break out of the quotes; the doubling is a second guard.
/// A stamp as the `batch` and `version` columns hold it.
fn stored(stamp: Stamp) -> i64 {
    i64::try_from(stamp.get()).unwrap_or(i64::MAX)
}

/// A lineage as the `lineage` column holds it: its 64 bits as a `bigint`.
fn stored_lineage(lineage: Lineage) -> i64 {
    i64::from_ne_bytes(lineage.get().to_ne_bytes())
}

/// A tenant's settings as [`TENANT_COLUMNS`] lists them.
pub(super) type TenantColumns = (TenantSpec, Learning, Option<NonZeroU32>);

/// A tenant's settings: its dimension and metric, learning and rate limit, in this order.
pub(super) const TENANT_COLUMNS: &str = "dimension, metric, learning, rate_limit";

/// A tenant's settings from its [`TENANT_COLUMNS`], the first at `at`.
pub(super) fn tenant_columns(
    name: &str,
    row: &sqlx::postgres::PgRow,
    at: usize,
) -> Result<TenantColumns> {
    let dimension: Option<i32> = row.try_get(at)?;
    let metric: Option<&str> = row.try_get(at + 1)?;
    let (_, spec) = rows::tenant(name, dimension.map(i64::from), metric)?;
    let learning = rows::learning_from_json(row.try_get(at + 2)?)?;
    let rate_limit = rows::rate_limit(row.try_get::<Option<i32>, _>(at + 3)?.map(i64::from))?;
    Ok((spec, learning, rate_limit))
}

pub(super) fn literal(tenant: &TenantName) -> String {
    format!("'{}'", tenant.as_str().replace('\'', "''"))
}

impl PgStore {
    /// Connects, runs the session settings on every new connection, and opens the pool's
    /// minimum connections in the background.
    pub async fn connect(url: &str, settings: PostgresSettings) -> Result<Self> {
        settings.validate()?;
        let options: PgConnectOptions = url
            .parse()
            .map_err(|e| StorageError::InvalidSetting(format!("DATABASE_URL: {e}")))?;
        let statements = Arc::new(settings.session_statements());
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(settings.min_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _meta| {
                let statements = statements.clone();
                Box::pin(async move {
                    for statement in statements.iter() {
                        conn.execute(AssertSqlSafe(statement.clone())).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let origin: Arc<str> = new_origin().into();
        let writer = (pool.clone(), origin.clone());
        let interactions = GroupCommit::start(move |group| {
            let (pool, origin) = writer.clone();
            async move { insert_interactions(&pool, &origin, group).await }
        });
        let writer = (pool.clone(), origin.clone());
        let entities = GroupCommit::start(move |group| {
            let (pool, origin) = writer.clone();
            async move { upsert_group(&pool, &origin, group).await }
        });
        Ok(Self {
            pool,
            entities,
            interactions,
            origin,
            waiting: Arc::new(AtomicU32::new(0)),
            settings,
        })
    }

    /// Applies the migrations in `migrations/postgres`, then, with `vector_index`, builds the
    /// HNSW index of every tenant that lacks one (which takes a while for a large tenant), and
    /// without it drops every tenant's index: a server that ranks in memory never reads them,
    /// and each kept one would cost every write to its tenant an HNSW insert in PostgreSQL.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&self.pool)
            .await?;
        if self.settings.vector_index {
            let tenants: Vec<(i64, String, i32, String)> = sqlx::query_as(
                "SELECT tid, name, dimension, metric FROM tenants WHERE dimension IS NOT NULL",
            )
            .fetch_all(&self.pool)
            .await?;
            for (tid, name, dimension, metric) in tenants {
                let (name, spec) = rows::tenant(&name, Some(i64::from(dimension)), Some(&metric))?;
                // Building over a large tenant takes minutes: no statement timeout, and room.
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                tx.execute("SET LOCAL statement_timeout = 0").await?;
                tx.execute("SET LOCAL maintenance_work_mem = '1GB'").await?;
                tx.execute(AssertSqlSafe(vector_index_ddl(tid, &name, spec, true)))
                    .await?;
                tx.commit().await?;
            }
        } else {
            let kept: Vec<String> = sqlx::query_scalar(
                "SELECT indexname::text FROM pg_indexes \
                 WHERE schemaname = current_schema() AND tablename = 'entities' \
                 AND indexname LIKE 'entities\\_hnsw\\_%'",
            )
            .fetch_all(&self.pool)
            .await?;
            for index in kept {
                // Names come from the catalogue and were made by `index_name`; the quoting
                // guards against any other.
                let quoted = format!("\"{}\"", index.replace('"', "\"\""));
                self.pool
                    .execute(AssertSqlSafe(format!("DROP INDEX IF EXISTS {quoted}")))
                    .await?;
            }
        }
        Ok(())
    }

    /// The pool itself, for operators and tests that look at single connections.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A connection, counted as waiting while the pool has none to give.
    async fn conn(&self) -> Result<PoolConnection<Postgres>> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let conn = self.pool.acquire().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        conn.map_err(unavailable)
    }

    /// Open and idle connections, and requests waiting for one.
    pub fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            waiting: self.waiting.load(Ordering::Relaxed),
            max: self.settings.max_connections,
        }
    }

    /// Answers when the database does.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        sqlx::query("SELECT 1").execute(&mut *conn).await?;
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
        let (dimension, metric) = rows::spec_columns(spec)?;
        let dimension = dimension
            .map(i32::try_from)
            .transpose()
            .map_err(rows::corrupt)?;
        let rate = rate_limit
            .map(|n| i32::try_from(n.get()))
            .transpose()
            .map_err(|_| StorageError::InvalidSetting("a rate limit is at most 2^31 - 1".into()))?;
        let inserted: Option<(i64, i64)> = sqlx::query_as(
            "INSERT INTO tenants (name, dimension, metric, learning, rate_limit) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING RETURNING tid, lineage",
        )
        .bind(name.as_str())
        .bind(dimension)
        .bind(metric)
        .bind(rows::learning_to_json(learning))
        .bind(rate)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((tid, lineage)) = inserted else {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {TENANT_COLUMNS}, lineage FROM tenants WHERE name = $1"
            )))
            .bind(name.as_str())
            .fetch_one(&mut *tx)
            .await?;
            let (spec_stored, learning_stored, rate_stored) =
                tenant_columns(name.as_str(), &row, 0)?;
            let stored = (spec_stored, &learning_stored, rate_stored);
            return match rows::conflict(name, stored, (spec, learning, rate_limit)) {
                None => Ok((Created::Existed, rows::lineage_of(row.try_get(4)?))),
                Some(conflict) => Err(conflict),
            };
        };
        if self.settings.vector_index && spec.has_vectors() {
            tx.execute(AssertSqlSafe(vector_index_ddl(tid, name, spec, false)))
                .await?;
        }
        notify(
            &mut tx,
            &notice(
                &self.origin,
                ChangeKind::TenantCreated,
                name,
                &lineage.to_string(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((Created::Created, rows::lineage_of(lineage)))
    }

    /// Removes a tenant and all its data; false when it did not exist.
    pub async fn delete_tenant(&self, name: &TenantName) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let gone: Option<(i64, i64)> =
            sqlx::query_as("DELETE FROM tenants WHERE name = $1 RETURNING tid, lineage")
                .bind(name.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some((tid, lineage)) = gone else {
            return Ok(false);
        };
        tx.execute(AssertSqlSafe(format!(
            "DROP INDEX IF EXISTS {}",
            index_name(tid)
        )))
        .await?;
        notify(
            &mut tx,
            &notice(
                &self.origin,
                ChangeKind::TenantDeleted,
                name,
                &lineage.to_string(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn tenant(&self, name: &TenantName) -> Result<Option<TenantSpec>> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {TENANT_COLUMNS} FROM tenants WHERE name = $1"
        )))
        .bind(name.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(|row| Ok(tenant_columns(name.as_str(), &row, 0)?.0))
            .transpose()
    }

    pub async fn tenants(&self) -> Result<Vec<(TenantName, TenantSpec)>> {
        let mut conn = self.conn().await?;
        let found = sqlx::query(AssertSqlSafe(format!(
            "SELECT name, {TENANT_COLUMNS} FROM tenants ORDER BY name"
        )))
        .fetch_all(&mut *conn)
        .await?;
        found
            .iter()
            .map(|row| {
                let name: &str = row.try_get(0)?;
                let (spec, ..) = tenant_columns(name, row, 1)?;
                Ok((TenantName::parse(name).map_err(rows::corrupt)?, spec))
            })
            .collect()
    }

    /// Writes a whole batch, or nothing, and returns its stamp once committed. The batch is
    /// refused when the tenant's stored settings are not those it was checked against, which
    /// the statement that writes it checks.
    pub(crate) async fn upsert_entities(
        &self,
        tenant: &TenantName,
        batch: &CheckedEntities,
    ) -> Result<ChangeId> {
        // Concurrent upserts share a transaction (one WAL flush): each still takes its own
        // version of the tenant, and the tenant's row lock is taken by one writer at a time.
        self.entities.write(tenant.clone(), batch.clone()).await
    }

    /// Deletes an entity and returns the change's stamp; `None` when it did not exist.
    pub async fn delete_entity(
        &self,
        tenant: &TenantName,
        id: &EntityId,
    ) -> Result<Option<ChangeId>> {
        let mut conn = self.conn().await?;
        let stamp: Option<(i64, i64)> = sqlx::query_as(
            "WITH gone AS (DELETE FROM entities WHERE tenant = $1 AND id = $2 RETURNING 1), \
             v AS (UPDATE tenants SET version = version + 1 \
                   WHERE name = $1 AND EXISTS (SELECT 1 FROM gone) RETURNING lineage, version) \
             SELECT v.lineage, v.version FROM v, \
               LATERAL (SELECT pg_notify($3, $4 || v.lineage || ' ' || v.version || ' ' || $2)) n",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(CHANNEL)
        .bind(notice(&self.origin, ChangeKind::EntityDeleted, tenant, ""))
        .fetch_optional(&mut *conn)
        .await?;
        Ok(stamp.map(|(lineage, version)| rows::change(lineage, version)))
    }

    /// Records interactions; returns once they are committed (shared with concurrent callers),
    /// with the batch's stamp. An empty batch changes nothing and answers the current version.
    pub async fn record_interactions(
        &self,
        tenant: &TenantName,
        batch: Vec<KeyedInteraction>,
    ) -> Result<Recorded> {
        if batch.is_empty() {
            let mut conn = self.conn().await?;
            let version: Option<(i64, i64)> =
                sqlx::query_as("SELECT lineage, version FROM tenants WHERE name = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            return version
                .map(|(lineage, version)| Recorded {
                    change: rows::change(lineage, version),
                    fresh: Vec::new(),
                })
                .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()));
        }
        self.interactions.write(tenant.clone(), batch).await
    }

    pub async fn get_entity(
        &self,
        tenant: &TenantName,
        id: &EntityId,
    ) -> Result<Option<NewEntity>> {
        let mut conn = self.conn().await?;
        let row = sqlx::query(
            "SELECT id, embedding, category, tags::text, attributes::text FROM entities \
             WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        row.as_ref().map(entity_row).transpose()
    }

    /// Counts of a tenant's entities and interactions.
    pub async fn counts(&self, tenant: &TenantName) -> Result<(u64, u64)> {
        let mut conn = self.conn().await?;
        let (entities, interactions): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM entities WHERE tenant = $1), \
                    (SELECT count(*) FROM interactions WHERE tenant = $1)",
        )
        .bind(tenant.as_str())
        .fetch_one(&mut *conn)
        .await?;
        Ok((entities.unsigned_abs(), interactions.unsigned_abs()))
    }

    /// The entities written by `change` that still carry it (a later change may have written
    /// some of them again); none when the tenant is another incarnation now.
    pub async fn entities_in_batch(
        &self,
        tenant: &TenantName,
        change: ChangeId,
    ) -> Result<Vec<NewEntity>> {
        let mut conn = self.conn().await?;
        let found = sqlx::query(
            "SELECT id, embedding, category, tags::text, attributes::text FROM entities \
             WHERE tenant = $1 AND batch = $2 \
               AND EXISTS (SELECT 1 FROM tenants WHERE name = $1 AND lineage = $3)",
        )
        .bind(tenant.as_str())
        .bind(stored(change.stamp))
        .bind(stored_lineage(change.lineage))
        .fetch_all(&mut *conn)
        .await?;
        found.iter().map(entity_row).collect()
    }

    /// The interactions of `change`, in the order they were recorded; none when the tenant is
    /// another incarnation now.
    pub async fn interactions_in_batch(
        &self,
        tenant: &TenantName,
        change: ChangeId,
    ) -> Result<Vec<Interaction>> {
        let mut conn = self.conn().await?;
        let found = sqlx::query(
            "SELECT user_id, entity_id, kind, weight, at_ms FROM interactions \
             WHERE tenant = $1 AND batch = $2 \
               AND EXISTS (SELECT 1 FROM tenants WHERE name = $1 AND lineage = $3) \
             ORDER BY seq",
        )
        .bind(tenant.as_str())
        .bind(stored(change.stamp))
        .bind(stored_lineage(change.lineage))
        .fetch_all(&mut *conn)
        .await?;
        found.iter().map(interaction_row).collect()
    }

    pub async fn add_api_key(&self, tenant: &TenantName, hash: [u8; 32]) -> Result<()> {
        let mut conn = self.conn().await?;
        sqlx::query("INSERT INTO api_keys (hash, tenant) VALUES ($1, $2)")
            .bind(&hash[..])
            .bind(tenant.as_str())
            .execute(&mut *conn)
            .await
            .map_err(|e| write_error(e, tenant))?;
        Ok(())
    }

    pub async fn find_api_key(&self, hash: [u8; 32]) -> Result<Option<TenantName>> {
        let mut conn = self.conn().await?;
        let tenant: Option<String> =
            sqlx::query_scalar("SELECT tenant FROM api_keys WHERE hash = $1")
                .bind(&hash[..])
                .fetch_optional(&mut *conn)
                .await?;
        tenant
            .map(|t| TenantName::parse(&t).map_err(rows::corrupt))
            .transpose()
    }
}
