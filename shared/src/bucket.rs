//! The per-(domain, UTC day) cell: per minute the origin bytes, the origin requests, the bytes
//! fetched over HTTPS and the requests per origin status code; plus which published runs it
//! holds, so that folding a run twice is a no-op and readers can tell a bucket newer than the
//! manifest they read.
//!
//! Two layouts, all integers little-endian (documented in the README too). Both open with
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 8 | magic `SRCTBKT\0` |
//! | 8 | 2 | format version, `1` or `2` |
//! | 10 | 2 | domain length `L` |
//! | 12 | 4 | day, signed days since 1970-01-01 |
//! | 16 | L | domain, ASCII |
//!
//! Version 1 (written by earlier releases, still read) goes on with the run count `R` (4), the
//! run ids (16·R), then 1,440 byte totals (8 each, minute 0 = 00:00Z first): bytes only.
//!
//! Version 2 (written now) goes on with
//!
//! | size | field |
//! | --- | --- |
//! | 8 | highest publish sequence number folded in (0: none) |
//! | 4 | run count `R`, then 16·R run ids |
//! | 4 | row count `N` (no empty rows), then in columns: N varints of minutes skipped since the previous row; N × 8 bytes; u32 length + N varints of requests; u32 length + N varints of https bytes |
//! | 4 | status count `S`, then S entries of: minutes since the previous entry, status code, requests; each a varint; ascending (minute, code) |
//!
//! A varint is unsigned LEB128: 7 bits a byte, low bits first, the high bit set on all but the
//! last byte. Bytes are fixed-width so that a query walks minutes and bytes and skips the rest.
//!
//! Both end with a CRC-32 (IEEE) of every byte before it.

use crate::domain::DomainName;
use crate::time::Day;
use std::fmt;
use thiserror::Error;

/// The magic that opens every bucket.
pub const MAGIC: &[u8; 8] = b"SRCTBKT\0";
/// The format version this code writes. Version 1 is read too.
pub const VERSION: u16 = 2;
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

