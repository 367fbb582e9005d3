//! The same end-to-end and exactly-once tests on a real S3-compatible server (s3s-fs on
//! 127.0.0.1, checking SigV4 and keeping its data on disk), plus what only S3 has: the server
//! going away in the middle of a run, a missing bucket, wrong credentials.

use crate::e2e::round_trip_on;
use crate::exactly_once::{
    disjoint_halves, killed_anywhere, ledger_runs_left, merges_and_folds_killed,
    replay_three_times, same_inputs_at_once, shared_logs,
};
use crate::helpers::*;

#[tokio::test]
async fn on_s3_generated_logs_round_trip_to_the_ground_truth() {
    let server = S3Server::start();
    round_trip_on(TestStore::s3(&server), false).await;
    round_trip_on(TestStore::s3(&server), true).await;
}

#[tokio::test]
async fn on_s3_replaying_three_times_changes_nothing() {
    let server = S3Server::start();
    replay_three_times(TestStore::s3(&server)).await;
}

#[tokio::test]
async fn on_s3_a_run_killed_anywhere_and_run_again_ends_exact() {
    let server = S3Server::start();
    killed_anywhere(|| TestStore::s3(&server)).await;
    merges_and_folds_killed(|| TestStore::s3(&server)).await;
}

/// Concurrent runs rely on conditional writes being atomic, as on S3; the test server makes
/// s3s-fs's so (`testkit/s3-server`).
#[tokio::test]
async fn on_s3_concurrent_runs_count_once() {
    let server = S3Server::start();
    disjoint_halves(TestStore::s3(&server)).await;
    same_inputs_at_once(|| TestStore::s3(&server)).await;
}

#[tokio::test]
async fn the_s3_server_stopped_mid_run_then_restarted_ends_exact() {
    let mut server = S3Server::start();
    let store = TestStore::s3(&server);
    let (logs, truth) = shared_logs();
    // Pause the run after it wrote its segments, before it seals, and take the server away.
    let run = store
        .command()
        .args(["aggregate", "--now", NOW, "--store", &store.spec])
        .arg(logs)
        .env("SRCTRAFFIC_FAILPOINT", "sealing:1:pause=1500")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    server.stop();
    let out = run.wait_with_output().unwrap();
    // The run must fail, not hang or panic.
    assert_failed_naming(&out, &["unavailable", "s3://srctraffic-test/"]);
    server.restart();
    assert_ok(&aggregate(&store, &[logs], &[]));
    assert_eq!(&store_totals(&store).await, truth);
    assert_eq!(ledger_runs_left(&store).await, 0);
}

#[tokio::test]
async fn a_missing_bucket_and_wrong_credentials_are_clear_errors() {
    let server = S3Server::start();
    let logs = data("good.csv");
    let out = TestStore::s3(&server)
        .command()
        .args([
            "aggregate",
            "--now",
            NOW,
            "--store",
            "s3://no-such-bucket/x",
        ])
        .arg(&logs)
        .output()
        .unwrap();
    assert_failed_naming(&out, &["s3://no-such-bucket/", "NoSuchBucket"]);
    let store = TestStore::s3(&server);
    let out = store
        .command()
        .env("AWS_SECRET_ACCESS_KEY", "wrong")
        .args(["aggregate", "--now", NOW, "--store", &store.spec])
        .arg(&logs)
        .output()
        .unwrap();
    assert_failed_naming(&out, &["s3://srctraffic-test/", "SignatureDoesNotMatch"]);
}

/// The run exited 1 with an error saying every one of `needles`.
fn assert_failed_naming(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} missing from: {err}");
    }
}

