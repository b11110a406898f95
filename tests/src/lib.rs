//! Support for the end-to-end tests: locating the workspace's binaries,
//! starting `fovead` on an ephemeral port, and writing generated models.

pub mod modules;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A binary built by this workspace (`fovead`, `fovea`, `fovea-tui`).
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built; run the workspace's tests (cargo test --workspace builds every binary)",
        path.display()
    );
    path
}

/// Runs the `fovea` binary as a user would, with no log filter and no
/// daemon address from the environment.
pub fn fovea(args: &[&str]) -> std::process::Output {
    Command::new(bin("fovea"))
        .args(args)
        .env("RUST_LOG", "off")
        .env_remove("FOVEA_CONNECT")
        .output()
        .expect("run fovea")
}

/// The standard output of a run that must have succeeded (the failure
/// shows both outputs).
pub fn stdout_ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON a successful `--json` run printed.
pub fn stdout_json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_str(&stdout_ok(out)).expect("stdout is JSON")
}

/// A sample image shipped in the repository's `samples/` folder.
pub fn sample_image(name: &str) -> PathBuf {
    fovea_samples::source_path(name)
}

/// Writes the tiny generated model (NCHW, with head, 32x32) to a temp dir.
pub fn tiny_model_file() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tiny.onnx");
    let bytes =
        fovea_engine::fixtures::tiny_model(fovea_engine::model::network::Layout::Nchw, true, 32);
    std::fs::write(&path, bytes).expect("write model");
    (dir, path)
}

/// A running `fovead` child process; killed on drop.
pub struct Daemon {
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<String>>,
}

impl Daemon {
    /// Starts `fovead --listen 127.0.0.1:0 ARGS...` (unless ARGS name another
    /// address) and waits for its "listening on" line.
    pub fn start(args: &[&str]) -> Daemon {
        Self::start_with_env(args, &[])
    }

    pub fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(bin("fovead"));
        if !args.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .env("NO_COLOR", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn fovead");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    // Text or JSON logs: the address ends at a quote or a space.
                    let addr = rest
                        .split(|c: char| c == '"' || c.is_whitespace())
                        .next()
                        .unwrap_or(rest);
                    let _ = tx.send(addr.to_string());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "fovead did not start listening: {}",
                    log.lock().map(|l| l.clone()).unwrap_or_default()
                )
            });
        Daemon { child, addr, log }
    }

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let t = Instant::now();
        while t.elapsed() < timeout {
            if self.log.lock().map(|l| l.contains(needle)).unwrap_or(false) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Sends SIGTERM.
    pub fn send_term(&self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill -TERM failed");
    }

    /// Waits for the exit, at most `within`.
    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                return s;
            }
            assert!(
                t.elapsed() < within,
                "fovead did not exit within {within:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Python virtual environment in the user cache with `packages` (pinned
/// `name==version` specs) installed, made on first use. Panics, naming what
/// is missing, where python3 or pip cannot provide them: a test that needs
/// them must not pass without them.
pub fn python_venv(name: &str, packages: &[&str], check_import: &str) -> PathBuf {
    let cache = fovea_engine::paths::cache_dir();
    let venv = cache.join(format!("python-{name}"));
    let python = venv.join("bin/python");
    // Tests run in parallel: one of them builds the environment.
    let _ = std::fs::create_dir_all(&cache);
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join(format!("python-{name}.lock")))
        .unwrap_or_else(|e| panic!("cannot open the venv lock in {}: {e}", cache.display()));
    lock.lock()
        .unwrap_or_else(|e| panic!("cannot lock the venv in {}: {e}", cache.display()));
    if !python.exists() {
        let made = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "`python3 -m venv` failed: this test needs python3 with the venv module \
             (Debian: apt-get install python3-venv)"
        );
    }
    let ready = |python: &Path| {
        Command::new(python)
            .args(["-c", check_import])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ready(&python) {
        let pip = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(packages)
            .status();
        assert!(
            pip.is_ok_and(|s| s.success()) && ready(&python),
            "pip could not install {packages:?} into {}: this test needs them \
             (is PyPI reachable?)",
            venv.display()
        );
    }
    venv
}

/// Starts `fovead` on the tiny model at 32x32 on CPU; the folder holds the
/// model file and is free for the test's own files.
pub fn tiny_daemon() -> (tempfile::TempDir, PathBuf, Daemon) {
    let (dir, model) = tiny_model_file();
    let args = tiny_args(&model);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (dir, model, d)
}

