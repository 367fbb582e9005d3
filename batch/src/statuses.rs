//! Requests per (hour block, minute, origin status code): what the status-code actions sum.
//!
//! A block that sees a status gets room for its first [`INLINE`] codes, each a row of 16-bit
//! counts per minute: a line costs a compare against a few codes and an add, and two blocks
//! merge row by row. Codes past those, and counts past 16 bits, go to a small spill list per
//! block (rare: origins answer with few codes, and 65,535 fetches of one code in one minute of
//! one domain is a very large site).

use rustc_hash::FxHashMap;

/// Minutes per block (as the aggregator's).
pub const BLOCK_MINUTES: usize = 60;
/// Codes held inline per block.
const INLINE: usize = 6;
/// A count at this value is in the spill list.
const SPILLED: u16 = u16::MAX;
const NONE: u32 = u32::MAX;

/// Where `code` is first among `codes` (0: the first free place), all compared at once as 16-bit lanes of one
/// number: which of a block's rows a line's code has changes from line to line, and a search
/// that stops at it mispredicted its exit on most such lines.
#[inline]
fn find_code(codes: &[u16; INLINE], code: u16) -> Option<usize> {
    const ONES: u128 = 0x0001_0001_0001_0001_0001_0001_0001_0001;
    const HIGHS: u128 = ONES << 15;
    let packed = codes
        .iter()
        .enumerate()
        .fold(0u128, |p, (i, &c)| p | u128::from(c) << (16 * i));
    let x = packed ^ (ONES * u128::from(code));
    // The lowest lane of `x` that is zero has its high bit set here, and no lane below it;
    // the lanes past the codes are left out (they hold 0, like a free place).
    let zero = x.wrapping_sub(ONES) & !x & HIGHS & ((1 << (16 * INLINE)) - 1);
    (zero != 0).then(|| (zero.trailing_zeros() / 16) as usize)
}

#[derive(Debug, Clone)]
struct Inline {
    /// Status codes; 0 is a free place (a code is at least 100).
    codes: [u16; INLINE],
    counts: [[u16; BLOCK_MINUTES]; INLINE],
}

/// Status counts of the blocks of one aggregator, indexed by the aggregator's block index.
#[derive(Debug, Default)]
pub struct StatusCounts {
    /// Per block: its inline rows, or `NONE`.
    of_block: Vec<u32>,
    inline: Vec<Inline>,
    /// Per block: (minute, code, count) of what did not fit inline.
    spill: FxHashMap<u32, Vec<(u8, u16, u64)>>,
}

impl StatusCounts {
    /// Forgets every count, keeping the allocations.
    pub fn clear(&mut self) {
        self.of_block.clear();
        self.inline.clear();
        self.spill.clear();
    }

    /// Makes room for the aggregator's next block.
    pub fn push_block(&mut self) {
        self.of_block.push(NONE);
    }

    #[inline]
    fn inline_of(&mut self, block: u32) -> &mut Inline {
        let b = block as usize;
        if self.of_block.len() <= b {
            self.of_block.resize(b + 1, NONE);
        }
        if self.of_block[b] == NONE {
            self.of_block[b] = self.inline.len() as u32;
            self.inline.push(Inline {
                codes: [0; INLINE],
                counts: [[0; BLOCK_MINUTES]; INLINE],
            });
        }
        &mut self.inline[self.of_block[b] as usize]
    }

    fn spill_add(&mut self, block: u32, minute: usize, code: u16, n: u64) {
        let list = self.spill.entry(block).or_default();
        match list
            .iter_mut()
            .find(|(m, c, _)| usize::from(*m) == minute && *c == code)
        {
            Some(e) => e.2 += n,
            None => list.push((minute as u8, code, n)),
        }
    }

    fn spilled(&self, block: u32, minute: usize, code: u16) -> u64 {
        self.spill.get(&block).map_or(0, |list| {
            list.iter()
                .find(|(m, c, _)| usize::from(*m) == minute && *c == code)
                .map_or(0, |e| e.2)
        })
    }

    /// Adds `n` requests of `code` at `minute` (0 to 59) of `block`.
    #[inline]
    pub fn add(&mut self, block: u32, minute: usize, code: u16, n: u64) {
        let inl = self.inline_of(block);
        let k = match find_code(&inl.codes, code) {
            Some(k) => k,
            None => match inl.codes.iter().position(|&c| c == 0) {
                Some(k) => {
                    inl.codes[k] = code;
                    k
                }
                None => return self.spill_add(block, minute, code, n),
            },
        };
        let cell = &mut inl.counts[k][minute];
        let sum = u64::from(*cell) + n;
        if *cell != SPILLED && sum < u64::from(SPILLED) {
            *cell = sum as u16;
            return;
        }
        let before = if *cell == SPILLED {
            0
        } else {
            u64::from(*cell)
        };
        *cell = SPILLED;
        self.spill_add(block, minute, code, before + n);
    }

