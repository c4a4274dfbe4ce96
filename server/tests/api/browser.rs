//! The web app in real headless Chromium against a real `scopehub serve` process.

use std::path::{Path, PathBuf};

use serde_json::json;

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

/// Issue 15: at a phone's 390 px every page fits the screen (no sideways scrolling), the header's
/// controls, the map's Pause and its details panel are within reach.
#[tokio::test]
async fn every_page_fits_a_phone() {
    use crate::support::agent::{ADMIN, Agent, PASSWORD};
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = serve_app(&dist, &[]).await;
    let base = server.url.clone();
    let browser = Browser::start().await;
    browser.resize(390, 844).await;
    // The first run: the first account signs up on a phone and is in at once (it was told to
    // "Log in now." with no link).
    browser.goto(&format!("{base}/signup")).await;
    browser.type_into("#signup-email", ADMIN).await;
    browser.type_into("#signup-password", PASSWORD).await;
    browser.click_css("form button[type=submit]").await;
    browser.wait_for("#logout").await;
    browser.wait_for_text("#current-user", |t| t == ADMIN).await;
    let mut admin = Agent::for_url(&base);
    let (_, me) = admin.login(ADMIN, PASSWORD).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, token) = admin
        .create_ready_instance(&org, "a production cluster with a long name")
        .await;
    let (status, body) = crate::support::split::post_report(
        &base,
        &token,
        "p",
        crate::reports::fixture("probe-full-4.msgpack.gz"),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // The page's width, the widest thing on it and what sticks out, for the failure message.
    let overflow = || async {
        browser
            .execute(
                "const w = document.documentElement.clientWidth;
                 const wide = Array.from(document.querySelectorAll('body *'))
                     .filter(e => e.getBoundingClientRect().right > w + 1)
                     .slice(0, 3).map(e => e.tagName + '.' + e.className + '#' + e.id);
                 return [w, document.documentElement.scrollWidth, wide];",
                vec![],
            )
            .await
    };
    let fits = |what: &'static str| {
        let overflow = &overflow;
        async move {
            let got = overflow().await;
            assert!(
                got[1].as_u64() <= got[0].as_u64(),
                "{what} is wider than 390 px: {got}"
            );
        }
    };
    // The right edge of the element, within the screen?
    let within = |css: &'static str| {
        let browser = &browser;
        async move {
            let right = browser
                .execute(
                    "const e = document.querySelector(arguments[0]); const r = e.getBoundingClientRect();
                     return [r.left, r.right, r.width, document.documentElement.clientWidth];",
                    vec![json!(css)],
                )
                .await;
            let v: Vec<f64> = serde_json::from_value(right).unwrap();
            assert!(
                v[0] >= 0.0 && v[1] <= v[3] + 1.0 && v[2] > 0.0,
                "{css}: {v:?}"
            );
            v[2]
        }
    };

    within("#logout").await;
    let pages = [
        ("/orgs", "h1".to_owned()),
        ("/orgs/{org}", "#org-name".to_owned()),
        ("/instances/{id}", "#instance-name".to_owned()),
        ("/tokens", "h1".to_owned()),
        ("/account", "h1".to_owned()),
        ("/admin", "h1".to_owned()),
        ("/admin?tab=system", "#system".to_owned()),
    ];
    for (path, ready) in pages {
        let path = path.replace("{org}", &org).replace("{id}", &id);
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_for(&ready).await;
        // Give lists and tables a moment to arrive.
        browser.wait_for("main.content").await;
        tokio::time::sleep(std::time::Duration::from_millis(700)).await;
        fits("a page").await;
        within("#logout").await;
    }
    // The map: its bars wrap, Pause is on screen, the details use the width.
    browser
        .goto(&format!(
            "{base}/instances/{id}/map?view=processes&mode=graph"
        ))
        .await;
    browser.wait_for(".graph .node").await;
    fits("the map").await;
    within("#pause").await;
    browser.click_css(".graph .node").await;
    browser.wait_for("#details-label").await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    fits("the map with details").await;
    let width = within("#node-details").await;
    assert!(width > 340.0, "the details panel is {width} px wide");
    // And logged out: the public pages.
    browser.click_css("#logout").await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;
    for (path, ready) in [
        ("/login", "h1"),
        ("/signup", "h1"),
        ("/", "h1"),
        ("/status", "h1"),
    ] {
        browser.goto(&format!("{base}{path}")).await;
        browser.wait_for(ready).await;
        fits(path).await;
    }
    browser.quit().await;
}

