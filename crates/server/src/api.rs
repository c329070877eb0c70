//! The JSON shapes of `../shared/API.md`, and their conversion to and from engine types. Only
//! this crate knows JSON; the engine's types are plain Rust.

use std::num::NonZeroU32;
use std::sync::Arc;

use reco_engine::{
    Algorithm, EntityId, EntityView, Example, ExampleStrategy, Filter, Interaction, InteractionId,
    InteractionKind, LearnParams, Learning, Lineage, Metric, ModelInfo, NewEntity, Ranking,
    RecommendRequest, Scored, SearchOptions, Space, Strategy, TenantInfo, TenantSpec, UserId,
    UserStrategy,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::state::Training;

/// The largest seed the API takes: JSON numbers are exact integers up to 2^53 - 1.
const MAX_SEED: u64 = (1 << 53) - 1;

/// The most items one batch may hold.
pub const MAX_BATCH: usize = 10_000;

/// Reads an optional whole number that JSON may also write as `520.0`: JSON Schema (and so the
/// OpenAPI document) counts any number without a fraction as an integer, and so does the API.
fn whole<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::de::Error;
    let Some(number) = Option::<serde_json::Number>::deserialize(deserializer)? else {
        return Ok(None);
    };
    // 2^64: the floats below it and at least 0 with no fraction are exactly some u64.
    const WHOLE_LIMIT: f64 = 18_446_744_073_709_551_616.0;
    let value = number.as_u64().or_else(|| {
        let f = number.as_f64()?;
        if f.fract() != 0.0 || !(0.0..WHOLE_LIMIT).contains(&f) {
            return None;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = f as u64;
        Some(n)
    });
    value
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("expected a whole number in range, not {number}")))
}

fn check_batch(len: usize, what: &str) -> Result<(), ApiError> {
    if len > MAX_BATCH {
        return Err(ApiError::BadRequest(format!(
            "a batch holds at most {MAX_BATCH} {what}, not {len}; send it in parts"
        )));
    }
    Ok(())
}

/// `PUT /v1/tenants/{tenant}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantBody {
    /// The length of every content vector, 1 to 16000; with `metric`, or neither: a tenant
    /// without them keeps no content vectors and is served by its collaborative model.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 16000)]
    pub dimension: Option<usize>,
    /// `cosine`, `dot` or `euclidean`; with `dimension`.
    #[serde(default)]
    #[schema(value_type = Option<MetricName>)]
    pub metric: Option<String>,
    /// How the tenant's collaborative model is trained; every field is optional.
    #[serde(default)]
    pub collaborative: Option<CollaborativeBody>,
    /// The tenant's own request budget, requests per second (1 to 2147483647); without it the
    /// server's default applies (`RECO_RATE_LIMIT`, no limit unless set).
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 2147483647)]
    pub rate_limit: Option<u32>,
}

/// How a tenant's content vectors are compared (the OpenAPI document's enum).
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
pub enum MetricName {
    Cosine,
    Dot,
    Euclidean,
}

/// What `PUT /v1/tenants/{tenant}` asks for, checked.
#[derive(Debug, Clone, Copy)]
pub struct TenantSettings {
    pub spec: TenantSpec,
    pub learning: Learning,
    pub rate_limit: Option<NonZeroU32>,
}

/// `"collaborative"` in a tenant's settings: whether it gets a model, and the training's
/// parameters (iALS; see the README's "Learning from interactions").
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CollaborativeBody {
    /// Whether the tenant gets a model (trained when enough interactions arrived, or when
    /// asked). Default true.
    pub enabled: Option<bool>,
    /// `auto` (the default: EASE for a catalogue of up to 2,500 entities, iALS beyond),
    /// `ials` or `ease` (at most 2,500 entities with interactions).
    #[schema(pattern = "^(auto|ials|ease)$")]
    pub algorithm: Option<String>,
    /// EASE's regularization, as a multiple of the mean number of users per entity; above 0.
    /// Default 8.
    #[schema(exclusive_minimum = 0)]
    pub ease_regularization: Option<f64>,
    /// Factors per user and entity, 1 to 1024. Default 64.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 1024)]
    pub factors: Option<usize>,
    /// Sweeps over users and entities, 1 to 1000. Default 10.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub iterations: Option<usize>,
    /// The regularization, above 0. Default 0.01.
    #[schema(exclusive_minimum = 0)]
    pub regularization: Option<f64>,
    /// The weight of each pair a user never interacted with, 0 to 1. Default 1.
    #[schema(minimum = 0, maximum = 1)]
    pub unobserved_weight: Option<f64>,
    /// How much an interaction's weight adds to its confidence, 0 or more. Default 0.25.
    #[schema(minimum = 0)]
    pub confidence: Option<f64>,
    /// How the regularization grows with a row's interactions, 0 or more. Default 1.
    #[schema(minimum = 0)]
    pub frequency_scaling: Option<f64>,
    /// The seed of the initial factors, 0 to 2^53 - 1 (JSON's exact integers). Default 42.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 0, maximum = 9007199254740991_u64)]
    pub seed: Option<u64>,
}

