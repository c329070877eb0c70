//! The engine's vocabulary: names that parse, vectors that are valid by construction, entities
//! and interactions. None of these are serde types; the server converts at its edge.

use std::fmt;
use std::sync::Arc;

use crate::error::{EngineError, Result};

/// The largest dimension a tenant may have: pgvector's own limit for the `vector` type.
pub const MAX_DIMENSION: usize = 16_000;
/// The longest entity id, user id, category or tag, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// A tenant name: 1 to 64 characters of `[a-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantName(Arc<str>);

impl TenantName {
    /// Parses a tenant name.
    pub fn parse(name: &str) -> Result<Self> {
        let valid = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if valid {
            Ok(Self(name.into()))
        } else {
            Err(EngineError::InvalidName(format!(
                "a tenant name is 1 to 64 characters of a-z, 0-9, `_` and `-`, not `{}`",
                name.escape_default()
            )))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn parse_id(kind: &str, id: &str) -> Result<Arc<str>> {
    if !(1..=MAX_ID_BYTES).contains(&id.len()) {
        return Err(EngineError::InvalidName(format!(
            "{kind} is 1 to {MAX_ID_BYTES} bytes of UTF-8, not {} bytes",
            id.len()
        )));
    }
    // The contract's rule, and PostgreSQL's: its text cannot hold NUL, so a backend that took
    // it would disagree with one that cannot.
    if id.contains('\0') {
        return Err(EngineError::InvalidName(format!(
            "{kind} cannot contain NUL (`{}`)",
            id.escape_default()
        )));
    }
    Ok(id.into())
}

/// An id type: text checked by `parse_id` (1 to 256 bytes of UTF-8, no NUL), cheap to clone,
/// named `$kind` in errors.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            #[doc = concat!("Parses ", $kind, ".")]
            pub fn parse(id: &str) -> Result<Self> {
                parse_id($kind, id).map(Self)
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// An entity id: 1 to 256 bytes of UTF-8. Cloning is cheap.
    EntityId,
    "an entity id"
);

impl std::borrow::Borrow<str> for EntityId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

id_type!(
    /// A user id: 1 to 256 bytes of UTF-8. Cloning is cheap.
    UserId,
    "a user id"
);

id_type!(
    /// The id a client gives an interaction so that sending it again records it once: 1 to
    /// 256 bytes of UTF-8 without NUL. The engine ranks without it; storage keeps it, per
    /// tenant, unique.
    InteractionId,
    "an interaction id"
);

/// A label: a category or a tag, 1 to 256 bytes.
pub(crate) fn check_label(kind: &str, label: &str) -> Result<()> {
    parse_id(kind, label).map(drop)
}

/// How vectors of a tenant are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Cosine similarity; higher is better. Zero vectors are invalid.
    Cosine,
    /// Dot product; higher is better.
    Dot,
    /// Euclidean distance; lower is better.
    Euclidean,
}

impl Metric {
    /// The metric's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Dot => "dot",
            Metric::Euclidean => "euclidean",
        }
    }

