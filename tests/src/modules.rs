//! The module graph of a crate as its sources state it: an edge from a
//! file's module to every module it names through a `crate::` path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

pub type Graph = BTreeMap<String, BTreeSet<String>>;

/// The modules of the crate whose sources are under `src` (binaries in
/// `src/bin` are crates of their own and left out) and what each imports.
pub fn import_graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    collect(src, src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|(m, _)| m.clone()).collect();
    let mut graph = Graph::new();
    for (module, text) in &files {
        let targets = graph.entry(module.clone()).or_default();
        for path in crate_paths(text) {
            // The longest prefix that is a module file: `a::b::Item` is `a::b`.
            let parts: Vec<&str> = path.split("::").collect();
            let target = (1..=parts.len())
                .rev()
                .map(|n| parts[..n].join("::"))
                .find(|p| modules.contains(p))
                .unwrap_or_else(|| "crate".to_string());
            if &target != module {
                targets.insert(target);
            }
        }
    }
    graph
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path != root.join("bin") {
                collect(root, &path, out);
            }
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Ok(rel) = path.strip_prefix(root) else {
            continue;
        };
        let mut parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|l| l == "mod") {
            parts.pop();
        }
        let module = match parts.as_slice() {
            [one] if one == "lib" || one == "main" => "crate".to_string(),
            _ => parts.join("::"),
        };
        if let Ok(text) = std::fs::read_to_string(&path) {
            out.push((module, text));
        }
    }
}

/// Every `crate::a::b` path in `text` (comments aside), with grouped
/// imports (`crate::{a::b, c::{d, e}}`) spelled out.
pub fn crate_paths(text: &str) -> Vec<String> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        expand("", rest, &mut paths);
    }
    paths
}

/// The path (or group of paths) at the start of `s`, after `prefix`.
fn expand(prefix: &str, s: &str, out: &mut Vec<String>) {
    let s = s.trim_start();
    if let Some(group) = s.strip_prefix('{') {
        let mut depth = 0;
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    expand(prefix, &group[start..i], out);
                    return;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &group[start..i], out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return;
    }
    let mut path = prefix.to_string();
    let mut rest = s;
    loop {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let ident = &rest[..end];
        if ident.is_empty() || ident == "self" {
            break;
        }
        if !path.is_empty() {
            path.push_str("::");
        }
        path.push_str(ident);
        rest = &rest[end..];
        match rest.strip_prefix("::") {
            Some(r) if r.trim_start().starts_with('{') => {
                expand(&path, r, out);
                return;
            }
            Some(r) => rest = r,
            None => break,
        }
    }
    if !path.is_empty() {
        out.push(path);
    }
}

/// A cycle of the graph, as the modules along it, if there is one.
pub fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(false) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            Some(true) => return None,
            None => {}
        }
        state.insert(node.to_string(), false);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(node.to_string(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(c) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_and_nested_imports_are_spelled_out() {
        let paths = crate_paths(
            "use crate::a::{b::C, d};\nuse crate::{e, f::{g, h::I}};\nlet x = crate::j::k(); // crate::z\nmy_crate::q;",
        );
        assert_eq!(paths, ["a::b::C", "a::d", "e", "f::g", "f::h::I", "j::k"]);
    }

    #[test]
    fn cycles_are_found_and_chains_are_not() {
        let mut g = Graph::new();
        g.entry("a".into()).or_default().insert("b".into());
        g.entry("b".into()).or_default().insert("c".into());
        assert_eq!(find_cycle(&g), None);
        g.entry("c".into()).or_default().insert("a".into());
        assert_eq!(find_cycle(&g).map(|c| c.len()), Some(4));
    }
}