impl TenantBody {
    /// The content spec, learning and budget these settings ask for, checked.
    pub fn settings(&self) -> Result<TenantSettings, ApiError> {
        let spec = match (self.dimension, self.metric.as_deref()) {
            (Some(dimension), Some(name)) => TenantSpec::new(dimension, metric(name)?)?,
            (None, None) => TenantSpec::WITHOUT_VECTORS,
            (Some(_), None) | (None, Some(_)) => {
                return Err(ApiError::BadRequest(
                    "dimension and metric come together, or not at all (a tenant without \
                     content vectors)"
                        .into(),
                ));
            }
        };
        let c = self.collaborative.as_ref();
        let defaults = Learning::default();
        let p = defaults.params;
        let algorithm = match c.and_then(|c| c.algorithm.as_deref()) {
            None => p.algorithm,
            Some(name) => Algorithm::parse(name).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "collaborative.algorithm is auto, ials or ease, not `{name}`"
                ))
            })?,
        };
        let params = LearnParams {
            algorithm,
            ease_regularization: c
                .and_then(|c| c.ease_regularization)
                .unwrap_or(p.ease_regularization),
            factors: c.and_then(|c| c.factors).unwrap_or(p.factors),
            iterations: c.and_then(|c| c.iterations).unwrap_or(p.iterations),
            regularization: c.and_then(|c| c.regularization).unwrap_or(p.regularization),
            unobserved_weight: c
                .and_then(|c| c.unobserved_weight)
                .unwrap_or(p.unobserved_weight),
            confidence: c.and_then(|c| c.confidence).unwrap_or(p.confidence),
            frequency_scaling: c
                .and_then(|c| c.frequency_scaling)
                .unwrap_or(p.frequency_scaling),
            seed: c.and_then(|c| c.seed).unwrap_or(p.seed),
            ..p
        };
        // The API's ranges, a little narrower than what a trained model may hold.
        if !(1..=1024).contains(&params.factors) {
            return Err(ApiError::BadRequest(
                "collaborative: factors is from 1 to 1024".into(),
            ));
        }
        if params.seed > MAX_SEED {
            return Err(ApiError::BadRequest(format!(
                "collaborative: seed is from 0 to {MAX_SEED}"
            )));
        }
        params
            .check()
            .map_err(|e| ApiError::BadRequest(format!("collaborative: {e}")))?;
        let learning = Learning {
            enabled: c.and_then(|c| c.enabled).unwrap_or(defaults.enabled),
            params,
        };
        let rate_limit = match self.rate_limit {
            None => None,
            Some(n) => Some(
                NonZeroU32::new(n)
                    .filter(|n| i32::try_from(n.get()).is_ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!(
                            "rate_limit is from 1 to 2147483647 requests a second, not {n}"
                        ))
                    })?,
            ),
        };
        Ok(TenantSettings {
            spec,
            learning,
            rate_limit,
        })
    }
}

impl From<&Learning> for CollaborativeBody {
    fn from(l: &Learning) -> Self {
        let p = &l.params;
        Self {
            enabled: Some(l.enabled),
            algorithm: Some(p.algorithm.as_str().to_owned()),
            ease_regularization: Some(p.ease_regularization),
            factors: Some(p.factors),
            iterations: Some(p.iterations),
            regularization: Some(p.regularization),
            unobserved_weight: Some(p.unobserved_weight),
            confidence: Some(p.confidence),
            frequency_scaling: Some(p.frequency_scaling),
            seed: Some(p.seed),
        }
    }
}

