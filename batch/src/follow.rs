//! `aggregate --follow`: keeps running, and every `--interval` commits the files that appeared
//! (or changed) and have settled (not modified for `--settle`), as one ordinary run each time.
//! Files committed before cost one `stat` each (the stat cache), so a directory of many days
//! of logs is cheap to watch. A failed round (the store out of reach, too many bad lines) is
//! reported and tried again next round; SIGINT or SIGTERM ends it after the round in hand.

use crate::aggregate_cmd::{self, AggregateError, AggregateOptions};
use srctraffic::store::Store;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Totals over every round.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Followed {
    /// Rounds run.
    pub rounds: u64,
    /// Rounds that failed.
    pub failed: u64,
    /// Files read and committed.
    pub files: u64,
    /// Lines counted.
    pub lines: u64,
}

impl std::fmt::Display for Followed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "followed: {} rounds ({} failed), {} files committed, {} lines counted",
            self.rounds, self.failed, self.files, self.lines
        )
    }
}

/// Runs rounds until `stop` is set; `say` prints one line per round that committed something
/// or failed.
pub fn follow(
    rt: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
    opts: &AggregateOptions,
    interval: Duration,
    stop: &AtomicBool,
    mut say: impl FnMut(&str),
) -> Followed {
    let mut total = Followed::default();
    while !stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        total.rounds += 1;
        match aggregate_cmd::run(rt, store.clone(), opts) {
            Ok(s) => {
                total.files += s.read_files as u64;
                total.lines += s.accepted;
                if s.read_files > 0 || s.has_unreadable() {
                    say(&format!(
                        "committed {} files, {} lines, {} bytes in {:.2} s ({} unreadable, {} still being written)",
                        s.read_files,
                        s.accepted,
                        s.bytes_counted,
                        s.elapsed.as_secs_f64(),
                        s.unreadable.len(),
                        s.unsettled
                    ));
                }
            }
            Err(e) => {
                total.failed += 1;
                let why = match &e {
                    AggregateError::TooManyBad { .. } => format!("{e}"),
                    other => format!("{other:#}"),
                };
                say(&format!("round failed, trying again next round: {why}"));
            }
        }
        // Sleep out the rest of the interval, waking for a stop.
        while started.elapsed() < interval && !stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20).min(interval));
        }
    }
    total
}
