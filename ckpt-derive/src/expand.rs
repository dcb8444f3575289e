//! Code generation.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::DeriveInput;
use syn::spanned::Spanned;

use crate::ast::{Field, Input, Kind, Role};
use crate::attr::Errors;
use crate::{generics, valid};

pub(crate) fn derive(input: &DeriveInput) -> syn::Result<TokenStream> {
    let mut errors = Errors::default();
    let parsed = Input::from_syn(input, &mut errors)?;
    valid::validate(&parsed, &mut errors);
    errors.finish()?;
    Ok(impl_state_dict(&parsed))
}

fn impl_state_dict(input: &Input<'_>) -> TokenStream {
    let ident = input.ident;
    let name = ident.to_string();
    let (impl_generics, ty_generics, _) = input.generics.split_for_impl();
    let where_clause = generics::where_clause(input);

    let mut visit = Vec::new();
    let mut visit_mut = Vec::new();
    let mut set_training = Vec::new();
    let mut modes = Vec::new();
    let mut modules = Vec::new();
    let mut flag = None;
    for field in &input.fields {
        let member = &field.member;
        let ty = field.ty;
        match field.kind() {
            Kind::Skip => {}
            Kind::Training => {
                // Spanned on the type, so a field that is not a `bool` is the error's target.
                let flag_ref = quote_spanned!(ty.span()=> {
                    let __flag: &mut ::core::primitive::bool = &mut self.#member;
                    *__flag = __training;
                });
                set_training.push(flag_ref);
                flag = Some(quote_spanned!(ty.span()=> {
                    let __flag: &::core::primitive::bool = &self.#member;
                    ::core::option::Option::Some(*__flag)
                }));
            }
            Kind::State { segment, role } => {
                let role = match role {
                    Role::Inherited => quote!(__role),
                    Role::Buffer => quote!(__role.at_least(::ckpt::__private::Role::Buffer)),
                    Role::NonPersistent => {
                        quote!(__role.at_least(::ckpt::__private::Role::NonPersistent))
                    }
                };
                let (push, pop) = match &segment {
                    Some(segment) => (quote!(__path.push(#segment);), quote!(__path.pop();)),
                    None => (quote!(), quote!()),
                };
                let trait_ = trait_path(field);
                // A flattened field is no module of its own: its modules are this one's.
                modules.push(match &segment {
                    Some(segment) => quote! {
                        __path.push(#segment);
                        __visitor(__path.as_str(), #trait_::as_module(&self.#member));
                        #trait_::visit_modules(&self.#member, __path, __visitor);
                        __path.pop();
                    },
                    None => quote! {
                        #trait_::visit_modules(&self.#member, __path, __visitor);
                    },
                });
                visit.push(quote! {
                    #push
                    #trait_::visit(&self.#member, __path, #role, __visitor);
                    #pop
                });
                visit_mut.push(quote! {
                    #push
                    #trait_::visit_mut(&mut self.#member, __path, #role, __visitor);
                    #pop
                });
                set_training.push(quote! {
                    #trait_::set_training(&mut self.#member, __training);
                });
                modes.push(quote! {
                    let __mode = ::ckpt::__private::merge_modes(
                        __mode,
                        #trait_::training_mode(&self.#member),
                    );
                });
            }
        }
    }
    let training_mode = flag.unwrap_or_else(|| {
        quote! {
            let __mode = ::core::option::Option::None;
            #(#modes)*
            __mode
        }
    });

    quote! {
        #[automatically_derived]
        impl #impl_generics ::ckpt::StateDict for #ident #ty_generics #where_clause {
            fn visit<'__a>(
                &'__a self,
                __path: &mut ::ckpt::__private::KeyPath,
                __role: ::ckpt::__private::Role,
                __visitor: &mut dyn ::ckpt::__private::Visitor<'__a>,
            ) {
                #(#visit)*
            }

            fn visit_mut(
                &mut self,
                __path: &mut ::ckpt::__private::KeyPath,
                __role: ::ckpt::__private::Role,
                __visitor: &mut dyn ::ckpt::__private::VisitorMut,
            ) {
                #(#visit_mut)*
            }

            fn set_training(&mut self, __training: ::core::primitive::bool) {
                #(#set_training)*
            }

            fn training_mode(&self) -> ::core::option::Option<::core::primitive::bool> {
                #training_mode
            }

            fn module_name(&self) -> &'static ::core::primitive::str {
                #name
            }

            fn version(&self) -> ::core::option::Option<::core::primitive::i64> {
                ::core::option::Option::Some(1)
            }

            fn visit_modules<'__a>(
                &'__a self,
                __path: &mut ::ckpt::__private::KeyPath,
                __visitor: &mut dyn ::core::ops::FnMut(
                    &::core::primitive::str,
                    &'__a dyn ::ckpt::StateDict,
                ),
            ) {
                #(#modules)*
            }
        }
    }
}

/// `<FieldType as ::ckpt::__private::Field>`, spanned on the field's type so that a type which
/// is neither a leaf nor a module is reported on that field, once, in the words of `Field`'s
/// diagnostic (not with a list of every type that implements `StateDict`).
fn trait_path(field: &Field<'_>) -> TokenStream {
    let ty = field.ty;
    quote_spanned!(ty.span()=> <#ty as ::ckpt::__private::Field>)
}
