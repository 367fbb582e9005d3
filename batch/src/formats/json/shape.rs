//! The shape of the last JSON line read in full: the text between its values (braces, keys,
//! colons, commas and blanks, as written) and which wanted key each value belongs to.
//!
//! A log writer puts the same keys in the same order on every line (a Logpush job's field
//! list, a logger's struct), so the next line is tried against that shape first: each text is
//! compared as whole words and each value read where the text ends. That replaces, for every
//! member, the search for its key's end, the blanks, colon and comma checked one byte at a
//! time and the key's lookup among the wanted ones. A line whose text differs anywhere is
//! read member by member as before, and its shape is kept for the lines after it.
//!
//! A line that fits is as valid as the line the shape was taken from: its texts are the same
//! bytes, and its values are read by the same [`value`] the full reading uses.

use super::{Ends, Raw, value};
use crate::formats::swar::word;

/// Where a member's value lies in a line read in full, and which wanted key it is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Span {
    /// The value's first byte.
    pub start: usize,
    /// Past its last byte.
    pub end: usize,
    /// The index of its key among the wanted ones, or [`NOT_WANTED`].
    pub want: usize,
}

/// [`Span::want`] of a member no one reads.
pub(super) const NOT_WANTED: usize = usize::MAX;

/// One text of a shape and the value after it.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// The text's first word in [`Shape::words`].
    word: usize,
    /// Its length in bytes.
    len: usize,
    /// The wanted key the value after it is, or [`NOT_WANTED`].
    want: usize,
    /// A text of up to 32 bytes as four words zero-padded, and the bytes of each that are
    /// the text's: compared in one go where the line has 32 bytes to spare, without the
    /// loop's branches and bounds checks per word (all the texts of a Logpush line but its
    /// last are this short).
    short: Option<([u64; 4], [u64; 4])>,
}

/// [`Step::short`] of `text`.
fn short(text: &[u8]) -> Option<([u64; 4], [u64; 4])> {
    if text.len() > 32 {
        return None;
    }
    let mut padded = [0u8; 32];
    padded[..text.len()].copy_from_slice(text);
    let mut live = [0u8; 32];
    live[..text.len()].fill(0xFF);
    let words = |b: &[u8; 32]| std::array::from_fn(|k| word(&b[8 * k..]));
    Some((words(&padded), words(&live)))
}

/// The texts of a line, as little-endian words, and the values between them.
#[derive(Debug, Default)]
pub(super) struct Shape {
    /// Every text's [`text_words`], back to back, each text's from a word of its own.
    words: Vec<u64>,
    /// Each text with the value after it, in line order.
    steps: Vec<Step>,
    /// The text after the last value (the closing brace, and any blanks after it).
    tail: Vec<u8>,
    /// Whether a shape has been taken: before the first line there is none to try.
    known: bool,
}

/// A text's words: one for each eight bytes from its start, the last taken from its last
/// eight bytes (overlapping the one before); a text shorter than eight bytes is one word,
/// zero-padded.
fn text_words(text: &[u8]) -> impl Iterator<Item = u64> + '_ {
    let n = text.len();
    let full = n.saturating_sub(1) / 8;
    (0..full)
        .map(move |k| word(&text[8 * k..]))
        .chain(std::iter::once(word(&text[n.saturating_sub(8)..])))
}

/// Whether `line` holds the text of `len` bytes whose [`text_words`] start `words` at `at`.
/// Each word is loaded whole and compared, a short text's masked to its length where the line
/// has the bytes to spare: no call to compare bytes of a length only known at run time.
#[inline(always)]
fn fits(line: &[u8], at: usize, words: &[u64], len: usize) -> bool {
    let Some(text) = line.get(at..at + len) else {
        return false;
    };
    if len < 8 {
        let got = match line.get(at..at + 8) {
            Some(w) => word(w) & ((1u64 << (8 * len)) - 1),
            None => word(text),
        };
        return Some(&got) == words.first();
    }
    let last = (len - 1) / 8;
    let Some(words) = words.get(..=last) else {
        return false;
    };
    words[..last]
        .iter()
        .enumerate()
        .all(|(k, w)| word(&text[8 * k..]) == *w)
        && word(&text[len - 8..]) == words[last]
}

