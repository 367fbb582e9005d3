//! An in-memory store, for tests only: nothing survives the process.

use super::{Precondition, ReadInline, Store, StoreError, Version, Versioned};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The write counter, and each key's bytes with the counter value that wrote them.
type Objects = (u64, BTreeMap<String, (Vec<u8>, u64)>);

/// A store in a map, for tests. Versions are a write counter.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<Objects>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Objects) -> T) -> T {
        // A poisoned lock only means another test thread panicked; the map is still whole.
        let mut g = self.objects.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

impl ReadInline for MemoryStore {
    fn read_prefix_into(
        &self,
        key: &str,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, StoreError> {
        Ok(self.with(|(_, m)| {
            m.get(key).map(|(b, _)| {
                let part = super::slice_of(b, 0, len);
                if buf.len() < part.len() {
                    buf.resize(part.len(), 0);
                }
                buf[..part.len()].copy_from_slice(part);
                part.len()
            })
        }))
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn inline(&self) -> Option<&dyn ReadInline> {
        Some(self)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with(|(_, m)| m.get(key).map(|(b, _)| b.clone())))
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.with(|(_, m)| {
            m.get(key)
                .map(|(b, _)| super::slice_of(b, start, len).to_vec())
        }))
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.with(|(_, m)| {
            m.get(key).map(|(b, v)| Versioned {
                bytes: b.clone(),
                version: Version(v.to_string()),
            })
        }))
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        when: Precondition,
    ) -> Result<Version, StoreError> {
        self.with(|(counter, m)| {
            let current = m.get(key).map(|(_, v)| Version(v.to_string()));
            let holds = match &when {
                Precondition::None => true,
                Precondition::Absent => current.is_none(),
                Precondition::Matches(v) => current.as_ref() == Some(v),
            };
            if !holds {
                return Err(StoreError::Conflict {
                    key: key.to_owned(),
                });
            }
            *counter += 1;
            m.insert(key.to_owned(), (bytes, *counter));
            Ok(Version(counter.to_string()))
        })
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        Ok(self.with(|(_, m)| {
            m.keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect()
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.with(|(_, m)| m.remove(key));
        Ok(())
    }
}

/// A memory store read as a remote one is (no reads on the calling thread, ranges by request):
/// for tests of the readers' other path.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct AsRemote(pub MemoryStore);

#[cfg(test)]
#[async_trait]
impl Store for AsRemote {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get_range(key, start, len).await
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.0.get_versioned(key).await
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        when: Precondition,
    ) -> Result<Version, StoreError> {
        self.0.put(key, bytes, when).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.0.list(prefix).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
}