/// A tenant's settings and sizes.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantView {
    pub name: String,
    /// Null for a tenant without content vectors.
    pub dimension: Option<usize>,
    /// Null for a tenant without content vectors.
    pub metric: Option<&'static str>,
    pub entities: usize,
    pub interactions: u64,
    /// How its collaborative model is trained.
    pub collaborative: CollaborativeBody,
    /// The model's status, null before its first training.
    pub model: Option<ModelStatus>,
    /// The tenant's own request budget, requests per second; null when the server's default
    /// applies.
    pub rate_limit: Option<u32>,
    /// Names this incarnation of the tenant: a tenant deleted and made again under the same
    /// name has another (`reco import` keys its resume state by it).
    pub lineage: String,
    /// Its graph search, once it has a graph (large enough tenants); null before.
    pub search: Option<SearchView>,
}

/// How a tenant's graph searches, and the recall measured on its own questions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchView {
    /// How many candidates a search considers (HNSW's ef): the least that holds the server's
    /// recall target on the questions audited lately, or the configured one before that.
    pub breadth: usize,
    /// The mean recall@k of graph questions answered again exactly in the background, at this
    /// breadth; null until enough were audited.
    pub recall: Option<f64>,
    /// How many audited questions `recall` reads; null with it.
    pub samples: Option<usize>,
}

impl TenantView {
    /// The view of a tenant, with its model's status when it has one.
    pub fn new(
        info: &TenantInfo,
        lineage: Lineage,
        model: Option<ModelStatus>,
        rate_limit: Option<NonZeroU32>,
        search: Option<SearchView>,
    ) -> Self {
        let vectors = info.spec.has_vectors();
        Self {
            name: info.name.to_string(),
            dimension: vectors.then_some(info.spec.dimension),
            metric: vectors.then_some(info.spec.metric.as_str()),
            entities: info.entities,
            interactions: info.interactions,
            collaborative: CollaborativeBody::from(&info.learning),
            model,
            rate_limit: rate_limit.map(NonZeroU32::get),
            lineage: lineage.to_string(),
            search,
        }
    }
}

/// `GET /v1/tenants`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantList {
    /// By name.
    pub tenants: Vec<TenantView>,
}

/// `201` from `POST /v1/tenants/{tenant}/keys`: shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub key: String,
}

/// One entity to write.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntityBody {
    /// 1 to 256 bytes of UTF-8, without NUL.
    #[schema(min_length = 1, max_length = 256)]
    pub id: String,
    /// Required when the tenant has a dimension, refused when it has none.
    #[serde(default)]
    pub vector: Option<Vec<f32>>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Any JSON object; stored as given.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Box<RawValue>>,
}

/// `PUT /v1/tenants/{tenant}/entities`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitiesBody {
    pub entities: Vec<EntityBody>,
}

impl EntitiesBody {
    pub fn into_entities(self) -> Result<Vec<NewEntity>, ApiError> {
        check_batch(self.entities.len(), "entities")?;
        self.entities
            .into_iter()
            .enumerate()
            .map(|(index, e)| {
                e.into_entity()
                    .map_err(|m| ApiError::BadRequest(format!("item {index} of the batch: {m}")))
            })
            .collect()
    }
}

impl EntityBody {
    /// The entity, its id parsed and its attributes known to be an object. Its vector and
    /// labels are the engine's to check, against the tenant (`CheckedEntities`).
    pub fn into_entity(self) -> Result<NewEntity, String> {
        let id = EntityId::parse(&self.id).map_err(|e| e.to_string())?;
        let attributes = match self.attributes {
            Some(raw) => {
                crate::attributes::check(raw.get())?;
                Some(Arc::from(raw.get()))
            }
            None => None,
        };
        Ok(NewEntity {
            id,
            vector: self.vector.unwrap_or_default(),
            category: self.category,
            tags: self.tags.unwrap_or_default(),
            attributes,
        })
    }
}

/// `200` from an upsert.
#[derive(Debug, Serialize, ToSchema)]
pub struct Upserted {
    pub upserted: usize,
}

/// An entity as stored.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityOut {
    pub id: String,
    /// Left out for a tenant without content vectors.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    pub category: Option<String>,
    pub tags: Vec<String>,
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Box<RawValue>>,
}

impl From<EntityView> for EntityOut {
    fn from(e: EntityView) -> Self {
        Self {
            id: e.id.to_string(),
            vector: e.vector,
            category: e.category.map(|c| c.to_string()),
            tags: e.tags.iter().map(|t| t.to_string()).collect(),
            attributes: e
                .attributes
                .and_then(|a| RawValue::from_string(a.to_string()).ok()),
        }
    }
}

/// The query of `GET /v1/tenants/{tenant}/entities`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// 1 to 1000; 100 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
    /// The page starts after this id (the `next` of the page before).
    pub after: Option<String>,
    /// `true` includes each entity's vector.
    pub vectors: Option<bool>,
}

