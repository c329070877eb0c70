//! Reading a tenant as of one moment, and turning rows back into the engine's types.

use pgvector::Vector;
use reco_engine::{EntityId, Interaction, NewEntity, Stamp, TenantName};
use sqlx::{AssertSqlSafe, Executor, Postgres, Row};

use super::PgStore;
use crate::error::{Result, StorageError, unavailable};
use crate::load::Snapshot;
use crate::model::TenantRecord;
use crate::rows;

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
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {}, lineage, version FROM tenants WHERE name = $1",
            super::TENANT_COLUMNS
        )))
        .bind(tenant.as_str())
        .fetch_optional(&mut *self.0)
        .await?;
        row.map(|row| {
            let (spec, learning, rate_limit) = super::tenant_columns(tenant.as_str(), &row, 0)?;
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
        tenant: &TenantName,
        stamp: i64,
    ) -> Result<(Vec<NewEntity>, Vec<EntityId>)> {
        let changed = sqlx::query(
            "SELECT id, embedding, category, tags::text, attributes::text \
             FROM entities WHERE tenant = $1 AND batch > $2",
        )
        .bind(tenant.as_str())
        .bind(stamp)
        .fetch_all(&mut *self.0)
        .await?
        .iter()
        .map(entity_row)
        .collect::<Result<_>>()?;
        let present: Vec<String> = sqlx::query_scalar("SELECT id FROM entities WHERE tenant = $1")
            .bind(tenant.as_str())
            .fetch_all(&mut *self.0)
            .await?;
        let present = present
            .iter()
            .map(|id| EntityId::parse(id).map_err(|e| StorageError::Corrupt(e.to_string())))
            .collect::<Result<_>>()?;
        Ok((changed, present))
    }
}

/// A page of a tenant's entities in id order.
const ENTITIES_AFTER: &str = "SELECT id, embedding, category, tags::text, attributes::text \
     FROM entities WHERE tenant = $1 AND id > $2 ORDER BY id LIMIT $3";

/// A page of a tenant's interactions in the order they were recorded.
const INTERACTIONS_AFTER: &str = "SELECT user_id, entity_id, kind, weight, at_ms, seq \
     FROM interactions WHERE tenant = $1 AND at_ms >= $2 AND seq > $3 ORDER BY seq LIMIT $4";

pub(super) fn entity_row(row: &sqlx::postgres::PgRow) -> Result<NewEntity> {
    // A tenant without content vectors keeps none: NULL.
    let vector: Option<Vector> = row.try_get(1)?;
    rows::entity(
        row.try_get(0)?,
        vector.map(|v| v.to_vec()).unwrap_or_default(),
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    )
}

pub(super) fn interaction_row(row: &sqlx::postgres::PgRow) -> Result<Interaction> {
    rows::interaction(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    )
}
