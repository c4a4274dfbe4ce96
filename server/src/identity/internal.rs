//! Identity across a process boundary: the headers only the edge (and roles calling each other's
//! internal APIs) set, authenticated with an HMAC keyed by the internal secret (design.md §9).
//!
//! The signature covers the identity, the method, the path with its query and a short expiry, so
//! a captured header set cannot be replayed onto another path or after it expires, and a request
//! that did not pass the edge can claim nothing: [`trust_edge`] refuses it with 401.

use std::fmt;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::{ClientIp, Grant, Identity, unauthorized};
use crate::clock::Clock;

/// The signed identity (base64url JSON of an [`Envelope`]).
pub const IDENTITY_HEADER: &str = "x-scopehub-identity";
/// Hex HMAC-SHA256 over method, path, expiry and the identity header.
pub const SIGNATURE_HEADER: &str = "x-scopehub-signature";
/// Headers only the edge may set: any copy that comes from outside is deleted before anything
/// else looks at the request. `X-Scope-OrgID` and `X-Scope-UserID` are Scope's tenant headers.
pub const RESERVED_HEADERS: [&str; 4] = [
    "x-scope-orgid",
    "x-scope-userid",
    IDENTITY_HEADER,
    SIGNATURE_HEADER,
];
/// How long a signed identity is accepted after it is made.
pub const LIFETIME_MS: i64 = 30_000;
/// The shortest secret accepted: 32 bytes, as the HMAC's own output.
const MIN_SECRET_BYTES: usize = 32;
/// Identities larger than this are refused before they are decoded.
const MAX_IDENTITY_BYTES: usize = 8 * 1024;

/// Who signed: the edge on behalf of a client, or a role calling another role's internal API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "snake_case")]
pub enum Caller {
    Edge,
    Service(String),
}

/// Everything the edge hands a role about one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub caller: Caller,
    pub identity: Option<Identity>,
    pub grant: Option<Grant>,
    pub client_ip: ClientIp,
    /// Milliseconds since the epoch after which the signature is refused.
    pub expires_at: i64,
}

/// The key shared by the edge and the roles. Never printed.
#[derive(Clone)]
pub struct InternalSecret(Arc<Vec<u8>>);

impl fmt::Debug for InternalSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InternalSecret(***)")
    }
}

impl std::str::FromStr for InternalSecret {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "the internal secret must be at least {MIN_SECRET_BYTES} characters (e.g. `openssl rand -hex 32`)"
            ));
        }
        Ok(InternalSecret(Arc::new(s.as_bytes().to_vec())))
    }
}

/// Why a signed identity was refused (logged; the client sees a plain 401).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no signed identity")]
    Missing,
    #[error("malformed identity headers")]
    Malformed,
    #[error("signature does not verify")]
    BadSignature,
    #[error("signed identity expired")]
    Expired,
}

impl InternalSecret {
    /// A fresh random secret (what `serve` uses: nothing outside the process needs it).
    pub fn generate() -> Self {
        InternalSecret(Arc::new(crate::secrets::random_hex(32).into_bytes()))
    }

    fn mac(&self, method: &Method, path_and_query: &str, identity: &str) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        for part in [method.as_str(), path_and_query, identity] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The headers that carry `envelope` on a request `method path_and_query`.
    pub fn sign(
        &self,
        envelope: &Envelope,
        method: &Method,
        path_and_query: &str,
    ) -> [(HeaderName, HeaderValue); 2] {
        let json = serde_json::to_vec(envelope).expect("an envelope always serialises");
        let encoded = URL_SAFE_NO_PAD.encode(json);
        let signature = self
            .mac(method, path_and_query, &encoded)
            .finalize()
            .into_bytes();
        let hex = crate::secrets::hex(&signature);
        [
            (
                HeaderName::from_static(IDENTITY_HEADER),
                HeaderValue::from_str(&encoded).expect("base64url is a valid header value"),
            ),
            (
                HeaderName::from_static(SIGNATURE_HEADER),
                HeaderValue::from_str(&hex).expect("hex is a valid header value"),
            ),
        ]
    }

