//! The Python package in `clients/python`, installed with pip from the
//! working tree into a venv in the user cache, against the real `fovead`
//! (tiny model): its checks compare every array with what the Rust client
//! gets for the same calls, the examples run, and the notebook executes
//! headless. The committed generated stubs must match the proto.

use fovea_client::{Client, neuron, v1 as pb};
use fovea_tests::{Daemon, python_venv, sample_image, tiny_args, tiny_model_file};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../clients/python")
}

fn proto_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto")
}

/// Pinned tools and the package's own dependencies at the versions tested.
const PACKAGES: &[&str] = &[
    "grpcio==1.76.0",
    "grpcio-tools==1.76.0",
    "protobuf==6.33.6",
    "numpy==2.4.6",
    "matplotlib==3.11.2",
    "hatchling==1.33.0",
    "nbclient==0.11.0",
    "nbformat==5.11.1",
    "ipykernel==7.4.0",
];

/// The venv with the package installed from the working tree, once per
/// test process.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = python_venv(
            "client",
            PACKAGES,
            "import grpc, grpc_tools, numpy, matplotlib, hatchling, nbclient, ipykernel",
        );
        let python = venv.join("bin/python");
        // The tools are in place: build without fetching a build backend.
        let out = Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-build-isolation",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(package())
            .output()
            .expect("pip");
        assert!(
            out.status.success(),
            "pip install ./clients/python:\n{}",
            text(&out)
        );
        python
    })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run_python(args: &[&str], addr: &str, cwd: &Path) -> String {
    let out = Command::new(python())
        .args(args)
        .env("FOVEA_CONNECT", addr)
        .env("MPLBACKEND", "Agg")
        .current_dir(cwd)
        .output()
        .expect("python");
    assert!(out.status.success(), "python {args:?}:\n{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tiny() -> (tempfile::TempDir, Daemon) {
    let (dir, model) = tiny_model_file();
    let args = tiny_args(&model);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    (dir, d)
}

/// What the Rust client answers for the calls the Python checks make.
async fn expected(addr: &str, image: &Path) -> serde_json::Value {
    let c = Client::connect(addr).await.expect("connect");
    c.wait_ready(Duration::from_secs(30)).await.expect("ready");
    let model = c.model().await.expect("model");
    let layer = "5";
    let r = c
        .record(std::fs::read(image).expect("image"), "")
        .await
        .expect("record");
    let id = r.recording_id.clone();
    let features = vec![0u32, 3, 1];
    let maps = c
        .feature_maps(pb::GetFeatureMapsRequest {
            recording_id: id.clone(),
            layer: layer.into(),
            features: features.clone(),
            ..Default::default()
        })
        .await
        .expect("maps");
    let depth = model
        .layers
        .iter()
        .find(|l| l.number == 5)
        .map(|l| l.channels)
        .expect("layer 5");
    let top = c
        .top(pb::TopActivationsRequest {
            recording_id: id.clone(),
            layer: layer.into(),
            k: 4,
            ..Default::default()
        })
        .await
        .expect("top")
        .activations;
    let best = &top[0];
    let recs = c
        .reconstruct(pb::ReconstructRequest {
            recording_id: id.clone(),
            neurons: vec![neuron(
                layer,
                best.feature as i32,
                best.y as i32,
                best.x as i32,
            )],
            crop_to_fov: true,
            effective_bias: true,
            ..Default::default()
        })
        .await
        .expect("reconstruct")
        .reconstructions;
    let mode_name = |m: i32| match pb::ReconstructionMode::try_from(m) {
        Ok(pb::ReconstructionMode::Deconvnet) => "deconvnet",
        Ok(pb::ReconstructionMode::DeconvnetMasked) => "masked",
        Ok(pb::ReconstructionMode::RandomWeights) => "random",
        _ => "linear",
    };
    let frame = |r: &pb::Reconstruction| -> Vec<Vec<Vec<f32>>> {
        r.values
            .chunks(r.width as usize * 3)
            .map(|row| row.chunks(3).map(<[f32]>::to_vec).collect())
            .collect()
    };
    let linear = recs
        .iter()
        .find(|r| r.mode == pb::ReconstructionMode::LinearFilter as i32)
        .expect("linear filter");
    let fov = linear.fov.unwrap_or_default();
    let stats = c
        .stats(pb::ActivationStatsRequest {
            recording_id: id.clone(),
            layers: vec![],
        })
        .await
        .expect("stats");
    let other = c
        .record(
            std::fs::read(sample_image("rocket.jpg")).expect("image"),
            "",
        )
        .await
        .expect("record");
    let best_neuron = neuron(layer, best.feature as i32, best.y as i32, best.x as i32);
    let compare = |n: Option<pb::Neuron>| {
        c.compare_patterns(pb::ComparePatternsRequest {
            recording_a: id.clone(),
            recording_b: other.recording_id.clone(),
            neuron: n,
        })
    };
    let whole = compare(None).await.expect("compare");
    let tree = compare(Some(best_neuron.clone())).await.expect("compare");
    let agreement = |r: &pb::ComparePatternsResponse| {
        r.layers
            .iter()
            .map(|l| {
                json!([
                    l.layer,
                    l.units,
                    l.same_state,
                    l.active_a,
                    l.active_b,
                    l.active_both,
                    l.windows,
                    l.same_switch,
                    l.mask_agreement,
                    l.jaccard,
                    l.switch_agreement
                ])
            })
            .collect::<Vec<_>>()
    };
    let tree_neuron = tree.neuron.unwrap_or_default();
    let region = |direction: pb::DirectionKind, max_regions: u32| {
        let req = pb::LinearRegionRequest {
            recording_id: id.clone(),
            neuron: Some(best_neuron.clone()),
            direction: direction as i32,
            seed: 2,
            toward_recording: if direction == pb::DirectionKind::Toward {
                other.recording_id.clone()
            } else {
                String::new()
            },
            max_regions,
            extent: 0.0,
        };
        let c = &c;
        async move {
            let mut stream = c.linear_region(req).await.expect("region");
            let mut progress = 0;
            while let Some(ev) = stream.message().await.expect("event") {
                match ev.event {
                    Some(pb::linear_region_event::Event::Progress(_)) => progress += 1,
                    Some(pb::linear_region_event::Event::Result(r)) => return (r, progress),
                    None => {}
                }
            }
            panic!("no result")
        }
    };
    let (around, _) = region(pb::DirectionKind::Random, 0).await;
    let (walk, progress) = region(pb::DirectionKind::Toward, 40).await;
    assert_eq!(progress, walk.segments.len());
    let end = |e: &Option<pb::RegionEnd>| {
        e.as_ref().map(|e| {
            let u = e.unit.unwrap_or_default();
            json!([e.t, u.kind, u.layer, u.feature, u.y, u.x, e.value])
        })
    };
    let attribute = |method: pb::AttributionMethod| {
        let req = pb::AttributeRequest {
            recording_id: id.clone(),
            method: method as i32,
            steps: 8,
            baseline: pb::AttributionBaseline::BaselineBlurred as i32,
            ..Default::default()
        };
        fovea_tests::attribution(&c, req)
    };
    let (ig, ig_progress) = attribute(pb::AttributionMethod::IntegratedGradients).await;
    let (cam, _) = attribute(pb::AttributionMethod::GradCam).await;
    let completeness = ig.completeness.unwrap_or_default();
    let cam_map = cam.cam.unwrap_or_default();
    json!({
        "attribute": {
            "unit": ig.unit,
            "objective": ig.objective,
            "ig": ig.values,
            "ig_progress": ig_progress,
            "completeness": [completeness.attribution_sum, completeness.objective_difference, completeness.baseline_objective],
            "cam": cam.values,
            "cam_grid": cam_map.grid,
            "cam_layer": cam_map.layer,
            "cam_shape": [cam_map.height, cam_map.width],
        },
        "other_image": sample_image("rocket.jpg"),
        "compare": {
            "whole": agreement(&whole),
            "tree": agreement(&tree),
            "tree_neuron": [tree_neuron.active_a, tree_neuron.active_b, tree_neuron.same_linear_filter, tree_neuron.first_difference],
        },
        "region": {
            "value": around.value,
            "slope": around.slope,
            "norm": around.direction_norm,
            "forward": end(&around.forward),
            "backward": end(&around.backward),
        },
        "walk": {
            "segments": walk.segments.iter().map(|s| json!([s.t0, s.t1, s.v0, s.v1, s.slope])).collect::<Vec<_>>(),
            "complete": walk.complete,
            "norm": walk.direction_norm,
        },
        "image": image,
        "layer": layer,
        "model": {
            "name": model.name,
            "layers": model.layers.iter().map(|l| l.name.clone()).collect::<Vec<_>>(),
            // Each conv layer's pool kind, as the Python client names it.
            "pools": model
                .layers
                .iter()
                .filter(|l| l.conv.is_some())
                .map(|l| match &l.pool {
                    Some(p) if p.average => "average",
                    Some(_) => "max",
                    None => "",
                })
                .collect::<Vec<_>>(),
            "input_size": model.preprocessing.as_ref().map(|p| p.input_size),
        },
        "recording_id": id,
        "predictions": r.predictions.iter().map(|p| p.class_index).collect::<Vec<_>>(),
        "features": features,
        "depth": depth,
        "maps": maps.maps.iter().map(|m| {
            m.values.chunks(maps.width as usize).map(<[f32]>::to_vec).collect::<Vec<_>>()
        }).collect::<Vec<_>>(),
        "top": top.iter().map(|a| json!([a.feature, a.y, a.x, a.value])).collect::<Vec<_>>(),
        "reconstructions": recs.iter().map(|r| (mode_name(r.mode).to_string(), json!(frame(r))))
            .collect::<serde_json::Map<_, _>>(),
        "fov": [fov.x0, fov.y0, fov.x1, fov.y1],
        "effective_bias": linear.effective_bias,
        "stats": {
            "layers": stats.layers.iter().map(|s| s.layer).collect::<Vec<_>>(),
            "histograms": stats.layers.iter().map(|s| s.histogram.clone()).collect::<Vec<_>>(),
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_package_gives_the_rust_clients_values_errors_and_cancellation() {
    let (dir, d) = tiny();
    let want = expected(&d.addr, &sample_image("chelsea.png")).await;
    let file = dir.path().join("expected.json");
    std::fs::write(&file, want.to_string()).unwrap();
    let script = package().join("tests/check_daemon.py");
    let out = run_python(
        &[script.to_str().unwrap(), file.to_str().unwrap()],
        &d.addr,
        dir.path(),
    );
    assert!(out.ends_with("all checks passed\n"), "{out}");
    assert!(out.contains("ok attribution\n"), "{out}");
    // Leaving the loop and Ctrl-C both reached the daemon.
    assert!(
        d.wait_log("maximize cancelled", Duration::from_secs(20)),
        "{}",
        d.log()
    );
}

#[test]
fn the_examples_run_against_a_daemon() {
    let (dir, d) = tiny();
    let examples = package().join("examples");
    let fig = dir.path().join("fig4.png");
    let out = run_python(
        &[
            examples.join("fig4.py").to_str().unwrap(),
            "-o",
            fig.to_str().unwrap(),
        ],
        &d.addr,
        dir.path(),
    );
    assert!(out.contains("chelsea.png, features ["), "{out}");
    let (w, h, flat) = fovea_tests::picture_info(&std::fs::read(&fig).expect("fig4.png"));
    assert!(w >= 1000 && h >= 500 && !flat, "{w}x{h} flat={flat}");

    let folder = fovea_samples::source_dir();
    let out = run_python(
        &[
            examples.join("top_neurons.py").to_str().unwrap(),
            folder.to_str().unwrap(),
            "-k",
            "2",
        ],
        &d.addr,
        dir.path(),
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), fovea_samples::SAMPLES.len(), "{out}");
    for s in fovea_samples::SAMPLES {
        let line = lines
            .iter()
            .find(|l| l.starts_with(s.name))
            .unwrap_or_else(|| panic!("no line for {}:\n{out}", s.name));
        assert_eq!(line.matches('@').count(), 2, "{line}");
    }
}

#[test]
fn the_notebook_executes_headless() {
    let (dir, d) = tiny();
    let examples = package().join("examples");
    let script = r#"
import sys, nbformat
from nbclient import NotebookClient
nb = nbformat.read(sys.argv[1], as_version=4)
assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "outputs are not stripped"
NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": sys.argv[2]}}).execute()
images = sum(1 for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {}))
errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
assert not errors, errors
print("images", images)
"#;
    let out = run_python(
        &[
            "-c",
            script,
            examples.join("fig4.ipynb").to_str().unwrap(),
            examples.to_str().unwrap(),
        ],
        &d.addr,
        dir.path(),
    );
    // The input, the linear filter and the whole figure show as pictures.
    let images: usize = out
        .trim()
        .strip_prefix("images ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(images >= 3, "{out}");
}

#[test]
fn the_committed_stubs_are_what_the_proto_gives() {
    let dir = tempfile::tempdir().unwrap();
    let root = proto_root();
    let out = Command::new(python())
        .args(["-m", "grpc_tools.protoc"])
        .arg(format!("-I{}", root.display()))
        .arg(format!("--python_out={}", dir.path().display()))
        .arg(format!("--grpc_python_out={}", dir.path().display()))
        .arg(format!("--pyi_out={}", dir.path().display()))
        .arg(root.join("fovea/v1/probe.proto"))
        .output()
        .expect("protoc");
    assert!(out.status.success(), "{}", text(&out));
    for name in ["probe_pb2.py", "probe_pb2_grpc.py", "probe_pb2.pyi"] {
        let fresh = std::fs::read(dir.path().join("fovea/v1").join(name)).expect("generated");
        let committed = package().join("src/fovea/v1").join(name);
        let have = std::fs::read(&committed).unwrap_or_default();
        assert!(
            fresh == have,
            "{} differs from what proto/fovea/v1/probe.proto gives; regenerate it \
             (clients/python/README.md says how)",
            committed.display()
        );
    }
}

#[test]
fn the_package_version_follows_the_workspace() {
    let pyproject = std::fs::read_to_string(package().join("pyproject.toml")).unwrap();
    let version = pyproject
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim_matches('"'))
        .expect("a version line in pyproject.toml");
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    let installed = Command::new(python())
        .args(["-c", "import fovea; print(fovea.__version__)"])
        .output()
        .expect("python");
    assert_eq!(
        String::from_utf8_lossy(&installed.stdout).trim(),
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn the_package_connects_over_a_unix_socket() {
    let (dir, model) = tiny_model_file();
    let path = dir.path().join("fovea.sock");
    let listen = format!("unix:{}", path.display());
    let args = tiny_args(&model);
    let args: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .chain(["--listen", &listen])
        .collect();
    let d = Daemon::start(&args);
    // A stock grpcio client needs `grpc.default_authority` on a unix
    // socket (the package sets it); without it the call fails.
    let script = r#"
import sys, time, grpc, fovea
from fovea.v1 import probe_pb2 as pb, probe_pb2_grpc as rpc
client = fovea.connect(sys.argv[1])
for _ in range(300):
    try:
        client.model()
        break
    except fovea.Unavailable:
        time.sleep(0.1)
rec = client.record(sys.argv[2])
print("ok", len(rec.top("3", k=2)))
stub = rpc.ProbeStub(grpc.insecure_channel(sys.argv[1], options=[("grpc.default_authority", "localhost")]))
print("stock", stub.GetModel(pb.GetModelRequest()).name != "")
"#;
    let out = run_python(
        &[
            "-c",
            script,
            &listen,
            sample_image("rocket.jpg").to_str().unwrap(),
        ],
        &d.addr,
        dir.path(),
    );
    assert_eq!(out, "ok 2\nstock True\n", "{out}");
}
