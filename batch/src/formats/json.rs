//! JSON lines: Cloudflare Logpush (`cloudflare`) and any mapping of top-level keys (`jsonl`).
//!
//! No DOM per line: one pass over the line checks it is one JSON object and picks the few
//! wanted members by their raw key bytes, skipping the rest (nested values included) without
//! building them. Strings are unescaped only when they hold a backslash.

mod shape;

use super::marks::{self, Marker};
use super::swar::{first_equal, word};
use super::{Line, LineFormat, OriginRule, Parsed};
use crate::fields::{self, TimeParser};
use crate::rejects::Reason;
use shape::{NOT_WANTED, Shape, Span};
use std::borrow::Cow;

/// A member's value as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Raw<'a> {
    /// A string's contents, escapes still in, and whether it has any.
    Str(&'a [u8], bool),
    /// A number, `true`, `false` or `null`, as written.
    Bare(&'a [u8]),
    /// An object or array.
    Nested,
}

impl<'a> Raw<'a> {
    /// The value's text: a string unescaped, a bare value as written; `None` for null and
    /// nested values.
    fn text(self) -> Option<Cow<'a, [u8]>> {
        match self {
            Raw::Str(s, false) => Some(Cow::Borrowed(s)),
            Raw::Str(s, true) => Some(unescape(s)),
            Raw::Bare(b"null") | Raw::Nested => None,
            Raw::Bare(b) => Some(Cow::Borrowed(b)),
        }
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The end (past the closing quote) of the string whose opening quote is at `i`, and whether
/// it holds an escape.
#[inline]
fn string_end(b: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        // Eight bytes at a time (see `swar`).
        let at = loop {
            match b.get(j..j + 8) {
                Some(w) => {
                    let w = word(w);
                    let m = first_equal(w, b'"') | first_equal(w, b'\\');
                    if m != 0 {
                        break j + (m.trailing_zeros() / 8) as usize;
                    }
                    j += 8;
                }
                None => break j + b.get(j..)?.iter().position(|&c| c == b'"' || c == b'\\')?,
            }
        };
        if b[at] == b'"' {
            return Some((at + 1, escaped));
        }
        escaped = true;
        j = at + 2;
        if j > b.len() {
            return None;
        }
    }
}

/// How the parse finds where a string ends.
trait Ends {
    /// The end (past the closing quote) of the string whose opening quote is at `i`, and
    /// whether it holds an escape.
    fn end(&self, b: &[u8], i: usize) -> Option<(usize, bool)>;
}

/// By searching the string's bytes (any line).
struct Search;

impl Ends for Search {
    #[inline]
    fn end(&self, b: &[u8], i: usize) -> Option<(usize, bool)> {
        string_end(b, i)
    }
}

/// By the line's quote marks, for a line without a backslash: there every quote opens or
/// closes a string, so a string ends at the next quote.
struct Marked<'m>(&'m [u64]);

impl Ends for Marked<'_> {
    #[inline]
    fn end(&self, _: &[u8], i: usize) -> Option<(usize, bool)> {
        marks::next(self.0, i + 1).map(|q| (q + 1, false))
    }
}

/// The keys a format reads, each with its first and last eight bytes as words, in a small
/// open-addressed table: a member's key that is not wanted (most of a real Logpush line's) is
/// told so by one probe, a wanted one by two word compares, without comparing bytes against
/// every wanted key.
#[derive(Debug, Clone)]
struct Wanted {
    /// Each key with its first, last and (for keys of 17 to 24 bytes, which a Logpush job's
    /// mostly are) middle eight bytes: up to 24 bytes the words and the length cover every
    /// byte, and a match is told without a call to compare bytes.
    keys: Vec<(Box<[u8]>, u64, u64, u64)>,
    /// Index + 1 into `keys`, 0 for a free place; [`Wanted::slot`] says where a key starts.
    table: [u8; TABLE],
}

/// Places in [`Wanted`]'s table: a power of two well above the handful of keys a format reads.
const TABLE: usize = 64;

