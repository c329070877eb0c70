//! Collaborative models as both backends keep them: one row per tenant, its newest version,
//! with the item ids and factors as blobs and the training parameters as JSON. This module
//! turns [`ModelParts`] into those columns and back; a row that does not read back into a model
//! is corrupt, never half-served.

use reco_engine::{Algorithm, EntityId, LearnParams, Learning, ModelInfo, ModelParts};

use crate::error::Result;
use crate::rows::{corrupt, vector_from_blob, vector_to_blob};

/// The selected columns of a model row, in this order, in either backend.
pub(crate) const COLUMNS: &str = "version, trained_at, interactions, users, items, \
     CAST(factors AS BIGINT), seconds, recorded, params, item_ids, item_factors";

/// A model row as both backends read it (see [`COLUMNS`]).
pub(crate) type ModelRow = (
    i64,
    i64,
    i64,
    i64,
    i64,
    i64,
    f64,
    i64,
    String,
    Vec<u8>,
    Vec<u8>,
);

/// A model's columns, ready to bind in the order of [`COLUMNS`] (factors as an `i64`).
pub(crate) struct Columns {
    pub version: i64,
    pub trained_at: i64,
    pub interactions: i64,
    pub users: i64,
    pub items: i64,
    pub factors: i64,
    pub seconds: f64,
    pub recorded: i64,
    pub params: String,
    pub item_ids: Vec<u8>,
    pub item_factors: Vec<u8>,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn uncount(n: i64, what: &str) -> Result<usize> {
    usize::try_from(n).map_err(|_| corrupt(format!("a model's {what} `{n}`")))
}

/// A model as columns.
pub(crate) fn columns(parts: &ModelParts) -> Columns {
    let info = &parts.info;
    Columns {
        version: i64::try_from(info.version).unwrap_or(i64::MAX),
        trained_at: info.trained_at,
        interactions: count(info.interactions),
        users: count(info.users),
        items: count(info.items),
        factors: count(info.factors),
        seconds: info.seconds,
        recorded: i64::try_from(info.recorded).unwrap_or(i64::MAX),
        params: params_value(&parts.params).to_string(),
        item_ids: ids_to_blob(&parts.items),
        item_factors: vector_to_blob(&parts.factors),
    }
}

/// A model row read back.
pub(crate) fn parts(row: ModelRow) -> Result<ModelParts> {
    let (
        version,
        trained_at,
        interactions,
        users,
        items,
        factors,
        seconds,
        recorded,
        params,
        item_ids,
        item_factors,
    ) = row;
    let info = ModelInfo {
        version: u64::try_from(version).map_err(|_| corrupt("a model's version"))?,
        trained_at,
        interactions: uncount(interactions, "interactions")?,
        users: uncount(users, "users")?,
        items: uncount(items, "items")?,
        factors: uncount(factors, "factors")?,
        seconds,
        fold_ins: 0,
        recorded: u64::try_from(recorded).map_err(|_| corrupt("a model's interaction count"))?,
    };
    // Models kept before EASE existed are iALS models.
    let params: serde_json::Value =
        serde_json::from_str(&params).map_err(|e| corrupt(format!("a model's parameters: {e}")))?;
    let mut params = params_from_value(&params, Algorithm::Ials)?;
    if params.factors != info.factors {
        return Err(corrupt("a model whose parameters name other factors"));
    }
    params.threads = LearnParams::default().threads;
    Ok(ModelParts {
        info,
        params,
        items: ids_from_blob(&item_ids)?,
        factors: vector_from_blob(&item_factors)?,
    })
}

/// The parameters a fold-in and a later reader need; the threads are this machine's, not kept.
fn params_value(p: &LearnParams) -> serde_json::Value {
    serde_json::json!({
        "algorithm": p.algorithm.as_str(),
        "ease_regularization": p.ease_regularization,
        "factors": p.factors,
        "iterations": p.iterations,
        "regularization": p.regularization,
        "frequency_scaling": p.frequency_scaling,
        "unobserved_weight": p.unobserved_weight,
        "confidence": p.confidence,
        "init_scale": p.init_scale,
        "seed": p.seed,
    })
}

/// Parameters from their JSON object; a model kept before a field existed gets the field's
/// default (`algorithm` the one given).
fn params_from_value(value: &serde_json::Value, algorithm: Algorithm) -> Result<LearnParams> {
    let bad = |field: &str| corrupt(format!("a model's parameter `{field}`"));
    let float = |field: &str| value[field].as_f64().ok_or_else(|| bad(field));
    let whole = |field: &str| value[field].as_u64().ok_or_else(|| bad(field));
    let size = |field: &str| whole(field).and_then(|n| usize::try_from(n).map_err(|_| bad(field)));
    let algorithm = match value.get("algorithm") {
        None => algorithm,
        Some(name) => name
            .as_str()
            .and_then(Algorithm::parse)
            .ok_or_else(|| bad("algorithm"))?,
    };
    let ease_regularization = match value.get("ease_regularization") {
        None => LearnParams::default().ease_regularization,
        Some(_) => float("ease_regularization")?,
    };
    Ok(LearnParams {
        algorithm,
        ease_regularization,
        factors: size("factors")?,
        iterations: size("iterations")?,
        regularization: float("regularization")?,
        frequency_scaling: float("frequency_scaling")?,
        unobserved_weight: float("unobserved_weight")?,
        confidence: float("confidence")?,
        init_scale: float("init_scale")?,
        seed: whole("seed")?,
        ..LearnParams::default()
    })
}

/// How a tenant's model is trained, as its `learning` column keeps it: every field written.
fn learning_value(learning: &Learning) -> serde_json::Value {
    let mut value = params_value(&learning.params);
    value["enabled"] = learning.enabled.into();
    value
}

/// [`learning_value`] as the column's text.
pub(crate) fn learning_to_json(learning: &Learning) -> String {
    learning_value(learning).to_string()
}

/// A `learning` column read back; a field it lacks (`'{}'`, the column's default) is the
/// default's.
pub(crate) fn learning_from_json(text: &str) -> Result<Learning> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| corrupt(format!("a tenant's learning: {e}")))?;
    let defaults = Learning::default();
    let mut filled = learning_value(&defaults);
    for (field, slot) in filled.as_object_mut().expect("an object") {
        if let Some(given) = value.get(field) {
            *slot = given.clone();
        }
    }
    let enabled = filled["enabled"]
        .as_bool()
        .ok_or_else(|| corrupt("a tenant's learning `enabled`"))?;
    Ok(Learning {
        enabled,
        params: params_from_value(&filled, defaults.params.algorithm)?,
    })
}

