//! A caching proxy's access log, read by its nginx `log_format` string: literal text must
//! match, and each `$variable` takes what runs up to the next literal. The line is an origin
//! fetch when `$upstream_bytes_received` (or `$upstream_response_length`) is not `-`; its
//! bytes are the sum of that list (`123, 456 : 789`: one per upstream tried).

use super::marks::Marker;
use super::swar;
use super::{Line, LineFormat, OriginRule, Parsed};
use crate::fields::{self, TimeParser};
use crate::rejects::Reason;
use std::borrow::Cow;

/// nginx's predefined `combined` format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Time,
    Host,
    Upstream,
    Scheme,
    UpstreamStatus,
    Status,
    Cache,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Var(Role),
}

/// A compiled `log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxFormat {
    pieces: Vec<Piece>,
}

/// Why a `log_format` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// A variable the batch needs is not in it.
    #[error("the log_format has no {0}")]
    Missing(&'static str),
    /// Two variables with nothing between them cannot be told apart.
    #[error("the log_format has ${0} right after another variable; put text between them")]
    Adjacent(String),
}

impl NginxFormat {
    /// Compiles a `log_format` string (`combined` names the predefined one).
    pub fn compile(format: &str) -> Result<NginxFormat, FormatError> {
        let format = if format.trim() == "combined" {
            COMBINED
        } else {
            format
        };
        let b = format.as_bytes();
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                text.push(b[i]);
                i += 1;
                continue;
            }
            let (name, next) = if b.get(i + 1) == Some(&b'{') {
                let close = b[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map_or(b.len(), |p| i + p);
                (&format[i + 2..close], close + 1)
            } else {
                let n = b[i + 1..]
                    .iter()
                    .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                    .count();
                (&format[i + 1..i + 1 + n], i + 1 + n)
            };
            if name.is_empty() {
                text.push(b'$');
                i += 1;
                continue;
            }
            if text.is_empty() && matches!(pieces.last(), Some(Piece::Var(_))) {
                return Err(FormatError::Adjacent(name.to_owned()));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(match name {
                "time_local" | "time_iso8601" | "msec" => Role::Time,
                "host" | "http_host" | "server_name" => Role::Host,
                "upstream_bytes_received" | "upstream_response_length" => Role::Upstream,
                "scheme" => Role::Scheme,
                "upstream_status" => Role::UpstreamStatus,
                "status" => Role::Status,
                "upstream_cache_status" => Role::Cache,
                _ => Role::Other,
            }));
            i = next;
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        let has = |r: Role| pieces.contains(&Piece::Var(r));
        if !has(Role::Time) {
            return Err(FormatError::Missing(
                "time ($time_local, $time_iso8601 or $msec)",
            ));
        }
        if !has(Role::Host) {
            return Err(FormatError::Missing(
                "host ($host, $http_host or $server_name)",
            ));
        }
        if !has(Role::Upstream) {
            return Err(FormatError::Missing(
                "upstream bytes ($upstream_bytes_received or $upstream_response_length)",
            ));
        }
        Ok(NginxFormat { pieces })
    }
}

/// Sums an upstream list (`123, 456 : 789`); `None` when every entry is `-` (no upstream).
#[inline(always)]
fn upstream_sum(v: &[u8]) -> Option<Option<u64>> {
    // One upstream's count, as on most lines, read as it is (inline): a list is not one
    // count.
    if v.first().is_some_and(u8::is_ascii_digit)
        && let Some(n) = fields::parse_bytes(v)
    {
        return Some(Some(n));
    }
    upstream_list(v)
}

/// [`upstream_sum`] of a list, or of `-`.
#[inline(never)]
fn upstream_list(v: &[u8]) -> Option<Option<u64>> {
    let mut sum: Option<u64> = None;
    for part in v.split(|&b| b == b',' || b == b':') {
        let part = part.trim_ascii();
        if part == b"-" || part.is_empty() {
            continue;
        }
        let n = fields::parse_bytes(part)?;
        sum = Some(sum.unwrap_or(0).checked_add(n)?);
    }
    Some(sum)
}

