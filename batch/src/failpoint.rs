//! Crash points for the exactly-once tests: with `SRCTRAFFIC_FAILPOINT=name:k`, the process
//! kills itself with SIGKILL the k-th time it passes the point called `name`. Unset (always, in
//! production), each point is one relaxed atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static SPEC: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Passes the point `name`.
pub fn hit(name: &str) {
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("SRCTRAFFIC_FAILPOINT").ok()?;
        let (n, k) = v.split_once(':').unwrap_or((v.as_str(), "1"));
        Some((n.to_owned(), k.parse().unwrap_or(1)))
    });
    if let Some((n, k)) = spec
        && n == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *k
    {
        // SAFETY: sending a signal to our own pid has no memory-safety preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
