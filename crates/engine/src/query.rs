//! What callers ask the engine, and what it answers.

use std::sync::Arc;

use crate::error::{EngineError, Result};
use crate::index::Filter;
use crate::model::{EntityId, Millis, Scored};

/// The largest `k`.
pub const MAX_K: usize = 1000;
/// The largest `offset`.
pub const MAX_OFFSET: usize = 10_000;

/// How many results to return, which to skip, and which entities qualify.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// How many results, from 1 to [`MAX_K`].
    pub k: usize,
    /// How many of the best results to skip first, up to [`MAX_OFFSET`].
    pub offset: usize,
    /// Conditions on the results.
    pub filter: Filter,
    /// Only results at least this good: a score at least this high for cosine and dot, a
    /// distance at most this large for euclidean.
    pub score_threshold: Option<f32>,
    /// From 0 (pure relevance) to 1: maximal marginal relevance re-ranking.
    pub diversity: f32,
    /// Scan every candidate exactly, even where an approximate index could answer.
    pub exact: bool,
    /// The vectors searched: the entities' own (content) or the collaborative model's item
    /// factors ("also liked").
    pub space: Space,
}

/// How a user's recommendations are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum UserStrategy {
    /// The collaborative model when the tenant has one and it knows the user's entities
    /// (`Hybrid` when the tenant has content vectors too), else the content vectors of the
    /// user's history, else what is trending.
    #[default]
    Auto,
    /// The collaborative model (refused when there is none), falling back as `Auto` does.
    Collaborative,
    /// The collaborative model with content blended in (refused without both): the learnt
    /// entities by their factors, and every entity the model did not learn (too new to have
    /// interactions) by the factors its content vector maps to, in one ranking. Falls back as
    /// `Collaborative` does when the model knows none of the user's entities.
    Hybrid,
    /// The content vectors of the user's history, else what is trending.
    Content,
    /// What is trending (over the cold-start window), without what the user touched.
    Trending,
}

impl UserStrategy {
    /// `auto`, `collaborative`, `hybrid`, `content` or `trending`: the API's names, which the
    /// shared cache keys encode too.
    pub fn as_str(self) -> &'static str {
        match self {
            UserStrategy::Auto => "auto",
            UserStrategy::Collaborative => "collaborative",
            UserStrategy::Hybrid => "hybrid",
            UserStrategy::Content => "content",
            UserStrategy::Trending => "trending",
        }
    }

    /// The strategy of a name [`UserStrategy::as_str`] gives.
    pub fn parse(name: &str) -> Option<Self> {
        [
            UserStrategy::Auto,
            UserStrategy::Collaborative,
            UserStrategy::Hybrid,
            UserStrategy::Content,
            UserStrategy::Trending,
        ]
        .into_iter()
        .find(|s| s.as_str() == name)
    }
}

/// A tenant's two vector spaces over its entities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Space {
    /// The entities' own vectors.
    #[default]
    Content,
    /// The item factors of the tenant's collaborative model.
    Collaborative,
}

impl Default for SearchOptions {
    fn default() -> Self {
        Self {
            k: 10,
            offset: 0,
            filter: Filter::default(),
            score_threshold: None,
            diversity: 0.0,
            exact: false,
            space: Space::Content,
        }
    }
}

impl SearchOptions {
    /// Options with `k` results and defaults for the rest.
    pub fn top(k: usize) -> Self {
        Self {
            k,
            ..Self::default()
        }
    }

    /// Checks the limits: `k`, `offset`, a finite threshold, diversity in [0, 1].
    pub fn validate(&self) -> Result<()> {
        check_page(self.k, self.offset)?;
        if let Some(t) = self.score_threshold
            && !t.is_finite()
        {
            return Err(EngineError::InvalidArgument(
                "score_threshold must be a finite number".into(),
            ));
        }
        if !(0.0..=1.0).contains(&self.diversity) {
            return Err(EngineError::InvalidArgument(format!(
                "diversity is from 0 to 1, not {}",
                self.diversity
            )));
        }
        Ok(())
    }
}

