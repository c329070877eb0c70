//! The small API client the commands share, and their errors.

use std::path::PathBuf;

use serde_json::Value;

/// Why a command did not finish.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The file could not be read.
    #[error("cannot read {path}: {reason}")]
    File { path: PathBuf, reason: String },
    /// Some lines are bad; nothing was written.
    #[error("{} bad line(s); nothing was written:\n{}", .0.len(), .0.join("\n"))]
    BadLines(Vec<String>),
    /// The service refused or failed a request.
    #[error("the service answered {status}: {body}")]
    Refused { status: u16, body: String },
    /// The service could not be reached.
    #[error("cannot reach the service: {0}")]
    Unreachable(String),
    /// The service described the tenant in a way this command cannot use.
    #[error("the tenant's settings are unusable: {0}")]
    Tenant(String),
}

/// A small client of the service's API.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: Option<String>,
}

impl Client {
    pub fn new(base: &str, key: Option<&str>) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            key: key.map(str::to_owned),
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
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::Unreachable(e.to_string()))?;
        if !(200..300).contains(&status) {
            return Err(CliError::Refused { status, body: text });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
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
