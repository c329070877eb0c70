//! The service through real HTTP: `TestApp::spawn` makes a fresh database and starts the server
//! on port 0, against PostgreSQL (with Redis) or the embedded SQLite.

mod api;
mod cli;
mod helpers;
mod migrate;
mod operations;
mod servers;
