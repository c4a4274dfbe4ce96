//! The edge's brief memory of what the users and provisioning roles answered: sessions, API
//! tokens, memberships, probe tokens and instance placements.
//!
//! Without it every API request costs the edge two to four lookups in other roles (a database
//! query each), and a read of the map queued behind fifty probes' token lookups (the p99 in
//! docs/benchmarks.md). How changes take effect (docs/frontend.md, "Identity cache"):
//! - every answer is kept for at most `ttl` (default 500 ms), so a logout, a revoked token or
//!   probe token, a suspension or a deleted instance done through *another* edge replica, or by
//!   the roles themselves, is seen within that time on every replica, with no channel between
//!   them to fail;
//! - a state-changing request this edge forwarded successfully to users or provisioning forgets
//!   at once what it may have changed, so on the replica (or the one process) that made the
//!   change it is immediate: the answers about the user who asked and about every user, org or
//!   instance its path names (an admin's change: everything) — not the other tenants' answers,
//!   which one tenant's changes (or anyone's sign-ups) would otherwise send back to the users
//!   role on every request;
//! - a lookup that was in flight while something it concerns was forgotten does not store its
//!   (possibly stale) answer.
//!
//! Only positive answers are kept: "no such session/token/instance" is always asked again, so a
//! credential or instance created a moment ago works at once. Keys are SHA-256 digests of
//! secrets, never the secrets themselves. Size is bounded: when full, the cache starts over.
//!
//! One lookup per key at a time: requests that miss while another request is asking for the same
//! key wait for that answer instead of asking too (an instance's probes share one token and report
//! together, fifty lookups of one token at once). If that lookup keeps nothing (an unknown
//! credential, a failure, a change meanwhile, or its request went away), each waiter asks on its
//! own, at once: a waiter is never queued behind more than one lookup.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use shared::users::Role;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::Result;
use crate::identity::Identity;
use crate::provisioning::directory::{InstanceDirectory, InstanceRoute};
use crate::secrets::sha256;
use crate::users::directory::{AdminOrg, Directory};

/// Entries kept at most; one per live credential, membership and instance in use.
const MAX_ENTRIES: usize = 100_000;
/// Forgettings remembered for the lookups in flight meanwhile; a lookup older than all of them
/// stores nothing.
const FORGETTINGS_KEPT: usize = 256;

/// What a change made through the edge may have changed, so what to forget of the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forget {
    Everything,
    /// Every answer about any of these users, orgs or instances (by id).
    Concerning(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Session([u8; 32]),
    ApiToken([u8; 32]),
    Member { org: String, user: String },
    ProbeToken([u8; 32]),
    Instance(String),
}

#[derive(Clone)]
enum Answer {
    Identity(Identity),
    Role(Role),
    Route(InstanceRoute),
}

/// The users, orgs and instances (by id) the answer kept under `key` is about: a credential's
/// user (and an API token's org), a membership's org and user, an instance and its org. A
/// forgetting of any of them forgets the answer.
fn about<'a>(key: &'a Key, answer: &'a Answer) -> impl Iterator<Item = &'a str> {
    let (key_ids, answer_ids): ([Option<&str>; 2], [Option<&str>; 2]) = (
        match key {
            Key::Member { org, user } => [Some(org), Some(user)],
            Key::Instance(id) => [Some(id), None],
            Key::Session(_) | Key::ApiToken(_) | Key::ProbeToken(_) => [None, None],
        },
        match answer {
            Answer::Identity(identity) => [Some(&identity.user.id), identity.token_org()],
            Answer::Role(_) => [None, None],
            Answer::Route(route) => [Some(&route.id), Some(&route.org_id)],
        },
    );
    key_ids.into_iter().chain(answer_ids).flatten()
}

impl Forget {
    fn covers(&self, key: &Key, answer: &Answer) -> bool {
        match self {
            Forget::Everything => true,
            Forget::Concerning(ids) => about(key, answer).any(|id| ids.iter().any(|i| i == id)),
        }
    }
}

