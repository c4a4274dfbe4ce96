//! The monitoring role: scrapes every role replica's `/metrics` and `/readyz` on an interval,
//! keeps an hour of what it found (`history`), and serves it to site admins
//! (`GET /api/admin/system`). In Airplane Mode (`serve`) it runs in-process, scraping the process
//! itself over the same code path.
//!
//! Targets come from configuration (`--target ROLE=URL`, repeated). A URL of the form
//! `dns+http://NAME:PORT` is resolved on every scrape to all of NAME's addresses (a headless
//! Service in Kubernetes), so every replica is seen; each address is a target of its own.
//!
//! - `signals`: what a scrape says (pure);
//! - `scrape`: one bounded scrape of one target;
//! - `history`: an hour of a target's scrapes;
//! - `alerts`: rules with `for` durations over them, and the events of their changes, which are
//!   mailed to site admins and posted to `webhook`.

pub mod alerts;
pub mod history;
pub mod scrape;
pub mod signals;
pub mod webhook;

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use shared::monitoring::SystemStatus;
use tokio::sync::watch;
use url::Url;

use crate::clock::Clock;
use crate::identity::SiteAdmin;
use crate::users::directory::{Directory, SiteAdminMail};
use alerts::Alerts;
use history::{History, Point};
use scrape::Scraper;

/// A role to scrape: `ROLE=URL`, or `ROLE=dns+URL` for every address of URL's host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetSpec {
    pub role: String,
    pub url: Url,
    /// Resolve the host to all its addresses on every scrape.
    pub every_address: bool,
}

