//! The import graph of `src/`, file by file, read from the source text.
//!
//! Every `use` statement and every inline `crate::`/`super::`/`self::` path
//! is resolved to the file that *defines* the name it ends in: a name a
//! module only re-exports or imports (`pub use child::Error`, or a private
//! `use` that a child reaches through `super::`) is followed to where it is
//! defined. So `use super::Error` in `projection/reader.rs` is an edge to
//! `projection/error.rs`, not to `projection/mod.rs`, and a facade that
//! re-exports its children is not a circle with each of them.
//!
//! A re-export (`pub use`) binds a name but is not an edge of its own: a
//! facade's API is not a dependency of its code, and whoever uses the name
//! depends on the file that defines it.
//!
//! Test code is not part of the library's layering: files declared as
//! `mod tests`, and everything from a `#[cfg(test)]` line to the end of a
//! file (`#[cfg(test)]` or `#[cfg(all(test, ...))]` at the start of a
//! line), are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One file of `src/` as a module.
#[derive(Debug)]
pub struct Module {
    /// The file, relative to the crate root (`src/codec/dict.rs`).
    pub file: String,
    /// Its code, comments and test code removed.
    pub code: String,
    /// Lines of the whole file.
    pub lines: usize,
}

/// The library's modules and the edges between their files.
pub struct Graph {
    /// Every module, by module path.
    pub modules: BTreeMap<Vec<String>, Module>,
    /// file -> the files it uses.
    pub edges: BTreeMap<String, BTreeSet<String>>,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments, string contents and test code.
fn code_of(text: &str) -> String {
    let mut code = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        // `#[cfg(test)]`, `#[cfg(all(test, feature = "..."))]`: the test
        // module that ends a file.
        if line.starts_with("#[cfg(") && (line.contains("(test)") || line.contains("(test,")) {
            break;
        }
        if trimmed.starts_with("//") {
            continue;
        }
        // Strings can hold `crate::` in prose; blank them out.
        let mut in_string = false;
        let mut escaped = false;
        let mut previous = ' ';
        for c in line.chars() {
            if in_string {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    in_string = false;
                    code.push('"');
                }
                continue;
            }
            if c == '/' && previous == '/' {
                code.pop();
                break;
            }
            if c == '"' {
                in_string = true;
            }
            code.push(c);
            previous = c;
        }
        code.push('\n');
    }
    code
}

fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

/// One binding of a module: a name and the absolute path it stands for
/// (`None`: defined here).
type Bindings = BTreeMap<String, Option<Vec<String>>>;

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The names a module defines.
fn definitions(code: &str) -> BTreeSet<String> {
    const KINDS: [&str; 9] = [
        "fn ", "struct ", "enum ", "trait ", "const ", "static ", "type ", "mod ", "union ",
    ];
    let mut names = BTreeSet::new();
    for line in code.lines() {
        let mut rest = line.trim_start();
        for prefix in [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "async ",
            "unsafe ",
            "const ",
        ] {
            if let Some(r) = rest.strip_prefix(prefix) {
                rest = r.trim_start();
            }
        }
        for kind in KINDS {
            if let Some(r) = rest.strip_prefix(kind) {
                let name: String = r.chars().take_while(|c| is_ident_char(*c)).collect();
                if !name.is_empty() {
                    names.insert(name);
                }
            }
        }
        if let Some(r) = rest.strip_prefix("macro_rules! ") {
            names.insert(r.chars().take_while(|c| is_ident_char(*c)).collect());
        }
    }
    names
}

/// Expands a use tree (`a::{b, c::{d as e}}`) into (path, bound name) pairs.
fn expand(tree: &str, prefix: &[String], out: &mut Vec<(Vec<String>, String)>) {
    let tree = tree.trim();
    if let Some(brace) = tree.find('{') {
        let head: Vec<String> = tree[..brace]
            .split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let inner = &tree[brace + 1..tree.rfind('}').expect("closing brace")];
        let mut base = prefix.to_vec();
        base.extend(head);
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        expand(&inner[start..], &base, out);
        return;
    }
    if tree.is_empty() {
        return;
    }
    let (path, alias) = match tree.split_once(" as ") {
        Some((path, alias)) => (path, Some(alias.trim().to_string())),
        None => (tree, None),
    };
    let mut full = prefix.to_vec();
    full.extend(
        path.split("::")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string),
    );
    let Some(last) = full.last().cloned() else {
        return;
    };
    if last == "*" {
        return;
    }
    if last == "self" {
        full.pop();
        let name = alias.unwrap_or_else(|| full.last().cloned().unwrap_or_default());
        out.push((full, name));
        return;
    }
    out.push((full, alias.unwrap_or(last)));
}

/// The `use` statements of `code`, expanded; with `exports: false`, the
/// re-exports (`pub use`, `pub(crate) use`) are left out.
fn uses(code: &str, exports: bool) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        let after_at = &rest[at + 4..];
        if before.is_some_and(is_ident_char) {
            rest = after_at;
            continue;
        }
        let Some(end) = after_at.find(';') else {
            break;
        };
        let tree = &after_at[..end];
        let line_start = rest[..at].rfind('\n').map_or(0, |n| n + 1);
        let is_export = rest[line_start..at].trim_start().starts_with("pub");
        if (exports || !is_export) && !tree.contains('(') && !tree.contains('=') {
            expand(&tree.replace('\n', " "), &[], &mut out);
        }
        rest = &after_at[end..];
    }
    out
}

