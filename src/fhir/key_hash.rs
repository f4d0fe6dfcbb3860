//! The 64-bit hashes fhir2table keeps between runs (input content hashes and identifier keys in
//! `OUT/.fhir2table/_state.json`) and compares within one (resource ids in `compact`). They must not
//! change with the Rust release, so they are not `std`'s `DefaultHasher` (whose algorithm is not
//! promised) but SipHash-1-3 with both keys zero, from the `siphasher` crate, fed a fixed byte
//! encoding: a text is its UTF-8 bytes followed by `0xff` (a byte no UTF-8 text holds, so
//! consecutive texts cannot run into each other). These are the digests `DefaultHasher` gave
//! through Rust 1.95, so state files written before stay valid; the tests pin them. A long text
//! (a whole Bundle, for its key in the resource tables) goes in as its XXH3-64 digest
//! ([`KeyHasher::long_text`]), a published algorithm as fixed as SipHash.
//!
//! Beside them, [`FastHash`]: the hasher of in-memory maps keyed by input text, which is never
//! kept and may change.

use std::hash::{BuildHasherDefault, Hasher};

use siphasher::sip::SipHasher13;

/// A word-at-a-time multiplicative hash for maps that live within one run (Bundle fullUrls,
/// object keys and column addresses in the resource table builders), where SipHash showed up at
/// 12% of a run on one big Bundle. The keys come from the files being read, so resistance to
/// flooding buys nothing. Unlike [`KeyHasher`], it promises nothing between runs or releases:
/// never keep its hashes.
pub type FastHash = BuildHasherDefault<WordHasher>;

/// The hasher of [`FastHash`].
#[derive(Default)]
pub struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(K);
        }
    }

    /// Folded: the low bits, which pick a bucket, also get the high bits' mix (an address times
    /// the constant keeps the address's zero low bits).
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 32)
    }
}

/// Builds one persisted key from texts and bytes.
pub struct KeyHasher(SipHasher13);

impl KeyHasher {
    pub fn new() -> Self {
        KeyHasher(SipHasher13::new_with_keys(0, 0))
    }

    /// Adds a text, ended by `0xff` so that `("ab", "c")` and `("a", "bc")` differ.
    pub fn text(&mut self, text: &str) {
        self.0.write(text.as_bytes());
        self.0.write(&[0xff]);
    }

    /// Adds one byte (a tag telling alternatives apart).
    pub fn byte(&mut self, byte: u8) {
        self.0.write(&[byte]);
    }

    /// Adds a long text by its XXH3 digest (fed as 8 bytes), not byte by byte: SipHash over the
    /// text of every Bundle was 2.4% of a `--resources all` run, XXH3 (vectorised where the CPU
    /// allows) a fraction of that. XXH3-64 is a published algorithm with fixed test vectors, so
    /// its digests hold between runs and releases like SipHash's.
    pub fn long_text(&mut self, text: &str) {
        let digest = twox_hash::XxHash3_64::oneshot(text.as_bytes());
        self.0.write(&digest.to_le_bytes());
    }

    /// Adds raw bytes; content fed in pieces hashes as if fed at once.
    pub fn bytes(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }

    pub fn finish(&self) -> u64 {
        self.0.finish()
    }
}

impl Default for KeyHasher {
    fn default() -> Self {
        Self::new()
    }
}

/// The key of one text (a resource id).
pub fn text_key(text: &str) -> u64 {
    let mut hasher = KeyHasher::new();
    hasher.text(text);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XXH3-64 of the empty input and of "abc" (seed 0), as the algorithm's reference vectors
    /// give them: a Bundle's key depends on them.
    #[test]
    fn long_texts_are_hashed_by_the_reference_xxh3() {
        assert_eq!(twox_hash::XxHash3_64::oneshot(b""), 0x2d06800538d394c2);
        assert_eq!(twox_hash::XxHash3_64::oneshot(b"abc"), 0x78af5f94892f3950);
        let mut hasher = KeyHasher::new();
        hasher.long_text("abc");
        let mut by_hand = KeyHasher::new();
        by_hand.bytes(&0x78af5f94892f3950u64.to_le_bytes());
        assert_eq!(hasher.finish(), by_hand.finish());
    }

    /// Digests computed with `std::hash::DefaultHasher` (Rust 1.95): `Hash` of a `str`, and
    /// bytes written in pieces. A change here invalidates every saved state.
    #[test]
    fn digests_are_pinned_to_those_of_earlier_state_files() {
        assert_eq!(text_key(""), 0x30406ea523c53def);
        assert_eq!(text_key("p1"), 0x4325b42072048fcf);
        assert_eq!(
            text_key("0760add8-0681-174a-93e5-eb289b31bb42"),
            0x56c156edb5bb3252
        );
        let mut content = KeyHasher::new();
        for piece in b"{\"resourceType\":\"Patient\",\"id\":\"a\"}\n".chunks(3) {
            content.bytes(piece);
        }
        assert_eq!(content.finish(), 0xadf6ad84f504abd4);
        assert_eq!(KeyHasher::new().finish(), 0xd1fba762150c532c);
    }

    #[test]
    fn texts_are_delimited() {
        let key = |parts: &[&str]| {
            let mut hasher = KeyHasher::new();
            parts.iter().for_each(|part| hasher.text(part));
            hasher.finish()
        };
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
        assert_ne!(key(&["", "x"]), key(&["x", ""]));
    }
}
