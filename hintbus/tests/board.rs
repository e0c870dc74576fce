//! The BLF board (web/assets) in a real headless Chromium, driven over WebDriver by
//! chromedriver: a broker process serving the board, agent processes against simulated
//! Asterisk servers in the test process, and the page read as a wall screen shows it.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`./dev setup` installs them). Without them
//! every test returns at once and one line says why; with `HINTBUS_REQUIRE_BROWSER=1` (CI) a
//! missing browser fails the test instead: a skipped suite must not pass for a run one.

mod common;

use ami::DeviceState;
use base64::Engine;
use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sim::{MemberConfig, QueueConfig, Sim, SimConfig};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Every extension of the federation: `SIP/1000` sorts after `SIP/201` only if sorted naturally.
const ALL: [&str; 6] = ["100", "101", "200", "201", "1000", "300"];
/// A presence message with everything HTML would take for markup.
const MARKUP: &str = "<b>&\"' back at 3";
const TOKEN: &str = "board-test-token-5b1d0c7e";

// ---- the browser ---------------------------------------------------------------------------

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .chain([PathBuf::from("/usr/bin")])
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or None after saying once why the board tests are skipped.
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    static SAID: std::sync::Once = std::sync::Once::new();
    let chromium = find_program(&["chromium", "chromium-browser"]);
    let driver = find_program(&["chromedriver"]);
    if let (Some(c), Some(d)) = (&chromium, &driver) {
        return Some((c.clone(), d.clone()));
    }
    let missing = match (&chromium, &driver) {
        (None, None) => "chromium and chromedriver",
        (None, _) => "chromium",
        _ => "chromedriver",
    };
    if std::env::var("HINTBUS_REQUIRE_BROWSER").as_deref() == Ok("1") {
        panic!("HINTBUS_REQUIRE_BROWSER=1 but {missing} not found (apt-get install chromium chromium-driver)");
    }
    SAID.call_once(|| {
        report(&format!(
            "board: skipped: {missing} not found (./dev setup installs Debian's chromium and chromium-driver)"
        ))
    });
    None
}

/// A short-timeout HTTP client that hands back every status (a 401 is an answer here).
fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// GET `url` (with a bearer token): status and body, or None when nothing answers.
fn get(url: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut req = http().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", &format!("Bearer {t}"));
    }
    let mut resp = req.call().ok()?;
    let status = resp.status().as_u16();
    Some((status, resp.body_mut().read_to_string().unwrap_or_default()))
}

/// chromedriver and the Chromium it starts, in a process group of their own: ended when
/// dropped, a panic included (the WebDriver client's own shutdown is async and would not run).
struct Driver {
    child: Child,
    port: u16,
    session: Option<String>,
    /// `--user-data-dir`: removed last, once nothing uses it.
    profile: Dir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Politely first: chromedriver closes its Chromium.
        if let Some(s) = &self.session {
            let _ = http()
                .delete(&format!("http://127.0.0.1:{}/session/{s}", self.port))
                .call();
        }
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on the process group this test made (process_group(0) at spawn).
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        // Anything of this profile that left the group (Chromium's crash handler does).
        let needle = self.profile.0.to_string_lossy().into_owned();
        for _ in 0..100 {
            let left = processes_with_arg(&needle);
            if left.is_empty() {
                break;
            }
            for pid in left {
                // SAFETY: kill(2) of a process started for this test's own profile directory.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Live (not zombie) processes whose command line holds `needle`.
fn processes_with_arg(needle: &str) -> Vec<libc::pid_t> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let me = std::process::id() as libc::pid_t;
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie && String::from_utf8_lossy(&cmd).contains(needle)
        })
        .collect()
}

/// A headless Chromium page under WebDriver.
struct Browser {
    client: Client,
    /// Held to end them on drop; declared after the client, so dropped after it.
    _driver: Driver,
}

