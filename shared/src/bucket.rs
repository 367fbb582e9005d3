//! The per-(domain, UTC day) cell: per minute the origin bytes, the origin requests, the bytes
//! fetched over HTTPS and the requests per origin status code; plus which published runs it
//! holds, so that folding a run twice is a no-op and readers can tell a bucket newer than the
//! manifest they read.
//!
//! Three layouts, all integers little-endian (documented in the README too). All open with
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `SRCTBKT\0` |
//! | 8 | 2 | format version, `1`, `2` or `3` |
//! | 10 | 2 | domain length `L` |
//! | 12 | 4 | day, signed days since 1970-01-01 |
//! | 16 | L | domain, ASCII |
//!
//! Version 3 (written now) goes on with
//!
//! | size | field |
//! | --- | --- |
//! | 8 | highest publish sequence number folded in (0: none) |
//! | 4 | run count `R`, then 16·R run ids |
//! | 4 × 4 | the byte length of each section below |
//! | 4 × 4 | the CRC-32 (IEEE) of each section |
//! | 4 | CRC-32 of every byte before it |
//! | | five-minute rows: row count `N` (blocks held, of 288), then in columns: N varints of blocks skipped since the previous row; N × 8 bytes; u32 length + N varints of requests; u32 length + N varints of https bytes |
//! | | five-minute status counts: the number of codes `K`, then for each code, ascending: the code, its entry count `N`, the byte length of its entries, then N entries of: blocks skipped since the code's previous entry, requests; all varints |
//! | | minute rows, laid out as the five-minute ones, by minute (of 1,440) |
//! | | minute status counts, laid out as the five-minute ones, by minute |
//!
//! The five-minute sections (the rollup) are the minute ones summed by block, so that a query
//! at five minutes or more reads a fifth of the rows, from a prefix of the object, and checks
//! the checksums of the sections it reads only. Where a block's sum would pass 2^64 - 1 they are
//! left empty (length 0) and a walk by block sums the minutes.
//!
//! Status counts are stored code by code: a query adds each code's column without looking the
//! code up per entry, and skips the rest of a column past the last unit it wants.
//!
//! Version 2 (the release before) goes on with the sequence number, the runs, the minute rows,
//! the status counts (a u32 count `S`, then S entries of: minutes since the previous entry,
//! status code, requests; each a varint; ascending (minute, code)), and a CRC-32 of every byte
//! before it. Version 1 (earlier releases) goes on
//! with the run count `R` (4), the run ids (16·R), then 1,440 byte totals (8 each, minute 0 =
//! 00:00Z first): bytes only, and a CRC-32 of every byte before it.
//!
//! A varint is unsigned LEB128: 7 bits a byte, low bits first, the high bit set on all but the
//! last byte. Bytes are fixed-width so that a query walks units and bytes and skips the rest.

use crate::domain::DomainName;
use crate::time::Day;
use std::fmt;
use thiserror::Error;

/// The magic that opens every bucket.
pub const MAGIC: &[u8; 8] = b"SRCTBKT\0";
/// The format version this code writes. Versions 1 and 2 are read too.
pub const VERSION: u16 = 3;
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
    /// Folding a run in would take a minute's total past 2^64 - 1.
    #[error("minute {0} of the day would pass 2^64 - 1")]
    Overflow(usize),
    /// A row out of range or out of order.
    #[error("bad row for minute {0}")]
    BadRow(usize),
}

/// Requests of one minute answered by the origin with one status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCount {
    /// Minute of the day, 0 to 1439.
    pub minute: u16,
    /// The origin's HTTP status code.
    pub code: u16,
    /// How many requests.
    pub count: u64,
}

/// One (domain, day): the measures per minute and the published runs folded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayBucket {
    /// The domain.
    pub domain: DomainName,
    /// The UTC day.
    pub day: Day,
    /// Runs already folded in, sorted.
    pub runs: Vec<RunId>,
    /// The highest publish sequence number folded in; 0 for none (and for version 1).
    pub seq: u64,
    /// Origin bytes per minute of the day.
    pub minutes: Box<[u64; MINUTES]>,
    /// Origin requests per minute.
    pub requests: Box<[u64; MINUTES]>,
    /// Origin bytes fetched over HTTPS per minute.
    pub https: Box<[u64; MINUTES]>,
    /// Requests per (minute, status code), sorted, no zero counts.
    pub statuses: Vec<StatusCount>,
}

/// The first minute at which `a + b` would pass 2^64 - 1.
fn first_overflow(a: &[u64; MINUTES], b: &[u64; MINUTES]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x.checked_add(*y).is_none())
}

/// Merges two sorted status lists, adding the counts of equal (minute, code).
fn merge_statuses(a: &[StatusCount], b: &[StatusCount]) -> Result<Vec<StatusCount>, BucketError> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if (x.minute, x.code) == (y.minute, y.code) => {
                i += 1;
                j += 1;
                let count = x
                    .count
                    .checked_add(y.count)
                    .ok_or(BucketError::Overflow(usize::from(x.minute)))?;
                StatusCount { count, ..*x }
            }
            (Some(x), Some(y)) if (x.minute, x.code) < (y.minute, y.code) => {
                i += 1;
                *x
            }
            (Some(_), Some(y)) | (None, Some(y)) => {
                j += 1;
                *y
            }
            (Some(x), None) => {
                i += 1;
                *x
            }
            (None, None) => break,
        };
        out.push(next);
    }
    Ok(out)
}

impl DayBucket {
    /// An empty bucket.
    pub fn new(domain: DomainName, day: Day) -> DayBucket {
        DayBucket {
            domain,
            day,
            runs: Vec::new(),
            seq: 0,
            minutes: Box::new([0; MINUTES]),
            requests: Box::new([0; MINUTES]),
            https: Box::new([0; MINUTES]),
            statuses: Vec::new(),
        }
    }

    /// Adds another bucket's measures (not its runs) into this one: all or nothing, an error
    /// if some total would pass 2^64 - 1.
    pub fn add(&mut self, other: &DayBucket) -> Result<(), BucketError> {
        // Checked before anything changes, so that an error leaves the bucket as it was.
        for (a, b) in [
            (&self.minutes, &other.minutes),
            (&self.requests, &other.requests),
            (&self.https, &other.https),
        ] {
            if let Some(at) = first_overflow(a, b) {
                return Err(BucketError::Overflow(at));
            }
        }
        if !other.statuses.is_empty() {
            self.statuses = merge_statuses(&self.statuses, &other.statuses)?;
        }
        for (a, b) in [
            (&mut self.minutes, &other.minutes),
            (&mut self.requests, &other.requests),
            (&mut self.https, &other.https),
        ] {
            for (x, y) in a.iter_mut().zip(b.iter()) {
                *x += *y;
            }
        }
        Ok(())
    }

    /// Adds a parsed bucket's measures (not its runs) into this one, as [`DayBucket::add`]
    /// does with a decoded one, without filling a whole bucket first: a merge of many small
    /// cells into one sum touches only the minutes they hold. All or nothing. The rollup is
    /// not read (the sum's own is made when it is encoded).
    pub fn add_parsed(&mut self, other: &Parsed<'_>) -> Result<(), BucketError> {
        let mut rows = Vec::new();
        let statuses = other.rows(|m, bytes, requests, https| {
            rows.push((m, bytes, requests, https));
        })?;
        for &(m, bytes, requests, https) in &rows {
            let fits = self.minutes[m].checked_add(bytes).is_some()
                && self.requests[m].checked_add(requests).is_some()
                && self.https[m].checked_add(https).is_some();
            if !fits {
                return Err(BucketError::Overflow(m));
            }
        }
        if !statuses.is_empty() {
            self.statuses = merge_statuses(&self.statuses, &statuses)?;
        }
        for (m, bytes, requests, https) in rows {
            self.minutes[m] += bytes;
            self.requests[m] += requests;
            self.https[m] += https;
        }
        Ok(())
    }

