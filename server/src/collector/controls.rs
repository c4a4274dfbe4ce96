//! Controls: a user's action on a node (restart a container…) carried to the probe that reported
//! it, over that probe's control websocket, as Scope's JSON-RPC (`../shared/scope-protocol.md`,
//! "Controls RPC"): the app is the RPC client, the probe the server, and each message is two JSON
//! text frames — a header (`{"Request":{"ServiceMethod":"control.Handle","Seq":N}}`, answered by
//! `{"Response":{"ServiceMethod",…,"Seq":N,"Error":""}}`) and a body (`{"Value":{…}}`).
//!
//! Each connected probe has a [`ProbeLink`] in its instance's slot: a bounded queue into the task
//! that owns the websocket. A call waits for its reply at most the collector's control timeout;
//! a probe that does not answer costs its callers a 504, nobody else anything.

use std::collections::{BTreeMap, HashMap};

use axum::extract::ws::{Message, WebSocket};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// One control as the audit log keeps it: who asked for what, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRecord {
    pub user_id: String,
    pub user_email: String,
    pub ip: Option<String>,
    pub org: String,
    pub instance: String,
    pub probe: String,
    pub node: String,
    pub control: String,
    /// `done`, `removed`, or why not: `refused: …`, `failed: …`, `timed out`.
    pub outcome: String,
}

/// A terminal or log stream that ended: who had it open, how long, how many bytes each way (never
/// what they were).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminalRecord {
    pub user_id: String,
    pub user_email: String,
    pub org: String,
    pub instance: String,
    pub probe: String,
    pub node: String,
    pub control: String,
    pub pipe: String,
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
    /// Bytes the user sent (keystrokes), and bytes they received.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Where controls and terminal sessions are audited (the users role's audit log, wired by the
/// composition root).
pub trait ControlLog: Send + Sync {
    fn record(
        &self,
        record: ControlRecord,
    ) -> futures_util::future::BoxFuture<'_, crate::error::Result<()>>;
    fn record_terminal(
        &self,
        record: TerminalRecord,
    ) -> futures_util::future::BoxFuture<'_, crate::error::Result<()>>;
}

/// Controls that open a terminal (Scope's exec and attach, a host's shell): allowed only where the
/// instance's "allow terminals" setting is on.
pub const TERMINAL_CONTROLS: [&str; 3] = [
    "docker_exec_container",
    "docker_attach_container",
    "host_exec",
];

/// Calls queued for one probe at most, and replies awaited from it at once: beyond that the probe
/// is not keeping up, and new calls are refused at once.
const QUEUED_CALLS: usize = 8;
const AWAITED_REPLIES: usize = 16;

/// Controls one user may call on one instance: a burst of this many, then one per this many ms.
/// Every call is audited, so without it one member (or a leaked token with write scope) could
/// write audit rows as fast as the collector answers, refusals included.
pub const CONTROL_BURST: f64 = 20.0;
pub const CONTROL_REFILL_MS: f64 = 1000.0;
/// Users whose allowance an instance remembers at most; beyond it, those back to a full burst
/// (whom forgetting changes nothing for) are let go, then the one nearest to it.
const CONTROL_USERS_KEPT: usize = 1024;

/// Whether a user's control may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allowance {
    Allowed,
    /// Over the user's allowance: retry after this many seconds. `first` is the first refusal
    /// since the user's last allowed call: it is audited; the rest of the streak is not, so the
    /// audit log grows at most about twice as fast as the allowance.
    Refused {
        first: bool,
        retry_after_secs: u64,
    },
}

/// Each user's allowance of controls on one instance (a token bucket), kept in its slot.
#[derive(Debug, Default)]
pub struct ControlAllowances {
    /// By user id: tokens left, when last counted (ms), and whether refusing.
    users: HashMap<String, (f64, i64, bool)>,
}

