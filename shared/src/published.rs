//! What readers see: for each (domain, day), its base bucket plus the cells of the segments the
//! manifest publishes and the base does not hold yet.
//!
//! Every answer is one snapshot, the runs published up to one manifest sequence number: a run
//! is seen whole or not at all, whatever days and domains it spans. A base bucket folded by a
//! compaction that started after the manifest was read holds runs newer than the snapshot; a
//! segment deleted by a compaction after the manifest was read is gone. Either way the read
//! starts again from a fresh manifest (compaction writes every base before it removes a segment
//! from the manifest, and removes it from the manifest before it deletes it, so a fresh read
//! always finds what it needs).

use crate::bucket::{DayBucket, Grain, RunId, View};
use crate::domain::DomainName;
use crate::segment::{self, Index};
use crate::store::manifest::{self, Manifest, Published};
use crate::store::{ReadInline, Store, StoreError, keys};
use crate::time::{Day, Minute};
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How many times a read starts again before it gives up on a store that keeps changing.
const ATTEMPTS: usize = 20;

/// The snapshot an answer was read at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The manifest sequence number.
    pub seq: u64,
    /// The latest minute of any line published; `None` for a store never written.
    pub watermark: Option<Minute>,
}

enum Attempt<T> {
    Done(T),
    Again,
}

/// Reads each wanted (domain, day) as published; `None` where nothing was ever published.
pub async fn read_cells(
    store: &dyn Store,
    wanted: &[(DomainName, Day)],
) -> Result<(Snapshot, Vec<Option<DayBucket>>), StoreError> {
    let every = View {
        grain: Grain::Minute,
        statuses: true,
    };
    let (snap, parts) = gather(store, wanted, every).await?;
    let mut cells = Vec::with_capacity(wanted.len());
    for (parts, (domain, day)) in parts.into_iter().zip(wanted) {
        let mut cell: Option<DayBucket> = None;
        for part in parts {
            let b = DayBucket::decode_for(&part.bytes, domain, *day)
                .map_err(|e| corrupt(&part.key, e))?;
            match &mut cell {
                // The base comes first and keeps its runs; segment cells add to it.
                None => cell = Some(b),
                Some(sum) => sum.add(&b).map_err(|e| corrupt(&part.key, e))?,
            }
        }
        cells.push(cell);
    }
    Ok((snap, cells))
}

/// Segment heads read lately, by key: a segment never changes once written and its key (a
/// random run or merge id) is never reused, so a head read once serves every later query of
/// this process. Bounded; emptied when full.
static HEADS: std::sync::OnceLock<std::sync::Mutex<Heads>> = std::sync::OnceLock::new();
/// A segment's index and the first bytes read with it.
type Head = Arc<(Index, Vec<u8>)>;
type Heads = HashMap<String, Head>;
/// At most this many heads (each at most [`segment::FIRST_READ`] bytes plus its index) are kept.
const HEADS_KEPT: usize = 128;

fn heads() -> std::sync::MutexGuard<'static, Heads> {
    let m = HEADS.get_or_init(Default::default);
    // A panic elsewhere while holding it leaves a cache that is still whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The index of a published segment, and the first bytes read with it; `None` if it is gone.
async fn index_of(store: &dyn Store, key: &str) -> Result<Option<Head>, StoreError> {
    if let Some(hit) = heads().get(key) {
        return Ok(Some(hit.clone()));
    }
    let Some(read) = segment_index(store, key).await? else {
        return Ok(None);
    };
    let read = Arc::new(read);
    let mut cache = heads();
    if cache.len() >= HEADS_KEPT {
        cache.clear();
    }
    cache.insert(key.to_owned(), read.clone());
    Ok(Some(read))
}

/// Reads a segment's index (and the first bytes read with it) from the store, uncached;
/// `None` if the segment is gone.
pub async fn segment_index(
    store: &dyn Store,
    key: &str,
) -> Result<Option<(Index, Vec<u8>)>, StoreError> {
    let bad = |e: segment::SegmentError| StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    };
    let Some(mut prefix) = store.get_range(key, 0, segment::FIRST_READ).await? else {
        return Ok(None);
    };
    let needed = Index::needed(&prefix).map_err(bad)?;
    if needed > prefix.len() as u64 {
        match store.get_range(key, 0, needed).await? {
            Some(p) => prefix = p,
            None => return Ok(None),
        }
    }
    let index = Index::parse(&prefix).map_err(bad)?;
    Ok(Some((index, prefix)))
}

