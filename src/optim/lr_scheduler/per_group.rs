//! [`PerGroup`]: a setting given once for every parameter group or once per group.

/// A setting for every parameter group (`max_lr=0.1`) or one per group (`max_lr=[0.1, 0.01]`),
/// as PyTorch's schedulers take them.
#[derive(Clone, Debug, PartialEq)]
pub enum PerGroup {
    /// The same value for every group.
    All(f64),
    /// One value per group, in group order.
    Each(Vec<f64>),
}

impl PerGroup {
    /// One value per group, or PyTorch's error if the list has another length.
    pub(super) fn resolve(&self, name: &str, groups: usize) -> Result<Vec<f64>, String> {
        match self {
            PerGroup::All(value) => Ok(vec![*value; groups]),
            PerGroup::Each(values) if values.len() == groups => Ok(values.clone()),
            PerGroup::Each(values) => Err(format!(
                "{name} must have the same length as optimizer.param_groups. {name} has {} values, param_groups has {groups}.",
                values.len()
            )),
        }
    }
}

impl From<f64> for PerGroup {
    fn from(value: f64) -> Self {
        PerGroup::All(value)
    }
}

impl From<Vec<f64>> for PerGroup {
    fn from(values: Vec<f64>) -> Self {
        PerGroup::Each(values)
    }
}

impl<const N: usize> From<[f64; N]> for PerGroup {
    fn from(values: [f64; N]) -> Self {
        PerGroup::Each(values.to_vec())
    }
}
