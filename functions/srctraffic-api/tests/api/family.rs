//! The back-to-origin family over real HTTP: every action, at every interval it offers, for one
//! and several domains, in JSON and in XML, against the cells the store was filled with (the
//! ground truth, summed here independently of the query code); the non-real-time actions without
//! `DomainName` for an operator key and for a tenant key (only its own domains).

use crate::auth::{nonce, now_stamp};
use crate::helpers::*;
use srctraffic::api::action::Measure;
use srctraffic::auth::v1;
use srctraffic::bucket::{DayBucket, StatusCount};
use srctraffic::store::{LocalStore, Precondition, Store, keys, watermark};
use srctraffic::time::ApiTime;
use srctraffic::{Action, Day, DomainName, Minute};
use std::collections::BTreeMap;

const DOMAINS: [&str; 4] = [
    "a.example.com",
    "b.example.com",
    "c.tenant.com",
    "other.org",
];
/// The last minute with data: the slots after it are unknown, not zero.
const WATERMARK: &str = "2019-12-10T23:50:00Z";
const CREDS: &str = r#"{"keys": [
  {"access_key_id": "tenant", "access_key_secret": "tenant-secret", "domains": ["a.example.com", "*.tenant.com"]},
  {"access_key_id": "ops", "access_key_secret": "ops-secret", "domains": ["*"]}
]}"#;

/// One (domain, minute) of the truth.
#[derive(Debug, Clone, Default)]
struct Cell {
    bytes: u64,
    https: u64,
    requests: u64,
    codes: BTreeMap<u16, u64>,
}

type Truth = BTreeMap<(String, i64), Cell>;

/// Deterministic traffic on 2019-12-09 and 2019-12-10 up to the watermark: most minutes of
/// each domain, a few statuses per minute, some fetches without a status.
fn truth() -> Truth {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let first = ApiTime::parse("2019-12-09T00:00:00Z").unwrap().minute().0;
    let mark = ApiTime::parse(WATERMARK).unwrap().minute().0;
    let mut t = Truth::new();
    for (i, d) in DOMAINS.iter().enumerate() {
        for m in first..=mark {
            if next(10) < 3 {
                continue;
            }
            let requests = 1 + next(40);
            let bytes = (requests * (1 + next(100_000))) << i;
            let mut codes = BTreeMap::new();
            let mut left = requests;
            for code in [200u16, 206, 304, 404, 502] {
                let n = next(left + 1);
                if n > 0 {
                    codes.insert(code, n);
                }
                left -= n;
            }
            let cell = Cell {
                bytes,
                https: bytes / (1 + next(3)),
                requests,
                codes,
            };
            t.insert((d.to_string(), m), cell);
        }
    }
    t
}

async fn fill(store: &dyn Store, t: &Truth) {
    let mut buckets: BTreeMap<(String, Day), DayBucket> = BTreeMap::new();
    for ((d, m), c) in t {
        let m = Minute(*m);
        let b = buckets
            .entry((d.clone(), m.day()))
            .or_insert_with(|| DayBucket::new(DomainName::parse(d).unwrap(), m.day()));
        let at = m.minute_of_day();
        b.minutes[at] = c.bytes;
        b.https[at] = c.https;
        b.requests[at] = c.requests;
        for (&code, &count) in &c.codes {
            b.statuses.push(StatusCount {
                minute: at as u16,
                code,
                count,
            });
        }
    }
    for b in buckets.values() {
        store
            .put(
                &keys::bucket(b.day, &b.domain),
                b.encode(),
                Precondition::None,
            )
            .await
            .unwrap();
    }
    watermark::advance(store, ApiTime::parse(WATERMARK).unwrap().minute())
        .await
        .unwrap();
}