impl Browser {
    /// chromedriver on a free port (its log in `dir`), and a new session of Chromium.
    async fn start(dir: &Dir, name: &str, (chromium, chromedriver): &(PathBuf, PathBuf)) -> Browser {
        let port = free_port();
        let log = std::fs::File::create(dir.0.join("chromedriver.log")).unwrap();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let mut driver = Driver {
            child,
            port,
            session: None,
            profile: Dir::new(&format!("{name}-chromium")),
        };
        let base = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let ready = get(&format!("{base}/status"), None)
                .and_then(|(_, body)| serde_json::from_str::<Value>(&body).ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver not ready on {base}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--no-first-run",
                    "--window-size=1440,1000",
                    format!("--user-data-dir={}", driver.profile.0.display()),
                ],
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&base)
            .await
            .expect("a Chromium session");
        driver.session = client.session_id().await.ok().flatten();
        Browser {
            client,
            _driver: driver,
        }
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.client.execute(script, args).await.expect("script runs")
    }

    /// Polls `script` until `ok` holds of what it returns (WAIT is only the failure bound);
    /// the last value otherwise.
    async fn wait(&self, script: &str, args: Vec<Value>, ok: impl Fn(&Value) -> bool) -> Result<Value, Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let v = self.js(script, args.clone()).await;
            if ok(&v) {
                return Ok(v);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(v);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls a script that returns true when it holds.
    async fn wait_true(&self, script: &str, args: Vec<Value>) -> bool {
        self.wait(script, args, |v| *v == json!(true)).await.is_ok()
    }

    /// What the page shows, for a failure's message.
    async fn describe(&self) -> String {
        self.js(
            "const b = document.body, banner = document.getElementById('banner');\
             const lamps = [...document.querySelectorAll('.lamp')].map(e => `${e.dataset.origin}/${e.dataset.name}=${e.dataset.state}`);\
             return `live=${b.dataset.live} version=${b.dataset.version} banner=${banner.hidden ? 'hidden' : banner.textContent} \
             hash=${location.hash} lamps=[${lamps.join(' ')}] presence=${document.querySelectorAll('.pres').length} \
             members=${document.querySelectorAll('.member').length}`;",
            vec![],
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// A PNG of the page to `target/test-artifacts/<name>`; its path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = artifacts();
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }
}

/// The workspace's target directory (CARGO_TARGET_DIR when set), `test-artifacts` in it.
fn artifacts() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(t) if !t.is_empty() => workspace.join(t),
        _ => workspace.join("target"),
    };
    target.join("test-artifacts")
}

// ---- the page's hooks ----------------------------------------------------------------------

/// The state a lamp shows (its `data-state`), null without one.
const LAMP_STATE: &str = "const [o, n] = arguments;\
    const e = document.querySelector(`.lamp[data-origin=\"${CSS.escape(o)}\"][data-name=\"${CSS.escape(n)}\"]`);\
    return e && e.checkVisibility() ? e.dataset.state : null;";

/// Whether every server named shows a lamp and the board is live.
const LAMPS_OF: &str = "return document.body.dataset.live === '1' && [...arguments].every(o =>\
    [...document.querySelectorAll(`.lamp[data-origin=\"${CSS.escape(o)}\"]`)].some(e => e.checkVisibility()));";

/// Names of the visible lamps of a server, in page order.
const VISIBLE_NAMES: &str =
    "return [...document.querySelectorAll(`.lamp[data-origin=\"${CSS.escape(arguments[0])}\"]`)]\
    .filter(e => e.checkVisibility()).map(e => e.dataset.name);";

const BANNER_SHOWN: &str = "const b = document.getElementById('banner');\
    return !b.hidden && b.checkVisibility() && document.body.dataset.live !== '1';";

const LIVE_AGAIN: &str = "const b = document.getElementById('banner');\
    return b.hidden && !b.checkVisibility() && document.body.dataset.live === '1';";

// ---- the federation ------------------------------------------------------------------------

/// Broker and agent processes; field order is drop order (processes, then their directory).
struct Scene {
    agents: Vec<Proc>,
    broker: Proc,
    dir: Dir,
}

impl Scene {
    fn start(dir: Dir, broker_extra: &str, sims: &[Sim]) -> Scene {
        let port = free_port();
        let cfg = broker_config(&dir, port);
        if !broker_extra.is_empty() {
            let text = std::fs::read_to_string(&cfg).unwrap();
            std::fs::write(&cfg, format!("{text}\n{broker_extra}")).unwrap();
        }
        let broker = Proc::start(&dir, "broker", &["broker", "-c", cfg.to_str().unwrap()]);
        let agents = sims.iter().map(|s| start_agent(&dir, port, s)).collect();
        Scene { agents, broker, dir }
    }

