//! Finding inputs (files, and directories of `*.csv` / `*.csv.gz`), telling gzip from plain by
//! content, and identifying each input by its content for the exactly-once ledger.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// Where a log file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file.
    File(PathBuf),
    /// An S3 object, at the version listed.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key.
        key: String,
        /// Its ETag when listed; reads ask for exactly this version.
        etag: String,
    },
}

/// One log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// Where it is.
    pub source: Source,
    /// Size in bytes.
    pub size: u64,
}

impl Input {
    /// The place as shown to people: a path or `s3://bucket/key`.
    pub fn display(&self) -> String {
        match &self.source {
            Source::File(p) => p.display().to_string(),
            Source::S3 { bucket, key, .. } => format!("s3://{bucket}/{key}"),
        }
    }

    /// The local path, for a local file.
    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(p) => Some(p),
            Source::S3 { .. } => None,
        }
    }

    /// The input's identity for the ledger: for a file, its size and content hash (so a renamed
    /// or copied file is the same input); for an S3 object, its key and ETag.
    pub fn identity(&self) -> io::Result<String> {
        match &self.source {
            Source::File(p) => identity(p),
            Source::S3 { bucket, key, etag } => Ok(format!(
                "s3-{:032x}",
                xxhash_rust::xxh3::xxh3_128(format!("{bucket}/{key}\n{etag}").as_bytes())
            )),
        }
    }
}

/// An input argument that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The path does not exist or cannot be read.
    #[error("input {path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// An `s3://` input could not be listed.
    #[error("input {url}: {message}")]
    S3 {
        /// The URL.
        url: String,
        /// What S3 said.
        message: String,
    },
}

/// Which files below a directory or prefix are inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// `*.csv` and `*.csv.gz` (with `--format csv`).
    Csv,
    /// Every file (CloudFront and Alibaba Cloud name theirs without `.csv`), but for names
    /// starting with `.` and a store inside the directory.
    Every,
}

fn is_log_name(name: &str, names: Names) -> bool {
    match names {
        Names::Csv => name.ends_with(".csv") || name.ends_with(".csv.gz"),
        Names::Every => !name.starts_with('.'),
    }
}

/// Whether a directory holds a store (its ledger and manifest), which is never an input.
fn is_store_root(dir: &Path) -> bool {
    dir.join("ledger").is_dir() && dir.join("meta").is_dir()
}

/// Leaves out the objects of any store listed among `keys` (everything below a prefix that
/// holds a store's manifest), so a store kept under the logs' prefix is never read as logs,
/// while a log folder that merely shares a name with a store's (`meta/`, `ledger/`) is.
fn without_stores(inputs: &mut Vec<Input>) {
    const MANIFEST: &str = "meta/manifest.json";
    let key_of = |i: &Input| match &i.source {
        Source::S3 { key, .. } => Some(key.clone()),
        Source::File(_) => None,
    };
    let roots: Vec<String> = inputs
        .iter()
        .filter_map(key_of)
        .filter_map(|k| {
            let root = k.strip_suffix(MANIFEST)?;
            (root.is_empty() || root.ends_with('/')).then(|| root.to_owned())
        })
        .collect();
    if !roots.is_empty() {
        inputs.retain(|i| key_of(i).is_none_or(|k| !roots.iter().any(|r| k.starts_with(r))));
    }
}

/// Expands the local arguments into files: a file is taken as it is; a directory gives every
/// `*.csv` and `*.csv.gz` below it. Sorted, each file once. `s3://` arguments are left to
/// [`discover_s3`].
pub fn discover(args: &[String], names: Names) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    for arg in args.iter().filter(|a| !a.starts_with("s3://")) {
        let path = PathBuf::from(arg);
        let io = |source| InputError::Io {
            path: arg.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(io)?;
        if meta.is_dir() {
            walk(&path, &mut out, names).map_err(io)?;
        } else {
            out.push(Input {
                source: Source::File(path),
                size: meta.len(),
            });
        }
    }
    dedup(&mut out);
    Ok(out)
}

