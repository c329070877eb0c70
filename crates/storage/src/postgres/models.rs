//! Collaborative models in PostgreSQL: kept with a notice in the same transaction, loaded by
//! version, and trained one server at a time under an advisory lock.

use reco_engine::{ModelParts, TenantName};
use sqlx::AssertSqlSafe;

use super::PgStore;
use super::groups::{notify, write_error};
use crate::error::{Result, unavailable};
use crate::model::TrainingLock;
use crate::notice::{ChangeKind, notice};
use crate::trained::{self, COLUMNS, ModelRow};

impl PgStore {
    /// Keeps a model unless the tenant's stored one is as new or newer; true when kept. Every
    /// server hears of it (a `model` notice, sent in the same transaction).
    pub async fn save_model(&self, tenant: &TenantName, parts: &ModelParts) -> Result<bool> {
        let c = trained::columns(parts);
        let factors = i32::try_from(c.factors).unwrap_or(i32::MAX);
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let kept: Option<(i64,)> = sqlx::query_as(
            "INSERT INTO models (tenant, version, trained_at, interactions, users, items, \
               factors, seconds, recorded, params, item_ids, item_factors) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (tenant) DO UPDATE SET version = excluded.version, \
               trained_at = excluded.trained_at, interactions = excluded.interactions, \
               users = excluded.users, items = excluded.items, factors = excluded.factors, \
               seconds = excluded.seconds, recorded = excluded.recorded, \
               params = excluded.params, item_ids = excluded.item_ids, \
               item_factors = excluded.item_factors, saved_at = now() \
             WHERE models.version < excluded.version \
             RETURNING (SELECT lineage FROM tenants WHERE name = $1)",
        )
        .bind(tenant.as_str())
        .bind(c.version)
        .bind(c.trained_at)
        .bind(c.interactions)
        .bind(c.users)
        .bind(c.items)
        .bind(factors)
        .bind(c.seconds)
        .bind(c.recorded)
        .bind(&c.params)
        .bind(&c.item_ids)
        .bind(&c.item_factors)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| write_error(e, tenant))?;
        if let Some((lineage,)) = kept {
            let rest = format!("{lineage} {}", c.version);
            notify(
                &mut tx,
                &notice(&self.origin, ChangeKind::Model, tenant, &rest),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(kept.is_some())
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

    /// The right to train the tenant's model now, `None` while another holder (this server or
    /// another) trains it: a transaction-scoped advisory lock, freed when the lock is dropped.
    pub async fn training_lock(&self, tenant: &TenantName) -> Result<Option<TrainingLock>> {
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let (held,): (bool,) =
            sqlx::query_as("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))")
                .bind(format!("reco.training.{tenant}"))
                .fetch_one(&mut *tx)
                .await?;
        Ok(held.then_some(TrainingLock { _held: Some(tx) }))
    }
}