    fn logs(&self) -> String {
        let mut s = format!("--- broker\n{}", self.broker.log_text());
        for a in &self.agents {
            s.push_str(&format!("--- {}\n{}", a.log.display(), a.log_text()));
        }
        let driver = std::fs::read_to_string(self.dir.0.join("chromedriver.log")).unwrap_or_default();
        s.push_str(&format!("--- chromedriver (last lines)\n{}", tail(&driver, 30)));
        s
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Server a: phones 100 and 101, and a queue with 101 as its member Alice.
fn server_a() -> SimConfig {
    let mut c = SimConfig::federated("a", &["100", "101"], &ALL);
    c.queues.push(QueueConfig {
        name: "support".into(),
        strategy: "ringall".into(),
        ringinuse: false,
        members: vec![MemberConfig {
            interface: "SIP/101".into(),
            name: "Alice".into(),
            state_interface: "SIP/101".into(),
            penalty: 0,
        }],
    });
    c.mwi = sim::voicemail::MwiProvider::Voicemail(vec!["100@default".into()]);
    c
}

// ---- the tests -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_shows_the_federation_live_and_survives_a_broker_restart() {
    let Some(programs) = browser_or_skip() else { return };
    let sims = vec![
        Sim::start(server_a()).await.unwrap(),
        Sim::start(SimConfig::federated("b", &["200", "201", "1000"], &ALL))
            .await
            .unwrap(),
        Sim::start(SimConfig::federated("c", &["300"], &ALL)).await.unwrap(),
    ];
    let mut scene = Scene::start(Dir::new("board"), "", &sims);
    let addr = scene.broker.http_addr(0).await.expect("the broker's HTTP listener");
    let browser = Browser::start(&scene.dir, "board", &programs).await;
    let b = &browser;
    b.client.goto(&format!("http://{addr}/")).await.unwrap();

    // Every server's lamps, sorted naturally.
    assert!(
        b.wait_true(LAMPS_OF, vec![json!("a"), json!("b"), json!("c")]).await,
        "{}\n{}",
        b.describe().await,
        scene.logs()
    );
    let names = b
        .wait(VISIBLE_NAMES, vec![json!("b")], |v| {
            v.as_array().is_some_and(|a| {
                a.iter()
                    .filter(|n| n.as_str().is_some_and(|n| n.starts_with("SIP/")))
                    .count()
                    == 3
            })
        })
        .await
        .unwrap_or_else(|v| panic!("b's phones: {v}"));
    let phones: Vec<&str> = names
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n.as_str())
        .filter(|n| n.starts_with("SIP/"))
        .collect();
    assert_eq!(phones, ["SIP/200", "SIP/201", "SIP/1000"]);

    // A phone goes off-hook on a.
    sims[0].set_device("SIP/100", DeviceState::Inuse);
    let shown = b
        .wait(LAMP_STATE, vec![json!("a"), json!("SIP/100")], |v| *v == json!("INUSE"))
        .await;
    assert!(shown.is_ok(), "{shown:?}\n{}\n{}", b.describe().await, scene.logs());

    // Presence whose message is markup: shown as text.
    let encoded = base64::engine::general_purpose::STANDARD.encode(MARKUP);
    assert!(sims[0].set_presence("CustomPresence:100", &format!("dnd,,{encoded},e")));
    let pres = b
        .wait(
            "const e = document.querySelector('.pres[data-origin=\"a\"][data-name=\"CustomPresence:100\"]');\
             if (!e) return null;\
             const m = e.querySelector('.msg');\
             return {state: e.dataset.presence, text: m.textContent, elements: m.children.length, bold: e.querySelectorAll('b').length,\
                     shown: e.innerText};",
            vec![],
            |v| v["state"] == json!("dnd") && v["text"] == json!(MARKUP),
        )
        .await;
    let pres = pres.unwrap_or_else(|v| panic!("presence: {v}\n{}", scene.logs()));
    assert_eq!(
        (pres["elements"].clone(), pres["bold"].clone()),
        (json!(0), json!(0)),
        "{pres}"
    );