    /// Folds a published run's cell in, once: returns `Ok(false)` (and changes nothing) if the
    /// run is held, and an error (changing nothing) if a total would pass 2^64 - 1.
    pub fn fold(&mut self, run: RunId, seq: u64, cell: &DayBucket) -> Result<bool, BucketError> {
        let Err(at) = self.runs.binary_search(&run) else {
            return Ok(false);
        };
        self.add(cell)?;
        self.runs.insert(at, run);
        self.seq = self.seq.max(seq);
        Ok(true)
    }

    /// Folds a merged segment's cell in, once: it holds several runs, and a bucket holds all
    /// of them or none.
    pub fn fold_runs(
        &mut self,
        runs: &[RunId],
        seq: u64,
        cell: &DayBucket,
    ) -> Result<bool, BucketError> {
        if runs.is_empty() || runs.iter().any(|r| self.holds(*r)) {
            return Ok(false);
        }
        self.add(cell)?;
        self.runs.extend_from_slice(runs);
        self.runs.sort_unstable();
        self.runs.dedup();
        self.seq = self.seq.max(seq);
        Ok(true)
    }

    /// Folds bytes alone in, once, as [`DayBucket::fold`] does: for tests and tools that have
    /// nothing but byte totals.
    pub fn apply(&mut self, run: RunId, bytes: &[u64; MINUTES]) -> Result<bool, BucketError> {
        let mut cell = DayBucket::new(self.domain.clone(), self.day);
        *cell.minutes = *bytes;
        self.fold(run, 0, &cell)
    }

    /// Whether the run is folded in.
    pub fn holds(&self, run: RunId) -> bool {
        self.runs.binary_search(&run).is_ok()
    }

    /// Byte sum over the day; wide enough that it cannot overflow.
    pub fn total(&self) -> u128 {
        self.minutes.iter().map(|&b| u128::from(b)).sum()
    }

    /// Decodes the bucket stored for `(domain, day)`, and checks that it holds that one: a
    /// bucket copied under another name must not be served as that name.
    pub fn decode_for(b: &[u8], domain: &DomainName, day: Day) -> Result<DayBucket, BucketError> {
        DayBucket::parse_for(b, domain, day)?.into_bucket()
    }

    /// Encodes per version 3 of the layout in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let mut sections: [Vec<u8>; SECTIONS] = Default::default();
        // A five-minute total past 2^64 - 1 leaves the rollup out: readers sum the minutes.
        if let Some((five, statuses)) = self.five_minutes() {
            let [bytes, requests, https] = &five;
            encode_rows(&mut sections[0], bytes, requests, https);
            encode_statuses(&mut sections[1], &statuses);
        }
        encode_rows(
            &mut sections[2],
            &self.minutes[..],
            &self.requests[..],
            &self.https[..],
        );
        encode_statuses(&mut sections[3], &self.statuses);
        self.assemble(&sections)
    }

    /// Encodes as [`DayBucket::encode`] does, byte for byte, with the status counts given as
    /// hour rows in place of `self.statuses` (which is not read): each code's column is written
    /// straight from its rows, with no list of single counts to build, sort and regroup (the
    /// batch holds its counts so). Rows may come in any order, and rows of the same
    /// (code, hour) are summed; rows past hour 23 are left out.
    pub fn encode_with_hours(&self, hours: &[StatusHour]) -> Vec<u8> {
        let mut sections: [Vec<u8>; SECTIONS] = Default::default();
        let [five_rows, five_statuses, rows, statuses] = &mut sections;
        let five_fits = encode_status_hours(hours, statuses, five_statuses);
        match self.five_minute_rows() {
            Some([bytes, requests, https]) if five_fits => {
                encode_rows(five_rows, &bytes, &requests, &https);
            }
            // As in `encode`: a five-minute total past 2^64 - 1 leaves the whole rollup out.
            _ => five_statuses.clear(),
        }
        encode_rows(rows, &self.minutes[..], &self.requests[..], &self.https[..]);
        self.assemble(&sections)
    }

    /// The head, checksums and sections, laid out as version 3.
    fn assemble(&self, sections: &[Vec<u8>; SECTIONS]) -> Vec<u8> {
        let d = self.domain.as_str().as_bytes();
        let body: usize = sections.iter().map(Vec::len).sum();
        let mut out = Vec::with_capacity(64 + d.len() + 16 * self.runs.len() + body);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        // Valid domains are at most 253 bytes, so the length fits.
        out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        out.extend_from_slice(&self.day.0.to_le_bytes());
        out.extend_from_slice(d);
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&(self.runs.len() as u32).to_le_bytes());
        for r in &self.runs {
            out.extend_from_slice(&r.0);
        }
        // A section is at most a few hundred KB (1,440 rows; a status code per request).
        for s in sections {
            out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        }
        for s in sections {
            out.extend_from_slice(&crc32fast::hash(s).to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        for s in sections {
            out.extend_from_slice(s);
        }
        out
    }

    /// The five-minute sums of bytes, requests and HTTPS bytes, `None` if one would pass
    /// 2^64 - 1.
    fn five_minute_rows(&self) -> Option<[[u64; FIVE_MINUTE_UNITS]; 3]> {
        let mut five = [[0u64; FIVE_MINUTE_UNITS]; 3];
        for (column, sums) in [&self.minutes, &self.requests, &self.https]
            .into_iter()
            .zip(&mut five)
        {
            for (sum, block) in sums.iter_mut().zip(column.chunks_exact(5)) {
                *sum = block.iter().try_fold(0u64, |a, &b| a.checked_add(b))?;
            }
        }
        Some(five)
    }

    /// The status counts of hour rows (see [`DayBucket::encode_with_hours`]), as
    /// [`DayBucket::statuses`] holds them: sorted by (minute, code), no zero counts.
    pub fn statuses_of_hours(hours: &[StatusHour]) -> Vec<StatusCount> {
        let mut out = Vec::new();
        for_each_hour(hours, |code, hour, counts| {
            for (i, &count) in counts.iter().enumerate() {
                if count > 0 {
                    out.push(StatusCount {
                        minute: u16::from(hour) * HOUR_MINUTES as u16 + i as u16,
                        code,
                        count,
                    });
                }
            }
        });
        out.sort_unstable_by_key(|s| (s.minute, s.code));
        out
    }

    /// The five-minute rollup of every measure, `None` if a total would pass 2^64 - 1.
    fn five_minutes(&self) -> Option<([[u64; FIVE_MINUTE_UNITS]; 3], Vec<StatusCount>)> {
        let five = self.five_minute_rows()?;
        let mut statuses = Vec::with_capacity(self.statuses.len() / 2);
        let mut block: Vec<(u16, u64)> = Vec::new();
        // Status counts are sorted by minute, so a block's are side by side; a block has a
        // handful of codes, summed in a short list.
        for run in self.statuses.chunk_by(|a, b| a.minute / 5 == b.minute / 5) {
            block.clear();
            for s in run {
                match block.iter_mut().find(|(code, _)| *code == s.code) {
                    Some((_, n)) => *n = n.checked_add(s.count)?,
                    None => block.push((s.code, s.count)),
                }
            }
            block.sort_unstable_by_key(|&(code, _)| code);
            statuses.extend(block.iter().map(|&(code, count)| StatusCount {
                minute: run[0].minute / 5,
                code,
                count,
            }));
        }
        Some((five, statuses))
    }

    /// Decodes any version and checks magic, checksums and fields.
    pub fn decode(b: &[u8]) -> Result<DayBucket, BucketError> {
        DayBucket::parse(b)?.into_bucket()
    }

    /// Checks a bucket's magic, checksums and header and leaves its rows encoded: for readers
    /// that only walk them (a query), without filling three 1,440-minute arrays.
    pub fn parse(b: &[u8]) -> Result<Parsed<'_>, BucketError> {
        DayBucket::parse_inner(b, None, true, true)
    }

    /// Whether `prefix`, the first bytes of a bucket, holds everything a walk of `view` needs;
    /// `false` when it cannot tell (an earlier version, or a head longer than the prefix).
    pub fn prefix_holds(prefix: &[u8], view: View) -> bool {
        DayBucket::parse_inner(prefix, None, false, false)
            .is_ok_and(|p| p.version >= 3 && p.holds_view(view))
    }

    fn parse_inner<'a>(
        b: &'a [u8],
        expected: Option<&DomainName>,
        check_crc: bool,
        whole: bool,
    ) -> Result<Parsed<'a>, BucketError> {
        let mut r = Reader { b, at: 0 };
        if r.take(8)? != MAGIC {
            return Err(BucketError::BadMagic);
        }
        let version = r.u16()?;
        if !(1..=VERSION).contains(&version) {
            return Err(BucketError::UnsupportedVersion(version));
        }
        if version < 3 {
            // One checksum at the end, over everything: checked first, so that a damaged length
            // cannot send the reader astray.
            let body_len = b
                .len()
                .checked_sub(4)
                .ok_or(BucketError::Truncated(b.len()))?;
            let stored = le_u32(&b[body_len..]);
            if check_crc && crc32fast::hash(&b[..body_len]) != stored {
                return Err(BucketError::Checksum);
            }
            r.b = &b[..body_len];
        }
        let dlen = r.u16()? as usize;
        let day = Day(r.u32()? as i32);
        let domain_bytes = r.take(dlen)?;
        let seq = if version >= 2 { r.u64()? } else { 0 };
        let nruns = r.u32()? as usize;
        let mut runs = Vec::with_capacity(nruns.min(r.left() / 16));
        for _ in 0..nruns {
            let mut id = [0u8; 16];
            id.copy_from_slice(r.take(16)?);
            runs.push(RunId(id));
        }
        runs.sort_unstable();
        let mut sections = [None; SECTIONS];
        let mut rows: &[u8] = &[];
        if version >= 3 {
            let mut lens = [0usize; SECTIONS];
            for len in &mut lens {
                *len = r.u32()? as usize;
            }
            let mut crcs = [0u32; SECTIONS];
            for crc in &mut crcs {
                *crc = r.u32()?;
            }
            let head = r.at;
            let stored = r.u32()?;
            if check_crc && crc32fast::hash(&b[..head]) != stored {
                return Err(BucketError::Checksum);
            }
            let mut at = r.at;
            for ((section, len), crc) in sections.iter_mut().zip(lens).zip(crcs) {
                let end = at.saturating_add(len);
                *section = b.get(at..end).map(|bytes| Section {
                    bytes,
                    crc: check_crc.then_some(crc),
                });
                at = end;
            }
            if whole {
                if at > b.len() {
                    return Err(BucketError::Truncated(b.len()));
                }
                if at < b.len() {
                    return Err(BucketError::Trailing(b.len() - at));
                }
            }
        } else {
            rows = &r.b[r.at..];
        }
        // The name a reader expects needs no parsing: the same bytes are the same name.
        let domain = match expected {
            Some(d) if d.as_str().as_bytes() == domain_bytes => d.clone(),
            _ => std::str::from_utf8(domain_bytes)
                .ok()
                .and_then(DomainName::parse)
                .filter(|d| d.as_str().as_bytes() == domain_bytes)
                .ok_or(BucketError::BadDomain)?,
        };
        Ok(Parsed {
            domain,
            day,
            seq,
            runs,
            version,
            rows,
            sections,
        })
    }

    /// [`DayBucket::parse`], and checks that it holds `(domain, day)`.
    pub fn parse_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
    ) -> Result<Parsed<'a>, BucketError> {
        DayBucket::parse_checked_for(b, domain, day, true, true)
    }

    /// [`DayBucket::parse_for`] of a bucket's first bytes, which may end before its last
    /// sections: a walk of a view they hold ([`Parsed::holds_view`]) reads and checks only its
    /// own sections; a walk of another is an error.
    pub fn parse_prefix_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
    ) -> Result<Parsed<'a>, BucketError> {
        DayBucket::parse_checked_for(b, domain, day, true, false)
    }

    /// [`DayBucket::parse_prefix_for`] without verifying any checksum: for bytes verified
    /// already, or to read a header ahead of a decode that verifies them.
    pub fn parse_verified_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
    ) -> Result<Parsed<'a>, BucketError> {
        DayBucket::parse_checked_for(b, domain, day, false, false)
    }

    fn parse_checked_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
        check_crc: bool,
        whole: bool,
    ) -> Result<Parsed<'a>, BucketError> {
        let p = DayBucket::parse_inner(b, Some(domain), check_crc, whole)?;
        if p.domain != *domain || p.day != day {
            return Err(BucketError::Misplaced {
                found: p.domain.to_string(),
                found_day: p.day,
                wanted: domain.to_string(),
                wanted_day: day,
            });
        }
        Ok(p)
    }
}

