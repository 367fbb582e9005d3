//! Every error code with its status, code and message, in JSON and in XML, over raw HTTP and
//! through every Lambda event source.

use crate::helpers::*;
use srctraffic::ApiError;
use srctraffic::store::{LocalStore, Precondition, Store};

#[tokio::test]
async fn every_request_error_over_http_in_json_and_xml() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    for e in ApiError::all() {
        let Some(params) = provoke(&e) else { continue };
        for (accept, json) in [("application/json", true), ("text/xml", false)] {
            let resp = http_get(&server.addr, &params, &[("Accept", accept)]);
            assert_error(&resp, &e, json);
        }
        // The Format parameter wins over Accept, except when it is the thing at fault.
        if e != ApiError::FormatInvalid {
            let mut p = params.clone();
            p.push(("Format".into(), "JSON".into()));
            assert_error(
                &http_get(&server.addr, &p, &[("Accept", "text/xml")]),
                &e,
                true,
            );
        }
    }
}

#[tokio::test]
async fn every_request_error_through_every_lambda_event_source() {
    let dir = seed_store().await;
    for source in SOURCES {
        for e in ApiError::all() {
            let Some(params) = provoke(&e) else { continue };
            for (accept, json) in [("application/json", true), ("text/xml", false)] {
                let resp = invoke(app(dir.path()), &source.event(&params, accept)).await;
                assert_error(&resp, &e, json);
            }
        }
    }
}

fn seed_query() -> Vec<(String, String)> {
    pairs(&[
        ("Action", ACTION),
        ("DomainName", "example.com"),
        ("StartTime", "2019-12-10T20:00:00Z"),
        ("EndTime", "2019-12-10T20:01:00Z"),
    ])
}

#[tokio::test]
async fn a_corrupt_bucket_is_an_internal_error_that_leaks_nothing() {
    let dir = seed_store().await;
    let store = LocalStore::open(dir.path()).unwrap();
    let key = "buckets/2019-12-10/example.com.bkt";
    let mut bytes = store.get(key).await.unwrap().unwrap();
    bytes[40] ^= 0xff;
    store.put(key, bytes, Precondition::None).await.unwrap();
    let server = Server::start(dir.path());
    for (accept, json) in [("application/json", true), ("text/xml", false)] {
        let resp = http_get(&server.addr, &seed_query(), &[("Accept", accept)]);
        assert_error(&resp, &ApiError::Internal, json);
        assert!(
            !resp.body.contains("bkt") && !resp.body.contains("checksum"),
            "{}",
            resp.body
        );
    }
    for source in SOURCES {
        for (accept, json) in [("application/json", true), ("text/xml", false)] {
            let resp = invoke(app(dir.path()), &source.event(&seed_query(), accept)).await;
            assert_error(&resp, &ApiError::Internal, json);
        }
    }
}

#[tokio::test]
async fn a_store_out_of_reach_is_service_unavailable() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let router = app(dir.path());
    std::fs::remove_dir_all(dir.path()).unwrap();
    for (accept, json) in [("application/json", true), ("text/xml", false)] {
        let resp = http_get(&server.addr, &seed_query(), &[("Accept", accept)]);
        assert_error(&resp, &ApiError::ServiceUnavailable, json);
    }
    for source in SOURCES {
        for (accept, json) in [("application/json", true), ("text/xml", false)] {
            let resp = invoke(router.clone(), &source.event(&seed_query(), accept)).await;
            assert_error(&resp, &ApiError::ServiceUnavailable, json);
        }
    }
}

#[tokio::test]
async fn other_methods_are_an_unknown_api() {
    let dir = seed_store().await;
    let server = Server::start(dir.path());
    let q = encode(&seed_query());
    for method in ["PUT", "DELETE", "PATCH"] {
        let req = format!(
            "{method} /?{q} HTTP/1.1\r\nHost: x\r\nAccept: application/json\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
        assert_error(
            &raw_http(&server.addr, req.as_bytes()),
            &ApiError::ActionNotFound,
            true,
        );
    }
}
