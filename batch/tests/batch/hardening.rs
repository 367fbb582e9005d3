//! Hostile inputs and faults found by attacking the release binaries: each one once lost,
//! invented or double-counted data, and each is kept here as the behaviour that fixed it.

use crate::helpers::*;
use std::io::Write;
use std::path::Path;

#[tokio::test]
async fn one_content_reached_by_several_paths_in_one_run_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let good = data("good.csv");
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::copy(&good, inputs.join("a.csv")).unwrap();
    std::fs::copy(&good, inputs.join("b.csv")).unwrap();
    std::fs::hard_link(inputs.join("a.csv"), inputs.join("c.csv")).unwrap();
    let a = inputs.join("a.csv");
    let dotted = inputs.join(".").join("a.csv");
    let store = dir.path().join("store");
    // The directory (three paths, one content), one of its files again, and the same file
    // spelled another way.
    let out = aggregate(&store, &[&inputs, &a, &dotted], &[]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("1 read"), "{text}");
    assert!(text.contains("same content as"), "{text}");
    let once = {
        let other = dir.path().join("once");
        assert_ok(&aggregate(&other, &[&good], &[]));
        store_totals(&other).await
    };
    assert!(!once.is_empty());
    assert_eq!(store_totals(&store).await, once);
}

const GOOD: &str = "2019-12-10T20:00:00Z,a.example.com,/x,1\n";
const HEADER: &str = "time,domain,uri,bytes\n";

fn gzip(path: &Path, bytes: &[u8]) {
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap();
}

/// A log whose quoted field, holding newlines and what looks like a whole line for a domain
/// that never appears, spans the reader's 8 MiB cut at `offset` bytes past it.
fn quoted_newline_across_the_cut(offset: usize) -> (Vec<u8>, u64) {
    let mut text = HEADER.to_owned();
    let mut good = 0u64;
    while text.len() + GOOD.len() < (8 << 20) - offset {
        text.push_str(GOOD);
        good += 1;
    }
    text.push_str("2019-12-10T20:01:00Z,b.example.com,\"/q");
    for _ in 0..4 {
        text.push_str("\n2019-12-10T20:02:00Z,phantom.example.com,/p,999\n");
    }
    text.push_str("\",5\n");
    for _ in 0..1000 {
        text.push_str(GOOD);
        good += 1;
    }
    (text.into_bytes(), good)
}

#[tokio::test]
async fn plain_and_gzip_agree_when_a_quoted_newline_spans_a_chunk_cut() {
    for offset in [10, 60, 120] {
        let dir = tempfile::tempdir().unwrap();
        let (text, good) = quoted_newline_across_the_cut(offset);
        let plain = dir.path().join("plain.csv");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("same.csv.gz");
        gzip(&gz, &text);
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let out = aggregate(&a, &[&plain], &[]);
        assert_ok(&out);
        assert!(stdout(&out).contains(" 0 rejected"), "{}", stdout(&out));
        assert_ok(&aggregate(&b, &[&gz], &[]));
        let totals = store_totals(&a).await;
        assert_eq!(totals, store_totals(&b).await, "offset {offset}");
        let domains: Vec<&str> = totals.keys().map(|k| k.0.as_str()).collect();
        assert!(!domains.contains(&"phantom.example.com"), "offset {offset}");
        let a_total: u64 = totals
            .iter()
            .filter(|(k, _)| k.0 == "a.example.com")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(a_total, good, "offset {offset}: no line lost");
        assert_eq!(
            totals.get(&("b.example.com".into(), "2019-12-10T20:01:00Z".into())),
            Some(&5)
        );
    }
}

