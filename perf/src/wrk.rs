//! Driving wrk: a Lua script that replays a request file and writes its figures as JSON.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The script: each wrk thread replays the request file from its own offset; `done` writes the
/// summary, latencies in microseconds, to `$WRK_RESULT`.
const SCRIPT: &str = r#"
local lines = {}
local threads = {}
local next_id = 1

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(os.getenv("WRK_REQUESTS")) do
    local method, path, body = line:match("^(%u+)\t([^\t]*)\t(.*)$")
    if body == "" then body = nil end
    table.insert(lines, {method, path, body})
  end
  position = ((id - 1) * 7919) % #lines
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("WRK_KEY")
  wrk.headers["Content-Type"] = "application/json"
  pace = tonumber(os.getenv("WRK_PACE_MS") or "0")
end

function delay()
  return pace
end
function request()
  position = position % #lines + 1
  local l = lines[position]
  return wrk.format(l[1], l[2], nil, l[3])
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = io.open(os.getenv("WRK_RESULT"), "w")
  out:write(string.format(
    '{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,' ..
    '"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,"max_us":%d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
  out:close()
end
"#;

/// What wrk measured.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    /// Socket errors, by kind.
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    /// Answers with a status of 400 or more.
    pub status: u64,
    pub p50_us: u64,
    pub p95_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl WrkResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    pub fn socket_errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout
    }
}

/// A load of `connections` connections on 2 threads for `duration`, replaying `requests`.
#[derive(Debug)]
pub struct Load<'a> {
    pub base: &'a str,
    pub key: &'a str,
    pub requests: &'a Path,
    pub connections: u32,
    pub duration: Duration,
    pub work: &'a Path,
    /// Milliseconds each connection rests before each request (none: as fast as answered).
    pub pace_ms: u32,
}

pub fn run(load: &Load<'_>) -> Result<WrkResult> {
    let script = load.work.join("replay.lua");
    std::fs::write(&script, SCRIPT)?;
    let result = load.work.join("wrk-result.json");
    let _ = std::fs::remove_file(&result);
    let out = Command::new("wrk")
        .args(["-t2", &format!("-c{}", load.connections)])
        .arg(format!("-d{}s", load.duration.as_secs().max(1)))
        .args(["--timeout", "10s", "-s"])
        .arg(&script)
        .arg(load.base)
        .env("WRK_REQUESTS", load.requests)
        .env("WRK_RESULT", &result)
        .env("WRK_KEY", load.key)
        .env("WRK_PACE_MS", load.pace_ms.to_string())
        .output()
        .context("running wrk (apt-get install wrk)")?;
    if !out.status.success() {
        bail!("wrk failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&result).context("wrk wrote no result")?;
    parse(&text)
}

fn parse(text: &str) -> Result<WrkResult> {
    serde_json::from_str(text).with_context(|| format!("wrk's result `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_parse_and_sum() {
        let r = parse(
            r#"{"requests":2000,"duration_us":2000000,"connect":1,"read":2,"write":3,"status":4,
            "timeout":5,"p50_us":10,"p95_us":20,"p99_us":30,"max_us":40}"#,
        )
        .unwrap();
        assert_eq!(r.throughput(), 1000.0);
        assert_eq!(r.socket_errors(), 11);
        assert_eq!(r.status, 4);
        assert!(parse("nope").is_err());
    }
}
