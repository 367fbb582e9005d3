//! What the tests need: stores with known contents, the server on a free port, a raw HTTP client
//! and Lambda events built from the committed fixtures.

use axum::Router;
use srctraffic::bucket::{DayBucket, MINUTES, RunId};
use srctraffic::store::{LocalStore, Precondition, Store, keys, watermark};
use srctraffic::time::ApiTime;
use srctraffic::{ApiError, Clock, DomainName};
use srctraffic_api::{AppState, router};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

pub const NOW: &str = "2019-12-11T00:00:00Z";
pub const ACTION: &str = "DescribeDomainRealTimeSrcTrafficData";
/// A non-real-time sibling, for the errors only those have.
pub const SRC_TRAFFIC: &str = "DescribeDomainSrcTrafficData";

/// Minute totals for one domain, written as the batch would.
pub async fn put_minutes(store: &dyn Store, domain: &str, minutes: &[(&str, u64)]) {
    for (t, bytes) in minutes {
        let m = ApiTime::parse(t).unwrap().minute();
        let d = DomainName::parse(domain).unwrap();
        let key = keys::bucket(m.day(), &d);
        let mut b = match store.get(&key).await.unwrap() {
            Some(bytes) => DayBucket::decode(&bytes).unwrap(),
            None => DayBucket::new(d, m.day()),
        };
        let mut delta = [0u64; MINUTES];
        delta[m.minute_of_day()] = *bytes;
        b.apply(RunId::random(), &delta).expect("test totals fit");
        store
            .put(&key, b.encode(), Precondition::None)
            .await
            .unwrap();
        watermark::advance(store, m).await.unwrap();
    }
}

/// A temporary store holding the seed's data: zero-byte minutes at 20:00 and 20:01.
pub async fn seed_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    put_minutes(
        &store,
        "example.com",
        &[("2019-12-10T20:00:00Z", 0), ("2019-12-10T20:01:00Z", 0)],
    )
    .await;
    dir
}

/// The router over a store directory, with the fixed clock.
pub fn app(dir: &Path) -> Router {
    router(AppState::open(
        Arc::new(LocalStore::open(dir).unwrap()),
        Clock::fixed(NOW).unwrap(),
    ))
}

/// `srctraffic-api serve` on a free port; killed on drop.
pub struct Server {
    pub addr: String,
    child: Child,
}

impl Server {
    pub fn start(store: &Path) -> Server {
        Server::start_with(store, &["--auth", "off"])
    }

    pub fn start_with(store: &Path, extra: &[&str]) -> Server {
        Server::start_env(store.as_os_str(), extra, &[])
    }

    /// With a store given as any spec (a directory or `s3://...`) and extra environment.
    pub fn start_env(store: &std::ffi::OsStr, extra: &[&str], env: &[(String, String)]) -> Server {
        let mut c = Server::command(store, extra);
        c.envs(env.iter().map(|(k, v)| (k, v)));
        Server::spawn(c)
    }

    /// The `serve` command line [`Server::start_env`] runs, for a test to adjust.
    pub fn command(store: &std::ffi::OsStr, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_srctraffic-api"));
        c.args(["serve", "--listen", "127.0.0.1:0", "--now", NOW])
            .args(extra)
            .arg("--store")
            .arg(store)
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        c
    }

