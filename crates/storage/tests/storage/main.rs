//! Storage against real servers: PostgreSQL 18 with pgvector and valkey, started by
//! `scripts/services` (the README's test command does it), and SQLite files. Each test makes a
//! fresh database.

mod conformance;
mod helpers;
mod images;
mod postgres;
mod redis;
