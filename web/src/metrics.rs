//! `/metrics`: the process's registry in the Prometheus text format.

use crate::App;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use std::sync::Arc;

pub async fn handler(State(app): State<Arc<App>>) -> impl IntoResponse {
    let mut text = String::new();
    // Encoding into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut text, &app.registry);
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
