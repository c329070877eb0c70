//! Conversions between stored columns and the engine's types, shared by both backends.

use std::num::NonZeroU32;
use std::sync::Arc;

use reco_engine::{
    ChangeId, CheckedEntities, EntityId, Interaction, InteractionKind, Learning, Lineage, Metric,
    NewEntity, Stamp, TenantName, TenantSpec, UserId,
};

use crate::error::{Result, StorageError};
pub(crate) use crate::trained::{learning_from_json, learning_to_json};

/// Rows per page of a load, when the caller asks for none.
pub(crate) const PAGE: i64 = 5_000;

/// A change as the database numbers it: the tenant's lineage and its version after the change.
pub(crate) fn change(lineage: i64, version: i64) -> ChangeId {
    ChangeId::new(lineage_of(lineage), Stamp::new(version.unsigned_abs()))
}

/// A lineage as the database keeps it: a random `bigint`, read as its 64 bits.
pub(crate) fn lineage_of(stored: i64) -> Lineage {
    Lineage::new(u64::from_ne_bytes(stored.to_ne_bytes()))
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(what.to_string())
}

pub(crate) fn tags_to_json(tags: &[String]) -> String {
    serde_json::Value::from(tags.to_vec()).to_string()
}

pub(crate) fn tags_from_json(text: &str) -> Result<Vec<String>> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("tags `{text}`: {e}")))
}

/// Little-endian f32s, for the embedded database.
pub(crate) fn vector_to_blob(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn vector_from_blob(blob: &[u8]) -> Result<Vec<f32>> {
    if !blob.len().is_multiple_of(4) {
        return Err(corrupt("a vector blob's length is not a multiple of 4"));
    }
    Ok(blob
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A tenant's name and spec from its columns: no dimension and no metric for a tenant without
/// content vectors.
pub(crate) fn tenant(
    name: &str,
    dimension: Option<i64>,
    metric: Option<&str>,
) -> Result<(TenantName, TenantSpec)> {
    let name = TenantName::parse(name).map_err(corrupt)?;
    let spec = match (dimension, metric) {
        (None, None) => TenantSpec::WITHOUT_VECTORS,
        (Some(dimension), Some(metric)) => {
            let dimension = usize::try_from(dimension).map_err(corrupt)?;
            TenantSpec::new(dimension, Metric::parse(metric).map_err(corrupt)?).map_err(corrupt)?
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(corrupt(format!(
                "tenant `{name}` has a dimension or a metric alone"
            )));
        }
    };
    Ok((name, spec))
}

/// The dimension and metric columns of a spec: none for a tenant without content vectors.
pub(crate) fn spec_columns(spec: TenantSpec) -> Result<(Option<i64>, Option<&'static str>)> {
    if spec.has_vectors() {
        let dimension = i64::try_from(spec.dimension).map_err(corrupt)?;
        Ok((Some(dimension), Some(spec.metric.as_str())))
    } else {
        Ok((None, None))
    }
}

/// Why a tenant cannot be made again with `spec` and `learning`: what it holds instead.
pub(crate) fn conflict(
    name: &TenantName,
    stored: (TenantSpec, &Learning, Option<NonZeroU32>),
    asked: (TenantSpec, &Learning, Option<NonZeroU32>),
) -> Option<StorageError> {
    let (spec, learning, rate_limit) = stored;
    let same = spec == asked.0
        && learning_to_json(learning) == learning_to_json(asked.1)
        && rate_limit == asked.2;
    (!same).then(|| StorageError::TenantConflict {
        name: name.clone(),
        settings: describe(spec, learning, rate_limit),
    })
}

/// A stored `rate_limit` column: NULL, or a positive number (the column's check).
pub(crate) fn rate_limit(stored: Option<i64>) -> Result<Option<NonZeroU32>> {
    stored
        .map(|n| {
            u32::try_from(n)
                .ok()
                .and_then(NonZeroU32::new)
                .ok_or_else(|| corrupt(format!("a rate limit of {n}")))
        })
        .transpose()
}

/// A tenant's settings in words, for a conflict's message.
fn describe(spec: TenantSpec, learning: &Learning, rate_limit: Option<NonZeroU32>) -> String {
    let content = if spec.has_vectors() {
        format!(
            "dimension {} and metric {}",
            spec.dimension,
            spec.metric.as_str()
        )
    } else {
        "no content vectors".to_owned()
    };
    let budget = rate_limit.map_or_else(
        || "the server's default rate limit".to_owned(),
        |n| format!("rate_limit {n}"),
    );
    format!(
        "{content}, collaborative {}, {budget}",
        learning_to_json(learning)
    )
}

pub(crate) fn entity(
    id: &str,
    vector: Vec<f32>,
    category: Option<String>,
    tags: &str,
    attributes: Option<String>,
) -> Result<NewEntity> {
    Ok(NewEntity {
        id: EntityId::parse(id).map_err(corrupt)?,
        vector,
        category,
        tags: tags_from_json(tags)?,
        attributes: attributes.map(Arc::from),
    })
}

pub(crate) fn interaction(
    user: &str,
    entity: &str,
    kind: &str,
    weight: Option<f32>,
    at_ms: i64,
) -> Result<Interaction> {
    Ok(Interaction {
        user: UserId::parse(user).map_err(corrupt)?,
        entity: EntityId::parse(entity).map_err(corrupt)?,
        kind: InteractionKind::parse(kind).map_err(corrupt)?,
        weight,
        timestamp: at_ms,
    })
}

/// Refuses a batch checked against a spec other than the tenant's stored one: the tenant was
/// deleted and made again with other settings since the batch was checked. The engine's check
/// is the only one (see `CheckedEntities`); this only makes sure it was the right one.
pub(crate) fn checked_for(
    tenant: &TenantName,
    stored: TenantSpec,
    batch: &CheckedEntities,
) -> Result<()> {
    if batch.spec() == stored {
        return Ok(());
    }
    Err(checked_against_other(tenant, stored))
}

/// The refusal of a batch checked against other settings than `stored`, the tenant's.
pub(crate) fn checked_against_other(tenant: &TenantName, stored: TenantSpec) -> StorageError {
    StorageError::TenantConflict {
        name: tenant.clone(),
        settings: format!(
            "dimension {} and metric {}, not those the batch was checked against",
            stored.dimension,
            stored.metric.as_str()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_and_tags_round_trip() {
        let v = vec![1.5, -0.0, f32::MIN_POSITIVE, 3e38];
        assert_eq!(vector_from_blob(&vector_to_blob(&v)).unwrap(), v);
        assert!(vector_from_blob(&[1, 2, 3]).is_err());
        let tags = vec!["a\"b".to_owned(), "ü, c".to_owned()];
        assert_eq!(tags_from_json(&tags_to_json(&tags)).unwrap(), tags);
        assert!(tags_from_json("{").is_err());
    }
}