/// The most entities one page holds.
pub const MAX_PAGE: usize = 1000;

impl ListParams {
    /// The page asked for: the id to start after, and how many.
    pub fn page(&self) -> Result<(Option<EntityId>, usize), ApiError> {
        let limit = self.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ApiError::BadRequest(format!(
                "limit is from 1 to {MAX_PAGE}, not {limit}"
            )));
        }
        let after = self.after.as_deref().map(EntityId::parse).transpose()?;
        Ok((after, limit))
    }
}

/// A page of entities, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityPage {
    pub entities: Vec<EntityOut>,
    /// The id to ask `after` for the next page; null on the last.
    pub next: Option<String>,
}

/// One interaction.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionBody {
    /// The interaction's own id, if its client gives one: 1 to 256 bytes of UTF-8 without
    /// NUL. An interaction whose id the tenant already holds is acknowledged and not recorded
    /// again, so a retried request never counts twice.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 256)]
    pub id: Option<String>,
    /// 1 to 256 bytes of UTF-8, without NUL.
    #[schema(min_length = 1, max_length = 256)]
    pub user: String,
    /// 1 to 256 bytes of UTF-8, without NUL.
    #[schema(min_length = 1, max_length = 256)]
    pub entity: String,
    /// `view`, `click`, `like`, `purchase` or `dislike`.
    #[schema(pattern = "^(view|click|like|purchase|dislike)$")]
    pub kind: String,
    /// Multiplies the kind's weight; 1 when absent.
    #[serde(default)]
    #[schema(minimum = -1000000, maximum = 1000000)]
    pub weight: Option<f32>,
    /// RFC 3339; now when absent.
    #[serde(default)]
    pub timestamp: Option<String>,
}

/// `POST /v1/tenants/{tenant}/interactions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InteractionsBody {
    pub interactions: Vec<InteractionBody>,
}

impl InteractionsBody {
    /// The interactions, and the id each one's client gave (or none).
    pub fn into_interactions(
        self,
        now_ms: i64,
    ) -> Result<(Vec<Interaction>, Vec<Option<InteractionId>>), ApiError> {
        check_batch(self.interactions.len(), "interactions")?;
        self.interactions
            .into_iter()
            .enumerate()
            .map(|(index, i)| {
                i.into_interaction(now_ms)
                    .map_err(|m| ApiError::BadRequest(format!("item {index} of the batch: {m}")))
            })
            .collect()
    }
}

impl InteractionBody {
    /// The interaction (its timestamp `now_ms` when it names none) and the id its client gave,
    /// as the server reads them; `reco import` checks files with it too.
    pub fn into_interaction(
        self,
        now_ms: i64,
    ) -> Result<(Interaction, Option<InteractionId>), String> {
        let timestamp = match self.timestamp {
            None => now_ms,
            Some(text) => parse_rfc3339(&text)?,
        };
        let text = |e: reco_engine::EngineError| e.to_string();
        let id = self
            .id
            .as_deref()
            .map(InteractionId::parse)
            .transpose()
            .map_err(text)?;
        let interaction = Interaction {
            user: UserId::parse(&self.user).map_err(text)?,
            entity: EntityId::parse(&self.entity).map_err(text)?,
            kind: InteractionKind::parse(&self.kind).map_err(text)?,
            weight: self.weight,
            timestamp,
        };
        Ok((interaction, id))
    }
}

fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let at = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("timestamp `{text}` is not RFC 3339: {e}"))?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())
}

/// A time in milliseconds since the epoch as RFC 3339; `None` only outside the years 0 to
/// 9999, which no timestamp the API takes can be.
pub fn rfc3339(millis: i64) -> Option<String> {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
}

