//! The built web app: deep links, cache headers, missing files, a missing build.

use crate::support::{AppOptions, Backend, TestApp};

fn cache_control(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn index_and_deep_links_get_index_html_uncached() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for path in [
        "/",
        "/status",
        "/orgs/acme/instances/abc",
        "/instances/abc",
        "/instances/abc/map/more",
        "/no/such/page",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(cache_control(&response), "no-cache", "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            response.text().await.unwrap().contains("SPA INDEX"),
            "{path}"
        );
    }
}

/// The map's routes get the full app (`map.html`), uncached like the index; a `dist/` without it
/// (built before the split) serves the index there too.
#[tokio::test]
async fn map_routes_get_the_full_app_and_fall_back_to_the_index() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for path in ["/instances/abc/map", "/instances/abc/map/", "/bench/layout"] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(cache_control(&response), "no-cache", "{path}");
        assert!(
            response.text().await.unwrap().contains("SPA FULL APP"),
            "{path}"
        );
    }
    std::fs::remove_file(app.dist_dir().join("map.html")).unwrap();
    let response = app.get("/instances/abc/map").await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("SPA INDEX"));
}

#[tokio::test]
async fn hashed_assets_are_immutable_and_others_cached_briefly() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let hashed = app.get("/scopehub-app-0123456789abcdef.js").await;
    assert_eq!(hashed.status(), 200);
    assert_eq!(
        cache_control(&hashed),
        "public, max-age=31536000, immutable"
    );
    assert!(
        hashed.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );

    let favicon = app.get("/favicon.svg").await;
    assert_eq!(favicon.status(), 200);
    assert_eq!(cache_control(&favicon), "public, max-age=3600");

    let index = app.get("/index.html").await;
    assert_eq!(index.status(), 200);
    assert_eq!(cache_control(&index), "public, max-age=3600");
}

#[tokio::test]
async fn missing_files_are_404_not_the_app() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for path in [
        "/missing.js",
        "/scopehub-app-ffffffffffffffff_bg.wasm",
        "/../Cargo.toml",
        "/%2e%2e/etc/passwd.txt",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 404, "{path}");
        assert!(
            !response.text().await.unwrap().contains("SPA INDEX"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn an_unbuilt_app_says_how_to_build_it() {
    let options = AppOptions {
        with_dist: false,
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let response = app.get("/").await;
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("make run"));
    // The API is unaffected.
    assert_eq!(app.get("/api/version").await.status(), 200);
}
