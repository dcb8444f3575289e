//! [`LoadReport`]: what a successful load did.

use std::fmt;

use super::error::Quoted;

/// What a successful load did, as PyTorch's `_IncompatibleKeys` plus what loaded.
///
/// ```
/// # use ckpt_core as ckpt;
/// use ckpt::{StateDict, Tensor};
///
/// let mut model = Tensor::zeros(ckpt::DType::F64, &[2])?; // one tensor, keyed ""
/// let mut state = indexmap::IndexMap::new();
/// state.insert(String::new(), Tensor::from(ndarray::array![1.0f32, 2.0]));
/// state.insert("extra".to_owned(), Tensor::scalar(0i64));
/// let report = model.load_state_dict(&state, false)?;
/// assert_eq!(report.loaded_keys, [""]);
/// assert_eq!(report.cast_keys, [""]); // F32 into F64
/// assert_eq!(report.unexpected_keys, ["extra"]);
/// assert_eq!(report.to_string(), r#"1 loaded; missing keys: []; unexpected keys: ["extra"]"#);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
#[must_use = "a non-strict load reports its missing and unexpected keys here"]
pub struct LoadReport {
    /// Keys copied into the model, in the model's order.
    pub loaded_keys: Vec<String>,
    /// Keys of the model that the source lacked (only in non-strict loads).
    pub missing_keys: Vec<String>,
    /// Keys of the source that the model lacks (only in non-strict loads).
    pub unexpected_keys: Vec<String>,
    /// Loaded keys whose tensors were cast to the model's dtype.
    pub cast_keys: Vec<String>,
    /// Keys left as they were because the shapes differ (only with
    /// [`StateDictOptions::skip_shape_mismatches`](super::StateDictOptions::skip_shape_mismatches)).
    pub skipped_shape_mismatches: Vec<String>,
    /// The rules of [`StateDictOptions::key_map`](super::StateDictOptions::key_map), as displayed, that matched no key of the source:
    /// usually a typo.
    pub unmatched_rules: Vec<String>,
    /// The prefix rule [`StateDictOptions::auto_prefix`](super::StateDictOptions::auto_prefix) applied, as displayed, if any.
    pub auto_prefix: Option<String>,
}

impl LoadReport {
    /// Whether every key matched: nothing missing, nothing unexpected.
    pub fn is_complete(&self) -> bool {
        self.missing_keys.is_empty() && self.unexpected_keys.is_empty()
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_complete() {
            write!(
                f,
                "<All keys matched successfully: {} loaded>",
                self.loaded_keys.len()
            )?;
        } else {
            write!(
                f,
                "{} loaded; missing keys: [{}]; unexpected keys: [{}]",
                self.loaded_keys.len(),
                Quoted(&self.missing_keys),
                Quoted(&self.unexpected_keys),
            )?;
        }
        if !self.skipped_shape_mismatches.is_empty() {
            write!(
                f,
                "; skipped for their shapes: [{}]",
                Quoted(&self.skipped_shape_mismatches)
            )?;
        }
        if !self.unmatched_rules.is_empty() {
            write!(
                f,
                "; key rules that matched nothing: [{}]",
                self.unmatched_rules.join(", ")
            )?;
        }
        Ok(())
    }
}