/// The kept answers, indexed by the ids they are about, and the last forgettings (by
/// generation) for the lookups still in flight.
#[derive(Default)]
struct Entries {
    answers: HashMap<Key, (i64, Answer)>,
    /// The keys of the answers about each id ([`about`]), so that forgetting a tenant's answers
    /// costs what it forgets, not a walk over every tenant's under the lock.
    by_id: HashMap<String, HashSet<Key>>,
    forgotten: std::collections::VecDeque<(u64, Forget)>,
}

impl Entries {
    fn insert(&mut self, key: Key, at: i64, answer: Answer) {
        self.remove(&key);
        for id in about(&key, &answer) {
            self.by_id
                .entry(id.to_owned())
                .or_default()
                .insert(key.clone());
        }
        self.answers.insert(key, (at, answer));
    }

    fn remove(&mut self, key: &Key) {
        let Some((_, answer)) = self.answers.remove(key) else {
            return;
        };
        for id in about(key, &answer) {
            if let Some(keys) = self.by_id.get_mut(id) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_id.remove(id);
                }
            }
        }
    }

    /// Forgets the answers about any of `ids`: proportional to what it forgets.
    fn remove_concerning(&mut self, ids: &[String]) {
        for id in ids {
            for key in self.by_id.remove(id.as_str()).unwrap_or_default() {
                self.remove(&key);
            }
        }
    }

    fn clear(&mut self) {
        self.answers.clear();
        self.by_id.clear();
    }
}

pub struct IdentityCache {
    /// Milliseconds an answer is kept, on `clock` (so expiries that tests make by moving the
    /// clock also end cached answers).
    ttl_ms: i64,
    clock: Clock,
    /// Bumped by every [`IdentityCache::forget`] (under the entries' lock): lookups started
    /// before it store nothing it covers.
    generation: AtomicU64,
    entries: Mutex<Entries>,
    /// The lookups under way, one per key: each ends (its sender dropped) when its answer is kept
    /// or given up; at most one entry per request in flight.
    asking: Mutex<HashMap<Key, watch::Receiver<()>>>,
}

/// The lookup of `key` under way; ending it (dropped, even with its request) wakes the requests
/// waiting for it.
struct Asking<'c> {
    cache: &'c IdentityCache,
    key: Key,
    _done: watch::Sender<()>,
}

impl Drop for Asking<'_> {
    fn drop(&mut self) {
        self.cache
            .asking
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
    }
}

