//! `fovea-bench`: speed and memory of the engine on the real VGG-16 (or any
//! model, such as a generated ResNet-50-shaped one), every time given as a
//! ratio to the plain ONNX Runtime forward pass of the original model
//! measured in the same run, with the same threads.

use clap::Parser;
use fovea_daemon::flags::LoadFlags;
use fovea_engine::engine::Engine;
use fovea_engine::graphs::record::plain_model;
use fovea_engine::launch::load;
use fovea_engine::model::profile::{ImageLimits, decode_image};
use fovea_engine::probe::attribute::{AttributeRequest, Baseline, Method};
use fovea_engine::probe::maximize::{Flow, MaximizeOptions};
use fovea_engine::probe::reconstruct::{Mode, NeuronAt, Start};
use fovea_engine::probe::visualize::VisualizeOptions;
use fovea_engine::record::Recording;
use fovea_engine::stop::Stop;
use fovea_onnx::{decode_model, encode};
use ort::value::TensorRef;
use std::time::Instant;

#[derive(Parser, Debug)]
#[command(
    name = "fovea-bench",
    about = "Benchmarks the Fovea engine against a plain forward pass"
)]
struct Args {
    #[command(flatten)]
    load: LoadFlags,
    /// Image to record (default: a sample photograph).
    #[arg(long)]
    image: Option<std::path::PathBuf>,
    /// Timed repetitions of each figure (the median is reported).
    #[arg(long, default_value_t = 7)]
    repeat: usize,
    /// Also time each reconstruction mode alone (to stderr).
    #[arg(long)]
    per_mode: bool,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    /// Also print absolute times and throughput (always on CUDA): batched
    /// recording at each of --batch-sizes, one reconstruction, one
    /// maximization step, with the device.
    #[arg(long)]
    absolute: bool,
    /// Batch sizes of the batched-recording throughput figures.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    batch_sizes: Vec<usize>,
    /// With `--model resnet50-shape` (a ResNet-50-shaped model with
    /// generated weights, so the bench runs offline): keep the generated
    /// file here.
    #[arg(long)]
    save_model: Option<std::path::PathBuf>,
}

/// A file removed when dropped.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The name of the generated ResNet-50-shaped model.
const RESNET50_SHAPE: &str = "resnet50-shape";

/// A layer the bench times: its number, its key in the JSON (`l13`) and
/// its name in the table (`layer-13`), and the targets of one
/// reconstruction and one maximization step.
struct Pick {
    layer: usize,
    key: String,
    label: String,
    reconstruct: f64,
    maximize: f64,
}

/// VGG-16's layers 13, 10 and 7 (the paper's); for other networks the last
/// layer and the middle of the second stage (ResNet's conv3_x, the layers
/// of the second block a strided stage starts; 40% of the depth when the
/// names do not say).
fn picks(engine: &Engine) -> Vec<Pick> {
    let convs = &engine.network.convs;
    let pick = |layer: usize, key: &str, label: String, targets: (f64, f64)| Pick {
        layer,
        key: key.to_string(),
        label,
        reconstruct: targets.0,
        maximize: targets.1,
    };
    if convs.len() == 13 {
        return vec![
            pick(13, "l13", "layer-13".into(), (0.6, 1.6)),
            pick(10, "l10", "layer-10".into(), (0.25, 0.5)),
            pick(7, "l7", "layer-7".into(), (0.1, f64::NAN)),
        ];
    }
    let last = convs.len();
    let stage: Vec<usize> = convs
        .iter()
        .filter(|c| c.name.starts_with("conv3_"))
        .map(|c| c.number)
        .collect();
    let second = stage
        .get(stage.len() / 2)
        .copied()
        .unwrap_or((last * 2 / 5).max(1));
    vec![
        pick(last, "last", format!("last-layer ({last})"), (0.6, 1.6)),
        pick(
            second,
            "stage2",
            format!("second-stage ({second})"),
            (0.15, 0.5),
        ),
    ]
}

