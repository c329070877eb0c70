//! The `reco` binary's commands. `serve` and `migrate` run the service's own code; `import`,
//! `tenant` and `key` talk to a running service over its HTTP API, with the client in
//! `client`. This module is the binary's, not the server library's: the library knows nothing
//! of reqwest or CSV.

mod client;
pub mod demo;
pub mod evaluate;
pub mod import;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use reco_server::{Application, ServeArgs, Settings};
use reco_storage::Store;
use serde_json::json;

use client::Client;
use import::ImportArgs;

#[derive(Parser)]
#[command(
    name = "reco",
    version,
    about = "A high-throughput recommendation engine"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Apply the database migrations and exit.
    Migrate(MigrateArgs),
    /// Import entities or interactions from JSON lines or CSV (checked whole, then batched;
    /// a rerun resumes).
    Import(ImportArgs),
    /// Which user strategy wins on your own data: split each user's log, train on the rest,
    /// and score HR@10, NDCG@10, recall@20 and coverage of every strategy.
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// A playground from nothing: the service on its own embedded database, a tenant `demo`
    /// with a generated catalogue and log, its model trained, and a curl line for every
    /// endpoint; then it serves until Ctrl-C.
    Demo(demo::DemoArgs),
    /// Tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Tenant keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// A tenant's entities.
    #[command(subcommand)]
    Entities(EntitiesCommand),
}

/// The flags of `reco migrate`: which database, as `reco serve` reads them.
#[derive(Args)]
struct MigrateArgs {
    /// A TOML file of `reco serve`'s settings; its database settings are used.
    #[arg(long, env = "RECO_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// `postgres://...` for PostgreSQL; unset for the embedded database under the data folder.
    #[arg(long, env = "DATABASE_URL")]
    database_url: Option<String>,
    /// The folder of the embedded database. [default: data]
    #[arg(long, env = "RECO_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// The ranking mode the servers run with: `database` builds pgvector's index of every
    /// tenant, `memory` drops them (nothing reads them, and writes would pay to keep them).
    /// [default: memory]
    #[arg(long, env = "RECO_RANKING")]
    ranking: Option<reco_server::RankingMode>,
}

