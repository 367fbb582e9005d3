//! Under AWS Lambda (`AWS_LAMBDA_RUNTIME_API` set): each invocation runs `aggregate` into
//! `SRCTRAFFIC_STORE` and answers with the summary. The inputs come from the event when it names
//! some (see [`inputs_from_event`]), otherwise from `SRCTRAFFIC_INPUTS` (comma separated), which
//! is what the schedule in template.yaml relies on.

use crate::aggregate_cmd::{self, AggregateOptions};
use crate::header::ColumnNames;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use srctraffic::Clock;
use srctraffic::store::Patience;
use std::time::Duration;

/// Serves invocations until the Lambda runtime stops the process.
pub fn serve() -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(lambda_runtime::run(service_fn(invocation)))
}

async fn invocation(event: LambdaEvent<Value>) -> Result<Value, Error> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let inputs = match inputs_from_event(&event.payload)? {
        // S3's test event, say: nothing to fold, and no failure to retry.
        Some(list) if list.is_empty() => {
            return Ok(json!({ "summary": "the event names no new object" }));
        }
        Some(list) => list,
        None => env("SRCTRAFFIC_INPUTS")
            .map(|s| {
                s.split(',')
                    .map(|p| p.trim().to_owned())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    };
    if inputs.is_empty() {
        return Err("no inputs: set SRCTRAFFIC_INPUTS or invoke with {\"inputs\": [\"s3://bucket/prefix\"]}".into());
    }
    let store = env("SRCTRAFFIC_STORE").ok_or("SRCTRAFFIC_STORE is not set")?;
    let clock = match env("SRCTRAFFIC_NOW") {
        None => Clock::System,
        Some(s) => Clock::fixed(&s).ok_or("SRCTRAFFIC_NOW must be yyyy-MM-ddTHH:mm:ssZ")?,
    };
    let origin_statuses =
        env("SRCTRAFFIC_ORIGIN_STATUSES").map(|s| s.split(',').map(str::to_owned).collect());
    let opts = AggregateOptions {
        inputs,
        clock,
        rejects: None,
        max_bad_ratio: env("SRCTRAFFIC_MAX_BAD_RATIO")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.01),
        columns: ColumnNames::default(),
        formats: crate::lines::FormatSpec::from_flags(&crate::lines::FormatFlags {
            format: env("SRCTRAFFIC_FORMAT"),
            origin_statuses,
            nginx_log_format: env("SRCTRAFFIC_NGINX_LOG_FORMAT"),
            time_field: env("SRCTRAFFIC_TIME_FIELD"),
            domain_field: env("SRCTRAFFIC_DOMAIN_FIELD"),
            bytes_field: env("SRCTRAFFIC_BYTES_FIELD"),
            scheme_field: env("SRCTRAFFIC_SCHEME_FIELD"),
            status_field: env("SRCTRAFFIC_STATUS_FIELD"),
            cache_status_field: env("SRCTRAFFIC_CACHE_STATUS_FIELD"),
        })?,
        lease: Duration::from_secs(120),
        progress: false,
        max_line_bytes: crate::read::MAX_LINE_BYTES,
        compact_after: env("SRCTRAFFIC_COMPACT_AFTER")
            .and_then(|s| s.parse().ok())
            .unwrap_or(crate::compact::COMPACT_AFTER),
        verify: false,
        settle: None,
    };
    // The run drives its own runtime and rayon pool: give it a plain thread of its own.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| -> Result<String, Error> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let opened = rt.block_on(srctraffic::store::open(&store, Patience::Run))?;
            Ok(aggregate_cmd::run(&rt, opened, &opts)?.to_string())
        })();
        let _ = tx.send(result);
    });
    let summary = rx
        .await
        .map_err(|_| "the run stopped without an answer")??;
    tracing::info!("{summary}");
    Ok(json!({ "summary": summary }))
}

