//! Folds records into per-(domain, minute) totals: the [`Sink`] the scanner feeds.
//!
//! Domains are looked up by their raw bytes first, so the normalisation (trim, case, port,
//! validation) runs once per distinct spelling, not once per line; each domain remembers its last
//! (hour, block), so a line usually costs two hash probes and an add.
//!
//! Totals are held in hour blocks, made when a line first needs one: a worker holds only the
//! hours its recent tasks touched (log files run in time order, so a chunk touches one or two
//! hours of each domain), and hands them to the run's one shared [`Aggregator`]
//! ([`Aggregator::drain_into`]) once it holds more than its share of a fixed number of blocks,
//! and at the end. Memory is then one copy of the run's totals plus that bounded share, not a
//! whole copy per worker.

use crate::fields::{self, TimeParser};
use crate::formats::OriginRule;
use crate::rejects::{Position, Reason, Rejects};
use crate::scan::{Fields, Sink, Swallowed};
use crate::spellings::Spellings;
use crate::statuses::{BLOCK_MINUTES, StatusCounts};
use rustc_hash::FxHashMap;
use srctraffic::bucket::{DayBucket, MINUTES, StatusHour};
use srctraffic::segment::Cell;
use srctraffic::{Day, DomainName};
use std::convert::Infallible;

const BAD_DOMAIN: u32 = u32::MAX;
const BAD_UTF8: u32 = u32::MAX - 1;
/// Past this many distinct raw spellings, new ones are normalised every time instead of cached,
/// so random garbage cannot grow the map without bound.
const RAW_CACHE_LIMIT: usize = 200_000;
/// Spellings up to this long with capitals in them are lower-cased on the stack (a host name
/// is at most 253 bytes; quotes and a port fit too).
const LOWER_MAX: usize = 272;
const BLOCKS_PER_DAY: i64 = (MINUTES / BLOCK_MINUTES) as i64;

/// One minute's totals side by side, so that a line touches one cache line: origin bytes,
/// HTTPS bytes and origin requests.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    bytes: u64,
    /// A part of `bytes`. Kept beside them, where a row of its own made when a line over HTTPS
    /// first came was one more cache line a line (10M lines, one thread, read phase: nginx
    /// 0.98 with it here; CSV, which has no scheme, 0.99).
    https: u64,
    requests: u32,
    /// Requests with the block's primary status code (the first it saw): most lines have the
    /// same code, and counting it here costs no memory access of its own.
    primary: u32,
}
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
    /// Records of an edge log that the edge served without going to the origin: counted apart,
    /// neither added nor rejected.
    pub cached: u64,
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
        self.cached += s.cached;
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

/// One origin fetch, as a format reads it.
#[derive(Debug, Clone, Copy)]
pub struct Fetch<'a> {
    /// The UTC minute.
    pub minute: i64,
    /// The domain as written (normalised and checked here).
    pub domain: &'a [u8],
    /// Origin bytes.
    pub bytes: u64,
    /// Fetched over HTTPS.
    pub https: bool,
    /// The origin's HTTP status, when known.
    pub status: Option<u16>,
}

/// An origin fetch waiting in a batch for [`Aggregator::fetch_all`], with its line for a
/// reject.
#[derive(Debug, Clone, Copy)]
pub struct Pending<'a> {
    /// The fetch.
    pub fetch: Fetch<'a>,
    /// Its line number (as [`Aggregator::fetch`] takes it).
    pub line: u64,
    /// Its line.
    pub raw: &'a [u8],
}

