//! The per-(domain, UTC day) bucket: 1,440 minute totals plus the ids of the batch runs already
//! folded in, so that re-applying a run is a no-op.
//!
//! Layout, all integers little-endian (documented in the README too):
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `SRCTBKT\0` |
//! | 8 | 2 | format version, `1` |
//! | 10 | 2 | domain length `L` |
//! | 12 | 4 | day, signed days since 1970-01-01 |
//! | 16 | L | domain, ASCII |
//! | 16+L | 4 | run count `R` |
//! | 20+L | 16·R | run ids |
//! | … | 1440·8 | byte totals, minute 0 (00:00Z) to 1439 |
//! | end−4 | 4 | CRC-32 (IEEE) of every byte before it |

use crate::domain::DomainName;
use crate::time::Day;
use std::fmt;
use thiserror::Error;

/// The magic that opens every bucket.
pub const MAGIC: &[u8; 8] = b"SRCTBKT\0";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Minutes in a bucket.
pub const MINUTES: usize = 1440;

/// The identity of one batch run, random per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub [u8; 16]);

impl RunId {
    /// A fresh random id.
    pub fn random() -> RunId {
        RunId(*uuid::Uuid::new_v4().as_bytes())
    }

    /// Parses the 32-hex-digit form.
    pub fn parse(s: &str) -> Option<RunId> {
        uuid::Uuid::try_parse(s).ok().map(|u| RunId(*u.as_bytes()))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", uuid::Uuid::from_bytes(self.0).simple())
    }
}

/// Why bytes are not a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BucketError {
    /// Shorter than its own header says.
    #[error("truncated: {0} bytes")]
    Truncated(usize),
    /// Does not start with the magic.
    #[error("not a bucket (bad magic)")]
    BadMagic,
    /// Written by a newer format.
    #[error("unsupported bucket format version {0}")]
    UnsupportedVersion(u16),
    /// The checksum does not match the contents.
    #[error("checksum mismatch")]
    Checksum,
    /// The domain field is not a valid, normalised host name.
    #[error("bad domain field")]
    BadDomain,
    /// Bytes follow the checksum's span.
    #[error("{0} trailing bytes")]
    Trailing(usize),
    /// A sound bucket, but of another (domain, day) than its key names: copied or moved.
    #[error("holds {found} on day {found_day}, not {wanted} on day {wanted_day} as its key says")]
    Misplaced {
        /// The domain inside.
        found: String,
        /// The day inside.
        found_day: Day,
        /// The domain the key names.
        wanted: String,
        /// The day the key names.
        wanted_day: Day,
    },
    /// Folding a run in would take a minute's total past 2^64 - 1 bytes.
    #[error("minute {0} of the day would pass 2^64 - 1 bytes")]
    Overflow(usize),
}

/// One (domain, day): minute totals and the runs that produced them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayBucket {
    /// The domain.
    pub domain: DomainName,
    /// The UTC day.
    pub day: Day,
    /// Runs already folded in, sorted.
    pub runs: Vec<RunId>,
    /// Bytes per minute of the day.
    pub minutes: Box<[u64; MINUTES]>,
}

impl DayBucket {
    /// An empty bucket.
    pub fn new(domain: DomainName, day: Day) -> DayBucket {
        DayBucket {
            domain,
            day,
            runs: Vec::new(),
            minutes: Box::new([0; MINUTES]),
        }
    }

    /// Folds a run's totals in, once: returns `Ok(false)` (and changes nothing) if the run is
    /// held, and an error (changing nothing) if a minute's total would pass 2^64 - 1.
    pub fn apply(&mut self, run: RunId, delta: &[u64; MINUTES]) -> Result<bool, BucketError> {
        let Err(at) = self.runs.binary_search(&run) else {
            return Ok(false);
        };
        let mut sums = Box::new([0u64; MINUTES]);
        for (i, ((s, m), d)) in sums
            .iter_mut()
            .zip(self.minutes.iter())
            .zip(delta)
            .enumerate()
        {
            *s = m.checked_add(*d).ok_or(BucketError::Overflow(i))?;
        }
        self.runs.insert(at, run);
        self.minutes = sums;
        Ok(true)
    }

    /// Sum over the day; wide enough that it cannot overflow.
    pub fn total(&self) -> u128 {
        self.minutes.iter().map(|&b| u128::from(b)).sum()
    }

    /// Decodes the bucket stored for `(domain, day)`, and checks that it holds that one: a
    /// bucket copied under another name must not be served as that name.
    pub fn decode_for(b: &[u8], domain: &DomainName, day: Day) -> Result<DayBucket, BucketError> {
        let bucket = DayBucket::decode(b)?;
        if bucket.domain != *domain || bucket.day != day {
            return Err(BucketError::Misplaced {
                found: bucket.domain.to_string(),
                found_day: bucket.day,
                wanted: domain.to_string(),
                wanted_day: day,
            });
        }
        Ok(bucket)
    }

