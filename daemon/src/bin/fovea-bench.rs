//! `fovea-bench`: speed and memory of the engine on the real VGG-16, every
//! time given as a ratio to the plain ONNX Runtime forward pass of the
//! original model measured in the same run, with the same threads.

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
    let started = Instant::now();
    let engine = load(&args.load.options())?;
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
    let l13 = one(13, &[Mode::Masked])?;
    let l10 = one(10, &[Mode::Masked])?;
    let l7 = one(7, &[Mode::Masked])?;
    let four = one(13, &Mode::ALL)?;
    if args.per_mode {
        for m in Mode::ALL {
            eprintln!("layer 13, {m:?} alone: {:.1} ms", one(13, &[m])?);
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
    let max13 = step(13)?;
    let max10 = step(10)?;
    // One step of a channel objective at layer 10 in the Fourier
    // parameterisation (the whole image, transformations included).
    let channel_step = {
        let engine = &engine;
        let objective = engine.parse_objective("channel(10,42)", &[])?;
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

    let mut rows: Vec<(&str, &str, f64, f64, Option<f64>)> = vec![
        (
            "plain_forward_ms",
            "plain ONNX Runtime forward (baseline)",
            plain_ms,
            1.0,
            None,
        ),
        (
            "record_ratio",
            "record one image",
            record_ms,
            record_ms / plain_ms,
            Some(1.25),
        ),
        (
            "reconstruct_l13_ratio",
            "reconstruct layer-13 neuron, one mode",
            l13,
            l13 / plain_ms,
            Some(0.6),
        ),
        (
            "reconstruct_l10_ratio",
            "reconstruct layer-10 neuron, one mode",
            l10,
            l10 / plain_ms,
            Some(0.25),
        ),
        (
            "reconstruct_l7_ratio",
            "reconstruct layer-7 neuron, one mode",
            l7,
            l7 / plain_ms,
            Some(0.1),
        ),
        (
            "four_modes_over_one",
            "four modes of a layer-13 neuron / one mode",
            four,
            four / l13,
            Some(3.0),
        ),
        (
            "maximize_step_l13_ratio",
            "maximization step, layer 13, one start",
            max13,
            max13 / plain_ms,
            Some(1.6),
        ),
        (
            "maximize_step_l10_ratio",
            "maximization step, layer 10, one start",
            max10,
            max10 / plain_ms,
            Some(0.5),
        ),
    ];
    rows.push((
        "channel_step_l10_ratio",
        "channel objective step, layer 10, Fourier",
        channel_step,
        channel_step / plain_ms,
        Some(1.6),
    ));
    if let (Some(cam), Some(ig)) = (gradcam, integrated) {
        rows.push((
            "gradcam_ratio",
            "Grad-CAM of the top class, layer 13, recorded",
            cam,
            cam / plain_ms,
            Some(1.1),
        ));
        rows.push((
            "integrated_gradients_32_ratio",
            "integrated gradients, 32 steps",
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
