//! The typed settings of `reco serve`: defaults, then an optional TOML file, then the
//! environment, then flags, each overriding the one before.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;
use reco_engine::EngineConfig;
use reco_storage::{PostgresSettings, RedisSettings, SqliteSettings};
use serde::Deserialize;

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file could not be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

/// The default `Settings::inline_work`, 262,144 components: a graph search in 128 dimensions at
/// a breadth up to 64 (the default breadth of a tenant under 50,000 entities; 30 to 40
/// microseconds at 20,000), or a scan of 2,000 such entities. Larger tenants' searches
/// (breadth 128 and up: 0.2 ms at 100,000, 0.7 ms at a million) and higher dimensions hop.
pub const DEFAULT_INLINE_WORK: u64 = 1 << 18;

/// Where recommendations are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RankingMode {
    /// In the engine, in memory: the default.
    Memory,
    /// In PostgreSQL with pgvector: the reference design, for comparison.
    Database,
}

/// The level of the access log's line per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    /// At info: seen with the default filter.
    Info,
    /// At debug: seen with `RECO_LOG=debug`.
    Debug,
    /// Not written.
    Off,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    /// On.
    On,
    /// Off.
    Off,
}

/// The flags of `reco serve`; each is also read from the environment variable named beside it,
/// and from the TOML file of `--config` (same names, in snake case).
#[derive(Debug, Clone, Default, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// A TOML file with any of these settings. Flags and environment win over it.
    #[arg(long, env = "RECO_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// `postgres://...` for PostgreSQL; unset for the embedded database under the data folder.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// `redis://host:port` for a shared cache; unset for the in-process cache only.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,
    /// Address and port to listen on. [default: 127.0.0.1:8080]
    #[arg(long, env = "RECO_BIND")]
    pub bind: Option<SocketAddr>,
    /// The admin key. Without one the server runs open, on loopback only.
    #[arg(long, env = "RECO_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// The in-process cache. [default: on]
    #[arg(long, env = "RECO_CACHE")]
    pub cache: Option<Switch>,
    /// Mebibytes each tier of the in-process cache keeps (answers, trending, users'
    /// preferences), weighed by what they hold. [default: 64]
    #[arg(long, env = "RECO_CACHE_MAX_MB")]
    pub cache_max_mb: Option<u64>,
    /// Where similar-by-id is ranked. [default: memory]
    #[arg(long, env = "RECO_RANKING")]
    pub ranking: Option<RankingMode>,
    /// Requests per second each tenant may make (its bucket holds as many), unless the
    /// tenant's own `rate_limit` says otherwise. [default: no limit]
    #[arg(long, env = "RECO_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// The most work one ranking may take, in vector components read; a question estimated
    /// over it is refused with 400, naming what to lower. [default: 2000000000]
    #[arg(long, env = "RECO_WORK_BUDGET")]
    pub work_budget: Option<u64>,
    /// The most work the rankings of one batch may take together. [default: 20000000000]
    #[arg(long, env = "RECO_BATCH_WORK_BUDGET")]
    pub batch_work_budget: Option<u64>,
    /// Threads costly rankings run on, off the HTTP workers. [default: every core]
    #[arg(long, env = "RECO_RANK_THREADS")]
    pub rank_threads: Option<usize>,
    /// HTTP worker threads, each with its own connections. [default: every core]
    #[arg(long, env = "RECO_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
    /// Rankings that may wait for a thread; past it a read answers 503. [default: 4096]
    #[arg(long, env = "RECO_RANK_QUEUE")]
    pub rank_queue: Option<usize>,
    /// Questions estimated at most this much work (vector components read) are ranked on the
    /// HTTP worker that took them instead of the rankers: a graph search, or a scan of a small
    /// tenant, costs less than the hop. 0 sends every ranking to the rankers.
    /// [default: 262144]
    #[arg(long, env = "RECO_INLINE_WORK")]
    pub inline_work: Option<u64>,
    /// The longest a request's body may take to arrive, in milliseconds (408 past it).
    /// [default: 30000]
    #[arg(long, env = "RECO_BODY_TIMEOUT_MS")]
    pub body_timeout_ms: Option<u64>,
    /// Lookups of unknown keys each client address may cause per second, before storage is
    /// asked (429 past it). [default: 20]
    #[arg(long, env = "RECO_UNKNOWN_KEY_RATE")]
    pub unknown_key_rate: Option<u32>,
    /// The longest a read may take, in milliseconds (writes are bounded by the database's own
    /// timeouts). [default: 30000]
    #[arg(long, env = "RECO_REQUEST_TIMEOUT_MS")]
    pub request_timeout_ms: Option<u64>,
    /// The folder of the embedded database. [default: data]
    #[arg(long, env = "RECO_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Most PostgreSQL connections. [default: 100]
    #[arg(long, env = "RECO_PG_MAX_CONNECTIONS")]
    pub pg_max_connections: Option<u32>,
    /// PostgreSQL connections kept open. [default: 20]
    #[arg(long, env = "RECO_PG_MIN_CONNECTIONS")]
    pub pg_min_connections: Option<u32>,
    /// Candidates pgvector's HNSW index visits per query. [default: 100]
    #[arg(long, env = "RECO_HNSW_EF_SEARCH")]
    pub hnsw_ef_search: Option<u32>,
    /// Answer every search exactly, as if every query said `exact=true`. [default: off]
    #[arg(long, env = "RECO_EXACT")]
    pub exact: Option<Switch>,
    /// Candidates the engine's HNSW graph considers per query (its ef). [default: 64]
    #[arg(long, env = "RECO_ANN_EF")]
    pub ann_ef: Option<usize>,
    /// Tenants with at least this many entities get a graph; smaller ones are scanned.
    /// [default: 5000]
    #[arg(long, env = "RECO_ANN_THRESHOLD")]
    pub ann_threshold: Option<usize>,
    /// Keep int8 codes of every vector and scan them, rescored in f32, where there is no
    /// graph. [default: on]
    #[arg(long, env = "RECO_QUANTIZED")]
    pub quantized: Option<Switch>,
    /// Threads a tenant's graph is built on. [default: every core]
    #[arg(long, env = "RECO_BUILD_THREADS")]
    pub build_threads: Option<usize>,
    /// Most exact similar questions answered in one shared pass; 0 answers each alone.
    /// [default: 64]
    #[arg(long, env = "RECO_BATCH_MAX")]
    pub batch_max: Option<usize>,
    /// Train a tenant's collaborative model by itself once this many interactions arrived
    /// since its last training (or since none); 0 trains only when asked. [default: 1000]
    #[arg(long, env = "RECO_TRAIN_AFTER")]
    pub train_after: Option<u64>,
    /// Seconds from the start of a tenant's training by itself to the start of the next one:
    /// interactions that become due sooner start it then. 0 starts one whenever due.
    /// [default: 60]
    #[arg(long, env = "RECO_TRAIN_INTERVAL_S")]
    pub train_interval_s: Option<u64>,
    /// The recall@10 a tenant's graph search is kept at: questions it answered are re-answered
    /// exactly in the background, and the least breadth whose measured recall holds this
    /// serves. 0 keeps the configured breadth. [default: 0.99]
    #[arg(long, env = "RECO_RECALL_TARGET")]
    pub recall_target: Option<f64>,
    /// The level of the access log, one line per request (method, route, status, time,
    /// tenant, request id); health and metrics polls are at debug whatever this says.
    /// [default: info]
    #[arg(long, env = "RECO_ACCESS_LOG")]
    pub access_log: Option<AccessLog>,
    /// Keep an image of every tenant's entities and graph in the data folder (`images/`),
    /// written at shutdown and every `--image-interval-s`, so that a restart reads them
    /// instead of rebuilding. [default: on]
    #[arg(long, env = "RECO_IMAGES")]
    pub images: Option<Switch>,
    /// Seconds between writes of the images of tenants that changed; 0 writes them at
    /// shutdown only. [default: 300]
    #[arg(long, env = "RECO_IMAGE_INTERVAL_S")]
    pub image_interval_s: Option<u64>,
}