/// The pending segments of the wanted days, each object once (a run published twice by a
/// recovery race counts once), with the first run each holds (a base holds all of an entry's
/// runs or none).
fn pending<'m>(m: &'m Manifest, days: &[Day]) -> Vec<(&'m Published, RunId)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in &m.segments {
        let (Some(day), Some(run)) = (p.day(), p.runs().and_then(|r| r.first().copied())) else {
            continue;
        };
        if days.contains(&day) && seen.insert(p.key()) {
            out.push((p, run));
        }
    }
    out
}

/// One object's bytes that go into a wanted (domain, day): its base bucket, or the cell of a
/// pending segment; with the key to name it by if it turns out damaged.
#[derive(Debug)]
struct Part {
    key: String,
    bytes: Vec<u8>,
    /// Whether `bytes` is the whole object (or cell), not the prefix a view needs.
    whole: bool,
}

/// Gathers, for each wanted (domain, day), the objects whose sum it is: checked against the
/// manifest's snapshot, not yet decoded past their headers.
async fn attempt(
    store: &dyn Store,
    m: &Manifest,
    wanted: &[(DomainName, Day)],
    view: View,
) -> Result<Attempt<Vec<Vec<Part>>>, StoreError> {
    let keys: Vec<String> = wanted
        .iter()
        .map(|(d, day)| keys::bucket(*day, d))
        .collect();
    let objects = match view.grain {
        // The head and the rollup sections come first: a prefix holds them.
        Grain::FiveMinutes => store.get_many_prefixes(&keys, first_read(view)).await?,
        Grain::Minute => store.get_many(&keys).await?,
    };
    let mut parts: Vec<Vec<Part>> = Vec::with_capacity(wanted.len());
    let mut held: Vec<Vec<RunId>> = Vec::with_capacity(wanted.len());
    for ((key, (domain, day)), obj) in keys.into_iter().zip(wanted).zip(objects) {
        let Some(mut bytes) = obj else {
            parts.push(Vec::new());
            held.push(Vec::new());
            continue;
        };
        let mut whole = view.grain == Grain::Minute || (bytes.len() as u64) < first_read(view);
        if !whole && !DayBucket::prefix_holds(&bytes, view) {
            // An earlier version, a long head or a large rollup: read it all, in one read (a
            // second range could come from a newer object).
            match store.get(&key).await? {
                Some(b) => bytes = b,
                None => return Ok(Attempt::Again),
            }
            whole = true;
        }
        // The header alone for now: the checksum is verified when the part is decoded, so
        // that the object is walked once, while it is in the cache.
        match base_runs(&key, &bytes, domain, *day, m)? {
            Some(runs) => held.push(runs),
            None => return Ok(Attempt::Again),
        }
        parts.push(vec![Part { key, bytes, whole }]);
    }
    Ok(match segment_parts(store, m, wanted, &held).await? {
        Attempt::Done(segs) => {
            for (mine, more) in parts.iter_mut().zip(segs) {
                mine.extend(more);
            }
            Attempt::Done(parts)
        }
        Attempt::Again => Attempt::Again,
    })
}

/// The runs a base bucket holds, from its header (its checksums are verified when it is
/// decoded); `None` if a compaction newer than the manifest `m` folded it: read again.
fn base_runs(
    key: &str,
    bytes: &[u8],
    domain: &DomainName,
    day: Day,
    m: &Manifest,
) -> Result<Option<Vec<RunId>>, StoreError> {
    let p = DayBucket::parse_verified_for(bytes, domain, day).map_err(|e| corrupt(key, e))?;
    if p.seq > m.seq {
        // Unless the header only says so because the object is damaged.
        DayBucket::parse_prefix_for(bytes, domain, day).map_err(|e| corrupt(key, e))?;
        return Ok(None);
    }
    Ok(Some(p.runs))
}

