//! The storage port: a narrow async key-value contract with conditional writes, which the local
//! directory, the in-memory test store and (later) S3 all meet.
//!
//! Key layout (see [`keys`]): `buckets/YYYY-MM-DD/<domain>.bkt` for base buckets,
//! `segments/YYYY-MM-DD/<run>.seg` for published runs not yet compacted, `meta/manifest.json`
//! for what is published (and `meta/watermark` in stores older than it). Keys are `/`-separated segments of
//! `[A-Za-z0-9._-]`, never starting with a dot.

mod direct;
pub mod keys;
pub mod local;
pub mod manifest;
pub mod memory;
pub mod s3;
pub mod watermark;

use async_trait::async_trait;
use std::fmt::Debug;
use std::sync::Arc;
use thiserror::Error;

pub use local::LocalStore;
pub use memory::MemoryStore;
pub use s3::{Patience, S3Settings, S3Store};

/// An opaque object version: what a conditional write compares against (an ETag on S3, a
/// content hash on disk).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// An object's bytes together with the version they were read at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The object's bytes.
    pub bytes: Vec<u8>,
    /// The version those bytes are.
    pub version: Version,
}

/// When a write may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Always.
    None,
    /// Only if no object exists under the key (`If-None-Match: *`).
    Absent,
    /// Only if the object is still at this version (`If-Match`).
    Matches(Version),
}

/// A store failure. Each names the key (or the store) it concerns.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A conditional write's precondition failed: somebody else wrote first. Read and retry.
    #[error("object {key} changed since it was read")]
    Conflict {
        /// The key written.
        key: String,
    },
    /// An I/O failure on one object.
    #[error("object {key}: {source}")]
    Io {
        /// The key concerned.
        key: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The object exists but is not what its key says it holds.
    #[error("object {key} is corrupt: {reason}")]
    Corrupt {
        /// The key concerned.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A key outside the layout.
    #[error("invalid object key {0:?}")]
    InvalidKey(String),
    /// The store setting names something this build cannot open.
    #[error("cannot open store {0:?}: {1}")]
    Unsupported(String, String),
    /// A remote store refused or failed a request for good (no such bucket, access denied).
    #[error("{key}: {message}")]
    Remote {
        /// The bucket and key, as `s3://bucket/key`.
        key: String,
        /// What the store said.
        message: String,
    },
    /// The store cannot be reached now; worth retrying later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl StoreError {
    /// Whether the failure is the store being out of reach (answered as 503), rather than a fault.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// A piece of an object written with [`Store::put_streamed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The next parts, in order, after those before: handed over a few at a time, so that
    /// the writer wakes once for many.
    Parts(Vec<Vec<u8>>),
    /// The object's first bytes, made last (a head that indexes the parts): the last piece.
    Head(Vec<u8>),
}

/// A head of another length than the one promised.
fn check_head(key: &str, head_len: usize, head: &[u8]) -> Result<(), StoreError> {
    if head.len() == head_len {
        return Ok(());
    }
    Err(StoreError::Io {
        key: key.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("head of {} bytes, {head_len} promised", head.len()),
        ),
    })
}

/// The pieces stopped before the head came: the writer gave up.
fn ended_early(key: &str) -> StoreError {
    StoreError::Io {
        key: key.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the object's pieces ended before its head",
        ),
    }
}