impl IdentityCache {
    /// A cache keeping answers for `ttl`; zero keeps nothing.
    pub fn new(ttl: Duration, clock: Clock) -> Arc<Self> {
        Arc::new(IdentityCache {
            ttl_ms: i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX),
            clock,
            generation: AtomicU64::new(0),
            entries: Mutex::new(Entries::default()),
            asking: Mutex::new(HashMap::new()),
        })
    }

    fn fresh(&self, at: i64, now: i64) -> bool {
        // A clock that moved back makes nothing fresh.
        (0..self.ttl_ms).contains(&(now - at))
    }

    /// Forgets everything.
    pub fn forget_all(&self) {
        self.forget(Forget::Everything);
    }

    /// Forgets what a change made through this edge may have changed, in time proportional to
    /// what it forgets; lookups in flight meanwhile do not store an answer it covers.
    pub fn forget(&self, what: Forget) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        match &what {
            Forget::Everything => entries.clear(),
            Forget::Concerning(ids) => entries.remove_concerning(ids),
        }
        if entries.forgotten.len() == FORGETTINGS_KEPT {
            entries.forgotten.pop_front();
        }
        entries.forgotten.push_back((generation, what));
    }

    fn get(&self, key: &Key) -> Option<Answer> {
        let entries = self.entries.lock().ok()?;
        let (at, answer) = entries.answers.get(key)?;
        self.fresh(*at, self.clock.now()).then(|| answer.clone())
    }

    fn put(&self, key: Key, answer: Answer, asked_at_generation: u64) {
        if self.ttl_ms <= 0 {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        // Checked under the lock `forget` also takes: an answer asked for before a change that
        // concerns it is never stored after it, nor one older than the forgettings remembered.
        if self.generation.load(Ordering::SeqCst) != asked_at_generation {
            let since = entries
                .forgotten
                .iter()
                .filter(|(generation, _)| *generation > asked_at_generation);
            let remembered = entries
                .forgotten
                .front()
                .is_some_and(|(oldest, _)| *oldest <= asked_at_generation + 1);
            if !remembered || since.clone().any(|(_, what)| what.covers(&key, &answer)) {
                return;
            }
        }
        let now = self.clock.now();
        if entries.answers.len() >= MAX_ENTRIES {
            let stale: Vec<Key> = (entries.answers.iter())
                .filter(|(_, (at, _))| !self.fresh(*at, now))
                .map(|(key, _)| key.clone())
                .collect();
            for key in &stale {
                entries.remove(key);
            }
            // Starting over unless a quarter went: a full cache is walked at most once per
            // quarter of its size put.
            if entries.answers.len() >= MAX_ENTRIES / 4 * 3 {
                entries.clear();
            }
        }
        entries.insert(key, now, answer);
    }

    /// The cached answer for `key`, or `ask`'s (kept if positive).
    async fn answer<T>(
        &self,
        key: Key,
        ask: impl Future<Output = Result<Option<T>>>,
        to: impl Fn(&T) -> Answer,
        from: impl Fn(Answer) -> Option<T>,
    ) -> Result<Option<T>> {
        if let Some(found) = self.get(&key).and_then(&from) {
            return Ok(Some(found));
        }
        if self.ttl_ms > 0 {
            match self.ask_or_wait(&key) {
                Err(mut asked_already) => {
                    // Ends with the other lookup, whichever way it ends.
                    let _ = asked_already.changed().await;
                    if let Some(found) = self.get(&key).and_then(&from) {
                        return Ok(Some(found));
                    }
                }
                Ok(asking) => return self.ask_and_keep(key, ask, to, Some(asking)).await,
            }
        }
        self.ask_and_keep(key, ask, to, None).await
    }

    /// This request's lookup of `key`, or the one under way to wait for.
    fn ask_or_wait(&self, key: &Key) -> std::result::Result<Asking<'_>, watch::Receiver<()>> {
        let mut asking = self.asking.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(under_way) = asking.get(key) {
            return Err(under_way.clone());
        }
        let (done, waiting) = watch::channel(());
        asking.insert(key.clone(), waiting);
        Ok(Asking {
            cache: self,
            key: key.clone(),
            _done: done,
        })
    }

    /// Asks, keeps a positive answer, then (`asking` dropped) wakes whoever waits for it.
    async fn ask_and_keep<T>(
        &self,
        key: Key,
        ask: impl Future<Output = Result<Option<T>>>,
        to: impl Fn(&T) -> Answer,
        asking: Option<Asking<'_>>,
    ) -> Result<Option<T>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let answer = ask.await?;
        if let Some(value) = &answer {
            self.put(key, to(value), generation);
        }
        drop(asking);
        Ok(answer)
    }
}

/// The users contract, through the cache.
pub struct CachedDirectory {
    pub inner: Arc<dyn Directory>,
    pub cache: Arc<IdentityCache>,
}

fn identity(answer: Answer) -> Option<Identity> {
    match answer {
        Answer::Identity(identity) => Some(identity),
        _ => None,
    }
}

impl Directory for CachedDirectory {
    fn session(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
        let key = Key::Session(sha256(token));
        let token = token.to_owned();
        let ask = async move { self.inner.session(&token).await };
        Box::pin(
            self.cache
                .answer(key, ask, |i| Answer::Identity(i.clone()), identity),
        )
    }

    fn api_token(&self, token: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
        let key = Key::ApiToken(sha256(token));
        let token = token.to_owned();
        let ask = async move { self.inner.api_token(&token).await };
        Box::pin(
            self.cache
                .answer(key, ask, |i| Answer::Identity(i.clone()), identity),
        )
    }

