//! A real SMTP server for tests: aiosmtpd (PyPI) on a random loopback port, storing what it
//! receives in a Maildir. Skipped with a warning when aiosmtpd is not installed, unless
//! `REQUIRE_SMTP=1`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::required;

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    maildir: tempfile::TempDir,
}

impl SmtpServer {
    pub fn start() -> Option<SmtpServer> {
        let available = Command::new("python3")
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !available {
            if required("REQUIRE_SMTP") {
                panic!(
                    "REQUIRE_SMTP=1 but aiosmtpd is not installed (python3 -m pip install aiosmtpd)"
                );
            }
            super::warn(
                "WARNING: aiosmtpd not installed; skipping the SMTP test (python3 -m pip install aiosmtpd)",
            );
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = tempfile::tempdir().unwrap();
        let child = Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir.path().join("mail"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "aiosmtpd did not start listening"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(SmtpServer {
            child,
            port,
            maildir,
        })
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message received so far, raw (headers and body), decoded from quoted-printable.
    pub fn messages(&self) -> Vec<String> {
        let dir: PathBuf = self.maildir.path().join("mail").join("new");
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .map(|raw| {
                raw.replace("=\r\n", "")
                    .replace("=\n", "")
                    .replace("=3D", "=")
            })
            .collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