/// A worker's totals, or the run's.
#[derive(Debug)]
pub struct Aggregator {
    floor_hour: i64,
    ceiling_minute: i64,
    keep_all_rejects: bool,
    time: TimeParser,
    raw_ids: Spellings,
    ids: FxHashMap<DomainName, u32>,
    names: Vec<DomainName>,
    /// Per domain id: the last (hour, block) it used.
    last: Vec<(i64, u32)>,
    /// Per block: (domain id, hour since the epoch).
    keys: Vec<(u32, i64)>,
    blocks: Vec<Block>,
    block_of: FxHashMap<(u32, i64), u32>,
    /// Per block: its primary status code (0 before it has one).
    primary: Vec<u16>,
    /// Requests per status code, per block.
    statuses: StatusCounts,
    /// `--origin-statuses` over the CSV's `cache_status` column.
    origin_rule: OriginRule,
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
            raw_ids: Spellings::default(),
            ids: FxHashMap::default(),
            names: Vec::new(),
            last: Vec::new(),
            keys: Vec::new(),
            blocks: Vec::new(),
            block_of: FxHashMap::default(),
            primary: Vec::new(),
            statuses: StatusCounts::default(),
            origin_rule: OriginRule::default(),
            stats: Stats::default(),
            rejects: Rejects::new(keep_all_rejects),
            file: 0,
            origin: Origin::Lines,
        }
    }

    /// Counts only CSV lines whose cache status the rule names; the others are served from
    /// cache. (Line formats apply the rule themselves.)
    pub fn with_origin_rule(mut self, rule: OriginRule) -> Aggregator {
        self.origin_rule = rule;
        self
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
        if let Some(id) = self.raw_ids.get(raw) {
            return id;
        }
        // A spelling with capitals is looked up, and cached, lower-cased (a domain's case does
        // not matter): a log that mixes case letter by letter would otherwise cache a spelling
        // per line, and a map of 100,000 spellings pushes the common ones out of the CPU's
        // caches (measured: the lookup was 12% of a CSV run, most of it waiting on memory).
        let mut lower = [0u8; LOWER_MAX];
        let raw = if raw.len() <= LOWER_MAX && raw.iter().any(u8::is_ascii_uppercase) {
            let l = &mut lower[..raw.len()];
            l.copy_from_slice(raw);
            l.make_ascii_lowercase();
            if let Some(id) = self.raw_ids.get(l) {
                return id;
            }
            &*l
        } else {
            raw
        };
        let value = fields::unquote(raw);
        let id = match fields::domain(&value) {
            Some(name) => self.id_of(name),
            None if std::str::from_utf8(&value).is_err() => BAD_UTF8,
            None => BAD_DOMAIN,
        };
        if self.raw_ids.len() < RAW_CACHE_LIMIT {
            self.raw_ids.insert(raw, id);
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

    // Inlined into every line's add, with the rare miss out of line: the calls and their
    // register saves were a tenth of the aggregation's instructions.
    #[inline(always)]
    fn block_index(&mut self, id: u32, hour: i64) -> u32 {
        let (last_hour, last_block) = self.last[id as usize];
        if last_hour == hour {
            return last_block;
        }
        self.block_index_slow(id, hour)
    }

    #[inline(never)]
    fn block_index_slow(&mut self, id: u32, hour: i64) -> u32 {
        let next = self.blocks.len() as u32;
        let idx = *self.block_of.entry((id, hour)).or_insert(next);
        if idx == next {
            self.keys.push((id, hour));
            self.blocks.push([Slot::default(); BLOCK_MINUTES]);
            self.primary.push(0);
            self.statuses.push_block();
        }
        self.last[id as usize] = (hour, idx);
        idx
    }

    /// Adds `bytes` at `minute` for a domain, as a record would; `false` if the minute's total
    /// would pass 2^64 - 1 (nothing is added then).
    pub fn add(&mut self, name: &DomainName, minute: i64, bytes: u64) -> bool {
        let id = self.id_of(name.clone());
        self.add_id(id, minute, bytes, false, None)
    }

    #[inline(always)]
    fn add_id(
        &mut self,
        id: u32,
        minute: i64,
        bytes: u64,
        https: bool,
        status: Option<u16>,
    ) -> bool {
        let hour = minute.div_euclid(BLOCK_MINUTES as i64);
        if hour < self.floor_hour {
            self.stats.expired += 1;
            return true;
        }
        let i = (minute - hour * BLOCK_MINUTES as i64) as usize;
        let block = self.block_index(id, hour);
        let slot = &mut self.blocks[block as usize][i];
        let (Some(sum), Some(requests)) =
            (slot.bytes.checked_add(bytes), slot.requests.checked_add(1))
        else {
            return false;
        };
        slot.bytes = sum;
        slot.requests = requests;
        if let Some(code) = status {
            let primary = &mut self.primary[block as usize];
            if *primary == code || *primary == 0 {
                *primary = code;
                // Never more than the requests.
                slot.primary += 1;
            } else {
                self.statuses.add(block, i, code, 1);
            }
        }
        // HTTPS bytes are a part of the bytes, so they cannot overflow first.
        slot.https += if https { bytes } else { 0 };
        self.stats.accepted += 1;
        self.stats.bytes += u128::from(bytes);
        self.stats.max_minute = Some(self.stats.max_minute.map_or(minute, |m| m.max(minute)));
        true
    }

    /// Adds another aggregator's blocks and status rows, whose domain ids are `names`' indexes.
    fn add_blocks(&mut self, other: &Aggregator) {
        let map: Vec<u32> = other.names.iter().map(|n| self.id_of(n.clone())).collect();
        let mut mine: Vec<u32> = Vec::with_capacity(other.keys.len());
        for (k, (&(id, hour), theirs)) in other.keys.iter().zip(&other.blocks).enumerate() {
            let id = map[id as usize];
            let b = self.block_index(id, hour);
            mine.push(b);
            let their_code = other.primary[k];
            let my_code = &mut self.primary[b as usize];
            let same = their_code == *my_code || *my_code == 0;
            if same && their_code != 0 {
                *my_code = their_code;
            }
            let block = &mut self.blocks[b as usize];
            let mut overflow = None;
            for (i, (a, t)) in block.iter_mut().zip(theirs).enumerate() {
                match (
                    a.bytes.checked_add(t.bytes),
                    a.requests.checked_add(t.requests),
                ) {
                    (Some(sum), Some(requests)) => {
                        a.bytes = sum;
                        a.requests = requests;
                        // A part of the bytes, which did not overflow.
                        a.https += t.https;
                    }
                    _ => overflow = Some(hour * BLOCK_MINUTES as i64 + i as i64),
                }
                if same {
                    a.primary = a.primary.saturating_add(t.primary);
                } else if t.primary > 0 {
                    self.statuses.add(b, i, their_code, u64::from(t.primary));
                }
            }
            if let Some(minute) = overflow
                && self.stats.overflow.is_none()
            {
                self.stats.overflow = Some((self.names[id as usize].clone(), minute));
            }
        }
        for (from, &to) in mine.iter().enumerate() {
            self.statuses.merge_block(to, &other.statuses, from as u32);
        }
    }

    /// Folds another worker's totals and rejects in.
    pub fn merge(&mut self, other: Aggregator) {
        self.add_blocks(&other);
        self.stats.add(other.stats);
        self.rejects.merge(other.rejects);
    }

    /// Moves this worker's totals, counters and rejects into the run's aggregator, keeping
    /// only what makes the next task fast (domain names, the parsed-spelling cache) and the
    /// blocks' allocation, so a worker's memory stays bounded. A run that holds nothing yet
    /// takes the worker's blocks whole, with the names whose ids they use: a copy of them
    /// block by block was 2% of a one-thread run (measured on nginx, 10M lines).
    pub fn drain_into(&mut self, run: &mut Aggregator) {
        if run.keys.is_empty() && run.names.is_empty() {
            use std::mem::swap;
            run.names.clone_from(&self.names);
            run.ids.clone_from(&self.ids);
            swap(&mut run.last, &mut self.last);
            self.last = vec![(i64::MIN, 0); self.names.len()];
            swap(&mut run.keys, &mut self.keys);
            swap(&mut run.blocks, &mut self.blocks);
            swap(&mut run.block_of, &mut self.block_of);
            swap(&mut run.primary, &mut self.primary);
            swap(&mut run.statuses, &mut self.statuses);
        } else {
            run.add_blocks(self);
        }
        run.stats.add(std::mem::take(&mut self.stats));
        let rejects = std::mem::replace(&mut self.rejects, Rejects::new(self.keep_all_rejects));
        run.rejects.merge(rejects);
        self.keys.clear();
        self.blocks.clear();
        self.block_of.clear();
        self.last.fill((i64::MIN, 0));
        self.primary.clear();
        self.statuses.clear();
    }

    /// Builds each (domain, day) as a bucket, its status counts as hour rows (its `statuses`
    /// left empty), and hands both to `f`, in parallel; the results come sorted by (day,
    /// domain). Only `threads` buckets exist at once.
    fn map_cells<T: Send>(
        self,
        f: impl Fn(&mut DayBucket, &mut Vec<StatusHour>) -> T + Sync + Send,
    ) -> Vec<T> {
        let (out, done) = self.for_each_cell(
            f,
            |plan| Vec::with_capacity(plan.len()),
            |out, t| {
                out.push(t);
                Ok::<(), Infallible>(())
            },
        );
        match done {
            Ok(()) => out,
        }
    }

    /// As [`Aggregator::map_cells`], but each result goes to `each` as soon as it and every
    /// one before it in (day, domain) order are made, so a consumer (a segment being written)
    /// works while later cells are built. The consumer is made by `start`, told every (day,
    /// domain) to come, in that order. The workers take cells in order from a shared counter,
    /// so few results wait for an earlier one. The first error from `each` stops the work; the
    /// consumer comes back with the outcome.
    fn for_each_cell<T: Send, S: Send, E: Send>(
        self,
        f: impl Fn(&mut DayBucket, &mut Vec<StatusHour>) -> T + Sync + Send,
        start: impl FnOnce(&[(Day, &DomainName)]) -> S,
        each: impl FnMut(&mut S, T) -> Result<(), E> + Send,
    ) -> (S, Result<(), E>) {
        use rayon::prelude::*;
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
        use std::sync::{Mutex, PoisonError};
        let (names, keys) = (&self.names, &self.keys);
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        let day_of = |b: u32| keys[b as usize].1.div_euclid(BLOCKS_PER_DAY);
        // Blocks outnumber domains 24 to 1: the names are sorted once, and the blocks by
        // their rank, with no string compared per pair of blocks.
        let mut by_name: Vec<u32> = (0..names.len() as u32).collect();
        by_name.par_sort_unstable_by(|&a, &b| names[a as usize].cmp(&names[b as usize]));
        let mut rank = vec![0u32; names.len()];
        for (r, &id) in by_name.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        order.par_sort_unstable_by_key(|&b| {
            let (id, hour) = keys[b as usize];
            (day_of(b), rank[id as usize], hour)
        });
        let cells: Vec<&[u32]> = order
            .chunk_by(|&a, &b| keys[a as usize].0 == keys[b as usize].0 && day_of(a) == day_of(b))
            .collect();
        let planned: Vec<(Day, &DomainName)> = cells
            .iter()
            .map(|c| {
                let (id, _) = keys[c[0] as usize];
                (Day(day_of(c[0]) as i32), &names[id as usize])
            })
            .collect();
        let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        let order = Mutex::new(InOrder {
            consumer: start(&planned),
            each,
            waiting: BTreeMap::new(),
            want: 0,
            result: Ok(()),
        });
        let (me, cells, f, next, stop, order_ref) = (&self, &cells, &f, &next, &stop, &order);
        // Whichever worker makes the cell the consumer waits for hands it over, with any
        // made after it: no thread wakes per cell.
        rayon::scope(|scope| {
            for _ in 0..rayon::current_num_threads() {
                scope.spawn(move |_| {
                    // Each worker's bucket is filled again for each of its cells, rather than
                    // three arrays of a day's minutes allocated, faulted in and freed per cell.
                    let (mut hours, mut bucket) = (Vec::new(), None);
                    while !stop.load(Relaxed) {
                        let i = next.fetch_add(1, Relaxed);
                        let Some(cell) = cells.get(i) else { break };
                        let b = me.fill(cell, &mut bucket, &mut hours);
                        let t = f(b, &mut hours);
                        let mut o = order_ref.lock().unwrap_or_else(PoisonError::into_inner);
                        if !o.take(i, t) {
                            stop.store(true, Relaxed);
                        }
                    }
                });
            }
        });
        let o = order.into_inner().unwrap_or_else(PoisonError::into_inner);
        (o.consumer, o.result)
    }

    /// Fills the worker's bucket (made on its first cell) and hour rows with the blocks of
    /// one (domain, day).
    fn fill<'b>(
        &self,
        cell: &[u32],
        bucket: &'b mut Option<DayBucket>,
        hours: &mut Vec<StatusHour>,
    ) -> &'b mut DayBucket {
        let (names, keys, blocks) = (&self.names, &self.keys, &self.blocks);
        let (id, hour) = keys[cell[0] as usize];
        let day = hour.div_euclid(BLOCKS_PER_DAY);
        let (domain, day_of_cell) = (names[id as usize].clone(), Day(day as i32));
        let b = match bucket {
            Some(b) => {
                b.domain = domain;
                b.day = day_of_cell;
                b.minutes.fill(0);
                b.requests.fill(0);
                b.https.fill(0);
                b.statuses.clear();
                b
            }
            None => bucket.insert(DayBucket::new(domain, day_of_cell)),
        };
        hours.clear();
        for &k in cell {
            let hour = keys[k as usize].1 - day * BLOCKS_PER_DAY;
            let first = hour as usize * BLOCK_MINUTES;
            let block = &blocks[k as usize];
            for (i, slot) in block.iter().enumerate() {
                b.minutes[first + i] = slot.bytes;
                b.requests[first + i] = u64::from(slot.requests);
                b.https[first + i] = slot.https;
            }
            self.block_status_hours(k, block, hour as u8, hours);
        }
        b
    }

    /// Appends block `k`'s status counts as hour rows, one per code. The block's primary code
    /// may also have a row of its own (merged from a block whose primary differed): its
    /// slots' counts are added to that row.
    fn block_status_hours(&self, k: u32, block: &Block, hour: u8, out: &mut Vec<StatusHour>) {
        let start = out.len();
        let row_of = |out: &mut Vec<StatusHour>, code: u16| match out[start..]
            .iter()
            .position(|h| h.code == code)
        {
            Some(i) => start + i,
            None => {
                out.push(StatusHour {
                    code,
                    hour,
                    counts: [0; BLOCK_MINUTES],
                });
                out.len() - 1
            }
        };
        match self.statuses.rows(k) {
            Some(rows) => {
                for (code, counts) in rows {
                    let i = row_of(out, code);
                    for (a, &c) in out[i].counts.iter_mut().zip(counts) {
                        *a += u64::from(c);
                    }
                }
            }
            // Some counts spilled (many codes, or counts past 16 bits): rare.
            None => {
                for (m, code, count) in self.statuses.counts(k) {
                    let i = row_of(out, code);
                    out[i].counts[m] = out[i].counts[m].saturating_add(count);
                }
            }
        }
        let code = self.primary[k as usize];
        if code != 0 && block.iter().any(|slot| slot.primary > 0) {
            let i = row_of(out, code);
            for (a, slot) in out[i].counts.iter_mut().zip(block) {
                *a += u64::from(slot.primary);
            }
        }
    }

    /// The totals as bucket cells, sorted by (day, domain); cells with no bytes at all are
    /// kept, since a zero-byte line is still a request that was seen.
    pub fn into_cells(self) -> Vec<DayBucket> {
        self.map_cells(|b, hours| {
            b.statuses = DayBucket::statuses_of_hours(hours);
            b.clone()
        })
    }

    /// The totals as encoded segment cells, sorted by (day, domain), without holding every
    /// bucket at once.
    pub fn into_encoded(self) -> Vec<Cell> {
        self.map_cells(|b, hours| encode_cell(b, hours))
    }

    /// The totals as encoded segment cells, as [`Aggregator::into_encoded`] makes them, each
    /// handed to `each` with the consumer `start` made (told every (day, domain) to come, in
    /// order) as soon as it and those before it are encoded. The first error from `each` stops
    /// the work; the consumer comes back with the outcome.
    pub fn encode_each<S: Send, E: Send>(
        self,
        start: impl FnOnce(&[(Day, &DomainName)]) -> S,
        each: impl FnMut(&mut S, Cell) -> Result<(), E> + Send,
    ) -> (S, Result<(), E>) {
        self.for_each_cell(|b, hours| encode_cell(b, hours), start, each)
    }

    /// Hour blocks held (one domain's hour each): what a worker's memory grows with.
    pub fn blocks_held(&self) -> usize {
        self.blocks.len()
    }

    /// Number of distinct domains seen.
    pub fn domain_count(&self) -> usize {
        self.names.len()
    }
}

