//! Finds every occurrence of many texts in a value, overlapping ones included: the matcher's
//! prefilter.
//!
//! Each text is given one *anchor*, a run of up to four of its bytes; a value is read four
//! bytes at a time, and a position is checked against the texts anchored there only when its
//! first two bytes are in the bitmap of short anchors' starts or its four bytes hash into the
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

/// The anchors of four bytes: a bitmap, indexed by a hash of the run, of the runs that may be
/// one, and the anchors of each bit set.
#[derive(Debug)]
struct LongAnchors {
    bits: Vec<u64>,
    shift: u32,
    /// For each word of `bits`, how many bits are set in the words before it: with the bits
    /// set before a slot in its word, the slot's place among the slots set.
    ranks: Vec<u32>,
    /// For the slot set `i`-th, its anchors: `anchors[slots[i]..slots[i + 1]]`.
    slots: Vec<u32>,
    anchors: Vec<LongAnchor>,
}

/// A text anchored on a four-byte run: the run, the text's number, where the run starts in
/// it, and where its bytes are.
#[derive(Debug, Clone, Copy)]
struct LongAnchor {
    run: u32,
    text: u32,
    offset: u32,
    from: u32,
    len: u32,
}

impl LongAnchors {
    fn new(mut anchors: Vec<LongAnchor>) -> LongAnchors {
        let mut runs: Vec<u32> = anchors.iter().map(|a| a.run).collect();
        runs.sort_unstable();
        runs.dedup();
        let wanted = (runs.len() * BITS_PER_ANCHOR).max(64).next_power_of_two();
        let log = wanted.trailing_zeros().min(MAX_FILTER_BITS);
        let mut long = LongAnchors {
            bits: vec![0; (1usize << log) / 64],
            shift: 32 - log,
            ranks: Vec::new(),
            slots: Vec::new(),
            anchors: Vec::new(),
        };
        anchors.sort_by_key(|a| long.slot(a.run));
        // How many anchors each slot set holds, then where each slot's anchors start.
        for anchor in &anchors {
            let slot = long.slot(anchor.run);
            if long.bits[slot / 64] & (1 << (slot % 64)) == 0 {
                long.bits[slot / 64] |= 1 << (slot % 64);
                long.slots.push(0);
            }
            *long.slots.last_mut().expect("pushed above") += 1;
        }
        let mut start = 0;
        for count in &mut long.slots {
            (*count, start) = (start, start + *count);
        }
        long.slots.push(start);
        long.ranks = ranks_of(&long.bits);
        long.anchors = anchors;
        long
    }

    #[inline(always)]
    fn slot(&self, run: u32) -> usize {
        (run.wrapping_mul(0x9E37_79B1) >> self.shift) as usize
    }

    #[inline(always)]
    fn may_hold(&self, run: u32) -> bool {
        let slot = self.slot(run);
        // The mask tells the compiler the word is in the bitmap (its length is a power of
        // two): no bounds check in the scanning loop.
        let words = self.bits.len() - 1;
        self.bits[(slot / 64) & words] & (1 << (slot % 64)) != 0
    }

    /// The anchors of the slot of `run`, which [`LongAnchors::may_hold`] says is set: a
    /// rank in the bitmap, where a hash map's lookup took a third of the cost of a text found.
    #[inline(always)]
    fn of(&self, run: u32) -> &[LongAnchor] {
        let set = rank(&self.bits, &self.ranks, self.slot(run));
        &self.anchors[self.slots[set] as usize..self.slots[set + 1] as usize]
    }
}

/// The anchors of one to three bytes (the texts shorter than four bytes, each its own
/// anchor), by their first two bytes (first byte low); a one-byte anchor is under every two
/// bytes it starts.
#[derive(Debug)]
struct ShortAnchors {
    /// Whether an anchor starts with the two bytes, a bit each (8 KiB): the scanning loop's
    /// test. A `bool` each (64 KiB) and a table of every two bytes' anchors (256 KiB) made
    /// each searched view's tables larger than a core's first-level cache, and the views'
    /// together larger than its second.
    starts: Box<[u64; STARTS_WORDS]>,
    /// For each word of `starts`, how many bits are set in the words before it.
    ranks: Box<[u32; STARTS_WORDS]>,
    /// For the two bytes set `i`-th, its anchors: `anchors[slots[i]..slots[i + 1]]`.
    slots: Vec<u32>,
    anchors: Vec<ShortAnchor>,
}

/// The words of [`ShortAnchors::starts`]: a bit for each two bytes.
const STARTS_WORDS: usize = (1 << 16) / 64;

