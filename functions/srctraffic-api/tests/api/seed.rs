//! The seed's sample request returns exactly the seed's documents, RequestId aside.

use crate::helpers::*;

/// The seed document without the layout whitespace between elements.
fn minify_xml(s: &str) -> String {
    s.lines().map(str::trim).collect()
}

fn minify_json(s: &str) -> String {
    serde_json::to_string(&serde_json::from_str::<serde_json::Value>(s).unwrap()).unwrap()
}

fn seed_params(format: Option<&str>) -> Vec<(String, String)> {
    let mut p = pairs(&[
        ("Action", ACTION),
        ("DomainName", "example.com"),
        ("StartTime", "2019-12-10T20:00:00Z"),
        ("EndTime", "2019-12-10T20:01:00Z"),
    ]);
    if let Some(f) = format {
        p.push(("Format".into(), f.into()));
    }
    p
}

fn expected_json(request_id: &str) -> String {
    // serde_json's map keeps keys sorted, so build the seed's order from the fixture's text.
    let seed = fixture("seed_response.json");
    let seed_min: String = {
        let v: serde_json::Value = serde_json::from_str(&seed).unwrap();
        assert_eq!(v["RequestId"], "A666D44F-19D6-490E-97CF-1A64AB962C57");
        let _ = minify_json(&seed);
        seed.lines()
            .map(str::trim)
            .collect::<String>()
            .replace("\": ", "\":")
    };
    seed_min.replace("A666D44F-19D6-490E-97CF-1A64AB962C57", request_id)
}

fn expected_xml(request_id: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>{}"#,
        minify_xml(&fixture("seed_response.xml"))
            .replace("A666D44F-19D6-490E-97CF-1A64AB962C57", request_id)
    )
}

#[tokio::test]
async fn the_seed_request_over_http_returns_the_seed_documents() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let json = http_get(&server.addr, &seed_params(Some("JSON")), &[]);
    assert_eq!(json.status, 200, "{}", json.body);
    let rid = json.header("x-acs-request-id").unwrap().to_owned();
    assert!(rid.len() == 36 && rid == rid.to_ascii_uppercase(), "{rid}");
    assert_eq!(
        json.header("content-type"),
        Some("application/json;charset=utf-8")
    );
    assert_eq!(json.body, expected_json(&rid));

    let xml = http_get(&server.addr, &seed_params(Some("XML")), &[]);
    let rid = xml.header("x-acs-request-id").unwrap().to_owned();
    assert_eq!(xml.header("content-type"), Some("text/xml;charset=utf-8"));
    assert_eq!(xml.body, expected_xml(&rid));

    // Without Format: Accept decides, and XML is the default.
    let by_accept = http_get(
        &server.addr,
        &seed_params(None),
        &[("Accept", "application/json")],
    );
    assert_eq!(
        by_accept.body,
        expected_json(by_accept.header("x-acs-request-id").unwrap())
    );
    let default = http_get(&server.addr, &seed_params(None), &[]);
    assert_eq!(
        default.body,
        expected_xml(default.header("x-acs-request-id").unwrap())
    );
}

#[tokio::test]
async fn a_form_post_carries_the_seed_request_too() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let body = encode(&seed_params(Some("json")));
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = raw_http(&server.addr, req.as_bytes());
    assert_eq!(
        resp.body,
        expected_json(resp.header("x-acs-request-id").unwrap())
    );
    // The SDKs' shape: parameters in the query string, no Content-Type, an empty body.
    let q = encode(&seed_params(Some("JSON")));
    let req =
        format!("POST /?{q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    let resp = raw_http(&server.addr, req.as_bytes());
    assert_eq!(
        resp.body,
        expected_json(resp.header("x-acs-request-id").unwrap())
    );
}

#[tokio::test]
async fn every_lambda_event_source_answers_the_seed_request() {
    let dir = seed_store().await;
    for source in SOURCES {
        // The committed fixture as it is.
        let resp = invoke(app(dir.path()), &fixture(source.fixture())).await;
        assert_eq!(resp.status, 200, "{source:?}: {}", resp.body);
        let rid = resp.header("x-acs-request-id").unwrap().to_owned();
        let want = match source {
            Source::HttpV2 | Source::FunctionUrl => expected_json(&rid),
            Source::RestV1 | Source::Alb => expected_xml(&rid),
        };
        assert_eq!(resp.body, want, "{source:?}");
        for (fmt, json) in [("JSON", true), ("XML", false)] {
            let ev = source.event(&seed_params(Some(fmt)), "*/*");
            let resp = invoke(app(dir.path()), &ev).await;
            let rid = resp.header("x-acs-request-id").unwrap().to_owned();
            let want = if json {
                expected_json(&rid)
            } else {
                expected_xml(&rid)
            };
            assert_eq!(resp.body, want, "{source:?} {fmt}");
        }
    }
}

#[tokio::test]
async fn the_committed_invoke_events_are_the_seed_request() {
    let dir = seed_store().await;
    for name in ["seed-http-api.json", "seed-rest-api.json"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("events")
            .join(name);
        let resp = invoke(app(dir.path()), &std::fs::read_to_string(p).unwrap()).await;
        assert_eq!(resp.status, 200, "{name}: {}", resp.body);
        assert!(resp.body.contains("2019-12-10T20:01:00Z"), "{name}");
    }
}