#[tokio::test]
async fn an_unclosed_quote_rejects_every_line_it_swallows_and_the_gate_sees_them() {
    for (before, after) in [(7_000usize, 3_000usize), (100, 20)] {
        let dir = tempfile::tempdir().unwrap();
        let mut text = HEADER.to_owned();
        text.push_str(&GOOD.repeat(before));
        text.push_str("2019-12-10T20:00:00Z,a.example.com,\"/never closed,1\n");
        text.push_str(&GOOD.repeat(after));
        for (name, gz) in [("in.csv", false), ("in.csv.gz", true)] {
            let path = dir.path().join(name);
            if gz {
                gzip(&path, text.as_bytes());
            } else {
                std::fs::write(&path, &text).unwrap();
            }
            let store = dir.path().join(format!("store-{name}"));
            let out = aggregate(&store, &[&path], &[]);
            let printed = stdout(&out);
            assert_eq!(out.status.code(), Some(2), "{printed}");
            let swallowed = after + 1;
            assert!(
                printed.contains(&format!("rejected unclosed_quote  {swallowed}\n")),
                "{printed}"
            );
            assert!(
                printed.contains(&format!("{name}:{}: unclosed_quote", before + 2)),
                "{printed}"
            );
            // With the gate open, the lines before it count and nothing after it does.
            let out = aggregate(&store, &[&path], &["--max-bad-ratio", "1"]);
            assert_ok(&out);
            let total: u64 = store_totals(&store).await.values().sum();
            assert_eq!(total, before as u64);
        }
    }
}

#[tokio::test]
async fn a_domain_of_252_or_253_characters_is_stored_answered_and_blocks_nothing() {
    let label = "a".repeat(63);
    let long: Vec<String> = [252usize, 253]
        .iter()
        .map(|&n| {
            let mut d = format!("{label}.{label}.{label}.{label}");
            d.truncate(n);
            d
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("long.csv");
    let mut text = HEADER.to_owned();
    for (i, d) in long.iter().enumerate() {
        text.push_str(&format!("2019-12-10T20:00:00Z,{d},/x,{}\n", 10 + i));
    }
    std::fs::write(&path, text).unwrap();
    assert_ok(&aggregate(&store, &[&path], &[]));
    let days = [srctraffic::Day::parse("2019-12-10").unwrap()];
    let api = api_totals(&store, &long, &days).await;
    assert_eq!(api.values().copied().collect::<Vec<_>>(), [10, 11]);
    // A later run, for another domain, goes on as usual.
    let next = dir.path().join("next.csv");
    std::fs::write(&next, format!("{HEADER}{GOOD}")).unwrap();
    assert_ok(&aggregate(&store, &[&next], &[]));
    assert_eq!(store_totals(&store).await.len(), 3);
    let out = bin()
        .args(["export", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(stdout(&out).contains(&format!("{},2019-12-10T20:00:00Z,11", long[1])));
}

#[tokio::test]
async fn a_line_from_the_future_is_rejected_and_never_moves_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("future.csv");
    // NOW is 2019-12-11T00:00:00Z: 00:03 is within the tolerance, 00:06 and 2030 are not.
    std::fs::write(
        &path,
        format!(
            "{HEADER}{GOOD}2019-12-11T00:03:00Z,a.example.com,/x,2\n\
             2019-12-11T00:06:00Z,a.example.com,/x,3\n2030-01-01T00:00:00Z,a.example.com,/x,4\n"
        ),
    )
    .unwrap();
    let out = aggregate(&store, &[&path], &["--max-bad-ratio", "1"]);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("rejected future          2\n"),
        "{}",
        stdout(&out)
    );
    let opened = store.test_store().open().await;
    let (manifest, _) = srctraffic::store::manifest::read(opened.as_ref())
        .await
        .unwrap();
    let mark = manifest.watermark().unwrap();
    assert_eq!(mark.to_string(), "2019-12-11T00:00:00Z", "capped at now");
    let total: u64 = store_totals(&store).await.values().sum();
    assert_eq!(total, 3, "the line within the tolerance counts");
}

/// Runs the binary and returns (exit status, peak resident set in KiB, standard output).
// The child is reaped by `wait4`, which also gives its resource usage.
#[allow(clippy::zombie_processes)]
fn peak_rss(mut c: std::process::Command) -> (std::process::ExitStatus, i64, String) {
    let child = c
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut out = String::new();
    let mut stdout = child.stdout.unwrap();
    std::io::Read::read_to_string(&mut stdout, &mut out).unwrap();
    let mut status = 0;
    // SAFETY: plain FFI calls on a zeroed rusage and our own child's pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid);
    (
        std::os::unix::process::ExitStatusExt::from_raw(status),
        usage.ru_maxrss,
        out,
    )
}

#[tokio::test]
async fn a_gzip_bomb_is_read_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // 1 GiB of zeros after a header (one endless line), and without one (an endless header).
    for (name, head) in [("bomb.csv.gz", HEADER), ("headless.csv.gz", "")] {
        let path = dir.path().join(name);
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        gz.write_all(head.as_bytes()).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..1024 {
            gz.write_all(&zeros).unwrap();
        }
        gz.finish().unwrap();
        let store = dir.path().join(format!("store-{name}"));
        let mut c = bin();
        c.args(["aggregate", "--now", NOW, "--max-bad-ratio", "1", "--store"])
            .arg(&store)
            .arg(&path);
        let (status, rss_kib, out) = peak_rss(c);
        assert!(status.success(), "{status:?}\n{out}");
        eprintln!("{name}: peak RSS {rss_kib} KiB");
        assert!(
            rss_kib < 256 * 1024,
            "{name}: peak RSS {rss_kib} KiB\n{out}"
        );
        if head.is_empty() {
            assert!(out.contains("no column \"time\""), "{out}");
        } else {
            assert!(out.contains("rejected line_too_long   1\n"), "{out}");
        }
    }
}

#[tokio::test]
async fn byte_counts_past_a_petabyte_are_bad_bytes_and_nothing_saturates() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("big.csv");
    let max = u64::MAX;
    std::fs::write(
        &path,
        format!(
            "{HEADER}2019-12-10T20:00:00Z,a.example.com,/x,{max}\n\
             2019-12-10T20:00:00Z,a.example.com,/x,{max}\n\
             2019-12-10T20:00:00Z,a.example.com,/x,1000000000000001\n\
             2019-12-10T20:00:00Z,a.example.com,/x,1000000000000000\n\
             2019-12-10T20:00:00Z,a.example.com,/x,1000000000000000\n"
        ),
    )
    .unwrap();
    let out = aggregate(&store, &[&path], &["--max-bad-ratio", "1"]);
    assert_ok(&out);
    let printed = stdout(&out);
    assert!(
        printed.contains("rejected bad_bytes       3\n"),
        "{printed}"
    );
    assert!(
        printed.contains("bytes      2000000000000000 counted"),
        "{printed}"
    );
    assert_eq!(
        store_totals(&store).await.values().sum::<u64>(),
        2_000_000_000_000_000
    );
}