/// Median wall time of `f` in milliseconds, after one warm-up call.
fn time_ms(repeat: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(repeat);
    for _ in 0..repeat.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64() * 1e3);
    }
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

/// Median times of each task (each warmed up once), run in turn round after
/// round so that drift in the machine's speed affects all alike.
type Task<'a> = Box<dyn FnMut() -> anyhow::Result<()> + 'a>;

fn time_alternating(rounds: usize, tasks: &mut [Task]) -> anyhow::Result<Vec<f64>> {
    for t in tasks.iter_mut() {
        t()?;
    }
    let mut times = vec![Vec::new(); tasks.len()];
    for _ in 0..rounds.max(1) {
        for (t, ms) in tasks.iter_mut().zip(&mut times) {
            let s = Instant::now();
            t()?;
            ms.push(s.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(times
        .into_iter()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        })
        .collect())
}

fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn centre(engine: &Engine, layer: usize, rec: &Recording) -> NeuronAt {
    let g = engine.geometry[layer];
    let (y, x) = (g.height / 2, g.width / 2);
    // The strongest feature at the centre, so the masked modes have work.
    let l = rec.layer(layer);
    let feature = (0..l.channels)
        .max_by(|&a, &b| l.activation(a, y, x).total_cmp(&l.activation(b, y, x)))
        .unwrap_or(0);
    NeuronAt {
        layer,
        feature,
        y,
        x,
    }
}

fn main() {
    let args = Args::parse();
    fovea_daemon::progress::install_bars();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(args) {
        eprintln!("fovea-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut options = args.load.options();
    // Without --save-model the generated file is removed when the run
    // ends (the baseline reads it until then).
    let mut _generated: Option<Removed> = None;
    if options.model == RESNET50_SHAPE {
        let bytes = fovea_engine::fixtures::resnet50_shaped_model(50);
        let path = args.save_model.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!(
                "fovea-bench-{RESNET50_SHAPE}-{}.onnx",
                std::process::id()
            ))
        });
        std::fs::write(&path, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        if args.save_model.is_none() {
            _generated = Some(Removed(path.clone()));
        }
        options.model = path.display().to_string();
    }
    let started = Instant::now();
    let engine = load(&options)?;
    let startup_ms = started.elapsed().as_secs_f64() * 1e3;
    let bytes = match &args.image {
        Some(path) => {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => fovea_samples::SAMPLES[0].bytes.to_vec(),
    };
    let decoded = decode_image(&bytes, ImageLimits::default())?;
    let (_, input) = engine.profile.preprocess(&decoded);

    // Baseline: the original graph (input size freed, nothing else changed).
    let model = decode_model(&std::fs::read(&engine.provenance.path)?)?;
    let mut plain = engine
        .runtime()
        .session(&encode(&plain_model(&model, &engine.network)))?;
    drop(model);
    let (shape, fed) = engine.model_layout(&input);
    let input_name = engine.network.input_name.clone();
    let plain_ms = time_ms(args.repeat, || {
        let t = TensorRef::from_array_view((shape, fed.as_ref()))?;
        plain.run(ort::inputs![input_name.as_str() => t])?;
        Ok(())
    })?;

    // Scan throughput against plain batched forward passes over the same
    // images (already decoded and preprocessed for the baseline).
    let scan_dir = std::env::temp_dir().join(format!("fovea-bench-scan-{}", std::process::id()));
    std::fs::create_dir_all(&scan_dir)?;
    let mut list = Vec::new();
    for copy in 0..8 {
        for sample in fovea_samples::SAMPLES {
            let dst = scan_dir.join(format!("{copy}-{}", sample.name));
            std::fs::write(&dst, sample.bytes)?;
            list.push(dst);
        }
    }
    let batch = 8;
    let tensors: Vec<Vec<f32>> = list
        .iter()
        .map(|p| -> anyhow::Result<Vec<f32>> {
            let img = decode_image(&std::fs::read(p)?, ImageLimits::default())?;
            Ok(engine
                .model_layout(&engine.profile.preprocess(&img).1)
                .1
                .into_owned())
        })
        .collect::<anyhow::Result<_>>()?;
    let settings = fovea_engine::probe::scan::ScanSettings {
        k: 9,
        layers: (1..=engine.network.convs.len()).collect(),
        batch,
        ..Default::default()
    };
    let scan_out = scan_dir.join("results.json");
    let size = engine.profile.input_size;
    let batches: Vec<Vec<f32>> = tensors.chunks(batch).map(|c| c.concat()).collect();
    let times = time_alternating(
        3,
        &mut [
            Box::new(|| {
                for flat in &batches {
                    let mut shape = shape;
                    shape[0] = flat.len() / (3 * size * size);
                    let t = TensorRef::from_array_view((shape, flat.as_slice()))?;
                    plain.run(ort::inputs![input_name.as_str() => t])?;
                }
                Ok(())
            }),
            Box::new(|| {
                for flat in &batches {
                    engine.feature_maxima_laid_out(flat, flat.len() / (3 * size * size))?;
                }
                Ok(())
            }),
            Box::new(|| {
                let _ = std::fs::remove_file(&scan_out);
                fovea_engine::probe::scan::scan(&engine, &list, &settings, &scan_out, |_| true)?;
                Ok(())
            }),
        ],
    )?;
    let (batched_ms, scan_graph_ms, scan_ms) = (times[0], times[1], times[2]);
    drop(plain);
    let _ = std::fs::remove_dir_all(&scan_dir);
    let scan_ratio = batched_ms / scan_ms;
    let scan_graph_ratio = batched_ms / scan_graph_ms;

    let record_ms = time_ms(args.repeat, || {
        engine.record_tensor(input.clone())?;
        Ok(())
    })?;
    let rec = engine.record_tensor(input.clone())?;
    let one = |layer: usize, modes: &[Mode]| -> anyhow::Result<f64> {
        let n = centre(&engine, layer, &rec);
        time_ms(args.repeat, || {
            engine.reconstruct(&rec, &[n], modes, Start::OneHot, 0)?;
            Ok(())
        })
    };
    let picks = picks(&engine);
    let top = picks[0].layer;
    let reconstructions: Vec<f64> = picks
        .iter()
        .map(|p| one(p.layer, &[Mode::Masked]))
        .collect::<anyhow::Result<_>>()?;
    let l13 = reconstructions[0];
    let four = one(top, &Mode::ALL)?;
    if args.per_mode {
        for m in Mode::ALL {
            eprintln!("layer {top}, {m:?} alone: {:.1} ms", one(top, &[m])?);
        }
    }
    // The cost of one more step: the difference of 8 and 4 steps (timed in
    // turn), so the set-up and the final evaluation of the images cancel.
    let step = |layer: usize| -> anyhow::Result<f64> {
        let n = centre(&engine, layer, &rec);
        let engine = &engine;
        let run = |steps: usize| -> Task<'_> {
            let opts = MaximizeOptions {
                starts: 1,
                steps,
                ..Default::default()
            };
            Box::new(move || {
                engine.maximize(n, &opts, |_| true)?;
                Ok(())
            })
        };
        let t = time_alternating(args.repeat.min(3), &mut [run(8), run(4)])?;
        Ok((t[0] - t[1]) / 4.0)
    };
    let max13 = step(top)?;
    let max10 = step(picks[1].layer)?;
    // One step of a channel objective at the second layer timed (VGG's 10)
    // in the Fourier parameterisation (the whole image, transformations
    // included).
    let channel_layer = picks[1].layer;
    let channel_step = {
        let engine = &engine;
        let channel = 42 % engine.geometry[channel_layer].channels;
        let objective =
            engine.parse_objective(&format!("channel({channel_layer},{channel})"), &[])?;
        let run = |steps: usize| -> Task<'_> {
            let mut opts = VisualizeOptions::new(objective.clone());
            opts.steps = steps;
            Box::new(move || {
                engine.visualize(&opts, |_| Flow::Continue)?;
                Ok(())
            })
        };
        let t = time_alternating(args.repeat.min(3), &mut [run(8), run(4)])?;
        (t[0] - t[1]) / 4.0
    };

    // Attribution of the top class from the cached recording (when the
    // model's head runs at the working size).
    let attribution = |method: Method, steps: usize| -> anyhow::Result<Option<f64>> {
        let net = &engine.network;
        if !engine.head_enabled || net.dense.is_empty() {
            return Ok(None);
        }
        let classes = net.convs.len() + net.dense.len();
        let top = rec
            .scores
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let req = AttributeRequest {
            target: engine.dense_neuron(&classes.to_string(), top as i64)?,
            method,
            cam_layer: None,
            steps,
            baseline: Baseline::Black,
        };
        let repeat = if steps > 1 { 1 } else { args.repeat };
        Ok(Some(time_ms(repeat, || {
            engine.attribute(&rec, &req, &Stop::never(), |_, _| {})?;
            Ok(())
        })?))
    };
    let gradcam = attribution(Method::GradCam, 1)?;
    let integrated = attribution(Method::IntegratedGradients, 32)?;

    // Absolute figures, as a GPU box is judged: images/s of batched
    // recording (the scan's graph, every layer's maxima) at each batch size.
    let absolute = args.absolute || engine.provider() == "cuda";
    let mut throughput: Vec<(usize, f64)> = Vec::new();
    if absolute {
        let one_image = engine.model_layout(&input).1.into_owned();
        for &n in &args.batch_sizes {
            let n = n.max(1);
            let flat = one_image.repeat(n);
            let ms = time_ms(args.repeat.min(3), || {
                engine.feature_maxima_laid_out(&flat, n)?;
                Ok(())
            })?;
            throughput.push((n, n as f64 / ms * 1e3));
        }
    }
    let info = engine.runtime().info().clone();
    let device = if info.device.is_empty() {
        "CPU".to_string()
    } else {
        info.device.clone()
    };

    // Memory: 20 distinct recordings held at once.
    let mut held = Vec::new();
    for i in 0..20 {
        let mut x = input.clone();
        x[i] += 1.0;
        held.push(engine.record_tensor(x)?);
    }
    let recording_bytes = rec.bytes();
    let peak = peak_rss_bytes();
    drop(held);

    let mut rows: Vec<(String, String, f64, f64, Option<f64>)> = vec![
        (
            "plain_forward_ms".into(),
            "plain ONNX Runtime forward (baseline)".into(),
            plain_ms,
            1.0,
            None,
        ),
        (
            "record_ratio".into(),
            "record one image".into(),
            record_ms,
            record_ms / plain_ms,
            Some(1.25),
        ),
    ];
    for (p, &ms) in picks.iter().zip(&reconstructions) {
        rows.push((
            format!("reconstruct_{}_ratio", p.key),
            format!("reconstruct {} neuron, one mode", p.label),
            ms,
            ms / plain_ms,
            Some(p.reconstruct),
        ));
    }
    rows.push((
        "four_modes_over_one".into(),
        format!("four modes of a {} neuron / one mode", picks[0].label),
        four,
        four / l13,
        Some(3.0),
    ));
    for (p, ms) in picks.iter().zip([max13, max10]) {
        rows.push((
            format!("maximize_step_{}_ratio", p.key),
            format!("maximization step, {}, one start", p.label),
            ms,
            ms / plain_ms,
            Some(p.maximize),
        ));
    }
    rows.push((
        format!("channel_step_{}_ratio", picks[1].key),
        format!("channel objective step, {}, Fourier", picks[1].label),
        channel_step,
        channel_step / plain_ms,
        Some(1.6),
    ));
    if let (Some(cam), Some(ig)) = (gradcam, integrated) {
        rows.push((
            "gradcam_ratio".into(),
            format!("Grad-CAM of the top class, layer {top}, recorded"),
            cam,
            cam / plain_ms,
            Some(1.1),
        ));
        rows.push((
            "integrated_gradients_32_ratio".into(),
            "integrated gradients, 32 steps".into(),
            ig,
            ig / plain_ms,
            Some(20.0),
        ));
    }
    if args.json {
        let mut fields: Vec<String> = vec![format!("\"plain_forward_ms\": {plain_ms:.3}")];
        for (key, _, _, ratio, _) in &rows[1..] {
            fields.push(format!("\"{key}\": {ratio:.4}"));
        }
        fields.push(format!("\"scan_over_batched_forward\": {scan_ratio:.4}"));
        fields.push(format!(
            "\"scan_graph_over_batched_forward\": {scan_graph_ratio:.4}"
        ));
        fields.push(format!("\"recording_bytes\": {recording_bytes}"));
        fields.push(format!("\"peak_rss_bytes_20_recordings\": {peak}"));
        fields.push(format!("\"startup_ms\": {startup_ms:.1}"));
        fields.push(format!("\"threads\": {}", engine.threads()));
        fields.push(format!("\"execution_provider\": \"{}\"", engine.provider()));
        fields.push(format!("\"input_size\": {}", engine.profile.input_size));
        if absolute {
            fields.push(format!("\"device\": {}", serde_json::to_string(&device)?));
            let per: Vec<String> = throughput
                .iter()
                .map(|(n, ips)| format!("\"{n}\": {ips:.2}"))
                .collect();
            fields.push(format!(
                "\"batched_recording_images_per_s\": {{{}}}",
                per.join(", ")
            ));
            fields.push(format!("\"reconstruct_l13_ms\": {l13:.3}"));
            fields.push(format!("\"maximize_step_l13_ms\": {max13:.3}"));
        }
        println!("{{{}}}", fields.join(", "));
    } else {
        println!(
            "Fovea bench: {} at {}x{}, provider {}, threads {}",
            engine.provenance.origin,
            engine.profile.input_size,
            engine.profile.input_size,
            engine.provider(),
            if engine.threads() == 0 {
                "all cores".to_string()
            } else {
                engine.threads().to_string()
            }
        );
        println!(
            "{:<46} {:>10} {:>8} {:>8}",
            "figure", "ms", "ratio", "target"
        );
        for (_, label, ms, ratio, target) in &rows {
            let (t, ok) = match target {
                Some(t) => (format!("<= {t}"), if ratio <= t { "ok" } else { "MISSED" }),
                None => ("".into(), ""),
            };
            println!("{label:<46} {ms:>10.1} {ratio:>8.3} {t:>8}  {ok}");
        }
        println!(
            "scan of {} images: {:.1} images/s; plain batched forward {:.1} images/s; ratio {scan_ratio:.3} (target >= 0.9)",
            list.len(),
            list.len() as f64 / scan_ms * 1e3,
            list.len() as f64 / batched_ms * 1e3
        );
        println!(
            "  the scan's graph alone on the decoded images: {:.1} images/s; ratio {scan_graph_ratio:.3}",
            list.len() as f64 / scan_graph_ms * 1e3
        );
        println!("bytes per cached recording: {recording_bytes}");
        println!(
            "peak resident memory with 20 recordings held: {:.0} MiB",
            peak as f64 / (1 << 20) as f64
        );
        println!("start to ready with the model cached: {startup_ms:.0} ms");
        if absolute {
            if info.driver_version.is_empty() {
                println!("\nabsolute figures on the {device}:");
            } else {
                println!(
                    "\nabsolute figures on {device} (driver {}, cuDNN {}):",
                    info.driver_version, info.cudnn_version
                );
            }
            for (n, ips) in &throughput {
                println!(
                    "{:<46} {ips:>10.1} images/s",
                    format!("batched recording, batch {n}")
                );
            }
            println!(
                "{:<46} {l13:>10.1} ms",
                "one reconstruction, layer 13, one mode"
            );
            println!("{:<46} {max13:>10.1} ms", "one maximization step, layer 13");
        }
    }
    Ok(())
}
