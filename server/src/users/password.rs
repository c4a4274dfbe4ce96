//! Password hashing with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane — OWASP's
//! minimum). Hashing runs on the blocking pool so it never stalls the async workers, and at most
//! [`CONCURRENT_HASHES`] at a time in the whole process ([`Passwords`]): each takes 19 MiB, so
//! thirty-two concurrent requests that hash once added 600 MB; now they wait their turn.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// Hashes (or checks) at once, per process.
pub const CONCURRENT_HASHES: usize = 4;

/// The process's password hasher: a bound on concurrent hashing shared by every request.
#[derive(Clone)]
pub struct Passwords {
    permits: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    most_running: Arc<AtomicUsize>,
    hashes: prometheus_client::metrics::counter::Counter,
}

impl Default for Passwords {
    fn default() -> Self {
        Passwords::new(CONCURRENT_HASHES)
    }
}

impl Passwords {
    pub fn new(concurrent: usize) -> Self {
        Passwords {
            permits: Arc::new(Semaphore::new(concurrent.max(1))),
            running: Arc::default(),
            most_running: Arc::default(),
            hashes: Default::default(),
        }
    }

    /// The same, counting each hash on `counter` (the process's metrics).
    pub fn counting(self, counter: prometheus_client::metrics::counter::Counter) -> Self {
        Passwords {
            hashes: counter,
            ..self
        }
    }

    /// The most hashes that ever ran at once.
    pub fn most_running(&self) -> usize {
        self.most_running.load(Ordering::Relaxed)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        let running = self.running.clone();
        let most = self.most_running.clone();
        self.hashes.inc();
        let now = running.fetch_add(1, Ordering::Relaxed) + 1;
        most.fetch_max(now, Ordering::Relaxed);
        let result = tokio::task::spawn_blocking(f).await;
        running.fetch_sub(1, Ordering::Relaxed);
        Ok(result?)
    }

    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let password = password.to_owned();
        self.run(move || hash_now(&password)).await?
    }

    /// Checks a password against a stored hash; see [`verify_now`].
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> bool {
        let password = password.to_owned();
        let stored = stored.map(str::to_owned);
        self.run(move || verify_now(&password, stored.as_deref()))
            .await
            .unwrap_or(false)
    }
}

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

fn hash_now(password: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

/// With no hash (unknown account) it checks against a fixed dummy hash, so the answer takes as
/// long as for a real account and reveals nothing.
fn verify_now(password: &str, stored: Option<&str>) -> bool {
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (dummy_hash(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let ok = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    ok && real
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(b"not a real password", &salt)
            .map(|h| h.to_string())
            .unwrap_or_default()
    })
}

#[cfg(test)]
mod tests {
    use super::Passwords;

    #[tokio::test]
    async fn hashes_verify_and_unknown_accounts_never_do() {
        let passwords = Passwords::default();
        let h = passwords.hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(passwords.verify("correct horse battery", Some(&h)).await);
        assert!(!passwords.verify("wrong horse battery", Some(&h)).await);
        assert!(!passwords.verify("not a real password", None).await);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn no_more_hashes_run_at_once_than_the_bound() {
        let passwords = Passwords::new(2);
        let mut tasks = Vec::new();
        for n in 0..8 {
            let passwords = passwords.clone();
            tasks.push(tokio::spawn(async move {
                passwords.hash(&format!("password number {n}")).await
            }));
        }
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        assert_eq!(passwords.most_running(), 2);
    }
}
