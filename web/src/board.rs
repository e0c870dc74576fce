//! The BLF board: one page, its script and its style, compiled into the binary (no build
//! step, no CDN). The page has no data of its own: it reads `/api/ws` (with the token from
//! its URL's `#token=`, when the listener needs one).

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

const HTML: &str = include_str!("../assets/board.html");
const JS: &str = include_str!("../assets/board.js");
const CSS: &str = include_str!("../assets/board.css");

fn asset(body: &'static str, kind: &'static str) -> impl IntoResponse {
    ([(CONTENT_TYPE, kind), (CACHE_CONTROL, "no-cache")], body)
}

pub fn routes() -> axum::Router<Arc<crate::App>> {
    axum::Router::new()
        .route("/", get(|| async { asset(HTML, "text/html; charset=utf-8") }))
        .route(
            "/board.js",
            get(|| async { asset(JS, "text/javascript; charset=utf-8") }),
        )
        .route("/board.css", get(|| async { asset(CSS, "text/css; charset=utf-8") }))
}