/// Adds `b` into `a` minute by minute, or changes nothing and names the first minute past
/// 2^64 - 1.
fn add_minutes(a: &mut [u64; MINUTES], b: &[u64; MINUTES]) -> Result<(), BucketError> {
    if let Some(i) = a
        .iter()
        .zip(b)
        .position(|(x, y)| x.checked_add(*y).is_none())
    {
        return Err(BucketError::Overflow(i));
    }
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
    Ok(())
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
        let mut minutes = self.minutes.clone();
        let mut requests = self.requests.clone();
        let mut https = self.https.clone();
        add_minutes(&mut minutes, &other.minutes)?;
        add_minutes(&mut requests, &other.requests)?;
        add_minutes(&mut https, &other.https)?;
        let statuses = if other.statuses.is_empty() {
            std::mem::take(&mut self.statuses)
        } else {
            merge_statuses(&self.statuses, &other.statuses)?
        };
        self.minutes = minutes;
        self.requests = requests;
        self.https = https;
        self.statuses = statuses;
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

    /// Encodes per version 2 of the layout in the module docs.
    pub fn encode(&self) -> Vec<u8> {
        let d = self.domain.as_str().as_bytes();
        let rows = (0..MINUTES)
            .filter(|&i| (self.minutes[i] | self.requests[i] | self.https[i]) != 0)
            .count();
        // Rows are laid out in columns: minute gaps, bytes, requests, https.
        let mut out = Vec::with_capacity(
            40 + d.len() + 16 * self.runs.len() + 12 * rows + 8 * self.statuses.len(),
        );
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
        out.extend_from_slice(&(rows as u32).to_le_bytes());
        let held: Vec<usize> = (0..MINUTES)
            .filter(|&i| (self.minutes[i] | self.requests[i] | self.https[i]) != 0)
            .collect();
        let mut next = 0;
        for &i in &held {
            put_varint(&mut out, (i - next) as u64);
            next = i + 1;
        }
        // Bytes fixed-width, so a query reads them without decoding anything else.
        for &i in &held {
            out.extend_from_slice(&self.minutes[i].to_le_bytes());
        }
        for column in [&self.requests, &self.https] {
            let mut col = Vec::with_capacity(held.len());
            for &i in &held {
                put_varint(&mut col, column[i]);
            }
            out.extend_from_slice(&(col.len() as u32).to_le_bytes());
            out.extend_from_slice(&col);
        }
        out.extend_from_slice(&(self.statuses.len() as u32).to_le_bytes());
        let mut prev = 0;
        for s in &self.statuses {
            put_varint(&mut out, u64::from(s.minute - prev));
            put_varint(&mut out, u64::from(s.code));
            put_varint(&mut out, s.count);
            prev = s.minute;
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes either version and checks magic, checksum and fields.
    pub fn decode(b: &[u8]) -> Result<DayBucket, BucketError> {
        DayBucket::parse(b)?.into_bucket()
    }

    /// Checks a bucket's magic, checksum and header and leaves its rows encoded: for readers
    /// that only walk them (a query), without filling three 1,440-minute arrays.
    pub fn parse(b: &[u8]) -> Result<Parsed<'_>, BucketError> {
        DayBucket::parse_inner(b, None, true)
    }

    fn parse_inner<'a>(
        b: &'a [u8],
        expected: Option<&DomainName>,
        check_crc: bool,
    ) -> Result<Parsed<'a>, BucketError> {
        let body_len = b
            .len()
            .checked_sub(4)
            .ok_or(BucketError::Truncated(b.len()))?;
        let mut r = Reader {
            b: &b[..body_len],
            at: 0,
        };
        if r.take(8)? != MAGIC {
            return Err(BucketError::BadMagic);
        }
        let version = r.u16()?;
        if version != 1 && version != 2 {
            return Err(BucketError::UnsupportedVersion(version));
        }
        // The checksum first: a damaged length must not send the reader astray.
        let stored = u32::from_le_bytes([
            b[body_len],
            b[body_len + 1],
            b[body_len + 2],
            b[body_len + 3],
        ]);
        if check_crc && crc32fast::hash(&b[..body_len]) != stored {
            return Err(BucketError::Checksum);
        }
        let dlen = r.u16()? as usize;
        let day = Day(r.u32()? as i32);
        let domain_bytes = r.take(dlen)?;
        // The name a reader expects needs no parsing: the same bytes are the same name.
        let domain = match expected {
            Some(d) if d.as_str().as_bytes() == domain_bytes => d.clone(),
            _ => std::str::from_utf8(domain_bytes)
                .ok()
                .and_then(DomainName::parse)
                .filter(|d| d.as_str().as_bytes() == domain_bytes)
                .ok_or(BucketError::BadDomain)?,
        };
        let seq = if version == 2 { r.u64()? } else { 0 };
        let nruns = r.u32()? as usize;
        let mut runs = Vec::with_capacity(nruns.min(r.left() / 16));
        for _ in 0..nruns {
            let mut id = [0u8; 16];
            id.copy_from_slice(r.take(16)?);
            runs.push(RunId(id));
        }
        runs.sort_unstable();
        Ok(Parsed {
            domain,
            day,
            seq,
            runs,
            version,
            rows: &r.b[r.at..],
        })
    }

    /// [`DayBucket::parse`], and checks that it holds `(domain, day)`.
    pub fn parse_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
    ) -> Result<Parsed<'a>, BucketError> {
        DayBucket::parse_checked_for(b, domain, day, true)
    }

    /// [`DayBucket::parse_for`] without verifying the checksum: for bytes verified already, or
    /// to read a header ahead of a decode that verifies them.
    pub fn parse_verified_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
    ) -> Result<Parsed<'a>, BucketError> {
        DayBucket::parse_checked_for(b, domain, day, false)
    }

    fn parse_checked_for<'a>(
        b: &'a [u8],
        domain: &DomainName,
        day: Day,
        check_crc: bool,
    ) -> Result<Parsed<'a>, BucketError> {
        let p = DayBucket::parse_inner(b, Some(domain), check_crc)?;
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
    rows: &'a [u8],
}

impl<'a> Parsed<'a> {
    /// The minutes held (ascending) and their fixed-width byte totals.
    fn columns(&self, r: &mut Reader<'a>) -> Result<(Vec<u16>, &'a [u8]), BucketError> {
        let rows = r.u32()? as usize;
        if rows > MINUTES {
            return Err(BucketError::BadRow(rows));
        }
        let mut minutes = Vec::with_capacity(rows);
        let mut next = 0u64;
        for _ in 0..rows {
            let minute = next.saturating_add(r.varint()?);
            if minute >= MINUTES as u64 {
                return Err(BucketError::BadRow(MINUTES));
            }
            minutes.push(minute as u16);
            next = minute + 1;
        }
        Ok((minutes, r.take(8 * rows)?))
    }

