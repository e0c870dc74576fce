//! Parse and encode throughput of the AMI codec on real Asterisk 22 traffic.
//! Run: `cargo bench -p ami --bench codec`

use ami::codec::{AmiCodec, Frame};
use ami::Message;
use bytes::BytesMut;
use std::time::Instant;
use tokio_util::codec::{Decoder, Encoder};

fn fixture(name: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/ami/asterisk-22.10.1")
        .join(name);
    let bytes = std::fs::read(p).expect("fixture");
    // Drop the banner line: the stream below repeats the bodies after one banner.
    let end = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    bytes[end..].to_vec()
}

fn main() {
    let mut body = Vec::new();
    for f in [
        "03_device_state.raw.txt",
        "04_presence_state.raw.txt",
        "05_queue.raw.txt",
    ] {
        body.extend(fixture(f));
    }
    let mut stream = b"Asterisk Call Manager/11.0.0\r\n".to_vec();
    while stream.len() < 64 << 20 {
        stream.extend_from_slice(&body);
    }
    let mb = stream.len() as f64 / (1 << 20) as f64;

    for chunk in [4096usize, 65536] {
        let mut best = f64::MAX;
        let mut count = 0;
        for _ in 0..3 {
            let mut codec = AmiCodec::client();
            let mut buf = BytesMut::with_capacity(chunk * 2);
            count = 0usize;
            let t = Instant::now();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(item) = codec.decode(&mut buf).unwrap() {
                    if let Ok(Frame::Message(m)) = item {
                        count += 1;
                        std::hint::black_box(m);
                    }
                }
            }
            best = best.min(t.elapsed().as_secs_f64());
        }
        println!(
            "decode  {mb:.0} MiB of Asterisk 22 traffic in {chunk:>5}-byte reads: {:7.1} MB/s  {:10.0} messages/s  ({count} messages, avg {:.0} bytes)",
            mb / best,
            count as f64 / best,
            stream.len() as f64 / count as f64
        );
    }

    let n = 1_000_000;
    let mut codec = AmiCodec::client();
    let mut dst = BytesMut::with_capacity(64 << 20);
    let t = Instant::now();
    for i in 0..n {
        let m = Message::action("Setvar")
            .with("ActionID", format!("hb-{i}"))
            .with("Variable", "DEVICE_STATE(Custom:SIP/100)")
            .with("Value", "INUSE");
        codec.encode(&m, &mut dst).unwrap();
        if dst.len() > 32 << 20 {
            dst.clear();
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "encode  Setvar actions (with CR/LF checks): {:10.0} messages/s",
        n as f64 / s
    );
}
