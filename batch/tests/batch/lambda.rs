//! The batch binary as a Lambda function: started with `AWS_LAMBDA_RUNTIME_API` pointing at a
//! runtime API served here, it takes a Step Functions Distributed Map item batch naming S3
//! objects, folds them into the store exactly once, answers with the summary, and reports an
//! event it cannot use as an invocation error while it keeps serving.

use crate::helpers::*;
use srctraffic::store::Precondition;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// What the function sent back for one invocation.
#[derive(Debug)]
enum Outcome {
    Response(serde_json::Value),
    Error(String),
}

/// A runtime API handing out `events` in order, one per `next` call, and sending back each
/// outcome; after the last event `next` waits until the function is stopped.
///
/// Every connection is served on its own thread. The runtime client pools its connections, and
/// a request sent before the previous response's connection is back in the pool goes out on a
/// new one: a stub that served one connection at a time never read that request, and the
/// function waited forever (the flaky failure this test once had).
fn runtime_api(events: Vec<serde_json::Value>) -> RuntimeApi {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::channel();
    let events = Arc::new(Mutex::new(events.into_iter().enumerate()));
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let (events, tx) = (events.clone(), tx.clone());
            std::thread::spawn(move || serve_connection(conn, &events, &tx));
        }
    });
    RuntimeApi {
        addr,
        outcomes: rx,
        connections,
    }
}

type Events = Mutex<std::iter::Enumerate<std::vec::IntoIter<serde_json::Value>>>;

/// Serves one connection's requests until the client closes it.
fn serve_connection(conn: TcpStream, events: &Events, tx: &mpsc::Sender<Outcome>) {
    let Ok(read_half) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut conn = conn;
    while let Some((method, path, body)) = read_request(&mut reader) {
        let written = if method == "GET" && path.ends_with("/invocation/next") {
            let next = events.lock().unwrap_or_else(|p| p.into_inner()).next();
            let Some((i, event)) = next else {
                // No more events: hold the call open, as the real API does while idle.
                std::thread::sleep(Duration::from_secs(600));
                return;
            };
            let body = event.to_string();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis())
                + 900_000;
            write!(
                conn,
                "HTTP/1.1 200 OK\r\nLambda-Runtime-Aws-Request-Id: req-{i}\r\n\
                 Lambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:batch\r\n\
                 Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        } else {
            let text = String::from_utf8_lossy(&body).into_owned();
            let outcome = if path.ends_with("/response") {
                match serde_json::from_str(&text) {
                    Ok(v) => Outcome::Response(v),
                    Err(e) => Outcome::Error(format!("response is not JSON ({e}): {text}")),
                }
            } else {
                Outcome::Error(text)
            };
            let _ = tx.send(outcome);
            write!(conn, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
        };
        if written.is_err() {
            return;
        }
    }
}

/// The stub runtime API of one test.
struct RuntimeApi {
    addr: String,
    outcomes: mpsc::Receiver<Outcome>,
    /// Connections the function opened.
    connections: Arc<AtomicUsize>,
}

/// One HTTP/1.1 request: method, path and body; `None` when the connection closes.
fn read_request(r: &mut BufReader<TcpStream>) -> Option<(String, String, Vec<u8>)> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut length = 0;
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    Some((method, path, body))
}

#[tokio::test]
async fn a_distributed_map_item_batch_and_new_object_events_are_folded_once_and_a_bad_event_is_an_error()
 {
    let server = S3Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (logs, truth) = gen_logs(dir.path(), 30, 20_000, 4, true);
    let truth = read_truth(&truth);
    let uploads = TestStore::s3(&server);
    let up = uploads.open().await;
    let prefix = uploads
        .spec
        .strip_prefix(&format!("s3://{BUCKET}/"))
        .unwrap()
        .to_owned();
    let mut items = Vec::new();
    for f in std::fs::read_dir(&logs).unwrap() {
        let f = f.unwrap().path();
        let key = format!("logs/{}", f.file_name().unwrap().to_string_lossy());
        up.put(&key, std::fs::read(&f).unwrap(), Precondition::None)
            .await
            .unwrap();
        // An S3 listing entry as the Distributed Map's ItemReader passes it on.
        items.push(serde_json::json!({"Key": format!("{prefix}/{key}"), "Size": 1, "StorageClass": "STANDARD"}));
    }
    assert_eq!(items.len(), 4);
    // New objects as template.yaml delivers them: EventBridge "Object Created" events batched
    // by SQS. They name all four; the map's batch had three.
    let records: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, it)| {
            let body = serde_json::json!({
                "version": "0", "id": format!("ev-{i}"), "detail-type": "Object Created",
                "source": "aws.s3", "account": "123456789012", "time": "2019-12-10T23:00:00Z",
                "region": "us-east-1", "resources": [format!("arn:aws:s3:::{BUCKET}")],
                "detail": {"version": "0", "bucket": {"name": BUCKET},
                           "object": {"key": it["Key"], "size": 1, "etag": "e"},
                           "reason": "PutObject"}
            });
            serde_json::json!({"messageId": format!("m{i}"), "eventSource": "aws:sqs",
                               "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:new-logs",
                               "body": body.to_string(), "attributes": {}, "messageAttributes": {}})
        })
        .collect();
    let sqs = serde_json::json!({ "Records": records });
    items.pop();
    let batch = serde_json::json!({"BatchInput": {"bucket": BUCKET}, "Items": items});
    let events = vec![
        batch.clone(),
        batch,
        sqs,
        serde_json::json!({"Items": [{"Key": "no-bucket-given.csv"}]}),
    ];
    let api = runtime_api(events);
    let store = TestStore::s3(&server);
    let log = dir.path().join("function.log");
    let mut function = store
        .command()
        .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
        .env("AWS_LAMBDA_FUNCTION_NAME", "srctraffic-batch")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "3008")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("SRCTRAFFIC_STORE", &store.spec)
        .env("SRCTRAFFIC_NOW", NOW)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut next = || match api.outcomes.recv_timeout(Duration::from_secs(120)) {
        Ok(o) => o,
        Err(e) => {
            let _ = function.kill();
            let _ = function.wait();
            panic!(
                "no outcome from the function ({e:?}) after {} connection(s); its log:\n{}",
                api.connections.load(Ordering::SeqCst),
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        }
    };
    let (first, second, from_sqs, third) = (next(), next(), next(), next());
    let _ = function.kill();
    let _ = function.wait();
    eprintln!(
        "the function opened {} connection(s) to the runtime API",
        api.connections.load(Ordering::SeqCst)
    );

    let summary = |o: &Outcome| match o {
        Outcome::Response(v) => v["summary"].as_str().unwrap_or_default().to_owned(),
        Outcome::Error(e) => panic!("invocation failed: {e}"),
    };
    assert!(
        summary(&first).contains("3 found, 3 read"),
        "{}",
        summary(&first)
    );
    assert!(
        summary(&second).contains("0 read, 3 already committed"),
        "{}",
        summary(&second)
    );
    assert!(
        summary(&from_sqs).contains("4 found, 1 read, 3 already committed"),
        "{}",
        summary(&from_sqs)
    );
    match third {
        Outcome::Error(e) => assert!(e.contains("BatchInput"), "{e}"),
        other => panic!("a batch without its bucket must fail the invocation: {other:?}"),
    }
    assert_eq!(store_totals(&store).await, truth);
}
