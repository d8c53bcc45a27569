//! Finds every occurrence of many texts in a value, overlapping ones included: the matcher's
//! prefilter.
//!
//! Each text is given one *anchor*, a run of up to four of its bytes; a value is read four
//! bytes at a time, and a position is checked against the texts anchored there only when its
//! first two bytes are in the table of short anchors' starts or its four bytes hash into the
//! bitmap of long anchors. This is the Rabin-Karp idea with a fixed window, as the
//! `aho-corasick` crate's packed searcher uses it for few patterns. Here it replaces that
//! crate's automaton for many patterns because of where the matcher runs: in Wasm there is no
//! SIMD searcher, and the automaton's state walk (a sparse transition list and failure links
//! per byte, then one call per match in an overlapping search) cost about 60 instructions
//! per byte of a command line with the catalog's 10,928 texts. The window costs one load, one
//! table lookup, one multiplication and one bit test per byte.
//!
//! A text of four bytes or more is anchored on the four-byte run of it that the fewest texts
//! contain, so that common runs (`\win`, `.exe`) rarely lead to a check; a shorter text is
//! anchored on itself. Every occurrence of a text holds its anchor at a fixed distance from
//! its start, so it is found exactly once, where its anchor is.

use rustc_hash::FxHashMap as HashMap;

/// The longest anchor, in bytes.
const WINDOW: usize = 4;

/// Bits of the long anchors' bitmap per anchor: about one position in 64 of a value whose
/// runs are not anchors passes it by chance, a cheap check that then fails.
const BITS_PER_ANCHOR: usize = 64;

/// The largest bitmap, in bits (512 KiB).
const MAX_FILTER_BITS: u32 = 22;

/// Where [`TextSearch`] found a text: the text's number (its place in the list it was built
/// from) and the byte range of the value it occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Occurrence {
    pub text: u32,
    pub start: usize,
    pub end: usize,
}

/// Which four-byte runs may be a long anchor: a bitmap indexed by a hash of the run.
#[derive(Debug)]
struct LongFilter {
    bits: Vec<u64>,
    shift: u32,
}

impl LongFilter {
    fn new(anchors: usize) -> LongFilter {
        let wanted = (anchors * BITS_PER_ANCHOR).max(64).next_power_of_two();
        let log = wanted.trailing_zeros().min(MAX_FILTER_BITS);
        LongFilter { bits: vec![0; (1usize << log) / 64], shift: 32 - log }
    }

