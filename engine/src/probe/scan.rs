//! Dataset scan: for every conv feature, the k images where it fires hardest
//! and where (the "max patches" of the deep visualization toolbox). Images
//! are decoded on worker threads while the execution provider runs batches;
//! memory is bounded by k x features. Results are checkpointed atomically, so
//! an interrupted scan resumes where it stopped; shards of one input list
//! merge exactly, in any order.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::model::profile::{ImageLimits, decode_image};
use crate::probe::reconstruct::PixelBox;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::time::{Duration, Instant};

const FORMAT: u32 = 1;
const EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "webp", "gif", "bmp"];

/// One image where a feature fired: its strongest location there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub value: f32,
    pub image: String,
    pub y: u32,
    pub x: u32,
}

/// Strongest first; ties by image, then location, so every order of
/// insertion gives the same top-k.
fn rank(a: &Hit, b: &Hit) -> Ordering {
    b.value
        .total_cmp(&a.value)
        .then_with(|| a.image.cmp(&b.image))
        .then(a.y.cmp(&b.y))
        .then(a.x.cmp(&b.x))
}

/// Keeps the k best of `list` after adding `hit`.
fn offer(list: &mut Vec<Hit>, hit: Hit, k: usize) {
    if list.len() == k
        && list
            .last()
            .is_some_and(|worst| rank(&hit, worst) != Ordering::Less)
    {
        return;
    }
    let at = list.partition_point(|h| rank(h, &hit) == Ordering::Less);
    list.insert(at, hit);
    list.truncate(k);
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerTop {
    pub layer: usize,
    pub name: String,
    /// Per feature, the top-k hits, strongest first.
    pub features: Vec<Vec<Hit>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub image: String,
    pub reason: String,
}

/// A scan's results (also its checkpoint).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanResults {
    pub format: u32,
    pub model_sha256: String,
    pub profile: String,
    pub input_size: usize,
    pub k: usize,
    /// SHA-256 of the ordered image list this run covers (its shard).
    pub inputs_sha256: String,
    /// Shards merged into these results, as (index, count).
    pub shards: Vec<(usize, usize)>,
    /// Images of the list done (the resume point).
    pub done: usize,
    /// Images of the list in all.
    pub total: usize,
    pub scanned: usize,
    pub skipped: Vec<Skipped>,
    pub layers: Vec<LayerTop>,
}

impl ScanResults {
    pub fn complete(&self) -> bool {
        self.done >= self.total
    }

    pub fn layer(&self, layer: usize) -> Option<&LayerTop> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// Reads a results file.
    pub fn load(path: &Path) -> Result<ScanResults> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let r: ScanResults = serde_json::from_str(&text)
            .map_err(|e| Error::invalid("scan results", format!("{}: {e}", path.display())))?;
        if r.format != FORMAT {
            return Err(Error::invalid(
                "scan results",
                format!("{}: format {} is not {FORMAT}", path.display(), r.format),
            ));
        }
        Ok(r)
    }

    /// Writes the file atomically (temporary name, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_vec(self).map_err(|e| Error::Runtime(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::supply::write_atomically(path, |f| std::io::Write::write_all(f, &text))
    }
}

/// Settings of a scan.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    pub k: usize,
    /// Conv layers (paper numbers) to keep.
    pub layers: Vec<usize>,
    /// Images per forward pass.
    pub batch: usize,
    /// (index, count): this run takes every count-th image from index.
    pub shard: (usize, usize),
    /// Decoding threads.
    pub decoders: usize,
    pub limits: ImageLimits,
    /// Checkpoint at least this often.
    pub checkpoint_every: Duration,
}

impl Default for ScanSettings {
    fn default() -> Self {
        ScanSettings {
            k: 9,
            layers: Vec::new(),
            batch: 8,
            shard: (0, 1),
            decoders: 2,
            limits: ImageLimits::default(),
            checkpoint_every: Duration::from_secs(5),
        }
    }
}

/// The images of a folder (recursively, by extension, sorted) or of a list
/// file (one path per line, relative to the list's folder).
pub fn list_images(input: &Path) -> Result<Vec<PathBuf>> {
    if input.is_dir() {
        let mut out = Vec::new();
        let mut stack = vec![input.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir)
                .map_err(|e| Error::io(&dir, e))?
                .flatten()
            {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p
                    .extension()
                    .and_then(|x| x.to_str())
                    .is_some_and(|x| EXTENSIONS.contains(&x.to_lowercase().as_str()))
                {
                    out.push(p);
                }
            }
        }
        out.sort();
        return Ok(out);
    }
    let text = std::fs::read_to_string(input).map_err(|e| Error::io(input, e))?;
    let base = input.parent().unwrap_or(Path::new("."));
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let p = PathBuf::from(l);
            if p.is_absolute() { p } else { base.join(p) }
        })
        .collect())
}

/// Every `count`-th image from `index`.
pub fn shard(list: &[PathBuf], index: usize, count: usize) -> Vec<PathBuf> {
    list.iter()
        .enumerate()
        .filter(|(i, _)| i % count.max(1) == index)
        .map(|(_, p)| p.clone())
        .collect()
}

