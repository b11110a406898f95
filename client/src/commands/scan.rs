//! `fovea scan` and `fovea scan merge`: the dataset scan, run in this
//! process on the execution provider, with a progress bar; Ctrl-C stops
//! after a checkpoint, and running the same command again resumes.

use anyhow::{Context, anyhow, bail};
use fovea_engine::launch::LoadOptions;
use fovea_engine::probe::scan::{
    ScanResults, ScanSettings, Skipped, list_images, merge as merge_results, scan, shard,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    merge: Option<ScanCommand>,
    /// Folder (searched recursively) or list file of images.
    input: Option<PathBuf>,
    /// Results file (also the checkpoint an interrupted scan resumes).
    #[arg(long)]
    out: Option<PathBuf>,
    #[arg(long, default_value_t = 9)]
    k: usize,
    /// Conv layers: `A..B` (inclusive) or `A,B,C`.
    #[arg(long, default_value = "1..13")]
    layers: String,
    /// This run's slice of the list, `i/n` (0-based).
    #[arg(long)]
    shard: Option<String>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Save progress at least this often (seconds).
    #[arg(long, default_value_t = 5.0)]
    checkpoint_secs: f64,
}

#[derive(clap::Subcommand, Debug)]
pub enum ScanCommand {
    /// Merge shard results into one (exact, in any order).
    Merge {
        inputs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

/// Runs `fovea scan ...` or `fovea scan merge ...` in this process.
pub async fn run_command(args: &Args, load: &LoadOptions, json: bool) -> anyhow::Result<()> {
    if let Some(ScanCommand::Merge { inputs, out }) = &args.merge {
        return merge(inputs, out, json);
    }
    let input = args
        .input
        .as_ref()
        .ok_or_else(|| anyhow!("scan: give a folder or a list file of images"))?;
    let out = args
        .out
        .as_ref()
        .ok_or_else(|| anyhow!("scan: --out RESULTS is required"))?;
    let secs = args.checkpoint_secs;
    let every = std::time::Duration::try_from_secs_f64(secs)
        .map_err(|_| anyhow!("--checkpoint-secs {secs}: not a duration"))?;
    let spec = Spec {
        k: args.k,
        layers: &args.layers,
        shard: args.shard.as_deref(),
        batch: args.batch,
        checkpoint_every: every,
    };
    run(load, input, out, spec, json).await
}

#[derive(Serialize)]
struct Report<'a> {
    out: &'a Path,
    scanned: usize,
    skipped: &'a [Skipped],
    done: usize,
    total: usize,
    shards: &'a [(usize, usize)],
    images_per_second: f64,
}

#[derive(Serialize)]
struct Merged<'a> {
    out: &'a Path,
    scanned: usize,
    shards: &'a [(usize, usize)],
}

fn parse_layers(s: &str) -> anyhow::Result<Vec<usize>> {
    let bad = || anyhow!("--layers {s:?}: expected A..B (inclusive) or A,B,C");
    if let Some((a, b)) = s.split_once("..") {
        let (a, b): (usize, usize) = (
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        );
        if a > b {
            return Err(bad());
        }
        return Ok((a..=b).collect());
    }
    s.split(',')
        .map(|x| x.trim().parse().map_err(|_| bad()))
        .collect()
}

fn parse_shard(s: Option<&str>) -> anyhow::Result<(usize, usize)> {
    let Some(s) = s else { return Ok((0, 1)) };
    let bad = || anyhow!("--shard {s:?}: expected i/n with 0 <= i < n");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (usize, usize) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

fn report(r: &ScanResults, out: &Path, seconds: f64, json_out: bool) {
    if json_out {
        super::print_json(&Report {
            out,
            scanned: r.scanned,
            skipped: &r.skipped,
            done: r.done,
            total: r.total,
            shards: &r.shards,
            images_per_second: r.scanned as f64 / seconds.max(1e-9),
        });
    } else {
        println!(
            "scanned {} images ({} skipped) of {} in {:.1} s; results in {}",
            r.scanned,
            r.skipped.len(),
            r.total,
            seconds,
            out.display()
        );
        for s in &r.skipped {
            println!("  skipped {}: {}", s.image, s.reason);
        }
    }
}

/// What to scan for, as given on the command line.
struct Spec<'a> {
    k: usize,
    layers: &'a str,
    shard: Option<&'a str>,
    batch: usize,
    checkpoint_every: std::time::Duration,
}

async fn run(
    load: &LoadOptions,
    input: &Path,
    out: &Path,
    spec: Spec<'_>,
    json_out: bool,
) -> anyhow::Result<()> {
    let layers = parse_layers(spec.layers)?;
    let (index, count) = parse_shard(spec.shard)?;
    let (k, batch) = (spec.k, spec.batch);
    if batch == 0 || batch > 256 {
        bail!("--batch {batch}: allowed 1..=256");
    }
    let all = list_images(input).with_context(|| format!("{}", input.display()))?;
    if all.is_empty() {
        bail!(
            "{}: no images (png, jpg, jpeg, webp, gif, bmp)",
            input.display()
        );
    }
    let list: Vec<PathBuf> = shard(&all, index, count);
    let opts = load.clone();
    let engine = tokio::task::spawn_blocking(move || fovea_engine::launch::load(&opts)).await??;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::SeqCst);
        }
    });
    let settings = ScanSettings {
        k,
        layers,
        batch,
        shard: (index, count),
        checkpoint_every: spec.checkpoint_every,
        ..Default::default()
    };
    let (out_path, total) = (out.to_path_buf(), list.len() as u64);
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || {
        let bar = if json_out {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(total)
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "scan {bar:30} {pos}/{len} images {per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let r = scan(&engine, &list, &settings, &out_path, |r| {
            bar.set_position(r.done as u64);
            bar.set_message(if r.skipped.is_empty() {
                String::new()
            } else {
                format!("{} skipped", r.skipped.len())
            });
            !stop.load(Ordering::SeqCst)
        });
        bar.finish_and_clear();
        r
    })
    .await?;
    match result {
        Ok(r) => {
            report(&r, out, started.elapsed().as_secs_f64(), json_out);
            Ok(())
        }
        Err(fovea_engine::Error::Cancelled) => Err(fovea_client::ClientError::Status(
            tonic::Status::cancelled(format!(
                "scan interrupted; progress saved in {}; run the same command to resume",
                out.display()
            )),
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

fn merge(inputs: &[PathBuf], out: &Path, json_out: bool) -> anyhow::Result<()> {
    if inputs.is_empty() {
        bail!("scan merge: give the shard results to merge");
    }
    let parts = inputs
        .iter()
        .map(|p| ScanResults::load(p).with_context(|| format!("{}", p.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge_results(&parts)?;
    merged.save(out)?;
    if json_out {
        super::print_json(&Merged {
            out,
            scanned: merged.scanned,
            shards: &merged.shards,
        });
    } else {
        println!(
            "merged {} shards ({} images) into {}",
            merged.shards.len(),
            merged.scanned,
            out.display()
        );
    }
    Ok(())
}
