//! The HTTP API of real broker and agent processes: metrics, status, the table and the
//! WebSocket that continues it without a gap, and the token.

mod common;

use ami::DeviceState;
use common::*;
use futures::StreamExt;
use serde_json::Value;
use sim::{Sim, SimConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;

const ALL: [&str; 4] = ["100", "101", "102", "200"];

/// GET `path`: status and body (blocking, off the runtime's threads).
async fn get(addr: SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
    let url = format!("http://{addr}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut req = agent.get(&url);
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        let mut resp = req.call().expect("the listener answers");
        let status = resp.status().as_u16();
        (status, resp.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

async fn get_json(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = get(addr, path, None).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `path` until `ok` holds for its JSON.
async fn wait_json(addr: SocketAddr, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = get_json(addr, path).await;
        if ok(&v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{path} never became right: {v}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Fields drop in order: the processes before their directory.
struct Running {
    agents: Vec<Proc>,
    broker: Proc,
    http: SocketAddr,
    /// Kept until the processes are gone (never read).
    _dir: Dir,
}

async fn start(name: &str, sims: &[Sim], extra: &str) -> Running {
    let dir = Dir::new(name);
    let port = free_port();
    let cfg = broker_config(&dir, port);
    let text = std::fs::read_to_string(&cfg).unwrap() + extra;
    std::fs::write(&cfg, text).unwrap();
    let broker = Proc::start(&dir, "broker", &["broker", "-c", cfg.to_str().unwrap()]);
    let agents = sims.iter().map(|s| start_agent(&dir, port, s)).collect();
    let http = broker.http_addr(0).await.expect("the broker says where it listens");
    Running {
        _dir: dir,
        broker,
        agents,
        http,
    }
}

async fn two_servers() -> Vec<Sim> {
    vec![
        Sim::start(SimConfig::federated("a", &["100", "101", "102"], &ALL))
            .await
            .unwrap(),
        Sim::start(SimConfig::federated("b", &["200"], &ALL)).await.unwrap(),
    ]
}

fn agents_of(v: &Value) -> Vec<String> {
    v["agents"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["server"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The value of one exposition line (`name{labels} value`).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_status_show_the_federation() {
    let sims = two_servers().await;
    let mut r = start("http-status", &sims, "").await;
    let status = wait_json(r.http, "/api/status", |v| agents_of(v) == ["a", "b"]).await;
    assert_eq!(status["role"], "broker");
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    assert!(wait_state(&sims[1], "Custom:SIP/100", DeviceState::Inuse).await);
    let (code, text) = get(r.http, "/metrics", None).await;
    assert_eq!(code, 200);
    assert_eq!(metric(&text, "hintbus_broker_sessions"), Some(2.0), "{text}");
    assert!(metric(&text, r#"hintbus_broker_updates_in_total{server="a",kind="device"}"#).unwrap_or(0.0) >= 1.0);
    assert!(metric(&text, r#"hintbus_broker_updates_out_total{server="b"}"#).unwrap_or(0.0) >= 1.0);
    assert!(metric(&text, "hintbus_process_resident_memory_bytes").unwrap_or(0.0) > 1e6);
    let a = &status["agents"][0];
    assert_eq!(a["software"], "hintbus 0.1.0");
    assert!(a["connected_ms"].as_u64().unwrap_or(0) > 1_700_000_000_000);

    // The agents' own listeners: their status and their metrics.
    let agent_http = r.agents[0].http_addr(0).await.expect("agent a's listener");
    let own = get_json(agent_http, "/api/status").await;
    assert_eq!(
        (own["role"].as_str(), own["server"].as_str()),
        (Some("agent"), Some("a"))
    );
    let (code, text) = get(agent_http, "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(text.contains("hintbus_process_resident_memory_bytes"), "{text}");
    let (code, _) = get(agent_http, "/api/table", None).await;
    assert_eq!(code, 404, "an agent has no table of its own to serve");

    // `hintbus status` on the command line says the same, and all is well.
    let out = status_cmd(r.http);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("SERVER  AGENT") && text.lines().any(|l| l.starts_with("b ")),
        "{text}"
    );

    // A killed agent is lost, and said so.
    r.agents[0].kill();
    let status = wait_json(r.http, "/api/status", |v| {
        v["lost"]
            .as_array()
            .is_some_and(|l| l.iter().any(|x| x["server"] == "a"))
    })
    .await;
    assert_eq!(agents_of(&status), ["b"]);
    let (_, text) = get(r.http, "/metrics", None).await;
    assert_eq!(
        metric(&text, r#"hintbus_broker_heartbeats_missed_total{server="a"}"#),
        Some(1.0),
        "{text}"
    );
    let out = status_cmd(r.http);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "a lost server is something wrong: {text}");
    assert!(text.contains("LOST a: no agent for"), "{text}");
    drop(r);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next message of a WebSocket; fails (not hangs) when none comes.
async fn next_message(ws: &mut Ws) -> tokio_tungstenite::tungstenite::Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("a message in time")
        .expect("the socket is open")
        .expect("a message")
}

/// `hintbus status --url` of a listener.
fn status_cmd(addr: SocketAddr) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args(["status", "--url", &addr.to_string()])
        .output()
        .unwrap()
}

/// The table as a client holds it: (origin, kind, name) -> state or presence.
type View = BTreeMap<(String, String, String), String>;

fn key(e: &Value) -> (String, String, String) {
    let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
    (s("origin"), s("kind"), s("name"))
}

fn value(e: &Value) -> Option<String> {
    e.get("state")
        .filter(|s| !s.is_null())
        .map(|s| format!("{s}{}{}", e["subtype"], e["message"]))
}

fn apply(view: &mut View, entries: &Value) {
    for e in entries.as_array().unwrap() {
        match value(e) {
            Some(v) => view.insert(key(e), v),
            None => view.remove(&key(e)),
        };
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_continues_the_table_without_a_gap() {
    let sims = two_servers().await;
    let r = start("http-ws", &sims, "").await;
    wait_json(r.http, "/api/status", |v| agents_of(v) == ["a", "b"]).await;
    // Changes keep coming while the client fetches the table and then joins the stream.
    let a = sims[0].clone();
    let traffic = tokio::spawn(async move {
        for i in 0..3000u32 {
            let state = [DeviceState::Inuse, DeviceState::Ringing, DeviceState::NotInuse][(i / 3 % 3) as usize];
            a.set_device(&format!("SIP/{}", 100 + i % 3), state);
            if i % 20 == 0 {
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    });
    tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    let table = get_json(r.http, "/api/table").await;
    let mut known = table["version"].as_u64().unwrap();
    let mut view = View::new();
    apply(&mut view, &table["entries"]);
    let url = format!("ws://{}/api/ws?since={known}&broker={}", r.http, table["broker"]);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    traffic.await.unwrap();
    // A sentinel after the traffic, from the same server (the same path, in order): once it
    // has come, everything before it has.
    sims[0].set_device("SIP/100", DeviceState::Busy);
    let sentinel = ("a".to_string(), "device".to_string(), "SIP/100".to_string());
    let (mut changes, mut tables) = (0, 0);
    while view.get(&sentinel).map(String::as_str) != Some("\"BUSY\"nullnull") {
        let msg = next_message(&mut ws).await;
        let tokio_tungstenite::tungstenite::Message::Text(text) = msg else {
            continue;
        };
        let m: Value = serde_json::from_str(&text).unwrap();
        match m["type"].as_str() {
            Some("changes") => {
                for e in m["entries"].as_array().unwrap() {
                    let v = e["version"].as_u64().unwrap();
                    assert_eq!(v, known + 1, "a gap or a repeat after version {known}: {e}");
                    known = v;
                }
                apply(&mut view, &m["entries"]);
                changes += 1;
            }
            Some("table") => {
                // Allowed (the client was behind): it replaces the view.
                view.clear();
                apply(&mut view, &m["entries"]);
                known = m["version"].as_u64().unwrap();
                tables += 1;
            }
            _ => {}
        }
    }
    assert!(changes > 0, "the traffic came as changes");
    assert_eq!(tables, 0, "the client holding the table was not sent it again");
    // What the client built is the table.
    let now = get_json(r.http, "/api/table").await;
    let mut fresh = View::new();
    apply(&mut fresh, &now["entries"]);
    assert_eq!(view, fresh);
    assert_eq!(now["version"].as_u64(), Some(known));
    report(&format!(
        "websocket: {changes} change messages, {tables} tables, continued from the table to version {known} without a gap"
    ));

    // A client without `since` gets the table first.
    let (mut ws2, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", r.http))
        .await
        .unwrap();
    let first = next_message(&mut ws2).await;
    let m: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(
        (m["type"].as_str(), m["version"].as_u64()),
        (Some("table"), Some(known))
    );
    drop(r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_nothing_without_it_and_the_token_is_never_shown() {
    const TOKEN: &str = "0123456789abcdef-not-guessable";
    let sims = two_servers().await;
    let r = start("http-token", &sims, &format!("\n[http]\ntoken = {TOKEN}\n")).await;
    for path in ["/api/status", "/api/table", "/metrics", "/api/ws"] {
        let (code, body) = get(r.http, path, None).await;
        assert_eq!(code, 401, "{path}: {body}");
        let (code, _) = get(r.http, path, Some("wrong-token-of-the-same-size")).await;
        assert_eq!(code, 401, "{path} with a wrong token");
    }
    let (code, body) = get(r.http, "/api/status", Some(TOKEN)).await;
    assert_eq!(code, 200, "{body}");
    // In the query only for the WebSocket: elsewhere it would be in proxies' logs.
    let (code, _) = get(r.http, &format!("/api/status?token={TOKEN}"), None).await;
    assert_eq!(code, 401);
    for path in ["/api/status", "/api/table", "/metrics"] {
        let (_, body) = get(r.http, path, Some(TOKEN)).await;
        assert!(!body.contains(TOKEN), "{path} shows the token");
    }
    // The board's page is no secret; its data is.
    let (code, page) = get(r.http, "/", None).await;
    assert_eq!(code, 200);
    assert!(page.contains("<html"));
    // A browser's WebSocket sends the token in the query.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws?token={TOKEN}", r.http))
        .await
        .unwrap();
    let first = next_message(&mut ws).await;
    assert!(first.to_text().unwrap().contains("\"type\":\"table\""));
    assert!(!r.broker.log_text().contains(TOKEN), "the token is in the log");
}

#[test]
fn a_listener_beyond_loopback_without_a_token_is_refused_naming_file_key_and_value() {
    let dir = Dir::new("http-refused");
    let cfg = dir.write(
        "broker.ini",
        "[broker]\nlisten = tcp://127.0.0.1:5999\n\n[http]\nlisten = 0.0.0.0:5580\n",
    );
    let out = check_config("broker", &cfg);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("broker.ini") && err.contains("[http] listen = \"0.0.0.0:5580\"") && err.contains("token"),
        "{err}"
    );
    let short = dir.write("short.ini", "[http]\nlisten = 0.0.0.0:5580\ntoken = short\n");
    let out = check_config("broker", &short);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[http] token = \"***\"") && !err.contains("short\n"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_members_events_reach_the_websocket_and_the_table() {
    let mut a = SimConfig::federated("a", &["100", "101", "102"], &ALL);
    a.queues
        .push(sim::QueueConfig::one_member("support", "SIP/100", "Alice", ""));
    let sims = vec![
        Sim::start(a).await.unwrap(),
        Sim::start(SimConfig::federated("b", &["200"], &ALL)).await.unwrap(),
    ];
    let r = start("http-queue", &sims, "").await;
    wait_json(r.http, "/api/status", |v| agents_of(v) == ["a", "b"]).await;
    // The broker lists an agent from its hello; the agent sends queue events (which are not
    // kept for later) once its session is live, after the snapshot: waited for at the agent.
    let agent_a = r.agents[0].http_addr(0).await.expect("agent a's listener");
    wait_json(agent_a, "/api/status", |v| v["broker"]["state"] == "live").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/api/ws", r.http))
        .await
        .unwrap();
    // The table first: from then on the client is subscribed, and no event can pass it by.
    let first = next_message(&mut ws).await;
    assert!(first.to_text().unwrap().contains("\"type\":\"table\""));
    let call = sims[0].queue_call("support", "5551000").unwrap();
    sims[0].complete_call(call, "agent").unwrap();
    sims[0].pause_member("support", "SIP/100", true, "lunch").unwrap();
    let mut seen = Vec::new();
    // One deadline for all of them: the socket's pings would restart a timeout per message.
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.iter().any(|e: &Value| e["event"] == "pause") {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("queue events come")
            .unwrap()
            .unwrap();
        let Ok(m) = serde_json::from_str::<Value>(msg.to_text().unwrap_or("")) else {
            continue;
        };
        if m["type"] == "queue" {
            seen.extend(m["events"].as_array().unwrap().iter().cloned());
        }
    }
    let events: Vec<&str> = seen.iter().filter_map(|e| e["event"].as_str()).collect();
    assert_eq!(events, ["called", "connect", "complete", "pause"], "{seen:?}");
    assert!(seen
        .iter()
        .all(|e| e["origin"] == "a" && e["queue"] == "support" && e["interface"] == "SIP/100"));
    assert_eq!(seen[0]["member"], "Alice");
    // A client that joins later sees the member as it is now.
    let table = get_json(r.http, "/api/table").await;
    let m = &table["queue"][0];
    assert_eq!(
        (
            m["member"].as_str(),
            m["event"].as_str(),
            m["paused"].as_bool(),
            m["reason"].as_str()
        ),
        (Some("Alice"), Some("pause"), Some(true), Some("lunch")),
        "{table}"
    );
    drop(r);
}
