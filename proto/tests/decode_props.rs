//! The protocol decoder against hostile frames: random bytes, mutated messages, any JSON.
//! Never a panic; every accepted entry either validates or is refused with an error.
//! Case count: PROPTEST_CASES.

use ami::DeviceState;
use proptest::prelude::*;
use proto::{Entry, Msg};

fn valid_frames() -> Vec<Vec<u8>> {
    vec![
        Msg::Hello {
            server: "a".into(),
            instance: 7,
            software: "x".into(),
        }
        .encode(),
        Msg::Update {
            entries: vec![Entry::device("a", "SIP/100", DeviceState::Inuse)],
        }
        .encode(),
        Msg::Sync {
            sync_id: 1,
            entries: vec![],
            last: true,
        }
        .encode(),
        Msg::Snapshot {
            seq: 3,
            entries: vec![Entry::device("b", "Custom:x", DeviceState::Busy)],
            last: false,
        }
        .encode(),
        Msg::Heartbeat.encode(),
    ]
}

fn check(frame: &[u8]) {
    if let Ok(
        Msg::Update { entries }
        | Msg::Sync { entries, .. }
        | Msg::Snapshot { entries, .. }
        | Msg::Updates { entries, .. },
    ) = Msg::decode(frame)
    {
        for e in entries {
            // Validation decides; it must not panic whatever the fields hold.
            let _ = e.value();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes(frame in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&frame);
    }

    #[test]
    fn mutated_messages(which in 0usize..5, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut frame = valid_frames()[which].clone();
        for (i, b) in flips {
            let at = i.index(frame.len());
            frame[at] = b;
        }
        check(&frame);
    }

    #[test]
    fn any_json_with_our_envelope(kind in "[a-z_]{1,20}", name in ".{0,120}", state in ".{0,20}", v in 0u32..3) {
        let text = serde_json::json!({"v": v, "type": kind, "entries": [{"origin": "a", "kind": "device", "name": name, "state": state}]}).to_string();
        check(text.as_bytes());
        let upd = serde_json::json!({"v": 1, "type": "update", "entries": [{"origin": "a", "kind": "device", "name": name, "state": state}]}).to_string();
        if let Ok(Msg::Update { entries }) = Msg::decode(upd.as_bytes()) {
            if let Ok(Some(_)) = entries[0].value() {
                // Whatever validates is safe inside DEVICE_STATE(...): no CR, LF, parenthesis or comma.
                prop_assert!(!entries[0].name.contains(['\r', '\n', '(', ')', ',']));
            }
        }
    }
}
