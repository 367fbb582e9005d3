//! Where a byte is in a line, one bit per byte, 64 bytes to a word, built 32 bytes an
//! instruction with AVX2. A reader then finds each next quote or tab of the line with a shift
//! and a trailing-zero count instead of a search per field or string, whose set-up and
//! mispredicted exits cost more than the search itself on fields of a few to a few dozen bytes.
//!
//! Only where the CPU has AVX2 (a [`Marker`] exists only there); elsewhere the readers search
//! eight bytes at a time ([`super::swar`]), as they do for lines the marks cannot serve.
//! Where it has AVX-512BW too, lines are marked 64 bytes an instruction (10M lines, one
//! thread, read phase: Alibaba 0.95, nginx 0.99).

/// Proof that the CPU has AVX2: [`Marker::new`] gives one only there.
#[derive(Debug, Clone, Copy)]
pub struct Marker {
    /// The CPU has AVX-512BW too: a line is marked 64 bytes an instruction.
    wide: bool,
}

/// Lines up to this many 64-byte blocks are marked into fixed arrays ([`LineMarks`]);
/// longer ones are left to the caller. Unit tests hold two, so that their lines of a few
/// hundred bytes take both ways.
pub const LINE_BLOCKS: usize = if cfg!(test) { 2 } else { 64 };

/// One line's marks, a fixed array per byte: written in place, where a push onto a vector
/// per byte and block checked its room and stored its length each time.
#[derive(Debug, Clone)]
pub struct LineMarks<const N: usize> {
    words: [[u64; LINE_BLOCKS]; N],
    len: usize,
}

impl<const N: usize> Default for LineMarks<N> {
    fn default() -> Self {
        LineMarks {
            words: [[0; LINE_BLOCKS]; N],
            len: 0,
        }
    }
}

impl<const N: usize> LineMarks<N> {
    /// The marks of each byte, as [`Marker::mark_each`] gives them.
    #[inline]
    pub fn each(&self) -> [&[u64]; N] {
        std::array::from_fn(|i| &self.words[i][..self.len])
    }

    /// Takes byte `at`'s marks off (a CR before the newline is no part of the line).
    #[inline]
    pub fn unmark(&mut self, at: usize) {
        let (word, bit) = (at / 64, at % 64);
        if word < self.len {
            for w in &mut self.words {
                w[word] &= !(1u64 << bit);
            }
        }
    }
}

/// Where [`Marker::mark_line`] found the line's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineEnd {
    /// At this newline.
    Newline(usize),
    /// The buffer ends first; its bytes are all marked.
    Open,
    /// Past [`LINE_BLOCKS`] blocks: nothing is marked.
    Long,
}

