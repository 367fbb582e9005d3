//! Splits CSV bytes into records and hands over the three wanted fields of each, without
//! allocating: the hot loop of the batch.
//!
//! Each 64-byte block becomes three bitmasks (commas, quotes, newlines), built with AVX2 where
//! the CPU has it (checked at run time), SSE2 on other x86_64 and SWAR arithmetic elsewhere,
//! and the set bits are walked in order. Quote parity decides whether a comma or newline is
//! inside a quoted field, which is exactly RFC 4180: a doubled quote inside a quoted field
//! flips the parity twice. Not for: the header row (see
//! [`crate::header`]) or field values (see [`crate::fields`]).

/// The positions of the fields the batch needs, from the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// Index of the `time` column.
    pub time: usize,
    /// Index of the `domain` column.
    pub domain: usize,
    /// Index of the `bytes` column.
    pub bytes: usize,
    /// Index of the optional `scheme` column.
    pub scheme: Option<usize>,
    /// Index of the optional `status` column (the origin's HTTP status).
    pub status: Option<usize>,
    /// Index of the optional `cache_status` column.
    pub cache: Option<usize>,
    /// How many fields every record must have.
    pub count: usize,
}

impl Columns {
    /// The highest column index read.
    fn last_wanted(&self) -> usize {
        [self.scheme, self.status, self.cache]
            .into_iter()
            .flatten()
            .fold(self.time.max(self.domain).max(self.bytes), usize::max)
    }
}

/// The fields of one record the batch reads, still quoted as written (see
/// [`crate::fields::unquote`]); the optional ones when the header has them.
#[derive(Debug, Clone, Copy)]
pub struct Fields<'a> {
    /// The time.
    pub time: &'a [u8],
    /// The domain.
    pub domain: &'a [u8],
    /// The origin bytes.
    pub bytes: &'a [u8],
    /// The scheme.
    pub scheme: Option<&'a [u8]>,
    /// The origin's status.
    pub status: Option<&'a [u8]>,
    /// The cache status.
    pub cache: Option<&'a [u8]>,
}

/// Receives records from [`scan`].
pub trait Sink {
    /// A record with the right field count. `line` is the 1-based physical line the record
    /// starts on, counted from the scanned buffer's first line.
    fn record(&mut self, fields: &Fields<'_>, line: u64, raw: &[u8]);
    /// A record with the wrong number of fields.
    fn bad_shape(&mut self, fields: usize, line: u64, raw: &[u8]);
    /// A record rejected whole that spans `lines` physical lines: one longer than the limit,
    /// or one whose quote never closes before the end of input. `raw` may be cut short.
    fn swallowed(&mut self, why: Swallowed, lines: u64, line: u64, raw: &[u8]);
}

/// Why a record was rejected whole, without looking at its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Swallowed {
    /// Longer than the record limit.
    TooLong,
    /// A quote opened and never closed: the record runs to the end of input.
    UnclosedQuote,
}

/// Where a scan stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Bytes consumed: everything before the first record not yet complete.
    pub consumed: usize,
    /// Physical lines consumed.
    pub lines: u64,
    /// At `eof`: the input ended inside a quoted field. A chunk cut from a larger file that
    /// ends so was cut inside a record, so its neighbours were not scanned from record starts.
    pub open_quote: bool,
}

const BLOCK: usize = 64;

/// Scans every complete record of `buf`; at `eof` the last record needs no newline. Blank lines
/// are skipped; a record longer than `max_record` bytes is rejected whole. `first_line` is the
/// line number of `buf[0]`.
pub fn scan(
    buf: &[u8],
    cols: &Columns,
    max_record: usize,
    eof: bool,
    first_line: u64,
    sink: &mut impl Sink,
) -> ScanEnd {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: this CPU has AVX2, checked just above.
        return unsafe { scan_avx2(buf, cols, max_record, eof, first_line, sink) };
    }
    scan_with::<false>(buf, cols, max_record, eof, first_line, sink)
}

