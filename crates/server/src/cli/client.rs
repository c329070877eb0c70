//! The small API client the commands share, and their errors.

use std::path::PathBuf;

use serde_json::Value;

/// Why a command did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Some lines are bad; nothing was written. The first [`SHOWN_BAD_LINES`] are shown.
    #[error("{} bad line(s); nothing was written:\n{}", .0.len(), shown(.0))]
    BadLines(Vec<String>),
    /// The service refused or failed a request: its message and code, and a hint for the
    /// usual mistakes.
    #[error("{message} ({code}){hint}")]
    Refused {
        status: u16,
        code: String,
        message: String,
        hint: &'static str,
    },
    /// The service could not be reached.
    #[error("cannot reach the service at {url}: {reason}{hint}")]
    Unreachable {
        url: String,
        reason: String,
        hint: &'static str,
    },
    /// The service described the tenant in a way this command cannot use.
    #[error("the tenant's settings are unusable: {0}")]
    Tenant(String),
}

/// How many bad lines an error shows; the rest are counted.
pub const SHOWN_BAD_LINES: usize = 20;

fn shown(lines: &[String]) -> String {
    let mut text = lines[..lines.len().min(SHOWN_BAD_LINES)].join("\n");
    if lines.len() > SHOWN_BAD_LINES {
        text.push_str(&format!("\n... and {} more", lines.len() - SHOWN_BAD_LINES));
    }
    text
}

/// A small client of the service's API.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    /// A client of the service at `base` (`127.0.0.1:8080` means `http://127.0.0.1:8080`).
    pub fn new(base: &str, key: Option<&str>) -> Self {
        let base = base.trim_end_matches('/');
        let base = if base.contains("://") {
            base.to_owned()
        } else {
            format!("http://{base}")
        };
        Self {
            http: reqwest::Client::new(),
            base,
            key: key.map(str::to_owned),
        }
    }

    /// The service's address, as used.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn unreachable(&self, e: &reqwest::Error) -> CliError {
        use std::error::Error;
        // reqwest's own text ("error sending request") says less than its source's.
        let mut reason = e.to_string();
        let mut source = e.source();
        while let Some(inner) = source {
            reason = inner.to_string();
            source = inner.source();
        }
        let hint = if e.is_connect() {
            "; is `reco serve` running there? (--url or RECO_URL names another place)"
        } else if e.is_builder() {
            "; the URL looks like http://127.0.0.1:8080"
        } else {
            ""
        };
        CliError::Unreachable {
            url: self.base.clone(),
            reason,
            hint,
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, CliError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| self.unreachable(&e))?;
        if !(200..300).contains(&status) {
            return Err(refused(status, &text, self.key.is_some()));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn delete(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<Value, CliError> {
        self.call(method, path, Some(body)).await
    }
}

/// Percent-encodes a query value.
pub fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The error of a refusal: the envelope's message and code (or the status and text, when the
/// answer is not the envelope), with a hint for the usual mistakes.
fn refused(status: u16, text: &str, sent_key: bool) -> CliError {
    let envelope: Option<Value> = serde_json::from_str(text).ok();
    let error = envelope.as_ref().map(|e| &e["error"]);
    let field = |name: &str| error.and_then(|e| e[name].as_str()).map(str::to_owned);
    let hint = match (status, sent_key) {
        (401, false) => "; give the admin key with --key or RECO_ADMIN_KEY",
        (401, true) => "; check the key (--key or RECO_ADMIN_KEY)",
        (403, _) => "; this needs the admin key, or a key of this tenant",
        (404, _) if field("message").is_some_and(|m| m.starts_with("tenant")) => {
            "; `reco tenant list` shows the tenants, `reco tenant create` makes one"
        }
        _ => "",
    };
    CliError::Refused {
        status,
        code: field("code").unwrap_or_else(|| format!("HTTP {status}")),
        message: field("message").unwrap_or_else(|| text.trim().to_owned()),
        hint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_a_sentence_with_their_code_and_a_hint() {
        let body = r#"{"error":{"code":"unauthorized","message":"this key is not valid"}}"#;
        assert_eq!(
            refused(401, body, true).to_string(),
            "this key is not valid (unauthorized); check the key (--key or RECO_ADMIN_KEY)"
        );
        assert_eq!(
            refused(502, "bad gateway", false).to_string(),
            "bad gateway (HTTP 502)"
        );
    }

    #[test]
    fn at_most_twenty_bad_lines_are_shown_and_the_rest_counted() {
        let lines: Vec<String> = (1..=25).map(|n| format!("line {n}: bad")).collect();
        let text = CliError::BadLines(lines).to_string();
        assert!(text.starts_with("25 bad line(s); nothing was written:\nline 1: bad\n"));
        assert!(text.contains("line 20: bad\n... and 5 more"), "{text}");
        assert!(!text.contains("line 21"));
    }

    #[test]
    fn a_url_without_a_scheme_means_http() {
        assert_eq!(
            Client::new("127.0.0.1:8080/", None).base,
            "http://127.0.0.1:8080"
        );
        assert_eq!(
            Client::new("https://reco.example", None).base,
            "https://reco.example"
        );
    }
}