    fn slot(&self, run: u32) -> usize {
        (run.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    fn insert(&mut self, run: u32) {
        let slot = self.slot(run);
        self.bits[slot / 64] |= 1 << (slot % 64);
    }

    fn may_hold(&self, run: u32) -> bool {
        let slot = self.slot(run);
        self.bits[slot / 64] & (1 << (slot % 64)) != 0
    }
}

/// For each two-byte run (first byte low), which short anchors may start there: bit `len - 1`
/// for an anchor of `len` bytes (1 to 3). Exact for one and two bytes; a three-byte anchor is
/// then looked up.
#[derive(Debug)]
struct ShortTable(Box<[u8; 1 << 16]>);

impl ShortTable {
    fn new() -> ShortTable {
        ShortTable(vec![0; 1 << 16].into_boxed_slice().try_into().expect("the table's size"))
    }

    fn insert(&mut self, anchor: &[u8]) {
        let bit = 1 << (anchor.len() - 1);
        match *anchor {
            [first] => {
                (0..=255u16).for_each(|second| self.0[usize::from(first) | usize::from(second) << 8] |= bit)
            }
            [first, second, ..] => self.0[usize::from(first) | usize::from(second) << 8] |= bit,
            [] => unreachable!("an anchor holds a byte at least"),
        }
    }
}

/// A text anchored on a run: the text's number and where the run starts in it.
#[derive(Debug, Clone, Copy)]
struct Anchor {
    text: u32,
    offset: u32,
}

/// A set of texts to find in values.
#[derive(Debug)]
pub struct TextSearch {
    /// The anchors of one to three bytes, if any.
    short: Option<ShortTable>,
    /// The anchors of four bytes, if any.
    long: Option<LongFilter>,
    /// For each anchor (its length and bytes, see [`key`]), its texts: a range of `anchors`.
    runs: HashMap<u64, (u32, u32)>,
    anchors: Vec<Anchor>,
    /// The texts' bytes, one after the other, and where each is.
    bytes: Vec<u8>,
    spans: Vec<(u32, u32)>,
    /// The empty texts, found at every position of every value.
    empty: Vec<u32>,
}

/// `a == b`, eight bytes at a time. In Wasm, where the pack runs, slice equality calls a
/// `memcmp` that compares one byte per step: comparing the texts found and the values of an
/// alert's sets took 9% of a pack's run on real records.
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
    let (mut left, mut right) = (a.chunks_exact(8), b.chunks_exact(8));
    left.by_ref().zip(right.by_ref()).all(|(x, y)| word(x) == word(y))
        && left.remainder().iter().zip(right.remainder()).all(|(x, y)| x == y)
}

/// A run of `len` bytes (at most four, little-endian in `run`) as one key.
fn key(len: usize, run: u32) -> u64 {
    ((len as u64) << 32) | u64::from(run & MASKS[len])
}

/// The first bytes of `bytes`, up to four, as a little-endian number.
fn run_of(bytes: &[u8]) -> u32 {
    bytes.iter().take(WINDOW).rev().fold(0, |run, &b| (run << 8) | u32::from(b))
}

const MASKS: [u32; WINDOW + 1] = [0, 0xFF, 0xFFFF, 0xFF_FFFF, 0xFFFF_FFFF];

impl TextSearch {
    /// A search for `texts`; an occurrence names a text by its place in `texts`.
    pub fn new<T: AsRef<[u8]>>(texts: &[T]) -> TextSearch {
        // How many texts hold each four-byte run (each text counted once).
        let mut holders: HashMap<u32, u32> = HashMap::default();
        let mut seen = Vec::new();
        for text in texts {
            seen.clear();
            seen.extend(text.as_ref().windows(WINDOW).map(run_of));
            seen.sort_unstable();
            seen.dedup();
            for &run in &seen {
                *holders.entry(run).or_default() += 1;
            }
        }
        let mut by_run: HashMap<u64, Vec<Anchor>> = HashMap::default();
        let mut taken: HashMap<u32, u32> = HashMap::default();
        let (mut bytes, mut spans, mut empty) = (Vec::new(), Vec::with_capacity(texts.len()), Vec::new());
        let (mut short, mut long) = (None::<ShortTable>, Vec::new());
        for (number, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            let number = number as u32;
            spans.push((bytes.len() as u32, text.len() as u32));
            bytes.extend_from_slice(text);
            if text.is_empty() {
                empty.push(number);
                continue;
            }
            let (len, offset) = if text.len() < WINDOW {
                short.get_or_insert_with(ShortTable::new).insert(text);
                (text.len(), 0)
            } else {
                // The rarest run, and among equals the one fewest texts were anchored on yet.
                let offset = (0..=text.len() - WINDOW)
                    .min_by_key(|&at| {
                        let run = run_of(&text[at..]);
                        (holders[&run], taken.get(&run).copied().unwrap_or(0))
                    })
                    .expect("a text of four bytes or more has a run");
                let run = run_of(&text[offset..]);
                *taken.entry(run).or_default() += 1;
                long.push(run);
                (WINDOW, offset)
            };
            by_run
                .entry(key(len, run_of(&text[offset..])))
                .or_default()
                .push(Anchor { text: number, offset: offset as u32 });
        }
        long.sort_unstable();
        long.dedup();
        let long = (!long.is_empty()).then(|| {
            let mut filter = LongFilter::new(long.len());
            long.iter().for_each(|&run| filter.insert(run));
            filter
        });
        let mut runs = HashMap::default();
        let mut anchors = Vec::new();
        let mut keys: Vec<u64> = by_run.keys().copied().collect();
        keys.sort_unstable();
        for k in keys {
            let start = anchors.len() as u32;
            anchors.extend_from_slice(&by_run[&k]);
            runs.insert(k, (start, anchors.len() as u32));
        }
        TextSearch { short, long, runs, anchors, bytes, spans, empty }
    }

