//! `reco evaluate`: which user strategy wins on your own data (see
//! `reco_engine::evaluate`). The data is a tenant as the database holds it (its catalogue, its
//! whole log and its settings), or files in the shapes `reco import` reads. The answer is a
//! table on standard output, and on request JSON and an SVG chart.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use plotters::prelude::*;
use reco_engine::evaluate::{Evaluation, EvaluationReport, Progress, Split, evaluate};
use reco_engine::{
    Algorithm, Interaction, InteractionKind, LearnParams, Metric, NewEntity, TenantName,
    TenantSpec, UserStrategy,
};
use reco_server::api::{EntitiesBody, EvaluationOut, InteractionsBody, split_name};
use reco_server::{ServeArgs, Settings};
use reco_storage::Store;
use serde_json::{Value, json};

use super::import::{Format, Kind, parse};

/// How to split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    /// Each user's last interaction in time is their test item (when of a test kind).
    LeaveLastOut,
    /// Each user's interactions at random: 80% train, 10% validation, 10% test.
    Random,
}

/// What to evaluate, and where the data is.
#[derive(Debug, clap::Args)]
pub struct EvaluateArgs {
    /// A tenant in the database (`--database-url` or DATABASE_URL; the embedded database by
    /// default): its entities, its whole log, and its collaborative settings.
    #[arg(long, conflicts_with_all = ["entities", "interactions"])]
    pub tenant: Option<String>,
    /// Entities, as `reco import` reads them (JSON lines or CSV); with `--interactions`.
    #[arg(long, requires = "interactions")]
    pub entities: Option<PathBuf>,
    /// Interactions, as `reco import` reads them; with `--entities`.
    #[arg(long, requires = "entities")]
    pub interactions: Option<PathBuf>,
    /// The metric of the entities' vectors, when they come from files.
    #[arg(long, default_value = "cosine")]
    pub metric: String,
    /// How each user's log is split.
    #[arg(long, value_enum, default_value = "leave-last-out")]
    pub split: SplitArg,
    /// The seed of the random split.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The kinds a test item may have.
    #[arg(long, value_delimiter = ',', default_value = "like,purchase")]
    pub test_kinds: Vec<String>,
    /// The strategies to compare (those the data allows: content needs vectors).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "trending,content,collaborative,hybrid,auto"
    )]
    pub strategies: Vec<String>,
    /// Scores the validation part instead of the test (which is then left out entirely), to
    /// choose settings without looking at the test.
    #[arg(long)]
    pub validate: bool,
    /// The share of entities (0 to 1) made new: their training interactions are dropped, so
    /// that only content can find them, as between two trainings.
    #[arg(long, default_value_t = 0.0)]
    pub new_entities: f64,
    /// The model: auto (EASE for a catalogue of up to 2,500 entities, iALS beyond), ials or
    /// ease, instead of the tenant's.
    #[arg(long)]
    pub algorithm: Option<String>,
    /// EASE's regularization (a multiple of the mean users per entity), instead of the tenant's.
    #[arg(long)]
    pub ease_regularization: Option<f64>,
    /// Factors of the model, instead of the tenant's (or the default, 64).
    #[arg(long)]
    pub factors: Option<usize>,
    /// The seed of the model's initial factors, instead of the tenant's.
    #[arg(long)]
    pub model_seed: Option<u64>,
    /// Sweeps of the training, instead of the tenant's.
    #[arg(long)]
    pub iterations: Option<usize>,
    /// The training's regularization, instead of the tenant's.
    #[arg(long)]
    pub regularization: Option<f64>,
    /// The weight of unobserved pairs, instead of the tenant's.
    #[arg(long)]
    pub unobserved_weight: Option<f64>,
    /// How much an interaction's weight adds to its confidence, instead of the tenant's.
    #[arg(long)]
    pub confidence: Option<f64>,
    /// The half-life of a user's history, in hours, measured from their newest interaction,
    /// instead of the server's.
    #[arg(long)]
    pub half_life_hours: Option<f64>,
    /// The least part of its weight an old interaction keeps, 0 to 1, instead of the server's.
    #[arg(long)]
    pub history_floor: Option<f64>,
    /// Writes the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Draws the report as an SVG bar chart here.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// The server's settings (the engine's half-life, kind weights and so on, and the database).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Runs an evaluation and prints its table; writes JSON and a chart when asked.
