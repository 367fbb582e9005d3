//! One async read-write lock per (bucket, key), made on first use and forgotten when nobody
//! holds it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};

type Lock = RwLock<()>;

/// Per-object locks.
#[derive(Debug, Default)]
pub struct KeyLocks {
    locks: Mutex<HashMap<(String, String), Weak<Lock>>>,
}

/// Held while one object is written: no one else reads or writes it meanwhile.
pub type WriteGuard = OwnedRwLockWriteGuard<()>;
/// Held while one object is opened for reading: no one writes it meanwhile.
pub type ReadGuard = OwnedRwLockReadGuard<()>;

impl KeyLocks {
    /// Waits for, then holds, the write lock of `bucket`/`key`.
    pub async fn write(&self, bucket: &str, key: &str) -> WriteGuard {
        self.get(bucket, key).write_owned().await
    }

    /// Waits for writers of `bucket`/`key` to finish, then keeps new ones out.
    pub async fn read(&self, bucket: &str, key: &str) -> ReadGuard {
        self.get(bucket, key).read_owned().await
    }

    fn get(&self, bucket: &str, key: &str) -> Arc<Lock> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        let id = (bucket.to_owned(), key.to_owned());
        match locks.get(&id).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                // Forget locks nobody holds, so the map stays as small as the writes in flight.
                locks.retain(|_, l| l.strong_count() > 0);
                let lock = Arc::new(Lock::new(()));
                locks.insert(id, Arc::downgrade(&lock));
                lock
            }
        }
    }

    /// Holds the write locks of several keys of one bucket, taken in sorted order so that two
    /// multi-key writers cannot deadlock.
    pub async fn write_all(&self, bucket: &str, keys: &[&str]) -> Vec<WriteGuard> {
        let mut keys = keys.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut guards = Vec::with_capacity(keys.len());
        for key in keys {
            guards.push(self.write(bucket, key).await);
        }
        guards
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writers_of_one_key_take_turns_and_other_keys_do_not_wait() {
        let locks = Arc::new(KeyLocks::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _g = locks.write("b", "k").await;
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                inside.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        let _other = locks.write("b", "other").await;
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unheld_locks_are_forgotten() {
        let locks = KeyLocks::default();
        for i in 0..100 {
            let _g = locks.write("b", &i.to_string()).await;
        }
        let _g = locks.read("b", "last").await;
        assert!(locks.locks.lock().unwrap().len() <= 2);
    }

    #[tokio::test]
    async fn write_all_takes_each_key_once() {
        let locks = KeyLocks::default();
        let guards = locks.write_all("b", &["z", "a", "z"]).await;
        assert_eq!(guards.len(), 2);
    }
}
