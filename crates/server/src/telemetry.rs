//! Logs for people and for machines: text (coloured on a terminal) when stderr is a terminal,
//! JSON lines otherwise; `RECO_LOG_FORMAT` (`auto`, `text` or `json`) overrides, and colour is
//! never written into a file. Lines are filtered by `RECO_LOG` (or `RUST_LOG`; default `info`,
//! with actix's worker lines at `warn`).
//! Every request's lines carry its request id.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text for a person, in colour.
    TerminalText,
    /// Text without colour (`RECO_LOG_FORMAT=text` into a file or a pipe).
    PlainText,
    /// One JSON object a line.
    Json,
}

impl LogFormat {
    /// The format `RECO_LOG_FORMAT` asks for (`auto` when unset), for a stderr that is a
    /// terminal or not.
    pub fn choose(asked: Option<&str>, terminal: bool) -> Result<Self, String> {
        match (asked.unwrap_or("auto"), terminal) {
            ("auto" | "text", true) => Ok(Self::TerminalText),
            ("text", false) => Ok(Self::PlainText),
            ("auto" | "json", false) | ("json", true) => Ok(Self::Json),
            (other, _) => Err(format!(
                "RECO_LOG_FORMAT is auto, text or json, not `{other}`"
            )),
        }
    }
}

/// Installs the subscriber once; later calls do nothing (tests build many servers).
pub fn init() {
    let filter = std::env::var("RECO_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        // actix's own lines about workers starting and stopping say nothing reco's do not.
        .unwrap_or_else(|| EnvFilter::new("info,actix_server=warn"));
    let asked = std::env::var("RECO_LOG_FORMAT").ok();
    let format = LogFormat::choose(asked.as_deref(), std::io::stderr().is_terminal());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        Ok(LogFormat::TerminalText) => builder.with_ansi(true).try_init(),
        Ok(LogFormat::PlainText) => builder.with_ansi(false).try_init(),
        Ok(LogFormat::Json) => builder
            .json()
            .flatten_event(true)
            // The request's span (id, method, path) once, as `span`: the list of every
            // enclosing span would repeat it on each line (measured: the access log's JSON was
            // 6% of a request's server time).
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        Err(e) => {
            let installed = builder.with_ansi(false).try_init();
            tracing::warn!("{e}; writing text");
            installed
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_on_a_terminal_json_elsewhere_unless_asked_and_never_colour_into_a_file() {
        assert_eq!(LogFormat::choose(None, true), Ok(LogFormat::TerminalText));
        assert_eq!(LogFormat::choose(None, false), Ok(LogFormat::Json));
        assert_eq!(
            LogFormat::choose(Some("text"), false),
            Ok(LogFormat::PlainText)
        );
        assert_eq!(LogFormat::choose(Some("json"), true), Ok(LogFormat::Json));
        assert!(LogFormat::choose(Some("xml"), true).is_err());
    }
}
