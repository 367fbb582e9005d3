//! Under AWS Lambda (`AWS_LAMBDA_RUNTIME_API` set): each invocation runs `aggregate` over
//! `SRCTRAFFIC_INPUTS` (comma separated; an event `{"inputs": [...]}` overrides it) into
//! `SRCTRAFFIC_STORE`, and answers with the summary. The schedule in template.yaml invokes it.

use crate::aggregate_cmd::{self, AggregateOptions};
use crate::header::ColumnNames;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};
use srctraffic::Clock;
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
    let inputs: Vec<String> = match event.payload.get("inputs").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        None => env("SRCTRAFFIC_INPUTS")
            .map(|s| s.split(',').map(|p| p.trim().to_owned()).collect())
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
    let opts = AggregateOptions {
        inputs,
        clock,
        rejects: None,
        max_bad_ratio: env("SRCTRAFFIC_MAX_BAD_RATIO")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0.01),
        columns: ColumnNames::default(),
        lease: Duration::from_secs(120),
        progress: false,
    };
    // The run drives its own runtime and rayon pool: give it a plain thread of its own.
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let result = (|| -> Result<String, Error> {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()?;
            let opened = rt.block_on(srctraffic::store::open(&store))?;
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