#[test]
fn a_closed_pipe_ends_every_printing_command_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("in.csv");
    std::fs::write(&path, format!("{HEADER}{GOOD}")).unwrap();
    let store_arg = store.display().to_string();
    let path_arg = path.display().to_string();
    let logs = dir.path().join("logs").display().to_string();
    let runs: [Vec<&str>; 4] = [
        vec!["aggregate", "--now", NOW, "--store", &store_arg, &path_arg],
        vec!["export", "--store", &store_arg],
        vec![
            "inspect",
            "--store",
            &store_arg,
            "--domain",
            "a.example.com",
            "--day",
            "2019-12-10",
        ],
        vec![
            "gen-logs",
            "--day",
            "2019-12-10",
            "--rows",
            "100",
            "--out",
            &logs,
        ],
    ];
    for args in runs {
        // The reader goes away before anything is written, as `| head -0` would.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = bin()
            .args(&args)
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(err.is_empty(), "{args:?}: {err}");
    }
}

#[test]
fn inspect_of_a_day_the_store_does_not_hold_says_so_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("in.csv");
    std::fs::write(&path, format!("{HEADER}{GOOD}")).unwrap();
    assert_ok(&aggregate(&store, &[&path], &[]));
    let out = inspect(&store, "nobody.example.com", "2019-12-10");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no data for nobody.example.com on 2019-12-10"),
        "{err}"
    );
}