pub async fn run(args: EvaluateArgs) -> anyhow::Result<EvaluationReport> {
    let settings = Settings::resolve(args.serve.clone())?;
    let (spec, learning, entities, interactions) = match (&args.tenant, &args.entities) {
        (Some(tenant), _) => from_database(&settings, tenant).await?,
        (None, Some(entities)) => {
            let interactions = args.interactions.as_ref().expect("clap requires both");
            from_files(entities, interactions, &args.metric)?
        }
        (None, None) => bail!("name a --tenant, or give --entities and --interactions"),
    };
    let mut evaluation = Evaluation::new(match args.split {
        SplitArg::LeaveLastOut => Split::LeaveLastOut,
        SplitArg::Random => Split::Random { seed: args.seed },
    });
    evaluation.test_kinds = args
        .test_kinds
        .iter()
        .map(|k| InteractionKind::parse(k))
        .collect::<Result<_, _>>()?;
    evaluation.strategies = args
        .strategies
        .iter()
        .map(|s| {
            UserStrategy::parse(s).with_context(|| {
                format!("strategy is auto, collaborative, hybrid, content or trending, not `{s}`")
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let algorithm = match args.algorithm.as_deref() {
        None => learning.algorithm,
        Some(name) => Algorithm::parse(name)
            .with_context(|| format!("--algorithm is auto, ials or ease, not `{name}`"))?,
    };
    evaluation.learning = LearnParams {
        algorithm,
        ease_regularization: args
            .ease_regularization
            .unwrap_or(learning.ease_regularization),
        factors: args.factors.unwrap_or(learning.factors),
        iterations: args.iterations.unwrap_or(learning.iterations),
        regularization: args.regularization.unwrap_or(learning.regularization),
        unobserved_weight: args.unobserved_weight.unwrap_or(learning.unobserved_weight),
        confidence: args.confidence.unwrap_or(learning.confidence),
        seed: args.model_seed.unwrap_or(learning.seed),
        threads: LearnParams::default().threads,
        ..learning
    };
    evaluation.learning.check()?;
    evaluation.validate = args.validate;
    if !(0.0..=1.0).contains(&args.new_entities) {
        bail!("--new-entities is a share, from 0 to 1");
    }
    evaluation.new_entities = args.new_entities;
    evaluation.new_seed = args.seed;
    evaluation.config = settings.engine.clone();
    if let Some(hours) = args.half_life_hours {
        if !(hours.is_finite() && hours > 0.0 && hours <= 1e6) {
            bail!("--half-life-hours is a positive number of at most a million");
        }
        evaluation.config.half_life = std::time::Duration::from_secs_f64(hours * 3600.0);
    }
    if let Some(floor) = args.history_floor {
        evaluation.config.history_floor = floor;
    }
    evaluation.config.validate()?;
    eprintln!(
        "evaluating {} entities and {} interactions ({})",
        entities.len(),
        interactions.len(),
        if spec.has_vectors() {
            format!("{}-d {} vectors", spec.dimension, spec.metric.as_str())
        } else {
            "no content vectors".to_owned()
        }
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} answers ({per_sec}, {eta} left)")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let report = tokio::task::spawn_blocking({
        let bar = bar.clone();
        move || {
            evaluate(spec, entities, interactions, &evaluation, &|p| match p {
                Progress::Start(n) => bar.set_length(u64::try_from(n).unwrap_or(u64::MAX)),
                Progress::Answered => bar.inc(1),
            })
        }
    })
    .await??;
    bar.finish_and_clear();
    print!("{}", table(&report));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&to_json(&report)?)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        chart(&report, path).with_context(|| format!("drawing {}", path.display()))?;
    }
    Ok(report)
}

/// The catalogue, log and settings of one tenant as the database holds them: every
/// interaction, whatever its age.
async fn from_database(
    settings: &Settings,
    tenant: &str,
) -> anyhow::Result<(TenantSpec, LearnParams, Vec<NewEntity>, Vec<Interaction>)> {
    let name = TenantName::parse(tenant)?;
    let store = Store::open(
        settings.database_url.as_deref(),
        settings.postgres_for_ranking(),
        settings.sqlite.clone(),
    )
    .await
    .context("opening the database")?;
    let data = store
        .read_tenant(&name)
        .await?
        .with_context(|| format!("tenant `{tenant}` does not exist"))?;
    Ok((
        data.record.spec,
        data.record.learning.params,
        data.entities,
        data.interactions,
    ))
}

/// Entities and interactions from files, checked as the API checks them. The vectors' length
/// is the tenant's dimension (none when no entity has a vector).
fn from_files(
    entities: &Path,
    interactions: &Path,
    metric: &str,
) -> anyhow::Result<(TenantSpec, LearnParams, Vec<NewEntity>, Vec<Interaction>)> {
    let rows = |path: &Path, kind: Kind| -> anyhow::Result<Vec<Value>> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("csv") => Format::Csv,
            _ => Format::Jsonl,
        };
        let (rows, bad) = parse(&text, format, kind);
        if let Some((line, problem)) = bad.first() {
            bail!(
                "{}: line {line}: {problem} ({} bad lines)",
                path.display(),
                bad.len()
            );
        }
        Ok(rows.into_iter().map(|(_, row)| row).collect())
    };
    let mut catalogue = Vec::new();
    for chunk in rows(entities, Kind::Entities)?.chunks(10_000) {
        let body: EntitiesBody = serde_json::from_value(json!({ "entities": chunk }))?;
        catalogue.extend(body.into_entities().map_err(|e| anyhow::anyhow!("{e}"))?);
    }
    let mut log = Vec::new();
    let now = reco_engine::Clock::now(&reco_engine::SystemClock);
    // As the service records them: a line whose `id` an earlier line gave counts once.
    let mut seen = std::collections::HashSet::new();
    for chunk in rows(interactions, Kind::Interactions)?.chunks(10_000) {
        let body: InteractionsBody = serde_json::from_value(json!({ "interactions": chunk }))?;
        let (batch, ids) = body
            .into_interactions(now)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        log.extend(
            batch
                .into_iter()
                .zip(ids)
                .filter(|(_, id)| id.as_ref().is_none_or(|id| seen.insert(id.clone())))
                .map(|(interaction, _)| interaction),
        );
    }
    let spec = match catalogue.iter().find(|e| !e.vector.is_empty()) {
        Some(e) => TenantSpec::new(e.vector.len(), Metric::parse(metric)?)?,
        None => TenantSpec::WITHOUT_VECTORS,
    };
    Ok((spec, LearnParams::default(), catalogue, log))
}

