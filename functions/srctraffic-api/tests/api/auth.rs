//! Signed requests over real HTTP: each refusal with its code, in the requested format, and a
//! foreign domain answered like an absent one.

use crate::helpers::*;
use srctraffic::ApiError;
use srctraffic::auth::{v1, v3};
use std::sync::atomic::{AtomicU64, Ordering};

pub const CREDS: &str = r#"{"keys": [
  {"access_key_id": "tenant", "access_key_secret": "tenant-secret", "domains": ["example.com", "*.tenant.com"]},
  {"access_key_id": "ops", "access_key_secret": "ops-secret", "domains": ["*"]}
]}"#;

fn start() -> (tempfile::TempDir, Server) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = rt.block_on(seed_store());
    let creds = dir.path().join("creds.json");
    std::fs::write(&creds, CREDS).unwrap();
    let server = Server::start_with(
        dir.path(),
        &["--auth", "on", "--credentials", creds.to_str().unwrap()],
    );
    (dir, server)
}

pub fn now_stamp(offset: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    srctraffic::time::ApiTime::from_unix_seconds(secs + offset).to_string()
}

pub fn nonce() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "nonce-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A V1-signed GET.
pub fn v1_get(
    addr: &str,
    key: &str,
    secret: &str,
    domains: &str,
    stamp: &str,
    nonce: &str,
    accept: &str,
) -> HttpResponse {
    let mut p = pairs(&[
        ("Action", ACTION),
        ("Version", "2018-05-10"),
        ("DomainName", domains),
        ("StartTime", "2019-12-10T20:00:00Z"),
        ("EndTime", "2019-12-10T20:01:00Z"),
        ("AccessKeyId", key),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", stamp),
    ]);
    let sig = v1::sign(&v1::string_to_sign("GET", &p), secret);
    p.push(("Signature".into(), sig));
    http_get(addr, &p, &[("Accept", accept)])
}

/// A V3-signed POST with the parameters in the query string and an empty body, as the Tea SDK
/// sends it.
fn v3_post(addr: &str, key: &str, secret: &str, domains: &str) -> HttpResponse {
    let query = pairs(&[
        ("DomainName", domains),
        ("StartTime", "2019-12-10T20:00:00Z"),
        ("EndTime", "2019-12-10T20:01:00Z"),
    ]);
    let headers = pairs(&[
        ("host", addr),
        ("x-acs-action", ACTION),
        ("x-acs-version", "2018-05-10"),
        ("x-acs-date", &now_stamp(0)),
        ("x-acs-signature-nonce", &nonce()),
        ("accept", "application/json"),
        (
            "x-acs-content-sha256",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ),
    ]);
    let signed: Vec<String> = {
        let mut s: Vec<String> = headers.iter().map(|(k, _)| k.clone()).collect();
        s.sort();
        s
    };
    let canonical = v3::canonical_request("POST", &query, &headers, &signed, b"").unwrap();
    let sig = v3::sign(&v3::string_to_sign(&canonical), secret);
    let mut req = format!(
        "POST /?{} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n",
        encode(&query)
    );
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Authorization: ACS3-HMAC-SHA256 Credential={key},SignedHeaders={},Signature={sig}\r\n\r\n",
        signed.join(";")
    ));
    raw_http(addr, req.as_bytes())
}

