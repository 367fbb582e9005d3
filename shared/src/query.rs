//! Answers a checked request from the store: read every needed (domain, day) as published,
//! sum over domains, roll minutes up to the interval, zero-fill up to the watermark and leave out
//! the slots after it, so "no traffic" (0) and "not yet known" (absent) never look alike.
//!
//! Every action of the family is a sum of the same cells; the action's measure says which parts
//! of a cell are read (the bytes alone take the fast path that skips the other columns).

use crate::api::action::Measure;
use crate::api::render::Point;
use crate::api::request::QueryRequest;
use crate::bucket::{Grain, MINUTES, View};
use crate::domain::DomainName;
use crate::published;
use crate::store::{Store, StoreError, manifest};
use crate::time::{Day, Minute};

/// Computes the series for a request over `domains` (its own list; for a request without one,
/// see [`series_of_all`]).
pub async fn series(
    store: &dyn Store,
    req: &QueryRequest,
    domains: &[DomainName],
) -> Result<Vec<Point>, StoreError> {
    let step = req.interval.minutes();
    let first = req.first_slot();
    // The minutes that could feed the slots; a slot holds its whole interval.
    let (lo, hi) = (first, Minute(req.last_slot().0 + step - 1));
    let days: Vec<Day> = (lo.day().0..=hi.day().0).map(Day).collect();
    let mut wanted = Vec::with_capacity(days.len() * domains.len());
    for d in domains {
        for &day in &days {
            wanted.push((d.clone(), day));
        }
    }
    // The watermark and the minutes come from one snapshot, so a run is seen whole or not.
    // Minutes are summed as they are walked, before the watermark is known: the slots after it
    // are cut off below. Sums are u128: 500 domains x 1,440 minutes of 2^64 - 1 still fit.
    let span = ((hi.0 - first.0) / step + 1) as usize;
    let spec = req.action.spec();
    let bytes_only = matches!(spec.measure, Measure::Bytes | Measure::Bits) && !spec.https;
    let codes = spec.measure == Measure::Codes;
    // For each day, the slot of each of its units (or none), worked out once per day and
    // share rather than per domain and unit; and the day's last unit in range, after which
    // rows are not even decoded (a 24-hour window needs a few minutes of its second day).
    // Units are minutes, or at intervals of five minutes and more the five-minute blocks of
    // each day's rollup: a fifth of the rows, and a prefix of each object.
    let grain = if step % 5 == 0 && first.0 % 5 == 0 {
        Grain::FiveMinutes
    } else {
        Grain::Minute
    };
    let per = grain.minutes() as i64;
    let table = |d: usize| -> Table {
        let offset = days[d].first_minute().0 - first.0;
        let mut t = Box::new([NONE; MINUTES]);
        for (u, slot) in t.iter_mut().take(grain.units()).enumerate() {
            let at = offset + u as i64 * per;
            if (0..=hi.0 - lo.0).contains(&at) {
                *slot = (at / step) as u32;
            }
        }
        let last = t.iter().rposition(|&i| i != NONE).unwrap_or(0);
        (t, last)
    };
    let init = || {
        (
            Sums::new(span, !bytes_only),
            vec![None::<Table>; days.len()],
        )
    };
    let view = View {
        grain,
        statuses: codes,
    };
    let (snap, shares) = published::visit_parts(
        store,
        &wanted,
        view,
        decoding_threads(),
        init,
        |(sums, tables), w, part| {
            // `wanted` holds each domain's days in order.
            let d = w % days.len();
            let (table, last) = tables[d].get_or_insert_with(|| table(d));
            let (table, last): (&[u32; MINUTES], usize) = (table, *last);
            if bytes_only {
                return part.bytes(grain, |unit, bytes| {
                    if let Some(&i) = table.get(unit).filter(|&&i| i != NONE) {
                        sums.bytes[i as usize] += u128::from(bytes);
                    }
                });
            }
            let Sums {
                bytes: b,
                https: h,
                requests: r,
                codes: c,
            } = sums;
            let add = |unit: usize, bytes: u64, requests: u64, https: u64| {
                if let Some(&i) = table.get(unit).filter(|&&i| i != NONE) {
                    let i = i as usize;
                    b[i] += u128::from(bytes);
                    r[i] += u128::from(requests);
                    h[i] += u128::from(https);
                }
            };
            if !codes {
                return part.measures(grain, last, add);
            }
            part.rows_and_statuses(grain, last, add, |s| {
                if let Some(&i) = table.get(usize::from(s.minute)).filter(|&&i| i != NONE) {
                    c.add(i as usize, s.code, s.count);
                }
            })
        },
    )
    .await?;
    let mut shares = shares.into_iter().map(|(sums, _)| sums);
    let mut sums = shares
        .next()
        .unwrap_or_else(|| Sums::new(span, !bytes_only));
    for other in shares {
        sums.merge(other);
    }
    let Some(mark) = snap.watermark else {
        return Ok(Vec::new());
    };
    let last = req.last_slot().min(req.interval.floor(mark));
    if last < first {
        return Ok(Vec::new());
    }
    let slots = ((last.0 - first.0) / step + 1) as usize;
    Ok((0..slots)
        .map(|i| {
            let mut p = Point::empty(Minute(first.0 + i as i64 * step));
            p.bytes = sums.bytes[i];
            if !bytes_only {
                p.https = sums.https[i];
                p.requests = sums.requests[i];
            }
            if codes {
                p.codes = sums.codes.at(i);
            }
            p
        })
        .collect())
}

