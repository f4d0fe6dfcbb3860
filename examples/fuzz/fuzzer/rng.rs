//! A small deterministic random source (SplitMix64): the same `--seed` gives the same inputs on
//! every machine, without a dependency.

/// Pseudo-random numbers from one 64-bit state.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// An independent stream for one batch, so a batch can be regenerated from (seed, index).
    pub fn derive(seed: u64, stream: u64) -> Self {
        let mut rng = Rng(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }

    /// A number in `low..=high`.
    pub fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below(high - low + 1)
    }

    /// A size spread evenly over orders of magnitude from `low` to `high`, so small sizes are
    /// common and the largest still occur.
    pub fn magnitude(&mut self, low: usize, high: usize) -> usize {
        let (low, high) = ((low.max(1)) as f64, high as f64);
        let exponent = low.ln() + (high.ln() - low.ln()) * (self.next_u64() as f64 / u64::MAX as f64);
        (exponent.exp() as usize).clamp(low as usize, high as usize)
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: usize, denominator: usize) -> bool {
        self.below(denominator) < numerator
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
