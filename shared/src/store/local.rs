//! The embedded default: a directory on local disk.
//!
//! Writes are atomic (temporary file in the same directory, flushed, renamed, directory
//! flushed) and conditional writes are serialised across processes by advisory file locks
//! (`flock`) on a fixed set of lock stripes under `.locks/`, so the file count stays bounded and
//! lock files never need deleting. Readers take no lock: a rename is atomic. A large batch of
//! writes shares one flush of the file system (`syncfs`), which is what makes writing thousands
//! of buckets cheap; a few files are flushed each on its own. An object written as it is made
//! (a run's segment, [`Store::put_streamed`]) goes to disk around the page cache (see
//! [`super::direct`]).

use super::{Piece, Precondition, ReadInline, Store, StoreError, Version, Versioned, direct, keys};
use async_trait::async_trait;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const LOCK_STRIPES: u64 = 64;
/// Batches at least this large are staged on [`STAGE_THREADS`] threads.
const PARALLEL_STAGE: usize = 64;
const STAGE_THREADS: usize = 2;
/// Above this many keys, `get_many` spreads reads over several blocking tasks.
const KEYS_PER_TASK: usize = 32;

/// Ranges up to this long are read into a buffer of their size at once.
const DIRECT_READ: usize = 1 << 20;

/// A store in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

type PutResult = Result<Version, StoreError>;