#[tokio::test]
async fn control_characters_in_rejected_lines_are_escaped_when_printed() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("in.csv");
    std::fs::write(
        &path,
        format!("{HEADER}2019-12-10T20:00:00Z,\x1b[2J\x1b]0;owned\x07,/x,1\n"),
    )
    .unwrap();
    let out = aggregate(&store, &[&path], &["--max-bad-ratio", "1"]);
    let printed = stdout(&out);
    assert!(
        !printed.contains('\x1b') && !printed.contains('\x07'),
        "{printed:?}"
    );
    assert!(printed.contains("\\u{1b}[2J"), "{printed}");
}

#[tokio::test]
async fn a_header_naming_a_required_column_twice_rejects_the_file_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("twice.csv");
    std::fs::write(
        &path,
        "time,domain,bytes,uri,bytes\n2019-12-10T20:00:00Z,a.example.com,1,/x,2\n",
    )
    .unwrap();
    let out = aggregate(&store, &[&path], &["--max-bad-ratio", "1"]);
    assert_ok(&out);
    let printed = stdout(&out);
    assert!(
        printed.contains("twice.csv: column \"bytes\" appears twice: every line rejected"),
        "{printed}"
    );
    assert!(
        printed.contains("rejected duplicate_column 1\n"),
        "{printed}"
    );
    assert!(store_totals(&store).await.is_empty());
}

#[tokio::test]
async fn a_bucket_copied_under_another_name_or_day_is_refused_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let path = dir.path().join("in.csv");
    std::fs::write(
        &path,
        format!("{HEADER}{GOOD}2019-12-10T20:00:00Z,b.example.com,/x,7\n"),
    )
    .unwrap();
    assert_ok(&aggregate(&store, &[&path], &["--compact-after", "1"]));
    let buckets = store.join("buckets/2019-12-10");
    let opened = store.test_store().open().await;
    for (to, domain, day) in [
        (
            buckets.join("b.example.com.bkt"),
            "b.example.com",
            "2019-12-10",
        ),
        (
            store.join("buckets/2019-12-09/a.example.com.bkt"),
            "a.example.com",
            "2019-12-09",
        ),
    ] {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        let saved = std::fs::read(&to).ok();
        std::fs::copy(buckets.join("a.example.com.bkt"), &to).unwrap();
        let q = format!(
            "Action=DescribeDomainRealTimeSrcTrafficData&DomainName={domain}&StartTime={day}T20:00:00Z&EndTime={day}T20:01:00Z"
        );
        let now = srctraffic::time::ApiTime::parse(NOW)
            .unwrap()
            .unix_seconds();
        let (_, req) = srctraffic::api::request::parse_request(
            &srctraffic::api::request::RawRequest {
                method: "GET",
                query: Some(&q),
                ..Default::default()
            },
            now,
        );
        let req = req.unwrap();
        let names = req.domains.as_ref().expect("named").names();
        let err = srctraffic::query::series(opened.as_ref(), &req, names)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not b.example.com") || err.contains("not a.example.com"),
            "{err}"
        );
        let out = bin()
            .args(["export", "--store"])
            .arg(&store)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("as its key says"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        match saved {
            Some(b) => std::fs::write(&to, b).unwrap(),
            None => std::fs::remove_file(&to).unwrap(),
        }
    }
}

