//! An administrator's first run of the package's binary: logs under systemd's journal stream,
//! `keygen` for the service user, the generated manual pages and shell completions. (The .deb
//! itself is built, linted, installed and purged by deploy/ci-package.sh in CI.)

mod common;

use common::*;
use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Its HTTP listener on a port of its own: tests run in parallel.
fn hintbus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hintbus"));
    c.env("HINTBUS_HTTP__LISTEN", "127.0.0.1:0");
    c
}

/// Runs `cmd` with stderr in a file and JOURNAL_STREAM naming that file (as systemd names the
/// journal's socket), or something else when `matching` is false (a variable inherited by a
/// process whose stderr went elsewhere); stops it once stderr holds `until` (or at exit).
fn stderr_under_journal(dir: &Dir, name: &str, mut cmd: Command, matching: bool, until: &str) -> String {
    let path = dir.0.join(format!("{name}.stderr"));
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let stream = if matching {
        format!("{}:{}", meta.dev(), meta.ino())
    } else {
        format!("{}:{}", meta.dev(), meta.ino() + 1)
    };
    let mut child = cmd
        .env("JOURNAL_STREAM", stream)
        .env("HINTBUS_LOG", "info")
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(&path).unwrap();
        let exited = child.try_wait().unwrap().is_some();
        if text.contains(until) || exited || Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return std::fs::read_to_string(&path).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An agent whose Asterisk does not answer: info lines at start, then a warning per retry.
fn lonely_agent(dir: &Dir) -> Command {
    let config = dir.write(
        "agent.ini",
        &format!(
            "[agent]\nserver = a\nbroker = tcp://127.0.0.1:{}\n\n[ami]\nhost = 127.0.0.1\nport = {}\nusername = hintbus\nsecret = hintbus\n",
            free_port(),
            free_port()
        ),
    );
    let mut cmd = hintbus();
    cmd.args(["agent", "-c", config.to_str().unwrap()]);
    cmd
}

/// A timestamp as tracing-subscriber prints one (`2026-12-01T23:03:11.123456Z`).
fn has_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    (0..b.len().saturating_sub(10)).any(|i| {
        b[i..i + 4].iter().all(u8::is_ascii_digit)
            && b[i + 4] == b'-'
            && b[i + 7] == b'-'
            && b.get(i + 10) == Some(&b'T')
    })
}

#[test]
fn under_the_journal_stream_lines_carry_their_priority_and_no_timestamp() {
    let dir = Dir::new("journal-stream");
    let text = stderr_under_journal(&dir, "agent", lonely_agent(&dir), true, "AMI session ended");
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("<4>WARN ") && l.contains("AMI session ended")),
        "no warning with priority 4: {text}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("<6>INFO ")),
        "no info line with priority 6: {text}"
    );
    for l in &lines {
        let prefixed = ["<3>", "<4>", "<6>", "<7>"].iter().any(|p| l.starts_with(p));
        assert!(prefixed, "line without a priority prefix: {l:?}");
        assert!(!has_timestamp(l), "the journal stamps lines itself, yet: {l:?}");
        assert!(!l.contains('\x1b'), "colour escapes in the journal: {l:?}");
    }
}

#[test]
fn an_error_that_stops_the_service_reaches_the_journal_as_an_error() {
    let dir = Dir::new("journal-error");
    let mut cmd = hintbus();
    cmd.args(["agent", "--check", "-c", dir.0.join("missing.ini").to_str().unwrap()]);
    let text = stderr_under_journal(&dir, "check", cmd, true, "\n");
    assert!(text.starts_with("<3>hintbus: "), "{text:?}");
    assert!(text.lines().all(|l| l.starts_with("<3>")), "{text:?}");
}

#[test]
fn an_inherited_journal_stream_that_is_not_stderr_changes_nothing() {
    let dir = Dir::new("journal-inherited");
    let text = stderr_under_journal(&dir, "agent", lonely_agent(&dir), false, "AMI session ended");
    let warn = text
        .lines()
        .find(|l| l.contains("AMI session ended"))
        .unwrap_or_else(|| panic!("no warning: {text}"));
    assert!(!warn.starts_with('<'), "{warn:?}");
    assert!(has_timestamp(warn), "{warn:?}");
}