    fn role_in(&self, org_id: &str, user_id: &str) -> BoxFuture<'_, Result<Option<Role>>> {
        let key = Key::Member {
            org: org_id.to_owned(),
            user: user_id.to_owned(),
        };
        let (org_id, user_id) = (org_id.to_owned(), user_id.to_owned());
        let ask = async move { self.inner.role_in(&org_id, &user_id).await };
        Box::pin(self.cache.answer(
            key,
            ask,
            |role| Answer::Role(*role),
            |answer| match answer {
                Answer::Role(role) => Some(role),
                _ => None,
            },
        ))
    }

    fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>> {
        self.inner.first_admin_org()
    }

    /// Never cached: it is how a revocation reaches what is already open.
    fn still_valid(&self, identity: &Identity) -> BoxFuture<'_, Result<bool>> {
        self.inner.still_valid(identity)
    }

    fn identity_generation(&self) -> BoxFuture<'_, Result<i64>> {
        self.inner.identity_generation()
    }
}

/// The provisioning contract, through the cache.
pub struct CachedInstances {
    pub inner: Arc<dyn InstanceDirectory>,
    pub cache: Arc<IdentityCache>,
}

fn route(answer: Answer) -> Option<InstanceRoute> {
    match answer {
        Answer::Route(route) => Some(route),
        _ => None,
    }
}

impl InstanceDirectory for CachedInstances {
    fn probe_token(&self, token: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
        let key = Key::ProbeToken(sha256(token));
        let token = token.to_owned();
        let ask = async move { self.inner.probe_token(&token).await };
        Box::pin(
            self.cache
                .answer(key, ask, |r| Answer::Route(r.clone()), route),
        )
    }

