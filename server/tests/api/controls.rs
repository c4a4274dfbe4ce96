//! Issue 17: controls carried from a user to the probe that reported the node, over the probe's
//! control websocket as Scope's JSON-RPC — with a scripted probe (what the collector does for any
//! probe) and with our probe against a real container engine (podman's Docker-compatible API).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::agent::{Agent, join_org, site_admin};
use crate::support::{AppOptions, Backend, TestApp, eventually, required, warn};

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A probe's control channel opened by the test, which answers (or not) as the test says.
async fn connect_probe(app: &TestApp, token: &str, probe: &str) -> Socket {
    connect_probe_at(&app.url, token, probe).await
}

pub(crate) async fn connect_probe_at(base: &str, token: &str, probe: &str) -> Socket {
    let mut request = format!("ws://{}/api/control/ws", base.trim_start_matches("http://"))
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "authorization",
        format!("Scope-Probe token={token}").parse().unwrap(),
    );
    headers.insert("x-scope-probe-id", probe.parse().unwrap());
    let (socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
}

/// The next call on a probe's channel: its header and body frames.
pub(crate) async fn next_call(socket: &mut Socket) -> (Value, Value) {
    let mut frames = Vec::new();
    while frames.len() < 2 {
        match socket.next().await {
            Some(Ok(Message::Text(t))) => frames.push(serde_json::from_str(t.as_str()).unwrap()),
            Some(Ok(_)) => {}
            other => panic!("the channel ended: {other:?}"),
        }
    }
    let body = frames.pop().unwrap();
    (frames.pop().unwrap(), body)
}

pub(crate) async fn reply(socket: &mut Socket, seq: u64, value: Value) {
    let head = json!({"Request": null, "Response": {"ServiceMethod": "control.Handle", "Seq": seq, "Error": ""}, "Value": null});
    socket
        .send(Message::Text(head.to_string().into()))
        .await
        .unwrap();
    let body = json!({"Request": null, "Response": null, "Value": value});
    socket
        .send(Message::Text(body.to_string().into()))
        .await
        .unwrap();
}

/// The org's audit entries of controls, newest first: (actor, detail).
async fn audited_controls(admin: &mut Agent, org: &str) -> Vec<(String, String)> {
    let (status, events) = admin.get(&format!("/api/orgs/{org}/audit")).await;
    assert_eq!(status, 200, "{events}");
    events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "instance_control")
        .map(|e| {
            (
                e["actor_email"].as_str().unwrap_or_default().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// The org of instance `id`.
async fn org_of(admin: &mut Agent, id: &str) -> String {
    let (_, details) = admin.get(&format!("/api/instances/{id}")).await;
    details["instance"]["org_id"].as_str().unwrap().to_owned()
}

/// An org with an instance the admin owns, and a viewer in it.
async fn tenant(app: &TestApp) -> (Agent, Agent, String, String) {
    let mut admin = site_admin(app).await;
    let (status, org) = admin.post("/api/orgs", json!({"name": "ops"})).await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_owned();
    let (id, token) = admin.create_ready_instance(&org, "prod").await;
    let viewer = join_org(app, &mut admin, &org, "viewer@example.com", "viewer").await;
    (admin, viewer, id, token)
}

pub(crate) fn control_path(id: &str, probe: &str, node: &str, control: &str) -> String {
    let node = node
        .replace(';', "%3B")
        .replace('<', "%3C")
        .replace('>', "%3E");
    format!("/api/app/{id}/api/control/{probe}/{node}/{control}")
}

/// The collector's side with any probe: the call goes out as Scope's two frames, the reply comes
/// back in Scope's shape; a probe's error is 400; a viewer is refused before anything reaches the
/// probe; a probe not connected is 503; one that does not answer is 504 and the instance keeps
/// serving.
#[tokio::test]
async fn controls_reach_the_probe_and_its_reply_comes_back() {
    let options = AppOptions {
        control_timeout: Some(Duration::from_millis(800)),
        ..AppOptions::default()
    };
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, options).await else {
        return;
    };
    let (mut admin, mut viewer, id, token) = tenant(&app).await;
    let node = "abc;<container>";
    let path = control_path(&id, "probe-1", node, "docker_restart_container");

    // Not connected yet.
    let (status, body) = admin.post(&path, json!({})).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("not connected"));

    let mut probe = connect_probe(&app, &token, "probe-1").await;
    let call = tokio::spawn({
        let mut agent = admin.clone();
        let path = path.clone();
        async move { agent.post(&path, json!({"reason": "test"})).await }
    });
    let (head, body) = next_call(&mut probe).await;
    assert_eq!(head["Request"]["ServiceMethod"], "control.Handle");
    assert_eq!(body["Value"]["NodeID"], node);
    assert_eq!(body["Value"]["Control"], "docker_restart_container");
    assert_eq!(body["Value"]["ControlArgs"]["reason"], "test");
    let seq = head["Request"]["Seq"].as_u64().unwrap();
    reply(&mut probe, seq, json!({"value": "restarted"})).await;
    let (status, answer) = call.await.unwrap();
    assert_eq!((status, &answer), (200, &json!({"value": "restarted"})));

    // A control the probe could not carry out: 400 with its error, as Scope's app answers.
    let call = tokio::spawn({
        let mut agent = admin.clone();
        let path = path.clone();
        async move { agent.post(&path, json!({})).await }
    });
    let (head, _) = next_call(&mut probe).await;
    reply(
        &mut probe,
        head["Request"]["Seq"].as_u64().unwrap(),
        json!({"error": "no such container"}),
    )
    .await;
    let (status, answer) = call.await.unwrap();
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["message"], "no such container");

    // A viewer: 403, and the probe hears nothing.
    let (status, body) = viewer.post(&path, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("editor"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), probe.next())
            .await
            .is_err(),
        "the probe got a call from a viewer"
    );

    // The probe does not answer: 504 within the timeout; the instance keeps serving.
    let started = std::time::Instant::now();
    let (status, body) = admin.post(&path, json!({})).await;
    assert_eq!(status, 504, "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, _) = admin.get(&format!("/api/app/{id}/api/topology")).await;
    assert_eq!(status, 200);

    // Every call was audited, with who asked and how it ended.
    let org = org_of(&mut admin, &id).await;
    let audited = audited_controls(&mut admin, &org).await;
    let outcomes: Vec<&str> = audited
        .iter()
        .map(|(_, d)| d.rsplit_once(": ").map_or("", |(_, o)| o))
        .collect();
    assert!(
        audited
            .iter()
            .all(|(_, d)| d
                .starts_with("docker_restart_container on abc;<container> (probe probe-1)")),
        "{audited:?}"
    );
    assert_eq!(audited.len(), 5, "{audited:?}");
    assert!(outcomes[0].starts_with("timed out"), "{audited:?}");
    assert!(
        audited[1].0 == "viewer@example.com" && audited[1].1.contains("refused"),
        "{audited:?}"
    );
    assert!(
        audited[2].1.contains("failed: ") && audited[2].1.contains("no such container"),
        "{audited:?}"
    );
    assert!(outcomes[3] == "done", "{audited:?}");
    assert!(audited[4].1.contains("not connected"), "{audited:?}");

    // The probe goes away: 503 again.
    drop(probe);
    eventually(Duration::from_secs(5), "the link to go", || {
        let mut admin = admin.clone();
        let path = path.clone();
        async move { (admin.post(&path, json!({})).await.0 == 503).then_some(()) }
    })
    .await;
}

