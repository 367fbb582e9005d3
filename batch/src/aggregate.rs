//! Folds records into per-(domain, UTC day) minute totals: the [`Sink`] the scanner feeds.
//!
//! Domains are looked up by their raw bytes first, so the normalisation (trim, case, port,
//! validation) runs once per distinct spelling, not once per line; each domain remembers its last
//! (day, cell), so a line usually costs two hash probes and an add.

use crate::fields::{self, TimeParser};
use crate::rejects::{Position, Reason, Rejects};
use crate::scan::{Sink, Swallowed};
use rustc_hash::FxHashMap;
use srctraffic::bucket::{DayBucket, MINUTES};
use srctraffic::{Day, DomainName};

const BAD_DOMAIN: u32 = u32::MAX;
const BAD_UTF8: u32 = u32::MAX - 1;
/// Past this many distinct raw spellings, new ones are normalised every time instead of cached,
/// so random garbage cannot grow the map without bound.
const RAW_CACHE_LIMIT: usize = 200_000;

/// Totals of one worker.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Data records seen (good, bad and expired).
    pub records: u64,
    /// Records counted into a bucket.
    pub accepted: u64,
    /// Records older than the retention window.
    pub expired: u64,
    /// Sum of accepted bytes.
    pub bytes: u128,
    /// Latest accepted minute.
    pub max_minute: Option<i64>,
    /// A minute whose total would pass 2^64 - 1 when two workers' totals were merged:
    /// (domain, minute). The run must not commit.
    pub overflow: Option<(DomainName, i64)>,
}

/// Where the records being scanned come from, for reject positions.
#[derive(Debug, Clone, Copy)]
pub enum Origin {
    /// Line numbers from the scanner are real.
    Lines,
    /// The buffer starts at this file offset; line numbers come later.
    Offsets {
        /// Address of the buffer's first byte.
        base_ptr: usize,
        /// File offset of the buffer's first byte.
        base_off: u64,
    },
}

/// One (domain, day) as a worker sums it: per minute, origin bytes and origin requests side
/// by side, so that a line touches one cache line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// (bytes, requests) per minute.
    pub minutes: [[u64; 2]; MINUTES],
}

impl Cell {
    fn empty() -> Box<Cell> {
        Box::new(Cell {
            minutes: [[0; 2]; MINUTES],
        })
    }
}

/// One worker's totals.
#[derive(Debug)]
pub struct Aggregator {
    floor_day: i64,
    ceiling_minute: i64,
    time: TimeParser,
    raw_ids: FxHashMap<Box<[u8]>, u32>,
    ids: FxHashMap<DomainName, u32>,
    names: Vec<DomainName>,
    last: Vec<(i64, u32)>,
    cells: Vec<(u32, i64, Box<Cell>)>,
    cell_of: FxHashMap<(u32, i64), u32>,
    /// Counters.
    pub stats: Stats,
    /// Rejected lines.
    pub rejects: Rejects,
    file: u32,
    origin: Origin,
}

impl Aggregator {
    /// An empty aggregator: lines of days before `floor_day` count as expired, lines after
    /// `ceiling_minute` are rejected as from the future.
    pub fn new(floor_day: i64, ceiling_minute: i64, keep_all_rejects: bool) -> Aggregator {
        Aggregator {
            floor_day,
            ceiling_minute,
            time: TimeParser::default(),
            raw_ids: FxHashMap::default(),
            ids: FxHashMap::default(),
            names: Vec::new(),
            last: Vec::new(),
            cells: Vec::new(),
            cell_of: FxHashMap::default(),
            stats: Stats::default(),
            rejects: Rejects::new(keep_all_rejects),
            file: 0,
            origin: Origin::Lines,
        }
    }

    /// Sets which file, and what kind of buffer, the next records come from.
    pub fn set_origin(&mut self, file: u32, origin: Origin) {
        self.file = file;
        self.origin = origin;
    }

    fn reject(&mut self, reason: Reason, line: u64, raw: &[u8]) {
        let at = match self.origin {
            Origin::Lines => Position::Line(line),
            Origin::Offsets { base_ptr, base_off } => {
                Position::Offset(base_off + (raw.as_ptr() as usize).saturating_sub(base_ptr) as u64)
            }
        };
        self.rejects.add(self.file, at, reason, raw);
    }

    fn domain_id(&mut self, raw: &[u8]) -> u32 {
        if let Some(&id) = self.raw_ids.get(raw) {
            return id;
        }
        let value = fields::unquote(raw);
        let id = match fields::domain(&value) {
            Some(name) => self.id_of(name),
            None if std::str::from_utf8(&value).is_err() => BAD_UTF8,
            None => BAD_DOMAIN,
        };
        if self.raw_ids.len() < RAW_CACHE_LIMIT {
            self.raw_ids.insert(raw.into(), id);
        }
        id
    }

    fn id_of(&mut self, name: DomainName) -> u32 {
        if let Some(&id) = self.ids.get(&name) {
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.clone());
        self.ids.insert(name, id);
        self.last.push((i64::MIN, 0));
        id
    }

