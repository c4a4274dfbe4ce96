//! Alerts posted to a webhook (`--alert-webhook-url`): one JSON body per change of state,
//! `{"source": "scopehub", "alert": {rule, role, instance, state, summary, since_ms, at_ms}}`, in
//! order, each retried with backoff until the endpoint answers 2xx. A bounded queue: a webhook
//! down for long costs the oldest notifications (logged), never monitoring's memory.

use std::time::Duration;

use shared::monitoring::AlertEvent;
use tokio::sync::mpsc;
use url::Url;

/// Notifications waiting for the webhook at most.
const QUEUE: usize = 1_000;
/// Attempts per notification: waits of 1, 2, 4 … 64 s between them (about 2 minutes).
const ATTEMPTS: u32 = 8;
const FIRST_WAIT: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Webhook {
    queue: mpsc::Sender<AlertEvent>,
}

impl Webhook {
    /// Starts the task that posts to `url`; it ends when the last `Webhook` is dropped.
    pub fn start(url: Url) -> Webhook {
        let (queue, events) = mpsc::channel(QUEUE);
        tokio::spawn(deliver(url, events));
        Webhook { queue }
    }

    /// Queues `event`; when the queue is full (the webhook down for long) it is dropped, logged.
    pub fn post(&self, event: AlertEvent) {
        if let Err(e) = self.queue.try_send(event) {
            tracing::error!(error = %e, "the alert webhook's queue is full; a notification is dropped");
        }
    }
}

async fn deliver(url: Url, mut events: mpsc::Receiver<AlertEvent>) {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .expect("an HTTP client");
    while let Some(event) = events.recv().await {
        let body = serde_json::json!({"source": "scopehub", "alert": event});
        let mut wait = FIRST_WAIT;
        for attempt in 1..=ATTEMPTS {
            let outcome = client.post(url.clone()).json(&body).send().await;
            let failure = match outcome {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => format!("answered {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == ATTEMPTS {
                tracing::error!(error = %failure, rule = %event.rule, "giving up posting an alert to the webhook");
            } else {
                tracing::warn!(error = %failure, attempt, rule = %event.rule, "cannot post an alert to the webhook yet; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::routing::post;
    use serde_json::Value;

    use super::*;

    #[tokio::test]
    async fn each_alert_is_posted_once_in_order_after_failures() {
        // The endpoint fails its first two requests, then takes everything.
        #[derive(Clone, Default)]
        struct Seen(Arc<Mutex<(u32, Vec<Value>)>>);
        async fn hook(State(seen): State<Seen>, axum::Json(body): axum::Json<Value>) -> StatusCode {
            let mut seen = seen.0.lock().unwrap();
            seen.0 += 1;
            if seen.0 <= 2 {
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
            seen.1.push(body);
            StatusCode::NO_CONTENT
        }
        let seen = Seen::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/hook", listener.local_addr().unwrap())).unwrap();
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(seen.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let webhook = Webhook::start(url);
        let event = |state: &str| AlertEvent {
            rule: "RoleNotReady".into(),
            role: "users".into(),
            instance: "10.0.0.1:4040".into(),
            state: state.into(),
            summary: "A role replica has not been ready for a minute.".into(),
            since_ms: 1,
            at_ms: 2,
        };
        webhook.post(event("firing"));
        webhook.post(event("resolved"));
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (tries, bodies) = seen.0.lock().unwrap().clone();
            if bodies.len() == 2 {
                assert_eq!(tries, 4, "two failures, then one post each");
                assert_eq!(bodies[0]["alert"]["state"], "firing");
                assert_eq!(bodies[1]["alert"]["state"], "resolved");
                assert_eq!(bodies[0]["source"], "scopehub");
                assert_eq!(bodies[0]["alert"]["rule"], "RoleNotReady");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{tries} tries, {bodies:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