    /// The envelope on a request, if its signature verifies for this method and path and it has
    /// not expired at `now_ms`.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path_and_query: &str,
        now_ms: i64,
    ) -> Result<Envelope, Refused> {
        let (Some(identity), Some(signature)) =
            (headers.get(IDENTITY_HEADER), headers.get(SIGNATURE_HEADER))
        else {
            return Err(Refused::Missing);
        };
        let identity = identity.to_str().map_err(|_| Refused::Malformed)?;
        if identity.len() > MAX_IDENTITY_BYTES {
            return Err(Refused::Malformed);
        }
        let signature = decode_hex(signature.to_str().map_err(|_| Refused::Malformed)?)
            .ok_or(Refused::Malformed)?;
        self.mac(method, path_and_query, identity)
            .verify_slice(&signature)
            .map_err(|_| Refused::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(identity)
            .map_err(|_| Refused::Malformed)?;
        let envelope: Envelope = serde_json::from_slice(&json).map_err(|_| Refused::Malformed)?;
        if envelope.expires_at < now_ms {
            return Err(Refused::Expired);
        }
        Ok(envelope)
    }
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The path and query a signature covers.
pub fn signed_path(uri: &axum::http::Uri) -> &str {
    uri.path_and_query().map_or(uri.path(), |pq| pq.as_str())
}

/// What a role behind the edge needs to check identities.
#[derive(Clone)]
pub struct Verifier {
    pub secret: InternalSecret,
    pub clock: Clock,
}

/// Paths every process answers without an identity: probes and scrapers reach them directly.
pub fn is_operational(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// The layer in front of a role running as its own process: every request but the operational
/// ones must carry a signed identity that verifies, or it is refused with 401. A verified identity
/// becomes the same request extensions the edge installs in one process.
pub async fn trust_edge(
    State(verifier): State<Verifier>,
    mut req: Request,
    next: Next,
) -> Response {
    if is_operational(req.uri().path()) {
        return next.run(req).await;
    }
    let verified = verifier.secret.verify(
        req.headers(),
        req.method(),
        signed_path(req.uri()),
        verifier.clock.now(),
    );
    let envelope = match verified {
        Ok(envelope) => envelope,
        Err(why) => {
            tracing::warn!(path = %req.uri().path(), reason = %why, "request without a valid edge identity refused");
            return unauthorized().into_response();
        }
    };
    // Internal APIs are for roles calling each other; the edge never signs for them (it does not
    // route `/internal` from outside), so an edge identity there means something went wrong.
    if req.uri().path().starts_with("/internal/") && envelope.caller == Caller::Edge {
        tracing::warn!(path = %req.uri().path(), "edge identity on an internal API refused");
        return unauthorized().into_response();
    }
    for name in RESERVED_HEADERS {
        req.headers_mut().remove(name);
    }
    let extensions = req.extensions_mut();
    extensions.insert(envelope.client_ip);
    extensions.insert(envelope.caller);
    if let Some(identity) = envelope.identity {
        extensions.insert(identity);
    }
    if let Some(grant) = envelope.grant {
        extensions.insert(grant);
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{User, Via};
    use shared::users::AccountStatus;

    fn secret() -> InternalSecret {
        "0123456789abcdef0123456789abcdef".parse().unwrap()
    }

    fn envelope(expires_at: i64) -> Envelope {
        Envelope {
            caller: Caller::Edge,
            identity: Some(Identity {
                user: User {
                    id: "u1".into(),
                    email: "a@example.com".into(),
                    status: AccountStatus::Approved,
                    is_admin: false,
                },
                via: Via::Session {
                    id: "s1".into(),
                    csrf_token: "c".into(),
                },
            }),
            grant: Some(Grant::Reader {
                instance: "i1".into(),
                org: "o1".into(),
                role: shared::users::Role::Editor,
            }),
            client_ip: ClientIp(Some("127.0.0.1".into())),
            expires_at,
        }
    }

    fn headers(pairs: [(HeaderName, HeaderValue); 2]) -> HeaderMap {
        pairs.into_iter().collect()
    }

    #[test]
    fn a_signed_identity_verifies_only_for_its_method_path_and_time() {
        let s = secret();
        let e = envelope(10_000);
        let h = headers(s.sign(&e, &Method::GET, "/api/app/i1/api/topology"));
        assert_eq!(
            s.verify(&h, &Method::GET, "/api/app/i1/api/topology", 5_000),
            Ok(e.clone())
        );
        assert_eq!(
            s.verify(&h, &Method::GET, "/api/app/i2/api/topology", 5_000),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            s.verify(&h, &Method::POST, "/api/app/i1/api/topology", 5_000),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            s.verify(&h, &Method::GET, "/api/app/i1/api/topology", 10_001),
            Err(Refused::Expired)
        );
        let other: InternalSecret = "another secret of at least thirty-two chars"
            .parse()
            .unwrap();
        assert_eq!(
            other.verify(&h, &Method::GET, "/api/app/i1/api/topology", 5_000),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            s.verify(&HeaderMap::new(), &Method::GET, "/", 0),
            Err(Refused::Missing)
        );
    }

    #[test]
    fn an_altered_identity_does_not_verify() {
        let s = secret();
        let mut h = headers(s.sign(&envelope(10_000), &Method::GET, "/x"));
        let mut forged = envelope(10_000);
        forged.user_mut().is_admin = true;
        let json = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        h.insert(IDENTITY_HEADER, HeaderValue::from_str(&json).unwrap());
        assert_eq!(
            s.verify(&h, &Method::GET, "/x", 0),
            Err(Refused::BadSignature)
        );
        h.insert(SIGNATURE_HEADER, HeaderValue::from_static("zz"));
        assert_eq!(s.verify(&h, &Method::GET, "/x", 0), Err(Refused::Malformed));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!("short".parse::<InternalSecret>().is_err());
        assert!(!format!("{:?}", secret()).contains("0123"));
    }

    impl Envelope {
        fn user_mut(&mut self) -> &mut User {
            &mut self.identity.as_mut().unwrap().user
        }
    }
}
