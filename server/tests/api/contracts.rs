//! The contracts between roles, each through both implementations: the in-process one and the HTTP
//! one against the role running alone on a real listener (as `scopehub users|provisioning|collector`
//! run it), over the same database. And the identity check in front of a role process: a request
//! with a missing, forged, expired or replayed-onto-another-path identity is refused with 401.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};
use shared::instances::Limits;
use shared::users::Role;

use scopehub::app::{self, RoleBasics};
use scopehub::clock::Clock;
use scopehub::collector::CollectorConfig;
use scopehub::collector::shard::{Flags, HttpShard, InProcessShard, Shard};
use scopehub::frontend::EdgeConfig;
use scopehub::identity::internal::{Caller, Envelope, InternalSecret, LIFETIME_MS};
use scopehub::identity::{ClientIp, Grant, Identity};
use scopehub::ops::StartupStatus;
use scopehub::provisioning::ProvisioningConfig;
use scopehub::provisioning::directory::{HttpInstances, InstanceDirectory};
use scopehub::telemetry::Metrics;
use scopehub::users::UsersState;
use scopehub::users::directory::{Directory, HttpDirectory};

use crate::reports::{fixture, ready_instance};
use crate::support::agent::Agent;
use crate::support::{Backend, TestApp, both};

const SECRET: &str = "contracts-test-secret-0123456789abcdef";

fn basics(app: &TestApp) -> RoleBasics {
    RoleBasics {
        clock: app.clock.clone(),
        metrics: Metrics::new(),
        secret: SECRET.parse().unwrap(),
        edge: EdgeConfig {
            max_body_bytes: 1024 * 1024,
            request_timeout: std::time::Duration::from_secs(30),
            identity_cache_ttl: std::time::Duration::ZERO,
            trusted_proxies: Vec::new(),
        },
        drain: Default::default(),
    }
}

async fn listen(router: axum::Router) -> url::Url {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    format!("http://{addr}/").parse().unwrap()
}

/// The users, provisioning and collector roles, each alone on its own listener, over `app`'s
/// database; provisioning places instances on the collector process (shard "remote").
struct Split {
    users: url::Url,
    provisioning: url::Url,
    collector: url::Url,
    /// The collector process's shard, seen from inside it.
    remote_shard: Arc<InProcessShard>,
    basics: RoleBasics,
}

