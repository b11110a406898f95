//! Spins up the real `fovead` binary on an ephemeral port (tiny generated
//! model) and drives every RPC through the Rust client, plus health,
//! reflection and start-up failures.

use fovea_client::{Client, neuron, v1 as pb};
use fovea_tests::{Daemon, bin, picture_info, tiny_daemon};
use std::time::Duration;

async fn client_for(d: &Daemon) -> Client {
    let c = Client::connect(&d.addr).await.expect("connect");
    c.wait_ready(Duration::from_secs(60)).await.expect("ready");
    c
}

#[tokio::test]
async fn health_reflection_and_every_rpc_on_the_tiny_model() {
    let (_dir, _model, d) = tiny_daemon();
    let c = client_for(&d).await;

    // Health (overall and per service) and reflection.
    let mut health = tonic_health::pb::health_client::HealthClient::new(c.channel());
    for service in ["", "fovea.v1.Probe"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health");
        assert_eq!(r.into_inner().status, 1, "SERVING for {service:?}");
    }
    let mut refl = tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient::new(
        c.channel(),
    );
    let req = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            tonic_reflection::pb::v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            ),
        ),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .expect("reflection")
        .into_inner();
    let answer = stream
        .message()
        .await
        .expect("reflection answer")
        .expect("one message");
    let listed = format!("{:?}", answer.message_response);
    assert!(
        listed.contains("fovea.v1.Probe") && listed.contains("grpc.health.v1.Health"),
        "{listed}"
    );

    // GetModel.
    let m = c.model().await.expect("model");
    assert_eq!(m.layers.len(), 1 + 5 + 2);
    assert_eq!(m.layers[5].name, "conv3_1");
    assert_eq!((m.layers[5].fov, m.layers[5].stride), (24, 4));
    assert_eq!(m.execution_provider, "cpu");
    assert_eq!(m.num_classes, 5);
    assert_eq!(m.provenance.as_ref().unwrap().source, "file");

    // Record (idempotent).
    let image = fovea_engine::fixtures::test_image_png(64, 48);
    let r = c.record(image.clone(), "test").await.expect("record");
    assert_eq!(
        (r.original_width, r.original_height, r.input_width),
        (64, 48, 32)
    );
    assert_eq!(r.activity.len(), 5);
    assert_eq!(r.predictions.len(), 5);
    assert!(!r.cached);
    let again = c.record(image.clone(), "test").await.expect("record again");
    assert_eq!(again.recording_id, r.recording_id);
    assert!(again.cached);
    let id = r.recording_id.clone();

    // Feature maps, float and 8-bit.
    let maps = c
        .feature_maps(pb::GetFeatureMapsRequest {
            recording_id: id.clone(),
            layer: "conv2_1".into(),
            feature_start: Some(1),
            feature_end: Some(4),
            ..Default::default()
        })
        .await
        .expect("maps");
    assert_eq!((maps.layer, maps.height, maps.maps.len()), (3, 16, 3));
    assert_eq!(maps.maps[0].values.len(), 16 * 16);
    let q = c
        .feature_maps(pb::GetFeatureMapsRequest {
            recording_id: id.clone(),
            layer: "3".into(),
            features: vec![2],
            encoding: pb::ValueEncoding::Uint8 as i32,
            ..Default::default()
        })
        .await
        .expect("quantized maps");
    let (fq, ff) = (&q.maps[0], &maps.maps[1]);
    for (b, v) in fq.quantized.iter().zip(&ff.values) {
        assert!((*b as f32 * fq.scale - v).abs() <= fq.scale);
    }

    // Top activations: sorted, within the layer.
    let top = c
        .top(pb::TopActivationsRequest {
            recording_id: id.clone(),
            layer: "5".into(),
            k: 7,
            ..Default::default()
        })
        .await
        .expect("top");
    assert_eq!(top.activations.len(), 7);
    assert!(top.activations.windows(2).all(|w| w[0].value >= w[1].value));
    let best = top.activations[0];

    // Reconstruct: all four modes, FOV-cropped PNGs of the FOV's size.
    let rr = c
        .reconstruct(pb::ReconstructRequest {
            recording_id: id.clone(),
            neurons: vec![neuron(
                "conv3_1",
                best.feature as i32,
                best.y as i32,
                best.x as i32,
            )],
            crop_to_fov: true,
            effective_bias: true,
            ..Default::default()
        })
        .await
        .expect("reconstruct");
    assert_eq!(rr.reconstructions.len(), 4);
    for rec in &rr.reconstructions {
        let b = rec.fov.unwrap();
        let (w, h, constant) = picture_info(&rec.png);
        assert_eq!((w as i32, h as i32), (b.x1 - b.x0, b.y1 - b.y0));
        assert!(!constant, "{:?} rendered a constant picture", rec.mode);
        assert_eq!(rec.values.len(), 32 * 32 * 3);
        assert_eq!(rec.normalization.as_ref().unwrap().kind, "diverging");
    }
    let linear = rr
        .reconstructions
        .iter()
        .find(|r| r.mode == pb::ReconstructionMode::LinearFilter as i32)
        .unwrap();
    assert!(linear.effective_bias != 0.0);

    // Statistics.
    let s = c
        .stats(pb::ActivationStatsRequest {
            recording_id: id.clone(),
            layers: vec!["1".into(), "conv3_1".into()],
        })
        .await
        .expect("stats");
    assert_eq!(s.layers.len(), 2);
    assert_eq!(s.layers[0].histogram.len(), 5);
    assert_eq!(s.layers[0].histogram.iter().sum::<u32>(), 32 * 32);

    // List, drop, and a transparent re-record after the drop.
    let list = c.list().await.expect("list");
    assert_eq!(list.recordings.len(), 1);
    assert!(list.cache_bytes > 0);
    assert!(c.drop_recording(&id).await.expect("drop"));
    assert!(!c.drop_recording(&id).await.expect("drop again"));
    let top_again = c
        .top(pb::TopActivationsRequest {
            recording_id: id.clone(),
            layer: "5".into(),
            k: 1,
            ..Default::default()
        })
        .await
        .expect("top after drop is re-recorded");
    assert_eq!(top_again.activations[0], best);

    // A client that never saw the image gets NOT_FOUND with advice.
    let other = Client::connect(&d.addr).await.expect("connect");
    other.drop_recording(&id).await.expect("drop");
    let err = other
        .top(pb::TopActivationsRequest {
            recording_id: id.clone(),
            layer: "5".into(),
            k: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound));
    assert!(err.to_string().contains("send the image again"), "{err}");
}