/// The collaborative model's status: `GET /v1/tenants/{tenant}/model`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelStatus {
    /// Counts the tenant's trainings, from 1; null before the first ends.
    pub version: Option<u64>,
    /// `training`, `ready` or `failed`.
    pub state: &'static str,
    /// When the served model was trained (RFC 3339).
    pub trained_at: Option<String>,
    pub interactions: Option<usize>,
    pub users: Option<usize>,
    pub items: Option<usize>,
    pub factors: Option<usize>,
    /// How long its training took.
    pub seconds: Option<f64>,
    /// Interactions still to arrive before a training starts by itself (0: one is due, and
    /// starts when `RECO_TRAIN_INTERVAL_S` has passed since the last such start); null when
    /// trainings start only when asked (`RECO_TRAIN_AFTER=0`).
    pub next_training: Option<u64>,
    /// Why the last training failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ModelStatus {
    /// The status from the served model (if any) and the training state (if any).
    pub fn new(
        model: Option<&ModelInfo>,
        training: Option<&Training>,
        next_training: Option<u64>,
    ) -> Self {
        let state = match (training, model) {
            (Some(Training::Running), _) => "training",
            (Some(Training::Failed(_)), _) => "failed",
            (None, _) => "ready",
        };
        let trained_at = model.and_then(|m| rfc3339(m.trained_at));
        Self {
            version: model.map(|m| m.version),
            state,
            trained_at,
            interactions: model.map(|m| m.interactions),
            users: model.map(|m| m.users),
            items: model.map(|m| m.items),
            factors: model.map(|m| m.factors),
            seconds: model.map(|m| m.seconds),
            next_training,
            error: match training {
                Some(Training::Failed(e)) => Some(e.clone()),
                Some(Training::Running) | None => None,
            },
        }
    }
}

/// `200` from recording interactions.
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// Every interaction of the batch: all are acknowledged, durable.
    pub accepted: usize,
    /// Those whose `id` the tenant already held (or an earlier one of the batch gave): not
    /// recorded again.
    pub duplicates: usize,
}

/// The query string of similar and user recommendations.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SearchQuery {
    /// 1 to 1000; 10 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// 0 to 10000.
    #[param(minimum = 0, maximum = 10000)]
    pub offset: Option<usize>,
    pub category: Option<String>,
    /// A comma list: any of these tags.
    pub tags: Option<String>,
    /// A comma list of ids to leave out.
    pub exclude: Option<String>,
    /// Read as JSON reads it (to f64, then rounded to f32), so the query and a body agree on
    /// where f32 ends.
    pub score_threshold: Option<f64>,
    /// `true` scans every candidate exactly.
    pub exact: Option<bool>,
    /// `content` (the entities' vectors; the default for a tenant that has them) or
    /// `collaborative` (the tenant's model: "people who liked this also liked"; the default
    /// for a tenant without content vectors).
    #[param(pattern = "^(content|collaborative)$")]
    pub space: Option<String>,
    /// User recommendations only: `auto` (the default), `collaborative`, `hybrid`, `content`
    /// or `trending`.
    #[param(pattern = "^(auto|collaborative|hybrid|content|trending)$")]
    pub strategy: Option<String>,
}

impl SearchQuery {
    /// The strategy of a user's recommendations.
    pub fn user_strategy(&self) -> Result<UserStrategy, ApiError> {
        match self.strategy.as_deref() {
            None => Ok(UserStrategy::Auto),
            Some(name) => UserStrategy::parse(name).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "strategy is auto, collaborative, hybrid, content or trending, not `{name}`"
                ))
            }),
        }
    }

    fn space(&self, default: Space) -> Result<Space, ApiError> {
        match self.space.as_deref() {
            None => Ok(default),
            Some("content") => Ok(Space::Content),
            Some("collaborative") => Ok(Space::Collaborative),
            Some(other) => Err(ApiError::BadRequest(format!(
                "space is content or collaborative, not `{other}`"
            ))),
        }
    }
}

fn comma_list(text: Option<&str>) -> Vec<String> {
    text.map(|t| {
        t.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    })
    .unwrap_or_default()
}

impl SearchQuery {
    /// The options asked for; `default_space` when no `space` is named.
    pub fn options(&self, default_space: Space) -> Result<SearchOptions, ApiError> {
        let exclude = comma_list(self.exclude.as_deref())
            .iter()
            .map(|id| EntityId::parse(id).map_err(ApiError::from))
            .collect::<Result<_, _>>()?;
        Ok(SearchOptions {
            k: self.k.unwrap_or(10),
            offset: self.offset.unwrap_or(0),
            filter: Filter {
                category: self.category.clone(),
                tags_any: comma_list(self.tags.as_deref()),
                tags_all: Vec::new(),
                exclude,
            },
            #[allow(clippy::cast_possible_truncation)]
            score_threshold: self.score_threshold.map(|t| t as f32),
            diversity: 0.0,
            exact: self.exact.unwrap_or(false),
            space: self.space(default_space)?,
        })
    }
}

/// A result: an entity and its score.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScoredOut<'a> {
    #[schema(value_type = String)]
    pub id: &'a str,
    pub score: f32,
}