fn check_page(k: usize, offset: usize) -> Result<()> {
    if !(1..=MAX_K).contains(&k) {
        return Err(EngineError::InvalidArgument(format!(
            "k is from 1 to {MAX_K}, not {k}"
        )));
    }
    if offset > MAX_OFFSET {
        return Err(EngineError::InvalidArgument(format!(
            "offset is from 0 to {MAX_OFFSET}, not {offset}"
        )));
    }
    Ok(())
}

/// What an example points at.
#[derive(Debug, Clone, PartialEq)]
pub enum ExampleTarget {
    /// A stored entity.
    Id(EntityId),
    /// A raw vector of the tenant's dimension.
    Vector(Vec<f32>),
}

/// A positive or negative example of a recommendation.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The entity or vector.
    pub target: ExampleTarget,
    /// How much it counts in `average_vector` (1 by default; finite and above 0).
    /// `best_score` takes each example's own score and ignores weights.
    pub weight: f32,
}

impl Example {
    /// An example by id, weight 1.
    pub fn id(id: EntityId) -> Self {
        Self {
            target: ExampleTarget::Id(id),
            weight: 1.0,
        }
    }

    /// An example by raw vector, weight 1.
    pub fn vector(vector: Vec<f32>) -> Self {
        Self {
            target: ExampleTarget::Vector(vector),
            weight: 1.0,
        }
    }

    /// The same example with another weight.
    pub fn weighted(self, weight: f32) -> Self {
        Self { weight, ..self }
    }
}

/// How examples are turned into a ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExampleStrategy {
    /// The weighted mean of positives minus the weighted mean of negatives, then its nearest
    /// neighbours.
    AverageVector,
    /// Each candidate scored by its best positive, pushed down by its best negative.
    BestScore,
}

/// A recommendation from examples.
#[derive(Debug, Clone, PartialEq)]
pub struct RecommendRequest {
    /// What the results should be like.
    pub positive: Vec<Example>,
    /// What the results should not be like.
    pub negative: Vec<Example>,
    /// How to combine them.
    pub strategy: ExampleStrategy,
    /// Paging, filters, threshold and diversity.
    pub options: SearchOptions,
}

/// A time window such as `24h` or `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Window(Millis);

impl Window {
    /// The window of the API when none is given: a day.
    pub const DEFAULT: Window = Window(86_400_000);

    /// Parses a positive whole number followed by `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = || {
            EngineError::InvalidArgument(format!(
                "a window is a whole number and a unit s, m, h or d, such as 24h or 7d, not `{}`",
                text.escape_default()
            ))
        };
        let split = text.len().checked_sub(1).ok_or_else(bad)?;
        let (number, unit) = text.split_at_checked(split).ok_or_else(bad)?;
        let unit_ms: Millis = match unit {
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(bad()),
        };
        let count: Millis = number.parse().map_err(|_| bad())?;
        if count <= 0 {
            return Err(bad());
        }
        count.checked_mul(unit_ms).map(Window).ok_or_else(bad)
    }

    /// A window of `ms` milliseconds.
    pub fn from_millis(ms: Millis) -> Result<Self> {
        if ms > 0 {
            Ok(Window(ms))
        } else {
            Err(EngineError::InvalidArgument(
                "a window is longer than zero".into(),
            ))
        }
    }

    /// Its length in milliseconds.
    pub fn millis(self) -> Millis {
        self.0
    }
}

/// What is trending in a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendingQuery {
    /// How many results, from 1 to [`MAX_K`].
    pub k: usize,
    /// How many to skip first.
    pub offset: usize,
    /// Only this category.
    pub category: Option<String>,
    /// Interactions older than this are not counted.
    pub window: Window,
}

