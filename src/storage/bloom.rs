//! A Bloom filter over 64-bit hashes (`index::hash` of tokens and values), written by hand: it
//! is a bit array and one loop, smaller than any crate's API around it. Every columnar block
//! carries one (its filter section, see `columns`), so that a needle query skips the blocks
//! that cannot hold its tokens or IDs, in the head and in segments alike. Queries test the
//! section where it lies (a [`BloomView`] over the mapped bytes), without copying it.
//!
//! ```text
//! filter section := probes u8 | reserved [u8; 7] | words u64 LE *   (bits = 64 * words)
//! ```
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

    /// The filter as a block section.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.size());
        out.push(PROBES as u8);
        out.extend_from_slice(&[0; 7]);
        for w in &self.words {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }
}

/// A filter read in place from its encoded bytes.
#[derive(Debug, Clone, Copy)]
pub struct BloomView<'a> {
    probes: u64,
    words: &'a [u8],
}

impl<'a> BloomView<'a> {
    /// Reads an encoded filter; `None` when its shape is wrong.
    pub fn parse(bytes: &'a [u8]) -> Option<BloomView<'a>> {
        let (&probes, rest) = bytes.split_first()?;
        let words = rest.get(7..)?;
        (probes > 0 && !words.is_empty() && words.len() % 8 == 0).then_some(BloomView {
            probes: probes as u64,
            words,
        })
    }

    /// False when `h` was certainly not inserted.
    pub fn may_contain(&self, h: u64) -> bool {
        let m = self.words.len() as u64 * 8;
        probe_positions(h, m, self.probes).all(|p| {
            let at = (p / 64) as usize * 8;
            let word = u64::from_le_bytes(self.words[at..at + 8].try_into().unwrap_or([0; 8]));
            word & (1 << (p % 64)) != 0
        })
    }
}

/// The bits of an `m`-bit array that hash `h` sets.
fn positions(h: u64, m: u64) -> impl Iterator<Item = u64> {
    probe_positions(h, m, PROBES)
}

fn probe_positions(h: u64, m: u64, probes: u64) -> impl Iterator<Item = u64> {
    let (lo, hi) = (h & 0xffff_ffff, (h >> 32) | 1);
    (0..probes).map(move |i| lo.wrapping_add(i.wrapping_mul(hi)) % m)
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

    #[test]
    fn a_view_of_the_encoded_filter_answers_as_the_filter() {
        let mut keys: Vec<u64> = (0..3000u64)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15))
            .collect();
        let b = Bloom::from_hashes(&mut keys);
        let bytes = b.encode();
        let v = BloomView::parse(&bytes).unwrap();
        for h in (0..20_000u64).map(|i| i.wrapping_mul(0xff51_afd7_ed55_8ccd)) {
            assert_eq!(v.may_contain(h), b.may_contain(h));
        }
        assert!(BloomView::parse(&bytes[..bytes.len() - 3]).is_none());
        assert!(BloomView::parse(&bytes[..8]).is_none());
        assert!(BloomView::parse(&[]).is_none());
    }
}