/// Version 3's sections, in the order they are laid out.
const SECTIONS: usize = 4;
/// Five-minute blocks in a day.
const FIVE_MINUTE_UNITS: usize = MINUTES / 5;

/// The time unit a walk of a bucket's rows goes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    /// Each minute of the day, 0 to 1,439.
    Minute,
    /// Each five-minute block of the day, 0 (00:00 to 00:04) to 287: what a query at an
    /// interval of five minutes or more needs, read from the rollup where a bucket has one.
    FiveMinutes,
}

impl Grain {
    /// Minutes in a unit.
    pub fn minutes(self) -> usize {
        match self {
            Grain::Minute => 1,
            Grain::FiveMinutes => 5,
        }
    }

    /// Units in a day.
    pub fn units(self) -> usize {
        MINUTES / self.minutes()
    }
}

/// What a walk of a bucket reads: rows at a grain, and the status counts or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    /// The unit of the rows.
    pub grain: Grain,
    /// Whether the status counts are read too.
    pub statuses: bool,
}

/// One of version 3's sections as read: its bytes, and the checksum they must have unless
/// they are trusted (read only for a header).
#[derive(Debug, Clone, Copy)]
struct Section<'a> {
    bytes: &'a [u8],
    crc: Option<u32>,
}

/// A bucket with its header read and checked and its rows still encoded.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// The domain.
    pub domain: DomainName,
    /// The UTC day.
    pub day: Day,
    /// The highest publish sequence number folded in.
    pub seq: u64,
    /// Runs folded in, sorted.
    pub runs: Vec<RunId>,
    version: u16,
    /// Versions 1 and 2: everything after the runs, covered by the checksum checked already.
    rows: &'a [u8],
    /// Version 3: the five-minute rows and status counts, then the minute ones; `None` where
    /// a prefix ends before the section does.
    sections: [Option<Section<'a>>; SECTIONS],
}

impl<'a> Parsed<'a> {
    /// Whether the bytes parsed hold what a walk of `view` reads.
    pub fn holds_view(&self, view: View) -> bool {
        if self.version < 3 {
            // Parsed only if whole: its one checksum covers all of it.
            return true;
        }
        let (rows, statuses, _) = self.sections_of(view.grain);
        let wanted = [Some(rows), view.statuses.then_some(statuses)];
        wanted
            .into_iter()
            .flatten()
            .all(|i| self.sections[i].is_some())
    }

    /// The rows and status sections that serve a grain (the minute ones where the rollup was
    /// left out, and for earlier versions), and the units they are stored in.
    fn sections_of(&self, grain: Grain) -> (usize, usize, Grain) {
        let rolled = self.version >= 3 && self.sections[0].is_none_or(|s| !s.bytes.is_empty());
        match grain {
            Grain::FiveMinutes if rolled => (0, 1, Grain::FiveMinutes),
            _ => (2, 3, Grain::Minute),
        }
    }

