//! The manifest: the one object every run's publication goes through. It holds the publish
//! sequence number, the ingest watermark and the segments published but not yet folded into
//! the base buckets. A run becomes visible to readers, all of it at once, with one conditional
//! write of this object; readers read it first and see exactly the runs it has published.
//!
//! Stores written before the manifest existed keep their watermark in [`keys::WATERMARK`];
//! it is read when there is no manifest, and the first publication carries it over.

use super::{Precondition, Store, StoreError, Version, keys, watermark};
use crate::bucket::RunId;
use crate::time::{ApiTime, Day, Minute};
use serde::{Deserialize, Serialize};

/// The manifest's key.
pub const KEY: &str = "meta/manifest.json";

/// One published segment: one run's cells of one day, or several runs' merged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The publish sequence number of its run (all segments of a run share it); for a merged
    /// segment, the highest of its runs'.
    pub seq: u64,
    /// The run, 32 hex digits; for a merged segment, the id of the merge (which names it).
    pub run: String,
    /// For a merged segment, the runs it holds; empty for a run's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<String>,
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// How many (domain, day) cells it holds.
    pub cells: u64,
    /// 0 for a run's own segment, one more than its inputs' for a merged one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub level: u8,
    /// Being folded into the base buckets: a merge must not take it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub folding: bool,
}

fn is_zero(v: &u8) -> bool {
    *v == 0
}

impl Published {
    /// A run's own segment of a day.
    pub fn of_run(seq: u64, run: RunId, day: Day, cells: u64) -> Published {
        Published {
            seq,
            run: run.to_string(),
            merged: Vec::new(),
            day: day.to_string(),
            cells,
            level: 0,
            folding: false,
        }
    }

    /// The runs whose cells it holds, if every id is well formed. A base bucket holds all of
    /// them or none (a segment being folded is never merged).
    pub fn runs(&self) -> Option<Vec<RunId>> {
        if self.merged.is_empty() {
            return RunId::parse(&self.run).map(|r| vec![r]);
        }
        self.merged.iter().map(|r| RunId::parse(r)).collect()
    }

    /// The day, if well formed.
    pub fn day(&self) -> Option<Day> {
        Day::parse(&self.day)
    }

    /// The segment's key.
    pub fn key(&self) -> String {
        keys::segment(&self.day, &self.run)
    }
}

/// The manifest's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The sequence number of the latest publication; 0 before the first.
    pub seq: u64,
    /// The latest minute of any published line, `yyyy-MM-ddTHH:mm:00Z`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// Segments published and not yet compacted, in publication order.
    #[serde(default)]
    pub segments: Vec<Published>,
}

impl Manifest {
    /// The watermark as a minute.
    pub fn watermark(&self) -> Option<Minute> {
        self.watermark
            .as_deref()
            .and_then(ApiTime::parse)
            .map(ApiTime::minute)
    }

    /// Moves the watermark to `to` unless it is already there or later.
    pub fn advance(&mut self, to: Minute) {
        if self.watermark().is_none_or(|w| w < to) {
            self.watermark = Some(to.to_string());
        }
    }

    /// The pending segments of a day.
    pub fn of_day(&self, day: Day) -> impl Iterator<Item = &Published> {
        let day = day.to_string();
        self.segments.iter().filter(move |p| p.day == day)
    }

    /// Whether a run has any pending segment, its own or merged.
    pub fn holds_run(&self, run: RunId) -> bool {
        let run = run.to_string();
        self.segments
            .iter()
            .any(|p| p.run == run || p.merged.contains(&run))
    }

    /// Days with pending segments, and how many each, sorted by day.
    pub fn pending_days(&self) -> Vec<(Day, usize)> {
        let mut days: std::collections::BTreeMap<Day, usize> = Default::default();
        for p in &self.segments {
            if let Some(d) = p.day() {
                *days.entry(d).or_default() += 1;
            }
        }
        days.into_iter().collect()
    }
}

fn corrupt(reason: String) -> StoreError {
    StoreError::Corrupt {
        key: KEY.to_owned(),
        reason,
    }
}

/// Reads the manifest with its version; `None` when the store has none yet (then the
/// manifest is empty but for the legacy watermark, if any).
pub async fn read(store: &dyn Store) -> Result<(Manifest, Option<Version>), StoreError> {
    match store.get_versioned(KEY).await? {
        Some(v) => serde_json::from_slice(&v.bytes)
            .map(|m| (m, Some(v.version)))
            .map_err(|e| corrupt(e.to_string())),
        None => {
            let mut m = Manifest::default();
            if let Some(w) = watermark::read(store).await? {
                m.advance(w);
            }
            Ok((m, None))
        }
    }
}

/// Changes the manifest with a compare-and-swap loop: `change` sees the current contents and
/// returns whether to write (and may fail, which ends the loop). Returns the manifest written,
/// or the current one when `change` wrote nothing.
pub async fn update<E: From<StoreError>>(
    store: &dyn Store,
    mut change: impl FnMut(&mut Manifest) -> Result<bool, E>,
) -> Result<Manifest, E> {
    loop {
        let (mut m, version) = read(store).await?;
        if !change(&mut m)? {
            return Ok(m);
        }
        let bytes = serde_json::to_vec_pretty(&m).map_err(|e| corrupt(e.to_string()))?;
        let when = match version {
            Some(v) => Precondition::Matches(v),
            None => Precondition::Absent,
        };
        match store.put(KEY, bytes, when).await {
            Ok(_) => return Ok(m),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn an_old_store_s_watermark_carries_over_and_updates_are_serial() {
        let s = MemoryStore::new();
        watermark::advance(&s, Minute(100)).await.unwrap();
        let (m, v) = read(&s).await.unwrap();
        assert_eq!((m.watermark(), v), (Some(Minute(100)), None));
        let m = update::<StoreError>(&s, |m| {
            m.seq += 1;
            m.advance(Minute(50));
            Ok(true)
        })
        .await
        .unwrap();
        assert_eq!((m.seq, m.watermark()), (1, Some(Minute(100))));
        let (m, v) = read(&s).await.unwrap();
        assert_eq!(m.seq, 1);
        assert!(v.is_some());
    }
}
