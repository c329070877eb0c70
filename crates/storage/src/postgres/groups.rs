//! The group-commit writers: concurrent writes share one transaction (one WAL flush), each
//! still a change of its own with its own version of its tenant and its own notice.

use pgvector::Vector;
use reco_engine::{ChangeId, InteractionId, NewEntity, TenantName};
use sqlx::PgPool;

use crate::error::{Result, StorageError, unavailable};
use crate::model::{KeyedInteraction, Recorded};
use crate::notice::{CHANNEL, ChangeKind, notice};
use crate::rows;

/// Maps a foreign-key violation on `tenant` to "no such tenant", and a value pgvector refuses to
/// an invalid row.
pub(super) fn write_error(e: sqlx::Error, tenant: &TenantName) -> StorageError {
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

pub(super) async fn notify(conn: &mut sqlx::PgConnection, payload: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANNEL)
        .bind(payload)
        .execute(conn)
        .await?;
    Ok(())
}

/// The notice of `change`, a batch of `kind` of `tenant`.
fn change_notice(origin: &str, kind: ChangeKind, tenant: &TenantName, change: ChangeId) -> String {
    let rest = format!(
        "{} {}",
        super::stored_lineage(change.lineage),
        change.stamp.get()
    );
    notice(origin, kind, tenant, &rest)
}

/// A batch of entities as the column arrays an `UNNEST` reads.
#[derive(Default)]
struct EntityColumns<'a> {
    ids: Vec<&'a str>,
    vectors: Vec<Option<Vector>>,
    categories: Vec<Option<&'a str>>,
    tags: Vec<String>,
    attributes: Vec<Option<&'a str>>,
}

impl<'a> EntityColumns<'a> {
    fn push(&mut self, e: &'a NewEntity) {
        self.ids.push(e.id.as_str());
        // A tenant without content vectors writes NULL: pgvector has no empty vector.
        self.vectors
            .push((!e.vector.is_empty()).then(|| Vector::from(e.vector.clone())));
        self.categories.push(e.category.as_deref());
        self.tags.push(rows::tags_to_json(&e.tags));
        self.attributes.push(e.attributes.as_deref());
    }
}