#[tokio::test]
async fn s3_inputs_are_listed_streamed_and_counted_once() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (logs, truth_path) = gen_logs(dir.path(), 40, 60_000, 6, true);
    let mut truth = read_truth(&truth_path);
    // Upload the gzip logs, and one plain file beside them.
    let uploads = TestStore::s3(&server);
    let up = uploads.open().await;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.push(data("good.csv"));
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        up.put(
            &format!("in/{name}"),
            std::fs::read(f).unwrap(),
            srctraffic::store::Precondition::None,
        )
        .await
        .unwrap();
    }
    up.put(
        "in/notes.txt",
        b"not a log".to_vec(),
        srctraffic::store::Precondition::None,
    )
    .await
    .unwrap();
    for (d, m, b) in [
        ("a.example.com", "2019-12-10T20:00:00Z", 120),
        ("b.example.com", "2019-12-10T20:01:00Z", 3),
    ] {
        *truth.entry((d.to_owned(), m.to_owned())).or_default() += b;
    }
    let input = format!("{}/in/", uploads.spec);
    let store = TestStore::s3(&server);
    // With --format csv only *.csv and *.csv.gz objects are inputs (notes.txt is not).
    let csv_run = |more: &[String]| {
        store
            .command()
            .args([
                "aggregate",
                "--format",
                "csv",
                "--now",
                NOW,
                "--store",
                &store.spec,
                &input,
            ])
            .args(more)
            .output()
            .unwrap()
    };
    let run = || csv_run(&[]);
    let out = run();
    assert_ok(&out);
    assert!(stdout(&out).contains("7 found, 7 read"), "{}", stdout(&out));
    assert_eq!(store_totals(&store).await, truth);
    let again = run();
    assert_ok(&again);
    assert!(
        stdout(&again).contains("0 read, 7 already committed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(store_totals(&store).await, truth);
    // An object named twice (by its key and by a prefix above it) is one input.
    let twice = csv_run(&[format!("{input}good.csv")]);
    assert_ok(&twice);
    assert!(
        stdout(&twice).contains("7 found, 0 read"),
        "{}",
        stdout(&twice)
    );
}

/// A URL naming one object exactly, as a Step Functions item does, is that object alone, even
/// when other keys start with it.
#[tokio::test]
async fn an_s3_url_naming_an_object_reads_only_that_object() {
    let server = S3Server::start();
    let uploads = TestStore::s3(&server);
    let up = uploads.open().await;
    let good = std::fs::read(data("good.csv")).unwrap();
    for key in [
        "shard/good.csv",
        "shard/good.csv.1.csv",
        "shard/good.csv.gz.csv",
    ] {
        up.put(key, good.clone(), srctraffic::store::Precondition::None)
            .await
            .unwrap();
    }
    let store = TestStore::s3(&server);
    let out = store
        .command()
        .args(["aggregate", "--now", NOW, "--store", &store.spec])
        .arg(format!("{}/shard/good.csv", uploads.spec))
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains("1 found, 1 read"), "{}", stdout(&out));
    let totals = store_totals(&store).await;
    assert_eq!(totals.values().sum::<u64>(), 123, "{totals:?}");
}

#[tokio::test]
async fn range_reads_on_s3_return_just_those_bytes() {
    let server = S3Server::start();
    let store = TestStore::s3(&server).open().await;
    let body: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    store
        .put(
            "meta/r",
            body.clone(),
            srctraffic::store::Precondition::None,
        )
        .await
        .unwrap();
    let range = |a, n| store.get_range("meta/r", a, n);
    assert_eq!(range(10, 5).await.unwrap().unwrap(), body[10..15]);
    assert_eq!(range(99_990, 100).await.unwrap().unwrap(), body[99_990..]);
    assert!(range(200_000, 10).await.unwrap().unwrap().is_empty());
    assert_eq!(store.get_range("meta/none", 0, 10).await.unwrap(), None);
}

/// A real CDN format through S3: Cloudflare Logpush objects (gzip'd, no `.csv` in their names)
/// listed under a prefix, found by content, and answered as their truth says; a replay reads
/// nothing.
#[tokio::test]
async fn cloudflare_objects_under_a_prefix_are_found_by_content_and_counted_once() {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let made = bin()
        .args([
            "gen-logs",
            "--day",
            "2019-12-10",
            "--seed",
            "9",
            "--domains",
            "15",
        ])
        .args([
            "--rows",
            "8000",
            "--files",
            "3",
            "--format",
            "cloudflare",
            "--gzip",
        ])
        .arg("--out")
        .arg(&logs)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let truth = read_truth(&dir.path().join("logs.truth.csv"));
    let uploads = TestStore::s3(&server);
    let up = uploads.open().await;
    for e in std::fs::read_dir(&logs).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        up.put(
            &format!("logpush/{name}"),
            std::fs::read(&p).unwrap(),
            srctraffic::store::Precondition::None,
        )
        .await
        .unwrap();
    }
    let input = format!("{}/logpush/", uploads.spec);
    let store = TestStore::s3(&server);
    let run = || {
        store
            .command()
            .args(["aggregate", "--now", NOW, "--store", &store.spec, &input])
            .output()
            .unwrap()
    };
    let out = run();
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("3 found, 3 read") && text.contains("formats    cloudflare 3"),
        "{text}"
    );
    assert_eq!(store_totals(&store).await, truth);
    let again = run();
    assert_ok(&again);
    assert!(
        stdout(&again).contains("0 read, 3 already committed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(store_totals(&store).await, truth);
}
