//! Replays, crashes and concurrent runs all end with every line counted exactly once.

use crate::helpers::*;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// One shared set of logs: 6 files, 600 domains (three batches of bucket writes).
pub fn shared_logs() -> &'static (PathBuf, Totals) {
    static LOGS: OnceLock<(tempfile::TempDir, PathBuf, Totals)> = OnceLock::new();
    let (_, logs, truth) = LOGS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let (logs, truth) = gen_logs(dir.path(), 600, 30_000, 6, false);
        let truth = read_truth(&truth);
        (dir, logs, truth)
    });
    // The tempdir lives as long as the static.
    static VIEW: OnceLock<(PathBuf, Totals)> = OnceLock::new();
    VIEW.get_or_init(|| (logs.clone(), truth.clone()))
}

pub async fn ledger_runs_left(store: &TestStore) -> usize {
    store.open().await.list("ledger/runs/").await.unwrap().len()
}

/// Segments published and not compacted, and segment objects in the store: once every run
/// compacts, both are 0.
pub async fn pending_segments(store: &TestStore) -> usize {
    let s = store.open().await;
    let (m, _) = srctraffic::store::manifest::read(s.as_ref()).await.unwrap();
    m.segments.len() + s.list("segments/").await.unwrap().len()
}

#[tokio::test]
async fn replaying_the_same_inputs_three_times_changes_nothing() {
    replay_three_times(TestStore::local()).await;
}

