//! Bounds for generic structs: `Field: StateDict` for fields whose types mention a type
//! parameter, and nothing else.

use std::collections::HashSet;

use proc_macro2::{TokenStream, TokenTree};
use quote::quote;
use syn::{Ident, Type, WhereClause, parse_quote};

use crate::ast::{Input, Kind};

pub(crate) fn where_clause(input: &Input<'_>) -> Option<WhereClause> {
    let params: HashSet<&Ident> = input.generics.type_params().map(|p| &p.ident).collect();
    let mut clause = input.generics.where_clause.clone();
    let mut seen: Vec<&Type> = Vec::new();
    for field in &input.fields {
        let ty = field.ty;
        let is_state = matches!(field.kind(), Kind::State { .. });
        if !is_state || seen.contains(&ty) || !mentions(&quote!(#ty), &params) {
            continue;
        }
        seen.push(ty);
        clause
            .get_or_insert_with(|| parse_quote!(where))
            .predicates
            .push(parse_quote!(#ty: ::ckpt::StateDict));
    }
    clause
}

fn mentions(tokens: &TokenStream, params: &HashSet<&Ident>) -> bool {
    tokens.clone().into_iter().any(|tree| match tree {
        TokenTree::Ident(ident) => params.contains(&ident),
        TokenTree::Group(group) => mentions(&group.stream(), params),
        _ => false,
    })
}