/// Sorts inputs by place and keeps each one once (a file named twice, or an object named by its
/// key and by a prefix above it).
pub fn dedup(inputs: &mut Vec<Input>) {
    inputs.sort_by_key(|i| i.display());
    inputs.dedup_by(|a, b| a.source == b.source);
}

/// Lists every `s3://` argument, 16 listings at a time: a Step Functions shard names hundreds
/// of objects one by one.
pub async fn discover_s3_all(
    client: &aws_sdk_s3::Client,
    urls: &[&String],
    names: Names,
) -> Result<Vec<Input>, InputError> {
    use futures_util::StreamExt;
    let listed: Vec<_> = futures_util::stream::iter(urls)
        .map(|url| discover_s3(client, url, names))
        .buffered(16)
        .collect()
        .await;
    let mut out = Vec::new();
    for found in listed {
        out.extend(found?);
    }
    Ok(out)
}

/// Lists every `*.csv` and `*.csv.gz` object whose key starts with the prefix of
/// `s3://bucket/prefix`, page by page: a prefix as S3 means it (`logs/2019-12-` takes every
/// key under `logs/` starting with `2019-12-`). A URL naming one object exactly (as a Step
/// Functions item does) gives that object alone, whatever its name, as a local file argument
/// does.
pub async fn discover_s3(
    client: &aws_sdk_s3::Client,
    url: &str,
    names: Names,
) -> Result<Vec<Input>, InputError> {
    let fail = |message: String| InputError::S3 {
        url: url.to_owned(),
        message,
    };
    let (bucket, prefix) = srctraffic::store::s3::split_url(url)
        .ok_or_else(|| fail("expected s3://bucket/prefix".into()))?;
    let (bucket, prefix) = (bucket.to_owned(), prefix.trim_start_matches('/'));
    let mut pages = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(prefix)
        .into_paginator()
        .send();
    let mut out = Vec::new();
    while let Some(page) = pages.next().await {
        let page =
            page.map_err(|e| fail(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?;
        for obj in page.contents() {
            let Some(key) = obj.key() else {
                continue;
            };
            let exact = key == prefix;
            let name = key.rsplit('/').next().unwrap_or(key);
            if !exact && !is_log_name(name, names) {
                continue;
            }
            // Some servers leave ETags out of listings: ask for the object's own.
            let etag = match obj.e_tag() {
                Some(e) => e.to_owned(),
                None => client
                    .head_object()
                    .bucket(&bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| fail(aws_sdk_s3::error::DisplayErrorContext(&e).to_string()))?
                    .e_tag()
                    .unwrap_or_default()
                    .to_owned(),
            };
            let size = obj.size().unwrap_or(0).max(0) as u64;
            let input = Input {
                source: Source::S3 {
                    bucket: bucket.clone(),
                    key: key.to_owned(),
                    etag,
                },
                size,
            };
            if exact {
                return Ok(vec![input]);
            }
            out.push(input);
        }
    }
    if names == Names::Every {
        without_stores(&mut out);
    }
    out.sort_by_key(|i| i.display());
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>, names: Names) -> io::Result<()> {
    if names == Names::Every && is_store_root(dir) {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            if !(names == Names::Every && name.starts_with('.')) {
                walk(&path, out, names)?;
            }
        } else if kind.is_file() && is_log_name(&name, names) {
            out.push(Input {
                size: entry.metadata()?.len(),
                source: Source::File(path),
            });
        }
    }
    Ok(())
}

/// Whether a file is gzip, by its first two bytes.
pub fn is_gzip(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path)?;
    let mut got = 0;
    while got < 2 {
        let n = f.read(&mut magic[got..])?;
        if n == 0 {
            return Ok(false);
        }
        got += n;
    }
    Ok(magic == [0x1f, 0x8b])
}

