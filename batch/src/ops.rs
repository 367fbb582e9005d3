//! `inspect` and `prune`: looking at and trimming a store.

use srctraffic::api::request::RETENTION_DAYS;
use srctraffic::published;
use srctraffic::store::{Store, StoreError, keys, manifest};
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

impl From<csv::Error> for OpsError {
    fn from(e: csv::Error) -> OpsError {
        // Keep the I/O error itself, so that a closed pipe is still recognised as one.
        match e.into_kind() {
            csv::ErrorKind::Io(io) => OpsError::Io(io),
            other => OpsError::Io(std::io::Error::other(format!("{other:?}"))),
        }
    }
}

/// A closed pipe on output (`... | head`) ends the output early, which is no failure.
pub fn unless_closed_pipe(r: Result<(), OpsError>) -> Result<(), OpsError> {
    match r {
        Err(OpsError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Writes a (domain, day) as published as `minute,bytes,requests` CSV. A day with nothing
/// published is an error.
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
    let (_, cells) = published::read_cells(store, &[(d.clone(), day)]).await?;
    let Some(bucket) = cells.into_iter().next().flatten() else {
        return Err(OpsError::NotFound {
            domain: d.to_string(),
            day: day.to_string(),
        });
    };
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["minute", "bytes", "requests"])?;
    let first = day.first_minute().0;
    for (i, (b, r)) in bucket
        .minutes
        .iter()
        .zip(bucket.requests.iter())
        .enumerate()
    {
        if !nonzero || *b > 0 {
            let minute = srctraffic::Minute(first + i as i64).to_string();
            w.write_record([minute, b.to_string(), r.to_string()])?;
        }
    }
    w.flush()?;
    Ok(())
}

/// Writes every minute with traffic in the store as `domain,minute,bytes` CSV, sorted by
/// domain then minute: what readers see (base buckets and published segments), each bucket
/// checked against its key.
pub async fn export(store: &dyn Store, out: &mut impl Write) -> Result<u64, OpsError> {
    let mut cells: Vec<(DomainName, Day)> = Vec::new();
    for day in published::days(store).await? {
        for d in published::domains_of_day(store, day).await? {
            cells.push((d, day));
        }
    }
    cells.sort();
    let mut w = csv::Writer::from_writer(out);
    w.write_record(["domain", "minute", "bytes"])?;
    let mut rows = 0;
    // A day's worth of domains at a time: bounded memory, few round trips.
    for chunk in cells.chunks(256) {
        let (_, buckets) = published::read_cells(store, chunk).await?;
        for b in buckets.into_iter().flatten() {
            let first = b.day.first_minute().0;
            for (i, v) in b.minutes.iter().enumerate().filter(|(_, v)| **v > 0) {
                let minute = srctraffic::Minute(first + i as i64).to_string();
                w.write_record([b.domain.as_str(), minute.as_str(), v.to_string().as_str()])?;
                rows += 1;
            }
        }
    }
    w.flush()?;
    Ok(rows)
}

/// Deletes every bucket and segment of days before the retention window; returns (days,
/// objects) removed.
pub async fn prune(store: &dyn Store, now_unix: i64) -> Result<(usize, usize), OpsError> {
    let floor = Day((now_unix.div_euclid(86_400) - RETENTION_DAYS) as i32);
    let mut days = std::collections::BTreeSet::new();
    let mut objects = 0;
    // Out of the manifest first, so no reader looks for them; then gone.
    let mut old = Vec::new();
    manifest::update::<StoreError>(store, |m| {
        old = m
            .segments
            .iter()
            .filter(|p| p.day().is_some_and(|d| d < floor))
            .cloned()
            .collect();
        m.segments.retain(|p| p.day().is_none_or(|d| d >= floor));
        Ok(!old.is_empty())
    })
    .await?;
    for p in old {
        store.delete(&p.key()).await?;
        days.extend(p.day());
        objects += 1;
    }
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
