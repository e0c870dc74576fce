//! `hintbus status`: what `/api/status` says, as a table for an administrator on ssh.
//!
//! It asks the listener the configuration names (`[http] listen`, with its token), so that
//! on the broker's host `hintbus status` is all there is to type. The exit status says the
//! same for scripts and monitoring: 0 all well, 1 not reachable, 2 something is wrong (a
//! server lost, an Asterisk not connected, an agent without its broker).

use crate::config::{self, Loaded};
use clap::Args;
use serde_json::Value;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct StatusArgs {
    /// The configuration file whose `[http]` listener and token are used.
    #[arg(short, long, default_value = "/etc/hintbus/config.ini")]
    config: PathBuf,
    /// Ask this listener instead (`host:port` or `http://host:port`).
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Which listener of the file: the broker's (the default when the file has a
    /// `[broker]` section) or the agent's.
    #[arg(long, value_parser = ["broker", "agent"])]
    role: Option<String>,
    /// Print the JSON as the API gives it.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> ExitCode {
    match fetch(&args) {
        Ok(v) if args.json => {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            verdict(&v)
        }
        Ok(v) => {
            print!("{}", render(&v));
            verdict(&v)
        }
        Err(e) => {
            eprintln!("hintbus: {e}");
            ExitCode::from(1)
        }
    }
}

/// The listener and token to ask: `--url`, else the file's `[http]`.
fn target(args: &StatusArgs) -> Result<(String, Option<String>), String> {
    let token = std::env::var("HINTBUS_HTTP__TOKEN").ok().filter(|t| !t.is_empty());
    if let Some(u) = &args.url {
        return Ok((u.clone(), token));
    }
    let loaded = Loaded::read(&args.config, None).map_err(|e| format!("{e} (or give --url)"))?;
    let broker = match args.role.as_deref() {
        Some(r) => r == "broker",
        None => {
            loaded.section("broker").entries().next().is_some() || loaded.section("agent").entries().next().is_none()
        }
    };
    let default = if broker {
        config::BROKER_LISTEN
    } else {
        config::AGENT_LISTEN
    };
    let http = config::http(&loaded, default).map_err(|e| e.to_string())?;
    let listen = http.listen.ok_or_else(|| {
        format!(
            "{}: [http] listen = off: there is nothing to ask (or give --url)",
            args.config.display()
        )
    })?;
    Ok((listen, http.token.or(token)))
}

fn fetch(args: &StatusArgs) -> Result<Value, String> {
    let (listen, token) = target(args)?;
    let base = if listen.starts_with("http://") || listen.starts_with("https://") {
        listen.trim_end_matches('/').to_string()
    } else {
        format!("http://{}", listen.replace("0.0.0.0", "127.0.0.1"))
    };
    let url = format!("{base}/api/status");
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into();
    let mut req = agent.get(&url);
    if let Some(t) = &token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req
        .call()
        .map_err(|e| format!("{url}: {e} (is the service running? `systemctl status hintbus-broker`)"))?;
    let code = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    match code {
        200 => serde_json::from_str(&body).map_err(|e| format!("{url}: not hintbus's status: {e}")),
        401 => Err(format!(
            "{url}: 401: the listener wants [http] token (from the file, or HINTBUS_HTTP__TOKEN)"
        )),
        c => Err(format!("{url}: HTTP {c}: {}", body.trim())),
    }
}

