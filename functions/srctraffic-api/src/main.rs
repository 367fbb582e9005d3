//! `srctraffic-api`: Lambda events when `AWS_LAMBDA_RUNTIME_API` is set, otherwise `serve`.

use anyhow::Context;
use clap::Parser;
use srctraffic::store::Patience;
use srctraffic_api::config::{Auth, Command, Toggle};
use srctraffic_api::{AppState, Cli, router};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = std::time::Instant::now();

    let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    srctraffic::logging::init("info", on_lambda);
    let cli = Cli::parse();
    let settings = cli.settings().await?;
    if settings.auth == Auth::Off {
        tracing::warn!(
            "AUTH IS OFF: every request is answered without a signature check; local use only"
        );
    }
    let store = srctraffic::store::open(&settings.store, Patience::Request)
        .await
        .with_context(|| format!("opening store {}", settings.store))?;
    let mut state = AppState::open(store, settings.clock);
    state.started = started;
    // A cold start means something under Lambda only; a local server idles before its first
    // request.
    state.log_cold_start = on_lambda;

    if let Some(creds) = settings.credentials {
        let guard: std::sync::Arc<dyn srctraffic::auth::guard::Guard> = match &settings.guard_table
        {
            Some(table) => {
                tracing::info!(
                    table,
                    "nonces and call rates in DynamoDB, shared by every instance"
                );
                std::sync::Arc::new(srctraffic_api::shared_guard::DynamoGuard::connect(table).await)
            }
            None => {
                if on_lambda {
                    tracing::warn!(
                        "nonces and call rates are per instance; set SRCTRAFFIC_GUARD=dynamodb on AWS"
                    );
                }
                std::sync::Arc::new(srctraffic::auth::guard::LocalGuard::new())
            }
        };
        tracing::info!(keys = creds.len(), "request signing on");
        state.auth = Some(std::sync::Arc::new(
            srctraffic::auth::Authenticator::with_guard(creds, guard),
        ));
    }
    // A local server serves the console unless told not to; Lambda only when asked.
    if cli.console.map_or(!on_lambda, |c| c == Toggle::On) {
        state = state.with_console();
        if !on_lambda {
            tracing::info!("console at /console");
        }
    }
    let app = router(state);
    if on_lambda {
        return lambda_http::run(app)
            .await
            .map_err(|e| anyhow::anyhow!("lambda runtime: {e}"));
    }
    let (listen, limits) = match cli.command {
        Some(Command::Serve {
            listen,
            max_connections,
            header_timeout,
        }) => (
            listen,
            srctraffic_api::server::Limits {
                max_connections: max_connections as usize,
                header_timeout: std::time::Duration::from_secs(header_timeout),
            },
        ),
        None => anyhow::bail!(
            "nothing to do: run `srctraffic-api serve [--listen ADDR]`, or under AWS Lambda"
        ),
    };
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    let addr = listener.local_addr()?;
    // Scripts and tests read this line to learn the port.
    println!("listening on http://{addr}");
    srctraffic_api::server::serve(listener, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
