//! PostgreSQL with pgvector.
//!
//! Entity vectors live in one untyped `vector` column; each tenant gets its own HNSW index, a
//! partial expression index that casts to the tenant's dimension (`(embedding::vector(128))`),
//! made with the tenant. A query uses it by naming the same expression and the tenant as a
//! literal; the exact mode names the uncast column, which no index covers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use pgvector::Vector;
use reco_engine::{
    CheckedEntities, CheckedInteractions, Created, EntityId, Filter, Interaction, Metric,
    NewEntity, TenantName, TenantSpec,
};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Executor, PgPool, Postgres, QueryBuilder, Row};

use crate::error::{Result, StorageError, unavailable};
use crate::feed::{CHANNEL, ChangeKind, notice};
use crate::group_commit::GroupCommit;
use crate::rows;
use crate::settings::PostgresSettings;
use crate::store::{DbSearch, PoolStats, Snapshot, TenantRecord};

/// The PostgreSQL backend.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    entities: GroupCommit<NewEntity>,
    interactions: GroupCommit<Interaction>,
    /// Names this server in its change notices, for people reading them.
    origin: Arc<str>,
    waiting: Arc<AtomicU32>,
    settings: PostgresSettings,
}

fn operator(metric: Metric) -> (&'static str, &'static str) {
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
fn literal(tenant: &TenantName) -> String {
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
        let origin: Arc<str> = crate::feed::new_origin().into();
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
    /// HNSW index of every tenant that lacks one (which takes a while for a large tenant).
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../../migrations/postgres")
            .run(&self.pool)
            .await?;
        if self.settings.vector_index {
            let tenants: Vec<(i64, String, i32, String)> =
                sqlx::query_as("SELECT tid, name, dimension, metric FROM tenants")
                    .fetch_all(&self.pool)
                    .await?;
            for (tid, name, dimension, metric) in tenants {
                let (name, spec) = rows::tenant(&name, i64::from(dimension), &metric)?;
                // Building over a large tenant takes minutes: no statement timeout, and room.
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
                tx.execute("SET LOCAL statement_timeout = 0").await?;
                tx.execute("SET LOCAL maintenance_work_mem = '1GB'").await?;
                tx.execute(AssertSqlSafe(vector_index_ddl(tid, &name, spec, true)))
                    .await?;
                tx.commit().await?;
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
    ) -> Result<(Created, u64)> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let inserted: Option<(i64, i64)> = sqlx::query_as(
            "INSERT INTO tenants (name, dimension, metric) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO NOTHING RETURNING tid, lineage",
        )
        .bind(name.as_str())
        .bind(i32::try_from(spec.dimension).map_err(rows::corrupt)?)
        .bind(spec.metric.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some((tid, lineage)) = inserted else {
            let row = sqlx::query("SELECT dimension, metric, lineage FROM tenants WHERE name = $1")
                .bind(name.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let (_, existing) = rows::tenant(
                name.as_str(),
                i64::from(row.try_get::<i32, _>(0)?),
                row.try_get(1)?,
            )?;
            return if existing == spec {
                Ok((Created::Existed, row.try_get::<i64, _>(2)? as u64))
            } else {
                Err(StorageError::TenantConflict {
                    name: name.clone(),
                    dimension: existing.dimension,
                    metric: existing.metric,
                })
            };
        };
        if self.settings.vector_index {
            tx.execute(AssertSqlSafe(vector_index_ddl(tid, name, spec, false)))
                .await?;
        }
        notify(
            &mut tx,
            &notice(
                &self.origin,
                ChangeKind::TenantCreated,
                name,
                &(lineage as u64).to_string(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok((Created::Created, lineage as u64))
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
                &(lineage as u64).to_string(),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn tenant(&self, name: &TenantName) -> Result<Option<TenantSpec>> {
        let mut conn = self.conn().await?;
        let row = sqlx::query("SELECT dimension, metric FROM tenants WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(&mut *conn)
            .await?;
        row.map(|row| {
            let dimension = i64::from(row.try_get::<i32, _>(0)?);
            Ok(rows::tenant(name.as_str(), dimension, row.try_get(1)?)?.1)
        })
        .transpose()
    }

    pub async fn tenants(&self) -> Result<Vec<(TenantName, TenantSpec)>> {
        let mut conn = self.conn().await?;
        let found = sqlx::query("SELECT name, dimension, metric FROM tenants ORDER BY name")
            .fetch_all(&mut *conn)
            .await?;
        found
            .iter()
            .map(|row| {
                let dimension = i64::from(row.try_get::<i32, _>(1)?);
                rows::tenant(row.try_get(0)?, dimension, row.try_get(2)?)
            })
            .collect()
    }

    /// Writes a whole batch in one statement, or nothing, and returns its stamp once committed.
    pub async fn upsert_entities(
        &self,
        tenant: &TenantName,
        batch: &CheckedEntities,
    ) -> Result<u64> {
        let spec = self
            .tenant(tenant)
            .await?
            .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
        rows::checked_for(tenant, spec, batch)?;
        // Concurrent upserts share a transaction (one WAL flush): each still takes its own
        // version of the tenant, and the tenant's row lock is taken by one writer at a time.
        self.entities
            .write(tenant.clone(), batch.entities().to_vec())
            .await
    }

    /// Deletes an entity and returns the change's stamp; `None` when it did not exist.
    pub async fn delete_entity(&self, tenant: &TenantName, id: &EntityId) -> Result<Option<u64>> {
        let mut conn = self.conn().await?;
        let stamp: Option<i64> = sqlx::query_scalar(
            "WITH gone AS (DELETE FROM entities WHERE tenant = $1 AND id = $2 RETURNING 1), \
             v AS (UPDATE tenants SET version = version + 1 \
                   WHERE name = $1 AND EXISTS (SELECT 1 FROM gone) RETURNING version) \
             SELECT v.version FROM v, \
               LATERAL (SELECT pg_notify($3, $4 || v.version || ' ' || $2)) n",
        )
        .bind(tenant.as_str())
        .bind(id.as_str())
        .bind(CHANNEL)
        .bind(notice(&self.origin, ChangeKind::EntityDeleted, tenant, ""))
        .fetch_optional(&mut *conn)
        .await?;
        Ok(stamp.map(|s| s as u64))
    }

    /// Records interactions; returns once they are committed (shared with concurrent callers),
    /// with the batch's stamp. An empty batch changes nothing and answers the current version.
    pub async fn record_interactions(
        &self,
        tenant: &TenantName,
        batch: CheckedInteractions,
    ) -> Result<u64> {
        if batch.is_empty() {
            let mut conn = self.conn().await?;
            let version: Option<i64> =
                sqlx::query_scalar("SELECT version FROM tenants WHERE name = $1")
                    .bind(tenant.as_str())
                    .fetch_optional(&mut *conn)
                    .await?;
            return version
                .map(|v| v as u64)
                .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()));
        }
        self.interactions
            .write(tenant.clone(), batch.into_interactions())
            .await
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

    /// The entities written by the change stamped `batch` that still carry it (a later change
    /// may have written some of them again).
    pub async fn entities_in_batch(
        &self,
        tenant: &TenantName,
        batch: u64,
    ) -> Result<Vec<NewEntity>> {
        let mut conn = self.conn().await?;
        let found = sqlx::query(
            "SELECT id, embedding, category, tags::text, attributes::text FROM entities \
             WHERE tenant = $1 AND batch = $2",
        )
        .bind(tenant.as_str())
        .bind(batch as i64)
        .fetch_all(&mut *conn)
        .await?;
        found.iter().map(entity_row).collect()
    }

    /// The interactions of the change stamped `batch`, in the order they were recorded.
    pub async fn interactions_in_batch(
        &self,
        tenant: &TenantName,
        batch: u64,
    ) -> Result<Vec<Interaction>> {
        let mut conn = self.conn().await?;
        let found = sqlx::query(
            "SELECT user_id, entity_id, kind, weight, at_ms FROM interactions \
             WHERE tenant = $1 AND batch = $2 ORDER BY seq",
        )
        .bind(tenant.as_str())
        .bind(batch as i64)
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

    /// Top-k in PostgreSQL: the HNSW index unless `exact`, then a sequential scan. Results are
    /// (id, score) in the API's units, best first, ties by id.
    pub async fn search(
        &self,
        tenant: &TenantName,
        spec: TenantSpec,
        query: &DbSearch<'_>,
    ) -> Result<Vec<(EntityId, f32)>> {
        let (op, _) = operator(spec.metric);
        let distance = if query.exact {
            format!("embedding {op} ")
        } else {
            format!("(embedding::vector({})) {op} ", spec.dimension)
        };
        let cast = if query.exact {
            "::vector".to_owned()
        } else {
            format!("::vector({})", spec.dimension)
        };
        let probe = Vector::from(query.vector.to_vec());
        let mut sql: QueryBuilder<Postgres> = QueryBuilder::new("SELECT id, ");
        sql.push(&distance).push_bind(probe.clone()).push(&cast);
        sql.push(" AS d FROM entities WHERE tenant = ")
            .push(literal(tenant));
        push_filter(&mut sql, query.filter, query.exclude);
        if let Some(threshold) = query.score_threshold {
            // Score to distance: cosine d = 1 - s, dot d = -s, euclidean d = s.
            let bound = match spec.metric {
                Metric::Cosine => 1.0 - f64::from(threshold),
                Metric::Dot => -f64::from(threshold),
                Metric::Euclidean => f64::from(threshold),
            };
            sql.push(" AND ")
                .push(&distance)
                .push_bind(probe.clone())
                .push(&cast);
            sql.push(" <= ").push_bind(bound);
        }
        sql.push(" ORDER BY ")
            .push(&distance)
            .push_bind(probe)
            .push(&cast);
        if query.exact {
            sql.push(", id");
        }
        let want = i64::try_from(query.k + query.offset).map_err(rows::corrupt)?;
        sql.push(" LIMIT ").push_bind(want);
        let mut conn = self.conn().await?;
        let found = sql.build().fetch_all(&mut *conn).await?;
        let mut scored = found
            .iter()
            .map(|row| {
                let id = EntityId::parse(row.try_get::<&str, _>(0)?).map_err(rows::corrupt)?;
                let d: f64 = row.try_get(1)?;
                let score = match spec.metric {
                    Metric::Cosine => 1.0 - d,
                    Metric::Dot => -d,
                    Metric::Euclidean => d,
                };
                Ok((id, score as f32))
            })
            .collect::<Result<Vec<_>>>()?;
        let higher = spec.metric.higher_is_better();
        scored.sort_by(|a, b| {
            let by_score = if higher {
                b.1.total_cmp(&a.1)
            } else {
                a.1.total_cmp(&b.1)
            };
            by_score.then_with(|| a.0.cmp(&b.0))
        });
        Ok(scored.into_iter().skip(query.offset).collect())
    }
}

fn push_filter(sql: &mut QueryBuilder<Postgres>, filter: &Filter, exclude: &[EntityId]) {
    if let Some(category) = &filter.category {
        sql.push(" AND category = ").push_bind(category.clone());
    }
    if !filter.tags_any.is_empty() {
        sql.push(" AND tags ?| ").push_bind(filter.tags_any.clone());
    }
    if !filter.tags_all.is_empty() {
        sql.push(" AND tags ?& ").push_bind(filter.tags_all.clone());
    }
    let excluded: Vec<String> = filter
        .exclude
        .iter()
        .chain(exclude)
        .map(|id| id.as_str().to_owned())
        .collect();
    if !excluded.is_empty() {
        sql.push(" AND id <> ALL(").push_bind(excluded).push(")");
    }
}

/// Maps a foreign-key violation on `tenant` to "no such tenant", and a value pgvector refuses to
/// an invalid row.
fn write_error(e: sqlx::Error, tenant: &TenantName) -> StorageError {
    if let sqlx::Error::Database(db) = &e {
        match db.code().as_deref() {
            Some("23503") => return StorageError::TenantNotFound(tenant.clone()),
            Some("22000" | "22P02" | "22023") => {
                return StorageError::InvalidRow {
                    index: 0,
                    reason: db.message().to_owned(),
                };
            }
            _ => {}
        }
    }
    e.into()
}

async fn notify(conn: &mut sqlx::PgConnection, payload: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// Writes a group of entity batches in one transaction and returns their stamps: each batch is
/// one statement (`UNNEST` of column arrays) that takes the tenant's next version, writes the
/// rows and sends the notice.
async fn upsert_group(
    pool: &PgPool,
    origin: &str,
    group: Vec<(TenantName, Vec<NewEntity>)>,
) -> Result<Vec<u64>> {
    let fail = |e: sqlx::Error, tenant: &TenantName| {
        if group.len() == 1 {
            write_error(e, tenant)
        } else {
            e.into()
        }
    };
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let mut stamps = Vec::with_capacity(group.len());
    for (tenant, batch) in &group {
        let ids: Vec<&str> = batch.iter().map(|e| e.id.as_str()).collect();
        let vectors: Vec<Vector> = batch
            .iter()
            .map(|e| Vector::from(e.vector.clone()))
            .collect();
        let categories: Vec<Option<&str>> = batch.iter().map(|e| e.category.as_deref()).collect();
        let tags: Vec<String> = batch.iter().map(|e| rows::tags_to_json(&e.tags)).collect();
        let attributes: Vec<Option<&str>> = batch.iter().map(|e| e.attributes.as_deref()).collect();
        let stamp: Option<i64> = sqlx::query_scalar(
            "WITH b AS (UPDATE tenants SET version = version + 1 WHERE name = $1 \
                        RETURNING version AS batch), \
             written AS ( \
               INSERT INTO entities (tenant, id, embedding, category, tags, attributes, batch, updated_at) \
               SELECT $1, u.id, u.embedding, u.category, u.tags::jsonb, u.attributes::jsonb, b.batch, now() \
               FROM UNNEST($2::text[], $3::vector[], $4::text[], $5::text[], $6::text[]) \
                    AS u(id, embedding, category, tags, attributes), b \
               ON CONFLICT (tenant, id) DO UPDATE SET embedding = EXCLUDED.embedding, \
                 category = EXCLUDED.category, tags = EXCLUDED.tags, \
                 attributes = EXCLUDED.attributes, batch = EXCLUDED.batch, \
                 updated_at = EXCLUDED.updated_at \
               RETURNING 1) \
             SELECT b.batch FROM b, \
               LATERAL (SELECT pg_notify($7, $8 || b.batch), (SELECT count(*) FROM written)) n",
        )
        .bind(tenant.as_str())
        .bind(&ids)
        .bind(&vectors)
        .bind(&categories)
        .bind(&tags)
        .bind(&attributes)
        .bind(CHANNEL)
        .bind(notice(origin, ChangeKind::Entities, tenant, ""))
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| fail(e, tenant))?;
        let stamp = stamp.ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
        stamps.push(stamp as u64);
    }
    tx.commit().await.map_err(|e| fail(e, &group[0].0))?;
    Ok(stamps)
}

/// Writes a group of interaction batches in one transaction and returns their stamps: each
/// batch is a change of its own, with its own version of its tenant and its own notice.
async fn insert_interactions(
    pool: &PgPool,
    origin: &str,
    group: Vec<(TenantName, Vec<Interaction>)>,
) -> Result<Vec<u64>> {
    let fail = |e: sqlx::Error| match &group[..] {
        [(tenant, _)] => write_error(e, tenant),
        _ => e.into(),
    };
    // Bump each tenant once per batch, in name order (so that two servers' groups lock tenant
    // rows in the same order), and number the batches from the versions that come back.
    let mut per_tenant: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (tenant, _) in &group {
        *per_tenant.entry(tenant.as_str()).or_default() += 1;
    }
    let names: Vec<&str> = per_tenant.keys().copied().collect();
    let counts: Vec<i64> = per_tenant.values().copied().collect();
    let mut tx = pool.begin().await.map_err(unavailable)?;
    let versions: Vec<(String, i64)> = sqlx::query_as(
        "UPDATE tenants t SET version = t.version + c.n \
         FROM (SELECT * FROM UNNEST($1::text[], $2::bigint[]) AS c(name, n) ORDER BY name) c \
         WHERE t.name = c.name RETURNING t.name, t.version",
    )
    .bind(&names)
    .bind(&counts)
    .fetch_all(&mut *tx)
    .await
    .map_err(fail)?;
    let mut next: std::collections::HashMap<&str, i64> = std::collections::HashMap::new();
    for (name, version) in &versions {
        let n = per_tenant.get(name.as_str()).copied().unwrap_or_default();
        next.insert(name.as_str(), version - n + 1);
    }
    let rows: usize = group.iter().map(|(_, b)| b.len()).sum();
    let mut tenants = Vec::with_capacity(rows);
    let mut users = Vec::with_capacity(rows);
    let mut entities = Vec::with_capacity(rows);
    let mut kinds = Vec::with_capacity(rows);
    let mut weights = Vec::with_capacity(rows);
    let mut at = Vec::with_capacity(rows);
    let mut batches = Vec::with_capacity(rows);
    let mut notices = Vec::with_capacity(group.len());
    let mut stamps = Vec::with_capacity(group.len());
    for (tenant, batch) in &group {
        let Some(stamp) = next.get_mut(tenant.as_str()) else {
            return Err(StorageError::TenantNotFound(tenant.clone()));
        };
        let this = *stamp;
        *stamp += 1;
        stamps.push(this as u64);
        notices.push(notice(
            origin,
            ChangeKind::Interactions,
            tenant,
            &this.to_string(),
        ));
        for i in batch {
            tenants.push(tenant.as_str());
            users.push(i.user.as_str());
            entities.push(i.entity.as_str());
            kinds.push(i.kind.as_str());
            weights.push(i.weight);
            at.push(i.timestamp);
            batches.push(this);
        }
    }
    sqlx::query(
        "WITH written AS ( \
           INSERT INTO interactions (tenant, user_id, entity_id, kind, weight, at_ms, batch) \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::real[], \
                                $6::bigint[], $7::bigint[]) \
           RETURNING 1) \
         SELECT (SELECT count(*) FROM written), pg_notify($8, n) FROM UNNEST($9::text[]) AS n",
    )
    .bind(&tenants)
    .bind(&users)
    .bind(&entities)
    .bind(&kinds)
    .bind(&weights)
    .bind(&at)
    .bind(&batches)
    .bind(CHANNEL)
    .bind(&notices)
    .execute(&mut *tx)
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    Ok(stamps)
}

/// One tenant's rows as of one moment: a read-only REPEATABLE READ transaction.
pub(crate) struct PgSnapshot(sqlx::Transaction<'static, Postgres>);

impl PgStore {
    pub(crate) async fn snapshot(&self) -> Result<PgSnapshot> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        tx.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .await?;
        Ok(PgSnapshot(tx))
    }
}

impl Snapshot for PgSnapshot {
    async fn record(&mut self, tenant: &TenantName) -> Result<Option<TenantRecord>> {
        let row =
            sqlx::query("SELECT dimension, metric, lineage, version FROM tenants WHERE name = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *self.0)
                .await?;
        row.map(|row| {
            let dimension = i64::from(row.try_get::<i32, _>(0)?);
            Ok(TenantRecord {
                spec: rows::tenant(tenant.as_str(), dimension, row.try_get(1)?)?.1,
                lineage: row.try_get::<i64, _>(2)? as u64,
                version: row.try_get::<i64, _>(3)? as u64,
            })
        })
        .transpose()
    }

    crate::store::snapshot_pages!();
}

/// A page of a tenant's entities in id order.
const ENTITIES_AFTER: &str = "SELECT id, embedding, category, tags::text, attributes::text \
     FROM entities WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3";

/// A page of a tenant's interactions in the order they were recorded.
const INTERACTIONS_AFTER: &str = "SELECT user_id, entity_id, kind, weight, at_ms, seq \
     FROM interactions WHERE tenant = $1 AND at_ms >= $2 AND seq > $3 ORDER BY seq LIMIT $4";

fn entity_row(row: &sqlx::postgres::PgRow) -> Result<NewEntity> {
    let vector: Vector = row.try_get(1)?;
    rows::entity(
        row.try_get(0)?,
        vector.to_vec(),
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    )
}

fn interaction_row(row: &sqlx::postgres::PgRow) -> Result<Interaction> {
    rows::interaction(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    )
}