impl Marker {
    /// A marker where this CPU has AVX2, `None` elsewhere.
    pub fn new() -> Option<Marker> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            return Some(Marker {
                wide: std::arch::is_x86_feature_detected!("avx512bw"),
            });
        }
        None
    }

    /// This marker, marking lines with AVX2 alone (for tests of that way on a CPU that has
    /// AVX-512BW).
    #[cfg(test)]
    fn narrow(self) -> Marker {
        Marker { wide: false }
    }

    /// Fills `out` with where `mark` is in `line` (bit `i % 64` of word `i / 64` for byte
    /// `i`; no bit past the line's end) and says whether `other` is anywhere in it.
    #[inline]
    pub fn mark(self, line: &[u8], mark: u8, other: u8, out: &mut Vec<u64>) -> bool {
        out.clear();
        let mut seen = 0;
        self.blocks(line, [mark, other], |[a, b]| {
            out.push(a);
            seen |= b;
        });
        seen != 0
    }

    /// Fills `out` with where `mark` is in `line`, as [`Marker::mark`] does.
    #[inline]
    pub fn mark_one(self, line: &[u8], mark: u8, out: &mut Vec<u64>) {
        out.clear();
        self.blocks(line, [mark], |[m]| out.push(m));
    }

    /// Fills each of `out` with where the byte of `bytes` at its place is in `line`, as
    /// [`Marker::mark`] does: one pass for several bytes, each looked up on its own.
    #[inline]
    pub fn mark_each<const N: usize>(self, line: &[u8], bytes: [u8; N], out: &mut [Vec<u64>; N]) {
        for o in out.iter_mut() {
            o.clear();
        }
        self.blocks(line, bytes, |m| {
            for (o, m) in out.iter_mut().zip(m) {
                o.push(m);
            }
        });
    }

    /// Marks the line that starts `buf`, up to its first newline (or all of `buf` without
    /// one), into `out` as [`Marker::mark_each`] marks a line, and says where that newline is.
    /// One pass finds the line's end and marks it, where a search for the newline first read
    /// each line twice (10M lines, one thread: Alibaba 0.95 of the read phase, nginx 0.96).
    #[inline]
    pub fn mark_line<const N: usize>(
        self,
        buf: &[u8],
        bytes: [u8; N],
        out: &mut LineMarks<N>,
    ) -> LineEnd {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: a `Marker` exists only where the CPU has AVX2, and is `wide` only where
            // it has AVX-512BW (`Marker::new`).
            unsafe {
                if self.wide {
                    mark_line_avx512(buf, bytes, out)
                } else {
                    mark_line_avx2(buf, bytes, out)
                }
            }
        }
        // No `Marker` is made here.
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (buf, bytes, out);
            LineEnd::Long
        }
    }

    /// Gives `each` the masks of `bytes` for every 64 bytes of `line` in order, the last
    /// block's cut at the line's end.
    #[inline]
    fn blocks<const N: usize>(self, line: &[u8], bytes: [u8; N], each: impl FnMut([u64; N])) {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: as in `mark_line`.
            unsafe {
                if self.wide {
                    blocks_avx512(line, bytes, each)
                } else {
                    blocks_avx2(line, bytes, each)
                }
            }
        }
        // No `Marker` is made here.
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (line, bytes, each);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn blocks_avx2<const N: usize>(line: &[u8], bytes: [u8; N], each: impl FnMut([u64; N])) {
    blocks_by(line, bytes, each, |b, x| equal_avx2(b, x))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
fn blocks_avx512<const N: usize>(line: &[u8], bytes: [u8; N], each: impl FnMut([u64; N])) {
    blocks_by(line, bytes, each, |b, x| equal_avx512(b, x))
}

/// [`Marker::blocks`] with `equal`, which gives a block's marks.
#[inline(always)]
fn blocks_by<const N: usize>(
    line: &[u8],
    bytes: [u8; N],
    mut each: impl FnMut([u64; N]),
    equal: impl Fn(&[u8; 64], [u8; N]) -> [u64; N],
) {
    let mut blocks = line.chunks_exact(64);
    for block in &mut blocks {
        each(equal(block.try_into().unwrap_or(&[0; 64]), bytes));
    }
    let rest = blocks.remainder();
    if !rest.is_empty() && line.len() >= 64 {
        // The last 64 bytes of the line, its tail's bits shifted down into place: a copy
        // into a pad instead is written by memcpy in pieces and read back whole, and the
        // read stalls on those stores (over a third of this function's time on nginx lines).
        let shift = 64 - rest.len();
        let last = line.len() - 64;
        each(equal(line[last..].try_into().unwrap_or(&[0; 64]), bytes).map(|m| m >> shift));
    } else if !rest.is_empty() {
        let mut pad = [0u8; 64];
        pad[..rest.len()].copy_from_slice(rest);
        // The padding's bits are not the line's (whatever bytes are asked for).
        let live = (1u64 << rest.len()) - 1;
        each(equal(&pad, bytes).map(|m| m & live));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn mark_line_avx2<const N: usize>(buf: &[u8], bytes: [u8; N], out: &mut LineMarks<N>) -> LineEnd {
    mark_line_by(buf, bytes, out, |b, x| equal_and_newlines_avx2(b, x))
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
fn mark_line_avx512<const N: usize>(buf: &[u8], bytes: [u8; N], out: &mut LineMarks<N>) -> LineEnd {
    mark_line_by(buf, bytes, out, |b, x| equal_and_newlines_avx512(b, x))
}

/// [`Marker::mark_line`] with `equal`, which gives a block's marks and newlines.
#[inline(always)]
fn mark_line_by<const N: usize>(
    buf: &[u8],
    bytes: [u8; N],
    out: &mut LineMarks<N>,
    equal: impl Fn(&[u8; 64], [u8; N]) -> ([u64; N], u64),
) -> LineEnd {
    // Keeps a block's masks, cut before its newline if it has one; gives that newline.
    #[inline(always)]
    fn keep<const N: usize>(
        out: &mut LineMarks<N>,
        k: usize,
        (masks, newlines): ([u64; N], u64),
    ) -> LineEnd {
        let live = if newlines == 0 {
            u64::MAX
        } else {
            (1u64 << newlines.trailing_zeros()) - 1
        };
        for (o, m) in out.words.iter_mut().zip(masks) {
            o[k] = m & live;
        }
        out.len = k + 1;
        match newlines {
            0 => LineEnd::Open,
            n => LineEnd::Newline(k * 64 + n.trailing_zeros() as usize),
        }
    }
    out.len = 0;
    for k in 0..LINE_BLOCKS {
        let at = k * 64;
        if let Some(block) = buf.get(at..at + 64) {
            let block: &[u8; 64] = block.try_into().unwrap_or(&[0; 64]);
            match keep(out, k, equal(block, bytes)) {
                LineEnd::Open => continue,
                end => return end,
            }
        }
        let rest = buf.len() - at;
        if rest == 0 {
            return LineEnd::Open;
        }
        let shift = 64 - rest;
        let tail = if buf.len() >= 64 {
            // The last 64 bytes, shifted down into place (as in `blocks_avx2`).
            let last: &[u8; 64] = buf[buf.len() - 64..].try_into().unwrap_or(&[0; 64]);
            let (m, n) = equal(last, bytes);
            (m.map(|m| m >> shift), n >> shift)
        } else {
            let mut pad = [0u8; 64];
            pad[..rest].copy_from_slice(&buf[at..]);
            let (m, n) = equal(&pad, bytes);
            let live = (1u64 << rest) - 1;
            (m.map(|m| m & live), n & live)
        };
        return keep(out, k, tail);
    }
    LineEnd::Long
}

/// [`equal_avx2`] with AVX-512BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
fn equal_avx512<const N: usize>(block: &[u8; 64], bytes: [u8; N]) -> [u64; N] {
    use std::arch::x86_64::*;
    // SAFETY: `block` holds 64 bytes; loadu has no alignment requirement.
    let all = unsafe { _mm512_loadu_si512(block.as_ptr() as *const __m512i) };
    bytes.map(|b| _mm512_cmpeq_epi8_mask(all, _mm512_set1_epi8(b as i8)))
}

/// [`equal_and_newlines_avx2`] with AVX-512BW: a compare of all 64 bytes gives each mask.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512bw")]
#[inline]
fn equal_and_newlines_avx512<const N: usize>(block: &[u8; 64], bytes: [u8; N]) -> ([u64; N], u64) {
    use std::arch::x86_64::*;
    // SAFETY: `block` holds 64 bytes; loadu has no alignment requirement.
    let all = unsafe { _mm512_loadu_si512(block.as_ptr() as *const __m512i) };
    let equal = |b: u8| _mm512_cmpeq_epi8_mask(all, _mm512_set1_epi8(b as i8));
    (bytes.map(equal), equal(b'\n'))
}

/// [`equal_avx2`] and where the block's newlines are, from one load of it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
fn equal_and_newlines_avx2<const N: usize>(block: &[u8; 64], bytes: [u8; N]) -> ([u64; N], u64) {
    use std::arch::x86_64::*;
    // SAFETY: as in `equal_avx2`.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr() as *const __m256i),
            _mm256_loadu_si256(block.as_ptr().add(32) as *const __m256i),
        )
    };
    let equal = |b: u8| {
        let x = _mm256_set1_epi8(b as i8);
        let l = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, x)) as u32;
        let h = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, x)) as u32;
        u64::from(l) | u64::from(h) << 32
    };
    (bytes.map(equal), equal(b'\n'))
}