impl LocalStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<LocalStore, StoreError> {
        let root = root.as_ref().to_path_buf();
        let io = |source| StoreError::Io {
            key: root.display().to_string(),
            source,
        };
        fs::create_dir_all(root.join(".locks")).map_err(io)?;
        Ok(LocalStore {
            root: Arc::new(root),
        })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        if !keys::is_valid(key) {
            return Err(StoreError::InvalidKey(key.to_owned()));
        }
        Ok(self.root.join(key))
    }

    /// Reads an object, blocking.
    pub fn get_blocking(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(self.path(key)?) {
            Ok(b) => Ok(Some(b)),
            Err(e) => self.absent(key, e),
        }
    }

    /// What a failed open or read of `key` means: a missing object is normal (`None`); a
    /// missing store directory means the disk is gone.
    fn absent<T>(&self, key: &str, e: std::io::Error) -> Result<Option<T>, StoreError> {
        match e.kind() {
            ErrorKind::NotFound if self.root.is_dir() => Ok(None),
            ErrorKind::NotFound => Err(StoreError::Unavailable(format!(
                "store directory {} is missing",
                self.root.display()
            ))),
            _ => Err(StoreError::Io {
                key: key.to_owned(),
                source: e,
            }),
        }
    }

    /// Reads each key with `read` on blocking threads, a task per [`KEYS_PER_TASK`] keys,
    /// results in the order of `keys`.
    async fn read_many(
        &self,
        keys: &[String],
        read: impl Fn(&LocalStore, &str) -> Result<Option<Vec<u8>>, StoreError> + Clone + Send + 'static,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let tasks: Vec<_> = keys
            .chunks(KEYS_PER_TASK)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                let me = self.clone();
                let read = read.clone();
                tokio::task::spawn_blocking(move || {
                    chunk
                        .iter()
                        .map(|k| read(&me, k))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for t in tasks {
            let part = t
                .await
                .map_err(|e| StoreError::Unavailable(format!("blocking task failed: {e}")))?;
            out.extend(part?);
        }
        Ok(out)
    }

    /// Reads up to `len` bytes from `start`, on the calling thread.
    pub fn get_range_blocking(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        use std::io::{Read, Seek, SeekFrom};
        let io = |source| StoreError::Io {
            key: key.to_owned(),
            source,
        };
        let Some(mut f) = self.open_object(key)? else {
            return Ok(None);
        };
        // A bounded range is read straight into a buffer of its size, by offset: one or two
        // system calls, where growing a buffer as the bytes come takes several.
        if let Ok(n) = usize::try_from(len)
            && n <= DIRECT_READ
        {
            let mut out = vec![0; n];
            let filled = read_at_most(&f, start, &mut out).map_err(io)?;
            out.truncate(filled);
            return Ok(Some(out));
        }
        f.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut out = Vec::new();
        f.take(len).read_to_end(&mut out).map_err(io)?;
        Ok(Some(out))
    }

    /// Opens an object for reading; `None` if there is no such object.
    fn open_object(&self, key: &str) -> Result<Option<File>, StoreError> {
        match File::open(self.path(key)?) {
            Ok(f) => Ok(Some(f)),
            Err(e) => self.absent(key, e),
        }
    }

    fn get_versioned_blocking(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Ok(self.get_blocking(key)?.map(|bytes| Versioned {
            version: version_of(&bytes),
            bytes,
        }))
    }

    fn lock_stripe(&self, stripe: u64) -> std::io::Result<File> {
        let path = self.root.join(".locks").join(format!("{stripe:02}"));
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        f.lock()?;
        Ok(f)
    }

    /// Writes an object if the precondition holds, blocking.
    pub fn put_blocking(&self, key: &str, bytes: &[u8], when: &Precondition) -> PutResult {
        let mut results =
            self.put_many_blocking(vec![(key.to_owned(), bytes.to_vec(), when.clone())]);
        results
            .pop()
            .unwrap_or_else(|| Err(StoreError::InvalidKey(key.to_owned())))
    }

    /// Writes many objects, blocking: every temporary file is written, the file system is
    /// flushed once, then each is renamed into place. Holds the lock stripes of every key
    /// (taken in stripe order, so concurrent batches cannot deadlock) for the whole batch.
    pub fn put_many_blocking(&self, items: Vec<(String, Vec<u8>, Precondition)>) -> Vec<PutResult> {
        let mut stripes: Vec<u64> = items.iter().map(|(k, _, _)| stripe_of(k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            match self.lock_stripe(s) {
                Ok(g) => guards.push(g),
                Err(e) => return items.iter().map(|(k, _, _)| Err(io_err(k, &e))).collect(),
            }
        }
        // Staging (precondition check, encode-free write of a temporary file) is independent per
        // item: spread it over a few threads when the batch is large.
        let stage_one = |(key, bytes, when): &(String, Vec<u8>, Precondition)| {
            self.stage(key, bytes, when)
                .map(|(tmp, path)| (tmp, path, version_of(bytes)))
        };
        let outcomes: Vec<Result<(PathBuf, PathBuf, Version), StoreError>> = if items.len()
            >= PARALLEL_STAGE
        {
            let per = items.len().div_ceil(STAGE_THREADS);
            std::thread::scope(|scope| {
                let handles: Vec<_> = items
                    .chunks(per)
                    .map(|part| scope.spawn(move || part.iter().map(stage_one).collect::<Vec<_>>()))
                    .collect();
                handles
                    .into_iter()
                    .zip(items.chunks(per))
                    .flat_map(|(h, part)| {
                        h.join().unwrap_or_else(|_| {
                            part.iter()
                                .map(|(k, _, _)| {
                                    Err(StoreError::Unavailable(format!("staging {k} panicked")))
                                })
                                .collect()
                        })
                    })
                    .collect()
            })
        } else {
            items.iter().map(stage_one).collect()
        };
        let mut results: Vec<PutResult> = Vec::with_capacity(items.len());
        let mut staged: Vec<(usize, PathBuf, PathBuf)> = Vec::new();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok((tmp, path, version)) => {
                    staged.push((i, tmp, path));
                    results.push(Ok(version));
                }
                Err(e) => results.push(Err(e)),
            }
        }
        if staged.is_empty() {
            return results;
        }
        let tmps: Vec<&Path> = staged.iter().map(|(_, tmp, _)| tmp.as_path()).collect();
        if let Err(e) = flush(&self.root, &tmps) {
            for (i, tmp, _) in &staged {
                let _ = fs::remove_file(tmp);
                results[*i] = Err(io_err(&items[*i].0, &e));
            }
            return results;
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (i, tmp, path) in &staged {
            if let Err(e) = fs::rename(tmp, path) {
                let _ = fs::remove_file(tmp);
                results[*i] = Err(io_err(&items[*i].0, &e));
            } else if let Some(d) = path.parent().filter(|d| !dirs.iter().any(|x| x == d)) {
                dirs.push(d.to_path_buf());
            }
        }
        for d in dirs {
            if let Err(e) = File::open(&d).and_then(|f| f.sync_all()) {
                tracing::warn!(dir = %d.display(), error = %e, "directory fsync failed");
            }
        }
        drop(guards);
        results
    }

    /// Writes a new object from pieces as they come, unconditionally, blocking (see
    /// [`Store::put_streamed`]): around the page cache where it can (see [`super::direct`]).
    /// The lock is taken for the rename only: the temporary file is this writer's alone, and
    /// holding a stripe while the pieces are made would stall every writer of its keys.
    pub fn put_streamed_blocking(
        &self,
        key: &str,
        head_len: usize,
        next: impl FnMut() -> Option<Piece>,
    ) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let (dir, tmp) = self.temporary(key, &path)?;
        let gone = |e: &std::io::Error| {
            let _ = fs::remove_file(&tmp);
            io_err(key, e)
        };
        direct::write_streamed(&tmp, head_len, next).map_err(|e| gone(&e))?;
        let guard = self.lock_stripe(stripe_of(key)).map_err(|e| gone(&e))?;
        fs::rename(&tmp, &path).map_err(|e| gone(&e))?;
        drop(guard);
        File::open(dir)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_err(key, &e))
    }

    /// The directory an object goes in (made if missing) and a temporary file's name there.
    fn temporary<'p>(&self, key: &str, path: &'p Path) -> Result<(&'p Path, PathBuf), StoreError> {
        let dir = path
            .parent()
            .ok_or_else(|| StoreError::InvalidKey(key.to_owned()))?;
        fs::create_dir_all(dir).map_err(|e| io_err(key, &e))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("object");
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        Ok((
            dir,
            dir.join(format!(".{name}.{}.{n}.tmp", std::process::id())),
        ))
    }

    /// Checks the precondition and writes the temporary file; the caller holds the lock.
    fn stage(
        &self,
        key: &str,
        bytes: &[u8],
        when: &Precondition,
    ) -> Result<(PathBuf, PathBuf), StoreError> {
        let path = self.path(key)?;
        let holds = match when {
            Precondition::None => true,
            Precondition::Absent => self.get_blocking(key)?.is_none(),
            Precondition::Matches(v) => {
                self.get_blocking(key)?.as_deref().map(version_of).as_ref() == Some(v)
            }
        };
        if !holds {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        let (_, tmp) = self.temporary(key, &path)?;
        if let Err(e) = File::create(&tmp).and_then(|mut f| f.write_all(bytes)) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err(key, &e));
        }
        Ok((tmp, path))
    }

    fn list_blocking(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        // Walk only below the deepest directory the prefix names.
        let base = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if !base.is_empty() && !keys::is_valid(base) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut stack = vec![(self.root.join(base), base.to_owned())];
        while let Some((dir, key_dir)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(StoreError::Io {
                        key: key_dir,
                        source,
                    });
                }
            };
            for entry in entries {
                let entry = entry.map_err(|source| StoreError::Io {
                    key: key_dir.clone(),
                    source,
                })?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let key = if key_dir.is_empty() {
                    name
                } else {
                    format!("{key_dir}/{name}")
                };
                let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
                if is_dir {
                    if key.starts_with(prefix) || prefix.starts_with(&key) {
                        stack.push((entry.path(), key));
                    }
                } else if key.starts_with(prefix) && keys::is_valid(&key) {
                    out.push(key);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes the temporary files ([`LocalStore::temporary`]) under the directories of
    /// `under` last written more than `older_than` ago: a process killed between writing one
    /// and renaming it leaves it, unlisted and unread, for good otherwise. Only the named
    /// directories are walked: a store keeps a directory of buckets a day for its retention.
    fn sweep_blocking(
        &self,
        under: &[String],
        older_than: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let io = |dir: &Path, source| StoreError::Io {
            key: dir.display().to_string(),
            source,
        };
        let cutoff = std::time::SystemTime::now()
            .checked_sub(older_than)
            .unwrap_or(std::time::UNIX_EPOCH);
        let mut removed = 0;
        let mut stack = Vec::with_capacity(under.len());
        for prefix in under {
            let dir = prefix.trim_end_matches('/');
            if !keys::is_valid(dir) {
                return Err(StoreError::InvalidKey(prefix.clone()));
            }
            stack.push(self.root.join(dir));
        }
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io(&dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                if !(kind.is_file() && name.starts_with('.') && name.ends_with(".tmp")) {
                    continue;
                }
                let stale = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if !stale {
                    continue;
                }
                match fs::remove_file(entry.path()) {
                    Ok(()) => removed += 1,
                    // Another sweep took it first.
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(io(&entry.path(), e)),
                }
            }
        }
        Ok(removed)
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let _guard = self
            .lock_stripe(stripe_of(key))
            .map_err(|e| io_err(key, &e))?;
        match fs::remove_file(&path) {
            Ok(()) => {
                // Drop the day's directory once it empties; failure just means it is not empty.
                if let Some(dir) = path.parent().filter(|d| *d != self.root.as_path()) {
                    let _ = fs::remove_dir(dir);
                }
                Ok(())
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                key: key.to_owned(),
                source,
            }),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(LocalStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(me))
            .await
            .map_err(|e| StoreError::Unavailable(format!("blocking task failed: {e}")))?
    }
}