/// [`scan`] compiled for AVX2, masks included: one instruction does 32 bytes where SSE2 does 16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn scan_avx2(
    buf: &[u8],
    cols: &Columns,
    max_record: usize,
    eof: bool,
    first_line: u64,
    sink: &mut impl Sink,
) -> ScanEnd {
    scan_with::<true>(buf, cols, max_record, eof, first_line, sink)
}

/// The scan, with AVX2 masks or the baseline ones. `AVX2` must be true only where the CPU has
/// AVX2 (only [`scan_avx2`] passes it).
#[inline(always)]
fn scan_with<const AVX2: bool>(
    buf: &[u8],
    cols: &Columns,
    max_record: usize,
    eof: bool,
    first_line: u64,
    sink: &mut impl Sink,
) -> ScanEnd {
    let want = cols.last_wanted();
    // Positions of the first `want + 1` separators of the current record.
    let mut seps = [0usize; 64];
    let fast = want < seps.len();
    let mut nseps = 0usize;
    let mut quoted = false;
    let mut rec_start = 0usize;
    let mut rec_line = first_line;
    let mut line = first_line;

    let mut emit =
        |start: usize, end: usize, nseps: usize, seps: &[usize], rec_line: u64, span: u64| {
            let end = if end > start && buf[end - 1] == b'\r' {
                end - 1
            } else {
                end
            };
            let raw = &buf[start..end];
            if raw.is_empty() {
                return;
            }
            if raw.len() > max_record {
                sink.swallowed(Swallowed::TooLong, span, rec_line, raw);
                return;
            }
            if nseps + 1 != cols.count {
                sink.bad_shape(nseps + 1, rec_line, raw);
                return;
            }
            let field = |k: usize| {
                let s = if k == 0 { start } else { seps[k - 1] + 1 };
                let e = if k < nseps { seps[k] } else { end };
                &buf[s..e.max(s)]
            };
            if fast {
                let f = Fields {
                    time: field(cols.time),
                    domain: field(cols.domain),
                    bytes: field(cols.bytes),
                    scheme: cols.scheme.map(field),
                    status: cols.status.map(field),
                    cache: cols.cache.map(field),
                };
                sink.record(&f, rec_line, raw);
            } else {
                let all = split_all(raw);
                if all.len() <= want {
                    sink.bad_shape(all.len(), rec_line, raw);
                    return;
                }
                let f = Fields {
                    time: all[cols.time],
                    domain: all[cols.domain],
                    bytes: all[cols.bytes],
                    scheme: cols.scheme.map(|i| all[i]),
                    status: cols.status.map(|i| all[i]),
                    cache: cols.cache.map(|i| all[i]),
                };
                sink.record(&f, rec_line, raw);
            }
        };

    let mut block_start = 0usize;
    while block_start < buf.len() {
        let (comma, quote, nl) = masks_at::<AVX2>(buf, block_start);
        let mut bits = comma | quote | nl;
        if quote == 0 && !quoted {
            // The common block: no quote in it and none open, so every bit is a separator or
            // the end of a record, told apart by one test.
            while bits != 0 {
                let i = bits.trailing_zeros();
                bits &= bits - 1;
                let p = block_start + i as usize;
                if nl >> i & 1 != 0 {
                    line += 1;
                    emit(rec_start, p, nseps, &seps, rec_line, line - rec_line);
                    rec_start = p + 1;
                    rec_line = line;
                    nseps = 0;
                } else {
                    if nseps < seps.len() {
                        seps[nseps] = p;
                    }
                    nseps += 1;
                }
            }
            block_start += BLOCK;
            continue;
        }
        while bits != 0 {
            let i = bits.trailing_zeros();
            bits &= bits - 1;
            let bit = 1u64 << i;
            let p = block_start + i as usize;
            if nl & bit != 0 {
                line += 1;
                if quoted {
                    continue;
                }
                emit(rec_start, p, nseps, &seps, rec_line, line - rec_line);
                rec_start = p + 1;
                rec_line = line;
                nseps = 0;
                quoted = false;
            } else if comma & bit != 0 {
                if !quoted {
                    if nseps < seps.len() {
                        seps[nseps] = p;
                    }
                    nseps += 1;
                }
            } else {
                quoted = !quoted;
            }
        }
        block_start += BLOCK;
    }
    if eof && rec_start < buf.len() {
        // A last line without its newline is a physical line too.
        let open_line = u64::from(buf.last() != Some(&b'\n'));
        let span = line - rec_line + open_line;
        if quoted {
            sink.swallowed(Swallowed::UnclosedQuote, span, rec_line, &buf[rec_start..]);
        } else {
            emit(rec_start, buf.len(), nseps, &seps, rec_line, span);
        }
        return ScanEnd {
            consumed: buf.len(),
            lines: line - first_line + open_line,
            open_quote: quoted,
        };
    }
    ScanEnd {
        consumed: rec_start,
        lines: rec_line - first_line,
        open_quote: false,
    }
}

