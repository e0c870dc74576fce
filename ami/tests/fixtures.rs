//! Every transcript captured from a real Asterisk 22 parses into the messages it shows.

use ami::codec::{decode_all, AmiCodec, Frame};
use ami::Message;
use bytes::BytesMut;
use sim::transcript::{parse, Step};
use std::path::PathBuf;
use tokio_util::codec::Decoder;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/ami/asterisk-22.10.1")
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Decodes a server stream, fed in chunks of `chunk` bytes.
fn decode_chunked(bytes: &[u8], chunk: usize) -> (Option<String>, Vec<Message>) {
    let mut codec = AmiCodec::client();
    let mut buf = BytesMut::new();
    let (mut banner, mut msgs) = (None, Vec::new());
    for piece in bytes.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(item) = codec.decode(&mut buf).expect("no fatal error") {
            match item.expect("no malformed message in a real capture") {
                Frame::Banner(b) => banner = Some(b),
                Frame::Message(m) => msgs.push(m),
            }
        }
    }
    assert!(buf.is_empty(), "bytes left over");
    (banner, msgs)
}

fn check_pair(stem: &str) -> usize {
    let raw = read(&format!("{stem}.raw.txt"));
    let annotated = String::from_utf8(read(&format!("{stem}.txt"))).unwrap();
    let steps = parse(&annotated);
    let expected: Vec<Message> = steps
        .iter()
        .filter_map(|s| if let Step::Recv(m) = s { Some(m.clone()) } else { None })
        .collect();
    let banner = steps
        .iter()
        .find_map(|s| if let Step::Banner(b) = s { Some(b.clone()) } else { None })
        .unwrap();
    assert!(!expected.is_empty(), "{stem}: no RECV block");
    for chunk in [1, 2, 3, 7, 64, 1000, usize::MAX] {
        let (got_banner, got) = decode_chunked(&raw, chunk.min(raw.len()));
        assert_eq!(
            format!("Asterisk Call Manager/{}", got_banner.unwrap()),
            banner,
            "{stem}"
        );
        assert_eq!(got.len(), expected.len(), "{stem}: message count (chunk {chunk})");
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert_eq!(g, e, "{stem}: message {i} (chunk {chunk})");
        }
    }
    expected.len()
}

#[test]
fn f01_login_failure() {
    assert_eq!(check_pair("01_login_failure"), 1);
}

#[test]
fn f02_login_core_actions() {
    assert_eq!(check_pair("02_login_core_actions"), 9);
}

#[test]
fn f03_device_state() {
    check_pair("03_device_state");
}

#[test]
fn f04_presence_state() {
    check_pair("04_presence_state");
    // The PresenceState response carries two Message: lines, both kept in order.
    let (_, msgs) = decode_chunked(&read("04_presence_state.raw.txt"), usize::MAX);
    let ps = msgs
        .iter()
        .find(|m| m.action_id() == Some("04_presence_state-11"))
        .unwrap();
    assert_eq!(
        ps.get_all("Message").collect::<Vec<_>>(),
        ["Presence State", "back soon"]
    );
}

#[test]
fn f05_queue() {
    check_pair("05_queue");
}

#[test]
fn f06_two_servers() {
    assert_eq!(check_pair("06_inst1_side"), 2);
    check_pair("06_inst2_side");
}

#[test]
fn f07_queue_events_are_those_of_05() {
    let extracted = parse(&String::from_utf8(read("07_queue_agent_events_extracted.txt")).unwrap());
    let (_, all) = decode_chunked(&read("05_queue.raw.txt"), usize::MAX);
    let mut n = 0;
    for step in extracted {
        if let Step::Recv(m) = step {
            assert!(all.contains(&m), "{m:?} not in 05");
            n += 1;
        }
    }
    assert_eq!(n, 13);
}

/// 08 and 09 are listings as sent after a restart, with `#` notes and bare `\n` line ends.
fn listing(name: &str) -> Vec<Message> {
    let text = String::from_utf8(read(name)).unwrap();
    let body: String = text.split_inclusive('\n').filter(|l| !l.starts_with('#')).collect();
    let body = body.trim_start_matches(['\r', '\n']);
    let items = decode_all(&mut AmiCodec::client(), body.as_bytes()).unwrap();
    items
        .into_iter()
        .filter_map(|i| if let Ok(Frame::Message(m)) = i { Some(m) } else { None })
        .collect()
}

#[test]
fn f08_restored_state_listing() {
    let msgs = listing("08_after_restart_state_restored.txt");
    let devices: Vec<_> = msgs
        .iter()
        .filter(|m| m.action_id() == Some("d1") && m.get("Device").is_some())
        .collect();
    assert_eq!(devices.len(), 4);
    let done = msgs
        .iter()
        .find(|m| m.event_name() == Some("PresenceStateListComplete"))
        .unwrap();
    assert_eq!(done.get("ListItems"), Some("3"));
}

#[test]
fn f09_slash_names_after_restart() {
    let msgs = listing("09_restart_slash_names.txt");
    let custom: Vec<_> = msgs
        .iter()
        .filter(|m| m.get("Device").is_some_and(|d| d.starts_with("Custom:")))
        .collect();
    assert_eq!(custom.len(), 1);
    assert_eq!(custom[0].get("Device"), Some("Custom:100"));
    assert_eq!(custom[0].get("State"), Some("BUSY"));
    assert!(msgs.iter().all(|m| m.get("Presentity").is_none()));
}

#[test]
fn repo_copy_matches_shared_fixtures() {
    // CI and developers have ../shared beside the checkout; the copy in the repo must not drift.
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/ami/asterisk-22.10.1");
    let Ok(entries) = std::fs::read_dir(&shared) else {
        eprintln!("no shared fixtures at {}: copy not compared", shared.display());
        return;
    };
    for e in entries {
        let e = e.unwrap();
        let ours = std::fs::read(dir().join(e.file_name())).expect("fixture copied into the repo");
        assert_eq!(
            ours,
            std::fs::read(e.path()).unwrap(),
            "{:?} differs from shared/",
            e.file_name()
        );
    }
}
