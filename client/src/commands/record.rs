//! `fovea record IMAGE`: the recording's id, the top predictions and the
//! fraction of active units per layer.

use super::{Context, decode_png, record_image};
use fovea_client::v1 as pb;
use serde::Serialize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct Args {
    image: PathBuf,
}

#[derive(Serialize)]
struct View<'a> {
    recording_id: &'a str,
    original: [u32; 2],
    input: [u32; 2],
    cached: bool,
    predictions: Vec<Prediction<'a>>,
    fraction_active: Vec<Activity>,
}

#[derive(Serialize)]
struct Prediction<'a> {
    class: u32,
    label: &'a str,
    score: f32,
}

#[derive(Serialize)]
struct Activity {
    layer: u32,
    fraction: f32,
}

impl<'a> View<'a> {
    fn of(r: &'a pb::RecordResponse) -> Self {
        View {
            recording_id: &r.recording_id,
            original: [r.original_width, r.original_height],
            input: [r.input_width, r.input_height],
            cached: r.cached,
            predictions: r
                .predictions
                .iter()
                .map(|p| Prediction {
                    class: p.class_index,
                    label: &p.label,
                    score: p.score,
                })
                .collect(),
            fraction_active: r
                .activity
                .iter()
                .map(|a| Activity {
                    layer: a.layer,
                    fraction: a.fraction_active,
                })
                .collect(),
        }
    }
}

pub async fn run(args: &Args, ctx: &Context) -> anyhow::Result<()> {
    let r = record_image(&ctx.client, &args.image).await?;
    ctx.print(&View::of(&r), || {
        println!("recording {}", r.recording_id);
        println!(
            "image {}x{} -> input {}x{}{}",
            r.original_width,
            r.original_height,
            r.input_width,
            r.input_height,
            if r.cached { " (cached)" } else { "" }
        );
        for p in &r.predictions {
            println!(
                "  class {:>4} {:<20} {:.4}",
                p.class_index, p.label, p.score
            );
        }
        println!("fraction of units active:");
        for a in &r.activity {
            let bar = "#".repeat((a.fraction_active * 40.0).round() as usize);
            println!("  layer {:>2}  {:.3}  {bar}", a.layer, a.fraction_active);
        }
    });
    ctx.show(&decode_png(&r.input_png)?);
    Ok(())
}
