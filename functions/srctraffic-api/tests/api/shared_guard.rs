//! Nonces and call rates shared by two API processes through a real DynamoDB-compatible server
//! (moto, started by `scripts/test.sh`, which sets `SRCTRAFFIC_TEST_DYNAMODB`), as on AWS where
//! Lambda runs many instances; and a guard that cannot be reached refuses (fails closed).

use crate::auth::{nonce, now_stamp, v1_get};
use crate::helpers::*;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use srctraffic::ApiError;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEYS: usize = 20;

fn creds() -> String {
    let keys: Vec<String> = (0..KEYS)
        .map(|i| {
            format!(r#"{{"access_key_id": "k{i}", "access_key_secret": "s{i}", "domains": ["*"]}}"#)
        })
        .collect();
    format!(r#"{{"keys": [{}]}}"#, keys.join(","))
}

fn aws_env(endpoint: &str) -> Vec<(String, String)> {
    [
        ("AWS_ENDPOINT_URL_DYNAMODB", endpoint),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A fresh table on the server at `endpoint`, as template.yaml declares it.
async fn create_table(endpoint: &str) -> String {
    let conf = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(conf);
    let name = format!("guard-{}-{}", std::process::id(), nonce());
    client
        .create_table()
        .table_name(&name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    name
}

/// `serve` over the seeded store with signing on: nonces and rates in `table` on the server at
/// `endpoint`, or in the process with `None`.
fn api(dir: &tempfile::TempDir, endpoint: &str, table: Option<&str>) -> Server {
    let creds_file = dir.path().join("creds.json");
    std::fs::write(&creds_file, creds()).unwrap();
    let mut env = aws_env(endpoint);
    if let Some(t) = table {
        env.push(("SRCTRAFFIC_GUARD".into(), "dynamodb".into()));
        env.push(("SRCTRAFFIC_GUARD_TABLE".into(), t.into()));
    }
    let args = [
        "--auth",
        "on",
        "--credentials",
        creds_file.to_str().unwrap(),
    ];
    Server::start_env(dir.path().as_os_str(), &args, &env)
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

fn get(server: &Server, key: usize, n: &str) -> HttpResponse {
    v1_get(
        &server.addr,
        &format!("k{key}"),
        &format!("s{key}"),
        "example.com",
        &now_stamp(0),
        n,
        "application/json",
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Per-request latency (ms) of signed requests spread over the keys, each under its rate.
fn latencies(server: &Server, n: usize) -> Vec<f64> {
    let mut out: Vec<f64> = (0..n)
        .map(|i| {
            let t = Instant::now();
            let r = get(server, i % KEYS, &nonce());
            assert_eq!(r.status, 200, "{}", r.body);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    out.sort_by(f64::total_cmp);
    out
}

#[test]
#[ignore = "needs a DynamoDB-compatible server: scripts/test.sh starts one (moto)"]
fn two_processes_share_nonces_and_the_call_rate_through_dynamodb() {
    let endpoint = std::env::var("SRCTRAFFIC_TEST_DYNAMODB")
        .expect("SRCTRAFFIC_TEST_DYNAMODB: the endpoint of a DynamoDB-compatible server");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let table = rt.block_on(create_table(&endpoint));
    let dir = rt.block_on(seed_store());
    let a = api(&dir, &endpoint, Some(&table));
    let b = api(&dir, &endpoint, Some(&table));

    // A request replayed to the other process is refused there.
    let n = nonce();
    let first = get(&a, 0, &n);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_error(&get(&b, 0, &n), &ApiError::NonceUsed, true);
    assert_error(&get(&a, 0, &n), &ApiError::NonceUsed, true);

    // 11 calls by one key in one second, alternating between the processes: one is refused.
    // A try that straddles a second boundary (a slow machine) is not a second; try again.
    let mut tries = 0;
    loop {
        tries += 1;
        let wait = 1_000_000_000 - unix_now().subsec_nanos();
        std::thread::sleep(Duration::from_nanos(u64::from(wait)) + Duration::from_millis(5));
        let second = unix_now().as_secs();
        let answers: Vec<HttpResponse> = (0..11)
            .map(|i| get(if i % 2 == 0 { &a } else { &b }, 1, &nonce()))
            .collect();
        if unix_now().as_secs() != second && tries < 5 {
            std::thread::sleep(Duration::from_millis(1100));
            continue;
        }
        let ok = answers.iter().filter(|r| r.status == 200).count();
        let throttled: Vec<&HttpResponse> = answers.iter().filter(|r| r.status != 200).collect();
        assert_eq!((ok, throttled.len()), (10, 1), "in {tries} tries");
        assert_error(throttled[0], &ApiError::Throttled, true);
        break;
    }

    // What the shared store adds to a request, against a process keeping them itself.
    let local = api(&dir, &endpoint, None);
    std::thread::sleep(Duration::from_millis(1100));
    let (shared, own) = (latencies(&a, 150), latencies(&local, 150));
    eprintln!(
        "guard latency per signed request (ms): local p50 {:.2} p99 {:.2}; DynamoDB (moto) p50 {:.2} p99 {:.2}; added p50 {:.2} p99 {:.2}",
        percentile(&own, 0.5),
        percentile(&own, 0.99),
        percentile(&shared, 0.5),
        percentile(&shared, 0.99),
        percentile(&shared, 0.5) - percentile(&own, 0.5),
        percentile(&shared, 0.99) - percentile(&own, 0.99),
    );
}

#[test]
fn a_guard_that_cannot_be_reached_refuses_signed_requests() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = rt.block_on(seed_store());
    // Nothing listens on port 1.
    let server = api(&dir, "http://127.0.0.1:1", Some("absent"));
    assert_error(
        &get(&server, 0, &nonce()),
        &ApiError::ServiceUnavailable,
        true,
    );
}
