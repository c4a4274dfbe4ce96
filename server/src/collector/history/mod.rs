//! History (time travel): every accepted report kept in an object store, and the window of any
//! past moment made again from them (docs/history.md).
//!
//! Ingest hands each accepted report's body to [`History::keep`], which only appends it to a
//! bounded buffer in memory; [`History::flush`] (a task of the shard) writes the buffer as one
//! batch per instance and hour (`batch.rs`). A store that is down or slow leaves reports in the
//! buffer, retried at the next flush; once the buffer is full, new reports are not kept — history
//! is lost, never ingest, and both are counted (`scopehub_history_*`). A moment's window is the
//! reports that arrived in the 15 s before it, folded exactly as the live window folds them
//! (`slot.rs`), then merged and rendered as live reads are; windows and renders of the past never
//! change, so they are cached.

pub mod batch;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};
use serde::Serialize;
use shared::instances::Limits;

pub use self::batch::WindowCounts;
use self::batch::{BatchHeader, BatchName, HOUR_MS, Record};
use super::background;
use super::bounded::{self, BudgetLimits};
use super::decode::{self, Format};
use super::fold::{self, FoldedWindow, Samples};
use super::name::Name;
use super::report::Report;
use super::slot::{self, WINDOW_MS};
use super::wire::WireReport;
use crate::telemetry::Metrics;

/// Where history is kept: `--history-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryLocation {
    /// A folder on this machine (Airplane Mode: `{data-dir}/history`).
    Folder(std::path::PathBuf),
    /// An S3-compatible bucket, under a prefix; credentials, region and endpoint come from the
    /// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT`,
    /// `AWS_ALLOW_HTTP`).
    S3 { bucket: String, prefix: String },
}

impl std::str::FromStr for HistoryLocation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err("an s3:// history URL needs a bucket: s3://bucket/prefix".to_owned());
            }
            return Ok(HistoryLocation::S3 {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
            });
        }
        let path = s.strip_prefix("file://").unwrap_or(s);
        if path.is_empty() || s.contains("://") && !s.starts_with("file://") {
            return Err(format!(
                "history URL {s:?} is neither a folder, file:///path nor s3://bucket/prefix"
            ));
        }
        Ok(HistoryLocation::Folder(path.into()))
    }
}

impl std::fmt::Display for HistoryLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HistoryLocation::Folder(path) => write!(f, "{}", path.display()),
            HistoryLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How history behaves in this deployment.
#[derive(Debug, Clone)]
pub struct HistoryConfig {
    pub location: HistoryLocation,
    /// How often the buffer is written out: what a crash loses at most.
    pub flush_interval: Duration,
    /// Report bytes the buffer may hold (all instances); beyond it reports are not kept.
    pub buffer_bytes: usize,
    /// How often retention and quotas are enforced.
    pub retention_interval: Duration,
    /// How often each instance's views are counted for the timeline when no reader's topology
    /// list did (a render of every view).
    pub count_interval: Duration,
    /// How long one write, read or listing may take.
    pub store_timeout: Duration,
    /// Bytes of probes' folded parts kept for a step forward (all instances).
    pub folded_bytes: usize,
}

impl HistoryConfig {
    pub fn new(location: HistoryLocation) -> Self {
        HistoryConfig {
            location,
            flush_interval: Duration::from_secs(10),
            buffer_bytes: 256 << 20,
            retention_interval: Duration::from_secs(600),
            count_interval: Duration::from_secs(60),
            store_timeout: Duration::from_secs(30),
            folded_bytes: MAX_FOLDED_BYTES,
        }
    }
}

/// How much history an instance keeps (site admins set it per instance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub days: u32,
    pub quota_bytes: u64,
}

/// What one instance's history holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub bytes: u64,
    pub batches: u64,
}

/// Whether a moment's window came from kept reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// Reports of that moment are kept.
    Kept,
    /// Before the oldest report kept (retention, or the instance did not report yet): empty.
    BeforeHistory,
    /// Within the history kept, but no probe reported then: empty.
    Gap,
}

impl Coverage {
    pub fn as_str(self) -> &'static str {
        match self {
            Coverage::Kept => "kept",
            Coverage::BeforeHistory => "before-history",
            Coverage::Gap => "gap",
        }
    }
}

/// A render of a past moment's window, with what history had for it.
#[derive(Clone)]
pub struct PastRender {
    pub rendered: super::slot::Rendered,
    pub coverage: Coverage,
    pub kept_from_ms: Option<i64>,
}