/// Two digits, correctly rounded, trailing zeros and a bare point dropped (SPEC section 8).
fn rate(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The data list an action should answer, summed straight from the truth.
fn expected(
    t: &Truth,
    action: Action,
    domains: &[&str],
    start: &str,
    end: &str,
    iv: i64,
) -> serde_json::Value {
    let spec = action.spec();
    let step = iv / 60;
    let floor = |m: i64| m - m.rem_euclid(step);
    let first = floor(ApiTime::parse(start).unwrap().minute().0);
    let last = floor(ApiTime::parse(end).unwrap().minute().0)
        .min(floor(ApiTime::parse(WATERMARK).unwrap().minute().0));
    let mut out = Vec::new();
    let mut slot = first;
    while slot <= last {
        let mut sum = Cell::default();
        for d in domains {
            for m in slot..slot + step {
                if let Some(c) = t.get(&(d.to_string(), m)) {
                    sum.bytes += c.bytes;
                    sum.https += c.https;
                    sum.requests += c.requests;
                    for (&code, &n) in &c.codes {
                        *sum.codes.entry(code).or_default() += n;
                    }
                }
            }
        }
        let ts = Minute(slot).to_string();
        let secs = iv as f64;
        let item = match spec.measure {
            Measure::Bytes if spec.https => serde_json::json!({
                "TimeStamp": ts, "Value": sum.bytes.to_string(), "HttpsValue": sum.https.to_string()
            }),
            Measure::Bytes => {
                serde_json::json!({"TimeStamp": ts, "Value": sum.bytes.to_string()})
            }
            Measure::Bits if spec.https => serde_json::json!({
                "TimeStamp": ts,
                "Value": rate(sum.bytes as f64 * 8.0 / secs),
                "HttpsValue": rate(sum.https as f64 * 8.0 / secs),
            }),
            Measure::Bits => serde_json::json!({
                "TimeStamp": ts, "Value": rate(sum.bytes as f64 * 8.0 / secs)
            }),
            Measure::Requests => serde_json::json!({
                "TimeStamp": ts, "Value": rate(sum.requests as f64 / secs)
            }),
            Measure::Codes => {
                let codes: Vec<serde_json::Value> = sum
                    .codes
                    .iter()
                    .map(|(code, n)| {
                        serde_json::json!({
                            "Code": code.to_string(),
                            "Proportion": rate(*n as f64 * 100.0 / sum.requests as f64),
                            "Count": n.to_string(),
                        })
                    })
                    .collect();
                serde_json::json!({"TimeStamp": ts, "Value": {spec.code_item: codes}})
            }
        };
        out.push(item);
        slot += step;
    }
    serde_json::Value::Array(out)
}

fn ask(
    addr: &str,
    action: Action,
    domains: &str,
    start: &str,
    end: &str,
    iv: i64,
    format: &str,
) -> HttpResponse {
    http_get(
        addr,
        &pairs(&[
            ("Action", action.name()),
            ("DomainName", domains),
            ("StartTime", start),
            ("EndTime", end),
            ("Interval", &iv.to_string()),
            ("Format", format),
        ]),
        &[],
    )
}

fn data(action: Action, body: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let spec = action.spec();
    v[spec.data][spec.item].clone()
}

/// An XML answer read back into the JSON shape: an element with elements inside is an object,
/// with the items of its list (`list(container)`) gathered into an array; an element with text
/// only is a string. Equal to the JSON answer when the two say the same thing.
fn xml_as_json(body: &str, list: impl Fn(&str) -> Option<&'static str>) -> serde_json::Value {
    use quick_xml::events::Event;
    use serde_json::{Map, Value};
    let mut r = quick_xml::Reader::from_str(body);
    // Each open element: its name, its members so far, its text.
    let mut open: Vec<(String, Map<String, Value>, String)> = Vec::new();
    loop {
        match r.read_event().unwrap() {
            Event::Start(e) => {
                let name = String::from_utf8(e.name().as_ref().to_vec()).unwrap();
                let mut members = Map::new();
                if let Some(item) = list(&name) {
                    members.insert(item.to_owned(), Value::Array(Vec::new()));
                }
                open.push((name, members, String::new()));
            }
            Event::Text(t) => open.last_mut().unwrap().2.push_str(&t.decode().unwrap()),
            Event::GeneralRef(g) => {
                let entity = match &*g {
                    b"amp" => "&",
                    b"lt" => "<",
                    b"gt" => ">",
                    b"quot" => "\"",
                    _ => "'",
                };
                open.last_mut().unwrap().2.push_str(entity);
            }
            Event::End(_) => {
                let (name, members, text) = open.pop().unwrap();
                let value = if members.is_empty() {
                    Value::String(text)
                } else {
                    Value::Object(members)
                };
                let Some((parent, siblings, _)) = open.last_mut() else {
                    return value;
                };
                if list(parent).is_some_and(|item| item == name) {
                    siblings[&name].as_array_mut().unwrap().push(value);
                } else {
                    siblings.insert(name, value);
                }
            }
            Event::Eof => panic!("no root element"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn every_action_at_every_interval_equals_the_truth_in_json_and_xml() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let t = truth();
    fill(&store, &t).await;
    let server = Server::start(dir.path());
    let (start, end) = ("2019-12-09T00:00:00Z", "2019-12-10T23:59:00Z");
    let mut checked = 0;
    for action in Action::all() {
        let spec = action.spec();
        let intervals: &[i64] = if spec.real_time {
            &[60, 300, 3600, 86400]
        } else {
            &[300, 3600, 86400]
        };
        for &iv in intervals {
            for domains in [&DOMAINS[..1], &DOMAINS[..3]] {
                let joined = domains.join(",");
                let r = ask(&server.addr, action, &joined, start, end, iv, "JSON");
                assert_eq!(r.status, 200, "{}: {}", action.name(), r.body);
                let want = expected(&t, action, domains, start, end, iv);
                assert!(
                    data(action, &r.body) == want,
                    "{} {iv} {joined}: got {} want {}",
                    action.name(),
                    &r.body[..r.body.len().min(600)],
                    &want.to_string()[..600.min(want.to_string().len())]
                );
                let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
                assert_eq!(v["DataInterval"], iv.to_string());
                assert_eq!(v["DomainName"], joined.as_str());
                // The XML answer says the same, leaf for leaf, but the request id.
                let x = ask(&server.addr, action, &joined, start, end, iv, "XML");
                assert_eq!(x.status, 200, "{}", x.body);
                assert_eq!(x.header("content-type"), Some("text/xml;charset=utf-8"));
                let root = action.response_root();
                assert!(
                    x.body.starts_with(&format!(
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root}><DomainName>"
                    )),
                    "{}",
                    x.body
                );
                let codes = spec.code_item;
                let from_xml = xml_as_json(&x.body, |container| {
                    if container == spec.data {
                        Some(spec.item)
                    } else if container == "Value" && !codes.is_empty() {
                        Some(codes)
                    } else {
                        None
                    }
                });
                let mut v = v;
                v["RequestId"] = from_xml["RequestId"].clone();
                assert_eq!(from_xml, v, "{}", action.name());
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * (3 * 4 + 4 * 3));
}

/// A V1-signed GET of any parameters.
fn signed(addr: &str, key: &str, secret: &str, params: &[(&str, &str)]) -> HttpResponse {
    let stamp = now_stamp(0);
    let n = nonce();
    let mut p = pairs(params);
    p.extend(pairs(&[
        ("Version", "2018-05-10"),
        ("AccessKeyId", key),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", &n),
        ("Timestamp", &stamp),
        ("Format", "JSON"),
    ]));
    let sig = v1::sign(&v1::string_to_sign("GET", &p), secret);
    p.push(("Signature".into(), sig));
    http_get(addr, &p, &[])
}

#[tokio::test]
async fn without_domain_name_a_key_gets_the_sum_of_the_domains_it_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let t = truth();
    fill(&store, &t).await;
    let creds = dir.path().join("creds.json");
    std::fs::write(&creds, CREDS).unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--auth", "on", "--credentials", creds.to_str().unwrap()],
    );
    let (start, end) = ("2019-12-09T12:00:00Z", "2019-12-10T23:59:00Z");
    let cases: [(&str, &str, &[&str]); 2] = [
        ("ops", "ops-secret", &DOMAINS),
        (
            "tenant",
            "tenant-secret",
            &["a.example.com", "c.tenant.com"],
        ),
    ];
    for (key, secret, readable) in cases {
        for name in [
            "DescribeDomainSrcTrafficData",
            "DescribeDomainSrcHttpCodeData",
        ] {
            let action = Action::from_name(name).unwrap();
            let r = signed(
                &server.addr,
                key,
                secret,
                &[
                    ("Action", name),
                    ("StartTime", start),
                    ("EndTime", end),
                    ("Interval", "3600"),
                ],
            );
            assert_eq!(r.status, 200, "{key} {name}: {}", r.body);
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["DomainName"], "");
            assert_eq!(
                data(action, &r.body),
                expected(&t, action, readable, start, end, 3600),
                "{key} {name}"
            );
        }
    }
    // Naming a domain it may not read is still refused.
    let r = signed(
        &server.addr,
        "tenant",
        "tenant-secret",
        &[
            ("Action", "DescribeDomainSrcQpsData"),
            ("DomainName", "other.org"),
        ],
    );
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("InvalidDomain.NotFound"), "{}", r.body);
}

#[tokio::test]
async fn spans_intervals_and_domain_counts_are_checked_per_action_in_both_formats() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let many = |n: usize| {
        (0..n)
            .map(|i| format!("d{i}.example.com"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let cases: Vec<(Vec<(String, String)>, srctraffic::ApiError)> = vec![
        (
            pairs(&[
                ("Action", "DescribeDomainSrcBpsData"),
                ("StartTime", "2019-12-01T00:00:00Z"),
                ("EndTime", "2019-12-04T00:01:00Z"),
            ]),
            srctraffic::ApiError::TimeSpanTooLong {
                days: 3,
                interval: 300,
            },
        ),
        (
            pairs(&[
                ("Action", "DescribeDomainSrcHttpCodeData"),
                ("StartTime", "2019-11-01T00:00:00Z"),
                ("EndTime", "2019-12-02T00:01:00Z"),
                ("Interval", "3600"),
            ]),
            srctraffic::ApiError::TimeSpanTooLong {
                days: 31,
                interval: 3600,
            },
        ),
        (
            pairs(&[("Action", "DescribeDomainSrcQpsData"), ("Interval", "60")]),
            srctraffic::ApiError::IntervalNotOffered,
        ),
        (
            pairs(&[
                ("Action", "DescribeDomainSrcTrafficData"),
                ("DomainName", &many(501)),
            ]),
            srctraffic::ApiError::DomainNameOverLimit(500),
        ),
        (
            pairs(&[
                ("Action", "DescribeDomainRealTimeSrcBpsData"),
                ("DomainName", &many(101)),
            ]),
            srctraffic::ApiError::DomainNameOverLimit(100),
        ),
        (
            pairs(&[("Action", "DescribeDomainRealTimeSrcHttpCodeData")]),
            srctraffic::ApiError::MissingParameter("DomainName"),
        ),
        (
            pairs(&[
                ("Action", "DescribeDomainRealTimeSrcBpsData"),
                ("DomainName", "example.com"),
                ("StartTime", "2019-12-01T00:00:00Z"),
                ("EndTime", "2019-12-10T00:00:00Z"),
                ("Interval", "60"),
            ]),
            srctraffic::ApiError::TimeSpanTooLarge,
        ),
    ];
    for (params, err) in cases {
        for (format, json) in [("JSON", true), ("XML", false)] {
            let mut p = params.clone();
            p.push(("Format".into(), format.into()));
            assert_error(&http_get(&server.addr, &p, &[]), &err, json);
        }
    }
    // 500 names are within the limit of the wide actions.
    let r = http_get(
        &server.addr,
        &pairs(&[
            ("Action", "DescribeDomainSrcTrafficData"),
            ("DomainName", &many(500)),
            ("Format", "JSON"),
        ]),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.body);
}