fn io_err(key: &str, e: &std::io::Error) -> StoreError {
    StoreError::Io {
        key: key.to_owned(),
        source: std::io::Error::new(e.kind(), e.to_string()),
    }
}

fn stripe_of(key: &str) -> u64 {
    u64::from(crc32fast::hash(key.as_bytes())) % LOCK_STRIPES
}

/// Batches of up to this many files are flushed file by file; larger ones with one `syncfs`.
const FSYNC_EACH: usize = 64;
/// Threads that flush a batch's files at once: waiting on the disk, not on a core.
const FSYNC_THREADS: usize = 8;

/// Makes written files durable: an fsync per file for up to [`FSYNC_EACH`] (a run's segments
/// and claims, a manifest, a record), on a few threads at once so that the file system
/// commits them together; one `syncfs` on Linux for more (a compaction's buckets, a backfill's
/// claims). `syncfs` also waits for every other dirty page of the file system, a log writer's
/// included: with 150 MB written by another program just before, a run's claims took 0.08 to
/// 0.11 s instead of 0.01.
fn flush(root: &Path, files: &[&Path]) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    if files.len() > FSYNC_EACH {
        use std::os::fd::AsRawFd;
        let dir = File::open(root)?;
        // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        return Ok(());
    }
    let _ = root;
    let sync = |part: &[&Path]| part.iter().try_for_each(|f| File::open(f)?.sync_all());
    if files.len() < 4 {
        return sync(files);
    }
    let per = files.len().div_ceil(FSYNC_THREADS);
    std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(per)
            .map(|part| scope.spawn(move || sync(part)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(std::io::Error::other("fsync thread panicked")))
        })
    })
}