fn start_failure(model: &std::path::Path) -> (i32, String) {
    let out = std::process::Command::new(bin("fovead"))
        .args(["--listen", "127.0.0.1:0", "--ep", "cpu", "--model"])
        .arg(model)
        .env("RUST_LOG", "off")
        .output()
        .expect("run fovead");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[test]
fn a_file_that_is_not_onnx_exits_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.onnx");
    std::fs::write(&path, b"this is not a protobuf model at all \xff\xfe").unwrap();
    let (code, err) = start_failure(&path);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("model:") && err.contains("not an ONNX model"),
        "{err}"
    );
}

#[test]
fn a_graph_that_is_not_a_conv_chain_exits_naming_the_node() {
    use fovea_onnx::proto::tensor_proto::DataType;
    use fovea_onnx::{Attr, Dim, GraphBuilder, encode, f32_tensor};
    // A ResNet-style stem (7x7 stride-2 convolution) with a sigmoid where
    // a ReLU should be: no piecewise-linear layer to probe.
    let mut g = GraphBuilder::new("stem");
    let x = g.input(
        "x",
        DataType::Float,
        &[
            Dim::Named("N"),
            Dim::Fixed(3),
            Dim::Fixed(32),
            Dim::Fixed(32),
        ],
    );
    let w = g.initializer(f32_tensor("w", &[4, 3, 7, 7], &vec![0.1; 4 * 3 * 49]));
    let z = g.node(
        "Conv",
        &[&x, &w],
        vec![
            ("kernel_shape", Attr::Ints(vec![7, 7])),
            ("strides", Attr::Ints(vec![2, 2])),
            ("pads", Attr::Ints(vec![3, 3, 3, 3])),
        ],
    );
    g.node_named("Sigmoid", &[&z], "y", vec![]);
    g.output("y", DataType::Float, &[]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stem.onnx");
    std::fs::write(&path, encode(&g.finish())).unwrap();
    let (code, err) = start_failure(&path);
    assert_ne!(code, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("(Conv)") && err.contains("Relu") && err.contains("(Sigmoid)"),
        "{err}"
    );
}

// Multi-threaded: the test blocks while waiting for the daemon's log, and the
// client's connection must keep running meanwhile to send the cancellation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maximize_streams_progress_and_stops_when_the_client_leaves() {
    let (_dir, _model, d) = tiny_daemon();
    let c = client_for(&d).await;
    let req = pb::MaximizeRequest {
        neuron: Some(neuron("conv3_1", 2, 3, 4)),
        starts: 2,
        steps: 6,
        preview_every: 3,
        seed: 1,
        ..Default::default()
    };
    let mut stream = c.maximize(req.clone()).await.expect("maximize");
    let mut steps = Vec::new();
    let mut previews = 0;
    let mut result = None;
    while let Some(ev) = stream.message().await.expect("event") {
        match ev.event {
            Some(pb::maximize_event::Event::Progress(p)) => {
                assert_eq!(p.objective.len(), 2);
                previews += usize::from(!p.previews.is_empty());
                steps.push(p.step);
            }
            Some(pb::maximize_event::Event::Result(r)) => result = Some(r),
            None => {}
        }
    }
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    assert_eq!(previews, 2);
    let r = result.expect("final result");
    assert_eq!(r.pngs.len(), 2);
    let b = r.fov.unwrap();
    let (w, h, constant) = picture_info(&r.pngs[0]);
    assert_eq!((w as i32, h as i32), (b.x1 - b.x0, b.y1 - b.y0));
    assert!(!constant);

    // A client that leaves mid-run: the daemon stops within a step.
    let long = pb::MaximizeRequest {
        steps: 10_000,
        ..req
    };
    let mut stream = c.maximize(long).await.expect("maximize");
    let first = stream.message().await.expect("event");
    assert!(first.is_some());
    drop(stream);
    assert!(
        d.wait_log("maximize cancelled", Duration::from_secs(20)),
        "no cancellation logged:\n{}",
        d.log()
    );
    // Still serving.
    c.model().await.expect("model after cancellation");
}