    // A voicemail is left on a: its mailbox lamp lights, with the counts in words.
    assert!(sims[0].set_voicemail("100@default", 2, 1));
    let mwi = b
        .wait(
            "const e = document.querySelector('.lamp[data-origin=\"a\"][data-name=\"100@default\"]');\
             return e && e.checkVisibility() ? {kind: e.dataset.kind, state: e.dataset.state, text: e.innerText} : null;",
            vec![],
            |v| v["state"] == json!("waiting"),
        )
        .await
        .unwrap_or_else(|v| panic!("mailbox: {v}\n{}", scene.logs()));
    assert_eq!(mwi["kind"], json!("mailbox"), "{mwi}");
    assert!(mwi["text"].as_str().unwrap().contains("2 new, 1 old"), "{mwi}");
    assert!(pres["shown"].as_str().unwrap().contains(MARKUP), "{pres}");

    // Queue members: Alice takes a call, then pauses (the reason is markup too).
    let call = sims[0].queue_call("support", "5551").expect("Alice takes the call");
    let member = "const e = document.querySelector('.member[data-origin=\"a\"][data-member=\"SIP/101\"]');\
         return e && e.checkVisibility() ? {event: e.dataset.event, paused: e.dataset.paused, name: e.dataset.name,\
         text: e.textContent, elements: e.querySelectorAll('b').length} : null;";
    let on_call = b.wait(member, vec![], |v| v["event"] == json!("connect")).await;
    assert!(on_call.is_ok(), "{on_call:?}\n{}\n{}", b.describe().await, scene.logs());
    sims[0].complete_call(call, "agent").unwrap();
    let done = b
        .wait(member, vec![], |v| {
            v["event"] == json!("complete") && v["paused"] == json!("0") && v["name"] == json!("Alice")
        })
        .await;
    assert!(done.is_ok(), "{done:?}\n{}", scene.logs());
    sims[0]
        .pause_member("support", "SIP/101", true, "<b>lunch</b>")
        .unwrap();
    let paused = b
        .wait(member, vec![], |v| {
            v["event"] == json!("pause") && v["paused"] == json!("1")
        })
        .await;
    let paused = paused.unwrap_or_else(|v| panic!("paused: {v}\n{}", scene.logs()));
    assert!(paused["text"].as_str().unwrap().contains("<b>lunch</b>"), "{paused}");
    assert_eq!(paused["elements"], json!(0), "{paused}");

    // Only server b, then only names with "sip/20": live, and kept in the URL.
    b.client
        .find(Locator::Css("#server"))
        .await
        .unwrap()
        .select_by_value("b")
        .await
        .unwrap();
    assert!(
        b.wait_true(
            "return location.hash.includes('server=b') && [...document.querySelectorAll('.lamp')].every(e =>\
             e.dataset.origin === 'b' || !e.checkVisibility()) && [...document.querySelectorAll('.lamp[data-origin=\"b\"]')].some(e => e.checkVisibility());",
            vec![]
        )
        .await,
        "{}",
        b.describe().await
    );
    b.client
        .find(Locator::Css("#filter"))
        .await
        .unwrap()
        .send_keys("sip/20")
        .await
        .unwrap();
    let only = b
        .wait(VISIBLE_NAMES, vec![json!("b")], |v| *v == json!(["SIP/200", "SIP/201"]))
        .await;
    assert!(only.is_ok(), "{only:?} {}", b.describe().await);
    // A reload (a wall screen's link) keeps both.
    b.client.refresh().await.unwrap();
    let kept = b
        .wait(
            &format!(
                "return document.body.dataset.live === '1' && document.getElementById('server').value === 'b'\
                 && document.getElementById('filter').value === 'sip/20' && ({})('b').join() === 'SIP/200,SIP/201'\
                 && [...document.querySelectorAll('.lamp[data-origin=\"a\"]')].every(e => !e.checkVisibility());",
                "(o) => [...document.querySelectorAll(`.lamp[data-origin=\"${o}\"]`)].filter(e => e.checkVisibility()).map(e => e.dataset.name)"
            ),
            vec![],
            |v| *v == json!(true),
        )
        .await;
    assert!(kept.is_ok(), "{}", b.describe().await);
    // And back to everything.
    b.client
        .find(Locator::Css("#filter"))
        .await
        .unwrap()
        .clear()
        .await
        .unwrap();
    b.client
        .find(Locator::Css("#server"))
        .await
        .unwrap()
        .select_by_value("")
        .await
        .unwrap();
    assert!(
        b.wait_true(LAMPS_OF, vec![json!("a"), json!("b"), json!("c")]).await
            && b.js("return location.hash", vec![]).await == json!(""),
        "{}",
        b.describe().await
    );