    /// The rows of `block`, one per code it has seen (counts per minute, some zero), in no
    /// particular order, when none of its counts spilled (the common case); `None` when some
    /// did: read those with [`StatusCounts::counts`].
    pub fn rows(
        &self,
        block: u32,
    ) -> Option<impl Iterator<Item = (u16, &[u16; BLOCK_MINUTES])> + '_> {
        if self.spill.contains_key(&block) {
            return None;
        }
        let inline = self
            .of_block
            .get(block as usize)
            .filter(|&&i| i != NONE)
            .map(|&i| &self.inline[i as usize]);
        Some(inline.into_iter().flat_map(|inl| {
            inl.codes
                .iter()
                .zip(&inl.counts)
                .filter(|(c, _)| **c != 0)
                .map(|(&c, row)| (c, row))
        }))
    }

    /// Every nonzero (minute, code, count) of `block`.
    pub fn counts(&self, block: u32) -> Vec<(usize, u16, u64)> {
        let mut out = Vec::new();
        if let Some(&i) = self.of_block.get(block as usize)
            && i != NONE
        {
            let inl = &self.inline[i as usize];
            for (k, &code) in inl.codes.iter().enumerate() {
                if code == 0 {
                    continue;
                }
                for (m, &c) in inl.counts[k].iter().enumerate() {
                    match c {
                        0 => {}
                        SPILLED => out.push((m, code, self.spilled(block, m, code))),
                        c => out.push((m, code, u64::from(c))),
                    }
                }
            }
        }
        if let Some(list) = self.spill.get(&block) {
            let inline_codes = self
                .of_block
                .get(block as usize)
                .filter(|&&i| i != NONE)
                .map(|&i| self.inline[i as usize].codes);
            for &(m, code, n) in list {
                // Counts of inline codes that spilled were listed above.
                if !inline_codes.is_some_and(|codes| codes.contains(&code)) {
                    out.push((usize::from(m), code, n));
                }
            }
        }
        out
    }

    /// Adds `theirs`' counts of their block `from` into `mine`.
    pub fn merge_block(&mut self, mine: u32, theirs: &StatusCounts, from: u32) {
        let Some(&i) = theirs.of_block.get(from as usize) else {
            return;
        };
        if i == NONE {
            return;
        }
        let t = &theirs.inline[i as usize];
        for (k, &code) in t.codes.iter().enumerate() {
            if code == 0 {
                continue;
            }
            let row = &t.counts[k];
            let clean = !row.contains(&SPILLED);
            let inl = self.inline_of(mine);
            let slot = inl.codes.iter().position(|&c| c == code).or_else(|| {
                let free = inl.codes.iter().position(|&c| c == 0)?;
                inl.codes[free] = code;
                Some(free)
            });
            if let Some(k2) = slot
                && clean
                && inl.counts[k2]
                    .iter()
                    .zip(row)
                    .all(|(&a, &b)| u32::from(a) + u32::from(b) < u32::from(SPILLED))
            {
                for (a, &b) in inl.counts[k2].iter_mut().zip(row) {
                    *a += b;
                }
                continue;
            }
            for (m, &c) in row.iter().enumerate() {
                let n = match c {
                    0 => continue,
                    SPILLED => theirs.spilled(from, m, code),
                    c => u64::from(c),
                };
                self.add(mine, m, code, n);
            }
        }
        if let Some(list) = theirs.spill.get(&from) {
            for &(m, code, n) in list {
                if !t.codes.contains(&code) {
                    self.add(mine, usize::from(m), code, n);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(adds: &[(u32, usize, u16, u64)]) -> Vec<(u32, usize, u16, u64)> {
        let mut m = std::collections::BTreeMap::new();
        for &(b, i, c, n) in adds {
            *m.entry((b, i, c)).or_insert(0u64) += n;
        }
        m.into_iter().map(|((b, i, c), n)| (b, i, c, n)).collect()
    }

    fn all(s: &StatusCounts, blocks: u32) -> Vec<(u32, usize, u16, u64)> {
        let mut out: Vec<_> = (0..blocks)
            .flat_map(|b| s.counts(b).into_iter().map(move |(i, c, n)| (b, i, c, n)))
            .collect();
        out.sort();
        out
    }

    proptest! {
        /// A code is found where a search finds it first, with free places (0) anywhere.
        #[test]
        fn a_code_is_found_where_a_search_finds_it(
            codes in prop::array::uniform6(prop_oneof![Just(0u16), Just(200), Just(206), 100u16..1000]),
            code in prop_oneof![Just(0u16), Just(200), Just(206), 100u16..1000, any::<u16>()],
        ) {
            prop_assert_eq!(find_code(&codes, code), codes.iter().position(|&c| c == code));
        }

        /// Many codes (past the inline ones), big counts (past 16 bits), split over two
        /// aggregators and merged: the same as adding them all up.
        #[test]
        fn counts_and_merges_equal_plain_sums(
            adds in prop::collection::vec(
                (0u32..3, 0usize..60, prop::sample::select(vec![200u16, 206, 301, 302, 304, 404, 500, 502, 503]),
                 prop::sample::select(vec![1u64, 2, 7, 40_000, 70_000])),
                0..300),
            cut in 0usize..300,
        ) {
            let mut one = StatusCounts::default();
            for &(b, i, c, n) in &adds {
                one.add(b, i, c, n);
            }
            prop_assert_eq!(all(&one, 3), naive(&adds));
            let cut = cut.min(adds.len());
            let (mut x, mut y) = (StatusCounts::default(), StatusCounts::default());
            for &(b, i, c, n) in &adds[..cut] {
                x.add(b, i, c, n);
            }
            for &(b, i, c, n) in &adds[cut..] {
                y.add(b, i, c, n);
            }
            for b in 0..3 {
                x.merge_block(b, &y, b);
            }
            prop_assert_eq!(all(&x, 3), naive(&adds));
        }
    }
}
