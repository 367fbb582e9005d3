//! Where the replay and flood defences keep their state: in this process ([`LocalGuard`], for
//! `serve` and tests), or in a store every instance shares (the API's DynamoDB guard on AWS,
//! where Lambda runs many instances and a replay or an 11th call would otherwise land on one
//! that has not seen the others).

use super::replay::{NonceMemory, NonceRefusal, Throttle};
use super::{CALLS_PER_SECOND, NONCE_CAPACITY, TIMESTAMP_WINDOW_SECS};
use async_trait::async_trait;

/// What a guard says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Let it through.
    Admit,
    /// Its nonce was seen within the window.
    NonceUsed,
    /// Its key is over its call rate, or the nonce memory is full.
    Throttled,
    /// The shared state could not be reached: refused (fail closed), with why for the log.
    Unavailable(String),
}

/// The replay and rate state.
#[async_trait]
pub trait Guard: Send + Sync + std::fmt::Debug {
    /// Records the nonce of a request by `key_id` (already signature-checked), then counts the
    /// call against the key's rate. `now` is real Unix seconds, `now_ms` a monotonic clock in
    /// milliseconds (a process's own; a shared guard uses `now`).
    async fn check(&self, key_id: &str, nonce: &str, now: i64, now_ms: i64) -> Verdict;
}

/// Nonces and rates kept in this process.
#[derive(Debug)]
pub struct LocalGuard {
    nonces: NonceMemory,
    throttle: Throttle,
}

impl LocalGuard {
    /// The defaults: nonces for the 15-minute window, 10 calls per second per key.
    pub fn new() -> LocalGuard {
        LocalGuard {
            nonces: NonceMemory::new(TIMESTAMP_WINDOW_SECS, NONCE_CAPACITY),
            throttle: Throttle::new(CALLS_PER_SECOND),
        }
    }
}

impl Default for LocalGuard {
    fn default() -> Self {
        LocalGuard::new()
    }
}

#[async_trait]
impl Guard for LocalGuard {
    async fn check(&self, key_id: &str, nonce: &str, now: i64, now_ms: i64) -> Verdict {
        match self.nonces.check(key_id, nonce, now) {
            Ok(()) => {}
            Err(NonceRefusal::Used) => return Verdict::NonceUsed,
            Err(NonceRefusal::Full) => return Verdict::Throttled,
        }
        if self.throttle.admit(key_id, now_ms) {
            Verdict::Admit
        } else {
            Verdict::Throttled
        }
    }
}
