//! The engine's integration tests: every mode against a naive reference on random data, the
//! cache against no cache, concurrent writers and readers, and every error path.

mod approximate;
mod bounded;
mod cache;
mod collaborative;
mod concurrency;
mod errors;
mod evaluate;
mod images;
mod listing;
mod recommend;
mod reference;
mod scans;
mod search;
mod stamps;
mod support;
mod users;
