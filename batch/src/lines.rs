//! Drives a [`LineFormat`] over a buffer of whole lines, into an [`Aggregator`].

use crate::aggregate::{Aggregator, Fetch, Pending};
use crate::fields::TimeParser;
use crate::formats::alibaba::Alibaba;
use crate::formats::cloudfront::Cloudfront;
use crate::formats::json::{Cloudflare, JsonFields, Jsonl};
use crate::formats::marks::{LineEnd, LineMarks, Marker};
use crate::formats::nginx::{Nginx, NginxFormat};
use crate::formats::{Format, Line, LineFormat, OriginRule};
use crate::rejects::Reason;
use std::borrow::Cow;

/// Which formats a run reads and how: `--format` and the flags of each.
#[derive(Debug, Clone, Default)]
pub struct FormatSpec {
    /// `--format`; `None` is `auto`: decided per input by its first bytes.
    pub forced: Option<Format>,
    /// `--origin-statuses`.
    pub origin: OriginRule,
    /// The `jsonl` key mapping, when given.
    pub json: Option<JsonFields>,
    /// The compiled `--nginx-log-format`, when given.
    pub nginx: Option<NginxFormat>,
}

/// The format flags as given (`--format` and what each format needs).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FormatFlags {
    /// The log format: auto (by each input's first bytes), csv, cloudfront, alibaba,
    /// cloudflare, jsonl or nginx.
    #[arg(long)]
    pub format: Option<String>,
    /// Count only lines whose cache status is one of these (comma-separated, any case);
    /// the others are counted apart as served from cache. Default: every line of CSV, JSON
    /// lines and nginx logs; each CDN format's own rule (see the README).
    #[arg(long, value_delimiter = ',')]
    pub origin_statuses: Option<Vec<String>>,
    /// With --format nginx: the log_format string exactly as in nginx.conf (`combined` is the
    /// predefined one); it needs a time, a host and $upstream_bytes_received.
    #[arg(long)]
    pub nginx_log_format: Option<String>,
    /// With --format jsonl: the key of the time.
    #[arg(long)]
    pub time_field: Option<String>,
    /// With --format jsonl: the key of the domain.
    #[arg(long)]
    pub domain_field: Option<String>,
    /// With --format jsonl: the key of the origin bytes.
    #[arg(long)]
    pub bytes_field: Option<String>,
    /// With --format jsonl: the key of the scheme.
    #[arg(long)]
    pub scheme_field: Option<String>,
    /// With --format jsonl: the key of the origin's HTTP status.
    #[arg(long)]
    pub status_field: Option<String>,
    /// With --format jsonl: the key of the cache status (for --origin-statuses).
    #[arg(long)]
    pub cache_status_field: Option<String>,
}

impl FormatSpec {
    /// Checks the flags: a known format, a usable `log_format`, the JSON fields together.
    pub fn from_flags(f: &FormatFlags) -> Result<FormatSpec, String> {
        use clap::ValueEnum;
        let forced = match f.format.as_deref().map(str::trim) {
            None | Some("auto") => None,
            Some(name) => Some(Format::from_str(name, true).map_err(|_| {
                format!("--format {name:?}: one of auto, csv, cloudfront, alibaba, cloudflare, jsonl, nginx")
            })?),
        };
        let nginx = match &f.nginx_log_format {
            Some(s) => {
                Some(NginxFormat::compile(s).map_err(|e| format!("--nginx-log-format: {e}"))?)
            }
            None => None,
        };
        let json = match (&f.time_field, &f.domain_field, &f.bytes_field) {
            (Some(t), Some(d), Some(b)) => Some(JsonFields {
                time: t.clone(),
                domain: d.clone(),
                bytes: b.clone(),
                scheme: f.scheme_field.clone(),
                status: f.status_field.clone(),
                cache_status: f.cache_status_field.clone(),
            }),
            (None, None, None) => None,
            _ => return Err("--time-field, --domain-field and --bytes-field go together".into()),
        };
        Ok(FormatSpec {
            forced,
            origin: OriginRule::new(f.origin_statuses.as_deref()),
            json,
            nginx,
        })
    }

