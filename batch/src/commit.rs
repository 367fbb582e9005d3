//! Exactly once, under replay, crashes and concurrency, with nothing but conditional writes
//! (so the same code runs on a directory and on S3).
//!
//! 1. A run writes its record (`aggregating`, with a heartbeat) before it claims anything.
//! 2. It claims each input with a create-if-absent write. An input already claimed is
//!    committed (skip), claimed by a live run (skip: that run counts it), or claimed by a run
//!    that is sealed (finish that run, then skip), aborted, gone, or stale (abort it; then take
//!    the claim over with a compare-and-swap).
//! 3. It reads only what it claimed, keeping its heartbeat fresh.
//! 4. It writes its cells as immutable segments (one per day), then seals: one compare-and-swap
//!    of its own record from `aggregating` to `sealed`, listing its inputs and segments. Sealing
//!    and being taken over are the two ways out of `aggregating`; the swap lets one happen.
//! 5. Finishing a sealed run (by itself or by any later run) publishes it: one compare-and-swap
//!    of the manifest adds its segments under the next sequence number and moves the watermark.
//!    That is the only write to a shared object, and its retry re-reads nothing but the
//!    manifest. A run already published (its segments in the manifest, or compacted into the
//!    base buckets) is not published again. Then its inputs are marked committed and its record
//!    goes.
//! 6. Compaction (see [`crate::compact`]) folds published segments into the base buckets;
//!    readers see the same answer before, during and after.

use crate::failpoint;
use crate::ledger::{self, InputRecord, InputState, RunRecord, RunState, SegmentRef};
use srctraffic::bucket::{DayBucket, RunId};
use srctraffic::published;
use srctraffic::segment;
use srctraffic::store::manifest::{self, Manifest, Published};
use srctraffic::store::{Precondition, Store, StoreError, Version, keys};
use srctraffic::time::Minute;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A commit failure.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A ledger object cannot be read.
    #[error("ledger object {key} is unreadable: {reason}")]
    Corrupt {
        /// Its key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Another run took this run over after its heartbeat went stale.
    #[error(
        "run {0} was taken over by another run after its heartbeat went stale; nothing of it was applied, run again"
    )]
    LostLease(RunId),
}

type Result<T> = std::result::Result<T, CommitError>;

/// What claiming an input found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This run reads it.
    Mine,
    /// Already counted.
    Committed,
    /// A live run is reading it.
    Busy(String),
}

/// A run in flight.
#[derive(Debug)]
pub struct Run {
    /// Its id.
    pub id: RunId,
    record: Mutex<(RunRecord, Version)>,
}

/// The ledger in a store.
#[derive(Debug, Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    lease: Duration,
    host: String,
    world: Arc<dyn World>,
}

/// What finishing runs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Runs finished.
    pub runs: usize,
    /// Shared objects written (the manifest, once per run).
    pub objects: usize,
    /// Days the finished runs published segments of.
    pub days: Vec<srctraffic::Day>,
    /// Sealed runs that could not be finished: (run, why). They are tried again next time.
    pub stuck: Vec<(String, String)>,
}

/// What the ledger asks of the world: the time, who this process is, and whether a process on
/// this host lives. Injected, so that takeover and staleness are tested without waiting.
pub trait World: Send + Sync + std::fmt::Debug {
    /// Unix seconds now.
    fn now(&self) -> i64;
    /// This host's name.
    fn host(&self) -> String;
    /// This process's id.
    fn pid(&self) -> u32;
    /// Whether a process with this id runs on this host.
    fn pid_alive(&self, pid: u32) -> bool;
}

/// The real clock, host and processes.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealWorld;

