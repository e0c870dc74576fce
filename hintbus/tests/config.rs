//! The configuration as an administrator meets it: `hintbus <role> --check -c FILE` and the
//! running processes, with environment variables set on the child process.

mod common;

use ami::DeviceState;
use common::*;
use sim::{Sim, SimConfig};
use std::path::Path;
use std::process::{Command, Output};

/// `hintbus <role> --check -c path [extra]` with `env` set.
fn check(role: &str, path: &Path, env: &[(&str, &str)], extra: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hintbus"));
    cmd.args([role, "--check", "-c", path.to_str().unwrap()]).args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The check failed, saying `needle`.
fn refused(o: &Output, needle: &str) {
    assert!(!o.status.success(), "--check said OK: {}", stdout(o));
    assert!(stderr(o).contains(needle), "wanted {needle:?} in: {}", stderr(o));
}

/// The check passed, printing `needle`.
fn passed(o: &Output, needle: &str) {
    assert!(o.status.success(), "{}", stderr(o));
    assert!(stdout(o).contains(needle), "wanted {needle:?} in: {}", stdout(o));
}

const AGENT: &str = "[agent]\nserver = a\n\n[ami]\nsecret = x\n";

#[test]
fn the_environment_reaches_server_sections_by_their_spelling() {
    let dir = Dir::new("cfg-env-servers");
    let cfg = dir.write(
        "broker.ini",
        "[broker]\n\n[server-b]\nhost = 10.0.0.2\nsecret = x\n\n[server-pbx.north]\nsecret = y\n",
    );
    let out = check(
        "broker",
        &cfg,
        &[
            ("HINTBUS_SERVER_B__PORT", "5039"),
            ("HINTBUS_SERVER_PBX_NORTH__HOST", "10.0.0.9"),
        ],
        &[],
    );
    passed(&out, "[server-b]: Asterisk 10.0.0.2:5039");
    passed(&out, "[server-pbx.north]: Asterisk 10.0.0.9:5038");
    // A bad value from the environment is named with its variable.
    let out = check("broker", &cfg, &[("HINTBUS_SERVER_B__PORT", "0")], &[]);
    refused(
        &out,
        "[server-b] port = \"0\": expected a TCP port, 1 to 65535 (from HINTBUS_SERVER_B__PORT)",
    );
    // A server the file does not declare cannot come from the environment, and says why.
    let out = check("broker", &cfg, &[("HINTBUS_SERVER_C__PORT", "5038")], &[]);
    refused(&out, "HINTBUS_SERVER_C__PORT: the file has no section spelt SERVER_C");
    // The fixed sections, and what an error says about a key that is not set.
    let agent = dir.write("agent.ini", AGENT);
    let out = check("agent", &agent, &[("HINTBUS_AGENT__SERVER", "pbx-2")], &[]);
    passed(&out, "OK (server pbx-2,");
    let empty = dir.write("empty.ini", "[ami]\nsecret = x\n");
    refused(
        &check("agent", &empty, &[], &[]),
        "[agent] server: required (not set: give it in the file or as HINTBUS_AGENT__SERVER)",
    );
}

/// A secret holding ` ;`, `#`, `\` and quotes arrives as written, from the file and from the
/// environment: the agent logs in with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_taken_as_written_from_the_file_and_the_environment() {
    const SECRET: &str = r#"pa ;ss #w\rd"q'"#;
    let mut sc = SimConfig::pbx("a", &["100"]);
    sc.users[0].secret = SECRET.into();
    let sim = Sim::start(sc).await.unwrap();
    let dir = Dir::new("cfg-secret");
    let ini = |secret: &str| {
        format!(
            "[agent]\nserver = a\nbroker = tcp://127.0.0.1:{}\n\n[ami]\nport = {}\nsecret = {secret}\n",
            free_port(),
            sim.port()
        )
    };
    let from_file = dir.write("file.ini", &ini(SECRET));
    // --check says the value holds what other readers take for a comment, without showing it.
    let out = check("agent", &from_file, &[], &[]);
    passed(&out, "[ami] secret: the value holds \" ;\", which is part of it");
    assert!(!stdout(&out).contains("w\\rd"), "{}", stdout(&out));
    let agent = Proc::start(&dir, "agent-file", &["agent", "-c", from_file.to_str().unwrap()]);
    assert!(
        agent.wait_log(0, "Asterisk connected").await.is_some(),
        "{}",
        agent.log_text()
    );
    drop(agent);

    let from_env = dir.write("env.ini", &ini("wrong"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hintbus"));
    let log = dir.0.join("agent-env.log");
    let out = std::fs::File::create(&log).unwrap();
    cmd.args(["agent", "-c", from_env.to_str().unwrap()])
        .env("HINTBUS_AMI__SECRET", SECRET)
        .env("HINTBUS_HTTP__LISTEN", "127.0.0.1:0")
        .env("HINTBUS_LOG", "info")
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    let agent = Proc {
        child: Some(cmd.spawn().unwrap()),
        log,
    };
    assert!(
        agent.wait_log(0, "Asterisk connected").await.is_some(),
        "{}",
        agent.log_text()
    );
}

#[test]
fn a_key_or_a_section_given_twice_is_an_error_naming_both_lines() {
    let dir = Dir::new("cfg-twice");
    let cfg = dir.write(
        "a.ini",
        "[agent]\nserver = a\n\n[ami]\nsecret = x\n[agent]\nserver = b\n",
    );
    refused(
        &check("agent", &cfg, &[], &[]),
        "a.ini: [agent]: appears twice, line 1 and line 6",
    );
    let cfg = dir.write(
        "b.ini",
        "[agent]\nserver = a\n[ami]\nsecret = x\nport = 5038\nsecret = y\n",
    );
    refused(
        &check("agent", &cfg, &[], &[]),
        "b.ini: [ami]: secret is given twice, line 4 and line 6",
    );
}

#[test]
fn out_of_range_ports_and_timings_are_named() {
    let dir = Dir::new("cfg-ranges");
    let agent = |name: &str, agent_keys: &str, ami_keys: &str| {
        dir.write(
            name,
            &format!("[agent]\nserver = a\n{agent_keys}\n[ami]\nsecret = x\n{ami_keys}\n"),
        )
    };
    refused(
        &check(
            "agent",
            &agent("hb.ini", "heartbeat_ms = 18446744073709551615", ""),
            &[],
            &[],
        ),
        "[agent] heartbeat_ms = \"18446744073709551615\": expected a number of milliseconds from 1 to 60000 (line 3)",
    );
    refused(
        &check("agent", &agent("port.ini", "", "port = 0"), &[], &[]),
        "[ami] port = \"0\": expected a TCP port, 1 to 65535",
    );
    refused(
        &check("agent", &agent("ping.ini", "", "ping_ms = 0"), &[], &[]),
        "[ami] ping_ms = \"0\": expected a number of milliseconds",
    );
    refused(
        &check(
            "agent",
            &agent("bt.ini", "heartbeat_ms = 3000\nbroker_timeout_ms = 5000", ""),
            &[],
            &[],
        ),
        "[agent] broker_timeout_ms = \"5000\": must be more than twice heartbeat_ms (2 × 3000 ms)",
    );
    // An agentless server whose heartbeat the broker would take for silence.
    let cfg = dir.write(
        "agentless.ini",
        "[broker]\nheartbeat_ms = 200\nlost_after_ms = 1000\n\n[server-b]\nsecret = x\nheartbeat_ms = 500\n",
    );
    refused(
        &check("broker", &cfg, &[], &[]),
        "[server-b] heartbeat_ms = \"500\": must be less than half of [broker] lost_after_ms (1000 ms)",
    );
    let cfg = dir.write("broker-hb.ini", "[broker]\nheartbeat_ms = 18446744073709551615\n");
    refused(
        &check("broker", &cfg, &[], &[]),
        "[broker] heartbeat_ms = \"18446744073709551615\": expected a number of milliseconds from 1 to 60000",
    );
    let cfg = dir.write("rate.ini", "[broker]\nrate_limit = -1\n");
    refused(
        &check("broker", &cfg, &[], &[]),
        "[broker] rate_limit = \"-1\": expected a number of messages per second per agent (0: no limit)",
    );
}

#[test]
fn an_allow_list_without_a_broker_key_is_refused() {
    let dir = Dir::new("cfg-agents");
    let cfg = dir.write(
        "b.ini",
        "[broker]\nfeed = off\n\n[agents]\na = rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n",
    );
    refused(
        &check("broker", &cfg, &[], &[]),
        "b.ini: [agents]: an allow-list without [broker] secret_key_file: the broker would speak plain text",
    );
}

#[test]
fn a_plain_text_feed_beyond_loopback_is_warned() {
    let dir = Dir::new("cfg-feed");
    let cfg = dir.write("b.ini", "[broker]\nfeed = tcp://0.0.0.0:5561\n");
    passed(
        &check("broker", &cfg, &[], &[]),
        "warning: [broker] feed = tcp://0.0.0.0:5561: the feed is plain text",
    );
    let quiet = dir.write("q.ini", "[broker]\nfeed = tcp://127.0.0.1:5561\n");
    assert!(!stdout(&check("broker", &quiet, &[], &[])).contains("warning"));
}

#[test]
fn check_warns_about_the_placeholder_secret() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../config.ini.example");
    passed(
        &check("agent", Path::new(example), &[], &[]),
        "warning: [ami] secret is \"change-me\", the placeholder of config.ini.example",
    );
    let dir = Dir::new("cfg-secret-set");
    let real = dir.write("a.ini", AGENT);
    assert!(!stdout(&check("agent", &real, &[], &[])).contains("change-me"));
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Run as root, `--check` checks the files as the service user would read them.
#[test]
fn check_as_root_reads_files_as_the_service_user() {
    if !is_root() {
        report("check_as_root_reads_files_as_the_service_user: skipped (not root)");
        return;
    }
    use std::os::unix::fs::{chown, PermissionsExt};
    let dir = Dir::new("cfg-service-user");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let secret = dir.write("ami.secret", "s3cret\n");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = dir.write(
        "a.ini",
        &format!("[agent]\nserver = a\n\n[ami]\nsecret_file = {}\n", secret.display()),
    );
    // nobody exists on every Debian system; the packaged service user is `hintbus`.
    let out = check("agent", &cfg, &[], &["--service-user", "nobody"]);
    refused(&out, "[ami] secret_file = ");
    refused(
        &out,
        "permission denied for nobody (uid 65534), the user the service runs as: the file is mode 0600, owner uid 0",
    );
    chown(&secret, Some(65534), None).unwrap();
    passed(
        &check("agent", &cfg, &[], &["--service-user", "nobody"]),
        "files checked as nobody, the user the service runs as",
    );
}

/// A file the user cannot reach is a permission error, not a missing file.
#[test]
fn a_permission_error_is_not_reported_as_a_missing_file() {
    if !is_root() {
        report("a_permission_error_is_not_reported_as_a_missing_file: skipped (not root: cannot run as another user)");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = Dir::new("cfg-denied");
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = dir.0.join("private");
    std::fs::create_dir(&private).unwrap();
    let cfg = private.join("a.ini");
    std::fs::write(&cfg, AGENT).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args(["agent", "--check", "-c", cfg.to_str().unwrap()])
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    refused(&out, "a.ini: permission denied for uid 65534");
    assert!(!stderr(&out).contains("no such file"), "{}", stderr(&out));
}

/// `rate_limit = 0` is no limit: an agent's changes and heartbeats all get through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_zero_is_no_limit() {
    let sims = [
        Sim::start(SimConfig::federated("a", &["100"], &["100", "200"]))
            .await
            .unwrap(),
        Sim::start(SimConfig::federated("b", &["200"], &["100", "200"]))
            .await
            .unwrap(),
    ];
    let dir = Dir::new("cfg-rate");
    let port = free_port();
    let cfg = dir.write(
        "broker.ini",
        &format!("[broker]\nlisten = tcp://127.0.0.1:{port}\nfeed = off\nheartbeat_ms = 200\nlost_after_ms = 1000\nrate_limit = 0\n"),
    );
    let broker = Proc::start(&dir, "broker", &["broker", "-c", cfg.to_str().unwrap()]);
    let _agents: Vec<Proc> = sims.iter().map(|s| start_agent(&dir, port, s)).collect();
    sims[0].set_device("SIP/100", DeviceState::Busy);
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::Busy).await,
        "{}",
        broker.log_text()
    );
    // Ten changes, each its own message, within a second; then the last one must arrive.
    for i in 0..10 {
        let state = if i % 2 == 0 {
            DeviceState::Inuse
        } else {
            DeviceState::Ringing
        };
        sims[0].set_device("SIP/100", state);
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    sims[0].set_device("SIP/100", DeviceState::NotInuse);
    assert!(
        wait_state(&sims[1], "Custom:SIP/100", DeviceState::NotInuse).await,
        "{}",
        broker.log_text()
    );
    let log = broker.log_text();
    assert!(!log.contains("messages dropped") && !log.contains("lost"), "{log}");
}

#[test]
fn mwi_mistakes_are_named() {
    let dir = Dir::new("cfg-mwi");
    let agent = |name: &str, keys: &str| dir.write(name, &format!("[agent]\nserver = a\n{keys}\n[ami]\nsecret = x\n"));
    refused(
        &check("agent", &agent("sink.ini", "mwi_sink = voicemail"), &[], &[]),
        "sink.ini: [agent] mwi_sink = \"voicemail\": use mwiupdate (res_mwi_external), custom (a Custom: lamp) or off",
    );
    refused(
        &check(
            "agent",
            &agent("lamp.ini", "mwi_sink = custom\nmwi_device_template = MWI{mailbox}"),
            &[],
            &[],
        ),
        "lamp.ini: [agent] mwi_device_template = \"MWI{mailbox}\": must start with \"Custom:\"",
    );
    refused(
        &check("agent", &agent("field.ini", "mwi_template = {device}@x"), &[], &[]),
        "field.ini: [agent] mwi_template = \"{device}@x\": unknown field {device}: use {mailbox}, {context} or {origin}",
    );
    let ok = check(
        "agent",
        &agent("ok.ini", "mwi_sink = mwiupdate\nmwi_template = {mailbox}@{origin}"),
        &[],
        &[],
    );
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
}