pub async fn replay_three_times(store: TestStore) {
    let (logs, truth) = shared_logs();
    for round in 0..3 {
        let out = aggregate(&store, &[logs], &[]);
        assert_ok(&out);
        if round > 0 {
            assert!(
                stdout(&out).contains("0 read, 6 already committed"),
                "{}",
                stdout(&out)
            );
        }
        assert_eq!(&store_totals(&store).await, truth, "after round {round}");
    }
    // A renamed copy is the same input.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("renamed.csv");
    let first = std::fs::read_dir(logs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(first, &copy).unwrap();
    assert_ok(&aggregate(&store, &[&copy], &[]));
    assert_eq!(&store_totals(&store).await, truth);
}

/// Each scenario kills successive runs at these points; a last, clean run must end exact.
/// Every run compacts what it published (`--compact-after 1`), so the compaction's points are
/// passed too: after each batch of base buckets, and between unlisting and deleting segments.
const SCENARIOS: &[&[&str]] = &[
    &["claim:1"],
    &["claim:2"],
    &["claim:4"],
    &["claim:6"],
    &["read:1"],
    &["read:2"],
    &["read:4"],
    &["read:6"],
    &["sealing:1"],
    &["sealed:1"],
    &["published:1"],
    &["committed:1"],
    &["finishing:1"],
    &["fold-marked:1"],
    &["compact-fold:1"],
    &["compact-fold:2"],
    &["compact-fold:4"],
    &["compact-unlisted:1"],
    &["sealed:1", "published:1"],
    &["sealing:1", "claim:1"],
    &["published:1", "compact-fold:2"],
    &["compact-fold:1", "compact-unlisted:1"],
    &["claim:3", "read:2"],
    &["read:3", "sealed:1", "committed:1"],
];
const COMPACT_EVERY_RUN: &[&str] = &["--compact-after", "1"];

#[tokio::test]
async fn a_run_killed_anywhere_and_run_again_ends_exact() {
    killed_anywhere(TestStore::local).await;
}

pub async fn killed_anywhere(make: impl Fn() -> TestStore) {
    let (logs, truth) = shared_logs();
    let mut points = 0;
    for scenario in SCENARIOS {
        let store = make();
        for point in *scenario {
            let out = aggregate_env(&store, &[logs], COMPACT_EVERY_RUN, Some(point));
            assert_eq!(
                out.status.signal(),
                Some(libc_sigkill()),
                "{scenario:?} at {point}: {}",
                stdout(&out)
            );
            points += 1;
        }
        let out = aggregate(&store, &[logs], COMPACT_EVERY_RUN);
        assert_ok(&out);
        assert!(
            &store_totals(&store).await == truth,
            "{scenario:?}: totals differ from the truth"
        );
        assert_eq!(
            pending_segments(&store).await,
            0,
            "{scenario:?}: segments left pending after a compacting run"
        );
        assert_eq!(
            ledger_runs_left(&store).await,
            0,
            "{scenario:?}: run objects left behind"
        );
        // And once more changes nothing.
        assert_ok(&aggregate(&store, &[logs], &[]));
        assert!(
            &store_totals(&store).await == truth,
            "{scenario:?}: replay after recovery"
        );
    }
    assert!(points >= 20);
}

fn libc_sigkill() -> i32 {
    9
}

#[tokio::test]
async fn a_merge_or_fold_killed_anywhere_ends_exact() {
    merges_and_folds_killed(TestStore::local).await;
}

/// Two runs leave two segments on a day; the second merges them (`--compact-after 2`), and
/// `compact` folds them: each killed at each of its points, then done again.
pub async fn merges_and_folds_killed(make: impl Fn() -> TestStore) {
    let (logs, truth) = shared_logs();
    let (a, b) = halves(logs);
    let merging = ["--compact-after", "2"];
    let compact = |store: &TestStore, point: Option<&str>| {
        let mut c = store.command();
        c.args(["compact", "--store", &store.spec]);
        if let Some(p) = point {
            c.env("SRCTRAFFIC_FAILPOINT", p);
        }
        c.output().unwrap()
    };
    for point in ["merge-written:1", "merge-published:1"] {
        let store = make();
        let a: Vec<&Path> = a.iter().map(PathBuf::as_path).collect();
        let b: Vec<&Path> = b.iter().map(PathBuf::as_path).collect();
        assert_ok(&aggregate(&store, &a, &merging));
        let out = aggregate_env(&store, &b, &merging, Some(point));
        assert_eq!(
            out.status.signal(),
            Some(libc_sigkill()),
            "{point}: {}",
            stdout(&out)
        );
        assert!(
            &store_totals(&store).await == truth,
            "{point}: after the kill"
        );
        assert_ok(&aggregate(&store, &[logs], &merging));
        assert!(&store_totals(&store).await == truth, "{point}: after a run");
        for fold_point in ["fold-marked:1", "compact-fold:1", "compact-unlisted:1"] {
            let out = compact(&store, Some(fold_point));
            assert_eq!(out.status.signal(), Some(libc_sigkill()), "{fold_point}");
            assert!(
                &store_totals(&store).await == truth,
                "{fold_point}: after the kill"
            );
        }
        assert_ok(&compact(&store, None));
        assert!(&store_totals(&store).await == truth, "{point}: compacted");
        assert_ok(&aggregate(&store, &[logs], &merging));
        assert_eq!(pending_segments(&store).await, 0, "{point}: segments left");
        assert!(&store_totals(&store).await == truth, "{point}: at the end");
    }
}

fn halves(logs: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let second = files.split_off(files.len() / 2);
    (files, second)
}

fn spawn(store: &TestStore, inputs: &[PathBuf]) -> std::process::Child {
    store
        .command()
        .args(["aggregate", "--now", NOW, "--store", &store.spec])
        .args(inputs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

#[tokio::test]
async fn two_concurrent_runs_on_disjoint_halves_both_land() {
    disjoint_halves(TestStore::local()).await;
}

pub async fn disjoint_halves(store: TestStore) {
    let (logs, truth) = shared_logs();
    let (a, b) = halves(logs);
    let (ra, rb) = (spawn(&store, &a), spawn(&store, &b));
    assert_ok(&ra.wait_with_output().unwrap());
    assert_ok(&rb.wait_with_output().unwrap());
    assert_eq!(&store_totals(&store).await, truth);
}

#[tokio::test]
async fn concurrent_runs_on_the_same_inputs_count_once() {
    same_inputs_at_once(TestStore::local).await;
}

pub async fn same_inputs_at_once(make: impl Fn() -> TestStore) {
    let (logs, truth) = shared_logs();
    for _ in 0..3 {
        let store = make();
        let all = vec![logs.clone()];
        let runs: Vec<_> = (0..3).map(|_| spawn(&store, &all)).collect();
        for r in runs {
            assert_ok(&r.wait_with_output().unwrap());
        }
        assert_eq!(&store_totals(&store).await, truth);
        assert_eq!(ledger_runs_left(&store).await, 0);
    }
}

#[tokio::test]
async fn lines_thirty_days_late_land_in_their_own_minute() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late.csv");
    std::fs::write(
        &late,
        "time,domain,bytes\n\
         2019-12-10T23:59:00Z,late.example.com,5\n\
         2019-11-10T12:34:56Z,late.example.com,777\n\
         2019-09-01T00:00:00Z,late.example.com,1\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = aggregate(&store, &[&late], &[]);
    assert_ok(&out);
    assert!(stdout(&out).contains("1 expired"), "{}", stdout(&out));
    let days = [srctraffic::Day::parse("2019-11-10").unwrap()];
    let api = api_totals(&store, &["late.example.com".to_owned()], &days).await;
    assert_eq!(
        api.into_iter().collect::<Vec<_>>(),
        [(
            (
                "late.example.com".to_owned(),
                "2019-11-10T12:34:00Z".to_owned()
            ),
            777
        )]
    );
}

#[tokio::test]
async fn committed_files_unchanged_since_are_skipped_without_reading_them() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let n = 2000;
    for i in 0..n {
        std::fs::write(
            logs.join(format!("{i:05}.csv")),
            format!(
                "time,domain,bytes\n2019-12-10T10:00:00Z,a.example.com,{}\n",
                i + 1
            ),
        )
        .unwrap();
    }
    let store = dir.path().join("store");
    assert_ok(&aggregate(&store, &[&logs], &[]));
    let total = |t: Totals| t.values().sum::<u64>();
    let expected = (1..=n).sum::<u64>();
    assert_eq!(total(store_totals(&store).await), expected);
    // Nothing changed: nothing is hashed or claimed again.
    let t0 = std::time::Instant::now();
    let out = aggregate(&store, &[&logs], &[]);
    let took = t0.elapsed();
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{n} found, 0 read, {n} already committed")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{n} committed files unchanged since")),
        "{text}"
    );
    eprintln!("a no-op run over {n} committed files took {took:?}");
    // One file rewritten (new content, new time): that one is read and counted, once.
    let changed = logs.join("00007.csv");
    std::fs::write(
        &changed,
        "time,domain,bytes\n2019-12-10T10:00:00Z,a.example.com,1000000\n",
    )
    .unwrap();
    let out = aggregate(&store, &[&logs], &[]);
    assert!(stdout(&out).contains("1 read"), "{}", stdout(&out));
    assert_eq!(total(store_totals(&store).await), expected + 1_000_000);
    // --verify rehashes everything: all already committed in the ledger, none read.
    let out = aggregate(&store, &[&logs], &["--verify"]);
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{n} found, 0 read, {n} already committed")),
        "{text}"
    );
    assert!(!text.contains("unchanged since"), "{text}");
    assert_eq!(total(store_totals(&store).await), expected + 1_000_000);
}