    /// A version-3 section's bytes, checked against its checksum.
    fn section(&self, i: usize) -> Result<&'a [u8], BucketError> {
        let s = self.sections[i].ok_or(BucketError::Truncated(0))?;
        if s.crc.is_some_and(|crc| crc32fast::hash(s.bytes) != crc) {
            return Err(BucketError::Checksum);
        }
        Ok(s.bytes)
    }

    /// The units held (ascending) and their fixed-width byte totals.
    fn columns(
        &self,
        r: &mut Reader<'a>,
        units: usize,
    ) -> Result<(Vec<u16>, &'a [u8]), BucketError> {
        let rows = r.u32()? as usize;
        if rows > units {
            return Err(BucketError::BadRow(rows));
        }
        let mut held = Vec::with_capacity(rows);
        let mut next = 0u64;
        for _ in 0..rows {
            let unit = next.saturating_add(r.varint()?);
            if unit >= units as u64 {
                return Err(BucketError::BadRow(MINUTES));
            }
            held.push(unit as u16);
            next = unit + 1;
        }
        Ok((held, r.take(8 * rows)?))
    }

    /// Calls `f(unit, bytes)` for each unit of `grain` the bucket holds, reading nothing but
    /// the units and the bytes: what a query of bytes needs. A bucket without the five-minute
    /// rollup calls it once for each minute of a block, in order.
    pub fn bytes(&self, grain: Grain, mut f: impl FnMut(usize, u64)) -> Result<(), BucketError> {
        let (i, _, stored) = self.sections_of(grain);
        // Stored units to a unit of the walk.
        let per = grain.minutes() / stored.minutes();
        let b = match self.version {
            1 => {
                let units = grain.units() - 1;
                return self.visit(grain, units, |m, b, _, _| f(m, b), None::<fn(StatusCount)>);
            }
            2 => self.rows,
            _ => self.section(i)?,
        };
        let mut r = Reader { b, at: 0 };
        let (held, bytes) = self.columns(&mut r, stored.units())?;
        for (&u, chunk) in held.iter().zip(bytes.chunks_exact(8)) {
            f(usize::from(u) / per, le_u64(chunk));
        }
        Ok(())
    }

    /// Whether the run is folded in.
    pub fn holds(&self, run: RunId) -> bool {
        self.runs.binary_search(&run).is_ok()
    }

    /// Decodes the rows into a whole bucket.
    pub fn into_bucket(self) -> Result<DayBucket, BucketError> {
        let mut bucket = DayBucket::new(self.domain.clone(), self.day);
        bucket.statuses = self.rows(|m, bytes, requests, https| {
            bucket.minutes[m] = bytes;
            bucket.requests[m] = requests;
            bucket.https[m] = https;
        })?;
        // The rollup is checked too: a bucket decoded whole is one about to be trusted.
        if self.version >= 3 {
            self.section(0)?;
            self.section(1)?;
        }
        bucket.seq = self.seq;
        bucket.runs = self.runs;
        Ok(bucket)
    }

    /// Calls `f(minute, bytes, requests, https)` for each minute the bucket holds (a version-1
    /// bucket: each minute with bytes), in order, and returns the status counts. An error
    /// (rows out of order or range, trailing bytes) can come after some calls.
    pub fn rows(
        &self,
        f: impl FnMut(usize, u64, u64, u64),
    ) -> Result<Vec<StatusCount>, BucketError> {
        let mut statuses = Vec::new();
        self.visit(Grain::Minute, MINUTES - 1, f, Some(|s| statuses.push(s)))?;
        if self.version >= 3 {
            // Stored code by code: each code's run is in minute order, and a stable sort
            // merges the runs.
            statuses.sort_by_key(|s| (s.minute, s.code));
        }
        Ok(statuses)
    }

    /// [`Parsed::rows`] at `grain` up to unit `last` of the day (the rest left unread, the
    /// status counts too): what a query of bytes, HTTPS bytes or requests needs. A bucket
    /// without the five-minute rollup calls `f` once for each minute of a block.
    pub fn measures(
        &self,
        grain: Grain,
        last: usize,
        f: impl FnMut(usize, u64, u64, u64),
    ) -> Result<(), BucketError> {
        self.visit(grain, last, f, None::<fn(StatusCount)>)
    }

    /// [`Parsed::measures`], with each status count of those units handed to `g` as it is
    /// read (`minute` holding the unit), instead of collected: code by code, units ascending
    /// within a code (version 2: in (unit, code) order). A bucket without the five-minute
    /// rollup hands over a block's counts minute by minute.
    pub fn rows_and_statuses(
        &self,
        grain: Grain,
        last: usize,
        f: impl FnMut(usize, u64, u64, u64),
        g: impl FnMut(StatusCount),
    ) -> Result<(), BucketError> {
        self.visit(grain, last, f, Some(g))
    }

    /// Walks the rows at `grain` up to unit `last` (all of them, with every check of the
    /// encoding, when `last` is the day's last unit).
    fn visit(
        &self,
        grain: Grain,
        last: usize,
        mut f: impl FnMut(usize, u64, u64, u64),
        statuses: Option<impl FnMut(StatusCount)>,
    ) -> Result<(), BucketError> {
        let (rows_at, statuses_at, stored) = self.sections_of(grain);
        let units = stored.units();
        // Stored units to a unit of the walk.
        let per = grain.minutes() / stored.minutes();
        // The last stored unit to read.
        let last_stored = last.saturating_mul(per).saturating_add(per - 1);
        let mut r = Reader {
            b: if self.version >= 3 {
                self.section(rows_at)?
            } else {
                self.rows
            },
            at: 0,
        };
        if self.version == 1 {
            for (m, chunk) in r.take(8 * MINUTES)?.chunks_exact(8).enumerate() {
                let v = le_u64(chunk);
                if v != 0 && m <= last_stored {
                    f(m / per, v, 0, 0);
                }
            }
            if r.left() > 0 {
                return Err(BucketError::Trailing(r.left()));
            }
            return Ok(());
        }
        let (held, bytes) = self.columns(&mut r, units)?;
        let mut requests = Reader {
            b: {
                let n = r.u32()? as usize;
                r.take(n)?
            },
            at: 0,
        };
        let mut https = Reader {
            b: {
                let n = r.u32()? as usize;
                r.take(n)?
            },
            at: 0,
        };
        let mut stopped = false;
        for (&u, chunk) in held.iter().zip(bytes.chunks_exact(8)) {
            if usize::from(u) > last_stored {
                stopped = true;
                break;
            }
            f(
                usize::from(u) / per,
                le_u64(chunk),
                requests.varint()?,
                https.varint()?,
            );
        }
        if !stopped && (requests.left() > 0 || https.left() > 0) {
            return Err(BucketError::Trailing(requests.left() + https.left()));
        }
        let Some(mut out) = statuses else {
            return Ok(());
        };
        if self.version >= 3 {
            if r.left() > 0 {
                return Err(BucketError::Trailing(r.left()));
            }
            let b = self.section(statuses_at)?;
            return walk_statuses(b, units, per, last_stored, out);
        }
        let n = r.u32()? as usize;
        let mut prev = 0u64;
        let mut before: Option<(u16, u16)> = None;
        for _ in 0..n {
            let unit = prev.saturating_add(r.varint()?);
            let code = r.varint()?;
            let (Ok(unit16), Ok(code)) = (u16::try_from(unit), u16::try_from(code)) else {
                return Err(BucketError::BadRow(MINUTES));
            };
            let count = r.varint()?;
            prev = unit;
            if usize::from(unit16) >= units || before.is_some_and(|l| l >= (unit16, code)) {
                return Err(BucketError::BadRow(usize::from(unit16)));
            }
            if usize::from(unit16) > last_stored {
                return Ok(());
            }
            before = Some((unit16, code));
            out(StatusCount {
                minute: unit16 / per as u16,
                code,
                count,
            });
        }
        if r.left() > 0 {
            return Err(BucketError::Trailing(r.left()));
        }
        Ok(())
    }
}

