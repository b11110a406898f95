//! The `fovea` binary's help lists every command and the global options (the
//! end-to-end behaviour of each is in the workspace's `tests` crate).

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(args)
        .output()
        .expect("run fovea");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn help_lists_every_command_and_global_option() {
    let text = help(&["--help"]);
    for cmd in [
        "model",
        "record",
        "top",
        "maps",
        "reconstruct",
        "maximize",
        "stats",
        "figures",
        "scan",
        "scan-top",
        "health",
    ] {
        assert!(
            text.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help lacks {cmd}:\n{text}"
        );
    }
    for flag in [
        "--connect",
        "--json",
        "--show",
        "--graphics",
        "--model",
        "--ep",
        "--token-file",
        "--tls-ca",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}");
    }
    let scan = help(&["scan", "--help"]);
    for flag in ["--out", "--k", "--layers", "--shard", "--batch", "merge"] {
        assert!(scan.contains(flag), "scan --help lacks {flag}");
    }
}

#[test]
fn a_usage_error_exits_2_with_a_message() {
    let out = Command::new(env!("CARGO_BIN_EXE_fovea"))
        .args(["reconstruct", "--mode", "sideways"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("sideways"));
}
