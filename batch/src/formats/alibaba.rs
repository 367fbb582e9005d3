//! Alibaba Cloud CDN offline logs: space-separated, some fields quoted (a quote inside written
//! `\"`), the time bracketed with its offset, domain and scheme from the request's URL. A line
//! is an origin fetch when its hit info is `MISS` (or one of `--origin-statuses`).
//!
//! `[9/Jun/2015:01:58:09 +0800] 10.10.10.10 - 1542 "-" "GET http://www.aliyun.com/index.html" 200 191 2830 MISS "UA" "text/html"`

use super::marks::{Cursor, Marker};
use super::swar::{find, find_text, first_equal, word};
use super::{Line, LineFormat, OriginRule, Parsed};
use crate::fields::{self, TimeParser};
use crate::rejects::Reason;
use std::borrow::Cow;

const TIME: usize = 0;
const REQUEST: usize = 5;
const STATUS: usize = 6;
const RESPONSE_SIZE: usize = 8;
const HIT: usize = 9;
const NEEDED: usize = HIT + 1;

/// The reader.
#[derive(Debug)]
pub struct Alibaba {
    origin: OriginRule,
    /// Where the CPU has AVX2: the spaces, quotes and closing brackets of the line at hand,
    /// marked in one pass, each byte apart ([`ENDS`]' order), end its tokens without a
    /// search per token (a token then finds its own end, not the other bytes' marks first).
    marker: Option<Marker>,
    ends: [Vec<u64>; 3],
}

impl Alibaba {
    /// A reader with `--origin-statuses` (or the default rule).
    pub fn new(origin: OriginRule) -> Alibaba {
        Alibaba {
            origin,
            marker: Marker::new(),
            ends: Default::default(),
        }
    }
}

/// The bytes that end a token.
const ENDS: [u8; 3] = [b' ', b'"', b']'];

/// The first [`NEEDED`] tokens: `[...]` and `"..."` (with `\"` inside) are one token each,
/// without their brackets or quotes; `None` if a bracket or quote is never closed, else how
/// many there are (fewer at the line's end). `find(from, b)` is where `b` (one of [`ENDS`])
/// next is at or after `from`.
#[inline(always)]
fn tokens<'a>(
    line: &'a [u8],
    out: &mut [&'a [u8]; NEEDED],
    mut find: impl FnMut(usize, u8) -> Option<usize>,
) -> Option<usize> {
    let mut i = 0;
    // Written out token by token: the test of each token's first byte (`[`, `"` or another)
    // is then a branch of its own, each place's way learnt apart, where one branch for all
    // ten had to learn their pattern.
    macro_rules! take {
        ($($n:literal)*) => {$(
            match token(line, &mut i, &mut find)? {
                Some(t) => out[$n] = t,
                None => return Some($n),
            }
        )*};
    }
    take!(0 1 2 3 4 5 6 7 8 9);
    Some(NEEDED)
}

/// The token at or after `*i` (spaces skipped), `*i` moved past it; `Some(None)` at the line's
/// end, `None` if its bracket or quote is never closed.
#[inline(always)]
fn token<'a>(
    line: &'a [u8],
    i: &mut usize,
    find: &mut impl FnMut(usize, u8) -> Option<usize>,
) -> Option<Option<&'a [u8]>> {
    let mut at = *i;
    while at < line.len() && line[at] == b' ' {
        at += 1;
    }
    let Some(&first) = line.get(at) else {
        return Some(None);
    };
    let (start, end, next) = match first {
        b'[' => {
            let close = find(at + 1, b']')?;
            (at + 1, close, close + 1)
        }
        b'"' => {
            let mut j = at + 1;
            loop {
                let q = find(j, b'"')?;
                // A quote after an odd run of backslashes is escaped.
                let slashes = line[j..q].iter().rev().take_while(|&&b| b == b'\\').count();
                if slashes % 2 == 0 {
                    break (at + 1, q, q + 1);
                }
                j = q + 1;
            }
        }
        _ => {
            let end = find(at, b' ').unwrap_or(line.len());
            (at, end, end)
        }
    };
    *i = next;
    Some(Some(&line[start..end]))
}

/// Scheme and host of the URL in a request field (`GET http://host:port/path HTTP/1.1`): the
/// first word with `://` in it.
#[inline(always)]
fn url_parts(request: &[u8]) -> Option<(&[u8], &[u8])> {
    let sep = find_text(request, b"://")?;
    let start = request[..sep]
        .iter()
        .rposition(|&b| b == b' ')
        .map_or(0, |p| p + 1);
    let rest = &request[sep + 3..];
    Some((&request[start..sep], &rest[..host_end(rest)]))
}