impl Wanted {
    /// The table for `keys`; past the first 32 (formats read at most seven) none are held, so
    /// the table is never more than half full.
    fn new<K: AsRef<[u8]>>(keys: &[K]) -> Wanted {
        let mut w = Wanted {
            keys: Vec::with_capacity(keys.len()),
            table: [0; TABLE],
        };
        for k in keys.iter().take(TABLE / 2) {
            let k = k.as_ref();
            let (head, tail) = Self::words(k);
            w.keys.push((k.into(), head, tail, Self::middle(k)));
            let mut at = Self::slot(k.len(), head, tail);
            while w.table[at] != 0 {
                at = (at + 1) % TABLE;
            }
            w.table[at] = w.keys.len() as u8;
        }
        w
    }

    #[inline]
    fn words(key: &[u8]) -> (u64, u64) {
        let head = word(key);
        match key.len() {
            0..=8 => (head, head),
            n => (head, word(&key[n - 8..])),
        }
    }

    /// Bytes 8 to 15 of a key longer than 16 bytes; 0 for a shorter one (not compared).
    #[inline]
    fn middle(key: &[u8]) -> u64 {
        match key.get(8..16) {
            Some(m) if key.len() > 16 => word(m),
            _ => 0,
        }
    }

    #[inline]
    fn slot(len: usize, head: u64, tail: u64) -> usize {
        ((head ^ tail.rotate_left(23) ^ len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
            as usize
            % TABLE
    }

    /// Which wanted key `key` is (raw bytes, escapes as written).
    #[cfg(test)]
    fn find(&self, key: &[u8]) -> Option<usize> {
        let (head, tail) = Self::words(key);
        self.find_words(key, head, tail)
    }

    /// Which wanted key `line[start..end]` is. Its words are loaded from the line whole and
    /// masked to the key's length: a key shorter than eight bytes (`ts`, `host`) read byte by
    /// byte cost a loop of mispredicted exits on every member of a JSON lines log.
    #[inline]
    fn find_in(&self, line: &[u8], start: usize, end: usize) -> Option<usize> {
        let key = &line[start..end];
        let n = key.len();
        let head = match line.get(start..start + 8) {
            Some(w) if n < 8 => word(w) & ((1u64 << (8 * n)) - 1),
            Some(w) => word(w),
            None => word(key),
        };
        let tail = match key.get(n.wrapping_sub(8)..) {
            Some(w) if n > 8 => word(w),
            _ => head,
        };
        self.find_words(key, head, tail)
    }

    #[inline]
    fn find_words(&self, key: &[u8], head: u64, tail: u64) -> Option<usize> {
        let n = key.len();
        let mut at = Self::slot(n, head, tail);
        loop {
            let i = usize::from(self.table[at]).checked_sub(1)?;
            let (k, h, t, m) = &self.keys[i];
            if *h == head
                && *t == tail
                && k.len() == n
                && (n <= 16
                    || (*m == Self::middle(key) && (n <= 24 || k[16..n - 8] == key[16..n - 8])))
            {
                return Some(i);
            }
            at = (at + 1) % TABLE;
        }
    }
}

/// The value at `i` and where it ends. Inlined into [`members`]: returned through memory,
/// its result was read back wider than it was written, a stall on every member (a third of
/// the samples of the member loop).
#[inline(always)]
fn value<'a>(b: &'a [u8], i: usize, ends: &impl Ends) -> Option<(Raw<'a>, usize)> {
    match *b.get(i)? {
        b'"' => {
            let (end, escaped) = ends.end(b, i)?;
            Some((Raw::Str(&b[i + 1..end - 1], escaped), end))
        }
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match *b.get(j)? {
                    b'"' => {
                        j = ends.end(b, j)?.0;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some((Raw::Nested, j + 1));
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        b't' | b'f' | b'n' => {
            for lit in [&b"true"[..], b"false", b"null"] {
                if b[i..].starts_with(lit) {
                    return Some((Raw::Bare(&b[i..i + lit.len()]), i + lit.len()));
                }
            }
            None
        }
        b'-' | b'0'..=b'9' => {
            let n = b[i..]
                .iter()
                .take_while(|c| matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                .count();
            Some((Raw::Bare(&b[i..i + n]), i + n))
        }
        _ => None,
    }
}

/// Checks `line` is one JSON object and puts the value of each key of `want` (matched on the
/// raw key bytes) in `out`, and where each value lies in `spans`; `None` if it is not an
/// object.
#[inline]
fn members<'a>(
    line: &'a [u8],
    want: &Wanted,
    ends: &impl Ends,
    out: &mut [Option<Raw<'a>>],
    spans: &mut Vec<Span>,
) -> Option<()> {
    let mut i = ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i = ws(line, i + 1);
    if line.get(i) == Some(&b'}') {
        return (ws(line, i + 1) == line.len()).then_some(());
    }
    loop {
        if line.get(i) != Some(&b'"') {
            return None;
        }
        let (key_end, _) = ends.end(line, i)?;
        let key = (i + 1, key_end - 1);
        i = ws(line, key_end);
        if line.get(i) != Some(&b':') {
            return None;
        }
        let start = ws(line, i + 1);
        let (v, end) = value(line, start, ends)?;
        let k = want.find_in(line, key.0, key.1);
        if let Some(k) = k {
            out[k] = Some(v);
        }
        spans.push(Span {
            start,
            end,
            want: k.unwrap_or(NOT_WANTED),
        });
        i = ws(line, end);
        match line.get(i) {
            Some(b',') => i = ws(line, i + 1),
            Some(b'}') => return (ws(line, i + 1) == line.len()).then_some(()),
            _ => return None,
        }
    }
}

/// What a JSON reader keeps between lines: how it picks its members and, where the CPU has
/// AVX2, the quote marks of the line at hand.
#[derive(Debug)]
struct Members {
    picker: Picker,
    marker: Option<Marker>,
    quotes: Vec<u64>,
}

/// The keys a reader wants and the shape of the last line it read in full.
#[derive(Debug)]
struct Picker {
    want: Wanted,
    shape: Shape,
    spans: Vec<Span>,
}

impl Members {
    fn new(want: Wanted) -> Members {
        Members {
            picker: Picker {
                want,
                shape: Shape::default(),
                spans: Vec::new(),
            },
            marker: Marker::new(),
            quotes: Vec::new(),
        }
    }

    /// The wanted members of `line`, into `out` (all `None` on entry): by the last line's
    /// shape where it fits, its strings' ends searched (marking the whole line first cost
    /// more than it saved there); else member by member, by the line's quote marks where it
    /// has no backslash (nearly every line of a real log) or by searching its strings.
    #[inline]
    fn read<'a>(&mut self, line: &'a [u8], out: &mut [Option<Raw<'a>>]) -> Option<()> {
        if self.picker.shape.read(line, &Search, out) {
            return Some(());
        }
        out.fill(None);
        match self.marker {
            Some(m) if !m.mark(line, b'"', b'\\', &mut self.quotes) => {
                self.picker.read_in_full(line, &Marked(&self.quotes), out)
            }
            _ => self.picker.read_in_full(line, &Search, out),
        }
    }
}

impl Picker {
    /// [`members`] of `line`, whose shape is then kept for the lines after it.
    fn read_in_full<'a>(
        &mut self,
        line: &'a [u8],
        ends: &impl Ends,
        out: &mut [Option<Raw<'a>>],
    ) -> Option<()> {
        self.spans.clear();
        members(line, &self.want, ends, out, &mut self.spans)?;
        self.shape.learn(line, &self.spans);
        Some(())
    }
}

/// Unescapes a JSON string's contents (`\uXXXX` outside the BMP's plain range becomes `?`).
fn unescape(s: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'\\', s).is_none() {
        return Cow::Borrowed(s);
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] != b'\\' {
            out.push(s[i]);
            i += 1;
            continue;
        }
        let c = s.get(i + 1).copied().unwrap_or(b'\\');
        i += 2;
        match c {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'u' => {
                let ch = s
                    .get(i..i + 4)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                    .unwrap_or('?');
                let mut buf = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                i += 4;
            }
            other => out.push(other),
        }
    }
    Cow::Owned(out)
}

impl Raw<'_> {
    /// `read` of the value's text, `None` where it has none (as [`Raw::text`]): the text is
    /// lent as it lies in the line unless it has escapes, with no `Cow` made and matched.
    #[inline(always)]
    fn read<T>(self, read: impl FnOnce(&[u8]) -> Option<T>) -> Option<T> {
        match self {
            Raw::Str(s, false) => read(s),
            Raw::Bare(b"null") | Raw::Nested => None,
            Raw::Bare(b) => read(b),
            Raw::Str(s, true) => read(&unescape(s)),
        }
    }
}

fn minute(v: Option<Raw<'_>>, time: &mut TimeParser) -> Option<i64> {
    v?.read(|t| time.minute(t))
}

fn bytes(v: Raw<'_>) -> Option<u64> {
    v.read(fields::parse_bytes)
}

fn status(v: Option<Raw<'_>>) -> Option<u16> {
    v?.read(fields::parse_status)
}

/// An origin fetch from its members, or the reason it cannot be one.
fn fetch<'a>(
    minute: i64,
    host: Raw<'a>,
    size: Raw<'a>,
    scheme: Option<Raw<'a>>,
    status: Option<u16>,
) -> Line<'a> {
    let Some(domain) = host.text() else {
        return Line::Bad(Reason::BadDomain);
    };
    let Some(bytes) = bytes(size) else {
        return Line::Bad(Reason::BadBytes);
    };
    Line::Fetch(Parsed {
        minute,
        domain,
        bytes,
        https: scheme.is_some_and(|s| s.read(|t| Some(fields::is_https(t))) == Some(true)),
        status,
    })
}

