//! The house's structural rules, read from the workspace's own files so they hold as
//! the code changes: what two functions share lives in a crate under `crates/`, never
//! in another function; no two modules of one crate import each other; errors are
//! types, never bare strings.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dirs(under: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(under))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .collect();
    out.sort();
    out
}

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// A source file without its test module and its comments.
fn code_of(path: &Path) -> String {
    let text = read(path);
    let text = text.split("#[cfg(test)]").next().unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The package name and every dependency named in a manifest (any section).
fn manifest(dir: &Path) -> (String, BTreeSet<String>) {
    let text = read(&dir.join("Cargo.toml"));
    let mut name = String::new();
    let mut deps = BTreeSet::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        if section == "package" && key == "name" {
            name = value.trim().trim_matches('"').to_owned();
        } else if section.ends_with("dependencies") {
            deps.insert(key.split('.').next().unwrap_or(key).to_owned());
        }
    }
    (name, deps)
}

#[test]
fn no_function_crate_depends_on_another_function_crate() {
    let functions: BTreeSet<String> = dirs("functions").iter().map(|d| manifest(d).0).collect();
    assert!(functions.len() >= 10, "{functions:?}");
    let mut leaning = Vec::new();
    for dir in dirs("functions").iter().chain(&dirs("crates")) {
        let (name, deps) = manifest(dir);
        for d in deps.intersection(&functions) {
            leaning.push(format!("{name} depends on the function {d}"));
        }
    }
    let (cli, deps) = manifest(&root().join("cli"));
    for d in deps.intersection(&functions) {
        leaning.push(format!("{cli} depends on the function {d}"));
    }
    assert!(
        leaning.is_empty(),
        "what functions share belongs in crates/: {leaning:#?}"
    );
}

/// The top-level module a file belongs to (`None`: the crate root, which declares every
/// module and re-exports their items).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.as_str() {
        "lib.rs" | "main.rs" | "bin" => None,
        f => Some(f.trim_end_matches(".rs").to_owned()),
    }
}

/// The names a file reaches through `crate::` (`crate::a::b`, `use crate::{a, b}`).
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let before = code[..i].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or_default();
            for item in group.split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.insert(name);
        }
    }
    out
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let mut crates = dirs("functions");
    crates.extend(dirs("crates"));
    crates.push(root().join("cli"));
    crates.push(root().join("integration-tests"));
    let mut cycles = Vec::new();
    for dir in crates {
        let src = dir.join("src");
        let files = rust_files(&src);
        let modules: BTreeSet<String> = files.iter().filter_map(|f| module_of(&src, f)).collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for f in &files {
            let Some(from) = module_of(&src, f) else {
                continue;
            };
            for name in crate_references(&code_of(f)) {
                if modules.contains(&name) && name != from {
                    edges.entry(from.clone()).or_default().insert(name);
                }
            }
        }
        for (a, targets) in &edges {
            for b in targets {
                if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                    cycles.push(format!("{}: {a} <-> {b}", dir.display()));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules importing each other: {cycles:#?}"
    );
}

/// The error type of every `Result<T, E>` written in `code`.
fn result_error_types(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in code.match_indices("Result<") {
        let (mut depth, mut args, mut cur) = (1, Vec::new(), String::new());
        for c in code[i + "Result<".len()..].chars() {
            match c {
                '<' | '(' => depth += 1,
                '>' | ')' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                break;
            }
            if depth == 1 && c == ',' {
                args.push(std::mem::take(&mut cur));
            } else {
                cur.push(c);
            }
        }
        args.push(cur);
        if args.len() == 2 {
            out.push(args[1].trim().to_owned());
        }
    }
    out
}

#[test]
fn no_result_carries_a_bare_string_as_its_error() {
    let mut found = Vec::new();
    for dir in dirs("functions").iter().chain(&dirs("crates")) {
        for f in rust_files(&dir.join("src")) {
            if result_error_types(&code_of(&f))
                .iter()
                .any(|e| e == "String")
            {
                found.push(f.display().to_string());
            }
        }
    }
    assert!(
        found.is_empty(),
        "errors say whether a retry can help: a type, not a String: {found:#?}"
    );
}

#[test]
fn the_rules_see_what_they_look_for() {
    // The readers above, on code that breaks each rule.
    assert_eq!(
        result_error_types("fn f() -> Result<Vec<(u8, String)>, String> {}"),
        ["String"]
    );
    assert_eq!(
        crate_references("use crate::{a, b::C};\nlet x = crate::c::f(); my_crate::d"),
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
}
