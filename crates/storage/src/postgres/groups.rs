//! The group-commit writers: concurrent writes share one transaction (one WAL flush), each
//! still a change of its own with its own version of its tenant and its own notice.

use pgvector::Vector;
use reco_engine::{ChangeId, CheckedEntities, InteractionId, NewEntity, TenantName, TenantSpec};
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

/// Interaction rows as the column arrays an `UNNEST` reads.
#[derive(Default)]
struct InteractionColumns<'a> {
    users: Vec<&'a str>,
    entities: Vec<&'a str>,
    kinds: Vec<&'a str>,
    weights: Vec<Option<f32>>,
    at: Vec<i64>,
    keys: Vec<Option<&'a str>>,
}

impl<'a> InteractionColumns<'a> {
    fn push(&mut self, (i, id): &'a KeyedInteraction) {
        self.users.push(i.user.as_str());
        self.entities.push(i.entity.as_str());
        self.kinds.push(i.kind.as_str());
        self.weights.push(i.weight);
        self.at.push(i.timestamp);
        self.keys.push(id.as_ref().map(InteractionId::as_str));
    }
}

/// The tenant of every batch of `group`, when they all have one.
fn one_tenant<B>(group: &[(TenantName, B)]) -> Option<&TenantName> {
    let (first, _) = group.first()?;
    group.iter().all(|(t, _)| t == first).then_some(first)
}

/// The stamps of `n` batches numbered from `base + 1`, in order.
fn stamps_from(lineage: i64, base: i64, n: usize) -> Vec<ChangeId> {
    (1..=n)
        .map(|k| rows::change(lineage, base + i64::try_from(k).unwrap_or(i64::MAX)))
        .collect()
}

/// Takes the row locks of a group's tenants in name order, before anything is written, as
/// every group of several tenants does: two groups (on two servers) that share tenants then
/// never wait for each other in a cycle.
async fn lock_in_name_order<'a>(
    tx: &mut sqlx::PgConnection,
    tenants: impl Iterator<Item = &'a TenantName>,
) -> std::result::Result<(), sqlx::Error> {
    let mut names: Vec<&str> = tenants.map(TenantName::as_str).collect();
    names.sort_unstable();
    names.dedup();
    // The rows are locked as the sort returns them, in name order.
    sqlx::query("SELECT 1 FROM tenants WHERE name = ANY($1) ORDER BY name FOR UPDATE")
        .bind(&names)
        .execute(tx)
        .await?;
    Ok(())
}

/// Why a write to `tenant` of a batch checked against `spec` found no tenant row to take a
/// version of: the tenant does not exist, or it was made again with other settings since the
/// batch was checked. Read after the fact, for the error alone: the write itself changed
/// nothing.
async fn refusal(pool: &PgPool, tenant: &TenantName, spec: TenantSpec) -> StorageError {
    type SpecColumns = (Option<i32>, Option<String>);
    let stored: std::result::Result<Option<SpecColumns>, sqlx::Error> =
        sqlx::query_as("SELECT dimension, metric FROM tenants WHERE name = $1")
            .bind(tenant.as_str())
            .fetch_optional(pool)
            .await;
    match stored {
        Err(e) => e.into(),
        Ok(None) => StorageError::TenantNotFound(tenant.clone()),
        Ok(Some((dimension, metric))) => {
            match rows::tenant(tenant.as_str(), dimension.map(i64::from), metric.as_deref()) {
                Err(e) => e,
                // Made with these settings after the write looked: it did not exist then.
                Ok((_, stored)) if stored == spec => StorageError::TenantNotFound(tenant.clone()),
                Ok((_, stored)) => rows::checked_against_other(tenant, stored),
            }
        }
    }
}

