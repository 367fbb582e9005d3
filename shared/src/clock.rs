//! The data clock: what "now" means for the data window (the 24-hour default, the 90-day limit,
//! the future check). Signatures, nonces and throttling always use the real clock, not this.

use chrono::{DateTime, Utc};

/// The data clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system clock.
    System,
    /// A fixed instant, for replaying old logs (`SRCTRAFFIC_NOW`).
    Fixed(DateTime<Utc>),
}

impl Clock {
    /// Parses a fixed clock in the API format `yyyy-MM-ddTHH:mm:ssZ`.
    pub fn fixed(s: &str) -> Option<Clock> {
        let t = crate::time::ApiTime::parse(s)?;
        DateTime::from_timestamp(t.unix_seconds(), 0).map(Clock::Fixed)
    }

    /// Seconds since the epoch, now.
    pub fn now_unix(&self) -> i64 {
        match self {
            Clock::System => Utc::now().timestamp(),
            Clock::Fixed(t) => t.timestamp(),
        }
    }
}