/// The place among the set bits of `bits` of the set bit `slot`, given `ranks`, the bits set
/// before each word: where the slot's anchors are listed.
#[inline(always)]
fn rank(bits: &[u64], ranks: &[u32], slot: usize) -> usize {
    let (word, bit) = (slot / 64, slot % 64);
    (ranks[word] + (bits[word] & ((1 << bit) - 1)).count_ones()) as usize
}

/// For each word of `bits`, how many bits are set in the words before it.
fn ranks_of(bits: &[u64]) -> Vec<u32> {
    let mut set = 0;
    bits.iter()
        .map(|word| {
            let before = set;
            set += word.count_ones();
            before
        })
        .collect()
}

/// A text of one to three bytes: its bytes (little-endian), length and number.
#[derive(Debug, Clone, Copy)]
struct ShortAnchor {
    run: u32,
    len: u32,
    text: u32,
}

impl ShortAnchors {
    fn new(anchors: &[ShortAnchor]) -> ShortAnchors {
        let mut by_row: Vec<(u16, ShortAnchor)> = Vec::new();
        for anchor in anchors {
            let first = anchor.run & 0xFF;
            match anchor.len {
                1 => by_row.extend((0..=255u32).map(|second| ((first | second << 8) as u16, *anchor))),
                _ => by_row.push(((anchor.run & 0xFFFF) as u16, *anchor)),
            }
        }
        by_row.sort_by_key(|(row, _)| *row);
        let mut starts: Box<[u64; STARTS_WORDS]> =
            vec![0; STARTS_WORDS].into_boxed_slice().try_into().expect("the table's size");
        let mut slots = Vec::new();
        for (at, (row, _)) in by_row.iter().enumerate() {
            let row = usize::from(*row);
            if starts[row / 64] & (1 << (row % 64)) == 0 {
                starts[row / 64] |= 1 << (row % 64);
                slots.push(at as u32);
            }
        }
        slots.push(by_row.len() as u32);
        let ranks = ranks_of(&starts[..]).into_boxed_slice().try_into().expect("the table's size");
        ShortAnchors { starts, ranks, slots, anchors: by_row.into_iter().map(|(_, anchor)| anchor).collect() }
    }

    /// Whether an anchor may start where the next four bytes are `run`.
    #[inline(always)]
    fn may_start(&self, run: u32) -> bool {
        let row = (run & 0xFFFF) as usize;
        self.starts[row / 64] & (1 << (row % 64)) != 0
    }

    /// The texts that start at `at`, where the value's next four bytes are `run` (zero-padded
    /// past its end) and `starts` says some may.
    #[inline(never)]
    fn at(&self, run: u32, value: &[u8], at: usize, found: &mut impl FnMut(Occurrence)) {
        let set = rank(&self.starts[..], &self.ranks[..], (run & 0xFFFF) as usize);
        for anchor in &self.anchors[self.slots[set] as usize..self.slots[set + 1] as usize] {
            let end = at + anchor.len as usize;
            if run & MASKS[anchor.len as usize] == anchor.run && end <= value.len() {
                found(Occurrence { text: anchor.text, start: at, end });
            }
        }
    }
}

/// A set of texts to find in values.
#[derive(Debug)]
pub struct TextSearch {
    /// The anchors of one to three bytes, if any.
    short: Option<ShortAnchors>,
    /// The anchors of four bytes, if any.
    long: Option<LongAnchors>,
    /// The bytes of the texts of four bytes or more, one after the other.
    bytes: Vec<u8>,
    /// The empty texts, found at every position of every value.
    empty: Vec<u32>,
}

/// `a == b`, by words. In Wasm, where the pack runs, slice equality calls a
/// `memcmp` that compares one byte per step: comparing the texts found and the values of an
/// alert's sets took 9% of a pack's run on real records. Inlined: a call per text found
/// took 0.9% of a run of the catalog over real records.
#[inline(always)]
pub fn equal(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // The last word overlaps the one before it rather than ending in a loop over the bytes
    // left (up to seven per text found).
    let u64_at = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("eight bytes"));
    let u32_at = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("four bytes"));
    match n {
        // Long values (an alert's sets compare command lines of kilobytes): 32 bytes per
        // turn, as four words whose differences are joined (Wasm SIMD, compiled). At eight
        // bytes per turn, each turn with its bounds checks and the deadline's check,
        // comparing took four fifths of a `summarize` call.
        32.. => {
            let differ =
                |x: &[u8], y: &[u8]| (0..4).fold(0, |d, i| d | (u64_at(x, 8 * i) ^ u64_at(y, 8 * i))) != 0;
            let (mut x, mut y) = (a, b);
            while x.len() > 32 {
                let ((x_head, x_rest), (y_head, y_rest)) = (x.split_at(32), y.split_at(32));
                if differ(x_head, y_head) {
                    return false;
                }
                (x, y) = (x_rest, y_rest);
            }
            !differ(&a[n - 32..], &b[n - 32..])
        }
        8.. => {
            (0..n - 8).step_by(8).all(|at| u64_at(a, at) == u64_at(b, at))
                && u64_at(a, n - 8) == u64_at(b, n - 8)
        }
        4.. => u32_at(a, 0) == u32_at(b, 0) && u32_at(a, n - 4) == u32_at(b, n - 4),
        _ => a == b,
    }
}

