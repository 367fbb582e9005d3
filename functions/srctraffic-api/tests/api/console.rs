//! `GET /console`: served by the local server (unless switched off) and, under Lambda, only
//! when asked for; self-contained, told whether to sign; the API still answers every other
//! request, on that path too.

use crate::helpers::*;
use srctraffic::Clock;
use srctraffic::store::LocalStore;
use srctraffic_api::{AppState, router};
use std::sync::Arc;

fn get_console(addr: &str) -> HttpResponse {
    raw_http(
        addr,
        format!("GET /console HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

#[tokio::test]
async fn the_local_server_serves_the_page_and_says_whether_to_sign() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let r = get_console(&server.addr);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/html;charset=utf-8"));
    assert!(
        r.header("content-security-policy")
            .is_some_and(|c| c.contains("connect-src 'self'")),
        "{:?}",
        r.headers
    );
    assert!(
        r.body
            .contains(r#"data-auth="off" data-now="2019-12-11T00:00:00Z""#)
    );
    assert!(r.body.contains("crypto.subtle"));
    // Nothing from another origin: no external script, style, font or image.
    for needle in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!r.body.contains(needle), "{needle}");
    }
    // The API is unchanged beside it.
    let api = http_get(
        &server.addr,
        &pairs(&[
            ("Action", ACTION),
            ("DomainName", "example.com"),
            ("StartTime", "2019-12-10T20:00:00Z"),
            ("EndTime", "2019-12-10T20:01:00Z"),
        ]),
        &[],
    );
    assert_eq!(api.status, 200, "{}", api.body);

    let off = Server::start_with(dir.path(), &["--auth", "off", "--console", "off"]);
    let r = get_console(&off.addr);
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body.contains("<Code>MissingParameter</Code>"),
        "{}",
        r.body
    );

    let creds = dir.path().join("creds.json");
    std::fs::write(&creds, crate::auth::CREDS).unwrap();
    let signed = Server::start_with(
        dir.path(),
        &["--auth", "on", "--credentials", creds.to_str().unwrap()],
    );
    // The page needs no key; every API request still does.
    let r = get_console(&signed.addr);
    assert_eq!(r.status, 200);
    assert!(r.body.contains(r#"data-auth="on""#));
}

#[tokio::test]
async fn under_lambda_the_page_comes_from_an_api_gateway_event_when_switched_on() {
    let dir = seed_store().await;
    let state = || {
        AppState::open(
            Arc::new(LocalStore::open(dir.path()).unwrap()),
            Clock::fixed(NOW).unwrap(),
        )
    };
    let mut event: serde_json::Value =
        serde_json::from_str(&Source::HttpV2.event(&[], "text/html")).unwrap();
    event["rawPath"] = "/console".into();
    event["requestContext"]["http"]["path"] = "/console".into();
    event["requestContext"]["http"]["method"] = "GET".into();
    event["rawQueryString"] = "".into();
    event["queryStringParameters"] = serde_json::json!({});
    let r = invoke(router(state().with_console()), &event.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("<!DOCTYPE html>"));
    let r = invoke(router(state()), &event.to_string()).await;
    assert_eq!(r.status, 400, "{}", r.body);
}