    /// Whether inputs of `format` can be read with the flags given; `Err` says what flag a line
    /// format needs.
    pub fn check(&self, format: Format) -> Result<(), &'static str> {
        match format {
            Format::Jsonl if self.json.is_none() => {
                Err("--format jsonl needs --time-field, --domain-field and --bytes-field")
            }
            Format::Nginx if self.nginx.is_none() => Err("--format nginx needs --nginx-log-format"),
            _ => Ok(()),
        }
    }

    /// A reader for one input of a line format; `Err` says what flag it needs (see
    /// [`FormatSpec::check`]).
    pub fn reader(&self, format: Format) -> Result<Box<dyn Feed>, &'static str> {
        let origin = self.origin.clone();
        Ok(match (format, &self.json, &self.nginx) {
            (Format::Cloudfront, ..) => Box::new(Cloudfront::new(origin)),
            (Format::Alibaba, ..) => Box::new(Alibaba::new(origin)),
            (Format::Cloudflare, ..) => Box::new(Cloudflare::new(origin)),
            (Format::Jsonl, Some(json), _) => Box::new(Jsonl::new(json, origin)),
            (Format::Nginx, _, Some(nginx)) => Box::new(Nginx::new(nginx.clone(), origin)),
            (Format::Csv, ..) => return Err("CSV is read by its own scanner"),
            _ => return Err(self.check(format).err().unwrap_or("no reader")),
        })
    }
}

/// Where a feed stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    /// Bytes consumed: every complete line.
    pub consumed: usize,
    /// Physical lines consumed.
    pub lines: u64,
}

/// A line format as the reader drives it, a buffer at a time: [`feed`] compiled for each
/// format, so the reader pays one dynamic call a buffer and each format's `parse` inlines
/// into its line loop (a call a line, its result returned through memory, cost more).
pub trait Feed: Send {
    /// [`feed`] with this format.
    fn feed(
        &mut self,
        time: &mut TimeParser,
        buf: &[u8],
        eof: bool,
        first_line: u64,
        max_line: usize,
        agg: &mut Aggregator,
    ) -> Fed;
}

impl<F: LineFormat> Feed for F {
    fn feed(
        &mut self,
        time: &mut TimeParser,
        buf: &[u8],
        eof: bool,
        first_line: u64,
        max_line: usize,
        agg: &mut Aggregator,
    ) -> Fed {
        feed(self, time, buf, eof, first_line, max_line, agg)
    }
}

/// Feeds every complete line of `buf` (at `eof` the last needs no newline) to `format` and the
/// result to `agg`. `first_line` is the line number of `buf[0]`; a line longer than
/// `max_line` bytes is rejected as too long. A format that reads lines by their marks
/// ([`LineFormat::marks`]) gets each line marked as its end is found.
#[inline]
pub fn feed<F: LineFormat + ?Sized>(
    format: &mut F,
    time: &mut TimeParser,
    buf: &[u8],
    eof: bool,
    first_line: u64,
    max_line: usize,
    agg: &mut Aggregator,
) -> Fed {
    if let Some((marker, [a, b, c, d])) = format.marks() {
        // A format of three bytes repeats its third as its fourth: marked three times a block,
        // not four.
        return if c == d {
            feed_marked(
                format,
                marker,
                [a, b, c],
                time,
                buf,
                eof,
                first_line,
                max_line,
                agg,
            )
        } else {
            feed_marked(
                format,
                marker,
                [a, b, c, d],
                time,
                buf,
                eof,
                first_line,
                max_line,
                agg,
            )
        };
    }
    let mut start = 0;
    let mut line = first_line;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let end = match memchr::memchr(b'\n', &buf[start..]) {
            Some(i) => start + i,
            None if eof && start < buf.len() => buf.len(),
            None => break,
        };
        let raw = &buf[start..end];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        one(format, time, raw, line, max_line, agg, &mut batch);
        line += 1;
        start = (end + 1).min(buf.len());
        if end == buf.len() {
            break;
        }
    }
    agg.fetch_all(&batch);
    Fed {
        consumed: start,
        lines: line - first_line,
    }
}

