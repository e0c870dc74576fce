//! Bytes to AMI messages and back, on tokio-util's codec framework.
//!
//! The decoder enforces Asterisk's own input limits (manager.c): a line of at most 1024 bytes
//! including its line end, at most 128 header lines per message. Input past them, or a header
//! line with no `:`, is refused as a [`FrameError`] *item*, not as a stream error, so the
//! connection carries on and the messages after the bad one are still read, as Asterisk does
//! ("Failed to parse message: line too long", session kept). Memory stays bounded whatever the
//! peer sends: an over-long line is discarded as it arrives, never buffered whole.
//!
//! Line ends may be `\r\n` or a bare `\n` (Asterisk accepts both).

use crate::message::{EncodeError, Message};
use bytes::{Buf, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

/// The prefix of the one-line banner Asterisk sends on connect.
pub const BANNER_PREFIX: &str = "Asterisk Call Manager/";

/// Input limits, by default Asterisk's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest line, counting its line end (manager.c reads lines into a 1024-byte buffer).
    pub max_line: usize,
    /// Most header lines in one message (manager.c keeps `AST_MAX_MANHEADERS` = 128).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line: 1024,
            max_headers: 128,
        }
    }
}

/// What the decoder yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The connect banner, holding the AMI version (`11.0.0` for Asterisk 22, `1.1` for 1.8).
    Banner(String),
    /// A complete message.
    Message(Message),
}

/// A message that was refused; the stream goes on after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("AMI line longer than {limit} bytes (ActionID {action_id:?})")]
    LineTooLong { limit: usize, action_id: Option<String> },
    #[error("AMI message with more than {limit} header lines (ActionID {action_id:?})")]
    TooManyHeaders { limit: usize, action_id: Option<String> },
    #[error("AMI header line without ':' : {line:?} (ActionID {action_id:?})")]
    MalformedHeader { line: String, action_id: Option<String> },
}

impl FrameError {
    /// The ActionID seen before the fault, so a server can still address its error reply.
    pub fn action_id(&self) -> Option<&str> {
        match self {
            FrameError::LineTooLong { action_id, .. }
            | FrameError::TooManyHeaders { action_id, .. }
            | FrameError::MalformedHeader { action_id, .. } => action_id.as_deref(),
        }
    }
}

/// A fault that ends the connection.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("AMI connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("not an Asterisk Manager Interface: first line was {0:?}")]
    BadBanner(String),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// The AMI codec. [`AmiCodec::client`] expects the banner first; [`AmiCodec::server`] does not.
#[derive(Debug)]
pub struct AmiCodec {
    limits: Limits,
    expect_banner: bool,
    headers: Vec<(String, String)>,
    /// Set while the rest of a refused message is being skipped.
    fault: Option<FrameError>,
    /// Set while the tail of an over-long line is being discarded.
    discarding_line: bool,
    /// How far the current partial line was already searched for `\n`.
    scanned: usize,
}

impl AmiCodec {
    /// For the side that connects to Asterisk: the first line is the banner.
    pub fn client() -> Self {
        Self::with_limits(true, Limits::default())
    }

    /// For the side that plays Asterisk: no banner is expected.
    pub fn server() -> Self {
        Self::with_limits(false, Limits::default())
    }

    /// A codec with explicit limits.
    pub fn with_limits(expect_banner: bool, limits: Limits) -> Self {
        Self {
            limits,
            expect_banner,
            headers: Vec::new(),
            fault: None,
            discarding_line: false,
            scanned: 0,
        }
    }

