//! The S3 store (aws-sdk-s3), configured the standard AWS way: environment, profile or role;
//! `AWS_ENDPOINT_URL` points it at any S3-compatible server and `SRCTRAFFIC_S3_PATH_STYLE=1`
//! switches to path-style addressing.
//!
//! Versions are ETags; conditional writes are `If-None-Match: *` and `If-Match: <etag>`, and a
//! 412 (or the 409 S3 returns for a conditional write racing another, or the 404 it returns to
//! an `If-Match` write on an object deleted meanwhile) is a [`StoreError::Conflict`]. Transient failures are retried by the SDK as patiently as the
//! caller can afford ([`Patience`]); a store out of reach after that is
//! [`StoreError::Unavailable`]; any other failure names the bucket and key.

use super::{Precondition, Store, StoreError, Version, Versioned};
use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use futures_util::stream::{self, StreamExt};
use std::time::Duration;

/// Requests in flight at once for batched reads and writes.
const CONCURRENCY: usize = 32;

/// How long a caller can wait on S3 before it must give up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Answering an API request: three quick attempts and at most 5 s in all, so that a store
    /// out of reach is a prompt `ServiceUnavailable`, well inside the function's timeout.
    Request,
    /// A batch run: five attempts with the SDK's standard backoff (up to 20 s apart), since
    /// failing a run costs a rerun.
    Run,
}

impl Patience {
    /// Retries for an AWS client used with this patience (S3 here, DynamoDB in the API).
    pub fn retry(self) -> RetryConfig {
        match self {
            Patience::Request => RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(25))
                .with_max_backoff(Duration::from_millis(250)),
            Patience::Run => RetryConfig::standard().with_max_attempts(5),
        }
    }

    /// Timeouts for an AWS client used with this patience.
    pub fn timeouts(self) -> TimeoutConfig {
        match self {
            Patience::Request => TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(1))
                .operation_attempt_timeout(Duration::from_secs(2))
                .operation_timeout(Duration::from_secs(5))
                .build(),
            Patience::Run => TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .build(),
        }
    }
}

/// A store under `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// Reads a response body whole; a connection lost midway is the store out of reach.
    async fn body(
        &self,
        key: &str,
        body: aws_sdk_s3::primitives::ByteStream,
    ) -> Result<Vec<u8>, StoreError> {
        Ok(body
            .collect()
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "s3://{}/{}: reading the body: {e}",
                    self.bucket,
                    self.full(key)
                ))
            })?
            .into_bytes()
            .to_vec())
    }

    /// Connects to `s3://bucket/prefix` with the standard AWS configuration.
    pub async fn connect(spec: &str, patience: Patience) -> Result<S3Store, StoreError> {
        let (bucket, prefix) = parse_spec(spec)?;
        Ok(S3Store {
            client: client_from_env(patience).await,
            bucket,
            prefix,
        })
    }

    /// Connects with explicit settings instead of the environment (tools and tests).
    pub fn with_settings(spec: &str, s: &S3Settings) -> Result<S3Store, StoreError> {
        let (bucket, prefix) = parse_spec(spec)?;
        let creds = aws_sdk_s3::config::Credentials::new(
            &s.access_key_id,
            &s.secret_access_key,
            None,
            None,
            "srctraffic",
        );
        let mut conf = aws_sdk_s3::config::Builder::new()
            .behavior_version_latest()
            .region(aws_sdk_s3::config::Region::new(s.region.clone()))
            .credentials_provider(creds)
            .force_path_style(s.path_style)
            .retry_config(Patience::Run.retry())
            .timeout_config(Patience::Run.timeouts());
        if let Some(e) = &s.endpoint {
            conf = conf.endpoint_url(e);
        }
        Ok(S3Store {
            client: Client::from_conf(conf.build()),
            bucket,
            prefix,
        })
    }

    fn full(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn fail<E: std::error::Error + Send + Sync + 'static>(
        &self,
        key: &str,
        e: SdkError<E>,
    ) -> StoreError {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let detail = DisplayErrorContext(&e).to_string();
        match (&e, status) {
            (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _)
            | (_, Some(500..=599)) => StoreError::Unavailable(format!(
                "s3://{}/{}: {detail}",
                self.bucket,
                self.full(key)
            )),
            _ => StoreError::Remote {
                key: format!("s3://{}/{}", self.bucket, self.full(key)),
                message: detail,
            },
        }
    }
}

/// Explicit connection settings.
#[derive(Clone)]
pub struct S3Settings {
    /// An S3-compatible endpoint, or `None` for AWS.
    pub endpoint: Option<String>,
    /// The region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Path-style addressing.
    pub path_style: bool,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// The standard AWS configuration (environment, profile or role), loaded once per process
/// however many clients start-up makes, of whatever service.
pub async fn shared_config() -> &'static aws_config::SdkConfig {
    static SHARED: tokio::sync::OnceCell<aws_config::SdkConfig> =
        tokio::sync::OnceCell::const_new();
    SHARED.get_or_init(aws_config::load_from_env).await
}

