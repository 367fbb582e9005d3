//! What the exactly-once protocol keeps in the store, and where:
//!
//! - `ledger/inputs/<identity>.json`: one per input ever claimed: `claimed` by a run, or
//!   `committed` by a run.
//! - `ledger/runs/<run>.json`: one per run in flight: its state and heartbeat, and once sealed,
//!   the inputs it counts. Deleted when the run is done or aborted.
//! - `segments/<day>/<run>.seg`: a run's cells, one object per day, written before it seals;
//!   published through the manifest, deleted once compacted (see `srctraffic::segment`).

use serde::{Deserialize, Serialize};
use srctraffic::Day;
use srctraffic::bucket::RunId;

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Claiming and reading inputs; alive while its heartbeat is fresh.
    Aggregating,
    /// Its segments are stored and will be published, by it or by any later run.
    Sealed,
    /// Aborted (failed, or taken over when its heartbeat went stale): its claims are void.
    Aborted,
}

/// The record of a run in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The run id.
    pub run: String,
    /// Its state.
    pub state: RunState,
    /// Unix seconds of its last sign of life (real clock).
    pub heartbeat: i64,
    /// Host it runs on.
    pub host: String,
    /// Its process id on that host.
    pub pid: u32,
    /// Once sealed: the identities of the inputs its deltas hold.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// Once sealed: the latest minute of any line it counted, for the watermark.
    #[serde(default)]
    pub max_minute: Option<i64>,
    /// Once sealed: its segments, one per day.
    #[serde(default)]
    pub segments: Vec<SegmentRef>,
}

/// One segment a run wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// The day, `YYYY-MM-DD`.
    pub day: String,
    /// How many cells it holds.
    pub cells: u64,
}

impl SegmentRef {
    /// The segment's key, for a run.
    pub fn key(&self, run: RunId) -> String {
        srctraffic::store::keys::segment(&self.day, &run.to_string())
    }

    /// The day, if well formed.
    pub fn day(&self) -> Option<Day> {
        Day::parse(&self.day)
    }
}

/// An input's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputState {
    /// A run is reading it.
    Claimed,
    /// Counted.
    Committed,
}

/// The record of an input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputRecord {
    /// Its state.
    pub state: InputState,
    /// The run that claimed or committed it.
    pub run: String,
    /// Where it was read from, for people.
    pub source: String,
    /// Unix seconds when this record was written.
    pub at: i64,
}

/// Key of a run's record.
pub fn run_key(run: RunId) -> String {
    format!("ledger/runs/{run}.json")
}

/// Key of an input's record.
pub fn input_key(identity: &str) -> String {
    format!("ledger/inputs/{identity}.json")
}

/// Prefix of every run record.
pub const RUNS: &str = "ledger/runs/";
/// Prefix of every input record.
pub const INPUTS: &str = "ledger/inputs/";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_serialise_in_snake_case() {
        let r = InputRecord {
            state: InputState::Committed,
            run: "r".into(),
            source: "s".into(),
            at: 1,
        };
        assert!(serde_json::to_string(&r).unwrap().contains("\"committed\""));
    }
}