const CF_KEYS: [&[u8]; 7] = [
    b"EdgeStartTimestamp",
    b"ClientRequestHost",
    b"ClientRequestScheme",
    b"OriginResponseStatus",
    b"CacheCacheStatus",
    b"OriginResponseBytes",
    b"CacheResponseBytes",
];
/// Cache statuses that went to the origin, when `OriginResponseStatus` is not in the job.
const CF_ORIGIN: [&[u8]; 5] = [b"miss", b"expired", b"bypass", b"dynamic", b"updating"];

/// Cloudflare Logpush `http_requests`: an origin fetch when `OriginResponseStatus` > 0 (or,
/// without that field, by `CacheCacheStatus`), bytes from `OriginResponseBytes` else
/// `CacheResponseBytes`, time from `EdgeStartTimestamp` in any of the three formats.
#[derive(Debug)]
pub struct Cloudflare {
    origin: OriginRule,
    members: Members,
}

impl Cloudflare {
    /// A reader with `--origin-statuses` (over `CacheCacheStatus`) or the default rule.
    pub fn new(origin: OriginRule) -> Cloudflare {
        Cloudflare {
            origin,
            members: Members::new(Wanted::new(&CF_KEYS)),
        }
    }
}

impl Default for Cloudflare {
    fn default() -> Cloudflare {
        Cloudflare::new(OriginRule::default())
    }
}

