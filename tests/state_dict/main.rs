//! State dicts: the derive, `load_state_dict` (strict, partial, transactional), key maps,
//! warm starts and DataParallel's `module.` keys.

#[path = "../common/mod.rs"]
mod common;

mod dataparallel;
mod derive;
mod keymap;
mod load;
mod warm_start;