/// For each wanted (domain, day), the cells of the pending segments its base (which holds
/// the runs `held`) does not hold yet.
async fn segment_parts(
    store: &dyn Store,
    m: &Manifest,
    wanted: &[(DomainName, Day)],
    held: &[Vec<RunId>],
) -> Result<Attempt<Vec<Vec<Part>>>, StoreError> {
    let mut parts: Vec<Vec<Part>> = wanted.iter().map(|_| Vec::new()).collect();
    let mut days: Vec<Day> = wanted.iter().map(|(_, d)| *d).collect();
    days.sort();
    days.dedup();
    let segs = pending(m, &days);
    if segs.is_empty() {
        return Ok(Attempt::Done(parts));
    }
    let seg_keys: Vec<String> = segs.iter().map(|(p, _)| p.key()).collect();
    let indexes = try_join_all(seg_keys.iter().map(|k| index_of(store, k))).await?;
    let mut found = Vec::with_capacity(indexes.len());
    for i in indexes {
        match i {
            Some(i) => found.push(i),
            None => return Ok(Attempt::Again),
        }
    }

    // Each (wanted cell, segment, range) to add, and the ranges to fetch unless the first read
    // already holds them.
    let mut adds: Vec<(usize, usize, std::ops::Range<u64>)> = Vec::new();
    let mut fetch: BTreeMap<(usize, u64), u64> = BTreeMap::new();
    for (w, (domain, day)) in wanted.iter().enumerate() {
        for (s, ((p, run), head)) in segs.iter().zip(&found).enumerate() {
            let (index, prefix) = &**head;
            if p.day().as_ref() != Some(day) || held[w].binary_search(run).is_ok() {
                continue;
            }
            let Some(r) = index.find(domain) else {
                continue;
            };
            if r.end > prefix.len() as u64 {
                fetch.insert((s, r.start), r.end - r.start);
            }
            adds.push((w, s, r));
        }
    }
    let ranges: Vec<(usize, u64, u64)> = fetch.iter().map(|(&(s, a), &n)| (s, a, n)).collect();
    let fetched = try_join_all(
        ranges
            .iter()
            .map(|&(s, start, len)| store.get_range(&seg_keys[s], start, len)),
    )
    .await?;
    let mut bodies: BTreeMap<(usize, u64), Vec<u8>> = BTreeMap::new();
    for (&(s, start, _), body) in ranges.iter().zip(fetched) {
        match body {
            Some(b) => bodies.insert((s, start), b),
            None => return Ok(Attempt::Again),
        };
    }
    for (w, s, r) in adds {
        let (_, prefix) = &*found[s];
        let bytes = match bodies.remove(&(s, r.start)) {
            Some(b) => b,
            None => usize::try_from(r.start)
                .ok()
                .zip(usize::try_from(r.end).ok())
                .and_then(|(a, b)| prefix.get(a..b))
                .map(<[u8]>::to_vec)
                .ok_or_else(|| StoreError::Corrupt {
                    key: seg_keys[s].clone(),
                    reason: "a cell outside the segment".to_owned(),
                })?,
        };
        parts[w].push(Part {
            key: seg_keys[s].clone(),
            bytes,
            whole: true,
        });
    }
    Ok(Attempt::Done(parts))
}

fn corrupt(key: &str, e: impl ToString) -> StoreError {
    StoreError::Corrupt {
        key: key.to_owned(),
        reason: e.to_string(),
    }
}

/// Hands each object that goes into a wanted (domain, day), base and segments alike, to
/// `f(state, wanted index, header-checked object)` to read what it needs (the bytes alone, or
/// every measure with [`crate::bucket::Parsed::rows`]); a part that fails to decode is an error
/// naming its key. For queries. The decoding is spread over up to `shares` threads when there
/// is enough of it: each share gets a run of the wanted cells and a state of its own from
/// `init`, and the states come back in the order of the shares, for the caller to merge.
/// Decoding is a large part of a query over many domains. On a store read on the calling
/// thread ([`Store::inline`]) each share reads its objects too, and a cell's base is handed
/// over first, its segment cells after every base of the share; elsewhere the objects are all
/// read first, concurrently, and each cell's parts handed over together. `view` says what
/// `f` will walk, so that only that is read where the layout allows.
pub async fn visit_parts<S: Send>(
    store: &dyn Store,
    wanted: &[(DomainName, Day)],
    view: View,
    shares: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &crate::bucket::Parsed<'_>) -> Result<(), crate::bucket::BucketError>
    + Sync,
) -> Result<(Snapshot, Vec<S>), StoreError> {
    if let Some(local) = store.inline() {
        return visit_inline(store, local, wanted, view, shares, init, f).await;
    }
    let (snap, parts) = gather(store, wanted, view).await?;
    let decode = |range: std::ops::Range<usize>| -> Result<S, StoreError> {
        let mut state = init();
        for w in range {
            let (domain, day) = &wanted[w];
            for part in &parts[w] {
                decode_part(&part.bytes, part.whole, &part.key, domain, *day, |p| {
                    f(&mut state, w, p)
                })?;
            }
        }
        Ok(state)
    };
    let total: usize = parts.iter().map(Vec::len).sum();
    let shares = shares.clamp(1, total.div_ceil(PARTS_PER_SHARE).max(1));
    if shares == 1 {
        return Ok((snap, vec![decode(0..wanted.len())?]));
    }
    // Cut where each share has about as many parts as the others.
    let mut bounds = vec![0];
    let mut seen = 0;
    for (w, p) in parts.iter().enumerate() {
        seen += p.len();
        if seen * shares >= total * bounds.len() && bounds.len() < shares {
            bounds.push(w + 1);
        }
    }
    bounds.push(wanted.len());
    bounds.dedup();
    let ranges: Vec<_> = bounds.windows(2).map(|b| b[0]..b[1]).collect();
    Ok((snap, on_threads(&ranges, &decode)?))
}

