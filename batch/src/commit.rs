//! Exactly once, under replay, crashes and concurrency, with nothing but conditional writes
//! (so the same code runs on a directory and on S3).
//!
//! 1. A run writes its record (`aggregating`, with a heartbeat) before it claims anything.
//! 2. It claims each input with a create-if-absent write. An input already claimed is
//!    committed (skip), claimed by a live run (skip: that run counts it), or claimed by a run
//!    that is sealed (finish that run, then skip), aborted, gone, or stale (abort it; then take
//!    the claim over with a compare-and-swap).
//! 3. It reads only what it claimed, keeping its heartbeat fresh.
//! 4. It stores its deltas, then seals: one compare-and-swap of its own record from
//!    `aggregating` to `sealed`, listing the inputs counted. Sealing and being taken over are the
//!    two ways out of `aggregating`, and the swap lets only one of them happen.
//! 5. Finishing a sealed run (by itself or by any later run) folds each delta into its bucket
//!    with compare-and-swap; a bucket remembers the runs it holds, so folding twice is a no-op.
//!    Then the watermark moves, the inputs are marked committed, and the run's objects go.

use crate::failpoint;
use crate::ledger::{self, InputRecord, InputState, RunRecord, RunState};
use srctraffic::bucket::{DayBucket, RunId};
use srctraffic::store::{Precondition, Store, StoreError, Version, keys, watermark};
use srctraffic::time::Minute;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Buckets folded per round trip.
const APPLY_BATCH: usize = 256;

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
    /// A sealed run's deltas are gone.
    #[error("run {0} is sealed but its deltas object is missing")]
    MissingDeltas(RunId),
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
}

/// What finishing runs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Finished {
    /// Runs finished.
    pub runs: usize,
    /// Bucket objects written.
    pub objects: usize,
    /// Sealed runs that could not be finished: (run, why). They are tried again next time.
    pub stuck: Vec<(String, String)>,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_default()
}

impl Ledger {
    /// A ledger over `store`; a run whose heartbeat is older than `lease` may be taken over.
    pub fn new(store: Arc<dyn Store>, lease: Duration) -> Ledger {
        Ledger {
            store,
            lease,
            host: hostname(),
        }
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
        if r.host == self.host && !pid_alive(r.pid) {
            return false;
        }
        now() - r.heartbeat <= self.lease.as_secs() as i64
    }

