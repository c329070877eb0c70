#![allow(clippy::print_stdout)]
//! The `reco` binary.
//!
//! `reco migrate` applies the database migrations to the database of `DATABASE_URL`
//! (PostgreSQL), or to the embedded SQLite file under `./data` when it is not set. The service
//! itself (`reco serve`) and the other commands arrive with the HTTP layer.

use anyhow::Context;
use reco_server::Settings;
use reco_storage::{PostgresSettings, SqliteSettings, Store};

const USAGE: &str = "usage: reco migrate\n\n\
    migrate   apply the database migrations (DATABASE_URL, or ./data/reco.db when unset)";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["migrate"] => migrate().await,
        ["--help" | "-h" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    }
}

async fn migrate() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    let store = Store::open(
        settings.database_url.as_deref(),
        PostgresSettings {
            min_connections: 0,
            ..PostgresSettings::default()
        },
        SqliteSettings::default(),
    )
    .await
    .context("opening the database")?;
    store.migrate().await.context("applying the migrations")?;
    println!("migrated the {} database", store.backend());
    Ok(())
}
