//! The layers, checked from the code: every `use` and every path of `ckpt-core` and of the
//! facade is resolved to the module that defines what it names (following re-exports), and
//!
//! - the top-level modules of `ckpt-core` only use the layers listed before them in `LAYERS`;
//! - in every folder, the modules side by side use each other without a circle (a subfolder
//!   counts as one module; a folder's `mod.rs` and its children may use each other).
//!
//! A failure names the modules and the files that tie them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The layers of `ckpt-core`, bottom first: each may use only the ones before it.
const LAYERS: [&str; 15] = [
    "dtype",
    "device",
    "tensor",
    "shard",
    "state",
    "keymap",
    "loading",
    "state_dict",
    // candle's tensors and layers as state dicts: leaves and `StateDict` impls only.
    "candle",
    "value",
    "storage",
    "format",
    "file",
    // sharded checkpoints of multi-rank jobs, built on `file`'s options and errors.
    "distributed",
    "model",
];

type ModPath = Vec<String>;

/// What one module file declares and uses.
#[derive(Default)]
struct Module {
    file: PathBuf,
    /// Names of the items, modules and macros it defines.
    defines: BTreeSet<String>,
    /// `pub use` re-exports: name -> absolute path of what it names.
    reexports: BTreeMap<String, ModPath>,
    /// Every path it uses, absolute.
    uses: Vec<ModPath>,
}

struct Crate {
    modules: BTreeMap<ModPath, Module>,
}

/// The module path of a source file below `src`.
fn module_path(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    match last.as_str() {
        "lib.rs" | "mod.rs" => {}
        other => parts.push(other.trim_end_matches(".rs").to_owned()),
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // A binary is a crate of its own, which uses the library only by its name.
            if path.file_name().is_some_and(|n| n == "bin") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Turns a path written in module `here` into an absolute one, if it names something of this
/// crate: `crate::a`, `self::a`, `super::a`, or `a` for a module declared in `here`.
fn absolute(here: &[String], segments: &[String], children: &BTreeSet<String>) -> Option<ModPath> {
    let (first, rest) = segments.split_first()?;
    let mut base: ModPath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => here.to_vec(),
        "super" => {
            let mut base = here.to_vec();
            base.pop();
            let mut rest = rest;
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        name if children.contains(name) => {
            let mut base = here.to_vec();
            base.push(name.to_owned());
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        _ => return None,
    };
    base.extend(rest.iter().cloned());
    Some(base)
}

/// Every path of a `use` tree, with the name it binds.
fn use_paths(tree: &syn::UseTree, prefix: &mut Vec<String>, out: &mut Vec<(ModPath, String)>) {
    match tree {
        syn::UseTree::Path(p) => {
            prefix.push(p.ident.to_string());
            use_paths(&p.tree, prefix, out);
            prefix.pop();
        }
        syn::UseTree::Name(n) => {
            let name = n.ident.to_string();
            if name == "self" {
                let bound = prefix.last().cloned().unwrap_or_default();
                out.push((prefix.clone(), bound));
            } else {
                let mut path = prefix.clone();
                path.push(name.clone());
                out.push((path, name));
            }
        }
        syn::UseTree::Rename(r) => {
            let mut path = prefix.clone();
            path.push(r.ident.to_string());
            out.push((path, r.rename.to_string()));
        }
        syn::UseTree::Glob(_) => out.push((prefix.clone(), "*".to_owned())),
        syn::UseTree::Group(g) => {
            for item in &g.items {
                use_paths(item, prefix, out);
            }
        }
    }
}

/// Collects the paths a file writes outside `use` items.
#[derive(Default)]
struct Paths(Vec<Vec<String>>);

impl<'ast> Visit<'ast> for Paths {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        self.0
            .push(path.segments.iter().map(|s| s.ident.to_string()).collect());
        syn::visit::visit_path(self, path);
    }

    fn visit_item_use(&mut self, _: &'ast syn::ItemUse) {}
}

fn load(src: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let mut parsed = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        parsed.push((module_path(src, &file), file, ast));
    }
    let mut modules = BTreeMap::new();
    for (path, file, ast) in &parsed {
        let mut module = Module {
            file: file.clone(),
            ..Module::default()
        };
        let children: BTreeSet<String> = ast
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Mod(m) => Some(m.ident.to_string()),
                _ => None,
            })
            .collect();
        for item in &ast.items {
            let defined = match item {
                syn::Item::Struct(i) => Some(i.ident.to_string()),
                syn::Item::Enum(i) => Some(i.ident.to_string()),
                syn::Item::Union(i) => Some(i.ident.to_string()),
                syn::Item::Trait(i) => Some(i.ident.to_string()),
                syn::Item::Fn(i) => Some(i.sig.ident.to_string()),
                syn::Item::Type(i) => Some(i.ident.to_string()),
                syn::Item::Const(i) => Some(i.ident.to_string()),
                syn::Item::Static(i) => Some(i.ident.to_string()),
                syn::Item::Mod(i) => Some(i.ident.to_string()),
                syn::Item::Macro(i) => i.ident.as_ref().map(ToString::to_string),
                _ => None,
            };
            module.defines.extend(defined);
            if let syn::Item::Use(u) = item {
                let mut found = Vec::new();
                use_paths(&u.tree, &mut Vec::new(), &mut found);
                let public = !matches!(u.vis, syn::Visibility::Inherited);
                for (segments, bound) in found {
                    if let Some(abs) = absolute(path, &segments, &children) {
                        if public {
                            module.reexports.insert(bound, abs.clone());
                        }
                        module.uses.push(abs);
                    }
                }
            }
        }
        let mut paths = Paths::default();
        paths.visit_file(ast);
        for segments in paths.0 {
            if let Some(abs) = absolute(path, &segments, &children) {
                module.uses.push(abs);
            }
        }
        modules.insert(path.clone(), module);
    }
    Crate { modules }
}