/// 0 when all is well, 2 when something needs an administrator.
fn verdict(v: &Value) -> ExitCode {
    let bad = match v["role"].as_str() {
        Some("broker") => {
            v["lost"].as_array().is_some_and(|l| !l.is_empty())
                || agents(v).iter().any(|a| a["ami_connected"] == Value::Bool(false))
        }
        _ => v["ami"]["connected"] != Value::Bool(true) || v["broker"]["state"] != "live",
    };
    if bad {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn agents(v: &Value) -> Vec<&Value> {
    v["agents"].as_array().map(|a| a.iter().collect()).unwrap_or_default()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => ami::shown(s).to_string(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// `3 s`, `4 min`, `2 h 5 min`, `3 d 4 h`.
fn ago(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms} ms"),
        1..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
        _ => format!("{} d {} h", secs / 86_400, secs % 86_400 / 3600),
    }
}

fn since(unix_ms: Option<u64>) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    unix_ms.map_or("-".into(), |t| ago(now.saturating_sub(t)))
}

fn render(v: &Value) -> String {
    let mut out = String::new();
    if v["role"] == "broker" {
        out.push_str(&format!(
            "broker {} ({}), up {}, table {} entries at version {}\n",
            s(&v["instance"]),
            s(&v["software"]),
            ago(v["uptime_ms"].as_u64().unwrap_or(0)),
            s(&v["table"]["entries"]),
            s(&v["table"]["version"])
        ));
        let mut rows = vec![[
            "SERVER",
            "AGENT",
            "ASTERISK",
            "AMI",
            "CONNECTED",
            "HEARD",
            "QUEUED",
            "LAG",
            "IN",
            "OUT",
        ]
        .map(String::from)];
        for a in agents(v) {
            let ami = match a["ami_connected"] {
                Value::Bool(true) => "up".to_string(),
                Value::Bool(false) => format!("DOWN {}", s(&a["ami_detail"])).trim_end().to_string(),
                _ => "-".into(),
            };
            rows.push([
                s(&a["server"]),
                s(&a["software"]),
                s(&a["asterisk"]),
                ami,
                since(a["connected_ms"].as_u64()),
                format!("{} ago", ago(a["last_heard_ms_ago"].as_u64().unwrap_or(0))),
                s(&a["queued"]),
                ago(a["lag_ms"].as_u64().unwrap_or(0)),
                s(&a["updates_in"]),
                s(&a["updates_out"]),
            ]);
        }
        out.push_str(&columns(&rows));
        let lost = v["lost"].as_array().cloned().unwrap_or_default();
        if agents(v).is_empty() {
            out.push_str("no agent connected\n");
        }
        for l in lost {
            out.push_str(&format!(
                "LOST {}: no agent for {}\n",
                s(&l["server"]),
                since(l["since_ms"].as_u64())
            ));
        }
    } else {
        let ami = &v["ami"];
        let b = &v["broker"];
        out.push_str(&format!(
            "agent of {} ({}), up {}\n",
            s(&v["server"]),
            s(&v["software"]),
            ago(v["uptime_ms"].as_u64().unwrap_or(0))
        ));
        out.push_str(&format!(
            "Asterisk {}: {} for {}{}\n",
            s(&ami["asterisk"]),
            if ami["connected"] == Value::Bool(true) {
                "connected"
            } else {
                "NOT CONNECTED"
            },
            since(ami["since_ms"].as_u64()),
            match ami["detail"].as_str() {
                Some(d) if !d.is_empty() => format!(" ({})", ami::shown(d)),
                _ => String::new(),
            }
        ));
        out.push_str(&format!(
            "broker {}: {} for {}, heard {} ago\n",
            s(&b["endpoint"]),
            s(&b["state"]),
            since(b["since_ms"].as_u64()),
            ago(b["last_heard_ms_ago"].as_u64().unwrap_or(0))
        ));
        out.push_str(&format!(
            "mirrors {}, writes pending {}\n",
            s(&v["mirrors"]),
            s(&v["pending_writes"])
        ));
    }
    out
}

/// Left-aligned columns, two blanks apart.
fn columns<const N: usize>(rows: &[[String; N]]) -> String {
    let mut width = [0usize; N];
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> = r.iter().zip(width).map(|(c, w)| format!("{c:<w$}")).collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_broker_with_a_lost_server_is_a_table_and_exit_2() {
        let v = json!({
            "role": "broker", "software": "hintbus 0.1.0", "instance": 42, "uptime_ms": 125_000,
            "table": {"entries": 3, "version": 9},
            "agents": [{"server": "a", "software": "hintbus 0.1.0", "asterisk": "22.10.1", "ami_connected": true,
                        "ami_detail": "", "connected_ms": 0, "last_heard_ms_ago": 120, "queued": 0, "lag_ms": 0,
                        "updates_in": 5, "updates_out": 7}],
            "lost": [{"server": "c\u{1b}[31m", "since_ms": 0}]
        });
        let text = render(&v);
        assert!(
            text.starts_with("broker 42 (hintbus 0.1.0), up 2 min, table 3 entries at version 9\n"),
            "{text}"
        );
        assert!(text.contains("SERVER  AGENT          ASTERISK  AMI"), "{text}");
        assert!(text.contains("a       hintbus 0.1.0  22.10.1   up"), "{text}");
        assert!(text.contains("LOST c\\u{1b}[31m") || !text.contains('\u{1b}'), "{text}");
        assert_eq!(verdict(&v), ExitCode::from(2));
        assert_eq!(ago(90_000), "90 s");
        assert_eq!(ago(7_500_000), "2 h 5 min");
    }
}