impl Default for TrendingQuery {
    fn default() -> Self {
        Self {
            k: 10,
            offset: 0,
            category: None,
            window: Window::DEFAULT,
        }
    }
}

impl TrendingQuery {
    pub(crate) fn validate(&self, retention: Millis) -> Result<()> {
        check_page(self.k, self.offset)?;
        if self.window.millis() > retention {
            return Err(EngineError::InvalidArgument(format!(
                "the window is at most the retention of {} hours",
                retention / 3_600_000
            )));
        }
        Ok(())
    }
}

/// How an answer was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Nearest neighbours of one entity.
    Similar,
    /// Nearest neighbours of the examples' average.
    AverageVector,
    /// Best score against the examples.
    BestScore,
    /// Nearest neighbours of the user's preference vector.
    Personalized,
    /// Nearest item factors to the user's factors, folded in from their history.
    Collaborative,
    /// The collaborative model, with the entities it did not learn placed by their content.
    Hybrid,
    /// Time-decayed interaction weight.
    Trending,
}

impl Strategy {
    const ALL: [Strategy; 7] = [
        Strategy::Similar,
        Strategy::AverageVector,
        Strategy::BestScore,
        Strategy::Personalized,
        Strategy::Collaborative,
        Strategy::Hybrid,
        Strategy::Trending,
    ];

    /// `similar`, `average_vector`, `best_score`, `personalized`, `collaborative`, `hybrid` or
    /// `trending`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Similar => "similar",
            Strategy::AverageVector => "average_vector",
            Strategy::BestScore => "best_score",
            Strategy::Personalized => "personalized",
            Strategy::Collaborative => "collaborative",
            Strategy::Hybrid => "hybrid",
            Strategy::Trending => "trending",
        }
    }

    /// The strategy of a name [`Strategy::as_str`] gives.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// A ranked answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Best first.
    pub results: Vec<Scored>,
    /// Example ids that do not exist.
    pub missing: Vec<EntityId>,
    /// How it was made.
    pub strategy: Strategy,
}

/// Whether an answer came from the in-process cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Computed earlier, for the same data.
    Hit,
    /// Computed for this request.
    Miss,
}

/// A ranking and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The ranking, shared with the cache.
    pub ranking: Arc<Ranking>,
    /// Hit or miss.
    pub cache: CacheStatus,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse() {
        assert_eq!(Window::parse("24h").unwrap().millis(), 86_400_000);
        assert_eq!(Window::parse("7d").unwrap().millis(), 7 * 86_400_000);
        assert_eq!(Window::parse("90s").unwrap().millis(), 90_000);
        assert_eq!(Window::parse("15m").unwrap().millis(), 900_000);
        for bad in [
            "",
            "h",
            "0h",
            "-1h",
            "1w",
            "1.5h",
            "1 h",
            "99999999999999999d",
            "é",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Window::from_millis(0).is_err());
    }

    #[test]
    fn options_are_checked() {
        assert!(SearchOptions::top(1).validate().is_ok());
        assert!(SearchOptions::top(MAX_K).validate().is_ok());
        assert!(SearchOptions::top(0).validate().is_err());
        assert!(SearchOptions::top(MAX_K + 1).validate().is_err());
        let far = SearchOptions {
            offset: MAX_OFFSET + 1,
            ..SearchOptions::default()
        };
        assert!(far.validate().is_err());
        let nan = SearchOptions {
            score_threshold: Some(f32::NAN),
            ..SearchOptions::default()
        };
        assert!(nan.validate().is_err());
        let diverse = SearchOptions {
            diversity: 1.5,
            ..SearchOptions::default()
        };
        assert!(diverse.validate().is_err());
        let long = TrendingQuery {
            window: Window::parse("31d").unwrap(),
            ..TrendingQuery::default()
        };
        assert!(long.validate(30 * 86_400_000).is_err());
        assert!(TrendingQuery::default().validate(30 * 86_400_000).is_ok());
    }
}