impl LineFormat for Cloudflare {
    fn parse<'a>(&mut self, line: &'a [u8], time: &mut TimeParser) -> Line<'a> {
        if line.trim_ascii().is_empty() {
            return Line::Skip;
        }
        let mut v = [None; CF_KEYS.len()];
        if self.members.read(line, &mut v).is_none() {
            return Line::Bad(Reason::BadJson);
        }
        let [
            ts,
            host,
            scheme,
            origin_status,
            cache,
            origin_bytes,
            cache_bytes,
        ] = v;
        let (Some(host), Some(size)) = (host, origin_bytes.or(cache_bytes)) else {
            return Line::Bad(Reason::BadJson);
        };
        let Some(minute) = minute(ts, time) else {
            return Line::Bad(Reason::BadTime);
        };
        let code = status(origin_status);
        // The cache status is read only where it decides: by default a line with an origin
        // status is decided by that.
        let origin = match (self.origin.is_set(), origin_status.is_some()) {
            (false, true) => code.is_some(),
            (true, _) => cache
                .and_then(Raw::text)
                .is_some_and(|c| self.origin.matches(&c) == Some(true)),
            (false, false) => cache.and_then(Raw::text).is_some_and(|c| {
                CF_ORIGIN
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(c.trim_ascii()))
            }),
        };
        if !origin {
            return Line::Cached;
        }
        fetch(minute, host, size, scheme, code)
    }
}