// Answers borrow their ids from the ranking they write. An id is an `Arc<str>` shared by every
// answer that names it: cloning one for the length of a response was two atomic operations
// per result, on counters that the other workers touch too for popular entities.
//
// Each id's bytes lie where that entity's id was allocated, and by the time an answer is
// written (a cached one above all) they have often left the caches: serializing the ids one
// after the other then waited for each in turn (a profile of cached traffic had 90% of
// `format_escaped_str`'s samples on its first read of an id's bytes). Asking for all of them
// here, before the first is written, lets the loads overlap.
fn scored(results: &[Scored]) -> Vec<ScoredOut<'_>> {
    results
        .iter()
        .map(|s| {
            let id = s.id.as_str();
            reco_engine::distance::prefetch(id.as_bytes());
            ScoredOut { id, score: s.score }
        })
        .collect()
}

/// `{"results": [...]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Results<'a> {
    pub results: Vec<ScoredOut<'a>>,
}

impl<'a> Results<'a> {
    pub fn from_ranking(r: &'a Ranking) -> Self {
        Self {
            results: scored(&r.results),
        }
    }
}

/// A user's recommendations and how they were made.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResults<'a> {
    /// `personalized` or `trending`.
    pub strategy: &'static str,
    pub results: Vec<ScoredOut<'a>>,
}

impl<'a> UserResults<'a> {
    pub fn from_ranking(r: &'a Ranking) -> Self {
        let strategy = match r.strategy {
            Strategy::Trending => "trending",
            Strategy::Collaborative => "collaborative",
            Strategy::Hybrid => "hybrid",
            Strategy::Personalized
            | Strategy::Similar
            | Strategy::AverageVector
            | Strategy::BestScore => "personalized",
        };
        Self {
            strategy,
            results: scored(&r.results),
        }
    }
}

/// An example: an id, or an object with an id or a vector and an optional weight.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ExampleBody {
    Id(String),
    Object(ExampleObject),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExampleObject {
    pub id: Option<String>,
    pub vector: Option<Vec<f32>>,
    pub weight: Option<f32>,
}

/// The filter of a recommend body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterBody {
    pub category: Option<String>,
    #[serde(default)]
    pub tags_any: Vec<String>,
    #[serde(default)]
    pub tags_all: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
}

/// `POST /v1/tenants/{tenant}/recommend`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecommendBody {
    #[serde(default)]
    pub positive: Vec<ExampleBody>,
    #[serde(default)]
    pub negative: Vec<ExampleBody>,
    /// `average_vector` (default) or `best_score`.
    #[schema(pattern = "^(average_vector|best_score)$")]
    pub strategy: Option<String>,
    /// 1 to 1000; 10 by default.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// 0 to 10000.
    #[serde(default, deserialize_with = "whole")]
    #[schema(minimum = 0, maximum = 10000)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub filter: FilterBody,
    pub score_threshold: Option<f32>,
    /// 0 (pure relevance) to 1.
    #[schema(minimum = 0, maximum = 1)]
    pub diversity: Option<f32>,
    pub exact: Option<bool>,
}

fn example(body: ExampleBody, list: &str, index: usize) -> Result<Example, ApiError> {
    let bad = |m: &str| ApiError::BadRequest(format!("{list} example {index}: {m}"));
    let (target, weight) = match body {
        ExampleBody::Id(id) => (Err(id), None),
        ExampleBody::Object(ExampleObject {
            id: Some(id),
            vector: None,
            weight,
        }) => (Err(id), weight),
        ExampleBody::Object(ExampleObject {
            id: None,
            vector: Some(v),
            weight,
        }) => (Ok(v), weight),
        ExampleBody::Object(_) => return Err(bad("give either an id or a vector")),
    };
    let weight = weight.unwrap_or(1.0);
    // The body's shape, as the document states it: numbers that fit in f32, a weight above 0.
    // (The vector's length and norm are the tenant's to judge.)
    if !(weight.is_finite() && weight > 0.0) {
        return Err(bad("a weight is a number above 0 that fits in f32"));
    }
    let example = match target {
        Err(id) => Example::id(EntityId::parse(&id).map_err(|e| bad(&e.to_string()))?),
        Ok(vector) if vector.iter().all(|x| x.is_finite()) => Example::vector(vector),
        Ok(_) => {
            return Err(ApiError::InvalidVector(format!(
                "{list} example {index}: every component is a number that fits in f32"
            )));
        }
    };
    Ok(example.weighted(weight))
}