#[test]
fn signed_requests_of_both_schemes_get_their_data() {
    let (_dir, server) = start();
    let r = v1_get(
        &server.addr,
        "tenant",
        "tenant-secret",
        "example.com",
        &now_stamp(0),
        &nonce(),
        "application/json",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.body.contains(r#""TimeStamp":"2019-12-10T20:01:00Z""#),
        "{}",
        r.body
    );
    let r = v3_post(&server.addr, "tenant", "tenant-secret", "example.com");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = v3_post(
        &server.addr,
        "ops",
        "ops-secret",
        "example.com,anything.org",
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn every_authentication_failure_has_its_code_in_both_formats() {
    let (_dir, server) = start();
    for (accept, json) in [("application/json", true), ("text/xml", false)] {
        let a = &server.addr;
        let now = now_stamp(0);
        let r = v1_get(
            a,
            "tenant",
            "wrong-secret",
            "example.com",
            &now,
            &nonce(),
            accept,
        );
        assert_eq!(r.status, 400);
        // The server's string to sign follows the first colon, as the core SDK expects.
        let prefix = "Specified signature is not matched with our calculation. server string to sign is:GET&";
        if json {
            let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(v["Code"], "SignatureDoesNotMatch");
            assert!(
                v["Message"].as_str().unwrap().starts_with(prefix),
                "{}",
                r.body
            );
        } else {
            assert!(
                r.body.contains("<Code>SignatureDoesNotMatch</Code>"),
                "{}",
                r.body
            );
            assert!(r.body.contains(&prefix.replace('&', "&amp;")), "{}", r.body);
        }
        assert_error(
            &v1_get(a, "nobody", "x", "example.com", &now, &nonce(), accept),
            &ApiError::AccessKeyNotFound,
            json,
        );
        assert_error(
            &v1_get(
                a,
                "tenant",
                "tenant-secret",
                "example.com",
                &now_stamp(-16 * 60),
                &nonce(),
                accept,
            ),
            &ApiError::TimestampExpired,
            json,
        );
        let n = nonce();
        assert_eq!(
            v1_get(
                a,
                "tenant",
                "tenant-secret",
                "example.com",
                &now,
                &n,
                accept
            )
            .status,
            200
        );
        assert_error(
            &v1_get(
                a,
                "tenant",
                "tenant-secret",
                "example.com",
                &now,
                &n,
                accept,
            ),
            &ApiError::NonceUsed,
            json,
        );
        // A foreign domain that has data, and one that exists nowhere: the same answer.
        let foreign = v1_get(
            a,
            "tenant",
            "tenant-secret",
            "example.com,other.org",
            &now,
            &nonce(),
            accept,
        );
        let absent = v1_get(
            a,
            "tenant",
            "tenant-secret",
            "nosuch.org",
            &now,
            &nonce(),
            accept,
        );
        assert_error(&foreign, &ApiError::DomainNotOwned, json);
        assert_error(&absent, &ApiError::DomainNotOwned, json);
        // Unsigned.
        let unsigned = http_get(
            a,
            &pairs(&[("Action", ACTION), ("DomainName", "example.com")]),
            &[("Accept", accept)],
        );
        assert_error(&unsigned, &ApiError::IncompleteSignature, json);
        // Wildcards cover names below, and time errors still come after authentication.
        let r = v1_get(
            a,
            "tenant",
            "tenant-secret",
            "cdn.tenant.com",
            &now,
            &nonce(),
            accept,
        );
        assert_eq!(r.status, 200, "{}", r.body);
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
}

#[test]
fn the_eleventh_call_in_a_second_is_throttled_and_another_key_is_not() {
    let (_dir, server) = start();
    let now = now_stamp(0);
    let mut statuses = Vec::new();
    let started = std::time::Instant::now();
    for _ in 0..11 {
        statuses.push(v1_get(
            &server.addr,
            "tenant",
            "tenant-secret",
            "example.com",
            &now,
            &nonce(),
            "application/json",
        ));
    }
    // The rule is about one second: only a burst that fit in one can show it.
    if started.elapsed() >= std::time::Duration::from_millis(900) {
        eprintln!(
            "skipped: 11 requests took {:?} on this machine",
            started.elapsed()
        );
    } else {
        assert!(statuses[..10].iter().all(|r| r.status == 200));
        assert_error(&statuses[10], &ApiError::Throttled, true);
        let other = v1_get(
            &server.addr,
            "ops",
            "ops-secret",
            "example.com",
            &now,
            &nonce(),
            "application/json",
        );
        assert_eq!(other.status, 200, "{}", other.body);
    }
}