/// A past moment's window, merged.
#[derive(Clone)]
pub struct PastWindow {
    pub report: Arc<Report>,
    pub coverage: Coverage,
    pub kept_from_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("the history store failed: {0}")]
    Store(#[from] object_store::Error),
    #[error("the history store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("a history batch is damaged: {0}")]
    Batch(#[from] batch::BatchError),
    #[error("history: {0}")]
    Other(String),
}

pub type HistoryResult<T> = std::result::Result<T, HistoryError>;

/// One hour folder's share of an instance's history.
#[derive(Debug, Clone, Copy, Default)]
struct HourKept {
    bytes: u64,
    batches: u64,
    first_ms: i64,
    last_ms: i64,
}

/// What is waiting to be written.
#[derive(Default)]
struct Buffer {
    by_instance: HashMap<String, Vec<Record>>,
    bytes: usize,
}

/// Past windows and renders kept at most (they can be tens of megabytes each).
const MAX_PAST_WINDOWS: usize = 8;
const MAX_PAST_RENDER_BYTES: usize = 64 << 20;
/// The probes' folded parts of past moments kept for a step forward, at most, by default (a
/// moment's parts take about what the live window of the instance takes).
const MAX_FOLDED_BYTES: usize = 128 << 20;
/// Windows of the past made at once, per collector (each folds up to a window of reports).
const BUILDERS: usize = 2;
/// Objects read at once for one window or timeline.
const READS_AT_ONCE: usize = 8;
/// Points a timeline answers at most.
pub const MAX_TIMELINE_POINTS: usize = 240;
/// Batch headers and hour listings remembered.
const MAX_HEADERS: usize = 20_000;
const MAX_LISTINGS: usize = 4_096;

type Listing = Arc<Vec<(Path, BatchName, u64)>>;
type PastKey = (String, i64);
/// A past window: its instance, moment, and the metric samples it keeps (views need the newest
/// only, node details all).
type WindowKey = (String, i64, Samples);

pub struct History {
    store: Arc<dyn ObjectStore>,
    root: Path,
    config: HistoryConfig,
    metrics: Metrics,
    /// This process's name in the objects it writes, and its records' numbers.
    writer: String,
    next_seq: AtomicU64,
    buffer: Mutex<Buffer>,
    /// One flush at a time.
    flushing: tokio::sync::Mutex<()>,
    /// Per instance, per hour folder: what is kept (rebuilt from a listing at each retention pass,
    /// kept up to date by writes in between).
    kept: Mutex<HashMap<String, BTreeMap<String, HourKept>>>,
    /// Listings of hour folders that can no longer change.
    listings: Mutex<HashMap<(String, String), Listing>>,
    headers: Mutex<HashMap<Path, BatchHeader>>,
    past: Mutex<PastCache>,
    builders: tokio::sync::Semaphore,
}

/// Merged past windows and their renders, least recently used let go first; and per instance the
/// probes' folded parts of the last moment made.
#[derive(Default)]
struct PastCache {
    tick: u64,
    windows: HashMap<WindowKey, (u64, Arc<tokio::sync::OnceCell<PastWindow>>)>,
    renders: HashMap<(PastKey, String), (u64, usize, PastRender)>,
    render_bytes: usize,
    folded: HashMap<String, FoldedMoment>,
    folded_bytes: usize,
    /// Windows made from the folded parts of a moment before them (or of the same moment, with
    /// the other samples kept) rather than from all their reports.
    stepped: u64,
}

/// The probes' parts of the window of a moment, folded: a moment less than a window later is made
/// from them and the reports between the two (stepping forward through an incident, or the second
/// moment of "what changed") instead of from all its reports. Taken by the moment made from them.
struct FoldedMoment {
    used: u64,
    at_ms: i64,
    bytes: usize,
    parts: FoldedParts,
}

/// Probes' folded parts, each with its probe.
type FoldedParts = Vec<(String, FoldedWindow)>;

/// How old a staging file must be to be swept: far older than any write in flight.
const STAGING_KEPT: Duration = Duration::from_secs(10 * 60);

/// Deletes the staging files under `folder` older than `older_than`, and says how many. The local
/// store writes each object to a staging file beside it (`<object>#<n>`) and renames it into place:
/// one that a crash (`kill -9` mid-write) left behind is never listed nor read, but takes space
/// until it is deleted here. Names are told as the store tells them; object keys never hold a `#`.
fn sweep_staging(folder: &std::path::Path, older_than: Duration) -> usize {
    let Some(before) = std::time::SystemTime::now().checked_sub(older_than) else {
        return 0;
    };
    let is_staging = |name: &str| {
        name.split_once('#')
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut removed = 0;
    let mut folders = vec![folder.to_path_buf()];
    while let Some(dir) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file()
                && is_staging(&entry.file_name().to_string_lossy())
                && entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified < before)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl History {
    /// Opens (creating a folder if need be) the store at `config.location`.
    pub fn open(config: HistoryConfig, metrics: Metrics) -> anyhow::Result<History> {
        let (store, root): (Arc<dyn ObjectStore>, Path) = match &config.location {
            HistoryLocation::Folder(path) => {
                std::fs::create_dir_all(path).map_err(|e| {
                    anyhow::anyhow!("cannot create the history folder {}: {e}", path.display())
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(path)?;
                (Arc::new(store), Path::from("v1"))
            }
            HistoryLocation::S3 { bucket, prefix } => {
                let store = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()?;
                let root = if prefix.is_empty() {
                    Path::from("v1")
                } else {
                    Path::from(format!("{prefix}/v1"))
                };
                (Arc::new(store), root)
            }
        };
        Ok(History::on(store, root, config, metrics))
    }

    pub fn on(
        store: Arc<dyn ObjectStore>,
        root: Path,
        config: HistoryConfig,
        metrics: Metrics,
    ) -> History {
        History {
            store,
            root,
            config,
            metrics,
            writer: crate::secrets::random_hex(4),
            next_seq: AtomicU64::new(1),
            buffer: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            kept: Mutex::default(),
            listings: Mutex::default(),
            headers: Mutex::default(),
            past: Mutex::default(),
            builders: tokio::sync::Semaphore::new(BUILDERS),
        }
    }

    pub fn config(&self) -> &HistoryConfig {
        &self.config
    }

    /// Deletes the staging files a crash left among a local folder's objects once they are older
    /// than any write in flight ([`sweep_staging`]), off the runtime; each retention pass does,
    /// the first as the collector starts. Says how many.
    pub async fn sweep(&self) -> usize {
        let HistoryLocation::Folder(folder) = &self.config.location else {
            return 0;
        };
        let objects = folder.join(self.root.as_ref());
        let removed = background::spawn(move || sweep_staging(&objects, STAGING_KEPT))
            .await
            .unwrap_or(0);
        if removed > 0 {
            tracing::info!(
                removed,
                "history: deleted staging files a crash left behind"
            );
        }
        removed
    }

    fn instance_root(&self, instance: &str) -> Path {
        self.root.child(instance)
    }

    async fn timed<T>(
        &self,
        f: impl std::future::Future<Output = object_store::Result<T>>,
    ) -> HistoryResult<T> {
        match tokio::time::timeout(self.config.store_timeout, f).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(HistoryError::Timeout(self.config.store_timeout)),
        }
    }

    /// Keeps a report accepted for `instance` at `at_ms`, to be written at the next flush. Never
    /// waits: when the buffer is full the report is not kept (and counted).
    pub fn keep(
        &self,
        instance: &str,
        at_ms: i64,
        probe: &str,
        format: Format,
        body: Bytes,
        gzipped: bool,
    ) {
        if !batch::valid_instance(instance) {
            return;
        }
        let mut buffer = lock(&self.buffer);
        if buffer.bytes + body.len() > self.config.buffer_bytes {
            drop(buffer);
            self.metrics.record_history("dropped_buffer_full", 1);
            return;
        }
        buffer.bytes += body.len();
        let record = Record {
            at_ms,
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            format,
            probe: probe.to_owned(),
            body,
            gzipped,
        };
        buffer
            .by_instance
            .entry(instance.to_owned())
            .or_default()
            .push(record);
        self.metrics.set_history_buffer(buffer.bytes);
    }

    /// The instances with reports waiting to be written.
    pub fn waiting_instances(&self) -> Vec<String> {
        lock(&self.buffer).by_instance.keys().cloned().collect()
    }

    /// Writes what the buffer holds: one batch per instance and hour. What could not be written
    /// stays for the next flush. `counts` gives an instance's live node counts (for the
    /// timeline). Returns the batches written.
    pub async fn flush(
        &self,
        now_ms: i64,
        counts: &(dyn Fn(&str) -> BoxFuture<'static, WindowCounts> + Sync),
    ) -> usize {
        let _one = self.flushing.lock().await;
        let waiting: Vec<(String, Vec<Record>)> = lock(&self.buffer)
            .by_instance
            .iter()
            .map(|(i, records)| (i.clone(), records.clone()))
            .collect();
        let mut written = 0;
        for (instance, records) in waiting {
            let counts = counts(&instance).await;
            let mut by_hour: BTreeMap<String, Vec<Record>> = BTreeMap::new();
            for r in records {
                by_hour.entry(batch::hour_of(r.at_ms)).or_default().push(r);
            }
            for (hour, records) in by_hour {
                match self
                    .write_batch(&instance, &hour, records, &counts, now_ms)
                    .await
                {
                    Ok(()) => written += 1,
                    Err(e) => {
                        self.metrics.record_history("write_failed", 1);
                        tracing::warn!(%instance, error = %e, "a history batch could not be written; retried at the next flush");
                    }
                }
            }
        }
        let oldest = (lock(&self.buffer).by_instance.values())
            .flat_map(|records| records.iter().map(|r| r.at_ms))
            .min();
        self.metrics
            .set_history_oldest_waiting(oldest.map_or(0, |at| (now_ms - at) / 1000));
        written
    }

    async fn write_batch(
        &self,
        instance: &str,
        hour: &str,
        records: Vec<Record>,
        counts: &WindowCounts,
        now_ms: i64,
    ) -> HistoryResult<()> {
        let (Some(first), Some(last)) = (records.first(), records.last()) else {
            return Ok(());
        };
        let name = BatchName {
            first_ms: first.at_ms,
            last_ms: last.at_ms,
            writer: self.writer.clone(),
            seq: first.seq,
        };
        let header = BatchHeader {
            first_ms: first.at_ms,
            last_ms: last.at_ms,
            at_ms: now_ms,
            window: counts.clone(),
        };
        let seqs: HashSet<u64> = records.iter().map(|r| r.seq).collect();
        let (object, records) = background::spawn(move || {
            let records: Vec<Record> = records.into_iter().map(gzipped).collect();
            (batch::encode(&header, &records), records.len())
        })
        .await
        .map_err(|e| HistoryError::Other(e.to_string()))?;
        let path = self
            .instance_root(instance)
            .child(hour)
            .child(name.file_name());
        let size = object.len() as u64;
        self.timed(self.store.put(&path, PutPayload::from_bytes(object)))
            .await?;
        self.metrics.record_history("stored", records as u64);
        self.metrics.record_history_bytes(size);
        {
            let mut buffer = lock(&self.buffer);
            let mut freed = 0;
            if let Some(waiting) = buffer.by_instance.get_mut(instance) {
                waiting.retain(|r| {
                    let flushed = seqs.contains(&r.seq);
                    if flushed {
                        freed += r.body.len();
                    }
                    !flushed
                });
                if waiting.is_empty() {
                    buffer.by_instance.remove(instance);
                }
            }
            buffer.bytes -= freed;
            self.metrics.set_history_buffer(buffer.bytes);
        }
        let mut kept = lock(&self.kept);
        if let Some(hours) = kept.get_mut(instance) {
            let h = hours.entry(hour.to_owned()).or_insert(HourKept {
                first_ms: name.first_ms,
                last_ms: name.last_ms,
                ..HourKept::default()
            });
            h.bytes += size;
            h.batches += 1;
            h.first_ms = h.first_ms.min(name.first_ms);
            h.last_ms = h.last_ms.max(name.last_ms);
        }
        Ok(())
    }

    /// The batches of one hour folder of an instance, oldest first. Folders that can no longer
    /// change (well past the hour and the flushes that could still write to it) are listed once.
    async fn list_hour(&self, instance: &str, hour: &str, now_ms: i64) -> HistoryResult<Listing> {
        let key = (instance.to_owned(), hour.to_owned());
        if let Some(listing) = lock(&self.listings).get(&key) {
            return Ok(listing.clone());
        }
        let prefix = self.instance_root(instance).child(hour);
        let objects: Vec<object_store::ObjectMeta> = self
            .timed(self.store.list(Some(&prefix)).try_collect())
            .await?;
        let mut listing: Vec<(Path, BatchName, u64)> = objects
            .into_iter()
            .filter_map(|meta| {
                let name = BatchName::parse(meta.location.filename()?)?;
                Some((meta.location, name, meta.size))
            })
            .collect();
        listing.sort_by(|a, b| (a.1.first_ms, &a.0).cmp(&(b.1.first_ms, &b.0)));
        let listing = Arc::new(listing);
        let settled = batch::hour_start(hour).is_some_and(|start| {
            let settle = 2 * self.config.flush_interval.as_millis() as i64 + 60_000;
            start + HOUR_MS + settle < now_ms
        });
        if settled {
            let mut listings = lock(&self.listings);
            if listings.len() >= MAX_LISTINGS {
                listings.clear();
            }
            listings.insert(key, listing.clone());
        }
        Ok(listing)
    }

    /// Every record of `instance` that arrived in `(from_ms, to_ms]`, in arrival order: from the
    /// store and from the buffer, each once.
    async fn records_between(
        &self,
        instance: &str,
        from_ms: i64,
        to_ms: i64,
        now_ms: i64,
    ) -> HistoryResult<Vec<(String, Record)>> {
        let mut wanted = Vec::new();
        for hour in batch::hours_between(from_ms, to_ms) {
            let listing = self.list_hour(instance, &hour, now_ms).await?;
            wanted.extend(
                listing
                    .iter()
                    .filter(|(_, name, _)| name.overlaps(from_ms, to_ms))
                    .cloned(),
            );
        }
        let read: Vec<Option<(String, Vec<Record>)>> = futures_util::stream::iter(wanted)
            .map(|(path, name, _)| async move {
                match self.read_batch(&path).await {
                    Ok((_, records)) => Ok(Some((name.writer, records))),
                    // Deleted by retention since it was listed.
                    Err(HistoryError::Store(object_store::Error::NotFound { .. })) => Ok(None),
                    Err(HistoryError::Batch(e)) => {
                        self.metrics.record_history("damaged", 1);
                        tracing::warn!(path = %path, error = %e, "skipping a damaged history batch");
                        Ok(None)
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(READS_AT_ONCE)
            .try_collect()
            .await?;
        let mut seen = HashSet::new();
        let mut records = Vec::new();
        let in_range = |r: &Record| r.at_ms > from_ms && r.at_ms <= to_ms;
        for (writer, batch) in read.into_iter().flatten() {
            for r in batch.into_iter().filter(in_range) {
                if seen.insert((writer.clone(), r.seq)) {
                    records.push((writer.clone(), r));
                }
            }
        }
        if let Some(waiting) = lock(&self.buffer).by_instance.get(instance) {
            for r in waiting.iter().filter(|r| in_range(r)) {
                if seen.insert((self.writer.clone(), r.seq)) {
                    records.push((self.writer.clone(), r.clone()));
                }
            }
        }
        records.sort_by(|(wa, a), (wb, b)| (a.at_ms, wa, a.seq).cmp(&(b.at_ms, wb, b.seq)));
        Ok(records)
    }

    async fn read_batch(&self, path: &Path) -> HistoryResult<(BatchHeader, Vec<Record>)> {
        let got = self.timed(self.store.get(path)).await?;
        if got.meta.size > batch::MAX_OBJECT_BYTES {
            return Err(batch::BatchError::TooLarge("object").into());
        }
        let bytes = self.timed(got.bytes()).await?;
        Ok(batch::decode(bytes)?)
    }

    async fn read_header(&self, path: &Path) -> HistoryResult<BatchHeader> {
        if let Some(header) = lock(&self.headers).get(path) {
            return Ok(header.clone());
        }
        let mut want = batch::HEADER_PREFIX_BYTES;
        let header = loop {
            let prefix = match self.timed(self.store.get_range(path, 0..want)).await {
                Ok(prefix) => prefix,
                // An object shorter than the range asked for: read it whole.
                Err(HistoryError::Store(object_store::Error::Generic { .. })) => {
                    self.timed(async { self.store.get(path).await?.bytes().await })
                        .await?
                }
                Err(e) => return Err(e),
            };
            match batch::decode_header(&prefix)? {
                Ok(header) => break header,
                Err(need) if (need as u64) > want && (prefix.len() as u64) >= want => {
                    want = need as u64;
                }
                Err(_) => return Err(batch::BatchError::Truncated.into()),
            }
        };
        let mut headers = lock(&self.headers);
        if headers.len() >= MAX_HEADERS {
            headers.clear();
        }
        headers.insert(path.clone(), header.clone());
        Ok(header)
    }

    /// What `instance`'s history holds, from its index (built from a listing if this process has
    /// none yet).
    pub async fn kept(&self, instance: &str) -> HistoryResult<Kept> {
        if !lock(&self.kept).contains_key(instance) {
            self.reindex(instance).await?;
        }
        let kept = lock(&self.kept);
        let hours = kept.get(instance);
        let mut total = Kept::default();
        for h in hours.into_iter().flat_map(|h| h.values()) {
            total.bytes += h.bytes;
            total.batches += h.batches;
            total.from_ms = Some(total.from_ms.map_or(h.first_ms, |f| f.min(h.first_ms)));
            total.to_ms = Some(total.to_ms.map_or(h.last_ms, |t| t.max(h.last_ms)));
        }
        Ok(total)
    }

    /// Lists everything `instance` keeps and indexes it by hour.
    async fn reindex(&self, instance: &str) -> HistoryResult<Vec<object_store::ObjectMeta>> {
        let prefix = self.instance_root(instance);
        let objects: Vec<object_store::ObjectMeta> = self
            .timed(self.store.list(Some(&prefix)).try_collect())
            .await?;
        let mut hours: BTreeMap<String, HourKept> = BTreeMap::new();
        for meta in &objects {
            let Some(name) = meta.location.filename().and_then(BatchName::parse) else {
                continue;
            };
            let parts: Vec<_> = meta.location.parts().collect();
            let Some(hour) = parts
                .len()
                .checked_sub(2)
                .map(|i| parts[i].as_ref().to_owned())
            else {
                continue;
            };
            let h = hours.entry(hour).or_insert(HourKept {
                first_ms: name.first_ms,
                last_ms: name.last_ms,
                ..HourKept::default()
            });
            h.bytes += meta.size;
            h.batches += 1;
            h.first_ms = h.first_ms.min(name.first_ms);
            h.last_ms = h.last_ms.max(name.last_ms);
        }
        lock(&self.kept).insert(instance.to_owned(), hours);
        Ok(objects)
    }

    /// Deletes what `instance` keeps beyond its retention (older than `days`) and its quota
    /// (oldest first). Returns the batches deleted.
    pub async fn enforce(
        &self,
        instance: &str,
        retention: Retention,
        now_ms: i64,
    ) -> HistoryResult<usize> {
        let objects = self.reindex(instance).await?;
        let cutoff = now_ms - i64::from(retention.days) * 24 * HOUR_MS;
        let mut batches: Vec<(BatchName, object_store::ObjectMeta)> = objects
            .into_iter()
            .filter_map(|meta| Some((BatchName::parse(meta.location.filename()?)?, meta)))
            .collect();
        batches.sort_by(|a, b| (a.0.first_ms, &a.1.location).cmp(&(b.0.first_ms, &b.1.location)));
        let mut total: u64 = batches.iter().map(|(_, m)| m.size).sum();
        let mut doomed = Vec::new();
        for (name, meta) in &batches {
            if name.last_ms < cutoff || total > retention.quota_bytes {
                total -= meta.size;
                doomed.push(meta.location.clone());
            }
        }
        let deleted = self.delete_all(doomed).await?;
        if deleted > 0 {
            self.forget_listings(instance);
            self.reindex(instance).await?;
        }
        Ok(deleted)
    }

    /// Deletes everything `instance` keeps (it was deleted), and what waits to be written.
    pub async fn purge(&self, instance: &str) -> HistoryResult<usize> {
        // Not while a flush may still write what it took of the instance before.
        let _one = self.flushing.lock().await;
        {
            let mut buffer = lock(&self.buffer);
            if let Some(waiting) = buffer.by_instance.remove(instance) {
                buffer.bytes -= waiting.iter().map(|r| r.body.len()).sum::<usize>();
            }
            self.metrics.set_history_buffer(buffer.bytes);
        }
        let prefix = self.instance_root(instance);
        let objects: Vec<object_store::ObjectMeta> = self
            .timed(self.store.list(Some(&prefix)).try_collect())
            .await?;
        let deleted = self
            .delete_all(objects.into_iter().map(|m| m.location).collect())
            .await?;
        lock(&self.kept).remove(instance);
        self.forget_listings(instance);
        let mut past = lock(&self.past);
        let folded = past.folded.remove(instance);
        if let Some(folded) = &folded {
            past.folded_bytes -= folded.bytes;
        }
        let windows: Vec<_> = past
            .windows
            .extract_if(|(i, ..), _| i == instance)
            .collect();
        let renders: Vec<_> = past
            .renders
            .extract_if(|((i, _), _), _| i == instance)
            .collect();
        if !renders.is_empty() {
            past.render_bytes = past.renders.values().map(|(_, b, _)| b).sum();
        }
        drop(past);
        if folded.is_some() || !windows.is_empty() || !renders.is_empty() {
            background::free((folded, windows, renders));
        }
        Ok(deleted)
    }

    fn forget_listings(&self, instance: &str) {
        lock(&self.listings).retain(|(i, _), _| i != instance);
        lock(&self.headers).retain(|p, _| !p.prefix_matches(&self.instance_root(instance)));
    }

    async fn delete_all(&self, paths: Vec<Path>) -> HistoryResult<usize> {
        let count = paths.len();
        futures_util::stream::iter(paths)
            .map(|path| async move {
                match self.timed(self.store.delete(&path)).await {
                    Ok(()) | Err(HistoryError::Store(object_store::Error::NotFound { .. })) => {
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
        if count > 0 {
            self.metrics.record_history("deleted", count as u64);
        }
        Ok(count)
    }

    /// The window of `instance` as it was at `at_ms` (the reports that arrived in the 15 s
    /// before), merged with the metric `samples` asked for: made once and cached, for the past
    /// does not change.
    pub async fn window_at(
        &self,
        instance: &str,
        at_ms: i64,
        now_ms: i64,
        limits: Limits,
        max_nodes: usize,
        samples: Samples,
    ) -> HistoryResult<PastWindow> {
        let key = (instance.to_owned(), at_ms, samples);
        // A window let go of is a whole merged report: freeing it takes milliseconds, which are
        // not this read's to wait for (nor the async runtime's).
        let mut gone = None;
        let cell = {
            let mut past = lock(&self.past);
            past.tick += 1;
            let tick = past.tick;
            if let Some((used, cell)) = past.windows.get_mut(&key) {
                *used = tick;
                cell.clone()
            } else {
                if past.windows.len() >= MAX_PAST_WINDOWS
                    && let Some(oldest) = past
                        .windows
                        .iter()
                        .min_by_key(|(_, (used, _))| *used)
                        .map(|(k, _)| k.clone())
                {
                    gone = past.windows.remove(&oldest);
                }
                let cell = Arc::new(tokio::sync::OnceCell::new());
                past.windows.insert(key.clone(), (tick, cell.clone()));
                cell
            }
        };
        if let Some(gone) = gone {
            background::free(gone);
        }
        let made = cell
            .get_or_try_init(|| {
                self.make_window(instance, at_ms, now_ms, limits, max_nodes, samples)
            })
            .await
            .cloned();
        if made.is_err() {
            lock(&self.past)
                .windows
                .retain(|k, (_, c)| k != &key || !Arc::ptr_eq(c, &cell));
        }
        made
    }

    async fn make_window(
        &self,
        instance: &str,
        at_ms: i64,
        now_ms: i64,
        limits: Limits,
        max_nodes: usize,
        samples: Samples,
    ) -> HistoryResult<PastWindow> {
        let kept = self.kept(instance).await?;
        // Made from the folded parts of a moment shortly before, if they are kept: then only the
        // reports since are read and folded. Parts of this very moment (made for views, which
        // keep the newest samples, and now asked with every sample for node details, or the other
        // way round) need no report at all.
        let (from_ms, start) = match self.take_folded(instance, at_ms) {
            Some((before_ms, parts)) => (before_ms, parts),
            // The live window keeps a report until it is more than `WINDOW_MS` old: one that
            // arrived exactly `WINDOW_MS` before the moment is still in it. (A report older than
            // that stays while a newer one in its one-second bucket does; moments are whole
            // seconds, so such a bucket begins in the range.)
            None => (at_ms - WINDOW_MS - 1, Vec::new()),
        };
        let records = if from_ms < at_ms {
            self.records_between(instance, from_ms, at_ms, now_ms)
                .await?
        } else {
            Vec::new()
        };
        let _turn = self
            .builders
            .acquire()
            .await
            .map_err(|e| HistoryError::Other(e.to_string()))?;
        let (report, parts) = tokio::task::spawn_blocking(move || {
            fold_window(start, records, at_ms, limits, max_nodes, samples)
        })
        .await
        .map_err(|e| HistoryError::Other(e.to_string()))?;
        let coverage = if !parts.is_empty() {
            Coverage::Kept
        } else if kept.from_ms.is_none_or(|from| at_ms < from) {
            Coverage::BeforeHistory
        } else {
            Coverage::Gap
        };
        self.keep_folded(instance, at_ms, parts);
        Ok(PastWindow {
            report: Arc::new(report),
            coverage,
            kept_from_ms: kept.from_ms,
        })
    }

    /// The folded parts of the latest moment of `instance` kept that is `at_ms` or before it by
    /// less than a window, taken out of the cache.
    fn take_folded(&self, instance: &str, at_ms: i64) -> Option<(i64, FoldedParts)> {
        let mut past = lock(&self.past);
        let usable = past
            .folded
            .get(instance)
            .is_some_and(|f| f.at_ms <= at_ms && at_ms - f.at_ms < WINDOW_MS);
        if !usable {
            return None;
        }
        let moment = past.folded.remove(instance)?;
        past.folded_bytes -= moment.bytes;
        past.stepped += 1;
        Some((moment.at_ms, moment.parts))
    }

    /// Keeps the folded parts of `instance` at `at_ms` for a step forward, in place of what was
    /// kept of it, letting go of the least recently used instances' to stay within the configured
    /// bound (a moment over half of it is not kept). What is let go is dropped off the async
    /// runtime.
    fn keep_folded(&self, instance: &str, at_ms: i64, parts: Vec<(String, FoldedWindow, usize)>) {
        let bound = self.config.folded_bytes;
        let bytes: usize = parts.iter().map(|(_, _, b)| b).sum();
        let parts: FoldedParts = parts.into_iter().map(|(p, w, _)| (p, w)).collect();
        let mut gone = Vec::new();
        {
            let mut past = lock(&self.past);
            if let Some(old) = past.folded.remove(instance) {
                past.folded_bytes -= old.bytes;
                gone.push(old.parts);
            }
            if bytes > bound / 2 || parts.is_empty() {
                gone.push(parts);
            } else {
                while past.folded_bytes + bytes > bound {
                    let Some(oldest) = past
                        .folded
                        .iter()
                        .min_by_key(|(_, f)| f.used)
                        .map(|(k, _)| k.clone())
                    else {
                        break;
                    };
                    if let Some(old) = past.folded.remove(&oldest) {
                        past.folded_bytes -= old.bytes;
                        gone.push(old.parts);
                    }
                }
                past.tick += 1;
                let used = past.tick;
                past.folded_bytes += bytes;
                past.folded.insert(
                    instance.to_owned(),
                    FoldedMoment {
                        used,
                        at_ms,
                        bytes,
                        parts,
                    },
                );
            }
        }
        if !gone.is_empty() {
            background::free(gone);
        }
    }

    /// A render of a past window made before, under `key`.
    pub fn past_render(&self, instance: &str, at_ms: i64, key: &str) -> Option<PastRender> {
        let mut past = lock(&self.past);
        past.tick += 1;
        let tick = past.tick;
        let entry = past
            .renders
            .get_mut(&((instance.to_owned(), at_ms), key.to_owned()))?;
        entry.0 = tick;
        Some(entry.2.clone())
    }

    /// Keeps a render of a past window for the next readers of the same.
    pub fn keep_past_render(&self, instance: &str, at_ms: i64, key: &str, rendered: PastRender) {
        // A view's nodes, kept as their JSON, and the gzipped answer.
        let bytes = match &rendered.rendered {
            super::slot::Rendered::View(_, a) | super::slot::Rendered::List(_, a, _) => {
                a.json_len + a.gzip.len()
            }
        };
        if bytes > MAX_PAST_RENDER_BYTES / 4 {
            return;
        }
        let mut gone = Vec::new();
        let mut past = lock(&self.past);
        while past.render_bytes + bytes > MAX_PAST_RENDER_BYTES {
            let Some(oldest) = past
                .renders
                .iter()
                .min_by_key(|(_, (used, _, _))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, b, render)) = past.renders.remove(&oldest) {
                past.render_bytes -= b;
                gone.push(render);
            }
        }
        past.tick += 1;
        let tick = past.tick;
        let key = ((instance.to_owned(), at_ms), key.to_owned());
        if let Some((_, old, render)) = past.renders.insert(key, (tick, bytes, rendered)) {
            past.render_bytes -= old;
            gone.push(render);
        }
        past.render_bytes += bytes;
        drop(past);
        if !gone.is_empty() {
            background::free(gone);
        }
    }

    /// Up to `points` samples of the live window's node counts (per view and per report
    /// topology) between `from_ms` and `to_ms`, one per batch spread evenly over the range (read
    /// from batch headers).
    pub async fn timeline(
        &self,
        instance: &str,
        from_ms: i64,
        to_ms: i64,
        points: usize,
        now_ms: i64,
    ) -> HistoryResult<Vec<BatchHeader>> {
        let mut batches = Vec::new();
        for hour in batch::hours_between(from_ms, to_ms) {
            let listing = self.list_hour(instance, &hour, now_ms).await?;
            batches.extend(
                listing
                    .iter()
                    .filter(|(_, name, _)| name.last_ms >= from_ms && name.first_ms <= to_ms)
                    .map(|(path, _, _)| path.clone()),
            );
        }
        let points = points.clamp(1, MAX_TIMELINE_POINTS);
        let picked: Vec<Path> = if batches.len() <= points {
            batches
        } else {
            (0..points)
                .map(|i| batches[i * (batches.len() - 1) / (points - 1).max(1)].clone())
                .collect()
        };
        let mut headers: Vec<BatchHeader> = futures_util::stream::iter(picked)
            .map(|path| async move {
                match self.read_header(&path).await {
                    Ok(h) => Ok(Some(h)),
                    Err(HistoryError::Store(object_store::Error::NotFound { .. }))
                    | Err(HistoryError::Batch(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(READS_AT_ONCE)
            .try_filter_map(|h| async move { Ok(h) })
            .try_collect()
            .await?;
        headers.sort_by_key(|h| h.last_ms);
        Ok(headers)
    }
}

/// Gzips a body kept as the probe sent it, if it was not already.
fn gzipped(mut r: Record) -> Record {
    use std::io::Write;
    if !r.gzipped {
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(r.body.len() / 6),
            flate2::Compression::default(),
        );
        if gz.write_all(&r.body).is_ok()
            && let Ok(out) = gz.finish()
        {
            r.body = out.into();
            r.gzipped = true;
        }
    }
    r
}

/// A window's probes' parts folded from history: the window merged, and the parts still in it
/// with their footprints (kept for a later moment).
type Folded = (Report, Vec<(String, FoldedWindow, usize)>);

/// Folds `records` (in arrival order) into the probes' parts `start` (empty, or the parts of a
/// moment before every record) as the live window would have folded them, and merges the window as
/// it was at `at_ms`. Each probe's reports fold into that probe's own part, as in [`slot::Slot`], so
/// the probes are folded and materialised on every core at once; the parts are then merged in the
/// order [`slot::Slot::parts`] gives them. Also returns the parts still in the window, with their
/// footprints, for a later moment. The window's metrics keep the `samples` asked for.
///
/// A probe folded from nothing has its reports folded as they are decoded; one that no longer
/// decodes (a limit lowered since, a damaged store) leaves the part partly folded, so the probe is
/// folded again, each report decoded whole first and the failing one left out. A part stepped from
/// `start` takes the few reports since that moment decoded whole (it cannot be folded again from
/// nothing: its older reports are not at hand).
fn fold_window(
    start: FoldedParts,
    records: Vec<(String, Record)>,
    at_ms: i64,
    limits: Limits,
    max_nodes: usize,
    samples: Samples,
) -> Folded {
    let max = usize::try_from(limits.max_report_bytes)
        .unwrap_or(usize::MAX)
        .max(16 << 20);
    let budget = BudgetLimits::for_report(max).with_elements(max_nodes.max(bounded::MAX_ELEMENTS));
    // Each probe's part, whether it came from `start`, and its reports.
    let mut by_probe: BTreeMap<String, (FoldedWindow, bool, Vec<Record>)> = start
        .into_iter()
        .map(|(probe, window)| (probe, (window, true, Vec::new())))
        .collect();
    for (_, r) in records {
        by_probe.entry(r.probe.clone()).or_default().2.push(r);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let probes: Vec<_> = by_probe.into_iter().collect();
    let mut done: Vec<_> =
        fold::each_on_cores(probes, cores, |(probe, (mut window, started, records))| {
            let decoding = if started {
                Decoding::Whole
            } else {
                Decoding::AsItComes
            };
            if !fold_probe(&mut window, &records, at_ms, max, budget, decoding) {
                window = FoldedWindow::default();
                fold_probe(&mut window, &records, at_ms, max, budget, Decoding::Whole);
            }
            let oldest = window.oldest_at()?;
            let materialized = window.materialize_with(samples);
            let bytes = window.footprint();
            Some((oldest, probe, materialized, window, bytes))
        })
        .into_iter()
        .flatten()
        .collect();
    done.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    let mut materialized = Vec::with_capacity(done.len());
    let mut parts = Vec::with_capacity(done.len());
    for (_, probe, m, window, bytes) in done {
        materialized.push(m);
        parts.push((probe, window, bytes));
    }
    (fold::merge_materialized(materialized, true), parts)
}

/// How [`fold_probe`] decodes a kept report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoding {
    /// Folded node by node as it is decoded ([`FoldedWindow::accept_encoded`]): quicker, but a
    /// report that fails to decode leaves the part partly folded.
    AsItComes,
    /// Decoded whole, then folded; a report that fails to decode is left out.
    Whole,
}

/// Folds one probe's reports (in arrival order) into its part as the live window would have
/// ([`slot::fold_into`]), and leaves the part as it was at `at_ms`. False if a report failed to
/// decode while it was folded as it came (the part is then partly folded: fold it again).
fn fold_probe(
    window: &mut FoldedWindow,
    records: &[Record],
    at_ms: i64,
    max: usize,
    budget: BudgetLimits,
    decoding: Decoding,
) -> bool {
    for r in records {
        let folded = decode::with_inflated(&r.body, r.gzipped, max, |raw| match decoding {
            Decoding::AsItComes => {
                window.expire(r.at_ms, WINDOW_MS);
                window.accept_encoded(raw, r.format, budget, r.at_ms, slot::QUANTUM_MS)
            }
            Decoding::Whole => {
                let report: WireReport = decode::parse(raw, r.format, budget)?;
                window.expire(r.at_ms, WINDOW_MS);
                window.accept(report, r.at_ms, slot::QUANTUM_MS);
                Ok(())
            }
        });
        match folded {
            Ok(Ok(())) => {}
            // A body that does not inflate was not folded at all.
            Err(e) => {
                tracing::debug!(error = %e, "a kept report does not inflate; left out of its window");
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "a kept report does not decode; left out of its window");
                if decoding == Decoding::AsItComes {
                    return false;
                }
            }
        }
    }
    window.expire(at_ms, WINDOW_MS);
    true
}

/// Distinct nodes per report topology in `parts` at `now_ms` (the timeline's counts), endpoints
/// left out: no view shows them as they are, and they outnumber everything else.
pub fn node_counts(parts: &[slot::Part], now_ms: i64) -> BTreeMap<String, u64> {
    // Each part's ids of a topology are sorted and distinct: the parts' runs are merged (shared
    // names, not copies of their text) and the ids they have in common counted once.
    let mut seen: BTreeMap<String, Vec<Name>> = BTreeMap::new();
    for part in parts {
        let mut part = slot::lock(part);
        part.expire(now_ms, WINDOW_MS);
        for (topology, ids) in part
            .node_ids()
            .filter(|(t, ids)| *t != "Endpoint" && ids.len() > 0)
        {
            match seen.get_mut(topology) {
                Some(seen) => seen.extend(ids.cloned()),
                None => {
                    seen.insert(topology.to_owned(), ids.cloned().collect());
                }
            }
        }
    }
    seen.into_iter()
        .map(|(t, mut ids)| {
            ids.sort();
            ids.dedup();
            (t, ids.len() as u64)
        })
        .collect()
}

#[cfg(test)]
mod tests;