/// Calls `visit` with every position of `value` that four bytes follow and those four bytes
/// (little-endian), in order. Four positions per turn of the loop, read from one word: in
/// Wasm each turn of a loop checks the deadline (an epoch), and with a check per position the
/// checks were a seventh of the catalog's time. Eight per turn (from two words) did no better
/// in Wasm and worse natively.
#[inline(always)]
fn each_run(value: &[u8], mut visit: impl FnMut(usize, u32)) {
    let word = |at: usize| u64::from_le_bytes(value[at..at + 8].try_into().expect("eight bytes"));
    let mut at = 0;
    while at + 8 <= value.len() {
        let w = word(at);
        visit(at, w as u32);
        visit(at + 1, (w >> 8) as u32);
        visit(at + 2, (w >> 16) as u32);
        visit(at + 3, (w >> 24) as u32);
        at += 4;
    }
    while at + WINDOW <= value.len() {
        visit(at, u32::from_le_bytes(value[at..at + WINDOW].try_into().expect("four bytes")));
        at += 1;
    }
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
        let mut taken: HashMap<u32, u32> = HashMap::default();
        let (mut bytes, mut empty) = (Vec::new(), Vec::new());
        let (mut short, mut long) = (Vec::new(), Vec::new());
        for (number, text) in texts.iter().enumerate() {
            let text = text.as_ref();
            let number = number as u32;
            if text.is_empty() {
                empty.push(number);
            } else if text.len() < WINDOW {
                short.push(ShortAnchor { run: run_of(text), len: text.len() as u32, text: number });
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
                let (from, len) = (bytes.len() as u32, text.len() as u32);
                bytes.extend_from_slice(text);
                long.push(LongAnchor { run, text: number, offset: offset as u32, from, len });
            }
        }
        TextSearch {
            short: (!short.is_empty()).then(|| ShortAnchors::new(&short)),
            long: (!long.is_empty()).then(|| LongAnchors::new(long)),
            bytes,
            empty,
        }
    }

    /// The bytes the search holds.
    pub fn memory_usage(&self) -> usize {
        use std::mem::size_of_val;
        self.short.as_ref().map_or(0, |s| {
            size_of_val(&s.starts[..])
                + size_of_val(&s.ranks[..])
                + size_of_val(&s.slots[..])
                + size_of_val(&s.anchors[..])
        }) + self.long.as_ref().map_or(0, |l| {
            size_of_val(&l.bits[..])
                + size_of_val(&l.ranks[..])
                + size_of_val(&l.slots[..])
                + size_of_val(&l.anchors[..])
        }) + self.bytes.len()
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
        // Four bytes at a time while four remain, in a loop made for the kinds of anchors the
        // search has (tested per position, the kinds cost a third of the loop).
        match (&self.short, &self.long) {
            (Some(short), Some(long)) => each_run(value, |at, run| {
                if short.may_start(run) {
                    short.at(run, value, at, &mut found);
                }
                if long.may_hold(run) {
                    self.long_at(long, run, value, at, &mut found);
                }
            }),
            (Some(short), None) => each_run(value, |at, run| {
                if short.may_start(run) {
                    short.at(run, value, at, &mut found);
                }
            }),
            (None, Some(long)) => each_run(value, |at, run| {
                if long.may_hold(run) {
                    self.long_at(long, run, value, at, &mut found);
                }
            }),
            (None, None) => {}
        }
        // The last three positions hold no four-byte anchor; a shorter one is read from them
        // zero-padded.
        if let Some(short) = &self.short {
            let whole = n.saturating_sub(WINDOW - 1);
            let mut padded = [0u8; 2 * WINDOW - 1];
            padded[..n - whole].copy_from_slice(&value[whole..]);
            for at in whole..n {
                let from = at - whole;
                let run = u32::from_le_bytes(padded[from..from + WINDOW].try_into().expect("four bytes"));
                if short.may_start(run) {
                    short.at(run, value, at, &mut found);
                }
            }
        }
    }

    /// The texts anchored on the four bytes at `at`, `run`, which the bitmap may hold. Kept out
    /// of the scanning loop, as [`ShortAnchors::at`] is, which they made slower inlined.
    #[inline(never)]
    fn long_at(
        &self,
        long: &LongAnchors,
        run: u32,
        value: &[u8],
        at: usize,
        found: &mut impl FnMut(Occurrence),
    ) {
        for anchor in long.of(run) {
            let Some(start) = at.checked_sub(anchor.offset as usize) else { continue };
            let end = start + anchor.len as usize;
            if anchor.run == run
                && end <= value.len()
                && equal(&value[start..end], &self.bytes[anchor.from as usize..][..anchor.len as usize])
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
    fn thousands_of_texts_are_found_as_an_automaton_finds_them() {
        // As many texts as the catalog's command-line view has, from a wider alphabet than
        // above: the long anchors' bitmap is then larger than a core's first-level cache
        // (2^18 bits), as it is in the pack.
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-\\.";
        let mut draw = Draw(0x5EED_1234_ABCD_0003);
        let text = |draw: &mut Draw, len: usize| -> Vec<u8> {
            (0..len).map(|_| ALPHABET[draw.below(ALPHABET.len())]).collect()
        };
        let texts: Vec<Vec<u8>> = (0..6_000)
            .map(|_| {
                let len = 4 + draw.below(9);
                text(&mut draw, len)
            })
            .collect();
        let search = TextSearch::new(&texts);
        let bits = search.long.as_ref().expect("long anchors").bits.len() * 64;
        assert!(bits > 1 << 18, "a bitmap of {bits} bits");
        let automaton =
            AhoCorasick::builder().match_kind(MatchKind::Standard).build(&texts).expect("automaton");
        let mut compared = 0;
        for _ in 0..500 {
            let mut value = text(&mut draw, 150);
            for _ in 0..1 + draw.below(6) {
                let planted = &texts[draw.below(texts.len())];
                let at = draw.below(value.len() + 1);
                value.splice(at..at, planted.iter().copied()).for_each(drop);
            }
            let mut expected: Vec<Occurrence> = automaton
                .find_overlapping_iter(&value)
                .map(|m| Occurrence { text: m.pattern().as_u32(), start: m.start(), end: m.end() })
                .collect();
            expected.sort();
            compared += expected.len();
            assert_eq!(found(&search, &value), expected, "in {:?}", String::from_utf8_lossy(&value));
        }
        assert!(compared > 1_000, "the values held too few occurrences to compare: {compared}");
    }

    #[test]
    fn equal_is_slice_equality() {
        for len in 0..100usize {
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
    fn short_texts_take_a_bit_per_two_bytes_not_a_table_of_them() {
        // A view with a few short texts (`-e`, `/c`, `-`): the catalog's searched views have
        // many, and each view's tables are read for every value of it.
        let texts = ["-e", "/c", "-", "ab"];
        let search = TextSearch::new(&texts);
        assert_eq!(
            found(&search, b"cmd /c -e"),
            vec![
                Occurrence { text: 1, start: 4, end: 6 },
                Occurrence { text: 0, start: 7, end: 9 },
                Occurrence { text: 2, start: 7, end: 8 },
            ]
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect::<Vec<_>>()
        );
        // 12 KiB of bits and ranks, and the one-byte text listed under each of its 256 rows
        // (a `bool` and a row of anchors for each two bytes took 320 KiB).
        let bytes = search.memory_usage();
        assert!(bytes <= 20 << 10, "four short texts take {bytes} bytes");
    }

    #[test]
    fn runs_shared_by_many_texts_are_not_their_anchors() {
        let texts =
            ["\\windows\\system32\\cmd.exe", "\\windows\\system32\\net.exe", "\\windows\\system32\\at.exe"];
        let search = TextSearch::new(&texts);
        let value = b"c:\\windows\\system32\\net.exe user";
        assert_eq!(found(&search, value), vec![Occurrence { text: 1, start: 2, end: 27 }]);
        for (number, text) in texts.iter().enumerate() {
            let long = search.long.as_ref().expect("long anchors");
            let anchor =
                long.anchors.iter().find(|a| a.text == number as u32).expect("every text is anchored");
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