/// Each user has an allowance of controls per instance: a member calling controls (here a viewer,
/// each call refused and audited) as fast as they can is told 429 with when to retry, only the
/// first refusal of each streak writes to the audit log, and another member is not affected.
#[tokio::test]
async fn a_member_calling_controls_without_pause_is_slowed_and_does_not_flood_the_audit_log() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut admin, mut viewer, id, _) = tenant(&app).await;
    let org = org_of(&mut admin, &id).await;
    let path = control_path(
        &id,
        "probe-1",
        "abc;<container>",
        "docker_restart_container",
    );
    // Until three refusals in a row (a refill of the allowance between calls starts a new
    // streak); every answer is a refusal for the viewer: 403, or 429 once over the allowance.
    let (mut answers, mut in_a_row) = (Vec::new(), 0);
    while in_a_row < 3 {
        assert!(answers.len() < 200, "never slowed: {answers:?}");
        let (status, headers, body) = viewer.send_full(Method::POST, &path, Some(json!({}))).await;
        if status == 429 {
            assert_eq!(body["code"], "too_many_requests", "{body}");
            let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&retry), "{retry}");
            in_a_row += 1;
        } else {
            assert_eq!(status, 403, "{body}");
            in_a_row = 0;
        }
        answers.push(status);
    }
    let allowed = answers.iter().filter(|s| **s == 403).count();
    assert!(allowed >= 20, "the burst: {answers:?}");
    let streaks = (answers.windows(2))
        .filter(|pair| pair[0] == 403 && pair[1] == 429)
        .count();

    let audited = audited_controls(&mut admin, &org).await;
    let (viewers, others): (Vec<_>, Vec<_>) =
        (audited.iter()).partition(|(actor, _)| actor == "viewer@example.com");
    let slowed = viewers
        .iter()
        .filter(|(_, d)| d.contains("too many"))
        .count();
    assert_eq!(
        (viewers.len() - slowed, slowed),
        (allowed, streaks),
        "{answers:?} {viewers:?}"
    );
    assert!(others.is_empty(), "{others:?}");

    // The admin's allowance is their own: the probe is not connected, and they are told so.
    let (status, body) = admin.post(&path, json!({})).await;
    assert_eq!(status, 503, "{body}");
}

