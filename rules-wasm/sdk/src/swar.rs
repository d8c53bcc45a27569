//! Byte scans eight bytes at a time, in a `u64` (SWAR: SIMD within a register).
//!
//! A rule runs as Wasm without SIMD, and the sandbox's deadline puts an interruption check
//! at every loop back-edge: a loop over bytes costs a guest several times what it costs
//! native code, where `memcmp` and `memchr` are vectorized. A loop over words takes an
//! eighth of the steps and of the checks. Every function here is exact: tests compare each
//! with the byte-by-byte definition over generated inputs, ASCII and not.
//!
//! Bytes are read little-endian, so byte `i` of a slice is byte `i` of the word, and bit
//! `i` of a [`alnum_mask`] is byte `i` of its block.

/// `0x01` in every byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte: the flag bit of the per-byte tests below.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The eight bytes of `bytes` from `at`; bytes past its end read as zero.
#[inline(always)]
fn word(bytes: &[u8], at: usize) -> u64 {
    match bytes.get(at..at + 8) {
        Some(chunk) => u64::from_le_bytes(chunk.try_into().expect("a chunk of 8 bytes")),
        None => partial_word(bytes.get(at..).unwrap_or_default()),
    }
}

/// A word of at most eight bytes, zero-padded, from two overlapping loads (the bytes they
/// share are the same, so or-ing them is exact): no loop, and no variable-length copy,
/// which a guest runs as a `memory.copy` call out of the sandbox.
#[inline(always)]
fn partial_word(bytes: &[u8]) -> u64 {
    let len = bytes.len();
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([bytes[at], bytes[at + 1]]));
    let u32_at =
        |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().expect("a chunk of 4 bytes")));
    match len {
        0 => 0,
        1 => u64::from(bytes[0]),
        2..=3 => u16_at(0) | u16_at(len - 2) << (8 * (len - 2)),
        4..=7 => u32_at(0) | u32_at(len - 4) << (8 * (len - 4)),
        _ => u64::from_le_bytes(bytes[..8].try_into().expect("a chunk of 8 bytes")),
    }
}

/// For each byte of `word` below `0x80` (the high bit of `low7` cleared), `0x80` where
/// the byte is at least `bound` (`bound <= 0x80`). No byte's sum carries into the next.
#[inline(always)]
fn at_least(low7: u64, bound: u8) -> u64 {
    low7.wrapping_add(ONES * u64::from(0x80 - bound)) & HIGH
}

/// `word` with each ASCII upper-case letter turned lower-case; other bytes unchanged.
#[inline(always)]
pub(crate) fn fold(word: u64) -> u64 {
    let low7 = word & !HIGH;
    let upper = at_least(low7, b'A') & !at_least(low7, b'Z' + 1) & !word;
    word | (upper >> 2)
}

/// `0x80` in each byte of `word` that is zero.
#[inline(always)]
fn zero_bytes(word: u64) -> u64 {
    !(((word & !HIGH).wrapping_add(!HIGH)) | word) & HIGH
}

/// `0x80` in each byte of `word` that is an ASCII letter or digit.
#[inline(always)]
fn alnum_bytes(word: u64) -> u64 {
    let low7 = word & !HIGH;
    let digit = at_least(low7, b'0') & !at_least(low7, b'9' + 1);
    // Setting 0x20 maps `A..=Z` onto `a..=z` and nothing else into that range.
    let folded = low7 | (ONES * 0x20);
    let letter = at_least(folded, b'a') & !at_least(folded, b'z' + 1);
    (digit | letter) & !word
}

/// The flag bits (`0x80` of each byte) of `flags` gathered into the low eight bits.
#[inline(always)]
fn gather(flags: u64) -> u64 {
    (flags >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
}

/// Bit `i` set where byte `at + i` of `bytes` is an ASCII letter or digit, for the 64
/// bytes from `at` (bytes past the end are not).
#[inline]
pub(crate) fn alnum_mask(bytes: &[u8], at: usize) -> u64 {
    let mut mask = 0;
    for k in 0..8 {
        mask |= gather(alnum_bytes(word(bytes, at + 8 * k))) << (8 * k);
    }
    mask
}

/// `a == b`.
#[inline]
pub(crate) fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && words_eq(a, b, |w| w)
}

