//! The federation against real Asterisk 22 servers: each test configures and starts its own
//! instances (from the build under `HINTBUS_ASTERISK_PREFIX`, made by `./dev asterisk`), runs
//! the broker and the agents as processes of the built binary, and reads the result the way an
//! administrator would: DeviceStateList / PresenceStateList and events on a session of its own.
//!
//! Without `HINTBUS_ASTERISK_PREFIX` every test returns at once and one line says why.
//!
//! Names: a server's "phones" are `Custom:SIP/<n>` devices the test sets (the minimal build has
//! no SIP channel driver; to hintbus a device is a device), its DND lamp `Custom:DND<n>`.
//! With the default template a remote `Custom:SIP/100` lands as `Custom:Custom:SIP/100`.

mod common;

use common::asterisk::{is_event, prefix_or_skip, Asterisk, Session, Setup, States};
use common::*;
use rand::Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Broker, agents and Asterisk instances of one test. Field order is drop order: processes
/// first, the directory they use last.
struct Fed {
    agents: BTreeMap<String, Proc>,
    broker: Proc,
    asterisks: Vec<Asterisk>,
    port: u16,
    /// Extra `[agent]` lines per server.
    agent_extra: BTreeMap<String, String>,
    dir: Dir,
}

fn dialplan(extra: &str) -> String {
    format!(
        "[default]\nexten => 100,hint,Custom:SIP/100\n{extra}\n\
         [agents]\nexten => 100,1,Answer()\n same => n,Wait(2)\n same => n,Hangup()\n\
         [callq]\nexten => s,1,Answer()\n same => n,Queue(support,,,,30)\n same => n,Hangup()\n\
         [callsales]\nexten => s,1,Answer()\n same => n,Queue(sales,,,,30)\n same => n,Hangup()\n"
    )
}

impl Fed {
    /// Instances named `names`, a broker, and one agent each.
    fn start(prefix: &Path, test: &str, names: &[&str], setup: impl Fn(&str) -> Setup) -> Fed {
        Self::start_with(prefix, test, names, setup, BTreeMap::new())
    }

    fn start_with(
        prefix: &Path,
        test: &str,
        names: &[&str],
        setup: impl Fn(&str) -> Setup,
        agent_extra: BTreeMap<String, String>,
    ) -> Fed {
        let dir = Dir::new(&format!("ra-{test}"));
        let asterisks: Vec<Asterisk> = names
            .iter()
            .map(|n| Asterisk::start(prefix, &dir, n, &setup(n)))
            .collect();
        let port = free_port();
        let broker_ini = broker_config(&dir, port);
        let broker = Proc::start(&dir, "broker", &["broker", "-c", broker_ini.to_str().unwrap()]);
        let mut fed = Fed {
            agents: BTreeMap::new(),
            broker,
            asterisks,
            port,
            agent_extra,
            dir,
        };
        for n in names {
            fed.start_agent(n);
        }
        fed
    }

    fn ast(&self, name: &str) -> &Asterisk {
        self.asterisks.iter().find(|a| a.name == name).unwrap()
    }

    fn ast_mut(&mut self, name: &str) -> &mut Asterisk {
        self.asterisks.iter_mut().find(|a| a.name == name).unwrap()
    }

    fn agent_ini(&self, server: &str) -> PathBuf {
        let extra = self.agent_extra.get(server).cloned().unwrap_or_default();
        self.dir.write(
            &format!("agent-{server}.ini"),
            &format!(
                "[agent]\nserver = {server}\nbroker = tcp://127.0.0.1:{}\nheartbeat_ms = 200\nbroker_timeout_ms = 1000\n{extra}\n{}",
                self.port,
                self.ast(server).ami_section()
            ),
        )
    }

    fn start_agent(&mut self, server: &str) {
        let ini = self.agent_ini(server);
        let p = Proc::start(
            &self.dir,
            &format!("agent-{server}"),
            &["agent", "-c", ini.to_str().unwrap()],
        );
        self.agents.insert(server.to_string(), p);
    }

