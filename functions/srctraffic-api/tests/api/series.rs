//! Sums across domains, roll-up, zero-fill and the watermark, end to end over HTTP.

use crate::helpers::*;
use srctraffic::store::LocalStore;

fn values(body: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["RealTimeSrcTrafficDataPerInterval"]["DataModule"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["TimeStamp"].as_str().unwrap().to_owned(),
                p["Value"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn domains_sum_minutes_roll_up_and_slots_stop_at_the_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    put_minutes(
        &store,
        "a.example.com",
        &[("2019-12-10T23:58:00Z", 1), ("2019-12-11T00:01:00Z", 10)],
    )
    .await;
    put_minutes(
        &store,
        "b.example.com",
        &[
            ("2019-12-10T23:59:00Z", 100),
            ("2019-12-11T00:02:00Z", 1000),
        ],
    )
    .await;
    put_minutes(&store, "c.example.com", &[("2019-12-11T00:02:00Z", 5)]).await;
    let server = Server::start(dir.path());
    let ask = |domains: &str, iv: Option<&str>| {
        let mut p = pairs(&[
            ("Action", ACTION),
            ("DomainName", domains),
            ("StartTime", "2019-12-10T23:55:00Z"),
            ("EndTime", "2019-12-11T00:00:00Z"),
            ("Format", "JSON"),
        ]);
        if let Some(iv) = iv {
            p.push(("Interval".into(), iv.into()));
        }
        let r = http_get(&server.addr, &p, &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        values(&r.body)
    };
    let by_minute = ask("A.example.com,b.example.com,a.example.com", None);
    let want: Vec<(String, String)> = [
        ("23:55", "0"),
        ("23:56", "0"),
        ("23:57", "0"),
        ("23:58", "1"),
        ("23:59", "100"),
    ]
    .iter()
    .map(|(t, v)| (format!("2019-12-10T{t}:00Z"), v.to_string()))
    .chain(std::iter::once((
        "2019-12-11T00:00:00Z".to_owned(),
        "0".to_owned(),
    )))
    .collect();
    assert_eq!(by_minute, want);
    // 300 s slots across midnight; the 00:00 slot holds 00:00..00:04 of every asked domain.
    let rolled = ask("a.example.com,b.example.com", Some("300"));
    assert_eq!(
        rolled,
        [
            ("2019-12-10T23:55:00Z".to_owned(), "101".to_owned()),
            ("2019-12-11T00:00:00Z".to_owned(), "1010".to_owned()),
        ]
    );
    // The range runs to 00:10, but the watermark is 00:02: later slots are absent, not zero.
    let r = http_get(
        &server.addr,
        &pairs(&[
            ("Action", ACTION),
            ("DomainName", "c.example.com"),
            ("StartTime", "2019-12-11T00:00:00Z"),
            ("EndTime", "2019-12-11T00:10:00Z"),
            ("Format", "JSON"),
        ]),
        &[],
    );
    assert_eq!(
        values(&r.body),
        [
            ("2019-12-11T00:00:00Z".to_owned(), "0".to_owned()),
            ("2019-12-11T00:01:00Z".to_owned(), "0".to_owned()),
            ("2019-12-11T00:02:00Z".to_owned(), "5".to_owned()),
        ]
    );
}

#[tokio::test]
async fn the_default_range_is_the_last_24_hours_and_an_empty_store_has_no_slots() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let r = http_get(
        &server.addr,
        &pairs(&[
            ("Action", ACTION),
            ("DomainName", "example.com"),
            ("Format", "JSON"),
        ]),
        &[],
    );
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["StartTime"], "2019-12-10T00:00:00Z");
    assert_eq!(v["EndTime"], NOW);
    assert_eq!(v["DataInterval"], "60");
    assert!(values(&r.body).is_empty());
}
