//! Folds records into per-(domain, minute) totals: the [`Sink`] the scanner feeds.
//!
//! Domains are looked up by their raw bytes first, so the normalisation (trim, case, port,
//! validation) runs once per distinct spelling, not once per line; each domain remembers its last
//! (hour, block), so a line usually costs two hash probes and an add.
//!
//! Totals are held in hour blocks, made when a line first needs one: a worker holds only the
//! hours its current task touched (log files run in time order, so a chunk touches one or two
//! hours of each domain), and hands them to the run's one shared [`Aggregator`] after each task
//! ([`Aggregator::drain_into`]). Memory is then one copy of the run's totals plus a task's worth
//! per worker, not a whole copy per worker.

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
/// Minutes per block.
const BLOCK_MINUTES: usize = 60;
const BLOCKS_PER_DAY: i64 = (MINUTES / BLOCK_MINUTES) as i64;

/// One minute's totals: origin bytes and origin requests side by side, so that a line touches
/// one cache line.
type Slot = [u64; 2];
/// One hour of one domain.
type Block = [Slot; BLOCK_MINUTES];

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

impl Stats {
    fn add(&mut self, s: Stats) {
        self.records += s.records;
        self.accepted += s.accepted;
        self.expired += s.expired;
        self.bytes += s.bytes;
        self.max_minute = match (self.max_minute, s.max_minute) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.overflow = self.overflow.take().or(s.overflow);
    }
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

/// A worker's totals, or the run's.
#[derive(Debug)]
pub struct Aggregator {
    floor_hour: i64,
    ceiling_minute: i64,
    keep_all_rejects: bool,
    time: TimeParser,
    raw_ids: FxHashMap<Box<[u8]>, u32>,
    ids: FxHashMap<DomainName, u32>,
    names: Vec<DomainName>,
    /// Per domain id: the last (hour, block) it used.
    last: Vec<(i64, u32)>,
    /// Per block: (domain id, hour since the epoch).
    keys: Vec<(u32, i64)>,
    blocks: Vec<Block>,
    block_of: FxHashMap<(u32, i64), u32>,
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
            floor_hour: floor_day.saturating_mul(BLOCKS_PER_DAY),
            ceiling_minute,
            keep_all_rejects,
            time: TimeParser::default(),
            raw_ids: FxHashMap::default(),
            ids: FxHashMap::default(),
            names: Vec::new(),
            last: Vec::new(),
            keys: Vec::new(),
            blocks: Vec::new(),
            block_of: FxHashMap::default(),
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

    fn block(&mut self, id: u32, hour: i64) -> &mut Block {
        let (last_hour, last_block) = self.last[id as usize];
        let idx = if last_hour == hour {
            last_block
        } else {
            let next = self.blocks.len() as u32;
            let idx = *self.block_of.entry((id, hour)).or_insert(next);
            if idx == next {
                self.keys.push((id, hour));
                self.blocks.push([[0; 2]; BLOCK_MINUTES]);
            }
            self.last[id as usize] = (hour, idx);
            idx
        };
        &mut self.blocks[idx as usize]
    }

    /// Adds `bytes` at `minute` for a domain, as a record would; `false` if the minute's total
    /// would pass 2^64 - 1 (nothing is added then).
    pub fn add(&mut self, name: &DomainName, minute: i64, bytes: u64) -> bool {
        let id = self.id_of(name.clone());
        self.add_id(id, minute, bytes)
    }

