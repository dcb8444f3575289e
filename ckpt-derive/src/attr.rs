//! Parsing `#[state(...)]` attributes.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{Attribute, Error, LitBool, LitStr};

/// One setting, with the span of the tokens that gave it.
pub(crate) struct Setting<T> {
    pub(crate) span: Span,
    pub(crate) value: T,
}

/// The settings of one field.
#[derive(Default)]
pub(crate) struct FieldAttrs {
    pub(crate) rename: Option<Setting<LitStr>>,
    pub(crate) skip: Option<Setting<()>>,
    pub(crate) buffer: Option<Setting<()>>,
    pub(crate) persistent: Option<Setting<bool>>,
    pub(crate) flatten: Option<Setting<()>>,
    pub(crate) training: Option<Setting<()>>,
}

/// Error collection: every problem of the input is reported in one pass.
#[derive(Default)]
pub(crate) struct Errors(Vec<Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: Error) {
        self.0.push(error);
    }

    pub(crate) fn finish(self) -> syn::Result<()> {
        let mut errors = self.0.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                first.extend(errors);
                Err(first)
            }
        }
    }
}

fn set<T>(slot: &mut Option<Setting<T>>, span: Span, value: T, name: &str, errors: &mut Errors) {
    if slot.is_some() {
        errors.push(Error::new(
            span,
            format!("duplicate state attribute `{name}`"),
        ));
    } else {
        *slot = Some(Setting { span, value });
    }
}

/// Parses every `#[state(...)]` on a field; problems go to `errors`.
pub(crate) fn field_attrs(attrs: &[Attribute], errors: &mut Errors) -> FieldAttrs {
    let mut out = FieldAttrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("state")) {
        let parsed = attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            let span = path.span();
            if path.is_ident("rename") {
                // #[state(rename = "fc")]
                let lit: LitStr = meta.value()?.parse()?;
                set(&mut out.rename, lit.span(), lit, "rename", errors);
            } else if path.is_ident("skip") {
                // #[state(skip)]
                set(&mut out.skip, span, (), "skip", errors);
            } else if path.is_ident("buffer") {
                // #[state(buffer)]
                set(&mut out.buffer, span, (), "buffer", errors);
            } else if path.is_ident("persistent") {
                // #[state(buffer, persistent = false)]
                let lit: LitBool = meta.value()?.parse()?;
                set(&mut out.persistent, span, lit.value, "persistent", errors);
            } else if path.is_ident("flatten") {
                // #[state(flatten)]
                set(&mut out.flatten, span, (), "flatten", errors);
            } else if path.is_ident("training") {
                // #[state(training)]
                set(&mut out.training, span, (), "training", errors);
            } else {
                return Err(meta.error(
                    "unknown state attribute: expected `rename = \"..\"`, `skip`, `buffer`, \
                     `persistent = false`, `flatten` or `training`",
                ));
            }
            Ok(())
        });
        if let Err(error) = parsed {
            errors.push(error);
        }
    }
    out
}

/// Rejects `#[state(...)]` on the struct itself: every setting is per field.
pub(crate) fn container_attrs(attrs: &[Attribute], errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("state")) {
        errors.push(Error::new_spanned(
            attr,
            "#[state(...)] belongs on fields; the struct itself takes no state attributes",
        ));
    }
}