impl Crate {
    /// The module that defines what `path` names, following re-exports; `None` for a path
    /// into something that is not a module of this crate (an associated item, a variant).
    fn defining(&self, path: &[String], depth: usize) -> Option<ModPath> {
        if depth > 16 {
            return None;
        }
        // The longest prefix that is a module.
        let split = (0..=path.len())
            .rev()
            .find(|&n| self.modules.contains_key(&path[..n]))?;
        let (module, rest) = (&path[..split], &path[split..]);
        let Some(name) = rest.first() else {
            return Some(module.to_vec());
        };
        let m = &self.modules[module];
        if let Some(target) = m.reexports.get(name) {
            let mut next = target.clone();
            next.extend(rest[1..].iter().cloned());
            return self
                .defining(&next, depth + 1)
                .or_else(|| Some(module.to_vec()));
        }
        Some(module.to_vec())
    }

    /// Every edge between modules: (user, defining module, the user's file).
    fn edges(&self) -> Vec<(ModPath, ModPath, PathBuf)> {
        let mut edges = Vec::new();
        for (from, module) in &self.modules {
            for used in &module.uses {
                if let Some(to) = self.defining(used, 0)
                    && &to != from
                {
                    edges.push((from.clone(), to, module.file.clone()));
                }
            }
        }
        edges
    }
}

/// The child of `parent` that `module` lies in, if it lies below `parent`.
fn child_of(parent: &[String], module: &[String]) -> Option<String> {
    (module.len() > parent.len() && module.starts_with(parent))
        .then(|| module[parent.len()].clone())
}

/// A circle in a directed graph, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            match state.get(next.as_str()) {
                Some(1) => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut circle = stack[at..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(_) => {}
                None => {
                    if let Some(circle) = visit(next, graph, state, stack) {
                        return Some(circle);
                    }
                }
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if !state.contains_key(node.as_str())
            && let Some(circle) = visit(node, graph, &mut state, &mut Vec::new())
        {
            return Some(circle);
        }
    }
    None
}

/// Checks that the modules side by side in every folder of `krate` use each other without a
/// circle; returns every circle found, with the files that tie it.
fn sibling_circles(krate: &Crate) -> Vec<String> {
    let edges = krate.edges();
    let mut failures = Vec::new();
    for parent in krate.modules.keys() {
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut files: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for (from, to, file) in &edges {
            if let (Some(a), Some(b)) = (child_of(parent, from), child_of(parent, to))
                && a != b
            {
                graph.entry(a.clone()).or_default().insert(b.clone());
                files
                    .entry((a, b))
                    .or_default()
                    .insert(file.display().to_string());
            }
        }
        if let Some(circle) = find_circle(&graph) {
            let ties: Vec<String> = circle
                .windows(2)
                .map(|w| {
                    let by = &files[&(w[0].clone(), w[1].clone())];
                    format!(
                        "{} -> {} (in {})",
                        w[0],
                        w[1],
                        by.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                })
                .collect();
            failures.push(format!(
                "a circle among the modules of `{}`: {}",
                if parent.is_empty() {
                    "crate".to_owned()
                } else {
                    parent.join("::")
                },
                ties.join("; ")
            ));
        }
    }
    failures
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_core_layers_only_use_the_layers_below_them() {
    let core = load(&root().join("ckpt-core/src"));
    let top: BTreeSet<&str> = core
        .modules
        .keys()
        .filter(|p| p.len() == 1)
        .map(|p| p[0].as_str())
        .collect();
    let listed: BTreeSet<&str> = LAYERS.iter().copied().collect();
    assert_eq!(
        top, listed,
        "every top-level module of ckpt-core is a layer of LAYERS"
    );
    let mut failures = Vec::new();
    for (from, to, file) in core.edges() {
        let (Some(a), Some(b)) = (from.first(), to.first()) else {
            continue;
        };
        let rank = |m: &str| LAYERS.iter().position(|l| *l == m).unwrap();
        if a != b && rank(a) < rank(b) {
            failures.push(format!(
                "{} (layer {a}) uses {} of layer {b}, which comes after it",
                file.display(),
                to.join("::")
            ));
        }
    }
    failures.sort();
    failures.dedup();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn no_folder_has_modules_that_use_each_other_in_a_circle() {
    let mut failures = sibling_circles(&load(&root().join("ckpt-core/src")));
    failures.extend(sibling_circles(&load(&root().join("src"))));
    failures.extend(sibling_circles(&load(&root().join("ckpt-derive/src"))));
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_check_finds_circles_and_back_edges() {
    // The checker itself, on a made-up graph: a circle is found and reported in order.
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(find_circle(&acyclic), None);
    // And resolution follows re-exports to the defining module.
    let core = load(&root().join("ckpt-core/src"));
    let path = |s: &str| s.split("::").map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(core.defining(&path("Tensor"), 0), Some(path("tensor")));
    assert_eq!(
        core.defining(&path("tensor::TensorView"), 0),
        Some(path("tensor::view"))
    );
    assert_eq!(
        core.defining(&path("loading::LoadError"), 0),
        Some(path("loading::error"))
    );
}