/// Ids one after another, each its length in two little-endian bytes (ids are at most 256
/// bytes) and then its bytes.
fn ids_to_blob(ids: &[EntityId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.iter().map(|id| id.as_str().len() + 2).sum());
    for id in ids {
        let bytes = id.as_str().as_bytes();
        let length = u16::try_from(bytes.len()).expect("an id is at most 256 bytes");
        out.extend_from_slice(&length.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

fn ids_from_blob(mut blob: &[u8]) -> Result<Vec<EntityId>> {
    let mut ids = Vec::new();
    while !blob.is_empty() {
        let (Some(&low), Some(&high)) = (blob.first(), blob.get(1)) else {
            return Err(corrupt("a model's item ids end inside a length"));
        };
        let length = usize::from(u16::from_le_bytes([low, high]));
        let bytes = blob
            .get(2..2 + length)
            .ok_or_else(|| corrupt("a model's item ids end inside an id"))?;
        let text = std::str::from_utf8(bytes).map_err(corrupt)?;
        ids.push(EntityId::parse(text).map_err(corrupt)?);
        blob = &blob[2 + length..];
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModelParts {
        ModelParts {
            info: ModelInfo {
                version: 3,
                trained_at: 1_700_000_000_000,
                interactions: 9,
                users: 4,
                items: 2,
                factors: 2,
                seconds: 0.25,
                fold_ins: 0,
                recorded: 11,
            },
            params: LearnParams {
                factors: 2,
                seed: 99,
                regularization: 0.05,
                ..LearnParams::default()
            },
            items: vec![
                EntityId::parse("a").unwrap(),
                EntityId::parse(&"é".repeat(128)).unwrap(),
            ],
            factors: vec![0.5, -1.0, 2.0, f32::MIN_POSITIVE],
        }
    }

    #[test]
    fn learning_round_trips_and_defaults_fill_what_is_missing() {
        let learning = Learning {
            enabled: false,
            params: LearnParams {
                factors: 16,
                regularization: 0.5,
                ..LearnParams::default()
            },
        };
        assert_eq!(
            learning_from_json(&learning_to_json(&learning)).unwrap(),
            learning
        );
        assert_eq!(learning_from_json("{}").unwrap(), Learning::default());
        assert!(learning_from_json("{\"factors\": \"many\"}").is_err());
    }

    #[test]
    fn a_model_round_trips_through_its_columns() {
        let parts = sample();
        let c = columns(&parts);
        let row = (
            c.version,
            c.trained_at,
            c.interactions,
            c.users,
            c.items,
            c.factors,
            c.seconds,
            c.recorded,
            c.params,
            c.item_ids,
            c.item_factors,
        );
        assert_eq!(super::parts(row.clone()).unwrap(), parts);
        let mut cut = row.clone();
        cut.9.pop();
        assert!(super::parts(cut).is_err(), "ids cut short");
        let mut other = row;
        other.5 = 3;
        assert!(super::parts(other).is_err(), "factors that disagree");
    }
}
