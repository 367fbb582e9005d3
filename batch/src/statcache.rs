//! The stat cache: for local files this host has committed, the size, modification time,
//! inode and device they had, with their identity. A file that still has all four is skipped
//! without reading its bytes again, so a run over 10,000 committed files and one new one reads
//! only the new one; `--verify` ignores the cache and rehashes everything.
//!
//! It lives in the store beside the ledger, one object per host
//! (`ledger/stat-cache/<hash of the host name>.json`), and holds only inputs already
//! committed: an entry is written after its run finished, so skipping by it can never lose a
//! file. A file rewritten in place with its old size and modification time kept (and on the
//! same inode) would be taken as unchanged: that is what `--verify` is for.

use serde::{Deserialize, Serialize};
use srctraffic::store::{Precondition, Store, StoreError};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What a file looked like when it was committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stat {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// Inode number.
    pub ino: u64,
    /// Device number.
    pub dev: u64,
}

impl Stat {
    /// The file's stat now, with its absolute path (the cache's key); `None` if it cannot be
    /// read (the run reports that when it reads it).
    pub fn of(path: &Path) -> Option<(String, Stat)> {
        let abs = std::fs::canonicalize(path).ok()?;
        let m = std::fs::metadata(&abs).ok()?;
        let stat = Stat {
            size: m.size(),
            mtime_ns: m
                .mtime()
                .saturating_mul(1_000_000_000)
                .saturating_add(m.mtime_nsec()),
            ino: m.ino(),
            dev: m.dev(),
        };
        Some((abs.to_str()?.to_owned(), stat))
    }
}

/// One committed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its stat when committed.
    #[serde(flatten)]
    pub stat: Stat,
    /// Its identity in the ledger.
    pub identity: String,
}

/// The cache of one host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatCache {
    /// Committed files by absolute path.
    pub files: BTreeMap<String, Entry>,
}

/// The cache's key for a host.
pub fn key(host: &str) -> String {
    format!(
        "ledger/stat-cache/{:016x}.json",
        xxhash_rust::xxh3::xxh3_64(host.as_bytes())
    )
}

impl StatCache {
    /// Reads the host's cache; an unreadable one is as good as empty (it only saves work).
    pub async fn load(store: &dyn Store, host: &str) -> Result<StatCache, StoreError> {
        Ok(match store.get(&key(host)).await? {
            Some(b) => serde_json::from_slice(&b).unwrap_or_default(),
            None => StatCache::default(),
        })
    }

    /// The identity of a file committed with exactly this stat.
    pub fn identity(&self, path: &str, stat: &Stat) -> Option<&str> {
        self.files
            .get(path)
            .filter(|e| e.stat == *stat)
            .map(|e| e.identity.as_str())
    }

    /// Adds committed files to the host's cache (compare-and-swap, so concurrent runs on one
    /// host merge), dropping entries whose file is gone.
    pub async fn record(
        store: &dyn Store,
        host: &str,
        committed: &[(String, Entry)],
    ) -> Result<(), StoreError> {
        if committed.is_empty() {
            return Ok(());
        }
        let k = key(host);
        loop {
            let current = store.get_versioned(&k).await?;
            let (mut cache, when) = match current {
                Some(v) => (
                    serde_json::from_slice::<StatCache>(&v.bytes).unwrap_or_default(),
                    Precondition::Matches(v.version),
                ),
                None => (StatCache::default(), Precondition::Absent),
            };
            cache.files.retain(|p, _| Path::new(p).exists());
            for (p, e) in committed {
                cache.files.insert(p.clone(), e.clone());
            }
            let bytes = serde_json::to_vec(&cache).unwrap_or_default();
            match store.put(&k, bytes, when).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use srctraffic::store::MemoryStore;

    #[tokio::test]
    async fn a_file_is_known_while_its_stat_holds() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a.csv");
        std::fs::write(&f, b"time,domain,bytes\n").unwrap();
        let (path, stat) = Stat::of(&f).unwrap();
        let store = MemoryStore::new();
        let entry = Entry {
            stat: stat.clone(),
            identity: "id-a".into(),
        };
        StatCache::record(&store, "h", &[(path.clone(), entry)])
            .await
            .unwrap();
        let cache = StatCache::load(&store, "h").await.unwrap();
        assert_eq!(cache.identity(&path, &stat), Some("id-a"));
        assert!(
            StatCache::load(&store, "other")
                .await
                .unwrap()
                .files
                .is_empty()
        );
        // Touched: the cache no longer vouches for it.
        std::fs::write(&f, b"time,domain,bytes\nx").unwrap();
        let (_, now) = Stat::of(&f).unwrap();
        assert_eq!(cache.identity(&path, &now), None);
        // Gone: dropped at the next record.
        std::fs::remove_file(&f).unwrap();
        let other = dir.path().join("b.csv");
        std::fs::write(&other, b"x").unwrap();
        let (p2, s2) = Stat::of(&other).unwrap();
        let e2 = Entry {
            stat: s2,
            identity: "id-b".into(),
        };
        StatCache::record(&store, "h", &[(p2.clone(), e2)])
            .await
            .unwrap();
        let cache = StatCache::load(&store, "h").await.unwrap();
        assert_eq!(cache.files.keys().collect::<Vec<_>>(), [&p2]);
    }
}