    fn kill_agent(&mut self, server: &str) {
        if let Some(mut p) = self.agents.remove(server) {
            p.kill();
        }
    }

    fn restart_broker(&mut self) {
        self.broker.kill();
        let ini = self.dir.0.join("broker.ini");
        self.broker = Proc::start(&self.dir, "broker", &["broker", "-c", ini.to_str().unwrap()]);
    }

    /// Every process's log and Asterisk's own, for a failed assertion.
    fn logs(&self) -> String {
        let mut s = format!("--- broker\n{}", self.broker.log_text());
        for (n, a) in &self.agents {
            s.push_str(&format!("--- agent {n}\n{}", a.log_text()));
        }
        for a in &self.asterisks {
            s.push_str(&format!("--- asterisk {}\n{}", a.name, a.log()));
        }
        s
    }
}

fn has(states: &States, name: &str, value: &str) -> bool {
    states.get(name).map(String::as_str) == Some(value)
}

/// Device names in a list that are mirrors of mirrors (`Custom:Custom:Custom:...`): a
/// republished mirror.
fn mirrors_of_mirrors(states: &States) -> Vec<String> {
    states
        .keys()
        .filter(|k| k.starts_with("Custom:Custom:Custom:") || k.starts_with("CustomPresence:CustomPresence:"))
        .cloned()
        .collect()
}

/// Sets a sentinel on `from` and waits until every other session shows its mirror: what
/// `from`'s agent published before it has crossed too (one device's updates are never
/// reordered, and one agent's updates leave in order).
async fn sentinel(fed: &Fed, from: &Session, origin: &str, others: &[&Session], n: u32) {
    let name = format!("Custom:SENT{origin}{n}");
    from.set_device(&name, "RINGING").await;
    let mirror = format!("Custom:{name}");
    for s in others {
        assert!(
            s.wait_devices(|d| has(d, &mirror, "RINGING")).await,
            "sentinel {mirror} never crossed\n{}",
            fed.logs()
        );
    }
}

/// Scenario 1: a device state and a genuine Custom state (a DND lamp) set on a appear on b
/// and c; nothing is echoed back to a or re-published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_cross_without_echo() {
    let Some(prefix) = prefix_or_skip() else { return };
    let fed = Fed::start(&prefix, "cross", &["a", "b", "c"], |_| Setup {
        extensions: dialplan("exten => 200,hint,Custom:Custom:SIP/100"),
        ..Setup::default()
    });
    let (sa, sb, sc) = (
        fed.ast("a").session().await,
        fed.ast("b").session().await,
        fed.ast("c").session().await,
    );
    // The agents are up once a first change has crossed; then one change is timed.
    sentinel(&fed, &sa, "a", &[&sb, &sc], 0).await;
    let (from_b, from_c) = (sb.mark(), sc.mark());
    let t = Instant::now();
    sa.set_device("Custom:SIP/100", "INUSE").await;
    let mirrored = |m: &ami::Message| is_event(m, "DeviceStateChange", "Device", "Custom:Custom:SIP/100");
    assert!(sb.wait_event(from_b, mirrored).await.is_some(), "{}", fed.logs());
    let to_b = t.elapsed();
    assert!(sc.wait_event(from_c, mirrored).await.is_some(), "{}", fed.logs());
    report(&format!(
        "real_asterisk: latency, Setvar answered on a to the mirror's event on b: {to_b:?} (c: {:?})",
        t.elapsed()
    ));
    sa.set_device("Custom:DND100", "BUSY").await;
    for s in [&sb, &sc] {
        assert!(
            s.wait_devices(|d| has(d, "Custom:Custom:SIP/100", "INUSE") && has(d, "Custom:Custom:DND100", "BUSY"))
                .await,
            "{}",
            fed.logs()
        );
    }
    // The hint on b that watches a's phone lights up.
    assert!(
        sb.wait_event(0, |m| is_event(m, "ExtensionStatus", "Exten", "200")
            && m.get("StatusText") == Some("InUse"))
            .await
            .is_some(),
        "b's hint 200 never showed InUse"
    );
    // A later change of b and c crosses to everyone: an echo of the first ones would have too.
    sentinel(&fed, &sb, "b", &[&sa, &sc], 1).await;
    sentinel(&fed, &sc, "c", &[&sa, &sb], 1).await;
    for (name, s) in [("a", &sa), ("b", &sb), ("c", &sc)] {
        let d = s.devices().await;
        assert!(
            mirrors_of_mirrors(&d).is_empty(),
            "{name} holds mirrors of mirrors: {d:?}"
        );
    }
    let on_a: Vec<String> = sa
        .events_since(0)
        .iter()
        .filter(|m| m.event_name() == Some("DeviceStateChange"))
        .filter_map(|m| m.get("Device").map(str::to_string))
        .filter(|d| d.contains("SIP/100") || d.contains("DND100"))
        .collect();
    assert_eq!(
        on_a,
        ["Custom:SIP/100", "Custom:DND100"],
        "a's own states came back to it"
    );
    assert!(
        sa.events_since(0)
            .iter()
            .all(|m| !m.get("Device").is_some_and(|d| d.starts_with("Custom:Custom:SENTa"))),
        "a's sentinel came back to it"
    );
    // b wrote each mirror once: no write loop.
    let writes = |s: &Session, dev: &str| {
        s.events_since(0)
            .iter()
            .filter(|m| is_event(m, "DeviceStateChange", "Device", dev))
            .count()
    };
    assert_eq!(writes(&sb, "Custom:Custom:SIP/100"), 1);
    assert_eq!(writes(&sc, "Custom:Custom:DND100"), 1);
}

