//! Compaction keeps what a query reads per (domain, day) bounded, and the writes it costs
//! small, without ever changing an answer. It works in two ways, like a log-structured merge
//! tree:
//!
//! - **Merge**: once a day has [`Policy::after`] segments on one level, they become one
//!   segment on the next level (one object written, one manifest write). Frequent small runs
//!   cost a fraction of an object each, whatever the number of domains they touch.
//! - **Fold**: a day that is over (its end plus [`DAY_OVER_GRACE`] has passed on the data
//!   clock) with more than one segment, a day whose top level is full, and
//!   `srctraffic-batch compact` fold the day's segments into its per-domain base buckets: mark them in the manifest (a merge never takes
//!   a marked segment), fold each domain's cells into its base with compare-and-swap, take the
//!   segments out of the manifest, delete them.
//!
//! A base bucket remembers the runs it holds (a fold is done once) and the highest publish
//! sequence number it holds (a reader with an older manifest reads again). A day's lease
//! (`meta/compact/<day>.json`) keeps concurrent runs from doing the same work twice; the steps
//! are safe without it. A crash leaves segments marked (the next compaction finishes the fold
//! first), or a merged segment not yet published, or old segments unlisted and not deleted
//! (both swept by the next run's recovery).

use crate::commit::{CommitError, Ledger};
use crate::failpoint;
use serde::{Deserialize, Serialize};
use srctraffic::bucket::{DayBucket, RunId};
use srctraffic::segment;
use srctraffic::store::manifest::{self, Manifest, Published};
use srctraffic::store::{Precondition, Store, StoreError, keys};
use srctraffic::{Day, DomainName};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Range;
use std::time::Duration;

/// By default a day's level is merged once it holds this many segments.
pub const COMPACT_AFTER: usize = 8;
/// Segments merge up to this level; a full top level is folded into the base buckets. With
/// `after` = 8 a day holds at most 8 segments a level, 24 in all, before it is folded.
pub const TOP_LEVEL: u8 = 2;
/// How long after a day ends its late lines may still come; after that its segments fold.
pub const DAY_OVER_GRACE: i64 = 2 * 3600;
/// Base buckets read and written per round trip.
const BATCH: usize = 256;
/// Prefix of a merged segment's name (a run's own is its run id).
const MERGED: &str = "m-";

/// When a run compacts.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Merge a level once it holds this many segments.
    pub after: usize,
    /// At most this many compactions per run: its share stays bounded.
    pub limit: usize,
    /// The data clock, unix seconds: days over by it are folded.
    pub now: i64,
}

/// What compacting did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Compacted {
    /// Days folded.
    pub folded_days: usize,
    /// Merges done.
    pub merges: usize,
    /// Segments taken out of the manifest (merged or folded).
    pub segments: usize,
    /// Objects written: base buckets and merged segments.
    pub objects: usize,
    /// Days another process was compacting.
    pub busy: usize,
}

