//! The function on the S3 store, against a real S3-compatible server on 127.0.0.1 (SigV4
//! checked, data on disk): buckets and the credentials object both read from S3, as deployed.

use crate::auth::{CREDS, nonce, now_stamp, v1_get};
use crate::helpers::*;
use srctraffic::store::S3Store;
use srctraffic_s3_test_server::{BUCKET, S3Server};
use std::ffi::OsStr;

const CREDS_KEY: &str = "config/credentials.json";

/// The server with the seed's data under `s3://BUCKET/data` and the credentials object.
fn seeded_server() -> S3Server {
    let server = S3Server::start();

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = S3Store::with_settings(STORE, &server.settings()).unwrap();
        put_minutes(
            &store,
            "example.com",
            &[("2019-12-10T20:00:00Z", 0), ("2019-12-10T20:01:00Z", 0)],
        )
        .await;
    });
    // s3s-fs keeps each object as a plain file under the bucket's directory.
    let creds = server.root().join(BUCKET).join(CREDS_KEY);
    std::fs::create_dir_all(creds.parent().unwrap()).unwrap();
    std::fs::write(&creds, CREDS).unwrap();
    server
}

const STORE: &str = "s3://srctraffic-test/data";

/// `srctraffic-api serve` on the S3 store, auth on, with the credentials object at `creds_key`.
fn api_command(s3: &S3Server, creds_key: &str) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_srctraffic-api"));
    c.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--now",
        NOW,
        "--auth",
        "on",
    ])
    .args(["--store", STORE])
    .env(
        "SRCTRAFFIC_CREDENTIALS",
        format!("s3://{BUCKET}/{creds_key}"),
    )
    .envs(s3.env());
    c
}

fn api_server(s3: &S3Server) -> Server {
    let mut env = s3.env();
    env.push((
        "SRCTRAFFIC_CREDENTIALS".to_owned(),
        format!("s3://{BUCKET}/{CREDS_KEY}"),
    ));
    Server::start_env(OsStr::new(STORE), &["--auth", "on"], &env)
}

/// The tenant's signed request for the seed's minutes, with `secret`.
fn tenant_get(api: &Server, secret: &str) -> HttpResponse {
    v1_get(
        &api.addr,
        "tenant",
        secret,
        "example.com",
        &now_stamp(0),
        &nonce(),
        "application/json",
    )
}

#[test]
fn signed_requests_are_answered_from_s3_with_credentials_from_s3() {
    let s3 = seeded_server();
    let api = api_server(&s3);
    let r = tenant_get(&api, "tenant-secret");
    assert_eq!(r.status, 200, "{}", r.body);
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let mut seed: serde_json::Value = serde_json::from_str(&fixture("seed_response.json")).unwrap();
    seed["RequestId"] = body["RequestId"].clone();
    assert_eq!(body, seed);
    // The keys came from the object: a secret it does not hold is refused.
    let r = tenant_get(&api, "wrong");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("SignatureDoesNotMatch"), "{}", r.body);
}

#[test]
fn a_missing_credentials_object_stops_start_up_with_its_url() {
    let s3 = seeded_server();
    let out = api_command(&s3, "config/absent.json").output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("s3://{BUCKET}/config/absent.json")),
        "{err}"
    );
}

#[test]
fn the_s3_server_going_away_is_a_503_and_coming_back_ends_it() {
    let mut s3 = seeded_server();
    let api = api_server(&s3);
    s3.stop();
    let r = tenant_get(&api, "tenant-secret");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("ServiceUnavailable"), "{}", r.body);
    s3.restart();
    let r = tenant_get(&api, "tenant-secret");
    assert_eq!(r.status, 200, "{}", r.body);
}
