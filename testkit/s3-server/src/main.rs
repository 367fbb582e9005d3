//! `s3-test-server`: the tests' S3 server on its own, for trying the S3 store by hand:
//! `s3-test-server --access-key K --secret-key S ROOT` serves the directories under ROOT as
//! buckets on 127.0.0.1:8014.

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(version, about)]
struct Opt {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 8014)]
    port: u16,
    /// Access key clients sign with (no signature check without one).
    #[arg(long, requires = "secret_key")]
    access_key: Option<String>,
    /// Secret key clients sign with.
    #[arg(long, requires = "access_key")]
    secret_key: Option<String>,
    /// Write the requests served, by kind, as JSON to this file when stopped (SIGINT or
    /// SIGTERM), and every second meanwhile.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// Directory holding the buckets, one subdirectory each.
    root: PathBuf,
}

fn write_stats(path: &Option<PathBuf>) {
    if let Some(p) = path {
        let _ = std::fs::write(p, srctraffic_s3_test_server::requests::counts().to_string());
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let opt = Opt::parse();
    let listener = tokio::net::TcpListener::bind((opt.host.as_str(), opt.port)).await?;
    eprintln!("s3-test-server on http://{}", listener.local_addr()?);
    let keys = opt.access_key.as_deref().zip(opt.secret_key.as_deref());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let stats = opt.stats.clone();
    let ticker = async {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            write_stats(&stats);
        }
    };
    let done = tokio::select! {
        served = srctraffic_s3_test_server::serve(listener, &opt.root, keys) => served,
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = term.recv() => Ok(()),
        _ = ticker => Ok(()),
    };
    write_stats(&opt.stats);
    done
}