/// The instance's settings decide what members may do from the map: org admins turn controls off
/// (and on), terminals are off until they turn them on; editors cannot change either; the probe
/// hears nothing that was refused; every change is in the instance's history.
#[tokio::test]
async fn instance_settings_turn_controls_and_terminals_on_and_off() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut admin, _, id, token) = tenant(&app).await;
    let org = org_of(&mut admin, &id).await;
    let mut editor = join_org(&app, &mut admin, &org, "editor@example.com", "editor").await;
    let mut probe = connect_probe(&app, &token, "probe-1").await;
    let node = "abc;<container>";
    let restart = control_path(&id, "probe-1", node, "docker_restart_container");
    let exec = control_path(&id, "probe-1", node, "docker_exec_container");
    let settings = format!("/api/instances/{id}/settings");
    let (_, details) = admin.get(&format!("/api/instances/{id}")).await;
    assert_eq!(details["instance"]["allow_controls"], true);
    assert_eq!(details["instance"]["allow_terminals"], false);

    // Terminals are off by default: exec is refused before the probe hears of it.
    let (status, body) = editor.post(&exec, json!({})).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Terminals are turned off")
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(200), probe.next())
            .await
            .is_err()
    );
    // Only an org admin changes settings.
    let (status, _) = editor
        .patch(&settings, json!({"allow_terminals": true}))
        .await;
    assert_eq!(status, 403);
    let (status, info) = admin
        .patch(&settings, json!({"allow_terminals": true}))
        .await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["allow_terminals"], true);
    // The collector hears of it at once: exec now reaches the probe.
    let call = tokio::spawn({
        let mut editor = editor.clone();
        let exec = exec.clone();
        async move {
            loop {
                let (status, body) = editor.post(&exec, json!({})).await;
                if status != 403 {
                    return (status, body);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let (head, body) = tokio::time::timeout(Duration::from_secs(10), next_call(&mut probe))
        .await
        .expect("exec reaches the probe once terminals are on");
    assert_eq!(body["Value"]["Control"], "docker_exec_container");
    reply(
        &mut probe,
        head["Request"]["Seq"].as_u64().unwrap(),
        json!({"pipe": "p1"}),
    )
    .await;
    assert_eq!(call.await.unwrap().0, 200);

    // Controls off: even a restart is refused, with the reason. The setting reaches the collector
    // a moment after the answer; a restart sent before it does goes to the probe, which answers
    // it (unanswered, it would hold the request for the control's whole timeout).
    let (status, _) = admin
        .patch(&settings, json!({"allow_controls": false}))
        .await;
    assert_eq!(status, 200);
    let answering = tokio::spawn(async move {
        loop {
            let (head, _) = next_call(&mut probe).await;
            let seq = head["Request"]["Seq"].as_u64().unwrap();
            reply(&mut probe, seq, json!({})).await;
        }
    });
    let refused = post_until(&editor, &restart, 403, "controls to be off").await;
    answering.abort();
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("Controls are turned off")
    );
    // The history says who changed what.
    let (_, details) = admin.get(&format!("/api/instances/{id}")).await;
    let events = details["events"].to_string();
    assert!(
        events.contains("terminals on") && events.contains("controls off"),
        "{events}"
    );
}

/// A probe's end of pipe `pipe`, as the test's probe opens it.
pub(crate) async fn probe_pipe_end(
    addr: impl std::fmt::Display,
    token: &str,
    probe: &str,
    pipe: &str,
) -> Result<Socket, u16> {
    let mut request = format!("ws://{addr}/api/pipe/{pipe}/probe")
        .into_client_request()
        .unwrap();
    let headers = request.headers_mut();
    headers.insert(
        "authorization",
        format!("Scope-Probe token={token}").parse().unwrap(),
    );
    headers.insert("x-scope-probe-id", probe.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

/// The next binary frame on a pipe's end (`None` once it closes).
pub(crate) async fn next_bytes(socket: &mut Socket) -> Option<Vec<u8>> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .ok()?
        {
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Turns the instance's terminals on or off (as its org admin).
pub(crate) async fn allow_terminals(admin: &mut Agent, id: &str, on: bool) {
    let (status, body) = admin
        .patch(
            &format!("/api/instances/{id}/settings"),
            json!({"allow_terminals": on}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Posts to `path` until it answers `status` (a setting reaches the collector a moment after it
/// changes); returns that answer.
pub(crate) async fn post_until(agent: &Agent, path: &str, status: u16, what: &str) -> Value {
    eventually(Duration::from_secs(10), what, || {
        let mut agent = agent.clone();
        let path = path.to_owned();
        async move {
            let (got, body) = agent.post(&path, json!({})).await;
            (got == status).then_some(body)
        }
    })
    .await
}

/// The browser's end of `pipe` of instance `id`, opened with `agent`'s session.
pub(crate) async fn browser_pipe_end(
    addr: &std::net::SocketAddr,
    agent: &Agent,
    id: &str,
    pipe: &str,
) -> Socket {
    let url = format!("ws://{addr}/api/app/{id}/api/pipe/{pipe}");
    let (socket, _) = tokio_tungstenite::connect_async(crate::support::browser_ws_request(
        &url,
        agent.cookie.as_ref().unwrap(),
    ))
    .await
    .unwrap();
    socket
}

/// A command typed at the browser's end of a pipe reaches the probe's end (3 bytes), and the
/// probe's answer comes back (8 bytes).
pub(crate) async fn bytes_go_both_ways(browser_end: &mut Socket, probe_end: &mut Socket) {
    browser_end
        .send(Message::Binary(b"ls\n".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next_bytes(probe_end).await.unwrap(), b"ls\n");
    probe_end
        .send(Message::Binary(b"bin etc\n".to_vec().into()))
        .await
        .unwrap();
    assert_eq!(next_bytes(browser_end).await.unwrap(), b"bin etc\n");
}

/// Reads a terminal into `printed` until it holds `needle`.
async fn read_until(terminal: &mut Socket, printed: &mut String, needle: &str) {
    while !printed.contains(needle) {
        let bytes = next_bytes(terminal)
            .await
            .unwrap_or_else(|| panic!("the terminal said: {printed:?}"));
        printed.push_str(&String::from_utf8_lossy(&bytes));
    }
}

/// Pipes: an exec the probe answers with a pipe id; the browser's end (only its user's) and the
/// probe's end are joined by the collector, bytes go both ways; when the browser goes, the probe's
/// end is closed and the session is audited with its byte counts, not its content.
#[tokio::test]
async fn a_pipe_joins_the_browser_and_the_probe_and_closes_with_either() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut admin, mut viewer, id, token) = tenant(&app).await;
    allow_terminals(&mut admin, &id, true).await;
    let mut probe = connect_probe(&app, &token, "probe-1").await;
    let exec = control_path(&id, "probe-1", "abc;<container>", "docker_exec_container");
    let call = tokio::spawn({
        let mut admin = admin.clone();
        async move {
            loop {
                let (status, body) = admin.post(&exec, json!({})).await;
                if status != 403 {
                    return (status, body);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
    let (head, _) = next_call(&mut probe).await;
    let announced =
        json!({"pipe": "pipe-1", "raw_tty": true, "resize_tty_control": "docker_resize_exec_tty"});
    reply(
        &mut probe,
        head["Request"]["Seq"].as_u64().unwrap(),
        announced.clone(),
    )
    .await;
    let (status, body) = call.await.unwrap();
    assert_eq!((status, body), (200, announced));

    // Nobody else's: another member's check says it does not exist; a probe cannot open a pipe
    // nobody announced.
    let check = format!("/api/app/{id}/api/pipe/pipe-1/check");
    assert_eq!(admin.get(&check).await.0, 204);
    assert_eq!(viewer.get(&check).await.0, 404);
    assert_eq!(
        probe_pipe_end(app.addr, &token, "probe-1", "pipe-2")
            .await
            .err(),
        Some(404)
    );
    assert_eq!(
        probe_pipe_end(app.addr, &token, "probe-2", "pipe-1")
            .await
            .err(),
        Some(404)
    );

    // Another probe of the instance cannot close it either.
    let closed = reqwest::Client::new()
        .delete(app.at("/api/pipe/pipe-1"))
        .header("authorization", format!("Scope-Probe token={token}"))
        .header("x-scope-probe-id", "probe-2")
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    assert_eq!(admin.get(&check).await.0, 204, "still open");

    let mut probe_end = probe_pipe_end(app.addr, &token, "probe-1", "pipe-1")
        .await
        .unwrap();
    let mut browser_end = browser_pipe_end(&app.addr, &admin, &id, "pipe-1").await;
    bytes_go_both_ways(&mut browser_end, &mut probe_end).await;

    // The browser goes: the probe's end is closed, the pipe is gone, the session audited.
    drop(browser_end);
    assert_eq!(next_bytes(&mut probe_end).await, None);
    eventually(Duration::from_secs(5), "the pipe to close", || {
        let mut admin = admin.clone();
        let check = check.clone();
        async move { (admin.get(&check).await.0 == 404).then_some(()) }
    })
    .await;
    let org = org_of(&mut admin, &id).await;
    let logged = eventually(
        Duration::from_secs(5),
        "the session in the audit log",
        || {
            let mut admin = admin.clone();
            let org = org.clone();
            async move {
                let (_, events) = admin.get(&format!("/api/orgs/{org}/audit")).await;
                events
                    .as_array()?
                    .iter()
                    .find(|e| e["action"] == "instance_terminal")
                    .cloned()
            }
        },
    )
    .await;
    let detail = logged["detail"].as_str().unwrap();
    assert!(
        detail.contains("pipe pipe-1") && detail.contains("3 bytes in, 8 bytes out"),
        "{detail}"
    );
    assert!(!detail.contains("ls"), "never the content: {detail}");
}

/// The test image: busybox on nothing, a shell that ticks and ends on SIGTERM (as a well-behaved
/// service does, so that stop and restart do not wait for the grace period).
const IMAGE: &str = "localhost/scopehub-test-busybox:3";

/// Podman's Docker-compatible API on a socket of the test's own, and the containers it ran.
struct Engine {
    dir: tempfile::TempDir,
    service: std::process::Child,
    containers: Vec<String>,
}

impl Engine {
    fn start() -> Option<Engine> {
        let missing = ["podman", "buildah", "runc"]
            .into_iter()
            .find(|tool| {
                !Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .map(|tool| format!("{tool} is not installed"))
            .or_else(|| {
                (!Path::new("/bin/busybox").exists())
                    .then(|| "/bin/busybox is missing (busybox-static)".to_owned())
            });
        if let Some(why) = missing {
            assert!(!required("REQUIRE_PODMAN"), "REQUIRE_PODMAN=1 but {why}");
            warn(&format!(
                "WARNING: skipping the container-engine test: {why}"
            ));
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("containers.conf"),
            "[containers]\ndefault_ulimits = []\nlog_driver = \"k8s-file\"\n\n[engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
        )
        .unwrap();
        let socket = dir.path().join("podman.sock");
        let mut engine = Engine {
            service: Command::new("podman")
                .env("CONTAINERS_CONF", dir.path().join("containers.conf"))
                .args(["system", "service", "--time=0"])
                .arg(format!("unix://{}", socket.display()))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("podman system service"),
            dir,
            containers: Vec::new(),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(std::time::Instant::now() < deadline, "podman's socket");
            std::thread::sleep(Duration::from_millis(100));
        }
        engine.build_image();
        Some(engine)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("podman.sock")
    }

    fn podman(&self, args: &[&str]) -> String {
        let out = Command::new("podman")
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "podman {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn build_image(&mut self) {
        let context = self.dir.path().join("image");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::copy("/bin/busybox", context.join("busybox")).unwrap();
        std::fs::write(
            context.join("Containerfile"),
            "FROM scratch\nCOPY busybox /bin/busybox\nCOPY busybox /bin/sh\nCMD [\"/bin/busybox\", \"sh\", \"-c\", \"trap 'exit 0' TERM; while true; do echo tick; /bin/busybox sleep 1; done\"]\n",
        )
        .unwrap();
        let out = Command::new("buildah")
            .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
            .args(["bud", "--isolation", "chroot", "-q", "-t", IMAGE, "-f"])
            .arg(context.join("Containerfile"))
            .arg(&context)
            .output()
            .unwrap();
        assert!(out.status.success(), "buildah: {out:?}");
    }

    /// Runs a container of the test image on the host's network; returns its id.
    fn run(&mut self, name: &str) -> String {
        let id = self.podman(&["run", "-d", "--network", "host", "--name", name, IMAGE]);
        self.containers.push(name.to_owned());
        id
    }

    fn inspect(&self, name: &str, format: &str) -> String {
        self.podman(&["inspect", "--format", format, name])
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        for name in &self.containers {
            let _ = Command::new("podman")
                .env("CONTAINERS_CONF", self.dir.path().join("containers.conf"))
                .args(["rm", "-f", "-t", "0", name])
                .output();
        }
        let _ = self.service.kill();
        let _ = self.service.wait();
    }
}

/// The node of the container named `name` in the containers view, once it is there.
async fn container_node(admin: &mut Agent, id: &str, name: &str) -> Option<Value> {
    let (status, view) = admin
        .get(&format!("/api/app/{id}/api/topology/containers"))
        .await;
    assert_eq!(status, 200, "{view}");
    view["nodes"]
        .as_object()?
        .values()
        .find(|n| n["label"] == name)
        .cloned()
}

/// A container's details, once the map has it.
async fn details(admin: &mut Agent, id: &str, node: &str) -> Option<Value> {
    let node_path = node
        .replace(';', "%3B")
        .replace('<', "%3C")
        .replace('>', "%3E");
    let (status, details) = admin
        .get(&format!(
            "/api/app/{id}/api/topology/containers/{node_path}"
        ))
        .await;
    if status == 404 {
        return None;
    }
    assert_eq!(status, 200, "{details}");
    Some(details["node"].clone())
}

/// Our probe against podman: the containers view shows the engine's container with its image,
/// state, CPU and memory; its controls work from the map — restart changes its start time, stop
/// stops it, remove takes it off the map at once — and a viewer changes nothing.
#[tokio::test]
async fn our_probe_shows_a_real_engines_containers_and_carries_out_their_controls() {
    let Some(mut engine) = Engine::start() else {
        return;
    };
    let name = format!("scopehub-test-{}", std::process::id());
    let container = engine.run(&name);
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut admin, mut viewer, id, token) = tenant(&app).await;
    let probe = tokio::spawn(scopehub::probe::publish(scopehub::probe::Options {
        url: app.url.parse().unwrap(),
        token,
        interval: Duration::from_millis(700),
        json: false,
        once: false,
        proc_root: "/proc".into(),
        docker_socket: engine.socket(),
        host_exec: false,
    }));

    // The container, with its image and state; CPU once two stats readings are in.
    let node_id = format!("{container};<container>");
    let node = eventually(Duration::from_secs(30), "the container with CPU", || {
        let mut admin = admin.clone();
        let (id, node_id) = (id.clone(), node_id.clone());
        async move {
            let node = details(&mut admin, &id, &node_id).await?;
            let metrics = node["metrics"].as_array()?;
            metrics
                .iter()
                .any(|m| m["id"] == "docker_cpu_total_usage")
                .then_some(node)
        }
    })
    .await;
    assert_eq!(node["label"], name.as_str(), "{node}");
    let text = node.to_string();
    assert!(text.contains(IMAGE), "the image: {node}");
    assert!(text.contains("docker_memory_usage"), "memory: {node}");
    // On the host's network: the host's addresses, as Scope shows them.
    let ips = node["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "docker_container_ips")
        .unwrap_or_else(|| panic!("no IPs: {node}"))["value"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!ips.is_empty(), "{node}");
    let controls: Vec<&str> = node["controls"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        controls.contains(&"docker_restart_container"),
        "{controls:?}"
    );
    let probe_id = node["controls"][0]["probeId"].as_str().unwrap().to_owned();

    // This probe runs without --host-exec: no shell on its host, whoever asks.
    let (_, hosts) = admin
        .get(&format!("/api/app/{id}/api/topology/hosts"))
        .await;
    let host = hosts["nodes"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    allow_terminals(&mut admin, &id, true).await;
    let host_exec = control_path(&id, &probe_id, &host, "host_exec");
    let refused = post_until(&admin, &host_exec, 400, "the probe to refuse a host shell").await;
    assert!(
        refused["message"].as_str().unwrap().contains("--host-exec"),
        "{refused}"
    );
    allow_terminals(&mut admin, &id, false).await;

    // A viewer may not restart it: nothing happens.
    let started = engine.inspect(&name, "{{.State.StartedAt}}");
    let restart = control_path(&id, &probe_id, &node_id, "docker_restart_container");
    assert_eq!(viewer.post(&restart, json!({})).await.0, 403);
    assert_eq!(engine.inspect(&name, "{{.State.StartedAt}}"), started);

    // An editor (the org's admin) restarts it: a new start time.
    let (status, body) = admin.post(&restart, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(engine.inspect(&name, "{{.State.StartedAt}}"), started);

    // A shell in the container, through a pipe: what is typed runs there, what it prints comes
    // back. (Terminals are off until an org admin turns them on.)
    let exec = control_path(&id, &probe_id, &node_id, "docker_exec_container");
    assert_eq!(admin.post(&exec, json!({})).await.0, 403);
    allow_terminals(&mut admin, &id, true).await;
    let opened = post_until(&admin, &exec, 200, "the exec to open a pipe").await;
    assert_eq!(opened["raw_tty"], true, "{opened}");
    let pipe = opened["pipe"].as_str().unwrap().to_owned();
    let mut terminal = browser_pipe_end(&app.addr, &admin, &id, &pipe).await;
    terminal
        .send(Message::Binary(b"echo hi-$((40+2))\n".to_vec().into()))
        .await
        .unwrap();
    let mut printed = String::new();
    read_until(&mut terminal, &mut printed, "hi-42").await;
    // A resize goes to the exec's terminal.
    let resize = control_path(&id, &probe_id, &node_id, "docker_resize_exec_tty");
    let (status, body) = admin
        .post(
            &resize,
            json!({"pipeID": pipe, "height": "40", "width": "120"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    terminal
        .send(Message::Binary(
            b"stty size; exec /bin/busybox sleep 4242\n".to_vec().into(),
        ))
        .await
        .unwrap();
    read_until(&mut terminal, &mut printed, "40 120").await;
    eventually(
        Duration::from_secs(5),
        "the session's command to run",
        || {
            let top = engine.podman(&["top", &name, "args"]);
            async move { top.contains("4242").then_some(()) }
        },
    )
    .await;
    // The browser goes: the probe closes the session, and its command ends with it.
    drop(terminal);
    eventually(
        Duration::from_secs(15),
        "the session's command to end",
        || {
            let top = engine.podman(&["top", &name, "args"]);
            async move { (!top.contains("4242")).then_some(()) }
        },
    )
    .await;

    // Its logs, followed: what it printed, then what it prints from now on.
    let logs = control_path(&id, &probe_id, &node_id, "docker_logs_container");
    let (status, opened) = admin.post(&logs, json!({})).await;
    assert_eq!(status, 200, "{opened}");
    assert_eq!(opened["raw_tty"], false, "{opened}");
    let mut viewer_of_logs =
        browser_pipe_end(&app.addr, &admin, &id, opened["pipe"].as_str().unwrap()).await;
    let first = String::from_utf8(next_bytes(&mut viewer_of_logs).await.unwrap()).unwrap();
    assert!(first.contains("tick"), "{first:?}");
    // The replay comes at once; a followed line comes about a second later (it ticks each second).
    let started = std::time::Instant::now();
    loop {
        let line = String::from_utf8(next_bytes(&mut viewer_of_logs).await.unwrap()).unwrap();
        if line.contains("tick") && started.elapsed() > Duration::from_millis(800) {
            break;
        }
    }
    drop(viewer_of_logs);

    // Stop: the engine says so, and the map follows (the probe reports at once).
    let stop = control_path(&id, &probe_id, &node_id, "docker_stop_container");
    let (status, body) = admin.post(&stop, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(engine.inspect(&name, "{{.State.Running}}"), "false");
    eventually(
        Duration::from_secs(10),
        "the map to show it stopped",
        || {
            let mut admin = admin.clone();
            let (id, node_id) = (id.clone(), node_id.clone());
            async move {
                let node = details(&mut admin, &id, &node_id).await?;
                let ids: Vec<String> = node["controls"]
                    .as_array()?
                    .iter()
                    .filter_map(|c| c["id"].as_str().map(str::to_owned))
                    .collect();
                ids.contains(&"docker_remove_container".to_owned())
                    .then_some(())
            }
        },
    )
    .await;

    // Remove: the reply names the node, and it is off the map at once.
    let remove = control_path(&id, &probe_id, &node_id, "docker_remove_container");
    let (status, body) = admin.post(&remove, json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["removedNode"], node_id.as_str());
    assert!(container_node(&mut admin, &id, &name).await.is_none());
    probe.abort();
}

/// The app served for a browser, its first admin, and an instance "prod" in the admin's org.
struct Served {
    server: crate::support::process::ServerProcess,
    _data: tempfile::TempDir,
    admin: Agent,
    org: String,
    id: String,
    token: String,
}

/// [`Served`], if the browser tests can run here.
async fn served_instance() -> Option<Served> {
    let dist = crate::browser::prerequisites()?;
    let (server, _data) = crate::browser::serve_app(&dist, &[]).await;
    let (mut admin, me) = crate::support::agent::first_admin_at(&server.url).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, token) = admin.create_ready_instance(&org, "prod").await;
    Some(Served {
        server,
        _data,
        admin,
        org,
        id,
        token,
    })
}

/// Posts [`container_report`] as the probe `probe-1` of the instance whose probe token is `token`.
async fn post_container_report(base: &str, token: &str) {
    let posted = reqwest::Client::new()
        .post(format!("{base}/api/report"))
        .header("authorization", format!("Scope-Probe token={token}"))
        .header("content-type", "application/json")
        .header("x-scope-probe-id", "probe-1")
        .body(container_report("probe-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);
}

/// A browser with the site admin logged in, on the map of instance `id` with the container of
/// [`container_report`] selected and its details open; and that page's URL.
async fn container_details(base: &str, id: &str) -> (crate::support::webdriver::Browser, String) {
    let browser = crate::support::webdriver::Browser::start().await;
    crate::journey::log_in_at(
        &browser,
        &format!("{base}/login"),
        crate::support::agent::ADMIN,
    )
    .await;
    browser.wait_for("#logout").await;
    let details = format!("{base}/instances/{id}/map?view=containers&node=abc%3B%3Ccontainer%3E");
    browser.goto(&details).await;
    browser
        .wait_for_text("#details-label", |t| t == "web")
        .await;
    (browser, details)
}

/// A JSON report of one running container offering Scope's controls, from `probe`.
fn container_report(probe: &str) -> Vec<u8> {
    let at = "2026-12-01T00:00:00Z";
    let latest = |pairs: &[(&str, &str)]| -> Value {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!({"timestamp": at, "value": v})))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let control = |id: &str, human: &str, rank: i64, confirmation: &str| json!({"id": id, "human": human, "icon": "fa fa-redo", "rank": rank, "confirmation": confirmation});
    serde_json::to_vec(&json!({
        "Container": {
            "nodes": {"abc;<container>": {
                "id": "abc;<container>",
                "topology": "container",
                "latest": latest(&[
                    ("docker_container_id", "abc"),
                    ("docker_container_name", "web"),
                    ("docker_container_state", "running"),
                    ("docker_image_name", "nginx"),
                    ("control_probe_id", probe),
                    ("active_controls", "docker_restart_container;docker_stop_container;docker_exec_container"),
                ]),
            }},
            "controls": {
                "docker_restart_container": control("docker_restart_container", "Restart", 4, ""),
                "docker_stop_container": control("docker_stop_container", "Stop", 7, "Stop this container?"),
                "docker_exec_container": control("docker_exec_container", "Exec shell", 8, ""),
            },
        },
    }))
    .unwrap()
}

/// A probe that answers every call: stop fails as the engine would say, the rest succeed.
fn answering_probe(mut socket: Socket) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (head, body) = next_call(&mut socket).await;
            let value = if body["Value"]["Control"] == "docker_stop_container" {
                json!({"error": "the engine refused to stop it"})
            } else {
                json!({})
            };
            reply(&mut socket, head["Request"]["Seq"].as_u64().unwrap(), value).await;
        }
    })
}

/// A member of `org` with `role`, invited by `owner`, its account made from the mailed link
/// (read from the outbox by the site admin `admin`).
async fn member_at(base: &str, owner: &mut Agent, org: &str, email: &str, role: &str) {
    let (status, invite) = owner
        .post(
            &format!("/api/orgs/{org}/invites"),
            json!({"email": email, "role": role}),
        )
        .await;
    assert_eq!(status, 201, "{invite}");
    let (_, outbox) = owner.get("/api/admin/outbox").await;
    let mail = outbox
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["to"] == email)
        .unwrap_or_else(|| panic!("no invite mail: {outbox}"))
        .clone();
    let token = crate::support::agent::link_token(mail["body"].as_str().unwrap()).unwrap();
    let (status, body) = Agent::for_url(base)
        .post(
            "/api/invites/accept",
            json!({"token": token, "password": crate::support::agent::PASSWORD}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Issue 17 in the browser: the details panel's controls — an editor restarts a container and is
/// told it is done; stop asks first and shows the probe's error; an org admin turns controls off
/// on the instance's page and the panel says why they are disabled; a viewer sees the buttons
/// disabled, with the reason.
#[tokio::test]
async fn the_details_panel_carries_out_controls_and_shows_their_outcome() {
    let Some(Served {
        server,
        _data,
        mut admin,
        org,
        id,
        token,
    }) = served_instance().await
    else {
        return;
    };
    let base = server.url.clone();
    member_at(&base, &mut admin, &org, "viewer@example.com", "viewer").await;
    let probe = connect_probe_at(&base, &token, "probe-1").await;
    let answering = answering_probe(probe);
    post_container_report(&base, &token).await;

    let (browser, details) = container_details(&base, &id).await;
    let restart = "#node-controls button[data-control='docker_restart_container']";
    let stop = "#node-controls button[data-control='docker_stop_container']";
    browser.click_css(restart).await;
    browser
        .wait_for_text("#control-done", |t| t == "Restart: done.")
        .await;
    // Stop asks first: declined, nothing is sent.
    browser
        .execute("window.confirm = () => false;", vec![])
        .await;
    browser.click_css(stop).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(browser.find("#control-error").await.is_none());
    assert!(browser.find("#control-done").await.is_some());
    // Accepted: the probe's error is shown.
    browser
        .execute("window.confirm = () => true;", vec![])
        .await;
    browser.click_css(stop).await;
    browser
        .wait_for_text("#control-error", |t| {
            t == "Stop failed: the engine refused to stop it"
        })
        .await;
    // The org admin turns controls off on the instance's page: the panel says so.
    browser.goto(&format!("{base}/instances/{id}")).await;
    browser.click_css("#allow-controls").await;
    browser
        .wait_for_text("#map-settings", |t| {
            t.contains("Controls (restart, stop, pause… a container) are off")
        })
        .await;
    browser.goto(&details).await;
    browser
        .wait_for_text("#controls-blocked", |t| {
            t.contains("turned off for this instance")
        })
        .await;
    // And on again.
    browser.goto(&format!("{base}/instances/{id}")).await;
    browser.click_css("#allow-controls").await;
    browser
        .wait_for_text("#map-settings", |t| {
            t.contains("Controls (restart, stop, pause… a container) are on")
        })
        .await;
    browser.click_css("#logout").await;
    browser.wait_for_url(|u| u.ends_with("/login")).await;

    // A viewer: the buttons are there, disabled, and the panel says why.
    crate::journey::log_in_at(&browser, &format!("{base}/login"), "viewer@example.com").await;
    browser.wait_for("#logout").await;
    browser.goto(&details).await;
    browser
        .wait_for_text("#details-label", |t| t == "web")
        .await;
    browser
        .wait_for_text("#controls-blocked", |t| t.contains("editor role"))
        .await;
    let disabled = browser
        .execute(
            "return document.querySelector(arguments[0]).disabled;",
            vec![json!(restart)],
        )
        .await;
    assert_eq!(disabled, json!(true));
    browser.quit().await;
    answering.abort();
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// Issue 17 end to end in the browser, with a real engine: from a container's details, "Exec
/// shell" opens a terminal where a typed command runs in the container and its output shows;
/// closing it ends the shell's command; "Logs" shows the container's output as it comes.
#[tokio::test]
async fn a_shell_and_logs_open_from_the_map_in_the_browser() {
    use crate::support::agent::{ADMIN, first_admin_at};
    let Some(dist) = crate::browser::prerequisites() else {
        return;
    };
    let Some(mut engine) = Engine::start() else {
        return;
    };
    let name = format!("scopehub-browser-{}", std::process::id());
    let container = engine.run(&name);
    let (server, _data) = crate::browser::serve_app(&dist, &[]).await;
    let base = server.url.clone();
    let (mut admin, me) = first_admin_at(&base).await;
    let org = me["orgs"][0]["id"].as_str().unwrap().to_owned();
    let (id, token) = admin.create_ready_instance(&org, "prod").await;
    allow_terminals(&mut admin, &id, true).await;
    let probe = tokio::spawn(scopehub::probe::publish(scopehub::probe::Options {
        url: base.parse().unwrap(),
        token,
        interval: Duration::from_millis(700),
        json: false,
        once: false,
        proc_root: "/proc".into(),
        docker_socket: engine.socket(),
        host_exec: false,
    }));

    let browser = crate::support::webdriver::Browser::start().await;
    crate::journey::log_in_at(&browser, &format!("{base}/login"), ADMIN).await;
    browser.wait_for("#logout").await;
    let node = format!("{container};<container>");
    let encoded = node
        .replace(';', "%3B")
        .replace('<', "%3C")
        .replace('>', "%3E");
    browser
        .goto(&format!(
            "{base}/instances/{id}/map?view=containers&node={encoded}"
        ))
        .await;
    browser.wait_for_text("#details-label", |t| t == name).await;
    browser
        .click_css("#node-controls button[data-control='docker_exec_container']")
        .await;
    browser.wait_for("#terminal .xterm-helper-textarea").await;
    // The shell's prompt, then a command typed into the terminal.
    browser
        .wait_for_text("#terminal .xterm-rows", |t| {
            t.contains('#') || t.contains('$')
        })
        .await;
    browser
        .type_into(
            "#terminal .xterm-helper-textarea",
            "echo hi-$((40+2)); exec /bin/busybox sleep 4343\u{E007}",
        )
        .await;
    browser
        .wait_for_text("#terminal .xterm-rows", |t| t.contains("hi-42"))
        .await;
    eventually(Duration::from_secs(5), "the typed command to run", || {
        let top = engine.podman(&["top", &name, "args"]);
        async move { top.contains("4343").then_some(()) }
    })
    .await;
    // Closing the terminal ends what it ran.
    browser.click_css("#terminal-close").await;
    eventually(
        Duration::from_secs(15),
        "the shell's command to end",
        || {
            let top = engine.podman(&["top", &name, "args"]);
            async move { (!top.contains("4343")).then_some(()) }
        },
    )
    .await;

    // Logs: what the container printed, and more as it prints.
    browser
        .click_css("#node-controls button[data-control='docker_logs_container']")
        .await;
    browser
        .wait_for_text("#terminal-title", |t| t == "Logs")
        .await;
    let ticks = |t: &str| t.matches("tick").count();
    let first = ticks(
        &browser
            .wait_for_text("#terminal .xterm-rows", |t| t.contains("tick"))
            .await,
    );
    browser
        .wait_for_text("#terminal .xterm-rows", |t| ticks(t) > first)
        .await;
    browser.quit().await;
    probe.abort();
    assert!(!server.stderr().contains("panicked"), "{}", server.stderr());
}

/// A terminal tells the probe its size when it opens, and again only once a new size has held
/// for a moment: a window dragged through many sizes sends one resize control, not one per step
/// (each is audited and counted in the user's allowance of controls).
#[tokio::test]
async fn a_terminal_tells_the_probe_the_size_it_settles_at() {
    let Some(Served {
        server,
        _data,
        mut admin,
        id,
        token,
        ..
    }) = served_instance().await
    else {
        return;
    };
    let base = server.url.clone();
    allow_terminals(&mut admin, &id, true).await;
    // The probe opens a pipe for the shell and says which control resizes it; every call's
    // request goes to the test.
    let (calls_tx, mut calls) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let mut socket = connect_probe_at(&base, &token, "probe-1").await;
    let probe = tokio::spawn(async move {
        loop {
            let (head, body) = next_call(&mut socket).await;
            let value = match body["Value"]["Control"].as_str() {
                Some("docker_exec_container") => json!({
                    "pipe": "pipe-1", "raw_tty": true,
                    "resize_tty_control": "docker_resize_exec_tty",
                }),
                _ => json!({}),
            };
            let _ = calls_tx.send(body["Value"].clone());
            reply(&mut socket, head["Request"]["Seq"].as_u64().unwrap(), value).await;
        }
    });
    post_container_report(&base, &token).await;
    let next = async |calls: &mut tokio::sync::mpsc::UnboundedReceiver<Value>| {
        tokio::time::timeout(Duration::from_secs(10), calls.recv())
            .await
            .expect("a call")
            .unwrap()
    };
    // The resize controls that come within `wait`: their arguments.
    let resizes_within = async |calls: &mut tokio::sync::mpsc::UnboundedReceiver<Value>,
                                wait: Duration| {
        let mut got = Vec::new();
        let until = tokio::time::Instant::now() + wait;
        while let Ok(Some(call)) = tokio::time::timeout_at(until, calls.recv()).await {
            assert_eq!(call["Control"], "docker_resize_exec_tty", "{call}");
            assert_eq!(call["ControlArgs"]["pipeID"], "pipe-1", "{call}");
            got.push(call["ControlArgs"].clone());
        }
        got
    };
    let width = |args: &Value| args["width"].as_str().unwrap().parse::<u32>().unwrap();
    // Sets the terminal's width to each of `narrower` pixels less than it opened with, one
    // after another, each as a window resize: all in one go, as a dragged window does.
    let resize_script = |narrower: &[u32]| {
        format!(
            "const screen = document.querySelector('#terminal .terminal-screen');
             window.openedWidth ??= screen.getBoundingClientRect().width;
             for (const less of {narrower:?}) {{
                 screen.style.width = (window.openedWidth - less) + 'px';
                 window.dispatchEvent(new Event('resize'));
             }}"
        )
    };

    let (browser, _) = container_details(&base, &id).await;
    browser
        .click_css("#node-controls button[data-control='docker_exec_container']")
        .await;
    assert_eq!(next(&mut calls).await["Control"], "docker_exec_container");
    browser.wait_for("#terminal .terminal-screen .xterm").await;
    // The size it opened with, at once, and nothing more while it keeps it.
    let opened = next(&mut calls).await;
    assert_eq!(opened["Control"], "docker_resize_exec_tty", "{opened}");
    assert_eq!(opened["ControlArgs"]["pipeID"], "pipe-1");
    assert!(
        resizes_within(&mut calls, Duration::from_millis(600))
            .await
            .is_empty()
    );
    // Five narrower sizes in a row: one resize, with the last (the narrowest).
    browser
        .execute(&resize_script(&[30, 60, 90, 120, 150]), vec![])
        .await;
    let settled = resizes_within(&mut calls, Duration::from_secs(2)).await;
    assert_eq!(settled.len(), 1, "one resize for five sizes: {settled:?}");
    assert!(
        width(&settled[0]) < width(&opened["ControlArgs"]),
        "{settled:?} {opened}"
    );
    // The first of the five, alone: wider than what was sent, so what was sent was the last.
    browser.execute(&resize_script(&[30]), vec![]).await;
    let first = resizes_within(&mut calls, Duration::from_secs(2)).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        width(&first[0]) > width(&settled[0]),
        "{first:?} {settled:?}"
    );
    browser.quit().await;
    probe.abort();
}

/// Whether a process whose command line holds `marker` runs on this machine.
fn running(marker: &str) -> bool {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .any(|cmdline| String::from_utf8_lossy(&cmdline).contains(marker))
}

/// `scopehub probe --host-exec`: the host's node offers "Open shell"; with terminals on, it opens a
/// shell on the host where a typed command runs; closing it kills the shell. Without the flag the
/// probe refuses.
#[tokio::test]
async fn a_probe_with_host_exec_opens_a_shell_on_its_host() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (mut admin, _, id, token) = tenant(&app).await;
    allow_terminals(&mut admin, &id, true).await;
    let dir = tempfile::tempdir().unwrap();
    let probe = tokio::spawn(scopehub::probe::publish(scopehub::probe::Options {
        url: app.url.parse().unwrap(),
        token,
        interval: Duration::from_millis(500),
        json: false,
        once: false,
        proc_root: "/proc".into(),
        docker_socket: dir.path().join("no-engine.sock"),
        host_exec: true,
    }));
    // The host's node, offering the shell through this probe.
    let (host, probe_id) = eventually(Duration::from_secs(20), "the host offering a shell", || {
        let mut admin = admin.clone();
        let id = id.clone();
        async move {
            let (_, view) = admin
                .get(&format!("/api/app/{id}/api/topology/hosts"))
                .await;
            let host = view["nodes"].as_object()?.keys().next()?.clone();
            let encoded = host
                .replace(';', "%3B")
                .replace('<', "%3C")
                .replace('>', "%3E");
            let (_, details) = admin
                .get(&format!("/api/app/{id}/api/topology/hosts/{encoded}"))
                .await;
            let control = details["node"]["controls"]
                .as_array()?
                .iter()
                .find(|c| c["id"] == "host_exec")?
                .clone();
            Some((host, control["probeId"].as_str()?.to_owned()))
        }
    })
    .await;
    let open = control_path(&id, &probe_id, &host, "host_exec");
    let opened = post_until(&admin, &open, 200, "the shell to open").await;
    assert_eq!(opened["raw_tty"], true, "{opened}");
    assert_eq!(
        opened["resize_tty_control"], "host_resize_exec_tty",
        "{opened}"
    );
    let pipe = opened["pipe"].as_str().unwrap();
    let mut terminal = browser_pipe_end(&app.addr, &admin, &id, pipe).await;
    let resize = control_path(&id, &probe_id, &host, "host_resize_exec_tty");
    let (status, body) = admin
        .post(
            &resize,
            json!({"pipeID": pipe, "height": "30", "width": "100"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let marker = format!("{}", 40000 + std::process::id() % 10000);
    terminal
        .send(Message::Binary(
            format!("echo host-$((6*7)); stty size; exec sleep {marker}\n")
                .into_bytes()
                .into(),
        ))
        .await
        .unwrap();
    let mut printed = String::new();
    read_until(&mut terminal, &mut printed, "host-42").await;
    read_until(&mut terminal, &mut printed, "30 100").await;
    eventually(Duration::from_secs(5), "the shell's command to run", || {
        let marker = marker.clone();
        async move { running(&format!("sleep{}{marker}", '\0')).then_some(()) }
    })
    .await;
    // Closed: the shell is killed.
    drop(terminal);
    eventually(Duration::from_secs(10), "the shell to end", || {
        let marker = marker.clone();
        async move { (!running(&format!("sleep{}{marker}", '\0'))).then_some(()) }
    })
    .await;
    probe.abort();
}