    fn instance(&self, id: &str) -> BoxFuture<'_, Result<Option<InstanceRoute>>> {
        let key = Key::Instance(id.to_owned());
        let id = id.to_owned();
        let ask = async move { self.inner.instance(&id).await };
        Box::pin(
            self.cache
                .answer(key, ask, |r| Answer::Route(r.clone()), route),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use shared::users::AccountStatus;

    use super::*;
    use crate::identity::{User, Via};

    /// Counts lookups; knows one session, whose answer the test can take away.
    struct Counting {
        asked: AtomicUsize,
        known: Mutex<bool>,
    }

    fn someone() -> Identity {
        Identity {
            user: User {
                id: "u".into(),
                email: "u@example.com".into(),
                status: AccountStatus::Approved,
                is_admin: false,
            },
            via: Via::Session {
                id: "s".into(),
                csrf_token: "c".into(),
            },
        }
    }

    impl Directory for Counting {
        fn session(&self, _: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let known = *self.known.lock().unwrap();
            Box::pin(async move { Ok(known.then(someone)) })
        }
        fn api_token(&self, _: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
            Box::pin(async { Ok(None) })
        }
        fn role_in(&self, _: &str, _: &str) -> BoxFuture<'_, Result<Option<Role>>> {
            Box::pin(async { Ok(None) })
        }
        fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn cached(ttl: Duration, clock: Clock) -> (Arc<Counting>, CachedDirectory) {
        let inner = Arc::new(Counting {
            asked: AtomicUsize::new(0),
            known: Mutex::new(true),
        });
        let directory = CachedDirectory {
            inner: inner.clone(),
            cache: IdentityCache::new(ttl, clock),
        };
        (inner, directory)
    }

    #[tokio::test]
    async fn answers_are_kept_for_the_ttl_and_no_longer() {
        let clock = Clock::adjustable();
        let (inner, directory) = cached(Duration::from_secs(10), clock.clone());
        for _ in 0..5 {
            assert_eq!(directory.session("shs_a").await.unwrap(), Some(someone()));
        }
        assert_eq!(inner.asked.load(Ordering::SeqCst), 1, "asked once");
        // Revoked at the users role: still cached, until the TTL runs out.
        *inner.known.lock().unwrap() = false;
        assert!(directory.session("shs_a").await.unwrap().is_some());
        clock.advance(9_000);
        assert!(directory.session("shs_a").await.unwrap().is_some());
        clock.advance(1_000);
        assert_eq!(directory.session("shs_a").await.unwrap(), None);
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_change_made_through_this_edge_is_seen_at_once_and_negatives_are_not_kept() {
        let (inner, directory) = cached(Duration::from_secs(60), Clock::adjustable());
        assert!(directory.session("shs_a").await.unwrap().is_some());
        *inner.known.lock().unwrap() = false;
        directory.cache.forget_all();
        assert_eq!(directory.session("shs_a").await.unwrap(), None);
        *inner.known.lock().unwrap() = true;
        assert!(
            directory.session("shs_a").await.unwrap().is_some(),
            "an unknown answer is asked again"
        );
        assert_eq!(inner.asked.load(Ordering::SeqCst), 3);
    }

    fn identity_of(user: &str) -> Answer {
        let mut identity = someone();
        identity.user.id = user.into();
        Answer::Identity(identity)
    }

    fn route_of(instance: &str, org: &str) -> Answer {
        Answer::Route(InstanceRoute {
            id: instance.into(),
            org_id: org.into(),
            state: shared::instances::InstanceState::Ready,
            shard: None,
            limits: shared::instances::Limits {
                max_probes: 1,
                max_report_bytes: 1,
                max_reports_per_second: 1,
            },
            refuse_reads: false,
            refuse_uploads: false,
        })
    }

    /// Sessions of two users, a membership, two instances and a probe token, all kept.
    fn filled() -> (Arc<IdentityCache>, [Key; 6]) {
        let cache = IdentityCache::new(Duration::from_secs(60), Clock::adjustable());
        let keys = [
            Key::Session(sha256("alice's")),
            Key::Session(sha256("bob's")),
            Key::Member {
                org: "org-a".into(),
                user: "alice".into(),
            },
            Key::Instance("inst-a".into()),
            Key::Instance("inst-b".into()),
            Key::ProbeToken(sha256("probe-a")),
        ];
        let answers = [
            identity_of("alice"),
            identity_of("bob"),
            Answer::Role(Role::Admin),
            route_of("inst-a", "org-a"),
            route_of("inst-b", "org-b"),
            route_of("inst-a", "org-a"),
        ];
        for (key, answer) in keys.iter().zip(answers) {
            cache.put(key.clone(), answer, cache.generation.load(Ordering::SeqCst));
        }
        (cache, keys)
    }

    fn kept(cache: &IdentityCache, keys: &[Key]) -> Vec<bool> {
        keys.iter().map(|k| cache.get(k).is_some()).collect()
    }

    /// One tenant's change forgets the answers about that tenant only: another's stay kept, so
    /// its requests do not go back to the users role because of someone else's changes.
    #[test]
    fn a_change_forgets_only_the_answers_it_concerns() {
        let ids = |ids: &[&str]| Forget::Concerning(ids.iter().map(|s| s.to_string()).collect());
        let (cache, keys) = filled();
        cache.forget(ids(&["alice"]));
        assert_eq!(kept(&cache, &keys), [false, true, false, true, true, true]);

        let (cache, keys) = filled();
        cache.forget(ids(&["org-a"]));
        assert_eq!(kept(&cache, &keys), [true, true, false, false, true, false]);

        let (cache, keys) = filled();
        cache.forget(ids(&["inst-b", "instances"]));
        assert_eq!(kept(&cache, &keys), [true, true, true, true, false, true]);

        let (cache, keys) = filled();
        cache.forget(Forget::Everything);
        assert_eq!(kept(&cache, &keys), [false; 6]);
    }

    /// Every kept answer is indexed under each id it is about, and the index holds nothing else.
    fn assert_indexed(cache: &IdentityCache) {
        let entries = cache.entries.lock().unwrap();
        let mut expected: HashMap<String, HashSet<Key>> = HashMap::new();
        for (key, (_, answer)) in &entries.answers {
            for id in about(key, answer) {
                expected.entry(id.into()).or_default().insert(key.clone());
            }
        }
        assert_eq!(entries.by_id, expected);
    }

    /// A forgetting finds what it forgets through the index, which follows every change of
    /// what is kept: an answer replaced by one about someone else goes with the new someone.
    #[test]
    fn the_index_of_ids_follows_what_is_kept() {
        let forget = |cache: &IdentityCache, id: &str| {
            cache.forget(Forget::Concerning(vec![id.to_string()]));
            assert_indexed(cache);
        };
        let (cache, keys) = filled();
        assert_indexed(&cache);
        let generation = cache.generation.load(Ordering::SeqCst);
        cache.put(keys[0].clone(), identity_of("carol"), generation);
        assert_indexed(&cache);
        forget(&cache, "alice");
        assert_eq!(kept(&cache, &keys), [true, true, false, true, true, true]);
        forget(&cache, "carol");
        assert_eq!(kept(&cache, &keys), [false, true, false, true, true, true]);
        for id in ["bob", "org-a", "org-b", "nobody"] {
            forget(&cache, id);
        }
        assert_eq!(kept(&cache, &keys), [false; 6]);
        assert!(cache.entries.lock().unwrap().by_id.is_empty());
    }

    /// A full cache lets go of what expired, and starts over when little did.
    #[test]
    fn a_full_cache_makes_room() {
        let clock = Clock::adjustable();
        let cache = IdentityCache::new(Duration::from_secs(600), clock.clone());
        let put = |n: usize| {
            let generation = cache.generation.load(Ordering::SeqCst);
            let key = Key::Instance(format!("inst-{n}"));
            cache.put(key, route_of(&format!("inst-{n}"), "org"), generation);
        };
        for n in 0..MAX_ENTRIES / 2 {
            put(n);
        }
        clock.advance(600_000);
        for n in MAX_ENTRIES / 2..MAX_ENTRIES + 1 {
            put(n);
        }
        // The expired half went; the fresh half and the new answer stayed.
        assert_eq!(
            cache.entries.lock().unwrap().answers.len(),
            MAX_ENTRIES / 2 + 1
        );
        assert!(
            cache
                .get(&Key::Instance(format!("inst-{MAX_ENTRIES}")))
                .is_some()
        );
        assert_indexed(&cache);
        for n in MAX_ENTRIES + 1..MAX_ENTRIES * 3 / 2 + 1 {
            put(n);
        }
        // Full of fresh answers: started over, with only the newest.
        assert_eq!(cache.entries.lock().unwrap().answers.len(), 1);
        assert_indexed(&cache);
    }

    /// A lookup in flight during a change stores its answer unless the change concerns it, or
    /// so many changes came meanwhile that they are no longer remembered.
    #[test]
    fn a_lookup_in_flight_during_a_change_stores_only_what_the_change_did_not_concern() {
        let cache = IdentityCache::new(Duration::from_secs(60), Clock::adjustable());
        let asked_at = cache.generation.load(Ordering::SeqCst);
        cache.forget(Forget::Concerning(vec!["bob".into()]));
        cache.put(Key::Session(sha256("a")), identity_of("alice"), asked_at);
        cache.put(Key::Session(sha256("b")), identity_of("bob"), asked_at);
        assert!(cache.get(&Key::Session(sha256("a"))).is_some());
        assert!(cache.get(&Key::Session(sha256("b"))).is_none());

        let asked_at = cache.generation.load(Ordering::SeqCst);
        for _ in 0..FORGETTINGS_KEPT {
            cache.forget(Forget::Concerning(vec!["carol".into()]));
        }
        cache.put(Key::Session(sha256("c")), identity_of("alice"), asked_at);
        assert!(
            cache.get(&Key::Session(sha256("c"))).is_some(),
            "all remembered"
        );
        cache.forget(Forget::Concerning(vec!["carol".into()]));
        cache.put(Key::Session(sha256("d")), identity_of("alice"), asked_at);
        assert!(
            cache.get(&Key::Session(sha256("d"))).is_none(),
            "older than the forgettings remembered"
        );
    }

    #[tokio::test]
    async fn an_answer_asked_for_before_a_change_is_not_stored_after_it() {
        let (inner, directory) = cached(Duration::from_secs(60), Clock::adjustable());
        let generation = directory.cache.generation.load(Ordering::SeqCst);
        directory.cache.forget_all();
        directory.cache.put(
            Key::Session(sha256("shs_a")),
            Answer::Identity(someone()),
            generation,
        );
        assert!(
            directory
                .cache
                .get(&Key::Session(sha256("shs_a")))
                .is_none()
        );
        let _ = inner;
    }

    /// Knows every session or none; each lookup waits until the test opens the gate.
    struct Gated {
        asked: AtomicUsize,
        known: bool,
        gate: watch::Receiver<bool>,
    }

    impl Directory for Gated {
        fn session(&self, _: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let mut gate = self.gate.clone();
            Box::pin(async move {
                let _ = gate.wait_for(|open| *open).await;
                Ok(self.known.then(someone))
            })
        }
        fn api_token(&self, _: &str) -> BoxFuture<'_, Result<Option<Identity>>> {
            Box::pin(async { Ok(None) })
        }
        fn role_in(&self, _: &str, _: &str) -> BoxFuture<'_, Result<Option<Role>>> {
            Box::pin(async { Ok(None) })
        }
        fn first_admin_org(&self) -> BoxFuture<'_, Result<Option<AdminOrg>>> {
            Box::pin(async { Ok(None) })
        }
    }

    fn gated(known: bool) -> (watch::Sender<bool>, Arc<Gated>, Arc<CachedDirectory>) {
        let (open, gate) = watch::channel(false);
        let inner = Arc::new(Gated {
            asked: AtomicUsize::new(0),
            known,
            gate,
        });
        let directory = Arc::new(CachedDirectory {
            inner: inner.clone(),
            cache: IdentityCache::new(Duration::from_secs(60), Clock::adjustable()),
        });
        (open, inner, directory)
    }

    /// `n` lookups of one session at once, each its own task.
    fn at_once(
        directory: &Arc<CachedDirectory>,
        n: usize,
    ) -> Vec<tokio::task::JoinHandle<Option<Identity>>> {
        (0..n)
            .map(|_| {
                let directory = directory.clone();
                tokio::spawn(async move { directory.session("shs_a").await.unwrap() })
            })
            .collect()
    }

    /// Lets the spawned lookups run until they wait (on the gate or on each other).
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn lookups_of_one_key_at_once_ask_once() {
        let (open, inner, directory) = gated(true);
        let lookups = at_once(&directory, 20);
        settle().await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 1, "the others wait");
        open.send(true).unwrap();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap(), Some(someone()));
        }
        assert_eq!(inner.asked.load(Ordering::SeqCst), 1);
        assert!(directory.cache.asking.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn waiters_ask_themselves_when_the_lookup_keeps_nothing_or_goes_away() {
        // An unknown credential is not kept: each waiter asks on its own, none hangs.
        let (open, inner, directory) = gated(false);
        let lookups = at_once(&directory, 5);
        settle().await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 1);
        open.send(true).unwrap();
        for lookup in lookups {
            assert_eq!(lookup.await.unwrap(), None);
        }
        assert_eq!(inner.asked.load(Ordering::SeqCst), 5);
        // The asking request goes away (its client hung up): the waiters ask themselves.
        let (open, inner, directory) = gated(true);
        let first = at_once(&directory, 1).pop().unwrap();
        settle().await;
        let waiters = at_once(&directory, 3);
        settle().await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 1);
        first.abort();
        settle().await;
        assert_eq!(inner.asked.load(Ordering::SeqCst), 4);
        open.send(true).unwrap();
        for lookup in waiters {
            assert_eq!(lookup.await.unwrap(), Some(someone()));
        }
        assert!(directory.cache.asking.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_zero_ttl_keeps_nothing() {
        let (inner, directory) = cached(Duration::ZERO, Clock::adjustable());
        directory.session("shs_a").await.unwrap();
        directory.session("shs_a").await.unwrap();
        assert_eq!(inner.asked.load(Ordering::SeqCst), 2);
    }
}
