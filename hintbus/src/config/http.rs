//! `[http]`: where the broker or agent serves metrics, status and the board (docs/http.md).

use super::error::ConfigError;
use super::load::Loaded;
use serde::Deserialize;

/// The broker's listener when `[http] listen` is not given.
pub const BROKER_LISTEN: &str = "127.0.0.1:5580";
/// An agent's, beside a broker on the same machine.
pub const AGENT_LISTEN: &str = "127.0.0.1:5581";
/// The shortest token accepted: a guessable one protects nothing.
const MIN_TOKEN: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSection {
    listen: Option<String>,
    token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Http {
    /// None: no listener (`listen = off`).
    pub listen: Option<String>,
    pub token: Option<String>,
}

/// `[http]` for a role whose default listener is `default_listen`.
pub fn http(l: &Loaded, default_listen: &str) -> Result<Http, ConfigError> {
    let s = l.section("http");
    let h: HttpSection = s.typed()?;
    let token = h.token.filter(|t| !t.is_empty());
    if let Some(t) = &token {
        // Characters a URL carries as they are: a browser's WebSocket sends it as `?token=`.
        let unreserved = |c: char| c.is_ascii_alphanumeric() || "-._~".contains(c);
        if t.len() < MIN_TOKEN || !t.chars().all(unreserved) {
            return Err(s.err(
                "token",
                format!("must be at least {MIN_TOKEN} of A-Z a-z 0-9 - . _ ~ (`openssl rand -hex 16` makes one)"),
            ));
        }
    }
    let listen = match h.listen {
        None => Some(default_listen.to_string()),
        Some(v) if v.eq_ignore_ascii_case("off") => None,
        Some(v) => Some(v),
    };
    if let Some(v) = &listen {
        let port_ok = v
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if !port_ok {
            return Err(s.err(
                "listen",
                "must be host:port (127.0.0.1:5580, [::1]:5580), or off for none",
            ));
        }
        web::auth::check_listen(v, token.as_deref()).map_err(|e| s.err("listen", e))?;
    }
    Ok(Http { listen, token })
}