    fn action_id_so_far(&self) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("ActionID"))
            .map(|(_, v)| v.clone())
    }

    fn set_fault(&mut self, make: impl FnOnce(Option<String>) -> FrameError) {
        if self.fault.is_none() {
            let id = self.action_id_so_far();
            self.fault = Some(make(id));
        }
    }

    /// Handles one complete line (without its line end). Returns an item when a message ends.
    fn line(&mut self, line: &[u8]) -> Result<Option<Result<Frame, FrameError>>, CodecError> {
        if self.expect_banner {
            self.expect_banner = false;
            let text = String::from_utf8_lossy(line);
            return match text.strip_prefix(BANNER_PREFIX) {
                Some(version) => Ok(Some(Ok(Frame::Banner(version.trim().to_string())))),
                None => Err(CodecError::BadBanner(text.chars().take(80).collect())),
            };
        }
        if line.is_empty() {
            if let Some(fault) = self.fault.take() {
                self.headers.clear();
                return Ok(Some(Err(fault)));
            }
            if self.headers.is_empty() {
                // Blank lines between messages carry nothing.
                return Ok(None);
            }
            let headers = std::mem::take(&mut self.headers);
            return Ok(Some(Ok(Frame::Message(headers.into_iter().collect()))));
        }
        if self.fault.is_some() {
            return Ok(None);
        }
        if self.headers.len() >= self.limits.max_headers {
            let limit = self.limits.max_headers;
            self.set_fault(|action_id| FrameError::TooManyHeaders { limit, action_id });
            return Ok(None);
        }
        // Like astman_get_header: the name ends at the first ':', blanks after it are skipped,
        // so `Name:value` is read as Asterisk reads it.
        match memchr::memchr(b':', line) {
            Some(colon) if colon > 0 => {
                let name = String::from_utf8_lossy(&line[..colon]).into_owned();
                let mut value = &line[colon + 1..];
                while let [b' ' | b'\t', rest @ ..] = value {
                    value = rest;
                }
                self.headers.push((name, String::from_utf8_lossy(value).into_owned()));
            }
            _ => {
                let shown: String = String::from_utf8_lossy(line).chars().take(64).collect();
                self.set_fault(|action_id| FrameError::MalformedHeader { line: shown, action_id });
            }
        }
        Ok(None)
    }
}

impl Decoder for AmiCodec {
    type Item = Result<Frame, FrameError>;
    type Error = CodecError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        loop {
            if self.discarding_line {
                match memchr::memchr(b'\n', buf) {
                    Some(end) => {
                        buf.advance(end + 1);
                        self.discarding_line = false;
                    }
                    None => {
                        buf.clear();
                        return Ok(None);
                    }
                }
            }
            let window = buf.len().min(self.limits.max_line);
            match memchr::memchr(b'\n', &buf[self.scanned.min(window)..window]) {
                Some(pos) => {
                    let end = self.scanned.min(window) + pos;
                    self.scanned = 0;
                    let mut line = &buf[..end];
                    if let [rest @ .., b'\r'] = line {
                        line = rest;
                    }
                    let line = line.to_vec();
                    buf.advance(end + 1);
                    if let Some(item) = self.line(&line)? {
                        return Ok(Some(item));
                    }
                }
                None if buf.len() >= self.limits.max_line => {
                    // Too long: refuse the message, and drop the line's bytes as they come.
                    let limit = self.limits.max_line;
                    if self.expect_banner {
                        let text = String::from_utf8_lossy(&buf[..80.min(buf.len())]).into_owned();
                        return Err(CodecError::BadBanner(text));
                    }
                    self.set_fault(|action_id| FrameError::LineTooLong { limit, action_id });
                    self.scanned = 0;
                    // Drop the line's bytes; whatever follows it in the buffer is kept.
                    self.discarding_line = true;
                }
                None => {
                    self.scanned = buf.len();
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None => {
                // A peer that closes mid-message: what was cut off is not a message.
                buf.clear();
                self.headers.clear();
                self.fault = None;
                Ok(None)
            }
        }
    }
}

impl Encoder<&Message> for AmiCodec {
    type Error = CodecError;

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), CodecError> {
        let bytes = msg.to_bytes()?;
        dst.extend_from_slice(&bytes);
        Ok(())
    }
}

