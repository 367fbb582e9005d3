//! No request, however malformed, panics the process or gets a 500.

use crate::helpers::*;
use axum::body::Body;
use http::Request;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use tower::ServiceExt;

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{1,40}",
        "-?[0-9]{1,25}(\\.[0-9]+)?",
        Just(String::new()),
        Just("2019-12-10T20:00:00Z".to_owned()),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
        "[a-zA-Z0-9.,\\- ]{0,80}",
        (1usize..12_000).prop_map(|n| (0..n)
            .map(|i| format!("d{i}.example.com"))
            .collect::<Vec<_>>()
            .join(",")),
        Just("例え.テスト,ü.com".to_owned()),
        // Any action of the family, so that each one's rules meet the random rest.
        proptest::sample::select(
            srctraffic::Action::all()
                .map(|a| a.name().to_owned())
                .collect::<Vec<_>>()
        ),
    ]
}

fn param_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![
            Just("Action"), Just("DomainName"), Just("StartTime"), Just("EndTime"),
            Just("Interval"), Just("Format"), Just("Version"),
        ].prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn header() -> impl Strategy<Value = (String, Vec<u8>)> {
    (
        prop_oneof![
            Just("accept"),
            Just("content-type"),
            Just("x-acs-action"),
            Just("x-acs-version"),
            Just("host")
        ],
        proptest::collection::vec(any::<u8>(), 0..64),
    )
        .prop_map(|(k, v)| (k.to_owned(), v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]
    #[test]
    fn arbitrary_requests_get_documented_answers(
        params in proptest::collection::vec((param_name(), value()), 0..8),
        headers in proptest::collection::vec(header(), 0..4),
        post in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            put_minutes(&srctraffic::store::LocalStore::open(dir.path()).unwrap(), "d1.example.com", &[("2019-12-10T20:00:00Z", 5)]).await;
            // Past the URI length limit of the http crate, parameters travel in a form body.
            let query = encode(&params);
            let long = query.len() > 60_000;
            let mut req = Request::builder()
                .method(if post || long { "POST" } else { "GET" })
                .uri(if long { "/".to_owned() } else { format!("/?{query}") });
            for (k, v) in &headers {
                if let Ok(v) = http::HeaderValue::from_bytes(v) {
                    req = req.header(k.as_str(), v);
                }
            }
            let payload = if long { query.into_bytes() } else if post { body.clone() } else { Vec::new() };
            let req = req.body(Body::from(payload)).unwrap();
            let resp = app(dir.path()).oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            prop_assert!([200, 400, 404].contains(&status), "status {}", status);
            prop_assert!(resp.headers().contains_key("x-acs-request-id"));
            Ok(())
        })?;
    }
}

/// Raw bytes on the wire: whatever hyper or the handler says, the server never answers 500 and
/// is still serving afterwards.
#[tokio::test]
async fn the_server_survives_garbage_on_the_wire() {
    let dir = seed_store().await;
    let mut server = Server::start(dir.path());
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let strat = (
        proptest::collection::vec(any::<u8>(), 0..200),
        proptest::collection::vec((param_name(), value()), 0..6),
        proptest::collection::vec(any::<u8>(), 0..100),
    );
    for _ in 0..300 {
        let (junk, params, header_junk) = strat.new_tree(&mut runner).unwrap().current();
        let mut req = format!(
            "GET /?{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Junk: ",
            encode(&params)
        )
        .into_bytes();
        req.extend(header_junk.iter().filter(|b| **b != b'\r' && **b != b'\n'));
        req.extend_from_slice(b"\r\n\r\n");
        let resp = raw_http(&server.addr, &req);
        // hyper itself refuses request lines past its limit with 414.
        let ok =
            [200, 400, 404].contains(&resp.status) || (resp.status == 414 && req.len() > 60_000);
        assert!(ok, "{} {}", resp.status, resp.body);
        let resp = raw_bytes(&server.addr, &junk);
        assert_ne!(resp.status, 500, "{}", resp.body);
    }
    assert!(server.is_running());
    let ok = http_get(
        &server.addr,
        &pairs(&[
            ("Action", ACTION),
            ("DomainName", "example.com"),
            ("StartTime", "2019-12-10T20:00:00Z"),
            ("EndTime", "2019-12-10T20:01:00Z"),
        ]),
        &[],
    );
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn ten_thousand_domains_in_a_form_body_are_over_the_limit() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let many: Vec<String> = (0..10_000).map(|i| format!("d{i}.example.com")).collect();
    let body = encode(&[
        ("Action".into(), ACTION.into()),
        ("DomainName".into(), many.join(",")),
        ("Format".into(), "JSON".into()),
    ]);
    let req = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    assert_error(
        &raw_http(&server.addr, req.as_bytes()),
        &srctraffic::ApiError::DomainNameOverLimit(100),
        true,
    );
}