impl Shape {
    /// Reads `line` by this shape into `out` (indexed by wanted key); `false` if it does not
    /// fit, with `out` then partly written.
    #[inline]
    pub fn read<'a>(&self, line: &'a [u8], ends: &impl Ends, out: &mut [Option<Raw<'a>>]) -> bool {
        if !self.known {
            return false;
        }
        let mut at = 0;
        for s in &self.steps {
            let fit = match (s.short, line.get(at..at + 32)) {
                (Some((text, live)), Some(got)) => {
                    (0..4).fold(0, |d, k| d | ((word(&got[8 * k..]) ^ text[k]) & live[k])) == 0
                }
                _ => fits(line, at, &self.words[s.word..], s.len),
            };
            if !fit {
                return false;
            }
            let Some((v, end)) = value(line, at + s.len, ends) else {
                return false;
            };
            if let Some(o) = out.get_mut(s.want) {
                *o = Some(v);
            }
            at = end;
        }
        let n = self.tail.len();
        if line.len() - at != n {
            return false;
        }
        // The tail is a closing brace or a few bytes: its bytes compared as the top of the
        // line's last word, not by a call to memcmp (1.4% of a Cloudflare run).
        match line.len().checked_sub(8) {
            Some(last) if (1..=8).contains(&n) => {
                word(&line[last..]) >> (64 - 8 * n) == word(&self.tail)
            }
            _ => line[at..] == self.tail[..],
        }
    }

    /// Takes the shape of `line`, read in full into `spans` (its members' values in order).
    pub fn learn(&mut self, line: &[u8], spans: &[Span]) {
        self.words.clear();
        self.steps.clear();
        let mut at = 0;
        for s in spans {
            let text = &line[at..s.start];
            self.steps.push(Step {
                word: self.words.len(),
                len: text.len(),
                want: s.want,
                short: short(text),
            });
            self.words.extend(text_words(text));
            at = s.end;
        }
        self.tail.clear();
        self.tail.extend_from_slice(&line[at..]);
        self.known = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A line fits the shape learnt from it, and not once any byte of its texts (of any
        /// length, short ones compared in one go or word by word) is changed.
        #[test]
        fn a_line_with_a_text_byte_changed_does_not_fit(
            texts in prop::collection::vec(
                prop::collection::vec(prop::sample::select(b"ab\"{},: ".to_vec()), 1..45),
                1..5,
            ),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (mut line, mut spans, mut text_bytes) = (Vec::new(), Vec::new(), Vec::new());
            for t in &texts {
                text_bytes.extend(line.len()..line.len() + t.len());
                line.extend_from_slice(t);
                spans.push(Span { start: line.len(), end: line.len() + 1, want: NOT_WANTED });
                line.push(b'7');
            }
            text_bytes.push(line.len());
            line.push(b'}');
            let mut shape = Shape::default();
            shape.learn(&line, &spans);
            prop_assert!(shape.read(&line, &super::super::Search, &mut []));
            let j = text_bytes[at.index(text_bytes.len())];
            line[j] ^= flip;
            prop_assert!(!shape.read(&line, &super::super::Search, &mut []));
        }

        /// A text fits where the bytes equal it, and nowhere else, wherever the line ends.
        #[test]
        fn a_text_fits_where_its_bytes_are(
            line in prop::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), any::<u8>()], 0..40),
            at in 0usize..44,
            len in 0usize..30,
            flip in any::<Option<prop::sample::Index>>(),
        ) {
            let mut text: Vec<u8> = line.iter().copied().skip(at).take(len).collect();
            text.resize(len, b'a');
            if let (Some(i), false) = (flip, text.is_empty()) {
                let i = i.index(text.len());
                text[i] ^= 1;
            }
            let words: Vec<u64> = text_words(&text).collect();
            let expected = line.get(at..at + len) == Some(&text[..]);
            prop_assert_eq!(fits(&line, at, &words, len), expected);
        }
    }
}