/// Issue 15: the org page lists an instance made elsewhere and the instance page counts reports as
/// they arrive, without a reload; tokens and commands copy with one press.
#[tokio::test]
async fn pages_follow_changes_and_values_copy() {
    use crate::support::agent::{ADMIN, first_admin_at};
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = serve_app(&dist, &[]).await;
    let base = server.url.clone();
    let (mut admin, me) = first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let browser = Browser::start().await;
    crate::journey::log_in_at(&browser, &format!("{base}/login"), ADMIN).await;
    browser.wait_for("#logout").await;

    browser.goto(&format!("{base}/orgs/{org}")).await;
    browser
        .wait_for_text("main.content", |t| t.contains("No instances yet"))
        .await;
    let (status, created) = admin
        .post(
            "/api/instances",
            json!({"org_id": org, "name": "made-elsewhere"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    browser
        .wait_for_text("#instances", |t| t.contains("made-elsewhere"))
        .await;

    let id = created["instance"]["id"].as_str().unwrap().to_owned();
    admin.wait_for_instance(&id, "ready").await;
    browser.goto(&format!("{base}/instances/{id}")).await;
    browser.wait_for("#instance-name").await;
    let token = created["probe_token"].as_str().unwrap();
    for _ in 0..2 {
        let (status, body) = crate::support::split::post_report(
            &base,
            token,
            "p",
            crate::reports::fixture("probe-full-4.msgpack.gz"),
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    browser
        .wait_for_text("#usage-summary", |t| t.starts_with("2 reports received"))
        .await;
    browser
        .wait_for_text("#instance-state", |t| t == "active")
        .await;

    // A new API token, copied with its button.
    browser.grant("clipboard-read").await;
    browser.grant("clipboard-write").await;
    browser.goto(&format!("{base}/tokens")).await;
    browser.wait_for("h1").await;
    browser
        .type_into(".tokens form input[type=text]", "deploys")
        .await;
    browser.click_css(".tokens form button[type=submit]").await;
    browser.wait_for("#new-token").await;
    let secret = browser.value("#new-token").await;
    assert!(secret.starts_with("sha_"), "{secret}");
    browser.click_css("button[data-copies='new-token']").await;
    browser
        .wait_for_text("[data-copied='new-token']", |t| t == "Copied")
        .await;
    let pasted = browser
        .execute("return navigator.clipboard.readText();", vec![])
        .await;
    assert_eq!(pasted.as_str(), Some(secret.as_str()));
    browser.quit().await;
}

/// Issue 15: an unknown instance, view or org each say one thing: what is wrong (no "Loading the
/// map…", no "Reconnecting…", no second copy of the error, no "Your role: none"); the org switcher
/// shows the current org; the admin console says when a list is empty and names instances' orgs.
#[tokio::test]
async fn missing_things_say_one_thing_and_the_console_names_things() {
    use crate::support::agent::{ADMIN, first_admin_at};
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = serve_app(&dist, &[]).await;
    let base = server.url.clone();
    let (mut admin, me) = first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, _) = admin.create_ready_instance(&org, "lab").await;
    let browser = Browser::start().await;
    crate::journey::log_in_at(&browser, &format!("{base}/login"), ADMIN).await;
    browser.wait_for("#logout").await;
    let visible_text = || async {
        browser
            .execute(
                "return document.querySelector('main.content').innerText;",
                vec![],
            )
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let alerts = || async {
        browser
            .execute(
                "return Array.from(document.querySelectorAll('[role=alert]')).filter(e => e.offsetParent !== null).length;",
                vec![],
            )
            .await
            .as_u64()
            .unwrap_or(0)
    };

    // An instance that is not there.
    browser
        .goto(&format!("{base}/instances/nonexistent/map"))
        .await;
    browser.wait_for("#map-missing .error-notice").await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let text = visible_text().await;
    for wrong in ["Loading the map", "Reconnecting", "Connecting"] {
        assert!(!text.contains(wrong), "{wrong:?} on the page: {text}");
    }
    assert_eq!(alerts().await, 1, "{text}");

    // A view the instance does not have.
    browser
        .goto(&format!("{base}/instances/{id}/map?view=nonexistent"))
        .await;
    browser
        .wait_for_text("#unknown-view", |t| t.contains("no view “nonexistent”"))
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let text = visible_text().await;
    for wrong in ["Loading the map", "Reconnecting", "Connecting"] {
        assert!(!text.contains(wrong), "{wrong:?} on the page: {text}");
    }
    // Its views are there to pick from.
    browser.click_css(".view-tab[data-view='hosts']").await;
    browser.wait_for_url(|u| u.contains("view=hosts")).await;
    assert!(browser.find("#unknown-view").await.is_none());

    // An org that is not there.
    browser.goto(&format!("{base}/orgs/nonexistent")).await;
    browser.wait_for("#org-missing").await;
    tokio::time::sleep(std::time::Duration::from_millis(1000)).await;
    let text = visible_text().await;
    assert!(!text.contains("Your role"), "{text}");
    assert_eq!(alerts().await, 1, "{text}");

    // The header's org switcher shows the org a page belongs to.
    browser.goto(&format!("{base}/orgs/{org}")).await;
    browser.wait_for("#my-role").await;
    assert_eq!(browser.value("#org-switcher").await, org);
    browser.goto(&format!("{base}/instances/{id}")).await;
    browser.wait_for("#instance-name").await;
    assert_eq!(browser.value("#org-switcher").await, org);

    // The admin console: an empty outbox says so; instances name their org, linked.
    browser.goto(&format!("{base}/admin?tab=outbox")).await;
    browser
        .wait_for_text("#outbox-empty", |t| t.contains("The outbox is empty"))
        .await;
    browser.goto(&format!("{base}/admin?tab=instances")).await;
    let org_name = me["orgs"][0]["name"].as_str().unwrap();
    browser
        .wait_for_text("#all-instances .org-link", |t| t == org_name)
        .await;
    browser.click_css("#all-instances .org-link").await;
    browser
        .wait_for_url(|u| u.ends_with(&format!("/admin?tab=orgs#org-{org}")))
        .await;
    browser.wait_for(&format!("#org-{org}")).await;
    browser.quit().await;
}

/// The `_bg.wasm` file a page of the built app loads.
fn wasm_of(page: &Path) -> String {
    let html = std::fs::read_to_string(page).unwrap();
    let end = html.find("_bg.wasm").expect("the page loads a wasm bundle") + "_bg.wasm".len();
    let start = html[..end].rfind('/').unwrap() + 1;
    html[start..end].to_owned()
}

/// What the page has loaded so far: (URL, bytes as they came over the wire, compressed) for the
/// document and every resource.
async fn loaded(browser: &Browser) -> Vec<(String, u64)> {
    let entries = browser
        .execute(
            "return performance.getEntriesByType('navigation')\
               .concat(performance.getEntriesByType('resource'))\
               .map(e => [e.name, e.encodedBodySize]);",
            vec![],
        )
        .await;
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e[0].as_str().unwrap().to_owned(), e[1].as_u64().unwrap()))
        .collect()
}

/// Issue 15: a first visit loads at most 400 KB, compressed as the server sends it, because the
/// map's code is in a second bundle; following the link to the map loads that one (a full page
/// load the first bundle asks for), and from the map the other pages are client-side again.
#[tokio::test]
async fn a_first_visit_loads_the_small_bundle_and_the_map_the_full_one() {
    use crate::support::agent::{ADMIN, first_admin_at};
    let Some(dist) = prerequisites() else { return };
    let (first_wasm, full_wasm) = (
        wasm_of(&dist.join("index.html")),
        wasm_of(&dist.join("map.html")),
    );
    assert_ne!(first_wasm, full_wasm);
    let (server, _data) = serve_app(&dist, &[]).await;
    let base = server.url.clone();
    let (mut admin, me) = first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, _token) = admin.create_ready_instance(&org, "bundles").await;

    let browser = Browser::start().await;
    browser.goto(&format!("{base}/login")).await;
    browser.wait_for("#login-email").await;
    let first_visit = loaded(&browser).await;
    let total: u64 = first_visit.iter().map(|(_, bytes)| bytes).sum();
    assert!(
        total <= 400_000,
        "a first visit loads {total} bytes: {first_visit:?}"
    );
    assert!(
        first_visit
            .iter()
            .any(|(url, _)| url.ends_with(&first_wasm))
    );
    assert!(!first_visit.iter().any(|(url, _)| url.ends_with(&full_wasm)));

    crate::journey::log_in_at(&browser, &format!("{base}/login"), ADMIN).await;
    browser.wait_for("#logout").await;
    browser.goto(&format!("{base}/instances/{id}")).await;
    browser.click_css("#open-map").await;
    browser.wait_for("#link-status").await;
    assert!(
        browser
            .current_url()
            .await
            .ends_with(&format!("/instances/{id}/map"))
    );
    let on_the_map = loaded(&browser).await;
    assert!(on_the_map.iter().any(|(url, _)| url.ends_with(&full_wasm)));
    assert!(!on_the_map.iter().any(|(url, _)| url.ends_with(&first_wasm)));

    // From the map, the rest of the app needs no further page load: the document stays the same.
    browser
        .execute("window.__same_document = true;", vec![])
        .await;
    browser.click_css("a[href='/tokens']").await;
    browser.wait_for_url(|u| u.ends_with("/tokens")).await;
    let same = browser
        .execute("return window.__same_document === true;", vec![])
        .await;
    assert_eq!(same, serde_json::Value::Bool(true));
    browser.quit().await;
}

/// A `dist/` without the full app (built before the split) says so on the map's routes instead of
/// loading the page again and again.
#[tokio::test]
async fn a_missing_full_app_is_said_not_reloaded_forever() {
    let Some(dist) = prerequisites() else { return };
    let partial = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&dist).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "map.html" {
            std::fs::copy(entry.path(), partial.path().join(entry.file_name())).unwrap();
        }
    }
    let (server, _data) = serve_app(partial.path(), &[]).await;
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/instances/abc/map", server.url))
        .await;
    let said = browser
        .wait_for_text("#map-unavailable", |t| t.contains("could not be loaded"))
        .await;
    assert!(said.contains("map.html"), "{said}");
    browser.quit().await;
}