/// Appends rows as laid out in a rows section: the count of units held (any measure not
/// zero), the gaps before them, their bytes fixed-width (so that a query of bytes reads
/// nothing else), then the requests and HTTPS bytes as varints, each after its length.
fn encode_rows(out: &mut Vec<u8>, bytes: &[u64], requests: &[u64], https: &[u64]) {
    let held: Vec<u16> = (0..bytes.len())
        .filter(|&i| (bytes[i] | requests[i] | https[i]) != 0)
        .map(|i| i as u16)
        .collect();
    // A gap, the bytes and two short varints a row, mostly.
    out.reserve(24 * held.len() + 12);
    out.extend_from_slice(&(held.len() as u32).to_le_bytes());
    let mut next = 0;
    for &i in &held {
        put_varint(out, u64::from(i - next));
        next = i + 1;
    }
    for &i in &held {
        out.extend_from_slice(&bytes[usize::from(i)].to_le_bytes());
    }
    for column in [requests, https] {
        // The length goes first: written once the varints are.
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        for &i in &held {
            put_varint(out, column[usize::from(i)]);
        }
        let len = (out.len() - at - 4) as u32;
        out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    }
}

/// Appends status counts (in any order) as laid out in a version-3 status section:
/// the count of codes, then for each code, ascending: the code, its entry count, the byte
/// length of its entries, and the entries: the units skipped since the previous entry of the
/// code, and the requests; all varints.
fn encode_statuses(out: &mut Vec<u8>, statuses: &[StatusCount]) {
    // Cells keep their counts sorted by (unit, code), each once: every code's units are then
    // ascending as they come. Any other list is sorted by (code, unit) first, and a (unit,
    // code) named twice (the bucket's own rule says it must not) is written summed rather
    // than as a gap that does not fit.
    let sorted = statuses
        .windows(2)
        .all(|w| (w[0].minute, w[0].code) < (w[1].minute, w[1].code));
    let mut by_code = Vec::new();
    let statuses = if sorted {
        statuses
    } else {
        by_code.extend_from_slice(statuses);
        by_code.sort_by_key(|s| (s.code, s.minute));
        by_code.dedup_by(|later, kept| {
            let same = (later.code, later.minute) == (kept.code, kept.minute);
            if same {
                kept.count = kept.count.saturating_add(later.count);
            }
            same
        });
        &by_code[..]
    };
    // One pass: each count goes straight into its code's column, encoded.
    let mut columns: Vec<Column> = Vec::new();
    let mut at = 0;
    for s in statuses {
        if columns.get(at).is_none_or(|c| c.code != s.code) {
            at = match columns.iter().position(|c| c.code == s.code) {
                Some(i) => i,
                None => {
                    columns.push(Column {
                        code: s.code,
                        count: 0,
                        next: 0,
                        entries: Vec::with_capacity(3 * statuses.len() / 4 + 8),
                    });
                    columns.len() - 1
                }
            };
        }
        let c = &mut columns[at];
        put_varint(&mut c.entries, u64::from(s.minute - c.next));
        put_varint(&mut c.entries, s.count);
        c.next = s.minute + 1;
        c.count += 1;
    }
    columns.sort_unstable_by_key(|c| c.code);
    put_varint(out, columns.len() as u64);
    for c in &columns {
        put_varint(out, u64::from(c.code));
        put_varint(out, c.count);
        put_varint(out, c.entries.len() as u64);
        out.extend_from_slice(&c.entries);
    }
}

/// Minutes in an hour row.
const HOUR_MINUTES: usize = 60;

/// One origin status code's requests over one hour of a day, minute by minute: a day's status
/// counts as the batch holds them (see [`DayBucket::encode_with_hours`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusHour {
    /// The origin's HTTP status code.
    pub code: u16,
    /// The hour of the day, 0 to 23.
    pub hour: u8,
    /// Requests per minute of the hour.
    pub counts: [u64; HOUR_MINUTES],
}

/// Hands `f` the rows by (code, hour), rows of the same (code, hour) summed (saturating, as a
/// list naming one count twice is written), rows past hour 23 left out. An order of keys is
/// sorted, not the rows: a row is 500 bytes.
fn for_each_hour(hours: &[StatusHour], mut f: impl FnMut(u16, u8, &[u64; HOUR_MINUTES])) {
    let mut order: Vec<(u16, u8, u32)> = hours
        .iter()
        .enumerate()
        .filter(|(_, h)| usize::from(h.hour) < MINUTES / HOUR_MINUTES)
        .map(|(i, h)| (h.code, h.hour, i as u32))
        .collect();
    order.sort_unstable();
    for same in order.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
        let (code, hour, first) = same[0];
        let counts = &hours[first as usize].counts;
        if same.len() == 1 {
            f(code, hour, counts);
        } else {
            let mut sum = *counts;
            for &(.., i) in &same[1..] {
                for (a, &b) in sum.iter_mut().zip(&hours[i as usize].counts) {
                    *a = a.saturating_add(b);
                }
            }
            f(code, hour, &sum);
        }
    }
}

/// One code's columns while hour rows are encoded: by the minute (`[0]`) and by five minutes
/// (`[1]`), each an entry count and a range of its entries.
struct HourColumn {
    code: u16,
    n: [u64; 2],
    start: [usize; 2],
    end: [usize; 2],
}

/// Appends hour rows as version-3 status sections, laid out as [`encode_statuses`] lays them
/// out: by the minute to `minutes`, and by five minutes to `fives`; both in one walk of the
/// rows. `false` when a five-minute sum passes 2^64 - 1 (then `fives` is to be thrown away).
fn encode_status_hours(hours: &[StatusHour], minutes: &mut Vec<u8>, fives: &mut Vec<u8>) -> bool {
    let mut entries = [
        Vec::with_capacity(hours.len() * 4 * HOUR_MINUTES),
        Vec::with_capacity(hours.len() * HOUR_MINUTES),
    ];
    let mut columns: Vec<HourColumn> = Vec::new();
    let mut next = [0u64; 2];
    let mut fits = true;
    for_each_hour(hours, |code, hour, counts| {
        let at = [entries[0].len(), entries[1].len()];
        if columns.last().is_none_or(|c| c.code != code) {
            columns.push(HourColumn {
                code,
                n: [0; 2],
                start: at,
                end: at,
            });
            next = [0; 2];
        }
        let Some(column) = columns.last_mut() else {
            return;
        };
        let hour = u64::from(hour);
        // Most codes are rare: their rows are mostly zeros, skipped by their bits.
        let held = counts
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, &c)| m | u64::from(c != 0) << i);
        let mut bits = held;
        while bits != 0 {
            let m = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let unit = hour * HOUR_MINUTES as u64 + m as u64;
            put_varint(&mut entries[0], unit - next[0]);
            put_varint(&mut entries[0], counts[m]);
            next[0] = unit + 1;
            column.n[0] += 1;
        }
        for (u, five) in counts.chunks_exact(5).enumerate() {
            if held >> (5 * u) & 0x1f == 0 {
                continue;
            }
            let Some(count) = five.iter().try_fold(0u64, |a, &b| a.checked_add(b)) else {
                fits = false;
                continue;
            };
            if count > 0 {
                let unit = hour * (HOUR_MINUTES / 5) as u64 + u as u64;
                put_varint(&mut entries[1], unit - next[1]);
                put_varint(&mut entries[1], count);
                next[1] = unit + 1;
                column.n[1] += 1;
            }
        }
        column.end = [entries[0].len(), entries[1].len()];
    });
    for (k, out) in [minutes, fives].into_iter().enumerate() {
        let held = columns.iter().filter(|c| c.n[k] > 0);
        put_varint(out, held.clone().count() as u64);
        for c in held {
            put_varint(out, u64::from(c.code));
            put_varint(out, c.n[k]);
            put_varint(out, (c.end[k] - c.start[k]) as u64);
            out.extend_from_slice(&entries[k][c.start[k]..c.end[k]]);
        }
    }
    fits
}

/// One code's column of a status section, as it is encoded.
struct Column {
    code: u16,
    count: u64,
    /// The unit after the last one written.
    next: u16,
    entries: Vec<u8>,
}

