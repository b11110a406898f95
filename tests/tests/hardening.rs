//! Spins up the real `fovead` (tiny model) and attacks it: a table of bad
//! inputs with their exact status codes, tokens, TLS, non-loopback refusal,
//! overload from 16 clients, kill -9 during disk-cache writes, and a Python
//! grpcio client generated from the proto at test time.

use fovea_client::{Client, neuron, v1 as pb};
use fovea_proto::v1::probe_client::ProbeClient;
use fovea_tests::{Daemon, bin, python_venv, ready, sample_image, tiny_args, tiny_model_file};
use std::time::Duration;
use tonic::Code;

fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// First event of a Maximize stream, or the error that opened it.
async fn maximize_code(
    p: &mut ProbeClient<tonic::transport::Channel>,
    req: pb::MaximizeRequest,
) -> Code {
    match p.maximize(req).await {
        Ok(r) => match r.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(s) => s.code(),
        },
        Err(s) => s.code(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_exact_codes_and_the_daemon_keeps_serving() {
    let (_dir, model) = tiny_model_file();
    let args = tiny_args(&model);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = ready(&d.addr).await;
    let mut p = ProbeClient::new(c.channel())
        .max_decoding_message_size(256 << 20)
        .max_encoding_message_size(256 << 20);
    let id = c
        .record(fovea_engine::fixtures::test_image_png(40, 40), "")
        .await
        .expect("record")
        .recording_id;
    let rec = |image: Vec<u8>| pb::RecordRequest {
        image,
        label: String::new(),
    };
    let recon =
        |layer: &str, feature: i32, y: i32, x: i32, modes: Vec<i32>| pb::ReconstructRequest {
            recording_id: id.clone(),
            neurons: vec![neuron(layer, feature, y, x)],
            modes,
            ..Default::default()
        };
    let maxi = |f: &dyn Fn(&mut pb::MaximizeRequest)| {
        let mut r = pb::MaximizeRequest {
            neuron: Some(neuron("3", 0, 2, 2)),
            steps: 2,
            starts: 1,
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let mut table: Vec<(&str, Code, Code)> = Vec::new();
    macro_rules! case {
        ($name:expr, $want:expr, $got:expr) => {{
            let got = $got;
            table.push(($name, $want, got));
            // After every bad input the daemon still answers.
            assert!(
                c.model().await.is_ok(),
                "daemon stopped serving after {}",
                $name
            );
        }};
    }
    case!(
        "empty image bytes",
        Code::InvalidArgument,
        code(p.record(rec(vec![])).await)
    );
    case!(
        "corrupt image bytes",
        Code::InvalidArgument,
        code(p.record(rec(b"\x89PNG\r\n garbage".to_vec())).await)
    );
    case!(
        "PNG declaring 30000 x 30000",
        Code::InvalidArgument,
        code(
            p.record(rec(fovea_engine::fixtures::png_declaring(30000, 30000)))
                .await
        )
    );
    case!(
        "layer 0",
        Code::InvalidArgument,
        code(p.reconstruct(recon("0", 0, 0, 0, vec![])).await)
    );
    case!(
        "layer 99",
        Code::InvalidArgument,
        code(p.reconstruct(recon("99", 0, 0, 0, vec![])).await)
    );
    case!(
        "layer conv9_9",
        Code::InvalidArgument,
        code(p.reconstruct(recon("conv9_9", 0, 0, 0, vec![])).await)
    );
    case!(
        "feature -1",
        Code::InvalidArgument,
        code(p.reconstruct(recon("3", -1, 0, 0, vec![])).await)
    );
    case!(
        "feature = depth",
        Code::InvalidArgument,
        code(p.reconstruct(recon("3", 6, 0, 0, vec![])).await)
    );
    case!(
        "y outside the map",
        Code::InvalidArgument,
        code(p.reconstruct(recon("3", 0, 16, 0, vec![])).await)
    );
    case!(
        "x = -1",
        Code::InvalidArgument,
        code(p.reconstruct(recon("3", 0, 0, -1, vec![])).await)
    );
    case!(
        "unknown mode 9",
        Code::InvalidArgument,
        code(p.reconstruct(recon("3", 0, 0, 0, vec![9])).await)
    );
    case!(
        "65 neurons",
        Code::InvalidArgument,
        code(
            p.reconstruct(pb::ReconstructRequest {
                recording_id: id.clone(),
                neurons: vec![neuron("3", 0, 0, 0); 65],
                ..Default::default()
            })
            .await
        )
    );
    case!(
        "NaN learning rate",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.learning_rate = f32::NAN)).await
    );
    case!(
        "negative learning rate",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.learning_rate = -1.0)).await
    );
    case!(
        "steps = 10^9",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.steps = 1_000_000_000)).await
    );
    case!(
        "starts = 17",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.starts = 17)).await
    );
    case!(
        "jitter = 100",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.jitter = 100)).await
    );
    case!(
        "maximize without neuron",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.neuron = None)).await
    );
    case!(
        "a class beyond the head's",
        Code::InvalidArgument,
        maximize_code(&mut p, maxi(&|r| r.neuron = Some(neuron("fc2", 5, 0, 0)))).await
    );
    case!(
        "unknown recording id",
        Code::NotFound,
        code(
            p.top_activations(pb::TopActivationsRequest {
                recording_id: "ab".repeat(32),
                layer: "1".into(),
                k: 1,
                ..Default::default()
            })
            .await
        )
    );
    case!(
        "empty recording id",
        Code::InvalidArgument,
        code(
            p.top_activations(pb::TopActivationsRequest {
                layer: "1".into(),
                k: 1,
                ..Default::default()
            })
            .await
        )
    );
    case!(
        "k = 0",
        Code::InvalidArgument,
        code(
            p.top_activations(pb::TopActivationsRequest {
                recording_id: id.clone(),
                layer: "1".into(),
                k: 0,
                ..Default::default()
            })
            .await
        )
    );
    case!(
        "feature range 5..3",
        Code::InvalidArgument,
        code(
            p.get_feature_maps(pb::GetFeatureMapsRequest {
                recording_id: id.clone(),
                layer: "1".into(),
                feature_start: Some(5),
                feature_end: Some(3),
                ..Default::default()
            })
            .await
        )
    );
    case!(
        "stats of layer x",
        Code::InvalidArgument,
        code(
            p.activation_stats(pb::ActivationStatsRequest {
                recording_id: id.clone(),
                layers: vec!["x".into()],
            })
            .await
        )
    );
    case!(
        "oversized message (49 MiB)",
        Code::OutOfRange,
        code(p.record(rec(vec![7u8; 49 << 20])).await)
    );
    case!(
        "image over the byte limit (40 MiB)",
        Code::InvalidArgument,
        code(p.record(rec(vec![7u8; 40 << 20])).await)
    );

    for (name, want, got) in &table {
        eprintln!("{name:<34} {got:?}");
        assert_eq!(got, want, "{name}");
    }
    assert!(table.len() >= 20);
    let messages = p
        .reconstruct(recon("3", 6, 0, 0, vec![]))
        .await
        .unwrap_err()
        .message()
        .to_string();
    assert!(
        messages.contains("feature") && messages.contains("0..=5"),
        "{messages}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_required_checked_and_never_logged() {
    let (dir, model) = tiny_model_file();
    let token = "s3cret-token-for-tests-0123456789";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let mut args = tiny_args(&model);
    args.extend(["--token-file".into(), token_file.to_str().unwrap().into()]);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // Health stays open (for orchestrators' probes).
    let anon = ready(&d.addr).await;
    let missing = anon.model().await.unwrap_err();
    assert_eq!(missing.code(), Some(Code::Unauthenticated));
    let wrong = Client::connect(&d.addr)
        .await
        .unwrap()
        .with_token("not-the-token-at-all-000");
    assert_eq!(
        wrong.model().await.unwrap_err().code(),
        Some(Code::Unauthenticated)
    );
    let right = Client::connect(&d.addr).await.unwrap().with_token(token);
    assert!(right.model().await.is_ok());
    assert!(!d.log().contains(token), "the token appeared in the log");
}

