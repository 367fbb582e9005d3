//! Request authentication: both signature schemes the official SDKs use, the 15-minute
//! timestamp window, nonce memory, per-key throttling, and which domains each key may query.
//!
//! Checks run in this order, each failing with its SPEC section 2 error: the signature fields
//! are present and well formed; the key exists; the timestamp is within 15 minutes of the real
//! clock; the signature matches (compared in constant time); the nonce is new; the key is under
//! its call rate. Secrets never appear in errors or logs.

pub mod credentials;
pub mod encode;
pub mod guard;
pub mod replay;
pub mod v1;
pub mod v3;

use crate::api::error::ApiError;
use crate::time::ApiTime;
use credentials::{Credentials, Key};
use guard::{Guard, LocalGuard, Verdict};
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// How far a request's timestamp may be from the server clock.
pub const TIMESTAMP_WINDOW_SECS: i64 = 15 * 60;
/// Calls per second per AccessKeyId.
pub const CALLS_PER_SECOND: usize = 10;
/// Most nonces remembered at once; past it requests are refused, not forgotten.
pub const NONCE_CAPACITY: usize = 1 << 20;

/// What authentication looks at.
#[derive(Debug, Clone, Copy)]
pub struct AuthInput<'a> {
    /// The real HTTP method.
    pub method: &'a str,
    /// Every decoded parameter, query string and form body (V1 signs them all).
    pub params: &'a [(String, String)],
    /// The decoded query string alone (V3 signs it; the body is covered by its hash).
    pub query: &'a [(String, String)],
    /// Headers as received, names in any case.
    pub headers: &'a [(String, String)],
    /// The raw body.
    pub body: &'a [u8],
}

impl AuthInput<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The caller, once authenticated.
#[derive(Debug, Clone, Copy)]
pub struct Principal<'a> {
    /// Its AccessKeyId.
    pub key_id: &'a str,
    /// Its key.
    pub key: &'a Key,
}

/// Checks requests against a set of credentials; nonces and call rates go to its [`Guard`].
#[derive(Debug)]
pub struct Authenticator {
    credentials: Credentials,
    guard: Arc<dyn Guard>,
}

/// A signature's fields, whichever scheme carried them.
struct Claimed<'a> {
    key_id: &'a str,
    timestamp: &'a str,
    nonce: &'a str,
    signature: &'a str,
    string_to_sign: String,
    v3: bool,
}

impl Authenticator {
    /// An authenticator over these credentials, keeping nonces and rates in this process.
    pub fn new(credentials: Credentials) -> Authenticator {
        Authenticator::with_guard(credentials, Arc::new(LocalGuard::new()))
    }

    /// An authenticator whose nonces and rates live in `guard` (shared across instances).
    pub fn with_guard(credentials: Credentials, guard: Arc<dyn Guard>) -> Authenticator {
        Authenticator { credentials, guard }
    }

    /// Authenticates a request at `now` (real Unix seconds) and `now_ms` (a monotonic clock).
    pub async fn authenticate<'s>(
        &'s self,
        req: &AuthInput<'_>,
        now: i64,
        now_ms: i64,
    ) -> Result<Principal<'s>, ApiError> {
        let claimed = Self::fields(req).ok_or(ApiError::IncompleteSignature)?;
        let (key_id, key) = self
            .credentials
            .entry(claimed.key_id)
            .ok_or(ApiError::AccessKeyNotFound)?;
        let at = ApiTime::parse(claimed.timestamp).ok_or(ApiError::IncompleteSignature)?;
        if (at.unix_seconds() - now).abs() > TIMESTAMP_WINDOW_SECS {
            return Err(ApiError::TimestampExpired);
        }
        let expected = if claimed.v3 {
            v3::sign(&claimed.string_to_sign, key.secret.expose())
        } else {
            v1::sign(&claimed.string_to_sign, key.secret.expose())
        };
        if !bool::from(expected.as_bytes().ct_eq(claimed.signature.as_bytes())) {
            return Err(ApiError::SignatureMismatch(claimed.string_to_sign));
        }
        match self.guard.check(key_id, claimed.nonce, now, now_ms).await {
            Verdict::Admit => Ok(Principal { key_id, key }),
            Verdict::NonceUsed => Err(ApiError::NonceUsed),
            Verdict::Throttled => Err(ApiError::Throttled),
            Verdict::Unavailable(why) => {
                // Fail closed: a replay must not pass because the shared memory is away.
                tracing::error!(error = %why, "nonce and rate store unreachable; refusing");
                Err(ApiError::ServiceUnavailable)
            }
        }
    }

    fn fields<'r>(req: &'r AuthInput<'r>) -> Option<Claimed<'r>> {
        if let Some(auth) = req.header("authorization") {
            let a = v3::parse_authorization(auth)?;
            // The date and nonce must be signed, or a captured request could be replayed with
            // fresh ones.
            for must in ["x-acs-date", "x-acs-signature-nonce"] {
                if !a.signed_headers.iter().any(|h| h == must) {
                    return None;
                }
            }
            let canonical = v3::canonical_request(
                req.method,
                req.query,
                req.headers,
                &a.signed_headers,
                req.body,
            )?;
            return Some(Claimed {
                key_id: Self::credential_slice(auth)?,
                timestamp: req.header("x-acs-date")?,
                nonce: req.header("x-acs-signature-nonce")?,
                signature: Self::signature_slice(auth)?,
                string_to_sign: v3::string_to_sign(&canonical),
                v3: true,
            });
        }
        if req.param("SignatureMethod")? != "HMAC-SHA1" || req.param("SignatureVersion")? != "1.0" {
            return None;
        }
        let (key_id, nonce) = (req.param("AccessKeyId")?, req.param("SignatureNonce")?);
        if key_id.is_empty() || nonce.is_empty() {
            return None;
        }
        Some(Claimed {
            key_id,
            timestamp: req.param("Timestamp")?,
            nonce,
            signature: req.param("Signature")?,
            string_to_sign: v1::string_to_sign(req.method, req.params),
            v3: false,
        })
    }

    /// `Credential=` of a V3 header, borrowed from it.
    fn credential_slice(h: &str) -> Option<&str> {
        Self::field_slice(h, "Credential")
    }

    fn signature_slice(h: &str) -> Option<&str> {
        Self::field_slice(h, "Signature")
    }

    fn field_slice<'h>(h: &'h str, name: &str) -> Option<&'h str> {
        let rest = h.trim().strip_prefix(v3::SCHEME)?;
        rest.split(',')
            .find_map(|p| p.trim().strip_prefix(name)?.strip_prefix('='))
            .map(str::trim)
    }
}