/// Hands each status count of a version-3 status section up to stored unit `last` to `out`,
/// code by code (units ascending within a code), with its unit divided by `per`; every check
/// of the encoding made on what is read, and all of it when `last` is the day's last unit.
fn walk_statuses(
    b: &[u8],
    units: usize,
    per: usize,
    last: usize,
    mut out: impl FnMut(StatusCount),
) -> Result<(), BucketError> {
    let mut r = Reader { b, at: 0 };
    let codes = r.varint()?;
    let mut before: Option<u16> = None;
    for _ in 0..codes {
        let code = u16::try_from(r.varint()?).map_err(|_| BucketError::BadRow(MINUTES))?;
        if before.is_some_and(|c| c >= code) {
            return Err(BucketError::BadRow(MINUTES));
        }
        before = Some(code);
        let n = r.varint()?;
        let len = usize::try_from(r.varint()?).map_err(|_| BucketError::Truncated(b.len()))?;
        let mut e = Reader {
            b: r.take(len)?,
            at: 0,
        };
        let mut next = 0u64;
        let mut stopped = false;
        for _ in 0..n {
            let unit = next.saturating_add(e.varint()?);
            let count = e.varint()?;
            if unit >= units as u64 {
                return Err(BucketError::BadRow(MINUTES));
            }
            if unit > last as u64 {
                stopped = true;
                break;
            }
            out(StatusCount {
                minute: (unit as usize / per) as u16,
                code,
                count,
            });
            next = unit + 1;
        }
        if !stopped && e.left() > 0 {
            return Err(BucketError::Trailing(e.left()));
        }
    }
    if r.left() > 0 {
        return Err(BucketError::Trailing(r.left()));
    }
    Ok(())
}