impl FromStr for TargetSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (role, url) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}` is not ROLE=URL"))?;
        let role = role.trim();
        if role.is_empty()
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!(
                "`{role}` is not a role name (letters, digits, - and _)"
            ));
        }
        let (every_address, url) = match url.strip_prefix("dns+") {
            Some(rest) => (true, rest),
            None => (false, url),
        };
        let url = Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!("`{url}` is not an http(s) URL with a host"));
        }
        Ok(TargetSpec {
            role: role.to_owned(),
            url,
            every_address,
        })
    }
}

#[derive(Debug, Clone)]
pub struct MonitoringConfig {
    pub targets: Vec<TargetSpec>,
    pub interval: Duration,
    pub timeout: Duration,
    /// How much history to keep (and how long a target that went away stays listed).
    pub keep: Duration,
    /// Where alerts are posted, if anywhere.
    pub webhook: Option<Url>,
}

impl MonitoringConfig {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15);
    pub const KEEP: Duration = Duration::from_secs(3600);

    pub fn new(targets: Vec<TargetSpec>, interval: Duration) -> MonitoringConfig {
        MonitoringConfig {
            targets,
            interval,
            // A scrape is over before the next is due.
            timeout: (interval * 2 / 3).clamp(Duration::from_millis(200), Duration::from_secs(10)),
            keep: Self::KEEP,
            webhook: None,
        }
    }
}

/// One scraped replica: its role and `host:port`.
type TargetKey = (String, String);

#[derive(Clone)]
pub struct MonitoringState {
    inner: Arc<Inner>,
}

struct Inner {
    config: MonitoringConfig,
    scraper: Scraper,
    clock: Clock,
    histories: Mutex<BTreeMap<TargetKey, History>>,
    alerts: Mutex<Alerts>,
    /// Where alerts are mailed to site admins (through the users role's outbox).
    mail: Option<Arc<dyn Directory>>,
    webhook: Option<webhook::Webhook>,
}

impl MonitoringState {
    /// Monitoring that keeps its alerts to itself (the page and the log).
    pub fn new(config: MonitoringConfig, clock: Clock) -> MonitoringState {
        MonitoringState::build(config, clock, None)
    }

    /// Monitoring that also mails every alert that fires or resolves to the site admins, through
    /// `directory` (the users role's outbox).
    pub fn mailing(
        config: MonitoringConfig,
        clock: Clock,
        directory: Arc<dyn Directory>,
    ) -> MonitoringState {
        MonitoringState::build(config, clock, Some(directory))
    }

    fn build(
        config: MonitoringConfig,
        clock: Clock,
        mail: Option<Arc<dyn Directory>>,
    ) -> MonitoringState {
        let scraper = Scraper::new(config.timeout);
        let webhook = config.webhook.clone().map(webhook::Webhook::start);
        MonitoringState {
            inner: Arc::new(Inner {
                config,
                scraper,
                clock,
                histories: Mutex::new(BTreeMap::new()),
                alerts: Mutex::new(Alerts::new(alerts::default_rules())),
                mail,
                webhook,
            }),
        }
    }

    /// Scrapes every target every interval until `shutdown` turns true.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.inner.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => self.scrape_all().await,
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
        }
    }

    /// The replicas the targets name now: a `dns+` target's every address; a name that does not
    /// resolve is one target that will be found down.
    async fn resolve(&self) -> Vec<(TargetKey, Url)> {
        let mut out = Vec::new();
        for spec in &self.inner.config.targets {
            let host = spec.url.host_str().unwrap_or_default().to_owned();
            let port = spec.url.port_or_known_default().unwrap_or(80);
            if spec.every_address
                && let Ok(addresses) = tokio::net::lookup_host((host.as_str(), port)).await
            {
                let mut seen: Vec<std::net::SocketAddr> = addresses.collect();
                seen.sort();
                seen.dedup();
                // No address at all (every replica gone): the name itself, shown down, rather
                // than the role silently missing from the page.
                if seen.is_empty() {
                    out.push((
                        (spec.role.clone(), format!("{host}:{port}")),
                        spec.url.clone(),
                    ));
                    continue;
                }
                for address in seen {
                    let mut url = spec.url.clone();
                    if url.set_ip_host(address.ip()).is_ok() {
                        out.push(((spec.role.clone(), address.to_string()), url));
                    }
                }
                continue;
            }
            out.push((
                (spec.role.clone(), format!("{host}:{port}")),
                spec.url.clone(),
            ));
        }
        out
    }

    /// One round: every replica scraped at once, each within the timeout.
    pub async fn scrape_all(&self) {
        let targets = self.resolve().await;
        let scrapes = targets
            .iter()
            .map(|(_, url)| self.inner.scraper.scrape(url));
        let results = futures_util::future::join_all(scrapes).await;
        let now = self.inner.clock.now();
        let config = &self.inner.config;
        let mut histories = self.inner.histories.lock().expect("histories");
        for ((key, _), scrape) in targets.into_iter().zip(results) {
            histories
                .entry(key)
                .or_insert_with(|| History::new(config.keep, config.interval))
                .push(Point { at_ms: now, scrape });
        }
        // A replica gone (scaled down, rescheduled) stays listed, as down, for the history kept.
        let keep_ms = config.keep.as_millis() as i64;
        histories.retain(|_, h| h.last_at_ms().is_some_and(|at| now - at <= keep_ms));
        // Alerts look at what this round found (a replica not scraped in it is not judged on
        // what an earlier round saw).
        let scraped: Vec<_> = histories
            .iter()
            .filter(|(_, h)| h.last_at_ms() == Some(now))
            .map(|((role, instance), h)| h.status(role, instance))
            .collect();
        drop(histories);
        let events = self
            .inner
            .alerts
            .lock()
            .expect("alerts")
            .evaluate(now, &scraped);
        for e in &events {
            tracing::warn!(rule = %e.rule, role = %e.role, instance = %e.instance, state = %e.state, "alert: {}", e.summary);
            if let Some(webhook) = &self.inner.webhook {
                webhook.post(e.clone());
            }
        }
        if let Some(directory) = self.inner.mail.clone()
            && !events.is_empty()
        {
            tokio::spawn(mail_alerts(directory, events));
        }
    }

    pub fn status(&self) -> SystemStatus {
        let targets = {
            let histories = self.inner.histories.lock().expect("histories");
            histories
                .iter()
                .map(|((role, instance), h)| h.status(role, instance))
                .collect()
        };
        let alerts = self.inner.alerts.lock().expect("alerts");
        SystemStatus {
            interval_seconds: self.inner.config.interval.as_secs_f64(),
            targets,
            firing: alerts.firing(),
            alert_history: alerts.history(100),
        }
    }
}

/// Attempts to hand one alert's mail to the users role before giving up (its outbox then retries
/// delivery itself): 1 + 4 + 16 + 64 s of waiting, for a users role restarting meanwhile.
const MAIL_ATTEMPTS: u32 = 5;

/// Mails `events` to the site admins, in order, one message each.
async fn mail_alerts(directory: Arc<dyn Directory>, events: Vec<shared::monitoring::AlertEvent>) {
    for e in events {
        let mail = alert_mail(&e);
        let mut delay = Duration::from_secs(1);
        for attempt in 1..=MAIL_ATTEMPTS {
            match directory.mail_site_admins(&mail).await {
                Ok(_) => break,
                Err(err) if attempt < MAIL_ATTEMPTS => {
                    tracing::warn!(error = %err, attempt, rule = %e.rule, "cannot mail an alert yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 4;
                }
                Err(err) => {
                    tracing::error!(error = %err, rule = %e.rule, subject = %mail.subject, "giving up mailing an alert");
                }
            }
        }
    }
}

fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// The mail of one alert's change of state.
pub fn alert_mail(e: &shared::monitoring::AlertEvent) -> SiteAdminMail {
    let firing = e.state == "firing";
    SiteAdminMail {
        subject: format!(
            "[Scopehub] {}: {} on {} {}",
            if firing { "FIRING" } else { "RESOLVED" },
            e.rule,
            e.role,
            e.instance
        ),
        body: format!(
            "{}\n\nRule: {}\nReplica: {} {}\n{}\n\nThe admin console's System tab shows every role's state: /admin?tab=system\n",
            e.summary,
            e.rule,
            e.role,
            e.instance,
            if firing {
                format!(
                    "Firing since {} (the condition holds since {}).",
                    utc(e.at_ms),
                    utc(e.since_ms)
                )
            } else {
                format!(
                    "Resolved at {} (it had held since {}).",
                    utc(e.at_ms),
                    utc(e.since_ms)
                )
            }
        ),
    }
}

/// The monitoring role's API (nested under `/api`).
pub fn api_router(state: MonitoringState) -> Router {
    Router::new()
        .route("/admin/system", get(system))
        .with_state(state)
}

/// `GET /api/admin/system`: every role replica's state and last hour (site admins).
async fn system(
    SiteAdmin(_): SiteAdmin,
    State(state): State<MonitoringState>,
) -> Json<SystemStatus> {
    Json(state.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_role_and_url() {
        let t: TargetSpec = "users=http://127.0.0.1:4041".parse().unwrap();
        assert_eq!((t.role.as_str(), t.every_address), ("users", false));
        let t: TargetSpec = "collector=dns+http://collector-headless:4043"
            .parse()
            .unwrap();
        assert!(t.every_address);
        assert_eq!(t.url.as_str(), "http://collector-headless:4043/");
        for bad in [
            "users",
            "=http://x",
            "us ers=http://x",
            "users=ftp://x",
            "users=nonsense",
        ] {
            assert!(bad.parse::<TargetSpec>().is_err(), "{bad}");
        }
    }

    /// A target that stops being ready: after a minute of scrapes saying so, one alert fires; when
    /// it is ready again, one resolution. (The clock is moved on between rounds.)
    #[tokio::test]
    async fn a_replica_not_ready_for_a_minute_fires_one_alert_and_resolves_once() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let ready = Arc::new(AtomicBool::new(true));
        let answer = ready.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route(
                "/metrics",
                get(|| async { "scopehub_collector_renders_total 1\n" }),
            )
            .route(
                "/readyz",
                get(move || {
                    let ready = answer.load(Ordering::SeqCst);
                    async move {
                        if ready {
                            axum::http::StatusCode::OK
                        } else {
                            axum::http::StatusCode::SERVICE_UNAVAILABLE
                        }
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        // The webhook: what it was posted, in order.
        let posted = Arc::new(Mutex::new(Vec::<serde_json::Value>::new()));
        let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hook_addr = hook_listener.local_addr().unwrap();
        let record = posted.clone();
        let hook = Router::new().route(
            "/",
            axum::routing::post(move |Json(body): Json<serde_json::Value>| {
                record.lock().unwrap().push(body);
                async { axum::http::StatusCode::OK }
            }),
        );
        tokio::spawn(async move { axum::serve(hook_listener, hook).await.unwrap() });
        let clock = Clock::adjustable();
        let config = MonitoringConfig {
            webhook: Some(format!("http://{hook_addr}/").parse().unwrap()),
            ..MonitoringConfig::new(
                vec![format!("users=http://{addr}").parse().unwrap()],
                Duration::from_secs(15),
            )
        };
        let state = MonitoringState::new(config, clock.clone());
        let round = |seconds: i64| {
            let (state, clock) = (state.clone(), clock.clone());
            async move {
                clock.advance(seconds * 1000);
                state.scrape_all().await;
                state.status()
            }
        };
        assert!(round(0).await.firing.is_empty());
        ready.store(false, Ordering::SeqCst);
        for _ in 0..4 {
            let s = round(15).await;
            assert!(s.firing.is_empty(), "{s:?}");
            assert!(!s.targets[0].ready);
        }
        let s = round(15).await;
        assert_eq!(s.firing.len(), 1, "{s:?}");
        assert_eq!(s.firing[0].rule, "RoleNotReady");
        assert_eq!(
            round(15).await.alert_history.len(),
            1,
            "one event while it stays down"
        );
        ready.store(true, Ordering::SeqCst);
        let s = round(15).await;
        assert!(s.firing.is_empty());
        let states: Vec<_> = s.alert_history.iter().map(|e| e.state.as_str()).collect();
        assert_eq!(states, ["resolved", "firing"]);
        // The webhook got the same two, in order.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let bodies = posted.lock().unwrap().clone();
            if bodies.len() == 2 {
                assert_eq!(bodies[0]["alert"]["state"], "firing");
                assert_eq!(bodies[1]["alert"]["state"], "resolved");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{bodies:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_round_scrapes_every_address_of_a_dns_target() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = Router::new()
            .route(
                "/metrics",
                get(|| async { "scopehub_collector_reports_total{outcome=\"accepted\"} 1\n" }),
            )
            .route("/readyz", get(|| async { "ready" }));
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let config = MonitoringConfig::new(
            vec![
                format!("users=dns+http://localhost:{port}")
                    .parse()
                    .unwrap(),
                "provisioning=http://127.0.0.1:9".parse().unwrap(),
            ],
            Duration::from_millis(300),
        );
        let state = MonitoringState::new(config, Clock::system());
        state.scrape_all().await;
        let status = state.status();
        let users: Vec<_> = status
            .targets
            .iter()
            .filter(|t| t.role == "users")
            .collect();
        assert!(!users.is_empty());
        // `localhost` may resolve to ::1 too, where nobody listens: each address is its own target.
        assert!(
            users
                .iter()
                .any(|t| t.instance == format!("127.0.0.1:{port}") && t.up && t.ready)
        );
        let down = status
            .targets
            .iter()
            .find(|t| t.role == "provisioning")
            .unwrap();
        assert!(!down.up && !down.ready && down.error.is_some());
        assert_eq!(down.instance, "127.0.0.1:9");
    }
}
