//! The shape of the code, checked: every module of `src/` sits on a floor, and a module may use
//! only modules on the floors below its own. No import cycle runs between the files of `src/`
//! (a folder's `mod.rs` and its own files count as one room: a parent and its children may use
//! each other). So storage imports neither query nor http, logql imports nothing of the crate,
//! and the client does not import the server.
//!
//! `src/build.rs` is the build script, not a module. Imports are read as text: every `crate::a::b` path, `use` of `super::`/`self::` paths, and
//! the `{...}` groups after them, resolved to the file that defines the module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The floors, bottom first. A module may use modules of lower floors only.
const FLOORS: &[&[&str]] = &[
    &["model", "labels", "failpoint", "logql", "loki_keys"],
    &["config", "telemetry", "template"],
    &["pipeline", "ingest", "log_level"],
    &["patterns"],
    &["storage"],
    &["query", "notify"],
    &["ruler"],
    &["http", "client"],
    &["server"],
    &["cli"],
];

fn floor_of(module: &str) -> usize {
    FLOORS
        .iter()
        .position(|f| f.contains(&module))
        .unwrap_or_else(|| panic!("module `{module}` has no floor in tests/layers.rs"))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") && p != src().join("build.rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/storage/store/mod.rs` → `["storage", "store"]`.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The file that defines the longest prefix of `path` that is a module.
fn file_of(path: &[String]) -> Option<PathBuf> {
    for n in (1..=path.len()).rev() {
        let base = path[..n].iter().fold(src(), |p, s| p.join(s));
        for f in [base.with_extension("rs"), base.join("mod.rs")] {
            if f.is_file() {
                return Some(f);
            }
        }
    }
    None
}

/// Removes comments and string contents, so that paths in them are not read as imports.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut kept = String::new();
        let chars: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if !in_str && c == '/' && chars.get(i + 1) == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            }
            if !in_str {
                kept.push(c);
            }
            prev = if prev == '\\' && c == '\\' { ' ' } else { c };
            i += 1;
        }
        out.push_str(&kept);
        out.push('\n');
    }
    out
}

/// The module paths a file refers to: `crate::a::b::{c, d::e}` gives `a::b::c` and `a::b::d::e`;
/// `super::x` and `self::x` resolve against the file's own module.
fn references(file: &Path) -> Vec<Vec<String>> {
    let text = code_only(&std::fs::read_to_string(file).unwrap());
    let here = module_of(file);
    let is_mod = file
        .file_name()
        .is_some_and(|n| n == "mod.rs" || n == "lib.rs");
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (start, root) in find_roots(&text) {
        let base: Vec<String> = match root {
            "crate" => Vec::new(),
            "self" => here.clone(),
            _ => {
                // `super` of a file `a/b.rs` (module a::b) is `a`; of `a/b/mod.rs` (also a::b) too.
                let _ = is_mod;
                here[..here.len().saturating_sub(1)].to_vec()
            }
        };
        let mut i = start + root.len();
        expand(bytes, &mut i, base, &mut out);
    }
    out
}

fn find_roots(text: &str) -> Vec<(usize, &'static str)> {
    let mut out = Vec::new();
    for root in ["crate", "super", "self"] {
        let pat = format!("{root}::");
        let mut from = 0;
        while let Some(k) = text[from..].find(&pat) {
            let at = from + k;
            let before = text[..at].chars().next_back();
            let ident_before = before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
            if !ident_before {
                out.push((at, root));
            }
            from = at + pat.len();
        }
    }
    out
}

/// Reads `::seg::seg::{...}` at `i`, pushing every full path.
fn expand(b: &[u8], i: &mut usize, mut base: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        if b.get(*i) == Some(&b':') && b.get(*i + 1) == Some(&b':') {
            *i += 2;
        } else {
            break;
        }
        while b.get(*i).is_some_and(|c| c.is_ascii_whitespace()) {
            *i += 1;
        }
        if b.get(*i) == Some(&b'{') {
            *i += 1;
            loop {
                while b
                    .get(*i)
                    .is_some_and(|c| c.is_ascii_whitespace() || *c == b',')
                {
                    *i += 1;
                }
                match b.get(*i) {
                    None => return,
                    Some(b'}') => {
                        *i += 1;
                        return;
                    }
                    _ => {}
                }
                let name = ident(b, i);
                if name.is_empty() {
                    *i += 1;
                    continue;
                }
                let mut p = base.clone();
                if name != "self" {
                    p.push(name);
                }
                expand(b, i, p, out);
                // Skip `as alias` and anything else up to the next `,` or `}`.
                while b.get(*i).is_some_and(|c| *c != b',' && *c != b'}') {
                    *i += 1;
                }
            }
        }
        let name = ident(b, i);
        if name.is_empty() {
            break;
        }
        base.push(name);
    }
    out.push(base);
}

fn ident(b: &[u8], i: &mut usize) -> String {
    let start = *i;
    while b
        .get(*i)
        .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        *i += 1;
    }
    String::from_utf8_lossy(&b[start..*i]).into_owned()
}

/// file → the files it uses (outside its own room).
fn graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut g = BTreeMap::new();
    for f in files {
        let mut to = BTreeSet::new();
        for r in references(&f) {
            if let Some(t) = file_of(&r) {
                if t != f && !same_room(&f, &t) {
                    to.insert(t);
                }
            }
        }
        g.insert(f, to);
    }
    g
}

/// A folder's `mod.rs` and the files directly in that folder (or its direct child folders'
/// `mod.rs`) are one room.
fn same_room(a: &Path, b: &Path) -> bool {
    let parent_mod = |f: &Path| -> Option<PathBuf> {
        let dir = if f.file_name().is_some_and(|n| n == "mod.rs") {
            f.parent()?.parent()?
        } else {
            f.parent()?
        };
        let m = dir.join("mod.rs");
        m.is_file().then_some(m)
    };
    parent_mod(a).as_deref() == Some(b) || parent_mod(b).as_deref() == Some(a)
}

fn top_module(f: &Path) -> String {
    module_of(f).first().cloned().unwrap_or_default()
}

fn name(f: &Path) -> String {
    f.strip_prefix(src().parent().unwrap())
        .unwrap()
        .display()
        .to_string()
}

#[test]
fn modules_use_only_lower_floors() {
    let mut wrong = Vec::new();
    for (from, tos) in graph() {
        let m = top_module(&from);
        if m.is_empty() {
            continue; // lib.rs and main.rs
        }
        for to in tos {
            let t = top_module(&to);
            if t != m && floor_of(&t) >= floor_of(&m) {
                wrong.push(format!(
                    "{} uses {} ({m} is not above {t})",
                    name(&from),
                    name(&to)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that run up or sideways:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_import_cycle_between_files() {
    let g = graph();
    // Tarjan's strongly connected components, iteratively small enough to write plainly.
    let nodes: Vec<&PathBuf> = g.keys().collect();
    let idx: BTreeMap<&PathBuf, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|n| g[*n].iter().filter_map(|t| idx.get(t).copied()).collect())
        .collect();
    let mut cycles = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        // A cycle through i: i reaches itself.
        let mut seen = vec![false; nodes.len()];
        let mut stack: Vec<usize> = adj[i].clone();
        while let Some(k) = stack.pop() {
            if k == i {
                cycles.push(name(n));
                break;
            }
            if !std::mem::replace(&mut seen[k], true) {
                stack.extend(adj[k].iter().copied());
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "files on an import cycle:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_checker_reads_imports() {
    // The graph must see the imports it polices, or the tests above pass for nothing.
    let g = graph();
    let store = src().join("storage/store/mod.rs");
    assert!(
        g[&store].contains(&src().join("storage/wal.rs")),
        "store uses the WAL: {:?}",
        g[&store]
    );
    let read = src().join("http/read.rs");
    assert!(g[&read].iter().any(|f| f.starts_with(src().join("query"))));
    assert_eq!(floor_of("storage"), 4);
    // A path inside a `{...}` group is read too.
    let params = src().join("http/params.rs");
    assert!(
        g[&params].contains(&src().join("logql/mod.rs")),
        "{:?}",
        g[&params]
    );
}