/// A neuron whose field of view (51 pixels) is larger than the image (32)
/// is maximised over the whole image: its previews and results are
/// pictures of the image's size.
#[tokio::test]
async fn a_neuron_seeing_more_than_the_image_previews_the_whole_image() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("preact.onnx");
    std::fs::write(&model, fovea_engine::fixtures::preactivation_model()).unwrap();
    let args = fovea_tests::tiny_args(&model);
    let d = Daemon::start(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let c = client_for(&d).await;
    let req = pb::MaximizeRequest {
        neuron: Some(neuron("9", 3, 1, 2)),
        starts: 2,
        steps: 4,
        preview_every: 2,
        seed: 1,
        ..Default::default()
    };
    let mut stream = c.maximize(req).await.expect("maximize");
    let (mut previews, mut result) = (Vec::new(), None);
    while let Some(ev) = stream.message().await.expect("event") {
        match ev.event {
            Some(pb::maximize_event::Event::Progress(p)) => previews.extend(p.previews),
            Some(pb::maximize_event::Event::Result(r)) => result = Some(r),
            None => {}
        }
    }
    assert_eq!(previews.len(), 4, "two starts at steps 2 and 4");
    for png in &previews {
        let (w, h, constant) = picture_info(png);
        assert_eq!((w, h), (32, 32));
        assert!(!constant);
    }
    let r = result.expect("final result");
    let (w, h, _) = picture_info(&r.pngs[0]);
    assert_eq!((w, h), (32, 32));
}
