//! CloudFront standard logs (W3C extended, tab-separated): columns by the `#Fields:` directive
//! that precedes the lines, values URL-encoded, `-` for empty. A line is an origin fetch when
//! `x-edge-result-type` is `Miss`, unless `x-edge-detailed-result-type` is `OriginShieldHit`
//! (or, with `--origin-statuses`, when `x-edge-result-type` is one of those).

use super::marks::{self, Marker};
use super::swar::{pick_fields, separators};
use super::{Line, LineFormat, OriginRule, Parsed, percent_decode};
use crate::fields::{self, TimeParser};
use crate::rejects::Reason;

/// Fields a line may have that are read (CloudFront writes 33 today and adds at the end).
const MAX_FIELDS: usize = 96;

/// The fields read, as places in [`Columns::picks`].
#[derive(Debug, Clone, Copy)]
struct Columns {
    date: usize,
    time: usize,
    bytes: usize,
    result: usize,
    x_host: Option<usize>,
    cs_host: Option<usize>,
    detailed: Option<usize>,
    protocol: Option<usize>,
    status: Option<usize>,
    /// The positions of the fields read in a line, ascending: a line is split up to the
    /// last of them and no further.
    picks: [usize; PICKS],
    /// How many of `picks` are used.
    n: usize,
}

/// Fields read at most.
const PICKS: usize = 9;

/// The reader of one file (its directives rule the lines after them).
#[derive(Debug)]
pub struct Cloudfront {
    /// `None` before a `#Fields:` line; `Some(None)` after one that lacks a needed field.
    columns: Option<Option<Columns>>,
    origin: OriginRule,
    /// Where the CPU has AVX2: the tabs of the line at hand are marked in one pass.
    marker: Option<Marker>,
    tabs: Vec<u64>,
}

impl Cloudfront {
    /// A reader with `--origin-statuses` (or the default rule).
    pub fn new(origin: OriginRule) -> Cloudfront {
        Cloudfront {
            columns: None,
            origin,
            marker: Marker::new(),
            tabs: Vec::new(),
        }
    }

    fn fields_directive(names: &[u8]) -> Option<Columns> {
        let names: Vec<&[u8]> = names
            .split(|b| b.is_ascii_whitespace())
            .filter(|n| !n.is_empty())
            .collect();
        let at = |name: &str| {
            names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(name.as_bytes()))
                .filter(|&i| i < MAX_FIELDS)
        };
        let (date, time, bytes, result) = (
            at("date")?,
            at("time")?,
            at("sc-bytes")?,
            at("x-edge-result-type")?,
        );
        let (x_host, cs_host) = (at("x-host-header"), at("cs(Host)"));
        x_host.or(cs_host)?;
        let (detailed, protocol, status) = (
            at("x-edge-detailed-result-type"),
            at("cs-protocol"),
            at("sc-status"),
        );
        let mut unique: Vec<usize> = [
            Some(date),
            Some(time),
            Some(bytes),
            Some(result),
            x_host,
            cs_host,
            detailed,
            protocol,
            status,
        ]
        .into_iter()
        .flatten()
        .collect();
        unique.sort_unstable();
        unique.dedup();
        let n = unique.len();
        let mut picks = [0; PICKS];
        picks[..n].copy_from_slice(&unique);
        let place = |f: usize| unique.binary_search(&f).unwrap_or(0);
        Some(Columns {
            date: place(date),
            time: place(time),
            bytes: place(bytes),
            result: place(result),
            x_host: x_host.map(place),
            cs_host: cs_host.map(place),
            detailed: detailed.map(place),
            protocol: protocol.map(place),
            status: status.map(place),
            picks,
            n,
        })
    }
}

fn value(b: &[u8]) -> Option<&[u8]> {
    (b != b"-" && !b.is_empty()).then_some(b)
}