/// Where the service is, and the key to use.
#[derive(Args)]
struct Remote {
    /// The service.
    #[arg(long, env = "RECO_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin key.
    #[arg(long, env = "RECO_ADMIN_KEY", hide_env_values = true)]
    key: Option<String>,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Make a tenant (or find it with the same settings).
    Create {
        /// Its name: 1 to 64 of a-z, 0-9, `_` and `-`.
        name: String,
        /// The length of its content vectors; leave it out for a tenant without them (served
        /// by its collaborative model).
        #[arg(long)]
        dimension: Option<usize>,
        /// cosine, dot or euclidean (with --dimension).
        #[arg(long, default_value = "cosine")]
        metric: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// List the tenants with their sizes, one a line.
    List {
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a tenant and all its data.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum EntitiesCommand {
    /// Print a tenant's entities in id order, one JSON object a line.
    List {
        /// The tenant.
        tenant: String,
        /// Entities per page, 1 to 1000.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Start after this id.
        #[arg(long)]
        after: Option<String>,
        /// Page on to the end (else one page, and the id to continue after on stderr).
        #[arg(long)]
        all: bool,
        /// Include the vectors.
        #[arg(long)]
        vectors: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a key that opens one tenant; it is printed once.
    Create {
        /// The tenant.
        tenant: String,
        #[command(flatten)]
        remote: Remote,
    },
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve(args) => {
                // Logs first, so that what the settings say (an open server, say) is seen.
                reco_server::telemetry::init();
                let settings = Settings::resolve(*args)?;
                let app = Application::build(settings)
                    .await
                    .context("starting the service")?;
                app.run_until_signalled().await?;
            }
            Command::Migrate(args) => {
                let mut settings = Settings::resolve(ServeArgs {
                    config: args.config,
                    database_url: args.database_url,
                    data_dir: args.data_dir,
                    ranking: args.ranking,
                    ..ServeArgs::default()
                })?;
                settings.postgres.min_connections = 0;
                let store = Store::open(
                    settings.database_url.as_deref(),
                    settings.postgres_for_ranking(),
                    settings.sqlite,
                )
                .await
                .context("opening the database")?;
                store.migrate().await.context("applying the migrations")?;
                println!("migrated the {} database", store.backend());
            }
            Command::Import(args) => {
                let bar = import::bar();
                let done = import::run(&args, &bar).await?;
                bar.finish_and_clear();
                let mut notes = Vec::new();
                if done.skipped > 0 {
                    notes.push(format!("{} sent by an earlier run", done.skipped));
                }
                if done.duplicates > 0 {
                    notes.push(format!("{} recorded before, not again", done.duplicates));
                }
                let notes = if notes.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", notes.join("; "))
                };
                println!(
                    "imported {} line(s) into {}{notes}",
                    done.written, args.tenant
                );
            }
            Command::Evaluate(args) => {
                evaluate::run(*args).await?;
            }
            Command::Demo(args) => {
                reco_server::telemetry::init();
                demo::run(args).await?;
            }
            Command::Tenant(TenantCommand::Create {
                name,
                dimension,
                metric,
                remote,
            }) => {
                let client = Client::new(&remote.url, remote.key.as_deref());
                let body = match dimension {
                    Some(dimension) => json!({ "dimension": dimension, "metric": metric }),
                    None => json!({}),
                };
                let tenant = client
                    .send(reqwest::Method::PUT, &format!("/v1/tenants/{name}"), &body)
                    .await?;
                println!("{tenant}");
            }
            Command::Tenant(TenantCommand::List { remote }) => {
                let client = Client::new(&remote.url, remote.key.as_deref());
                let list = client.get("/v1/tenants").await?;
                for tenant in list["tenants"].as_array().into_iter().flatten() {
                    println!("{}", tenant_line(tenant));
                }
            }
            Command::Tenant(TenantCommand::Delete { name, remote }) => {
                let client = Client::new(&remote.url, remote.key.as_deref());
                client.delete(&format!("/v1/tenants/{name}")).await?;
                println!("deleted {name}");
            }
            Command::Entities(EntitiesCommand::List {
                tenant,
                limit,
                after,
                all,
                vectors,
                remote,
            }) => {
                let client = Client::new(&remote.url, remote.key.as_deref());
                let mut after = after;
                loop {
                    let mut path =
                        format!("/v1/tenants/{tenant}/entities?limit={limit}&vectors={vectors}");
                    if let Some(id) = &after {
                        path.push_str("&after=");
                        path.push_str(&client::encode(id));
                    }
                    let page = client.get(&path).await?;
                    for entity in page["entities"].as_array().into_iter().flatten() {
                        println!("{entity}");
                    }
                    after = page["next"].as_str().map(str::to_owned);
                    match (&after, all) {
                        (Some(_), true) => {}
                        (Some(next), false) => {
                            eprintln!("more after {next}: --after '{next}', or --all");
                            break;
                        }
                        (None, _) => break,
                    }
                }
            }
            Command::Key(KeyCommand::Create { tenant, remote }) => {
                let client = Client::new(&remote.url, remote.key.as_deref());
                let key = client
                    .send(
                        reqwest::Method::POST,
                        &format!("/v1/tenants/{tenant}/keys"),
                        &json!({}),
                    )
                    .await?;
                println!("{}", key["key"].as_str().unwrap_or_default());
            }
        }
        Ok(())
    }
}

/// One line about a tenant: its name, vectors, sizes and model.
fn tenant_line(tenant: &serde_json::Value) -> String {
    let vectors = match (tenant["dimension"].as_u64(), tenant["metric"].as_str()) {
        (Some(dimension), Some(metric)) => format!("{dimension}-d {metric}"),
        _ => "no content vectors".to_owned(),
    };
    let model = match tenant["model"]["version"].as_u64() {
        Some(version) => format!("model v{version}"),
        None => "no model yet".to_owned(),
    };
    format!(
        "{}\t{vectors}\t{} entities\t{} interactions\t{model}",
        tenant["name"].as_str().unwrap_or_default(),
        tenant["entities"],
        tenant["interactions"],
    )
}
