//! `/healthz`, `/readyz`, `/metrics`, `/api/version`, compression.

use serde_json::Value;
use shared::{DatabaseBackend, VersionInfo};

use crate::support::{Backend, TestApp, both};

async fn health_and_readiness(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let health = app.get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");

    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    assert_eq!(
        body["database"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
    // What /readyz answered is a gauge, for Prometheus (which scrapes /metrics only).
    let ready_gauge = || async {
        let text = app.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("scopehub_ready "))
            .map(str::to_owned)
    };
    assert_eq!(ready_gauge().await.as_deref(), Some("1"));

    // Once the database goes away, readiness says so (and liveness does not).
    app.store.close().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let body: shared::ApiError = ready.json().await.unwrap();
    assert_eq!(body.code, shared::ErrorCode::Unavailable);
    assert!(
        body.message.contains("database unreachable"),
        "{}",
        body.message
    );
    assert_eq!(ready_gauge().await.as_deref(), Some("0"));
    assert_eq!(app.get("/healthz").await.status(), 200);
}
both!(health_and_readiness);

async fn version_reports_build_and_backend(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let response = app.get("/api/version").await;
    assert_eq!(response.status(), 200);
    let info: VersionInfo = response.json().await.unwrap();
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    let expected = if b == Backend::Sqlite {
        DatabaseBackend::Sqlite
    } else {
        DatabaseBackend::Postgres
    };
    assert_eq!(info.database, expected);
    assert_eq!(info.installation_id.len(), 32);
    // The installation id is stored, not made up per request.
    let again: VersionInfo = app.get("/api/version").await.json().await.unwrap();
    assert_eq!(again.installation_id, info.installation_id);
}
both!(version_reports_build_and_backend);

#[tokio::test]
async fn metrics_histogram_is_labelled_by_route_pattern_and_status() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    assert_eq!(app.get("/api/version").await.status(), 200);
    assert_eq!(app.get("/api/no/such/thing/42").await.status(), 404);
    assert_eq!(app.get("/some/deep/link").await.status(), 200);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = response.text().await.unwrap();
    assert!(
        text.contains("# TYPE scopehub_http_request_duration_seconds histogram"),
        "{text}"
    );
    let line = |route: &str, status: u16| {
        format!(
            "scopehub_http_request_duration_seconds_count{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} 1"
        )
    };
    assert!(text.contains(&line("/api/version", 200)), "{text}");
    // Concrete paths never become labels: unknown API paths and SPA paths share one label each.
    assert!(text.contains(&line("/api/{unmatched}", 404)), "{text}");
    assert!(text.contains(&line("/{spa}", 200)), "{text}");
    assert!(!text.contains("/api/no/such/thing/42"));
    assert!(text.contains("le=\"0.001\""));
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_it() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let response = app
        .client
        .get(app.at("/scopehub-app-0123456789abcdef.js"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let plain = app.get("/scopehub-app-0123456789abcdef.js").await;
    assert!(plain.headers().get("content-encoding").is_none());
    assert_eq!(
        plain.text().await.unwrap(),
        "console.log('app');".repeat(50)
    );
}
