//! Crash points for the exactly-once tests. `SRCTRAFFIC_FAILPOINT=name:k` kills the process with
//! SIGKILL the k-th time it passes the point called `name`; `name:k:pause=MS` sleeps there
//! instead (for a test to break the store under a run). Unset (always, in production), each
//! point costs one atomic load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

struct Spec {
    name: String,
    nth: u64,
    pause_ms: Option<u64>,
}

static SPEC: OnceLock<Option<Spec>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Passes the point `name`.
pub fn hit(name: &str) {
    let spec = SPEC.get_or_init(|| {
        let v = std::env::var("SRCTRAFFIC_FAILPOINT").ok()?;
        let mut parts = v.split(':');
        let name = parts.next()?.to_owned();
        let nth = parts.next().and_then(|k| k.parse().ok()).unwrap_or(1);
        let pause_ms = parts
            .next()
            .and_then(|p| p.strip_prefix("pause="))
            .and_then(|ms| ms.parse().ok());
        Some(Spec {
            name,
            nth,
            pause_ms,
        })
    });
    if let Some(s) = spec
        && s.name == name
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == s.nth
    {
        match s.pause_ms {
            Some(ms) => std::thread::sleep(std::time::Duration::from_millis(ms)),
            // SAFETY: sending a signal to our own pid has no memory-safety preconditions.
            None => unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            },
        }
    }
}