/// Takes the row locks of a group's tenants in name order, before anything is written, as
/// every group does: two groups (on two servers) that share tenants then never wait for each
/// other in a cycle. A group of one tenant needs no such step.
async fn lock_in_name_order<'a>(
    tx: &mut sqlx::PgConnection,
    tenants: impl Iterator<Item = &'a TenantName>,
) -> std::result::Result<(), sqlx::Error> {
    let mut names: Vec<&str> = tenants.map(TenantName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    if names.len() > 1 {
        // The rows are locked as the sort returns them, in name order.
        sqlx::query("SELECT 1 FROM tenants WHERE name = ANY($1) ORDER BY name FOR UPDATE")
            .bind(&names)
            .execute(tx)
            .await?;
    }
    Ok(())
}

/// Writes a group of entity batches in one transaction and returns their stamps. A batch
/// alone is one statement (`UNNEST` of column arrays) that takes the tenant's next version,
/// writes the rows and sends the notice; a group of several takes all its versions in one
/// statement, and writes all its rows and sends all its notices in a second, so a busy service
/// pays a few round trips per commit rather than one per batch.
pub(super) async fn upsert_group(
    pool: &PgPool,
    origin: &str,
    group: Vec<(TenantName, Vec<NewEntity>)>,
) -> Result<Vec<ChangeId>> {
    if let [(tenant, batch)] = &group[..] {
        return upsert_alone(pool, origin, tenant, batch).await;
    }
    let mut tx = pool.begin().await.map_err(unavailable)?;
    lock_in_name_order(&mut tx, group.iter().map(|(t, _)| t)).await?;
    let stamps = number_batches(&mut tx, &group).await?;
    // One row per entity: of the rows of one id in the group, the last batch's, which is
    // what writing the batches one after the other would have left.
    let mut last = std::collections::HashMap::new();
    for (b, (tenant, batch)) in group.iter().enumerate() {
        for (r, e) in batch.iter().enumerate() {
            last.insert((tenant.as_str(), e.id.as_str()), (b, r));
        }
    }
    let (mut tenants, mut batches, mut columns) =
        (Vec::new(), Vec::new(), EntityColumns::default());
    for (b, (tenant, batch)) in group.iter().enumerate() {
        for (r, e) in batch.iter().enumerate() {
            if last.get(&(tenant.as_str(), e.id.as_str())) == Some(&(b, r)) {
                tenants.push(tenant.as_str());
                batches.push(i64::try_from(stamps[b].stamp.get()).unwrap_or(i64::MAX));
                columns.push(e);
            }
        }
    }
    let notices: Vec<String> = group
        .iter()
        .zip(&stamps)
        .map(|((tenant, _), change)| change_notice(origin, ChangeKind::Entities, tenant, *change))
        .collect();
    // The rows and the notices in one statement: a data-modifying WITH runs to completion
    // whether or not the query reads it, and the count makes every notice go.
    sqlx::query(
        "WITH written AS ( \
           INSERT INTO entities (tenant, id, embedding, category, tags, attributes, batch, updated_at) \
           SELECT u.tenant, u.id, u.embedding, u.category, u.tags::jsonb, u.attributes::json, \
                  u.batch, now() \
           FROM UNNEST($1::text[], $2::text[], $3::vector[], $4::text[], $5::text[], $6::text[], \
                       $7::bigint[]) AS u(tenant, id, embedding, category, tags, attributes, batch) \
           ON CONFLICT (tenant, id) DO UPDATE SET embedding = EXCLUDED.embedding, \
             category = EXCLUDED.category, tags = EXCLUDED.tags, \
             attributes = EXCLUDED.attributes, batch = EXCLUDED.batch, \
             updated_at = EXCLUDED.updated_at) \
         SELECT count(pg_notify($8, n)) FROM UNNEST($9::text[]) AS n",
    )
    .bind(&tenants)
    .bind(&columns.ids)
    .bind(&columns.vectors)
    .bind(&columns.categories)
    .bind(&columns.tags)
    .bind(&columns.attributes)
    .bind(&batches)
    .bind(CHANNEL)
    .bind(&notices)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(stamps)
}

/// One batch of entities, alone in its commit: one statement, one round trip.
async fn upsert_alone(
    pool: &PgPool,
    origin: &str,
    tenant: &TenantName,
    batch: &[NewEntity],
) -> Result<Vec<ChangeId>> {
    let fail = |e: sqlx::Error| write_error(e, tenant);
    let mut columns = EntityColumns::default();
    for e in batch {
        columns.push(e);
    }
    let stamp: Option<(i64, i64)> = sqlx::query_as(
        "WITH b AS (UPDATE tenants SET version = version + 1 WHERE name = $1 \
                    RETURNING lineage, version AS batch), \
         written AS ( \
           INSERT INTO entities (tenant, id, embedding, category, tags, attributes, batch, updated_at) \
           SELECT $1, u.id, u.embedding, u.category, u.tags::jsonb, u.attributes::json, b.batch, now() \
           FROM UNNEST($2::text[], $3::vector[], $4::text[], $5::text[], $6::text[]) \
                AS u(id, embedding, category, tags, attributes), b \
           ON CONFLICT (tenant, id) DO UPDATE SET embedding = EXCLUDED.embedding, \
             category = EXCLUDED.category, tags = EXCLUDED.tags, \
             attributes = EXCLUDED.attributes, batch = EXCLUDED.batch, \
             updated_at = EXCLUDED.updated_at \
           RETURNING 1) \
         SELECT b.lineage, b.batch FROM b, \
           LATERAL (SELECT pg_notify($7, $8 || b.lineage || ' ' || b.batch), \
                           (SELECT count(*) FROM written)) n",
    )
    .bind(tenant.as_str())
    .bind(&columns.ids)
    .bind(&columns.vectors)
    .bind(&columns.categories)
    .bind(&columns.tags)
    .bind(&columns.attributes)
    .bind(CHANNEL)
    .bind(notice(origin, ChangeKind::Entities, tenant, ""))
    // One statement outside a transaction block is its own transaction: one round trip
    // writes the rows, takes the version and sends the notice, and its answer comes after the
    // commit.
    .fetch_optional(pool)
    .await
    .map_err(fail)?;
    let (lineage, stamp) = stamp.ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
    Ok(vec![rows::change(lineage, stamp)])
}

/// Takes a version of its tenant for each batch of a group, in one statement (the tenants'
/// rows are locked in name order already): each tenant is bumped by its number of batches,
/// and its batches are numbered from the versions that come back, in the group's order. A
/// tenant that does not exist fails the group (each batch is then tried alone).
async fn number_batches<R>(
    tx: &mut sqlx::PgConnection,
    group: &[(TenantName, Vec<R>)],
) -> Result<Vec<ChangeId>> {
    let mut per_tenant: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (tenant, _) in group {
        *per_tenant.entry(tenant.as_str()).or_default() += 1;
    }
    let names: Vec<&str> = per_tenant.keys().copied().collect();
    let counts: Vec<i64> = per_tenant.values().copied().collect();
    let versions: Vec<(String, i64, i64)> = sqlx::query_as(
        "UPDATE tenants t SET version = t.version + c.n \
         FROM (SELECT * FROM UNNEST($1::text[], $2::bigint[]) AS c(name, n) ORDER BY name) c \
         WHERE t.name = c.name RETURNING t.name, t.lineage, t.version",
    )
    .bind(&names)
    .bind(&counts)
    .fetch_all(&mut *tx)
    .await?;
    let mut next: std::collections::HashMap<&str, (i64, i64)> = std::collections::HashMap::new();
    for (name, lineage, version) in &versions {
        let n = per_tenant.get(name.as_str()).copied().unwrap_or_default();
        next.insert(name.as_str(), (*lineage, version - n + 1));
    }
    group
        .iter()
        .map(|(tenant, _)| {
            let (lineage, stamp) = next
                .get_mut(tenant.as_str())
                .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
            let this = *stamp;
            *stamp += 1;
            Ok(rows::change(*lineage, this))
        })
        .collect()
}

/// Writes a group of interaction batches in one transaction and returns their stamps and
/// which rows were recorded: each batch is a change of its own, with its own version of its
/// tenant and its own notice; a row whose id its tenant holds already (or an earlier row of
/// the group gave) is not written.
pub(super) async fn insert_interactions(
    pool: &PgPool,
    origin: &str,
    group: Vec<(TenantName, Vec<KeyedInteraction>)>,
) -> Result<Vec<Recorded>> {
    let fail = |e: sqlx::Error| match &group[..] {
        [(tenant, _)] => write_error(e, tenant),
        _ => e.into(),
    };
    let mut tx = pool.begin().await.map_err(unavailable)?;
    lock_in_name_order(&mut tx, group.iter().map(|(t, _)| t))
        .await
        .map_err(fail)?;
    let stamps = number_batches(&mut tx, &group).await?;
    let rows: usize = group.iter().map(|(_, b)| b.len()).sum();
    let mut tenants = Vec::with_capacity(rows);
    let mut users = Vec::with_capacity(rows);
    let mut entities = Vec::with_capacity(rows);
    let mut kinds = Vec::with_capacity(rows);
    let mut weights = Vec::with_capacity(rows);
    let mut at = Vec::with_capacity(rows);
    let mut batches = Vec::with_capacity(rows);
    let mut keys: Vec<Option<&str>> = Vec::with_capacity(rows);
    let mut notices = Vec::with_capacity(group.len());
    for ((tenant, batch), change) in group.iter().zip(&stamps) {
        let this = i64::try_from(change.stamp.get()).unwrap_or(i64::MAX);
        notices.push(change_notice(
            origin,
            ChangeKind::Interactions,
            tenant,
            *change,
        ));
        for (i, id) in batch {
            tenants.push(tenant.as_str());
            users.push(i.user.as_str());
            entities.push(i.entity.as_str());
            kinds.push(i.kind.as_str());
            weights.push(i.weight);
            at.push(i.timestamp);
            batches.push(this);
            keys.push(id.as_ref().map(InteractionId::as_str));
        }
    }
    // Rows go in in the group's order, so of two rows with one id the first is written; the
    // ids written come back (rows without an id are always written), and the notices go in
    // the same statement.
    let written: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "WITH written AS ( \
           INSERT INTO interactions (tenant, user_id, entity_id, kind, weight, at_ms, batch, key) \
           SELECT tenant, user_id, entity_id, kind, weight, at_ms, batch, key \
           FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::real[], \
                       $6::bigint[], $7::bigint[], $8::text[]) WITH ORDINALITY \
                AS r(tenant, user_id, entity_id, kind, weight, at_ms, batch, key, n) \
           ORDER BY n \
           ON CONFLICT (tenant, key) WHERE key IS NOT NULL DO NOTHING \
           RETURNING tenant, key) \
         SELECT tenant, key FROM written WHERE key IS NOT NULL \
         UNION ALL SELECT NULL, NULL FROM (SELECT count(pg_notify($9, n)) \
                                           FROM UNNEST($10::text[]) AS n) AS sent",
    )
    .bind(&tenants)
    .bind(&users)
    .bind(&entities)
    .bind(&kinds)
    .bind(&weights)
    .bind(&at)
    .bind(&batches)
    .bind(&keys)
    .bind(CHANNEL)
    .bind(&notices)
    .fetch_all(&mut *tx)
    .await
    .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    // The last row is the notices' count (each branch of a UNION ALL runs, so every notice
    // went whatever was written).
    let written = written
        .into_iter()
        .filter_map(|(tenant, key)| tenant.zip(key));
    // Each id written marks its first row in the group as recorded; later rows with it, and
    // rows whose id was held before, are duplicates.
    let mut written: std::collections::HashSet<(String, String)> = written.into_iter().collect();
    let recorded = group
        .iter()
        .zip(stamps)
        .map(|((tenant, batch), change)| {
            let fresh = batch
                .iter()
                .map(|(_, id)| match id {
                    None => true,
                    Some(id) => written.remove(&(tenant.to_string(), id.to_string())),
                })
                .collect();
            Recorded { change, fresh }
        })
        .collect();
    Ok(recorded)
}
