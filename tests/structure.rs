//! The layout keeps its promises (docs/design.md §10): no module imports
//! one that imports it back, no command name is matched outside
//! `src/commands/`, error replies are built only by `src/error.rs`, and
//! sealing bindings only in `src/sealing/`. Read from the sources, so a
//! change that breaks one of them fails here with the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `src/`, as (module path, code without comments
/// and without its `#[cfg(test)] mod tests`).
fn sources() -> Vec<(String, PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("src") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    files
        .into_iter()
        // Test modules kept in files of their own (`session/tests.rs`).
        .filter(|p| p.file_name().is_none_or(|n| n != "tests.rs"))
        .map(|p| {
            let rel = p.strip_prefix(&root).expect("under src").to_string_lossy().replace('\\', "/");
            let module = rel.trim_end_matches(".rs").trim_end_matches("/mod").replace('/', "::");
            let text = std::fs::read_to_string(&p).expect("read");
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(i) => &text[..i],
                None => &text[..],
            };
            let code: Vec<&str> = code.lines().map(|l| if l.trim_start().starts_with("//") { "" } else { l }).collect();
            (module, p, code.join("\n"))
        })
        .collect()
}

/// The modules a file's code names (`crate::x::y`, `super::y`).
fn references(module: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let parent = module.rsplit_once("::").map(|(p, _)| p.to_string());
    let mut add = |path: String| {
        // The longest known module the path starts with.
        let parts: Vec<&str> = path.split("::").collect();
        for n in (1..=parts.len().min(2)).rev() {
            let m = parts[..n].join("::");
            if known.contains(&m) {
                if m != module && !module.starts_with(&format!("{m}::")) && !m.starts_with(&format!("{module}::")) {
                    out.insert(m);
                }
                return;
            }
        }
    };
    for (marker, base) in [("crate::", None), ("super::", parent.as_deref())] {
        let mut rest = code;
        while let Some(i) = rest.find(marker) {
            rest = &rest[i + marker.len()..];
            let path: String = rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || *c == ':').collect();
            let path = path.trim_end_matches(':').to_string();
            match base {
                None => add(path),
                Some(b) => add(format!("{b}::{path}")),
            }
        }
    }
    out
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let src = sources();
    let known: BTreeSet<String> = src.iter().map(|(m, _, _)| m.clone()).collect();
    let files: BTreeMap<String, BTreeSet<String>> =
        src.iter().map(|(m, _, code)| (m.clone(), references(m, code, &known))).collect();
    // Top-level modules (folders) and files.
    let mut top: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (m, refs) in &files {
        let a = m.split("::").next().expect("name").to_string();
        for r in refs {
            let b = r.split("::").next().expect("name").to_string();
            if a != b {
                top.entry(a.clone()).or_default().insert(b);
            }
        }
    }
    for (graph, what) in [(&files, "file"), (&top, "module")] {
        // Depth-first search for a back edge.
        fn visit(
            u: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            stack: &mut Vec<String>,
        ) -> Option<Vec<String>> {
            state.insert(u.to_string(), 1);
            stack.push(u.to_string());
            for v in g.get(u).into_iter().flatten() {
                match state.get(v.as_str()) {
                    Some(1) => {
                        let at = stack.iter().position(|s| s == v).expect("on the stack");
                        let mut cycle = stack[at..].to_vec();
                        cycle.push(v.clone());
                        return Some(cycle);
                    }
                    Some(_) => {}
                    None => {
                        if let Some(c) = visit(v, g, state, stack) {
                            return Some(c);
                        }
                    }
                }
            }
            stack.pop();
            state.insert(u.to_string(), 2);
            None
        }
        let mut state = BTreeMap::new();
        for u in graph.keys() {
            if !state.contains_key(u.as_str())
                && let Some(cycle) = visit(u, graph, &mut state, &mut Vec::new())
            {
                // crypto/ is kept as it is (its envelope and keyring use
                // each other); nothing outside it may close a loop.
                if !cycle.iter().all(|m| m.starts_with("crypto")) {
                    panic!("{what} import cycle: {}", cycle.join(" -> "));
                }
            }
        }
    }
}

/// The names of the command table's rows, read from its source.
fn table_names() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/commands/table.rs");
    let names: BTreeSet<String> = std::fs::read_to_string(path)
        .expect("table")
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("row!(\""))
        .filter_map(|l| l.split('"').next())
        .map(str::to_string)
        .collect();
    assert!(names.len() > 200, "{} rows", names.len());
    names
}

#[test]
fn command_names_are_matched_only_in_commands() {
    let names = table_names();
    let mut found = Vec::new();
    for (module, path, code) in sources() {
        if module.starts_with("commands") {
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            // Matching a name: comparing, `match`ing or `is`-testing it.
            let matching = ["cmd.name ==", "match cmd.name", "matches!(cmd.name", "args.is(0,", ".name == \""]
                .iter()
                .any(|p| line.contains(p))
                || names
                    .iter()
                    .any(|name| line.contains(&format!("b\"{name}\" =>")) || line.contains(&format!("\"{name}\" =>")));
            if matching {
                found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "command names matched outside src/commands/:\n{}", found.join("\n"));
}

/// Not even as a literal: the commands respseal sends itself are named in
/// `src/commands/own.rs`.
#[test]
fn command_names_are_written_only_in_commands() {
    let names = table_names();
    let mut found = Vec::new();
    for (module, path, code) in sources() {
        if module.starts_with("commands") {
            continue;
        }
        for (n, line) in code.lines().enumerate() {
            for (i, _) in line.match_indices('"') {
                let word: String =
                    line[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_' || *c == '-').collect();
                if line[i + 1 + word.len()..].starts_with('"') && names.contains(&word) {
                    found.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(found.is_empty(), "command names written outside src/commands/:\n{}", found.join("\n"));
}

#[test]
fn error_replies_and_bindings_have_one_place_each() {
    let mut found = Vec::new();
    for (module, path, code) in sources() {
        for (n, line) in code.lines().enumerate() {
            let at = || format!("{}:{}: {}", path.display(), n + 1, line.trim());
            // Building a frame that starts with `-`: a static one, a
            // formatted one, or bytes appended.
            let error_frame =
                ["from_static(b\"-", "format!(\"-{", "format!(\"-E", "extend_from_slice(b\"-", "(b\"-ERR"]
                    .iter()
                    .any(|p| line.contains(p));
            if error_frame && module != "error" {
                found.push(format!("error frame outside error.rs: {}", at()));
            }
            if line.contains("Binding::") && !module.starts_with("sealing") && !module.starts_with("crypto") {
                found.push(format!("sealing binding outside sealing/: {}", at()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
