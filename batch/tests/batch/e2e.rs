//! Generated logs, aggregated, read back through the API's query path, equal the ground truth
//! for every domain and minute.

use crate::helpers::*;
use srctraffic::Day;

pub async fn round_trip(gzip: bool) {
    round_trip_on(TestStore::local(), gzip).await;
}

pub async fn round_trip_on(store: TestStore, gzip: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (logs, truth_path) = gen_logs(dir.path(), 40, 60_000, 6, gzip);
    let out = aggregate(&store, &[&logs], &[]);
    assert_ok(&out);
    let truth = read_truth(&truth_path);
    let mut domains: Vec<String> = truth.keys().map(|(d, _)| d.clone()).collect();
    domains.dedup();
    // Jitter carries a few lines over both midnights.
    let days: Vec<Day> = ["2019-12-09", "2019-12-10", "2019-12-11"]
        .iter()
        .map(|d| Day::parse(d).unwrap())
        .collect();
    let api = api_totals(&store, &domains, &days).await;
    assert_eq!(api.len(), truth.len());
    assert!(api == truth, "the API disagrees with the ground truth");
    assert_eq!(store_totals(&store).await, truth);
    // `export` prints the same cells, in the ground truth's own format.
    let exported = store
        .command()
        .args(["export", "--store", &store.spec])
        .output()
        .unwrap();
    assert_ok(&exported);
    let exported_path = dir.path().join("export.csv");
    std::fs::write(&exported_path, &exported.stdout).unwrap();
    assert_eq!(read_truth(&exported_path), truth);
    let summary = stdout(&out);
    assert!(summary.contains("6 found, 6 read"), "{summary}");
    assert!(summary.contains("60000 counted"), "{summary}");
}

#[tokio::test]
async fn plain_logs_round_trip_to_the_ground_truth() {
    round_trip(false).await;
}

#[tokio::test]
async fn gzip_logs_round_trip_to_the_ground_truth() {
    round_trip(true).await;
}

#[tokio::test]
async fn inspect_prints_a_day_as_csv_and_prune_drops_old_days() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    assert_ok(&aggregate(&store, &[&data("good.csv")], &[]));
    let out = inspect(&store, "A.example.com", "2019-12-10");
    assert_ok(&out);
    let text = stdout(&out);
    assert_eq!(text.lines().count(), 1441);
    assert!(text.contains("2019-12-10T20:00:00Z,120,"), "{text}");
    // 90 days before 2020-03-09 is 2019-12-10: that day is still kept.
    let out = bin()
        .args(["prune", "--now", "2020-03-09T00:00:00Z", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains("pruned 0 days"), "{}", stdout(&out));
    let out = bin()
        .args(["prune", "--now", "2020-03-20T00:00:00Z", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    // The day's one segment (published, not compacted yet).
    assert!(
        stdout(&out).contains("pruned 1 days, 1 objects"),
        "{}",
        stdout(&out)
    );
    assert!(store_totals(&store).await.is_empty());
}
