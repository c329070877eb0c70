//! The workload: clustered random entities, and the request lists wrk replays.

use std::fmt::Write as _;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};
use serde_json::json;

/// The dimension of every vector.
pub const DIMENSION: usize = 128;
/// Cluster centres: real catalogues are not uniform noise.
const CENTRES: usize = 50;
/// How far an entity lies from its centre, per component.
const SPREAD: f32 = 0.35;

/// The tenant every run uses.
pub const TENANT: &str = "bench";

/// A deterministic catalogue of `n` entities around [`CENTRES`] centres.
#[derive(Debug)]
pub struct Catalogue {
    centres: Vec<Vec<f32>>,
    pub n: usize,
    seed: u64,
}

impl Catalogue {
    pub fn new(n: usize, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let centres = (0..CENTRES)
            .map(|_| {
                (0..DIMENSION)
                    .map(|_| rng.random_range(-1.0..1.0))
                    .collect()
            })
            .collect();
        Self { centres, n, seed }
    }

    /// A vector near centre `c`.
    fn vector(&self, c: usize, rng: &mut impl Rng) -> Vec<f32> {
        self.centres[c % CENTRES]
            .iter()
            .map(|x| x + rng.random_range(-SPREAD..SPREAD))
            .collect()
    }

    pub fn id(i: usize) -> String {
        format!("e{i}")
    }

    /// Entities `start..end` as the API's JSON, the same on every call. Each batch draws from a
    /// stream of its own, never the centres' (which would put a batch's first entities exactly
    /// on their centres: hubs that every member of a cluster is nearest to, a case graph
    /// indexes handle badly).
    pub fn entities(&self, start: usize, end: usize) -> serde_json::Value {
        let stream = (start as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = StdRng::seed_from_u64(self.seed ^ stream);
        let entities: Vec<_> = (start..end)
            .map(|i| {
                json!({
                    "id": Self::id(i),
                    "vector": self.vector(i, &mut rng),
                    "category": format!("c{}", i % 10),
                })
            })
            .collect();
        json!({ "entities": entities })
    }

    /// A new entity for a write, as a request body.
    fn new_entity(&self, n: usize, rng: &mut impl Rng) -> String {
        let vector = self.vector(rng.random_range(0..CENTRES), rng);
        json!({"entities": [{"id": format!("w{n}"), "vector": vector}]}).to_string()
    }
}

/// How request ids are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Draw {
    /// Every entity alike.
    Uniform,
    /// Entity `i` (by rank) in proportion to `1 / i^s`.
    Zipf(f64),
}

/// One request wrk sends: method, path, body (empty for GET).
pub type Line = (&'static str, String, String);

fn similar_path(i: usize, exact: bool) -> String {
    let exact = if exact { "&exact=true" } else { "" };
    format!(
        "/v1/tenants/{TENANT}/entities/{}/similar?k=10{exact}",
        Catalogue::id(i)
    )
}

/// `count` similar-queries with ids drawn by `draw`.
pub fn similar_requests(n: usize, count: usize, draw: Draw, exact: bool, seed: u64) -> Vec<Line> {
    let mut rng = StdRng::seed_from_u64(seed);
    let zipf = match draw {
        Draw::Zipf(s) => Some(Zipf::new(n as f64, s).expect("a valid Zipf distribution")),
        Draw::Uniform => None,
    };
    (0..count)
        .map(|_| {
            let i = match &zipf {
                // Ranks 1..=n; which entity holds which rank does not matter.
                Some(z) => rank(z.sample(&mut rng)) - 1,
                None => rng.random_range(0..n),
            };
            ("GET", similar_path(i.min(n - 1), exact), String::new())
        })
        .collect()
}

/// Similar-queries with one request in ten a write: half new entities, half interactions.
/// With `keyed`, each interaction carries an id of its own (`i<line>`), so that a run that goes
/// through the lines again writes nothing new: its upserts replace and its interactions are
/// duplicates (the soak, which measures the server's own memory, not its data's).
pub fn mixed_requests(catalogue: &Catalogue, count: usize, seed: u64, keyed: bool) -> Vec<Line> {
    let mut rng = StdRng::seed_from_u64(seed);
    let n = catalogue.n;
    (0..count)
        .map(|r| match r % 20 {
            0 => write_line(catalogue, r, true, keyed, &mut rng),
            10 => write_line(catalogue, r, false, keyed, &mut rng),
            _ => (
                "GET",
                similar_path(rng.random_range(0..n), false),
                String::new(),
            ),
        })
        .collect()
}

/// Writes only, one new entity then one interaction, for the connections of the mixed run
/// that write (its reads go on connections of their own).
pub fn write_requests(catalogue: &Catalogue, count: usize, seed: u64) -> Vec<Line> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..count)
        .map(|r| write_line(catalogue, r, r % 2 == 0, false, &mut rng))
        .collect()
}