impl ControlAllowances {
    /// Takes one call of `user`'s allowance at `now_ms`, or says when to retry.
    pub fn take(&mut self, user: &str, now_ms: i64) -> Allowance {
        if !self.users.contains_key(user) && self.users.len() >= CONTROL_USERS_KEPT {
            self.make_room(now_ms);
        }
        let (tokens, at, refusing) =
            self.users
                .entry(user.to_owned())
                .or_insert((CONTROL_BURST, now_ms, false));
        *tokens = refilled(*tokens, *at, now_ms);
        *at = now_ms;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            *refusing = false;
            return Allowance::Allowed;
        }
        let first = !std::mem::replace(refusing, true);
        let wait_ms = (1.0 - *tokens) * CONTROL_REFILL_MS;
        Allowance::Refused {
            first,
            retry_after_secs: ((wait_ms / 1000.0).ceil() as u64).max(1),
        }
    }

    /// Lets go of the users back to a full burst, or else of the one nearest to it: never of one
    /// who spent theirs while others have more left.
    fn make_room(&mut self, now_ms: i64) {
        let left = |(tokens, at, _): &(f64, i64, bool)| refilled(*tokens, *at, now_ms);
        self.users.retain(|_, user| left(user) < CONTROL_BURST);
        if self.users.len() < CONTROL_USERS_KEPT {
            return;
        }
        let nearest_full = (self.users.iter())
            .max_by(|a, b| left(a.1).total_cmp(&left(b.1)))
            .map(|(user, _)| user.clone());
        if let Some(user) = nearest_full {
            self.users.remove(&user);
        }
    }
}

/// `tokens` counted at `at`, refilled until `now_ms` (a clock moved back refills nothing).
fn refilled(tokens: f64, at: i64, now_ms: i64) -> f64 {
    let elapsed = (now_ms - at).max(0) as f64;
    (tokens + elapsed / CONTROL_REFILL_MS).min(CONTROL_BURST)
}

/// What the user asks of a node: Scope's `xfer.Request` (the probe fills in `AppID`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlRequest {
    #[serde(rename = "AppID", default)]
    pub app_id: String,
    #[serde(rename = "NodeID")]
    pub node_id: String,
    #[serde(rename = "Control")]
    pub control: String,
    #[serde(rename = "ControlArgs", default)]
    pub args: BTreeMap<String, String>,
}

/// The probe's answer: Scope's `xfer.Response`, passed on as the probe sent it (bounded by the
/// websocket's message limit).
pub type ControlReply = serde_json::Map<String, Value>;

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The probe's control channel closed before it answered.
    Disconnected,
    /// Too many calls are waiting for this probe already.
    Busy,
    /// The probe answered with an RPC error (not a control's error, which is in the reply).
    Rpc(String),
}

pub struct Call {
    pub request: ControlRequest,
    pub reply: oneshot::Sender<Result<ControlReply, CallFailure>>,
}

/// The way into one probe's control channel, kept in its instance's slot.
#[derive(Clone)]
pub struct ProbeLink {
    /// Which connection of the probe this is (a reconnecting probe replaces its older link).
    pub connection: u64,
    calls: mpsc::Sender<Call>,
}

impl ProbeLink {
    /// Its connection ended (or never started).
    pub fn is_closed(&self) -> bool {
        self.calls.is_closed()
    }

    /// Queues `request` for the probe; the receiver resolves with its reply.
    pub fn call(
        &self,
        request: ControlRequest,
    ) -> Result<oneshot::Receiver<Result<ControlReply, CallFailure>>, CallFailure> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .try_send(Call { request, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => CallFailure::Busy,
                mpsc::error::TrySendError::Closed(_) => CallFailure::Disconnected,
            })?;
        Ok(answer)
    }
}

/// A link for a new connection, and the queue its websocket task serves.
pub fn link(connection: u64) -> (ProbeLink, mpsc::Receiver<Call>) {
    let (calls, queue) = mpsc::channel(QUEUED_CALLS);
    (ProbeLink { connection, calls }, queue)
}

/// Net/rpc's message envelope, as Scope's `xfer.Message` marshals it.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(rename = "Response", default)]
    response: Option<ResponseHeader>,
    #[serde(rename = "Value", default)]
    value: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ResponseHeader {
    #[serde(rename = "Seq", default)]
    seq: u64,
    #[serde(rename = "Error", default)]
    error: String,
}

/// The app's side of the RPC on one websocket: numbers calls, writes them, and matches replies.
#[derive(Default)]
pub struct RpcClient {
    seq: u64,
    awaiting: HashMap<u64, oneshot::Sender<Result<ControlReply, CallFailure>>>,
    /// The header of a reply whose body is the next frame.
    header: Option<ResponseHeader>,
}