/// A literal text of the format, with its first eight bytes (or fewer) as a word and a mask,
/// so that telling whether a line has it at a place is one masked word compare.
#[derive(Debug, Clone)]
struct Lit {
    bytes: Box<[u8]>,
    head: u64,
    mask: u64,
    /// Which of the reader's marked bytes its first byte is.
    class: usize,
    /// Whether it starts with a space and follows an upstream list, whose own separators
    /// (`, ` and ` : `) then do not end it.
    ends_list: bool,
}

impl Lit {
    fn new(bytes: &[u8]) -> Lit {
        let n = bytes.len().min(8);
        Lit {
            bytes: bytes.into(),
            head: swar::word(&bytes[..n]),
            mask: if n == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * n)) - 1
            },
            class: 0,
            ends_list: false,
        }
    }

    /// Whether `line` has this text at `at`, where it is known to have its first byte.
    #[inline]
    fn after_first(&self, line: &[u8], at: usize) -> bool {
        // Most texts between fields are one byte (a space): nothing is left to compare.
        self.bytes.len() == 1 || self.at(line, at)
    }

    /// Whether `line` has this text at `at`.
    #[inline]
    fn at(&self, line: &[u8], at: usize) -> bool {
        let rest = line.get(at..).unwrap_or_default();
        match rest.get(..8) {
            Some(w) => {
                swar::word(w) & self.mask == self.head
                    && (self.bytes.len() <= 8 || rest[8..].starts_with(&self.bytes[8..]))
            }
            // Near the line's end, byte by byte: a call to memcmp here came on every line
            // of a format that ends in a text (`"$http_user_agent"`).
            None => {
                rest.len() >= self.bytes.len() && self.bytes.iter().zip(rest).all(|(a, b)| a == b)
            }
        }
    }
}

/// A `log_format` as the reader walks it: the text it starts with, then each variable with
/// the text after it.
#[derive(Debug, Clone)]
struct Steps {
    head: Option<Lit>,
    vars: Vec<Var>,
}

/// A variable of the format as the reader walks it.
#[derive(Debug, Clone)]
struct Var {
    role: Role,
    /// The text after it (`None` for a variable that ends the line).
    after: Option<Lit>,
    /// Whether the text before it is one byte, the same as `after`'s first: the search for
    /// its end then goes on from the mark that ended the variable before (see [`Finder`]).
    chained: bool,
}

/// The next piece as a text, taken only if it is one.
fn text(pieces: &mut std::iter::Peekable<std::slice::Iter<'_, Piece>>) -> Option<Lit> {
    match pieces.peek() {
        Some(Piece::Text(t)) => {
            let lit = Lit::new(t);
            pieces.next();
            Some(lit)
        }
        _ => None,
    }
}

impl Steps {
    fn new(format: &NginxFormat) -> Steps {
        let mut pieces = format.pieces.iter().peekable();
        let head = text(&mut pieces);
        let mut vars: Vec<Var> = Vec::new();
        while let Some(piece) = pieces.next() {
            // Texts and variables alternate (adjacent texts are one, adjacent variables are
            // refused by `compile`).
            if let Piece::Var(role) = piece {
                let mut after = text(&mut pieces);
                if let Some(t) = &mut after {
                    t.ends_list = matches!(role, Role::Upstream | Role::UpstreamStatus)
                        && t.bytes.first() == Some(&b' ');
                }
                let before = vars.last().and_then(|v| v.after.as_ref());
                let chained = match (before, &after) {
                    (Some(b), Some(a)) => b.bytes.len() == 1 && a.bytes.first() == b.bytes.first(),
                    _ => false,
                };
                vars.push(Var {
                    role: *role,
                    after,
                    chained,
                });
            }
        }
        Steps { head, vars }
    }
}

/// Finds where a text's first byte is next in the line at hand.
trait Finder {
    /// The first place at or after `from` with `text`'s first byte. `chained`: the place this
    /// finder gave last had that byte too, and `from` is the place after it.
    fn next(&mut self, line: &[u8], from: usize, text: &Lit, chained: bool) -> Option<usize>;
}

/// Searches the line eight bytes at a time.
struct Search;