/// Scenario 2: presence with a comma, non-ASCII characters and characters Asterisk escapes
/// round-trips, without ping-pong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_round_trips_without_ping_pong() {
    let Some(prefix) = prefix_or_skip() else { return };
    let fed = Fed::start(&prefix, "presence", &["a", "b"], |_| Setup {
        extensions: dialplan(""),
        ..Setup::default()
    });
    let (sa, sb) = (fed.ast("a").session().await, fed.ast("b").session().await);
    let message = "in a meeting, café \"Zürich\" what's up?";
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(s)
    };
    sa.set_presence(
        "CustomPresence:100",
        &format!("dnd,{},{},e", b64("meeting"), b64(message)),
    )
    .await;
    // As Asterisk reports it on a (its own escaping included), so on b.
    let on_a = sa.presences().await;
    let want = on_a.get("CustomPresence:100").cloned().unwrap();
    assert!(want.starts_with("dnd,meeting,in a meeting, café"), "{want}");
    assert!(
        sb.wait_presences(|p| has(p, "CustomPresence:100", &want)).await,
        "b: {:?}\n{}",
        sb.presences().await,
        fed.logs()
    );
    // b's change crosses to a after it: an echo of a's would have come before.
    sb.set_presence("CustomPresence:200", "away,,back at 3").await;
    assert!(
        sa.wait_presences(|p| has(p, "CustomPresence:200", "away,,back at 3"))
            .await
    );
    sentinel(&fed, &sb, "b", &[&sa], 1).await;
    let count = |s: &Session, who: &str| {
        s.events_since(0)
            .iter()
            .filter(|m| is_event(m, "PresenceStateChange", "Presentity", who))
            .count()
    };
    assert_eq!(count(&sa, "CustomPresence:100"), 1, "a saw its presence written back");
    assert_eq!(count(&sb, "CustomPresence:100"), 1, "b wrote the mirror more than once");
    assert_eq!(count(&sb, "CustomPresence:200"), 1);
    assert_eq!(count(&sa, "CustomPresence:200"), 1);
}

