//! Field values of a log line, per SPEC.md section 7: times in four formats to a UTC minute,
//! byte counts, host names. Pure functions, no allocation on the common path.

use crate::formats::swar::word;
use srctraffic::time::{days_from_civil, days_in_month};
use std::borrow::Cow;

/// Removes RFC 4180 quoting: `"a""b"` is `a"b`. Unquoted input comes back borrowed.
#[inline]
pub fn unquote(b: &[u8]) -> Cow<'_, [u8]> {
    // Almost every field of every line is unquoted: that test stays in the caller.
    if b.first() != Some(&b'"') {
        return Cow::Borrowed(b);
    }
    unquote_quoted(b)
}

#[cold]
fn unquote_quoted(b: &[u8]) -> Cow<'_, [u8]> {
    match b {
        [b'"', inner @ .., b'"'] if !inner.is_empty() || b.len() == 2 => {
            if memchr::memchr(b'"', inner).is_none() {
                Cow::Borrowed(inner)
            } else {
                let mut out = Vec::with_capacity(inner.len());
                let mut i = 0;
                while i < inner.len() {
                    out.push(inner[i]);
                    i += if inner[i] == b'"' && inner.get(i + 1) == Some(&b'"') {
                        2
                    } else {
                        1
                    };
                }
                Cow::Owned(out)
            }
        }
        _ => Cow::Borrowed(b),
    }
}

/// Whether a scheme is HTTPS (`https`, or `wss` for WebSockets over TLS), in any case.
#[inline]
pub fn is_https(b: &[u8]) -> bool {
    // Every byte of either name is a letter, so a byte equals its letter in any case exactly
    // when it does with the lower-case bit set: one compare, not a case-folding loop a byte
    // at a time on every line.
    match *trim(b) {
        [a, b, c, d, e] => {
            u64::from_le_bytes([a, b, c, d, e, 0, 0, 0]) | 0x20_2020_2020 == 0x73_7074_7468
        }
        [a, b, c] => u32::from_le_bytes([a, b, c, 0]) | 0x20_2020 == 0x73_7377,
        _ => false,
    }
}