/// Where the host at the start of `rest` ends: at its first `/`, `?`, `#` or space, or at the
/// end. Eight bytes at a time: a byte loop's exit, at a place that differs from line to line,
/// was a fifth of the format's own time.
#[inline]
fn host_end(rest: &[u8]) -> usize {
    let ends = |b: u8| matches!(b, b'/' | b'?' | b'#' | b' ');
    let mut base = 0;
    while let Some(w) = rest.get(base..base + 8) {
        let w = word(w);
        // Each mask's lowest mark is exact, so the lowest of them all is the first end.
        let m = first_equal(w, b'/')
            | first_equal(w, b'?')
            | first_equal(w, b'#')
            | first_equal(w, b' ');
        if m != 0 {
            return base + (m.trailing_zeros() / 8) as usize;
        }
        base += 8;
    }
    rest[base..]
        .iter()
        .position(|&b| ends(b))
        .map_or(rest.len(), |i| base + i)
}

impl LineFormat for Alibaba {
    fn parse<'a>(&mut self, line: &'a [u8], time: &mut TimeParser) -> Line<'a> {
        if line.trim_ascii().is_empty() {
            return Line::Skip;
        }
        match self.marker {
            Some(m) => {
                let mut ends = std::mem::take(&mut self.ends);
                m.mark_each(line, ENDS, &mut ends);
                let read = self.read(line, &ends.each_ref().map(Vec::as_slice), time);
                self.ends = ends;
                read
            }
            None => {
                let mut t = [&b""[..]; NEEDED];
                let found = tokens(line, &mut t, |from, b| {
                    find(line.get(from..)?, b).map(|p| from + p)
                });
                self.finish(&t, found, time)
            }
        }
    }

    fn marks(&self) -> Option<(Marker, [u8; 4])> {
        let [a, b, c] = ENDS;
        self.marker.map(|m| (m, [a, b, c, c]))
    }

    #[inline]
    fn parse_marked<'a>(
        &mut self,
        line: &'a [u8],
        marks: &[&[u64]],
        time: &mut TimeParser,
    ) -> Line<'a> {
        self.read(line, marks, time)
    }
}