/// The storage contract.
///
/// - A missing object is `Ok(None)`, never an error.
/// - `put` with a [`Precondition`] that does not hold returns [`StoreError::Conflict`] and
///   writes nothing; a successful `put` is atomic: readers see the old or the new bytes, whole.
/// - `list` returns every key under a prefix, sorted, with no order promise across writers.
#[async_trait]
pub trait Store: Send + Sync + Debug {
    /// Reads an object.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Reads many objects, results in the order of `keys`. Stores override this to read
    /// concurrently; the default reads one after the other.
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get(k).await?);
        }
        Ok(out)
    }

    /// Reads up to `len` bytes of an object from byte `start` (fewer at its end). Stores
    /// override this to read only those bytes; the default reads the whole object.
    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .get(key)
            .await?
            .map(|b| slice_of(&b, start, len).to_vec()))
    }

    /// Reads the first `len` bytes (fewer if shorter) of many objects, results in the order of
    /// `keys`. Stores override this to read concurrently; the default reads one after the
    /// other.
    async fn get_many_prefixes(
        &self,
        keys: &[String],
        len: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get_range(k, 0, len).await?);
        }
        Ok(out)
    }

    /// The store's reads on the calling thread, for a store whose read is a local one (no
    /// network to wait on): a reader can then read and decode on the same threads, without
    /// handing each read to a blocking pool. `None` (the default) for remote stores.
    fn inline(&self) -> Option<&dyn ReadInline> {
        None
    }

    /// Reads an object with its version, for a later conditional write.
    async fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Reads many objects with their versions, results in the order of `keys`.
    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for k in keys {
            out.push(self.get_versioned(k).await?);
        }
        Ok(out)
    }

    /// Writes an object if the precondition holds; returns the new version.
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        when: Precondition,
    ) -> Result<Version, StoreError>;

    /// Writes many objects, each under its own precondition, results in order. Each write is
    /// atomic on its own, the batch as a whole is not; stores override this to share the cost
    /// of durability (one flush for the batch) or of round trips.
    async fn put_many(
        &self,
        items: Vec<(String, Vec<u8>, Precondition)>,
    ) -> Vec<Result<Version, StoreError>> {
        let mut out = Vec::with_capacity(items.len());
        for (k, b, when) in items {
            out.push(self.put(&k, b, when).await);
        }
        out
    }

    /// Writes a new object, unconditionally, from pieces handed over as they are made (see
    /// [`Piece`]): its parts, in order, then its head, `head_len` bytes that go before them.
    /// Nothing is visible under `key` until the head has come and the object is whole; a
    /// channel closed before the head writes nothing. Atomic like `put`. Stores override this
    /// to write the parts as they come; the default gathers them and calls `put`.
    async fn put_streamed(
        &self,
        key: &str,
        head_len: usize,
        mut pieces: tokio::sync::mpsc::Receiver<Piece>,
    ) -> Result<(), StoreError> {
        let mut parts = Vec::new();
        while let Some(piece) = pieces.recv().await {
            match piece {
                Piece::Parts(p) => parts.extend(p),
                Piece::Head(head) => {
                    check_head(key, head_len, &head)?;
                    let mut bytes = head;
                    bytes.reserve(parts.iter().map(Vec::len).sum());
                    for p in parts {
                        bytes.extend_from_slice(&p);
                    }
                    return self.put(key, bytes, Precondition::None).await.map(drop);
                }
            }
        }
        Err(ended_early(key))
    }

    /// Every key that starts with `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// Removes an object; removing a missing one is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Removes what writes cut off half way (a killed run) left under each prefix of `under`
    /// (`segments/`, `buckets/2019-12-10/`: a key's directories, whole), unseen by readers and
    /// older than `older_than` (no live write goes that long without touching its file), and
    /// says how many. A store whose writes are whole or absent (S3) has none.
    async fn sweep_leftovers(
        &self,
        under: &[String],
        older_than: std::time::Duration,
    ) -> Result<u64, StoreError> {
        let _ = (under, older_than);
        Ok(0)
    }
}

/// Reads on the calling thread, into a buffer the caller keeps from read to read.
pub trait ReadInline: Send + Sync {
    /// Reads up to `len` bytes of an object from its start into `buf` (growing it if needed)
    /// and returns how many were read; `None` for no such object. `len` of `u64::MAX` reads
    /// the whole object. Bytes of `buf` past the returned length are left as they were.
    fn read_prefix_into(
        &self,
        key: &str,
        len: u64,
        buf: &mut Vec<u8>,
    ) -> Result<Option<usize>, StoreError>;
}

/// The part of `bytes` that a range read of (`start`, `len`) returns.
pub fn slice_of(bytes: &[u8], start: u64, len: u64) -> &[u8] {
    let from = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let to = usize::try_from(start.saturating_add(len))
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    &bytes[from..to]
}

/// Opens a store from its setting: a directory path, `file:///abs/path`, or `s3://bucket/prefix`
/// (waiting on S3 as `patience` says).
pub async fn open(spec: &str, patience: Patience) -> Result<Arc<dyn Store>, StoreError> {
    if spec.starts_with("s3://") {
        return Ok(Arc::new(S3Store::connect(spec, patience).await?));
    }
    let path = spec.strip_prefix("file://").unwrap_or(spec);
    if path.is_empty() {
        return Err(StoreError::Unsupported(
            spec.to_owned(),
            "empty path".to_owned(),
        ));
    }
    Ok(Arc::new(LocalStore::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_default_streamed_write_is_the_head_then_the_parts_once_the_head_comes() {
        let s = MemoryStore::default();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        for p in [&b"ab"[..], b"", b"cd"] {
            tx.send(Piece::Parts(vec![p.to_vec()])).await.unwrap();
        }
        tx.send(Piece::Head(b"H".to_vec())).await.unwrap();
        s.put_streamed("k", 1, rx).await.unwrap();
        assert_eq!(s.get("k").await.unwrap(), Some(b"Habcd".to_vec()));
        // A head of another length, or none, writes nothing.
        for head in [Some(b"HH".to_vec()), None] {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            tx.send(Piece::Parts(vec![b"x".to_vec()])).await.unwrap();
            if let Some(h) = head {
                tx.send(Piece::Head(h)).await.unwrap();
            }
            drop(tx);
            assert!(s.put_streamed("j", 1, rx).await.is_err());
            assert_eq!(s.get("j").await.unwrap(), None);
        }
    }
}