/// The version of bytes on disk: their XXH3-128, in hex. Versions only tell writers apart
/// (who can write the store can do anything to it anyway); a cryptographic hash cost 90 ms on
/// a 37 MB segment.
fn version_of(bytes: &[u8]) -> Version {
    Version(format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes)))
}

/// Reads from `start` until `buf` is full or the file ends, by offset; returns how many bytes.
fn read_at_most(f: &File, start: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut filled = 0;
    while filled < buf.len() {
        match f.read_at(&mut buf[filled..], start.saturating_add(filled as u64)) {
            Ok(0) => break,
            Ok(k) => filled += k,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

impl ReadInline for LocalStore {
    fn read_prefix_into(
        &self,
        key: &str,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, StoreError> {
        let io = |source| StoreError::Io {
            key: key.to_owned(),
            source,
        };
        let Some(f) = self.open_object(key)? else {
            return Ok(None);
        };
        let want = if len == u64::MAX {
            f.metadata().map_err(io)?.len()
        } else {
            len
        };
        let want = usize::try_from(want).map_err(|_| {
            io(std::io::Error::new(
                ErrorKind::InvalidInput,
                "object larger than memory",
            ))
        })?;
        // A buffer kept from read to read is zeroed only where it grows.
        if buf.len() < want {
            buf.resize(want, 0);
        }
        Ok(Some(read_at_most(&f, 0, &mut buf[..want]).map_err(io)?))
    }
}

#[async_trait]
impl Store for LocalStore {
    fn inline(&self) -> Option<&dyn ReadInline> {
        Some(self)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| s.get_blocking(&key)).await
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| s.get_range_blocking(&key, start, len))
            .await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read_many(keys, |s, k| s.get_blocking(k)).await
    }

    async fn get_many_prefixes(
        &self,
        keys: &[String],
        len: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        self.read_many(keys, move |s, k| s.get_range_blocking(k, 0, len))
            .await
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| s.get_versioned_blocking(&key)).await
    }

    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        let keys = keys.to_vec();
        self.blocking(move |s| keys.iter().map(|k| s.get_versioned_blocking(k)).collect())
            .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, when: Precondition) -> PutResult {
        let key = key.to_owned();
        self.blocking(move |s| s.put_blocking(&key, &bytes, &when))
            .await
    }

    async fn put_streamed(
        &self,
        key: &str,
        head_len: usize,
        mut pieces: tokio::sync::mpsc::Receiver<Piece>,
    ) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| s.put_streamed_blocking(&key, head_len, || pieces.blocking_recv()))
            .await
    }

    async fn put_many(&self, items: Vec<(String, Vec<u8>, Precondition)>) -> Vec<PutResult> {
        let keys: Vec<String> = items.iter().map(|(k, _, _)| k.clone()).collect();
        match self.blocking(move |s| Ok(s.put_many_blocking(items))).await {
            Ok(r) => r,
            Err(e) => keys
                .iter()
                .map(|_| Err(StoreError::Unavailable(e.to_string())))
                .collect(),
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |s| s.list_blocking(&prefix)).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let key = key.to_owned();
        self.blocking(move |s| s.delete_blocking(&key)).await
    }

    async fn sweep_leftovers(
        &self,
        under: &[String],
        older_than: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let under = under.to_vec();
        self.blocking(move |s| s.sweep_blocking(&under, older_than))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conditional_writes_follow_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        assert_eq!(s.get("a/b").await.unwrap(), None);
        let v1 = s
            .put("a/b", b"one".to_vec(), Precondition::Absent)
            .await
            .unwrap();
        assert!(matches!(
            s.put("a/b", b"x".to_vec(), Precondition::Absent).await,
            Err(StoreError::Conflict { .. })
        ));
        let got = s.get_versioned("a/b").await.unwrap().unwrap();
        assert_eq!(
            (got.bytes.as_slice(), &got.version),
            (b"one".as_slice(), &v1)
        );
        let v2 = s
            .put("a/b", b"two".to_vec(), Precondition::Matches(v1.clone()))
            .await
            .unwrap();
        assert!(matches!(
            s.put("a/b", b"x".to_vec(), Precondition::Matches(v1)).await,
            Err(StoreError::Conflict { .. })
        ));
        assert_ne!(v2, version_of(b"one"));
        assert_eq!(
            s.get("a/b").await.unwrap().as_deref(),
            Some(b"two".as_slice())
        );
    }

    #[tokio::test]
    async fn listing_skips_temporary_files_and_respects_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        for k in [
            "buckets/2019-12-10/a.com.bkt",
            "buckets/2019-12-11/a.com.bkt",
            "meta/watermark",
        ] {
            s.put(k, vec![1], Precondition::None).await.unwrap();
        }
        fs::write(
            dir.path().join("buckets/2019-12-10/.a.com.bkt.1.1.tmp"),
            b"x",
        )
        .unwrap();
        assert_eq!(
            s.list("buckets/2019-12-10/").await.unwrap(),
            ["buckets/2019-12-10/a.com.bkt"]
        );
        assert_eq!(s.list("buckets/").await.unwrap().len(), 2);
        assert_eq!(s.list("").await.unwrap().len(), 3);
        assert_eq!(s.list("buckets/2019-12-1").await.unwrap().len(), 2);
        s.delete("buckets/2019-12-11/a.com.bkt").await.unwrap();
        s.delete("buckets/2019-12-11/a.com.bkt").await.unwrap();
        assert_eq!(s.list("buckets/").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_sweep_removes_only_temporary_files_older_than_asked() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        s.put("buckets/2019-12-10/a.com.bkt", vec![1], Precondition::None)
            .await
            .unwrap();
        s.put("meta/watermark", vec![2], Precondition::None)
            .await
            .unwrap();
        let old = dir.path().join("buckets/2019-12-10/.a.com.bkt.1.1.tmp");
        let fresh = dir.path().join("meta/.watermark.2.2.tmp");
        let hidden = dir.path().join("meta/.keep");
        for f in [&old, &fresh, &hidden] {
            fs::write(f, b"x").unwrap();
        }
        // Times set, not waited for: "fresh" is ten minutes old, the others a day.
        let ago = |secs| std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
        for (f, age) in [(&old, 86_400), (&hidden, 86_400), (&fresh, 600)] {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(ago(age))
                .unwrap();
        }
        let hour = std::time::Duration::from_secs(3600);
        let all = [
            "buckets/".to_owned(),
            "meta".to_owned(),
            "nothing/here/".to_owned(),
        ];
        // Only under the directories named.
        assert_eq!(s.sweep_leftovers(&all[1..], hour).await.unwrap(), 0);
        assert!(old.exists());
        assert_eq!(s.sweep_leftovers(&all, hour).await.unwrap(), 1);
        assert!(!old.exists());
        assert!(fresh.exists() && hidden.exists());
        assert_eq!(s.list("").await.unwrap().len(), 2);
        assert_eq!(s.sweep_leftovers(&all, hour).await.unwrap(), 0);
        let minute = std::time::Duration::from_secs(60);
        assert_eq!(s.sweep_leftovers(&all, minute).await.unwrap(), 1);
        assert!(!fresh.exists());
        assert!(matches!(
            s.sweep_leftovers(&["../x".to_owned()], minute).await,
            Err(StoreError::InvalidKey(_))
        ));
    }

    #[tokio::test]
    async fn a_batch_applies_each_precondition_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        s.put("a/taken", b"x".to_vec(), Precondition::None)
            .await
            .unwrap();
        let items = (0..100)
            .map(|i| (format!("b/{i}"), vec![i as u8], Precondition::Absent))
            .chain(std::iter::once((
                "a/taken".to_owned(),
                b"y".to_vec(),
                Precondition::Absent,
            )))
            .collect();
        let r = s.put_many(items).await;
        assert_eq!(r.iter().filter(|r| r.is_ok()).count(), 100);
        assert!(matches!(r[100], Err(StoreError::Conflict { .. })));
        assert_eq!(s.get("b/42").await.unwrap(), Some(vec![42]));
        assert_eq!(s.get("a/taken").await.unwrap(), Some(b"x".to_vec()));
        let got = s
            .get_many_versioned(&["b/1".into(), "zz".into()])
            .await
            .unwrap();
        assert_eq!(got[0].as_ref().map(|v| v.bytes.clone()), Some(vec![1]));
        assert!(got[1].is_none());
    }

    #[tokio::test]
    async fn an_object_written_as_it_is_made_reads_back_whole_and_only_once_whole() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        // Small and large (several chunks), each replacing an older object under its key.
        for (key, parts) in [
            (
                "seg/small",
                vec![b"cell".to_vec(), vec![], b"cell".to_vec()],
            ),
            (
                "seg/large",
                vec![vec![7; 100], vec![9; 3 << 20], vec![1; 5]],
            ),
        ] {
            s.put(key, b"old".to_vec(), Precondition::None)
                .await
                .unwrap();
            let (tx, rx) = tokio::sync::mpsc::channel(1);
            let writing = tokio::spawn({
                let s = s.clone();
                async move { s.put_streamed(key, 4, rx).await }
            });
            for p in &parts {
                tx.send(Piece::Parts(vec![p.clone()])).await.unwrap();
                // Until its head comes, readers see the old object.
                assert_eq!(s.get(key).await.unwrap(), Some(b"old".to_vec()));
            }
            tx.send(Piece::Head(b"head".to_vec())).await.unwrap();
            writing.await.unwrap().unwrap();
            let mut want = b"head".to_vec();
            want.extend(parts.concat());
            assert!(s.get(key).await.unwrap() == Some(want));
        }
        // Pieces that stop before the head leave the old object and no temporary file.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(Piece::Parts(vec![vec![1; 10]])).await.unwrap();
        drop(tx);
        assert!(s.put_streamed("seg/small", 4, rx).await.is_err());
        assert_eq!(s.get("seg/small").await.unwrap().unwrap().len(), 12);
        let names: Vec<_> = fs::read_dir(dir.path().join("seg")).unwrap().collect();
        assert_eq!(names.len(), 2, "no temporary file left");
        let (_, rx) = tokio::sync::mpsc::channel(1);
        assert!(matches!(
            s.put_streamed("../out", 0, rx).await,
            Err(StoreError::InvalidKey(_))
        ));
    }

    #[tokio::test]
    async fn keys_outside_the_layout_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        assert!(matches!(
            s.get("../etc/passwd").await,
            Err(StoreError::InvalidKey(_))
        ));
    }

    #[tokio::test]
    async fn prefixes_are_read_in_order_whole_when_shorter() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        let long: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        s.put("k/long", long.clone(), Precondition::None)
            .await
            .unwrap();
        s.put("k/short", vec![1, 2, 3], Precondition::None)
            .await
            .unwrap();
        let keys: Vec<String> = ["k/short", "k/missing", "k/long"]
            .iter()
            .map(|k| k.to_string())
            .collect();
        let got = s.get_many_prefixes(&keys, 8192).await.unwrap();
        assert_eq!(got[0].as_deref(), Some(&[1u8, 2, 3][..]));
        assert_eq!(got[1], None);
        assert_eq!(got[2].as_deref(), Some(&long[..8192]));
        // Read inline into one buffer kept from read to read.
        let inline = s.inline().unwrap();
        let mut buf = Vec::new();
        assert_eq!(
            inline.read_prefix_into("k/long", 8192, &mut buf).unwrap(),
            Some(8192)
        );
        assert_eq!(&buf[..8192], &long[..8192]);
        assert_eq!(
            inline.read_prefix_into("k/short", 8192, &mut buf).unwrap(),
            Some(3)
        );
        assert_eq!(&buf[..3], &[1, 2, 3]);
        assert_eq!(
            inline
                .read_prefix_into("k/missing", 8192, &mut buf)
                .unwrap(),
            None
        );
        assert_eq!(
            inline
                .read_prefix_into("k/long", u64::MAX, &mut buf)
                .unwrap(),
            Some(100_000)
        );
        assert_eq!(&buf[..100_000], &long[..]);
        // Ranges past the end, and too long to read at once, still read what is there.
        assert_eq!(
            s.get_range("k/long", 99_990, 100).await.unwrap(),
            Some(long[99_990..].to_vec())
        );
        assert_eq!(
            s.get_range("k/long", 10, u64::MAX).await.unwrap(),
            Some(long[10..].to_vec())
        );
    }

    #[tokio::test]
    async fn get_many_keeps_the_order_of_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path()).unwrap();
        let keys: Vec<String> = (0..100).map(|i| format!("k/{i}")).collect();
        for (i, k) in keys.iter().enumerate().filter(|(i, _)| i % 3 == 0) {
            s.put(k, vec![i as u8], Precondition::None).await.unwrap();
        }
        let got = s.get_many(&keys).await.unwrap();
        for (i, g) in got.iter().enumerate() {
            assert_eq!(g.as_deref(), (i % 3 == 0).then_some([i as u8].as_slice()));
        }
    }
}
