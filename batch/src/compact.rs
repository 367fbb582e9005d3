//! Compaction: folds a day's published segments into its base buckets, exactly once, without
//! ever changing an answer.
//!
//! 1. Take the day's compaction lease (`meta/compact/<day>.json`, create-if-absent, taken over
//!    once expired), so that concurrent runs do not do the same work twice. The lease is only an
//!    economy: the steps below are safe without it.
//! 2. Read the manifest; the day's pending segments are the work.
//! 3. Fold each domain's cells into its base bucket with compare-and-swap. A bucket remembers
//!    the runs it holds (so a fold is done once) and the highest publish sequence number it
//!    holds (so a reader with an older manifest knows to read again).
//! 4. Take the segments out of the manifest (compare-and-swap), then delete them.
//!
//! A crash anywhere leaves either the segments pending (and the bases holding some of them,
//! which readers and the next compaction skip) or segments unlisted but not yet deleted
//! (swept by the next run's recovery).

use crate::commit::{CommitError, World};
use crate::failpoint;
use serde::{Deserialize, Serialize};
use srctraffic::Day;
use srctraffic::bucket::{DayBucket, RunId};
use srctraffic::segment;
use srctraffic::store::manifest::{self, Published};
use srctraffic::store::{Precondition, Store, StoreError, keys};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// By default, a day is compacted by the run that finds this many segments pending on it.
pub const COMPACT_AFTER: usize = 8;
/// Base buckets read and written per round trip.
const BATCH: usize = 256;

/// What compacting did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Days compacted.
    pub days: usize,
    /// Segments folded in and removed.
    pub segments: usize,
    /// Base buckets written.
    pub buckets: usize,
    /// Days another process was compacting.
    pub busy: usize,
}