/// Scenario 3: b's Asterisk restarts; its mirrors, slash names included, are right again soon
/// after it is fully booted, and what its restore made of them is not published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_restart_gets_its_mirrors_back() {
    let Some(prefix) = prefix_or_skip() else { return };
    let mut fed = Fed::start(&prefix, "restart", &["a", "b"], |_| Setup {
        extensions: dialplan(""),
        ..Setup::default()
    });
    let sa = fed.ast("a").session().await;
    sa.set_device("Custom:SIP/100", "INUSE").await;
    sa.set_device("Custom:DND100", "BUSY").await;
    sa.set_presence("CustomPresence:100", "away,,lunch").await;
    {
        let sb = fed.ast("b").session().await;
        assert!(
            sb.wait_devices(|d| has(d, "Custom:Custom:SIP/100", "INUSE") && has(d, "Custom:Custom:DND100", "BUSY"))
                .await,
            "{}",
            fed.logs()
        );
        sb.client.shutdown();
    }
    fed.ast_mut("b").stop();
    // A change while b is down must reach it too.
    sa.set_device("Custom:DND100", "NOT_INUSE").await;
    let booted = fed.ast_mut("b").boot();
    let sb = fed.ast("b").session().await;
    let ok = sb
        .wait_devices(|d| has(d, "Custom:Custom:SIP/100", "INUSE") && has(d, "Custom:Custom:DND100", "NOT_INUSE"))
        .await;
    let devices_at = booted.elapsed();
    assert!(ok, "b after restart: {:?}\n{}", sb.devices().await, fed.logs());
    assert!(
        sb.wait_presences(|p| has(p, "CustomPresence:100", "away,,lunch")).await,
        "{}",
        fed.logs()
    );
    report(&format!(
        "real_asterisk: b's mirrors right {devices_at:?} after its restart was fully booted"
    ));
    // Asterisk restored Custom:Custom:SIP/100 as Custom:100: that is not b's own state.
    sentinel(&fed, &sb, "b", &[&sa], 1).await;
    let d = sa.devices().await;
    assert!(
        !d.contains_key("Custom:Custom:100"),
        "b published its restore artifact: {d:?}"
    );
    assert!(mirrors_of_mirrors(&d).is_empty(), "{d:?}");
}

/// Scenario 4: a's agent is killed: a's devices read UNAVAILABLE on b; it comes back: the real
/// states return, one that changed meanwhile included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_agent_goes_unavailable_and_comes_back() {
    let Some(prefix) = prefix_or_skip() else { return };
    let mut fed = Fed::start(&prefix, "lost", &["a", "b"], |_| Setup {
        extensions: dialplan(""),
        ..Setup::default()
    });
    let (sa, sb) = (fed.ast("a").session().await, fed.ast("b").session().await);
    sa.set_device("Custom:SIP/100", "INUSE").await;
    sa.set_device("Custom:SIP/101", "NOT_INUSE").await;
    let both = |d: &States, x: &str, y: &str| has(d, "Custom:Custom:SIP/100", x) && has(d, "Custom:Custom:SIP/101", y);
    assert!(
        sb.wait_devices(|d| both(d, "INUSE", "NOT_INUSE")).await,
        "{}",
        fed.logs()
    );
    fed.kill_agent("a");
    let lost_at = Instant::now();
    assert!(
        sb.wait_devices(|d| both(d, "UNAVAILABLE", "UNAVAILABLE")).await,
        "{}",
        fed.logs()
    );
    report(&format!(
        "real_asterisk: a's agent killed: UNAVAILABLE on b after {:?}",
        lost_at.elapsed()
    ));
    sa.set_device("Custom:SIP/101", "BUSY").await;
    fed.start_agent("a");
    assert!(sb.wait_devices(|d| both(d, "INUSE", "BUSY")).await, "{}", fed.logs());
}