/// Which top-level keys hold what, for `--format jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonFields {
    /// `--time-field`.
    pub time: String,
    /// `--domain-field`.
    pub domain: String,
    /// `--bytes-field`.
    pub bytes: String,
    /// `--scheme-field`.
    pub scheme: Option<String>,
    /// `--status-field`.
    pub status: Option<String>,
    /// `--cache-status-field`.
    pub cache_status: Option<String>,
}

/// Any JSON lines, by a key mapping: every line counts, or with `--origin-statuses` those
/// whose cache-status field is one of them.
#[derive(Debug)]
pub struct Jsonl {
    members: Members,
    origin: OriginRule,
}

impl Jsonl {
    /// A reader of these keys.
    pub fn new(f: &JsonFields, origin: OriginRule) -> Jsonl {
        // An unset optional key is one no member can have: JSON escapes control characters.
        let opt = |o: &Option<String>| match o.as_deref() {
            None | Some("") => "\0unset".to_owned(),
            Some(k) => k.to_owned(),
        };
        Jsonl {
            members: Members::new(Wanted::new(&[
                f.time.clone(),
                f.domain.clone(),
                f.bytes.clone(),
                opt(&f.scheme),
                opt(&f.status),
                opt(&f.cache_status),
            ])),
            origin,
        }
    }
}