/// The `fovead` (and embedded `fovea`) flags that serve the tiny model on
/// the CPU.
pub fn tiny_args(model: &Path) -> Vec<String> {
    [
        "--model",
        model.to_str().unwrap_or_default(),
        "--input-size",
        "32",
        "--ep",
        "cpu",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Width, height, and whether an encoded picture is one flat colour.
pub fn picture_info(bytes: &[u8]) -> (u32, u32, bool) {
    let img = image::load_from_memory(bytes)
        .expect("a decodable picture")
        .to_rgb8();
    let first = *img.get_pixel(0, 0);
    (img.width(), img.height(), img.pixels().all(|p| *p == first))
}

/// A client of the daemon at `addr`, once it serves (loading VGG-16 may
/// take a while on a cold machine).
pub async fn ready(addr: &str) -> fovea_client::Client {
    let c = fovea_client::Client::connect(addr).await.expect("connect");
    c.wait_ready(Duration::from_secs(120)).await.expect("ready");
    c
}

/// The raw generated client on `c`'s channel, for requests the typed
/// client would refuse or shape.
pub fn probe(
    c: &fovea_client::Client,
) -> fovea_proto::v1::probe_client::ProbeClient<tonic::transport::Channel> {
    fovea_proto::v1::probe_client::ProbeClient::new(c.channel())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20)
}

/// The status of a call (OK for an answer).
pub fn status<T>(r: Result<tonic::Response<T>, tonic::Status>) -> tonic::Status {
    match r {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

/// The status of a streamed call: of the call, or of its first event (OK
/// for an event).
pub async fn stream_status<T>(
    r: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
) -> tonic::Status {
    match r {
        Err(s) => s,
        Ok(r) => match r.into_inner().message().await {
            Err(s) => s,
            Ok(_) => tonic::Status::ok(""),
        },
    }
}

/// An attribution's result and the `done` of each progress event before it.
pub async fn attribution(
    c: &fovea_client::Client,
    req: fovea_proto::v1::AttributeRequest,
) -> (fovea_proto::v1::AttributeResult, Vec<u32>) {
    use fovea_proto::v1::attribute_event::Event;
    let mut stream = c.attribute(req).await.expect("attribute");
    let mut progress = Vec::new();
    while let Some(ev) = stream.message().await.expect("event") {
        match ev.event {
            Some(Event::Progress(p)) => progress.push(p.done),
            Some(Event::Result(r)) => return (r, progress),
            None => {}
        }
    }
    panic!("the attribution ended without a result")
}

/// `fovead` on the real VGG-16 on the CPU, from the offline source (no
/// download is tried).
pub fn vgg16_daemon() -> Daemon {
    Daemon::start(&[
        "--model",
        "vgg16",
        "--model-source",
        "package",
        "--ep",
        "cpu",
    ])
}

/// `fovead` on the real VGG-16 (the offline source, so no download is
/// tried), where work takes long enough to measure, with a client and the
/// recording id of the chelsea sample.
pub async fn vgg16_with_recording() -> (Daemon, fovea_client::Client, String) {
    let d = vgg16_daemon();
    let c = ready(&d.addr).await;
    let image = std::fs::read(sample_image("chelsea.png")).expect("sample image");
    let id = c.record(image, "").await.expect("record").recording_id;
    (d, c, id)
}

/// A self-signed server certificate and its key (PEM) in `dir`, named
/// `<stem>.crt` and `<stem>.key`, for `subject_alt_names` (such as
/// `DNS:localhost,IP:127.0.0.1`; empty: none, as a plain CA would be).
/// A server certificate says `CA:FALSE`, which rustls requires of a
/// certificate that is its own root.
pub fn self_signed_certificate(
    dir: &Path,
    stem: &str,
    subject_alt_names: &str,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let (cert, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    let mut cmd = std::process::Command::new("openssl");
    cmd.args([
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
    ])
    .args(["-subj", &format!("/CN={stem}")]);
    if !subject_alt_names.is_empty() {
        cmd.args(["-addext", &format!("subjectAltName={subject_alt_names}")])
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .args(["-addext", "extendedKeyUsage=serverAuth"]);
    }
    let made = cmd.arg("-keyout").arg(&key).arg("-out").arg(&cert).output();
    match made {
        Ok(o) if o.status.success() => (cert, key),
        other => panic!(
            "openssl could not make a test certificate ({other:?}); install it \
             (Debian: apt-get install openssl)"
        ),
    }
}

/// The tiny model's daemon serving TLS with a fresh self-signed certificate
/// for `subject_alt_names`; the certificate (its own CA) is returned too.
pub fn tls_daemon(
    dir: &Path,
    model: &Path,
    subject_alt_names: &str,
) -> (Daemon, std::path::PathBuf) {
    let (cert, key) = self_signed_certificate(dir, "server", subject_alt_names);
    let mut args = tiny_args(model);
    args.extend([
        "--tls-cert".into(),
        cert.to_string_lossy().into_owned(),
        "--tls-key".into(),
        key.to_string_lossy().into_owned(),
    ]);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (d, cert)
}
