//! A segment: one run's cells of one UTC day, written once and never changed. A run publishes
//! its segments with one write to the manifest; readers add them to the base buckets until a
//! compaction folds them in. Readers fetch the head and index first and then only the cell of
//! the domain they want, so a query's cost does not grow with the run's size.
//!
//! Layout, all integers little-endian:
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `SRCTSEG\0` |
//! | 8 | 2 | format version, `1` |
//! | 10 | 2 | reserved, 0 |
//! | 12 | 4 | day, signed days since 1970-01-01 |
//! | 16 | 4 | cell count `C` |
//! | 20 | 4 | index length `I` in bytes |
//! | 24 | I | C entries sorted by domain: domain length (1), domain, offset (8, from the segment's start), length (4) |
//! | 24+I | 4 | CRC-32 (IEEE) of bytes 0 to 24+I |
//! | 28+I | … | the cells, each a bucket (see [`crate::bucket`]) with its own checksum |

use crate::bucket::{BucketError, DayBucket};
use crate::domain::DomainName;
use crate::time::Day;
use std::ops::Range;
use thiserror::Error;

/// The magic that opens every segment.
pub const MAGIC: &[u8; 8] = b"SRCTSEG\0";
/// The format version this code writes and reads.
pub const VERSION: u16 = 1;
/// Bytes of the fixed head.
pub const HEAD: usize = 24;
/// What a reader fetches first: the head, and for all but the largest runs the whole index.
pub const FIRST_READ: u64 = 64 * 1024;

/// Why bytes are not a segment.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SegmentError {
    /// Shorter than its head says.
    #[error("truncated segment")]
    Truncated,
    /// Not a segment, or of a newer format.
    #[error("not a segment of version {VERSION}")]
    BadHead,
    /// The index's checksum does not match.
    #[error("segment index checksum mismatch")]
    Checksum,
    /// The index is not sorted, names a bad domain or points outside the segment.
    #[error("bad segment index: {0}")]
    BadIndex(&'static str),
    /// A cell is damaged, or holds another (domain, day) than the index says.
    #[error("segment cell: {0}")]
    Cell(#[from] BucketError),
}

/// One (domain, day) of a segment, encoded ([`DayBucket::encode`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// The day.
    pub day: Day,
    /// The domain.
    pub domain: DomainName,
    /// The encoded bucket.
    pub body: Vec<u8>,
}

impl Cell {
    /// Encodes a bucket.
    pub fn of(b: &DayBucket) -> Cell {
        Cell {
            day: b.day,
            domain: b.domain.clone(),
            body: b.encode(),
        }
    }
}

/// Encodes a day's cells (each of `day`) as a segment, sorted by domain.
pub fn encode(day: Day, cells: &[DayBucket]) -> Vec<u8> {
    let mut order: Vec<&DayBucket> = cells.iter().collect();
    order.sort_by(|a, b| a.domain.cmp(&b.domain));
    let bodies: Vec<Vec<u8>> = order.iter().map(|c| c.encode()).collect();
    let sizes: Vec<(&DomainName, usize)> = order
        .iter()
        .zip(&bodies)
        .map(|(c, b)| (&c.domain, b.len()))
        .collect();
    let mut out = head(day, &sizes);
    for body in &bodies {
        out.extend_from_slice(body);
    }
    out
}

/// The head, index and checksum of a segment whose cells, each with its domain and its
/// encoded length, sorted by domain, follow it: the segment is these bytes, then the cells
/// in this order.
pub fn head(day: Day, cells: &[(&DomainName, usize)]) -> Vec<u8> {
    let index_len: usize = cells.iter().map(|(d, _)| index_entry(d)).sum();
    let data_start = (HEAD + index_len + 4) as u64;
    let mut out = Vec::with_capacity(data_start as usize);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&day.0.to_le_bytes());
    out.extend_from_slice(&(cells.len() as u32).to_le_bytes());
    out.extend_from_slice(&(index_len as u32).to_le_bytes());
    let mut at = data_start;
    for (domain, len) in cells {
        let d = domain.as_str().as_bytes();
        // Valid domains are at most 253 bytes.
        out.push(d.len() as u8);
        out.extend_from_slice(d);
        out.extend_from_slice(&at.to_le_bytes());
        out.extend_from_slice(&(*len as u32).to_le_bytes());
        at += *len as u64;
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// The length of the head, index and checksum ([`head`]) of a segment holding the cells of
/// `domains`: known before any cell is encoded, so the cells can be written first.
pub fn head_len<'a>(domains: impl IntoIterator<Item = &'a DomainName>) -> usize {
    HEAD + domains.into_iter().map(index_entry).sum::<usize>() + 4
}

