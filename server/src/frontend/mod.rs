//! The edge: what every request passes through before it reaches a role.
//!
//! Owns the layers applied to the whole public router (metrics, tracing, panic catching,
//! compression, timeouts, body limits) and the SPA's static serving. Later it will own the only code
//! that turns credentials into identity and injects the tenant header (design.md §3); no role may
//! do that itself. In split mode (`scopehub frontend`) the same layers sit in front of HTTP proxies
//! to the roles; in `serve` they sit in front of the roles' routers in-process.

pub mod auth;
pub mod cache;
pub mod proxy;

use std::any::Any;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower::{BoxError, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::compression::CompressionLayer;
use tower_http::trace::TraceLayer;

use crate::error::Error;
use crate::telemetry::{self, Metrics};

pub struct EdgeConfig {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// How long the edge keeps the users and provisioning roles' answers (`cache::IdentityCache`).
    pub identity_cache_ttl: Duration,
    /// Proxies whose `X-Forwarded-For` is believed (`auth::client_ip`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

/// Wraps a fully routed app in the edge layers. `routed` must already have its routes, so that the
/// route-pattern recorder sees every one of them.
pub fn apply_layers(routed: Router, metrics: Metrics, config: &EdgeConfig) -> Router {
    routed
        .route_layer(middleware::from_fn(telemetry::record_route))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(
                    metrics,
                    telemetry::track_requests,
                ))
                // A server error is logged once, with its cause, where it is made
                // (`Error::into_response`); a 503 from `/readyz` (not ready yet, or draining) is
                // an answer, not a failure. So a 5xx is only a debug line here.
                .layer(TraceLayer::new_for_http().on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(CompressionLayer::new())
                .layer(HandleErrorLayer::new(timeout_response))
                .timeout(config.request_timeout),
        )
}

/// The edge layers for the proxy (`scopehub frontend`): the same, less compression — every role
/// compresses its own answers, and the proxy passes them through as they are.
pub fn apply_proxy_layers(routed: Router, metrics: Metrics, config: &EdgeConfig) -> Router {
    routed
        .route_layer(middleware::from_fn(telemetry::record_route))
        .layer(
            ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(
                    metrics,
                    telemetry::track_requests,
                ))
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(HandleErrorLayer::new(timeout_response))
                .timeout(config.request_timeout),
        )
}

async fn timeout_response(err: BoxError) -> Response {
    if err.is::<tower::timeout::error::Elapsed>() {
        Error::timeout().into_response()
    } else {
        Error::Internal(anyhow::anyhow!("unhandled middleware error: {err}")).into_response()
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    Error::Internal(anyhow::anyhow!("handler panicked: {detail}")).into_response()
}
