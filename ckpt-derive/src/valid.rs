//! Checks on the parsed input: contradictory settings, bad and duplicate keys.

use std::collections::HashMap;

use syn::Error;

use crate::ast::{Field, Input, Kind};
use crate::attr::Errors;

pub(crate) fn validate(input: &Input<'_>, errors: &mut Errors) {
    let mut keys: HashMap<String, &Field<'_>> = HashMap::new();
    let mut training: Option<&Field<'_>> = None;
    for field in &input.fields {
        check_combinations(field, errors);
        match field.kind() {
            Kind::Skip => {}
            Kind::Training => {
                if let Some(first) = training {
                    errors.push(Error::new(
                        field
                            .attrs
                            .training
                            .as_ref()
                            .map_or_else(|| field.segment_span(), |s| s.span),
                        format!(
                            "only one field can hold the training flag; `{}` already does",
                            first.segment()
                        ),
                    ));
                } else {
                    training = Some(field);
                }
            }
            Kind::State { segment: None, .. } => {}
            Kind::State {
                segment: Some(key), ..
            } => {
                if let Some(problem) = malformed(&key) {
                    errors.push(Error::new(field.segment_span(), problem));
                } else if let Some(first) = keys.get(&key) {
                    errors.push(Error::new(
                        field.segment_span(),
                        format!(
                            "duplicate key `{key}`: field `{}` already maps to it",
                            member_name(first)
                        ),
                    ));
                } else {
                    keys.insert(key, field);
                }
            }
        }
    }
}

fn member_name(field: &Field<'_>) -> String {
    match &field.member {
        syn::Member::Named(ident) => ident.to_string(),
        syn::Member::Unnamed(index) => index.index.to_string(),
    }
}

/// Why `key` cannot be one segment of a dotted key path, if it cannot.
fn malformed(key: &str) -> Option<String> {
    if key.is_empty() {
        return Some("empty key: a state key segment needs at least one character".to_owned());
    }
    if key.contains('.') {
        return Some(format!(
            "malformed key `{key}`: a segment cannot contain `.`, which separates segments; \
             nest a struct instead"
        ));
    }
    if let Some(c) = key.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!(
            "malformed key {key:?}: a segment cannot contain {c:?}"
        ));
    }
    None
}

/// Settings that contradict each other, reported on the later one.
fn check_combinations(field: &Field<'_>, errors: &mut Errors) {
    let a = &field.attrs;
    let mut clash = |span, message: &str| errors.push(Error::new(span, message));
    if a.skip.is_some() {
        for (present, name) in [
            (a.rename.as_ref().map(|s| s.span), "rename"),
            (a.buffer.as_ref().map(|s| s.span), "buffer"),
            (a.persistent.as_ref().map(|s| s.span), "persistent"),
            (a.flatten.as_ref().map(|s| s.span), "flatten"),
            (a.training.as_ref().map(|s| s.span), "training"),
        ] {
            if let Some(span) = present {
                clash(
                    span,
                    &format!(
                        "`skip` cannot be combined with `{name}`: a skipped field has no state"
                    ),
                );
            }
        }
        return;
    }
    if a.training.is_some() {
        for (present, name) in [
            (a.rename.as_ref().map(|s| s.span), "rename"),
            (a.buffer.as_ref().map(|s| s.span), "buffer"),
            (a.persistent.as_ref().map(|s| s.span), "persistent"),
            (a.flatten.as_ref().map(|s| s.span), "flatten"),
        ] {
            if let Some(span) = present {
                clash(
                    span,
                    &format!(
                        "`training` cannot be combined with `{name}`: the training flag is a \
                         `bool`, not a tensor"
                    ),
                );
            }
        }
        return;
    }
    if let (Some(_), Some(rename)) = (&a.flatten, &a.rename) {
        clash(
            rename.span,
            "`flatten` cannot be combined with `rename`: a flattened field has no key segment",
        );
    }
    if let (None, Some(persistent)) = (&a.buffer, &a.persistent) {
        clash(
            persistent.span,
            "`persistent` applies to buffers: write `#[state(buffer, persistent = false)]`",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::malformed;

    #[test]
    fn keys() {
        assert!(malformed("fc").is_none());
        assert!(malformed("0").is_none());
        assert!(malformed("").is_some());
        assert!(malformed("a.b").is_some());
        assert!(malformed("a b").is_some());
    }
}