/// The inputs an event names, or `None` for an event that names none (a schedule's, say):
/// - `{"inputs": ["s3://bucket/prefix", "s3://bucket/key", ...]}`;
/// - a Step Functions Distributed Map batch, `{"Items": [...], "BatchInput": {"bucket": "b"}}`,
///   each item an S3 listing entry (`{"Key": "...", ...}`, in the batch's `bucket`), an object
///   with an `input` URL, or a URL.
///
/// - new log objects: an SQS batch (`{"Records": [{"eventSource": "aws:sqs", "body": ...}]}`)
///   whose bodies are EventBridge `Object Created` events (what template.yaml routes) or S3
///   event notifications, or one such event delivered directly; each names one object.
///
/// A shape it half matches is an error, so that a mistake in a state machine fails the shard
/// loudly instead of folding nothing.
pub fn inputs_from_event(event: &Value) -> Result<Option<Vec<String>>, String> {
    if let Some(objects) = new_objects(event)? {
        return Ok(Some(objects));
    }
    if let Some(inputs) = event.get("inputs") {
        let list = inputs
            .as_array()
            .ok_or("\"inputs\" must be a list of paths or s3:// URLs")?;
        return list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("\"inputs\" holds {v}, not a string"))
            })
            .collect::<Result<_, _>>()
            .map(Some);
    }
    let Some(items) = event.get("Items") else {
        return Ok(None);
    };
    let items = items
        .as_array()
        .ok_or("\"Items\" must be a list (a Step Functions item batch)")?;
    let batch = event.get("BatchInput");
    let bucket = batch
        .and_then(|b| b.get("bucket").or_else(|| b.get("Bucket")))
        .and_then(Value::as_str);
    items
        .iter()
        .map(|item| {
            if let Some(url) = item
                .as_str()
                .or_else(|| item.get("input").and_then(Value::as_str))
            {
                return Ok(url.to_owned());
            }
            let key = item
                .get("Key")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("item {item} has no \"Key\" or \"input\""))?;
            let bucket = bucket.ok_or(
                "items are S3 listing entries but \"BatchInput\" has no \"bucket\" to find them in",
            )?;
            Ok(format!("s3://{bucket}/{key}"))
        })
        .collect::<Result<_, String>>()
        .map(Some)
}

