//! The log formats besides our CSV (see FORMATS.md): each reads one line into what the
//! aggregator counts, free of I/O. [`Format`] names them, [`detect`] tells them apart by a
//! file's first bytes, and [`LineFormat`] is what the reader drives, one line at a time.
//!
//! CSV keeps its own scanner ([`crate::scan`]): its records may span lines.

pub mod alibaba;
pub mod cloudfront;
pub mod json;
pub mod marks;
pub mod nginx;
pub mod swar;

use crate::fields::TimeParser;
use crate::rejects::Reason;
use std::borrow::Cow;

/// A log format, as `--format` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Format {
    /// Our CSV with a header row.
    Csv,
    /// CloudFront standard logs (W3C extended).
    Cloudfront,
    /// Alibaba Cloud CDN offline logs.
    Alibaba,
    /// Cloudflare Logpush `http_requests` (NDJSON).
    Cloudflare,
    /// Any JSON lines, with `--time-field` and friends.
    Jsonl,
    /// A caching proxy's access log, with `--nginx-log-format`.
    Nginx,
}

impl Format {
    /// Its `--format` name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Cloudfront => "cloudfront",
            Format::Alibaba => "alibaba",
            Format::Cloudflare => "cloudflare",
            Format::Jsonl => "jsonl",
            Format::Nginx => "nginx",
        }
    }

    /// Whether each physical line is a record on its own, so a plain file can be cut at any
    /// newline. CloudFront's `#Fields:` directive rules the lines after it: read in order.
    pub fn cuts_anywhere(self) -> bool {
        matches!(
            self,
            Format::Alibaba | Format::Cloudflare | Format::Jsonl | Format::Nginx
        )
    }
}

/// What `--format auto` makes of a file's first bytes (after gzip), per FORMATS.md.
pub fn detect(head: &[u8]) -> Result<Format, String> {
    let head = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let first = head.trim_ascii_start();
    if first.starts_with(b"#Version:") || first.starts_with(b"#Fields:") {
        return Ok(Format::Cloudfront);
    }
    if first.starts_with(b"{") {
        let line = first.split(|&b| b == b'\n').next().unwrap_or(first);
        if memchr::memmem::find(line, b"\"ClientRequestHost\"").is_some() {
            return Ok(Format::Cloudflare);
        }
        return Err(
            "JSON lines without Cloudflare's ClientRequestHost: use --format jsonl with --time-field, --domain-field and --bytes-field".into(),
        );
    }
    if let Some(rest) = first.strip_prefix(b"[") {
        let day = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if (1..=2).contains(&day) && rest.get(day) == Some(&b'/') {
            return Ok(Format::Alibaba);
        }
    }
    Ok(Format::Csv)
}

/// One origin fetch as a line format reads it; the domain may be decoded (URL-encoded hosts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The UTC minute.
    pub minute: i64,
    /// The domain as written, decoded.
    pub domain: Cow<'a, [u8]>,
    /// Origin bytes.
    pub bytes: u64,
    /// Over HTTPS.
    pub https: bool,
    /// The origin's status.
    pub status: Option<u16>,
}

/// What one line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line<'a> {
    /// An origin fetch to count.
    Fetch(Parsed<'a>),
    /// A request the edge served from its cache: counted apart.
    Cached,
    /// Not a record (a directive, a blank line).
    Skip,
    /// A record that cannot be read.
    Bad(Reason),
}

/// A format that reads one physical line at a time (without its newline or CR).
pub trait LineFormat: Send {
    /// Reads a line; `time` caches calendar work between lines.
    fn parse<'a>(&mut self, line: &'a [u8], time: &mut TimeParser) -> Line<'a>;

    /// Where this reader reads lines by their marks ([`marks`]): the bytes it marks. The
    /// feed then marks each line as it finds the line's end, and reads it with
    /// [`LineFormat::parse_marked`].
    fn marks(&self) -> Option<(marks::Marker, [u8; 4])> {
        None
    }

    /// [`LineFormat::parse`] of a line that is not blank (the feed skips those) and whose
    /// [`LineFormat::marks`] are `marks` (a mask per byte, no bit past the line's end; a
    /// fourth byte the same as the third is not marked again, so three).
    #[inline]
    fn parse_marked<'a>(
        &mut self,
        line: &'a [u8],
        marks: &[&[u64]],
        time: &mut TimeParser,
    ) -> Line<'a> {
        let _ = marks;
        self.parse(line, time)
    }
}

/// `--origin-statuses`, lower-cased: which cache statuses mean an origin fetch, replacing a
/// format's default rule.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginRule(Option<Vec<Box<[u8]>>>);

impl OriginRule {
    /// The rule from the flag's values; `None` keeps each format's default.
    pub fn new(statuses: Option<&[String]>) -> OriginRule {
        OriginRule(statuses.map(|list| {
            list.iter()
                .map(|s| {
                    s.trim()
                        .to_ascii_lowercase()
                        .into_bytes()
                        .into_boxed_slice()
                })
                .collect()
        }))
    }

    /// Whether the flag was given.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `status` is one of the flag's (any case); `None` when the flag was not given.
    #[inline]
    pub fn matches(&self, status: &[u8]) -> Option<bool> {
        let list = self.0.as_ref()?;
        let status = status.trim_ascii();
        Some(list.iter().any(|s| s.eq_ignore_ascii_case(status)))
    }
}

/// Decodes `%XX` escapes (W3C logs URL-encode their values); other bytes stay as they are.
pub fn percent_decode(b: &[u8]) -> Cow<'_, [u8]> {
    if memchr::memchr(b'%', b).is_none() {
        return Cow::Borrowed(b);
    }
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_apart_by_their_first_bytes() {
        assert_eq!(
            detect(b"#Version: 1.0\n#Fields: date time\n"),
            Ok(Format::Cloudfront)
        );
        assert_eq!(
            detect(b"{\"ClientRequestHost\":\"a.com\",\"EdgeStartTimestamp\":1}\n"),
            Ok(Format::Cloudflare)
        );
        assert!(
            detect(b"{\"host\":\"a.com\"}\n")
                .unwrap_err()
                .contains("--format jsonl")
        );
        assert_eq!(
            detect(b"[9/Jun/2015:01:58:09 +0800] 10.10.10.10 - 1542 \"-\""),
            Ok(Format::Alibaba)
        );
        assert_eq!(detect(b"time,domain,bytes\n"), Ok(Format::Csv));
        assert_eq!(detect(b"\xEF\xBB\xBFtime,domain,bytes\n"), Ok(Format::Csv));
    }

    #[test]
    fn percent_escapes_decode_and_bad_ones_stay() {
        assert_eq!(&*percent_decode(b"www.example.com"), b"www.example.com");
        assert_eq!(&*percent_decode(b"a%2Eb%2ecom"), b"a.b.com");
        assert_eq!(&*percent_decode(b"100%zz%4"), b"100%zz%4");
    }
}
