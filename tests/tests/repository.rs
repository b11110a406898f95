//! The repository stands alone: no tracked file reaches outside the clone
//! for its data, tools or documents; and the crates keep their dependency
//! bounds.

use std::path::PathBuf;
use std::process::Command;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Tracked files, as git lists them (the clone is what a user has),
/// relative to the workspace.
fn tracked_files() -> Vec<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(workspace())
        .args(["ls-files", "-z"])
        .output()
        .unwrap_or_else(|e| {
            panic!("this test lists tracked files with git, which did not run: {e}")
        });
    assert!(
        out.status.success(),
        "git ls-files failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(String::from_utf8_lossy(p).as_ref()))
        .collect()
}

#[test]
fn no_tracked_file_refers_to_a_folder_beside_the_clone() {
    // Spelled in pieces so this file does not match itself.
    let needle = ["..", "/", "shared"].concat();
    let files = tracked_files();
    assert!(files.len() > 50, "git listed only {} files", files.len());
    let mut offending = Vec::new();
    for path in &files {
        let Ok(bytes) = std::fs::read(workspace().join(path)) else {
            continue; // deleted in the working tree
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if line.contains(&needle) {
                offending.push(format!("{}:{}: {}", path.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        offending.is_empty(),
        "tracked files refer to {needle}, which a user's clone does not have:\n{}",
        offending.join("\n")
    );
}

#[test]
fn the_samples_and_their_sources_are_tracked() {
    let files = tracked_files();
    for name in fovea_samples::SAMPLES
        .iter()
        .map(|s| s.name)
        .chain(["SOURCES.md"])
    {
        let path = fovea_samples::source_dir().join(name);
        let canonical = path.canonicalize().unwrap_or(path.clone());
        assert!(
            files.iter().any(|f| workspace()
                .join(f)
                .canonicalize()
                .is_ok_and(|f| f == canonical)),
            "{} is not tracked",
            path.display()
        );
    }
    let sources = std::fs::read_to_string(fovea_samples::source_dir().join("SOURCES.md"))
        .expect("samples/SOURCES.md");
    for s in fovea_samples::SAMPLES {
        assert!(
            sources.contains(s.name),
            "SOURCES.md does not name {}",
            s.name
        );
    }
}

/// The typed client without its default features is a gRPC client only:
/// no engine, no ONNX Runtime.
#[test]
fn the_client_without_default_features_links_no_engine() {
    let tree = cargo_tree(&[
        "-p",
        "fovea-client",
        "--no-default-features",
        "-e",
        "normal",
    ]);
    assert!(tree.lines().any(|l| l.starts_with("tonic ")), "{tree}");
    for crate_name in ["ort ", "ort-sys ", "fovea-daemon ", "fovea-engine "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(crate_name)),
            "{crate_name}in the client's tree:\n{tree}"
        );
    }
}

/// Every crate in a package's dependency tree (normal, build and dev edges,
/// as `cargo tree` shows them by default), one per line.
fn cargo_tree(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(workspace())
        .arg("tree")
        .args(args)
        .args(["--prefix", "none", "--offline"])
        .output()
        .expect("cargo tree runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The engine computes and nothing else: no gRPC, no protobuf compiler, no
/// argument parser, no terminal progress bars, in any of its dependency
/// edges (its tests' included).
#[test]
fn the_engine_links_no_server_parser_or_terminal_crate() {
    let tree = cargo_tree(&["-p", "fovea-engine"]);
    assert!(tree.lines().any(|l| l.starts_with("ort ")), "{tree}");
    for crate_name in [
        "tonic",
        "prost-build",
        "protox",
        "clap",
        "indicatif",
        "fovea-proto",
    ] {
        assert!(
            !tree
                .lines()
                .any(|l| l.split(' ').next() == Some(crate_name)),
            "{crate_name} in the engine's tree:\n{tree}"
        );
    }
}

/// The module graph of every crate has no cycle: following `crate::` paths
/// (in `use` lines and in code) from file to file never comes back.
#[test]
fn no_module_imports_a_module_that_imports_it_back() {
    for krate in [
        "onnx", "engine", "daemon", "client", "tui", "term", "samples",
    ] {
        let src = workspace().join(krate).join("src");
        let graph = fovea_tests::modules::import_graph(&src);
        assert!(graph.len() > 1 || krate == "samples", "{krate}: {graph:?}");
        if let Some(cycle) = fovea_tests::modules::find_cycle(&graph) {
            panic!("{krate}: modules import each other: {}", cycle.join(" -> "));
        }
    }
}
