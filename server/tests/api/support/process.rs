//! The real `scopehub` binary as a child process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback port that was free a moment ago.
/// A loopback port that is free now, for a process to listen on later. Taken below Linux's
/// ephemeral range (32768 and up): a port the kernel handed out for `bind(0)` and released
/// could be handed to a client connection of another test before the process binds it.
pub fn free_port() -> u16 {
    use rand::Rng;
    // Ports handed out already in this test process: free when checked is not enough when tests
    // run in parallel — two could be handed the same one before either binds it (a split role then
    // reached another test's process).
    static GIVEN: std::sync::Mutex<Option<std::collections::HashSet<u16>>> =
        std::sync::Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(Default::default);
    let mut rng = rand::rng();
    for _ in 0..1000 {
        let port = rng.random_range(20_000..32_000);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port between 20000 and 32000")
}

pub fn binary() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_scopehub"));
    // Never pick up a developer's configuration.
    for (key, _) in std::env::vars() {
        if key.starts_with("SCOPEHUB_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// `scopehub serve` on a random loopback port, killed when dropped.
pub struct ServerProcess {
    child: Child,
    pub url: String,
    stderr: Arc<Mutex<String>>,
    /// The history folder it was given unless its arguments chose one, removed when dropped.
    history: std::path::PathBuf,
}

impl ServerProcess {
    /// Starts `scopehub serve --listen 127.0.0.1:0 ARGS…` and waits for the line announcing its URL.
    pub fn serve(args: &[&str]) -> ServerProcess {
        Self::start("serve", args)
    }

    /// Starts `scopehub ROLE --listen 127.0.0.1:0 ARGS…` and waits for the line announcing its URL.
    pub fn start(role: &str, args: &[&str]) -> ServerProcess {
        Self::start_on(role, "127.0.0.1:0", args)
    }

    /// Starts `scopehub ROLE --listen LISTEN ARGS…` (a fixed port survives a restart).
    pub fn start_on(role: &str, listen: &str, args: &[&str]) -> ServerProcess {
        Self::start_with_env(role, listen, args, &[])
    }

    /// `start_on` with these environment variables set too. Its history goes to a folder of its
    /// own (removed when it is dropped) unless `--history-url` or the environment says otherwise.
    pub fn start_with_env(
        role: &str,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> ServerProcess {
        static STARTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let history = std::env::temp_dir().join(format!(
            "scopehub-test-history-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let mut child = binary()
            .env("SCOPEHUB_HISTORY_URL", &history)
            .envs(env.iter().copied())
            .args([role, "--listen", listen, "--log-format", "json"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn scopehub");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        let out = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(out).lines();
        let url = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("Scopehub is running at ") {
                        break url.trim_end_matches('/').to_owned();
                    }
                }
                _ => panic!(
                    "scopehub serve exited before announcing its URL; stderr:\n{}",
                    stderr.lock().unwrap()
                ),
            }
        };
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        ServerProcess {
            child,
            url,
            stderr,
            history,
        }
    }

    /// Waits until `/readyz` answers 200 (migrations applied).
    pub async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("{}/readyz", self.url);
        super::eventually(Duration::from_secs(30), "the server to be ready", || {
            let (client, url) = (client.clone(), url.clone());
            async move { (client.get(url).send().await.ok()?.status() == 200).then_some(()) }
        })
        .await;
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    pub fn signal(&self, signal: i32) {
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                panic!(
                    "scopehub did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.history);
    }
}

/// A child process killed when dropped (also when a test fails half-way).
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.stop();
    }
}