/// `a.eq_ignore_ascii_case(b)`.
#[inline]
pub(crate) fn eq_ignore_ascii_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && words_eq(a, b, fold)
}

/// Whether `map` of each word of `a` equals `map` of the same word of `b` (same lengths).
/// Past eight bytes, the last word is the one ending at the end, overlapping the one before.
#[inline(always)]
fn words_eq(a: &[u8], b: &[u8], map: impl Fn(u64) -> u64) -> bool {
    let len = a.len();
    if len <= 8 {
        return map(partial_word(a)) == map(partial_word(b));
    }
    let mut at = 0;
    while at + 8 < len {
        if map(word(a, at)) != map(word(b, at)) {
            return false;
        }
        at += 8;
    }
    map(word(a, len - 8)) == map(word(b, len - 8))
}

/// The first position at or after `from` where `needle` (not empty) occurs in `hay`,
/// ignoring ASCII case: candidates are the bytes equal to `needle`'s first byte, eight
/// tested at once.
#[inline]
pub(crate) fn find_ignore_ascii_case(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let last_start = hay.len().checked_sub(needle.len())?;
    let first = fold(ONES * u64::from(needle[0]));
    let mut at = from;
    while at <= last_start {
        let mut candidates = zero_bytes(fold(word(hay, at)) ^ first);
        while candidates != 0 {
            let start = at + (candidates.trailing_zeros() / 8) as usize;
            if start > last_start {
                return None;
            }
            if eq_ignore_ascii_case(&hay[start..start + needle.len()], needle) {
                return Some(start);
            }
            candidates &= candidates - 1;
        }
        at += 8;
    }
    None
}

/// The maximal runs of ASCII letters and digits of a text, found 64 bytes at a time.
#[derive(Debug, Clone)]
pub(crate) struct AlnumRuns<'a> {
    text: &'a str,
    /// Start of the 64-byte block that `mask` describes.
    block: usize,
    /// [`alnum_mask`] of that block, without the runs already yielded.
    mask: u64,
}

impl<'a> AlnumRuns<'a> {
    #[inline]
    pub(crate) fn new(text: &'a str) -> Self {
        Self { text, block: 0, mask: alnum_mask(text.as_bytes(), 0) }
    }
}

impl<'a> Iterator for AlnumRuns<'a> {
    type Item = &'a str;

    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.text.as_bytes();
        while self.mask == 0 {
            self.block += 64;
            if self.block >= bytes.len() {
                return None;
            }
            self.mask = alnum_mask(bytes, self.block);
        }
        let offset = self.mask.trailing_zeros();
        let start = self.block + offset as usize;
        let ones = (self.mask >> offset).trailing_ones();
        let end = if offset + ones < 64 {
            self.mask &= u64::MAX << (offset + ones);
            start + ones as usize
        } else {
            // The run reaches the end of this block: follow it through the next ones.
            loop {
                self.block += 64;
                if self.block >= bytes.len() {
                    self.mask = 0;
                    break bytes.len();
                }
                let mask = alnum_mask(bytes, self.block);
                let ones = mask.trailing_ones();
                if ones < 64 {
                    self.mask = mask & (u64::MAX << ones);
                    break self.block + ones as usize;
                }
            }
        };
        // Both ends sit next to an ASCII byte of the run, so on character boundaries.
        Some(&self.text[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic inputs: every byte value, mixed with the ones that matter here.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn byte(&mut self) -> u8 {
            const INTERESTING: &[u8] = b"aAzZ09@[`{/:\x00\x7f\x80\xff%.-_ \\";
            let r = self.next();
            if r.is_multiple_of(3) {
                (r >> 8) as u8
            } else {
                INTERESTING[(r >> 8) as usize % INTERESTING.len()]
            }
        }

        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let len = (self.next() % (max as u64 + 1)) as usize;
            (0..len).map(|_| self.byte()).collect()
        }

        /// A valid UTF-8 text of ASCII runs, separators and multi-byte characters.
        fn text(&mut self, max: usize) -> String {
            let len = (self.next() % (max as u64 + 1)) as usize;
            (0..len)
                .map(|_| match self.next() % 10 {
                    0 => 'é',
                    1 => '€',
                    2 => ' ',
                    3 => '\\',
                    4..=6 => (b'a' + (self.next() % 26) as u8) as char,
                    7 => (b'A' + (self.next() % 26) as u8) as char,
                    _ => (b'0' + (self.next() % 10) as u8) as char,
                })
                .collect()
        }
    }

