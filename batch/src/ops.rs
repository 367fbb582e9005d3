//! `inspect` and `prune`: looking at and trimming a store.

use srctraffic::api::request::RETENTION_DAYS;
use srctraffic::bucket::DayBucket;
use srctraffic::store::{Store, StoreError, keys};
use srctraffic::{Day, DomainName};
use std::io::Write;

/// Why `inspect` or `prune` failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// Output failed.
    #[error("writing output")]
    Io(#[from] std::io::Error),
    /// The store holds nothing for that (domain, day).
    #[error("no data for {domain} on {day} in this store")]
    NotFound {
        /// The domain.
        domain: String,
        /// The day.
        day: String,
    },
}

/// A closed pipe on output (`... | head`) ends the output early, which is no failure.
pub fn unless_closed_pipe(r: Result<(), OpsError>) -> Result<(), OpsError> {
    match r {
        Err(OpsError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes a (domain, day) as `minute,bytes` CSV. A day with no object is an error.
pub async fn inspect(
    store: &dyn Store,
    domain: &str,
    day: &str,
    nonzero: bool,
    out: &mut impl Write,
) -> Result<(), OpsError> {
    let d = DomainName::parse(domain)
        .ok_or_else(|| OpsError::Usage(format!("not a valid domain: {domain:?}")))?;
    let day =
        Day::parse(day).ok_or_else(|| OpsError::Usage(format!("not a YYYY-MM-DD day: {day:?}")))?;
    let key = keys::bucket(day, &d);
    let bucket = match store.get(&key).await? {
        Some(b) => DayBucket::decode_for(&b, &d, day).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?,
        None => {
            return Err(OpsError::NotFound {
                domain: d.to_string(),
                day: day.to_string(),
            });
        }
    };
    writeln!(out, "minute,bytes")?;
    let first = day.first_minute().0;
    for (i, b) in bucket.minutes.iter().enumerate() {
        if !nonzero || *b > 0 {
            writeln!(out, "{},{b}", srctraffic::Minute(first + i as i64))?;
        }
    }
    Ok(())
}

/// Writes every minute with traffic in the store as `domain,minute,bytes` CSV, sorted by
/// domain then minute. Each bucket is checked against its key.
pub async fn export(store: &dyn Store, out: &mut impl Write) -> Result<u64, OpsError> {
    let mut cells: Vec<(DomainName, Day, String)> = Vec::new();
    let mut long = Vec::new();
    for key in store.list(keys::BUCKETS).await? {
        match keys::parse_bucket(&key) {
            Some((day, Some(d))) => cells.push((d, day, key)),
            // Long domains are not in their keys: the bucket says which one it holds.
            Some((day, None)) => long.push((day, key)),
            None => {}
        }
    }
    for (day, key) in long {
        if let Some(bytes) = store.get(&key).await? {
            let b = decode_at(&key, &bytes)?;
            cells.push((b.domain, day, key));
        }
    }
    cells.sort();
    writeln!(out, "domain,minute,bytes")?;
    let mut rows = 0;
    for (domain, day, key) in cells {
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        let b = decode_at(&key, &bytes)?;
        let first = day.first_minute().0;
        for (i, v) in b.minutes.iter().enumerate().filter(|(_, v)| **v > 0) {
            writeln!(out, "{domain},{},{v}", srctraffic::Minute(first + i as i64))?;
            rows += 1;
        }
    }
    Ok(rows)
}

/// Decodes the bucket at `key` and checks that it is the one the key names: the key of what
/// it holds must be `key` (a long domain's key names it by hash, so this covers those too).
fn decode_at(key: &str, bytes: &[u8]) -> Result<DayBucket, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_owned(),
        reason,
    };
    let b = DayBucket::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    if keys::bucket(b.day, &b.domain) != key {
        return Err(corrupt(format!(
            "holds {} on day {}, not what its key names",
            b.domain, b.day
        )));
    }
    Ok(b)
}

/// Deletes every bucket of days before the retention window; returns (days, objects) removed.
pub async fn prune(store: &dyn Store, now_unix: i64) -> Result<(usize, usize), OpsError> {
    let floor = Day((now_unix.div_euclid(86_400) - RETENTION_DAYS) as i32);
    let mut days = std::collections::BTreeSet::new();
    let mut objects = 0;
    for key in store.list(keys::BUCKETS).await? {
        if let Some((day, _)) = keys::parse_bucket(&key)
            && day < floor
        {
            store.delete(&key).await?;
            days.insert(day);
            objects += 1;
        }
    }
    Ok((days.len(), objects))
}
