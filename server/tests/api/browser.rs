//! The web app in real headless Chromium against a real `scopehub serve` process.

use std::path::{Path, PathBuf};

use crate::support::process::ServerProcess;
use crate::support::required;
use crate::support::webdriver::Browser;

fn dist_dir() -> PathBuf {
    std::env::var_os("SCOPEHUB_TEST_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dist"))
}

/// Skips (with a warning) or fails (REQUIRE_BROWSER=1) when the browser or the built app is missing.
pub fn prerequisites() -> Option<PathBuf> {
    let dist = dist_dir();
    let missing = if !Browser::available() {
        Some(
            "Chromium/chromedriver are not installed (apt-get install chromium chromium-driver)"
                .to_owned(),
        )
    } else if !dist.join("index.html").is_file() {
        Some(format!(
            "the web app is not built at {} (make app)",
            dist.display()
        ))
    } else {
        None
    };
    match missing {
        None => Some(dist),
        Some(why) if required("REQUIRE_BROWSER") => panic!("REQUIRE_BROWSER=1 but {why}"),
        Some(why) => {
            crate::support::warn(&format!("WARNING: skipping browser test: {why}"));
            None
        }
    }
}

/// A ready `scopehub serve` (Airplane Mode, a fresh data folder) serving the app in `dist`, with
/// `extra` flags; the folder lives as long as the returned guard.
pub(crate) async fn serve_app(dist: &Path, extra: &[&str]) -> (ServerProcess, tempfile::TempDir) {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        "--data-dir",
        data.path().to_str().unwrap(),
        "--dist-dir",
        dist.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let server = ServerProcess::serve(&args);
    server.wait_ready().await;
    (server, data)
}

#[tokio::test]
async fn landing_page_navigation_deep_links_and_api_answer() {
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = serve_app(&dist, &[]).await;
    let browser = Browser::start().await;

    // The landing page: index.html has no content of its own, so this text proves the WASM app ran.
    browser.goto(&format!("{}/", server.url)).await;
    let heading = browser.wait_for_text("main h1", |t| !t.is_empty()).await;
    assert_eq!(heading, "See your whole system, live.");

    // Follow a link in the navigation: client-side routing to the status page, which fetches /api/version.
    let link = browser
        .find("header nav a[href='/status']")
        .await
        .expect("status link in the navigation");
    browser.click(&link).await;
    let database = browser
        .wait_for_text("#database-backend", |t| !t.is_empty())
        .await;
    assert_eq!(database, "SQLite");
    assert!(browser.current_url().await.ends_with("/status"));
    let version = browser
        .wait_for_text("#server-version", |t| !t.is_empty())
        .await;
    assert_eq!(version, env!("CARGO_PKG_VERSION"));

    // A deep link opened directly is served index.html by the server and routed by the app.
    browser.goto(&format!("{}/status", server.url)).await;
    let database = browser
        .wait_for_text("#database-backend", |t| !t.is_empty())
        .await;
    assert_eq!(database, "SQLite");

    // An unknown page is the app's 404 page, with a way back.
    browser.goto(&format!("{}/no/such/page", server.url)).await;
    browser
        .wait_for_text("main h1", |t| t == "Page not found")
        .await;
    let back = browser
        .find("main a[href='/']")
        .await
        .expect("link back home");
    browser.click(&back).await;
    browser
        .wait_for_text("main h1", |t| t == "See your whole system, live.")
        .await;

    let source = browser.page_source().await;
    browser.quit().await;
    assert!(
        !server.stderr().contains("panicked"),
        "server log shows a panic: {}",
        server.stderr()
    );
    assert!(source.contains("Scopehub"));
}

#[tokio::test]
async fn api_errors_are_shown_on_the_page() {
    let Some(dist) = prerequisites() else { return };
    // Nothing listens on port 1: the database never becomes reachable, so /api/version answers 503.
    let server = ServerProcess::serve(&[
        "--database-url",
        "postgres://postgres@127.0.0.1:1/none",
        "--dist-dir",
        dist.to_str().unwrap(),
    ]);
    let browser = Browser::start().await;
    browser.goto(&format!("{}/status", server.url)).await;
    let message = browser
        .wait_for_text(".error-notice .error-message", |t| !t.is_empty())
        .await;
    assert!(message.contains("database is unavailable"), "{message}");
    let code = browser
        .wait_for_text(".error-notice .error-code", |t| !t.is_empty())
        .await;
    assert!(code.contains("unavailable"), "{code}");
    browser.quit().await;
}

/// `/login?next=…` goes on only to a page of this site, as the browser resolves the target:
/// `/\evil.example` is `//evil.example` to a browser, another host.
#[tokio::test]
async fn login_goes_on_only_to_pages_of_this_site() {
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = serve_app(&dist, &[]).await;
    crate::journey::sign_up_admin(&server.url).await;
    let browser = Browser::start().await;
    for (next, lands_on) in [
        ("/%5Cevil.example/x", None),
        ("//evil.example/x", None),
        ("https://evil.example/x", None),
        ("/%09/evil.example/x", None),
        ("/account", Some("/account")),
    ] {
        let login = format!("{}/login?next={next}", server.url);
        crate::journey::log_in_at(&browser, &login, crate::support::agent::ADMIN).await;
        let url = browser.wait_for_url(|u| !u.contains("/login")).await;
        assert!(url.starts_with(&server.url), "next={next} went to {url}");
        if let Some(path) = lands_on {
            assert!(url.ends_with(path), "next={next} went to {url}");
        }
        browser.click_css("#logout").await;
        browser.wait_for_url(|u| u.ends_with("/login")).await;
    }
    browser.quit().await;
}
