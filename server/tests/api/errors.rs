//! The one error shape `{code, message, fields?}` for every API error.

use std::io::{Read, Write};
use std::time::Duration;

use serde_json::json;
use shared::{ApiError, ErrorCode};

use crate::support::{AppOptions, Backend, TestApp};

async fn error_of(response: reqwest::Response) -> (u16, ApiError) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "status {status}"
    );
    (
        status,
        response.json().await.expect("error body in our shape"),
    )
}

#[tokio::test]
async fn unknown_api_routes_answer_json_404_never_the_spa() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for path in [
        "/api/nope",
        "/api/",
        "/api/users/123/whatever",
        "/api/version/extra",
    ] {
        let (status, error) = error_of(app.get(path).await).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(error.code, ErrorCode::NotFound, "{path}");
    }
}

#[tokio::test]
async fn wrong_methods_on_api_routes_answer_json_405() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (status, error) = error_of(
        app.client
            .post(app.at("/api/version"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
    assert_eq!(error.code, ErrorCode::MethodNotAllowed);
    let (status, _) = error_of(
        app.client
            .get(app.at("/api/client-errors"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 405);
}

async fn post_raw(app: &TestApp, body: &str, content_type: Option<&str>) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.at("/api/client-errors"))
        .body(body.to_owned());
    if let Some(ct) = content_type {
        request = request.header("content-type", ct);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn malformed_and_wrongly_typed_json_get_our_error_shape() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let json = Some("application/json");

    let (status, error) = error_of(post_raw(&app, "{\"message\": ", json).await).await;
    assert_eq!((status, error.code), (400, ErrorCode::InvalidJson));

    let (status, error) =
        error_of(post_raw(&app, r#"{"message": 5, "url": "/"}"#, json).await).await;
    assert_eq!((status, error.code), (422, ErrorCode::InvalidJson));
    assert!(
        error.message.contains("message"),
        "names the field: {}",
        error.message
    );

    let (status, error) = error_of(post_raw(&app, r#"{"url": "/"}"#, json).await).await;
    assert_eq!((status, error.code), (422, ErrorCode::InvalidJson));

    let (status, error) =
        error_of(post_raw(&app, r#"{"message": "m", "url": "/", "extra": 1}"#, json).await).await;
    assert_eq!((status, error.code), (422, ErrorCode::InvalidJson));

    let (status, error) = error_of(post_raw(&app, r#"["message"]"#, json).await).await;
    assert_eq!((status, error.code), (422, ErrorCode::InvalidJson));

    let (status, error) =
        error_of(post_raw(&app, r#"{"message": "m", "url": "/"}"#, None).await).await;
    assert_eq!((status, error.code), (415, ErrorCode::UnsupportedMediaType));
    let (status, _) =
        error_of(post_raw(&app, r#"{"message": "m", "url": "/"}"#, Some("text/plain")).await).await;
    assert_eq!(status, 415);
}

#[tokio::test]
async fn invalid_fields_are_reported_per_field() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let body =
        json!({"message": "   ", "url": "u".repeat(shared::client_error::MAX_URL_CHARS + 1)});
    let response = app
        .client
        .post(app.at("/api/client-errors"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!((status, error.code), (422, ErrorCode::ValidationFailed));
    assert_eq!(error.field("message"), Some("must not be empty"));
    assert!(error.field("url").unwrap().contains("at most"));
}

#[tokio::test]
async fn valid_client_error_reports_are_accepted_then_rate_limited() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let body = json!({"message": "panicked at src/pages/status.rs", "url": "http://x/status"});
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let response = app
            .client
            .post(app.at("/api/client-errors"))
            .json(&body)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(statuses[..30].iter().all(|s| *s == 204), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let response = app
        .client
        .post(app.at("/api/client-errors"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!((status, error.code), (429, ErrorCode::TooManyRequests));
}

#[tokio::test]
async fn oversized_bodies_get_413_in_our_shape() {
    let options = AppOptions {
        max_body_bytes: 64 * 1024,
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let big = format!(r#"{{"message": "{}", "url": "/"}}"#, "x".repeat(100 * 1024));
    let (status, error) = error_of(post_raw(&app, &big, Some("application/json")).await).await;
    assert_eq!((status, error.code), (413, ErrorCode::PayloadTooLarge));

    // Without a Content-Length (chunked), the limit holds while streaming.
    let stream =
        futures_util::stream::iter((0..100).map(|_| Ok::<_, std::io::Error>("x".repeat(1024))));
    let response = app
        .client
        .post(app.at("/api/client-errors"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let (status, error) = error_of(response).await;
    assert_eq!((status, error.code), (413, ErrorCode::PayloadTooLarge));
}

#[tokio::test]
async fn requests_that_take_too_long_get_408_in_our_shape() {
    let options = AppOptions {
        request_timeout: Duration::from_millis(500),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let addr = app.addr;
    // A client that announces a body and never sends all of it.
    let response = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(addr).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            conn,
            "POST /api/client-errors HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"message\""
        )
        .unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    })
    .await
    .unwrap();
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("\"code\":\"timeout\""), "{response}");
}