/// A minute that falls in no slot of the request.
const NONE: u32 = u32::MAX;

/// A day's slot for each of its units (minutes or five-minute blocks), and its last unit in a
/// slot.
type Table = (Box<[u32; MINUTES]>, usize);

/// Threads a query's decoding is spread over: the machine's (a Lambda function under 1,769 MB
/// has one), found once.
fn decoding_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The running sums of every slot, one column per measure.
struct Sums {
    bytes: Vec<u128>,
    https: Vec<u128>,
    requests: Vec<u128>,
    codes: CodeSums,
}

impl Sums {
    /// Adds another share's sums (of the same request) into these.
    fn merge(&mut self, other: Sums) {
        let add = |mine: &mut Vec<u128>, theirs: Vec<u128>| {
            for (a, b) in mine.iter_mut().zip(theirs) {
                *a += b;
            }
        };
        add(&mut self.bytes, other.bytes);
        add(&mut self.https, other.https);
        add(&mut self.requests, other.requests);
        let theirs = other.codes;
        for (code, column) in theirs.codes.into_iter().zip(theirs.columns) {
            for (slot, n) in column.into_iter().enumerate() {
                if n > 0 {
                    self.codes.add_wide(slot, code, n);
                }
            }
        }
    }

    fn new(span: usize, every_measure: bool) -> Sums {
        let column = |wanted: bool| vec![0u128; if wanted { span } else { 0 }];
        Sums {
            bytes: column(true),
            https: column(every_measure),
            requests: column(every_measure),
            codes: CodeSums {
                span,
                ..CodeSums::default()
            },
        }
    }
}

/// Requests per (slot, status code): a column of slots per code seen, found through a table
/// indexed by the code (status codes are three digits; others, which no cell holds, through
/// the list).
#[derive(Default)]
struct CodeSums {
    /// Slots in a column.
    span: usize,
    /// For each code below 1,000: its column + 1, or 0 if not seen yet.
    index: Vec<u16>,
    codes: Vec<u16>,
    columns: Vec<Vec<u128>>,
    /// The code added last, and its column.
    last: Option<(u16, usize)>,
}

impl CodeSums {
    fn add(&mut self, slot: usize, code: u16, count: u64) {
        self.add_wide(slot, code, u128::from(count));
    }

