//! The binaries' shared flags: settings the engine names (provider, model
//! source, profile) are listed with their meanings and parsed by name; a
//! wrong one is refused with the possible values. (The daemon's behaviour
//! end to end is in the workspace's `tests` crate.)

use std::process::{Command, Output};

fn run(bin: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .output()
        .expect("the binary runs")
}

#[test]
fn help_lists_each_named_setting_with_its_meaning() {
    for bin in [
        env!("CARGO_BIN_EXE_fovead"),
        env!("CARGO_BIN_EXE_fovea-bench"),
    ] {
        let out = run(bin, &["--help"]);
        assert!(out.status.success(), "{bin}");
        let help = String::from_utf8_lossy(&out.stdout);
        for line in [
            "- auto: CUDA when a GPU and the CUDA provider are present, else CPU",
            "- download: The ONNX model zoo download only",
            "- torchvision: torchvision / ONNX model zoo: RGB, 0..1, ImageNet mean and std",
        ] {
            let words: Vec<&str> = line.split_whitespace().collect();
            assert!(
                help.lines()
                    .any(|l| l.split_whitespace().collect::<Vec<_>>() == words),
                "{bin} --help lacks {line:?}:\n{help}"
            );
        }
    }
}

#[test]
fn a_wrong_setting_is_refused_naming_the_possible_values() {
    let out = run(env!("CARGO_BIN_EXE_fovead"), &["--ep", "tpu"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("invalid value 'tpu' for '--ep <EP>'"), "{err}");
    assert!(err.contains("[possible values: auto, cpu, cuda]"), "{err}");
}

#[test]
fn settings_parse_by_name_from_the_environment_too() {
    // A wrong profile from the environment is refused before anything loads.
    let out = Command::new(env!("CARGO_BIN_EXE_fovead"))
        .args(["doctor", "--no-fetch"])
        .env("FOVEA_PROFILE", "keras")
        .output()
        .expect("fovead runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[possible values: caffe, torchvision]"),
        "{err}"
    );
}