#[test]
fn keygen_writes_the_public_key_beside_the_secret_as_file_pub() {
    let dir = Dir::new("keygen-pub");
    let out = dir.0.join("k.key");
    let run = hintbus()
        .args(["keygen", "--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let stdout = String::from_utf8_lossy(&run.stdout);
    let public = stdout
        .lines()
        .find_map(|l| l.strip_prefix("public key: "))
        .unwrap()
        .trim();
    assert_eq!(std::fs::read_to_string(dir.0.join("k.key.pub")).unwrap().trim(), public);
    assert!(!dir.0.join("k.pub").exists());
    assert!(stdout.contains("k.key.pub"), "{stdout}");
    assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
}

/// Root gives the pair to another user (`nobody` here, `hintbus` in the README); anyone else
/// may only name themselves.
#[test]
fn keygen_owner_gives_the_pair_to_the_service_user() {
    let dir = Dir::new("keygen-owner");
    let me = nix::unistd::geteuid();
    let user = if me.is_root() {
        nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user")
    } else {
        nix::unistd::User::from_uid(me)
            .unwrap()
            .expect("the current user in the user database")
    };
    let out = dir.0.join("agent.key");
    let run = hintbus()
        .args([
            "keygen",
            "--out",
            out.to_str().unwrap(),
            "--name",
            "a",
            "--owner",
            &user.name,
        ])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    for path in [out.clone(), dir.0.join("agent.key.pub")] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid()),
            (user.uid.as_raw(), user.gid.as_raw()),
            "{}",
            path.display()
        );
    }
    assert_eq!(std::fs::metadata(&out).unwrap().mode() & 0o777, 0o600);
}

#[test]
fn keygen_owner_is_refused_without_root_before_anything_is_written() {
    use std::os::unix::process::CommandExt;
    let dir = Dir::new("keygen-refused");
    let out = dir.0.join("k.key");
    let mut cmd = hintbus();
    cmd.args(["keygen", "--out", out.to_str().unwrap(), "--owner", "root"]);
    if nix::unistd::geteuid().is_root() {
        // As root, the refusal is seen by running keygen as nobody.
        let nobody = nix::unistd::User::from_name("nobody").unwrap().expect("a nobody user");
        std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        cmd.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("--owner root needs root"), "{stderr}");
    assert!(!out.exists() && !dir.0.join("k.key.pub").exists());

    let run = hintbus()
        .args([
            "keygen",
            "--out",
            out.to_str().unwrap(),
            "--owner",
            "no-such-user-hintbus",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&run.stderr).contains("no such user"));
    assert!(!out.exists());
}

#[test]
fn man_pages_and_completions_come_from_the_cli_definitions() {
    let dir = Dir::new("man");
    let man = dir.0.join("man");
    let run = hintbus().args(["man", man.to_str().unwrap()]).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let top = std::fs::read_to_string(man.join("hintbus.1")).unwrap();
    assert!(
        top.contains(".TH hintbus 1") && top.contains("hintbus\\-agent(1)"),
        "{top}"
    );
    let keygen = std::fs::read_to_string(man.join("hintbus-keygen.1")).unwrap();
    assert!(keygen.contains("\\-\\-owner") && keygen.contains(&format!("hintbus {}", env!("CARGO_PKG_VERSION"))));
    assert!(!man.join("hintbus-man.1").exists(), "the hidden generator has no page");

    for (shell, marker) in [
        ("bash", "complete -F _hintbus"),
        ("zsh", "#compdef hintbus"),
        ("fish", "complete -c hintbus"),
    ] {
        let run = hintbus().args(["completions", shell]).output().unwrap();
        assert!(run.status.success());
        let script = String::from_utf8_lossy(&run.stdout);
        assert!(
            script.contains(marker) && script.contains("keygen"),
            "{shell}: {script}"
        );
    }
}