async fn split(app: &TestApp) -> Split {
    let basics = basics(app);
    let users = UsersState::new(
        app.store.clone(),
        app.clock.clone(),
        scopehub::users::UsersConfig::new("http://127.0.0.1:1/".parse().unwrap(), false),
        scopehub::users::mail::Mailer::new(
            None,
            "t@example.com",
            std::time::Duration::from_secs(30),
        )
        .unwrap(),
    );
    let users_url = listen(app::users_service(
        &users,
        StartupStatus::default(),
        &basics,
    ))
    .await;
    // The collector needs provisioning's URL and provisioning the collector's: bind first.
    let provisioning_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let provisioning_url: url::Url =
        format!("http://{}/", provisioning_listener.local_addr().unwrap())
            .parse()
            .unwrap();
    let remote_shard = Arc::new(
        InProcessShard::new("remote", app.clock.clone()).with_history(history_in_memory()),
    );
    let collector_state = app::collector_state(
        remote_shard.clone(),
        CollectorConfig::default(),
        users_url.clone(),
        provisioning_url.clone(),
        &basics,
    )
    .unwrap();
    let started = scopehub::ops::StartupStatus::default();
    started.set_done();
    let collector_url = listen(app::collector_service(&collector_state, started, &basics)).await;
    let provisioning = app::provisioning_state(
        app.store.clone(),
        ProvisioningConfig::default(),
        users_url.clone(),
        vec![("remote".into(), collector_url.clone())],
        &basics,
    )
    .unwrap();
    let router = app::provisioning_service(&provisioning, StartupStatus::default(), &basics);
    tokio::spawn(async move {
        axum::serve(
            provisioning_listener,
            router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .unwrap()
    });
    Split {
        users: users_url,
        provisioning: provisioning_url,
        collector: collector_url,
        remote_shard,
        basics,
    }
}

/// The identity the edge would hand a role for a logged-in user.
async fn identity_of(app: &TestApp, email: &str) -> Identity {
    let row = app.store.user_by_email(email).await.unwrap().unwrap();
    Identity {
        user: scopehub::users::directory::user_of(&row),
        via: scopehub::identity::Via::Session {
            id: "test-session".into(),
            csrf_token: "test-csrf".into(),
        },
    }
}

fn session_token(agent: &Agent) -> String {
    agent.cookie.clone().expect("logged in")
}

async fn users_directory_answers_the_same_both_ways(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, _, _) = ready_instance(&app).await;
    let (_, me) = alice.get("/api/users/me").await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let user = me["user"]["id"].as_str().unwrap().to_owned();
    let (status, created) = alice
        .post(
            "/api/tokens",
            json!({"org_id": org, "name": "ci", "scope": "read"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let api_token = created["token"].as_str().unwrap().to_owned();
    let split = split(&app).await;
    let local = app.users.directory();
    let http = HttpDirectory(
        split
            .basics
            .client("users", "test", split.users.clone())
            .unwrap(),
    );
    let both: [(&str, &dyn Directory); 2] = [("in-process", &local), ("http", &http)];

    let session = session_token(&alice);
    let mut answers = Vec::new();
    for (how, directory) in both {
        let by_session = directory.session(&session).await.unwrap();
        let identity = by_session
            .clone()
            .unwrap_or_else(|| panic!("{how}: session"));
        assert_eq!(identity.user.email, "alice@example.com", "{how}");
        assert!(identity.session_id().is_some(), "{how}");
        let by_token = directory.api_token(&api_token).await.unwrap();
        assert_eq!(
            by_token.as_ref().and_then(|i| i.token_org()),
            Some(org.as_str()),
            "{how}"
        );
        assert_eq!(
            directory.session("shs_unknown").await.unwrap(),
            None,
            "{how}"
        );
        assert_eq!(
            directory.api_token("sha_unknown").await.unwrap(),
            None,
            "{how}"
        );
        assert_eq!(
            directory.role_in(&org, &user).await.unwrap(),
            Some(Role::Admin),
            "{how}"
        );
        assert_eq!(
            directory.role_in(&org, "nobody").await.unwrap(),
            None,
            "{how}"
        );
        let admin_org = directory.first_admin_org().await.unwrap();
        assert!(admin_org.is_some(), "{how}: the site admin has an org");
        // Mail to every site admin (monitoring's alerts) goes into the outbox.
        let mail = scopehub::users::directory::SiteAdminMail {
            subject: format!("alert by {how}"),
            body: "Something is down.".into(),
        };
        assert_eq!(directory.mail_site_admins(&mail).await.unwrap(), 1, "{how}");
        let queued = app.store.outbox(100).await.unwrap();
        assert!(
            queued
                .iter()
                .any(|m| m.subject == mail.subject && m.to_email == crate::support::agent::ADMIN),
            "{how}: {queued:?}"
        );
        // Other roles' audit entries (the collector's controls) land in the org's log; an action
        // outside the allowed ones is refused.
        let record = scopehub::users::directory::AuditRecord {
            action: "instance_control".into(),
            actor_id: user.clone(),
            actor_email: "alice@example.com".into(),
            org_id: org.clone(),
            target: "inst-1".into(),
            ip: Some("127.0.0.1".into()),
            detail: format!("docker_stop_container by {how}: done"),
        };
        directory.record_audit(&record).await.unwrap();
        let logged = app.store.audit_events(Some(&org), None, 50).await.unwrap();
        assert!(
            logged.iter().any(|e| e.action == "instance_control"
                && e.detail.as_deref() == Some(record.detail.as_str())),
            "{how}: {logged:?}"
        );
        let forged = scopehub::users::directory::AuditRecord {
            action: "admin_granted".into(),
            ..record
        };
        assert!(directory.record_audit(&forged).await.is_err(), "{how}");
        answers.push((by_session, by_token, admin_org));
    }
    assert_eq!(answers[0], answers[1], "both implementations agree");

    // A revoked session stops resolving through both.
    alice.post("/api/users/logout", json!({})).await;
    for (how, directory) in both {
        assert_eq!(directory.session(&session).await.unwrap(), None, "{how}");
    }
}
both!(users_directory_answers_the_same_both_ways);

async fn provisioning_directory_answers_the_same_both_ways(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (mut alice, id, token) = ready_instance(&app).await;
    let split = split(&app).await;
    let local = app.provisioning.directory();
    let http = HttpInstances(
        split
            .basics
            .client("provisioning", "test", split.provisioning.clone())
            .unwrap(),
    );
    let both: [(&str, &dyn InstanceDirectory); 2] = [("in-process", &local), ("http", &http)];
    let mut answers = Vec::new();
    for (how, directory) in both {
        let route = directory
            .probe_token(&token)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{how}: the probe token resolves"));
        assert_eq!(route.id, id, "{how}");
        assert_eq!(route.shard.as_deref(), Some("local"), "{how}");
        assert!(route.accepts_uploads() && route.readable(), "{how}");
        assert_eq!(
            route.limits,
            ProvisioningConfig::default().default_limits,
            "{how}"
        );
        assert_eq!(
            directory.probe_token("shp_unknown").await.unwrap(),
            None,
            "{how}"
        );
        let by_id = directory.instance(&id).await.unwrap();
        assert_eq!(by_id.as_ref(), Some(&route), "{how}");
        assert_eq!(
            directory.instance("no-such-id").await.unwrap(),
            None,
            "{how}"
        );
        answers.push(route);
    }
    assert_eq!(answers[0], answers[1]);

    // A suspension shows through both at once.
    let (status, _) = alice
        .post(
            &format!("/api/instances/{id}/suspend"),
            json!({"reason": "pause", "refuse_reads": true}),
        )
        .await;
    assert_eq!(status, 200);
    for (how, directory) in both {
        let route = directory.instance(&id).await.unwrap().unwrap();
        assert!(!route.accepts_uploads() && !route.readable(), "{how}");
    }
}
both!(provisioning_directory_answers_the_same_both_ways);

/// History kept in memory, for a shard's contract.
fn history_in_memory() -> Arc<scopehub::collector::history::History> {
    use scopehub::collector::history::{History, HistoryConfig, HistoryLocation};
    Arc::new(History::on(
        Arc::new(object_store::memory::InMemory::new()),
        object_store::path::Path::from("v1"),
        HistoryConfig::new(HistoryLocation::Folder("unused".into())),
        scopehub::telemetry::Metrics::new(),
    ))
}

/// The same script of shard operations, checked against what the shard's own process holds.
async fn exercise_shard(how: &str, shard: &dyn Shard, inside: &InProcessShard) {
    let limits = Limits {
        max_probes: 3,
        max_report_bytes: 4096,
        max_reports_per_second: 5,
    };
    let flags = Flags {
        refuse_uploads: true,
        refuse_reads: false,
        allow_controls: false,
        allow_terminals: true,
        history_days: 3,
        history_quota_bytes: 1 << 30,
    };
    assert!(shard.list().await.unwrap().is_empty(), "{how}");
    assert_eq!(shard.usage("a").await.unwrap(), None, "{how}");
    shard.ensure("b", limits, Flags::default()).await.unwrap();
    shard.ensure("a", limits, flags).await.unwrap();
    shard.ensure("a", limits, flags).await.unwrap();
    assert_eq!(shard.list().await.unwrap(), vec!["a", "b"], "{how}");
    assert_eq!(inside.limits_of("a"), Some(limits), "{how}");
    assert_eq!(inside.with_slot("a", |s| s.flags), Some(flags), "{how}");
    let usage = shard.usage("a").await.unwrap().expect("held");
    assert_eq!(usage.reports_received, 0, "{how}");
    // A deleted instance's history is purged from any shard, as often as asked.
    let history = inside.history().expect("the shard keeps history");
    history.keep(
        "a",
        1_000,
        "probe",
        scopehub::collector::decode::Format::Json,
        bytes::Bytes::from_static(b"{}"),
        false,
    );
    inside.flush_history().await;
    assert_eq!(history.kept("a").await.unwrap().batches, 1, "{how}");
    shard.purge_history("a").await.unwrap();
    shard.purge_history("a").await.unwrap();
    assert_eq!(history.kept("a").await.unwrap().batches, 0, "{how}");
    shard.drop_instance("a").await.unwrap();
    shard.drop_instance("a").await.unwrap();
    assert_eq!(shard.list().await.unwrap(), vec!["b"], "{how}");
    assert_eq!(inside.limits_of("a"), None, "{how}");
    shard.drop_instance("b").await.unwrap();
}

#[tokio::test]
async fn shard_operations_work_the_same_both_ways() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let split = split(&app).await;
    let local = InProcessShard::new("here", Clock::system()).with_history(history_in_memory());
    exercise_shard("in-process", &local, &local).await;
    let http = HttpShard::new(
        "remote",
        split
            .basics
            .client("collector", "test", split.collector.clone())
            .unwrap(),
    );
    exercise_shard("http", &http, &split.remote_shard).await;
    assert_eq!(http.name(), "remote");

    // A shard that is not there is unavailable (503) naming the role, not an empty answer.
    let gone = HttpShard::new(
        "gone",
        split
            .basics
            .client("collector", "test", "http://127.0.0.1:9/".parse().unwrap())
            .unwrap(),
    );
    let error = gone.list().await.unwrap_err();
    assert_eq!(error.status(), 503, "{error}");
}

/// Provisioning running alone places an instance on the collector process over HTTP, reads its
/// usage from there, and moves it to active once the shard has accepted a report.
async fn provisioning_alone_places_on_and_activates_from_an_http_shard(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (_alice, id, _) = ready_instance(&app).await;
    let split = split(&app).await;
    let state = app::provisioning_state(
        app.store.clone(),
        ProvisioningConfig::default(),
        split.users.clone(),
        vec![("remote".into(), split.collector.clone())],
        &split.basics,
    )
    .unwrap();
    let reconciler = state.reconciler();
    // The instance is on "local" (the in-process shard): unknown to this placement, an error.
    assert_eq!(reconciler.pass().await, 1);
    // A new instance made through this provisioning goes to the collector process.
    let org = app.store.instance(&id).await.unwrap().unwrap().org_id;
    let (_, created) = signed(
        &split,
        &split.provisioning,
        Method::POST,
        "/api/instances",
        Some(json!({"org_id": org, "name": "remote"})),
        Some(&identity_of(&app, "alice@example.com").await),
    )
    .await;
    let remote = created["instance"]["id"].as_str().unwrap().to_owned();
    reconciler.pass().await;
    let row = app.store.instance(&remote).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_str(), row.shard.as_deref()),
        ("ready", Some("remote"))
    );
    assert!(split.remote_shard.limits_of(&remote).is_some());
    // A report accepted by the collector process makes it active on the next pass.
    let report = fixture("probe-full-1.json");
    let decoded = scopehub::collector::decode::decode(
        &report,
        scopehub::collector::decode::Format::Json,
        false,
        1 << 24,
    )
    .unwrap();
    split.remote_shard.with_slot(&remote, |slot| {
        slot.accept(
            shared::instances::ProbeInfo {
                id: "p".into(),
                hostname: None,
                version: None,
                last_seen: app.clock.now(),
            },
            decoded,
            app.clock.now(),
        )
    });
    reconciler.pass().await;
    let row = app.store.instance(&remote).await.unwrap().unwrap();
    assert_eq!(row.state, "active");
}
both!(provisioning_alone_places_on_and_activates_from_an_http_shard);