/// [`feed`] for a format read by its marks, of `bytes`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn feed_marked<F: LineFormat + ?Sized, const N: usize>(
    format: &mut F,
    marker: Marker,
    bytes: [u8; N],
    time: &mut TimeParser,
    buf: &[u8],
    eof: bool,
    first_line: u64,
    max_line: usize,
    agg: &mut Aggregator,
) -> Fed {
    let mut start = 0;
    let mut line = first_line;
    let mut batch = Vec::with_capacity(BATCH);
    let mut marks = LineMarks::<N>::default();
    let mut long: [Vec<u64>; N] = std::array::from_fn(|_| Vec::new());
    while let Some(rest) = buf.get(start..).filter(|r| !r.is_empty()) {
        let (end, marked) = match marker.mark_line(rest, bytes, &mut marks) {
            LineEnd::Newline(i) => (start + i, true),
            LineEnd::Open if eof => (buf.len(), true),
            LineEnd::Open => break,
            // Lines of over LINE_BLOCKS blocks (rare) are marked apart, once their end is
            // found.
            LineEnd::Long => match memchr::memchr(b'\n', rest) {
                Some(i) => (start + i, false),
                None if eof => (buf.len(), false),
                None => break,
            },
        };
        let raw = &buf[start..end];
        let cut = raw.strip_suffix(b"\r");
        let raw = cut.unwrap_or(raw);
        if raw.len() > max_line {
            agg.bad_line(Reason::LineTooLong, line, raw);
        } else if !raw.trim_ascii().is_empty() {
            let parsed = if marked {
                if cut.is_some() {
                    // The CR is no part of the line: neither is a mark of it.
                    marks.unmark(raw.len());
                }
                format.parse_marked(raw, &marks.each(), time)
            } else {
                marker.mark_each(raw, bytes, &mut long);
                format.parse_marked(raw, &long.each_ref().map(Vec::as_slice), time)
            };
            add(parsed, raw, line, agg, &mut batch);
        }
        line += 1;
        start = (end + 1).min(buf.len());
    }
    agg.fetch_all(&batch);
    Fed {
        consumed: start,
        lines: line - first_line,
    }
}

/// Origin fetches held back to be added together ([`Aggregator::fetch_all`]): added one at
/// a time, each line's waits on memory came after its whole parse, in series (nginx 0.96 of
/// the time with them batched, 10M lines, one thread).
const BATCH: usize = 32;

/// One line into the aggregator: an origin fetch whose domain is lent by the line joins
/// `batch` (added when it is full), the rest are counted at once.
#[inline]
fn one<'a, F: LineFormat + ?Sized>(
    format: &mut F,
    time: &mut TimeParser,
    raw: &'a [u8],
    line: u64,
    max_line: usize,
    agg: &mut Aggregator,
    batch: &mut Vec<Pending<'a>>,
) {
    if raw.len() > max_line {
        return agg.bad_line(Reason::LineTooLong, line, raw);
    }
    add(format.parse(raw, time), raw, line, agg, batch);
}