/// The objects named by an SQS batch of S3 events, or by one S3 event; `None` for any other
/// event. An S3 test event names none.
fn new_objects(event: &Value) -> Result<Option<Vec<String>>, String> {
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        return Ok(s3_event_objects(event)?.filter(|o| !o.is_empty()));
    };
    let mut out = Vec::new();
    for r in records {
        match r.get("eventSource").and_then(Value::as_str) {
            Some("aws:sqs") => {
                let body = r
                    .get("body")
                    .and_then(Value::as_str)
                    .ok_or("an SQS record without a body")?;
                let inner: Value = serde_json::from_str(body)
                    .map_err(|e| format!("an SQS message that is not JSON: {e}"))?;
                let objects = s3_event_objects(&inner)?
                    .ok_or_else(|| format!("an SQS message that is not an S3 event: {body}"))?;
                out.extend(objects);
            }
            Some("aws:s3") => {
                out.extend(s3_event_objects(&json!({"Records": [r]}))?.unwrap_or_default())
            }
            _ => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// The objects one S3 event names: an EventBridge `Object Created` event (its key as it is),
/// or an S3 event notification (its keys URL-encoded, `+` for a space); `Some(empty)` for S3's
/// test event; `None` for anything else.
fn s3_event_objects(event: &Value) -> Result<Option<Vec<String>>, String> {
    if event.get("source").and_then(Value::as_str) == Some("aws.s3") {
        if event.get("detail-type").and_then(Value::as_str) != Some("Object Created") {
            return Ok(Some(Vec::new()));
        }
        let d = event
            .get("detail")
            .ok_or("an S3 event without \"detail\"")?;
        let bucket = d.pointer("/bucket/name").and_then(Value::as_str);
        let key = d.pointer("/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(format!(
                "an Object Created event without bucket and key: {event}"
            ));
        };
        return Ok(Some(vec![format!("s3://{bucket}/{key}")]));
    }
    if event.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Some(Vec::new()));
    }
    let Some(records) = event.get("Records").and_then(Value::as_array) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    for r in records {
        if !r
            .get("eventName")
            .and_then(Value::as_str)
            .is_some_and(|n| n.starts_with("ObjectCreated:"))
        {
            continue;
        }
        let bucket = r.pointer("/s3/bucket/name").and_then(Value::as_str);
        let key = r.pointer("/s3/object/key").and_then(Value::as_str);
        let (Some(bucket), Some(key)) = (bucket, key) else {
            return Err(format!(
                "an S3 notification record without bucket and key: {r}"
            ));
        };
        let key: String = form_urlencoded::parse(format!("k={key}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        out.push(format!("s3://{bucket}/{key}"));
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_objects_come_from_sqs_batches_of_eventbridge_or_s3_events() {
        let eventbridge = json!({
            "version": "0", "detail-type": "Object Created", "source": "aws.s3",
            "detail": {"version": "0", "bucket": {"name": "cdn-logs"},
                       "object": {"key": "origin-fetch/2019-12-10/a b.csv.gz", "size": 10, "etag": "e"},
                       "reason": "PutObject"}
        });
        let notification = json!({"Records": [{
            "eventVersion": "2.1", "eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": "cdn-logs"}, "object": {"key": "origin-fetch/c+d%2B.csv", "size": 1}}
        }]});
        let sqs = json!({"Records": [
            {"messageId": "1", "eventSource": "aws:sqs", "body": eventbridge.to_string()},
            {"messageId": "2", "eventSource": "aws:sqs", "body": notification.to_string()},
            {"messageId": "3", "eventSource": "aws:sqs", "body": json!({"Event": "s3:TestEvent"}).to_string()}
        ]});
        assert_eq!(
            inputs(sqs),
            Ok(Some(vec![
                "s3://cdn-logs/origin-fetch/2019-12-10/a b.csv.gz".into(),
                "s3://cdn-logs/origin-fetch/c d+.csv".into()
            ]))
        );
        // Delivered directly, without a queue.
        assert_eq!(
            inputs(eventbridge),
            Ok(Some(vec![
                "s3://cdn-logs/origin-fetch/2019-12-10/a b.csv.gz".into()
            ]))
        );
        // A message that is not an S3 event is an error, not silently nothing.
        let bad = json!({"Records": [{"eventSource": "aws:sqs", "body": "{\"hello\": 1}"}]});
        assert!(inputs(bad).is_err());
    }

    fn inputs(event: Value) -> Result<Option<Vec<String>>, String> {
        inputs_from_event(&event)
    }

    #[test]
    fn an_inputs_list_is_taken_as_it_is() {
        assert_eq!(
            inputs(json!({"inputs": ["s3://logs/2019-12-10/", "/var/log/a.csv"]})),
            Ok(Some(vec![
                "s3://logs/2019-12-10/".into(),
                "/var/log/a.csv".into()
            ]))
        );
        assert!(inputs(json!({"inputs": "s3://logs/"})).is_err());
        assert!(inputs(json!({"inputs": [1]})).is_err());
    }

    #[test]
    fn a_distributed_map_batch_of_listing_entries_names_each_object() {
        // What an ItemReader over s3:listObjectsV2 with an ItemBatcher hands each child.
        let event = json!({
            "BatchInput": {"bucket": "cdn-logs"},
            "Items": [
                {"Etag": "\"9b2cf535f27731c974343645a3985328\"", "Key": "origin-fetch/a.csv.gz",
                 "LastModified": 1576022400, "Size": 1234, "StorageClass": "STANDARD"},
                {"Key": "origin-fetch/b.csv", "Size": 10}
            ]
        });
        assert_eq!(
            inputs(event),
            Ok(Some(vec![
                "s3://cdn-logs/origin-fetch/a.csv.gz".into(),
                "s3://cdn-logs/origin-fetch/b.csv".into()
            ]))
        );
    }

    #[test]
    fn items_may_be_urls_or_carry_one() {
        let event = json!({"Items": ["s3://b/k1.csv", {"input": "s3://b/k2.csv"}]});
        assert_eq!(
            inputs(event),
            Ok(Some(vec!["s3://b/k1.csv".into(), "s3://b/k2.csv".into()]))
        );
    }

    #[test]
    fn a_half_matching_batch_is_an_error() {
        assert!(inputs(json!({"Items": [{"Key": "k.csv"}]})).is_err());
        assert!(inputs(json!({"Items": [{"Size": 1}], "BatchInput": {"bucket": "b"}})).is_err());
        assert!(inputs(json!({"Items": {"Key": "k.csv"}})).is_err());
    }

    #[test]
    fn a_schedule_event_names_nothing() {
        let event = json!({"version": "0", "source": "aws.scheduler", "detail-type": "Scheduled Event", "detail": {}});
        assert_eq!(inputs(event), Ok(None));
        assert_eq!(inputs(json!({})), Ok(None));
    }
}