/// The input's identity: its size and the 128-bit XXH3 of its bytes. Content, not name, so a
/// renamed or copied file is still the same input.
pub fn identity(path: &Path) -> io::Result<String> {
    let f = File::open(path)?;
    let size = f.metadata()?.len();
    let mut h = Xxh3::new();
    if size > 0 {
        let len = usize::try_from(size).map_err(|_| io::Error::other("file larger than memory"))?;
        // Hashed from the page cache where it lies: reading it into a buffer first copied
        // every byte (a sixth of the machine's time with 24 one-file runs at once).
        // SAFETY: a read-only private mapping; log files are complete and unchanged while the
        // batch reads them (the read phase maps them the same way).
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&f)? };
        for (i, window) in map.chunks(HASH_WINDOW).enumerate() {
            h.update(window);
            // SAFETY: private, read-only, never written: a dropped page touched again reads
            // back the same bytes, and no slice of the passed range is alive. An economy that
            // keeps a big file's pages from counting as the process's memory.
            let _ = unsafe {
                map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    // Windows are whole pages: from the window's start, the pages behind
                    // were handed back already.
                    i * HASH_WINDOW,
                    (((i + 1) * HASH_WINDOW).min(len) & !4095) - i * HASH_WINDOW,
                )
            };
        }
    }
    Ok(identity_of(size, &h))
}

/// Bytes hashed between two hand-backs of the pages behind.
const HASH_WINDOW: usize = 8 << 20;

/// The identity of a file of `size` bytes, all of them fed to `h` in order.
pub fn identity_of(size: u64, h: &Xxh3) -> String {
    format!("{size:x}-{:032x}", h.digest128())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_over_several_hash_windows_hashes_as_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.csv");
        let bytes: Vec<u8> = (0..2 * HASH_WINDOW + 5_000)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut h = Xxh3::new();
        h.update(&bytes);
        assert_eq!(
            identity(&path).unwrap(),
            identity_of(bytes.len() as u64, &h)
        );
    }

    #[test]
    fn directories_give_their_logs_and_identity_follows_content() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.csv"), b"x").unwrap();
        std::fs::write(dir.path().join("sub/b.csv.gz"), b"\x1f\x8bzz").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let args = [
            dir.path().display().to_string(),
            dir.path().join("a.csv").display().to_string(),
        ];
        let found = discover(&args, Names::Csv).unwrap();
        assert_eq!(found.len(), 2);
        assert!(!is_gzip(found[0].path().unwrap()).unwrap());
        assert!(is_gzip(found[1].path().unwrap()).unwrap());
        std::fs::write(dir.path().join("copy.csv"), b"x").unwrap();
        assert_eq!(
            identity(&dir.path().join("a.csv")).unwrap(),
            identity(&dir.path().join("copy.csv")).unwrap()
        );
        assert_ne!(found[0].identity().unwrap(), found[1].identity().unwrap());
        // Any other format: every file, but hidden ones and a store inside.
        std::fs::create_dir_all(dir.path().join("store/ledger")).unwrap();
        std::fs::create_dir_all(dir.path().join("store/meta")).unwrap();
        std::fs::write(dir.path().join("store/meta/manifest.json"), b"{}").unwrap();
        std::fs::write(dir.path().join(".hidden"), b"x").unwrap();
        let every = discover(&[dir.path().display().to_string()], Names::Every).unwrap();
        let names: Vec<String> = every
            .iter()
            .map(|i| {
                i.path()
                    .unwrap()
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["a.csv", "copy.csv", "notes.txt", "b.csv.gz"]);
        let s3 = |key: &str| Input {
            size: 1,
            source: Source::S3 {
                bucket: "b".into(),
                key: key.into(),
                etag: "e".into(),
            },
        };
        let mut listed = vec![
            s3("logs/store/meta/manifest.json"),
            s3("logs/store/segments/2019-12-10/r.seg"),
            s3("logs/meta/E2.2019-12-10-20.abc.gz"),
            s3("logs/E2.2019-12-10-21.abc.gz"),
        ];
        without_stores(&mut listed);
        let kept: Vec<String> = listed.iter().map(Input::display).collect();
        assert_eq!(
            kept,
            [
                "s3://b/logs/meta/E2.2019-12-10-20.abc.gz",
                "s3://b/logs/E2.2019-12-10-21.abc.gz"
            ]
        );
        assert!(
            discover(&["s3://b/p".into()], Names::Csv)
                .unwrap()
                .is_empty(),
            "s3:// is listed elsewhere"
        );
        assert!(
            discover(&["/no/such/path".into()], Names::Every)
                .unwrap_err()
                .to_string()
                .contains("/no/such/path")
        );
    }
}