    /// Parses the API spelling of a metric.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "cosine" => Ok(Metric::Cosine),
            "dot" => Ok(Metric::Dot),
            "euclidean" => Ok(Metric::Euclidean),
            other => Err(EngineError::InvalidArgument(format!(
                "metric is `cosine`, `dot` or `euclidean`, not `{}`",
                other.escape_default()
            ))),
        }
    }

    /// Whether a higher score is better (cosine, dot) or a lower one (euclidean).
    pub fn higher_is_better(self) -> bool {
        match self {
            Metric::Cosine | Metric::Dot => true,
            Metric::Euclidean => false,
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The fixed settings of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantSpec {
    /// The length of every vector of the tenant.
    pub dimension: usize,
    /// How vectors are compared.
    pub metric: Metric,
}

impl TenantSpec {
    /// A tenant that keeps no content vectors: its entities carry ids, categories, tags and
    /// attributes, and it is served by its collaborative model and trending. Its dimension is
    /// 0, and its metric (dot) compares nothing.
    pub const WITHOUT_VECTORS: Self = Self {
        dimension: 0,
        metric: Metric::Dot,
    };

    /// The spec itself when it is valid: [`TenantSpec::WITHOUT_VECTORS`], or a dimension from 1
    /// to [`MAX_DIMENSION`].
    pub fn checked(self) -> Result<Self> {
        if self == Self::WITHOUT_VECTORS {
            Ok(self)
        } else {
            Self::new(self.dimension, self.metric)
        }
    }

    /// Whether the tenant keeps content vectors.
    pub fn has_vectors(&self) -> bool {
        self.dimension > 0
    }

    /// Checks the dimension and returns the spec.
    pub fn new(dimension: usize, metric: Metric) -> Result<Self> {
        if (1..=MAX_DIMENSION).contains(&dimension) {
            Ok(Self { dimension, metric })
        } else {
            Err(EngineError::InvalidArgument(format!(
                "dimension is from 1 to {MAX_DIMENSION}, not {dimension}"
            )))
        }
    }
}

/// A vector that is valid for a tenant: the right length, every component finite, and not all
/// zeros under cosine.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Checks `values` against a tenant's spec.
    pub fn new(values: Vec<f32>, spec: TenantSpec) -> Result<Self> {
        Self::check(&values, spec)?;
        Ok(Self(values))
    }

    /// Checks `values` against a tenant's spec without taking them.
    pub fn check(values: &[f32], spec: TenantSpec) -> Result<()> {
        if !spec.has_vectors() && !values.is_empty() {
            return Err(EngineError::InvalidVector(
                "this tenant keeps no content vectors: send entities without `vector`".into(),
            ));
        }
        if values.is_empty() && spec.has_vectors() {
            return Err(EngineError::InvalidVector(format!(
                "`vector` is required: this tenant's dimension is {}",
                spec.dimension
            )));
        }
        if values.len() != spec.dimension {
            return Err(EngineError::InvalidVector(format!(
                "the vector has {} components; this tenant's dimension is {}",
                values.len(),
                spec.dimension
            )));
        }
        if let Some(position) = values.iter().position(|v| !v.is_finite()) {
            return Err(EngineError::InvalidVector(format!(
                "component {position} is {}; every component must be a finite number",
                values[position]
            )));
        }
        if spec.has_vectors() && spec.metric == Metric::Cosine {
            if values.iter().all(|v| *v == 0.0) {
                return Err(EngineError::InvalidVector(
                    "the vector is all zeros, which has no direction under cosine".into(),
                ));
            }
            // Its length must fit in f32: a squared norm that overflows (`[3e38, 3e38]`) or
            // underflows (`[1e-45, 0]`) would make every score against it 0.
            let squared: f32 = values.iter().map(|v| v * v).sum();
            if !squared.is_normal() {
                return Err(EngineError::InvalidVector(
                    "the vector's length does not fit in f32 (too large or too small) under cosine"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// The components.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Takes the components out.
    pub fn into_inner(self) -> Vec<f32> {
        self.0
    }
}

/// An entity to insert or replace.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEntity {
    /// Its id.
    pub id: EntityId,
    /// Its vector, checked against the tenant when the batch is applied.
    pub vector: Vec<f32>,
    /// An optional category, for filtering.
    pub category: Option<String>,
    /// Tags, for filtering.
    pub tags: Vec<String>,
    /// Opaque attributes (the server keeps JSON text here); ranking never reads them.
    pub attributes: Option<Arc<str>>,
}

/// An entity as it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EntityView {
    /// Its id.
    pub id: EntityId,
    /// Its vector, exactly as it was given.
    pub vector: Vec<f32>,
    /// Its category.
    pub category: Option<Arc<str>>,
    /// Its tags, in the order they were given, without repeats.
    pub tags: Vec<Arc<str>>,
    /// Its opaque attributes.
    pub attributes: Option<Arc<str>>,
}

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// What a user did with an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InteractionKind {
    /// Saw it.
    View,
    /// Clicked it.
    Click,
    /// Liked it.
    Like,
    /// Bought it.
    Purchase,
    /// Said they do not want it: a negative signal.
    Dislike,
}

impl InteractionKind {
    /// Every kind, in a fixed order.
    pub const ALL: [InteractionKind; 5] = [
        InteractionKind::View,
        InteractionKind::Click,
        InteractionKind::Like,
        InteractionKind::Purchase,
        InteractionKind::Dislike,
    ];

    /// The kind's name as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            InteractionKind::View => "view",
            InteractionKind::Click => "click",
            InteractionKind::Like => "like",
            InteractionKind::Purchase => "purchase",
            InteractionKind::Dislike => "dislike",
        }
    }

    /// Parses the API spelling of a kind.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| {
                EngineError::InvalidArgument(format!(
                    "kind is one of view, click, like, purchase, dislike, not `{}`",
                    name.escape_default()
                ))
            })
    }
}

/// One interaction of a user with an entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    /// Who.
    pub user: UserId,
    /// With what. The entity need not exist yet: an interaction that arrives before its entity
    /// counts once the entity is there.
    pub entity: EntityId,
    /// What they did.
    pub kind: InteractionKind,
    /// A multiplier of the kind's weight (1 when absent). Must be finite.
    pub weight: Option<f32>,
    /// When, in milliseconds since the Unix epoch.
    pub timestamp: Millis,
}

/// One result: an entity and its score under the tenant's metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The entity.
    pub id: EntityId,
    /// Cosine similarity, dot product, or Euclidean distance; for trending, the time-decayed
    /// interaction weight.
    pub score: f32,
}

