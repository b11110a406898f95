//! `fovea attribute IMAGE`: which pixels (or places of a conv layer) a
//! class, or any dense unit, owes its value to: saliency, guided backprop,
//! Grad-CAM, Guided Grad-CAM or integrated gradients.

use super::{Context, decode_png, follow, progress_bar, record_image, save};
use clap::ValueEnum;
use fovea_client::v1 as pb;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum MethodArg {
    /// The unit's gradient: its linear filter (Simonyan et al.).
    Saliency,
    /// Guided backpropagation (the paper's masked deconvnet).
    Guided,
    /// Grad-CAM at a conv layer, over the image.
    Gradcam,
    /// Guided backpropagation times Grad-CAM.
    GuidedGradcam,
    /// Integrated gradients from a baseline.
    Ig,
}

impl MethodArg {
    fn proto(self) -> pb::AttributionMethod {
        match self {
            MethodArg::Saliency => pb::AttributionMethod::Saliency,
            MethodArg::Guided => pb::AttributionMethod::GuidedBackprop,
            MethodArg::Gradcam => pb::AttributionMethod::GradCam,
            MethodArg::GuidedGradcam => pb::AttributionMethod::GuidedGradCam,
            MethodArg::Ig => pb::AttributionMethod::IntegratedGradients,
        }
    }

    fn label(self) -> &'static str {
        match self {
            MethodArg::Saliency => "saliency (the unit's linear filter)",
            MethodArg::Guided => "guided backpropagation",
            MethodArg::Gradcam => "Grad-CAM",
            MethodArg::GuidedGradcam => "Guided Grad-CAM",
            MethodArg::Ig => "integrated gradients",
        }
    }
}

/// The start of integrated gradients' path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BaselineArg {
    Black,
    Blurred(Option<f32>),
    Noise(u64),
}

fn parse_baseline(s: &str) -> Result<BaselineArg, String> {
    match s.split_once(':') {
        None if s == "black" => Ok(BaselineArg::Black),
        None if s == "blurred" => Ok(BaselineArg::Blurred(None)),
        None if s == "noise" => Ok(BaselineArg::Noise(0)),
        Some(("blurred", sigma)) => match sigma.parse::<f32>() {
            Ok(v) if v > 0.0 && v <= 100.0 => Ok(BaselineArg::Blurred(Some(v))),
            _ => Err(format!(
                "blurred:{sigma}: the sigma is not a number in (0, 100]"
            )),
        },
        Some(("noise", seed)) => seed
            .parse()
            .map(BaselineArg::Noise)
            .map_err(|_| format!("noise:{seed}: the seed is not a whole number")),
        _ => Err("expected black, blurred[:SIGMA] or noise[:SEED]".into()),
    }
}

/// A class by index or by label.
#[derive(Debug, Clone, PartialEq)]
pub enum ClassArg {
    Index(i32),
    Label(String),
}

fn parse_class(s: &str) -> Result<ClassArg, String> {
    if s.is_empty() {
        return Err("expected a class index or label".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return s
            .parse()
            .map(ClassArg::Index)
            .map_err(|_| format!("{s}: the index is too large"));
    }
    Ok(ClassArg::Label(s.to_string()))
}

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    /// The class (index, or label as `fovea model` lists them); default
    /// the image's top class. With --layer, the unit of that layer.
    #[arg(long, value_parser = parse_class)]
    class: Option<ClassArg>,
    /// The dense layer of the unit; default the head's last (the classes).
    #[arg(long)]
    layer: Option<String>,
    #[arg(long, value_enum, default_value = "guided-gradcam")]
    method: MethodArg,
    /// Grad-CAM's conv layer; default the last conv layer.
    #[arg(long)]
    cam_layer: Option<String>,
    /// Integrated gradients: points on the path.
    #[arg(long, default_value_t = 32)]
    steps: u32,
    /// Integrated gradients: black, blurred[:SIGMA] (input pixels; default
    /// 10% of the input size) or noise[:SEED].
    #[arg(long, default_value = "black", value_parser = parse_baseline)]
    baseline: BaselineArg,
    #[arg(short, long, default_value = "attribution.png")]
    out: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    image: &'a Path,
    method: &'static str,
    layer: u32,
    unit: u32,
    label: &'a str,
    objective: f32,
    cam_layer: Option<u32>,
    /// Grad-CAM's strongest place on its layer's grid: (y, x, value).
    cam_peak: Option<(u32, u32, f32)>,
    completeness: Option<Completeness>,
    normalization: Option<&'a str>,
    out: &'a Path,
}

