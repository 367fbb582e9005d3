//! What the exactly-once protocol keeps in the store, and where:
//!
//! - `ledger/inputs/<identity>.json`: one per input ever claimed: `claimed` by a run, or
//!   `committed` by a run.
//! - `ledger/runs/<run>.json`: one per run in flight: its state and heartbeat, and once sealed,
//!   the inputs it counts. Deleted when the run is done or aborted.
//! - `ledger/runs/<run>.deltas`: a sealed run's totals, until they are applied.

use serde::{Deserialize, Serialize};
use srctraffic::bucket::{DayBucket, MINUTES, RunId};
use srctraffic::{Day, DomainName};

/// A run's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Claiming and reading inputs; alive while its heartbeat is fresh.
    Aggregating,
    /// Its deltas are stored and will be applied, by it or by any later run.
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

/// Key of a run's deltas.
pub fn deltas_key(run: RunId) -> String {
    format!("ledger/runs/{run}.deltas")
}

/// Key of an input's record.
pub fn input_key(identity: &str) -> String {
    format!("ledger/inputs/{identity}.json")
}

/// Prefix of every run record.
pub const RUNS: &str = "ledger/runs/";
/// Prefix of every input record.
pub const INPUTS: &str = "ledger/inputs/";

const DELTAS_MAGIC: &[u8; 8] = b"SRCTDLT\0";

/// Encodes a run's totals: magic, count, then each (domain, day) as a bucket (which carries
/// its own checksum), then a CRC-32 of everything.
pub fn encode_deltas(cells: &[(DomainName, Day, Box<[u64; MINUTES]>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + cells.len() * (8 * MINUTES + 64));
    out.extend_from_slice(DELTAS_MAGIC);
    out.extend_from_slice(&(cells.len() as u32).to_le_bytes());
    for (domain, day, minutes) in cells {
        let b = DayBucket {
            domain: domain.clone(),
            day: *day,
            runs: Vec::new(),
            minutes: minutes.clone(),
        };
        let enc = b.encode();
        out.extend_from_slice(&(enc.len() as u32).to_le_bytes());
        out.extend_from_slice(&enc);
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Decodes what [`encode_deltas`] wrote.
pub fn decode_deltas(b: &[u8]) -> Result<Vec<DayBucket>, String> {
    let body_len = b.len().checked_sub(4).ok_or("truncated deltas")?;
    let (body, crc) = b.split_at(body_len);
    if crc32fast::hash(body).to_le_bytes() != crc {
        return Err("deltas checksum mismatch".into());
    }
    let rest = body
        .strip_prefix(DELTAS_MAGIC)
        .ok_or("not a deltas object")?;
    let (count, mut rest) = rest.split_at_checked(4).ok_or("truncated deltas")?;
    let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
    let mut out = Vec::with_capacity(count.min(1 << 20));
    for _ in 0..count {
        let (len, r) = rest.split_at_checked(4).ok_or("truncated deltas")?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (cell, r) = r.split_at_checked(len).ok_or("truncated deltas")?;
        out.push(DayBucket::decode(cell).map_err(|e| e.to_string())?);
        rest = r;
    }
    if !rest.is_empty() {
        return Err("trailing bytes in deltas".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_round_trip_and_detect_damage() {
        let mut m = Box::new([0u64; MINUTES]);
        m[7] = 42;
        let cells = vec![(DomainName::parse("a.com").unwrap(), Day(18_000), m)];
        let enc = encode_deltas(&cells);
        let dec = decode_deltas(&enc).unwrap();
        assert_eq!(dec[0].minutes[7], 42);
        let mut bad = enc.clone();
        bad[20] ^= 1;
        assert!(decode_deltas(&bad).is_err());
        assert!(decode_deltas(&enc[..3]).is_err());
    }

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