/// One index entry's length: domain length, domain, offset, cell length.
fn index_entry(domain: &DomainName) -> usize {
    1 + domain.as_str().len() + 12
}

/// A segment's head and index: which domains it holds and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    /// The day of every cell.
    pub day: Day,
    entries: Vec<(DomainName, Range<u64>)>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Index {
    /// How many bytes from the start hold the head and index, from a prefix of at least
    /// [`HEAD`] bytes.
    pub fn needed(prefix: &[u8]) -> Result<u64, SegmentError> {
        if prefix.len() < HEAD {
            return Err(SegmentError::Truncated);
        }
        if &prefix[..8] != MAGIC || prefix[8..10] != VERSION.to_le_bytes() {
            return Err(SegmentError::BadHead);
        }
        Ok(HEAD as u64 + u64::from(u32_at(prefix, 20)) + 4)
    }

    /// Parses the head and index from a prefix of at least [`Index::needed`] bytes.
    pub fn parse(prefix: &[u8]) -> Result<Index, SegmentError> {
        let needed = Index::needed(prefix)?;
        let data_start = usize::try_from(needed).map_err(|_| SegmentError::Truncated)?;
        if prefix.len() < data_start {
            return Err(SegmentError::Truncated);
        }
        let body = &prefix[..data_start - 4];
        if crc32fast::hash(body) != u32_at(prefix, data_start - 4) {
            return Err(SegmentError::Checksum);
        }
        let day = Day(u32_at(prefix, 12) as i32);
        let count = u32_at(prefix, 16) as usize;
        let mut entries: Vec<(DomainName, Range<u64>)> = Vec::with_capacity(count.min(body.len()));
        let mut at = HEAD;
        let mut next_start = data_start as u64;
        for _ in 0..count {
            let len = usize::from(*body.get(at).ok_or(SegmentError::BadIndex("short"))?);
            let end = at + 1 + len + 12;
            let e = body
                .get(at + 1..end)
                .ok_or(SegmentError::BadIndex("short"))?;
            let name = std::str::from_utf8(&e[..len])
                .ok()
                .and_then(DomainName::parse)
                .filter(|d| d.as_str().as_bytes() == &e[..len])
                .ok_or(SegmentError::BadIndex("bad domain"))?;
            if entries.last().is_some_and(|(last, _)| *last >= name) {
                return Err(SegmentError::BadIndex("not sorted"));
            }
            let mut off = [0u8; 8];
            off.copy_from_slice(&e[len..len + 8]);
            let start = u64::from_le_bytes(off);
            let size = u64::from(u32_at(e, len + 8));
            if start != next_start {
                return Err(SegmentError::BadIndex("cells not contiguous"));
            }
            next_start = start + size;
            entries.push((name, start..start + size));
            at = end;
        }
        if at != body.len() {
            return Err(SegmentError::BadIndex("trailing bytes"));
        }
        Ok(Index { day, entries })
    }

    /// Where the cell of `domain` lies, if the segment holds one.
    pub fn find(&self, domain: &DomainName) -> Option<Range<u64>> {
        self.entries
            .binary_search_by(|(d, _)| d.cmp(domain))
            .ok()
            .map(|i| self.entries[i].1.clone())
    }

    /// The domains held, sorted.
    pub fn domains(&self) -> impl Iterator<Item = &DomainName> {
        self.entries.iter().map(|(d, _)| d)
    }

    /// Each cell held: its domain and where it lies, sorted by domain.
    pub fn cells(&self) -> impl Iterator<Item = (&DomainName, Range<u64>)> {
        self.entries.iter().map(|(d, r)| (d, r.clone()))
    }

    /// The first domain held, if any.
    pub fn first(&self) -> Option<&DomainName> {
        self.entries.first().map(|(d, _)| d)
    }

    /// How many cells.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it holds no cell.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The segment's whole length, as its index says.
    pub fn end(&self, data_start: u64) -> u64 {
        self.entries.last().map_or(data_start, |(_, r)| r.end)
    }

    /// Decodes the cell of `domain` from `bytes`, which start at segment offset `offset`.
    pub fn cell(
        &self,
        domain: &DomainName,
        bytes: &[u8],
        offset: u64,
    ) -> Result<Option<DayBucket>, SegmentError> {
        let Some(r) = self.find(domain) else {
            return Ok(None);
        };
        let from = r.start.checked_sub(offset).ok_or(SegmentError::Truncated)? as usize;
        let to = from + (r.end - r.start) as usize;
        let b = bytes.get(from..to).ok_or(SegmentError::Truncated)?;
        Ok(Some(DayBucket::decode_for(b, domain, self.day)?))
    }
}