/// Splits one record into all its fields (for headers and wide files), quotes left in place.
pub fn split_all(raw: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &c) in raw.iter().enumerate() {
        match c {
            b'"' => in_quotes = !in_quotes,
            b',' if !in_quotes => {
                out.push(&raw[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&raw[start..]);
    out
}

/// The three masks of the 64 bytes at `at`, zero past the end of `buf`; with AVX2 only where
/// the CPU has it (see [`scan_with`]).
#[inline(always)]
fn masks_at<const AVX2: bool>(buf: &[u8], at: usize) -> (u64, u64, u64) {
    let pick = |block: &[u8; BLOCK]| {
        #[cfg(target_arch = "x86_64")]
        if AVX2 {
            // SAFETY: AVX2 is true only inside `scan_avx2`, which runs where the CPU has AVX2.
            return unsafe { masks_avx2(block) };
        }
        masks(block)
    };
    match buf.get(at..at + BLOCK) {
        Some(block) => pick(block.try_into().unwrap_or(&[0; BLOCK])),
        None => {
            let mut pad = [0u8; BLOCK];
            let rest = &buf[at..];
            pad[..rest.len()].copy_from_slice(rest);
            pick(&pad)
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn masks_avx2(block: &[u8; BLOCK]) -> (u64, u64, u64) {
    let [c, q, n] = crate::formats::marks::equal_avx2(block, [b',', b'"', b'\n']);
    (c, q, n)
}

#[cfg(target_arch = "x86_64")]
fn masks(block: &[u8; BLOCK]) -> (u64, u64, u64) {
    // SAFETY: SSE2 is part of the x86_64 baseline, so every x86_64 CPU has it.
    unsafe { masks_sse2(block) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn masks_sse2(block: &[u8; BLOCK]) -> (u64, u64, u64) {
    use std::arch::x86_64::*;
    let (c, q, n) = (
        _mm_set1_epi8(b',' as i8),
        _mm_set1_epi8(b'"' as i8),
        _mm_set1_epi8(b'\n' as i8),
    );
    let (mut comma, mut quote, mut nl) = (0u64, 0u64, 0u64);
    for k in 0..4 {
        // SAFETY: `block` holds 64 bytes, so 16 bytes at 16*k are in bounds; loadu has no
        // alignment requirement.
        let v = unsafe { _mm_loadu_si128(block.as_ptr().add(16 * k) as *const __m128i) };
        let m = |x| u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, x)) as u16) << (16 * k);
        comma |= m(c);
        quote |= m(q);
        nl |= m(n);
    }
    (comma, quote, nl)
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; BLOCK]) -> (u64, u64, u64) {
    masks_swar(block)
}

/// The portable version: eight bytes at a time, exact per-byte equality in SWAR.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn masks_swar(block: &[u8; BLOCK]) -> (u64, u64, u64) {
    const LO7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    fn eq_mask(word: u64, byte: u8) -> u64 {
        let x = word ^ (0x0101_0101_0101_0101u64 * u64::from(byte));
        // High bit of each byte set where that byte of x is zero, with no borrow between bytes.
        let zero = !(((x & LO7) + LO7) | x | LO7);
        // Gather the eight high bits into the low byte.
        (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    }
    let (mut comma, mut quote, mut nl) = (0u64, 0u64, 0u64);
    for (k, chunk) in block.chunks_exact(8).enumerate() {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let word = u64::from_le_bytes(w);
        comma |= eq_mask(word, b',') << (8 * k);
        quote |= eq_mask(word, b'"') << (8 * k);
        nl |= eq_mask(word, b'\n') << (8 * k);
    }
    (comma, quote, nl)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Default, Debug, PartialEq)]
    struct Collect {
        good: Vec<(String, String, String, u64)>,
        bad: Vec<(usize, u64, String)>,
        swallowed: Vec<(Swallowed, u64, u64)>,
    }

    impl Sink for Collect {
        fn record(&mut self, f: &Fields<'_>, line: u64, _raw: &[u8]) {
            let s = |x: &[u8]| String::from_utf8_lossy(x).into_owned();
            self.good.push((s(f.time), s(f.domain), s(f.bytes), line));
        }
        fn bad_shape(&mut self, fields: usize, line: u64, raw: &[u8]) {
            self.bad
                .push((fields, line, String::from_utf8_lossy(raw).into_owned()));
        }
        fn swallowed(&mut self, why: Swallowed, lines: u64, line: u64, _raw: &[u8]) {
            self.swallowed.push((why, lines, line));
        }
    }

    const NO_LIMIT: usize = usize::MAX;

    const COLS: Columns = Columns {
        time: 0,
        domain: 1,
        bytes: 3,
        scheme: None,
        status: None,
        cache: None,
        count: 4,
    };

    fn run(input: &str, eof: bool) -> (Collect, ScanEnd) {
        let mut c = Collect::default();
        let end = scan(input.as_bytes(), &COLS, NO_LIMIT, eof, 2, &mut c);
        (c, end)
    }

    #[test]
    fn quoted_commas_crlf_and_blank_lines_are_fine() {
        let (c, end) = run(
            "t1,a.com,\"/x?a,b\",10\r\n\nt2,b.com,\"say \"\"hi,\"\"\",20\n",
            true,
        );
        assert_eq!(
            c.good,
            [
                ("t1".into(), "a.com".into(), "10".into(), 2),
                ("t2".into(), "b.com".into(), "20".into(), 4),
            ]
        );
        assert!(c.bad.is_empty());
        assert_eq!(end.lines, 3);
    }

    #[test]
    fn a_quoted_newline_stays_inside_its_record() {
        let (c, _) = run("t1,a.com,\"line\none\",10\nt2,b.com,x,20\n", true);
        assert_eq!(c.good.len(), 2);
        assert_eq!(c.good[1].3, 4, "the second record starts on line 4");
    }

    #[test]
    fn wrong_field_counts_are_reported_with_their_line() {
        let (c, _) = run("a,b,c\nt,d.com,x,1\nt,d.com,x,1,extra\n", true);
        assert_eq!(
            c.bad.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
            [(3, 2), (5, 4)]
        );
        assert_eq!(c.good.len(), 1);
    }

    #[test]
    fn without_eof_the_incomplete_tail_is_left_for_later() {
        let (c, end) = run("t1,a.com,x,1\nt2,b.co", false);
        assert_eq!(c.good.len(), 1);
        assert_eq!((end.consumed, end.lines), (13, 1));
        let (c, _) = run("t1,a.com,x,1\nt2,b.com,\"unclosed,2", true);
        assert_eq!(c.swallowed, [(Swallowed::UnclosedQuote, 1, 3)]);
    }

    #[test]
    fn an_unclosed_quote_swallows_every_line_to_the_end_and_says_how_many() {
        let (c, end) = run(
            "t1,a.com,x,1\nt2,\"b.com,x,2\nt3,c.com,x,3\nt4,d.com,x,4\n",
            true,
        );
        assert_eq!(c.good.len(), 1);
        assert_eq!(c.swallowed, [(Swallowed::UnclosedQuote, 3, 3)]);
        assert!(end.open_quote);
        assert_eq!(end.lines, 4);
    }

    #[test]
    fn a_record_longer_than_the_limit_is_rejected_whole_with_its_lines() {
        let input = "t1,a.com,x,1\nt2,b.com,\"long\nquoted\",2\nt3,c.com,x,3\n";
        let mut c = Collect::default();
        scan(input.as_bytes(), &COLS, 16, true, 1, &mut c);
        assert_eq!(c.good.len(), 2);
        assert_eq!(c.swallowed, [(Swallowed::TooLong, 2, 2)]);
        assert_eq!(c.good[1].3, 4);
    }

    #[test]
    fn a_wanted_column_past_the_sixty_fourth_is_found_too() {
        let cols = Columns {
            time: 0,
            domain: 1,
            bytes: 66,
            scheme: None,
            status: None,
            cache: None,
            count: 70,
        };
        let mut fields: Vec<String> = (0..70).map(|i| format!("f{i}")).collect();
        fields[66] = "\"1,2\"".into();
        let line = format!("{}\n{}\n", fields.join(","), fields[..69].join(","));
        let mut c = Collect::default();
        scan(line.as_bytes(), &cols, NO_LIMIT, true, 1, &mut c);
        assert_eq!(c.good, [("f0".into(), "f1".into(), "\"1,2\"".into(), 1)]);
        assert_eq!(
            c.bad.iter().map(|b| (b.0, b.1)).collect::<Vec<_>>(),
            [(69, 2)]
        );
    }

    fn reference(input: &[u8], max_record: usize) -> Collect {
        // Record by record with the simple splitter, as a second opinion.
        let mut c = Collect::default();
        let mut line = 2u64;
        let mut start = 0;
        let mut in_q = false;
        let mut rec_line = line;
        let flush = |raw: &[u8], rec_line: u64, c: &mut Collect| {
            let span = raw.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.is_empty() {
                return;
            }
            if raw.len() > max_record {
                c.swallowed.push((Swallowed::TooLong, span, rec_line));
                return;
            }
            let f = split_all(raw);
            if f.len() != 4 {
                c.bad
                    .push((f.len(), rec_line, String::from_utf8_lossy(raw).into_owned()));
            } else {
                let s = |x: &[u8]| String::from_utf8_lossy(x).into_owned();
                c.good.push((s(f[0]), s(f[1]), s(f[3]), rec_line));
            }
        };
        for (i, &b) in input.iter().enumerate() {
            if b == b'"' {
                in_q = !in_q;
            }
            if b == b'\n' {
                line += 1;
                if !in_q {
                    flush(&input[start..i], rec_line, &mut c);
                    start = i + 1;
                    rec_line = line;
                }
            }
        }
        if start < input.len() {
            if in_q {
                let tail = &input[start..];
                let span = tail.iter().filter(|&&b| b == b'\n').count() as u64
                    + u64::from(!tail.ends_with(b"\n"));
                c.swallowed.push((Swallowed::UnclosedQuote, span, rec_line));
            } else {
                flush(&input[start..], rec_line, &mut c);
            }
        }
        c
    }

    proptest! {
        #[test]
        fn the_block_scanner_agrees_with_a_byte_at_a_time_reference(
            input in proptest::collection::vec(prop_oneof![
                8 => proptest::sample::select(b"ab1.,\n\r\"x".to_vec()),
                1 => any::<u8>(),
            ], 0..400),
            max_record in prop_oneof![Just(NO_LIMIT), 1usize..40],
        ) {
            let mut c = Collect::default();
            scan(&input, &COLS, max_record, true, 2, &mut c);
            prop_assert_eq!(&c, &reference(&input, max_record));
            // The baseline masks too: `scan` takes the AVX2 ones where the CPU has them.
            let mut baseline = Collect::default();
            scan_with::<false>(&input, &COLS, max_record, true, 2, &mut baseline);
            prop_assert_eq!(baseline, c);
        }

        #[test]
        fn swar_and_simd_masks_agree(block in proptest::collection::vec(any::<u8>(), 64)) {
            let b: [u8; 64] = block.try_into().unwrap();
            prop_assert_eq!(masks(&b), masks_swar(&b));
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: this CPU has AVX2, checked just above.
                prop_assert_eq!(unsafe { masks_avx2(&b) }, masks_swar(&b));
            }
        }
    }
}