/// An HTTP status code, 100 to 999; `-`, empty or anything else is none (the line still
/// counts, under no code).
#[inline]
pub fn parse_status(b: &[u8]) -> Option<u16> {
    match trim(b) {
        &[a, b, c]
            if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() && a != b'0' =>
        {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// A count of one to eight digits and nothing else, as [`parse_bytes`] reads it; `None` for
/// anything else (which `parse_bytes` may still read). In one word: most logs' byte counts
/// are this short, and the general read's call, trims and byte loop cost more than the count
/// itself.
#[inline]
fn short_count(b: &[u8]) -> Option<u64> {
    let n = b.len();
    // The bytes in at most three loads that overlap, each OR-ed into its place.
    let w = match (b.get(..4), b.get(n.wrapping_sub(4)..)) {
        (Some(lo), Some(hi)) if n <= 8 => {
            let lo = u32::from_le_bytes(lo.try_into().ok()?);
            let hi = u32::from_le_bytes(hi.try_into().ok()?);
            u64::from(lo) | u64::from(hi) << (8 * (n - 4))
        }
        (None, _) => match (b.first(), b.get(n / 2), b.last()) {
            (Some(&a), Some(&m), Some(&z)) => {
                u64::from(a) | u64::from(m) << (8 * (n / 2)) | u64::from(z) << (8 * (n - 1))
            }
            _ => return None,
        },
        _ => return None,
    };
    let x = w ^ 0x3030_3030_3030_3030;
    // As in `leading_digits`; the padding's zeros are no digits.
    let not_digit = (x.wrapping_add(0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080;
    if (not_digit.trailing_zeros() / 8) as usize != n {
        return None;
    }
    Some(eight_digits(if n == 8 { x } else { x << (8 * (8 - n)) }))
}

/// The most bytes one line may carry: a petabyte. Far above any real origin fetch, and low
/// enough that the 2^64 - 1 of a minute's total takes over 18,000 such lines to reach.
pub const MAX_LINE_BYTES_VALUE: u64 = 1_000_000_000_000_000;

/// Parses a byte count: a non-negative decimal integer up to [`MAX_LINE_BYTES_VALUE`], or `-`
/// for zero.
// Inlined as far as a count of up to eight digits, as most are ([`short_count`]); the rest is
// a call. nginx, 10M lines, one thread: 0.95 of the read phase.
#[inline]
pub fn parse_bytes(b: &[u8]) -> Option<u64> {
    match short_count(b) {
        Some(n) => Some(n),
        None => any_count(b),
    }
}

/// [`parse_bytes`] of any field.
#[inline(never)]
fn any_count(b: &[u8]) -> Option<u64> {
    let b = trim(b);
    if b == b"-" {
        return Some(0);
    }
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    // Up to 19 digits the value read is exact; 20 are under the limit only behind a zero.
    let b = if b.len() == 20 {
        b.strip_prefix(b"0")?
    } else {
        b
    };
    let (lead, n) = leading_digits(b);
    (lead == b.len() && n <= MAX_LINE_BYTES_VALUE).then_some(n)
}

/// The largest UTC offset in use anywhere (Kiribati's +14:00, and -12:00 the other way;
/// ±14:00 both ways is the bound RFC 3339 readers accept in practice), in minutes.
const MAX_OFFSET_MINUTES: i64 = 14 * 60;

/// Minutes east of UTC from a sign and its hours and minutes, if within ±14:00.
fn offset_minutes(sign: u8, hours: i64, minutes: i64) -> Option<i64> {
    if minutes > 59 || hours * 60 + minutes > MAX_OFFSET_MINUTES {
        return None;
    }
    match sign {
        b'+' => Some(hours * 60 + minutes),
        b'-' => Some(-(hours * 60 + minutes)),
        _ => None,
    }
}

/// The minute of the day of an hour, minute and second in digits (a leap second allowed).
fn clock(hours: &[u8], minutes: &[u8], seconds: &[u8]) -> Option<i64> {
    let (h, m, s) = (digits(hours)?, digits(minutes)?, digits(seconds)?);
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    Some(h * 60 + m)
}

/// How many ASCII digits `b` starts with, and their value (modulo 2^64, exact up to 19
/// digits), read eight at a time: a Unix time's ten to nineteen digits one by one were a
/// chain of a multiply and an add per digit on every JSON log line.
#[inline]
fn leading_digits(b: &[u8]) -> (usize, u64) {
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    const POW10: [u64; 9] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
    ];
    let mut lead = 0;
    let mut n = 0u64;
    while let Some(w) = b.get(lead..lead + 8) {
        let x = word(w) ^ ZEROS;
        // A byte's high bit here where it is no digit: past 9 after the xor (the add sets
        // its high bit) or a byte of 0x80 and up. A carry only runs upward, so the lowest
        // mark is the first byte that is no digit.
        let not_digit = (x.wrapping_add(0x7676_7676_7676_7676) | x) & 0x8080_8080_8080_8080;
        let k = (not_digit.trailing_zeros() / 8) as usize;
        if k == 0 {
            return (lead, n);
        }
        // The digits moved to the word's top, behind zeros, read as one number.
        let v = eight_digits(if k == 8 { x } else { x << (8 * (8 - k)) });
        n = n.wrapping_mul(POW10[k]).wrapping_add(v);
        lead += k;
        if k < 8 {
            return (lead, n);
        }
    }
    for &c in &b[lead..] {
        if !c.is_ascii_digit() {
            break;
        }
        n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        lead += 1;
    }
    (lead, n)
}

/// The number whose eight decimal digits (0 to 9 each, the first in the lowest byte) `x`
/// holds: pairs, then fours, then all eight combined by multiplies.
#[inline]
fn eight_digits(x: u64) -> u64 {
    const MASK: u64 = 0x0000_00FF_0000_00FF;
    const MUL1: u64 = 100 + (1_000_000 << 32);
    const MUL2: u64 = 1 + (10_000 << 32);
    let x = x.wrapping_mul(10).wrapping_add(x >> 8);
    ((x & MASK)
        .wrapping_mul(MUL1)
        .wrapping_add(((x >> 16) & MASK).wrapping_mul(MUL2)))
        >> 32
}

/// Without ASCII blanks at either end.
pub fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0i64, |acc, &c| {
        acc.checked_mul(10)?
            .checked_add(i64::from(c.is_ascii_digit().then(|| c - b'0')?))
    })
}

/// Turns time fields into UTC minutes, remembering the last date seen (log lines come in time
/// order, so the calendar arithmetic is done about once per file).
#[derive(Debug, Default)]
pub struct TimeParser {
    date: [u8; 10],
    day: i64,
    /// The last common-log date (`10/Dec/2019`) read, and its day.
    clf_date: [u8; 11],
    clf_day: i64,
    /// The last RFC 3339 or common-log time read: a log's lines mostly fall in the minute of
    /// the line before.
    recent: Option<Recent>,
}

/// A time text read before, to tell a text that differs from it only in its seconds (and
/// their fraction's digits).
#[derive(Debug, Clone, Copy)]
struct Recent {
    /// The text as [`quad`] reads it.
    words: [u64; 4],
    /// Per word, the bytes to compare: all but the seconds' two digits and the fraction's.
    masks: [u64; 4],
    len: usize,
    /// Where the seconds' two digits are.
    seconds: usize,
    /// How many digits of a fraction follow them after a dot (`.441`), or 0.
    fraction: usize,
    minute: i64,
}

/// A text of 16 to 32 bytes as four words read at 0, 8, `len - 16` and `len - 8`: together
/// they hold every byte, and comparing them is four compares, not a call to memcmp.
#[inline]
fn quad(b: &[u8]) -> Option<[u64; 4]> {
    let n = b.len();
    if !(16..=32).contains(&n) {
        return None;
    }
    Some([
        word(&b[..8]),
        word(&b[8..16]),
        word(&b[n - 16..n - 8]),
        word(&b[n - 8..]),
    ])
}

impl TimeParser {
    /// The UTC minute of a time field, or `None` if it is in none of the accepted formats.
    // Inlined as far as a time of the minute read last, as most lines' are; the rest is a
    // call (the call and its register saves on every line were a tenth of this).
    #[inline]
    pub fn minute(&mut self, b: &[u8]) -> Option<i64> {
        let b = trim(b);
        if let Some(m) = self.same_minute(b) {
            return Some(m);
        }
        self.new_minute(b)
    }

    /// [`TimeParser::minute`] of a trimmed time not of the minute read last.
    #[inline(never)]
    fn new_minute(&mut self, b: &[u8]) -> Option<i64> {
        if b.len() >= 20 && b[4] == b'-' && b[7] == b'-' && b[13] == b':' && b[16] == b':' {
            return self.rfc3339(b);
        }
        // One pass over the leading digits tells Unix times from the rest and reads their
        // value (exact up to 19 digits, all a u64 holds), without a search for the dot (a call
        // into memchr on every line) or a second pass.
        let (lead, n) = leading_digits(b);
        let per_minute = match lead {
            19 => 60_000_000_000,
            13 => 60_000,
            1..=12 => 60,
            _ => 0,
        };
        if lead > 0 && lead == b.len() {
            return (per_minute != 0).then(|| (n / per_minute) as i64);
        }
        // Unix seconds with a fraction (nginx's `$msec`, JSON logs): the whole seconds decide.
        if (1..=12).contains(&lead)
            && b[lead] == b'.'
            && lead + 1 < b.len()
            && b[lead + 1..].iter().all(u8::is_ascii_digit)
        {
            return Some((n / 60) as i64);
        }
        self.common_log(b)
    }

    fn day_of(&mut self, date: &[u8]) -> Option<i64> {
        // A fixed-size compare inlines; a slice compare would call memcmp on every line.
        let date: &[u8; 10] = date.try_into().ok()?;
        if *date == self.date {
            return Some(self.day);
        }
        let (y, m, d) = (
            digits(&date[0..4])?,
            digits(&date[5..7])? as u32,
            digits(&date[8..10])? as u32,
        );
        if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
            return None;
        }
        self.day = days_from_civil(y, m, d);
        self.date.copy_from_slice(date);
        Some(self.day)
    }

    /// A UTC date (`YYYY-MM-DD`) and time (`HH:MM:SS`) in two fields, as W3C logs write them.
    pub fn date_time(&mut self, date: &[u8], time: &[u8]) -> Option<i64> {
        let day = self.day_of(trim(date))?;
        match trim(time) {
            [h1, h2, b':', m1, m2, b':', s1, s2, ..] => {
                Some(day * 1440 + clock(&[*h1, *h2], &[*m1, *m2], &[*s1, *s2])?)
            }
            _ => None,
        }
    }

    /// The minute of the last time read, where `b` differs from it only in its seconds and
    /// their fraction's digits, those seconds the full read takes (`00` to `60`) and that
    /// fraction all digits: then that read gives the same.
    #[inline(always)]
    fn same_minute(&self, b: &[u8]) -> Option<i64> {
        let r = self.recent.as_ref()?;
        if b.len() != r.len {
            return None;
        }
        let w = quad(b)?;
        let differ = (0..4).fold(0, |d, i| d | ((w[i] ^ r.words[i]) & r.masks[i]));
        if differ != 0 {
            return None;
        }
        let fraction = b.get(r.seconds + 3..r.seconds + 3 + r.fraction)?;
        match b.get(r.seconds..r.seconds + 2)? {
            [b'0'..=b'5', b'0'..=b'9'] | [b'6', b'0']
                if fraction.iter().all(u8::is_ascii_digit) =>
            {
                Some(r.minute)
            }
            _ => None,
        }
    }

    /// Keeps `b`, a time read as `minute` whose seconds' two digits are at `seconds` and
    /// whose `fraction` digits follow them after a dot, for [`TimeParser::same_minute`].
    fn remember(&mut self, b: &[u8], seconds: usize, fraction: usize, minute: i64) {
        let (Some(words), n) = (quad(b), b.len()) else {
            return;
        };
        let digits = (seconds..seconds + 2).chain(seconds + 3..seconds + 3 + fraction);
        let masks = [0, 8, n - 16, n - 8].map(|at| {
            digits
                .clone()
                .filter(|s| (at..at + 8).contains(s))
                .fold(u64::MAX, |m, s| m & !(0xFF << (8 * (s - at))))
        });
        self.recent = Some(Recent {
            words,
            masks,
            len: n,
            seconds,
            fraction,
            minute,
        });
    }

    /// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, `T` also as `t` or a space.
    fn rfc3339(&mut self, b: &[u8]) -> Option<i64> {
        if !matches!(b[10], b'T' | b't' | b' ') {
            return None;
        }
        let day = self.day_of(&b[..10])?;
        let minute = clock(&b[11..13], &b[14..16], &b[17..19])?;
        let mut rest = &b[19..];
        let mut fraction = 0;
        if let [b'.', frac @ ..] = rest {
            fraction = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if fraction == 0 {
                return None;
            }
            rest = &frac[fraction..];
        }
        let offset = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), hh @ .., b':', m1, m2] if hh.len() == 2 => {
                offset_minutes(*sign, digits(hh)?, digits(&[*m1, *m2])?)?
            }
            _ => return None,
        };
        let utc = day * 1440 + minute - offset;
        self.remember(b, 17, fraction, utc);
        Some(utc)
    }

    /// The common log format: `10/Dec/2019:20:00:13 +0800`, brackets optional.
    fn common_log(&mut self, text: &[u8]) -> Option<i64> {
        let b = text.strip_prefix(b"[").unwrap_or(text);
        let bracket = text.len() - b.len();
        let b = b.strip_suffix(b"]").unwrap_or(b);
        // A day of one digit (`9/Jun/2015:...`, as Alibaba Cloud CDN writes it) reads as `09`.
        let mut padded = [b'0'; 26];
        let (b, pad) = if b.len() == 25 && b.get(1) == Some(&b'/') {
            padded[1..].copy_from_slice(b);
            (&padded[..], 1)
        } else {
            (b, 0)
        };
        if b.len() != 26
            || b[2] != b'/'
            || b[6] != b'/'
            || b[11] != b':'
            || b[14] != b':'
            || b[17] != b':'
            || b[20] != b' '
        {
            return None;
        }
        let day = self.common_log_day(&b[..11])?;
        let minute = clock(&b[12..14], &b[15..17], &b[18..20])?;
        let offset = offset_minutes(b[21], digits(&b[22..24])?, digits(&b[24..26])?)?;
        let utc = day * 1440 + minute - offset;
        self.remember(text, bracket + 18 - pad, 0, utc);
        Some(utc)
    }

    /// The day of a common-log date (`10/Dec/2019`), remembered from the line before.
    fn common_log_day(&mut self, date: &[u8]) -> Option<i64> {
        let date: &[u8; 11] = date.try_into().ok()?;
        if *date == self.clf_date {
            return Some(self.clf_day);
        }
        const MONTHS: [&[u8; 3]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let m = MONTHS
            .iter()
            .position(|name| name.eq_ignore_ascii_case(&date[3..6]))? as u32
            + 1;
        let (d, y) = (digits(&date[0..2])? as u32, digits(&date[7..11])?);
        if d == 0 || d > days_in_month(y, m) {
            return None;
        }
        self.clf_day = days_from_civil(y, m, d);
        self.clf_date = *date;
        Some(self.clf_day)
    }
}

