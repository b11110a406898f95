//! Feature visualisation end to end: Maximize with an objective on the real
//! `fovead` (tiny model) through the typed client and the raw stub, and
//! `fovea maximize --channel / --objective`.

use fovea_client::{neuron, v1 as pb};
use fovea_tests::{
    fovea, picture_info, probe, ready, stdout_json as ok_json, stream_status, tiny_daemon,
};

async fn maximize_status(c: &fovea_client::Client, req: pb::MaximizeRequest) -> tonic::Status {
    stream_status(probe(c).maximize(req).await).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objectives_stream_progress_and_bad_ones_are_refused_precisely() {
    let (_dir, _model, d) = tiny_daemon();
    let c = ready(&d.addr).await;
    let mut stream = c
        .maximize(pb::MaximizeRequest {
            objective: "channel(5,3) + 0.01*layer(4)".into(),
            starts: 2,
            steps: 6,
            diversity: 0.01,
            preview_every: 3,
            ..Default::default()
        })
        .await
        .expect("maximize");
    let (mut steps, mut result) = (Vec::new(), None);
    while let Some(ev) = stream.message().await.expect("event") {
        match ev.event {
            Some(pb::maximize_event::Event::Progress(p)) => {
                steps.push(p.step);
                assert_eq!(p.objective.len(), 2);
                if p.step % 3 == 0 {
                    assert_eq!(p.previews.len(), 2, "previews at step {}", p.step);
                }
            }
            Some(pb::maximize_event::Event::Result(r)) => result = Some(r),
            None => {}
        }
    }
    assert_eq!(steps, (1..=6).collect::<Vec<_>>());
    let r = result.expect("result");
    assert_eq!((r.pngs.len(), r.images.len()), (2, 2));
    assert_eq!(
        r.fov,
        Some(pb::Box {
            x0: 0,
            y0: 0,
            x1: 32,
            y1: 32
        })
    );
    let (w, h, flat) = picture_info(&r.pngs[0]);
    assert!((w, h) == (32, 32) && !flat);

    let ask = |objective: &str| pb::MaximizeRequest {
        objective: objective.into(),
        steps: 2,
        ..Default::default()
    };
    let cases: Vec<(pb::MaximizeRequest, &str)> = vec![
        (
            ask("channel(5,99)"),
            "objective: channel(5,99): the channel is outside 0..=7",
        ),
        (ask("blob(1)"), "unknown term"),
        (
            pb::MaximizeRequest {
                diversity: 0.5,
                ..ask("class(1)")
            },
            "diversity: needs a conv layer",
        ),
        (ask(&"channel(5,1)+".repeat(60)), "at most 512"),
        (
            pb::MaximizeRequest {
                neuron: Some(neuron("5", 0, 1, 1)),
                ..ask("channel(5,1)")
            },
            "not both",
        ),
        (
            pb::MaximizeRequest {
                scale: Some(0.9),
                ..ask("channel(5,1)")
            },
            "scale: 0.9 is outside [0, 0.5]",
        ),
        (
            pb::MaximizeRequest {
                param: 9,
                ..ask("channel(5,1)")
            },
            "param: 9",
        ),
        (
            pb::MaximizeRequest {
                diversity: 1.0,
                ..ask("class(1)")
            },
            "diversity",
        ),
        (
            pb::MaximizeRequest {
                direction: vec![1.0; 3],
                ..ask("direction(5)")
            },
            "direction: 3 values given; layer 5 has 8 channels",
        ),
    ];
    for (req, needle) in cases {
        let s = maximize_status(&c, req).await;
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{needle}: {s:?}");
        assert!(s.message().contains(needle), "{needle}: {}", s.message());
        assert!(s.message().len() < 300, "unbounded echo: {}", s.message());
    }
}

#[test]
fn the_maximize_command_visualises_a_channel_and_an_objective() {
    let (dir, _model, d) = tiny_daemon();
    let c = ["--connect", d.addr.as_str()];
    let out = dir.path().join("c.png");
    let out = out.to_str().unwrap();
    let v = ok_json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "maximize",
                "--layer",
                "5",
                "--channel",
                "2",
                "--steps",
                "8",
                "-o",
                out,
            ],
        ]
        .concat(),
    ));
    assert_eq!(v["objective_expression"], "channel(5,2)");
    assert_eq!(v["objective"].as_array().map(Vec::len), Some(1));
    let (w, h, flat) = picture_info(&std::fs::read(out).expect("picture"));
    assert!(w >= 32 && h >= 32 && !flat);

    let direction = dir.path().join("d.txt");
    std::fs::write(&direction, "1 0 0 0\n0 0 0 -1\n").unwrap();
    let v = ok_json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "maximize",
                "--objective",
                "direction(5) - 0.5*channel(5,7)",
                "--direction",
                direction.to_str().unwrap(),
                "--param",
                "pixels",
                "--starts",
                "2",
                "--diversity",
                "0.1",
                "--steps",
                "4",
                "-o",
                out,
            ],
        ]
        .concat(),
    ));
    assert_eq!(v["objective"].as_array().map(Vec::len), Some(2));

    let refused = fovea(&[&c[..], &["maximize", "--layer", "5"]].concat());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("give --feature (a neuron), --channel or --objective"),
        "{err}"
    );
    let refused = fovea(
        &[
            &c[..],
            &[
                "maximize",
                "--objective",
                "direction(5)",
                "--direction",
                "/no/such",
            ],
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && err.contains("/no/such"),
        "{err}"
    );
}