    /// The bytes the search holds.
    pub fn memory_usage(&self) -> usize {
        self.short.as_ref().map_or(0, |s| s.0.len())
            + self.long.as_ref().map_or(0, |l| l.bits.len() * 8)
            + self.runs.capacity() * (std::mem::size_of::<(u64, (u32, u32))>() + 1)
            + self.anchors.len() * std::mem::size_of::<Anchor>()
            + self.bytes.len()
            + self.spans.len() * 8
            + self.empty.len() * 4
    }

    /// Calls `found` for every occurrence of every text in `value`, overlapping ones too, in
    /// no particular order. An empty text is reported at the value's start and at its end
    /// (the places that decide a pattern; it occurs everywhere between).
    pub fn find(&self, value: &[u8], mut found: impl FnMut(Occurrence)) {
        let n = value.len();
        for &text in &self.empty {
            found(Occurrence { text, start: 0, end: 0 });
            if n > 0 {
                found(Occurrence { text, start: n, end: n });
            }
        }
        // Four bytes at a time while four remain; the last three positions, zero-padded, after.
        let whole = n.saturating_sub(WINDOW - 1);
        for at in 0..whole {
            let run = u32::from_le_bytes(value[at..at + WINDOW].try_into().expect("four bytes"));
            self.at(run, value, at, &mut found);
        }
        let mut padded = [0u8; 2 * WINDOW - 1];
        padded[..n - whole].copy_from_slice(&value[whole..]);
        for at in whole..n {
            let from = at - whole;
            let run = u32::from_le_bytes(padded[from..from + WINDOW].try_into().expect("four bytes"));
            self.at(run, value, at, &mut found);
        }
    }

    /// The anchors that may start at `at`, where the value's next four bytes are `run`.
    #[inline(always)]
    fn at(&self, run: u32, value: &[u8], at: usize, found: &mut impl FnMut(Occurrence)) {
        if let Some(short) = &self.short {
            let lengths = short.0[(run & 0xFFFF) as usize];
            if lengths != 0 {
                self.check_short(lengths, run, value, at, found);
            }
        }
        if let Some(long) = &self.long
            && long.may_hold(run)
            && at + WINDOW <= value.len()
        {
            self.check(WINDOW, run, value, at, found);
        }
    }

    /// The short anchors `lengths` says may start at `at` (bit `len - 1` for `len` bytes).
    /// Kept out of the scanning loop, which it made slower inlined (5% more instructions).
    #[inline(never)]
    fn check_short(
        &self,
        lengths: u8,
        run: u32,
        value: &[u8],
        at: usize,
        found: &mut impl FnMut(Occurrence),
    ) {
        for len in 1..WINDOW {
            if lengths & (1 << (len - 1)) != 0 && at + len <= value.len() {
                self.check(len, run, value, at, found);
            }
        }
    }