/// Everything the server runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// PostgreSQL, or none for the embedded database.
    pub database_url: Option<String>,
    /// Redis, or none.
    pub redis_url: Option<String>,
    /// Where to listen; port 0 picks a free one.
    pub bind: SocketAddr,
    /// The admin key, or none to run open on loopback.
    pub admin_key: Option<String>,
    /// The in-process cache.
    pub cache: bool,
    /// Where similar-by-id is ranked.
    pub ranking: RankingMode,
    /// Requests per second per tenant whose settings name none; `None` for no limit.
    pub rate_limit: Option<u32>,
    /// The longest a read may take.
    pub request_timeout: Duration,
    /// The longest a body may take to arrive.
    pub body_timeout: Duration,
    /// The most work of a batch's rankings together, in vector components read.
    pub batch_work_budget: u64,
    /// Threads rankings run on.
    pub rank_threads: usize,
    /// HTTP worker threads.
    pub http_workers: usize,
    /// Rankings that may wait for a thread.
    pub rank_queue: usize,
    /// The most work a ranking done on the HTTP worker may be estimated at; 0 for none.
    pub inline_work: u64,
    /// Unknown-key lookups per client address per second.
    pub unknown_key_rate: u32,
    /// The largest request body.
    pub body_limit: usize,
    /// PostgreSQL pool and session settings.
    pub postgres: PostgresSettings,
    /// The embedded database.
    pub sqlite: SqliteSettings,
    /// The Redis pool.
    pub redis: RedisSettings,
    /// Ranking, decay and cache settings.
    pub engine: EngineConfig,
    /// How far back interactions are loaded at start-up.
    pub history: Duration,
    /// Most questions per shared pass of the batcher; 0 turns batching off.
    pub batch_max: usize,
    /// New interactions that start a tenant's training by themselves; 0 for never.
    pub train_after: u64,
    /// The least time between the starts of two trainings a tenant's interactions start.
    pub train_interval: Duration,
    /// The recall the graph's breadth is chosen to hold (see `breadth`); 0 for a fixed breadth.
    pub recall_target: f64,
    /// The level of the access log.
    pub access_log: AccessLog,
    /// Where tenant images are kept; `None` keeps none (the default of a `Settings` made in
    /// code; `reco serve` keeps them under its data folder).
    pub image_dir: Option<PathBuf>,
    /// How often the images of changed tenants are written; zero for at shutdown only.
    pub image_interval: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        // Ranking threads and HTTP workers: one each per core.
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            database_url: None,
            redis_url: None,
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_key: None,
            cache: true,
            ranking: RankingMode::Memory,
            rate_limit: None,
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            batch_work_budget: 10 * reco_engine::DEFAULT_WORK_BUDGET,
            rank_threads: cores,
            http_workers: cores,
            rank_queue: 4096,
            inline_work: DEFAULT_INLINE_WORK,
            unknown_key_rate: 20,
            body_limit: 64 * 1024 * 1024,
            postgres: PostgresSettings::default(),
            sqlite: SqliteSettings::default(),
            redis: RedisSettings::default(),
            engine: EngineConfig::default(),
            history: Duration::from_secs(90 * 86_400),
            batch_max: 64,
            train_after: 1000,
            train_interval: Duration::from_secs(60),
            recall_target: 0.99,
            access_log: AccessLog::Info,
            image_dir: None,
            image_interval: Duration::from_secs(300),
        }
    }
}

