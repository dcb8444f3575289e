//! Layers of `torch.nn` on the CPU, with PyTorch's state-dict keys, shapes, dtypes, default
//! initialisation and numerics.
//!
//! Every layer derives (or implements) [`StateDict`](crate::StateDict), so a model built from
//! them saves and loads PyTorch's keys unchanged:
//!
//! ```
//! use ckpt::StateDict;
//! use ckpt::nn::{BatchNorm2d, Conv2d, Conv2dConfig, Linear, Rng};
//!
//! #[derive(StateDict)]
//! struct Net {
//!     conv: Conv2d,
//!     bn: BatchNorm2d,
//!     fc: Linear,
//! }
//!
//! let rng = &mut Rng::seed(0);
//! let net = Net {
//!     conv: Conv2d::new(3, 8, 3, Conv2dConfig::default().padding(1), rng),
//!     bn: BatchNorm2d::new(8),
//!     fc: Linear::new(8, 10, rng),
//! };
//! let keys: Vec<_> = net.state_dict().keys().map(str::to_owned).collect();
//! assert_eq!(keys[..3], ["conv.weight", "conv.bias", "bn.weight"]);
//! assert_eq!(keys[6], "bn.num_batches_tracked");
//! ```
//!
//! Parameters are `f32` ndarray arrays in public fields. Forward passes take ndarray arrays and
//! return [`NnError`] for inputs of the wrong shape. Layers with a mode (dropout, batch norm)
//! follow [`train`](crate::StateDict::train) and [`eval`](crate::StateDict::eval). Every
//! dropout draws from a generator ([`Rng`]) of its own, whose state is in
//! [`rng_state`](crate::StateDict::rng_state) rather than in the state dict, so that a
//! checkpoint can hold it and a resumed run draws the same masks.

mod activation;
mod attention;
mod batchnorm;
mod containers;
mod conv;
mod conv1d;
mod data_parallel;
mod dropout;
mod embedding;
mod error;
mod groupnorm;
mod gru;
mod init;
mod layernorm;
mod linear;
mod lstm;
mod mask;
mod padding;
mod pool;
mod rng;
mod rnn;
mod sequential;
mod transformer;
mod transformer_decoder;
mod transformer_encoder;

pub use self::activation::{Activation, GELU, ReLU};
pub use self::attention::{AttentionOptions, MultiheadAttention, MultiheadAttentionConfig};
pub use self::batchnorm::{BatchNorm1d, BatchNorm2d, BatchNormConfig};
pub use self::containers::{Module, ModuleDict, ModuleList};
pub use self::conv::{Conv2d, Conv2dConfig};
pub use self::conv1d::{Conv1d, Conv1dConfig};
pub use self::data_parallel::DataParallel;
pub use self::dropout::Dropout;
pub use self::embedding::{Embedding, EmbeddingConfig};
pub use self::error::NnError;
pub use self::groupnorm::GroupNorm;
pub use self::gru::GRU;
pub use self::layernorm::{LayerNorm, LayerNormConfig};
pub use self::linear::{Linear, LinearConfig};
pub use self::lstm::{LSTM, LstmState};
pub use self::mask::Mask;
pub use self::padding::{Padding, PaddingMode};
pub use self::pool::{AdaptiveAvgPool2d, MaxPool2d};
pub use self::rng::{RNG_STATE_LEN, Rng};
pub use self::rnn::RnnConfig;
pub use self::sequential::{Layer, Sequential};
pub use self::transformer::TransformerLayerConfig;
pub use self::transformer_decoder::{DecoderMasks, TransformerDecoder, TransformerDecoderLayer};
pub use self::transformer_encoder::{EncoderMasks, TransformerEncoder, TransformerEncoderLayer};