    fn add_id(&mut self, id: u32, minute: i64, bytes: u64) -> bool {
        let hour = minute.div_euclid(BLOCK_MINUTES as i64);
        if hour < self.floor_hour {
            self.stats.expired += 1;
            return true;
        }
        let i = (minute - hour * BLOCK_MINUTES as i64) as usize;
        let slot = &mut self.block(id, hour)[i];
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

    /// Adds another aggregator's blocks, whose domain ids are `names`' indexes.
    fn add_blocks(&mut self, names: &[DomainName], keys: &[(u32, i64)], blocks: &[Block]) {
        let map: Vec<u32> = names.iter().map(|n| self.id_of(n.clone())).collect();
        for (&(id, hour), theirs) in keys.iter().zip(blocks) {
            let id = map[id as usize];
            let block = self.block(id, hour);
            let mut overflow = None;
            for (i, (a, b)) in block.iter_mut().zip(theirs).enumerate() {
                match a[0].checked_add(b[0]) {
                    Some(sum) => a[0] = sum,
                    None => overflow = Some(hour * BLOCK_MINUTES as i64 + i as i64),
                }
                a[1] += b[1];
            }
            if let Some(minute) = overflow
                && self.stats.overflow.is_none()
            {
                self.stats.overflow = Some((self.names[id as usize].clone(), minute));
            }
        }
    }

    /// Folds another worker's totals and rejects in.
    pub fn merge(&mut self, other: Aggregator) {
        self.add_blocks(&other.names, &other.keys, &other.blocks);
        self.stats.add(other.stats);
        self.rejects.merge(other.rejects);
    }

    /// Moves this worker's totals, counters and rejects into the run's aggregator, keeping
    /// only what makes the next task fast (domain names, the parsed-spelling cache) and the
    /// blocks' allocation, so a worker's memory stays at one task's worth.
    pub fn drain_into(&mut self, run: &mut Aggregator) {
        run.add_blocks(&self.names, &self.keys, &self.blocks);
        run.stats.add(std::mem::take(&mut self.stats));
        let rejects = std::mem::replace(&mut self.rejects, Rejects::new(self.keep_all_rejects));
        run.rejects.merge(rejects);
        self.keys.clear();
        self.blocks.clear();
        self.block_of.clear();
        self.last.fill((i64::MIN, 0));
    }

    /// Builds each (domain, day) as a bucket and hands it to `f`, in parallel; the results
    /// come sorted by (day, domain). Only `threads` buckets exist at once.
    fn map_cells<T: Send>(self, f: impl Fn(DayBucket) -> T + Sync + Send) -> Vec<T> {
        use rayon::prelude::*;
        let Aggregator {
            names,
            keys,
            blocks,
            ..
        } = self;
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        let day_of = |b: u32| keys[b as usize].1.div_euclid(BLOCKS_PER_DAY);
        order.par_sort_unstable_by(|&a, &b| {
            let (ia, ha) = keys[a as usize];
            let (ib, hb) = keys[b as usize];
            (day_of(a), &names[ia as usize], ha).cmp(&(day_of(b), &names[ib as usize], hb))
        });
        let cells: Vec<&[u32]> = order
            .chunk_by(|&a, &b| keys[a as usize].0 == keys[b as usize].0 && day_of(a) == day_of(b))
            .collect();
        cells
            .into_par_iter()
            .map(|cell| {
                let (id, hour) = keys[cell[0] as usize];
                let day = hour.div_euclid(BLOCKS_PER_DAY);
                let mut b = DayBucket::new(names[id as usize].clone(), Day(day as i32));
                for &k in cell {
                    let first =
                        (keys[k as usize].1 - day * BLOCKS_PER_DAY) as usize * BLOCK_MINUTES;
                    for (i, [bytes, requests]) in blocks[k as usize].iter().enumerate() {
                        b.minutes[first + i] = *bytes;
                        b.requests[first + i] = *requests;
                    }
                }
                f(b)
            })
            .collect()
    }

    /// The totals as bucket cells, sorted by (day, domain); cells with no bytes at all are
    /// kept, since a zero-byte line is still a request that was seen.
    pub fn into_cells(self) -> Vec<DayBucket> {
        self.map_cells(|b| b)
    }

    /// The totals as encoded segment cells, sorted by (day, domain), without holding every
    /// bucket at once.
    pub fn into_encoded(self) -> Vec<srctraffic::segment::Cell> {
        self.map_cells(|b| srctraffic::segment::Cell {
            day: b.day,
            body: b.encode(),
            domain: b.domain,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DomainName {
        DomainName::parse(s).unwrap()
    }

    #[test]
    fn workers_drained_after_each_task_sum_to_one_aggregator_and_keep_no_hours() {
        let mut one = Aggregator::new(0, i64::MAX, false);
        let mut run = Aggregator::new(0, i64::MAX, false);
        let mut worker = Aggregator::new(0, i64::MAX, false);
        // Three tasks over two days and several hours, two domains each, one minute twice.
        let tasks: [&[(&str, i64, u64)]; 3] = [
            &[
                ("a.com", 20_000 * 1440 + 5, 7),
                ("b.com", 20_000 * 1440 + 61, 2),
            ],
            &[
                ("a.com", 20_000 * 1440 + 5, 1),
                ("a.com", 20_001 * 1440 + 1439, 9),
            ],
            &[
                ("b.com", 20_000 * 1440 + 61, 4),
                ("c.com", 20_001 * 1440, 0),
            ],
        ];
        for task in tasks {
            for &(d, minute, bytes) in task {
                assert!(worker.add(&name(d), minute, bytes));
                assert!(one.add(&name(d), minute, bytes));
            }
            worker.drain_into(&mut run);
            assert!(worker.blocks.is_empty() && worker.keys.is_empty());
            assert_eq!(worker.stats.accepted, 0);
        }
        assert_eq!(run.stats.accepted, 6);
        assert_eq!(run.stats.bytes, 23);
        let cells = run.into_cells();
        assert_eq!(cells, one.into_cells());
        let got: Vec<(String, i32, u64, u64)> = cells
            .iter()
            .map(|c| {
                let bytes: u64 = c.minutes.iter().sum();
                let requests: u64 = c.requests.iter().sum();
                (c.domain.to_string(), c.day.0, bytes, requests)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.com".into(), 20_000, 8, 2),
                ("b.com".into(), 20_000, 6, 2),
                ("a.com".into(), 20_001, 9, 1),
                ("c.com".into(), 20_001, 0, 1),
            ]
        );
    }

    #[test]
    fn a_minute_past_the_largest_total_is_named_when_workers_meet() {
        let mut run = Aggregator::new(0, i64::MAX, false);
        for _ in 0..2 {
            let mut w = Aggregator::new(0, i64::MAX, false);
            assert!(w.add(&name("a.com"), 1440 * 3 + 70, u64::MAX));
            w.drain_into(&mut run);
        }
        assert_eq!(run.stats.overflow, Some((name("a.com"), 1440 * 3 + 70)));
    }

    #[test]
    fn encoded_cells_decode_to_the_cells() {
        let mut a = Aggregator::new(0, i64::MAX, false);
        a.add(&name("b.com"), 1440 * 2 + 3, 5);
        a.add(&name("a.com"), 1440 * 2 + 700, 6);
        a.add(&name("a.com"), 1440 + 1, 1);
        let mut b = Aggregator::new(0, i64::MAX, false);
        b.merge(std::mem::replace(
            &mut a,
            Aggregator::new(0, i64::MAX, false),
        ));
        let cells = b.into_cells();
        let encoded: Vec<srctraffic::segment::Cell> =
            cells.iter().map(srctraffic::segment::Cell::of).collect();
        let mut again = Aggregator::new(0, i64::MAX, false);
        again.add(&name("b.com"), 1440 * 2 + 3, 5);
        again.add(&name("a.com"), 1440 * 2 + 700, 6);
        again.add(&name("a.com"), 1440 + 1, 1);
        assert_eq!(again.into_encoded(), encoded);
        let order: Vec<(i32, String)> = encoded
            .iter()
            .map(|c| (c.day.0, c.domain.to_string()))
            .collect();
        assert_eq!(
            order,
            [
                (1, "a.com".into()),
                (2, "a.com".into()),
                (2, "b.com".into())
            ]
        );
    }
}