impl RpcClient {
    /// The two frames of `call`, or `None` (and the caller told so) when too many replies are
    /// awaited already.
    pub fn send(&mut self, call: Call) -> Option<[Message; 2]> {
        // Callers who gave up (timed out) no longer wait.
        self.awaiting.retain(|_, reply| !reply.is_closed());
        if self.awaiting.len() >= AWAITED_REPLIES {
            let _ = call.reply.send(Err(CallFailure::Busy));
            return None;
        }
        self.seq += 1;
        let header = serde_json::json!({
            "Request": {"ServiceMethod": "control.Handle", "Seq": self.seq},
            "Response": null,
            "Value": null,
        });
        let body = serde_json::json!({"Request": null, "Response": null, "Value": call.request});
        self.awaiting.insert(self.seq, call.reply);
        Some([
            Message::Text(header.to_string().into()),
            Message::Text(body.to_string().into()),
        ])
    }

    /// Takes one text frame from the probe. `Err` when it is not the protocol: the connection
    /// should close.
    pub fn receive(&mut self, text: &str) -> Result<(), String> {
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|e| format!("not a control message: {e}"))?;
        match (self.header.take(), envelope.response) {
            (None, Some(header)) => {
                self.header = Some(header);
                Ok(())
            }
            (Some(header), None) => {
                let Some(reply) = self.awaiting.remove(&header.seq) else {
                    // The caller gave up; the answer is dropped.
                    return Ok(());
                };
                let answer = if !header.error.is_empty() {
                    Err(CallFailure::Rpc(header.error))
                } else {
                    match envelope.value {
                        Some(Value::Object(map)) => Ok(map),
                        Some(Value::Null) | None => Ok(ControlReply::new()),
                        Some(other) => Err(CallFailure::Rpc(format!(
                            "the probe answered {other} instead of a control reply"
                        ))),
                    }
                };
                let _ = reply.send(answer);
                Ok(())
            }
            (Some(_), Some(_)) => Err("a reply header came where its body was due".to_owned()),
            (None, None) => Err("a reply body came without its header".to_owned()),
        }
    }

    /// The connection ended: every caller still waiting is told.
    pub fn disconnected(&mut self) {
        for (_, reply) in self.awaiting.drain() {
            let _ = reply.send(Err(CallFailure::Disconnected));
        }
    }
}

