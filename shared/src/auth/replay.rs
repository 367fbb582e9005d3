//! Replay and flood defences kept in a process: the nonce memory (15 minutes, bounded) and the
//! per-AccessKeyId throttle (10 calls per second). On AWS the API keeps them in DynamoDB
//! instead, shared by every instance (see [`super::guard`]).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Mutex;

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceRefusal {
    /// Seen within the window.
    Used,
    /// The memory is full: refuse rather than forget (fail closed).
    Full,
}

/// The hashes remembered, and (time, hash) in arrival order for expiry.
type Seen = (HashSet<u64>, VecDeque<(i64, u64)>);

/// Nonces seen in the last `window` seconds, as 64-bit keyed hashes of (key id, nonce), so an
/// entry costs the same whatever the client sends.
#[derive(Debug)]
pub struct NonceMemory {
    window: i64,
    cap: usize,
    hasher: RandomState,
    inner: Mutex<Seen>,
}

impl NonceMemory {
    /// Remembers nonces for `window_secs`, at most `cap` at a time.
    pub fn new(window_secs: i64, cap: usize) -> NonceMemory {
        NonceMemory {
            window: window_secs,
            cap,
            hasher: RandomState::new(),
            inner: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Records a nonce at `now` (Unix seconds); refuses one seen within the window.
    pub fn check(&self, key_id: &str, nonce: &str, now: i64) -> Result<(), NonceRefusal> {
        let h = self.hasher.hash_one((key_id, nonce));
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, order) = &mut *g;
        while let Some(&(at, old)) = order.front() {
            if at > now - self.window {
                break;
            }
            seen.remove(&old);
            order.pop_front();
        }
        if seen.contains(&h) {
            return Err(NonceRefusal::Used);
        }
        if seen.len() >= self.cap {
            return Err(NonceRefusal::Full);
        }
        seen.insert(h);
        order.push_back((now, h));
        Ok(())
    }

    /// Nonces remembered now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0.len()
    }

    /// Whether none are remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held, roughly (capacity of both structures).
    pub fn approx_bytes(&self) -> usize {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0.capacity() * (8 + 1) + g.1.capacity() * 16
    }
}

/// At most `per_second` calls in any one-second span, per AccessKeyId. Only keys from the
/// credentials reach it, so its size is bounded by theirs.
#[derive(Debug)]
pub struct Throttle {
    per_second: usize,
    calls: Mutex<HashMap<String, VecDeque<i64>>>,
}

impl Throttle {
    /// A throttle of `per_second` calls per key.
    pub fn new(per_second: usize) -> Throttle {
        Throttle {
            per_second,
            calls: Mutex::new(HashMap::new()),
        }
    }

    /// Admits a call at `now_ms` (a monotonic clock), or refuses it.
    pub fn admit(&self, key_id: &str, now_ms: i64) -> bool {
        let mut g = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let q = g.entry(key_id.to_owned()).or_default();
        while q.front().is_some_and(|&t| t <= now_ms - 1000) {
            q.pop_front();
        }
        if q.len() >= self.per_second {
            return false;
        }
        q.push_back(now_ms);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replayed_nonce_is_refused_until_the_window_passes() {
        let m = NonceMemory::new(900, 100);
        assert_eq!(m.check("k", "n1", 1000), Ok(()));
        assert_eq!(m.check("k", "n1", 1899), Err(NonceRefusal::Used));
        assert_eq!(m.check("other", "n1", 1899), Ok(()), "nonces are per key");
        assert_eq!(
            m.check("k", "n1", 1900),
            Ok(()),
            "forgotten after 15 minutes"
        );
    }

    #[test]
    fn a_million_distinct_nonces_stay_bounded_and_full_memory_fails_closed() {
        let cap = 200_000;
        let m = NonceMemory::new(900, cap);
        let mut refused = 0;
        for i in 0..1_000_000u32 {
            // One flood second after another, all inside one window.
            if m.check(
                &format!("key{}", i % 1000),
                &i.to_string(),
                10_000 + i64::from(i / 2000),
            )
            .is_err()
            {
                refused += 1;
            }
        }
        assert_eq!(m.len(), cap);
        assert_eq!(refused, 1_000_000 - cap);
        assert!(m.approx_bytes() < 16 << 20, "{} bytes", m.approx_bytes());
        // Once the window has passed, the memory empties and admits again.
        assert_eq!(m.check("key0", "fresh", 20_000), Ok(()));
        assert_eq!(m.len(), 1);
    }

    #[test]
    fn the_eleventh_call_in_a_second_is_throttled_and_other_keys_are_not() {
        let t = Throttle::new(10);
        for i in 0..10 {
            assert!(t.admit("a", 5_000 + i * 10), "call {i}");
        }
        assert!(!t.admit("a", 5_990));
        assert!(t.admit("b", 5_990));
        assert!(t.admit("a", 6_001), "a second after the first call");
    }
}