/// Decodes a whole segment: its day and every cell, each checked against the index.
pub fn decode_all(bytes: &[u8]) -> Result<(Day, Vec<DayBucket>), SegmentError> {
    let index = Index::parse(bytes)?;
    let data_start = Index::needed(bytes)?;
    if index.end(data_start) != bytes.len() as u64 {
        return Err(SegmentError::Truncated);
    }
    let mut cells = Vec::with_capacity(index.len());
    for d in index.domains() {
        if let Some(c) = index.cell(d, bytes, 0)? {
            cells.push(c);
        }
    }
    Ok((index.day, cells))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cells() -> Vec<DayBucket> {
        ["b.example", "a.example", "c.example"]
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let mut c = DayBucket::new(DomainName::parse(d).unwrap(), Day(10));
                c.minutes[i] = 10 + i as u64;
                c.requests[i] = 1;
                c
            })
            .collect()
    }

    #[test]
    fn a_segment_round_trips_and_finds_each_domain_from_its_index() {
        let enc = encode(Day(10), &cells());
        let (day, back) = decode_all(&enc).unwrap();
        assert_eq!(day, Day(10));
        assert_eq!(
            back.iter().map(|c| c.domain.as_str()).collect::<Vec<_>>(),
            ["a.example", "b.example", "c.example"]
        );
        let need = Index::needed(&enc).unwrap() as usize;
        let held = cells();
        let mut domains: Vec<&DomainName> = held.iter().map(|c| &c.domain).collect();
        domains.sort();
        assert_eq!(head_len(domains.iter().copied()), need);
        let index = Index::parse(&enc[..need]).unwrap();
        let b = DomainName::parse("b.example").unwrap();
        let r = index.find(&b).unwrap();
        let slice = &enc[r.start as usize..r.end as usize];
        let cell = index.cell(&b, slice, r.start).unwrap().unwrap();
        assert_eq!(cell.minutes[0], 10);
        assert!(
            index
                .find(&DomainName::parse("z.example").unwrap())
                .is_none()
        );
    }

    #[test]
    fn damage_is_caught() {
        let enc = encode(Day(10), &cells());
        for i in 0..enc.len() {
            let mut bad = enc.clone();
            bad[i] ^= 0x20;
            assert!(decode_all(&bad).is_err(), "byte {i}");
        }
        assert!(decode_all(&enc[..enc.len() - 1]).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_reader(b in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode_all(&b);
            let mut framed = encode(Day(1), &cells());
            framed.truncate(HEAD);
            framed.extend_from_slice(&b);
            let _ = decode_all(&framed);
            if let Ok(i) = Index::parse(&framed) {
                for d in i.domains() {
                    let _ = i.cell(d, &framed, 0);
                }
            }
        }
    }
}