/// Appends `v` as an unsigned LEB128 varint: 7 bits a byte, low first.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn le_u32(chunk: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&chunk[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(chunk: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(chunk);
    u64::from_le_bytes(a)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BucketError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or(BucketError::Truncated(self.b.len() + 4))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn left(&self) -> usize {
        self.b.len() - self.at
    }
    fn u16(&mut self) -> Result<u16, BucketError> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, BucketError> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, BucketError> {
        Ok(le_u64(self.take(8)?))
    }
    #[inline]
    fn varint(&mut self) -> Result<u64, BucketError> {
        // Most values (counts, small deltas) are one byte; status codes, request counts and
        // many HTTPS totals two.
        if let Some(&b) = self.b.get(self.at) {
            if b < 0x80 {
                self.at += 1;
                return Ok(u64::from(b));
            }
            if let Some(&c) = self.b.get(self.at + 1)
                && c < 0x80
            {
                self.at += 2;
                return Ok(u64::from(b & 0x7f) | u64::from(c) << 7);
            }
        }
        self.varint_long()
    }

    fn varint_long(&mut self) -> Result<u64, BucketError> {
        let rest = self.b.get(self.at..).unwrap_or_default();
        // Up to eight bytes at once: the end is the first byte without its high bit, found in
        // one word rather than tested byte by byte (HTTPS bytes and request counts are mostly
        // two to four bytes, and a 100-domain day's query reads over half a million).
        if let Some(w) = rest.get(..8) {
            let w = u64::from_le_bytes(w.try_into().unwrap_or([0xff; 8]));
            let ends = !w & 0x8080_8080_8080_8080;
            if ends != 0 {
                let len = (ends.trailing_zeros() / 8 + 1) as usize;
                let mut v = 0u64;
                for i in 0..len {
                    v |= ((w >> (8 * i)) & 0x7f) << (7 * i);
                }
                self.at += len;
                return Ok(v);
            }
        }
        let mut v = 0u64;
        for (i, &b) in rest.iter().take(10).enumerate() {
            let bits = u64::from(b & 0x7f);
            // The tenth byte may hold one bit only.
            if i == 9 && bits > 1 {
                return Err(BucketError::BadRow(MINUTES));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                self.at += i + 1;
                return Ok(v);
            }
        }
        if rest.len() < 10 {
            Err(BucketError::Truncated(self.b.len() + 4))
        } else {
            Err(BucketError::BadRow(MINUTES))
        }
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
    fn a_walk_up_to_a_minute_stops_there_and_a_whole_walk_sees_everything() {
        let mut b = sample();
        for (m, code) in [(10u16, 200u16), (10, 404), (1200, 200), (1439, 502)] {
            b.requests[usize::from(m)] += 1;
            b.https[usize::from(m)] += 3;
            b.statuses.push(StatusCount {
                minute: m,
                code,
                count: 1,
            });
        }
        b.minutes[10] = 1;
        let enc = b.encode();
        let p = DayBucket::parse(&enc).unwrap();
        let walk = |last: usize| {
            let (mut rows, mut codes) = (Vec::new(), Vec::new());
            p.rows_and_statuses(
                Grain::Minute,
                last,
                |m, b, r, h| rows.push((m, b, r, h)),
                |s| codes.push(s),
            )
            .unwrap();
            (rows, codes)
        };
        let (rows, mut codes) = walk(1200);
        assert_eq!(rows, [(10, 1, 2, 6), (1200, 7, 1, 3)]);
        codes.sort();
        assert_eq!(
            codes.iter().map(|s| (s.minute, s.code)).collect::<Vec<_>>(),
            [(10, 200), (10, 404), (1200, 200)]
        );
        let (rows, codes) = walk(MINUTES - 1);
        assert_eq!(rows.len(), 3);
        assert_eq!(codes.len(), 4);
        assert_eq!(p.rows(|_, _, _, _| {}).unwrap(), b.statuses);
        let mut seen = 0;
        p.measures(Grain::Minute, 9, |_, _, _, _| seen += 1)
            .unwrap();
        assert_eq!(seen, 0);
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
        assert!(DayBucket::decode(&enc[..enc.len() - 1]).is_err());
        assert!(DayBucket::decode(&enc[..3]).is_err());
    }

    /// What earlier releases wrote: version 1, bytes only.
    fn encode_v1(b: &DayBucket) -> Vec<u8> {
        let d = b.domain.as_str().as_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        out.extend_from_slice(&b.day.0.to_le_bytes());
        out.extend_from_slice(d);
        out.extend_from_slice(&(b.runs.len() as u32).to_le_bytes());
        for r in &b.runs {
            out.extend_from_slice(&r.0);
        }
        for m in b.minutes.iter() {
            out.extend_from_slice(&m.to_le_bytes());
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// What the release before wrote: version 2, every measure, one checksum, no rollup.
    fn encode_v2(b: &DayBucket) -> Vec<u8> {
        let d = b.domain.as_str().as_bytes();
        let mut out = Vec::new();
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&(d.len() as u16).to_le_bytes());
        out.extend_from_slice(&b.day.0.to_le_bytes());
        out.extend_from_slice(d);
        out.extend_from_slice(&b.seq.to_le_bytes());
        out.extend_from_slice(&(b.runs.len() as u32).to_le_bytes());
        for r in &b.runs {
            out.extend_from_slice(&r.0);
        }
        encode_rows(&mut out, &b.minutes[..], &b.requests[..], &b.https[..]);
        out.extend_from_slice(&(b.statuses.len() as u32).to_le_bytes());
        let mut prev = 0;
        for s in &b.statuses {
            put_varint(&mut out, u64::from(s.minute - prev));
            put_varint(&mut out, u64::from(s.code));
            put_varint(&mut out, s.count);
            prev = s.minute;
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// A bucket with every measure in a few minutes, some in one five-minute block.
    fn busy() -> DayBucket {
        let mut b = sample();
        for (m, code, n) in [
            (10u16, 200u16, 2u64),
            (11, 404, 1),
            (12, 200, 5),
            (1200, 200, 1),
        ] {
            b.requests[usize::from(m)] += n;
            b.https[usize::from(m)] += 3 * n;
            b.statuses.push(StatusCount {
                minute: m,
                code,
                count: n,
            });
        }
        b.minutes[11] = 9;
        b
    }

    /// Everything a walk at `grain` hands over, summed per unit.
    fn walk(p: &Parsed<'_>, grain: Grain) -> (BTreeMapU, BTreeMapU) {
        let (mut rows, mut codes) = (BTreeMapU::new(), BTreeMapU::new());
        p.rows_and_statuses(
            grain,
            grain.units() - 1,
            |u, b, r, h| {
                let e = rows.entry((u, 0)).or_insert([0u128; 3]);
                e[0] += u128::from(b);
                e[1] += u128::from(r);
                e[2] += u128::from(h);
            },
            |s| {
                codes
                    .entry((usize::from(s.minute), s.code))
                    .or_insert([0; 3])[0] += u128::from(s.count)
            },
        )
        .unwrap();
        let mut bytes = BTreeMapU::new();
        p.bytes(grain, |u, b| {
            if b > 0 {
                bytes.entry((u, 0)).or_insert([0; 3])[0] += u128::from(b);
            }
        })
        .unwrap();
        let only_bytes: BTreeMapU = rows
            .iter()
            .filter(|(_, v)| v[0] > 0)
            .map(|(k, v)| (*k, [v[0], 0, 0]))
            .collect();
        assert_eq!(bytes, only_bytes, "the bytes-only walk agrees");
        (rows, codes)
    }

    type BTreeMapU = std::collections::BTreeMap<(usize, u16), [u128; 3]>;

    /// The minute walk summed into five-minute blocks.
    fn by_block(m: &BTreeMapU) -> BTreeMapU {
        let mut out = BTreeMapU::new();
        for (&(u, c), v) in m {
            let e = out.entry((u / 5, c)).or_insert([0; 3]);
            for i in 0..3 {
                e[i] += v[i];
            }
        }
        out
    }

    #[test]
    fn the_five_minute_walk_sums_the_minutes_for_every_version() {
        let b = busy();
        for enc in [b.encode(), encode_v2(&b), encode_v1(&sample())] {
            let p = DayBucket::parse(&enc).unwrap();
            let (rows, codes) = walk(&p, Grain::Minute);
            let (five_rows, five_codes) = walk(&p, Grain::FiveMinutes);
            assert_eq!(five_rows, by_block(&rows));
            assert_eq!(five_codes, by_block(&codes));
        }
        let enc = b.encode();
        let p = DayBucket::parse(&enc).unwrap();
        let (rows, codes) = walk(&p, Grain::FiveMinutes);
        // Minutes 10 to 12 are block 2; 1,200 is block 240.
        assert_eq!(rows[&(2, 0)], [9, 8, 24]);
        assert_eq!(
            codes.keys().copied().collect::<Vec<_>>(),
            [(2, 200), (2, 404), (240, 200)]
        );
        assert_eq!(codes[&(2, 200)], [7, 0, 0]);
        // A walk up to a block stops there.
        let mut seen = Vec::new();
        p.measures(Grain::FiveMinutes, 239, |u, _, _, _| seen.push(u))
            .unwrap();
        assert_eq!(seen, [2]);
    }

    #[test]
    fn a_block_past_the_largest_total_leaves_the_rollup_out_and_walks_still_add_up() {
        let mut b = sample();
        // Minute 1,439 holds 2^64 - 1: its block would pass it.
        b.minutes[1438] = 1;
        let enc = b.encode();
        let p = DayBucket::parse(&enc).unwrap();
        assert_eq!(p.sections_of(Grain::FiveMinutes).0, 2);
        let (rows, _) = walk(&p, Grain::Minute);
        let (five, _) = walk(&p, Grain::FiveMinutes);
        assert_eq!(five, by_block(&rows));
        assert_eq!(five[&(287, 0)][0], u128::from(u64::MAX) + 1);
        assert_eq!(DayBucket::decode(&enc).unwrap(), b);
    }

    #[test]
    fn a_prefix_serves_the_rollup_and_checks_only_what_it_reads() {
        let b = busy();
        let enc = b.encode();
        let p = DayBucket::parse(&enc).unwrap();
        let head_and_rollup =
            enc.len() - p.sections[2].unwrap().bytes.len() - p.sections[3].unwrap().bytes.len();
        let rows_only = head_and_rollup - p.sections[1].unwrap().bytes.len();
        let five = |statuses| View {
            grain: Grain::FiveMinutes,
            statuses,
        };
        let minute = View {
            grain: Grain::Minute,
            statuses: false,
        };
        assert!(DayBucket::prefix_holds(&enc[..rows_only], five(false)));
        assert!(!DayBucket::prefix_holds(&enc[..rows_only], five(true)));
        assert!(DayBucket::prefix_holds(&enc[..head_and_rollup], five(true)));
        assert!(!DayBucket::prefix_holds(&enc[..head_and_rollup], minute));
        assert!(DayBucket::prefix_holds(&enc, minute));
        assert!(!DayBucket::prefix_holds(&encode_v2(&b), five(false)));
        assert!(!DayBucket::prefix_holds(&enc[..20], five(false)));
        // A prefix is no whole bucket.
        assert!(DayBucket::parse_for(&enc[..head_and_rollup], &b.domain, b.day).is_err());
        let part = DayBucket::parse_prefix_for(&enc[..head_and_rollup], &b.domain, b.day).unwrap();
        assert_eq!(
            walk(&part, Grain::FiveMinutes),
            walk(&p, Grain::FiveMinutes)
        );
        assert!(part.measures(Grain::Minute, 1439, |_, _, _, _| {}).is_err());
        // A damaged minute section does not stop a rollup walk; a damaged rollup does.
        let mut bad = enc.clone();
        bad[head_and_rollup + 2] ^= 1;
        let p = DayBucket::parse_prefix_for(&bad, &b.domain, b.day).unwrap();
        assert!(p.measures(Grain::FiveMinutes, 287, |_, _, _, _| {}).is_ok());
        assert_eq!(
            p.measures(Grain::Minute, 1439, |_, _, _, _| {}),
            Err(BucketError::Checksum)
        );
        let mut bad = enc.clone();
        bad[rows_only - 3] ^= 1;
        let p = DayBucket::parse_prefix_for(&bad, &b.domain, b.day).unwrap();
        assert_eq!(
            p.bytes(Grain::FiveMinutes, |_, _| {}),
            Err(BucketError::Checksum)
        );
        assert!(p.bytes(Grain::Minute, |_, _| {}).is_ok());
    }

    #[test]
    fn status_counts_in_any_order_or_named_twice_are_written_once_each() {
        let mut b = busy();
        let sorted = b.clone();
        b.statuses.reverse();
        assert_eq!(DayBucket::decode(&b.encode()).unwrap(), sorted);
        b.statuses.push(StatusCount {
            minute: 10,
            code: 200,
            count: 5,
        });
        let got = DayBucket::decode(&b.encode()).unwrap();
        let at = |b: &DayBucket| {
            b.statuses
                .iter()
                .filter(|s| (s.minute, s.code) == (10, 200))
                .map(|s| s.count)
                .collect::<Vec<_>>()
        };
        assert_eq!(at(&got), [at(&sorted)[0] + 5]);
    }

    #[test]
    fn version_2_buckets_still_read() {
        let b = busy();
        let v2 = encode_v2(&b);
        assert_eq!(DayBucket::decode(&v2).unwrap(), b);
        assert_eq!(DayBucket::decode(&b.encode()).unwrap(), b);
    }

    #[test]
    fn version_1_buckets_still_read() {
        let b = sample();
        let v1 = encode_v1(&b);
        assert_eq!(v1.len(), 16 + 11 + 4 + 16 + 8 * MINUTES + 4);
        assert_eq!(DayBucket::decode(&v1).unwrap(), b);
        // Folding into a version-1 bucket keeps its runs: a run it holds stays held.
        let mut up = DayBucket::decode(&v1).unwrap();
        assert_eq!(up.apply(RunId([1; 16]), &[1; MINUTES]), Ok(false));
        assert_eq!(DayBucket::decode(&up.encode()).unwrap(), b);
    }

    #[test]
    fn every_measure_round_trips_and_adds() {
        let d = DomainName::parse("a.example").unwrap();
        let mut cell = DayBucket::new(d.clone(), Day(3));
        cell.minutes[5] = 100;
        cell.requests[5] = 2;
        cell.https[5] = 60;
        cell.requests[9] = 1;
        cell.statuses = vec![
            StatusCount {
                minute: 5,
                code: 200,
                count: 1,
            },
            StatusCount {
                minute: 5,
                code: 404,
                count: 1,
            },
            StatusCount {
                minute: 9,
                code: 304,
                count: 1,
            },
        ];
        let enc = cell.encode();
        assert_eq!(DayBucket::decode(&enc).unwrap(), cell);
        let mut base = DayBucket::new(d, Day(3));
        assert_eq!(base.fold(RunId([7; 16]), 4, &cell), Ok(true));
        assert_eq!(base.fold(RunId([8; 16]), 9, &cell), Ok(true));
        assert_eq!(base.fold(RunId([8; 16]), 9, &cell), Ok(false));
        assert_eq!(
            (base.minutes[5], base.requests[5], base.https[5]),
            (200, 4, 120)
        );
        assert_eq!(base.seq, 9);
        assert_eq!(
            base.statuses
                .iter()
                .map(|s| (s.minute, s.code, s.count))
                .collect::<Vec<_>>(),
            [(5, 200, 2), (5, 404, 2), (9, 304, 2)]
        );
        assert_eq!(DayBucket::decode(&base.encode()).unwrap(), base);
    }

    /// Varints read a byte at a time, the plain way.
    fn varint_bytewise(b: &[u8]) -> Option<(u64, usize)> {
        let mut v = 0u64;
        for (i, &c) in b.iter().take(10).enumerate() {
            let bits = u64::from(c & 0x7f);
            if i == 9 && bits > 1 {
                return None;
            }
            v |= bits << (7 * i);
            if c & 0x80 == 0 {
                return Some((v, i + 1));
            }
        }
        None
    }

    proptest! {
        /// Every value comes back whatever follows it, and any bytes read as the plain
        /// byte-at-a-time reading reads them.
        #[test]
        fn varints_read_back_and_agree_with_the_bytewise_reading(
            v in any::<u64>(),
            shift in 0u32..64,
            after in prop::collection::vec(any::<u8>(), 0..12),
            raw in prop::collection::vec(prop_oneof![any::<u8>(), 0x80u8..=0xff], 0..14),
        ) {
            let v = v >> shift;
            let mut b = Vec::new();
            put_varint(&mut b, v);
            let len = b.len();
            b.extend_from_slice(&after);
            let mut r = Reader { b: &b, at: 0 };
            prop_assert_eq!(r.varint().ok(), Some(v));
            prop_assert_eq!(r.at, len);
            let mut r = Reader { b: &raw, at: 0 };
            let got = r.varint().ok().map(|v| (v, r.at));
            prop_assert_eq!(got, varint_bytewise(&raw));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_decoder(b in proptest::collection::vec(any::<u8>(), 0..12_000)) {
            let _ = DayBucket::decode(&b);
        }

        #[test]
        fn any_contents_round_trip(
            rows in proptest::collection::vec((0usize..MINUTES, any::<u64>(), any::<u64>(), any::<u64>()), 0..60),
            codes in proptest::collection::btree_map((0u16..1440, 100u16..600), 1u64..u64::MAX, 0..40),
            last in 0usize..MINUTES,
        ) {
            let mut b = DayBucket::new(DomainName::parse("a.com").unwrap(), Day(-3));
            for (m, x, y, z) in rows {
                b.minutes[m] = x;
                b.requests[m] = y;
                b.https[m] = z;
            }
            b.statuses = codes.into_iter().map(|((minute, code), count)| StatusCount { minute, code, count }).collect();
            b.seq = u64::MAX;
            let enc = b.encode();
            // Counts in another order are written the same (the sorted list in one pass, any
            // other through a sort).
            let mut reordered = b.clone();
            reordered.statuses.reverse();
            let turn = last % reordered.statuses.len().max(1);
            reordered.statuses.rotate_left(turn);
            prop_assert_eq!(&reordered.encode(), &enc);
            // The same counts as hour rows, in any order and some split in two, encode the same.
            let mut hours: Vec<StatusHour> = Vec::new();
            for (i, s) in reordered.statuses.iter().enumerate() {
                let (hour, m) = ((s.minute / 60) as u8, usize::from(s.minute % 60));
                let mut row = StatusHour { code: s.code, hour, counts: [0; 60] };
                match hours.iter_mut().find(|h| (h.code, h.hour) == (s.code, hour)) {
                    Some(h) if i % 3 != 0 => h.counts[m] = s.count,
                    _ => {
                        row.counts[m] = s.count;
                        hours.push(row);
                    }
                }
            }
            let mut with_hours = b.clone();
            with_hours.statuses.clear();
            prop_assert_eq!(&with_hours.encode_with_hours(&hours), &enc);
            prop_assert_eq!(&DayBucket::statuses_of_hours(&hours), &b.statuses);
            prop_assert_eq!(DayBucket::decode(&enc).unwrap(), b.clone());
            // The rollup (or, past 2^64 - 1, the minutes in its place) sums to the minutes.
            let p = DayBucket::parse(&enc).unwrap();
            let (rows, codes) = walk(&p, Grain::Minute);
            prop_assert_eq!(walk(&p, Grain::FiveMinutes), (by_block(&rows), by_block(&codes)));
            prop_assert_eq!(DayBucket::decode(&encode_v2(&b)).unwrap(), b.clone());
            // A walk up to a minute sees exactly the counts up to it, column by column.
            let mut seen = Vec::new();
            p.rows_and_statuses(Grain::Minute, last, |_, _, _, _| {}, |s| seen.push(s)).unwrap();
            seen.sort();
            let want: Vec<StatusCount> = b.statuses.iter().filter(|s| usize::from(s.minute) <= last).copied().collect();
            prop_assert_eq!(seen, want);
        }

        /// Adding a cell as parsed does what adding it decoded does, for every version, and
        /// a sum past 2^64 - 1 fails the same way and changes nothing.
        #[test]
        fn adding_parsed_equals_adding_decoded(
            base in proptest::collection::vec((0usize..MINUTES, 0u64..4, 0u64..4, 0u64..4), 0..40),
            cell in proptest::collection::vec((0usize..MINUTES, any::<u64>(), 0u64..4, 0u64..4), 0..40),
            base_codes in proptest::collection::btree_map((0u16..1440, 200u16..205), 1u64..9, 0..20),
            cell_codes in proptest::collection::btree_map((0u16..1440, 200u16..205), 1u64..9, 0..20),
            small in any::<bool>(),
        ) {
            let d = DomainName::parse("a.com").unwrap();
            let make = |rows: &[(usize, u64, u64, u64)], codes: &std::collections::BTreeMap<(u16, u16), u64>, shift: u32| {
                let mut b = DayBucket::new(d.clone(), Day(2));
                for &(m, x, y, z) in rows {
                    (b.minutes[m], b.requests[m], b.https[m]) = (x >> shift, y, z);
                }
                b.statuses = codes.iter().map(|(&(minute, code), &count)| StatusCount { minute, code, count }).collect();
                b
            };
            let mut a = make(&base, &base_codes, 0);
            // Base totals within 3 of 2^64 - 1: a cell's bytes meeting one mostly pass it
            // (`small` keeps them under 2^24, so that some sums still fit).
            for m in a.minutes.iter_mut().filter(|m| **m > 0) {
                *m += u64::MAX - 3;
            }
            let c = make(&cell, &cell_codes, if small { 40 } else { 0 });
            let enc = c.encode();
            for version in [3u16, 2] {
                let bytes = if version == 3 { enc.clone() } else { encode_v2(&c) };
                let parsed = DayBucket::parse(&bytes).unwrap();
                let (mut x, mut y) = (a.clone(), a.clone());
                let (rx, ry) = (x.add(&c), y.add_parsed(&parsed));
                prop_assert_eq!(&rx, &ry);
                prop_assert_eq!(&x, &y);
                if rx.is_err() {
                    prop_assert_eq!(&y, &a);
                }
            }
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
