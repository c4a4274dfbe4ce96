//! Mail through a real SMTP server, and what happens when the server is down.

use std::time::Duration;

use serde_json::json;

use crate::support::agent::{Agent, PASSWORD, link_token, site_admin};
use crate::support::smtp::SmtpServer;
use crate::support::{AppOptions, Backend, TestApp, both, eventually};

async fn verification_mail_arrives_over_smtp_and_its_link_works(b: Backend) {
    let Some(smtp) = SmtpServer::start() else {
        return;
    };
    let options = AppOptions {
        smtp_url: Some(smtp.url()),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(b, options).await else {
        return;
    };
    let mut admin = site_admin(&app).await;
    let mut user = Agent::new(&app);
    assert_eq!(
        user.post(
            "/api/users/signup",
            json!({"email": "mailme@example.com", "password": PASSWORD})
        )
        .await
        .0,
        202
    );

    let smtp_ref = &smtp;
    let message = eventually(
        Duration::from_secs(30),
        "the verification mail at the SMTP server",
        move || async move {
            smtp_ref
                .messages()
                .into_iter()
                .find(|m| m.contains("mailme@example.com"))
        },
    )
    .await;
    assert!(
        message.contains("Subject: Confirm your email for Scopehub"),
        "{message}"
    );
    assert!(
        message.contains("From: \"Scopehub Tests\" <tests@scopehub.localhost>"),
        "{message}"
    );
    let token = link_token(&message).expect("link in the mail");
    assert_eq!(
        user.post("/api/users/verify", json!({"token": token}))
            .await
            .0,
        200
    );

    let outbox = app.store.outbox(10).await.unwrap();
    let row = outbox
        .iter()
        .find(|m| m.to_email == "mailme@example.com")
        .unwrap();
    assert_eq!(row.status, "sent");
    // Delivered, the outbox no longer holds the link; site admins never see it.
    assert!(!row.body.contains(&token), "{}", row.body);
    assert!(row.body.contains("[link removed]"), "{}", row.body);
    let (status, listed) = admin.get("/api/admin/outbox").await;
    assert_eq!(status, 200);
    assert!(!listed.to_string().contains("token="), "{listed}");
}
both!(verification_mail_arrives_over_smtp_and_its_link_works);

/// The outbox row of the mail to `to`, once its delivery was tried (and failed) at least once.
async fn first_attempt(app: &TestApp, to: &str) -> scopehub::store::OutboxRow {
    let store = &app.store;
    eventually(
        Duration::from_secs(30),
        "a delivery attempt",
        || async move {
            store
                .outbox(10)
                .await
                .unwrap()
                .into_iter()
                .find(|m| m.to_email == to && m.attempts > 0)
        },
    )
    .await
}

#[tokio::test]
async fn mail_is_kept_for_retry_while_the_smtp_server_is_down() {
    // Nothing listens on this port: delivery fails, and the message must not be lost.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let options = AppOptions {
        smtp_url: Some(format!("smtp://127.0.0.1:{port}")),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    let mut user = Agent::new(&app);
    assert_eq!(
        user.post(
            "/api/users/signup",
            json!({"email": "later@example.com", "password": PASSWORD})
        )
        .await
        .0,
        202
    );
    let row = first_attempt(&app, "later@example.com").await;
    assert_eq!(row.status, "pending", "it will be retried");
    assert!(row.error.is_some());
}

/// An SMTP server that accepts connections and then answers one continuation line of its greeting
/// every 300 ms, forever: each read gets a byte in time, so only a bound on the whole delivery ends
/// the attempt. Connections are held until the test ends.
fn trickling_smtp_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                use std::io::Write;
                while stream.write_all(b"220-still there\r\n").is_ok() {
                    std::thread::sleep(Duration::from_millis(300));
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn a_hanging_smtp_server_costs_one_attempt_not_the_request_or_the_mail() {
    let options = AppOptions {
        smtp_url: Some(format!("smtp://127.0.0.1:{}", trickling_smtp_server())),
        smtp_timeout: Duration::from_secs(2),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let _admin = site_admin(&app).await;
    // The request that queues the mail does not wait for SMTP.
    let started = std::time::Instant::now();
    let (status, _) = Agent::new(&app)
        .post(
            "/api/users/signup",
            json!({"email": "stuck@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    assert!(started.elapsed() < Duration::from_secs(2));
    // The attempt ends at the delivery's time limit; the message stays queued for a retry.
    let row = first_attempt(&app, "stuck@example.com").await;
    assert_eq!(row.status, "pending", "it will be retried");
    let error = row.error.unwrap_or_default();
    assert!(error.contains("did not finish within 2 s"), "{error}");
    // Mail queued meanwhile is kept too, and requests keep answering.
    let (status, _) = Agent::new(&app)
        .post(
            "/api/users/signup",
            json!({"email": "next@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, 202);
    let queued = app.store.outbox(10).await.unwrap();
    assert!(queued.iter().any(|m| m.to_email == "next@example.com"));
}