/// [`visit_parts`] on a store read on the calling thread: each share's thread reads its base
/// buckets into one buffer and decodes each as soon as it is read, then the cells of pending
/// segments (few: compaction folds them) are read and decoded share by share.
async fn visit_inline<S: Send>(
    store: &dyn Store,
    local: &dyn ReadInline,
    wanted: &[(DomainName, Day)],
    view: View,
    shares: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, &crate::bucket::Parsed<'_>) -> Result<(), crate::bucket::BucketError>
    + Sync,
) -> Result<(Snapshot, Vec<S>), StoreError> {
    let first = match view.grain {
        Grain::FiveMinutes => first_read(view),
        Grain::Minute => u64::MAX,
    };
    let shares = shares.clamp(1, wanted.len().div_ceil(PARTS_PER_SHARE).max(1));
    let per_share = wanted.len().div_ceil(shares).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..wanted.len())
        .step_by(per_share)
        .map(|a| a..(a + per_share).min(wanted.len()))
        .collect();
    for _ in 0..ATTEMPTS {
        let (m, _) = manifest::read(store).await?;
        // One share: its state and, per wanted cell, the runs its base holds; `None` if a
        // base is newer than the manifest.
        type Share<S> = Option<(S, Vec<Vec<RunId>>)>;
        let bases = |range: std::ops::Range<usize>| -> Result<Share<S>, StoreError> {
            let mut state = init();
            let mut held = Vec::with_capacity(range.len());
            let mut buf = Vec::new();
            for w in range {
                let (domain, day) = &wanted[w];
                let key = keys::bucket(*day, domain);
                let Some(mut n) = local.read_prefix_into(&key, first, &mut buf)? else {
                    held.push(Vec::new());
                    continue;
                };
                let mut whole = first == u64::MAX || (n as u64) < first;
                if !whole && !DayBucket::prefix_holds(&buf[..n], view) {
                    // Read it all, in one read (a second range could come from a newer object).
                    match local.read_prefix_into(&key, u64::MAX, &mut buf)? {
                        Some(all) => n = all,
                        None => return Ok(None),
                    }
                    whole = true;
                }
                let bytes = &buf[..n];
                match base_runs(&key, bytes, domain, *day, &m)? {
                    Some(runs) => held.push(runs),
                    None => return Ok(None),
                }
                decode_part(bytes, whole, &key, domain, *day, |p| f(&mut state, w, p))?;
            }
            Ok(Some((state, held)))
        };
        let done = on_threads(&ranges, &bases)?;
        let Some(done) = done.into_iter().collect::<Option<Vec<_>>>() else {
            continue;
        };
        let (mut states, held): (Vec<S>, Vec<Vec<Vec<RunId>>>) = done.into_iter().unzip();
        let held: Vec<Vec<RunId>> = held.into_iter().flatten().collect();
        let Attempt::Done(segs) = segment_parts(store, &m, wanted, &held).await? else {
            continue;
        };
        if segs.iter().any(|p| !p.is_empty()) {
            for (range, state) in ranges.iter().zip(&mut states) {
                for w in range.clone() {
                    let (domain, day) = &wanted[w];
                    for part in &segs[w] {
                        decode_part(&part.bytes, true, &part.key, domain, *day, |p| {
                            f(state, w, p)
                        })?;
                    }
                }
            }
        }
        let snap = Snapshot {
            seq: m.seq,
            watermark: m.watermark(),
        };
        return Ok((snap, states));
    }
    Err(StoreError::Unavailable(format!(
        "the store changed under {ATTEMPTS} reads in a row"
    )))
}

