//! The service through real HTTP: `TestApp::spawn` makes a fresh database and starts the server
//! on port 0, against PostgreSQL (with Redis) or the embedded SQLite.

/// Runs each named `async fn(Backend)` as a test on PostgreSQL (with Redis) and on SQLite.
macro_rules! both {
    ($($test:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test] async fn $test() { super::$test(crate::helpers::Backend::Postgres).await; })*
        }
        mod sqlite {
            $(#[tokio::test] async fn $test() { super::$test(crate::helpers::Backend::Sqlite).await; })*
        }
    };
}

mod api;
mod cli;
mod contract;
mod dashboard;
mod hardening;
mod helpers;
mod listing;
mod migrate;
mod operations;
mod process;
mod servers;