impl RecommendBody {
    pub fn into_request(self) -> Result<RecommendRequest, ApiError> {
        let strategy = match self.strategy.as_deref() {
            None | Some("average_vector") => ExampleStrategy::AverageVector,
            Some("best_score") => ExampleStrategy::BestScore,
            Some(other) => {
                return Err(ApiError::BadRequest(format!(
                    "strategy is `average_vector` or `best_score`, not `{other}`"
                )));
            }
        };
        let convert = |list: Vec<ExampleBody>, name: &str| -> Result<Vec<Example>, ApiError> {
            check_batch(list.len(), "examples")?;
            list.into_iter()
                .enumerate()
                .map(|(i, e)| example(e, name, i))
                .collect()
        };
        let exclude = self
            .filter
            .exclude
            .iter()
            .map(|id| EntityId::parse(id).map_err(ApiError::from))
            .collect::<Result<_, _>>()?;
        let request = RecommendRequest {
            positive: convert(self.positive, "positive")?,
            negative: convert(self.negative, "negative")?,
            strategy,
            options: SearchOptions {
                k: self.k.unwrap_or(10),
                offset: self.offset.unwrap_or(0),
                filter: Filter {
                    category: self.filter.category,
                    tags_any: self.filter.tags_any,
                    tags_all: self.filter.tags_all,
                    exclude,
                },
                score_threshold: self.score_threshold,
                diversity: self.diversity.unwrap_or(0.0),
                exact: self.exact.unwrap_or(false),
                space: Space::Content,
            },
        };
        // The limits of k, offset, the threshold and diversity: the body's shape, checked
        // before the tenant is asked.
        request.options.validate()?;
        Ok(request)
    }
}

/// `{"results": [...], "missing": [ids]}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendOut<'a> {
    pub results: Vec<ScoredOut<'a>>,
    pub missing: Vec<&'a str>,
}

impl<'a> RecommendOut<'a> {
    pub fn from_ranking(r: &'a Ranking) -> Self {
        Self {
            results: scored(&r.results),
            missing: r.missing.iter().map(EntityId::as_str).collect(),
        }
    }
}

/// `POST /v1/tenants/{tenant}/recommend/batch`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    pub requests: Vec<RecommendBody>,
}

/// One answer of a batch: a recommendation, or the error that request alone met.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchItem<'a> {
    Answer(RecommendOut<'a>),
    Error { error: ErrorOut },
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorOut {
    /// `bad_request`, `invalid_vector`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `request_timeout`, `conflict`, `payload_too_large`,
    /// `rate_limited`, `unavailable` or `internal`.
    pub code: &'static str,
    /// One sentence a person can act on.
    pub message: String,
}

/// Every answer of 400 or more: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorOut,
}

/// `{"responses": [...]}`, in the order of the requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct BatchOut<'a> {
    pub responses: Vec<BatchItem<'a>>,
}

/// The query string of trending.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TrendingParams {
    /// 1 to 1000; 10 by default.
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// 0 to 10000.
    #[param(minimum = 0, maximum = 10000)]
    pub offset: Option<usize>,
    pub category: Option<String>,
    /// Such as `24h` or `7d`; `24h` by default.
    #[param(pattern = "^[1-9][0-9]*[smhd]$")]
    pub window: Option<String>,
}

pub fn metric(name: &str) -> Result<Metric, ApiError> {
    Metric::parse(name).map_err(ApiError::from)
}

pub fn batch_limit_check(len: usize) -> Result<(), ApiError> {
    check_batch(len, "requests")
}

/// The query of `GET /v1/tenants/{tenant}/users/{user}`.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// How many of the user's entities to list, the most recent first: 1 to 1000; 50 by
    /// default.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<usize>,
}

impl HistoryParams {
    /// The number of entities asked for.
    pub fn limit(&self) -> Result<usize, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if (1..=MAX_PAGE).contains(&limit) {
            Ok(limit)
        } else {
            Err(ApiError::BadRequest(format!(
                "limit is from 1 to {MAX_PAGE}, not {limit}"
            )))
        }
    }
}

/// A user's history as their recommendations read it: `GET /v1/tenants/{tenant}/users/{user}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserHistoryOut {
    pub user: String,
    /// How many entities the user touched.
    pub entities: usize,
    /// The time of the user's newest interaction (RFC 3339), which their history decays
    /// towards.
    pub newest: Option<String>,
    /// The entities, the most recently touched first.
    pub history: Vec<HistoryItemOut>,
}

