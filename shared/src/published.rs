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

use crate::bucket::{DayBucket, RunId};
use crate::domain::DomainName;
use crate::segment::{self, Index};
use crate::store::manifest::{self, Manifest, Published};
use crate::store::{Store, StoreError, keys};
use crate::time::{Day, Minute};
use futures_util::future::try_join_all;
use std::collections::BTreeMap;

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
    for _ in 0..ATTEMPTS {
        let (m, _) = manifest::read(store).await?;
        if let Attempt::Done(cells) = attempt(store, &m, wanted).await? {
            let snap = Snapshot {
                seq: m.seq,
                watermark: m.watermark(),
            };
            return Ok((snap, cells));
        }
    }
    Err(StoreError::Unavailable(format!(
        "the store changed under {ATTEMPTS} reads in a row"
    )))
}

/// The index of a published segment; `None` if it is gone.
async fn index_of(store: &dyn Store, key: &str) -> Result<Option<(Index, Vec<u8>)>, StoreError> {
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

async fn attempt(
    store: &dyn Store,
    m: &Manifest,
    wanted: &[(DomainName, Day)],
) -> Result<Attempt<Vec<Option<DayBucket>>>, StoreError> {
    let keys: Vec<String> = wanted
        .iter()
        .map(|(d, day)| keys::bucket(*day, d))
        .collect();
    let objects = store.get_many(&keys).await?;
    let mut cells = Vec::with_capacity(wanted.len());
    for ((key, (domain, day)), obj) in keys.iter().zip(wanted).zip(objects) {
        let cell = match obj {
            Some(bytes) => {
                let b = DayBucket::decode_for(&bytes, domain, *day).map_err(|e| {
                    StoreError::Corrupt {
                        key: key.clone(),
                        reason: e.to_string(),
                    }
                })?;
                // Folded by a compaction newer than this manifest: read again.
                if b.seq > m.seq {
                    return Ok(Attempt::Again);
                }
                Some(b)
            }
            None => None,
        };
        cells.push(cell);
    }

    let mut days: Vec<Day> = wanted.iter().map(|(_, d)| *d).collect();
    days.sort();
    days.dedup();
    let segs = pending(m, &days);
    if segs.is_empty() {
        return Ok(Attempt::Done(cells));
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

    // Each (wanted cell, segment) pair to add, and the byte range to fetch unless the first
    // read already holds it.
    let mut adds: Vec<(usize, usize)> = Vec::new();
    let mut fetch: BTreeMap<(usize, u64), u64> = BTreeMap::new();
    for (w, (domain, day)) in wanted.iter().enumerate() {
        for (s, ((p, run), (index, prefix))) in segs.iter().zip(&found).enumerate() {
            if p.day().as_ref() != Some(day) || cells[w].as_ref().is_some_and(|b| b.holds(*run)) {
                continue;
            }
            let Some(r) = index.find(domain) else {
                continue;
            };
            adds.push((w, s));
            if r.end > prefix.len() as u64 {
                fetch.insert((s, r.start), r.end - r.start);
            }
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
    for (w, s) in adds {
        let (domain, day) = &wanted[w];
        let (index, prefix) = &found[s];
        let bad = |reason: String| StoreError::Corrupt {
            key: seg_keys[s].clone(),
            reason,
        };
        let Some(r) = index.find(domain) else {
            continue;
        };
        let cell = match bodies.get(&(s, r.start)) {
            Some(b) => index.cell(domain, b, r.start),
            None => index.cell(domain, prefix, 0),
        }
        .map_err(|e| bad(e.to_string()))?;
        let Some(cell) = cell else { continue };
        let base = cells[w].get_or_insert_with(|| DayBucket::new(domain.clone(), *day));
        base.add(&cell).map_err(|e| bad(e.to_string()))?;
    }
    Ok(Attempt::Done(cells))
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
            Some((index, _)) => out.extend(index.domains().cloned()),
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