impl LineFormat for Jsonl {
    fn parse<'a>(&mut self, line: &'a [u8], time: &mut TimeParser) -> Line<'a> {
        if line.trim_ascii().is_empty() {
            return Line::Skip;
        }
        let mut v = [None; 6];
        if self.members.read(line, &mut v).is_none() {
            return Line::Bad(Reason::BadJson);
        }
        let [ts, host, size, scheme, code, cache] = v;
        let (Some(host), Some(size)) = (host, size) else {
            return Line::Bad(Reason::BadJson);
        };
        let Some(minute) = minute(ts, time) else {
            return Line::Bad(Reason::BadTime);
        };
        if self.origin.is_set() {
            let is = cache
                .and_then(Raw::text)
                .and_then(|c| self.origin.matches(&c))
                .unwrap_or(false);
            if !is {
                return Line::Cached;
            }
        }
        fetch(minute, host, size, scheme, status(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The vendor's documented sample (FORMATS.md).
    const SAMPLE: &[u8] = br#"{"ClientRequestHost":"www.example.com","ClientRequestScheme":"https","EdgeStartTimestamp":1575979213000000000,"CacheCacheStatus":"miss","OriginResponseStatus":200,"CacheResponseBytes":52330,"EdgeResponseBytes":52610}"#;

    fn cf(line: &[u8]) -> Line<'_> {
        Cloudflare::default().parse(line, &mut TimeParser::default())
    }

    #[test]
    fn the_documented_sample_is_an_origin_fetch_at_its_minute() {
        let Line::Fetch(p) = cf(SAMPLE) else { panic!() };
        assert_eq!(
            (&*p.domain, p.bytes, p.https, p.status),
            (&b"www.example.com"[..], 52330, true, Some(200))
        );
        assert_eq!(p.minute, 1_575_979_213 / 60);
    }

    #[test]
    fn all_three_timestamp_kinds_and_any_member_order_read_the_same() {
        let kinds = [
            r#""EdgeStartTimestamp":1575979213000000000"#,
            r#""EdgeStartTimestamp":1575979213"#,
            r#""EdgeStartTimestamp":"2019-12-10T12:00:13Z""#,
        ];
        for k in kinds {
            let line = format!(
                r#"{{"OriginResponseBytes":7,"Nested":{{"a":[1,{{"b":"}}"}}]}},{k},"ClientRequestHost":"a.example.com","OriginResponseStatus":304}}"#
            );
            let Line::Fetch(p) = cf(line.as_bytes()) else {
                panic!("{line}")
            };
            assert_eq!(
                (p.minute, p.bytes, p.status),
                (1_575_979_213 / 60, 7, Some(304)),
                "{line}"
            );
        }
    }

    #[test]
    fn origin_status_zero_or_a_hit_is_served_from_cache() {
        let zero = String::from_utf8_lossy(SAMPLE).replace(
            r#""OriginResponseStatus":200"#,
            r#""OriginResponseStatus":0"#,
        );
        assert_eq!(cf(zero.as_bytes()), Line::Cached);
        let no_status =
            String::from_utf8_lossy(SAMPLE).replace(r#","OriginResponseStatus":200"#, "");
        assert!(matches!(cf(no_status.as_bytes()), Line::Fetch(_)));
        let hit = no_status.replace(r#""miss""#, r#""hit""#);
        assert_eq!(cf(hit.as_bytes()), Line::Cached);
    }

    #[test]
    fn broken_json_is_bad_json() {
        for bad in [
            &b"{"[..],
            b"{\"a\":}",
            b"[1,2]",
            b"{\"ClientRequestHost\":\"a.com\"} x",
            b"{\"a\" 1}",
            b"not json",
        ] {
            assert_eq!(
                cf(bad),
                Line::Bad(Reason::BadJson),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        // An object without the needed members.
        assert_eq!(cf(b"{\"x\":1}"), Line::Bad(Reason::BadJson));
    }

    #[test]
    fn a_jsonl_mapping_reads_its_keys_escaped_or_not() {
        let f = JsonFields {
            time: "ts".into(),
            domain: "host".into(),
            bytes: "upstream_bytes".into(),
            scheme: Some("scheme".into()),
            status: Some("upstream_status".into()),
            cache_status: Some("cache".into()),
        };
        let mut r = Jsonl::new(&f, OriginRule::default());
        let line = br#"{"ts":1575979213.25,"host":"img\u002eexample.com","upstream_bytes":"1200","scheme":"http","upstream_status":"502","cache":"HIT"}"#;
        let Line::Fetch(p) = r.parse(line, &mut TimeParser::default()) else {
            panic!()
        };
        assert_eq!(
            (&*p.domain, p.bytes, p.https, p.status),
            (&b"img.example.com"[..], 1200, false, Some(502))
        );
        let mut r = Jsonl::new(&f, OriginRule::new(Some(&["miss".into()])));
        assert_eq!(r.parse(line, &mut TimeParser::default()), Line::Cached);
    }

    /// The plain reading of a string's end, byte by byte.
    fn string_end_bytewise(b: &[u8], i: usize) -> Option<(usize, bool)> {
        let (mut j, mut escaped) = (i + 1, false);
        while j < b.len() {
            match b[j] {
                b'"' => return Some((j + 1, escaped)),
                b'\\' => {
                    escaped = true;
                    j += 2;
                }
                _ => j += 1,
            }
        }
        None
    }

    #[test]
    fn keys_alike_in_length_head_and_tail_are_told_apart() {
        let w = Wanted::new(&[
            "ClientRequestScheme",
            "OriginResponseBytes",
            "ab",
            "CacheXXXXXXXXXXXXXStatus",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
        ]);
        assert_eq!(w.find(b"ClientRequestScheme"), Some(0));
        assert_eq!(w.find(b"ClientRequestMethod"), None);
        assert_eq!(w.find(b"OriginResponseBytes"), Some(1));
        assert_eq!(w.find(b"ab"), Some(2));
        assert_eq!(w.find(b"ab\0"), None);
        assert_eq!(w.find(b"a"), None);
        assert_eq!(w.find(b""), None);
        assert_eq!(w.find(b"CacheXXXXXXXXXXXXXStatus"), Some(3));
        assert_eq!(w.find(b"CacheXXXXXXYXXXXXXStatus"), None);
        assert_eq!(w.find(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123"), Some(4));
        assert_eq!(w.find(b"ABCDEFGHIJKLMNOPQR_TUVWXYZ0123"), None);
        assert_eq!(w.find(b"ABCDEFGHIJ_LMNOPQRSTUVWXYZ0123"), None);
    }

    proptest! {
        /// A key found in its line, its words loaded whole and masked, is the key found on
        /// its own, wherever it lies (the line's end included) and whatever follows it.
        #[test]
        fn a_key_found_in_its_line_is_the_key_found_alone(
            before in proptest::collection::vec(any::<u8>(), 0..12),
            key in proptest::sample::select(vec![
                &b""[..], b"a", b"ab", b"ts", b"tsx", b"host", b"hosts", b"bytes", b"scheme",
                b"status", b"statuss", b"ClientRequestScheme", b"ClientRequestMethod",
                b"EdgeStartTimestamp",
            ]),
            after in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            let w = Wanted::new(&["ts", "host", "bytes", "scheme", "status", "ClientRequestScheme"]);
            let line = [&before[..], key, &after[..]].concat();
            let (start, end) = (before.len(), before.len() + key.len());
            prop_assert_eq!(w.find_in(&line, start, end), w.find(key));
        }
    }

    /// What [`marked_and_searched_reads_agree`]'s lines are made of: JSON's punctuation, a
    /// backslash, members wanted and a run of text across the 64-byte words of the marks.
    const PIECES: [&[u8]; 16] = [
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b":",
        b",",
        b" ",
        b"1",
        b"null",
        b"k",
        b"\"k\":",
        b"\"ClientRequestHost\":\"a.com\"",
        b"\"ClientRequestHost\":",
        b"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ];

    proptest! {
        /// The word-at-a-time scan ends every string where the byte-by-byte one does.
        #[test]
        fn string_ends_match_the_bytewise_reading(
            b in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(b'a'), any::<u8>()], 1..80),
        ) {
            for i in 0..b.len() {
                prop_assert_eq!(string_end(&b, i), string_end_bytewise(&b, i));
            }
        }

        /// Objects written by serde_json, with keys that share lengths and ends with the
        /// wanted ones and values of every kind: the wanted members are found with serde's
        /// values.
        #[test]
        fn members_of_real_objects_are_found(
            pairs in prop::collection::vec((
                prop::sample::select(vec!["Host", "Hostx", "ClientRequestHost", "ClientRequestHosT", "ClientRequestHose", "h\"q", "k"]),
                prop_oneof![
                    any::<i64>().prop_map(serde_json::Value::from),
                    "[a-z\"\\\\ \u{e9}{}\\[\\]]{0,24}".prop_map(serde_json::Value::from),
                    Just(serde_json::json!({"ClientRequestHost": "x", "a": [1, "}"]})),
                    Just(serde_json::Value::Null),
                    Just(serde_json::Value::Bool(true)),
                ],
            ), 0..8),
        ) {
            let obj: serde_json::Map<String, serde_json::Value> = pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect();
            let line = serde_json::to_vec(&obj).unwrap();
            let want = ["ClientRequestHost", "k", "h\\\"q"];
            let mut v = [None; 3];
            prop_assert!(Members::new(Wanted::new(&want)).read(&line, &mut v).is_some());
            for (i, key) in ["ClientRequestHost", "k"].iter().enumerate() {
                let got = v[i].and_then(Raw::text).map(|c| c.into_owned());
                let expected = match obj.get(*key) {
                    Some(serde_json::Value::String(s)) => Some(s.clone().into_bytes()),
                    Some(serde_json::Value::Null) | Some(serde_json::Value::Object(_)) | None => None,
                    Some(other) => Some(other.to_string().into_bytes()),
                };
                prop_assert_eq!(got, expected, "{}", String::from_utf8_lossy(&line));
            }
            prop_assert_eq!(v[2].is_some(), obj.contains_key("h\"q"));
        }

        /// Whatever the bytes, the scanner answers without panicking, and any object it
        /// accepts that serde_json also reads has the same wanted member.
        #[test]
        fn arbitrary_bytes_never_panic_and_agree_with_serde(b in prop::collection::vec(any::<u8>(), 0..200)) {
            let mut v = [None; 1];
            let ours = Members::new(Wanted::new(&["k"])).read(&b, &mut v);
            if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&b) {
                prop_assert!(ours.is_some());
                if let Some(serde_json::Value::String(s)) = m.get("k") {
                    let got = v[0].and_then(Raw::text).map(|c| c.into_owned());
                    prop_assert_eq!(got, Some(s.clone().into_bytes()));
                }
            }
        }

        /// Lines written by one logger (the same keys in the same order, the values and the
        /// blanks changing, now and then a piece of JSON's punctuation put in anywhere or in
        /// the place of a byte): read one after the other, each by the shape of the last where
        /// it fits, every line is accepted or refused and its members found as when it is read
        /// alone.
        #[test]
        fn lines_read_by_the_last_shape_read_as_if_alone(
            keys in prop::collection::vec(
                // Texts between values of up to 32 bytes and past it (a key of 28 bytes
                // makes one of 32 or 33).
                prop::sample::select(vec![
                    "ClientRequestHost", "ClientRequestHosT", "k", "h\\\"q", "x",
                    "OriginResponseHeaderContentL", "OriginResponseHeaderContentLength",
                ]),
                0..6,
            ),
            lines in prop::collection::vec((
                prop::collection::vec(prop_oneof![
                    any::<i64>().prop_map(serde_json::Value::from),
                    "[a-z\"\\\\ {}]{0,12}".prop_map(serde_json::Value::from),
                    Just(serde_json::json!({"k": "x", "a": [1, "}"]})),
                    Just(serde_json::Value::Null),
                    Just(serde_json::Value::Bool(false)),
                ], 6),
                any::<bool>(),
                prop::option::of((
                    any::<prop::sample::Index>(),
                    prop::sample::select(PIECES.to_vec()),
                    any::<bool>(),
                )),
            ), 1..10),
        ) {
            let want = Wanted::new(&["k", "ClientRequestHost", "h\\\"q"]);
            let mut reader = Members::new(want.clone());
            for (values, spaced, put) in lines {
                let sep = if spaced { ", " } else { "," };
                let body: Vec<String> = keys
                    .iter()
                    .zip(&values)
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                let mut line = format!("{{{}}}", body.join(sep)).into_bytes();
                // Put in, or in the place of the byte there.
                if let Some((at, piece, replace)) = put {
                    let at = at.index(line.len() + 1);
                    let end = if replace { (at + 1).min(line.len()) } else { at };
                    line.splice(at..end, piece.iter().copied());
                }
                let (mut shaped, mut alone) = ([None; 3], [None; 3]);
                let a = reader.read(&line, &mut shaped);
                let s = members(&line, &want, &Search, &mut alone, &mut Vec::new());
                prop_assert_eq!(a, s, "{}", String::from_utf8_lossy(&line));
                if a.is_some() {
                    prop_assert_eq!(shaped, alone, "{}", String::from_utf8_lossy(&line));
                }
            }
        }

        /// Lines of JSON's bytes, backslashes or not: read by the quote marks (where the CPU
        /// has them) or by searching, the answer and every member found are the same.
        #[test]
        fn marked_and_searched_reads_agree(
            b in prop::collection::vec(prop::sample::select(PIECES.to_vec()), 0..40)
                .prop_map(|parts| parts.concat()),
        ) {
            let want = Wanted::new(&["k", "ClientRequestHost"]);
            let (mut marked, mut searched) = ([None; 2], [None; 2]);
            let a = Members::new(want.clone()).read(&b, &mut marked);
            let s = members(&b, &want, &Search, &mut searched, &mut Vec::new());
            prop_assert_eq!(a, s, "{}", String::from_utf8_lossy(&b));
            if a.is_some() {
                prop_assert_eq!(marked, searched);
            }
        }
    }
}
