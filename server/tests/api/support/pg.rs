//! A throwaway PostgreSQL server for this test process: `initdb` + `postgres` from
//! `/usr/lib/postgresql/*/bin`, on a random loopback port, in a temp dir. As root (CI) it runs as
//! the `postgres` user. It dies with the test process (parent-death signal), and each test gets its
//! own database in it.

use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use scopehub::config::DatabaseUrl;
use sqlx::Connection;

use super::required;

pub struct PgServer {
    port: u16,
}

static SERVER: OnceLock<Option<PgServer>> = OnceLock::new();

/// The shared server, started on first use. `None` (with a printed warning) when PostgreSQL is not
/// installed, unless `REQUIRE_POSTGRES=1`, which turns that into a failure.
pub fn server() -> Option<&'static PgServer> {
    SERVER
        .get_or_init(|| match find_bin_dir() {
            Some(bin) => Some(start(&bin).unwrap_or_else(|e| panic!("cannot start the test PostgreSQL: {e}"))),
            None if required("REQUIRE_POSTGRES") => {
                panic!("REQUIRE_POSTGRES=1 but no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
            }
            None => {
                crate::support::warn("WARNING: PostgreSQL not installed; skipping the PostgreSQL variant of the tests");
                None
            }
        })
        .as_ref()
}

impl PgServer {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A URL for a database that does not exist (yet).
    pub fn unique_database_name(&self) -> String {
        format!("t_{}", scopehub::secrets::random_hex(8))
    }

    /// Creates a fresh empty database and returns its URL.
    pub async fn create_database(&self) -> DatabaseUrl {
        let name = self.unique_database_name();
        self.create_named_database(&name).await;
        self.url(&name).parse().expect("valid URL")
    }

    pub async fn create_named_database(&self, name: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url("postgres"))
            .await
            .expect("connect to test PostgreSQL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        conn.close().await.ok();
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn postgres_user_ids() -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, "postgres"]).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

/// An initialised data directory with its port, not running yet.
struct Cluster {
    dir: PathBuf,
    data: PathBuf,
    port: u16,
    ids: Option<(u32, u32)>,
}

impl Cluster {
    /// `initdb` into `<tmp>/scopehub-test-pg-<pid><suffix>`.
    fn init(bin: &Path, suffix: &str) -> Result<Cluster, String> {
        let dir =
            std::env::temp_dir().join(format!("scopehub-test-pg-{}{suffix}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // PostgreSQL refuses to run as root: then run it as the `postgres` user.
        let ids = if unsafe { libc::geteuid() } == 0 {
            let ids =
                postgres_user_ids().ok_or("running as root and there is no `postgres` user")?;
            chown(&dir, Some(ids.0), Some(ids.1)).map_err(|e| e.to_string())?;
            Some(ids)
        } else {
            None
        };
        let cluster = Cluster {
            data: dir.join("data"),
            dir,
            port: super::process::free_port(),
            ids,
        };
        let mut initdb = Command::new(bin.join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(&cluster.data);
        cluster.as_user(&mut initdb);
        let out = initdb.output().map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(cluster)
    }

    fn as_user(&self, cmd: &mut Command) {
        cmd.current_dir(&self.dir);
        if let Some((uid, gid)) = self.ids {
            cmd.uid(uid).gid(gid);
        }
    }

    /// The `postgres` command that serves this cluster.
    fn postgres(&self, bin: &Path) -> Result<Command, String> {
        let mut postgres = Command::new(bin.join("postgres"));
        postgres
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.dir.join("server.log"))
                    .map_err(|e| e.to_string())?,
            ));
        self.as_user(&mut postgres);
        Ok(postgres)
    }

    fn wait_listening(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
                return Err(format!(
                    "PostgreSQL did not start listening on port {}: {log}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }
}

fn start(bin: &Path) -> Result<PgServer, String> {
    remove_stale_dirs();
    let cluster = Cluster::init(bin, "")?;
    let mut postgres = cluster.postgres(bin)?;
    // The parent-death signal fires when the spawning *thread* exits, so spawn from a thread that
    // lives as long as the process.
    unsafe {
        postgres.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let result = postgres
            .spawn()
            .map(|_child| ())
            .map_err(|e| format!("postgres: {e}"));
        let _ = tx.send(result);
        loop {
            std::thread::park();
        }
    });
    rx.recv().map_err(|e| e.to_string())??;
    cluster.wait_listening()?;
    Ok(PgServer { port: cluster.port })
}

/// A PostgreSQL server of one test's own, which it may stop and start again (fault tests). Killed
/// when dropped.
pub struct DedicatedPg {
    bin: PathBuf,
    cluster: Cluster,
    child: Option<std::process::Child>,
}

impl DedicatedPg {
    /// `None` when PostgreSQL is not installed (a failure with `REQUIRE_POSTGRES=1`).
    pub fn start() -> Option<DedicatedPg> {
        let bin = match find_bin_dir() {
            Some(bin) => bin,
            None if required("REQUIRE_POSTGRES") => {
                panic!(
                    "REQUIRE_POSTGRES=1 but no PostgreSQL binaries under /usr/lib/postgresql/*/bin"
                )
            }
            None => return None,
        };
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let cluster = Cluster::init(&bin, &format!("-dedicated-{n}")).expect("initdb");
        let mut pg = DedicatedPg {
            bin,
            cluster,
            child: None,
        };
        pg.resume();
        Some(pg)
    }

    /// A URL of database `postgres` on it.
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres",
            self.cluster.port
        )
    }

    /// Stops the server at once (SIGQUIT: no shutdown checkpoint, like a crash or a lost host).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGQUIT);
            }
            let _ = child.wait();
        }
        // Its connections are gone with it; make sure nothing listens any more.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", self.cluster.port)).is_ok() {
            assert!(Instant::now() < deadline, "PostgreSQL still listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port and data.
    pub fn resume(&mut self) {
        let mut postgres = self.cluster.postgres(&self.bin).expect("postgres command");
        self.child = Some(postgres.spawn().expect("spawn postgres"));
        self.cluster.wait_listening().expect("PostgreSQL listening");
    }
}

impl Drop for DedicatedPg {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe {
                libc::kill(child.id() as i32, libc::SIGQUIT);
            }
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.cluster.dir);
    }
}

/// Earlier test processes cannot clean up after themselves (they are gone when their server is):
/// remove their folders when that process no longer exists.
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("scopehub-test-pg-"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
