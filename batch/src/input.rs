//! Finding inputs (files, and directories of `*.csv` / `*.csv.gz`), telling gzip from plain by
//! content, and identifying each input by its content for the exactly-once ledger.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3;

/// One log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// The path.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
}

impl Input {
    /// The path as shown to people.
    pub fn display(&self) -> String {
        self.path.display().to_string()
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
    /// An `s3://` input, which this build does not read yet.
    #[error("input {0}: s3:// inputs are not supported by this build yet")]
    S3(String),
}

/// Expands the arguments into files: a file is taken as it is; a directory gives every
/// `*.csv` and `*.csv.gz` below it. Sorted, each file once.
pub fn discover(args: &[String]) -> Result<Vec<Input>, InputError> {
    let mut out = Vec::new();
    for arg in args {
        if arg.starts_with("s3://") {
            return Err(InputError::S3(arg.clone()));
        }
        let path = PathBuf::from(arg);
        let io = |source| InputError::Io {
            path: arg.clone(),
            source,
        };
        let meta = std::fs::metadata(&path).map_err(io)?;
        if meta.is_dir() {
            walk(&path, &mut out).map_err(io)?;
        } else {
            out.push(Input {
                path,
                size: meta.len(),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Input>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            walk(&path, out)?;
        } else if kind.is_file() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".csv") || name.ends_with(".csv.gz") {
                out.push(Input {
                    size: entry.metadata()?.len(),
                    path,
                });
            }
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
    let mut f = File::open(path)?;
    let mut h = Xxh3::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok(format!("{size:x}-{:032x}", h.digest128()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let found = discover(&args).unwrap();
        assert_eq!(found.len(), 2);
        assert!(!is_gzip(&found[0].path).unwrap());
        assert!(is_gzip(&found[1].path).unwrap());
        std::fs::write(dir.path().join("copy.csv"), b"x").unwrap();
        assert_eq!(
            identity(&dir.path().join("a.csv")).unwrap(),
            identity(&dir.path().join("copy.csv")).unwrap()
        );
        assert_ne!(
            identity(&found[0].path).unwrap(),
            identity(&found[1].path).unwrap()
        );
        assert!(matches!(
            discover(&["s3://b/p".into()]),
            Err(InputError::S3(_))
        ));
        assert!(
            discover(&["/no/such/path".into()])
                .unwrap_err()
                .to_string()
                .contains("/no/such/path")
        );
    }
}