/// A tenant's settings and sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantInfo {
    /// Its name.
    pub name: TenantName,
    /// Its fixed settings.
    pub spec: TenantSpec,
    /// How its collaborative model is trained.
    pub learning: crate::Learning,
    /// How many entities it holds.
    pub entities: usize,
    /// How many interactions it has recorded.
    pub interactions: u64,
}

/// A user's history as the engine holds it: what each of their entities weighs now (the
/// weight their recommendations are built from) and when they last touched it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserHistory {
    /// The time of the user's newest interaction, which their history decays towards.
    pub newest: Millis,
    /// How many entities the user touched.
    pub entities: usize,
    /// The entities, the most recently touched first (ties by id), at most the number asked.
    pub items: Vec<HistoryItem>,
}

/// One entity of a user's history.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryItem {
    /// The entity.
    pub entity: EntityId,
    /// When the user last interacted with it.
    pub last: Millis,
    /// Every weight the user's interactions with it gave, undecayed (a dislike's is negative).
    pub given: f64,
    /// Its weight now: decayed towards the user's newest interaction, never below the floor.
    pub weight: f64,
}

#[cfg(test)]
mod tests {

    /// Issue 14, F10: under cosine a vector whose length under- or overflows f32 had every
    /// score 0; it is refused, as the contract says. Other metrics take it.
    #[test]
    fn cosine_vectors_whose_length_does_not_fit_in_f32_are_refused() {
        let cosine = TenantSpec::new(3, Metric::Cosine).unwrap();
        for values in [
            vec![1e-45, 0.0, 0.0],
            vec![3e38, 3e38, 3e38],
            vec![1e-30, 1e-30, 0.0],
        ] {
            assert!(
                matches!(
                    Embedding::check(&values, cosine),
                    Err(EngineError::InvalidVector(_))
                ),
                "{values:?}"
            );
        }
        assert!(Embedding::check(&[1e-10, 0.0, 0.0], cosine).is_ok());
        let dot = TenantSpec::new(3, Metric::Dot).unwrap();
        assert!(Embedding::check(&[1e-45, 0.0, 0.0], dot).is_ok());
    }

    use super::*;

    /// Issue 14, F5: NUL in an id, user id, category or tag answered 500 on PostgreSQL and was
    /// taken by the embedded database; every backend now refuses it, here.
    #[test]
    fn ids_and_labels_carry_no_nul() {
        assert!(EntityId::parse("a\0b").is_err());
        assert!(UserId::parse("\0").is_err());
        assert!(check_label("a tag", "x\0").is_err());
        assert!(EntityId::parse("a b é").is_ok());
    }

    #[test]
    fn tenant_names_follow_the_contract() {
        assert!(TenantName::parse("shop_1-eu").is_ok());
        assert!(TenantName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Shop", "a b", "ü", &"a".repeat(65)] {
            assert!(
                matches!(TenantName::parse(bad), Err(EngineError::InvalidName(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn ids_are_one_to_256_bytes() {
        assert!(EntityId::parse("x").is_ok());
        assert!(EntityId::parse(&"é".repeat(128)).is_ok());
        assert!(EntityId::parse(&"é".repeat(129)).is_err());
        assert!(EntityId::parse("").is_err());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse(&"u".repeat(257)).is_err());
    }

    #[test]
    fn embeddings_reject_bad_vectors() {
        let cosine = TenantSpec::new(3, Metric::Cosine).unwrap();
        let dot = TenantSpec::new(3, Metric::Dot).unwrap();
        assert!(Embedding::new(vec![1.0, 0.0, 0.0], cosine).is_ok());
        for bad in [
            vec![1.0, 2.0],
            vec![1.0, f32::NAN, 0.0],
            vec![f32::INFINITY, 0.0, 0.0],
            vec![0.0, 0.0, 0.0],
        ] {
            assert!(
                matches!(
                    Embedding::new(bad.clone(), cosine),
                    Err(EngineError::InvalidVector(_))
                ),
                "{bad:?}"
            );
        }
        assert!(
            Embedding::new(vec![0.0; 3], dot).is_ok(),
            "zeros are fine under dot"
        );
    }

    #[test]
    fn spec_limits_the_dimension() {
        assert!(TenantSpec::new(0, Metric::Dot).is_err());
        assert!(TenantSpec::new(MAX_DIMENSION + 1, Metric::Dot).is_err());
        assert!(TenantSpec::new(MAX_DIMENSION, Metric::Dot).is_ok());
    }

    #[test]
    fn names_round_trip() {
        for metric in [Metric::Cosine, Metric::Dot, Metric::Euclidean] {
            assert_eq!(Metric::parse(metric.as_str()).unwrap(), metric);
        }
        for kind in InteractionKind::ALL {
            assert_eq!(InteractionKind::parse(kind.as_str()).unwrap(), kind);
        }
        assert!(Metric::parse("l2").is_err());
        assert!(InteractionKind::parse("share").is_err());
    }
}