    fn add_wide(&mut self, slot: usize, code: u16, count: u128) {
        // Cells hand their counts over code by code: most adds are to the last code's column.
        if let Some((last, column)) = self.last
            && last == code
        {
            self.columns[column][slot] += count;
            return;
        }
        if self.index.is_empty() {
            self.index = vec![0; 1000];
        }
        let column = match self.index.get(usize::from(code)) {
            Some(&n) if n > 0 => usize::from(n - 1),
            _ => match self.codes.iter().position(|&c| c == code) {
                Some(n) => n,
                None => {
                    self.codes.push(code);
                    self.columns.push(vec![0; self.span]);
                    let n = self.codes.len() - 1;
                    if let Some(slot) = self.index.get_mut(usize::from(code)) {
                        *slot = (n + 1) as u16;
                    }
                    n
                }
            },
        };
        self.last = Some((code, column));
        self.columns[column][slot] += count;
    }

    /// A slot's codes with their counts, ascending by code, without the codes it has none of.
    fn at(&self, slot: usize) -> Vec<(u16, u128)> {
        let mut out: Vec<(u16, u128)> = self
            .codes
            .iter()
            .zip(&self.columns)
            .filter(|(_, col)| col[slot] > 0)
            .map(|(&code, col)| (code, col[slot]))
            .collect();
        out.sort_unstable();
        out
    }
}

/// The series of a request that names no domain: the sum over every domain with anything
/// published on a day of its range that `readable` lets the caller see. The domains are listed
/// and summed at one manifest sequence number (listed again if a run was published in between),
/// so a run is seen whole here too.
pub async fn series_of_all(
    store: &dyn Store,
    req: &QueryRequest,
    readable: impl Fn(&DomainName) -> bool,
) -> Result<Vec<Point>, StoreError> {
    for _ in 0..ATTEMPTS {
        let (m, _) = manifest::read(store).await?;
        let (before, Some(mark)) = (m.seq, m.watermark()) else {
            // Nothing was ever published.
            return Ok(Vec::new());
        };
        let domains = domains_with_data(store, req, mark, &readable).await?;
        let points = series(store, req, &domains).await?;
        if manifest::read(store).await?.0.seq == before {
            return Ok(points);
        }
    }
    Err(StoreError::Unavailable(format!(
        "the store changed under {ATTEMPTS} listings in a row"
    )))
}

/// How many times [`series_of_all`] lists again before it gives up on a store that keeps
/// changing.
const ATTEMPTS: usize = 10;