fn list_hash(list: &[PathBuf]) -> String {
    let mut h = Sha256::new();
    for p in list {
        h.update(p.to_string_lossy().as_bytes());
        h.update(b"\n");
    }
    crate::supply::hex(&h.finalize())
}

fn fresh(engine: &Engine, settings: &ScanSettings, list: &[PathBuf]) -> ScanResults {
    ScanResults {
        format: FORMAT,
        model_sha256: engine.provenance.sha256.clone(),
        profile: engine.profile.fingerprint(),
        input_size: engine.profile.input_size,
        k: settings.k,
        inputs_sha256: list_hash(list),
        shards: vec![settings.shard],
        done: 0,
        total: list.len(),
        scanned: 0,
        skipped: Vec::new(),
        layers: settings
            .layers
            .iter()
            .map(|&l| LayerTop {
                layer: l,
                name: engine.network.convs[l - 1].name.clone(),
                features: vec![Vec::new(); engine.network.convs[l - 1].out_channels],
            })
            .collect(),
    }
}

/// Scans `list` (already sharded), checkpointing to `out`. An existing
/// checkpoint for the same model, settings and list is resumed. `progress`
/// gets (done, total) and returns false to stop (after a checkpoint).
pub fn scan(
    engine: &Engine,
    list: &[PathBuf],
    settings: &ScanSettings,
    out: &Path,
    mut progress: impl FnMut(&ScanResults) -> bool,
) -> Result<ScanResults> {
    if settings.k == 0 || settings.k > 1000 {
        return Err(Error::invalid(
            "k",
            format!("{} is outside 1..=1000", settings.k),
        ));
    }
    let n_layers = engine.network.convs.len();
    if settings.layers.is_empty() || settings.layers.iter().any(|&l| l == 0 || l > n_layers) {
        return Err(Error::invalid(
            "layers",
            format!("{:?}: allowed 1..={n_layers}", settings.layers),
        ));
    }
    let mut results = fresh(engine, settings, list);
    if out.exists() {
        match ScanResults::load(out) {
            Ok(old)
                if old.model_sha256 == results.model_sha256
                    && old.profile == results.profile
                    && old.k == results.k
                    && old.inputs_sha256 == results.inputs_sha256
                    && old.shards == results.shards
                    && old
                        .layers
                        .iter()
                        .map(|l| l.layer)
                        .eq(settings.layers.iter().copied()) =>
            {
                tracing::info!(done = old.done, total = old.total, "resuming the scan");
                results = old;
            }
            Ok(_) => {
                return Err(Error::invalid(
                    "out",
                    format!(
                        "{} holds results of another model, settings or image list; choose another file",
                        out.display()
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    }
    let start = results.done.min(list.len());
    let todo = &list[start..];
    // Decoders pull indices and send back tensors in the model's layout; a reorder
    // buffer restores the list order, so batches and checkpoints are exact.
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, std::result::Result<Vec<f32>, String>)>(
        settings.batch * 4,
    );
    let outcome = std::thread::scope(|scope| -> Result<()> {
        for _ in 0..settings.decoders.max(1) {
            let tx = tx.clone();
            let (next, stop) = (&next, &stop);
            scope.spawn(move || {
                loop {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(path) = todo.get(i) else { break };
                    let item = std::fs::read(path)
                        .map_err(|e| e.to_string())
                        .and_then(|b| decode_image(&b, settings.limits).map_err(|e| e.to_string()))
                        .map(|img| {
                            let (_, t) = engine.profile.preprocess(&img);
                            engine.model_layout(&t).1.into_owned()
                        });
                    if tx.send((i, item)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut pending: BTreeMap<usize, std::result::Result<Vec<f32>, String>> = BTreeMap::new();
        let mut expect = 0usize;
        let mut batch: Vec<(usize, Vec<f32>)> = Vec::new();
        let mut last_checkpoint = Instant::now();
        let result = (|| -> Result<()> {
            while expect < todo.len() {
                let Ok((i, item)) = rx.recv() else { break };
                pending.insert(i, item);
                while let Some(item) = pending.remove(&expect) {
                    match item {
                        Ok(t) => batch.push((expect, t)),
                        Err(reason) => {
                            let image = todo[expect].display().to_string();
                            tracing::warn!(%image, "skipped: {reason}");
                            results.skipped.push(Skipped { image, reason });
                        }
                    }
                    expect += 1;
                    if batch.len() == settings.batch || expect == todo.len() {
                        run_batch(engine, &mut results, &mut batch, todo, settings.k)?;
                        results.done = start + expect;
                        let go_on = progress(&results);
                        // The last batch is saved once, below.
                        if !go_on
                            || (last_checkpoint.elapsed() >= settings.checkpoint_every
                                && expect < todo.len())
                        {
                            results.save(out)?;
                            last_checkpoint = Instant::now();
                        }
                        if !go_on {
                            return Err(Error::Cancelled);
                        }
                    }
                }
            }
            Ok(())
        })();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        // Let blocked decoders finish their sends.
        while rx.try_recv().is_ok() {}
        drop(rx);
        result
    });
    outcome?;
    results.done = list.len();
    results.save(out)?;
    Ok(results)
}

fn run_batch(
    engine: &Engine,
    results: &mut ScanResults,
    batch: &mut Vec<(usize, Vec<f32>)>,
    todo: &[PathBuf],
    k: usize,
) -> Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let flat = batch
        .iter()
        .map(|(_, t)| t.as_slice())
        .collect::<Vec<_>>()
        .concat();
    let maxima = engine.feature_maxima_laid_out(&flat, batch.len())?;
    for lt in &mut results.layers {
        let per_image = &maxima[lt.layer - 1];
        for ((i, _), feats) in batch.iter().zip(per_image) {
            let image = todo[*i].display().to_string();
            for (f, &(value, y, x)) in feats.iter().enumerate() {
                let list = &mut lt.features[f];
                // Most hits of a long scan lose to a full list's worst.
                if list.len() == k && list.last().is_some_and(|worst| value < worst.value) {
                    continue;
                }
                offer(
                    list,
                    Hit {
                        value,
                        image: image.clone(),
                        y,
                        x,
                    },
                    k,
                );
            }
        }
    }
    results.scanned += batch.len();
    batch.clear();
    Ok(())
}

/// What a hit's neuron sees of its image file: the file decoded and
/// prepared as for recording, cropped to the neuron's field of view; `None`
/// when the file can no longer be read or decoded.
pub fn fov_patch(
    engine: &Engine,
    image: &Path,
    fov: PixelBox,
    limits: ImageLimits,
) -> Option<image::RgbImage> {
    let bytes = std::fs::read(image).ok()?;
    let decoded = decode_image(&bytes, limits).ok()?;
    let (resized, _) = engine.profile.preprocess(&decoded);
    Some(
        image::imageops::crop_imm(
            &resized,
            fov.x0 as u32,
            fov.y0 as u32,
            (fov.x1 - fov.x0) as u32,
            (fov.y1 - fov.y0) as u32,
        )
        .to_image(),
    )
}

/// Merges shard results exactly: the union of their hits, top-k again.
pub fn merge(parts: &[ScanResults]) -> Result<ScanResults> {
    let Some(first) = parts.first() else {
        return Err(Error::invalid("inputs", "no results to merge"));
    };
    for p in parts {
        let same = p.model_sha256 == first.model_sha256
            && p.profile == first.profile
            && p.k == first.k
            && p.layers
                .iter()
                .map(|l| l.layer)
                .eq(first.layers.iter().map(|l| l.layer));
        if !same {
            return Err(Error::invalid(
                "inputs",
                "results come from different models or settings and cannot be merged",
            ));
        }
        if !p.complete() {
            return Err(Error::invalid(
                "inputs",
                format!(
                    "a shard is unfinished ({} of {} images); resume it first",
                    p.done, p.total
                ),
            ));
        }
    }
    let mut out = first.clone();
    out.shards.clear();
    out.skipped.clear();
    out.scanned = 0;
    out.total = 0;
    out.done = 0;
    let mut hashes = Sha256::new();
    for lt in &mut out.layers {
        for f in &mut lt.features {
            f.clear();
        }
    }
    let mut parts: Vec<&ScanResults> = parts.iter().collect();
    // The merged list hash must not depend on the order given.
    parts.sort_by(|a, b| {
        a.shards
            .cmp(&b.shards)
            .then(a.inputs_sha256.cmp(&b.inputs_sha256))
    });
    for p in parts {
        out.shards.extend(p.shards.iter().copied());
        out.skipped.extend(p.skipped.iter().cloned());
        out.scanned += p.scanned;
        out.total += p.total;
        out.done += p.done;
        hashes.update(p.inputs_sha256.as_bytes());
        for (lt, plt) in out.layers.iter_mut().zip(&p.layers) {
            for (f, pf) in lt.features.iter_mut().zip(&plt.features) {
                for h in pf {
                    offer(f, h.clone(), out.k);
                }
            }
        }
    }
    out.shards.sort();
    out.shards.dedup();
    out.skipped.sort_by(|a, b| a.image.cmp(&b.image));
    out.inputs_sha256 = crate::supply::hex(&hashes.finalize());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(value: f32, image: &str) -> Hit {
        Hit {
            value,
            image: image.into(),
            y: 0,
            x: 0,
        }
    }

    #[test]
    fn top_k_is_independent_of_insertion_order() {
        let hits = [
            hit(1.0, "a"),
            hit(3.0, "b"),
            hit(3.0, "a"),
            hit(2.0, "c"),
            hit(0.5, "d"),
        ];
        let mut forward = Vec::new();
        let mut backward = Vec::new();
        for h in &hits {
            offer(&mut forward, h.clone(), 3);
        }
        for h in hits.iter().rev() {
            offer(&mut backward, h.clone(), 3);
        }
        assert_eq!(forward, backward);
        let names: Vec<&str> = forward.iter().map(|h| h.image.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
    }
}
