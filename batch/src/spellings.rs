//! The domain spellings a worker has met, each mapped to its domain id: the lookup every log
//! line makes.
//!
//! A general map of boxed byte strings cost two or three cache misses a line (its control
//! bytes, its bucket, then the key on the heap, compared by a call to `memcmp`): measured, 14%
//! of a CSV run. Here the probe table holds only a hash tag and an entry index (a thousand
//! domains' table fits in a few KiB), and each entry keeps its spelling in its own cache line
//! (spellings up to [`INLINE`] bytes; longer ones in a shared arena), compared a word at a time.

/// Spellings up to this long are kept in their entry.
const INLINE: usize = 48;
use crate::formats::swar::word;
const EMPTY: u32 = u32::MAX;

/// One spelling, in one cache line.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Entry {
    hash: u64,
    id: u32,
    len: u32,
    /// The spelling zero-padded when it fits; else its offset in the arena (first 8 bytes).
    key: [u8; INLINE],
}

/// Spellings to ids: [`Spellings::get`] and [`Spellings::insert`], nothing removed.
#[derive(Clone)]
pub struct Spellings {
    /// Per probe place: (high half of the hash, entry index), or `EMPTY` as the index.
    table: Vec<(u32, u32)>,
    entries: Vec<Entry>,
    arena: Vec<u8>,
}

impl Default for Spellings {
    fn default() -> Spellings {
        Spellings {
            table: vec![(0, EMPTY); 16],
            entries: Vec::new(),
            arena: Vec::new(),
        }
    }
}

impl std::fmt::Debug for Spellings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spellings")
            .field("len", &self.entries.len())
            .finish()
    }
}

const K: u64 = 0x9E37_79B9_7F4A_7C15;

#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let m = u128::from(a) * u128::from(b);
    (m as u64) ^ ((m >> 64) as u64)
}

/// Bytes `at..at + 8` of `b` (which has them) as a word.
#[inline]
fn load(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// A hash of every byte of `b`, a word at a time (the last word overlapping the one before).
#[inline]
fn hash(b: &[u8]) -> u64 {
    let n = b.len();
    let mut h = fold(n as u64 ^ K, 0x2D35_8DCC_AA6C_78A5);
    if n < 8 {
        return fold(h ^ word(b), K);
    }
    let mut at = 0;
    while at + 8 < n {
        h = fold(h ^ load(b, at), K);
        at += 8;
    }
    fold(h ^ load(b, n - 8), K)
}

/// Whether `a` and `b`, both `n` bytes, are equal, a word at a time.
#[inline]
fn same(a: &[u8], b: &[u8], n: usize) -> bool {
    if n < 8 {
        return word(&a[..n]) == word(&b[..n]);
    }
    let mut at = 0;
    while at + 8 < n {
        if load(a, at) != load(b, at) {
            return false;
        }
        at += 8;
    }
    load(a, n - 8) == load(b, n - 8)
}

impl Spellings {
    /// How many spellings are kept.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn key<'a>(&'a self, e: &'a Entry) -> &'a [u8] {
        let n = e.len as usize;
        if n <= INLINE {
            &e.key[..n]
        } else {
            let at = load(&e.key, 0) as usize;
            &self.arena[at..at + n]
        }
    }

    /// The id of `spelling`, if kept.
    #[inline]
    pub fn get(&self, spelling: &[u8]) -> Option<u32> {
        let h = hash(spelling);
        let (tag, mask) = ((h >> 32) as u32, self.table.len() - 1);
        let mut i = h as usize & mask;
        loop {
            let (t, e) = self.table[i];
            if e == EMPTY {
                return None;
            }
            if t == tag {
                let entry = &self.entries[e as usize];
                if entry.hash == h
                    && entry.len as usize == spelling.len()
                    && same(self.key(entry), spelling, spelling.len())
                {
                    return Some(entry.id);
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Keeps `spelling` as `id` (it must not be kept already).
    pub fn insert(&mut self, spelling: &[u8], id: u32) {
        if (self.entries.len() + 1) * 2 > self.table.len() {
            self.grow();
        }
        let h = hash(spelling);
        let mut key = [0u8; INLINE];
        if spelling.len() <= INLINE {
            key[..spelling.len()].copy_from_slice(spelling);
        } else {
            key[..8].copy_from_slice(&(self.arena.len() as u64).to_le_bytes());
            self.arena.extend_from_slice(spelling);
        }
        let index = self.entries.len() as u32;
        self.entries.push(Entry {
            hash: h,
            id,
            len: spelling.len() as u32,
            key,
        });
        self.place(h, index);
    }

    /// Every kept spelling.
    pub fn keys(&self) -> impl Iterator<Item = &[u8]> {
        self.entries.iter().map(|e| self.key(e))
    }

    fn place(&mut self, h: u64, index: u32) {
        let mask = self.table.len() - 1;
        let mut i = h as usize & mask;
        while self.table[i].1 != EMPTY {
            i = (i + 1) & mask;
        }
        self.table[i] = ((h >> 32) as u32, index);
    }

    fn grow(&mut self) {
        let size = self.table.len() * 2;
        self.table = vec![(0, EMPTY); size];
        for index in 0..self.entries.len() {
            let h = self.entries[index].hash;
            self.place(h, index as u32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any spellings, short, long (past the inline room) and alike in all but a middle
        /// byte: each found as inserted, and nothing else found.
        #[test]
        fn finds_what_was_kept_and_nothing_else(
            keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..300),
            probes in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..120), 0..50),
        ) {
            let mut s = Spellings::default();
            let mut m = HashMap::new();
            for k in &keys {
                if !m.contains_key(k) {
                    let id = m.len() as u32;
                    m.insert(k.clone(), id);
                    s.insert(k, id);
                }
            }
            prop_assert_eq!(s.len(), m.len());
            for k in keys.iter().chain(&probes) {
                prop_assert_eq!(s.get(k), m.get(k).copied());
            }
            let mut kept: Vec<&[u8]> = s.keys().collect();
            kept.sort();
            let mut want: Vec<&[u8]> = m.keys().map(Vec::as_slice).collect();
            want.sort();
            prop_assert_eq!(kept, want);
        }
    }

    #[test]
    fn spellings_alike_but_for_one_byte_are_told_apart() {
        let mut s = Spellings::default();
        let names: Vec<String> = (0..5000)
            .map(|i| format!("img{}.customer{}.example.com", i % 10, i))
            .collect();
        for (i, n) in names.iter().enumerate() {
            s.insert(n.as_bytes(), i as u32);
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(s.get(n.as_bytes()), Some(i as u32));
        }
        assert_eq!(s.get(b"img0.customer5000.example.com"), None);
        assert_eq!(s.get(b""), None);
        s.insert(b"", 9);
        assert_eq!(s.get(b""), Some(9));
    }
}