/// The domains with anything published on a day of the request's range that `readable` lets
/// the caller see, sorted. Days after the watermark's hold nothing and are not listed (a year's
/// range at 86,400 s lists at most the retention's days).
async fn domains_with_data(
    store: &dyn Store,
    req: &QueryRequest,
    watermark: Minute,
    readable: impl Fn(&DomainName) -> bool,
) -> Result<Vec<DomainName>, StoreError> {
    let step = req.interval.minutes();
    let (lo, hi) = (req.first_slot(), Minute(req.last_slot().0 + step - 1));
    let mut out = std::collections::BTreeSet::new();
    for day in lo.day().0..=hi.day().0.min(watermark.day().0) {
        for d in published::domains_of_day(store, Day(day)).await? {
            if readable(&d) {
                out.insert(d);
            }
        }
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::request::{ACTION, Interval, RawRequest, parse_request};
    use crate::bucket::{DayBucket, MINUTES, RunId};
    use crate::domain::DomainName;
    use crate::store::memory::AsRemote;
    use crate::store::{MemoryStore, Precondition};
    use crate::store::{keys, watermark};
    use crate::time::ApiTime;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const NOW: i64 = 1_576_022_400; // 2019-12-11T00:00:00Z

    /// The request's own domains.
    async fn series(store: &MemoryStore, req: &QueryRequest) -> Result<Vec<Point>, StoreError> {
        super::series(store, req, req.domains.as_ref().unwrap().names()).await
    }

    /// [`series`], and checks that a store read as a remote one (objects fetched concurrently,
    /// then decoded) answers the same.
    async fn series_both_ways(store: MemoryStore, req: &QueryRequest) -> (MemoryStore, Vec<Point>) {
        let inline = series(&store, req).await.unwrap();
        let remote = AsRemote(store);
        let other = super::series(&remote, req, req.domains.as_ref().unwrap().names())
            .await
            .unwrap();
        assert_eq!(inline, other, "read inline and read as a remote store");
        (remote.0, inline)
    }

    /// Writes minute totals straight into buckets, as the batch would.
    async fn fill(store: &MemoryStore, data: &BTreeMap<(String, i64), u64>) {
        let mut buckets: BTreeMap<String, DayBucket> = BTreeMap::new();
        for ((domain, minute), bytes) in data {
            let m = Minute(*minute);
            let d = DomainName::parse(domain).unwrap();
            let b = buckets
                .entry(keys::bucket(m.day(), &d))
                .or_insert_with(|| DayBucket::new(d, m.day()));
            b.minutes[m.minute_of_day()] += bytes;
        }
        for (k, b) in buckets {
            store.put(&k, b.encode(), Precondition::None).await.unwrap();
        }
        if let Some(mark) = data.keys().map(|(_, m)| *m).max() {
            watermark::advance(store, Minute(mark)).await.unwrap();
        }
    }

    fn request(domains: &str, start: i64, end: i64, interval: Option<Interval>) -> QueryRequest {
        let mut q = format!(
            "Action={ACTION}&DomainName={domains}&StartTime={}&EndTime={}",
            ApiTime::from_unix_seconds(start),
            ApiTime::from_unix_seconds(end)
        );
        if let Some(iv) = interval {
            q.push_str(&format!("&Interval={}", iv.seconds()));
        }
        parse_request(
            &RawRequest {
                method: "GET",
                query: Some(&q),
                ..Default::default()
            },
            NOW,
        )
        .1
        .unwrap()
    }

    fn m(s: &str) -> i64 {
        ApiTime::parse(s).unwrap().minute().0
    }

    #[tokio::test]
    async fn domains_are_summed_and_minutes_rolled_up() {
        let s = MemoryStore::new();
        let mut data = BTreeMap::new();
        data.insert(("a.com".to_owned(), m("2019-12-10T20:00:00Z")), 1);
        data.insert(("a.com".to_owned(), m("2019-12-10T20:04:00Z")), 2);
        data.insert(("b.com".to_owned(), m("2019-12-10T20:05:00Z")), 4);
        data.insert(("c.com".to_owned(), m("2019-12-10T20:05:00Z")), 100);
        fill(&s, &data).await;
        let start = ApiTime::parse("2019-12-10T20:00:00Z")
            .unwrap()
            .unix_seconds();
        let pts = series(
            &s,
            &request(
                "a.com,b.com",
                start,
                start + 600,
                Some(Interval::FiveMinutes),
            ),
        )
        .await
        .unwrap();
        let got: Vec<u128> = pts.iter().map(|p| p.bytes).collect();
        // 20:00 holds 20:00..20:04; 20:05 holds 20:05..20:09; 20:10 is after the watermark.
        assert_eq!(got, [3, 4]);
    }

    #[tokio::test]
    async fn many_domains_decoded_in_shares_sum_as_one() {
        use crate::api::action::Action;
        use crate::bucket::StatusCount;
        let s = MemoryStore::new();
        let base = Minute(m("2019-12-10T23:50:00Z"));
        let mut names = Vec::new();
        // 60 domains over two days: 120 objects, more than one share's worth.
        for k in 0..60u64 {
            let d = DomainName::parse(&format!("d{k}.example.com")).unwrap();
            for day_offset in [0, 20] {
                let at = Minute(base.0 + day_offset);
                let mut b = DayBucket::new(d.clone(), at.day());
                let i = at.minute_of_day();
                b.minutes[i] = 100 + k;
                b.https[i] = k;
                b.requests[i] = 2;
                // Each share meets codes the others may not: columns in other orders.
                for code in [200 + (k % 3) as u16, 500 + (k % 7) as u16] {
                    b.statuses.push(StatusCount {
                        minute: i as u16,
                        code,
                        count: 1,
                    });
                }
                s.put(&keys::bucket(b.day, &d), b.encode(), Precondition::None)
                    .await
                    .unwrap();
            }
            names.push(d.to_string());
        }
        watermark::advance(&s, Minute(base.0 + 30)).await.unwrap();
        let start = base.unix_seconds();
        let mut req = request(&names.join(","), start, start + 1800, None);
        req.action = Action::from_name("DescribeDomainSrcHttpCodeData").unwrap();
        req.interval = Interval::FiveMinutes;
        let wanted: Vec<(DomainName, Day)> = names
            .iter()
            .flat_map(|n| {
                let d = DomainName::parse(n).unwrap();
                [(d.clone(), base.day()), (d, Minute(base.0 + 20).day())]
            })
            .collect();
        for shares in [1, 2, 5] {
            let view = View {
                grain: Grain::FiveMinutes,
                statuses: true,
            };
            let (_, states) = published::visit_parts(
                &s,
                &wanted,
                view,
                shares,
                Vec::new,
                |seen: &mut Vec<usize>, w, _| {
                    seen.push(w);
                    Ok(())
                },
            )
            .await
            .unwrap();
            assert_eq!(states.len(), shares.min(120 / 16));
            let all: Vec<usize> = states.concat();
            assert_eq!(all, (0..120).collect::<Vec<_>>());
        }
        let (_, pts) = series_both_ways(s, &req).await;
        type Measures = (u128, u128, u128, Vec<(u16, u128)>);
        let at: Vec<Measures> = pts
            .iter()
            .filter(|p| p.requests > 0)
            .map(|p| (p.bytes, p.https, p.requests, p.codes.clone()))
            .collect();
        let codes = |lo: u16, n: u64, k: std::ops::Range<u64>| -> Vec<(u16, u128)> {
            (0..n as u16)
                .map(|c| {
                    (
                        lo + c,
                        k.clone().filter(|k| k % n == u64::from(c)).count() as u128,
                    )
                })
                .collect()
        };
        let expected_codes: Vec<(u16, u128)> =
            [codes(200, 3, 0..60), codes(500, 7, 0..60)].concat();
        let one = (
            (0..60u128).map(|k| 100 + k).sum(),
            (0..60u128).sum(),
            120,
            expected_codes,
        );
        assert_eq!(at, [one.clone(), one]);
    }

    #[tokio::test]
    async fn a_bucket_whose_head_outgrows_the_first_read_is_read_whole() {
        use crate::api::action::Action;
        let mut s = MemoryStore::new();
        let base = Minute(m("2019-12-10T20:00:00Z"));
        let d = DomainName::parse("a.com").unwrap();
        let mut b = DayBucket::new(d.clone(), base.day());
        // 2,000 runs folded in: a head of 32 KB, past what a five-minute query reads first.
        b.runs = (0..2000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[..4].copy_from_slice(&i.to_be_bytes());
                RunId(id)
            })
            .collect();
        for i in 0..10 {
            b.minutes[base.minute_of_day() + i] = 1 + i as u64;
            b.requests[base.minute_of_day() + i] = 1;
        }
        let bytes = b.encode();
        assert!(bytes.len() > 32_000);
        s.put(&keys::bucket(b.day, &d), bytes, Precondition::None)
            .await
            .unwrap();
        watermark::advance(&s, Minute(base.0 + 9)).await.unwrap();
        let start = base.unix_seconds();
        let mut req = request("a.com", start, start + 600, Some(Interval::FiveMinutes));
        for action in ["DescribeDomainSrcTrafficData", "DescribeDomainSrcQpsData"] {
            req.action = Action::from_name(action).unwrap();
            let (back, pts) = series_both_ways(s, &req).await;
            s = back;
            let got: Vec<(u128, u128)> = pts.iter().map(|p| (p.bytes, p.requests)).collect();
            assert_eq!(got, [(15, 5), (40, 5)], "{action}");
        }
    }

    #[tokio::test]
    async fn https_requests_and_status_codes_are_summed_and_rolled_up_too() {
        use crate::api::action::Action;
        use crate::bucket::StatusCount;
        let s = MemoryStore::new();
        let base = Minute(m("2019-12-10T20:00:00Z"));
        for (name, k) in [("a.com", 1u64), ("b.com", 10)] {
            let d = DomainName::parse(name).unwrap();
            let mut b = DayBucket::new(d.clone(), base.day());
            for i in [0usize, 4, 5] {
                let at = base.minute_of_day() + i;
                b.minutes[at] = 100 * k;
                b.https[at] = 30 * k;
                b.requests[at] = 3 * k;
                b.statuses.push(StatusCount {
                    minute: at as u16,
                    code: 200,
                    count: 2 * k,
                });
                b.statuses.push(StatusCount {
                    minute: at as u16,
                    code: if k == 1 { 404 } else { 502 },
                    count: k,
                });
            }
            s.put(&keys::bucket(b.day, &d), b.encode(), Precondition::None)
                .await
                .unwrap();
        }
        watermark::advance(&s, Minute(base.0 + 9)).await.unwrap();
        let start = base.unix_seconds();
        let mut req = request(
            "a.com,b.com",
            start,
            start + 600,
            Some(Interval::FiveMinutes),
        );
        req.action = Action::from_name("DescribeDomainSrcHttpCodeData").unwrap();
        let pts = series(&s, &req).await.unwrap();
        type Sums = (u128, u128, u128, Vec<(u16, u128)>);
        let got: Vec<Sums> = pts
            .into_iter()
            .map(|p| (p.bytes, p.https, p.requests, p.codes))
            .collect();
        assert_eq!(
            got,
            [
                (
                    2 * 1100,
                    2 * 330,
                    2 * 33,
                    vec![(200, 44), (404, 2), (502, 20)]
                ),
                (1100, 330, 33, vec![(200, 22), (404, 1), (502, 10)]),
            ]
        );
        // The bytes-only path reads the same bytes.
        req.action = Action::REAL_TIME_SRC_TRAFFIC;
        let bytes: Vec<u128> = series(&s, &req)
            .await
            .unwrap()
            .iter()
            .map(|p| p.bytes)
            .collect();
        assert_eq!(bytes, [2200, 1100]);
    }

    #[tokio::test]
    async fn a_request_without_domains_sums_those_the_caller_may_read() {
        let s = MemoryStore::new();
        let mut data = BTreeMap::new();
        data.insert(("a.com".to_owned(), m("2019-12-10T20:00:00Z")), 1);
        data.insert(("b.com".to_owned(), m("2019-12-10T20:01:00Z")), 10);
        data.insert(("c.org".to_owned(), m("2019-12-09T23:59:00Z")), 100);
        data.insert(("d.org".to_owned(), m("2019-12-08T00:00:00Z")), 1000);
        fill(&s, &data).await;
        let start = ApiTime::parse("2019-12-09T00:00:00Z")
            .unwrap()
            .unix_seconds();
        let mut req = request("a.com", start, start + 2 * 86_400 - 60, None);
        req.action = crate::api::action::Action::from_name("DescribeDomainSrcTrafficData").unwrap();
        req.interval = Interval::Day;
        req.domains = None;
        let total = |pts: Vec<Point>| pts.iter().map(|p| p.bytes).collect::<Vec<_>>();
        // d.org has nothing in the range; the days are 2019-12-09 and 2019-12-10.
        let all = series_of_all(&s, &req, |_| true).await.unwrap();
        assert_eq!(total(all), [100, 11]);
        let empty = MemoryStore::new();
        assert!(
            series_of_all(&empty, &req, |_| true)
                .await
                .unwrap()
                .is_empty()
        );
        let mine = series_of_all(&s, &req, |d| d.as_str().ends_with(".com"))
            .await
            .unwrap();
        assert_eq!(total(mine), [0, 11]);
    }

    #[tokio::test]
    async fn slots_are_zero_filled_up_to_the_watermark_and_absent_after_it() {
        let s = MemoryStore::new();
        let mut data = BTreeMap::new();
        data.insert(("a.com".to_owned(), m("2019-12-10T20:02:00Z")), 5);
        fill(&s, &data).await;
        let start = ApiTime::parse("2019-12-10T20:00:00Z")
            .unwrap()
            .unix_seconds();
        let pts = series(&s, &request("a.com", start, start + 600, None))
            .await
            .unwrap();
        let got: Vec<(String, u128)> = pts.iter().map(|p| (p.slot.to_string(), p.bytes)).collect();
        assert_eq!(
            got,
            [
                ("2019-12-10T20:00:00Z".to_owned(), 0),
                ("2019-12-10T20:01:00Z".to_owned(), 0),
                ("2019-12-10T20:02:00Z".to_owned(), 5),
            ]
        );
    }

    #[tokio::test]
    async fn an_empty_store_answers_no_slots() {
        let s = MemoryStore::new();
        let start = ApiTime::parse("2019-12-10T20:00:00Z")
            .unwrap()
            .unix_seconds();
        assert!(
            series(&s, &request("a.com", start, start + 60, None))
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_corrupt_bucket_is_an_error_naming_its_key() {
        let d = DomainName::parse("a.com").unwrap();
        let mut b = DayBucket::new(d.clone(), Minute(m("2019-12-10T00:00:00Z")).day());
        b.apply(RunId([0; 16]), &[1; MINUTES]).unwrap();
        let good = b.encode();
        // A byte of the five-minute rollup (after a head of about 90 bytes), read at 300 s;
        // one of the minute rows (the status section, empty, is the last 4 bytes), read at 60.
        for (at, interval) in [
            (100, Interval::FiveMinutes),
            (good.len() - 5, Interval::Minute),
        ] {
            let s = MemoryStore::new();
            let mut bytes = good.clone();
            bytes[at] ^= 1;
            s.put(&keys::bucket(b.day, &d), bytes, Precondition::None)
                .await
                .unwrap();
            watermark::advance(&s, Minute(m("2019-12-10T23:00:00Z")))
                .await
                .unwrap();
            let start = ApiTime::parse("2019-12-10T20:00:00Z")
                .unwrap()
                .unix_seconds();
            let err = series(&s, &request("a.com", start, start + 600, Some(interval)))
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("buckets/2019-12-10/a.com.bkt"),
                "{err}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn returned_slots_sum_to_the_stored_minutes_in_range(
            lines in proptest::collection::vec((0usize..4, 0i64..(3 * 1440), 0u64..1_000_000), 0..200),
            start_off in 0i64..(3 * 1440),
            len in 1i64..(3 * 1440),
            iv in prop_oneof![Just(Interval::Minute), Just(Interval::FiveMinutes), Just(Interval::Hour), Just(Interval::Day)],
            ndomains in 1usize..4,
        ) {
            let base = m("2019-12-07T00:00:00Z");
            let names = ["a.com", "b.com", "c.com", "d.com"];
            let mut data: BTreeMap<(String, i64), u64> = BTreeMap::new();
            for (d, off, bytes) in &lines {
                *data.entry((names[*d].to_owned(), base + off)).or_default() += bytes;
            }
            let start = (base + start_off) * 60;
            let end = start + len * 60;
            let req = request(&names[..ndomains].join(","), start, end, Some(iv));
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let pts = rt.block_on(async {
                let s = MemoryStore::new();
                fill(&s, &data).await;
                series_both_ways(s, &req).await.1
            });
            let mark = data.keys().map(|(_, m)| *m).max();
            let step = iv.minutes();
            let lo = req.first_slot().0;
            let hi = match mark {
                Some(mark) => req.last_slot().0.min(iv.floor(Minute(mark)).0) + step - 1,
                None => lo - 1,
            };
            let expected: u128 = data.iter()
                .filter(|((d, m), _)| names[..ndomains].contains(&d.as_str()) && (lo..=hi).contains(m))
                .map(|(_, b)| u128::from(*b))
                .sum();
            prop_assert_eq!(pts.iter().map(|p| p.bytes).sum::<u128>(), expected);
            // Slot by slot too (at five minutes and over, read from the rollup).
            for p in &pts {
                let slot: u128 = data.iter()
                    .filter(|((d, m), _)| names[..ndomains].contains(&d.as_str()) && (p.slot.0..p.slot.0 + step).contains(m))
                    .map(|(_, b)| u128::from(*b))
                    .sum();
                prop_assert_eq!(p.bytes, slot);
            }
            for w in pts.windows(2) {
                prop_assert_eq!(w[1].slot.0 - w[0].slot.0, step);
            }
            if let (Some(p), Some(mark)) = (pts.last(), mark) {
                prop_assert!(p.slot.0 <= mark);
            }
        }
    }
}