/// A client configured the standard AWS way ([`shared_config`]), plus
/// `SRCTRAFFIC_S3_PATH_STYLE`.
pub async fn client_from_env(patience: Patience) -> Client {
    let shared = shared_config().await;
    let path_style = std::env::var("SRCTRAFFIC_S3_PATH_STYLE")
        .is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"));
    let conf = aws_sdk_s3::config::Builder::from(shared)
        .force_path_style(path_style)
        .retry_config(patience.retry())
        .timeout_config(patience.timeouts())
        .build();
    Client::from_conf(conf)
}

/// Splits `s3://bucket/rest` into a non-empty bucket and the rest as written (a key, or a
/// prefix as S3 means it).
pub fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, rest) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, rest))
}

/// Splits a store's `s3://bucket/prefix` into the bucket and a folder prefix: empty or ending
/// in `/`.
pub fn parse_url(spec: &str) -> Option<(String, String)> {
    let (bucket, prefix) = split_url(spec)?;
    let prefix = prefix.trim_matches('/');
    Some((
        bucket.to_owned(),
        if prefix.is_empty() {
            String::new()
        } else {
            format!("{prefix}/")
        },
    ))
}

fn parse_spec(spec: &str) -> Result<(String, String), StoreError> {
    parse_url(spec).ok_or_else(|| {
        StoreError::Unsupported(spec.to_owned(), "expected s3://bucket/prefix".to_owned())
    })
}

#[async_trait]
impl Store for S3Store {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get_versioned(key).await?.map(|v| v.bytes))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let got = self.get_many_versioned(keys).await?;
        Ok(got.into_iter().map(|v| v.map(|v| v.bytes)).collect())
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        len: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        if len == 0 {
            return Ok(self.get(key).await?.map(|_| Vec::new()));
        }
        let range = format!("bytes={start}-{}", start.saturating_add(len - 1));
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .range(range)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            // A range that starts past the end: the object is shorter.
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 416) => {
                return Ok(Some(Vec::new()));
            }
            Err(e) => return Err(self.fail(key, e)),
        };
        let bytes = self.body(key, out.body).await?;
        Ok(Some(bytes))
    }

    async fn get_versioned(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(self.fail(key, e)),
        };
        let version = Version(out.e_tag().unwrap_or_default().to_owned());
        let bytes = self.body(key, out.body).await?;
        Ok(Some(Versioned { bytes, version }))
    }

    async fn get_many_prefixes(
        &self,
        keys: &[String],
        len: u64,
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let got: Vec<Result<Option<Vec<u8>>, StoreError>> = stream::iter(keys.iter().cloned())
            .map(|k| async move { self.get_range(&k, 0, len).await })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        got.into_iter().collect()
    }

    async fn get_many_versioned(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        let got: Vec<Result<Option<Versioned>, StoreError>> = stream::iter(keys.iter().cloned())
            .map(|k| async move { self.get_versioned(&k).await })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        got.into_iter().collect()
    }

    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        when: Precondition,
    ) -> Result<Version, StoreError> {
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .body(ByteStream::from(bytes));
        let if_match = matches!(when, Precondition::Matches(_));
        req = match when {
            Precondition::None => req,
            Precondition::Absent => req.if_none_match("*"),
            Precondition::Matches(v) => req.if_match(v.0),
        };
        match req.send().await {
            Ok(out) => Ok(Version(out.e_tag().unwrap_or_default().to_owned())),
            // 404 to an If-Match write: the object was deleted since it was read. The version
            // expected is gone, which is a lost race like any other.
            Err(e)
                if matches!(
                    e.raw_response().map(|r| r.status().as_u16()),
                    Some(412 | 409)
                ) || (if_match
                    && e.raw_response().map(|r| r.status().as_u16()) == Some(404)) =>
            {
                Err(StoreError::Conflict {
                    key: key.to_owned(),
                })
            }
            Err(e) => Err(self.fail(key, e)),
        }
    }

    async fn put_many(
        &self,
        items: Vec<(String, Vec<u8>, Precondition)>,
    ) -> Vec<Result<Version, StoreError>> {
        stream::iter(items)
            .map(|(k, b, w)| async move { self.put(&k, b, w).await })
            .buffered(CONCURRENCY)
            .collect()
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(self.full(prefix))
            .into_paginator()
            .send();
        let mut out = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.fail(prefix, e))?;
            for obj in page.contents() {
                if let Some(k) = obj.key().and_then(|k| k.strip_prefix(self.prefix.as_str())) {
                    out.push(k.to_owned());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.fail(key, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(parse_url("s3://b"), Some(("b".into(), String::new())));
        assert_eq!(parse_url("s3://b/"), Some(("b".into(), String::new())));
        assert_eq!(parse_url("s3://b/p/q/"), Some(("b".into(), "p/q/".into())));
        assert_eq!(parse_url("s3://b/p"), Some(("b".into(), "p/".into())));
        assert_eq!(parse_url("s3:///p"), None);
        assert_eq!(parse_url("file:///x"), None);
        assert_eq!(
            split_url("s3://b/logs/2019-12-"),
            Some(("b", "logs/2019-12-"))
        );
        assert_eq!(split_url("s3://b"), Some(("b", "")));
        assert_eq!(split_url("s3:///k"), None);
    }
}
