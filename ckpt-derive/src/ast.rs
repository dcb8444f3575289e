//! A typed view of the derive input that keeps the original tokens for spans.

use proc_macro2::Span;
use quote::quote;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Error, Fields, Generics, Ident, Index, Member, Type};

use crate::attr::{self, Errors, FieldAttrs};

pub(crate) struct Input<'a> {
    pub(crate) ident: &'a Ident,
    pub(crate) generics: &'a Generics,
    pub(crate) fields: Vec<Field<'a>>,
}

pub(crate) struct Field<'a> {
    pub(crate) original: &'a syn::Field,
    pub(crate) member: Member,
    pub(crate) ty: &'a Type,
    pub(crate) attrs: FieldAttrs,
}

/// How a field takes part in the state dict.
pub(crate) enum Kind {
    /// Ignored entirely.
    Skip,
    /// The `bool` that holds the module's mode.
    Training,
    /// A module or leaf whose keys go under `segment`, or directly under the parent.
    State { segment: Option<String>, role: Role },
}

#[derive(Clone, Copy)]
pub(crate) enum Role {
    Inherited,
    Buffer,
    NonPersistent,
}

impl Field<'_> {
    /// The key segment this field contributes: its rename, name or index.
    pub(crate) fn segment(&self) -> String {
        match (&self.attrs.rename, &self.member) {
            (Some(rename), _) => rename.value.value(),
            (None, Member::Named(ident)) => ident.unraw().to_string(),
            (None, Member::Unnamed(index)) => index.index.to_string(),
        }
    }

    /// The span of the tokens that fixed the key: the rename literal, else the field's name.
    pub(crate) fn segment_span(&self) -> Span {
        match (&self.attrs.rename, &self.member) {
            (Some(rename), _) => rename.span,
            (None, Member::Named(ident)) => ident.span(),
            (None, Member::Unnamed(_)) => self.original.span(),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        let attrs = &self.attrs;
        if attrs.skip.is_some() {
            return Kind::Skip;
        }
        if attrs.training.is_some() {
            return Kind::Training;
        }
        let role = match (&attrs.buffer, &attrs.persistent) {
            (Some(_), Some(p)) if !p.value => Role::NonPersistent,
            (Some(_), _) => Role::Buffer,
            (None, _) => Role::Inherited,
        };
        let segment = attrs.flatten.is_none().then(|| self.segment());
        Kind::State { segment, role }
    }
}

impl<'a> Input<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> syn::Result<Self> {
        let fields = match &input.data {
            Data::Struct(data) => &data.fields,
            Data::Enum(data) => {
                let (token, ident) = (data.enum_token, &input.ident);
                return Err(Error::new_spanned(
                    quote!(#token #ident),
                    "#[derive(StateDict)] supports structs only: an enum's tensors would change \
                     with its variant",
                ));
            }
            Data::Union(data) => {
                let (token, ident) = (data.union_token, &input.ident);
                return Err(Error::new_spanned(
                    quote!(#token #ident),
                    "#[derive(StateDict)] supports structs only, not unions",
                ));
            }
        };
        attr::container_attrs(&input.attrs, errors);
        let fields = match fields {
            Fields::Named(named) => named.named.iter().collect(),
            Fields::Unnamed(unnamed) => unnamed.unnamed.iter().collect(),
            Fields::Unit => Vec::new(),
        };
        let fields = fields
            .into_iter()
            .enumerate()
            .map(|(i, field)| Field {
                original: field,
                member: match &field.ident {
                    Some(ident) => Member::Named(ident.clone()),
                    None => Member::Unnamed(Index {
                        index: i as u32,
                        span: field.ty.span(),
                    }),
                },
                ty: &field.ty,
                attrs: attr::field_attrs(&field.attrs, errors),
            })
            .collect();
        Ok(Input {
            ident: &input.ident,
            generics: &input.generics,
            fields,
        })
    }
}