impl Compacted {
    fn add(&mut self, o: Compacted) {
        self.folded_days += o.folded_days;
        self.merges += o.merges;
        self.segments += o.segments;
        self.objects += o.objects;
        self.busy += o.busy;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Fold,
    Merge(u8),
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

/// Whether a lease object is held by a live compaction.
fn live(bytes: &[u8], ledger: &Ledger) -> bool {
    let world = ledger.world();
    serde_json::from_slice::<Lease>(bytes).is_ok_and(|l| {
        l.expires >= world.now() && (l.host != world.host() || world.pid_alive(l.pid))
    })
}

/// Takes the day's lease; `false` if a live compaction holds it.
async fn take_lease(ledger: &Ledger, day: Day, me: &str) -> Result<bool, CommitError> {
    let store = ledger.store();
    let world = ledger.world();
    let key = lease_key(day);
    let mine = serde_json::to_vec(&Lease {
        holder: me.to_owned(),
        host: world.host(),
        pid: world.pid(),
        expires: world.now() + ledger.lease().as_secs() as i64,
    })
    .unwrap_or_default();
    loop {
        let when = match store.get_versioned(&key).await? {
            None => Precondition::Absent,
            Some(v) if live(&v.bytes, ledger) => return Ok(false),
            Some(v) => Precondition::Matches(v.version),
        };
        match store.put(&key, mine.clone(), when).await {
            Ok(_) => return Ok(true),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Whether a live compaction holds the day's lease.
pub async fn day_busy(ledger: &Ledger, day: Day) -> Result<bool, CommitError> {
    Ok(match ledger.store().get(&lease_key(day)).await? {
        Some(b) => live(&b, ledger),
        None => false,
    })
}

/// What a day needs, if anything.
fn due(m: &Manifest, day: Day, policy: &Policy) -> Option<Action> {
    let entries: Vec<&Published> = m.of_day(day).collect();
    if entries.is_empty() {
        return None;
    }
    // A day over folds what its runs left, but a lone segment is a day's final shape already
    // (one object to read, like a base): folding it would only turn one object into one per
    // domain. It folds when late lines add a second, or by hand.
    let over = (i64::from(day.0) + 1) * 86_400 + DAY_OVER_GRACE <= policy.now;
    if (over && entries.len() > 1) || policy.after <= 1 || entries.iter().any(|p| p.folding) {
        return Some(Action::Fold);
    }
    for level in 0..=TOP_LEVEL {
        let n = entries.iter().filter(|p| p.level == level).count();
        if n >= policy.after {
            return Some(if level == TOP_LEVEL {
                Action::Fold
            } else {
                Action::Merge(level)
            });
        }
    }
    None
}

/// Does the compaction that is due, at most `policy.limit` of it: days this run touched
/// first. A run with nothing new to read still does its share.
pub async fn compact_if_due(
    ledger: &Ledger,
    touched: &[Day],
    policy: &Policy,
) -> Result<Compacted, CommitError> {
    let mut done = Compacted::default();
    for _ in 0..policy.limit {
        let (m, _) = manifest::read(ledger.store().as_ref()).await?;
        let mut days: Vec<(Day, usize)> = m.pending_days();
        days.sort_by_key(|(d, n)| (!touched.contains(d), std::cmp::Reverse(*n)));
        let Some((day, action)) = days
            .iter()
            .find_map(|(d, _)| due(&m, *d, policy).map(|a| (*d, a)))
        else {
            break;
        };
        let step = compact_day(ledger, day, action, policy.after).await?;
        let stop = step.busy > 0;
        done.add(step);
        if stop {
            break;
        }
    }
    Ok(done)
}

/// Folds every day with segments into its base buckets.
pub async fn compact_all(ledger: &Ledger) -> Result<Compacted, CommitError> {
    let (m, _) = manifest::read(ledger.store().as_ref()).await?;
    let mut done = Compacted::default();
    for (day, _) in m.pending_days() {
        done.add(compact_day(ledger, day, Action::Fold, COMPACT_AFTER).await?);
    }
    Ok(done)
}

async fn compact_day(
    ledger: &Ledger,
    day: Day,
    action: Action,
    after: usize,
) -> Result<Compacted, CommitError> {
    let me = RunId::random().to_string();
    if !take_lease(ledger, day, &me).await? {
        return Ok(Compacted {
            busy: 1,
            ..Compacted::default()
        });
    }
    let store = ledger.store().as_ref();
    let result = match action {
        Action::Fold => fold_day(store, day).await,
        Action::Merge(level) => merge(store, day, level, after).await,
    };
    // The lease guards work, not data: leaving it after a failure only delays the next try.
    store.delete(&lease_key(day)).await?;
    result
}

/// A published segment as read: its key, its bytes and its index, checked.
struct Read {
    key: String,
    index: segment::Index,
    bytes: Vec<u8>,
}

/// Each domain's cells across segments, in domain order: for each, the segment (an index
/// into the list read) and where in it the cell lies; a domain's cells in publication order.
type Cells<'a> = Vec<DomainCells<'a>>;

/// One domain's cells: see [`Cells`].
type DomainCells<'a> = (&'a DomainName, Vec<(usize, Range<usize>)>);

/// Reads a day's segments, with each index checked; `None` if one is gone because another
/// process compacted it meanwhile. The cells stay encoded: a day can hold many segments of
/// thousands of cells, and a decoded cell is 34 KB.
async fn read_segments(
    store: &dyn Store,
    day: Day,
    entries: &[Published],
) -> Result<Option<Vec<Read>>, CommitError> {
    let keys_: Vec<String> = entries.iter().map(Published::key).collect();
    let mut out = Vec::with_capacity(entries.len());
    let bodies = store.get_many(&keys_).await?;
    for (key, body) in keys_.into_iter().zip(bodies) {
        let Some(bytes) = body else {
            let (now, _) = manifest::read(store).await?;
            if now.segments.iter().any(|q| q.key() == key) {
                return Err(corrupt(&key, "published segment is missing"));
            }
            return Ok(None);
        };
        let index = segment::Index::parse(&bytes).map_err(|e| corrupt(&key, e))?;
        let data_start = segment::Index::needed(&bytes).map_err(|e| corrupt(&key, e))?;
        if index.end(data_start) != bytes.len() as u64 {
            return Err(corrupt(&key, "length differs from its index"));
        }
        if index.day != day {
            return Err(corrupt(&key, format!("holds day {}, not {day}", index.day)));
        }
        out.push(Read { key, index, bytes });
    }
    Ok(Some(out))
}

/// The cells of `segments` grouped by domain (see [`Cells`]).
fn by_domain(segments: &[Read]) -> Cells<'_> {
    let mut groups: BTreeMap<&DomainName, Vec<(usize, Range<usize>)>> = BTreeMap::new();
    for (i, s) in segments.iter().enumerate() {
        for (domain, r) in s.index.cells() {
            // The index was checked against the segment's length: its ranges fit in memory.
            groups
                .entry(domain)
                .or_default()
                .push((i, r.start as usize..r.end as usize));
        }
    }
    groups.into_iter().collect()
}

impl Read {
    /// The bytes of the cell at `at` (empty, so that a decode fails, if the range is off).
    fn cell(&self, at: &Range<usize>) -> &[u8] {
        self.bytes.get(at.clone()).unwrap_or_default()
    }

    /// Decodes the cell of `domain` at `at`.
    fn decode(
        &self,
        at: &Range<usize>,
        domain: &DomainName,
        day: Day,
    ) -> Result<DayBucket, CommitError> {
        DayBucket::decode_for(self.cell(at), domain, day).map_err(|e| corrupt(&self.key, e))
    }
}

/// The sum of each domain's cells, encoded, in domain order. Domains are summed in
/// parallel, each from its first cell decoded and the others added as parsed, so that no more
/// than one whole bucket per thread is held at once.
fn sum_cells(segments: &[Read], cells: &Cells<'_>, day: Day) -> Result<Vec<Vec<u8>>, CommitError> {
    use rayon::prelude::*;
    cells
        .par_iter()
        .map(|(domain, at)| {
            let Some(((first, first_at), rest)) = at.split_first() else {
                return Ok(DayBucket::new((*domain).clone(), day).encode());
            };
            let mut sum = segments[*first].decode(first_at, domain, day)?;
            for (i, r) in rest {
                let s = &segments[*i];
                DayBucket::parse_for(s.cell(r), domain, day)
                    .and_then(|p| sum.add_parsed(&p))
                    .map_err(|e| corrupt(&s.key, e))?;
            }
            Ok(sum.encode())
        })
        .collect()
}

/// Each object once, in publication order.
fn unique(entries: impl Iterator<Item = Published>) -> Vec<Published> {
    let mut seen = HashSet::new();
    entries.filter(|p| seen.insert(p.key())).collect()
}

/// Merges the oldest `after` segments of a level into one on the next level.
async fn merge(
    store: &dyn Store,
    day: Day,
    level: u8,
    after: usize,
) -> Result<Compacted, CommitError> {
    let (m, _) = manifest::read(store).await?;
    let mut picked = unique(
        m.of_day(day)
            .filter(|p| p.level == level && !p.folding)
            .cloned(),
    );
    picked.sort_by_key(|p| p.seq);
    picked.truncate(after);
    if picked.len() < after.max(2) {
        return Ok(Compacted::default());
    }
    let Some(parts) = read_segments(store, day, &picked).await? else {
        return Ok(Compacted::default());
    };
    let cells = by_domain(&parts);
    let bodies = sum_cells(&parts, &cells, day)?;
    let mut runs = BTreeSet::new();
    for p in &picked {
        let rs = p
            .runs()
            .ok_or_else(|| corrupt(manifest::KEY, format!("bad run ids in {}", p.key())))?;
        runs.extend(rs.into_iter().map(|r| r.to_string()));
    }
    let merged = Published {
        seq: picked.iter().map(|p| p.seq).max().unwrap_or(0),
        run: format!("{MERGED}{}", RunId::random()),
        merged: runs.into_iter().collect(),
        day: day.to_string(),
        cells: cells.len() as u64,
        level: level + 1,
        folding: false,
    };
    let key = merged.key();
    let sizes: Vec<(&DomainName, usize)> = cells
        .iter()
        .zip(&bodies)
        .map(|((d, _), b)| (*d, b.len()))
        .collect();
    let mut body = segment::head(day, &sizes);
    body.reserve_exact(bodies.iter().map(Vec::len).sum());
    for b in &bodies {
        body.extend_from_slice(b);
    }
    drop(bodies);
    store.put(&key, body, Precondition::Absent).await?;
    failpoint::hit("merge-written");
    let gone: HashSet<String> = picked.iter().map(Published::key).collect();
    let replaced = manifest::update::<CommitError>(store, |m| {
        // Every picked segment still listed and not being folded, or the merge is void.
        let listed: HashSet<String> = m
            .segments
            .iter()
            .filter(|p| !p.folding)
            .map(Published::key)
            .collect();
        if !gone.iter().all(|k| listed.contains(k)) {
            return Ok(false);
        }
        m.segments.retain(|p| !gone.contains(&p.key()));
        m.segments.push(merged.clone());
        Ok(true)
    })
    .await?;
    if !replaced.segments.iter().any(|p| p.key() == key) {
        store.delete(&key).await?;
        return Ok(Compacted::default());
    }
    failpoint::hit("merge-published");
    for k in &gone {
        store.delete(k).await?;
    }
    Ok(Compacted {
        merges: 1,
        segments: picked.len(),
        objects: 1,
        ..Compacted::default()
    })
}

/// Folds a day's segments into its base buckets.
async fn fold_day(store: &dyn Store, day: Day) -> Result<Compacted, CommitError> {
    // Mark them first: from here on no merge takes them, so every base holds all of a
    // segment's runs or none.
    let marked = manifest::update::<CommitError>(store, |m| {
        let mut changed = false;
        for p in m.segments.iter_mut() {
            if p.day() == Some(day) && !p.folding {
                p.folding = true;
                changed = true;
            }
        }
        Ok(changed)
    })
    .await?;
    let work = unique(marked.of_day(day).filter(|p| p.folding).cloned());
    if work.is_empty() {
        return Ok(Compacted::default());
    }
    failpoint::hit("fold-marked");
    let Some(parts) = read_segments(store, day, &work).await? else {
        return Ok(Compacted::default());
    };
    // The runs and sequence number that published each segment.
    let mut published = Vec::with_capacity(work.len());
    for p in &work {
        let runs = p
            .runs()
            .ok_or_else(|| corrupt(manifest::KEY, format!("bad run ids in {}", p.key())))?;
        published.push((runs, p.seq));
    }
    let cells = by_domain(&parts);
    let mut written = 0;
    for batch in cells.chunks(BATCH) {
        written += fold_batch(store, day, &parts, &published, batch).await?;
        failpoint::hit("compact-fold");
    }
    let gone: HashSet<String> = work.iter().map(Published::key).collect();
    manifest::update::<CommitError>(store, |m| {
        let before = m.segments.len();
        m.segments.retain(|p| !gone.contains(&p.key()));
        Ok(m.segments.len() != before)
    })
    .await?;
    failpoint::hit("compact-unlisted");
    for key in &gone {
        store.delete(key).await?;
    }
    Ok(Compacted {
        folded_days: 1,
        segments: work.len(),
        objects: written,
        ..Compacted::default()
    })
}

/// Folds each domain's cells into its base bucket; retries a bucket that changed meanwhile.
async fn fold_batch(
    store: &dyn Store,
    day: Day,
    segments: &[Read],
    published: &[(Vec<RunId>, u64)],
    batch: &[DomainCells<'_>],
) -> Result<usize, CommitError> {
    let mut pending: Vec<_> = batch.iter().collect();
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
                None => (DayBucket::new((*domain).clone(), day), Precondition::Absent),
                Some(v) => (
                    DayBucket::decode_for(&v.bytes, domain, day).map_err(|e| corrupt(&key, e))?,
                    Precondition::Matches(v.version),
                ),
            };
            let mut changed = false;
            for (i, at) in cells {
                // Decoded as it is folded (and again on a retry): a batch's cells are not
                // held whole.
                let cell = segments[*i].decode(at, domain, day)?;
                let (runs, seq) = &published[*i];
                changed |= bucket
                    .fold_runs(runs, *seq, &cell)
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

/// Whether a segment id (see `keys::parse_segment`) is a merge's (not a run's own).
pub fn is_merged(id: &str) -> bool {
    id.starts_with(MERGED)
}

#[cfg(test)]
mod tests {
    use super::*;
    use srctraffic::bucket::StatusCount;

    fn cell(domain: &str, minute: usize, n: u64) -> DayBucket {
        let mut b = DayBucket::new(DomainName::parse(domain).unwrap(), Day(4));
        b.minutes[minute] = 100 * n;
        b.requests[minute] = n;
        b.https[minute] = 10 * n;
        b.statuses = vec![StatusCount {
            minute: minute as u16,
            code: 200 + n as u16 % 3,
            count: n,
        }];
        b
    }

    fn read(key: &str, cells: &[DayBucket]) -> Read {
        let bytes = segment::encode(Day(4), cells);
        Read {
            key: key.into(),
            index: segment::Index::parse(&bytes).unwrap(),
            bytes,
        }
    }

    #[test]
    fn cells_summed_by_domain_equal_the_decoded_cells_added() {
        let segs = [
            vec![cell("a.com", 5, 1), cell("b.com", 5, 2)],
            vec![cell("b.com", 5, 3), cell("c.com", 70, 4)],
            vec![cell("a.com", 6, 5), cell("b.com", 1439, 6)],
        ];
        let reads: Vec<Read> = segs
            .iter()
            .enumerate()
            .map(|(i, c)| read(&format!("s{i}"), c))
            .collect();
        let cells = by_domain(&reads);
        let bodies = sum_cells(&reads, &cells, Day(4)).unwrap();
        let mut want: BTreeMap<DomainName, DayBucket> = BTreeMap::new();
        for c in segs.iter().flatten() {
            match want.get_mut(&c.domain) {
                Some(sum) => sum.add(c).unwrap(),
                None => {
                    want.insert(c.domain.clone(), c.clone());
                }
            }
        }
        let got: Vec<DayBucket> = bodies
            .iter()
            .map(|b| DayBucket::decode(b).unwrap())
            .collect();
        assert_eq!(got, want.into_values().collect::<Vec<_>>());
        assert_eq!(
            cells
                .iter()
                .map(|(d, at)| (d.as_str(), at.len()))
                .collect::<Vec<_>>(),
            [("a.com", 2), ("b.com", 3), ("c.com", 1)]
        );
    }

    #[test]
    fn a_damaged_cell_fails_the_sum_naming_its_segment() {
        let mut damaged = read("s1", &[cell("a.com", 5, 1), cell("b.com", 9, 2)]);
        let last = damaged.bytes.len() - 1;
        damaged.bytes[last] ^= 1;
        let reads = [read("s0", &[cell("b.com", 9, 1)]), damaged];
        let cells = by_domain(&reads);
        let err = sum_cells(&reads, &cells, Day(4)).unwrap_err().to_string();
        assert!(err.contains("s1"), "{err}");
    }
}