/// Scenario 5: the queue guard on a real queue call (ringinuse=no): the guard name, which the
/// member's state interface (a hint) holds, is INUSE from AgentConnect until the call ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_guard_on_a_real_call() {
    let Some(prefix) = prefix_or_skip() else { return };
    let mut extra = BTreeMap::new();
    extra.insert(
        "a".to_string(),
        "queue_guard = on\nguard_template = Custom:{membername}\n".to_string(),
    );
    let fed = Fed::start_with(
        &prefix,
        "guard",
        &["a", "b"],
        |_| Setup {
            extensions: dialplan("exten => agent100,hint,Custom:agent100"),
            queues: "[support]\nstrategy = ringall\nringinuse = no\n\
                     member => Local/100@agents,0,agent100,hint:agent100@default\n"
                .into(),
            ..Setup::default()
        },
        extra,
    );
    let (sa, sb) = (fed.ast("a").session().await, fed.ast("b").session().await);
    // The agent is up and has reconciled the queue once its first sync crossed.
    sentinel(&fed, &sa, "a", &[&sb], 1).await;
    guarded_call(&fed, &sa, "callq", "support", "Custom:agent100").await;
    // The guard's state is a's own: it is shared too.
    assert!(
        sb.wait_devices(|d| has(d, "Custom:Custom:agent100", "NOT_INUSE")).await,
        "{}",
        fed.logs()
    );

    // A queue and a static member added by `queue reload all`: app_queue says nothing of the
    // member, and AgentConnect does not carry its state interface. Its name has blanks, so
    // the template would give an unusable name: the guard must look the member up.
    fed.ast("a").write_etc(
        "queues.conf",
        "[support]\nstrategy = ringall\nringinuse = no\n\
         member => Local/100@agents,0,agent100,hint:agent100@default\n\
         [sales]\nstrategy = ringall\nringinuse = no\n\
         member => Local/100@agents,0,Acc Agent 100,Custom:accagent100\n",
    );
    fed.ast("a").cli("queue reload all");
    guarded_call(&fed, &sa, "callsales", "sales", "Custom:accagent100").await;
    let spaced: Vec<String> = sa
        .devices()
        .await
        .into_keys()
        .filter(|d| d.starts_with("Custom:") && d.contains(' '))
        .collect();
    assert!(spaced.is_empty(), "guard names with blanks: {spaced:?}");
}

/// A real call into `queue` (through the dialplan context `context`): the guard name `guard`
/// reads INUSE after AgentConnect and before AgentComplete, and NOT_INUSE after the call.
async fn guarded_call(fed: &Fed, sa: &Session, context: &str, queue: &str, guard: &str) {
    let from = sa.mark();
    let r = sa
        .client
        .action(
            ami::Message::action("Originate")
                .with("Channel", format!("Local/s@{context}"))
                .with("Application", "Wait")
                .with("Data", "20")
                .with("Async", "true"),
        )
        .await;
    assert!(r.is_ok(), "{r:?}");
    let guard_is = |state: &'static str| {
        move |m: &ami::Message| is_event(m, "DeviceStateChange", "Device", guard) && m.get("State") == Some(state)
    };
    let connect = sa
        .wait_event(from, |m| is_event(m, "AgentConnect", "Queue", queue))
        .await
        .unwrap_or_else(|| panic!("no AgentConnect in {queue}"));
    let inuse = sa
        .wait_event(from, guard_is("INUSE"))
        .await
        .unwrap_or_else(|| panic!("guard never set {guard} INUSE\n{}", fed.logs()));
    let complete = sa
        .wait_event(from, |m| is_event(m, "AgentComplete", "Queue", queue))
        .await
        .unwrap_or_else(|| panic!("no AgentComplete in {queue}"));
    assert!(
        connect < inuse && inuse < complete,
        "{guard} INUSE at {inuse}, call {connect}..{complete}"
    );
    assert!(
        sa.wait_event(complete, guard_is("NOT_INUSE")).await.is_some(),
        "guard never released {guard}\n{}",
        fed.logs()
    );
}

