//! The three queries of BENCH.md section 2, in process through the router (parse, read the local
//! store, sum, render), with p50 and p99 against the targets; the sibling actions (traffic with
//! HTTPS at 300 s over 100 domains, status codes over 24 h); then the first one with auth on.
//!
//! `cargo bench -p srctraffic-api --bench query` (set `QUERY_BENCH_ITERS` to change the count,
//! `QUERY_BENCH_ONLY` to run only the cases whose action or name holds that text).
//! The store is 100 domains x 8 days of buckets with traffic in every minute, as the batch writes;
//! then a store of published segments not yet folded, as frequent small runs leave it.

use axum::body::Body;
use http::Request;
use http_body_util::BodyExt;
use srctraffic::auth::credentials::Credentials;
use srctraffic::auth::{Authenticator, v1};
use srctraffic::bucket::{DayBucket, MINUTES, RunId};
use srctraffic::segment;
use srctraffic::store::{LocalStore, Precondition, Store, keys, manifest, watermark};
use srctraffic::time::ApiTime;
use srctraffic::{Clock, DomainName};
use srctraffic_api::{AppState, router};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower::ServiceExt;

const NOW: &str = "2019-12-11T00:00:00Z";

fn main() {
    let iters: usize = std::env::var("QUERY_BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path()).expect("store");
    rt.block_on(fill(&store));
    let app_store: Arc<dyn Store> = Arc::new(store);
    let app = router(AppState::open(
        app_store.clone(),
        Clock::fixed(NOW).expect("clock"),
    ));

    let domains = |n: usize| {
        (0..n)
            .map(|i| format!("d{i}.example.com"))
            .collect::<Vec<_>>()
            .join(",")
    };
    const RT: &str = "DescribeDomainRealTimeSrcTrafficData";
    let cases = [
        (
            RT,
            "24 h, 1 domain, Interval 60",
            domains(1),
            "2019-12-10T00:00:00Z",
            "60",
            0.5,
            2.0,
        ),
        (
            RT,
            "24 h, 100 domains, Interval 60",
            domains(100),
            "2019-12-10T00:00:00Z",
            "60",
            5.0,
            20.0,
        ),
        (
            RT,
            "7 days, 10 domains, Interval 300",
            domains(10),
            "2019-12-04T00:00:00Z",
            "300",
            2.0,
            8.0,
        ),
        (
            "DescribeDomainSrcTrafficData",
            "24 h, 100 domains, Interval 300, with HttpsValue",
            domains(100),
            "2019-12-10T00:00:00Z",
            "300",
            f64::NAN,
            5.0,
        ),
        (
            "DescribeDomainSrcBpsData",
            "24 h, 100 domains, Interval 300, bit/s",
            domains(100),
            "2019-12-10T00:00:00Z",
            "300",
            f64::NAN,
            5.0,
        ),
        (
            "DescribeDomainSrcQpsData",
            "24 h, 100 domains, Interval 300, requests/s",
            domains(100),
            "2019-12-10T00:00:00Z",
            "300",
            f64::NAN,
            5.0,
        ),
        (
            "DescribeDomainSrcHttpCodeData",
            "24 h, 1 domain, Interval 300, status codes",
            domains(1),
            "2019-12-10T00:00:00Z",
            "300",
            f64::NAN,
            5.0,
        ),
        (
            "DescribeDomainRealTimeSrcHttpCodeData",
            "24 h, 1 domain, Interval 60, status codes",
            domains(1),
            "2019-12-10T00:00:00Z",
            "60",
            f64::NAN,
            5.0,
        ),
        (
            "DescribeDomainSrcHttpCodeData",
            "24 h, 100 domains, Interval 300, status codes",
            domains(100),
            "2019-12-10T00:00:00Z",
            "300",
            f64::NAN,
            5.0,
        ),
    ];
    println!("| action | query | points | p50 ms | p99 ms | target p50 / p99 ms |");
    println!("| --- | --- | --- | --- | --- | --- |");
    let measure = |app: &axum::Router, uris: &mut dyn Iterator<Item = String>| {
        let mut run = || {
            let req = Request::get(uris.next().expect("enough requests"))
                .body(Body::empty())
                .expect("request");
            let app = app.clone();
            rt.block_on(async move {
                let resp = app.oneshot(req).await.expect("infallible");
                assert_eq!(resp.status(), 200);
                resp.into_body().collect().await.expect("body").to_bytes()
            })
        };
        let body = run();
        let points = String::from_utf8_lossy(&body).matches("TimeStamp").count();
        for _ in 0..iters / 10 {
            run();
        }
        let mut times: Vec<Duration> = (0..iters)
            .map(|_| {
                let t = Instant::now();
                run();
                t.elapsed()
            })
            .collect();
        times.sort();
        let pct = |p: f64| {
            times[((times.len() as f64 * p) as usize).min(times.len() - 1)].as_secs_f64() * 1e3
        };
        (points, pct(0.50), pct(0.99))
    };
    let target = |t: f64| {
        if t.is_nan() {
            "-".to_owned()
        } else {
            t.to_string()
        }
    };
    // QUERY_BENCH_ONLY=text runs the cases whose action or name holds it (for profiling).
    let only = std::env::var("QUERY_BENCH_ONLY").unwrap_or_default();
    for (action, name, doms, start, iv, t50, t99) in &cases {
        if !action.contains(&only) && !name.contains(&only) {
            continue;
        }
        let uri = format!(
            "/?Action={action}&DomainName={doms}&StartTime={start}&EndTime={NOW}&Interval={iv}&Format=JSON"
        );
        let (points, p50, p99) = measure(&app, &mut std::iter::repeat(uri));
        println!(
            "| {action} | {name} | {points} | {p50:.3} | {p99:.3} | {} / {t99} |",
            target(*t50)
        );
    }
    // The first query again with auth on: every request V1-signed with its own nonce, by many
    // keys in turn so that none nears 10 calls per second. Signed ahead, outside the timing.
    let keys = 5000;
    let creds: Vec<String> = (0..keys)
        .map(|k| {
            format!(r#"{{"access_key_id": "k{k}", "access_key_secret": "s{k}", "domains": ["*"]}}"#)
        })
        .collect();
    let creds = Credentials::from_json(format!(r#"{{"keys": [{}]}}"#, creds.join(",")).as_bytes())
        .expect("credentials");
    let mut state = AppState::open(app_store, Clock::fixed(NOW).expect("clock"));
    state.auth = Some(Arc::new(Authenticator::new(creds)));
    let signed_app = router(state);
    let stamp = ApiTime::from_unix_seconds(Clock::System.now_unix()).to_string();
    let (_, name, doms, start, iv, t50, t99) = &cases[0];
    let mut signed = (0..iters + iters / 10 + 1).map(|n| {
        let k = n % keys;
        let mut p: Vec<(String, String)> = [
            ("Action", "DescribeDomainRealTimeSrcTrafficData"),
            ("Version", "2018-05-10"),
            ("DomainName", doms.as_str()),
            ("StartTime", start),
            ("EndTime", NOW),
            ("Interval", iv),
            ("Format", "JSON"),
            ("AccessKeyId", &format!("k{k}")),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", &format!("bench-{n}")),
            ("Timestamp", &stamp),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let sig = v1::sign(&v1::string_to_sign("GET", &p), &format!("s{k}"));
        p.push(("Signature".into(), sig));
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&p)
            .finish();
        format!("/?{query}")
    });
    let (points, p50, p99) = measure(&signed_app, &mut signed);
    println!(
        "| {RT} | {name}, auth on (V1-signed) | {points} | {p50:.3} | {p99:.3} | {t50} / {t99} |"
    );

    // The store 40 small runs over 1,000 domains leave on a day that is not over: no base
    // buckets, five merged segments of eight runs each (what compaction keeps it to). A query
    // reads the manifest, then each segment's index and its one cell.
    let dir = tempfile::tempdir().expect("tempdir");
    let segmented: Arc<dyn Store> = Arc::new(LocalStore::open(dir.path()).expect("store"));
    rt.block_on(fill_segments(segmented.as_ref()));
    let seg_app = router(AppState::open(segmented, Clock::fixed(NOW).expect("clock")));
    let uri = format!(
        "/?Action=DescribeDomainRealTimeSrcTrafficData&DomainName=d7.example.com&StartTime=2019-12-10T00:00:00Z&EndTime={NOW}&Interval=60&Format=JSON"
    );
    let (points, p50, p99) = measure(&seg_app, &mut std::iter::repeat(uri));
    println!(
        "| {RT} | 24 h, 1 domain, Interval 60, after 40 small runs (5 merged segments, no base) | {points} | {p50:.3} | {p99:.3} | - / 1 |"
    );
}

async fn fill_segments(store: &dyn Store) {
    let day = ApiTime::parse("2019-12-10T00:00:00Z")
        .expect("time")
        .minute()
        .day();
    let mut published = Vec::new();
    for level_one in 0..5u64 {
        let cells: Vec<DayBucket> = (0..1000)
            .map(|i| {
                let d = DomainName::parse(&format!("d{i}.example.com")).expect("domain");
                let mut c = DayBucket::new(d, day);
                for run in 0..8 {
                    let m = ((level_one * 8 + run) * 29 % MINUTES as u64) as usize;
                    c.minutes[m] += 1000 + i;
                    c.requests[m] += 1;
                }
                c
            })
            .collect();
        let p = manifest::Published {
            seq: (level_one + 1) * 8,
            run: format!("m-{}", RunId::random()),
            merged: (0..8).map(|_| RunId::random().to_string()).collect(),
            day: day.to_string(),
            cells: cells.len() as u64,
            level: 1,
            folding: false,
        };
        store
            .put(&p.key(), segment::encode(day, &cells), Precondition::None)
            .await
            .expect("segment");
        published.push(p);
    }
    manifest::update::<srctraffic::StoreError>(store, |m| {
        m.seq = 40;
        m.segments = published.clone();
        m.advance(ApiTime::parse(NOW).expect("time").minute());
        Ok(true)
    })
    .await
    .expect("manifest");
}

async fn fill(store: &LocalStore) {
    let first = ApiTime::parse("2019-12-04T00:00:00Z")
        .expect("time")
        .minute()
        .day();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..100 {
        let d = DomainName::parse(&format!("d{i}.example.com")).expect("domain");
        for day in first.0..first.0 + 8 {
            let day = srctraffic::Day(day);
            let mut b = DayBucket::new(d.clone(), day);
            let mut delta = [0u64; MINUTES];
            for v in delta.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *v = seed % 10_000_000;
            }
            b.apply(RunId::random(), &delta).expect("bench totals fit");
            // Every cell measure, as real logs fill them: requests, HTTPS bytes, four codes.
            for (m, &bytes) in delta.iter().enumerate() {
                let requests = 50 + bytes % 200;
                b.requests[m] = requests;
                b.https[m] = bytes / 10 * 7;
                for (code, share) in [(200u16, 80), (206, 10), (304, 6), (404, 4)] {
                    b.statuses.push(srctraffic::bucket::StatusCount {
                        minute: m as u16,
                        code,
                        count: requests * share / 100,
                    });
                }
            }
            store
                .put(&keys::bucket(day, &d), b.encode(), Precondition::None)
                .await
                .expect("put");
        }
    }
    watermark::advance(store, ApiTime::parse(NOW).expect("time").minute())
        .await
        .expect("watermark");
}
