//! The portal's static files, built into the binary: the identity agent's JavaScript client
//! (from `agent-ipc/js`), the pages' script, their style sheet and icon.

use axum::extract::Path;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One asset: its name under `/portal/assets/`, its content type and its bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

const ASSETS: &[Asset] = &[
    Asset {
        name: "identity-agent.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../../agent-ipc/js/identity-agent.js"),
    },
    Asset {
        name: "portal.js",
        content_type: JAVASCRIPT,
        body: include_str!("../../portal/portal.js"),
    },
    Asset {
        name: "portal.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../portal/portal.css"),
    },
    Asset {
        name: "favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../portal/favicon.svg"),
    },
];

/// `GET /portal/assets/{name}`: the asset, or `404`.
pub async fn asset(Path(name): Path<String>) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static(asset.content_type)),
            // Revalidated each time: a new service version's pages never run old scripts.
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        asset.body,
    )
        .into_response()
}
