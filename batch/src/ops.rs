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
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes a (domain, day) as `minute,bytes` CSV. A day with no object prints zeros.
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
        Some(b) => DayBucket::decode(&b).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?,
        None => DayBucket::new(d, day),
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
/// domain then minute.
pub async fn export(store: &dyn Store, out: &mut impl Write) -> Result<u64, OpsError> {
    let mut cells: Vec<(DomainName, Day, String)> = store
        .list(keys::BUCKETS)
        .await?
        .into_iter()
        .filter_map(|k| keys::parse_bucket(&k).map(|(day, d)| (d, day, k)))
        .collect();
    cells.sort();
    writeln!(out, "domain,minute,bytes")?;
    let mut rows = 0;
    for (domain, day, key) in cells {
        let Some(bytes) = store.get(&key).await? else {
            continue;
        };
        let b = DayBucket::decode(&bytes).map_err(|e| StoreError::Corrupt {
            key: key.clone(),
            reason: e.to_string(),
        })?;
        let first = day.first_minute().0;
        for (i, v) in b.minutes.iter().enumerate().filter(|(_, v)| **v > 0) {
            writeln!(out, "{domain},{},{v}", srctraffic::Minute(first + i as i64))?;
            rows += 1;
        }
    }
    Ok(rows)
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