/// For each of `bytes`, which of the 64 bytes of `block` equal it, one bit each (bit `i` for
/// byte `i`).
///
/// # Safety
/// Only where the CPU has AVX2: called from functions compiled for AVX2 (which may only run
/// there), it needs no `unsafe`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
pub fn equal_avx2<const N: usize>(block: &[u8; 64], bytes: [u8; N]) -> [u64; N] {
    use std::arch::x86_64::*;
    // SAFETY: `block` holds 64 bytes, so 32 at 0 and 32 at 32 are in bounds; loadu has no
    // alignment requirement.
    let (lo, hi) = unsafe {
        (
            _mm256_loadu_si256(block.as_ptr() as *const __m256i),
            _mm256_loadu_si256(block.as_ptr().add(32) as *const __m256i),
        )
    };
    bytes.map(|b| {
        let x = _mm256_set1_epi8(b as i8);
        let l = _mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, x)) as u32;
        let h = _mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, x)) as u32;
        u64::from(l) | u64::from(h) << 32
    })
}

/// The first marked byte at or after `from`.
#[inline]
pub fn next(marks: &[u64], from: usize) -> Option<usize> {
    let mut k = from / 64;
    let mut w = *marks.get(k)? & (u64::MAX << (from % 64));
    while w == 0 {
        k += 1;
        w = *marks.get(k)?;
    }
    Some(k * 64 + w.trailing_zeros() as usize)
}

