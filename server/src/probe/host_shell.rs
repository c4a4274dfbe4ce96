//! A shell on the probe's host, behind `scopehub probe --host-exec` (off by default: it is the
//! probe's user on the host, root as Scope's probe runs). Scope's `host_exec` control on the host's
//! node opens it on a pseudo-terminal (`portable-pty`); `host_resize_exec_tty` resizes it; closing
//! the pipe kills it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::io::AsyncReadExt;

use super::docker::{Session, SessionHandle};
use crate::collector::report::{LatestEntry, Report, Time};

/// Scope's host controls (`probe/host/controls.go`).
pub const HOST_EXEC: &str = "host_exec";
pub const HOST_RESIZE: &str = "host_resize_exec_tty";

/// The shell: the host's `/bin/sh`, as a login shell would start it.
const SHELL: &str = "/bin/sh";

/// A host shell's terminal: resized through the master; the shell killed when it closes.
pub struct Pty {
    master: Arc<Mutex<Box<dyn MasterPty + Send>>>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Pty {
    /// Ends the shell (and so what it runs in the foreground, which the terminal's hang-up ends).
    pub fn end(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A handle for resizing only, kept by the probe while the pipe is open.
    pub fn resizer(&self) -> Resizer {
        Resizer(self.master.clone())
    }
}

/// Resizes a host shell's terminal.
#[derive(Clone)]
pub struct Resizer(Arc<Mutex<Box<dyn MasterPty + Send>>>);

impl Resizer {
    pub fn resize(&self, rows: u16, cols: u16) -> anyhow::Result<()> {
        self.0
            .lock()
            .map_err(|_| anyhow::anyhow!("the terminal's lock failed"))?
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .context("resizing the terminal")
    }
}

/// Starts a shell on a new pseudo-terminal. Its output and input are shuttled by two threads
/// (the pty's reader and writer block) to and from the async side.
pub fn open() -> anyhow::Result<Session> {
    let pair = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .context("opening a pseudo-terminal")?;
    let mut command = CommandBuilder::new(SHELL);
    command.env("TERM", "xterm");
    if let Ok(home) = std::env::var("HOME") {
        command.cwd(home);
    }
    let child = pair
        .slave
        .spawn_command(command)
        .context("starting the host's shell")?;
    drop(pair.slave);
    let mut reader = pair
        .master
        .try_clone_reader()
        .context("the terminal's output")?;
    let mut writer = pair.master.take_writer().context("the terminal's input")?;

    // Output: the reader thread sends what the shell prints; it ends when the shell does.
    let (printed, output) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if printed.blocking_send(buffer[..n].to_vec()).is_err() {
                        return;
                    }
                }
            }
        }
    });
    let output = futures_util::stream::unfold(output, |mut output| async move {
        output.recv().await.map(|bytes| (Ok(bytes), output))
    });

    // Input: what the user types, through an in-memory pipe to the writer thread.
    let (typed, mut to_shell) = tokio::io::duplex(64 * 1024);
    let runtime = tokio::runtime::Handle::current();
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 16 * 1024];
        loop {
            let n = match runtime.block_on(to_shell.read(&mut buffer)) {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if writer.write_all(&buffer[..n]).is_err() || writer.flush().is_err() {
                return;
            }
        }
    });
    Ok(Session {
        output: Box::pin(output),
        input: Some(Box::pin(typed)),
        tty: true,
        handle: SessionHandle::Pty(Pty {
            master: Arc::new(Mutex::new(pair.master)),
            child,
        }),
    })
}

/// Announces the host shell on the host's node: its control, offered by this probe.
pub fn announce(report: &mut Report, host_id: &str, probe_id: &str, now: Time) {
    let Some(host) = report.topologies.get_mut("Host") else {
        return;
    };
    host.controls.insert(
        HOST_EXEC.to_owned(),
        serde_json::json!({"id": HOST_EXEC, "human": "Open shell", "icon": "fa fa-terminal", "rank": 0}),
    );
    if let Some(node) = host.nodes.get_mut(host_id) {
        node.latest_mut()
            .insert("control_probe_id", LatestEntry::new(probe_id, now));
        node.latest_mut()
            .insert("active_controls", LatestEntry::new(HOST_EXEC, now));
    }
}
