//! The built `hintbus` binary, run as a real process.

use ami::{Client, ClientConfig, ClientEvent, Message};
use sim::{Sim, SimConfig};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

fn spawn(args: &[&str], envs: &[(&str, &str)]) -> (Child, mpsc::Receiver<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hintbus"));
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("HINTBUS_LOG", "info");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    for pipe in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    (child, rx)
}

/// Lines until one contains `needle`; all of them are returned.
fn wait_line(rx: &mpsc::Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(WAIT) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return seen;
                }
            }
            Err(_) => panic!("no line with {needle:?}; got {seen:#?}"),
        }
    }
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    for _ in 0..200 {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    child.kill().unwrap();
    panic!("did not stop on SIGTERM");
}

#[tokio::test]
async fn sim_process_serves_ami_and_stops_on_sigterm() {
    let (child, rx) = spawn(&["sim", "--servers", "2", "--base-port", "0"], &[]);
    let lines = wait_line(&rx, "simulated Asterisk b");
    let addr = lines
        .iter()
        .find(|l| l.starts_with("simulated Asterisk b"))
        .and_then(|l| l.split_whitespace().find(|w| w.starts_with("127.0.0.1:")))
        .unwrap()
        .to_string();
    let (client, mut events) = Client::start(ClientConfig::new(addr, "hintbus", "hintbus"));
    assert!(client.wait_connected(WAIT).await.is_some());
    client
        .action(
            Message::action("Setvar")
                .with("Variable", "DEVICE_STATE(Custom:SIP/101)")
                .with("Value", "INUSE"),
        )
        .await
        .unwrap();
    // The shared hint `SIP/101&Custom:SIP/101` lights up.
    loop {
        match tokio::time::timeout(WAIT, events.recv()).await.unwrap().unwrap() {
            ClientEvent::Event(m) if m.event_name() == Some("ExtensionStatus") => {
                assert_eq!((m.get("Exten"), m.get("StatusText")), (Some("101"), Some("InUse")));
                break;
            }
            _ => {}
        }
    }
    assert!(terminate(child).success());
}

// The simulator runs in this process: its runtime needs threads of its own while the test
// blocks reading the child's output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_prints_lamps_and_never_the_secret() {
    let sim = Sim::start(SimConfig::fixture_server()).await.unwrap();
    let addr = sim.addr().to_string();
    let (child, rx) = spawn(
        &["watch", "--addr", &addr, "--user", "broker"],
        &[("HINTBUS_AMI__SECRET", "s3cret")],
    );
    wait_line(&rx, "connected: Asterisk 22.10.1");
    assert!(sim.set_custom("Custom:100", "RINGING"));
    wait_line(&rx, "100@default");
    assert!(terminate(child).success());

    let (child, rx) = spawn(
        &["watch", "--addr", &addr, "--user", "broker"],
        &[("HINTBUS_AMI__SECRET", "Wr0ngSecret")],
    );
    let lines = wait_line(&rx, "AMI login refused");
    assert!(lines.iter().all(|l| !l.contains("Wr0ngSecret")), "{lines:#?}");
    terminate(child);
}

#[test]
fn bad_arguments_are_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args(["sim", "--servers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--servers must be at least 1"));
    let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args(["sim", "--traffic", "x"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--traffic"));
}

#[test]
fn hints_prints_the_shared_hints_and_the_guard_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args([
            "hints",
            "--server",
            "a=100",
            "--server",
            "b=200",
            "--guard",
            "Custom:{membername}",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("exten => 200,hint,SIP/200&Custom:SIP/200,CustomPresence:200"),
        "{text}"
    );
    assert!(text.contains("exten => 100-guard,hint,SIP/100&Custom:100"), "{text}");
    assert!(
        text.contains("member => SIP/100,0,100,hint:100-guard@default"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
        .args(["hints", "--server", "a=100", "--template", "SIP/{device}"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--template"));
}

/// `--check` says when a template can land another server's state on one of this server's own
/// names (it takes a name of its own shape to itself), and is quiet when it cannot.
#[test]
fn check_warns_about_templates_that_can_collide() {
    /// Removed when dropped, also when an assertion fails.
    struct TempDir(std::path::PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let tmp = TempDir(std::env::temp_dir().join(format!("hintbus-test-cli-templates-{}", std::process::id())));
    let dir = tmp.0.clone();
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, extra: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("[agent]\nserver = a\n{extra}\n[ami]\nsecret = x\n")).unwrap();
        p
    };
    let check = |p: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_hintbus"))
            .args(["agent", "--check", "-c", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let colliding = check(&write(
        "a.ini",
        "device_template = Custom:{resource}\npresence_template = CustomPresence:{resource}",
    ));
    let apart = check(&write(
        "b.ini",
        "device_template = Custom:{device}@{origin}\npresence_template = CustomPresence:{resource}@{origin}",
    ));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        colliding.contains("warning: [agent] device_template = Custom:{resource}"),
        "{colliding}"
    );
    assert!(colliding.contains("warning: [agent] presence_template"), "{colliding}");
    assert!(!apart.contains("warning"), "{apart}");
}
