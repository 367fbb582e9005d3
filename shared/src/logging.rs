//! Log output for both programs: JSON lines under AWS Lambda, where CloudWatch indexes their
//! fields and each line carries the invocation's request id; text elsewhere, coloured only
//! when standard error is a terminal (never escape codes in a log file).

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `RUST_LOG` overrides `default_filter`.
pub fn init(default_filter: &str, on_lambda: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default_filter.into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second call (tests) keeps the first subscriber.
    let _ = if on_lambda {
        // The runtime opens a span per invocation holding its `requestId`.
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init()
    };
}
