//! The nonce memory and the call rate in DynamoDB, shared by every instance of the function.
//!
//! One table, partition key `pk` (a string), TTL on `expires`:
//! - a nonce is an item `n#<key id>#<sha256 of the nonce>`, put only if absent or expired
//!   (TTL deletes lazily, so an expired item may still be there): a second put of the same
//!   nonce within the window fails its condition, and that is `SignatureNonceUsed`;
//! - a key's calls in one wall-clock second are a counter `r#<key id>#<unix second>`, added to
//!   only while under the limit: the eleventh add in a second fails its condition, and that is
//!   `Throttling.User`.
//!
//! Both are single conditional writes, so concurrent instances cannot both win. The nonce is
//! checked first, so a replayed request does not use up its key's rate.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::AttributeValue;
use sha2::{Digest, Sha256};
use srctraffic::auth::guard::{Guard, Verdict};
use srctraffic::auth::{CALLS_PER_SECOND, TIMESTAMP_WINDOW_SECS};

/// Rate items outlive their second by this much before TTL may delete them.
const RATE_ITEM_LIFE: i64 = 120;

/// Nonces and call rates in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoGuard {
    client: Client,
    table: String,
}

impl DynamoGuard {
    /// A guard over `table`, with the process's AWS configuration (the one the S3 store
    /// loads; `AWS_ENDPOINT_URL_DYNAMODB` points it at a local server) and a request's
    /// patience: a table out of reach is a prompt refusal, not a hung request.
    pub async fn connect(table: &str) -> DynamoGuard {
        let patience = srctraffic::store::Patience::Request;
        let conf =
            aws_sdk_dynamodb::config::Builder::from(srctraffic::store::s3::shared_config().await)
                .retry_config(patience.retry())
                .timeout_config(patience.timeouts())
                .build();
        DynamoGuard::with_client(Client::from_conf(conf), table)
    }

    /// A guard over `table` with this client.
    pub fn with_client(client: Client, table: &str) -> DynamoGuard {
        DynamoGuard {
            client,
            table: table.to_owned(),
        }
    }

    async fn record_nonce(&self, key_id: &str, nonce: &str, now: i64) -> Result<bool, String> {
        // Hashed: a nonce is whatever the client sent, and a key may hold at most 2 KB.
        let pk = format!(
            "n#{key_id}#{}",
            hex::encode(Sha256::digest(nonce.as_bytes()))
        );
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(pk))
            .item("expires", number(now + TIMESTAMP_WINDOW_SECS))
            .condition_expression("attribute_not_exists(pk) OR #e <= :now")
            .expression_attribute_names("#e", "expires")
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        held(put)
    }

    async fn count_call(&self, key_id: &str, now: i64) -> Result<bool, String> {
        let add = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(format!("r#{key_id}#{now}")))
            .update_expression("ADD #c :one SET #e = :exp")
            .condition_expression("attribute_not_exists(#c) OR #c < :max")
            .expression_attribute_names("#c", "calls")
            .expression_attribute_names("#e", "expires")
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":max", number(CALLS_PER_SECOND as i64))
            .expression_attribute_values(":exp", number(now + RATE_ITEM_LIFE))
            .send()
            .await;
        held(add)
    }
}

/// Whether a conditional write's condition held (`false`: it did not, and nothing was written).
fn held<O, E, R>(r: Result<O, SdkError<E, R>>) -> Result<bool, String>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match r {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some("ConditionalCheckFailedException") => Ok(false),
        Err(e) => Err(DisplayErrorContext(e).to_string()),
    }
}

fn number(n: i64) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

#[async_trait]
impl Guard for DynamoGuard {
    async fn check(&self, key_id: &str, nonce: &str, now: i64, _now_ms: i64) -> Verdict {
        match self.record_nonce(key_id, nonce, now).await {
            Ok(true) => {}
            Ok(false) => return Verdict::NonceUsed,
            Err(e) => return Verdict::Unavailable(e),
        }
        match self.count_call(key_id, now).await {
            Ok(true) => Verdict::Admit,
            Ok(false) => Verdict::Throttled,
            Err(e) => Verdict::Unavailable(e),
        }
    }
}