#[tokio::test]
async fn a_damaged_base_bucket_blocks_no_run_and_compaction_finishes_once_mended() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let write = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, format!("{HEADER}{body}")).unwrap();
        p
    };
    let first = write("first.csv", GOOD);
    let second = write("second.csv", "2019-12-10T20:00:00Z,a.example.com,/y,20\n");
    let third = write("third.csv", "2019-12-10T20:00:00Z,b.example.com,/z,300\n");
    let compacting = ["--compact-after", "1"];
    assert_ok(&aggregate(&store, &[&first], &compacting));
    // Damage a.example.com's base bucket: the next run publishes, then cannot compact.
    let bucket = store.join("buckets/2019-12-10/a.example.com.bkt");
    let good = std::fs::read(&bucket).unwrap();
    let mut bad = good.clone();
    bad[40] ^= 1;
    std::fs::write(&bucket, &bad).unwrap();
    let out = aggregate(&store, &[&second], &compacting);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("compaction failed (the run is committed"),
        "{}",
        stdout(&out)
    );
    // A later run for another domain goes on, and its input and the first two count once.
    let out = aggregate(&store, &[&third, &second], &compacting);
    assert_ok(&out);
    assert!(
        stdout(&out).contains("1 read, 1 already committed"),
        "{}",
        stdout(&out)
    );
    // Mended, `compact` folds everything pending in: every line counted once.
    std::fs::write(&bucket, &good).unwrap();
    let out = bin()
        .args(["compact", "--store"])
        .arg(&store)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(
        stdout(&out).contains("compacted 1 days: 2 segments"),
        "{}",
        stdout(&out)
    );
    let totals = store_totals(&store).await;
    let minute = "2019-12-10T20:00:00Z".to_owned();
    assert_eq!(
        totals.get(&("a.example.com".into(), minute.clone())),
        Some(&21)
    );
    assert_eq!(totals.get(&("b.example.com".into(), minute)), Some(&300));
    let left = std::fs::read_dir(store.join("segments/2019-12-10"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "compacted segments are deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_during_runs_see_each_run_whole() {
    // Every file adds the same bytes to a.example.com on one day and to b.example.com on the
    // next, with 300 domains between them in the store's order: a reader that ever sees part
    // of a run sees the two differ.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut files = Vec::new();
    for i in 0..12u64 {
        let path = dir.path().join(format!("in{i:02}.csv"));
        let mut body = String::from(HEADER);
        body.push_str(&format!(
            "2019-12-09T10:00:00Z,a.example.com,/x,{}\n",
            i + 1
        ));
        body.push_str(&format!(
            "2019-12-10T10:00:00Z,b.example.com,/x,{}\n",
            i + 1
        ));
        for d in 0..300 {
            body.push_str(&format!(
                "2019-12-09T10:0{}:00Z,aa{d}.example.com,/x,1\n",
                i % 10
            ));
            body.push_str(&format!(
                "2019-12-10T10:0{}:00Z,aa{d}.example.com,/x,1\n",
                i % 10
            ));
        }
        std::fs::write(&path, body).unwrap();
        files.push(path);
    }
    let a = srctraffic::DomainName::parse("a.example.com").unwrap();
    let b = srctraffic::DomainName::parse("b.example.com").unwrap();
    let wanted = [
        (a, srctraffic::Day::parse("2019-12-09").unwrap()),
        (b, srctraffic::Day::parse("2019-12-10").unwrap()),
    ];
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (done, store) = (done.clone(), store.clone());
        tokio::spawn(async move {
            let opened = store.test_store().open().await;
            let mut reads = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok((_, cells)) =
                    srctraffic::published::read_cells(opened.as_ref(), &wanted).await
                {
                    let total = |c: &Option<srctraffic::bucket::DayBucket>| {
                        c.as_ref().map_or(0, |b| b.total())
                    };
                    assert_eq!(total(&cells[0]), total(&cells[1]), "a run seen in part");
                    reads += 1;
                }
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    // Three at a time; folding every run (1), merging every second segment (2) and folding
    // the over day by hand, by turns.
    for (i, chunk) in files.chunks(3).enumerate() {
        let after = if i % 2 == 0 { "1" } else { "2" };
        let runs: Vec<_> = chunk
            .iter()
            .map(|f| {
                bin()
                    .args([
                        "aggregate",
                        "--now",
                        NOW,
                        "--compact-after",
                        after,
                        "--store",
                    ])
                    .arg(&store)
                    .arg(f)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for r in runs {
            assert_ok(&r.wait_with_output().unwrap());
        }
    }
    assert_ok(
        &bin()
            .args(["compact", "--store"])
            .arg(&store)
            .output()
            .unwrap(),
    );
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.await.unwrap();
    assert!(reads > 20, "only {reads} reads");
    let totals = store_totals(&store).await;
    assert_eq!(
        totals.get(&("a.example.com".into(), "2019-12-09T10:00:00Z".into())),
        Some(&78)
    );
}
