//! Deployment-wide endpoints that belong to no single role: `GET /api/version` and
//! `POST /api/client-errors` (the SPA reporting its own failures into the server log).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use shared::{ClientErrorReport, ErrorCode, VersionInfo};

use super::UsersState;
use crate::error::{Error, Json, Result};
use crate::store::INSTALLATION_ID;

pub fn router() -> Router<UsersState> {
    Router::new()
        .route("/version", get(version))
        .route("/client-errors", post(client_error))
}

async fn version(State(state): State<UsersState>) -> Result<Json<VersionInfo>> {
    let installation_id = state
        .store
        .get_setting(INSTALLATION_ID)
        .await?
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("installation id missing after prepare")))?;
    Ok(Json(VersionInfo {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        git_commit: option_env!("SCOPEHUB_GIT_COMMIT").map(str::to_owned),
        database: state.store.backend(),
        installation_id,
    }))
}

async fn client_error(
    State(state): State<UsersState>,
    Json(report): Json<ClientErrorReport>,
) -> Result<StatusCode> {
    report.validate().map_err(Error::validation)?;
    if !state.client_errors.try_acquire() {
        return Err(Error::client(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::TooManyRequests,
            "Too many error reports; some were dropped.",
        ));
    }
    tracing::warn!(
        target: "scopehub::client",
        url = %loggable_url(&report.url),
        message = %one_line(&report.message),
        "web app reported an error"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Text from anyone, fit for one log line: control characters (newlines that would forge log
/// lines, escape sequences) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// A page URL without its query and fragment, which carry links' tokens (`/reset?token=…`).
fn loggable_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    one_line(&url[..end])
}

/// A token bucket for the unauthenticated client-error endpoint, so that nobody can flood the log.
#[derive(Clone)]
pub struct ClientErrorLimiter {
    bucket: Arc<Mutex<Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl ClientErrorLimiter {
    /// Reports allowed in a burst; the bucket refills at `BURST` per `REFILL`.
    const BURST: f64 = 30.0;
    const REFILL: Duration = Duration::from_secs(60);

    pub fn try_acquire(&self) -> bool {
        let Ok(mut bucket) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed * Self::BURST / Self::REFILL.as_secs_f64()).min(Self::BURST);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Default for ClientErrorLimiter {
    fn default() -> Self {
        ClientErrorLimiter {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: Self::BURST,
                refilled: Instant::now(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{loggable_url, one_line};

    #[test]
    fn reports_cannot_forge_log_lines_or_leak_tokens() {
        assert_eq!(
            one_line("boom\n2026-01-01 INFO forged\r\u{1b}[31m"),
            "boom 2026-01-01 INFO forged  [31m"
        );
        assert_eq!(
            loggable_url("http://h/reset-password?token=shr_secret#x"),
            "http://h/reset-password"
        );
        assert_eq!(
            loggable_url("http://h/invite#token=shi_x"),
            "http://h/invite"
        );
        assert_eq!(loggable_url("http://h/orgs/1"), "http://h/orgs/1");
    }
}