impl Finder for Search {
    #[inline(always)]
    fn next(&mut self, line: &[u8], from: usize, text: &Lit, _: bool) -> Option<usize> {
        swar::find(line.get(from..)?, *text.bytes.first()?).map(|p| from + p)
    }
}

/// Reads the line's marks, one mask per first byte of the format's texts. It keeps the word
/// of the place it gave last, that place's bit the lowest, so a chained search is the next bit
/// of that word: the places of a run of space-separated values come one after another from a
/// register, where a search from each place made each wait on the one before it (a shift of
/// a word loaded again, then a count).
struct Marks<'m> {
    starts: &'m [&'m [u64]],
    word: usize,
    bits: u64,
}

impl Finder for Marks<'_> {
    #[inline(always)]
    fn next(&mut self, _: &[u8], from: usize, text: &Lit, chained: bool) -> Option<usize> {
        let marks = self.starts.get(text.class)?;
        let (mut k, mut w) = if chained {
            (self.word, self.bits & self.bits.wrapping_sub(1))
        } else {
            let k = from / 64;
            (k, *marks.get(k)? & (u64::MAX << (from % 64)))
        };
        while w == 0 {
            k += 1;
            w = *marks.get(k)?;
        }
        self.word = k;
        self.bits = w;
        Some(k * 64 + w.trailing_zeros() as usize)
    }
}

/// Where a variable's value that starts at `at` ends: at the next `text`, except that an
/// upstream list (`502, 200 : 304`) does not end inside one of its own separators.
/// `chained` as in [`Finder::next`].
#[inline(always)]
fn value_end(
    line: &[u8],
    at: usize,
    text: &Lit,
    chained: bool,
    find: &mut impl Finder,
) -> Option<usize> {
    let mut p = find.next(line, at, text, chained)?;
    loop {
        if text.after_first(line, p) {
            let inside = text.ends_list
                && (line[..p].ends_with(b",")
                    || line[p..].starts_with(b" : ")
                    || line[..p].ends_with(b" :"));
            if !inside {
                return Some(p);
            }
        }
        p = find.next(line, p + 1, text, true)?;
    }
}

/// The reader.
#[derive(Debug)]
pub struct Nginx {
    steps: Steps,
    origin: OriginRule,
    /// Where the CPU has AVX2 and the format's texts start with at most four bytes: those
    /// bytes, marked in the line at hand in one pass (`starts`, a mask per byte), give each
    /// place a value may end without a search per variable. A mask per byte rather than one
    /// for all: a value that holds another text's first byte (the spaces of `$request`,
    /// ended by a quote) then gives no place to try and refuse (5% of a run, measured).
    marker: Option<(Marker, [u8; 4])>,
    starts: [Vec<u64>; 4],
}

impl Nginx {
    /// A reader of lines of `format`.
    pub fn new(format: NginxFormat, origin: OriginRule) -> Nginx {
        let mut firsts: Vec<u8> = format
            .pieces
            .iter()
            .filter_map(|p| match p {
                Piece::Text(t) => t.first().copied(),
                Piece::Var(_) => None,
            })
            .collect();
        firsts.sort_unstable();
        firsts.dedup();
        let set = match firsts[..] {
            [a] => Some([a; 4]),
            [a, b] => Some([a, b, b, b]),
            [a, b, c] => Some([a, b, c, c]),
            [a, b, c, d] => Some([a, b, c, d]),
            _ => None,
        };
        let mut steps = Steps::new(&format);
        if let Some(set) = set {
            for lit in steps
                .head
                .iter_mut()
                .chain(steps.vars.iter_mut().filter_map(|v| v.after.as_mut()))
            {
                lit.class = set
                    .iter()
                    .position(|&b| Some(&b) == lit.bytes.first())
                    .unwrap_or(0);
            }
        }
        Nginx {
            steps,
            origin,
            marker: Marker::new().zip(set),
            starts: Default::default(),
        }
    }