#[derive(Serialize)]
struct Completeness {
    attribution_sum: f32,
    objective_difference: f32,
    baseline_objective: f32,
    relative_error: f32,
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let rec = record_image(&ctx.client, &args.image).await?;
    let (unit, class_label) = match &args.class {
        None => (None, String::new()),
        Some(ClassArg::Index(i)) => (Some(*i), String::new()),
        Some(ClassArg::Label(l)) => (None, l.clone()),
    };
    let (baseline, blur_sigma, seed) = match args.baseline {
        BaselineArg::Black => (pb::AttributionBaseline::BaselineBlack, 0.0, 0),
        BaselineArg::Blurred(s) => (
            pb::AttributionBaseline::BaselineBlurred,
            s.unwrap_or(0.0),
            0,
        ),
        BaselineArg::Noise(seed) => (pb::AttributionBaseline::BaselineNoise, 0.0, seed),
    };
    let req = pb::AttributeRequest {
        recording_id: rec.recording_id,
        layer: args.layer.clone().unwrap_or_default(),
        unit,
        class_label,
        method: args.method.proto() as i32,
        cam_layer: args.cam_layer.clone().unwrap_or_default(),
        steps: args.steps,
        baseline: baseline as i32,
        blur_sigma,
        seed,
        png_only: true,
    };
    let stream = ctx.client.attribute(req).await?;
    let bar = progress_bar(
        !ctx.json,
        None,
        "{spinner} {msg} {pos}/{len} [{elapsed_precise}]",
    );
    bar.set_message(args.method.label());
    let r = follow(stream, &bar, "attribution", |e| match e.event {
        Some(pb::attribute_event::Event::Progress(p)) => {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            None
        }
        Some(pb::attribute_event::Event::Result(r)) => Some(r),
        None => None,
    })
    .await?;
    let img = decode_png(&r.png)?;
    save(&img, &args.out)?;
    let cam_peak = r.cam.as_ref().and_then(|c| {
        let (k, v) = c
            .grid
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))?;
        let w = c.width.max(1) as usize;
        Some(((k / w) as u32, (k % w) as u32, *v))
    });
    let view = View {
        image: &args.image,
        method: args.method.label(),
        layer: r.layer,
        unit: r.unit,
        label: &r.label,
        objective: r.objective,
        cam_layer: r.cam.as_ref().map(|c| c.layer),
        cam_peak,
        completeness: r.completeness.map(|c| Completeness {
            attribution_sum: c.attribution_sum,
            objective_difference: c.objective_difference,
            baseline_objective: c.baseline_objective,
            relative_error: (c.attribution_sum - c.objective_difference).abs()
                / c.objective_difference.abs().max(f32::MIN_POSITIVE),
        }),
        normalization: r.normalization.as_ref().map(|n| n.description.as_str()),
        out: &args.out,
    };
    ctx.print(&view, || {
        let who = if view.label.is_empty() {
            format!("unit {} of layer {}", view.unit, view.layer)
        } else {
            format!("{} (unit {} of layer {})", view.label, view.unit, view.layer)
        };
        println!("{} of {who}: value {:.4}", view.method, view.objective);
        if let (Some(layer), Some((y, x, v))) = (view.cam_layer, view.cam_peak) {
            println!("Grad-CAM at layer {layer}: strongest at ({y}, {x}) = {v:.4}");
        }
        if let Some(c) = &view.completeness {
            println!(
                "completeness: the attributions sum to {:.4}; the unit changes by {:.4} from the baseline ({:.4}): {:.2}% apart",
                c.attribution_sum,
                c.objective_difference,
                c.baseline_objective,
                100.0 * c.relative_error
            );
        }
        if let Some(n) = view.normalization {
            println!("picture: {n}");
        }
        println!("wrote {}", view.out.display());
        ctx.show(&img);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_and_classes_parse_and_refuse_clearly() {
        assert_eq!(parse_baseline("black"), Ok(BaselineArg::Black));
        assert_eq!(
            parse_baseline("blurred:12.5"),
            Ok(BaselineArg::Blurred(Some(12.5)))
        );
        assert_eq!(parse_baseline("noise:7"), Ok(BaselineArg::Noise(7)));
        assert!(parse_baseline("blurred:0").is_err());
        assert!(parse_baseline("grey").is_err());
        assert_eq!(parse_class("281"), Ok(ClassArg::Index(281)));
        assert_eq!(
            parse_class("tabby"),
            Ok(ClassArg::Label("tabby".to_string()))
        );
        assert!(parse_class("99999999999").is_err());
    }
}