    fn cell(&mut self, id: u32, day: i64) -> &mut Cell {
        let (last_day, last_cell) = self.last[id as usize];
        let idx = if last_day == day {
            last_cell
        } else {
            let next = self.cells.len() as u32;
            let idx = *self.cell_of.entry((id, day)).or_insert(next);
            if idx == next {
                self.cells.push((id, day, Cell::empty()));
            }
            self.last[id as usize] = (day, idx);
            idx
        };
        &mut self.cells[idx as usize].2
    }

    /// Adds `bytes` at `minute` for a domain, as a record would; `false` if the minute's total
    /// would pass 2^64 - 1 (nothing is added then).
    pub fn add(&mut self, name: &DomainName, minute: i64, bytes: u64) -> bool {
        let id = self.id_of(name.clone());
        self.add_id(id, minute, bytes)
    }

    fn add_id(&mut self, id: u32, minute: i64, bytes: u64) -> bool {
        let day = minute.div_euclid(1440);
        if day < self.floor_day {
            self.stats.expired += 1;
            return true;
        }
        let i = (minute - day * 1440) as usize;
        let slot = &mut self.cell(id, day).minutes[i];
        let Some(sum) = slot[0].checked_add(bytes) else {
            return false;
        };
        slot[0] = sum;
        // A u64 of lines cannot fill up.
        slot[1] += 1;
        self.stats.accepted += 1;
        self.stats.bytes += u128::from(bytes);
        self.stats.max_minute = Some(self.stats.max_minute.map_or(minute, |m| m.max(minute)));
        true
    }

    /// Folds another worker's totals and rejects in.
    pub fn merge(&mut self, other: Aggregator) {
        let map: Vec<u32> = other.names.into_iter().map(|n| self.id_of(n)).collect();
        for (id, day, theirs) in other.cells {
            let id = map[id as usize];
            let cell = self.cell(id, day);
            let mut overflow = None;
            for (i, (a, b)) in cell
                .minutes
                .iter_mut()
                .zip(theirs.minutes.iter())
                .enumerate()
            {
                match a[0].checked_add(b[0]) {
                    Some(sum) => a[0] = sum,
                    None => overflow = Some(day * 1440 + i as i64),
                }
                a[1] += b[1];
            }
            if let Some(minute) = overflow
                && self.stats.overflow.is_none()
            {
                self.stats.overflow = Some((self.names[id as usize].clone(), minute));
            }
        }
        let s = other.stats;
        self.stats.records += s.records;
        self.stats.accepted += s.accepted;
        self.stats.expired += s.expired;
        self.stats.bytes += s.bytes;
        self.stats.max_minute = match (self.stats.max_minute, s.max_minute) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.stats.overflow = self.stats.overflow.take().or(s.overflow);
        self.rejects.merge(other.rejects);
    }

    /// The totals as bucket cells, sorted by (day, domain); cells with no bytes at all are
    /// kept, since a zero-byte line is still a request that was seen.
    pub fn into_cells(self) -> Vec<DayBucket> {
        use rayon::prelude::*;
        let names = self.names;
        let mut out: Vec<DayBucket> = self
            .cells
            .into_par_iter()
            .map(|(id, day, c)| {
                let mut b = DayBucket::new(names[id as usize].clone(), Day(day as i32));
                for (i, [bytes, requests]) in c.minutes.iter().enumerate() {
                    b.minutes[i] = *bytes;
                    b.requests[i] = *requests;
                }
                b
            })
            .collect();
        out.par_sort_unstable_by(|a, b| (a.day, &a.domain).cmp(&(b.day, &b.domain)));
        out
    }

    /// Number of distinct domains seen.
    pub fn domain_count(&self) -> usize {
        self.names.len()
    }
}

impl Sink for Aggregator {
    fn record(&mut self, time: &[u8], domain: &[u8], bytes: &[u8], line: u64, raw: &[u8]) {
        self.stats.records += 1;
        let minute = if time.first() == Some(&b'"') {
            self.time.minute(&fields::unquote(time))
        } else {
            self.time.minute(time)
        };
        let Some(minute) = minute else {
            return self.reject(Reason::BadTime, line, raw);
        };
        if minute > self.ceiling_minute {
            return self.reject(Reason::Future, line, raw);
        }
        let id = self.domain_id(domain);
        if id == BAD_DOMAIN || id == BAD_UTF8 {
            let reason = if id == BAD_UTF8 {
                Reason::NotUtf8
            } else {
                Reason::BadDomain
            };
            return self.reject(reason, line, raw);
        }
        let Some(bytes) = fields::parse_bytes(&fields::unquote(bytes)) else {
            return self.reject(Reason::BadBytes, line, raw);
        };
        if !self.add_id(id, minute, bytes) {
            self.reject(Reason::TotalOverflow, line, raw);
        }
    }

    fn bad_shape(&mut self, _fields: usize, line: u64, raw: &[u8]) {
        self.stats.records += 1;
        self.reject(Reason::FieldCount, line, raw);
    }

    fn swallowed(&mut self, why: Swallowed, lines: u64, line: u64, raw: &[u8]) {
        // Every physical line it took counts, so the bad-ratio gate sees them all.
        let reason = match why {
            Swallowed::TooLong => Reason::LineTooLong,
            Swallowed::UnclosedQuote => Reason::UnclosedQuote,
        };
        let lines = lines.max(1);
        self.stats.records += lines;
        self.reject(reason, line, raw);
        self.rejects.add_uncounted_lines(reason, lines - 1);
    }
}