    #[test]
    fn byte_tests_agree_with_their_definitions() {
        for b in 0..=255u8 {
            let word = ONES * u64::from(b);
            assert_eq!(fold(word), ONES * u64::from(b.to_ascii_lowercase()), "fold {b:#x}");
            assert_eq!(alnum_bytes(word) != 0, b.is_ascii_alphanumeric(), "alnum {b:#x}");
            assert_eq!(zero_bytes(word) != 0, b == 0, "zero {b:#x}");
            // One byte among others: no test leaks into a neighbour.
            for other in [0u8, b'a', b'Z', 0x80, 0xff] {
                let mixed = (ONES * u64::from(other)) & !0xff00 | (u64::from(b) << 8);
                assert_eq!(gather(alnum_bytes(mixed)) >> 1 & 1 == 1, b.is_ascii_alphanumeric());
                assert_eq!(gather(zero_bytes(mixed)) >> 1 & 1 == 1, b == 0);
                assert_eq!((fold(mixed) >> 8) as u8, b.to_ascii_lowercase());
            }
        }
    }

    #[test]
    fn comparisons_agree_with_the_standard_library() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let a = g.bytes(40);
            let mut b = a.clone();
            if g.next().is_multiple_of(2) {
                for byte in &mut b {
                    if g.next().is_multiple_of(3) {
                        *byte = byte.to_ascii_uppercase();
                    }
                }
            }
            if g.next().is_multiple_of(4) && !b.is_empty() {
                let i = (g.next() % b.len() as u64) as usize;
                b[i] = g.byte();
            }
            if g.next().is_multiple_of(8) {
                b = g.bytes(40);
            }
            assert_eq!(eq(&a, &b), a == b, "{a:?} == {b:?}");
            assert_eq!(eq_ignore_ascii_case(&a, &b), a.eq_ignore_ascii_case(&b), "{a:?} ~ {b:?}");
        }
    }

    #[test]
    fn find_agrees_with_a_byte_by_byte_search() {
        let naive = |hay: &[u8], needle: &[u8], from: usize| {
            (from..=hay.len().checked_sub(needle.len())?)
                .find(|&at| hay[at..][..needle.len()].eq_ignore_ascii_case(needle))
        };
        let mut g = Gen(42);
        for _ in 0..20_000 {
            let hay = g.bytes(150);
            let needle = match g.next() % 3 {
                0 if hay.len() > 2 => {
                    let at = (g.next() % (hay.len() as u64 - 1)) as usize;
                    let len = 1 + (g.next() % (hay.len() - at) as u64) as usize;
                    hay[at..at + len].to_ascii_uppercase()
                }
                _ => {
                    let mut n = g.bytes(4);
                    if n.is_empty() {
                        n.push(g.byte());
                    }
                    n
                }
            };
            let from = (g.next() % (hay.len() as u64 + 2)) as usize;
            assert_eq!(
                find_ignore_ascii_case(&hay, &needle, from),
                naive(&hay, &needle, from),
                "{hay:?} {needle:?} from {from}"
            );
        }
    }

    #[test]
    fn runs_are_the_alphanumeric_runs() {
        let naive = |text: &str| -> Vec<String> {
            text.split(|c: char| !c.is_ascii_alphanumeric())
                .filter(|t| !t.is_empty())
                .map(String::from)
                .collect()
        };
        let mut g = Gen(7);
        let mut texts: Vec<String> = (0..5_000).map(|_| g.text(300)).collect();
        // Runs that end, start and span exactly at 64-byte block boundaries.
        for len in [63, 64, 65, 127, 128, 129, 192] {
            texts.push("a".repeat(len));
            texts.push(format!("{}-{}", "b".repeat(len), "c".repeat(len)));
            texts.push(format!("{} x", "é".repeat(len / 2)));
        }
        texts.push(String::new());
        for text in &texts {
            let runs: Vec<String> = AlnumRuns::new(text).map(String::from).collect();
            assert_eq!(runs, naive(text), "{text:?}");
        }
    }
}
