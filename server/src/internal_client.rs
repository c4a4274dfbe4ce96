//! The HTTP side of the contracts between roles: one signed, pooled client for every role's
//! internal API (`/internal/<role>/…`).
//!
//! Requests carry a service identity signed with the internal secret (`identity::internal`), so
//! the role answering verifies them like any request from the edge. Internal APIs answer 200 with
//! JSON (`null` for "no such thing"); anything else is the other role failing, reported as
//! [`Error::Upstream`] naming it.

use std::time::Duration;

use axum::http::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::{Position, Url};

use crate::clock::Clock;
use crate::error::{Error, Result, UpstreamFailure};
use crate::identity::ClientIp;
use crate::identity::internal::{Caller, Envelope, InternalSecret, LIFETIME_MS};

/// How long one internal call may take before the caller gives up.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest answer read from an internal API.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A secret sent to an internal API in a body, never in a URL (URLs end up in logs).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SecretBody {
    pub token: String,
}

#[derive(Clone)]
pub struct InternalClient {
    /// The role called, as errors name it.
    role: &'static str,
    /// The role calling, as the callee's logs see it.
    caller: String,
    base: Url,
    http: reqwest::Client,
    secret: InternalSecret,
    clock: Clock,
}

impl InternalClient {
    pub fn new(
        role: &'static str,
        caller: &str,
        base: Url,
        secret: InternalSecret,
        clock: Clock,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Error::Internal(e.into()))?;
        Ok(InternalClient {
            role,
            caller: caller.to_owned(),
            base,
            http,
            secret,
            clock,
        })
    }

    fn upstream(&self, detail: impl std::fmt::Display) -> Error {
        self.failed(UpstreamFailure::BadAnswer, detail)
    }

    fn failed(&self, failure: UpstreamFailure, detail: impl std::fmt::Display) -> Error {
        Error::Upstream {
            role: self.role.to_owned(),
            failure,
            detail: detail.to_string(),
        }
    }

    fn send_failed(&self, url: &Url, e: reqwest::Error) -> Error {
        let failure = if e.is_connect() {
            UpstreamFailure::Unreachable
        } else if e.is_timeout() {
            UpstreamFailure::Timeout
        } else {
            UpstreamFailure::BadAnswer
        };
        self.failed(failure, format!("{url}: {e}"))
    }

    /// Calls `method /segments…` (each segment percent-encoded) with an optional JSON body and
    /// decodes the JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<T> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| self.upstream("its URL cannot have a path"))?
            .pop_if_empty()
            .extend(segments);
        let envelope = Envelope {
            caller: Caller::Service(self.caller.clone()),
            identity: None,
            grant: None,
            client_ip: ClientIp::default(),
            expires_at: self.clock.now() + LIFETIME_MS,
        };
        let signed = self
            .secret
            .sign(&envelope, &method, &url[Position::BeforePath..]);
        let mut request = self.http.request(method, url.clone());
        for (name, value) in signed {
            request = request.header(name, value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| self.send_failed(&url, e))?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.send_failed(&url, e))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(self.upstream(format!(
                    "{url}: answer larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(self.upstream(format!(
                "{url} answered {status}: {}",
                text.chars().take(300).collect::<String>()
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| self.upstream(format!("{url}: bad answer: {e}")))
    }
}