/// Decodes a whole byte string at once (tests, tools and benchmarks).
pub fn decode_all(codec: &mut AmiCodec, bytes: &[u8]) -> Result<Vec<Result<Frame, FrameError>>, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(item) = codec.decode(&mut buf)? {
        out.push(item);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs(items: Vec<Result<Frame, FrameError>>) -> Vec<Message> {
        items
            .into_iter()
            .filter_map(|i| match i {
                Ok(Frame::Message(m)) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn banner_then_messages_with_mixed_line_ends() {
        let mut c = AmiCodec::client();
        let items = decode_all(
            &mut c,
            b"Asterisk Call Manager/11.0.0\r\nResponse: Success\r\nPing: Pong\n\nEvent: X\nA:b\r\n\r\n",
        )
        .unwrap();
        assert_eq!(items[0], Ok(Frame::Banner("11.0.0".into())));
        let m = msgs(items);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].get("ping"), Some("Pong"));
        assert_eq!(m[1].get("A"), Some("b"));
    }

    #[test]
    fn empty_values_and_colons_in_values() {
        let mut c = AmiCodec::server();
        let m = msgs(decode_all(&mut c, b"Subtype: \r\nMessage: a: b\r\nX:\r\n\r\n").unwrap());
        assert_eq!(m[0].get("Subtype"), Some(""));
        assert_eq!(m[0].get("Message"), Some("a: b"));
        assert_eq!(m[0].get("X"), Some(""));
    }

    #[test]
    fn bad_banner_is_fatal() {
        let mut c = AmiCodec::client();
        assert!(matches!(
            decode_all(&mut c, b"SSH-2.0-OpenSSH\r\n"),
            Err(CodecError::BadBanner(_))
        ));
    }

    #[test]
    fn long_line_refused_and_next_message_kept() {
        let mut c = AmiCodec::server();
        let mut input = b"Action: Ping\r\nActionID: 7\r\nX: ".to_vec();
        input.extend(std::iter::repeat_n(b'a', 1100));
        input.extend_from_slice(b"\r\nY: 1\r\n\r\nAction: Ping\r\nActionID: 8\r\n\r\n");
        let items = decode_all(&mut c, &input).unwrap();
        assert_eq!(
            items[0],
            Err(FrameError::LineTooLong {
                limit: 1024,
                action_id: Some("7".into())
            })
        );
        assert_eq!(msgs(items)[0].action_id(), Some("8"));
    }

    #[test]
    fn line_limit_counts_the_line_end() {
        let mut c = AmiCodec::server();
        // 1022 bytes + CRLF = 1024: accepted.
        let mut ok = vec![b'a'; 4];
        ok.extend_from_slice(b": ");
        ok.extend(std::iter::repeat_n(b'v', 1016));
        ok.extend_from_slice(b"\r\n\r\n");
        assert_eq!(msgs(decode_all(&mut c, &ok).unwrap()).len(), 1);
        // One byte more: refused.
        let mut bad = vec![b'a'; 5];
        bad.extend_from_slice(b": ");
        bad.extend(std::iter::repeat_n(b'v', 1016));
        bad.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(
            decode_all(&mut c, &bad).unwrap()[0],
            Err(FrameError::LineTooLong { .. })
        ));
    }

    #[test]
    fn too_many_headers_refused() {
        let mut c = AmiCodec::server();
        let mut input = b"Action: Ping\r\nActionID: 9\r\n".to_vec();
        for i in 0..200 {
            input.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\nAction: Ping\r\n\r\n");
        let items = decode_all(&mut c, &input).unwrap();
        assert_eq!(
            items[0],
            Err(FrameError::TooManyHeaders {
                limit: 128,
                action_id: Some("9".into())
            })
        );
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn exactly_max_headers_is_accepted() {
        let mut c = AmiCodec::server();
        let mut input = Vec::new();
        for i in 0..128 {
            input.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        input.extend_from_slice(b"\r\n");
        assert_eq!(msgs(decode_all(&mut c, &input).unwrap())[0].len(), 128);
    }

    #[test]
    fn header_without_colon_refused() {
        let mut c = AmiCodec::server();
        let items = decode_all(
            &mut c,
            b"Action: Ping\r\nActionID: 3\r\ngarbage\r\n\r\nAction: Ping\r\n\r\n",
        )
        .unwrap();
        assert!(matches!(&items[0], Err(FrameError::MalformedHeader { action_id: Some(id), .. }) if id == "3"));
        assert_eq!(items.len(), 2);
    }

    #[test]
    fn split_anywhere_gives_the_same_messages() {
        let input = b"Asterisk Call Manager/11.0.0\r\nEvent: DeviceStateChange\r\nPrivilege: call,all\r\nDevice: Custom:100\r\nState: INUSE\r\n\r\nResponse: Success\nActionID: 1\n\n";
        let whole = decode_all(&mut AmiCodec::client(), input).unwrap();
        for cut in 0..input.len() {
            let mut c = AmiCodec::client();
            let mut buf = BytesMut::from(&input[..cut]);
            let mut items = Vec::new();
            while let Some(i) = c.decode(&mut buf).unwrap() {
                items.push(i);
            }
            buf.extend_from_slice(&input[cut..]);
            while let Some(i) = c.decode(&mut buf).unwrap() {
                items.push(i);
            }
            assert_eq!(items, whole, "cut at {cut}");
        }
    }

    #[test]
    fn endless_line_keeps_memory_bounded() {
        let mut c = AmiCodec::server();
        let mut buf = BytesMut::new();
        for _ in 0..1000 {
            buf.extend_from_slice(&[b'x'; 8192]);
            assert!(c.decode(&mut buf).unwrap().is_none());
            assert!(buf.len() <= 8192);
        }
        buf.extend_from_slice(b"\r\n\r\nAction: Ping\r\n\r\n");
        let items = decode_all(&mut c, &buf.split()).unwrap();
        assert!(matches!(items[0], Err(FrameError::LineTooLong { .. })));
        assert!(matches!(&items[1], Ok(Frame::Message(m)) if m.action_name() == Some("Ping")));
    }
}