/// The report as a Markdown table, a strategy a row.
pub fn table(report: &EvaluationReport) -> String {
    let mut out = format!(
        "{} users ({} tested), {} entities, {} training interactions, split {}; model trained in {}\n\n",
        report.users,
        report.tested,
        report.entities,
        report.training_interactions,
        split_name(report.split),
        report
            .training_seconds
            .map_or_else(|| "-".to_owned(), |s| format!("{s:.2} s")),
    );
    let cold = report.scores.first().map_or(0, |s| s.cold.users);
    out.push_str(&format!(
        "| strategy | HR@10 | NDCG@10 | recall@20 | coverage | cold HR@10 ({cold} users) | cold NDCG@10 | answered by |\n"
    ));
    out.push_str("|---|---|---|---|---|---|---|---|\n");
    for s in &report.scores {
        let answered: Vec<String> = s
            .answered_by
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        out.push_str(&format!(
            "| {} | {:.4} | {:.4} | {:.4} | {:.3} | {:.4} | {:.4} | {} |\n",
            s.strategy.as_str(),
            s.hit_rate,
            s.ndcg,
            s.recall,
            s.coverage,
            s.cold.hit_rate,
            s.cold.ndcg,
            answered.join(", ")
        ));
    }
    out
}

/// The report as JSON: the shape the server's `GET .../model/evaluation` answers.
pub fn to_json(report: &EvaluationReport) -> anyhow::Result<Value> {
    Ok(serde_json::to_value(EvaluationOut::from(report))?)
}

/// Draws HR@10, NDCG@10 and recall@20 of each strategy as grouped bars.
pub fn chart(report: &EvaluationReport, path: &Path) -> anyhow::Result<()> {
    let measures: [(&str, RGBColor); 3] = [
        ("HR@10", RGBColor(31, 119, 180)),
        ("NDCG@10", RGBColor(255, 127, 14)),
        ("recall@20", RGBColor(44, 160, 44)),
    ];
    let values = |s: &reco_engine::evaluate::StrategyScore| [s.hit_rate, s.ndcg, s.recall];
    let top = report
        .scores
        .iter()
        .flat_map(values)
        .fold(0.0f64, f64::max)
        .max(0.01)
        * 1.15;
    let names: Vec<&str> = report.scores.iter().map(|s| s.strategy.as_str()).collect();
    let count = u32::try_from(names.len()).unwrap_or(u32::MAX);
    // The legend has a strip of its own below the bars: inside, it could hide the first
    // group's tallest bar.
    let root = SVGBackend::new(path, (160 * count.max(3) + 120, 420 + 32)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_vertically(420);
    let title = format!(
        "Strategies on {} tested users ({})",
        report.tested,
        split_name(report.split)
    );
    let mut chart = ChartBuilder::on(&plot)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..f64::from(count), 0.0..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(names.len() * 2 + 1)
        .x_label_formatter(&|x| {
            // A label under the middle of each group of bars.
            names
                .iter()
                .enumerate()
                .find(|(i, _)| {
                    (f64::from(u32::try_from(*i).unwrap_or(u32::MAX)) + 0.5 - x).abs() < 0.01
                })
                .map_or_else(String::new, |(_, n)| (*n).to_owned())
        })
        .y_desc("score")
        .draw()?;
    for (m, (label, colour)) in measures.iter().enumerate() {
        let bars = report.scores.iter().enumerate().map(|(i, s)| {
            let left = i as f64 + 0.1 + m as f64 * 0.27;
            Rectangle::new([(left, 0.0), (left + 0.25, values(s)[m])], colour.filled())
        });
        chart.draw_series(bars)?;
        let x = 64 + 120 * i32::try_from(m)?;
        legend.draw(&Rectangle::new([(x, 6), (x + 12, 18)], colour.filled()))?;
        legend.draw(&Text::new(*label, (x + 18, 5), ("sans-serif", 13)))?;
    }
    root.present()?;
    Ok(())
}