/// Serves one probe's control websocket until it closes, the process drains, or the link is
/// replaced or dropped (its instance deleted): calls from `queue` go out, replies come back.
pub async fn serve(
    mut socket: WebSocket,
    mut queue: mpsc::Receiver<Call>,
    drain: crate::ops::Drain,
    ping_every: std::time::Duration,
) {
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;
    let closing = drain.streams_closing();
    tokio::pin!(closing);
    let mut rpc = RpcClient::default();
    loop {
        tokio::select! {
            () = &mut closing => {
                let _ = socket.send(super::api::going_away()).await;
                break;
            }
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            call = queue.recv() => {
                let Some(call) = call else { break };
                let Some(frames) = rpc.send(call) else { continue };
                let mut sent = true;
                for frame in frames {
                    if socket.send(frame).await.is_err() {
                        sent = false;
                        break;
                    }
                }
                if !sent {
                    break;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Err(why) = rpc.receive(text.as_str()) {
                        tracing::info!(%why, "closing a probe's control channel");
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                // Pings are answered by the websocket layer; pongs and binary frames are dropped.
                Some(Ok(_)) => {}
            },
        }
    }
    rpc.disconnected();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ControlRequest {
        ControlRequest {
            app_id: String::new(),
            node_id: "abc;<container>".into(),
            control: "docker_stop_container".into(),
            args: BTreeMap::new(),
        }
    }

    fn text(m: &Message) -> Value {
        match m {
            Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    /// A burst, then one call per refill; each user has their own; only a streak's first
    /// refusal is audited.
    #[test]
    fn each_user_has_an_allowance_of_controls() {
        let mut allowances = ControlAllowances::default();
        let burst = CONTROL_BURST as usize;
        for _ in 0..burst {
            assert_eq!(allowances.take("alice", 0), Allowance::Allowed);
        }
        let refused = |first| Allowance::Refused {
            first,
            retry_after_secs: 1,
        };
        assert_eq!(allowances.take("alice", 0), refused(true));
        assert_eq!(allowances.take("alice", 10), refused(false));
        assert_eq!(allowances.take("bob", 10), Allowance::Allowed, "bob's own");
        let refill = CONTROL_REFILL_MS as i64;
        assert_eq!(allowances.take("alice", refill), Allowance::Allowed);
        assert_eq!(
            allowances.take("alice", refill),
            refused(true),
            "a new streak"
        );
        // Idle long enough, a whole burst again, never more.
        let later = refill * (burst as i64 + 100);
        for _ in 0..burst {
            assert_eq!(allowances.take("alice", later), Allowance::Allowed);
        }
        assert_eq!(allowances.take("alice", later), refused(true));
        // A clock moved back refills nothing.
        assert_eq!(allowances.take("alice", 0), refused(false));
    }

    /// The users remembered are bounded; those back to a full burst go first, and a user in the
    /// middle of a streak keeps it while others come and go.
    #[test]
    fn allowances_remembered_are_bounded() {
        let mut allowances = ControlAllowances::default();
        for _ in 0..CONTROL_BURST as usize + 1 {
            allowances.take("flooding", 0);
        }
        // Users who come and go at the same time, each with a call, so none is back to a full
        // burst: the flooding user, furthest from it, stays remembered (and refused).
        for n in 0..CONTROL_USERS_KEPT * 3 {
            allowances.take(&format!("user-{n}"), 0);
            assert!(allowances.users.len() <= CONTROL_USERS_KEPT);
        }
        assert_eq!(
            allowances.take("flooding", 0),
            Allowance::Refused {
                first: false,
                retry_after_secs: 1
            }
        );
        // A refill later the others are back to a full burst: they are let go first.
        allowances.take("newcomer", CONTROL_REFILL_MS as i64);
        assert_eq!(
            allowances.users.len(),
            2,
            "the flooding user and the newcomer"
        );
    }

    #[tokio::test]
    async fn calls_go_out_as_scopes_two_frames_and_replies_find_their_caller() {
        let mut rpc = RpcClient::default();
        let (tx1, rx1) = oneshot::channel();
        let (tx2, rx2) = oneshot::channel();
        let first = rpc
            .send(Call {
                request: request(),
                reply: tx1,
            })
            .unwrap();
        assert_eq!(
            text(&first[0])["Request"],
            serde_json::json!({"ServiceMethod": "control.Handle", "Seq": 1})
        );
        assert_eq!(text(&first[1])["Value"]["Control"], "docker_stop_container");
        assert_eq!(text(&first[1])["Value"]["NodeID"], "abc;<container>");
        rpc.send(Call {
            request: request(),
            reply: tx2,
        })
        .unwrap();
        // Replies in the other order.
        rpc.receive(r#"{"Request":null,"Response":{"ServiceMethod":"control.Handle","Seq":2,"Error":""},"Value":null}"#)
            .unwrap();
        rpc.receive(
            r#"{"Request":null,"Response":null,"Value":{"removedNode":"abc;<container>"}}"#,
        )
        .unwrap();
        rpc.receive(r#"{"Response":{"Seq":1,"Error":"no such control"}}"#)
            .unwrap();
        rpc.receive(r#"{"Value":null}"#).unwrap();
        assert_eq!(
            rx2.await.unwrap().unwrap()["removedNode"],
            "abc;<container>"
        );
        assert_eq!(
            rx1.await.unwrap(),
            Err(CallFailure::Rpc("no such control".into()))
        );
        // Out of protocol: a body with no header.
        assert!(rpc.receive(r#"{"Value":{}}"#).is_err());
        assert!(rpc.receive("not json").is_err());
    }

    #[tokio::test]
    async fn a_probe_that_does_not_answer_gets_no_more_than_its_share_of_calls() {
        let mut rpc = RpcClient::default();
        let mut waiting = Vec::new();
        for _ in 0..AWAITED_REPLIES {
            let (tx, rx) = oneshot::channel();
            assert!(
                rpc.send(Call {
                    request: request(),
                    reply: tx
                })
                .is_some()
            );
            waiting.push(rx);
        }
        let (tx, rx) = oneshot::channel();
        assert!(
            rpc.send(Call {
                request: request(),
                reply: tx
            })
            .is_none()
        );
        assert_eq!(rx.await.unwrap(), Err(CallFailure::Busy));
        // Callers that gave up make room.
        waiting.truncate(2);
        let (tx, _rx) = oneshot::channel();
        assert!(
            rpc.send(Call {
                request: request(),
                reply: tx
            })
            .is_some()
        );
        rpc.disconnected();
        for rx in waiting {
            assert_eq!(rx.await.unwrap(), Err(CallFailure::Disconnected));
        }
    }
}
