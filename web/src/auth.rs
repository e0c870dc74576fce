//! Who may read: anyone on loopback without a token, everyone else only with it.
//!
//! The token is a bearer token (`Authorization: Bearer ...`); a browser's WebSocket cannot
//! send headers, so `?token=` is taken as well. A listener on anything but loopback without a
//! token is refused at start: the table names every extension and who is on a call.

use crate::App;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Refuses to listen beyond loopback without a token.
pub fn check_listen(listen: &str, token: Option<&str>) -> Result<(), String> {
    if token.is_some() || is_loopback(listen) {
        return Ok(());
    }
    Err(format!(
        "listening on {listen} without a token: set [http] token (and put TLS in front, see docs/security.md), or listen on loopback"
    ))
}

/// Whether `host:port` is on this machine only.
pub fn is_loopback(listen: &str) -> bool {
    let host = listen.rsplit_once(':').map_or(listen, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The middleware of every `/api/*` and `/metrics` route.
pub async fn require(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let Some(token) = app.token.as_deref() else {
        return next.run(req).await;
    };
    let header = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Only the WebSocket, which a browser cannot give a header: elsewhere a token in the
    // query would end up in proxies' access logs.
    let query = (req.uri().path() == "/api/ws")
        .then(|| req.uri().query())
        .flatten()
        .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("token=")));
    let given = header.or(query).unwrap_or("");
    if same(given.as_bytes(), token.as_bytes()) {
        next.run(req).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Bearer")],
            "a token is needed\n",
        )
            .into_response()
    }
}

/// Compares in time that does not depend on where they differ (no crate for four lines).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_without_a_token() {
        assert!(check_listen("127.0.0.1:5580", None).is_ok());
        assert!(check_listen("[::1]:5580", None).is_ok());
        assert!(check_listen("localhost:5580", None).is_ok());
        let e = check_listen("0.0.0.0:5580", None).unwrap_err();
        assert!(e.contains("0.0.0.0:5580") && e.contains("[http] token"), "{e}");
        assert!(check_listen("0.0.0.0:5580", Some("s3cret")).is_ok());
        assert!(same(b"abc", b"abc") && !same(b"abc", b"abd") && !same(b"abc", b"ab"));
    }
}