#[test]
fn a_public_address_needs_protection_or_insecure() {
    let (_dir, model) = tiny_model_file();
    let out = std::process::Command::new(bin("fovead"))
        .args([
            "--listen",
            "0.0.0.0:0",
            "--ep",
            "cpu",
            "--model",
            model.to_str().unwrap(),
        ])
        .env("RUST_LOG", "off")
        .output()
        .expect("run");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("non-loopback") && err.contains("--insecure"),
        "{err}"
    );
    let mut args = tiny_args(&model);
    args.push("--insecure".into());
    args.extend(["--listen".into(), "0.0.0.0:0".into()]);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(d.addr.starts_with("0.0.0.0:"), "{}", d.addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (_m, model) = tiny_model_file();
    let (d, cert) = fovea_tests::tls_daemon(dir.path(), &model, "DNS:localhost,IP:127.0.0.1");
    let port = d.addr.rsplit(':').next().unwrap();
    let ca = std::fs::read(&cert).unwrap();
    let c = Client::connect_with(&format!("https://localhost:{port}"), Some(&ca))
        .await
        .expect("tls connect");
    c.wait_ready(Duration::from_secs(60)).await.expect("ready");
    assert!(c.model().await.is_ok());
    // Plain text to a TLS port fails.
    let plain = Client::connect(&d.addr).await;
    assert!(plain.is_err() || plain.unwrap().model().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_are_answered_or_told_to_back_off() {
    let (_dir, model) = tiny_model_file();
    let mut args = tiny_args(&model);
    args.extend(["--concurrency", "1", "--queue", "2"].map(String::from));
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = ready(&d.addr).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let req = pb::MaximizeRequest {
                neuron: Some(neuron("5", i % 8, 3, 3)),
                steps: 150,
                starts: 2,
                ..Default::default()
            };
            match c.maximize(req).await {
                Ok(mut s) => loop {
                    match s.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => return Code::Ok,
                        Err(e) => return e.code(),
                    }
                },
                Err(e) => e.code().unwrap_or(Code::Unknown),
            }
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        match tokio::time::timeout(Duration::from_secs(120), t)
            .await
            .expect("no deadlock")
            .expect("task")
        {
            Code::Ok => ok += 1,
            Code::ResourceExhausted => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(ok + busy, 16);
    assert!(ok >= 1 && busy >= 1, "ok {ok}, busy {busy}");
    assert!(c.model().await.is_ok());
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", d.child.id()))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(rss_kb < 1_000_000, "daemon uses {rss_kb} kB");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_cache_writes_never_serves_a_corrupt_recording() {
    let (dir, model) = tiny_model_file();
    let cache = dir.path().join("cache");
    // A larger input than usual, so writes take a while.
    let args: Vec<String> = [
        "--model",
        model.to_str().unwrap(),
        "--input-size",
        "256",
        "--ep",
        "cpu",
        "--recordings-dir",
        cache.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let images: Vec<Vec<u8>> = (0..12)
        .map(|i| fovea_engine::fixtures::test_image_png(200 + i, 150))
        .collect();

    let mut d = Daemon::start(&argv);
    let c = ready(&d.addr).await;
    let mut ids = Vec::new();
    for (i, img) in images.iter().enumerate() {
        ids.push(
            c.record(img.clone(), "")
                .await
                .expect("record")
                .recording_id,
        );
        if i == 8 {
            // Mid-stream, while the last writes may still be under way.
            d.child.kill().expect("kill -9");
            let _ = d.child.wait();
            break;
        }
    }
    // Damage one finished file and leave a stray partial write.
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let damaged = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "rec"))
        .cloned();
    if let Some(p) = &damaged {
        let len = std::fs::metadata(p).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(p)
            .unwrap()
            .set_len(len - 100)
            .unwrap();
    }
    std::fs::write(cache.join("deadbeef.rec.partial-1-1"), b"torn").unwrap();

    let d2 = Daemon::start(&argv);
    let fresh = ready(&d2.addr).await;
    assert!(!cache.join("deadbeef.rec.partial-1-1").exists());
    let mut served = 0;
    for (id, img) in ids.iter().zip(&images) {
        // A client that never sent the image: served from disk or NOT_FOUND.
        let req = pb::ActivationStatsRequest {
            recording_id: id.clone(),
            layers: vec![],
        };
        match fresh.stats(req.clone()).await {
            Ok(from_disk) => {
                served += 1;
                // Identical to a recomputation.
                let again = Client::connect(&d2.addr).await.unwrap();
                again.drop_recording(id).await.unwrap();
                let r = again.record(img.clone(), "").await.unwrap();
                assert_eq!(&r.recording_id, id);
                let recomputed = again.stats(req).await.unwrap();
                assert_eq!(
                    from_disk, recomputed,
                    "recording {id} served from disk differs"
                );
            }
            Err(e) => assert_eq!(e.code(), Some(Code::NotFound), "{e}"),
        }
    }
    assert!(served >= 1, "nothing survived the restart");
    if let Some(p) = damaged {
        assert!(!p.exists() || served > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_records_and_reconstructs() {
    let venv = python_venv(
        "grpc",
        &["grpcio==1.76.0", "grpcio-tools==1.76.0"],
        "import grpc, grpc_tools",
    );
    let python = venv.join("bin/python");
    let (dir, model) = tiny_model_file();
    let args = tiny_args(&model);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    // The script calls once, without retrying while the model loads.
    ready(&d.addr).await;
    let proto_root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let out = dir.path().join("stubs");
    std::fs::create_dir_all(&out).unwrap();
    let generated = std::process::Command::new(&python)
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", proto_root.display()))
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg(proto_root.join("fovea/v1/probe.proto"))
        .output()
        .expect("protoc");
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let script = format!(
        r#"
import sys, grpc
sys.path.insert(0, {out:?})
from fovea.v1 import probe_pb2 as pb, probe_pb2_grpc as rpc
stub = rpc.ProbeStub(grpc.insecure_channel({addr:?}))
image = open({image:?}, "rb").read()
rec = stub.Record(pb.RecordRequest(image=image, label="chelsea"))
top = stub.TopActivations(pb.TopActivationsRequest(recording_id=rec.recording_id, layer="conv3_1", k=1)).activations[0]
r = stub.Reconstruct(pb.ReconstructRequest(recording_id=rec.recording_id,
    neurons=[pb.Neuron(layer="conv3_1", feature=top.feature, y=top.y, x=top.x)],
    modes=[pb.LINEAR_FILTER], crop_to_fov=True, effective_bias=True))
png = r.reconstructions[0].png
assert png[:8] == b"\x89PNG\r\n\x1a\n", png[:8]
print("ok", rec.recording_id, len(r.reconstructions[0].values), r.reconstructions[0].effective_bias)
"#,
        out = out.join("").display().to_string(),
        addr = d.addr,
        image = sample_image("chelsea.png").display().to_string(),
    );
    let run = std::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .expect("python");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.starts_with("ok "), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_flushes_the_cache_and_exits_0() {
    let (dir, model) = tiny_model_file();
    let cache = dir.path().join("cache");
    let mut args = tiny_args(&model);
    args.extend(["--recordings-dir".into(), cache.to_str().unwrap().into()]);
    let mut d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = ready(&d.addr).await;
    let id = c
        .record(fovea_engine::fixtures::test_image_png(48, 48), "")
        .await
        .expect("record")
        .recording_id;
    let mut stream = c
        .maximize(pb::MaximizeRequest {
            neuron: Some(neuron("5", 1, 3, 3)),
            steps: 400,
            starts: 2,
            ..Default::default()
        })
        .await
        .expect("maximize");
    assert!(stream.message().await.expect("first event").is_some());
    d.send_term();
    // The stream in flight ends (finished or cancelled), never hangs.
    let ended = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the stream did not end");
    let status = d.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "exit {status:?}:\n{}", d.log());
    assert!(
        cache.join(format!("{id}.rec")).exists(),
        "the recording was flushed to the cache folder"
    );
    assert!(d.wait_log("stopped", Duration::from_secs(5)), "{}", d.log());
}