impl Settings {
    /// Where the data is kept, for the log: the embedded database's file (absolute), or
    /// PostgreSQL's host, port and database, never its user or password.
    pub fn storage_description(&self) -> String {
        match &self.database_url {
            None => {
                let path = std::path::absolute(&self.sqlite.path)
                    .unwrap_or_else(|_| self.sqlite.path.clone());
                format!("SQLite at {}", path.display())
            }
            Some(url) => format!("PostgreSQL at {}", without_secrets(url)),
        }
    }

    /// The shared cache, for the log.
    pub fn redis_description(&self) -> String {
        self.redis_url.as_deref().map_or_else(
            || "none (the in-process cache only)".to_owned(),
            |url| format!("Redis at {}", without_secrets(url)),
        )
    }

    /// The PostgreSQL settings for this ranking mode: pgvector's index serves only ranking in
    /// the database, so a server that ranks in memory does not make its writes pay to keep it;
    /// and such a server runs no search there, so its sessions plan each statement once.
    pub fn postgres_for_ranking(&self) -> PostgresSettings {
        PostgresSettings {
            vector_index: self.ranking == RankingMode::Database,
            generic_plans: self.ranking == RankingMode::Memory,
            ..self.postgres.clone()
        }
    }
    /// The defaults, under the file of `args.config`, under `args` (flags and environment).
    pub fn resolve(args: ServeArgs) -> Result<Self, SettingsError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| SettingsError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                toml::from_str::<ServeArgs>(&text).map_err(|e| SettingsError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?
            }
            None => ServeArgs::default(),
        };
        let d = Settings::default();
        let mut s = Settings {
            database_url: args
                .database_url
                .or(file.database_url)
                .filter(|u| !u.is_empty()),
            redis_url: args.redis_url.or(file.redis_url).filter(|u| !u.is_empty()),
            bind: args.bind.or(file.bind).unwrap_or(d.bind),
            admin_key: args.admin_key.or(file.admin_key).filter(|k| !k.is_empty()),
            cache: args.cache.or(file.cache).unwrap_or(Switch::On) == Switch::On,
            ranking: args.ranking.or(file.ranking).unwrap_or(d.ranking),
            rate_limit: args.rate_limit.or(file.rate_limit).or(d.rate_limit),
            request_timeout: args
                .request_timeout_ms
                .or(file.request_timeout_ms)
                .map_or(d.request_timeout, Duration::from_millis),
            ..d
        };
        let data_dir = args.data_dir.or(file.data_dir);
        if let Some(dir) = &data_dir {
            s.sqlite.path = dir.join("reco.db");
        }
        if args.images.or(file.images).unwrap_or(Switch::On) == Switch::On {
            s.image_dir = Some(
                data_dir
                    .unwrap_or_else(|| PathBuf::from("data"))
                    .join("images"),
            );
        }
        if let Some(seconds) = args.image_interval_s.or(file.image_interval_s) {
            s.image_interval = Duration::from_secs(seconds);
        }
        if let Some(n) = args.pg_max_connections.or(file.pg_max_connections) {
            s.postgres.max_connections = n;
        }
        if let Some(n) = args.pg_min_connections.or(file.pg_min_connections) {
            s.postgres.min_connections = n;
        }
        if let Some(n) = args.hnsw_ef_search.or(file.hnsw_ef_search) {
            s.postgres.hnsw_ef_search = n;
        }
        s.engine.cache.enabled = s.cache;
        if let Some(mb) = args.cache_max_mb.or(file.cache_max_mb) {
            s.engine.cache.max_bytes = mb.saturating_mul(1 << 20);
        }
        if let Some(exact) = args.exact.or(file.exact) {
            s.engine.search.exact = exact == Switch::On;
        }
        if let Some(ef) = args.ann_ef.or(file.ann_ef) {
            s.engine.search.expansion_search = ef;
        }
        if let Some(threshold) = args.ann_threshold.or(file.ann_threshold) {
            s.engine.search.threshold = threshold;
        }
        if let Some(quantized) = args.quantized.or(file.quantized) {
            s.engine.search.quantized = quantized == Switch::On;
        }
        if let Some(threads) = args.build_threads.or(file.build_threads) {
            s.engine.search.build_threads = threads;
        }
        if let Some(max) = args.batch_max.or(file.batch_max) {
            s.batch_max = max;
        }
        if let Some(level) = args.access_log.or(file.access_log) {
            s.access_log = level;
        }
        if let Some(after) = args.train_after.or(file.train_after) {
            s.train_after = after;
        }
        if let Some(seconds) = args.train_interval_s.or(file.train_interval_s) {
            s.train_interval = Duration::from_secs(seconds);
        }
        if let Some(target) = args.recall_target.or(file.recall_target) {
            s.recall_target = target;
        }
        if let Some(budget) = args.work_budget.or(file.work_budget) {
            s.engine.work_budget = budget;
        }
        if let Some(budget) = args.batch_work_budget.or(file.batch_work_budget) {
            s.batch_work_budget = budget;
        }
        if let Some(threads) = args.rank_threads.or(file.rank_threads) {
            s.rank_threads = threads;
        }
        if let Some(workers) = args.http_workers.or(file.http_workers) {
            s.http_workers = workers;
        }
        if let Some(queue) = args.rank_queue.or(file.rank_queue) {
            s.rank_queue = queue;
        }
        if let Some(work) = args.inline_work.or(file.inline_work) {
            s.inline_work = work;
        }
        if let Some(ms) = args.body_timeout_ms.or(file.body_timeout_ms) {
            s.body_timeout = Duration::from_millis(ms);
        }
        if let Some(rate) = args.unknown_key_rate.or(file.unknown_key_rate) {
            s.unknown_key_rate = rate;
        }
        s.validate()?;
        Ok(s)
    }

    /// Checks that the settings can run, and keeps an open server on loopback.
    pub fn validate(&mut self) -> Result<(), SettingsError> {
        let invalid = |what: &str| Err(SettingsError::Invalid(what.to_owned()));
        if self.rate_limit == Some(0) {
            return invalid(
                "the rate limit must be at least 1 request a second (unset it for none)",
            );
        }
        if self.request_timeout.is_zero() || self.body_timeout.is_zero() {
            return invalid("the request and body timeouts must be above zero");
        }
        if self.batch_work_budget == 0 {
            return invalid("the batch work budget must be at least 1");
        }
        if !(1..=1024).contains(&self.rank_threads) {
            return invalid("the ranking threads are from 1 to 1024");
        }
        if !(1..=1024).contains(&self.http_workers) {
            return invalid("the HTTP workers are from 1 to 1024");
        }
        if self.rank_queue == 0 {
            return invalid("the ranking queue must hold at least 1");
        }
        if self.unknown_key_rate == 0 {
            return invalid("the unknown-key rate must be at least 1 a second");
        }
        if !(0.0..1.0).contains(&self.recall_target) {
            return invalid(
                "the recall target is at least 0 (0 keeps the configured breadth) and below 1",
            );
        }
        if self.ranking == RankingMode::Database && self.database_url.is_none() {
            return Err(SettingsError::Invalid(
                "RECO_RANKING=database needs a PostgreSQL DATABASE_URL".into(),
            ));
        }
        self.postgres
            .validate()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        self.engine
            .validate()
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        if self.admin_key.is_none() {
            tracing::warn!(
                requested = %self.bind,
                "no admin key is set (RECO_ADMIN_KEY): the server runs open, on loopback only"
            );
            if !self.bind.ip().is_loopback() {
                self.bind.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<Settings, SettingsError> {
        let cli =
            Cli::try_parse_from(std::iter::once("reco").chain(flags.iter().copied())).unwrap();
        Settings::resolve(cli.serve)
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = Settings::default();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8080");
        assert!(s.cache);
        assert_eq!(s.ranking, RankingMode::Memory);
        assert_eq!(s.body_limit, 64 * 1024 * 1024);
        assert_eq!(s.sqlite.path, PathBuf::from("data/reco.db"));
        assert_eq!(s.rate_limit, None, "no limit unless configured");
        assert_eq!(s.engine.work_budget, reco_engine::DEFAULT_WORK_BUDGET);
    }

    #[test]
    fn the_ranking_mode_chooses_the_index_and_the_plans() {
        let memory = Settings::default().postgres_for_ranking();
        assert!(!memory.vector_index && memory.generic_plans);
        let database = Settings {
            ranking: RankingMode::Database,
            ..Settings::default()
        }
        .postgres_for_ranking();
        assert!(database.vector_index && !database.generic_plans);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = std::env::temp_dir().join(format!("reco_settings_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("reco.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:9000\"\ncache = \"off\"\nrate_limit = 7\nadmin_key = \"from-file\"\n",
        )
        .unwrap();
        let config = file.to_str().unwrap();
        let s = parse(&["--config", config, "--rate-limit", "9"]).unwrap();
        assert_eq!(s.bind.port(), 9000, "from the file");
        assert!(!s.cache && !s.engine.cache.enabled, "from the file");
        assert_eq!(s.rate_limit, Some(9), "the flag wins");
        assert_eq!(s.admin_key.as_deref(), Some("from-file"));
        std::fs::write(&file, "no_such_setting = 1\n").unwrap();
        assert!(matches!(
            parse(&["--config", config]),
            Err(SettingsError::File { .. })
        ));
    }

    #[test]
    fn an_open_server_stays_on_loopback() {
        let s = parse(&["--bind", "0.0.0.0:8081"]).unwrap();
        assert!(s.bind.ip().is_loopback());
        assert_eq!(s.bind.port(), 8081);
        let s = parse(&["--bind", "0.0.0.0:8081", "--admin-key", "k"]).unwrap();
        assert!(!s.bind.ip().is_loopback());
    }

    #[test]
    fn impossible_settings_are_refused() {
        assert!(parse(&["--rate-limit", "0"]).is_err());
        assert!(
            parse(&["--ranking", "database"]).is_err(),
            "database mode needs PostgreSQL"
        );
        assert!(parse(&["--pg-min-connections", "500"]).is_err());
        assert!(parse(&["--ann-ef", "0"]).is_err());
        assert!(parse(&["--build-threads", "0"]).is_err());
        assert!(parse(&["--work-budget", "0"]).is_err());
        assert!(parse(&["--rank-threads", "0"]).is_err());
        assert!(parse(&["--http-workers", "0"]).is_err());
        assert_eq!(parse(&["--http-workers", "4"]).unwrap().http_workers, 4);
        assert!(parse(&["--body-timeout-ms", "0"]).is_err());
        let s = parse(&["--work-budget", "5", "--batch-work-budget", "7"]).unwrap();
        assert_eq!((s.engine.work_budget, s.batch_work_budget), (5, 7));
        // Cheap rankings stay on the HTTP workers unless told otherwise; 0 sends every one
        // to the rankers.
        assert_eq!(s.inline_work, DEFAULT_INLINE_WORK);
        assert_eq!(parse(&["--inline-work", "0"]).unwrap().inline_work, 0);
    }

    #[test]
    fn search_settings_reach_the_engine() {
        let s = Settings::default();
        assert!(!s.engine.search.exact);
        let s = parse(&["--exact", "on", "--ann-ef", "128", "--ann-threshold", "100"]).unwrap();
        assert_eq!(s.batch_max, 64);
        assert!(s.engine.search.quantized);
        let off = parse(&["--quantized", "off", "--batch-max", "0"]).unwrap();
        assert_eq!(off.batch_max, 0);
        assert!(!off.engine.search.quantized);
        assert_eq!(Settings::default().train_after, 1000);
        assert_eq!(parse(&["--train-after", "0"]).unwrap().train_after, 0);
        assert_eq!(Settings::default().train_interval, Duration::from_secs(60));
        assert_eq!(
            parse(&["--train-interval-s", "5"]).unwrap().train_interval,
            Duration::from_secs(5)
        );
        assert!((Settings::default().recall_target - 0.99).abs() < 1e-12);
        assert!((parse(&["--recall-target", "0.95"]).unwrap().recall_target - 0.95).abs() < 1e-12);
        for bad in ["1", "1.5", "-0.1", "NaN"] {
            let flag = format!("--recall-target={bad}");
            assert!(parse(&[flag.as_str()]).is_err(), "{bad}");
        }
        let threads = parse(&["--build-threads", "3"]).unwrap();
        assert_eq!(threads.engine.search.build_threads, 3);
        let search = s.engine.search;
        assert!(search.exact);
        assert_eq!((search.expansion_search, search.threshold), (128, 100));
    }
}

/// A database or Redis URL as the log shows it: host, port and path; no user, password or
/// query (which may hold a password too).
fn without_secrets(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{}:{}{}",
            parsed.host_str().unwrap_or("localhost"),
            parsed
                .port()
                .map_or_else(|| "default port".to_owned(), |p| p.to_string()),
            parsed.path()
        ),
        Err(_) => "an address that is not a URL".to_owned(),
    }
}

#[cfg(test)]
mod description_tests {
    use super::*;

    #[test]
    fn urls_are_named_without_their_secrets() {
        let url = "postgres://reco:hunter2@db.example:5432/shop?password=x";
        assert_eq!(without_secrets(url), "db.example:5432/shop");
        let settings = Settings {
            database_url: Some(url.into()),
            redis_url: Some("redis://:secret@cache:6379/0".into()),
            ..Settings::default()
        };
        assert!(!settings.storage_description().contains("hunter2"));
        assert_eq!(settings.redis_description(), "Redis at cache:6379/0");
        let local = Settings::default().storage_description();
        assert!(
            local.starts_with("SQLite at /") && local.ends_with("reco.db"),
            "{local}"
        );
    }
}