    /// The texts anchored on the first `len` bytes of `run`, which start at `at` in `value`.
    fn check(&self, len: usize, run: u32, value: &[u8], at: usize, found: &mut impl FnMut(Occurrence)) {
        let Some(&(first, last)) = self.runs.get(&key(len, run)) else { return };
        for anchor in &self.anchors[first as usize..last as usize] {
            let Some(start) = at.checked_sub(anchor.offset as usize) else { continue };
            let (from, text_len) = self.spans[anchor.text as usize];
            let end = start + text_len as usize;
            if end <= value.len()
                && equal(&value[start..end], &self.bytes[from as usize..][..text_len as usize])
            {
                found(Occurrence { text: anchor.text, start, end });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Draw;
    use aho_corasick::{AhoCorasick, MatchKind};

    /// Up to `max` bytes from a small alphabet, so that texts overlap and share runs; NUL and
    /// the bytes of a two-byte character among them.
    fn drawn_text(draw: &mut Draw, max: usize) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ab\\.e\0\xc3\xa9";
        let len = draw.below(max + 1);
        (0..len).map(|_| ALPHABET[draw.below(ALPHABET.len())]).collect()
    }

    fn found(search: &TextSearch, value: &[u8]) -> Vec<Occurrence> {
        let mut all = Vec::new();
        search.find(value, |o| all.push(o));
        all.sort();
        all
    }

    /// Every occurrence of every text, as the `aho-corasick` crate's overlapping search gives
    /// them; an empty text where this search reports it.
    fn reference(texts: &[Vec<u8>], value: &[u8]) -> Vec<Occurrence> {
        let automaton =
            AhoCorasick::builder().match_kind(MatchKind::Standard).build(texts).expect("small automaton");
        let mut all: Vec<Occurrence> = automaton
            .find_overlapping_iter(value)
            .map(|m| Occurrence { text: m.pattern().as_u32(), start: m.start(), end: m.end() })
            .filter(|o| !texts[o.text as usize].is_empty())
            .collect();
        for (number, text) in texts.iter().enumerate() {
            if text.is_empty() {
                all.push(Occurrence { text: number as u32, start: 0, end: 0 });
                if !value.is_empty() {
                    all.push(Occurrence { text: number as u32, start: value.len(), end: value.len() });
                }
            }
        }
        all.sort();
        all
    }

    #[test]
    fn every_occurrence_is_found_once_as_an_automaton_finds_it() {
        let mut draw = Draw(0x5EED_1234_ABCD_0001);
        let mut compared = 0;
        for round in 0..400 {
            let count = 1 + draw.below(if round % 4 == 0 { 200 } else { 12 });
            let texts: Vec<Vec<u8>> = (0..count).map(|_| drawn_text(&mut draw, 9)).collect();
            let search = TextSearch::new(&texts);
            for _ in 0..20 {
                let mut value = drawn_text(&mut draw, 40);
                // A text planted in the value, at its start, its end or inside.
                let planted = &texts[draw.below(texts.len())];
                match draw.below(3) {
                    0 => value.splice(0..0, planted.iter().copied()).for_each(drop),
                    1 => value.extend_from_slice(planted),
                    _ => {
                        let at = draw.below(value.len() + 1);
                        value.splice(at..at, planted.iter().copied()).for_each(drop)
                    }
                }
                let expected = reference(&texts, &value);
                compared += expected.len();
                assert_eq!(found(&search, &value), expected, "texts {texts:?} in {value:?}");
            }
        }
        assert!(compared > 10_000, "the values held too few occurrences to compare: {compared}");
    }

    #[test]
    fn equal_is_slice_equality() {
        for len in 0..40usize {
            let a: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
            assert!(equal(&a, &a.clone()), "{len} bytes");
            assert!(!equal(&a, &a[..len.saturating_sub(1)]) || len == 0);
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x20;
                assert!(!equal(&a, &b), "{len} bytes, byte {at} differs");
            }
        }
    }

    #[test]
    fn runs_shared_by_many_texts_are_not_their_anchors() {
        let texts =
            ["\\windows\\system32\\cmd.exe", "\\windows\\system32\\net.exe", "\\windows\\system32\\at.exe"];
        let search = TextSearch::new(&texts);
        let value = b"c:\\windows\\system32\\net.exe user";
        assert_eq!(found(&search, value), vec![Occurrence { text: 1, start: 2, end: 27 }]);
        for (number, text) in texts.iter().enumerate() {
            let anchor =
                search.anchors.iter().find(|a| a.text == number as u32).expect("every text is anchored");
            let run = &text.as_bytes()[anchor.offset as usize..][..WINDOW];
            assert!(
                !texts
                    .iter()
                    .enumerate()
                    .any(|(other, t)| other != number && t.as_bytes().windows(WINDOW).any(|w| w == run)),
                "{text:?} is anchored on {:?}, which another text holds",
                String::from_utf8_lossy(run)
            );
        }
    }
}
