//! Settings per SPEC.md section 6: flags override environment variables; every failure names the
//! setting at fault.

use clap::{Parser, Subcommand, ValueEnum};
use srctraffic::Clock;
use srctraffic::auth::credentials::{Credentials, CredentialsError};
use srctraffic::store::Patience;

/// Command line of `srctraffic-api`.
#[derive(Debug, Parser)]
#[command(
    name = "srctraffic-api",
    version,
    about = "DescribeDomainRealTimeSrcTrafficData over HTTP or AWS Lambda"
)]
pub struct Cli {
    /// Where the buckets are: a directory, file:///abs/path, or s3://bucket/prefix.
    #[arg(
        long,
        env = "SRCTRAFFIC_STORE",
        default_value = "./data",
        global = true
    )]
    pub store: String,
    /// Credentials file (a path or an s3:// URL) mapping access keys to secrets and domains.
    #[arg(long, env = "SRCTRAFFIC_CREDENTIALS", global = true)]
    pub credentials: Option<String>,
    /// Request signing: `on` (default) or `off` for local use only.
    #[arg(long, env = "SRCTRAFFIC_AUTH", value_enum, default_value_t = Auth::On, global = true)]
    pub auth: Auth,
    /// Where signed requests' nonces and per-key call counts are kept: `local` (this process;
    /// the default, for `serve`) or `dynamodb` (shared by every instance: use it on AWS Lambda).
    #[arg(long, env = "SRCTRAFFIC_GUARD", value_enum, default_value_t = GuardKind::Local, global = true)]
    pub guard: GuardKind,
    /// The DynamoDB table of `--guard dynamodb` (partition key `pk`, a string; TTL on
    /// `expires`). `AWS_ENDPOINT_URL_DYNAMODB` points the SDK at another server.
    #[arg(long, env = "SRCTRAFFIC_GUARD_TABLE", global = true)]
    pub guard_table: Option<String>,
    /// A fixed data clock (yyyy-MM-ddTHH:mm:ssZ) for replayed logs; never used for signatures.
    #[arg(long, env = "SRCTRAFFIC_NOW", global = true)]
    pub now: Option<String>,
    /// Serve the console page at `GET /console`: `on` or `off`. Default: on for `serve`, off
    /// under AWS Lambda.
    #[arg(long, env = "SRCTRAFFIC_CONSOLE", value_enum, global = true)]
    pub console: Option<Toggle>,
    /// What to do; under AWS Lambda this is ignored and Lambda events are served.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Whether requests must be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Auth {
    /// Every request must carry a valid signature.
    On,
    /// No signature checks: local use only.
    Off,
}

/// A setting that is on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Toggle {
    /// On.
    On,
    /// Off.
    Off,
}

/// Where nonces and call counts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GuardKind {
    /// In this process.
    Local,
    /// In a DynamoDB table every instance shares.
    Dynamodb,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API over plain HTTP.
    Serve {
        /// Address to listen on; port 0 picks a free port (printed on start).
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: String,
        /// Connections served at once; more are closed as they arrive. Keep it well under the
        /// process's descriptor limit (`ulimit -n`).
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
        max_connections: u32,
        /// Seconds a connection may take to send a request's headers, and may sit idle
        /// between requests, before it is closed.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
        header_timeout: u64,
    },
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The store setting.
    pub store: String,
    /// The data clock.
    pub clock: Clock,
    /// Whether signatures are checked.
    pub auth: Auth,
    /// The credentials, when they are.
    pub credentials: Option<Credentials>,
    /// The DynamoDB table for nonces and call counts; `None` keeps them in the process.
    pub guard_table: Option<String>,
}

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `SRCTRAFFIC_NOW` / `--now` is not in the API time format.
    #[error("SRCTRAFFIC_NOW / --now must be yyyy-MM-ddTHH:mm:ssZ, got {0:?}")]
    BadNow(String),
    /// Auth is on but no credentials were named.
    #[error(
        "SRCTRAFFIC_AUTH / --auth is on, so SRCTRAFFIC_CREDENTIALS / --credentials must name a credentials file (or set --auth off for local use)"
    )]
    NoCredentials,
    /// The credentials file cannot be read.
    #[error("SRCTRAFFIC_CREDENTIALS / --credentials {0}: {1}")]
    ReadCredentials(String, String),
    /// `--guard dynamodb` without a table.
    #[error(
        "SRCTRAFFIC_GUARD / --guard is dynamodb, so SRCTRAFFIC_GUARD_TABLE / --guard-table must name the table"
    )]
    NoGuardTable,
    /// The credentials file is not usable.
    #[error("SRCTRAFFIC_CREDENTIALS / --credentials {0}: {1}")]
    BadCredentials(String, CredentialsError),
}

