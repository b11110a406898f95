//! The `fovea` binary end to end: every subcommand against a real `fovead`
//! on an ephemeral port (tiny model), the embedded mode, JSON output, bad
//! arguments, and the paper's figures on the real VGG-16.

use fovea_tests::{
    bin, fovea, picture_info, sample_image, stdout_json as json, stdout_ok as ok, tiny_daemon,
    tiny_model_file,
};
use std::path::Path;
use std::process::Command;

fn picture(path: &Path) -> (u32, u32, bool) {
    picture_info(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// A generated model file and the test picture in a temporary folder, with
/// `fovea` run on them in-process at the model's input size.
struct ModelFiles {
    dir: tempfile::TempDir,
    model: std::path::PathBuf,
    image: std::path::PathBuf,
    size: String,
}

impl ModelFiles {
    fn new(name: &str, bytes: &[u8], size: usize) -> ModelFiles {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join(name);
        std::fs::write(&model, bytes).unwrap();
        let image = dir.path().join("test.png");
        std::fs::write(&image, fovea_engine::fixtures::test_image_png(40, 40)).unwrap();
        ModelFiles {
            dir,
            model,
            image,
            size: size.to_string(),
        }
    }

    fn run(&self, extra: &[&str]) -> std::process::Output {
        let mut all = vec![
            "--model",
            self.model.to_str().unwrap(),
            "--input-size",
            &self.size,
            "--ep",
            "cpu",
        ];
        all.extend(extra);
        fovea(&all)
    }

    /// `fovea figures` (4 ascent steps): the four figures are pictures that
    /// are not one flat colour.
    fn figures(&self) {
        let out_dir = self.dir.path().join("figs");
        ok(&self.run(&[
            "figures",
            self.image.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--steps",
            "4",
        ]));
        for f in ["fig2.png", "fig4.png", "fig5.png", "fig6.png"] {
            let (w, h, flat) = picture(&out_dir.join(f));
            assert!(w > 100 && h > 100 && !flat, "{f}: {w}x{h}");
        }
    }

    /// `fovea reconstruct` of one neuron into a PNG; asserts it is a
    /// picture that is not one flat colour.
    fn reconstruct(&self, layer: &str, feature: &str, at: &str) {
        let png = self.dir.path().join("r.png");
        let r = json(&self.run(&[
            "--json",
            "reconstruct",
            self.image.to_str().unwrap(),
            "--layer",
            layer,
            "--feature",
            feature,
            "--at",
            at,
            "-o",
            png.to_str().unwrap(),
        ]));
        assert!(r.is_object(), "{r}");
        let (w, h, flat) = picture(&png);
        assert!(w > 0 && h > 0 && !flat);
    }
}

#[test]
fn every_subcommand_against_a_running_daemon() {
    let (dir, _model, d) = tiny_daemon();
    let image = dir.path().join("test.png");
    std::fs::write(&image, fovea_engine::fixtures::test_image_png(64, 48)).unwrap();
    let img = image.to_str().unwrap();
    let c = ["--connect", d.addr.as_str()];
    let out = |name: &str| dir.path().join(name);

    let m = json(&fovea(&[&c[..], &["--json", "model"]].concat()));
    assert_eq!(m["layers"].as_array().unwrap().len(), 8);
    assert_eq!(m["execution_provider"], "cpu");
    let text = ok(&fovea(&[&c[..], &["model"]].concat()));
    assert!(text.contains("conv3_1") && text.contains("FOV"), "{text}");

    let r = json(&fovea(&[&c[..], &["--json", "record", img]].concat()));
    assert_eq!(r["fraction_active"].as_array().unwrap().len(), 5);
    assert_eq!(r["predictions"].as_array().unwrap().len(), 5);

    let t = json(&fovea(
        &[&c[..], &["--json", "top", img, "--layer", "5", "-k", "4"]].concat(),
    ));
    let acts = t["activations"].as_array().unwrap();
    assert_eq!(acts.len(), 4);
    assert!(acts[0]["value"].as_f64() >= acts[3]["value"].as_f64());
    // A layer-wide top names distinct features unless every location is
    // asked for.
    let features: std::collections::HashSet<_> =
        acts.iter().map(|a| a["feature"].as_u64()).collect();
    assert_eq!(features.len(), 4, "{acts:?}");
    let all = json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "top",
                img,
                "--layer",
                "5",
                "-k",
                "40",
                "--all-locations",
            ],
        ]
        .concat(),
    ));
    let all = all["activations"].as_array().unwrap();
    let features: std::collections::HashSet<_> =
        all.iter().map(|a| a["feature"].as_u64()).collect();
    assert!(features.len() < all.len(), "{all:?}");

    let maps = out("maps.png");
    ok(&fovea(
        &[
            &c[..],
            &[
                "maps",
                img,
                "--layer",
                "conv2_1",
                "--features",
                "0..4",
                "-o",
                maps.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    let (w, h, flat) = picture(&maps);
    assert!(w > 64 && h > 64 && !flat);

    // One mode, FOV-cropped: the picture has the FOV's size.
    let one = out("one.png");
    let rj = json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "reconstruct",
                img,
                "--layer",
                "3",
                "--feature",
                "1",
                "--mode",
                "masked",
                "-o",
                one.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    let fov: Vec<i64> = rj["fov"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    let (w, h, flat) = picture(&one);
    assert_eq!(
        (w as i64, h as i64),
        (fov[2] - fov[0], fov[3] - fov[1]),
        "the FOV crop"
    );
    assert!(!flat);
    let all = out("all.png");
    let rj = json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "reconstruct",
                img,
                "--layer",
                "5",
                "-o",
                all.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    assert_eq!(rj["reconstructions"].as_array().unwrap().len(), 4);
    assert!(!picture(&all).2);

    let mx = out("max.png");
    let mj = json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "maximize",
                "--layer",
                "5",
                "--feature",
                "2",
                "--starts",
                "2",
                "--steps",
                "5",
                "-o",
                mx.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    assert_eq!(mj["objective"].as_array().unwrap().len(), 2);
    assert!(!picture(&mx).2);

    // A class neuron of the head: the whole image is optimised.
    let cx = out("class.png");
    let cj = json(&fovea(
        &[
            &c[..],
            &[
                "--json",
                "maximize",
                "--layer",
                "fc2",
                "--feature",
                "4",
                "--starts",
                "1",
                "--steps",
                "5",
                "-o",
                cx.to_str().unwrap(),
            ],
        ]
        .concat(),
    ));
    assert_eq!(cj["objective"].as_array().unwrap().len(), 1);
    assert!(!picture(&cx).2);

    let st = out("stats.png");
    let sj = json(&fovea(
        &[
            &c[..],
            &["--json", "stats", img, "-o", st.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert_eq!(sj["layers"].as_array().unwrap().len(), 5);
    assert!(!picture(&st).2);

    let hj = json(&fovea(&["--json", "health", d.addr.as_str()]));
    assert_eq!(hj["status"], "SERVING");
}

/// Whether an error line says each part once (no cause repeated, no
/// status restated in tonic's words).
fn said_once(err: &str) -> bool {
    let parts: Vec<&str> = err.split(": ").collect();
    !err.contains("code: '") && parts.windows(2).all(|w| w[0] != w[1])
}

#[test]
fn embedded_mode_prints_its_own_messages_and_the_daemon_log_only_with_v() {
    let (dir, model) = tiny_model_file();
    let image = dir.path().join("test.png");
    std::fs::write(&image, fovea_engine::fixtures::test_image_png(40, 40)).unwrap();
    let run = |verbose: bool| {
        let mut args = fovea_tests::tiny_args(&model);
        if verbose {
            args.push("-v".into());
        }
        args.extend(["top", image.to_str().unwrap(), "--layer", "99"].map(String::from));
        Command::new(bin("fovea"))
            .args(&args)
            .env_remove("RUST_LOG")
            .env_remove("FOVEA_CONNECT")
            .output()
            .unwrap()
    };
    let quiet = run(false);
    let err = String::from_utf8_lossy(&quiet.stderr).trim().to_string();
    assert_eq!(quiet.status.code(), Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("fovea: invalid argument: ") && said_once(&err),
        "{err}"
    );
    assert!(!err.contains('\x1b'), "no colour codes: {err:?}");
    let loud = run(true);
    let log = String::from_utf8_lossy(&loud.stderr);
    assert!(log.contains("TopActivations"), "{log}");
    assert!(
        !log.contains('\x1b'),
        "no colour codes off a terminal: {log:?}"
    );
}

#[test]
fn embedded_daemon_without_connect() {
    let (dir, model) = tiny_model_file();
    let mut args = fovea_tests::tiny_args(&model);
    args.extend(["--json".to_string(), "model".to_string()]);
    let out = fovea(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let m = json(&out);
    assert_eq!(m["provenance"]["source"], "file");
    drop(dir);
}

/// A model with batch norm after each convolution is served with the norm
/// folded, says so, and reconstructs; an unknown model name lists the known
/// ones.
#[test]
fn a_batch_normalised_model_is_folded_and_probed() {
    let bytes = fovea_engine::fixtures::tiny_model_with(
        fovea_engine::model::network::Layout::Nchw,
        true,
        32,
        true,
    );
    let files = ModelFiles::new("tiny-bn.onnx", &bytes, 32);
    let run = |extra: &[&str]| files.run(extra);
    let text = ok(&run(&["model"]));
    assert!(
        text.contains("batch norm folded into the convolutions of 5 layers"),
        "{text}"
    );
    let m = json(&run(&["--json", "model"]));
    let folded: Vec<&serde_json::Value> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["kind"] == "LAYER_KIND_CONV")
        .map(|l| &l["folded_batch_norm"])
        .collect();
    assert_eq!(folded.len(), 5);
    assert!(
        folded
            .iter()
            .all(|f| f.as_str().is_some_and(|s| !s.is_empty())),
        "{m}"
    );
    files.reconstruct("5", "2", "1,1");

    let out = Command::new(bin("fovead"))
        .args(["--model", "vgg20", "--ep", "cpu"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("vgg20") && err.contains("vgg16, vgg19, vgg16-bn, vgg19-bn"),
        "{err}"
    );
}

/// A chain of strided, dilated, grouped and one-side-padded convolutions:
/// `fovea model` shows each layer's geometry, and the probes and the four
/// figures run on it.
#[test]
fn a_strided_model_shows_its_geometry_and_is_probed() {
    use fovea_engine::fixtures::{STRIDED_SIZE, strided_model};
    let files = ModelFiles::new("strided.onnx", &strided_model(true), STRIDED_SIZE);
    let run = |extra: &[&str]| files.run(extra);
    let text = ok(&run(&["model"]));
    for needle in [
        "5x5/2 p2",
        "3x3 d2 g2 p2",
        "1x1 p0",
        "3x3/2 g12 p0,0,1,1",
        "2x2 p1,0,0,1",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    let m = json(&run(&["--json", "model"]));
    let first = &m["layers"][1];
    assert_eq!(first["conv"]["kernel"], 5, "{m}");
    assert_eq!(first["conv"]["stride"], 2, "{m}");
    assert_eq!(
        (first["height"].clone(), first["fov"].clone()),
        (21.into(), 5.into())
    );
    assert!(m["layers"][0].get("conv").is_none(), "{m}");
    // A corner neuron of the depthwise stride-2 layer, whose window reaches
    // into the padding.
    files.reconstruct("4", "7", "4,4");
    files.figures();
}

/// An AlexNet-shaped file with overlapping, padded and ceil-mode pools:
/// `fovea model` shows each pool, a neuron behind all three pools is
/// reconstructed, and the four figures are written.
#[test]
fn overlapping_pools_are_listed_reconstructed_through_and_drawn() {
    use fovea_engine::fixtures::{OVERLAPPING_SIZE, overlapping_model};
    let files = ModelFiles::new("alexnet.onnx", &overlapping_model(true), OVERLAPPING_SIZE);
    let run = |extra: &[&str]| files.run(extra);
    let text = ok(&run(&["model"]));
    let pools: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            ["3x3/2 p1", "3x3/2 ceil", "3x3/2"]
                .into_iter()
                .find(|p| l.contains(&format!(" {p} ")))
        })
        .collect();
    assert_eq!(pools, ["3x3/2", "3x3/2 p1", "3x3/2 ceil"], "{text}");
    assert!(
        text.contains("11x11/4 p2") && !text.contains("probed up to"),
        "{text}"
    );
    let m = json(&run(&["--json", "model"]));
    let last = &m["layers"][5];
    assert_eq!(last["pool"]["kernel"], 3, "{m}");
    assert_eq!(last["pool"]["ceil_mode"], true, "{m}");
    assert_eq!(
        (last["height"].clone(), last["fov"].clone()),
        (3.into(), 227.into())
    );
    assert!(m["layers"][1].get("pool").is_none(), "{m}");
    files.reconstruct("5", "2", "1,1");
    files.figures();
}

/// A MobileNet-shaped file (depthwise-separable convolutions, batch norm,
/// ReLU6 as Clip(0, 6), a global-average head): every layer is probed and
/// listed with its activation, a neuron's reconstruction, linear region and
/// a class attribution run through the clipped layers, and the figures are
/// drawn.
#[test]
fn a_mobilenet_shaped_model_with_relu6_is_listed_probed_and_drawn() {
    use fovea_engine::fixtures::{MOBILE_SIZE, mobile_model};
    let files = ModelFiles::new("mobile.onnx", &mobile_model(true), MOBILE_SIZE);
    let run = |extra: &[&str]| files.run(extra);
    let text = ok(&run(&["model"]));
    let relu6 = text.lines().filter(|l| l.ends_with(" relu6")).count();
    assert_eq!(relu6, 7, "{text}");
    assert!(
        text.contains("3x3/2 g16 p1") && !text.contains("probed up to"),
        "{text}"
    );
    let m = json(&run(&["--json", "model"]));
    let conv = &m["layers"][7]["activation"];
    assert_eq!(conv["kind"], "CLIPPED_RELU", "{m}");
    assert_eq!(conv["ceiling"], 6.0, "{m}");
    assert!(m["layers"][0].get("activation").is_none(), "{m}");
    files.reconstruct("7", "3", "5,6");
    let image = files.image.to_str().unwrap();
    let figure = files.dir.path().join("regions.png");
    let r = json(&run(&[
        "--json",
        "regions",
        image,
        "--neuron",
        "6,2,4,4",
        "--max-regions",
        "40",
        "-o",
        figure.to_str().unwrap(),
    ]));
    let kind = r["forward"]["kind"].as_str().unwrap_or_default();
    assert!(["relu", "ceiling"].contains(&kind), "{r}");
    let (w, h, flat) = picture(&figure);
    assert!(w > 100 && h > 100 && !flat);
    let a = json(&run(&[
        "--json",
        "attribute",
        image,
        "-o",
        files.dir.path().join("saliency.png").to_str().unwrap(),
    ]));
    assert!(a.is_object(), "{a}");
    files.figures();
}

/// A chain with average pools (2x2/2, 3x3/2 padded, 3x3 at stride 1) and a
/// max pool: `fovea model` lists each pool's kind, a neuron behind all of
/// them is reconstructed, and the figures are drawn.
#[test]
fn average_pools_are_listed_reconstructed_through_and_drawn() {
    use fovea_engine::fixtures::{AVERAGE_SIZE, average_model};
    let files = ModelFiles::new("average.onnx", &average_model(true), AVERAGE_SIZE);
    let text = ok(&files.run(&["model"]));
    let pools: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            ["3x3/2 p1 avg", "2x2/2 avg", "3x3 p1 avg", "2x2/2"]
                .into_iter()
                .find(|p| l.contains(&format!(" {p} ")))
        })
        .collect();
    assert_eq!(
        pools,
        ["2x2/2 avg", "3x3/2 p1 avg", "2x2/2", "3x3 p1 avg"],
        "{text}"
    );
    let m = json(&files.run(&["--json", "model"]));
    assert_eq!(m["layers"][2]["pool"]["average"], true, "{m}");
    assert_eq!(m["layers"][4]["pool"]["average"], false, "{m}");
    files.reconstruct("5", "4", "3,3");
    files.figures();
}

/// A ResNet-shaped file: `fovea model` lists its five layers with their
/// residual sums (as they are and through a projection), the whole file
/// predicts, a neuron behind the projected sum is reconstructed and the
/// figures are drawn.
#[test]
fn a_resnet_shaped_model_is_listed_with_its_sums_probed_and_drawn() {
    use fovea_engine::fixtures::{RESIDUAL_SIZE, TINY_CLASSES, residual_model};
    let files = ModelFiles::new("residual.onnx", &residual_model(true), RESIDUAL_SIZE);
    let run = |extra: &[&str]| files.run(extra);
    let text = ok(&run(&["model"]));
    assert!(
        text.contains("residual")
            && text.contains("+ in 2")
            && text.contains("+ 1x1/2 p0 of in 4")
            && text.contains("7x7/2 p3")
            && !text.contains("probed up to"),
        "{text}"
    );
    let m = json(&run(&["--json", "model"]));
    assert_eq!(m["layers"][3]["residual"]["from_layer"], 2, "{m}");
    assert!(
        m["layers"][3]["residual"].get("projection").is_none(),
        "{m}"
    );
    assert_eq!(m["layers"][5]["residual"]["from_layer"], 4, "{m}");
    assert_eq!(m["layers"][5]["residual"]["projection"]["kernel"], 1, "{m}");
    assert_eq!(m["layers"][5]["residual"]["projection"]["stride"], 2, "{m}");
    assert!(m["layers"][1].get("residual").is_none(), "{m}");
    assert_eq!(m["num_classes"], TINY_CLASSES);
    let r = json(&run(&["--json", "record", files.image.to_str().unwrap()]));
    let predictions = r["predictions"].as_array().expect("predictions");
    assert!(!predictions.is_empty(), "{r}");
    files.reconstruct("5", "3", "2,2");
    files.figures();
}

/// A MobileNet-v2-shaped file: linear bottlenecks are listed as such with
/// the sums of the inverted residual blocks, and probed and drawn.
#[test]
fn a_mobilenet_v2_shaped_model_lists_its_linear_bottlenecks_and_is_drawn() {
    use fovea_engine::fixtures::{INVERTED_SIZE, inverted_model};
    let files = ModelFiles::new("inverted.onnx", &inverted_model(), INVERTED_SIZE);
    let text = ok(&files.run(&["model"]));
    let linear = text.lines().filter(|l| l.contains(" linear")).count();
    assert!(
        linear == 4 && text.contains("linear      + in 7") && !text.contains("probed up to"),
        "{text}"
    );
    let m = json(&files.run(&["--json", "model"]));
    assert_eq!(m["layers"][9]["activation"]["kind"], "LINEAR", "{m}");
    assert_eq!(m["layers"][12]["residual"]["from_layer"], 10, "{m}");
    files.reconstruct("12", "5", "6,6");
    files.figures();
}

/// A ResNet-v2-shaped file: its batch norms standing alone are listed as
/// layers of their own, the blocks' sums as linear layers, and the model
/// is probed and drawn. A MobileNet-shaped file whose classifier is
/// written as 1x1 convolutions lists them as its dense layers.
#[test]
fn pre_activation_blocks_and_pointwise_classifiers_are_listed_and_probed() {
    use fovea_engine::fixtures::{
        MOBILE_SIZE, PREACTIVATION_SIZE, mobile_model_with_pointwise_head, preactivation_model,
    };
    let files = ModelFiles::new("preact.onnx", &preactivation_model(), PREACTIVATION_SIZE);
    let text = ok(&files.run(&["model"]));
    let norms = text.lines().filter(|l| l.contains(" batch norm ")).count();
    assert!(
        norms == 4
            && text.contains("4 batch norms with no convolution before them")
            && text.contains("linear      + 1x1/2 p0 of in 7")
            && !text.contains("probed up to"),
        "{text}"
    );
    let m = json(&files.run(&["--json", "model"]));
    assert_eq!(m["layers"][6]["norm_only"], true, "{m}");
    assert!(m["layers"][7].get("norm_only").is_none(), "{m}");
    files.reconstruct("9", "3", "1,2");
    files.figures();

    let files = ModelFiles::new(
        "pointwise.onnx",
        &mobile_model_with_pointwise_head(),
        MOBILE_SIZE,
    );
    let m = json(&files.run(&["--json", "model"]));
    let dense: Vec<&str> = m["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["kind"] == "LAYER_KIND_DENSE")
        .filter_map(|l| l["name"].as_str())
        .collect();
    assert_eq!(dense, ["fc1", "fc2"], "{m}");
    assert!(m.get("probe_stop").is_none(), "{m}");
}

/// An Inception-shaped file: the layers each branch and the layer after
/// the block read are listed, and the model is probed and drawn.
#[test]
fn inception_blocks_are_listed_with_what_each_layer_reads_and_probed() {
    use fovea_engine::fixtures::{INCEPTION_SIZE, inception_model};
    let files = ModelFiles::new("inception.onnx", &inception_model(), INCEPTION_SIZE);
    let text = ok(&files.run(&["model"]));
    let reads = |name: &str| {
        text.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(name))
            .map(|l| l.split_whitespace().last().unwrap_or_default().to_string())
    };
    assert!(text.contains(" reads"), "{text}");
    assert_eq!(reads("conv3_1").as_deref(), Some("2+4+6+7"), "{text}");
    // The second branch's first layer reads the block's input, layer 1.
    assert_eq!(reads("conv2_2").as_deref(), Some("1"), "{text}");
    assert!(!text.contains("probed up to"), "{text}");
    let m = json(&files.run(&["--json", "model"]));
    assert_eq!(
        m["layers"][8]["sources"],
        serde_json::json!([2, 4, 6, 7]),
        "{m}"
    );
    assert_eq!(m["layers"][4]["sources"], serde_json::json!([3]), "{m}");
    files.reconstruct("4", "2", "3,3");
    files.reconstruct("8", "3", "1,2");
    files.figures();
}

#[test]
fn bad_arguments_are_one_line_errors() {
    let (dir, _model, d) = tiny_daemon();
    let image = dir.path().join("test.png");
    std::fs::write(&image, fovea_engine::fixtures::test_image_png(40, 40)).unwrap();
    let img = image.to_str().unwrap();
    let garbage = dir.path().join("garbage.png");
    std::fs::write(&garbage, b"not a picture").unwrap();
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["top", img, "--layer", "conv9_9"], 2, "conv9_9"),
        (vec!["top", img, "--layer", "99"], 2, "99"),
        (
            vec![
                "reconstruct",
                img,
                "--layer",
                "3",
                "--feature",
                "6",
                "--at",
                "1,1",
            ],
            2,
            "feature",
        ),
        (
            vec!["reconstruct", img, "--layer", "3", "--at", "nope"],
            1,
            "Y,X",
        ),
        (vec!["record", garbage.to_str().unwrap()], 2, "image"),
        (vec!["record", "/nonexistent/cat.png"], 1, "nonexistent"),
        (
            vec![
                "maximize",
                "--layer",
                "3",
                "--feature",
                "1",
                "--steps",
                "1000000000",
            ],
            2,
            "steps",
        ),
    ];
    for (args, code, needle) in cases {
        let mut all = vec!["--connect", d.addr.as_str()];
        all.extend(args.iter());
        let out = fovea(&all);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(
            err.starts_with("fovea: ") && err.contains(needle) && said_once(&err),
            "{args:?}: {err}"
        );
    }
    let unreachable = fovea(&["--connect", "127.0.0.1:1", "model"]);
    assert_eq!(unreachable.status.code(), Some(3));
    let err = String::from_utf8_lossy(&unreachable.stderr)
        .trim()
        .to_string();
    assert!(
        err.starts_with("fovea: cannot reach the daemon at 127.0.0.1:1: ") && said_once(&err),
        "{err}"
    );
    assert!(
        fovea(&["reconstruct"]).status.code() == Some(2),
        "clap usage error"
    );
}

#[test]
fn figures_on_the_real_vgg16() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("figs");
    let out = fovea(&[
        "--model-source",
        "package",
        "--ep",
        "cpu",
        "figures",
        sample_image("chelsea.png").to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--steps",
        "8",
    ]);
    ok(&out);
    for f in ["fig2.png", "fig4.png", "fig5.png", "fig6.png", "study.png"] {
        let (w, h, flat) = picture(&out_dir.join(f));
        assert!(w > 300 && h > 150 && !flat, "{f}: {w}x{h}");
    }
    // The same figures as SVG: text as text, pictures embedded, and what a
    // reader needs to read each figure's scale.
    for (f, needles) in [
        (
            "fig2.svg",
            &["activation", "layer 13", "viridis", "data:image/png;base64"][..],
        ),
        (
            "fig4.svg",
            &[
                "v / s",
                "linear filter",
                "Normalisation",
                "99.5th percentile",
            ][..],
        ),
        (
            "fig5.svg",
            &["pre-activation", "seed", "data:image/png;base64"][..],
        ),
        (
            "fig6.svg",
            &["active features at a location", "locations", "conv5_3"][..],
        ),
        (
            "study.svg",
            &[
                "random, own masks",
                "deconvnet (no masks)",
                "Energy above half the Nyquist frequency",
            ][..],
        ),
    ] {
        let svg = std::fs::read_to_string(out_dir.join(f)).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{f}"
        );
        for n in needles {
            assert!(svg.contains(n), "{f} lacks {n}");
        }
    }
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    for needle in [
        "fig4.png",
        "fig4.svg",
        "sha256",
        "caffe",
        "seed",
        "linear filter",
        "study.png",
        "correlate with the trained ones at mean r",
    ] {
        assert!(html.contains(needle), "index.html lacks {needle}");
    }
}
