//! The `reco` binary: `serve` runs the service; `migrate` applies the database migrations.

use anyhow::Context;
use clap::{Parser, Subcommand};
use reco_server::{Application, ServeArgs, Settings};
use reco_storage::Store;

#[derive(Parser)]
#[command(
    name = "reco",
    version,
    about = "A high-throughput recommendation engine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service.
    Serve(ServeArgs),
    /// Apply the database migrations and exit.
    Migrate(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    reco_server::telemetry::init();
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = Settings::resolve(args)?;
            let app = Application::build(settings)
                .await
                .context("starting the service")?;
            tracing::info!(port = app.port(), "listening");
            app.run_until_stopped().await?;
        }
        Command::Migrate(args) => {
            let mut settings = Settings::resolve(args)?;
            settings.postgres.min_connections = 0;
            let store = Store::open(
                settings.database_url.as_deref(),
                settings.postgres,
                settings.sqlite,
            )
            .await
            .context("opening the database")?;
            store.migrate().await.context("applying the migrations")?;
            #[allow(clippy::print_stdout)]
            {
                println!("migrated the {} database", store.backend());
            }
        }
    }
    Ok(())
}