    /// The line's variables by role, `None` if the line does not match the format. Each text
    /// is compared once: where a value ends at a text, that text is known to be there.
    #[inline(always)]
    fn values<'a>(&self, line: &'a [u8], mut find: impl Finder) -> Option<[Option<&'a [u8]>; 8]> {
        let mut vals: [Option<&'a [u8]>; 8] = [None; 8];
        let mut at = 0;
        if let Some(head) = &self.steps.head {
            if !head.at(line, 0) {
                return None;
            }
            at = head.bytes.len();
        }
        for var in &self.steps.vars {
            match &var.after {
                Some(text) => {
                    let end = value_end(line, at, text, var.chained, &mut find)?;
                    vals[var.role as usize] = Some(&line[at..end]);
                    at = end + text.bytes.len();
                }
                None => {
                    vals[var.role as usize] = Some(&line[at..]);
                    at = line.len();
                }
            }
        }
        (at == line.len()).then_some(vals)
    }
}

impl LineFormat for Nginx {
    fn parse<'a>(&mut self, line: &'a [u8], time: &mut TimeParser) -> Line<'a> {
        if line.trim_ascii().is_empty() {
            return Line::Skip;
        }
        match self.marker {
            Some((m, set)) => {
                let mut starts = std::mem::take(&mut self.starts);
                m.mark_each(line, set, &mut starts);
                let read = self.read_marked(line, &starts.each_ref().map(Vec::as_slice), time);
                self.starts = starts;
                read
            }
            None => {
                let vals = self.values(line, Search);
                self.finish(vals, time)
            }
        }
    }

    fn marks(&self) -> Option<(Marker, [u8; 4])> {
        self.marker
    }

    #[inline]
    fn parse_marked<'a>(
        &mut self,
        line: &'a [u8],
        marks: &[&[u64]],
        time: &mut TimeParser,
    ) -> Line<'a> {
        self.read_marked(line, marks, time)
    }
}

