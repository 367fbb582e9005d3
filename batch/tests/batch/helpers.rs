//! Runs the binary, reads ground truth, and reads totals back through the store and the API's
//! query path.

use srctraffic::api::request::{RawRequest, parse_request};
use srctraffic::published;
use srctraffic::store::{LocalStore, S3Settings, S3Store, Store};
use srctraffic::{Day, Minute, query};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub const NOW: &str = "2019-12-11T00:00:00Z";

/// (domain, minute in API format) -> bytes, zero totals left out.
pub type Totals = BTreeMap<(String, String), u64>;

pub fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_srctraffic-batch"));
    c.env_remove("SRCTRAFFIC_FAILPOINT")
        .env("RUST_LOG", "error");
    c
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// Generates logs into `dir/logs`; returns (logs dir, truth file).
pub fn gen_logs(
    dir: &Path,
    domains: usize,
    rows: u64,
    files: usize,
    gzip: bool,
) -> (PathBuf, PathBuf) {
    let logs = dir.join("logs");
    let mut c = bin();
    c.args(["gen-logs", "--day", "2019-12-10", "--seed", "3"])
        .args([
            "--domains",
            &domains.to_string(),
            "--rows",
            &rows.to_string(),
            "--files",
            &files.to_string(),
        ])
        .arg("--out")
        .arg(&logs);
    if gzip {
        c.arg("--gzip");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = dir.join("logs.truth.csv");
    (logs, truth)
}

/// Where a test's store lives: a local directory, or a prefix in a bucket on a real S3 server.
#[derive(Clone)]
pub struct TestStore {
    pub spec: String,
    env: Vec<(String, String)>,
    s3: Option<S3Settings>,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl TestStore {
    /// A fresh local store in its own temporary directory.
    pub fn local() -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("store").display().to_string();
        TestStore {
            spec,
            env: vec![],
            s3: None,
            _dir: Some(Arc::new(dir)),
        }
    }

    /// A fresh prefix in the server's bucket.
    pub fn s3(server: &S3Server) -> TestStore {
        static N: AtomicU64 = AtomicU64::new(0);
        let spec = format!(
            "s3://{BUCKET}/t{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        TestStore {
            spec,
            env: server.env(),
            s3: Some(server.settings()),
            _dir: None,
        }
    }

    pub fn command(&self) -> Command {
        let mut c = bin();
        c.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        c
    }

    pub async fn open(&self) -> Arc<dyn Store> {
        match &self.s3 {
            Some(s) => Arc::new(S3Store::with_settings(&self.spec, s).unwrap()),
            None => Arc::new(LocalStore::open(&self.spec).unwrap()),
        }
    }
}

/// Anything a test names a store by: a local path, or a [`TestStore`].
pub trait AsStore {
    fn test_store(&self) -> TestStore;
}

impl AsStore for TestStore {
    fn test_store(&self) -> TestStore {
        self.clone()
    }
}

impl AsStore for Path {
    fn test_store(&self) -> TestStore {
        TestStore {
            spec: self.display().to_string(),
            env: vec![],
            s3: None,
            _dir: None,
        }
    }
}

impl AsStore for PathBuf {
    fn test_store(&self) -> TestStore {
        self.as_path().test_store()
    }
}

pub use srctraffic_s3_test_server::{BUCKET, S3Server};

pub fn aggregate(store: &(impl AsStore + ?Sized), inputs: &[&Path], extra: &[&str]) -> Output {
    aggregate_env(store, inputs, extra, None)
}

pub fn aggregate_env(
    store: &(impl AsStore + ?Sized),
    inputs: &[&Path],
    extra: &[&str],
    failpoint: Option<&str>,
) -> Output {
    let t = store.test_store();
    let mut c = t.command();
    c.args(["aggregate", "--now", NOW, "--store", &t.spec])
        .args(extra)
        .args(inputs);
    if let Some(f) = failpoint {
        c.env("SRCTRAFFIC_FAILPOINT", f);
    }
    c.output().unwrap()
}

/// `inspect --domain D --day DAY` on a local store.
pub fn inspect(store: &Path, domain: &str, day: &str) -> Output {
    bin()
        .args(["inspect", "--domain", domain, "--day", day, "--store"])
        .arg(store)
        .output()
        .unwrap()
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn read_truth(path: &Path) -> Totals {
    let mut t = Totals::new();
    for line in std::fs::read_to_string(path).unwrap().lines().skip(1) {
        let mut f = line.split(',');
        let (d, m, b) = (
            f.next().unwrap(),
            f.next().unwrap(),
            f.next().unwrap().parse::<u64>().unwrap(),
        );
        if b > 0 {
            *t.entry((d.to_owned(), m.to_owned())).or_default() += b;
        }
    }
    t
}

/// Every non-zero minute the store holds as published: base buckets plus pending segments.
pub async fn store_totals(store: &(impl AsStore + ?Sized)) -> Totals {
    let store = store.test_store().open().await;
    let mut t = Totals::new();
    let mut wanted = Vec::new();
    for day in published::days(store.as_ref()).await.unwrap() {
        for d in published::domains_of_day(store.as_ref(), day)
            .await
            .unwrap()
        {
            wanted.push((d, day));
        }
    }
    let (_, cells) = published::read_cells(store.as_ref(), &wanted)
        .await
        .unwrap();
    for b in cells.into_iter().flatten() {
        let first = b.day.first_minute().0;
        for (i, v) in b.minutes.iter().enumerate().filter(|(_, v)| **v > 0) {
            t.insert(
                (b.domain.to_string(), Minute(first + i as i64).to_string()),
                *v,
            );
        }
    }
    t
}

/// Every non-zero minute the API answers, asking per domain and day at a one-minute interval.
pub async fn api_totals(
    store: &(impl AsStore + ?Sized),
    domains: &[String],
    days: &[Day],
) -> Totals {
    let store = store.test_store().open().await;
    let now = srctraffic::time::ApiTime::parse(NOW)
        .unwrap()
        .unix_seconds();
    let mut t = Totals::new();
    for d in domains {
        for day in days {
            let start = day.first_minute();
            let q = format!(
                "Action=DescribeDomainRealTimeSrcTrafficData&DomainName={d}&StartTime={start}&EndTime={}&Interval=60",
                Minute(start.0 + 1439)
            );
            let (_, req) = parse_request(
                &RawRequest {
                    method: "GET",
                    query: Some(&q),
                    ..Default::default()
                },
                now,
            );
            let req = req.unwrap();
            let names = req.domains.as_ref().expect("named").names();
            for p in query::series(store.as_ref(), &req, names).await.unwrap() {
                if p.bytes > 0 {
                    t.insert(
                        (d.clone(), p.slot.to_string()),
                        u64::try_from(p.bytes).expect("a minute fits u64"),
                    );
                }
            }
        }
    }
    t
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Per (domain, minute): bytes, HTTPS bytes, requests, and requests per status code.
pub type Measures = BTreeMap<(String, String), (u64, u64, u64, Vec<(u16, u64)>)>;

pub async fn store_measures(store: &Path) -> Measures {
    let store = LocalStore::open(store).unwrap();
    let mut wanted = Vec::new();
    for day in published::days(&store).await.unwrap() {
        for d in published::domains_of_day(&store, day).await.unwrap() {
            wanted.push((d, day));
        }
    }
    let (_, cells) = published::read_cells(&store, &wanted).await.unwrap();
    let mut out = Measures::new();
    for b in cells.into_iter().flatten() {
        let first = b.day.first_minute().0;
        for i in (0..1440).filter(|&i| b.requests[i] > 0) {
            let codes = b
                .statuses
                .iter()
                .filter(|s| usize::from(s.minute) == i)
                .map(|s| (s.code, s.count))
                .collect();
            out.insert(
                (b.domain.to_string(), Minute(first + i as i64).to_string()),
                (b.minutes[i], b.https[i], b.requests[i], codes),
            );
        }
    }
    out
}

/// The measures `gen-logs` wrote beside its truth (`OUT.truth.measures.csv`).
pub fn read_measures(path: &Path) -> Measures {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let codes = f[5]
                .split_whitespace()
                .map(|c| {
                    let (code, n) = c.split_once(':').unwrap();
                    (code.parse().unwrap(), n.parse().unwrap())
                })
                .collect();
            (
                (f[0].to_string(), f[1].to_string()),
                (
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                    f[4].parse().unwrap(),
                    codes,
                ),
            )
        })
        .collect()
}
