//! Class neurons and attribution end to end: the real `fovead` (tiny model
//! with its head) through the typed client, the raw stub for requests the
//! client would not shape, and the `fovea attribute` and `fovea
//! reconstruct` commands.

use fovea_client::{Client, neuron, v1 as pb};
use fovea_tests::{
    attribution, fovea, picture_info, probe, ready, sample_image, stdout_json as ok_json,
    stream_status, tiny_daemon,
};

async fn record(c: &Client, name: &str) -> String {
    c.record(std::fs::read(sample_image(name)).expect("image"), name)
        .await
        .expect("record")
        .recording_id
}

async fn attribute_status(c: &fovea_client::Client, req: pb::AttributeRequest) -> tonic::Status {
    stream_status(probe(c).attribute(req).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attribution_answers_every_method_and_refuses_bad_requests_precisely() {
    let (_dir, _model, d) = tiny_daemon();
    let c = ready(&d.addr).await;
    let id = record(&c, "chelsea.png").await;
    let req = |method: pb::AttributionMethod| pb::AttributeRequest {
        recording_id: id.clone(),
        method: method as i32,
        ..Default::default()
    };
    let top = c
        .record(
            std::fs::read(sample_image("chelsea.png")).expect("image"),
            "",
        )
        .await
        .expect("record")
        .predictions[0]
        .class_index;

    let (saliency, _) = attribution(&c, req(pb::AttributionMethod::Saliency)).await;
    assert_eq!((saliency.layer, saliency.unit), (7, top), "the top class");
    assert_eq!(
        (saliency.height, saliency.width, saliency.channels),
        (32, 32, 3)
    );
    assert_eq!(saliency.values.len(), 32 * 32 * 3);
    // The class's saliency is its linear filter, as Reconstruct gives it.
    let linear = c
        .reconstruct(pb::ReconstructRequest {
            recording_id: id.clone(),
            neurons: vec![neuron("7", top as i32, 0, 0)],
            modes: vec![pb::ReconstructionMode::LinearFilter as i32],
            effective_bias: true,
            ..Default::default()
        })
        .await
        .expect("reconstruct a class")
        .reconstructions;
    assert_eq!(linear[0].values, saliency.values);
    assert_eq!(
        linear[0].fov,
        Some(pb::Box {
            x0: 0,
            y0: 0,
            x1: 32,
            y1: 32
        })
    );
    assert!((linear[0].activation - saliency.objective).abs() <= 1e-6);
    assert!(!linear[0].inactive, "a class has no ReLU to be off");

    let (cam, _) = attribution(&c, req(pb::AttributionMethod::GradCam)).await;
    let map = cam.cam.expect("cam");
    assert_eq!((map.layer, map.height, map.width), (5, 8, 8));
    assert_eq!(map.weights.len(), 8);
    assert_eq!((cam.channels, cam.values.len()), (1, 32 * 32));
    assert!(cam.values.iter().all(|&v| v >= 0.0));
    let (w, h, flat) = picture_info(&cam.png);
    assert!((w, h) == (32, 32) && !flat);

    let mut ig = req(pb::AttributionMethod::IntegratedGradients);
    ig.steps = 10;
    ig.baseline = pb::AttributionBaseline::BaselineNoise as i32;
    ig.seed = 4;
    let (ig, progress) = attribution(&c, ig).await;
    // 10 points and the two ends, in batches of 4.
    assert_eq!(progress, vec![4, 8, 12]);
    let completeness = ig.completeness.expect("completeness");
    let sum: f64 = ig.values.iter().map(|&v| v as f64).sum();
    assert!((sum - completeness.attribution_sum as f64).abs() <= 1e-4 * sum.abs().max(1.0));

    // Bad requests: the field and its range, and the daemon keeps serving.
    let cases: Vec<(pb::AttributeRequest, &str)> = vec![
        (req(pb::AttributionMethod::Unspecified), "method"),
        (
            pb::AttributeRequest {
                unit: Some(5),
                ..req(pb::AttributionMethod::Saliency)
            },
            "unit: 5 is outside 0..=4",
        ),
        (
            pb::AttributeRequest {
                layer: "3".into(),
                ..req(pb::AttributionMethod::Saliency)
            },
            "layer: \"3\" is not a dense layer; allowed 6..=7",
        ),
        (
            pb::AttributeRequest {
                layer: "6".into(),
                ..req(pb::AttributionMethod::Saliency)
            },
            "unit: required for the hidden dense layer 6",
        ),
        (
            pb::AttributeRequest {
                cam_layer: "7".into(),
                ..req(pb::AttributionMethod::GradCam)
            },
            "cam_layer",
        ),
        (
            pb::AttributeRequest {
                steps: 5000,
                ..req(pb::AttributionMethod::IntegratedGradients)
            },
            "steps: 5000 is outside 1..=1024",
        ),
        (
            pb::AttributeRequest {
                baseline: pb::AttributionBaseline::BaselineBlurred as i32,
                blur_sigma: -1.0,
                ..req(pb::AttributionMethod::IntegratedGradients)
            },
            "blur_sigma: -1 is outside (0, 100]",
        ),
        (
            pb::AttributeRequest {
                class_label: "x".repeat(500),
                ..req(pb::AttributionMethod::Saliency)
            },
            "class_label: no class is labelled",
        ),
        (
            pb::AttributeRequest {
                unit: Some(1),
                class_label: "tabby".into(),
                ..req(pb::AttributionMethod::Saliency)
            },
            "not both",
        ),
    ];
    for (r, needle) in cases {
        let s = attribute_status(&c, r).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{needle}: {s:?}");
        assert!(s.message().contains(needle), "{needle}: {}", s.message());
        assert!(s.message().len() < 300, "unbounded echo: {}", s.message());
    }
    let s = attribute_status(
        &c,
        pb::AttributeRequest {
            recording_id: "0".repeat(64),
            ..req(pb::AttributionMethod::Saliency)
        },
    )
    .await;
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
    let (again, _) = attribution(&c, req(pb::AttributionMethod::Saliency)).await;
    assert_eq!(again.values, saliency.values, "the daemon still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconstruct_starts_at_the_pre_activation_unless_asked_through_the_relu() {
    let (_dir, _model, d) = tiny_daemon();
    let c = ready(&d.addr).await;
    let id = record(&c, "chelsea.png").await;
    // Every hidden unit of the head: some are off at this image.
    let neurons: Vec<pb::Neuron> = (0..10).map(|f| neuron("6", f, 0, 0)).collect();
    let ask = |through| pb::ReconstructRequest {
        recording_id: id.clone(),
        neurons: neurons.clone(),
        modes: vec![pb::ReconstructionMode::DeconvnetMasked as i32],
        through_neuron_relu: through,
        ..Default::default()
    };
    let open = c
        .reconstruct(ask(false))
        .await
        .expect("open")
        .reconstructions;
    let through = c
        .reconstruct(ask(true))
        .await
        .expect("through")
        .reconstructions;
    assert!(open.iter().any(|r| r.inactive) && open.iter().any(|r| !r.inactive));
    for (a, b) in open.iter().zip(&through) {
        assert_eq!(a.inactive, b.inactive);
        if b.inactive {
            assert!(b.values.iter().all(|&v| v == 0.0));
            assert!(a.values.iter().any(|&v| v != 0.0), "pre-activation start");
        } else {
            assert_eq!(a.values, b.values);
        }
    }
}

#[test]
fn the_attribute_command_writes_its_picture_and_says_what_went_wrong() {
    let (dir, _model, d) = tiny_daemon();
    let c = ["--connect", d.addr.as_str()];
    let image = sample_image("chelsea.png");
    let image = image.to_str().unwrap();
    let out = dir.path().join("gg.png");
    let out = out.to_str().unwrap();
    for method in ["saliency", "guided", "gradcam", "guided-gradcam", "ig"] {
        let v = ok_json(&fovea(
            &[
                &c[..],
                &[
                    "--json",
                    "attribute",
                    image,
                    "--class",
                    "2",
                    "--method",
                    method,
                    "--steps",
                    "16",
                    "-o",
                    out,
                ],
            ]
            .concat(),
        ));
        assert_eq!(
            (v["layer"].as_u64(), v["unit"].as_u64()),
            (Some(7), Some(2))
        );
        assert_eq!(v["cam_layer"].is_null(), !method.contains("gradcam"), "{v}");
        assert_eq!(v["completeness"].is_null(), method != "ig", "{v}");
        let (w, h, flat) = picture_info(&std::fs::read(out).expect("picture"));
        assert!((w, h) == (32, 32) && !flat, "{method}");
    }
    let text = fovea_tests::stdout_ok(&fovea(
        &[
            &c[..],
            &[
                "attribute",
                image,
                "--method",
                "ig",
                "--steps",
                "8",
                "-o",
                out,
            ],
        ]
        .concat(),
    ));
    assert!(
        text.contains("completeness: the attributions sum to"),
        "{text}"
    );

    let refused = fovea(&[&c[..], &["attribute", image, "--class", "9", "-o", out]].concat());
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("unit: 9 is outside 0..=4"), "{err}");
    let refused = fovea(&[&c[..], &["attribute", image, "--baseline", "grey"]].concat());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("black, blurred[:SIGMA] or noise[:SEED]"),
        "{err}"
    );
    let missing = fovea(&[&c[..], &["attribute", "/no/such.png"]].concat());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        !missing.status.success() && err.contains("/no/such.png"),
        "{err}"
    );
}
