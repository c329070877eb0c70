//! The `reco` binary and (with issue 4) the HTTP API, tested from the outside.

mod migrate;