/// One entity of a user's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItemOut {
    pub entity: String,
    /// When the user last interacted with it (RFC 3339).
    pub last: Option<String>,
    /// Every weight the user's interactions with it gave (the kinds' weights times each
    /// interaction's own), undecayed; a dislike's is negative.
    pub given: f64,
    /// Its weight in the user's recommendations now: decayed towards the user's newest
    /// interaction, never below the server's floor of what was given.
    pub weight: f64,
}

impl UserHistoryOut {
    pub fn new(user: &UserId, history: reco_engine::UserHistory) -> Self {
        Self {
            user: user.to_string(),
            entities: history.entities,
            newest: rfc3339(history.newest),
            history: history
                .items
                .into_iter()
                .map(|item| HistoryItemOut {
                    entity: item.entity.to_string(),
                    last: rfc3339(item.last),
                    given: item.given,
                    weight: item.weight,
                })
                .collect(),
        }
    }
}

/// An offline evaluation of the tenant's strategies:
/// `GET` and `POST /v1/tenants/{tenant}/model/evaluation`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationStatus {
    /// `running`, `ready` or `failed`.
    pub state: &'static str,
    /// When it started (RFC 3339).
    pub started_at: Option<String>,
    /// When it ended (RFC 3339); null while it runs.
    pub finished_at: Option<String>,
    /// Answers computed so far (one per tested user and strategy).
    pub answered: usize,
    /// Answers to compute in all; 0 until the model is trained.
    pub answers: usize,
    /// What it found, once ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<EvaluationOut>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What an evaluation found: the same fields `reco evaluate --json` writes.
#[derive(Debug, Serialize, ToSchema)]
pub struct EvaluationOut {
    /// `leave-last-out`, or the random split and its seed.
    pub split: String,
    /// Users in the log.
    pub users: usize,
    /// Users with a test item.
    pub tested: usize,
    pub entities: usize,
    pub training_interactions: usize,
    /// How long the model's training took; null when no strategy needed one.
    pub training_seconds: Option<f64>,
    /// Each strategy the data allows.
    pub strategies: Vec<StrategyScoreOut>,
}

/// How one strategy did.
#[derive(Debug, Serialize, ToSchema)]
pub struct StrategyScoreOut {
    pub strategy: &'static str,
    /// Tested users with a test item in their top 10.
    #[serde(rename = "hr@10")]
    pub hit_rate: f64,
    /// NDCG@10, averaged over tested users.
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
    /// The share of each user's test items in their top 20, averaged.
    #[serde(rename = "recall@20")]
    pub recall: f64,
    /// The share of the catalogue in some tested user's top 10.
    pub coverage: f64,
    /// The tested users whose test items no training interaction names.
    pub cold: ColdScoreOut,
    /// How many users each answering strategy served.
    pub answered_by: std::collections::BTreeMap<String, usize>,
    /// How long answering every tested user took.
    pub seconds: f64,
}

/// HR@10 and NDCG@10 over the users whose test items only content can find.
#[derive(Debug, Serialize, ToSchema)]
pub struct ColdScoreOut {
    pub users: usize,
    #[serde(rename = "hr@10")]
    pub hit_rate: f64,
    #[serde(rename = "ndcg@10")]
    pub ndcg: f64,
}

/// How a split is named in reports.
pub fn split_name(split: reco_engine::evaluate::Split) -> String {
    match split {
        reco_engine::evaluate::Split::LeaveLastOut => "leave-last-out".to_owned(),
        reco_engine::evaluate::Split::Random { seed } => format!("random 80/10/10 (seed {seed})"),
    }
}

impl From<&reco_engine::evaluate::EvaluationReport> for EvaluationOut {
    fn from(report: &reco_engine::evaluate::EvaluationReport) -> Self {
        Self {
            split: split_name(report.split),
            users: report.users,
            tested: report.tested,
            entities: report.entities,
            training_interactions: report.training_interactions,
            training_seconds: report.training_seconds,
            strategies: report
                .scores
                .iter()
                .map(|s| StrategyScoreOut {
                    strategy: s.strategy.as_str(),
                    hit_rate: s.hit_rate,
                    ndcg: s.ndcg,
                    recall: s.recall,
                    coverage: s.coverage,
                    cold: ColdScoreOut {
                        users: s.cold.users,
                        hit_rate: s.cold.hit_rate,
                        ndcg: s.cold.ndcg,
                    },
                    answered_by: s
                        .answered_by
                        .iter()
                        .map(|(name, n)| ((*name).to_owned(), *n))
                        .collect(),
                    seconds: s.seconds,
                })
                .collect(),
        }
    }
}