/// Normalises a log's domain field: trim, drop `:port`, then the API's host-name rules
/// (lower case, no trailing dot). `None` if it is not a valid host name.
pub fn domain(b: &[u8]) -> Option<srctraffic::DomainName> {
    let b = trim(b);
    let b = match memchr::memrchr(b':', b) {
        Some(i) if i + 1 < b.len() && b[i + 1..].iter().all(u8::is_ascii_digit) => &b[..i],
        _ => b,
    };
    srctraffic::DomainName::parse(std::str::from_utf8(b).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn min(s: &str) -> Option<i64> {
        TimeParser::default().minute(s.as_bytes())
    }

    const SEED_2000: i64 = 1_576_008_000 / 60; // 2019-12-10T20:00:00Z

    #[test]
    fn unix_times_of_every_length_past_an_i64_read_or_refuse_without_wrapping() {
        // Nanoseconds past i64::MAX (the year 2262): a time far ahead, not one wrapped to
        // before 1970.
        assert_eq!(
            min("9999999999999999999"),
            Some((9_999_999_999_999_999_999u64 / 60_000_000_000) as i64)
        );
        assert_eq!(min("1575979213000000000"), Some(1_575_979_213 / 60));
        assert_eq!(min("99999999999999999999"), None);
        assert_eq!(min("1575979213000"), Some(1_575_979_213 / 60));
        assert_eq!(min("999999999999"), Some(999_999_999_999 / 60));
        assert_eq!(min("9999999999999"), Some(9_999_999_999_999 / 60_000));
        assert_eq!(min("99999999999999"), None);
        assert_eq!(min("1575979213.999"), Some(1_575_979_213 / 60));
        assert_eq!(min("1575979213."), None);
        assert_eq!(min("9999999999999.5"), None);
    }

    #[test]
    fn a_remembered_minute_still_checks_its_seconds_and_zone() {
        let mut p = TimeParser::default();
        assert_eq!(p.minute(b"2019-12-10T20:00:00Z"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:60Z"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:61Z"), None);
        assert_eq!(p.minute(b"2019-12-10T20:00:7aZ"), None);
        assert_eq!(p.minute(b"2019-12-10T20:00:59z"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:59+01:00"), Some(SEED_2000 - 60));
        assert_eq!(p.minute(b"2019-12-10T20:01:00Z"), Some(SEED_2000 + 1));
        assert_eq!(p.minute(b"2019-12-10T20:00:59Z"), Some(SEED_2000));
        assert_eq!(p.minute(b"[11/Dec/2019:04:00:13 +0800]"), Some(SEED_2000));
        assert_eq!(p.minute(b"[11/Dec/2019:04:00:60 +0800]"), Some(SEED_2000));
        assert_eq!(p.minute(b"[11/Dec/2019:04:00:61 +0800]"), None);
        assert_eq!(
            p.minute(b"[11/Dec/2019:04:00:13 +0900]"),
            Some(SEED_2000 - 60)
        );
        assert_eq!(p.minute(b"11/Dec/2019:04:00:13 +0800]"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:13.441Z"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:59.999Z"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:59.9a9Z"), None);
        assert_eq!(p.minute(b"2019-12-10T20:00:59.99ZZ"), None);
        assert_eq!(p.minute(b"2019-12-10T20:00:60.000Z"), Some(SEED_2000));
        assert_eq!(p.minute(b"2019-12-10T20:00:61.000Z"), None);
    }

    #[test]
    fn every_time_format_lands_in_the_same_minute() {
        for s in [
            "2019-12-10T20:00:13.123Z",
            "2019-12-10T20:00:59Z",
            "2019-12-10 20:00:00z",
            "2019-12-11T04:00:13+08:00",
            "2019-12-10T15:00:13.5-05:00",
            "1576008013",
            "1576008013123",
            "10/Dec/2019:20:00:13 +0000",
            "[11/Dec/2019:04:00:13 +0800]",
            " 2019-12-10T20:00:00Z ",
            "2019-12-11T10:00:13+14:00",
            "10/Dec/2019:06:00:13 -1400",
        ] {
            assert_eq!(min(s), Some(SEED_2000), "{s}");
        }
    }

    #[test]
    fn bad_times_are_refused() {
        for s in [
            "",
            "yesterday",
            "2019-12-10T20:00:13",
            "2019-02-30T20:00:13Z",
            "2019-12-10T25:00:00Z",
            "2019-12-10T20:00:00.Z",
            "2019-12-10T20:00:00+8:00",
            "12345678901234",
            "10/Foo/2019:20:00:13 +0000",
            "10/Dec/2019:20:00:13 +9999",
            "10/Dec/2019:20:00:13 +1401",
            "10/Dec/2019:20:00:13 -0060",
            "2019-12-10T20:00:00+15:00",
            "2019-12-10T20:00:00-23:59",
            "-1576008013",
        ] {
            assert_eq!(min(s), None, "{s}");
        }
    }

    #[test]
    fn byte_counts_are_non_negative_integers_or_a_dash() {
        assert_eq!(parse_bytes(b"12345"), Some(12345));
        assert_eq!(parse_bytes(b"-"), Some(0));
        assert_eq!(parse_bytes(b" 7 "), Some(7));
        assert_eq!(parse_bytes(b"1000000000000000"), Some(MAX_LINE_BYTES_VALUE));
        for b in [
            &b"-5"[..],
            b"1.5",
            b"",
            b"abc",
            b"99999999999999999999999",
            b"1e3",
            b"18446744073709551615",
            b"1000000000000001",
        ] {
            assert_eq!(parse_bytes(b), None, "{:?}", String::from_utf8_lossy(b));
        }
    }

    #[test]
    fn https_and_wss_in_any_case_are_https() {
        for (s, want) in [
            ("https", true),
            (" HTTPS ", true),
            ("HtTpS", true),
            ("wss", true),
            ("WSS", true),
            ("http", false),
            ("ws", false),
            ("httpss", false),
            ("hTTp\x13", false),
            ("", false),
        ] {
            assert_eq!(is_https(s.as_bytes()), want, "{s}");
        }
        // No byte but the letter itself (either case) reads as that letter.
        for byte in 0..=255u8 {
            let mut b = *b"https";
            b[2] = byte;
            assert_eq!(is_https(&b), byte.eq_ignore_ascii_case(&b't'), "{byte}");
        }
    }

    #[test]
    fn domains_lose_case_ports_and_trailing_dots() {
        assert_eq!(
            domain(b" Img.Example.COM.:8080 ").unwrap().as_str(),
            "img.example.com"
        );
        assert!(domain(b"bad_domain.com").is_none());
        assert!(domain(b"\xff.com").is_none());
    }

    #[test]
    fn quotes_come_off() {
        assert_eq!(&*unquote(b"\"a\"\"b\""), b"a\"b");
        assert_eq!(&*unquote(b"\"a.com\""), b"a.com");
        assert_eq!(&*unquote(b"\"\""), b"");
        assert_eq!(&*unquote(b"plain"), b"plain");
    }

    proptest! {
        /// A short count is what the general read gives, where it gives one.
        #[test]
        fn short_counts_are_read_as_bytes_are(
            b in proptest::collection::vec(prop_oneof![
                8 => proptest::sample::select(b"0123456789".to_vec()),
                1 => proptest::sample::select(b" -+\t/:".to_vec()),
                1 => any::<u8>(),
            ], 0..12),
        ) {
            let short = short_count(&b);
            if short.is_some() || (1..=8).contains(&b.len()) && b.iter().all(u8::is_ascii_digit) {
                prop_assert_eq!(short, any_count(&b));
            }
            prop_assert_eq!(parse_bytes(&b), any_count(&b));
        }

        /// Digits read eight at a time are the digits read one by one, wherever the first
        /// byte that is no digit is and whatever it is.
        #[test]
        fn leading_digits_are_read_as_one_by_one(
            b in proptest::collection::vec(prop_oneof![
                8 => proptest::sample::select(b"0123456789".to_vec()),
                1 => any::<u8>(),
            ], 0..30),
        ) {
            let mut lead = 0;
            let mut n = 0u64;
            for &c in &b {
                if !c.is_ascii_digit() {
                    break;
                }
                n = n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                lead += 1;
            }
            prop_assert_eq!(leading_digits(&b), (lead, n));
            let checked = b.iter().try_fold(0u64, |acc, &c| {
                c.is_ascii_digit().then(|| acc.checked_mul(10)?.checked_add(u64::from(c - b'0')))?
            });
            let want = match trim(&b) {
                b"-" => Some(0),
                t if t.is_empty() || t.len() > 20 => None,
                _ => checked.filter(|&n| n <= MAX_LINE_BYTES_VALUE),
            };
            if trim(&b).len() == b.len() {
                prop_assert_eq!(parse_bytes(&b), want);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_field_parsers(b in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = TimeParser::default().minute(&b);
            let _ = parse_bytes(&b);
            let _ = domain(&b);
            let _ = unquote(&b);
        }

        /// One parser over many lines (the date it remembers changing or not): common-log
        /// times in any offset and Unix seconds with a fraction land where chrono puts them.
        #[test]
        fn common_log_and_unix_times_match_chrono_line_after_line(
            times in proptest::collection::vec((0i64..4_102_444_800, -14i32 * 60..=14 * 60), 1..20),
        ) {
            let mut p = TimeParser::default();
            for (secs, offset) in times {
                let tz = chrono::FixedOffset::east_opt(offset * 60).unwrap();
                let t = chrono::DateTime::from_timestamp(secs, 0).unwrap().with_timezone(&tz);
                let clf = t.format("%d/%b/%Y:%H:%M:%S %z").to_string();
                prop_assert_eq!(p.minute(clf.as_bytes()), Some(secs.div_euclid(60)), "{}", clf);
                let msec = format!("{secs}.123");
                prop_assert_eq!(p.minute(msec.as_bytes()), Some(secs.div_euclid(60)));
            }
        }

        /// One parser over many RFC 3339 and common-log times (seconds and fractions or
        /// not, zones, brackets, days of one digit), each often in the minute of the one
        /// before (that minute remembered) or with a byte changed: each reads as it does
        /// alone.
        #[test]
        fn times_read_line_after_line_as_alone(
            times in proptest::collection::vec((
                0i64..200,
                0usize..7,
                prop::option::of((0usize..28, prop_oneof![
                    any::<u8>(),
                    proptest::sample::select(b"0569:/ +-TZ[]".to_vec()),
                ])),
            ), 1..30),
        ) {
            let mut p = TimeParser::default();
            for (step, layout, change) in times {
                // Across a month's end in some zones, so days of one digit and two come.
                let secs = 1_575_158_340 + step * 7;
                let t = chrono::DateTime::from_timestamp(secs, 0).unwrap();
                let east = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
                let mut s = match layout {
                    0 => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                    1 => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    2 => t.with_timezone(&east).format("%Y-%m-%dT%H:%M:%S%:z").to_string(),
                    3 => t.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
                    4 => t.with_timezone(&east).format("[%d/%b/%Y:%H:%M:%S %z]").to_string(),
                    5 => t.with_timezone(&east).format("[%-d/%b/%Y:%H:%M:%S %z]").to_string(),
                    _ => t.format("%-d/%b/%Y:%H:%M:%S -0130").to_string(),
                }
                .into_bytes();
                if let Some(c) = change.and_then(|(at, byte)| Some((s.get_mut(at)?, byte))) {
                    *c.0 = c.1;
                }
                prop_assert_eq!(
                    p.minute(&s),
                    TimeParser::default().minute(&s),
                    "{}",
                    String::from_utf8_lossy(&s)
                );
            }
        }

        #[test]
        fn rfc3339_minutes_match_chrono(secs in 0i64..4_102_444_800, ms in 0u32..1000) {
            let t = chrono::DateTime::from_timestamp(secs, ms * 1_000_000).unwrap();
            let s = t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            prop_assert_eq!(min(&s), Some(secs.div_euclid(60)));
        }
    }
}
