//! The UI role: serves the built web app (trunk's `dist/`). It has no database and no state but
//! the folder; in `serve` its router is the edge's fallback.
//!
//! - Paths without a file extension are app routes: they get `index.html` with status 200, so deep
//!   links work, and `Cache-Control: no-cache` so a deploy is picked up on the next load.
//! - The app comes in two bundles: `index.html` loads the first-visit one, without the map;
//!   `map.html` the full one, which the map's routes (`FULL_APP_ROUTES`) get (docs/map.md). A
//!   `dist/` without `map.html` serves `index.html` everywhere.
//! - Files whose names carry trunk's content hash are cached for a year, `immutable`.
//! - Other files (favicon, …) are cached briefly.
//! - A missing file with an extension is a plain 404 (a broken asset link must not look like a page).
//! - `/api` and `/api/…` never get the app: they answer the API's JSON 404 (most are caught by the
//!   `/api` router's own fallback; the bare prefix forms fall through to here).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::error::Error;

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const NO_CACHE: &str = "no-cache";
const SHORT: &str = "public, max-age=3600";

#[derive(Clone)]
pub struct Spa {
    inner: Arc<SpaInner>,
}

struct SpaInner {
    dir: PathBuf,
    files: ServeDir,
    index: ServeFile,
    full_app: ServeFile,
}

/// The app routes that get the full bundle (`map.html`): the map's. The web app's `main.rs` gives
/// the same routes to its map loader in the first-visit bundle. `*` is one path segment.
pub const FULL_APP_ROUTES: &[&str] = &["/instances/*/map", "/bench/layout"];

/// Whether `path` is one of `FULL_APP_ROUTES` (a trailing `/` allowed).
pub fn wants_full_app(path: &str) -> bool {
    let path = path.strip_suffix('/').unwrap_or(path);
    FULL_APP_ROUTES.iter().any(|route| {
        let mut given = path.split('/');
        let mut pattern = route.split('/');
        loop {
            match (given.next(), pattern.next()) {
                (None, None) => return true,
                (Some(g), Some("*")) if !g.is_empty() => {}
                (Some(g), Some(p)) if g == p => {}
                _ => return false,
            }
        }
    })
}

impl Spa {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        let files = ServeDir::new(&dir).append_index_html_on_directories(false);
        let index = ServeFile::new(dir.join("index.html"));
        let full_app = ServeFile::new(dir.join("map.html"));
        Spa {
            inner: Arc::new(SpaInner {
                dir,
                files,
                index,
                full_app,
            }),
        }
    }

    pub fn is_built(&self) -> bool {
        self.inner.dir.join("index.html").is_file()
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }
}

/// The UI role's router: every path falls back to the web app.
pub fn router(spa: Spa) -> axum::Router {
    axum::Router::new().fallback(serve).with_state(spa)
}

/// Fallback handler for every path no route matched outside `/api`.
pub async fn serve(State(spa): State<Spa>, req: Request) -> Response {
    let path = req.uri().path().to_owned();
    if path == "/api" || path.starts_with("/api/") {
        return Error::not_found("No API route matches this path.").into_response();
    }
    let last_segment = path.rsplit('/').next().unwrap_or("");
    if !last_segment.contains('.') {
        return serve_index(&spa, req).await;
    }
    let response = match spa.inner.files.clone().oneshot(req).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    if response.status() == StatusCode::NOT_FOUND {
        return (StatusCode::NOT_FOUND, "Not found").into_response();
    }
    let policy = if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED
    {
        if is_hashed(last_segment) {
            IMMUTABLE
        } else {
            SHORT
        }
    } else {
        NO_CACHE
    };
    with_cache_control(response, policy)
}

async fn serve_index(spa: &Spa, req: Request) -> Response {
    if !spa.is_built() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, NO_CACHE),
            ],
            "<!doctype html><title>Scopehub</title><h1>The web app is not built</h1>\
             <p>Run <code>make run</code>, or <code>make app</code>, then reload.</p>",
        )
            .into_response();
    }
    let page = if wants_full_app(req.uri().path()) && spa.inner.dir.join("map.html").is_file() {
        &spa.inner.full_app
    } else {
        &spa.inner.index
    };
    let response = match page.clone().oneshot(req).await {
        Ok(response) => response.map(Body::new),
        Err(never) => match never {},
    };
    with_cache_control(response, NO_CACHE)
}

fn with_cache_control(mut response: Response, policy: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static(policy));
    response
}

/// Whether a file name carries trunk's content hash: `-`, the hash in hex, then `.` or `_`
/// (e.g. `scopehub-app-3f2a9c0d1e4b5a6f_bg.wasm`, `favicon-8def0a0082ca655.svg`). Trunk prints the
/// 64-bit hash without leading zeros, so it has up to 16 digits; fewer than 12 is taken as a name.
pub fn is_hashed(name: &str) -> bool {
    name.match_indices('-').any(|(at, _)| {
        let rest = &name.as_bytes()[at + 1..];
        let digits = rest.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        (12..=16).contains(&digits) && matches!(rest.get(digits), Some(b'.' | b'_'))
    })
}

#[cfg(test)]
mod tests {
    use super::{is_hashed, wants_full_app};

    #[test]
    fn only_the_map_routes_get_the_full_app() {
        assert!(wants_full_app("/instances/abc/map"));
        assert!(wants_full_app("/instances/abc/map/"));
        assert!(wants_full_app("/bench/layout"));
        assert!(!wants_full_app("/instances/abc"));
        assert!(!wants_full_app("/instances//map"));
        assert!(!wants_full_app("/instances/abc/map/x"));
        assert!(!wants_full_app("/instances/map"));
        assert!(!wants_full_app("/"));
        assert!(!wants_full_app("/orgs/x"));
    }

    #[test]
    fn recognises_trunk_hashes_only() {
        assert!(is_hashed("scopehub-app-3f2a9c0d1e4b5a6f_bg.wasm"));
        assert!(is_hashed("scopehub-app-3f2a9c0d1e4b5a6f.js"));
        assert!(is_hashed("style-0123456789abcdef.css"));
        assert!(!is_hashed("favicon.ico"));
        assert!(!is_hashed("index.html"));
        assert!(is_hashed("favicon-8def0a0082ca655.svg"));
        assert!(!is_hashed("app-0123456789a.js"));
        assert!(!is_hashed("app-0123456789abcdef0.js"));
        assert!(!is_hashed("my-deadbeef.js"));
        assert!(!is_hashed("app-0123456789abcdeg.js"));
    }
}
