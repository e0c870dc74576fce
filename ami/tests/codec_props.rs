//! Property tests of the codec: whatever bytes arrive, in whatever pieces, decoding never
//! panics, memory stays bounded, and what we encode decodes back to itself.
//! Case count: PROPTEST_CASES (CI sets it; the default here keeps a local run short).

use ami::codec::{AmiCodec, Frame, Limits};
use ami::Message;
use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

/// Bytes that look like AMI often enough to reach every state of the decoder.
fn ami_ish() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just(b"Action: Ping".to_vec()),
        Just(b"ActionID: 1".to_vec()),
        Just(b"Event: DeviceStateChange".to_vec()),
        Just(b"Asterisk Call Manager/11.0.0".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\n".to_vec()),
        Just(b"\r".to_vec()),
        Just(b":".to_vec()),
        Just(b": ".to_vec()),
        Just(vec![b'x'; 1023]),
        Just(vec![b'y'; 1500]),
        prop::collection::vec(any::<u8>(), 0..64),
    ];
    prop::collection::vec(token, 0..200).prop_map(|v| v.concat())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..700, 1..20)
}

fn run(codec: &mut AmiCodec, input: &[u8], cuts: &[usize]) -> Vec<Result<Frame, String>> {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < input.len() {
        let n = cuts[i % cuts.len()].min(input.len() - pos);
        buf.extend_from_slice(&input[pos..pos + n]);
        pos += n;
        i += 1;
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(item)) => out.push(item.map_err(|e| e.to_string())),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(format!("fatal: {e}")));
                    return out;
                }
            }
        }
        // Bounded: what stays buffered is less than one line.
        assert!(buf.len() < limits.max_line, "buffer holds {} bytes", buf.len());
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256), ..ProptestConfig::default() })]

    #[test]
    fn any_input_any_split_no_panic_bounded(input in ami_ish(), cuts in cuts(), banner in any::<bool>()) {
        let limits = Limits::default();
        let mut codec = AmiCodec::with_limits(banner, limits);
        for item in run(&mut codec, &input, &cuts) {
            if let Ok(Frame::Message(m)) = item {
                prop_assert!(m.len() <= limits.max_headers);
                for (n, v) in m.headers() {
                    prop_assert!(n.len() + v.len() + 2 <= limits.max_line);
                }
            }
        }
    }

    #[test]
    fn split_does_not_change_the_result(input in ami_ish(), cuts in cuts()) {
        let whole = run(&mut AmiCodec::server(), &input, &[usize::MAX]);
        let split = run(&mut AmiCodec::server(), &input, &cuts);
        prop_assert_eq!(whole, split);
    }

    #[test]
    fn encode_then_decode_is_identity(
        headers in prop::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,20}", "([!-~][ -~]{0,60})?"), 1..40),
        cuts in cuts(),
    ) {
        let msg: Message = headers.into_iter().collect();
        let mut bytes = msg.to_bytes().unwrap();
        bytes.extend_from_slice(&Message::action("Ping").to_bytes().unwrap());
        let got = run(&mut AmiCodec::server(), &bytes, &cuts);
        prop_assert_eq!(got.len(), 2);
        prop_assert_eq!(&got[0], &Ok(Frame::Message(msg)));
    }

    #[test]
    fn line_breaks_are_never_encoded(name in "[A-Za-z]{1,8}", before in "[ -~]{0,8}", brk in prop_oneof![Just("\r"), Just("\n"), Just("\r\n")], after in "[ -~]{0,8}") {
        let value = format!("{before}{brk}{after}");
        prop_assert!(Message::action("Setvar").with(name.clone(), value).to_bytes().is_err());
        let bad_name = format!("{name}{brk}X");
        prop_assert!(Message::action("Setvar").with(bad_name, "v").to_bytes().is_err());
    }
}