/// Sends a request straight to a role process with an edge identity signed by the test.
async fn signed(
    split: &Split,
    base: &url::Url,
    method: Method,
    path: &str,
    body: Option<Value>,
    identity: Option<&Identity>,
) -> (u16, Value) {
    let envelope = Envelope {
        caller: Caller::Edge,
        identity: identity.cloned(),
        grant: None,
        client_ip: ClientIp(Some("127.0.0.1".into())),
        expires_at: split.basics.clock.now() + LIFETIME_MS,
    };
    send_with(
        &split.basics.secret,
        &envelope,
        base,
        method,
        path,
        path,
        body,
    )
    .await
}

/// Sends `method send_path` carrying `envelope` signed by `secret` for `signed_path`.
async fn send_with(
    secret: &InternalSecret,
    envelope: &Envelope,
    base: &url::Url,
    method: Method,
    signed_path: &str,
    send_path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(
        method.clone(),
        format!("{}{}", base.as_str().trim_end_matches('/'), send_path),
    );
    for (name, value) in secret.sign(envelope, &method, signed_path) {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn a_role_refuses_identities_the_edge_did_not_sign(b: Backend) {
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let (_alice, id, _) = ready_instance(&app).await;
    let split = split(&app).await;
    let alice = identity_of(&app, "alice@example.com").await;
    let now = split.basics.clock.now();
    let envelope = |expires_at: i64, grant: Option<Grant>| Envelope {
        caller: Caller::Edge,
        identity: Some(alice.clone()),
        grant,
        client_ip: ClientIp::default(),
        expires_at,
    };
    let good = envelope(now + LIFETIME_MS, None);
    let me = "/api/users/me";

    // A valid identity is served (so the refusals below are about the identity alone).
    let (status, body) = send_with(
        &split.basics.secret,
        &good,
        &split.users,
        Method::GET,
        me,
        me,
        None,
    )
    .await;
    assert_eq!(
        (status, body["user"]["email"].as_str()),
        (200, Some("alice@example.com"))
    );

    // Missing: no identity headers at all, on public and internal APIs.
    for (base, path) in [
        (&split.users, me),
        (&split.users, "/internal/users/first-admin-org"),
        (&split.provisioning, "/api/instances"),
        (&split.collector, "/internal/collector/instances"),
    ] {
        let url = format!("{}{}", base.as_str().trim_end_matches('/'), path);
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(response.status(), 401, "missing identity: {url}");
        // Headers a client could send are no identity either.
        let response = reqwest::Client::new()
            .get(&url)
            .header("x-scope-orgid", &id)
            .header("x-scope-userid", &alice.user.id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "tenant headers only: {url}");
    }
    // An edge identity is no key to the internal APIs (only roles calling each other are).
    let internal = "/internal/users/first-admin-org";
    let (status, _) = send_with(
        &split.basics.secret,
        &good,
        &split.users,
        Method::GET,
        internal,
        internal,
        None,
    )
    .await;
    assert_eq!(status, 401, "edge identity on an internal API");
    let service = Envelope {
        caller: Caller::Service("provisioning".into()),
        ..good.clone()
    };
    let (status, _) = send_with(
        &split.basics.secret,
        &service,
        &split.users,
        Method::GET,
        internal,
        internal,
        None,
    )
    .await;
    assert_eq!(status, 200, "a role calling the internal API");
    // Forged: signed with another key.
    let forger: InternalSecret = "a-secret-the-edge-does-not-have-0123456789"
        .parse()
        .unwrap();
    let (status, _) = send_with(&forger, &good, &split.users, Method::GET, me, me, None).await;
    assert_eq!(status, 401, "forged");
    // Expired.
    let (status, _) = send_with(
        &split.basics.secret,
        &envelope(now - 1, None),
        &split.users,
        Method::GET,
        me,
        me,
        None,
    )
    .await;
    assert_eq!(status, 401, "expired");
    // Replayed onto another path: a read grant for one instance's topology cannot read another's.
    let grant = Some(Grant::Reader {
        instance: id.clone(),
        org: String::new(),
        role: shared::users::Role::Viewer,
    });
    let topology = format!("/api/app/{id}/api/topology");
    let (status, _) = send_with(
        &split.basics.secret,
        &envelope(now + LIFETIME_MS, grant.clone()),
        &split.collector,
        Method::GET,
        &topology,
        &topology,
        None,
    )
    .await;
    assert_eq!(status, 200, "the grant works where it was signed for");
    for other in [
        "/api/app/another-instance/api/topology".to_owned(),
        format!("/api/app/{id}/api/report"),
        format!("/api/app/{id}/api/topology?system=show"),
    ] {
        let (status, _) = send_with(
            &split.basics.secret,
            &envelope(now + LIFETIME_MS, grant.clone()),
            &split.collector,
            Method::GET,
            &topology,
            &other,
            None,
        )
        .await;
        assert_eq!(status, 401, "replayed onto {other}");
    }
    // Same path, another method.
    let (status, _) = send_with(
        &split.basics.secret,
        &good,
        &split.users,
        Method::GET,
        "/api/users/logout",
        "/api/users/logout",
        None,
    )
    .await;
    assert_ne!(
        status, 401,
        "a GET signed for GET is verified (405 is the route's answer)"
    );
    let mut request = reqwest::Client::new().post(format!(
        "{}/api/users/logout",
        split.users.as_str().trim_end_matches('/')
    ));
    for (name, value) in split
        .basics
        .secret
        .sign(&good, &Method::GET, "/api/users/logout")
    {
        request = request.header(name, value);
    }
    assert_eq!(
        request.send().await.unwrap().status(),
        401,
        "GET's signature on a POST"
    );

    // Operational endpoints need no identity: probes and scrapers reach them directly.
    for base in [&split.users, &split.provisioning, &split.collector] {
        let url = format!("{}healthz", base);
        assert_eq!(reqwest::get(&url).await.unwrap().status(), 200, "{url}");
    }
}
both!(a_role_refuses_identities_the_edge_did_not_sign);

/// The collector's websockets take at most 1 MiB per message even when reached without the edge
/// (which applies the same limit to browsers): a larger one closes the connection.
async fn a_collector_websocket_refuses_oversized_messages(b: Backend) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let Some(app) = TestApp::spawn(b).await else {
        return;
    };
    let split = split(&app).await;
    // A probe's control channel opens only for an instance its shard holds.
    split
        .remote_shard
        .ensure(
            "i-any",
            shared::instances::Limits {
                max_probes: 10,
                max_report_bytes: 1 << 20,
                max_reports_per_second: 10,
            },
            Flags::default(),
        )
        .await
        .unwrap();
    let path = "/api/control/ws";
    let envelope = Envelope {
        caller: Caller::Edge,
        identity: None,
        grant: Some(Grant::Probe {
            instance: "i-any".into(),
        }),
        client_ip: ClientIp::default(),
        expires_at: split.basics.clock.now() + LIFETIME_MS,
    };
    let connect = || async {
        let url = format!(
            "ws://{}{path}",
            split
                .collector
                .as_str()
                .trim_start_matches("http://")
                .trim_end_matches('/')
        );
        let mut request = url.into_client_request().unwrap();
        for (name, value) in split.basics.secret.sign(&envelope, &Method::GET, path) {
            request.headers_mut().insert(name, value);
        }
        request
            .headers_mut()
            .insert("x-scope-probe-id", "p".parse().unwrap());
        tokio_tungstenite::connect_async(request)
            .await
            .expect("control websocket")
            .0
    };
    // Until the socket ends (true) or stays open for 5 s (false).
    let ends = |mut socket: crate::topology::Socket| async move {
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                match socket.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        outcome.is_ok()
    };
    let mut small = connect().await;
    small
        .send(Message::Binary(vec![0; 1000].into()))
        .await
        .unwrap();
    assert!(!ends(small).await, "a small message is read and dropped");
    let mut large = connect().await;
    // Sending may fail half way once the collector closes.
    let _ = large.send(Message::Binary(vec![0; 2 << 20].into())).await;
    assert!(ends(large).await, "a 2 MiB message closes the connection");
}
both!(a_collector_websocket_refuses_oversized_messages);
