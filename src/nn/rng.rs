//! [`Rng`]: the small seeded generator behind layer initialisation and dropout.

/// A seeded pseudo-random generator (SplitMix64), for initialising layers and for dropout masks.
///
/// SplitMix64 (Steele, Lea and Flood, 2014) passes BigCrush and is a dozen lines, which is all
/// initialisation and dropout need; it makes no attempt to reproduce PyTorch's random streams, so
/// a layer built here has PyTorch's distributions, not PyTorch's numbers. Load a state dict to
/// get those.
///
/// ```
/// use ckpt::nn::Rng;
///
/// let mut a = Rng::seed(7);
/// let mut b = Rng::seed(7);
/// let x = a.uniform(-1.0, 1.0);
/// assert_eq!(x, b.uniform(-1.0, 1.0));
/// assert!((-1.0..1.0).contains(&x));
/// ```
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose stream is determined by `seed`.
    pub fn seed(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform sample from `[0, 1)` with 24 random bits, every `f32` of that grid equally likely.
    pub fn unit(&mut self) -> f32 {
        // The top 24 bits fit f32's mantissa exactly, so the result is below 1.
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// A uniform sample from `[low, high)`, as `torch.nn.init.uniform_`.
    pub fn uniform(&mut self, low: f32, high: f32) -> f32 {
        low + (high - low) * self.unit()
    }

    /// A sample from the standard normal distribution (Box–Muller), as `torch.nn.init.normal_`.
    pub fn normal(&mut self) -> f32 {
        // 1 - unit() lies in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - f64::from(self.unit());
        let u2 = f64::from(self.unit());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
    }
}

impl Default for Rng {
    /// A generator seeded with 0.
    fn default() -> Self {
        Rng::seed(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_and_normal_have_the_right_moments() {
        let mut rng = Rng::seed(1);
        let n = 20_000;
        let xs: Vec<f32> = (0..n).map(|_| rng.uniform(-2.0, 2.0)).collect();
        assert!(xs.iter().all(|x| (-2.0..2.0).contains(x)));
        let mean = xs.iter().sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.05, "uniform mean {mean}");
        let ys: Vec<f32> = (0..n).map(|_| rng.normal()).collect();
        let mean = ys.iter().sum::<f32>() / n as f32;
        let var = ys.iter().map(|y| (y - mean).powi(2)).sum::<f32>() / n as f32;
        assert!(mean.abs() < 0.05, "normal mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "normal variance {var}");
    }

    #[test]
    fn seeds_give_distinct_streams() {
        assert_ne!(Rng::seed(1).next_u64(), Rng::seed(2).next_u64());
    }
}
