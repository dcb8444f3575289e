//! [`Rng`]: the seeded generator behind layer initialisation and dropout, whose state travels
//! with the model.

use ndarray::Array1;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

use crate::StateDict;
use crate::state::{KeyPath, Leaf, Role, Visitor, VisitorMut};
use crate::tensor::{TensorError, TensorView};

/// The number of bytes of an [`Rng`]'s state: the 32-byte seed, the 8-byte stream and the
/// 16-byte word position, little-endian.
pub const RNG_STATE_LEN: usize = 56;

/// A seeded pseudo-random generator (`ChaCha8Rng` of `rand_chacha`: `ChaCha` with 8 rounds), for
/// initialising layers and for dropout masks.
///
/// Its stream depends on the seed alone, on every platform (`rand_chacha`'s generators are
/// deterministic and portable). It makes no attempt to reproduce PyTorch's random streams, so a layer built
/// here has PyTorch's distributions, not PyTorch's numbers: load a state dict to get those.
///
/// Its whole state is [`RNG_STATE_LEN`] bytes ([`state`](Rng::state)), the seed, stream and
/// word position that `rand_chacha` itself serializes. As a field of a module it is a
/// [`Role::RngState`] leaf of dtype `U8` and shape `[56]`, under the field's key: not in the
/// [`state_dict`](crate::StateDict::state_dict), which keeps PyTorch's keys, but in
/// [`rng_state`](crate::StateDict::rng_state), so that a checkpoint can hold it and a resumed
/// run draws what an uninterrupted one would (see [`Dropout`](super::Dropout)).
///
/// ```
/// use ckpt::nn::Rng;
///
/// let mut a = Rng::seed(7);
/// let mut b = Rng::seed(7);
/// let x = a.uniform(-1.0, 1.0);
/// assert_eq!(x, b.uniform(-1.0, 1.0));
/// assert!((-1.0..1.0).contains(&x));
///
/// // The state, saved and restored, continues the stream where it was.
/// let mut resumed = Rng::from_state(&a.state());
/// assert_eq!(resumed.next_u64(), a.next_u64());
/// ```
#[derive(Clone, Debug)]
pub struct Rng {
    chacha: ChaCha8Rng,
    /// `chacha`'s state as [`state`](Rng::state) gives it, kept current after every draw: the
    /// tensor a module's walk hands out, which cannot be computed behind `&self`.
    bytes: Array1<u8>,
}

impl Rng {
    /// A generator whose stream is determined by `seed`.
    pub fn seed(seed: u64) -> Self {
        Self::from_chacha(ChaCha8Rng::seed_from_u64(seed))
    }

    /// The generator whose state is `state`, as [`state`](Rng::state) gave it. Every value
    /// is a valid state.
    pub fn from_state(state: &[u8; RNG_STATE_LEN]) -> Self {
        let mut seed = [0; 32];
        seed.copy_from_slice(&state[..32]);
        let mut stream = [0; 8];
        stream.copy_from_slice(&state[32..40]);
        let mut word_pos = [0; 16];
        word_pos.copy_from_slice(&state[40..]);
        let mut chacha = ChaCha8Rng::from_seed(seed);
        chacha.set_stream(u64::from_le_bytes(stream));
        chacha.set_word_pos(u128::from_le_bytes(word_pos));
        Self::from_chacha(chacha)
    }

    fn from_chacha(chacha: ChaCha8Rng) -> Self {
        let bytes = Array1::from(state_of(&chacha).to_vec());
        Rng { chacha, bytes }
    }

    /// The whole state: the seed, the stream and the word position (the number of 32-bit words
    /// drawn), little-endian.
    pub fn state(&self) -> [u8; RNG_STATE_LEN] {
        state_of(&self.chacha)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let bits = self.chacha.next_u64();
        // Only the word position moves as numbers are drawn.
        let word_pos = self.chacha.get_word_pos().to_le_bytes();
        for (byte, &new) in self.bytes.iter_mut().skip(40).zip(&word_pos) {
            *byte = new;
        }
        bits
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

fn state_of(chacha: &ChaCha8Rng) -> [u8; RNG_STATE_LEN] {
    let mut state = [0; RNG_STATE_LEN];
    state[..32].copy_from_slice(&chacha.get_seed());
    state[32..40].copy_from_slice(&chacha.get_stream().to_le_bytes());
    state[40..].copy_from_slice(&chacha.get_word_pos().to_le_bytes());
    state
}

impl Default for Rng {
    /// A generator seeded with 0.
    fn default() -> Self {
        Rng::seed(0)
    }
}

/// A generator is one [`Role::RngState`] leaf under its field's key, whatever the field's
/// attributes say: never a parameter an optimizer would update, never in the state dict.
impl StateDict for Rng {
    fn visit<'a>(&'a self, path: &mut KeyPath, role: Role, visitor: &mut dyn Visitor<'a>) {
        visitor.tensor(
            path.as_str(),
            Leaf::view(self),
            role.at_least(Role::RngState),
        );
    }

    fn visit_mut(&mut self, path: &mut KeyPath, role: Role, visitor: &mut dyn VisitorMut) {
        visitor.tensor(path.as_str(), self, role.at_least(Role::RngState));
    }
}

impl Leaf for Rng {
    fn view(&self) -> TensorView<'_> {
        Leaf::view(&self.bytes)
    }

    fn copy_from(&mut self, src: &TensorView<'_>) -> Result<(), TensorError> {
        let mut bytes = self.bytes.clone();
        Leaf::copy_from(&mut bytes, src)?;
        let mut state = [0; RNG_STATE_LEN];
        for (byte, &new) in state.iter_mut().zip(&bytes) {
            *byte = new;
        }
        *self = Rng::from_state(&state);
        Ok(())
    }

    /// The generator runs on the host wherever the model's tensors are, as a CPU generator
    /// drives PyTorch's CPU ops: a move to any device leaves it where it is.
    fn can_move_to(&self, _: crate::Device) -> bool {
        true
    }

    fn copy_to(
        &self,
        _: crate::Device,
    ) -> Result<Option<crate::Tensor>, crate::device::DeviceError> {
        Ok(None)
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

    /// The leaf always shows the current state, and a state copied in continues the stream,
    /// even in the middle of one of the 16-word blocks `ChaCha` computes at once.
    #[test]
    fn the_leaf_is_the_state_and_restores_it() {
        let mut rng = Rng::seed(3);
        for _ in 0..5 {
            rng.next_u64();
        }
        assert_eq!(
            Leaf::view(&rng)
                .to_array::<u8, ndarray::Ix1>()
                .unwrap()
                .to_vec(),
            rng.state().to_vec()
        );
        let saved = crate::Tensor::from(rng.bytes.clone());
        let expected: Vec<u64> = (0..40).map(|_| rng.next_u64()).collect();
        let mut resumed = Rng::seed(99);
        Leaf::copy_from(&mut resumed, &saved.view()).unwrap();
        let actual: Vec<u64> = (0..40).map(|_| resumed.next_u64()).collect();
        assert_eq!(actual, expected);
        assert_eq!(resumed.state(), rng.state());
    }
}