/// Issue 16: the admin console's System tab shows every replica the monitoring role scrapes —
/// here `serve` itself, ready, with its request rate — that no alert is firing, and the collector
/// shard with an instance whose probe is reporting; it refreshes by itself.
#[tokio::test]
async fn the_system_tab_shows_the_roles_and_their_alerts() {
    use crate::support::agent::{ADMIN, first_admin_at};
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = serve_app(&dist, &["--scrape-interval", "0.5"]).await;
    let base = server.url.clone();
    let (mut admin, me) = first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, token) = admin.create_ready_instance(&org, "lab").await;
    // A probe reporting every 300 ms while the page is open.
    let probe = {
        let base = base.clone();
        tokio::spawn(async move {
            let report = crate::reports::fixture("probe-full-4.msgpack.gz");
            loop {
                crate::support::split::post_report(&base, &token, "probe-1", report.clone()).await;
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        })
    };
    let browser = Browser::start().await;
    crate::journey::log_in_at(&browser, &format!("{base}/login"), ADMIN).await;
    browser.wait_for("#logout").await;
    browser.goto(&format!("{base}/admin")).await;
    browser.click_css("#tab-system").await;
    browser
        .wait_for_url(|u| u.ends_with("/admin?tab=system"))
        .await;
    let row = "#system-targets tr[data-role='serve'][data-state='ready']";
    browser.wait_for(row).await;
    browser
        .wait_for_text("#system-summary", |t| {
            t == "All 1 replicas are ready; no alert is firing."
        })
        .await;
    assert!(browser.find("#alerts-none").await.is_some());
    // The page refreshes: the request rate appears once two scrapes are in (the page's own
    // requests are counted).
    browser
        .wait_for_text(&format!("{row} td.num"), |t| t != "–" && !t.is_empty())
        .await;
    // The shard, and the instance on it with its probe and ingest rate.
    let instance = format!("#system-shards .shard[data-shard='local'] tr[data-instance='{id}']");
    let rate = browser
        .wait_for_text(&format!("{instance} td.ingest"), |t| {
            t.parse::<f64>().is_ok_and(|r| r > 0.0)
        })
        .await;
    assert!(rate.parse::<f64>().unwrap() < 10.0, "{rate}");
    let heading = browser
        .wait_for_text("#system-shards .shard[data-shard='local'] h3", |t| {
            t.contains("1 probes")
        })
        .await;
    assert!(heading.contains("1 instances"), "{heading}");
    probe.abort();
    browser.quit().await;
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}