/// Request `r` as a write: a new entity `w<r>`, or an interaction of a random user with a
/// random entity of the catalogue (with an id of its own when `keyed`).
fn write_line(
    catalogue: &Catalogue,
    r: usize,
    upsert: bool,
    keyed: bool,
    rng: &mut StdRng,
) -> Line {
    if upsert {
        return (
            "PUT",
            format!("/v1/tenants/{TENANT}/entities"),
            catalogue.new_entity(r, rng),
        );
    }
    let mut interaction = json!({
        "user": format!("u{}", rng.random_range(0..1000)),
        "entity": Catalogue::id(rng.random_range(0..catalogue.n)),
        "kind": "view",
    });
    if keyed {
        interaction["id"] = json!(format!("i{r}"));
    }
    (
        "POST",
        format!("/v1/tenants/{TENANT}/interactions"),
        json!({ "interactions": [interaction] }).to_string(),
    )
}

/// The lines as wrk's script reads them: method, path and body, tab-separated.
pub fn to_file_text(lines: &[Line]) -> String {
    let mut text = String::new();
    for (method, path, body) in lines {
        let _ = writeln!(text, "{method}\t{path}\t{body}");
    }
    text
}

/// A Zipf draw (a whole number from 1 to the population) as a rank.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "rand_distr's Zipf yields whole numbers from 1 to n, n a usize"
)]
fn rank(draw: f64) -> usize {
    draw as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_are_deterministic_and_clustered() {
        let a = Catalogue::new(100, 1).entities(0, 50);
        let b = Catalogue::new(100, 1).entities(0, 50);
        assert_eq!(a, b);
        let v = |e: &serde_json::Value, i: usize| -> Vec<f32> {
            serde_json::from_value(e["entities"][i]["vector"].clone()).unwrap()
        };
        let dist = |x: &[f32], y: &[f32]| -> f32 {
            x.iter()
                .zip(y)
                .map(|(a, b)| (a - b).powi(2))
                .sum::<f32>()
                .sqrt()
        };
        // Entities 0 and 50 share a centre; 0 and 1 do not.
        let all = Catalogue::new(100, 1).entities(0, 100);
        assert!(dist(&v(&all, 0), &v(&all, 50)) < dist(&v(&all, 0), &v(&all, 1)));
        assert_eq!(v(&a, 0).len(), DIMENSION);
        // No entity lies on its centre's direction: such hubs would make the graph's recall a
        // property of the generator.
        let catalogue = Catalogue::new(100, 7);
        let cosine = |x: &[f32], y: &[f32]| {
            let dot: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
            dot / (x.iter().map(|a| a * a).sum::<f32>() * y.iter().map(|b| b * b).sum::<f32>())
                .sqrt()
        };
        let batch = catalogue.entities(0, 100);
        for i in 0..100 {
            let c = cosine(&v(&batch, i), &catalogue.centres[i % CENTRES]);
            assert!(c < 0.99, "entity {i} lies on its centre ({c})");
        }
    }

    #[test]
    fn zipf_traffic_is_skewed_and_uniform_is_not() {
        let count = |lines: &[Line], id: &str| {
            let needle = format!("/entities/{id}/similar");
            lines.iter().filter(|(_, p, _)| p.contains(&needle)).count()
        };
        let zipf = similar_requests(1000, 20_000, Draw::Zipf(1.0), false, 3);
        let uniform = similar_requests(1000, 20_000, Draw::Uniform, false, 3);
        // Under Zipf(1) over 1,000 ids the top id takes about 1/H(1000), 13%, of traffic.
        let top = count(&zipf, "e0");
        assert!((2000..3400).contains(&top), "{top}");
        assert!(count(&uniform, "e0") < 60);
        assert!(
            zipf.iter()
                .all(|(m, p, b)| *m == "GET" && p.ends_with("k=10") && b.is_empty())
        );
    }

    #[test]
    fn mixed_traffic_is_one_tenth_writes() {
        let lines = mixed_requests(&Catalogue::new(100, 1), 1000, 2, false);
        let writes = lines.iter().filter(|(m, _, _)| *m != "GET").count();
        assert_eq!(writes, 100);
        let text = to_file_text(&lines);
        assert_eq!(text.lines().count(), 1000);
        assert!(text.lines().all(|l| l.split('\t').count() == 3));
        assert!(!text.contains("\"id\":\"i"));
        // Keyed: every interaction has an id of its own, so a second pass records nothing.
        let keyed = mixed_requests(&Catalogue::new(100, 1), 1000, 2, true);
        let ids: std::collections::HashSet<String> = keyed
            .iter()
            .filter(|(_, p, _)| p.ends_with("/interactions"))
            .map(|(_, _, b)| {
                serde_json::from_str::<serde_json::Value>(b).unwrap()["interactions"][0]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids.len(), 50);
    }

    #[test]
    fn write_traffic_alternates_new_entities_and_interactions() {
        let lines = write_requests(&Catalogue::new(100, 1), 10, 2);
        assert!(
            lines
                .iter()
                .step_by(2)
                .all(|(m, p, _)| *m == "PUT" && p.ends_with("/entities"))
        );
        assert!(
            lines
                .iter()
                .skip(1)
                .step_by(2)
                .all(|(m, p, _)| *m == "POST" && p.ends_with("/interactions"))
        );
        // Each new entity has an id of its own.
        let ids: std::collections::HashSet<&str> = lines
            .iter()
            .step_by(2)
            .map(|(_, _, b)| b.as_str())
            .collect();
        assert_eq!(ids.len(), 5);
    }
}
