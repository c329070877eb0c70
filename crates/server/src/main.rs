//! The `reco` binary: `serve` runs the service, `migrate` applies the migrations, and `import`,
//! `tenant create` and `key create` talk to a running service (see `cli`).

#![allow(clippy::print_stdout)]

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match cli::Cli::parse().run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line (its causes after colons), never a backtrace: these are a user's
            // errors to act on, not the program's.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("error: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