/// Inline paths that start at `crate`, `super` or `self`.
fn inline_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        let mut from = 0;
        while let Some(at) = code[from..].find(start) {
            let at = from + at;
            from = at + start.len();
            if code[..at].chars().last().is_some_and(is_ident_char) {
                continue;
            }
            let mut path = vec![start.trim_end_matches("::").to_string()];
            let mut rest = &code[at + start.len()..];
            loop {
                let ident: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
                if ident.is_empty() {
                    break;
                }
                rest = &rest[ident.len()..];
                path.push(ident);
                match rest.strip_prefix("::") {
                    Some(r) => rest = r,
                    None => break,
                }
            }
            if path.len() > 1 {
                out.push(path);
            }
        }
    }
    out
}

impl Graph {
    /// Reads `src/` (without `src/bin`, a crate of its own).
    pub fn read(root: &Path) -> Graph {
        let src = root.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut modules = BTreeMap::new();
        for file in files {
            let relative = file.strip_prefix(&src).expect("under src");
            if relative.starts_with("bin") {
                continue;
            }
            let path = module_path(relative);
            if path.last().is_some_and(|p| p == "tests") {
                continue;
            }
            let text = std::fs::read_to_string(&file).expect("readable source");
            modules.insert(
                path,
                Module {
                    file: format!("src/{}", relative.display()),
                    code: code_of(&text),
                    lines: text.lines().count(),
                },
            );
        }
        let mut bindings: BTreeMap<Vec<String>, Bindings> = BTreeMap::new();
        for (path, module) in &modules {
            let mut own: Bindings = definitions(&module.code)
                .into_iter()
                .map(|n| (n, None))
                .collect();
            for (used, name) in uses(&module.code, true) {
                if let Some(absolute) = absolute(&modules, path, &used) {
                    own.insert(name, Some(absolute));
                }
            }
            bindings.insert(path.clone(), own);
        }
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (path, module) in &modules {
            let targets = edges.entry(module.file.clone()).or_default();
            let mut paths: Vec<Vec<String>> = uses(&module.code, false)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            paths.extend(inline_paths(&module.code));
            for used in paths {
                let Some(absolute) = absolute(&modules, path, &used) else {
                    continue;
                };
                if let Some(target) = defining_module(&modules, &bindings, &absolute, 0) {
                    let file = &modules[&target].file;
                    if *file != module.file {
                        targets.insert(file.clone());
                    }
                }
            }
        }
        Graph { modules, edges }
    }

    /// The strongly connected components with more than one file.
    pub fn circles(&self) -> Vec<BTreeSet<String>> {
        let files: Vec<&String> = self.edges.keys().collect();
        let index: BTreeMap<&String, usize> =
            files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
        let reach = |from: usize| -> BTreeSet<usize> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from];
            while let Some(at) = stack.pop() {
                for next in &self.edges[files[at]] {
                    if let Some(&n) = index.get(next) {
                        if seen.insert(n) {
                            stack.push(n);
                        }
                    }
                }
            }
            seen
        };
        let reachable: Vec<BTreeSet<usize>> = (0..files.len()).map(reach).collect();
        let mut done = BTreeSet::new();
        let mut circles = Vec::new();
        for a in 0..files.len() {
            if done.contains(&a) {
                continue;
            }
            let component: BTreeSet<usize> = (0..files.len())
                .filter(|&b| b == a || (reachable[a].contains(&b) && reachable[b].contains(&a)))
                .collect();
            done.extend(component.iter().copied());
            if component.len() > 1 {
                circles.push(component.iter().map(|&i| files[i].clone()).collect());
            }
        }
        circles
    }
}

/// `used` (as written in module `at`) as a path from the crate root, if it
/// names something in this crate.
fn absolute(
    modules: &BTreeMap<Vec<String>, Module>,
    at: &[String],
    used: &[String],
) -> Option<Vec<String>> {
    let first = used.first()?;
    let mut base: Vec<String> = match first.as_str() {
        "crate" => Vec::new(),
        "self" => at.to_vec(),
        "super" => {
            let mut base = at.to_vec();
            base.pop();
            let mut rest = &used[1..];
            while rest.first().is_some_and(|s| s == "super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        child => {
            let mut candidate = at.to_vec();
            candidate.push(child.to_string());
            if !modules.contains_key(&candidate) {
                return None;
            }
            at.to_vec()
        }
    };
    let skip = usize::from(matches!(first.as_str(), "crate" | "self"));
    base.extend(used[skip..].iter().cloned());
    Some(base)
}

/// The module that defines what `path` names, following imports and
/// re-exports.
fn defining_module(
    modules: &BTreeMap<Vec<String>, Module>,
    bindings: &BTreeMap<Vec<String>, Bindings>,
    path: &[String],
    depth: usize,
) -> Option<Vec<String>> {
    if depth > 16 {
        return None;
    }
    // The longest prefix that is a module.
    let mut split = path.len();
    while split > 0 && !modules.contains_key(&path[..split]) {
        split -= 1;
    }
    let module = path[..split].to_vec();
    if split == path.len() {
        return Some(module);
    }
    let name = &path[split];
    match bindings.get(&module).and_then(|b| b.get(name)) {
        Some(Some(target)) if target.as_slice() != path => {
            let mut next = target.clone();
            next.extend(path[split + 1..].iter().cloned());
            defining_module(modules, bindings, &next, depth + 1).or(Some(module))
        }
        _ => Some(module),
    }
}