/// Reads the credentials file: a path, or an object given as `s3://bucket/key`.
async fn read_credentials(spec: &str) -> Result<Vec<u8>, ConfigError> {
    let fail = |why: String| ConfigError::ReadCredentials(spec.to_owned(), why);
    if !spec.starts_with("s3://") {
        return std::fs::read(spec).map_err(|e| fail(e.to_string()));
    }
    let (bucket, key) = srctraffic::store::s3::split_url(spec)
        .filter(|(_, k)| !k.is_empty())
        .ok_or_else(|| fail("expected s3://bucket/key".into()))?;
    let store = srctraffic::store::S3Store::connect(&format!("s3://{bucket}/"), Patience::Request)
        .await
        .map_err(|e| fail(e.to_string()))?;
    use srctraffic::Store;
    store
        .get(key)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("no such object".into()))
}

impl Cli {
    /// Turns the parsed command line into checked settings, reading the credentials.
    pub async fn settings(&self) -> Result<Settings, ConfigError> {
        let clock = match &self.now {
            None => Clock::System,
            Some(s) => Clock::fixed(s).ok_or_else(|| ConfigError::BadNow(s.clone()))?,
        };
        let credentials = match (self.auth, &self.credentials) {
            (Auth::Off, _) => None,
            (Auth::On, None) => return Err(ConfigError::NoCredentials),
            (Auth::On, Some(path)) => {
                let bytes = read_credentials(path).await?;
                let creds = Credentials::from_json(&bytes)
                    .map_err(|e| ConfigError::BadCredentials(path.clone(), e))?;
                if creds.is_empty() {
                    return Err(ConfigError::BadCredentials(
                        path.clone(),
                        CredentialsError::Json("no keys".into()),
                    ));
                }
                Some(creds)
            }
        };
        let guard_table = match (self.guard, &self.guard_table) {
            (GuardKind::Local, _) => None,
            (GuardKind::Dynamodb, Some(t)) if !t.is_empty() => Some(t.clone()),
            (GuardKind::Dynamodb, _) => return Err(ConfigError::NoGuardTable),
        };
        Ok(Settings {
            store: self.store.clone(),
            clock,
            auth: self.auth,
            credentials,
            guard_table,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn flags_parse_and_a_bad_clock_names_its_setting() {
        let cli = Cli::try_parse_from([
            "x",
            "--auth",
            "off",
            "--now",
            "2019-12-11T00:00:00Z",
            "serve",
        ])
        .unwrap();
        let s = cli.settings().await.unwrap();
        assert_eq!(s.clock.now_unix(), 1_576_022_400);
        let cli = Cli::try_parse_from(["x", "--auth", "on"]).unwrap();
        let e = cli.settings().await.unwrap_err().to_string();
        assert!(e.contains("SRCTRAFFIC_CREDENTIALS"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("creds.json");
        std::fs::write(&path, r#"{"keys":[{"access_key_id":"k","access_key_secret":"hunter2","domains":["bad domain"]}]}"#).unwrap();
        let cli = Cli::try_parse_from(["x", "--credentials", path.to_str().unwrap()]).unwrap();
        let e = cli.settings().await.unwrap_err().to_string();
        assert!(e.contains("creds.json") && !e.contains("hunter2"), "{e}");
        let cli = Cli::try_parse_from(["x", "--credentials", "s3://"]).unwrap();
        assert!(
            cli.settings()
                .await
                .unwrap_err()
                .to_string()
                .contains("s3://bucket/key")
        );
        let cli = Cli::try_parse_from(["x", "--auth", "off", "--guard", "dynamodb"]).unwrap();
        let e = cli.settings().await.unwrap_err().to_string();
        assert!(e.contains("SRCTRAFFIC_GUARD_TABLE"), "{e}");
        let cli = Cli::try_parse_from(["x", "--auth", "off", "--now", "yesterday"]).unwrap();
        assert!(
            cli.settings()
                .await
                .unwrap_err()
                .to_string()
                .contains("SRCTRAFFIC_NOW")
        );
    }
}