/// A line read, into the aggregator (see [`one`]).
#[inline(always)]
fn add<'a>(
    parsed: Line<'a>,
    raw: &'a [u8],
    line: u64,
    agg: &mut Aggregator,
    batch: &mut Vec<Pending<'a>>,
) {
    match parsed {
        Line::Skip => {}
        Line::Cached => agg.served_from_cache(),
        Line::Bad(reason) => agg.bad_line(reason, line, raw),
        Line::Fetch(p) => {
            let (minute, bytes, https, status) = (p.minute, p.bytes, p.https, p.status);
            match p.domain {
                Cow::Borrowed(domain) => {
                    batch.push(Pending {
                        fetch: Fetch {
                            minute,
                            domain,
                            bytes,
                            https,
                            status,
                        },
                        line,
                        raw,
                    });
                    if batch.len() == BATCH {
                        agg.fetch_all(batch);
                        batch.clear();
                    }
                }
                // A decoded domain (CloudFront's URL-encoded hosts) lives only as long as
                // this line.
                Cow::Owned(domain) => {
                    let fetch = Fetch {
                        minute,
                        domain: &domain,
                        bytes,
                        https,
                        status,
                    };
                    agg.fetch(&fetch, line, raw)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_line_is_fed_once_and_the_tail_waits_for_more() {
        let f = NginxFormat::compile("[$time_iso8601] $host $upstream_bytes_received").unwrap();
        let mut n = Nginx::new(f, OriginRule::default());
        let mut agg = Aggregator::new(0, i64::MAX, true);
        let mut t = TimeParser::default();
        let buf = b"[2019-12-10T20:00:13Z] a.com 5\r\n\nnope\n[2019-12-10T20:01:13Z] b.com -\n[2019-12-10T20:02";
        let fed = feed(&mut n, &mut t, buf, false, 1, 1 << 20, &mut agg);
        assert_eq!(fed.lines, 4);
        assert_eq!(&buf[fed.consumed..], b"[2019-12-10T20:02");
        assert_eq!((agg.stats.accepted, agg.stats.cached), (1, 1));
        assert_eq!(agg.rejects.counts[Reason::FormatMismatch.index()], 1);
        let fed = feed(&mut n, &mut t, b"x 1", true, 5, 2, &mut agg);
        assert_eq!(
            fed,
            Fed {
                consumed: 3,
                lines: 1
            }
        );
        assert_eq!(agg.rejects.counts[Reason::LineTooLong.index()], 1);
    }

    proptest::proptest! {
        /// Lines fed (each marked as its end is found, their fetches added in batches) come
        /// to the same totals, counters and rejects as each line read and added on its own,
        /// with future lines, bad domains, expired minutes, bad lines, CRs, lines longer
        /// than a block of marks and than the blocks held among them, over more lines than a
        /// batch.
        #[test]
        fn batched_adds_equal_adds_one_at_a_time(
            lines in proptest::collection::vec(
                (0usize..6, proptest::sample::select(vec!["a.com", "B.com", "c.org", "bad domain", "a.com:8080"]),
                 0u64..1000, 0usize..4, 0usize..140, proptest::bool::ANY,
                 proptest::option::weighted(0.2, 0usize..200)),
                0..150),
            bracketed in proptest::bool::ANY,
        ) {
            // Texts of four first bytes, or (without the brackets) of two, marked as three.
            let (open, close) = if bracketed { ("[", "]") } else { ("", "") };
            let f = NginxFormat::compile(&format!("{open}$time_iso8601{close} $host $status $upstream_bytes_received \"$http_user_agent\"")).unwrap();
            let times = ["2019-12-10T20:00:13Z", "2019-12-10T21:59:00Z", "2019-12-11T00:00:00Z",
                "2030-01-01T00:00:00Z", "2019-11-01T00:00:00Z", "nope"];
            let statuses = ["200", "304", "502", "-"];
            // Some lines cut short: they do not match, and their reads search past their end.
            let text: String = lines.iter().map(|(t, host, bytes, st, ua, cr, cut)| {
                let (ua, cr) = ("ab ".repeat(*ua / 3), if *cr { "\r" } else { "" });
                let mut l = format!("{open}{}{close} {host} {} {bytes} \"{ua}\"", times[*t], statuses[*st]);
                l.truncate(cut.unwrap_or(l.len()).min(l.len()));
                format!("{l}{cr}\n")
            }).collect();
            // Days from 2019-12-01 on are kept; the ceiling is 2019-12-12.
            let floor = srctraffic::time::days_from_civil(2019, 12, 1);
            let ceiling = srctraffic::time::days_from_civil(2019, 12, 12) * 1440;
            let mut batched = Aggregator::new(floor, ceiling, true);
            let mut fmt = Nginx::new(f.clone(), OriginRule::default());
            feed(&mut fmt, &mut TimeParser::default(), text.as_bytes(), true, 1, 1 << 20, &mut batched);

            let mut single = Aggregator::new(floor, ceiling, true);
            let mut fmt = Nginx::new(f, OriginRule::default());
            let mut time = TimeParser::default();
            for (i, raw) in text.lines().enumerate() {
                let line = i as u64 + 1;
                match fmt.parse(raw.as_bytes(), &mut time) {
                    Line::Fetch(p) => single.fetch(&Fetch {
                        minute: p.minute, domain: &p.domain, bytes: p.bytes, https: p.https, status: p.status,
                    }, line, raw.as_bytes()),
                    Line::Bad(r) => single.bad_line(r, line, raw.as_bytes()),
                    Line::Cached => single.served_from_cache(),
                    Line::Skip => {}
                }
            }
            let key = |a: &Aggregator| (a.stats.records, a.stats.accepted, a.stats.expired, a.stats.bytes,
                a.stats.max_minute, a.rejects.counts, a.rejects.kept.iter().map(|r| (r.at, r.reason)).collect::<Vec<_>>());
            let (mut kb, mut ks) = (key(&batched), key(&single));
            kb.6.sort();
            ks.6.sort();
            proptest::prop_assert_eq!(kb, ks);
            proptest::prop_assert_eq!(batched.into_cells(), single.into_cells());
        }
    }
}