    // The broker dies: the page says so.
    let http_port = addr.port();
    scene.broker.kill();
    assert!(b.wait_true(BANNER_SHOWN, vec![]).await, "{}", b.describe().await);
    let lost = b.screenshot("board-lost.png").await;
    // A change while it is down...
    sims[0].set_device("SIP/101", DeviceState::Onhold);
    // ...and the broker back on the same ports.
    let from = scene.broker.log_text().len();
    let cfg = scene.dir.0.join("broker.ini");
    scene.broker = Proc::start_env(
        &scene.dir,
        "broker",
        &["broker", "-c", cfg.to_str().unwrap()],
        &[("HINTBUS_HTTP__LISTEN", &format!("127.0.0.1:{http_port}"))],
    );
    let again = scene.broker.http_addr(from).await;
    assert_eq!(again, Some(addr), "{}", scene.logs());
    assert!(
        b.wait_true(LIVE_AGAIN, vec![]).await,
        "{}\n{}",
        b.describe().await,
        scene.logs()
    );
    assert!(
        b.wait_true(LAMPS_OF, vec![json!("a"), json!("b"), json!("c")]).await,
        "{}\n{}",
        b.describe().await,
        scene.logs()
    );
    let held = b
        .wait(LAMP_STATE, vec![json!("a"), json!("SIP/101")], |v| {
            *v == json!("ONHOLD")
        })
        .await;
    assert!(held.is_ok(), "{held:?}\n{}\n{}", b.describe().await, scene.logs());
    assert_eq!(
        b.js(LAMP_STATE, vec![json!("a"), json!("SIP/100")]).await,
        json!("INUSE")
    );
    // A new broker knows queue members from their next events only: Alice's come through.
    sims[0].pause_member("support", "SIP/101", false, "").unwrap();
    sims[0].pause_member("support", "SIP/101", true, "lunch").unwrap();
    let back = b
        .wait(member, vec![], |v| {
            v["paused"] == json!("1") && v["text"].as_str().is_some_and(|t| t.contains("lunch"))
        })
        .await;
    assert!(back.is_ok(), "{back:?}\n{}", scene.logs());

    // As a wall screen shows it: no control focused.
    b.js("document.activeElement && document.activeElement.blur()", vec![])
        .await;
    let shot = b.screenshot("board.png").await;
    report(&format!(
        "board: screenshot {} (feed lost: {})",
        shot.display(),
        lost.display()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn board_with_a_token() {
    let Some(programs) = browser_or_skip() else { return };
    let sims = vec![Sim::start(SimConfig::federated("a", &["100"], &["100"])).await.unwrap()];
    let scene = Scene::start(Dir::new("board-token"), &format!("[http]\ntoken = {TOKEN}\n"), &sims);
    let addr = scene.broker.http_addr(0).await.expect("the broker's HTTP listener");

    let table = format!("http://{addr}/api/table");
    assert_eq!(get(&table, None).map(|(s, _)| s), Some(401), "{}", scene.logs());
    assert_eq!(get(&table, Some("not-the-token-at-all")).map(|(s, _)| s), Some(401));
    assert_eq!(get(&table, Some(TOKEN)).map(|(s, _)| s), Some(200));

    let browser = Browser::start(&scene.dir, "board-token", &programs).await;
    let b = &browser;
    // Without the token the page is served, but the feed is refused.
    b.client.goto(&format!("http://{addr}/")).await.unwrap();
    assert!(b.wait_true(BANNER_SHOWN, vec![]).await, "{}", b.describe().await);
    b.client.goto("about:blank").await.unwrap();
    b.client.goto(&format!("http://{addr}/#token={TOKEN}")).await.unwrap();
    assert!(
        b.wait_true(LAMPS_OF, vec![json!("a")]).await,
        "{}\n{}",
        b.describe().await,
        scene.logs()
    );
    let state = b
        .wait(LAMP_STATE, vec![json!("a"), json!("SIP/100")], |v| {
            *v == json!("NOT_INUSE")
        })
        .await;
    assert!(state.is_ok(), "{state:?}");
    // The token stays in the URL (a wall screen's link), and only there.
    let url = b.client.current_url().await.unwrap();
    assert_eq!(url.fragment(), Some(format!("token={TOKEN}").as_str()));
}