/// A reader's place in one byte's marks: the word of the place it gave last, that place's
/// bit the lowest. The search from the byte after that place is then the next bit of a word
/// in a register: the places of a run of tokens ended by the same byte come one after another
/// without each waiting on a word loaded again, shifted, then counted from the place before.
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'m> {
    marks: &'m [u64],
    word: usize,
    bits: u64,
    last: usize,
}

impl<'m> Cursor<'m> {
    /// A cursor at the start of `marks`.
    #[inline(always)]
    pub fn new(marks: &'m [u64]) -> Cursor<'m> {
        Cursor {
            marks,
            word: 0,
            bits: 0,
            // No place follows this one.
            last: usize::MAX - 1,
        }
    }

    /// The first marked byte at or after `from`, as [`next`] finds it.
    #[inline(always)]
    pub fn next(&mut self, from: usize) -> Option<usize> {
        let (mut k, mut w) = if from == self.last.wrapping_add(1) {
            (self.word, self.bits & self.bits.wrapping_sub(1))
        } else {
            let k = from / 64;
            (k, *self.marks.get(k)? & (u64::MAX << (from % 64)))
        };
        while w == 0 {
            k += 1;
            w = *self.marks.get(k)?;
        }
        self.word = k;
        self.bits = w;
        self.last = k * 64 + w.trailing_zeros() as usize;
        Some(self.last)
    }
}

/// Every marked byte, in order.
#[inline]
pub fn all(marks: &[u64]) -> impl Iterator<Item = usize> + '_ {
    marks.iter().enumerate().flat_map(|(k, &w)| {
        let mut m = w;
        std::iter::from_fn(move || {
            let at = (m != 0).then(|| k * 64 + m.trailing_zeros() as usize);
            m &= m.wrapping_sub(1);
            at
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The marks are where the byte is, the other byte is found anywhere, and every next
        /// mark is the next one a plain search finds.
        #[test]
        fn marks_are_where_the_bytes_are(
            line in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0u8), Just(b'\n'), any::<u8>()], 0..300),
            mark in prop_oneof![Just(b'"'), Just(0u8), any::<u8>()],
            other in prop_oneof![Just(b'\\'), Just(0u8), any::<u8>()],
            steps in prop::collection::vec((any::<bool>(), 0usize..310), 0..40),
        ) {
            let Some(marker) = Marker::new() else { return Ok(()) };
            let mut out = vec![7];
            let seen = marker.mark(&line, mark, other, &mut out);
            prop_assert_eq!(seen, line.contains(&other));
            prop_assert_eq!(out.len(), line.len().div_ceil(64));
            let every: Vec<usize> = (0..line.len()).filter(|&i| line[i] == mark).collect();
            prop_assert_eq!(all(&out).collect::<Vec<_>>(), every.clone());
            for from in 0..=line.len() + 70 {
                let plain = line.get(from..).and_then(|r| r.iter().position(|&b| b == mark)).map(|p| from + p);
                prop_assert_eq!(next(&out, from), plain);
            }
            // A cursor asked from places in turn, each the place after the last it gave or
            // any other, finds what a search from each finds.
            let mut cursor = Cursor::new(&out);
            for &(after, from) in &steps {
                let from = match (after, cursor.last) {
                    (true, last) if last < line.len() => last + 1,
                    _ => from,
                };
                prop_assert_eq!(cursor.next(from), next(&out, from));
            }
            marker.mark_one(&line, mark, &mut out);
            prop_assert_eq!(all(&out).collect::<Vec<_>>(), every);
            // A line cut at its first newline is marked as the line on its own is.
            let mut line_marks = LineMarks::<2>::default();
            let end = marker.mark_line(&line, [mark, other], &mut line_marks);
            let first = line.iter().position(|&b| b == b'\n');
            prop_assert_eq!(end, first.map_or(LineEnd::Open, LineEnd::Newline));
            let cut = &line[..first.unwrap_or(line.len())];
            let mut alone: [Vec<u64>; 2] = Default::default();
            marker.mark_each(cut, [mark, other], &mut alone);
            for (a, b) in line_marks.each().iter().zip(&alone) {
                prop_assert_eq!(all(a).collect::<Vec<_>>(), all(b).collect::<Vec<_>>());
            }
            // With AVX2 alone (where the CPU has AVX-512BW, the marks above were its).
            let mut narrow = LineMarks::<2>::default();
            prop_assert_eq!(marker.narrow().mark_line(&line, [mark, other], &mut narrow), end);
            prop_assert_eq!(narrow.each(), line_marks.each());
            // A line of more blocks than are held is left unmarked, whole or cut.
            let long: Vec<u8> = line.iter().copied().filter(|&b| b != b'\n').cycle().take(LINE_BLOCKS * 64 + 1).collect();
            if long.len() > LINE_BLOCKS * 64 {
                prop_assert_eq!(marker.mark_line(&long, [mark, other], &mut line_marks), LineEnd::Long);
                let mut cut = long.clone();
                cut[LINE_BLOCKS * 64 - 1] = b'\n';
                prop_assert_eq!(marker.mark_line(&cut, [mark, other], &mut line_marks), LineEnd::Newline(LINE_BLOCKS * 64 - 1));
            }
            let mut each: [Vec<u64>; 3] = Default::default();
            marker.mark_each(&line, [mark, other, b' '], &mut each);
            for (b, marks) in [mark, other, b' '].into_iter().zip(&each) {
                let at: Vec<usize> = (0..line.len()).filter(|&i| line[i] == b).collect();
                prop_assert_eq!(all(marks).collect::<Vec<_>>(), at);
            }
            let mut narrow_each: [Vec<u64>; 3] = Default::default();
            marker.narrow().mark_each(&line, [mark, other, b' '], &mut narrow_each);
            prop_assert_eq!(narrow_each, each);
        }
    }
}
