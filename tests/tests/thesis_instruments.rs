//! ComparePatterns, LinearRegion and Study end to end: the real `fovead`
//! (tiny model) through the typed client, the raw stub for requests the
//! client would not shape, and the `fovea compare`, `fovea regions` and
//! `fovea study` commands.

use fovea_client::{Client, neuron, v1 as pb};
use fovea_tests::{
    fovea, picture_info, probe, ready, sample_image, status, stdout_json as ok_json, stream_status,
    tiny_daemon,
};
use std::time::Duration;

async fn record(c: &Client, name: &str) -> String {
    c.record(std::fs::read(sample_image(name)).expect("image"), name)
        .await
        .expect("record")
        .recording_id
}

async fn region_status(c: &fovea_client::Client, req: pb::LinearRegionRequest) -> tonic::Status {
    stream_status(probe(c).linear_region(req).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_codes_and_the_daemon_keeps_serving() {
    let (_dir, _model, d) = tiny_daemon();
    let c = ready(&d.addr).await;
    let a = record(&c, "chelsea.png").await;
    let b = record(&c, "rocket.jpg").await;
    let compare = |a: &str, b: &str, n: Option<pb::Neuron>| pb::ComparePatternsRequest {
        recording_a: a.into(),
        recording_b: b.into(),
        neuron: n,
    };
    let s = status(
        probe(&c)
            .compare_patterns(compare(&a, &"0".repeat(64), None))
            .await,
    );
    assert_eq!(s.code(), tonic::Code::NotFound, "{s:?}");
    let s = status(
        probe(&c)
            .compare_patterns(compare(&a, "not an id", None))
            .await,
    );
    assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
    let s = status(
        probe(&c)
            .compare_patterns(compare(&a, &b, Some(neuron("5", 99, 0, 0))))
            .await,
    );
    assert_eq!(s.code(), tonic::Code::InvalidArgument);
    assert!(
        s.message().contains("neuron.feature") && s.message().contains("0..=7"),
        "{s:?}"
    );

    let good = pb::LinearRegionRequest {
        recording_id: a.clone(),
        neuron: Some(neuron("5", 1, 2, 2)),
        direction: pb::DirectionKind::Random as i32,
        ..Default::default()
    };
    let cases = [
        (
            pb::LinearRegionRequest {
                neuron: None,
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "neuron",
        ),
        (
            pb::LinearRegionRequest {
                direction: 0,
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "direction",
        ),
        (
            pb::LinearRegionRequest {
                direction: pb::DirectionKind::Toward as i32,
                toward_recording: a.clone(),
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "same input",
        ),
        (
            pb::LinearRegionRequest {
                direction: pb::DirectionKind::Toward as i32,
                toward_recording: "f".repeat(64),
                ..good.clone()
            },
            tonic::Code::NotFound,
            "",
        ),
        (
            pb::LinearRegionRequest {
                max_regions: 10_001,
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "max_regions",
        ),
        (
            pb::LinearRegionRequest {
                max_regions: 5,
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "extent",
        ),
        (
            pb::LinearRegionRequest {
                extent: 2.0,
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "extent",
        ),
        (
            pb::LinearRegionRequest {
                neuron: Some(neuron("9", 0, 0, 0)),
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "neuron.layer",
        ),
    ];
    for (req, code, word) in cases {
        let s = region_status(&c, req.clone()).await;
        assert_eq!(s.code(), code, "{req:?}: {s:?}");
        assert!(s.message().contains(word), "{req:?}: {s:?}");
    }
    // Still serving, and the good request answers.
    assert_eq!(region_status(&c, good).await.code(), tonic::Code::Ok);
    assert!(c.model().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_streams_progress_and_stops_when_the_client_leaves() {
    let (_dir, _model, d) = tiny_daemon();
    let c = ready(&d.addr).await;
    let a = record(&c, "chelsea.png").await;
    let b = record(&c, "astronaut.png").await;
    let mut stream = c
        .linear_region(pb::LinearRegionRequest {
            recording_id: a.clone(),
            neuron: Some(neuron("5", 1, 2, 2)),
            direction: pb::DirectionKind::Toward as i32,
            toward_recording: b.clone(),
            max_regions: 25,
            ..Default::default()
        })
        .await
        .expect("region");
    let mut counts = Vec::new();
    let mut result = None;
    while let Some(ev) = stream.message().await.expect("event") {
        match ev.event {
            Some(pb::linear_region_event::Event::Progress(p)) => counts.push(p.regions),
            Some(pb::linear_region_event::Event::Result(r)) => result = Some(r),
            None => {}
        }
    }
    let r = result.expect("a result");
    assert_eq!(counts, (1..=r.segments.len() as u32).collect::<Vec<_>>());
    assert!(!r.segments.is_empty() && r.segments.len() <= 25);
    assert_eq!((r.from, r.to), (0.0, 1.0));
    assert_eq!(r.segments[0].t0, 0.0);
    // The walk's first region is the image's own.
    let first = &r.segments[0];
    let forward = r.forward.as_ref().expect("a bounded region");
    assert!(
        (first.t1 - forward.t).abs() <= 1e-12,
        "{first:?} {forward:?}"
    );
    assert_eq!(first.end, forward.unit);

    // A long walk, left after its first events: the daemon stops it.
    let mut stream = c
        .linear_region(pb::LinearRegionRequest {
            recording_id: a,
            neuron: Some(neuron("5", 1, 2, 2)),
            direction: pb::DirectionKind::Random as i32,
            max_regions: 10_000,
            extent: 1e5,
            ..Default::default()
        })
        .await
        .expect("region");
    stream.message().await.expect("event");
    drop(stream);
    assert!(
        d.wait_log(
            "linear region cancelled: the client went away",
            Duration::from_secs(30)
        ),
        "{}",
        d.log()
    );
}

#[test]
fn compare_and_regions_commands_write_their_figures() {
    let (dir, _model, d) = tiny_daemon();
    let c = ["--connect", d.addr.as_str()];
    let chelsea = sample_image("chelsea.png");
    let rocket = sample_image("rocket.jpg");
    let (a, b) = (chelsea.to_str().unwrap(), rocket.to_str().unwrap());
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();

    let figure = out("compare.png");
    let v = ok_json(&fovea(
        &[&c[..], &["--json", "compare", a, b, "-o", &figure]].concat(),
    ));
    let layers = v["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 5);
    for l in layers {
        let agree = l["mask_agreement"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&agree), "{l}");
    }
    assert!(v["neuron"].is_null());
    let (w, h, flat) = picture_info(&std::fs::read(&figure).unwrap());
    assert!(w >= 800 && h >= 400 && !flat);

    let v = ok_json(&fovea(
        &[
            &c[..],
            &[
                "--json", "compare", a, b, "--neuron", "5,1,2,2", "-o", &figure,
            ],
        ]
        .concat(),
    ));
    assert_eq!(v["layers"][4]["units"], 1);
    assert!(v["neuron"]["same_linear_filter"].is_boolean());

    let matrix = out("matrix.svg");
    let folder = fovea_samples::source_dir();
    let v = ok_json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "compare",
                "--many",
                folder.to_str().unwrap(),
                "--layer",
                "3",
                "-o",
                &matrix,
            ],
        ]
        .concat(),
    ));
    let m = v["mask_agreement"].as_array().expect("matrix");
    assert_eq!(m.len(), fovea_samples::SAMPLES.len());
    for (i, row) in m.iter().enumerate() {
        assert_eq!(row[i], 1.0);
        for (j, cell) in row.as_array().unwrap().iter().enumerate() {
            assert_eq!(cell, &m[j][i]);
        }
    }
    let svg = std::fs::read_to_string(&matrix).unwrap();
    assert!(svg.contains("<svg") && svg.contains("fraction same"));

    let profile = out("regions.png");
    let v = ok_json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "regions",
                a,
                "--neuron",
                "5,1,2,2",
                "--direction",
                &format!("to:{b}"),
                "--max-regions",
                "30",
                "-o",
                &profile,
            ],
        ]
        .concat(),
    ));
    let regions = v["regions"].as_u64().unwrap();
    assert!((1..=30).contains(&regions), "{v}");
    assert_eq!(v["profile"].as_array().unwrap().len() as u64, regions + 1);
    assert!(v["forward"]["t"].as_f64().unwrap() > 0.0);
    let (w, h, flat) = picture_info(&std::fs::read(&profile).unwrap());
    assert!(w >= 800 && h >= 600 && !flat);

    let v = ok_json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "regions",
                a,
                "--neuron",
                "3,0,4,4",
                "--direction",
                "random:7",
                "-o",
                &profile,
            ],
        ]
        .concat(),
    ));
    let back = v["backward"]["t"].as_f64().unwrap();
    let fwd = v["forward"]["t"].as_f64().unwrap();
    assert!(back < 0.0 && fwd > 0.0);
    // The default walk spans 20 times the nearest end.
    let reach = 20.0 * back.abs().min(fwd);
    assert!(
        (v["to"].as_f64().unwrap() - reach).abs() <= 1e-9 * reach,
        "{v}"
    );

    for (args, words) in [
        (
            vec![
                "regions",
                a,
                "--neuron",
                "5,1,2,2",
                "--direction",
                "sideways",
            ],
            "gradient, random[:SEED] or to:OTHER.png",
        ),
        (vec!["regions", a, "--neuron", "5,1"], "LAYER,FEATURE,Y,X"),
        (vec!["regions", a, "--neuron", "5,1,99,0"], "neuron.y"),
        (vec!["compare", a], "compare takes two images"),
    ] {
        let o = fovea(&[&c[..], &args].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err.contains(words), "{args:?}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn study_requests_are_checked_before_any_work() {
    let (_dir, _model, d) = tiny_daemon();
    let c = ready(&d.addr).await;
    let a = record(&c, "chelsea.png").await;
    let b = record(&c, "rocket.jpg").await;
    let good = pb::StudyRequest {
        recording_ids: vec![a.clone(), b.clone()],
        layer: "4".into(),
        neurons_per_image: 2,
        seed: 1,
    };
    let first = |req: pb::StudyRequest| {
        let c = &c;
        async move {
            match probe(c).study(req).await {
                Err(s) => s,
                Ok(r) => match r.into_inner().message().await {
                    Err(s) => s,
                    Ok(_) => tonic::Status::ok(""),
                },
            }
        }
    };
    for (req, code, word) in [
        (
            pb::StudyRequest {
                recording_ids: vec![a.clone()],
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "recording_ids: 1 given; allowed 2..=16",
        ),
        (
            pb::StudyRequest {
                layer: "9".into(),
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "layer",
        ),
        (
            pb::StudyRequest {
                neurons_per_image: 65,
                ..good.clone()
            },
            tonic::Code::InvalidArgument,
            "neurons_per_image",
        ),
        (
            pb::StudyRequest {
                recording_ids: vec![a.clone(), "e".repeat(64)],
                ..good.clone()
            },
            tonic::Code::NotFound,
            "",
        ),
    ] {
        let s = first(req.clone()).await;
        assert_eq!(s.code(), code, "{req:?}: {s:?}");
        assert!(s.message().contains(word), "{req:?}: {s:?}");
    }
    let mut stream = c.study(good).await.expect("study");
    let mut done = Vec::new();
    let mut rows = None;
    while let Some(ev) = stream.message().await.expect("event") {
        match ev.event {
            Some(pb::study_event::Event::Progress(p)) => done.push((p.images_done, p.images)),
            Some(pb::study_event::Event::Result(r)) => rows = Some(r.rows),
            None => {}
        }
    }
    assert_eq!(done, vec![(1, 2), (2, 2)]);
    let rows = rows.expect("a result");
    assert_eq!(rows.len(), 4);
    for r in &rows {
        let keys: Vec<&str> = r.conditions.iter().map(|c| c.condition.as_str()).collect();
        assert_eq!(
            keys,
            [
                "trained_masks",
                "random_masks",
                "random_other_masks",
                "deconvnet"
            ]
        );
        assert_eq!(r.conditions[0].pearson_to_trained, 1.0);
        assert_eq!(r.other_index, 1 - r.recording_index);
    }
}

#[test]
fn the_study_command_writes_its_table_and_figure() {
    let (dir, _model, d) = tiny_daemon();
    let c = ["--connect", d.addr.as_str()];
    let images: Vec<String> = ["chelsea.png", "rocket.jpg", "astronaut.png"]
        .iter()
        .map(|n| sample_image(n).to_str().unwrap().to_string())
        .collect();
    let stem = dir.path().join("study");
    let mut args: Vec<&str> = c.to_vec();
    args.extend(["--json", "study"]);
    args.extend(images.iter().map(String::as_str));
    args.extend([
        "--layer",
        "5",
        "--neurons",
        "top:3",
        "-o",
        stem.to_str().unwrap(),
    ]);
    let v = ok_json(&fovea(&args));
    let rows = v["rows"].as_array().expect("rows");
    assert!(!rows.is_empty() && rows.len() <= 9, "{v}");
    assert_eq!(v["summary"].as_array().unwrap().len(), 4);
    assert_eq!(v["summary"][0]["pearson_to_trained"], 1.0);
    let csv = std::fs::read_to_string(stem.with_extension("csv")).expect("csv");
    assert!(csv.starts_with("image,control_masks_from,layer,feature"));
    assert_eq!(csv.lines().count(), 1 + 4 * rows.len());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stem.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(json["rows"], v["rows"]);
    let (w, h, flat) = picture_info(&std::fs::read(stem.with_extension("png")).unwrap());
    assert!(w >= 1000 && h >= 700 && !flat);
    assert!(
        std::fs::read_to_string(stem.with_extension("svg"))
            .unwrap()
            .contains("Energy above half the Nyquist frequency")
    );

    for (extra, words) in [
        (vec!["study", images[0].as_str()], "required"),
        (
            vec![
                "study",
                images[0].as_str(),
                images[1].as_str(),
                "--neurons",
                "8",
            ],
            "expected top:N",
        ),
    ] {
        let o = fovea(&[&c[..], &extra].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{extra:?} succeeded");
        assert!(err.contains(words), "{extra:?}: {err}");
    }
}
