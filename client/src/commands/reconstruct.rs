//! `fovea reconstruct IMAGE`: backward reconstructions of one neuron.

use super::{
    Context, NeuronPicture, choose_neuron, decode_png, mode_label, parse_at, record_image, save,
};
use clap::ValueEnum;
use fovea_client::v1 as pb;
use fovea_client::{neuron, picture};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ModeArg {
    Deconvnet,
    Masked,
    Random,
    Linear,
    All,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
    #[arg(long, default_value = "13")]
    layer: String,
    /// Feature; default the strongest at the location (or of the layer).
    #[arg(long)]
    feature: Option<u32>,
    /// Location `Y,X` in the layer's grid; default the feature's strongest.
    #[arg(long)]
    at: Option<String>,
    #[arg(long, value_enum, default_value = "all")]
    mode: ModeArg,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Start from the recorded activation instead of 1.
    #[arg(long)]
    recorded_start: bool,
    /// Start behind the neuron's own ReLU (an inactive neuron then gives
    /// all-zero pictures) instead of at its pre-activation.
    #[arg(long)]
    through_relu: bool,
    /// Render the whole frame instead of the field of view.
    #[arg(long)]
    full_frame: bool,
    #[arg(short, long, default_value = "reconstruction.png")]
    out: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    #[serde(flatten)]
    neuron: NeuronPicture<'a>,
    fov: [i32; 4],
    reconstructions: Vec<Reconstruction<'a>>,
}

#[derive(Serialize)]
struct Reconstruction<'a> {
    mode: &'static str,
    activation: f32,
    effective_bias: f32,
    normalization: Option<&'a str>,
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let client = &ctx.client;
    let r = record_image(client, &args.image).await?;
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let layer = &args.layer;
    let (f, y, x) = choose_neuron(client, &r.recording_id, layer, args.feature, at).await?;
    let rr = client
        .reconstruct(pb::ReconstructRequest {
            recording_id: r.recording_id.clone(),
            neurons: vec![neuron(layer, f as i32, y, x)],
            modes: modes_of(args.mode).into_iter().map(|m| m as i32).collect(),
            start: if args.recorded_start {
                pb::StartValue::RecordedActivation as i32
            } else {
                pb::StartValue::OneHot as i32
            },
            seed: args.seed,
            crop_to_fov: !args.full_frame,
            png_only: true,
            effective_bias: true,
            through_neuron_relu: args.through_relu,
        })
        .await?;
    // One mode: the picture itself (FOV-sized unless --full-frame);
    // several: captioned side by side.
    let title = format!("layer {layer} feature {f} at ({y},{x})");
    let img = if let [only] = rr.reconstructions.as_slice() {
        decode_png(&only.png)?
    } else {
        let panels = rr
            .reconstructions
            .iter()
            .map(|rec| {
                let img = decode_png(&rec.png)?;
                let w = img.width().max(160);
                Ok(picture::captioned(&img, mode_label(rec.mode), w))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        picture::grid(&panels, panels.len(), Some(&title))
    };
    save(&img, &args.out)?;
    let fov = rr
        .reconstructions
        .first()
        .and_then(|r| r.fov)
        .unwrap_or_default();
    let view = View {
        neuron: NeuronPicture {
            layer,
            feature: f,
            y,
            x,
            out: &args.out,
        },
        fov: [fov.x0, fov.y0, fov.x1, fov.y1],
        reconstructions: rr
            .reconstructions
            .iter()
            .map(|r| Reconstruction {
                mode: mode_label(r.mode),
                activation: r.activation,
                effective_bias: r.effective_bias,
                normalization: r.normalization.as_ref().map(|n| n.description.as_str()),
            })
            .collect(),
    };
    ctx.print(&view, || {
        println!(
            "{title}: activation {:.4}, field of view x {}..{}, y {}..{}",
            rr.reconstructions.first().map_or(0.0, |r| r.activation),
            fov.x0,
            fov.x1,
            fov.y0,
            fov.y1
        );
        if rr.reconstructions.first().is_some_and(|r| r.inactive) {
            println!(
                "  the neuron is inactive here (its ReLU is off); {}",
                if args.through_relu {
                    "started behind its ReLU, the pictures are all zero"
                } else {
                    "the pictures start at its pre-activation"
                }
            );
        }
        for rec in &rr.reconstructions {
            let n = rec.normalization.clone().unwrap_or_default();
            println!("  {:<24} {}", mode_label(rec.mode), n.description);
        }
        println!("wrote {}", args.out.display());
    });
    ctx.show(&img);
    Ok(())
}

pub(crate) fn modes_of(m: ModeArg) -> Vec<pb::ReconstructionMode> {
    match m {
        ModeArg::Deconvnet => vec![pb::ReconstructionMode::Deconvnet],
        ModeArg::Masked => vec![pb::ReconstructionMode::DeconvnetMasked],
        ModeArg::Random => vec![pb::ReconstructionMode::RandomWeights],
        ModeArg::Linear => vec![pb::ReconstructionMode::LinearFilter],
        ModeArg::All => vec![
            pb::ReconstructionMode::Deconvnet,
            pb::ReconstructionMode::DeconvnetMasked,
            pb::ReconstructionMode::RandomWeights,
            pb::ReconstructionMode::LinearFilter,
        ],
    }
}