#[tokio::test]
async fn follow_commits_files_as_they_land_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let store = dir.path().join("store");
    let mut child = bin()
        .args([
            "aggregate",
            "--now",
            NOW,
            "--follow",
            "--interval",
            "0.2",
            "--settle",
            "0.3",
        ])
        .arg("--store")
        .arg(&store)
        .arg(&logs)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let opened = store.as_path().test_store();
    let a = srctraffic::DomainName::parse("a.example.com").unwrap();
    let day = srctraffic::Day::parse("2019-12-10").unwrap();
    let mut expected = 0u128;
    for i in 0..5u64 {
        // Written in two steps, the way a log shipper appends: the half-written file must
        // not be committed as it is.
        let path = logs.join(format!("{i}.csv"));
        std::fs::write(
            &path,
            "time,domain,bytes\n2019-12-10T10:00:00Z,a.example.com,1\n",
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        writeln!(f, "2019-12-10T10:01:00Z,a.example.com,{}", 10 * (i + 1)).unwrap();
        drop(f);
        expected += 1 + 10 * u128::from(i + 1);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let s = opened.open().await;
            let (_, cells) = srctraffic::published::read_cells(s.as_ref(), &[(a.clone(), day)])
                .await
                .unwrap();
            let seen = cells[0].as_ref().map_or(0, |b| b.total());
            assert!(
                seen <= expected,
                "counted more than written: {seen} > {expected}"
            );
            if seen == expected {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "file {i} never showed up"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    // SAFETY: kill only sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out).unwrap();
    assert!(out.contains("5 files committed"), "{out}");
}

#[test]
fn a_killed_write_s_temporary_file_is_removed_by_a_run_a_day_later() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let good = data("good.csv");
    assert_ok(&aggregate(&store, &[&good], &[]));
    // What a process killed between writing a segment and renaming it leaves: unlisted and
    // unread, and nothing else would ever remove it.
    let days = store.join("segments/2019-12-10");
    std::fs::create_dir_all(&days).unwrap();
    let stale = days.join(".r-killed.seg.4242.0.tmp");
    let live = days.join(".r-live.seg.4243.0.tmp");
    for f in [&stale, &live] {
        std::fs::write(f, b"half a segment").unwrap();
    }
    let two_days_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 86_400);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(two_days_ago)
        .unwrap();
    let other = dir.path().join("other.csv");
    let good_text = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&other, good_text.replace(",100,", ",101,")).unwrap();
    let out = aggregate(&store, &[&other], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("1 temporary files of killed writes removed"),
        "{text}"
    );
    assert!(!stale.exists());
    // A write in progress (touched within the day) is not a leftover.
    assert!(live.exists());
}