/// Scenario 6: a device Asterisk reports as UNKNOWN and a presence message longer than 255
/// bytes on a do not keep a's other states from b.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_devices_and_long_presence_do_not_stop_the_rest() {
    let Some(prefix) = prefix_or_skip() else { return };
    let mut fed = Fed::start(&prefix, "odd", &["a", "b"], |_| Setup {
        extensions: dialplan(""),
        ..Setup::default()
    });
    let (sa, sb) = (fed.ast("a").session().await, fed.ast("b").session().await);
    // A Custom device that had a state and is now UNKNOWN, as real Asterisk lists it: astdb
    // says UNKNOWN and func_devstate reloads its states from astdb.
    sa.set_device("Custom:gone", "INUSE").await;
    let a = fed.ast("a");
    // Unloading func_devstate may publish INVALID for it (no provider) after the reload's
    // UNKNOWN: try again until Asterisk lists UNKNOWN, as it does once the two are in order.
    a.cli("database put CustomDevstate gone UNKNOWN");
    let mut listed = false;
    for _ in 0..10 {
        let from = sa.mark();
        a.cli("module unload func_devstate.so");
        a.cli("module load func_devstate.so");
        sa.wait_event(from, |m| {
            is_event(m, "DeviceStateChange", "Device", "Custom:gone") && m.get("State") == Some("UNKNOWN")
        })
        .await;
        if has(&sa.devices().await, "Custom:gone", "UNKNOWN") {
            listed = true;
            break;
        }
    }
    assert!(listed, "a never listed Custom:gone UNKNOWN: {:?}", sa.devices().await);
    let long = "x".repeat(300);
    sa.set_presence("CustomPresence:100", &format!("away,,{long}")).await;
    sa.set_device("Custom:SIP/100", "BUSY").await;
    assert!(
        sb.wait_devices(|d| has(d, "Custom:Custom:SIP/100", "BUSY")).await,
        "b: {:?}\n{}",
        sb.devices().await,
        fed.logs()
    );
    // UNKNOWN is carried, and mirrored as INVALID (neutral in a hint, as UNKNOWN is).
    assert!(
        sb.wait_devices(|d| has(d, "Custom:Custom:gone", "INVALID")).await,
        "{}",
        fed.logs()
    );
    // The long message arrives cut at 255 bytes, not refused.
    let cut = format!("away,,{}", &long[..255]);
    assert!(
        sb.wait_presences(|p| has(p, "CustomPresence:100", &cut)).await,
        "b: {:?}\n{}",
        sb.presences().await,
        fed.logs()
    );
    // And a resync (a's agent starts again and re-reads everything) does not refuse the rest
    // either: a change made while it was away arrives.
    fed.kill_agent("a");
    sa.set_device("Custom:SIP/101", "RINGING").await;
    fed.start_agent("a");
    assert!(
        sb.wait_devices(|d| has(d, "Custom:Custom:SIP/101", "RINGING")).await,
        "{}",
        fed.logs()
    );
}