    /// Encodes per the layout in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let d = self.domain.as_str().as_bytes();
        let mut out = Vec::with_capacity(24 + d.len() + 16 * self.runs.len() + 8 * MINUTES);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Valid domains are at most 253 bytes, so the length fits.
        out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.day.0.to_le_bytes());
        out.extend_from_slice(d);
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.0);
        }
        for m in self.minutes.iter() {
            out.extend_from_slice(&m.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes and checks magic, version, checksum and fields.
    pub fn decode(b: &[u8]) -> Result<DayBucket, BucketError> {
        let mut r = Reader { b, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(BucketError::BadMagic);
        }
        let version = r.u16()?;
        if version != VERSION {
            return Err(BucketError::UnsupportedVersion(version));
        }
        let dlen = r.u16()? as usize;
        let day = Day(r.u32()? as i32);
        let domain_bytes = r.take(dlen)?;
        let nruns = r.u32()? as usize;
        let body_len = r.at + nruns.saturating_mul(16) + 8 * MINUTES;
        if b.len() < body_len.saturating_add(4) {
            return Err(BucketError::Truncated(b.len()));
        }
        if b.len() > body_len + 4 {
            return Err(BucketError::Trailing(b.len() - body_len - 4));
        }
        let stored = u32::from_le_bytes([
            b[body_len],
            b[body_len + 1],
            b[body_len + 2],
            b[body_len + 3],
        ]);
        if crc32fast::hash(&b[..body_len]) != stored {
            return Err(BucketError::Checksum);
        }
        let domain = std::str::from_utf8(domain_bytes)
            .ok()
            .and_then(DomainName::parse)
            .filter(|d| d.as_str().as_bytes() == domain_bytes)
            .ok_or(BucketError::BadDomain)?;
        let mut runs = Vec::with_capacity(nruns);
        for _ in 0..nruns {
            let mut id = [0u8; 16];
            id.copy_from_slice(r.take(16)?);
            runs.push(RunId(id));
        }
        runs.sort_unstable();
        let mut minutes = Box::new([0u64; MINUTES]);
        for (m, chunk) in minutes.iter_mut().zip(r.take(8 * MINUTES)?.chunks_exact(8)) {
            let mut a = [0u8; 8];
            a.copy_from_slice(chunk);
            *m = u64::from_le_bytes(a);
        }
        Ok(DayBucket {
            domain,
            day,
            runs,
            minutes,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BucketError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(BucketError::Truncated(self.b.len()))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<u16, BucketError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, BucketError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> DayBucket {
        let mut b = DayBucket::new(DomainName::parse("example.com").unwrap(), Day(18_240));
        let mut delta = [0u64; MINUTES];
        delta[1200] = 7;
        delta[1439] = u64::MAX;
        assert_eq!(b.apply(RunId([1; 16]), &delta), Ok(true));
        b
    }

    #[test]
    fn a_bucket_round_trips() {
        let b = sample();
        assert_eq!(DayBucket::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn applying_a_held_run_changes_nothing() {
        let mut b = sample();
        let before = b.clone();
        assert_eq!(b.apply(RunId([1; 16]), &[5; MINUTES]), Ok(false));
        assert_eq!(b, before);
    }

    #[test]
    fn a_fold_past_the_largest_total_is_refused_and_changes_nothing() {
        let mut b = sample();
        let before = b.clone();
        let mut delta = [0u64; MINUTES];
        delta[1439] = 1;
        delta[3] = 9;
        assert_eq!(
            b.apply(RunId([2; 16]), &delta),
            Err(BucketError::Overflow(1439))
        );
        assert_eq!(b, before);
        assert_eq!(b.total(), u128::from(u64::MAX) + 7);
    }

    #[test]
    fn a_bucket_read_under_another_name_or_day_is_refused() {
        let b = sample();
        let enc = b.encode();
        let other = DomainName::parse("other.example").unwrap();
        assert!(DayBucket::decode_for(&enc, &b.domain, b.day).is_ok());
        assert!(matches!(
            DayBucket::decode_for(&enc, &other, b.day),
            Err(BucketError::Misplaced { .. })
        ));
        assert!(matches!(
            DayBucket::decode_for(&enc, &b.domain, Day(b.day.0 + 1)),
            Err(BucketError::Misplaced { .. })
        ));
    }

    #[test]
    fn any_flipped_byte_is_caught() {
        let enc = sample().encode();
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x40;
            assert!(DayBucket::decode(&bad).is_err(), "byte {i}");
        }
        assert_eq!(
            DayBucket::decode(&enc[..enc.len() - 1]),
            Err(BucketError::Truncated(enc.len() - 1))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(b in proptest::collection::vec(any::<u8>(), 0..12_000)) {
            let _ = DayBucket::decode(&b);
        }

        #[test]
        fn apply_is_commutative(a in proptest::collection::vec(0u64..1 << 40, MINUTES), b in proptest::collection::vec(0u64..1 << 40, MINUTES)) {
            let (da, db): ([u64; MINUTES], [u64; MINUTES]) = (a.try_into().unwrap(), b.try_into().unwrap());
            let mut x = DayBucket::new(DomainName::parse("a.com").unwrap(), Day(1));
            let mut y = x.clone();
            x.apply(RunId([1; 16]), &da).unwrap();
            x.apply(RunId([2; 16]), &db).unwrap();
            y.apply(RunId([2; 16]), &db).unwrap();
            y.apply(RunId([1; 16]), &da).unwrap();
            prop_assert_eq!(x.encode(), y.encode());
        }
    }
}
