//! The `reco` binary: `serve` runs the service, `migrate` applies the migrations, and `import`,
//! `tenant create` and `key create` talk to a running service (see `cli`).

#![allow(clippy::print_stdout)]

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::Cli::parse().run().await
}
