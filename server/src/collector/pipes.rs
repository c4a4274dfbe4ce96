//! Pipes: a terminal or a log stream between a user's browser and a probe (Scope's `app/pipes.go`).
//! A control that opens one (exec, attach, logs) answers a pipe id; the browser then opens
//! `/api/app/{instance}/api/pipe/{id}` and the probe `/api/pipe/{id}/probe`, both websockets, and
//! the collector holding the instance copies binary frames between them.
//!
//! Unlike Scope's app, a pipe exists only once its probe's reply announced it, in the instance the
//! control was for, and only the user who opened it may join its browser end. Each direction is a
//! bounded queue, so a slow reader slows its writer down rather than fill memory. A pipe closes
//! when either end goes; one whose ends have not both joined within [`JOIN_WITHIN`] is collected.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use tokio::sync::mpsc;

/// Frames queued in each direction at most.
const QUEUED_FRAMES: usize = 64;
/// Pipes open at once per instance at most.
pub const MAX_PIPES: usize = 16;
/// How long a pipe waits for both its ends.
pub const JOIN_WITHIN: Duration = Duration::from_secs(60);

/// A pipe id as probes make them (Scope's are random hex): short, letters, digits, `-`, `_`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Which end of a pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    Browser,
    Probe,
}

/// One end's share of a pipe: what it sends into, and what it reads from.
pub struct EndIo {
    pub send: mpsc::Sender<Vec<u8>>,
    pub receive: mpsc::Receiver<Vec<u8>>,
}

/// A pipe announced by a probe, until its ends take their shares.
pub struct Pipe {
    /// The probe that announced it, and the user whose control opened it.
    pub probe: String,
    pub user_id: String,
    pub user_email: String,
    pub control: String,
    pub node: String,
    pub opened_at_ms: i64,
    browser: Option<EndIo>,
    probe_end: Option<EndIo>,
}

impl Pipe {
    pub fn new(
        probe: String,
        user_id: String,
        user_email: String,
        control: String,
        node: String,
        opened_at_ms: i64,
    ) -> Pipe {
        let (to_probe, from_browser) = mpsc::channel(QUEUED_FRAMES);
        let (to_browser, from_probe) = mpsc::channel(QUEUED_FRAMES);
        Pipe {
            probe,
            user_id,
            user_email,
            control,
            node,
            opened_at_ms,
            browser: Some(EndIo {
                send: to_probe,
                receive: from_probe,
            }),
            probe_end: Some(EndIo {
                send: to_browser,
                receive: from_browser,
            }),
        }
    }

    /// Takes `end`'s share; `None` when that end has joined already (one connection per end).
    pub fn take(&mut self, end: End) -> Option<EndIo> {
        match end {
            End::Browser => self.browser.take(),
            End::Probe => self.probe_end.take(),
        }
    }

    /// Both ends have joined.
    pub fn joined(&self) -> bool {
        self.browser.is_none() && self.probe_end.is_none()
    }
}

/// An instance's pipes, by id.
#[derive(Default)]
pub struct Pipes {
    open: HashMap<String, Pipe>,
}

impl Pipes {
    /// Keeps a newly announced pipe; refused beyond [`MAX_PIPES`] or for an id in use.
    pub fn add(&mut self, id: &str, pipe: Pipe) -> Result<(), &'static str> {
        if self.open.contains_key(id) {
            return Err("the probe announced a pipe id already in use");
        }
        if self.open.len() >= MAX_PIPES {
            return Err("too many terminals and log streams are open on this instance");
        }
        self.open.insert(id.to_owned(), pipe);
        Ok(())
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Pipe> {
        self.open.get_mut(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.open.contains_key(id)
    }

    /// Forgets the pipe: ends not yet joined will find nothing, joined ones see their queues close.
    pub fn remove(&mut self, id: &str) -> Option<Pipe> {
        self.open.remove(id)
    }

    /// Removes `id` if its ends have not both joined (the join deadline passed).
    pub fn collect_unjoined(&mut self, id: &str) -> Option<Pipe> {
        if self.open.get(id).is_some_and(|p| !p.joined()) {
            return self.open.remove(id);
        }
        None
    }
}

/// Bytes that went each way through one end.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// From this end's websocket into the pipe, and from the pipe out to it.
    pub sent: u64,
    pub received: u64,
}

/// Copies between one end's websocket and the pipe until either side ends: binary (and text)
/// frames from the socket go into the pipe, what comes out of the pipe goes to the socket as
/// binary frames. Closes the socket when the other end went.
pub async fn copy(mut socket: WebSocket, mut io: EndIo, drain: crate::ops::Drain) -> Copied {
    let mut copied = Copied::default();
    let closing = drain.streams_closing();
    tokio::pin!(closing);
    let mut ping = tokio::time::interval(super::CONTROL_PING);
    ping.tick().await;
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
            frame = io.receive.recv() => match frame {
                Some(bytes) => {
                    copied.received += bytes.len() as u64;
                    if socket.send(Message::Binary(bytes.into())).await.is_err() {
                        break;
                    }
                }
                // The other end went: this one is told so.
                None => {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            },
            message = socket.recv() => {
                let bytes = match message {
                    Some(Ok(Message::Binary(b))) => b.to_vec(),
                    Some(Ok(Message::Text(t))) => t.as_str().as_bytes().to_vec(),
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                copied.sent += bytes.len() as u64;
                // Waits while the other end is slow: backpressure, not memory.
                if io.send.send(bytes).await.is_err() {
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
            }
        }
    }
    copied
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe() -> Pipe {
        Pipe::new(
            "p".into(),
            "u".into(),
            "u@example.com".into(),
            "docker_exec_container".into(),
            "n".into(),
            0,
        )
    }

    #[tokio::test]
    async fn each_end_joins_once_and_what_one_sends_the_other_reads() {
        let mut p = pipe();
        let mut browser = p.take(End::Browser).unwrap();
        assert!(p.take(End::Browser).is_none(), "one connection per end");
        assert!(!p.joined());
        let mut probe = p.take(End::Probe).unwrap();
        assert!(p.joined());
        browser.send.send(b"ls\n".to_vec()).await.unwrap();
        assert_eq!(probe.receive.recv().await.unwrap(), b"ls\n");
        probe.send.send(b"bin\n".to_vec()).await.unwrap();
        assert_eq!(browser.receive.recv().await.unwrap(), b"bin\n");
        // The probe's end goes: the browser's queue closes.
        drop(probe);
        assert!(browser.receive.recv().await.is_none());
        assert!(browser.send.send(b"x".to_vec()).await.is_err());
    }

    #[test]
    fn an_instance_holds_a_bounded_number_of_pipes_and_collects_unjoined_ones() {
        let mut pipes = Pipes::default();
        for i in 0..MAX_PIPES {
            pipes.add(&format!("p{i}"), pipe()).unwrap();
        }
        assert!(pipes.add("one-more", pipe()).is_err());
        assert!(pipes.add("p0", pipe()).is_err());
        // p1 has both ends joined: not collected.
        let p1 = pipes.get_mut("p1").unwrap();
        let _b = p1.take(End::Browser);
        let _p = p1.take(End::Probe);
        assert!(pipes.collect_unjoined("p1").is_none());
        assert!(pipes.collect_unjoined("p0").is_some());
        assert!(!pipes.contains("p0"));
        pipes.add("one-more", pipe()).unwrap();
    }
}
