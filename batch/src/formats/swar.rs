//! Byte searches eight bytes at a time in a plain `u64` (portable: x86-64 and the arm64 Lambda
//! alike). A log line's fields and strings are mostly shorter than what pays for memchr's
//! vector set-up, which it pays again on every call: measured, memchr per tab or quote was a
//! seventh to a fifth of the instructions of a CloudFront or Cloudflare run.

const ONES: u64 = 0x0101_0101_0101_0101;
const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The first up to eight bytes of `b` as a little-endian word, zero-padded.
#[inline]
pub fn word(b: &[u8]) -> u64 {
    match b.get(..8) {
        Some(w) => u64::from_le_bytes(w.try_into().unwrap_or([0; 8])),
        // Byte by byte: a copy of a length not known here would be a call to memcpy, and
        // short keys (`ts`, `host`) come on every line of JSON logs.
        None => b
            .iter()
            .enumerate()
            .fold(0, |w, (i, &c)| w | u64::from(c) << (8 * i)),
    }
}

/// The high bit of each byte of `w` that equals `c`, and of no other.
#[inline]
pub fn equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    !(((x & LOWS) + LOWS) | x | LOWS)
}

/// The high bit of the lowest byte of `w` equal to `c` (bytes above it may be marked too, so
/// only the lowest mark means anything); cheaper than [`equal`].
#[inline]
pub fn first_equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * u64::from(c));
    x.wrapping_sub(ONES) & !x & HIGHS
}

/// Where `c` first is in `b`.
#[inline]
pub fn find(b: &[u8], c: u8) -> Option<usize> {
    let mut base = 0;
    while let Some(w) = b.get(base..base + 8) {
        let m = first_equal(word(w), c);
        if m != 0 {
            return Some(base + (m.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    b[base..].iter().position(|&x| x == c).map(|i| base + i)
}

/// Whether `b` starts with `text`: for a text of up to eight bytes (what lies between a log's
/// fields) one masked word compare where `b` has eight bytes left, not a call to memcmp (a
/// twelfth of an nginx run's samples went to that call).
#[inline]
pub fn starts_with(b: &[u8], text: &[u8]) -> bool {
    let n = text.len();
    match b.get(..8) {
        Some(w) if n <= 8 => {
            let mask = if n == 8 {
                u64::MAX
            } else {
                (1u64 << (8 * n)) - 1
            };
            word(w) & mask == word(text)
        }
        _ => b.starts_with(text),
    }
}

/// Where `text` (not empty) first is in `b`: its first byte found by [`find`], the rest
/// compared. The texts between a log's fields are a byte or a few, too short to pay for the
/// searcher `memmem::find` builds on every call.
#[inline]
pub fn find_text(b: &[u8], text: &[u8]) -> Option<usize> {
    let (&first, rest) = text.split_first()?;
    let mut from = 0;
    loop {
        let at = from + find(&b[from..], first)?;
        if starts_with(&b[at + 1..], rest) {
            return Some(at);
        }
        from = at + 1;
    }
}

/// Where `sep` is in `line`, in order, found eight bytes at a time.
pub fn separators(line: &[u8], sep: u8) -> impl Iterator<Item = usize> + '_ {
    let words = line.chunks_exact(8);
    let tail = words.remainder();
    let tail_at = line.len() - tail.len();
    words
        .enumerate()
        .flat_map(move |(k, w)| {
            let mut m = equal(word(w), sep);
            std::iter::from_fn(move || {
                let at = (m != 0).then(|| k * 8 + (m.trailing_zeros() / 8) as usize);
                m &= m.wrapping_sub(1);
                at
            })
        })
        .chain(
            tail.iter()
                .enumerate()
                .filter(move |&(_, &b)| b == sep)
                .map(move |(i, _)| tail_at + i),
        )
}

/// The fields at positions `picks` (ascending, no repeats) of a line whose field separators
/// are at `separators` (ascending), into `out` in the same order, without looking past the
/// last one picked; `false` if the line has too few fields for it.
#[inline]
pub fn pick_fields<'a>(
    line: &'a [u8],
    separators: impl Iterator<Item = usize>,
    picks: &[usize],
    out: &mut [&'a [u8]],
) -> bool {
    let Some(&last) = picks.last() else {
        return true;
    };
    let (mut field, mut start, mut k) = (0usize, 0usize, 0usize);
    for at in separators {
        if field == picks[k] {
            out[k] = &line[start..at];
            if field == last {
                return true;
            }
            k += 1;
        }
        field += 1;
        start = at + 1;
    }
    // The last field runs to the end of the line.
    if field == last {
        out[k] = &line[start..];
        return true;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn short_words_are_zero_padded() {
        assert_eq!(word(b""), 0);
        assert_eq!(word(b"ab"), u64::from_le_bytes(*b"ab\0\0\0\0\0\0"));
        assert_eq!(word(b"abcdefghij"), u64::from_le_bytes(*b"abcdefgh"));
    }

    #[test]
    fn equal_marks_every_match_and_nothing_else() {
        let w = word(b"a\tb\t\t\x89\t\x09");
        let m = equal(w, b'\t');
        let at: Vec<u32> = (0..8).filter(|i| m >> (8 * i + 7) & 1 == 1).collect();
        assert_eq!(at, [1, 3, 4, 6, 7]);
        assert_eq!(first_equal(w, b'\t').trailing_zeros() / 8, 1);
    }

    proptest! {
        /// Bytes and texts are found where a plain search finds them.
        #[test]
        fn finds_agree_with_a_plain_search(
            b in prop::collection::vec(prop_oneof![Just(b' '), Just(b'"'), any::<u8>()], 0..70),
            text in prop::collection::vec(prop_oneof![Just(b' '), Just(b'"'), any::<u8>()], 1..12),
        ) {
            for i in 0..=b.len() {
                prop_assert_eq!(starts_with(&b[i..], &text), b[i..].starts_with(&text));
                prop_assert_eq!(starts_with(&b[i..], &text[1..]), b[i..].starts_with(&text[1..]));
            }
            prop_assert_eq!(find(&b, text[0]), b.iter().position(|&x| x == text[0]));
            prop_assert_eq!(find_text(&b, &text), b.windows(text.len()).position(|w| w == &text[..]));
        }

        /// The fields picked are those a plain split gives, wherever the separators fall.
        #[test]
        fn picked_fields_are_the_split_ones(
            line in prop::collection::vec(prop_oneof![Just(b'\t'), Just(b'x'), any::<u8>()], 0..90),
            picks in prop::collection::btree_set(0usize..40, 0..6),
        ) {
            let picks: Vec<usize> = picks.into_iter().collect();
            let split: Vec<&[u8]> = line.split(|&b| b == b'\t').collect();
            let mut out = vec![&b""[..]; picks.len()];
            let ok = pick_fields(&line, separators(&line, b'\t'), &picks, &mut out);
            let enough = picks.last().is_none_or(|&l| l < split.len());
            prop_assert_eq!(ok, enough);
            if ok {
                let expected: Vec<&[u8]> = picks.iter().map(|&p| split[p]).collect();
                prop_assert_eq!(out, expected);
            }
        }
    }
}
