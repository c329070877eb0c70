//! Loading a tenant as of one moment: the reads a backend's snapshot (one transaction) answers,
//! the page queries both backends phrase alike, and the loop that pages through them into a
//! [`LoadSink`].

use indicatif::ProgressBar;
use reco_engine::{EntityId, Interaction, NewEntity, TenantName};

use crate::error::Result;
use crate::model::{LoadSink, Loaded, TenantRecord};
use crate::rows;

/// Reads inside one transaction, so every read sees the same moment.
pub(crate) trait Snapshot {
    async fn record(&mut self, tenant: &TenantName) -> Result<Option<TenantRecord>>;
    /// Entities, interactions since `since_ms`, and interactions before it.
    async fn counts(&mut self, tenant: &TenantName, since_ms: i64) -> Result<(u64, u64, u64)>;
    /// Entities with ids after `after`, in id order.
    async fn entities_after(
        &mut self,
        tenant: &TenantName,
        after: &str,
        limit: i64,
    ) -> Result<Vec<NewEntity>>;
    /// What changed in a tenant's entities after the change stamped `stamp`: the entities
    /// written since (each row keeps the stamp that wrote it), and the ids of every entity it
    /// holds now (one gone since is missing from them). `Unsupported` where rows keep no stamp
    /// (the embedded database: one server, whose images are never stale for another's writes).
    async fn changed_since(
        &mut self,
        tenant: &TenantName,
        stamp: i64,
    ) -> Result<(Vec<NewEntity>, Vec<EntityId>)>;
    /// Interactions since `since_ms` with sequence numbers after `after`, in sequence order.
    async fn interactions_after(
        &mut self,
        tenant: &TenantName,
        since_ms: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, Interaction)>>;
}

/// The page reads of a [`Snapshot`], which both backends phrase alike. Invoked inside an
/// `impl Snapshot` for a tuple struct around a transaction; `ENTITIES_AFTER`,
/// `INTERACTIONS_AFTER`, `entity_row` and `interaction_row` are the invoking module's own.
macro_rules! snapshot_pages {
    () => {
        async fn counts(&mut self, tenant: &TenantName, since_ms: i64) -> Result<(u64, u64, u64)> {
            let (entities, interactions, older): (i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM entities WHERE tenant = $1), \
                    (SELECT count(*) FROM interactions WHERE tenant = $1 AND at_ms >= $2), \
                    (SELECT count(*) FROM interactions WHERE tenant = $1 AND at_ms < $2)",
            )
            .bind(tenant.as_str())
            .bind(since_ms)
            .fetch_one(&mut *self.0)
            .await?;
            Ok((
                entities.unsigned_abs(),
                interactions.unsigned_abs(),
                older.unsigned_abs(),
            ))
        }

        async fn entities_after(
            &mut self,
            tenant: &TenantName,
            after: &str,
            limit: i64,
        ) -> Result<Vec<NewEntity>> {
            let found = sqlx::query(ENTITIES_AFTER)
                .bind(tenant.as_str())
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
            found.iter().map(entity_row).collect()
        }

        async fn interactions_after(
            &mut self,
            tenant: &TenantName,
            since_ms: i64,
            after: i64,
            limit: i64,
        ) -> Result<Vec<(i64, Interaction)>> {
            let found = sqlx::query(INTERACTIONS_AFTER)
                .bind(tenant.as_str())
                .bind(since_ms)
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *self.0)
                .await?;
            found
                .iter()
                .map(|row| Ok((row.try_get(5)?, interaction_row(row)?)))
                .collect()
        }
    };
}
pub(crate) use snapshot_pages;

pub(crate) async fn load(
    snapshot: &mut impl Snapshot,
    tenant: &TenantName,
    since_ms: i64,
    batch: usize,
    progress: &ProgressBar,
    sink: &mut impl LoadSink,
) -> Result<Option<Loaded>> {
    let Some(record) = snapshot.record(tenant).await? else {
        return Ok(None);
    };
    let limit = i64::try_from(batch.max(1)).unwrap_or(rows::PAGE);
    let (entities, interactions, older) = snapshot.counts(tenant, since_ms).await?;
    sink.tenant(record)?;
    sink.older_interactions(older)?;
    // A sink that holds the entities as of an older change catches up from it, in this same
    // snapshot: the rows written since, and which entities are gone.
    if let Some(stamp) = sink.catch_up_from() {
        let (changed, present) = snapshot
            .changed_since(tenant, i64::try_from(stamp.get()).unwrap_or(i64::MAX))
            .await?;
        sink.caught_up(changed, present)?;
    }
    let read_entities = sink.wants_entities();
    let rows = interactions + if read_entities { entities } else { 0 };
    // The bar runs across tenants: each adds its rows to the total as it starts.
    match progress.length() {
        Some(_) => progress.inc_length(rows),
        None => progress.set_length(rows),
    }
    progress.set_message(format!("{tenant}: entities (and their graph)"));
    let mut loaded = Loaded {
        record,
        entities: 0,
        interactions: 0,
    };
    if read_entities {
        let mut after = String::new();
        loop {
            let page = snapshot.entities_after(tenant, &after, limit).await?;
            let Some(last) = page.last() else { break };
            after = last.id.as_str().to_owned();
            loaded.entities += page.len() as u64;
            let rows = page.len() as u64;
            // Counted once indexed: the sink builds the graph as rows arrive.
            sink.entities(page)?;
            progress.inc(rows);
        }
    }
    progress.set_message(format!("{tenant}: interactions"));
    let mut after = 0;
    loop {
        let page = snapshot
            .interactions_after(tenant, since_ms, after, limit)
            .await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        loaded.interactions += page.len() as u64;
        let rows = page.len() as u64;
        sink.interactions(page.into_iter().map(|(_, i)| i).collect())?;
        progress.inc(rows);
    }
    Ok(Some(loaded))
}
