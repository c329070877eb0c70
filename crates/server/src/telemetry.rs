//! Structured logs: JSON lines on stderr (or text with `RECO_LOG_FORMAT=text`), filtered by
//! `RUST_LOG` (default `info`). Every request's lines carry its request id.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; later calls do nothing (tests build many servers).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var("RECO_LOG_FORMAT").is_ok_and(|f| f == "text");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if text {
        builder.try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init()
    };
}
