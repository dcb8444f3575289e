//! A value as a [`TensorSource`]: its tensors under their flattened keys.

use std::borrow::Cow;

use super::Value;
use crate::state::{Metadata, TensorSource};
use crate::tensor::TensorView;

impl TensorSource for Value<'_> {
    fn get_tensor(&self, key: &str) -> Option<TensorView<'_>> {
        self.lookup(key).and_then(Value::as_tensor)
    }

    fn tensor_keys(&self) -> Box<dyn Iterator<Item = Cow<'_, str>> + '_> {
        // A flat state dict (the usual case) lends its keys; nested trees build theirs.
        if let Value::Map(map) = self
            && map.values().all(|v| matches!(v, Value::Tensor(_)))
        {
            return Box::new(map.keys().map(|k| match k.as_str() {
                Some(s) => Cow::Borrowed(s),
                None => Cow::Owned(k.to_string()),
            }));
        }
        Box::new(self.tensors().into_iter().map(|(k, _)| Cow::Owned(k)))
    }

    fn metadata(&self) -> Option<&Metadata> {
        Value::metadata(self)
    }

    fn defect(&self) -> Option<String> {
        match self {
            Value::Defect(defect) => Some(defect.to_string()),
            _ => None,
        }
    }
}
