//! A Bloom filter over 64-bit hashes (`index::hash` of tokens and values), written by hand: it
//! is a bit array and one loop, smaller than any crate's API around it. A sealed head block
//! keeps one in memory so that a needle query over fresh data skips the blocks that cannot
//! hold its tokens or IDs, as the segment index does after a flush.
//!
//! Ten bits and seven probes per key give about 1% false positives; a false positive only
//! costs a block read in vain, never a wrong answer. Probe `i` of hash `h` is bit
//! `(lo + i * hi) mod m` of the array, with `lo` and `hi` the hash's halves (Kirsch and
//! Mitzenmacher's double hashing).

const BITS_PER_KEY: usize = 10;
const PROBES: u64 = 7;

#[derive(Debug, Clone, PartialEq)]
pub struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    /// A filter holding `hashes` (duplicates allowed; sized for the distinct ones).
    pub fn from_hashes(hashes: &mut Vec<u64>) -> Bloom {
        hashes.sort_unstable();
        hashes.dedup();
        let bits = (hashes.len() * BITS_PER_KEY).max(64);
        let mut b = Bloom {
            words: vec![0; bits.div_ceil(64)],
        };
        for &h in hashes.iter() {
            b.insert(h);
        }
        b
    }

    fn bits(&self) -> u64 {
        self.words.len() as u64 * 64
    }

    fn insert(&mut self, h: u64) {
        for p in positions(h, self.bits()) {
            self.words[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    /// False when `h` was certainly not inserted.
    pub fn may_contain(&self, h: u64) -> bool {
        positions(h, self.bits()).all(|p| self.words[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.words.len() * 8
    }
}

/// The bits of an `m`-bit array that hash `h` sets.
fn positions(h: u64, m: u64) -> impl Iterator<Item = u64> {
    let (lo, hi) = (h & 0xffff_ffff, (h >> 32) | 1);
    (0..PROBES).map(move |i| lo.wrapping_add(i.wrapping_mul(hi)) % m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_what_was_inserted_and_rejects_most_else() {
        let mut keys: Vec<u64> = (0..5000u64)
            .map(|i| crate::storage::index::hash(&i.to_le_bytes()))
            .collect();
        let b = Bloom::from_hashes(&mut keys);
        assert!(keys.iter().all(|h| b.may_contain(*h)));
        let false_hits = (5000..105_000u64)
            .filter(|i| b.may_contain(crate::storage::index::hash(&i.to_le_bytes())))
            .count();
        // About 1% by design; 3% would mean the probes are broken.
        assert!(false_hits < 3000, "{false_hits} false positives in 100000");
        assert!(!Bloom::from_hashes(&mut Vec::new()).may_contain(42));
    }
}