/// Results made out of order, handed to their consumer in order.
struct InOrder<S, F, T, E> {
    consumer: S,
    each: F,
    waiting: std::collections::BTreeMap<usize, T>,
    /// The index the consumer waits for.
    want: usize,
    result: Result<(), E>,
}

impl<S, F: FnMut(&mut S, T) -> Result<(), E>, T, E> InOrder<S, F, T, E> {
    /// Takes result `i`, and hands over every result now in order; `false` once the consumer
    /// has failed (the work stops).
    fn take(&mut self, i: usize, t: T) -> bool {
        if self.result.is_err() {
            return false;
        }
        self.waiting.insert(i, t);
        while let Some(t) = self.waiting.remove(&self.want) {
            self.want += 1;
            if let Err(e) = (self.each)(&mut self.consumer, t) {
                self.result = Err(e);
                return false;
            }
        }
        true
    }
}

/// A built cell as a segment holds it.
fn encode_cell(b: &DayBucket, hours: &[StatusHour]) -> Cell {
    Cell {
        day: b.day,
        body: b.encode_with_hours(hours),
        domain: b.domain.clone(),
    }
}

impl Aggregator {
    fn checked_domain(&mut self, domain: &[u8], line: u64, raw: &[u8]) -> Option<u32> {
        let id = self.domain_id(domain);
        if id == BAD_DOMAIN || id == BAD_UTF8 {
            let reason = if id == BAD_UTF8 {
                Reason::NotUtf8
            } else {
                Reason::BadDomain
            };
            self.reject(reason, line, raw);
            return None;
        }
        Some(id)
    }

