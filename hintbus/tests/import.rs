//! `hintbus import`: zmq-ami-broker's config.ini in, a hintbus configuration out that says what
//! it could not carry over, guesses no secret, and passes `--check` once the AMI users are in.

mod common;

use common::*;
use std::process::Command;

/// zmq-ami-broker's example_config.ini, as its users have it.
const OLD: &str = "[general]
device_state = yes
presence = no
;debug, info, warning, error
log_level = info
request_timeout = 1000
count_messages  = no
verbose_messages = no

[servers]
sections = server-1, server-2

[server-1]
name = Console 1
addr = 192.168.56.101
cmd_port = 40967
evt_port = 40968
ami_trace = no

[server-2]
name = Console 2
addr = 192.168.56.102
cmd_port = 30967
evt_port = 30968
ami_trace = no
";

fn hintbus(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hintbus")).args(args).output().unwrap()
}

#[test]
fn an_old_config_becomes_agentless_servers_that_check_once_the_secrets_are_in() {
    let dir = Dir::new("import");
    let old = dir.write("old.ini", OLD);
    let new = dir.0.join("config.ini");
    let out = hintbus(&["import", old.to_str().unwrap(), "--out", new.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let notes = String::from_utf8_lossy(&out.stderr);
    for said in [
        "cmd_port = 40967, evt_port = 40968",
        "[server-1]: the AMI user and its secret were not in the old configuration",
        "log_level = info: set HINTBUS_LOG=info",
        "presence = no: carried over as presence = off",
        "DND lamps) are now shared",
    ] {
        assert!(notes.contains(said), "not said: {said}\n{notes}");
    }
    let text = std::fs::read_to_string(&new).unwrap();
    assert!(text.contains("[server-1]\nhost = 192.168.56.101\n"), "{text}");
    assert!(text.contains("[server-2]\nhost = 192.168.56.102\n"), "{text}");
    assert!(!text.contains("\nsecret ="), "a secret was guessed: {text}");
    // No secret yet: --check says which one is missing.
    let check = check_config("broker", &new);
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("[server-1] secret"),
        "{check:?}"
    );
    // The administrator fills them in: OK.
    std::fs::write(&new, text.replace(";secret = \n", "secret = s3cret-of-this-server\n")).unwrap();
    let check = check_config("broker", &new);
    assert!(check.status.success(), "{check:?}");
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("2 agentless server(s)"),
        "{check:?}"
    );
}

#[test]
fn with_agents_each_server_gets_an_agent_file() {
    let dir = Dir::new("import-agents");
    let old = dir.write("old.ini", OLD);
    let new = dir.0.join("config.ini");
    let agents = dir.0.join("agents");
    let out = hintbus(&[
        "import",
        old.to_str().unwrap(),
        "--out",
        new.to_str().unwrap(),
        "--agents",
        agents.to_str().unwrap(),
        "--broker",
        "tcp://127.0.0.1:5560",
    ]);
    assert!(out.status.success(), "{out:?}");
    let broker = std::fs::read_to_string(&new).unwrap();
    assert!(!broker.contains("[server-"), "agents, not agentless: {broker}");
    for id in ["1", "2"] {
        let p = agents.join(format!("agent-{id}.ini"));
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(&format!("[agent]\nserver = {id}\n")), "{text}");
        std::fs::write(&p, text.replace(";secret = \n", "secret = x\n")).unwrap();
        let check = check_config("agent", &p);
        assert!(check.status.success(), "{check:?}");
    }
    // An old file without [servers] is refused, naming what is missing.
    let bad = dir.write("bad.ini", "[general]\npresence = maybe\n");
    let out = hintbus(&["import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("[general] presence = maybe"),
        "{out:?}"
    );
}