/// Writes a group of entity batches in one transaction and returns their stamps, each batch a
/// change of its own with its own version of its tenant and its own notice. A batch is written
/// only to a tenant whose stored settings are those it was checked against (see
/// `CheckedEntities`), checked in the same statement that takes the tenant's row lock. A group
/// of one tenant (the usual case, a single batch included) is one statement; a group of several
/// takes their locks in name order, then their versions, then writes its rows and notices, in
/// one transaction of three statements.
pub(super) async fn upsert_group(
    pool: &PgPool,
    origin: &str,
    group: Vec<(TenantName, CheckedEntities)>,
) -> Result<Vec<ChangeId>> {
    if let Some(tenant) = one_tenant(&group) {
        return upsert_one_tenant(pool, origin, tenant, &group).await;
    }
    let mut tx = pool.begin().await.map_err(unavailable)?;
    lock_in_name_order(&mut tx, group.iter().map(|(t, _)| t)).await?;
    let numbered = number_batches(&mut tx, &group).await?;
    for ((tenant, batch), (_, stored)) in group.iter().zip(&numbered) {
        rows::checked_for(tenant, *stored, batch)?;
    }
    let stamps: Vec<ChangeId> = numbered.into_iter().map(|(change, _)| change).collect();
    let (mut tenants, mut batches, mut columns) =
        (Vec::new(), Vec::new(), EntityColumns::default());
    for ((tenant, e), b) in last_of_each_id(&group) {
        tenants.push(tenant.as_str());
        batches.push(i64::try_from(stamps[b].stamp.get()).unwrap_or(i64::MAX));
        columns.push(e);
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

/// One row per entity of a group, with the index of its batch: of the rows of one id of one
/// tenant, the last batch's, which is what writing the batches one after the other would have
/// left (a statement may not write a row twice).
fn last_of_each_id(
    group: &[(TenantName, CheckedEntities)],
) -> Vec<((&TenantName, &NewEntity), usize)> {
    let mut last = std::collections::HashMap::new();
    for (b, (tenant, batch)) in group.iter().enumerate() {
        for (r, e) in batch.entities().iter().enumerate() {
            last.insert((tenant.as_str(), e.id.as_str()), (b, r));
        }
    }
    let mut kept = Vec::with_capacity(last.len());
    for (b, (tenant, batch)) in group.iter().enumerate() {
        for (r, e) in batch.entities().iter().enumerate() {
            if last.get(&(tenant.as_str(), e.id.as_str())) == Some(&(b, r)) {
                kept.push(((tenant, e), b));
            }
        }
    }
    kept
}

/// The batches of a group of one tenant in one statement outside a transaction block, which
/// is its own transaction: it takes `n` versions of the tenant (if its settings are those the
/// batches were checked against), writes the rows, each tagged with its batch's version, and
/// sends a notice per batch; its answer comes after the commit. One round trip.
async fn upsert_one_tenant(
    pool: &PgPool,
    origin: &str,
    tenant: &TenantName,
    group: &[(TenantName, CheckedEntities)],
) -> Result<Vec<ChangeId>> {
    // A database that takes no connections is "not now", whatever its error says.
    let mut conn = pool.acquire().await.map_err(unavailable)?;
    let spec = group[0].1.spec();
    if group.iter().any(|(_, batch)| batch.spec() != spec) {
        // The tenant was made again between two of these checks: each batch goes alone.
        return Err(StorageError::TenantConflict {
            name: tenant.clone(),
            settings: "other settings than some batches of the group were checked against".into(),
        });
    }
    let (dimension, metric) = rows::spec_columns(spec)?;
    let n = i64::try_from(group.len()).unwrap_or(i64::MAX);
    let mut columns = EntityColumns::default();
    let mut numbers = Vec::new();
    for ((_, e), b) in last_of_each_id(group) {
        columns.push(e);
        numbers.push(i64::try_from(b + 1).unwrap_or(i64::MAX));
    }
    let base: Option<(i64, i64)> = sqlx::query_as(
        "WITH b AS (UPDATE tenants SET version = version + $8 \
                    WHERE name = $1 AND dimension IS NOT DISTINCT FROM $9 \
                      AND metric IS NOT DISTINCT FROM $10 \
                    RETURNING lineage, version - $8 AS base), \
         written AS ( \
           INSERT INTO entities (tenant, id, embedding, category, tags, attributes, batch, updated_at) \
           SELECT $1, u.id, u.embedding, u.category, u.tags::jsonb, u.attributes::json, \
                  b.base + u.k, now() \
           FROM UNNEST($2::text[], $3::vector[], $4::text[], $5::text[], $6::text[], \
                       $7::bigint[]) AS u(id, embedding, category, tags, attributes, k), b \
           ON CONFLICT (tenant, id) DO UPDATE SET embedding = EXCLUDED.embedding, \
             category = EXCLUDED.category, tags = EXCLUDED.tags, \
             attributes = EXCLUDED.attributes, batch = EXCLUDED.batch, \
             updated_at = EXCLUDED.updated_at \
           RETURNING 1) \
         SELECT b.lineage, b.base FROM b, \
           LATERAL (SELECT count(pg_notify($11, $12 || b.lineage || ' ' || (b.base + k))) \
                    FROM generate_series(1, $8) AS k) n, \
           LATERAL (SELECT count(*) FROM written) w",
    )
    .bind(tenant.as_str())
    .bind(&columns.ids)
    .bind(&columns.vectors)
    .bind(&columns.categories)
    .bind(&columns.tags)
    .bind(&columns.attributes)
    .bind(&numbers)
    .bind(n)
    .bind(dimension)
    .bind(metric)
    .bind(CHANNEL)
    .bind(notice(origin, ChangeKind::Entities, tenant, ""))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| write_error(e, tenant))?;
    drop(conn);
    match base {
        Some((lineage, base)) => Ok(stamps_from(lineage, base, group.len())),
        None => Err(refusal(pool, tenant, spec).await),
    }
}

/// Takes a version of its tenant for each batch of a group, in one statement (the tenants'
/// rows are locked in name order already): each tenant is bumped by its number of batches,
/// and its batches are numbered from the versions that come back, in the group's order. Each
/// batch's stamp comes with its tenant's stored settings. A tenant that does not exist fails
/// the group (each batch is then tried alone).
async fn number_batches<B>(
    tx: &mut sqlx::PgConnection,
    group: &[(TenantName, B)],
) -> Result<Vec<(ChangeId, TenantSpec)>> {
    let mut per_tenant: std::collections::BTreeMap<&str, i64> = std::collections::BTreeMap::new();
    for (tenant, _) in group {
        *per_tenant.entry(tenant.as_str()).or_default() += 1;
    }
    let names: Vec<&str> = per_tenant.keys().copied().collect();
    let counts: Vec<i64> = per_tenant.values().copied().collect();
    type Bumped = (String, i64, i64, Option<i32>, Option<String>);
    let versions: Vec<Bumped> = sqlx::query_as(
        "UPDATE tenants t SET version = t.version + c.n \
         FROM (SELECT * FROM UNNEST($1::text[], $2::bigint[]) AS c(name, n) ORDER BY name) c \
         WHERE t.name = c.name RETURNING t.name, t.lineage, t.version, t.dimension, t.metric",
    )
    .bind(&names)
    .bind(&counts)
    .fetch_all(&mut *tx)
    .await?;
    let mut next: std::collections::HashMap<&str, (i64, i64, TenantSpec)> =
        std::collections::HashMap::new();
    for (name, lineage, version, dimension, metric) in &versions {
        let n = per_tenant.get(name.as_str()).copied().unwrap_or_default();
        let (_, spec) = rows::tenant(name, dimension.map(i64::from), metric.as_deref())?;
        next.insert(name.as_str(), (*lineage, version - n + 1, spec));
    }
    group
        .iter()
        .map(|(tenant, _)| {
            let (lineage, stamp, spec) = next
                .get_mut(tenant.as_str())
                .ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
            let this = *stamp;
            *stamp += 1;
            Ok((rows::change(*lineage, this), *spec))
        })
        .collect()
}

/// Writes a group of interaction batches in one transaction and returns their stamps and
/// which rows were recorded: each batch is a change of its own, with its own version of its
/// tenant and its own notice; a row whose id its tenant holds already (or an earlier row of
/// the group gave) is not written. A group of one tenant is one statement; a group of several
/// takes their locks in name order first.
pub(super) async fn insert_interactions(
    pool: &PgPool,
    origin: &str,
    group: Vec<(TenantName, Vec<KeyedInteraction>)>,
) -> Result<Vec<Recorded>> {
    if let Some(tenant) = one_tenant(&group) {
        return insert_one_tenant(pool, origin, tenant, &group).await;
    }
    let mut tx = pool.begin().await.map_err(unavailable)?;
    lock_in_name_order(&mut tx, group.iter().map(|(t, _)| t)).await?;
    let stamps: Vec<ChangeId> = number_batches(&mut tx, &group)
        .await?
        .into_iter()
        .map(|(change, _)| change)
        .collect();
    let (mut tenants, mut batches, mut columns) =
        (Vec::new(), Vec::new(), InteractionColumns::default());
    let mut notices = Vec::with_capacity(group.len());
    for ((tenant, batch), change) in group.iter().zip(&stamps) {
        let this = i64::try_from(change.stamp.get()).unwrap_or(i64::MAX);
        notices.push(change_notice(
            origin,
            ChangeKind::Interactions,
            tenant,
            *change,
        ));
        for row in batch {
            tenants.push(tenant.as_str());
            batches.push(this);
            columns.push(row);
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
    .bind(&columns.users)
    .bind(&columns.entities)
    .bind(&columns.kinds)
    .bind(&columns.weights)
    .bind(&columns.at)
    .bind(&batches)
    .bind(&columns.keys)
    .bind(CHANNEL)
    .bind(&notices)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
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

/// The interaction batches of a group of one tenant in one statement outside a transaction
/// block (its own transaction, answered after the commit): it takes `n` versions of the
/// tenant, writes the rows in the group's order, each tagged with its batch's version, and
/// sends a notice per batch; the ids written come back. One round trip.
async fn insert_one_tenant(
    pool: &PgPool,
    origin: &str,
    tenant: &TenantName,
    group: &[(TenantName, Vec<KeyedInteraction>)],
) -> Result<Vec<Recorded>> {
    // A database that takes no connections is "not now", whatever its error says.
    let mut conn = pool.acquire().await.map_err(unavailable)?;
    let (mut numbers, mut columns) = (Vec::new(), InteractionColumns::default());
    for (b, (_, batch)) in group.iter().enumerate() {
        let number = i64::try_from(b + 1).unwrap_or(i64::MAX);
        for row in batch {
            numbers.push(number);
            columns.push(row);
        }
    }
    let n = i64::try_from(group.len()).unwrap_or(i64::MAX);
    // Rows go in in the group's order, so of two rows with one id the first is written.
    let answer: Option<(i64, i64, Vec<String>, i64)> = sqlx::query_as(
        "WITH b AS (UPDATE tenants SET version = version + $9 WHERE name = $1 \
                    RETURNING lineage, version - $9 AS base), \
         written AS ( \
           INSERT INTO interactions (tenant, user_id, entity_id, kind, weight, at_ms, batch, key) \
           SELECT $1, r.user_id, r.entity_id, r.kind, r.weight, r.at_ms, b.base + r.k, r.key \
           FROM UNNEST($2::text[], $3::text[], $4::text[], $5::real[], $6::bigint[], \
                       $7::bigint[], $8::text[]) WITH ORDINALITY \
                AS r(user_id, entity_id, kind, weight, at_ms, k, key, n), b \
           ORDER BY r.n \
           ON CONFLICT (tenant, key) WHERE key IS NOT NULL DO NOTHING \
           RETURNING key) \
         SELECT b.lineage, b.base, \
                ARRAY(SELECT key FROM written WHERE key IS NOT NULL), \
                (SELECT count(pg_notify($10, $11 || b.lineage || ' ' || (b.base + k))) \
                 FROM generate_series(1, $9) AS k) \
         FROM b",
    )
    .bind(tenant.as_str())
    .bind(&columns.users)
    .bind(&columns.entities)
    .bind(&columns.kinds)
    .bind(&columns.weights)
    .bind(&columns.at)
    .bind(&numbers)
    .bind(&columns.keys)
    .bind(n)
    .bind(CHANNEL)
    .bind(notice(origin, ChangeKind::Interactions, tenant, ""))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| write_error(e, tenant))?;
    drop(conn);
    let (lineage, base, written, _) =
        answer.ok_or_else(|| StorageError::TenantNotFound(tenant.clone()))?;
    // Each id written marks its first row in the group as recorded; later rows with it, and
    // rows whose id was held before, are duplicates.
    let mut written: std::collections::HashSet<String> = written.into_iter().collect();
    let recorded = group
        .iter()
        .zip(stamps_from(lineage, base, group.len()))
        .map(|((_, batch), change)| {
            let fresh = batch
                .iter()
                .map(|(_, id)| id.as_ref().is_none_or(|id| written.remove(id.as_str())))
                .collect();
            Recorded { change, fresh }
        })
        .collect();
    Ok(recorded)
}