impl World for RealWorld {
    fn now(&self) -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }

    fn host(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned())
    }

    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn pid_alive(&self, pid: u32) -> bool {
        // SAFETY: signal 0 only checks that the process exists.
        let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Ledger {
    /// A ledger over `store`; a run whose heartbeat is older than `lease` may be taken over.
    pub fn new(store: Arc<dyn Store>, lease: Duration) -> Ledger {
        Ledger::with_world(store, lease, Arc::new(RealWorld))
    }

    /// A ledger that asks `world` for the time, its host and process liveness.
    pub fn with_world(store: Arc<dyn Store>, lease: Duration, world: Arc<dyn World>) -> Ledger {
        Ledger {
            store,
            lease,
            host: world.host(),
            world,
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Unix seconds now, as the world says.
    pub fn now(&self) -> i64 {
        self.world.now()
    }

    /// How long a silent run (or compaction) keeps its claim.
    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The clock, host and processes this ledger asks.
    pub fn world(&self) -> &Arc<dyn World> {
        &self.world
    }

    async fn read<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Version)>> {
        match self.store.get_versioned(key).await? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(&v.bytes)
                .map(|r| Some((r, v.version)))
                .map_err(|e| CommitError::Corrupt {
                    key: key.to_owned(),
                    reason: e.to_string(),
                }),
        }
    }

    fn alive(&self, r: &RunRecord) -> bool {
        if r.host == self.host && !self.world.pid_alive(r.pid) {
            return false;
        }
        self.now() - r.heartbeat <= self.lease.as_secs() as i64
    }

    /// Starts a run: writes its record.
    pub async fn begin(&self) -> Result<Run> {
        let id = RunId::random();
        let rec = RunRecord {
            run: id.to_string(),
            state: RunState::Aggregating,
            heartbeat: self.now(),
            host: self.host.clone(),
            pid: self.world.pid(),
            inputs: Vec::new(),
            max_minute: None,
            segments: Vec::new(),
        };
        let v = self
            .store
            .put(&ledger::run_key(id), json(&rec), Precondition::Absent)
            .await?;
        Ok(Run {
            id,
            record: Mutex::new((rec, v)),
        })
    }

    /// Refreshes a run's heartbeat; fails if the run was taken over.
    pub async fn heartbeat(&self, run: &Run) -> Result<()> {
        let at = self.now();
        self.update_own(run, |rec| rec.heartbeat = at).await
    }

    /// Changes the run's own record with a compare-and-swap from the version it last wrote; a
    /// conflict means another run took it over.
    async fn update_own(&self, run: &Run, change: impl FnOnce(&mut RunRecord)) -> Result<()> {
        let mut g = run.record.lock().await;
        let mut rec = g.0.clone();
        change(&mut rec);
        match self
            .store
            .put(
                &ledger::run_key(run.id),
                json(&rec),
                Precondition::Matches(g.1.clone()),
            )
            .await
        {
            Ok(v) => {
                *g = (rec, v);
                Ok(())
            }
            Err(StoreError::Conflict { .. }) => Err(CommitError::LostLease(run.id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Claims an input for a run.
    pub async fn claim(&self, run: &Run, identity: &str, source: &str) -> Result<Claim> {
        let key = ledger::input_key(identity);
        let mine = InputRecord {
            state: InputState::Claimed,
            run: run.id.to_string(),
            source: source.to_owned(),
            at: self.now(),
        };
        loop {
            let Some((rec, ver)) = self.read::<InputRecord>(&key).await? else {
                match self
                    .store
                    .put(&key, json(&mine), Precondition::Absent)
                    .await
                {
                    Ok(_) => return Ok(Claim::Mine),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            };
            if rec.state == InputState::Committed {
                return Ok(Claim::Committed);
            }
            if rec.run == mine.run {
                return Ok(Claim::Mine);
            }
            let holder = RunId::parse(&rec.run);
            let held = match holder {
                Some(h) => self.read::<RunRecord>(&ledger::run_key(h)).await?,
                None => None,
            };
            match (holder, held) {
                (Some(h), Some((q, _)))
                    if q.state == RunState::Sealed && q.inputs.iter().any(|i| i == identity) =>
                {
                    match self.finish(h).await {
                        Ok(_) => {}
                        // Counted by a run that cannot finish yet: it is that run's input.
                        Err(CommitError::Corrupt { .. }) => return Ok(Claim::Busy(q.run)),
                        Err(e) => return Err(e),
                    }
                }
                (Some(h), Some((q, qv))) if q.state == RunState::Aggregating => {
                    if self.alive(&q) {
                        return Ok(Claim::Busy(q.run));
                    }
                    tracing::warn!(run = %q.run, host = %q.host, pid = q.pid, "taking over a stale run");
                    let mut dead = q;
                    dead.state = RunState::Aborted;
                    match self
                        .store
                        .put(&ledger::run_key(h), json(&dead), Precondition::Matches(qv))
                        .await
                    {
                        Ok(_) | Err(StoreError::Conflict { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                // Aborted, gone, or sealed without this input: the claim is void.
                _ => match self
                    .store
                    .put(&key, json(&mine), Precondition::Matches(ver))
                    .await
                {
                    Ok(_) => return Ok(Claim::Mine),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                },
            }
        }
    }

    /// Claims many inputs, `(identity, source)` each: inputs nobody has claimed are taken in one
    /// batch of create-if-absent writes (one flush on disk, one round of requests on S3); the
    /// rest go through [`Ledger::claim`] one by one.
    pub async fn claim_all(&self, run: &Run, inputs: &[(String, String)]) -> Result<Vec<Claim>> {
        let keys: Vec<String> = inputs.iter().map(|(id, _)| ledger::input_key(id)).collect();
        let current = self.store.get_many_versioned(&keys).await?;
        let at = self.now();
        let mut fresh = Vec::new();
        let mut fresh_at = Vec::new();
        for (i, cur) in current.iter().enumerate() {
            if cur.is_none() {
                let rec = InputRecord {
                    state: InputState::Claimed,
                    run: run.id.to_string(),
                    source: inputs[i].1.clone(),
                    at,
                };
                fresh.push((keys[i].clone(), json(&rec), Precondition::Absent));
                fresh_at.push(i);
            }
        }
        let mut out: Vec<Option<Claim>> = vec![None; inputs.len()];
        for (i, r) in fresh_at.into_iter().zip(self.store.put_many(fresh).await) {
            match r {
                Ok(_) => out[i] = Some(Claim::Mine),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut claims = Vec::with_capacity(inputs.len());
        for (i, c) in out.into_iter().enumerate() {
            claims.push(match c {
                Some(c) => c,
                None => self.claim(run, &inputs[i].0, &inputs[i].1).await?,
            });
        }
        Ok(claims)
    }

    /// Writes a run's cells as segments, one per day, and seals it, listing the inputs they
    /// hold. `cells` must be sorted by day, then domain.
    pub async fn seal(
        &self,
        run: &Run,
        inputs: Vec<String>,
        max_minute: Option<i64>,
        cells: Vec<segment::Cell>,
    ) -> Result<()> {
        let refs = crate::segments::write_all(&self.store, run.id, cells).await?;
        self.seal_written(run, inputs, max_minute, refs).await
    }

    /// Seals a run whose segments are written (see [`crate::segments`]): one compare-and-swap
    /// of its own record, listing the inputs they hold and the segments.
    pub async fn seal_written(
        &self,
        run: &Run,
        inputs: Vec<String>,
        max_minute: Option<i64>,
        segments: Vec<SegmentRef>,
    ) -> Result<()> {
        failpoint::hit("sealing");
        self.update_own(run, |rec| {
            rec.state = RunState::Sealed;
            rec.inputs = inputs;
            rec.max_minute = max_minute;
            rec.segments = segments;
        })
        .await
    }

    /// Gives a run up: its claims become void. Nothing of it was published.
    pub async fn abort(&self, run: &Run) -> Result<()> {
        // Taken over already is as good as aborted.
        match self
            .update_own(run, |rec| rec.state = RunState::Aborted)
            .await
        {
            Ok(()) | Err(CommitError::LostLease(_)) => {}
            Err(e) => return Err(e),
        }
        self.delete_segments(run.id).await?;
        self.store.delete(&ledger::run_key(run.id)).await?;
        Ok(())
    }

    /// Deletes whatever segments an unpublished run wrote.
    async fn delete_segments(&self, id: RunId) -> Result<()> {
        let suffix = format!("/{id}.seg");
        for key in self.store.list(keys::SEGMENTS).await? {
            if key.ends_with(&suffix) {
                self.store.delete(&key).await?;
            }
        }
        Ok(())
    }

    /// Whether a sealed run is published already: its segments are in the manifest, or were
    /// compacted (then its first segment is gone, or the base bucket of its first cell holds
    /// it). Compaction writes the bases before it takes segments out of the manifest and takes
    /// them out before it deletes them, so with the manifest read first this cannot miss one.
    async fn published(&self, id: RunId, rec: &RunRecord, m: &Manifest) -> Result<bool> {
        if m.holds_run(id) {
            return Ok(true);
        }
        let Some(first) = rec.segments.first() else {
            return Ok(false);
        };
        let (Some(day), key) = (first.day(), first.key(id)) else {
            return Err(CommitError::Corrupt {
                key: ledger::run_key(id),
                reason: format!("bad segment day {:?}", first.day),
            });
        };
        // Read afresh, not from the readers' cache: whether it is gone is the question.
        let index = match published::segment_index(self.store.as_ref(), &key).await {
            Ok(Some((index, _))) => index,
            Ok(None) => return Ok(true),
            Err(StoreError::Corrupt { key, reason }) => {
                return Err(CommitError::Corrupt { key, reason });
            }
            Err(e) => return Err(e.into()),
        };
        let Some(domain) = index.first() else {
            return Ok(false);
        };
        let bkey = keys::bucket(day, domain);
        Ok(match self.store.get(&bkey).await? {
            Some(b) => DayBucket::parse_for(&b, domain, day)
                .map_err(|e| CommitError::Corrupt {
                    key: bkey,
                    reason: e.to_string(),
                })?
                .holds(id),
            None => false,
        })
    }

    /// Publishes a sealed run: adds its segments to the manifest under the next sequence
    /// number and moves the watermark. With `check`, not if it is published already: a run
    /// that publishes itself skips that (a failed compare-and-swap wrote nothing), a run that
    /// finishes another's cannot know. Two runs publishing one run at the same moment can
    /// both succeed: readers and compaction take a run's segments once, by run id.
    async fn publish(&self, id: RunId, rec: &RunRecord, check: bool) -> Result<()> {
        loop {
            let (mut m, version) = manifest::read(self.store.as_ref()).await?;
            if check && self.published(id, rec, &m).await? {
                return Ok(());
            }
            let before = m.clone();
            if !rec.segments.is_empty() {
                m.seq += 1;
                for r in &rec.segments {
                    let day = r.day().ok_or_else(|| CommitError::Corrupt {
                        key: ledger::run_key(id),
                        reason: format!("bad segment day {:?}", r.day),
                    })?;
                    m.segments.push(Published::of_run(m.seq, id, day, r.cells));
                }
            }
            if let Some(w) = rec.max_minute {
                m.advance(Minute(w));
            }
            if m == before {
                return Ok(());
            }
            let when = match version {
                Some(v) => Precondition::Matches(v),
                None => Precondition::Absent,
            };
            let bytes = serde_json::to_vec_pretty(&m).unwrap_or_default();
            match self.store.put(manifest::KEY, bytes, when).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Publishes a sealed run, whoever started it; safe to run twice or concurrently.
    pub async fn finish(&self, id: RunId) -> Result<Finished> {
        self.finish_as(id, true).await
    }

    /// Publishes the run this process sealed.
    pub async fn finish_own(&self, run: &Run) -> Result<Finished> {
        self.finish_as(run.id, false).await
    }

    async fn finish_as(&self, id: RunId, check: bool) -> Result<Finished> {
        let Some((rec, _)) = self.read::<RunRecord>(&ledger::run_key(id)).await? else {
            return Ok(Finished::default());
        };
        if rec.state != RunState::Sealed {
            return Ok(Finished::default());
        }
        self.publish(id, &rec, check).await?;
        failpoint::hit("published");
        let at = self.now();
        let marks = rec
            .inputs
            .iter()
            .map(|i| {
                let r = InputRecord {
                    state: InputState::Committed,
                    run: rec.run.clone(),
                    source: String::new(),
                    at,
                };
                (ledger::input_key(i), json(&r), Precondition::None)
            })
            .collect();
        for r in self.store.put_many(marks).await {
            r?;
        }
        failpoint::hit("committed");
        self.store.delete(&ledger::run_key(id)).await?;
        failpoint::hit("finishing");
        Ok(Finished {
            runs: 1,
            objects: 1,
            stuck: Vec::new(),
            days: rec.segments.iter().filter_map(SegmentRef::day).collect(),
        })
    }

    /// Finishes sealed runs, gives up stale ones left by crashed runs, and sweeps segments no
    /// run owns (of aborted runs, or compacted and not yet deleted).
    pub async fn recover(&self) -> Result<Finished> {
        let mut done = Finished::default();
        let listed = self.store.list(ledger::RUNS).await?;
        for key in listed {
            let Some(id) = key
                .strip_prefix(ledger::RUNS)
                .and_then(|k| k.strip_suffix(".json"))
                .and_then(RunId::parse)
            else {
                continue;
            };
            let Some((rec, ver)) = self.read::<RunRecord>(&key).await? else {
                continue;
            };
            match rec.state {
                RunState::Sealed => {
                    tracing::info!(run = %rec.run, "finishing a sealed run left by an earlier process");
                    match self.finish(id).await {
                        Ok(f) => {
                            done.runs += f.runs;
                            done.objects += f.objects;
                            done.days.extend(f.days);
                        }
                        // One bad object must not stop every later run: this one stays sealed
                        // (its inputs stay held) until the object is mended.
                        Err(e @ CommitError::Corrupt { .. }) => {
                            tracing::error!(run = %rec.run, "a sealed run cannot be finished yet: {e}");
                            done.stuck.push((rec.run.clone(), e.to_string()));
                        }
                        Err(e) => return Err(e),
                    }
                }
                RunState::Aggregating if !self.alive(&rec) => {
                    let mut dead = rec;
                    dead.state = RunState::Aborted;
                    if self
                        .store
                        .put(&key, json(&dead), Precondition::Matches(ver))
                        .await
                        .is_ok()
                    {
                        self.delete_segments(id).await?;
                        self.store.delete(&key).await?;
                    }
                }
                RunState::Aborted => {
                    self.delete_segments(id).await?;
                    self.store.delete(&key).await?;
                }
                RunState::Aggregating => {}
            }
        }
        self.sweep_segments().await?;
        Ok(done)
    }

    /// Deletes segments that neither a run record nor the manifest names. The manifest is read
    /// after the listing, and a run writes its record before its segments, so a segment
    /// written or published meanwhile is never taken. A merged segment is written under its
    /// day's compaction lease, so it is left alone while a compaction holds that day.
    async fn sweep_segments(&self) -> Result<()> {
        let listed = self.store.list(keys::SEGMENTS).await?;
        if listed.is_empty() {
            return Ok(());
        }
        let runs: std::collections::HashSet<String> = self
            .store
            .list(ledger::RUNS)
            .await?
            .iter()
            .filter_map(|k| k.strip_prefix(ledger::RUNS)?.strip_suffix(".json"))
            .map(str::to_owned)
            .collect();
        let (m, _) = manifest::read(self.store.as_ref()).await?;
        let named: std::collections::HashSet<String> =
            m.segments.iter().map(Published::key).collect();
        for key in listed {
            if named.contains(&key) {
                continue;
            }
            if let Some((day, id)) = keys::parse_segment(&key) {
                if runs.contains(id) {
                    continue;
                }
                if crate::compact::is_merged(id) && crate::compact::day_busy(self, day).await? {
                    continue;
                }
            }
            self.store.delete(&key).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! The ledger in process, against the memory store, with the clock, host and process
    //! liveness injected.
    use super::*;
    use crate::compact;
    use srctraffic::store::MemoryStore;
    use srctraffic::{Day, DomainName, published};
    use std::collections::{BTreeMap, HashSet};
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A world whose clock moves when told and whose processes die when told.
    #[derive(Debug)]
    pub(crate) struct FakeWorld {
        now: AtomicI64,
        pid: u32,
        dead: std::sync::Mutex<HashSet<u32>>,
    }

    impl FakeWorld {
        pub(crate) fn new(pid: u32) -> Arc<FakeWorld> {
            Arc::new(FakeWorld {
                now: AtomicI64::new(1_600_000_000),
                pid,
                dead: Default::default(),
            })
        }
        pub(crate) fn advance(&self, secs: i64) {
            self.now.fetch_add(secs, Ordering::SeqCst);
        }
        pub(crate) fn kill(&self, pid: u32) {
            self.dead.lock().unwrap().insert(pid);
        }
    }

    impl World for FakeWorld {
        fn now(&self) -> i64 {
            self.now.load(Ordering::SeqCst)
        }
        fn host(&self) -> String {
            "test-host".into()
        }
        fn pid(&self) -> u32 {
            self.pid
        }
        fn pid_alive(&self, pid: u32) -> bool {
            !self.dead.lock().unwrap().contains(&pid)
        }
    }

    pub(crate) fn cell(domain: &str, day: i32, minute: usize, bytes: u64) -> DayBucket {
        let mut c = DayBucket::new(DomainName::parse(domain).unwrap(), Day(day));
        c.minutes[minute] = bytes;
        c.requests[minute] = 1;
        c
    }

    /// Buckets as a run seals them.
    pub(crate) fn encoded(cells: &[DayBucket]) -> Vec<segment::Cell> {
        cells.iter().map(segment::Cell::of).collect()
    }

    /// Claims `inputs`, seals `cells` (sorted by day) and publishes: a whole run.
    pub(crate) async fn run_with(
        ledger: &Ledger,
        inputs: &[&str],
        mut cells: Vec<DayBucket>,
    ) -> RunId {
        let run = ledger.begin().await.unwrap();
        let asks: Vec<(String, String)> = inputs
            .iter()
            .map(|i| (i.to_string(), i.to_string()))
            .collect();
        let claims = ledger.claim_all(&run, &asks).await.unwrap();
        assert!(claims.iter().all(|c| *c == Claim::Mine), "{claims:?}");
        cells.sort_by(|a, b| (a.day, &a.domain).cmp(&(b.day, &b.domain)));
        let inputs = inputs.iter().map(|s| s.to_string()).collect();
        ledger
            .seal(&run, inputs, Some(0), encoded(&cells))
            .await
            .unwrap();
        ledger.finish_own(&run).await.unwrap();
        run.id
    }

    /// Every (domain, day, minute) with bytes, as readers see the store.
    pub(crate) async fn totals(store: &dyn Store) -> BTreeMap<(String, i32, usize), u64> {
        let mut wanted = Vec::new();
        for day in published::days(store).await.unwrap() {
            for d in published::domains_of_day(store, day).await.unwrap() {
                wanted.push((d, day));
            }
        }
        let (_, cells) = published::read_cells(store, &wanted).await.unwrap();
        let mut out = BTreeMap::new();
        for b in cells.into_iter().flatten() {
            for (i, v) in b.minutes.iter().enumerate().filter(|(_, v)| **v > 0) {
                out.insert((b.domain.to_string(), b.day.0, i), *v);
            }
        }
        out
    }

    #[tokio::test]
    async fn a_run_is_seen_whole_only_once_published() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let world = FakeWorld::new(1);
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), world);
        let run = ledger.begin().await.unwrap();
        ledger
            .claim_all(&run, &[("in".into(), "in".into())])
            .await
            .unwrap();
        let cells = vec![
            cell("a.com", 10, 5, 7),
            cell("b.com", 10, 5, 8),
            cell("a.com", 11, 0, 9),
        ];
        ledger
            .seal(&run, vec!["in".into()], Some(11 * 1440), encoded(&cells))
            .await
            .unwrap();
        // Sealed, its segments written: readers see none of it.
        assert!(totals(store.as_ref()).await.is_empty());
        ledger.finish_own(&run).await.unwrap();
        let t = totals(store.as_ref()).await;
        assert_eq!(t.len(), 3);
        assert_eq!(t.values().sum::<u64>(), 24);
        // Publishing is one write to one shared object, whatever the run's size.
        let (m, _) = manifest::read(store.as_ref()).await.unwrap();
        assert_eq!((m.seq, m.segments.len()), (1, 2));
        assert_eq!(m.watermark(), Some(Minute(11 * 1440)));
        // Finishing again (as a recovering run would) publishes nothing twice.
        assert_eq!(ledger.finish(run.id).await.unwrap(), Finished::default());
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 24);
    }

    #[tokio::test]
    async fn compaction_at_every_step_never_changes_an_answer() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let world = FakeWorld::new(1);
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), world.clone());
        let mut truth = BTreeMap::new();
        for i in 0..12u64 {
            let domain = format!("d{}.com", i % 3);
            let cells = vec![
                cell(&domain, 10, (i % 5) as usize, i + 1),
                cell("all.com", 10, 0, 1),
            ];
            for c in &cells {
                for (m, v) in c.minutes.iter().enumerate().filter(|(_, v)| **v > 0) {
                    *truth.entry((c.domain.to_string(), 10, m)).or_default() += *v;
                }
            }
            run_with(&ledger, &[&format!("in{i}")], cells).await;
            assert_eq!(totals(store.as_ref()).await, truth, "after run {i}");
            if i % 4 == 3 {
                let done = compact::compact_all(&ledger).await.unwrap();
                assert_eq!(done.segments, 4);
                assert_eq!(
                    totals(store.as_ref()).await,
                    truth,
                    "after compacting at {i}"
                );
                let (m, _) = manifest::read(store.as_ref()).await.unwrap();
                assert!(m.segments.is_empty());
                assert!(store.list(keys::SEGMENTS).await.unwrap().is_empty());
            }
        }
    }

    /// A store that counts the writes reaching it, and fails every write of one key after the
    /// first `allow`, as a crash before that write would.
    #[derive(Debug)]
    struct Watched {
        inner: Arc<dyn Store>,
        key: &'static str,
        allow: std::sync::atomic::AtomicUsize,
        puts: std::sync::atomic::AtomicUsize,
    }

    impl Watched {
        fn new(inner: Arc<dyn Store>, key: &'static str, allow: usize) -> Arc<Watched> {
            Arc::new(Watched {
                inner,
                key,
                allow: allow.into(),
                puts: 0.into(),
            })
        }
    }

    #[async_trait::async_trait]
    impl Store for Watched {
        async fn get(&self, key: &str) -> std::result::Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key).await
        }
        async fn get_versioned(
            &self,
            key: &str,
        ) -> std::result::Result<Option<srctraffic::store::Versioned>, StoreError> {
            self.inner.get_versioned(key).await
        }
        async fn put(
            &self,
            key: &str,
            bytes: Vec<u8>,
            when: Precondition,
        ) -> std::result::Result<Version, StoreError> {
            self.puts.fetch_add(1, Ordering::SeqCst);
            if key == self.key
                && self
                    .allow
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
            {
                return Err(StoreError::Unavailable("injected".into()));
            }
            self.inner.put(key, bytes, when).await
        }
        async fn list(&self, prefix: &str) -> std::result::Result<Vec<String>, StoreError> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> std::result::Result<(), StoreError> {
            self.inner.delete(key).await
        }
    }

    #[tokio::test]
    async fn a_compaction_cut_off_after_folding_leaves_answers_exact_and_the_next_one_finishes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let world = FakeWorld::new(1);
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), world.clone());
        for i in 0..3 {
            run_with(
                &ledger,
                &[&format!("in{i}")],
                vec![cell("a.com", 10, 1, 10)],
            )
            .await;
        }
        let broken = Watched::new(store.clone(), manifest::KEY, 1);
        // Marked, the bases folded, then the manifest cannot be written: the segments stay
        // listed (and marked).
        let cut = Ledger::with_world(broken, Duration::from_secs(60), world.clone());
        assert!(compact::compact_all(&cut).await.is_err());
        let base = store
            .get(&keys::bucket(Day(10), &DomainName::parse("a.com").unwrap()))
            .await
            .unwrap();
        assert_eq!(DayBucket::decode(&base.unwrap()).unwrap().runs.len(), 3);
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 30);
        // A run published meanwhile is not in the bases yet, and counts once.
        run_with(&ledger, &["in9"], vec![cell("a.com", 10, 1, 1)]).await;
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 31);
        let done = compact::compact_all(&ledger).await.unwrap();
        assert_eq!((done.segments, done.objects), (4, 1));
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 31);
    }

    #[tokio::test]
    async fn a_reader_never_sees_a_base_newer_than_its_manifest() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let world = FakeWorld::new(1);
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), world.clone());
        run_with(&ledger, &["a"], vec![cell("a.com", 10, 1, 10)]).await;
        let (old, _) = manifest::read(store.as_ref()).await.unwrap();
        run_with(&ledger, &["b"], vec![cell("a.com", 10, 1, 5)]).await;
        compact::compact_all(&ledger).await.unwrap();
        // Put the older manifest back: the base now holds a run it does not publish. A reader
        // must not answer from that mix; it reads again and, the store never settling, says so.
        let bytes = serde_json::to_vec(&old).unwrap();
        let when = Precondition::Matches(manifest::read(store.as_ref()).await.unwrap().1.unwrap());
        store.put(manifest::KEY, bytes, when).await.unwrap();
        let d = DomainName::parse("a.com").unwrap();
        let err = published::read_cells(store.as_ref(), &[(d, Day(10))])
            .await
            .unwrap_err();
        assert!(err.is_unavailable(), "{err}");
    }

    #[tokio::test]
    async fn concurrent_runs_only_meet_at_the_manifest_and_all_land() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let world = FakeWorld::new(1);
        let mut tasks = Vec::new();
        for i in 0..16u64 {
            let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), world.clone());
            tasks.push(tokio::spawn(async move {
                let cells = (0..50)
                    .map(|d| cell(&format!("d{d}.com"), 10, i as usize, 1))
                    .collect();
                run_with(&ledger, &[&format!("in{i}")], cells).await
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let (m, _) = manifest::read(store.as_ref()).await.unwrap();
        assert_eq!(m.seq, 16);
        let t = totals(store.as_ref()).await;
        assert_eq!((t.len(), t.values().sum::<u64>()), (800, 800));
        // No base bucket was written by any run: only the manifest is shared.
        assert!(store.list(keys::BUCKETS).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_stale_or_dead_run_is_taken_over_and_cannot_seal_after() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let world_a = FakeWorld::new(100);
        let a = Ledger::with_world(store.clone(), Duration::from_secs(60), world_a.clone());
        let run_a = a.begin().await.unwrap();
        let ask = [("in".to_owned(), "in".to_owned())];
        assert_eq!(a.claim_all(&run_a, &ask).await.unwrap(), [Claim::Mine]);
        // Another process on the same host: busy while A lives and beats.
        let world_b = FakeWorld::new(200);
        let b = Ledger::with_world(store.clone(), Duration::from_secs(60), world_b.clone());
        let run_b = b.begin().await.unwrap();
        assert!(matches!(
            b.claim(&run_b, "in", "in").await.unwrap(),
            Claim::Busy(_)
        ));
        // Silent past the lease: taken over.
        world_b.advance(61);
        assert_eq!(b.claim(&run_b, "in", "in").await.unwrap(), Claim::Mine);
        assert!(matches!(
            a.heartbeat(&run_a).await,
            Err(CommitError::LostLease(_))
        ));
        assert!(matches!(
            a.seal(
                &run_a,
                vec!["in".into()],
                None,
                encoded(&[cell("a.com", 1, 0, 1)])
            )
            .await,
            Err(CommitError::LostLease(_))
        ));
        // A dead process on this host is taken over at once, without waiting for the lease.
        let run_c = a.begin().await.unwrap();
        let ask = [("other".to_owned(), "other".to_owned())];
        assert_eq!(a.claim_all(&run_c, &ask).await.unwrap(), [Claim::Mine]);
        world_b.kill(100);
        assert_eq!(
            b.claim(&run_b, "other", "other").await.unwrap(),
            Claim::Mine
        );
        // The aborted runs' segments are swept; B's run lands alone.
        b.seal(
            &run_b,
            vec!["in".into(), "other".into()],
            None,
            encoded(&[cell("a.com", 1, 0, 2)]),
        )
        .await
        .unwrap();
        b.finish_own(&run_b).await.unwrap();
        b.recover().await.unwrap();
        assert_eq!(store.list(keys::SEGMENTS).await.unwrap().len(), 1);
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 2);
    }

    #[tokio::test]
    async fn small_frequent_runs_merge_level_by_level_and_write_few_objects() {
        let counting = Watched::new(Arc::new(MemoryStore::new()), "", usize::MAX);
        let store: Arc<dyn Store> = counting.clone();
        let world = FakeWorld::new(1);
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), world);
        // The day is not over by the data clock: segments merge, nothing folds.
        let policy = compact::Policy {
            after: 8,
            limit: 2,
            now: 10 * 86_400 + 3600,
        };
        let mut truth: BTreeMap<(String, i32, usize), u64> = BTreeMap::new();
        let runs = 40;
        for i in 0..runs {
            let cells: Vec<DayBucket> = (0..1000)
                .map(|d| cell(&format!("d{d}.com"), 10, i % 60, 1 + (d % 7) as u64))
                .collect();
            for c in &cells {
                *truth.entry((c.domain.to_string(), 10, i % 60)).or_default() += c.minutes[i % 60];
            }
            run_with(&ledger, &[&format!("in{i}")], cells).await;
            compact::compact_if_due(&ledger, &[Day(10)], &policy)
                .await
                .unwrap();
            let (m, _) = manifest::read(store.as_ref()).await.unwrap();
            assert!(m.segments.len() <= 3 * 8, "{} pending", m.segments.len());
        }
        assert_eq!(totals(store.as_ref()).await, truth);
        let per_run = counting.puts.load(Ordering::SeqCst) as f64 / runs as f64;
        eprintln!("{per_run:.2} objects written per run");
        assert!(per_run <= 20.0, "{per_run} objects written per run");
        assert!(store.list(keys::BUCKETS).await.unwrap().is_empty());
        let (m, _) = manifest::read(store.as_ref()).await.unwrap();
        // 40 = 5 merges of 8 at level 0, nothing left there.
        assert_eq!(
            m.segments.iter().map(|p| p.level).collect::<Vec<_>>(),
            [1, 1, 1, 1, 1]
        );
        // Once the day is over, the next run folds it into the base buckets.
        let later = compact::Policy {
            now: 11 * 86_400 + compact::DAY_OVER_GRACE,
            ..policy
        };
        let done = compact::compact_if_due(&ledger, &[], &later).await.unwrap();
        assert_eq!((done.folded_days, done.objects), (1, 1000));
        assert_eq!(totals(store.as_ref()).await, truth);
        assert!(
            manifest::read(store.as_ref())
                .await
                .unwrap()
                .0
                .segments
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_day_over_keeps_a_lone_segment_and_folds_once_a_second_comes() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), FakeWorld::new(1));
        let policy = compact::Policy {
            after: 8,
            limit: 2,
            now: 11 * 86_400 + compact::DAY_OVER_GRACE,
        };
        run_with(
            &ledger,
            &["a"],
            vec![cell("a.com", 10, 5, 7), cell("b.com", 10, 5, 1)],
        )
        .await;
        let done = compact::compact_if_due(&ledger, &[Day(10)], &policy)
            .await
            .unwrap();
        // One segment is as few objects to read as a base: nothing is rewritten.
        assert_eq!(done.folded_days, 0);
        assert!(store.list(keys::BUCKETS).await.unwrap().is_empty());
        run_with(&ledger, &["b"], vec![cell("a.com", 10, 6, 3)]).await;
        let done = compact::compact_if_due(&ledger, &[Day(10)], &policy)
            .await
            .unwrap();
        assert_eq!((done.folded_days, done.objects), (1, 2));
        let want: BTreeMap<(String, i32, usize), u64> = [
            (("a.com".to_string(), 10, 5), 7),
            (("a.com".to_string(), 10, 6), 3),
            (("b.com".to_string(), 10, 5), 1),
        ]
        .into();
        assert_eq!(totals(store.as_ref()).await, want);
        let (m, _) = manifest::read(store.as_ref()).await.unwrap();
        assert!(m.segments.is_empty());
    }

    #[tokio::test]
    async fn a_run_published_twice_counts_once_through_merges_and_folds() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let ledger = Ledger::with_world(store.clone(), Duration::from_secs(60), FakeWorld::new(1));
        run_with(&ledger, &["a"], vec![cell("a.com", 10, 0, 5)]).await;
        // A recovery race published it twice.
        manifest::update::<StoreError>(store.as_ref(), |m| {
            let again = m.segments[0].clone();
            m.segments.push(again);
            Ok(true)
        })
        .await
        .unwrap();
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 5);
        run_with(&ledger, &["b"], vec![cell("a.com", 10, 0, 1)]).await;
        let policy = compact::Policy {
            after: 2,
            limit: 1,
            now: 0,
        };
        let done = compact::compact_if_due(&ledger, &[], &policy)
            .await
            .unwrap();
        assert_eq!(done.merges, 1);
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 6);
        compact::compact_all(&ledger).await.unwrap();
        assert_eq!(totals(store.as_ref()).await.values().sum::<u64>(), 6);
        assert!(store.list(keys::SEGMENTS).await.unwrap().is_empty());
    }
}
