//! An in-memory store, for tests only: nothing survives the process.

use super::{Precondition, Store, StoreError, Version, Versioned};
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

#[async_trait]
impl Store for MemoryStore {
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
