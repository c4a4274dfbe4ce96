//! The whole users journey in real Chromium, with mail through a real SMTP server: sign up → confirm
//! through the emailed link → waitlist page → an admin approves in the console → the user logs in →
//! invites a teammate → the teammate accepts from the emailed link and sees the org.

use std::time::Duration;

use serde_json::json;

use crate::browser::prerequisites;
use crate::support::eventually;
use crate::support::smtp::SmtpServer;
use crate::support::webdriver::Browser;

const PASSWORD: &str = "correct horse battery";

/// The first link in the newest mail to `to` (waits for it to arrive).
async fn mailed_link(smtp: &SmtpServer, to: &str, subject: &str) -> String {
    let message = eventually(
        Duration::from_secs(30),
        &format!("mail \"{subject}\" to {to}"),
        || async {
            smtp.messages()
                .into_iter()
                .find(|m| m.contains(&format!("To: {to}")) && m.contains(subject))
        },
    )
    .await;
    let start = message.find("http://").expect("a link in the mail");
    message[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

async fn log_in(browser: &Browser, base: &str, email: &str) {
    log_in_at(browser, &format!("{base}/login"), email).await;
}

/// Fills and sends the login form of the page at `url` (a login page, perhaps with `next=`).
pub(crate) async fn log_in_at(browser: &Browser, url: &str, email: &str) {
    browser.goto(url).await;
    browser.type_into("#login-email", email).await;
    browser.type_into("#login-password", PASSWORD).await;
    browser.click_css("form button[type=submit]").await;
}

async fn log_out(browser: &Browser) {
    browser.click_css("#logout").await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;
}

/// Signs up admin@example.com through the API.
pub(crate) async fn sign_up_admin(base: &str) {
    let status = reqwest::Client::new()
        .post(format!("{base}/api/users/signup"))
        .json(&json!({"email": "admin@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 202);
}

#[tokio::test]
async fn sign_up_wait_get_approved_invite_a_teammate() {
    let Some(dist) = prerequisites() else { return };
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let smtp_url = smtp.url();
    let (server, _data) = crate::browser::serve_app(&dist, &["--smtp-url", &smtp_url]).await;
    // The first account of an Airplane Mode server is its site admin.
    sign_up_admin(&server.url).await;
    users_journey(&server.url, &smtp).await;
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// The same journey through the edge of the split deployment: every request of the web app is
/// proxied to the ui, users, provisioning roles, and mail goes out from the users role.
#[tokio::test]
async fn the_users_journey_works_through_the_split_deployment() {
    let Some(dist) = prerequisites() else { return };
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let db = crate::support::TestDb::new(crate::support::Backend::Sqlite)
        .await
        .unwrap();
    let options = crate::support::split::Options {
        users: vec!["--smtp-url".to_owned(), smtp.url()],
        dist_dir: Some(dist),
        ..Default::default()
    };
    let split = crate::support::split::Split::start_opts(db.url.as_str(), options).await;
    // Outside Airplane Mode an operator makes the first site admin.
    sign_up_admin(&split.url()).await;
    split.make_admin("admin@example.com");
    users_journey(&split.url(), &smtp).await;
    for role in [
        &split.users,
        &split.provisioning,
        &split.ui,
        &split.frontend,
    ] {
        let stderr = role.process().stderr();
        assert!(!stderr.contains("panicked"), "{}: {stderr}", role.name);
    }
}

/// Sign up → confirm → waitlist → approval by admin@example.com (a site admin with PASSWORD) →
/// log in → invite a teammate, who accepts and sees the org; all in Chromium at `base`.
async fn users_journey(base: &str, smtp: &SmtpServer) {
    let base = base.to_owned();
    let browser = Browser::start().await;

    // Sign up.
    browser.goto(&format!("{base}/signup")).await;
    browser
        .type_into("#signup-email", "maria@example.com")
        .await;
    browser.type_into("#signup-password", PASSWORD).await;
    browser.click_css("form button[type=submit]").await;
    browser
        .wait_for_text(".notice", |t| t.contains("Check your email"))
        .await;

    // Confirm through the real email.
    let link = mailed_link(smtp, "maria@example.com", "Confirm your email").await;
    assert!(link.starts_with(&format!("{base}/verify?token=")), "{link}");
    browser.goto(&link).await;
    browser
        .wait_for_text(".notice", |t| t.contains("early-access list"))
        .await;

    // Logging in shows the waitlist page.
    log_in(&browser, &base, "maria@example.com").await;
    browser.wait_for_url(|u| u.ends_with("/waitlist")).await;
    browser
        .wait_for_text("main h1", |t| t == "You're on the list")
        .await;
    log_out(&browser).await;

    // The admin approves her in the console.
    log_in(&browser, &base, "admin@example.com").await;
    browser.wait_for_url(|u| u.contains("/orgs/")).await;
    browser.goto(&format!("{base}/admin")).await;
    browser
        .wait_for_text("#waitlist tr[data-email='maria@example.com'] td", |t| {
            t == "maria@example.com"
        })
        .await;
    browser
        .click_css("#waitlist tr[data-email='maria@example.com'] button.approve")
        .await;
    // Approval asks first, then says what it did.
    browser.accept_alert().await;
    browser
        .wait_for_text("main .notice", |t| {
            t == "Approved maria@example.com: they have been emailed."
        })
        .await;
    browser
        .wait_for_text("main", |t| t.contains("Nobody is waiting."))
        .await;
    // The console's tabs are in the URL, and an empty outbox says so.
    browser.click_css("#tab-instances").await;
    browser
        .wait_for_url(|u| u.ends_with("/admin?tab=instances"))
        .await;
    browser.goto(&format!("{base}/admin?tab=audit")).await;
    browser.wait_for_text("#tab-audit", |_| true).await;
    assert_eq!(
        browser
            .execute(
                "return document.querySelector('#tab-audit').getAttribute('aria-pressed');",
                vec![]
            )
            .await,
        serde_json::json!("true")
    );
    log_out(&browser).await;
    let approval = mailed_link(smtp, "maria@example.com", "approved").await;
    assert!(approval.contains("/login-link?token="), "{approval}");

    // She logs in and lands in her own org, as its admin, and invites a teammate.
    log_in(&browser, &base, "maria@example.com").await;
    browser.wait_for_url(|u| u.contains("/orgs/")).await;
    let org_name = browser
        .wait_for_text("#org-name", |t| t.contains("maria"))
        .await;
    browser.wait_for_text("#my-role", |t| t == "admin").await;
    browser
        .type_into("#invite-email", "tomas@example.com")
        .await;
    browser.click_css("#invite-form button[type=submit]").await;
    let copied = eventually(
        Duration::from_secs(30),
        "the invite link to copy",
        || async {
            let v = browser.value("#invite-link").await;
            (!v.is_empty()).then_some(v)
        },
    )
    .await;
    browser
        .wait_for_text("#invites", |t| {
            t.contains("tomas@example.com") && t.contains("pending")
        })
        .await;
    log_out(&browser).await;

    // The teammate follows the emailed link, creates his account and sees the org.
    let invite = mailed_link(smtp, "tomas@example.com", "invited you").await;
    assert_ne!(
        invite, copied,
        "the mailed link (which may create the account) is not the one the inviter copies"
    );
    browser.goto(&invite).await;
    browser
        .wait_for_text("#invite-summary", |t| {
            t.contains("maria@example.com invited tomas@example.com")
        })
        .await;
    browser.type_into("#invite-password", PASSWORD).await;
    browser.click_css("#accept-invite").await;
    browser.wait_for_url(|u| u.contains("/orgs/")).await;
    browser.wait_for_text("#org-name", |t| t == org_name).await;
    browser.wait_for_text("#my-role", |t| t == "viewer").await;
    let members = browser
        .wait_for_text("#members", |t| t.contains("tomas@example.com"))
        .await;
    assert!(members.contains("maria@example.com"), "{members}");
    browser
        .wait_for_text("#current-user", |t| t == "tomas@example.com")
        .await;

    browser.quit().await;
}

#[tokio::test]
async fn create_an_instance_see_its_token_and_commands_rotate_and_delete() {
    let Some(dist) = prerequisites() else { return };
    let (server, _data) = crate::browser::serve_app(&dist, &[]).await;
    let base = server.url.clone();
    let http = reqwest::Client::new();
    let signup = json!({"email": "admin@example.com", "password": PASSWORD});
    assert_eq!(
        http.post(format!("{base}/api/users/signup"))
            .json(&signup)
            .send()
            .await
            .unwrap()
            .status(),
        202
    );

    let browser = Browser::start().await;
    log_in(&browser, &base, "admin@example.com").await;
    browser.wait_for_url(|u| u.contains("/orgs/")).await;
    browser.type_into("#instance-name", "production").await;
    browser
        .click_css("#create-instance button[type=submit]")
        .await;

    // The instance page shows the token once, with both probe commands pointing at this server.
    browser.wait_for_url(|u| u.contains("/instances/")).await;
    browser
        .wait_for_text("#instance-name", |t| t == "production")
        .await;
    let token = eventually(Duration::from_secs(30), "the probe token", || async {
        let v = browser.value("#probe-token").await;
        v.starts_with("shp_").then_some(v)
    })
    .await;
    let scope = browser.value("#scope-command").await;
    assert!(
        scope.contains(&format!("--probe.token={token} {base}")),
        "{scope}"
    );
    let ours = browser.value("#scopehub-command").await;
    assert_eq!(ours, format!("scopehub probe --url {base} --token {token}"));
    // The reconciler makes it ready, and the page shows it.
    browser.goto(&browser.current_url().await).await;
    browser
        .wait_for_text("#instance-state", |t| t == "ready")
        .await;
    assert!(
        browser.find("#probe-token").await.is_none(),
        "the token is shown only once"
    );
    let probe = |token: String| {
        let http = http.clone();
        let url = format!("{base}/api");
        async move {
            http.get(url)
                .header("authorization", format!("Scope-Probe token={token}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(probe(token.clone()).await, 200);

    // A real probe report arrives: the page shows the instance active, with its probe.
    let fixture = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/scope/probe-full-1.msgpack.gz");
    let report = http
        .post(format!("{base}/api/report"))
        .header("authorization", format!("Scope-Probe token={token}"))
        .header("content-type", "application/msgpack")
        .header("content-encoding", "gzip")
        .header("x-scope-probe-id", "71c372b17f588646")
        .body(std::fs::read(fixture).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(report.status(), 200);
    // The reconciler moves it to active on its own task, and the page shows the state it loaded
    // (it does not refresh itself yet): reload until it shows active.
    let page = browser.current_url().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        browser.goto(&page).await;
        let shown = browser
            .wait_for_text("#instance-state", |t| t == "ready" || t == "active")
            .await;
        if shown == "active" || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    browser
        .wait_for_text("#instance-state", |t| t == "active")
        .await;
    browser
        .wait_for_text("#probes", |t| {
            t.contains("71c372b17f588646") && t.contains("scope-fixture-host")
        })
        .await;

    // Rotate: a new token is shown; the old one still works during the grace period.
    browser.click_css("#rotate-token").await;
    let rotated = eventually(Duration::from_secs(30), "the rotated token", || async {
        let v = browser.value("#probe-token").await;
        (v.starts_with("shp_") && v != token).then_some(v)
    })
    .await;
    assert_eq!(probe(rotated.clone()).await, 200);
    assert_eq!(probe(token.clone()).await, 200);
    browser
        .wait_for_text("#events", |t| t.contains("probe token rotated"))
        .await;

    // Delete, after confirming: back to the org, where the instance shows as deleting or deleted.
    browser.click_css("#delete-instance").await;
    browser.accept_alert().await;
    browser.wait_for_url(|u| u.contains("/orgs/")).await;
    browser
        .wait_for_text("#instances", |t| {
            t.contains("production") && (t.contains("deleting") || t.contains("deleted"))
        })
        .await;
    assert_eq!(probe(rotated).await, 401);
    browser.quit().await;
}