    /// Starts a `serve` command and waits for the address it listens on.
    pub fn spawn(mut command: Command) -> Server {
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_owned();
        Server { addr, child }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes and reads the whole answer (the request should say `Connection: close`).
pub fn raw_http(addr: &str, request: &[u8]) -> HttpResponse {
    send(addr, request, false)
}

/// Sends bytes that may not be a whole request, then closes the sending side so the server
/// sees the end of them.
pub fn raw_bytes(addr: &str, bytes: &[u8]) -> HttpResponse {
    send(addr, bytes, true)
}

fn send(addr: &str, request: &[u8], close_write: bool) -> HttpResponse {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = Vec::new();
    if close_write {
        // Junk may be refused before it is all sent: a reset or early close is an answer too.
        let _ = s.write_all(request);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = s.read_to_end(&mut buf);
    } else {
        s.write_all(request).unwrap();
        s.read_to_end(&mut buf).unwrap();
    }
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A GET with the given parameters and headers.
pub fn http_get(addr: &str, params: &[(String, String)], headers: &[(&str, &str)]) -> HttpResponse {
    let q = encode(params);
    let mut req = format!("GET /?{q} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    raw_http(addr, req.as_bytes())
}

pub fn encode(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The four Lambda event sources, each with its committed fixture.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    RestV1,
    HttpV2,
    FunctionUrl,
    Alb,
}

pub const SOURCES: [Source; 4] = [
    Source::RestV1,
    Source::HttpV2,
    Source::FunctionUrl,
    Source::Alb,
];

pub fn fixture(name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "data", name]
        .iter()
        .collect();
    std::fs::read_to_string(p).unwrap()
}

impl Source {
    pub fn fixture(self) -> &'static str {
        match self {
            Source::RestV1 => "apigw_rest_v1.json",
            Source::HttpV2 => "apigw_http_v2.json",
            Source::FunctionUrl => "function_url.json",
            Source::Alb => "alb.json",
        }
    }

    /// The fixture with its parameters replaced by `params` (in the query string, or for a
    /// Function URL in the form body, as each source carries them) and its Accept header set.
    pub fn event(self, params: &[(String, String)], accept: &str) -> String {
        use serde_json::{Map, Value, json};
        let mut ev: Value = serde_json::from_str(&fixture(self.fixture())).unwrap();
        let single: Map<String, Value> =
            params.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
        match self {
            Source::RestV1 => {
                ev["queryStringParameters"] = Value::Object(single);
                ev["multiValueQueryStringParameters"] = Value::Object(
                    params
                        .iter()
                        .map(|(k, v)| (k.clone(), json!([v])))
                        .collect(),
                );
                ev["headers"]["Accept"] = json!(accept);
                ev["multiValueHeaders"]["Accept"] = json!([accept]);
            }
            Source::HttpV2 => {
                ev["rawQueryString"] = json!(encode(params));
                ev["queryStringParameters"] = Value::Object(single);
                ev["headers"]["accept"] = json!(accept);
            }
            Source::FunctionUrl => {
                use base64_lite::encode as b64;
                let body = encode(params);
                ev["body"] = json!(b64(body.as_bytes()));
                ev["headers"]["content-length"] = json!(body.len().to_string());
                ev["headers"]["accept"] = json!(accept);
            }
            Source::Alb => {
                ev["queryStringParameters"] = Value::Object(
                    params
                        .iter()
                        .map(|(k, v)| {
                            let enc: String =
                                form_urlencoded::byte_serialize(v.as_bytes()).collect();
                            (k.clone(), json!(enc))
                        })
                        .collect(),
                );
                ev["headers"]["accept"] = json!(accept);
            }
        }
        ev.to_string()
    }
}

/// Feeds event JSON through lambda_http's own parser into the router.
pub async fn invoke(app: Router, event: &str) -> HttpResponse {
    let req = lambda_http::request::from_str(event).unwrap();
    let resp = app.oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    HttpResponse {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// Parameters that provoke each request error; `None` for those that need a broken store or
/// signed requests.
pub fn provoke(e: &ApiError) -> Option<Vec<(String, String)>> {
    let base = |extra: &[(&str, &str)]| {
        let mut p = pairs(&[("Action", ACTION), ("DomainName", "example.com")]);
        p.extend(pairs(extra));
        p
    };
    let range = |s: &str, e: &str| base(&[("StartTime", s), ("EndTime", e)]);
    Some(match e {
        ApiError::MissingParameter("Action") => pairs(&[("DomainName", "example.com")]),
        ApiError::MissingParameter(_) => pairs(&[("Action", ACTION)]),
        ApiError::StartEndNotPaired => base(&[("StartTime", "2019-12-10T20:00:00Z")]),
        ApiError::StartTimeMalformed => range("2019-12-10 20:00:00", "2019-12-10T20:01:00Z"),
        ApiError::EndTimeMalformed => range("2019-12-10T20:00:00Z", "2019-12-10T20:01:00+08:00"),
        ApiError::EndTimeMismatch => range("2019-12-10T20:01:00Z", "2019-12-10T20:00:00Z"),
        ApiError::StartTimeNotSupported => range("2019-01-01T00:00:00Z", "2019-01-02T00:00:00Z"),
        ApiError::DomainNameMalformed => {
            pairs(&[("Action", ACTION), ("DomainName", "exa mple.com")])
        }
        ApiError::DomainNameOverLimit(limit) => {
            let many: Vec<String> = (0..=*limit).map(|i| format!("d{i}.example.com")).collect();
            // 100 for the real-time actions, 500 for the others.
            let action = if *limit == 100 { ACTION } else { SRC_TRAFFIC };
            vec![
                ("Action".into(), action.into()),
                ("DomainName".into(), many.join(",")),
            ]
        }
        ApiError::TimeSpanTooLong { days, interval } => vec![
            ("Action".into(), SRC_TRAFFIC.into()),
            ("StartTime".into(), "2019-12-01T00:00:00Z".into()),
            (
                "EndTime".into(),
                srctraffic::time::ApiTime::from_unix_seconds(
                    1_575_158_400 + i64::from(*days) * 86_400 + 60,
                )
                .to_string(),
            ),
            ("Interval".into(), interval.to_string()),
        ],
        ApiError::IntervalNotOffered => pairs(&[
            ("Action", SRC_TRAFFIC),
            ("DomainName", "example.com"),
            ("Interval", "60"),
        ]),
        ApiError::TimeSpanTooLarge => {
            let mut p = range("2019-12-01T00:00:00Z", "2019-12-10T00:00:00Z");
            p.push(("Interval".into(), "60".into()));
            p
        }
        ApiError::IntervalInvalid => {
            let mut p = range("2019-12-10T20:00:00Z", "2019-12-10T20:01:00Z");
            p.push(("Interval".into(), "120".into()));
            p
        }
        ApiError::FormatInvalid => base(&[("Format", "yaml")]),
        ApiError::ActionNotFound => pairs(&[
            ("Action", "DescribeCdnDomainDetail"),
            ("DomainName", "example.com"),
        ]),
        ApiError::VersionInvalid => base(&[("Version", "2014-11-11")]),
        // A broken store, or signed requests: see `errors` and `auth`.
        ApiError::Internal
        | ApiError::ServiceUnavailable
        | ApiError::IncompleteSignature
        | ApiError::AccessKeyNotFound
        | ApiError::SignatureMismatch(_)
        | ApiError::TimestampExpired
        | ApiError::NonceUsed
        | ApiError::Throttled
        | ApiError::DomainNotOwned => return None,
    })
}

/// Checks an error answer: status, code, message, the field order and the request id header.
pub fn assert_error(resp: &HttpResponse, e: &ApiError, json: bool) {
    assert_eq!(resp.status, e.http_status(), "{e:?}: {}", resp.body);
    let rid = resp
        .header("x-acs-request-id")
        .expect("request id header")
        .to_owned();
    if json {
        assert_eq!(
            resp.header("content-type"),
            Some("application/json;charset=utf-8")
        );
        let v: serde_json::Value = serde_json::from_str(&resp.body).unwrap();
        assert_eq!(v["Code"], e.code(), "{}", resp.body);
        assert_eq!(v["Message"], e.message());
        assert_eq!(v["RequestId"], rid.as_str());
        let order: Vec<usize> = [
            "\"RequestId\"",
            "\"HostId\"",
            "\"Code\"",
            "\"Message\"",
            "\"Recommend\"",
        ]
        .iter()
        .map(|k| resp.body.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{}", resp.body);
    } else {
        assert_eq!(resp.header("content-type"), Some("text/xml;charset=utf-8"));
        let escaped = quick_xml_escape(&e.message());
        assert!(
            resp.body
                .starts_with(r#"<?xml version="1.0" encoding="UTF-8"?><Error><RequestId>"#),
            "{}",
            resp.body
        );
        assert!(resp.body.contains(&format!("<RequestId>{rid}</RequestId>")));
        assert!(
            resp.body.contains(&format!("<Code>{}</Code>", e.code())),
            "{}",
            resp.body
        );
        assert!(
            resp.body.contains(&format!("<Message>{escaped}</Message>")),
            "{}",
            resp.body
        );
    }
}

fn quick_xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// Base64 for Function URL bodies, kept here rather than pulling a crate into the tests.
mod base64_lite {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    pub fn encode(b: &[u8]) -> String {
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}