impl Nginx {
    /// A line read by the marks of its texts' first bytes.
    #[inline(always)]
    fn read_marked<'a>(
        &self,
        line: &'a [u8],
        starts: &[&[u64]],
        time: &mut TimeParser,
    ) -> Line<'a> {
        let vals = self.values(
            line,
            Marks {
                starts,
                word: 0,
                bits: 0,
            },
        );
        self.finish(vals, time)
    }

    /// A line's fetch from its variables' values (`None`: it does not match the format).
    #[inline(always)]
    fn finish<'a>(&self, vals: Option<[Option<&'a [u8]>; 8]>, time: &mut TimeParser) -> Line<'a> {
        let Some(vals) = vals else {
            return Line::Bad(Reason::FormatMismatch);
        };
        let get = |r: Role| vals[r as usize].unwrap_or(b"");
        let Some(minute) = time.minute(get(Role::Time)) else {
            return Line::Bad(Reason::BadTime);
        };
        let Some(upstream) = upstream_sum(get(Role::Upstream)) else {
            return Line::Bad(Reason::BadBytes);
        };
        let origin = match self.origin.matches(get(Role::Cache)) {
            Some(m) => m && upstream.is_some(),
            None => upstream.is_some(),
        };
        let (true, Some(bytes)) = (origin, upstream) else {
            return Line::Cached;
        };
        // The last upstream's status is the one that answered.
        let upstream_status = get(Role::UpstreamStatus);
        let upstream_status = fields::parse_status(upstream_status).or_else(|| {
            upstream_status
                .rsplit(|&b| b == b',' || b == b':')
                .next()
                .and_then(fields::parse_status)
        });
        Line::Fetch(Parsed {
            minute,
            domain: Cow::Borrowed(get(Role::Host)),
            bytes,
            https: fields::is_https(get(Role::Scheme)),
            status: upstream_status.or_else(|| fields::parse_status(get(Role::Status))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = r#"$remote_addr [$time_local] "$request" $status $host $scheme $upstream_cache_status $upstream_bytes_received"#;

    fn parse(format: &str, line: &'static str) -> Line<'static> {
        let f = NginxFormat::compile(format).unwrap();
        Nginx::new(f, OriginRule::default()).parse(line.as_bytes(), &mut TimeParser::default())
    }

    #[test]
    fn the_documented_sample_sums_its_upstreams() {
        let line = r#"203.0.113.9 [10/Dec/2019:20:00:13 +0800] "GET /a.jpg HTTP/1.1" 200 img.example.com https MISS 52731, 1200"#;
        let Line::Fetch(p) = parse(FORMAT, line) else {
            panic!()
        };
        assert_eq!(
            (&*p.domain, p.bytes, p.https, p.status),
            (&b"img.example.com"[..], 53931, true, Some(200))
        );
        let day = srctraffic::time::days_from_civil(2019, 12, 10);
        assert_eq!(p.minute, day * 1440 + 12 * 60);
    }

    #[test]
    fn no_upstream_is_served_from_cache_and_a_redirect_list_sums() {
        let hit =
            r#"1.1.1.1 [10/Dec/2019:20:00:13 +0800] "GET / HTTP/1.1" 200 a.example.com http HIT -"#;
        assert_eq!(parse(FORMAT, hit), Line::Cached);
        let f = r#"[$time_iso8601] $http_host $upstream_status $upstream_response_length"#;
        let Line::Fetch(p) = parse(
            f,
            "[2019-12-10T20:00:13+08:00] b.example.com 502, 200 : 304 10, 20 : 30",
        ) else {
            panic!()
        };
        assert_eq!((p.bytes, p.status), (60, Some(304)));
    }

    #[test]
    fn lines_off_the_format_and_formats_without_what_is_needed() {
        assert_eq!(parse(FORMAT, "garbage"), Line::Bad(Reason::FormatMismatch));
        assert_eq!(
            parse(
                FORMAT,
                r#"1.1.1.1 [10/Dec/2019:20:00:13 +0800] "GET / HTTP/1.1" 200 a.example.com http MISS 12kb"#
            ),
            Line::Bad(Reason::BadBytes)
        );
        assert_eq!(
            NginxFormat::compile("combined"),
            Err(FormatError::Missing(
                "host ($host, $http_host or $server_name)"
            ))
        );
        assert!(matches!(
            NginxFormat::compile("$msec$host $upstream_bytes_received"),
            Err(FormatError::Adjacent(_))
        ));
        assert!(NginxFormat::compile("${msec} ${host} ${upstream_bytes_received}").is_ok());
    }

    proptest::proptest! {
        /// Lines of a log's bytes read with the format's marks (where the CPU has AVX2) and
        /// by searching each text read the same, the combined format and one of upstream
        /// lists alike.
        #[test]
        fn marked_and_searched_reads_agree(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                " ", "\"", "[", "]", "-", ", ", " : ", "1", "200", "a.example.com", "https",
                "MISS", "10/Dec/2019:20:00:13 +0800", "2019-12-10T20:00:13Z", "GET / HTTP/1.1",
                "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            ]), 0..40),
            format in proptest::sample::select(vec![
                COMBINED_WITH_UPSTREAM,
                "[$time_iso8601] $http_host $upstream_status $upstream_response_length",
                FORMAT,
            ]),
            fill in proptest::collection::vec(proptest::collection::vec(proptest::sample::select(vec![
                " ", "\"", "]", "-", ", ", " : ", "1", "200", "a.example.com", "10/Dec/2019:20:00:13 +0800",
            ]), 1..4), 12),
            filled in proptest::bool::ANY,
        ) {
            let f = NginxFormat::compile(format).unwrap();
            // Either bytes at random or the format's texts with values at random between them.
            let line = if filled {
                let mut vals = fill.iter();
                f.pieces.iter().map(|p| match p {
                    Piece::Text(t) => String::from_utf8_lossy(t).into_owned(),
                    Piece::Var(_) => vals.next().map(|v| v.concat()).unwrap_or_default(),
                }).collect()
            } else {
                parts.concat()
            };
            let mut marked = Nginx::new(f.clone(), OriginRule::default());
            let mut searched = Nginx::new(f, OriginRule::default());
            searched.marker = None;
            proptest::prop_assert_eq!(
                marked.parse(line.as_bytes(), &mut TimeParser::default()),
                searched.parse(line.as_bytes(), &mut TimeParser::default()),
                "{}", line
            );
        }
    }

    /// `combined` with what the batch needs after it.
    const COMBINED_WITH_UPSTREAM: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $host $upstream_bytes_received"#;
}