impl Compacted {
    fn add(&mut self, o: Compacted) {
        self.days += o.days;
        self.segments += o.segments;
        self.buckets += o.buckets;
        self.busy += o.busy;
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Lease {
    holder: String,
    host: String,
    pid: u32,
    expires: i64,
}

fn lease_key(day: Day) -> String {
    format!("meta/compact/{day}.json")
}

fn corrupt(key: &str, reason: impl ToString) -> CommitError {
    CommitError::Corrupt {
        key: key.to_owned(),
        reason: reason.to_string(),
    }
}

/// Who compacts, and how it tells whether another compaction still lives: the same clock,
/// host and process checks as the ledger's.
#[derive(Debug, Clone)]
pub struct Compactor {
    /// A name for this compaction (the run id, or one made up for `compact`).
    pub me: String,
    /// How long a compaction's lease lasts without renewal.
    pub ttl: Duration,
    /// The clock, host and processes.
    pub world: Arc<dyn World>,
}

/// Takes the day's lease; `false` if another live process holds it.
async fn take_lease(store: &dyn Store, day: Day, c: &Compactor) -> Result<bool, CommitError> {
    let key = lease_key(day);
    let now = c.world.now();
    let host = c.world.host();
    let mine = serde_json::to_vec(&Lease {
        holder: c.me.clone(),
        host: host.clone(),
        pid: c.world.pid(),
        expires: now + c.ttl.as_secs() as i64,
    })
    .unwrap_or_default();
    loop {
        match store.get_versioned(&key).await? {
            None => match store.put(&key, mine.clone(), Precondition::Absent).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            },
            Some(v) => {
                // An unreadable lease is as good as expired: it guards no data.
                let expired = serde_json::from_slice::<Lease>(&v.bytes)
                    .map(|l| l.expires < now || (l.host == host && !c.world.pid_alive(l.pid)))
                    .unwrap_or(true);
                if !expired {
                    return Ok(false);
                }
                match store
                    .put(&key, mine.clone(), Precondition::Matches(v.version))
                    .await
                {
                    Ok(_) => return Ok(true),
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
}

/// Compacts the days whose pending segments reached `after`, at most `limit` of them: the
/// days this run touched first, then the fullest. That is the bounded share of compaction a
/// run takes on; a run with nothing new to read still does its share.
pub async fn compact_if_due(
    store: &dyn Store,
    touched: &[Day],
    after: usize,
    limit: usize,
    c: &Compactor,
) -> Result<Compacted, CommitError> {
    let (m, _) = manifest::read(store).await?;
    let mut due: Vec<(Day, usize)> = m
        .pending_days()
        .into_iter()
        .filter(|(_, n)| *n >= after.max(1))
        .collect();
    due.sort_by_key(|(d, n)| (!touched.contains(d), std::cmp::Reverse(*n)));
    let mut done = Compacted::default();
    for (day, _) in due.into_iter().take(limit) {
        done.add(compact_day(store, day, c).await?);
    }
    Ok(done)
}

/// Compacts every day with pending segments.
pub async fn compact_all(store: &dyn Store, c: &Compactor) -> Result<Compacted, CommitError> {
    let (m, _) = manifest::read(store).await?;
    let mut done = Compacted::default();
    for (day, _) in m.pending_days() {
        done.add(compact_day(store, day, c).await?);
    }
    Ok(done)
}

/// Compacts one day, if no other process is.
pub async fn compact_day(
    store: &dyn Store,
    day: Day,
    c: &Compactor,
) -> Result<Compacted, CommitError> {
    if !take_lease(store, day, c).await? {
        return Ok(Compacted {
            busy: 1,
            ..Compacted::default()
        });
    }
    let result = fold_day(store, day).await;
    // The lease guards work, not data: leaving it after a failure only delays the next try.
    store.delete(&lease_key(day)).await?;
    result
}

async fn fold_day(store: &dyn Store, day: Day) -> Result<Compacted, CommitError> {
    let (m, _) = manifest::read(store).await?;
    let mut work: Vec<(Published, RunId)> = Vec::new();
    let mut seen = HashSet::new();
    for p in m.of_day(day) {
        let run = p
            .run_id()
            .ok_or_else(|| corrupt(manifest::KEY, format!("bad run id {:?}", p.run)))?;
        if seen.insert(run) {
            work.push((p.clone(), run));
        }
    }
    if work.is_empty() {
        return Ok(Compacted::default());
    }
    let keys_: Vec<String> = work.iter().map(|(p, _)| p.key()).collect();
    let bodies = store.get_many(&keys_).await?;
    // Each domain's cells, with the run and sequence number that published them.
    let mut by_domain: BTreeMap<srctraffic::DomainName, Vec<(RunId, u64, DayBucket)>> =
        BTreeMap::new();
    for (((p, run), key), body) in work.iter().zip(&keys_).zip(bodies) {
        let Some(body) = body else {
            // Listed but gone: another compaction finished it after our manifest read.
            let (now_m, _) = manifest::read(store).await?;
            if now_m.segments.iter().any(|q| q.key() == *key) {
                return Err(corrupt(key, "published segment is missing"));
            }
            return Ok(Compacted::default());
        };
        let (seg_day, cells) = segment::decode_all(&body).map_err(|e| corrupt(key, e))?;
        if seg_day != day {
            return Err(corrupt(key, format!("holds day {seg_day}, not {day}")));
        }
        for c in cells {
            by_domain
                .entry(c.domain.clone())
                .or_default()
                .push((*run, p.seq, c));
        }
    }
    let domains: Vec<_> = by_domain.into_iter().collect();
    let mut written = 0;
    for batch in domains.chunks(BATCH) {
        written += fold_batch(store, day, batch).await?;
        failpoint::hit("compact-fold");
    }
    let gone: HashSet<String> = keys_.iter().cloned().collect();
    manifest::update::<CommitError>(store, |m| {
        let before = m.segments.len();
        m.segments.retain(|p| !gone.contains(&p.key()));
        Ok(m.segments.len() != before)
    })
    .await?;
    failpoint::hit("compact-unlisted");
    for key in &keys_ {
        store.delete(key).await?;
    }
    Ok(Compacted {
        days: 1,
        segments: work.len(),
        buckets: written,
        busy: 0,
    })
}

type DomainCells = (srctraffic::DomainName, Vec<(RunId, u64, DayBucket)>);

/// Folds each domain's cells into its base bucket; retries a bucket that changed meanwhile.
async fn fold_batch(
    store: &dyn Store,
    day: Day,
    batch: &[DomainCells],
) -> Result<usize, CommitError> {
    let mut pending: Vec<&DomainCells> = batch.iter().collect();
    let mut written = 0;
    let mut attempt = 0u32;
    while !pending.is_empty() {
        let keys_: Vec<String> = pending.iter().map(|(d, _)| keys::bucket(day, d)).collect();
        let current = store.get_many_versioned(&keys_).await?;
        let mut items = Vec::with_capacity(pending.len());
        let mut sent = Vec::with_capacity(pending.len());
        for ((entry, key), cur) in pending.iter().zip(keys_).zip(current) {
            let (domain, cells) = *entry;
            let (mut bucket, when) = match cur {
                None => (DayBucket::new(domain.clone(), day), Precondition::Absent),
                Some(v) => (
                    DayBucket::decode_for(&v.bytes, domain, day).map_err(|e| corrupt(&key, e))?,
                    Precondition::Matches(v.version),
                ),
            };
            let mut changed = false;
            for (run, seq, cell) in cells {
                changed |= bucket
                    .fold(*run, *seq, cell)
                    .map_err(|e| corrupt(&key, e))?;
            }
            if changed {
                items.push((key, bucket.encode(), when));
                sent.push(*entry);
            }
        }
        let mut retry = Vec::new();
        for (entry, r) in sent.into_iter().zip(store.put_many(items).await) {
            match r {
                Ok(_) => written += 1,
                Err(StoreError::Conflict { .. }) => retry.push(entry),
                Err(e) => return Err(e.into()),
            }
        }
        pending = retry;
        if !pending.is_empty() {
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(u64::from(attempt.min(8)) * 5)).await;
        }
    }
    Ok(written)
}