impl Alibaba {
    /// A line read by the marks of its [`ENDS`], in that order.
    #[inline(always)]
    fn read<'a>(&self, line: &'a [u8], ends: &[&[u64]], time: &mut TimeParser) -> Line<'a> {
        let &[spaces, quotes, brackets, ..] = ends else {
            return Line::Bad(Reason::FormatMismatch);
        };
        let mut t = [&b""[..]; NEEDED];
        // A cursor a byte: a run of space-ended tokens takes each end from the one before.
        let mut cursors = [spaces, quotes, brackets].map(Cursor::new);
        // Inlined by force: with the ten tokens written out, it was left a call a token.
        let found = tokens(
            line,
            &mut t,
            #[inline(always)]
            |from, b| match b {
                b' ' => cursors[0].next(from),
                b'"' => cursors[1].next(from),
                _ => cursors[2].next(from),
            },
        );
        self.finish(&t, found, time)
    }

    /// A line's fetch from its first `found` tokens (as [`tokens`] gives them).
    #[inline(always)]
    fn finish<'a>(
        &self,
        t: &[&'a [u8]; NEEDED],
        found: Option<usize>,
        time: &mut TimeParser,
    ) -> Line<'a> {
        match found {
            Some(NEEDED) => {}
            _ => return Line::Bad(Reason::FormatMismatch),
        }
        let Some(minute) = time.minute(t[TIME]) else {
            return Line::Bad(Reason::BadTime);
        };
        let hit = t[HIT];
        let origin = self
            .origin
            .matches(hit)
            .unwrap_or_else(|| hit.eq_ignore_ascii_case(b"MISS"));
        if !origin {
            return Line::Cached;
        }
        let Some((scheme, host)) = url_parts(t[REQUEST]) else {
            return Line::Bad(Reason::BadDomain);
        };
        let Some(bytes) = fields::parse_bytes(t[RESPONSE_SIZE]) else {
            return Line::Bad(Reason::BadBytes);
        };
        Line::Fetch(Parsed {
            minute,
            domain: Cow::Borrowed(host),
            bytes,
            https: fields::is_https(scheme),
            status: fields::parse_status(t[STATUS]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A host ends where a byte search says, wherever its end falls in a word.
        #[test]
        fn a_host_ends_at_its_first_end_byte(
            rest in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(vec![b'/', b'?', b'#', b' ', b'.', b'a', 0x2f ^ 0x80, 0]),
                proptest::num::u8::ANY,
            ], 0..40),
        ) {
            let plain = rest
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#' | b' '))
                .unwrap_or(rest.len());
            proptest::prop_assert_eq!(host_end(&rest), plain);
        }
    }

    const SAMPLE: &[u8] = br#"[9/Jun/2015:01:58:09 +0800] 10.10.10.10 - 1542 "-" "GET http://www.aliyun.com/index.html" 200 191 2830 MISS "Mozilla/5.0 (compatible; AhrefsBot/5.0; +http://ahrefs.com/robot/)" "text/html""#;

    fn parse(line: &[u8]) -> Line<'_> {
        Alibaba::new(OriginRule::default()).parse(line, &mut TimeParser::default())
    }

    #[test]
    fn the_documented_sample_is_a_miss_of_2830_bytes_in_utc() {
        let Line::Fetch(p) = parse(SAMPLE) else {
            panic!()
        };
        assert_eq!(
            (&*p.domain, p.bytes, p.https, p.status),
            (&b"www.aliyun.com"[..], 2830, false, Some(200))
        );
        // 01:58 in China is 17:58 UTC the day before.
        let day = srctraffic::time::days_from_civil(2015, 6, 8);
        assert_eq!(p.minute, day * 1440 + 17 * 60 + 58);
    }

    #[test]
    fn escaped_quotes_https_ports_and_hits() {
        let line = br#"[10/Dec/2019:04:00:13 +0800] 1.2.3.4 - 12 "http://ref/\"x\"" "GET https://img.example.com:443/a.jpg?x=1 HTTP/1.1" 206 10 52731 MISS "say \"hi\"" "image/jpeg""#;
        let Line::Fetch(p) = parse(line) else {
            panic!()
        };
        assert_eq!(
            (&*p.domain, p.bytes, p.https, p.status),
            (&b"img.example.com:443"[..], 52731, true, Some(206))
        );
        let hit = String::from_utf8_lossy(SAMPLE).replace(" MISS ", " HIT ");
        assert_eq!(parse(hit.as_bytes()), Line::Cached);
        let mut r = Alibaba::new(OriginRule::new(Some(&["hit".into()])));
        assert!(matches!(
            r.parse(hit.as_bytes(), &mut TimeParser::default()),
            Line::Fetch(_)
        ));
    }

    #[test]
    fn the_url_is_the_first_word_with_a_scheme() {
        let parts = |r: &'static str| url_parts(r.as_bytes());
        let p = |a: &'static str, b: &'static str| Some((a.as_bytes(), b.as_bytes()));
        assert_eq!(
            parts("GET http://a.com:8080/x HTTP/1.1"),
            p("http", "a.com:8080")
        );
        assert_eq!(
            parts("GET https://b.com?x=/y HTTP/1.1"),
            p("https", "b.com")
        );
        assert_eq!(parts("GET https://c.com#f"), p("https", "c.com"));
        assert_eq!(parts("http://d.com HTTP/1.1"), p("http", "d.com"));
        assert_eq!(parts("GET  x://y z http://w.com/"), p("x", "y"));
        assert_eq!(parts("GET /path HTTP/1.1"), None);
        assert_eq!(parts(""), None);
    }

    #[test]
    fn broken_lines_are_rejected_with_their_reason() {
        assert_eq!(
            parse(b"[9/Jun/2015:01:58:09 +0800] 10.10.10.10 -"),
            Line::Bad(Reason::FormatMismatch)
        );
        // A quote never closed.
        assert_eq!(
            parse(br#"[9/Jun/2015:01:58:09 +0800] 1 - 1 "-" "GET http://a/ 200 1 2 MISS"#),
            Line::Bad(Reason::FormatMismatch)
        );
        let bad_time = String::from_utf8_lossy(SAMPLE).replace("9/Jun", "39/Jun");
        assert_eq!(parse(bad_time.as_bytes()), Line::Bad(Reason::BadTime));
        let no_url = String::from_utf8_lossy(SAMPLE).replace("http://www.aliyun.com", "");
        assert_eq!(parse(no_url.as_bytes()), Line::Bad(Reason::BadDomain));
        assert_eq!(parse(b"   "), Line::Skip);
    }

    proptest::proptest! {
        /// Lines of the format's bytes read by their marks (where the CPU has AVX2) and by
        /// searching each token's end read the same.
        #[test]
        fn marked_and_searched_reads_agree(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                " ", "\"", "\\", "\\\"", "[", "]", "-", "1", "MISS", "HIT", "x",
                "[10/Dec/2019:04:00:13 +0800]", "\"GET https://img.example.com/a HTTP/1.1\"",
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            ]), 0..30),
        ) {
            let line = parts.concat();
            let mut marked = Alibaba::new(OriginRule::default());
            let mut searched = Alibaba::new(OriginRule::default());
            searched.marker = None;
            proptest::prop_assert_eq!(
                marked.parse(line.as_bytes(), &mut TimeParser::default()),
                searched.parse(line.as_bytes(), &mut TimeParser::default()),
                "{}", line
            );
        }
    }
}