/// Parses one object of `(domain, day)` (whole, or the prefix a view needs) and hands it to
/// `f`; an error in either names `key`.
fn decode_part(
    bytes: &[u8],
    whole: bool,
    key: &str,
    domain: &DomainName,
    day: Day,
    f: impl FnOnce(&crate::bucket::Parsed<'_>) -> Result<(), crate::bucket::BucketError>,
) -> Result<(), StoreError> {
    let parsed = if whole {
        DayBucket::parse_for(bytes, domain, day)
    } else {
        DayBucket::parse_prefix_for(bytes, domain, day)
    };
    parsed.and_then(|p| f(&p)).map_err(|e| corrupt(key, e))
}

/// Runs `work` on each range, on the process's pool of one thread per core (threads kept
/// from query to query: starting one per query cost more than some queries), results in the
/// order of the ranges. A single range runs on the calling thread.
fn on_threads<T: Send>(
    ranges: &[std::ops::Range<usize>],
    work: &(impl Fn(std::ops::Range<usize>) -> Result<T, StoreError> + Sync),
) -> Result<Vec<T>, StoreError> {
    use rayon::prelude::*;
    if let [only] = ranges {
        return Ok(vec![work(only.clone())?]);
    }
    ranges
        .par_iter()
        .map(|r| {
            // A share that panics fails its query, not the pool or the process.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(r.clone())))
                .unwrap_or_else(|_| {
                    Err(StoreError::Unavailable(
                        "a decoding thread panicked".to_owned(),
                    ))
                })
        })
        .collect()
}

/// The bytes read first of each base bucket for a walk of `view` at five minutes: enough for
/// the head (with a few hundred run ids) and the rollup sections of a busy domain.
fn first_read(view: View) -> u64 {
    if view.statuses { 12 * 1024 } else { 8 * 1024 }
}

/// Fewer parts than this to a share are decoded on one thread: starting one costs more.
const PARTS_PER_SHARE: usize = 16;

async fn gather(
    store: &dyn Store,
    wanted: &[(DomainName, Day)],
    view: View,
) -> Result<(Snapshot, Vec<Vec<Part>>), StoreError> {
    for _ in 0..ATTEMPTS {
        let (m, _) = manifest::read(store).await?;
        if let Attempt::Done(parts) = attempt(store, &m, wanted, view).await? {
            let snap = Snapshot {
                seq: m.seq,
                watermark: m.watermark(),
            };
            return Ok((snap, parts));
        }
    }
    Err(StoreError::Unavailable(format!(
        "the store changed under {ATTEMPTS} reads in a row"
    )))
}

/// The domains with anything published on a day: those of its base buckets and those of its
/// pending segments, sorted.
pub async fn domains_of_day(store: &dyn Store, day: Day) -> Result<Vec<DomainName>, StoreError> {
    for _ in 0..ATTEMPTS {
        if let Attempt::Done(d) = domains_attempt(store, day).await? {
            return Ok(d);
        }
    }
    Err(StoreError::Unavailable(format!(
        "the store changed under {ATTEMPTS} listings in a row"
    )))
}

async fn domains_attempt(
    store: &dyn Store,
    day: Day,
) -> Result<Attempt<Vec<DomainName>>, StoreError> {
    let (m, _) = manifest::read(store).await?;
    let mut out = std::collections::BTreeSet::new();
    let prefix = format!("{}{day}/", keys::BUCKETS);
    for key in store.list(&prefix).await? {
        match keys::parse_bucket(&key) {
            Some((_, Some(d))) => {
                out.insert(d);
            }
            // A long domain is not in its key: the bucket says which one it holds.
            Some((_, None)) => {
                if let Some(bytes) = store.get(&key).await? {
                    let b = DayBucket::decode(&bytes).map_err(|e| StoreError::Corrupt {
                        key: key.clone(),
                        reason: e.to_string(),
                    })?;
                    if keys::bucket(b.day, &b.domain) != key {
                        return Err(StoreError::Corrupt {
                            key,
                            reason: format!(
                                "holds {} on day {}, not what its key names",
                                b.domain, b.day
                            ),
                        });
                    }
                    out.insert(b.domain);
                }
            }
            None => {}
        }
    }
    for (p, _) in pending(&m, &[day]) {
        match index_of(store, &p.key()).await? {
            Some(head) => out.extend(head.0.domains().cloned()),
            // Compacted since the manifest was read, perhaps after the listing: list again.
            None => return Ok(Attempt::Again),
        }
    }
    Ok(Attempt::Done(out.into_iter().collect()))
}

/// Every day with anything published, sorted.
pub async fn days(store: &dyn Store) -> Result<Vec<Day>, StoreError> {
    let (m, _) = manifest::read(store).await?;
    let mut out: std::collections::BTreeSet<Day> =
        m.pending_days().into_iter().map(|(d, _)| d).collect();
    for key in store.list(keys::BUCKETS).await? {
        if let Some((day, _)) = keys::parse_bucket(&key) {
            out.insert(day);
        }
    }
    Ok(out.into_iter().collect())
}
