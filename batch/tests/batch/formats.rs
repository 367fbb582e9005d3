//! Real CDN and proxy log formats, from hand-written files with each format's quirks: found by
//! content, counted by each format's origin rule, and the same again read as gzip streams.

use crate::helpers::*;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/formats")
        .join(name)
}

fn totals(rows: &[(&str, &str, u64)]) -> Totals {
    rows.iter()
        .map(|(d, m, b)| ((d.to_string(), m.to_string()), *b))
        .collect()
}

#[tokio::test]
async fn cloudfront_alibaba_and_cloudflare_files_are_found_by_content_and_counted_by_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let out = aggregate(dir.path(), &[&fixture("auto")], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("formats    alibaba 1, cloudflare 1, cloudfront 1"),
        "{text}"
    );
    assert!(
        text.contains("8 counted") && text.contains("3 served from cache, 0 rejected"),
        "{text}"
    );
    let want = totals(&[
        ("www.example.com", "2019-12-10T20:00:00Z", 100),
        ("img.example.com", "2019-12-10T20:01:00Z", 7),
        // China time, across midnight UTC.
        ("a.example.com", "2019-12-10T20:00:00Z", 1000),
        ("a.example.com", "2019-12-10T23:59:00Z", 30),
        ("a.example.com", "2019-12-11T00:00:00Z", 500),
        ("cf.example.com", "2019-12-10T20:00:00Z", 52_340),
    ]);
    assert_eq!(store_totals(dir.path()).await, want);
    // Read again: nothing changes.
    let again = aggregate(dir.path(), &[&fixture("auto")], &[]);
    assert_ok(&again);
    assert!(
        stdout(&again).contains("0 read, 3 already committed"),
        "{}",
        stdout(&again)
    );
    assert_eq!(store_totals(dir.path()).await, want);

    // The same files gzip'd are streamed, to the same totals.
    let gz = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture("auto")).unwrap() {
        let p = e.unwrap().path();
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &std::fs::read(&p).unwrap()).unwrap();
        let name = format!("{}.gz", p.file_name().unwrap().to_string_lossy());
        std::fs::write(gz.path().join(name), enc.finish().unwrap()).unwrap();
    }
    let store = tempfile::tempdir().unwrap();
    let out = aggregate(store.path(), &[gz.path()], &[]);
    assert_ok(&out);
    assert_eq!(store_totals(store.path()).await, want);
}

#[tokio::test]
async fn nginx_by_its_log_format_and_json_lines_by_their_keys() {
    let dir = tempfile::tempdir().unwrap();
    let format = r#"$remote_addr [$time_local] "$request" $status $host $scheme $upstream_cache_status $upstream_bytes_received"#;
    let out = aggregate(
        dir.path(),
        &[&fixture("nginx.log")],
        &[
            "--format",
            "nginx",
            "--nginx-log-format",
            format,
            "--max-bad-ratio",
            "0.5",
        ],
    );
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("1 served from cache, 1 rejected") && text.contains("format_mismatch"),
        "{text}"
    );
    let out = aggregate(
        dir.path(),
        &[&fixture("lines.jsonl")],
        &[
            "--format",
            "jsonl",
            "--time-field",
            "ts",
            "--domain-field",
            "host",
            "--bytes-field",
            "bytes",
            "--max-bad-ratio",
            "0.5",
        ],
    );
    assert_ok(&out);
    assert!(stdout(&out).contains("bad_json"), "{}", stdout(&out));
    assert_eq!(
        store_totals(dir.path()).await,
        totals(&[
            ("ng.example.com", "2019-12-10T20:00:00Z", 53_931),
            ("js.example.com", "2019-12-10T20:02:00Z", 15),
        ])
    );
}

#[tokio::test]
async fn a_format_that_cannot_be_read_says_what_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    // JSON lines that are not Cloudflare's need a mapping: the input is unreadable, exit 3.
    let out = aggregate(dir.path(), &[&fixture("lines.jsonl")], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", stdout(&out));
    assert!(stdout(&out).contains("--format jsonl"), "{}", stdout(&out));
    let out = aggregate(dir.path(), &[&fixture("nginx.log")], &["--format", "nginx"]);
    assert!(
        stdout(&out).contains("--nginx-log-format"),
        "{}",
        stdout(&out)
    );
    let out = aggregate(
        dir.path(),
        &[&fixture("nginx.log")],
        &["--format", "nginx", "--nginx-log-format", "combined"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no host"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `gen-logs --format F` files: found (by content, or by the flags gen-logs prints), read, and
/// answered by the API as their ground truth says, for every domain and minute; the measures
/// (HTTPS bytes, origin requests, requests per status) as the truth says too; a replay changes
/// nothing. Some formats gzip'd (streamed), some plain (cut into chunks).
#[tokio::test]
async fn generated_files_of_every_format_equal_their_ground_truth() {
    let nginx = srctraffic_batch::genformats::NGINX_LOG_FORMAT.to_string();
    let mut jsonl: Vec<String> = vec!["--format".into(), "jsonl".into()];
    for (flag, key) in srctraffic_batch::genformats::JSONL_KEYS {
        jsonl.extend([flag.to_string(), key.to_string()]);
    }
    let cases: [(&str, bool, Vec<String>); 6] = [
        // With its scheme column, so that CSV's HTTPS bytes are checked too.
        ("csv", true, vec![]),
        ("cloudfront", true, vec![]),
        ("alibaba", false, vec![]),
        ("cloudflare", true, vec![]),
        ("jsonl", false, jsonl),
        (
            "nginx",
            false,
            vec![
                "--format".into(),
                "nginx".into(),
                "--nginx-log-format".into(),
                nginx,
            ],
        ),
    ];
    for (format, gzip, flags) in cases {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let mut c = bin();
        c.args([
            "gen-logs",
            "--day",
            "2019-12-10",
            "--seed",
            "5",
            "--domains",
            "20",
        ])
        .args(["--rows", "20000", "--files", "4", "--format", format])
        .arg("--out")
        .arg(&logs);
        if gzip {
            c.arg("--gzip");
        }
        if format == "csv" {
            c.arg("--scheme-column");
        }
        let made = c.output().unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let truth = read_truth(&dir.path().join("logs.truth.csv"));
        let measures = read_measures(&dir.path().join("logs.truth.measures.csv"));
        let store = dir.path().join("store");
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let out = aggregate(&store, &[&logs], &flags);
        assert_ok(&out);
        let text = stdout(&out);
        assert!(
            text.contains(&format!("formats    {format} 4")),
            "{format}: {text}"
        );
        let domains: Vec<String> = {
            let mut d: Vec<String> = truth.keys().map(|(d, _)| d.clone()).collect();
            d.dedup();
            d
        };
        let days: Vec<srctraffic::Day> = ["2019-12-09", "2019-12-10", "2019-12-11"]
            .iter()
            .map(|d| srctraffic::Day::parse(d).unwrap())
            .collect();
        assert_eq!(api_totals(&store, &domains, &days).await, truth, "{format}");
        assert_eq!(store_measures(&store).await, measures, "{format}");
        if !["csv", "jsonl", "nginx"].contains(&format) {
            assert!(!text.contains(" 0 served from cache"), "{format}: {text}");
        }
        let again = aggregate(&store, &[&logs], &flags);
        assert_ok(&again);
        assert!(
            stdout(&again).contains("0 read, 4 already committed"),
            "{format}: {}",
            stdout(&again)
        );
        assert_eq!(store_measures(&store).await, measures, "{format}");
    }
}
