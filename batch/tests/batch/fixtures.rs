//! Deliberately broken inputs: each gives its documented result and never stops the others.

use crate::helpers::*;
use std::path::Path;

fn expected_good_totals() -> Totals {
    [
        ("a.example.com", "2019-12-10T20:00:00Z", 120),
        ("b.example.com", "2019-12-10T20:01:00Z", 3),
        ("a.example.com", "2019-12-10T20:02:00Z", 1000),
        ("b.example.com", "2019-12-10T20:03:00Z", 2000),
        ("a.example.com", "2019-12-10T20:05:00Z", 30000),
        ("a.example.com", "2019-12-10T20:06:00Z", 400_000),
        ("b.example.com", "2019-12-10T20:06:00Z", 5_000_000),
        ("c.example.com", "2019-12-10T20:09:00Z", 650_000_000),
    ]
    .iter()
    .map(|(d, m, b)| ((d.to_string(), m.to_string()), *b))
    .collect()
}

#[tokio::test]
async fn every_broken_fixture_gives_its_documented_result() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let rejects = dir.path().join("rejects.csv");
    let out = aggregate(
        &store,
        &[&data("")],
        &[
            "--max-bad-ratio",
            "1",
            "--rejects",
            rejects.to_str().unwrap(),
        ],
    );
    let text = stdout(&out);
    // The truncated gzip is reported and left uncommitted: exit 3, the rest committed.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("truncated.csv.gz: unreadable, not committed"),
        "{text}"
    );
    assert!(
        text.contains("missing_column.csv: no column \"bytes\": every line rejected"),
        "{text}"
    );
    assert!(text.contains("1 empty"), "{text}");
    for (reason, n) in [
        ("bad_time", 2),
        ("bad_domain", 2),
        ("bad_bytes", 2),
        ("field_count", 2),
        ("missing_column", 2),
    ] {
        assert!(
            text.contains(&format!("rejected {reason:<15} {n}\n")),
            "{reason}: {text}"
        );
    }
    assert_eq!(store_totals(&store).await, expected_good_totals());

    let rejected = std::fs::read_to_string(&rejects).unwrap();
    let where_: Vec<String> = rejected
        .lines()
        .skip(1)
        .map(|l| {
            let mut f = l.split(',');
            let file = f.next().unwrap().trim_matches('"');
            let name = Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            format!("{name}:{}:{}", f.next().unwrap(), f.next().unwrap())
        })
        .collect();
    assert_eq!(
        where_,
        [
            "bad_bytes.csv:2:bad_bytes",
            "bad_bytes.csv:3:bad_bytes",
            "bad_domain.csv:2:bad_domain",
            "bad_domain.csv:3:bad_domain",
            "bad_time.csv:3:bad_time",
            "bad_time.csv:4:bad_time",
            "field_count.csv:2:field_count",
            "field_count.csv:3:field_count",
        ]
    );

    // Fixing the truncated file and running again adds it, and only it.
    let fixed = dir.path().join("fixed");
    std::fs::create_dir(&fixed).unwrap();
    std::fs::write(
        fixed.join("c.csv"),
        "time,domain,bytes\n2019-12-10T20:09:10Z,c.example.com,1\n",
    )
    .unwrap();
    let out = aggregate(&store, &[&data(""), &fixed], &["--max-bad-ratio", "1"]);
    assert_eq!(out.status.code(), Some(3));
    let mut want = expected_good_totals();
    *want
        .get_mut(&(
            "c.example.com".to_owned(),
            "2019-12-10T20:09:00Z".to_owned(),
        ))
        .unwrap() += 1;
    assert_eq!(store_totals(&store).await, want);
}

#[tokio::test]
async fn too_many_bad_lines_fail_the_run_before_anything_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = aggregate(&store, &[&data("bad_time.csv"), &data("good.csv")], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing committed"));
    assert!(store_totals(&store).await.is_empty());
    assert!(!store.join("meta/watermark").exists());
    // The same inputs with a looser limit then commit, in full.
    assert_ok(&aggregate(
        &store,
        &[&data("bad_time.csv"), &data("good.csv")],
        &["--max-bad-ratio", "0.5"],
    ));
    assert_eq!(store_totals(&store).await.len(), 3);
}

#[tokio::test]
async fn a_header_only_or_empty_file_commits_nothing_and_fails_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let out = aggregate(&store, &[&data("header_only.csv"), &data("empty.csv")], &[]);
    assert_ok(&out);
    assert!(stdout(&out).contains("0 counted"), "{}", stdout(&out));
    assert!(store_totals(&store).await.is_empty());
}

#[tokio::test]
async fn scheme_status_and_cache_status_columns_feed_the_measures() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/measures/edge.csv");
    let key = |d: &str, m: &str| (d.to_string(), m.to_string());
    // Every line is an origin fetch unless --origin-statuses says which are.
    let dir = tempfile::tempdir().unwrap();
    let out = aggregate(dir.path(), &[&input], &[]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("0 served from cache"),
        "{}",
        stdout(&out)
    );
    let m = store_measures(dir.path()).await;
    assert_eq!(
        m[&key("a.example.com", "2019-12-10T20:00:00Z")],
        (160, 107, 4, vec![(200, 2), (404, 1)])
    );
    // An edge log: only MISS and EXPIRED went to the origin; the HIT is counted apart.
    let dir = tempfile::tempdir().unwrap();
    let out = aggregate(
        dir.path(),
        &[&input],
        &["--origin-statuses", "MISS,expired"],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("5 counted") && text.contains("1 served from cache, 0 rejected"),
        "{text}"
    );
    let m = store_measures(dir.path()).await;
    assert_eq!(
        m,
        [
            (
                key("a.example.com", "2019-12-10T20:00:00Z"),
                (110, 107, 3, vec![(200, 1), (404, 1)])
            ),
            (
                key("b.example.com", "2019-12-10T20:01:00Z"),
                (25, 25, 2, vec![(200, 1), (502, 1)])
            ),
        ]
        .into_iter()
        .collect()
    );
}