    /// An origin fetch read by a format: counted, then rejected (future, bad domain, total
    /// overflow) or added.
    pub fn fetch(&mut self, f: &Fetch<'_>, line: u64, raw: &[u8]) {
        self.stats.records += 1;
        if f.minute > self.ceiling_minute {
            return self.reject(Reason::Future, line, raw);
        }
        let Some(id) = self.checked_domain(f.domain, line, raw) else {
            return;
        };
        if !self.add_id(id, f.minute, f.bytes, f.https, f.status) {
            self.reject(Reason::TotalOverflow, line, raw);
        }
    }

    /// Origin fetches read by a format, each counted, rejected or added as
    /// [`Aggregator::fetch`] does it. The domains of a batch are looked up first, then their
    /// fetches added: with each step's work for a line short, the CPU runs many lines' steps
    /// at once, and their waits on memory (a domain's entry, its hour's totals) overlap. A
    /// line at a time, each waited behind the whole parse of its line.
    pub fn fetch_all(&mut self, batch: &[Pending<'_>]) {
        const SKIP: u32 = u32::MAX;
        const N: usize = 64;
        let mut ids = [SKIP; N];
        for chunk in batch.chunks(N) {
            for (p, id) in chunk.iter().zip(&mut ids) {
                self.stats.records += 1;
                *id = if p.fetch.minute > self.ceiling_minute {
                    self.reject(Reason::Future, p.line, p.raw);
                    SKIP
                } else {
                    self.checked_domain(p.fetch.domain, p.line, p.raw)
                        .unwrap_or(SKIP)
                };
            }
            for (p, &id) in chunk.iter().zip(&ids) {
                let f = &p.fetch;
                if id != SKIP && !self.add_id(id, f.minute, f.bytes, f.https, f.status) {
                    self.reject(Reason::TotalOverflow, p.line, p.raw);
                }
            }
        }
    }

    /// A line its format rejects.
    pub fn bad_line(&mut self, reason: Reason, line: u64, raw: &[u8]) {
        self.stats.records += 1;
        self.reject(reason, line, raw);
    }

    /// A line of an edge log that the edge answered from its cache: counted apart.
    pub fn served_from_cache(&mut self) {
        self.stats.records += 1;
        self.stats.cached += 1;
    }
}

impl Sink for Aggregator {
    fn record(&mut self, f: &Fields<'_>, line: u64, raw: &[u8]) {
        if let Some(cache) = f.cache
            && self.origin_rule.is_set()
            && self.origin_rule.matches(&fields::unquote(cache)) == Some(false)
        {
            return self.served_from_cache();
        }
        self.stats.records += 1;
        let time = f.time;
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
        let Some(id) = self.checked_domain(f.domain, line, raw) else {
            return;
        };
        let Some(bytes) = fields::parse_bytes(&fields::unquote(f.bytes)) else {
            return self.reject(Reason::BadBytes, line, raw);
        };
        let https = f
            .scheme
            .is_some_and(|s| fields::is_https(&fields::unquote(s)));
        let status = f.status.and_then(|s| match s.first() {
            Some(b'"') => fields::parse_status(&fields::unquote(s)),
            _ => fields::parse_status(s),
        });
        if !self.add_id(id, minute, bytes, https, status) {
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
    fn spellings_that_differ_in_case_are_one_domain_and_one_cached_spelling() {
        let mut a = Aggregator::new(0, i64::MAX, false);
        let spellings = [
            "Img.Example.COM",
            "iMG.eXAMPLE.com",
            "img.example.com",
            "\"IMG.example.com:8080\"",
        ];
        let ids: Vec<u32> = spellings
            .iter()
            .map(|s| a.domain_id(s.as_bytes()))
            .collect();
        assert_eq!(ids, [0, 0, 0, 0]);
        assert_eq!(a.names, [name("img.example.com")]);
        // The capitals' spellings are not kept: only their lower-cased forms.
        assert_eq!(a.raw_ids.len(), 2);
        assert!(
            a.raw_ids
                .keys()
                .all(|k| !k.iter().any(u8::is_ascii_uppercase))
        );
        assert_eq!(a.domain_id(b"B@D.com"), BAD_DOMAIN);
        assert_eq!(a.domain_id(&[b'A'; 300]), BAD_DOMAIN);
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

    /// A line's measures through a worker and the run's aggregation.
    fn fetch(a: &mut Aggregator, d: &str, minute: i64, bytes: u64, https: bool, code: Option<u16>) {
        let f = Fetch {
            minute,
            domain: d.as_bytes(),
            bytes,
            https,
            status: code,
        };
        a.fetch(&f, 1, b"");
    }

    #[test]
    fn https_bytes_and_status_counts_survive_drains_whatever_each_worker_saw_first() {
        let day = 20_000 * 1440;
        let lines: Vec<(&str, i64, u64, bool, Option<u16>)> = vec![
            ("a.com", day + 1, 10, true, Some(200)),
            ("a.com", day + 1, 5, false, Some(404)),
            ("a.com", day + 1, 7, true, Some(200)),
            ("a.com", day + 2, 1, false, None),
            ("b.com", day + 61, 3, true, Some(304)),
            // Past the inline codes of a block: 200, 404 and then six more.
            ("a.com", day + 3, 1, false, Some(500)),
            ("a.com", day + 3, 1, false, Some(501)),
            ("a.com", day + 3, 1, false, Some(502)),
            ("a.com", day + 3, 1, false, Some(503)),
            ("a.com", day + 3, 1, false, Some(504)),
            ("a.com", day + 3, 1, false, Some(505)),
        ];
        let mut want: std::collections::BTreeMap<(String, u16, u16), u64> = Default::default();
        for &(d, m, _, _, code) in &lines {
            if let Some(c) = code {
                *want
                    .entry((d.to_string(), (m - day) as u16, c))
                    .or_default() += 1;
            }
        }
        // Workers that see the lines in different orders (so different primary codes).
        for order in [false, true] {
            let mut run = Aggregator::new(0, i64::MAX, false);
            let mut seq = lines.clone();
            if order {
                seq.reverse();
            }
            for part in seq.chunks(3) {
                let mut w = Aggregator::new(0, i64::MAX, false);
                for &(d, m, b, h, c) in part {
                    fetch(&mut w, d, m, b, h, c);
                }
                w.drain_into(&mut run);
            }
            let cells = run.into_cells();
            let a = cells.iter().find(|c| c.domain.as_str() == "a.com").unwrap();
            assert_eq!((a.minutes[1], a.https[1], a.requests[1]), (22, 17, 3));
            assert_eq!((a.minutes[2], a.requests[2]), (1, 1));
            let b = cells.iter().find(|c| c.domain.as_str() == "b.com").unwrap();
            assert_eq!((b.minutes[61], b.https[61]), (3, 3));
            let mut got: std::collections::BTreeMap<(String, u16, u16), u64> = Default::default();
            for c in &cells {
                assert!(
                    c.statuses
                        .windows(2)
                        .all(|w| (w[0].minute, w[0].code) < (w[1].minute, w[1].code))
                );
                for s in &c.statuses {
                    got.insert((c.domain.to_string(), s.minute, s.code), s.count);
                }
            }
            assert_eq!(got, want, "reversed: {order}");
        }
    }

    proptest::proptest! {
        /// Lines of a few domains, minutes and codes (sometimes more codes than a block holds
        /// inline, sometimes counts past 16 bits), cut among workers anywhere: each cell's
        /// status counts are the plain sums, in (minute, code) order.
        #[test]
        fn status_counts_in_cells_are_the_sums_in_order(
            lines in proptest::collection::vec(
                (0usize..3, 0i64..3000, proptest::sample::select(vec![200u16, 206, 301, 302, 304, 404, 500, 502, 503]), 1u32..4),
                0..200),
            cuts in proptest::collection::vec(0usize..200, 0..4),
            big in 0u8..8,
        ) {
            let day = 20_000 * 1440;
            let domains = ["a.com", "b.com", "c.com"];
            let mut want: std::collections::BTreeMap<(String, i32, u16, u16), u64> =
                Default::default();
            let mut run = Aggregator::new(0, i64::MAX, false);
            let mut cuts = cuts;
            cuts.push(lines.len());
            cuts.sort_unstable();
            let mut from = 0;
            for cut in cuts {
                let cut = cut.min(lines.len()).max(from);
                let mut w = Aggregator::new(0, i64::MAX, false);
                for (i, &(d, m, code, times)) in lines[from..cut].iter().enumerate() {
                    // Past 16 bits, now and then: a code 70,000 times in a minute.
                    let times = if big == 0 && from + i == 0 { 70_000 } else { times };
                    for _ in 0..times {
                        fetch(&mut w, domains[d], day + m, 1, false, Some(code));
                    }
                    let minute = day + m;
                    *want
                        .entry((
                            domains[d].to_string(),
                            minute.div_euclid(1440) as i32,
                            minute.rem_euclid(1440) as u16,
                            code,
                        ))
                        .or_default() += u64::from(times);
                }
                w.drain_into(&mut run);
                from = cut;
            }
            let mut got: std::collections::BTreeMap<(String, i32, u16, u16), u64> =
                Default::default();
            for c in run.into_cells() {
                proptest::prop_assert!(c
                    .statuses
                    .windows(2)
                    .all(|w| (w[0].minute, w[0].code) < (w[1].minute, w[1].code)));
                for s in &c.statuses {
                    got.insert((c.domain.to_string(), c.day.0, s.minute, s.code), s.count);
                }
            }
            proptest::prop_assert_eq!(got, want);
        }
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