/// Scenario 7: hundreds of random changes on both servers, with the broker and one agent killed
/// and restarted in between: at the end every mirror equals its origin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_changes_with_restarts_converge() {
    let Some(prefix) = prefix_or_skip() else { return };
    let mut fed = Fed::start(&prefix, "converge", &["a", "b"], |_| Setup {
        extensions: dialplan(""),
        ..Setup::default()
    });
    let (sa, sb) = (fed.ast("a").session().await, fed.ast("b").session().await);
    const STATES: [&str; 5] = ["NOT_INUSE", "INUSE", "BUSY", "RINGING", "ONHOLD"];
    let mut rng = rand::thread_rng();
    for round in 0..400 {
        let (s, n) = if rng.gen_bool(0.5) { (&sa, 100) } else { (&sb, 200) };
        let dev = format!("Custom:SIP/{}", n + rng.gen_range(0..10));
        s.set_device(&dev, STATES[rng.gen_range(0..STATES.len())]).await;
        match round {
            100 => fed.restart_broker(),
            200 => fed.kill_agent("b"),
            250 => fed.start_agent("b"),
            300 => {
                fed.restart_broker();
                fed.kill_agent("a");
                fed.start_agent("a");
            }
            _ => {}
        }
    }
    let origin_states = |d: &States| -> States {
        d.iter()
            .filter(|(k, _)| k.starts_with("Custom:SIP/"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    let (da, db) = (origin_states(&sa.devices().await), origin_states(&sb.devices().await));
    let divergent = |mirror: &States, origin: &States| -> Vec<String> {
        origin
            .iter()
            .filter(|(k, v)| mirror.get(&format!("Custom:{k}")) != Some(*v))
            .map(|(k, v)| format!("{k} {v} mirrored as {:?}", mirror.get(&format!("Custom:{k}"))))
            .collect()
    };
    let ok_b = sb.wait_devices(|d| divergent(d, &da).is_empty()).await;
    let ok_a = sa.wait_devices(|d| divergent(d, &db).is_empty()).await;
    let left: Vec<String> = divergent(&sb.devices().await, &da)
        .into_iter()
        .chain(divergent(&sa.devices().await, &db))
        .collect();
    report(&format!(
        "real_asterisk: convergence after 400 changes and restarts: {} divergent keys of {}",
        left.len(),
        da.len() + db.len()
    ));
    assert!(ok_a && ok_b, "divergent: {left:?}\n{}", fed.logs());
    for (n, s) in [("a", &sa), ("b", &sb)] {
        let d = s.devices().await;
        assert!(mirrors_of_mirrors(&d).is_empty(), "{n}: {d:?}");
    }
}

/// Puts a message in a file-storage mailbox as app_voicemail leaves one (`msgNNNN.txt` beside
/// its audio in the folder): inboxcount counts the `.txt` files.
fn drop_message(ast: &Asterisk, mailbox: &str, folder: &str, n: u32) {
    let (box_, context) = mailbox.split_once('@').unwrap();
    let dir = ast.root.join(format!("spool/voicemail/{context}/{box_}/{folder}"));
    std::fs::create_dir_all(&dir).unwrap();
    let msg = format!("msg{n:04}");
    std::fs::write(
        dir.join(format!("{msg}.txt")),
        format!("[message]\norigmailbox={box_}\ncontext=default\ncallerid=\"Test\" <200>\norigtime=0\nduration=3\n"),
    )
    .unwrap();
    std::fs::write(dir.join(format!("{msg}.wav")), b"").unwrap();
}

/// Scenario 9: MWI. vm has app_voicemail; ext has no voicemail (res_mwi_external) and shows
/// vm's mailboxes through MWIUpdate; lamp has voicemail of its own and shows vm's as a
/// `Custom:` lamp. A message left on vm (the spool file and `voicemail reload`, whose
/// append_mailbox publishes every mailbox's counts) reaches both; nothing comes back; ext's
/// counts survive ext's restart (res_mwi_external keeps them in astdb).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voicemail_lights_the_mailbox_on_the_other_servers() {
    let Some(prefix) = prefix_or_skip() else { return };
    let voicemail = |boxes: &str| Setup {
        extensions: dialplan(""),
        extra: vec![(
            "voicemail.conf".into(),
            format!("[general]\nformat = wav\n\n[default]\n{boxes}"),
        )],
        ..Setup::default()
    };
    let extra = BTreeMap::from([
        ("ext".to_string(), "mwi_sink = mwiupdate".to_string()),
        ("lamp".to_string(), "mwi_sink = custom".to_string()),
    ]);
    let mut fed = Fed::start_with(
        &prefix,
        "mwi",
        &["vm", "ext", "lamp"],
        |n| match n {
            "vm" => voicemail("100 => 1234,Alice\n101 => 1234,Bob\n"),
            "lamp" => voicemail("500 => 1234,Carol\n"),
            // Only one MWI provider per Asterisk: this one has res_mwi_external, no voicemail.
            _ => Setup {
                extensions: dialplan(""),
                modules: "noload = app_voicemail.so\n".into(),
                ..Setup::default()
            },
        },
        extra,
    );
    let (svm, sext, slamp) = (
        fed.ast("vm").session().await,
        fed.ast("ext").session().await,
        fed.ast("lamp").session().await,
    );
    // Every agent is up once a device has crossed to every other server.
    sentinel(&fed, &svm, "vm", &[&sext, &slamp], 0).await;
    sentinel(&fed, &slamp, "lamp", &[&sext], 0).await;
    let (from_ext, from_lamp) = (sext.mark(), slamp.mark());
    drop_message(fed.ast("vm"), "100@default", "INBOX", 0);
    let t = Instant::now();
    fed.ast("vm").cli("voicemail reload");
    let counted =
        |m: &ami::Message| is_event(m, "MessageWaiting", "Mailbox", "100@default") && m.get("New") == Some("1");
    assert!(sext.wait_event(from_ext, counted).await.is_some(), "{}", fed.logs());
    let to_ext = t.elapsed();
    let lit = |m: &ami::Message| {
        is_event(m, "DeviceStateChange", "Device", "Custom:MWI100") && m.get("State") == Some("INUSE")
    };
    assert!(slamp.wait_event(from_lamp, lit).await.is_some(), "{}", fed.logs());
    report(&format!(
        "real_asterisk: MWI, `voicemail reload` on vm to MessageWaiting on ext: {to_ext:?} (lamp on lamp: {:?})",
        t.elapsed()
    ));
    let boxes = sext.mailboxes().await;
    assert_eq!(boxes.get("100@default").map(String::as_str), Some("1,0"), "{boxes:?}");
    assert_eq!(boxes.get("101@default").map(String::as_str), Some("0,0"), "{boxes:?}");
    // The lamp server's own mailbox crosses to ext, never onto lamp itself.
    drop_message(fed.ast("lamp"), "500@default", "INBOX", 0);
    fed.ast("lamp").cli("voicemail reload");
    // A later change crosses first: the message heard (INBOX -> Old) darkens the lamp.
    let heard = fed.ast("vm").root.join("spool/voicemail/default/100");
    std::fs::create_dir_all(heard.join("Old")).unwrap();
    for ext in ["txt", "wav"] {
        std::fs::rename(
            heard.join(format!("INBOX/msg0000.{ext}")),
            heard.join(format!("Old/msg0000.{ext}")),
        )
        .unwrap();
    }
    fed.ast("vm").cli("voicemail reload");
    assert!(
        slamp.wait_devices(|d| has(d, "Custom:MWI100", "NOT_INUSE")).await,
        "{}",
        fed.logs()
    );
    let settled = sext
        .wait_mailboxes(|b| has(b, "100@default", "0,1") && has(b, "500@default", "1,0"))
        .await;
    assert!(settled, "{:?}\n{}", sext.mailboxes().await, fed.logs());
    // Nothing came back: no mailbox of vm's or lamp's was published as ext's, no MWI lamp
    // written on lamp for its own mailbox, none on vm (it has no sink).
    let logs = fed.logs();
    assert!(!slamp.devices().await.contains_key("Custom:MWI500"), "{logs}");
    assert!(!svm.devices().await.keys().any(|k| k.contains("MWI")), "{logs}");
    let agent_ext = fed.agents["ext"].log_text();
    assert!(!agent_ext.contains("several servers map to one name"), "{agent_ext}");

    // ext restarts: res_mwi_external restores its mailboxes from astdb, the agent takes them
    // for its mirrors (not ext's own), and a change made while it was down arrives.
    sext.client.shutdown();
    fed.ast_mut("ext").stop();
    drop_message(fed.ast("vm"), "101@default", "INBOX", 0);
    fed.ast("vm").cli("voicemail reload");
    fed.ast_mut("ext").boot();
    let sext = fed.ast("ext").session().await;
    let settled = sext.wait_mailboxes(|b| has(b, "101@default", "1,0")).await;
    let boxes = sext.mailboxes().await;
    assert!(settled, "{boxes:?}\n{}", fed.logs());
    assert!(has(&boxes, "100@default", "0,1"), "kept over the restart: {boxes:?}");
    // A sentinel from ext after its restart: had it republished its restored mailboxes as
    // its own, vm's lamp mirror on lamp would be a collision of two origins.
    sentinel(&fed, &sext, "ext", &[&svm], 1).await;
    let agent_lamp = fed.agents["lamp"].log_text();
    assert!(!agent_lamp.contains("several servers map to one name"), "{agent_lamp}");
}