impl LineFormat for Cloudfront {
    fn parse<'a>(&mut self, line: &'a [u8], time: &mut TimeParser) -> Line<'a> {
        if let Some(directive) = line.strip_prefix(b"#") {
            if let Some(names) = directive.strip_prefix(b"Fields:") {
                self.columns = Some(Self::fields_directive(names));
            }
            return Line::Skip;
        }
        if line.trim_ascii().is_empty() {
            return Line::Skip;
        }
        let Some(Some(c)) = self.columns else {
            return Line::Bad(Reason::FormatMismatch);
        };
        let mut f = [&b""[..]; PICKS];
        let picks = &c.picks[..c.n];
        let picked = match self.marker {
            Some(m) => {
                m.mark_one(line, b'\t', &mut self.tabs);
                pick_fields(line, marks::all(&self.tabs), picks, &mut f)
            }
            None => pick_fields(line, separators(line, b'\t'), picks, &mut f),
        };
        if !picked {
            return Line::Bad(Reason::FormatMismatch);
        }
        let result = f[c.result].trim_ascii();
        let origin = match self.origin.matches(result) {
            Some(m) => m,
            None => {
                result.eq_ignore_ascii_case(b"Miss")
                    && !c
                        .detailed
                        .is_some_and(|d| f[d].trim_ascii().eq_ignore_ascii_case(b"OriginShieldHit"))
            }
        };
        let Some(minute) = time.date_time(f[c.date], f[c.time]) else {
            return Line::Bad(Reason::BadTime);
        };
        if !origin {
            return Line::Cached;
        }
        let host = c
            .x_host
            .and_then(|i| value(f[i]))
            .or_else(|| c.cs_host.and_then(|i| value(f[i])));
        let Some(host) = host else {
            return Line::Bad(Reason::BadDomain);
        };
        let Some(bytes) = fields::parse_bytes(f[c.bytes]) else {
            return Line::Bad(Reason::BadBytes);
        };
        Line::Fetch(Parsed {
            minute,
            domain: percent_decode(host),
            bytes,
            https: c.protocol.is_some_and(|i| fields::is_https(f[i])),
            status: c.status.and_then(|i| fields::parse_status(f[i])),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS33: &str = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken x-forwarded-for ssl-protocol ssl-cipher x-edge-response-result-type cs-protocol-version fle-status fle-encrypted-fields c-port time-to-first-byte x-edge-detailed-result-type sc-content-type sc-content-len sc-range-start sc-range-end";

    /// The vendor's documented sample line (FORMATS.md), tab-separated.
    const SAMPLE: &str = "2019-12-04\t21:02:31\tLAX1\t392\t192.0.2.100\tGET\td111111abcdef8.cloudfront.net\t/index.html\t200\t-\tMozilla/5.0...\t-\t-\tMiss\tSOX4xwn4XV6Q4rgb7XiVGOHms_BGlTAC4KyHmureZmBNrjGdRLiNIQ==\twww.example.com\thttps\t23\t0.001\t-\tTLSv1.2\tECDHE-RSA-AES128-GCM-SHA256\tMiss\tHTTP/2.0\t-\t-\t11040\t0.001\tMiss\ttext/html\t78\t-\t-";

    fn read(lines: &[&str], origin: OriginRule) -> Vec<Line<'static>> {
        let mut r = Cloudfront::new(origin);
        let mut t = TimeParser::default();
        lines
            .iter()
            .map(|l| {
                let owned: &'static [u8] = Box::leak(l.as_bytes().to_vec().into_boxed_slice());
                r.parse(owned, &mut t)
            })
            .collect()
    }

    #[test]
    fn the_documented_sample_is_a_miss_of_392_bytes_for_the_viewer_host() {
        let got = read(&["#Version: 1.0", FIELDS33, SAMPLE], OriginRule::default());
        assert_eq!(got[..2], [Line::Skip, Line::Skip]);
        let Line::Fetch(p) = &got[2] else {
            panic!("{got:?}")
        };
        assert_eq!(&*p.domain, b"www.example.com");
        assert_eq!((p.bytes, p.https, p.status), (392, true, Some(200)));
        let day = srctraffic::time::days_from_civil(2019, 12, 4);
        assert_eq!(p.minute, day * 1440 + 21 * 60 + 2);
    }

    #[test]
    fn hits_shield_hits_and_overrides_follow_the_rule() {
        let hit = SAMPLE.replacen("\tMiss\tSOX", "\tHit\tSOX", 1);
        let shield = SAMPLE.replace("\t0.001\tMiss\ttext", "\t0.001\tOriginShieldHit\ttext");
        let got = read(&[FIELDS33, &hit, &shield], OriginRule::default());
        assert_eq!(got[1..], [Line::Cached, Line::Cached]);
        // With --origin-statuses Hit, the hit is what counts and the miss is cached.
        let rule = OriginRule::new(Some(&["hit".to_string()]));
        let got = read(&[FIELDS33, &hit, SAMPLE], rule);
        assert!(matches!(got[1], Line::Fetch(_)));
        assert_eq!(got[2], Line::Cached);
    }

    #[test]
    fn columns_come_from_the_latest_directive_and_hosts_are_decoded() {
        // An older file with 19 fields in another block: no x-host-header, so cs(Host).
        let old = "#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id";
        let line = "2019-12-04\t23:59:59\tLAX1\t-\t1.2.3.4\tGET\tcdn%2Eexample.com\t/\t304\t-\t-\t-\t-\tMiss\tid";
        let got = read(&[FIELDS33, SAMPLE, old, line], OriginRule::default());
        let Line::Fetch(p) = &got[3] else {
            panic!("{got:?}")
        };
        assert_eq!(
            (&*p.domain, p.bytes, p.https, p.status),
            (&b"cdn.example.com"[..], 0, false, Some(304))
        );
    }

    #[test]
    fn lines_without_a_directive_or_with_too_few_fields_do_not_match() {
        assert_eq!(
            read(&[SAMPLE], OriginRule::default()),
            [Line::Bad(Reason::FormatMismatch)]
        );
        let short = "2019-12-04\t21:02:31\tLAX1\t392";
        assert_eq!(
            read(&[FIELDS33, short], OriginRule::default())[1],
            Line::Bad(Reason::FormatMismatch)
        );
        let bad_time = SAMPLE.replacen("21:02:31", "25:02:31", 1);
        assert_eq!(
            read(&[FIELDS33, &bad_time], OriginRule::default())[1],
            Line::Bad(Reason::BadTime)
        );
        // A directive without the fields needed: its lines do not match either.
        assert_eq!(
            read(&["#Fields: date time", "a\tb"], OriginRule::default())[1],
            Line::Bad(Reason::FormatMismatch)
        );
    }
}