    /// Calls `f(minute, bytes)` for each minute the bucket holds, in order, reading nothing but
    /// the minutes and the bytes: what a query needs.
    pub fn bytes(&self, mut f: impl FnMut(usize, u64)) -> Result<(), BucketError> {
        if self.version == 1 {
            return self.visit(MINUTES - 1, |m, b, _, _| f(m, b), None::<fn(StatusCount)>);
        }
        let mut r = Reader {
            b: self.rows,
            at: 0,
        };
        let (minutes, bytes) = self.columns(&mut r)?;
        for (&m, chunk) in minutes.iter().zip(bytes.chunks_exact(8)) {
            f(usize::from(m), le_u64(chunk));
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
        self.visit(MINUTES - 1, f, Some(|s| statuses.push(s)))?;
        Ok(statuses)
    }

    /// [`Parsed::rows`] up to minute `last` of the day (the rest left unread, the status counts
    /// too): what a query of bytes, HTTPS bytes or requests needs. The checksum covers what is
    /// left unread.
    pub fn measures(
        &self,
        last: usize,
        f: impl FnMut(usize, u64, u64, u64),
    ) -> Result<(), BucketError> {
        self.visit(last, f, None::<fn(StatusCount)>)
    }

    /// [`Parsed::rows`] up to minute `last`, with each status count of those minutes handed to
    /// `g` as it is read, in (minute, code) order, instead of collected.
    pub fn rows_and_statuses(
        &self,
        last: usize,
        f: impl FnMut(usize, u64, u64, u64),
        g: impl FnMut(StatusCount),
    ) -> Result<(), BucketError> {
        self.visit(last, f, Some(g))
    }

    /// Walks the rows up to minute `last` (all of them, with every check of the encoding, when
    /// `last` is the day's last minute).
    fn visit(
        &self,
        last: usize,
        mut f: impl FnMut(usize, u64, u64, u64),
        statuses: Option<impl FnMut(StatusCount)>,
    ) -> Result<(), BucketError> {
        let mut r = Reader {
            b: self.rows,
            at: 0,
        };
        if self.version == 1 {
            for (m, chunk) in r.take(8 * MINUTES)?.chunks_exact(8).enumerate() {
                let v = le_u64(chunk);
                if v != 0 {
                    f(m, v, 0, 0);
                }
            }
            if r.left() > 0 {
                return Err(BucketError::Trailing(r.left()));
            }
            return Ok(());
        }
        let (minutes, bytes) = self.columns(&mut r)?;
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
        for (&m, chunk) in minutes.iter().zip(bytes.chunks_exact(8)) {
            if usize::from(m) > last {
                stopped = true;
                break;
            }
            f(
                usize::from(m),
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
        let n = r.u32()? as usize;
        let mut prev = 0u64;
        let mut before: Option<(u16, u16)> = None;
        for _ in 0..n {
            let minute = prev.saturating_add(r.varint()?);
            let code = r.varint()?;
            let (Ok(minute16), Ok(code)) = (u16::try_from(minute), u16::try_from(code)) else {
                return Err(BucketError::BadRow(MINUTES));
            };
            let s = StatusCount {
                minute: minute16,
                code,
                count: r.varint()?,
            };
            prev = minute;
            if usize::from(s.minute) >= MINUTES || before.is_some_and(|l| l >= (s.minute, s.code)) {
                return Err(BucketError::BadRow(usize::from(s.minute)));
            }
            if usize::from(s.minute) > last {
                return Ok(());
            }
            before = Some((s.minute, s.code));
            out(s);
        }
        if r.left() > 0 {
            return Err(BucketError::Trailing(r.left()));
        }
        Ok(())
    }
}

/// Appends `v` as an unsigned LEB128 varint: 7 bits a byte, low first.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
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
        // Most values (counts, small deltas) are one byte.
        if let Some(&b) = self.b.get(self.at)
            && b < 0x80
        {
            self.at += 1;
            return Ok(u64::from(b));
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
                last,
                |m, b, r, h| rows.push((m, b, r, h)),
                |s| codes.push(s),
            )
            .unwrap();
            (rows, codes)
        };
        let (rows, codes) = walk(1200);
        assert_eq!(rows, [(10, 1, 2, 6), (1200, 7, 1, 3)]);
        assert_eq!(
            codes.iter().map(|s| (s.minute, s.code)).collect::<Vec<_>>(),
            [(10, 200), (10, 404), (1200, 200)]
        );
        let (rows, codes) = walk(MINUTES - 1);
        assert_eq!(rows.len(), 3);
        assert_eq!(codes.len(), 4);
        assert_eq!(p.rows(|_, _, _, _| {}).unwrap(), b.statuses);
        let mut seen = 0;
        p.measures(9, |_, _, _, _| seen += 1).unwrap();
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
        ) {
            let mut b = DayBucket::new(DomainName::parse("a.com").unwrap(), Day(-3));
            for (m, x, y, z) in rows {
                b.minutes[m] = x;
                b.requests[m] = y;
                b.https[m] = z;
            }
            b.statuses = codes.into_iter().map(|((minute, code), count)| StatusCount { minute, code, count }).collect();
            b.seq = u64::MAX;
            prop_assert_eq!(DayBucket::decode(&b.encode()).unwrap(), b);
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