    /// Starts a run: writes its record.
    pub async fn begin(&self) -> Result<Run> {
        let id = RunId::random();
        let rec = RunRecord {
            run: id.to_string(),
            state: RunState::Aggregating,
            heartbeat: now(),
            host: self.host.clone(),
            pid: std::process::id(),
            inputs: Vec::new(),
            max_minute: None,
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
        self.update_own(run, |rec| rec.heartbeat = now()).await
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
            at: now(),
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
        let at = now();
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

    /// Stores a run's deltas and seals it, listing the inputs they hold.
    pub async fn seal(
        &self,
        run: &Run,
        inputs: Vec<String>,
        max_minute: Option<i64>,
        deltas: Vec<u8>,
    ) -> Result<()> {
        self.store
            .put(&ledger::deltas_key(run.id), deltas, Precondition::None)
            .await?;
        failpoint::hit("sealing");
        self.update_own(run, |rec| {
            rec.state = RunState::Sealed;
            rec.inputs = inputs;
            rec.max_minute = max_minute;
        })
        .await
    }

    /// Gives a run up: its claims become void. Nothing of it was applied.
    pub async fn abort(&self, run: &Run) -> Result<()> {
        // Taken over already is as good as aborted.
        match self
            .update_own(run, |rec| rec.state = RunState::Aborted)
            .await
        {
            Ok(()) | Err(CommitError::LostLease(_)) => {}
            Err(e) => return Err(e),
        }
        self.store.delete(&ledger::deltas_key(run.id)).await?;
        self.store.delete(&ledger::run_key(run.id)).await?;
        Ok(())
    }

    /// Applies a sealed run, whoever started it; safe to run twice or concurrently.
    pub async fn finish(&self, id: RunId) -> Result<Finished> {
        let Some((rec, _)) = self.read::<RunRecord>(&ledger::run_key(id)).await? else {
            return Ok(Finished::default());
        };
        if rec.state != RunState::Sealed {
            return Ok(Finished::default());
        }
        let Some(bytes) = self.store.get(&ledger::deltas_key(id)).await? else {
            // Another finisher may have completed it a moment ago.
            return match self.read::<RunRecord>(&ledger::run_key(id)).await? {
                None => Ok(Finished::default()),
                Some(_) => Err(CommitError::MissingDeltas(id)),
            };
        };
        let cells = ledger::decode_deltas(&bytes).map_err(|reason| CommitError::Corrupt {
            key: ledger::deltas_key(id),
            reason,
        })?;
        let objects = self.apply(id, cells).await?;
        if let Some(m) = rec.max_minute {
            watermark::advance(self.store.as_ref(), Minute(m)).await?;
        }
        failpoint::hit("watermark");
        let at = now();
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
        // The record goes first: deltas without a record are garbage that `recover` sweeps,
        // while a sealed record without deltas could not be told from a damaged store.
        self.store.delete(&ledger::run_key(id)).await?;
        failpoint::hit("finishing");
        self.store.delete(&ledger::deltas_key(id)).await?;
        Ok(Finished {
            runs: 1,
            objects,
            stuck: Vec::new(),
        })
    }

    /// Folds each cell into its bucket, once. Returns how many objects were written.
    ///
    /// A bucket that cannot take the run (unreadable, holding another name, or a total past
    /// 2^64 - 1) is skipped and the rest applied; the run then fails naming it, stays sealed,
    /// and is finished by a later run once the object is mended.
    async fn apply(&self, id: RunId, cells: Vec<DayBucket>) -> Result<usize> {
        let mut written = 0;
        let mut refused: Option<CommitError> = None;
        for batch in cells.chunks(APPLY_BATCH) {
            let mut pending: Vec<&DayBucket> = batch.iter().collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let keys: Vec<String> = pending
                    .iter()
                    .map(|c| keys::bucket(c.day, &c.domain))
                    .collect();
                let current = self.store.get_many_versioned(&keys).await?;
                let mut items = Vec::with_capacity(pending.len());
                let mut sent = Vec::with_capacity(pending.len());
                for ((cell, key), cur) in pending.iter().zip(keys).zip(current) {
                    let (mut bucket, when) = match cur {
                        None => (
                            DayBucket::new(cell.domain.clone(), cell.day),
                            Precondition::Absent,
                        ),
                        Some(v) => match DayBucket::decode_for(&v.bytes, &cell.domain, cell.day) {
                            Ok(b) => (b, Precondition::Matches(v.version)),
                            Err(e) => {
                                refused.get_or_insert(CommitError::Corrupt {
                                    key,
                                    reason: e.to_string(),
                                });
                                continue;
                            }
                        },
                    };
                    match bucket.apply(id, &cell.minutes) {
                        Ok(true) => {
                            items.push((key, bucket.encode(), when));
                            sent.push(*cell);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            refused.get_or_insert(CommitError::Corrupt {
                                key,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                let mut retry = Vec::new();
                for (cell, r) in sent.into_iter().zip(self.store.put_many(items).await) {
                    match r {
                        Ok(_) => written += 1,
                        Err(StoreError::Conflict { .. }) => retry.push(cell),
                        Err(e) => return Err(e.into()),
                    }
                }
                pending = retry;
                if !pending.is_empty() {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(8)) * 5)).await;
                }
            }
            failpoint::hit("apply");
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(written),
        }
    }

    /// Finishes sealed runs, gives up stale ones left by crashed runs, and sweeps deltas whose
    /// run is gone.
    pub async fn recover(&self) -> Result<Finished> {
        let mut done = Finished::default();
        let listed = self.store.list(ledger::RUNS).await?;
        for key in &listed {
            if let Some(stem) = key.strip_suffix(".deltas")
                && !listed.iter().any(|k| k.strip_suffix(".json") == Some(stem))
            {
                self.store.delete(key).await?;
            }
        }
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
                        self.store.delete(&ledger::deltas_key(id)).await?;
                        self.store.delete(&key).await?;
                    }
                }
                RunState::Aborted => {
                    self.store.delete(&ledger::deltas_key(id)).await?;
                    self.store.delete(&key).await?;
                }
                RunState::Aggregating => {}
            }
        }
        Ok(done)
    }
}
