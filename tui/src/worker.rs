//! Runs the app's [`Command`]s against the daemon, each as its own task so a
//! slow reconstruction never holds up browsing, and reports back as [`Msg`]s.
//! Reconnects (and re-records the open image) when a remote daemon returns.

use crate::app::{Command, Msg, Radius};
use fovea_client::embedded::EmbeddedOptions;
use fovea_client::{Client, neuron, v1 as pb};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};

/// How to reach a daemon.
#[derive(Clone)]
pub enum Target {
    Remote {
        addr: String,
        token: Option<String>,
        ca: Option<Vec<u8>>,
    },
    Embedded(EmbeddedOptions),
}

async fn connect(target: &Target) -> Result<Client, String> {
    match target {
        Target::Remote { addr, token, ca } => {
            let mut c = Client::connect_with(addr, ca.as_deref())
                .await
                .map_err(|e| e.to_string())?;
            if let Some(t) = token {
                c = c.with_token(t);
            }
            c.wait_ready(Duration::from_secs(30))
                .await
                .map_err(|e| e.to_string())?;
            Ok(c)
        }
        Target::Embedded(opts) => Client::embedded(opts.clone())
            .await
            .map_err(|e| e.to_string()),
    }
}

fn all_modes() -> Vec<i32> {
    [
        pb::ReconstructionMode::Deconvnet,
        pb::ReconstructionMode::DeconvnetMasked,
        pb::ReconstructionMode::RandomWeights,
        pb::ReconstructionMode::LinearFilter,
    ]
    .into_iter()
    .map(|m| m as i32)
    .collect()
}

/// A neuron's reconstructions as asked for: recording, layer, feature,
/// y, x, seed.
type NeuronKey = (String, u32, u32, u32, u32, u64);

/// Reconstructions fetched for the selected neuron and ahead of the user
/// (the neighbouring features and locations), the newest kept.
#[derive(Default)]
struct Ahead {
    entries: std::collections::VecDeque<(NeuronKey, Vec<pb::Reconstruction>)>,
}

impl Ahead {
    /// Enough for the neighbours of the last few neurons visited.
    const KEEP: usize = 32;

    fn get(&self, k: &NeuronKey) -> Option<Vec<pb::Reconstruction>> {
        self.entries
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, r)| r.clone())
    }

    fn put(&mut self, k: NeuronKey, r: Vec<pb::Reconstruction>) {
        self.entries.retain(|(key, _)| *key != k);
        self.entries.push_back((k, r));
        while self.entries.len() > Self::KEEP {
            self.entries.pop_front();
        }
    }
}

type SharedAhead = std::sync::Arc<std::sync::Mutex<Ahead>>;

/// The neuron a key names, as the API takes it.
fn neuron_of(k: &NeuronKey) -> pb::Neuron {
    let (_, layer, feature, y, x, _) = k;
    neuron(&layer.to_string(), *feature as i32, *y as i32, *x as i32)
}

async fn reconstruct(c: &Client, k: &NeuronKey) -> fovea_client::Result<Vec<pb::Reconstruction>> {
    let req = pb::ReconstructRequest {
        recording_id: k.0.clone(),
        neurons: vec![neuron_of(k)],
        modes: all_modes(),
        seed: k.5,
        crop_to_fov: true,
        png_only: true,
        ..Default::default()
    };
    Ok(c.reconstruct(req).await?.reconstructions)
}

/// The ends of a neuron's linear region along a direction (`seed` for a
/// random one), without a walk.
async fn region_ends(
    c: &Client,
    k: &NeuronKey,
    direction: pb::DirectionKind,
) -> fovea_client::Result<((Option<f64>, Option<f64>), u32)> {
    let req = pb::LinearRegionRequest {
        recording_id: k.0.clone(),
        neuron: Some(neuron_of(k)),
        direction: direction as i32,
        seed: k.5,
        ..Default::default()
    };
    let mut stream = c.linear_region(req).await?;
    while let Some(event) = stream.message().await? {
        if let Some(pb::linear_region_event::Event::Result(r)) = event.event {
            let ends = (r.backward.map(|e| e.t), r.forward.map(|e| e.t));
            return Ok((ends, r.units_on_boundary));
        }
    }
    Ok(((None, None), 0))
}

/// The selected neuron's region radius along its gradient and a random
/// direction, and its FOV tree's agreement with the pinned image.
async fn instruments(
    c: &Client,
    k: &NeuronKey,
    pinned: Option<String>,
) -> fovea_client::Result<(Radius, Option<pb::ComparePatternsResponse>)> {
    let (gradient, on_boundary) = region_ends(c, k, pb::DirectionKind::Gradient).await?;
    let (random, _) = region_ends(c, k, pb::DirectionKind::Random).await?;
    let radius = Radius {
        gradient,
        random,
        on_boundary,
    };
    let patterns = match pinned {
        Some(other) => {
            let req = pb::ComparePatternsRequest {
                recording_a: k.0.clone(),
                recording_b: other,
                neuron: Some(neuron_of(k)),
            };
            Some(c.compare_patterns(req).await?)
        }
        None => None,
    };
    Ok((radius, patterns))
}

/// The neurons next to `k` a user is likely to look at next: the
/// neighbouring features at the location, then the neighbouring locations.
fn neighbours(k: &NeuronKey, depth: u32, grid: (u32, u32)) -> Vec<NeuronKey> {
    let (id, layer, f, y, x, seed) = k.clone();
    let mut out = Vec::new();
    let mut add = |f: u32, y: u32, x: u32| out.push((id.clone(), layer, f, y, x, seed));
    if f + 1 < depth {
        add(f + 1, y, x);
    }
    if f > 0 {
        add(f - 1, y, x);
    }
    if x + 1 < grid.1 {
        add(f, y, x + 1);
    }
    if x > 0 {
        add(f, y, x - 1);
    }
    if y + 1 < grid.0 {
        add(f, y + 1, x);
    }
    if y > 0 {
        add(f, y - 1, x);
    }
    out
}

/// Opens an image: records it and fetches its statistics.
async fn open(client: &Client, path: &PathBuf) -> Result<Msg, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let label = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let response = client
        .record(bytes, &label)
        .await
        .map_err(|e| e.to_string())?;
    let stats = client
        .stats(pb::ActivationStatsRequest {
            recording_id: response.recording_id.clone(),
            layers: vec![],
        })
        .await
        .map_err(|e| e.to_string())?;
    Ok(Msg::Recorded {
        path: path.clone(),
        response,
        stats,
    })
}

/// Serves commands until `Quit` or the channel closes.
pub async fn run(
    target: Target,
    first_image: Option<PathBuf>,
    mut rx: UnboundedReceiver<Command>,
    tx: UnboundedSender<Msg>,
) {
    let mut client = loop {
        match connect(&target).await {
            Ok(c) => break c,
            // An in-process daemon that cannot start will not start later.
            Err(e) if matches!(target, Target::Embedded(_)) => {
                let _ = tx.send(Msg::Error(e));
                return;
            }
            Err(e) => {
                let _ = tx.send(Msg::Error(e));
                let _ = tx.send(Msg::Connection(false));
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let _ = tx.send(Msg::Connection(true));
    match client.model().await {
        Ok(m) => {
            let _ = tx.send(Msg::Model(Box::new(m)));
        }
        Err(e) => {
            let _ = tx.send(Msg::Error(e.to_string()));
        }
    }
    // The open image and, once recorded, its recording id.
    let current: Shared = Default::default();
    if let Some(p) = first_image {
        spawn_open(&client, p, &tx, &current);
    }
    let mut maximizing: Option<tokio::task::JoinHandle<()>> = None;
    let ahead: SharedAhead = Default::default();
    // Fetching ahead stops when the user asks for anything (dropping the
    // request cancels it in the daemon too), and starts only for the
    // neuron asked for last.
    let fetching_ahead: std::sync::Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>> =
        Default::default();
    let latest_neuron = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    // Layer shapes, for the neighbours of a neuron.
    let shapes: std::collections::HashMap<u32, (u32, (u32, u32))> = client
        .model()
        .await
        .map(|m| {
            m.layers
                .iter()
                .map(|l| (l.number, (l.channels, (l.height, l.width))))
                .collect()
        })
        .unwrap_or_default();
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    loop {
        let cmd = tokio::select! {
            cmd = rx.recv() => match cmd { Some(c) => c, None => return },
            Some(()) = lost_rx.recv() => {
                // The daemon went away: reconnect, then record the image again.
                let _ = tx.send(Msg::Connection(false));
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    if let Ok(c) = connect(&target).await {
                        client = c;
                        break;
                    }
                }
                while lost_rx.try_recv().is_ok() {}
                let _ = tx.send(Msg::Connection(true));
                let reopen = current.lock().ok().and_then(|c| c.as_ref().map(|(p, _)| p.clone()));
                if let Some(p) = reopen {
                    spawn_open(&client, p, &tx, &current);
                }
                continue;
            }
        };
        if let Some(task) = fetching_ahead.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
        let (c, tx2, lost) = (client.clone(), tx.clone(), lost_tx.clone());
        let report = move |e: fovea_client::ClientError| {
            // The error first: the reconnect notice that follows stays shown.
            let _ = tx2.send(Msg::Error(e.to_string()));
            if e.is_unreachable() {
                let _ = lost.send(());
            }
        };
        match cmd {
            Command::Quit => return,
            Command::Open(path) => spawn_open(&client, path, &tx, &current),
            Command::FetchLayer { layer, generation } => {
                let tx = tx.clone();
                let id = recording_id(&current);
                tokio::spawn(async move {
                    let req = pb::GetFeatureMapsRequest {
                        recording_id: id,
                        layer: layer.to_string(),
                        encoding: pb::ValueEncoding::Uint8 as i32,
                        ..Default::default()
                    };
                    match c.feature_maps(req).await {
                        Ok(maps) => {
                            let _ = tx.send(Msg::Layer { generation, maps });
                        }
                        Err(e) => report(e),
                    }
                });
            }
            Command::FetchNeuron {
                layer,
                feature,
                y,
                x,
                seed,
                pinned,
                generation,
            } => {
                let tx = tx.clone();
                let key: NeuronKey = (recording_id(&current), layer, feature, y, x, seed);
                let ahead = ahead.clone();
                let (depth, grid) = shapes.get(&layer).copied().unwrap_or((0, (0, 0)));
                let (slot, latest) = (fetching_ahead.clone(), latest_neuron.clone());
                latest.store(generation, std::sync::atomic::Ordering::Relaxed);
                tokio::spawn(async move {
                    let known = ahead.lock().ok().and_then(|a| a.get(&key));
                    let reconstructions = match known {
                        Some(r) => r,
                        None => match reconstruct(&c, &key).await {
                            Ok(r) => {
                                if let Ok(mut a) = ahead.lock() {
                                    a.put(key.clone(), r.clone());
                                }
                                r
                            }
                            Err(e) => return report(e),
                        },
                    };
                    let _ = tx.send(Msg::Neuron {
                        generation,
                        reconstructions,
                    });
                    let current =
                        || latest.load(std::sync::atomic::Ordering::Relaxed) == generation;
                    if !current() {
                        return;
                    }
                    match instruments(&c, &key, pinned).await {
                        Ok((radius, patterns)) => {
                            let _ = tx.send(Msg::Instruments {
                                generation,
                                radius,
                                patterns,
                            });
                        }
                        Err(e) => return report(e),
                    }
                    if !current() {
                        return;
                    }
                    let task = tokio::spawn(async move {
                        for next in neighbours(&key, depth, grid) {
                            if ahead.lock().is_ok_and(|a| a.get(&next).is_some()) {
                                continue;
                            }
                            match reconstruct(&c, &next).await {
                                Ok(r) => {
                                    if let Ok(mut a) = ahead.lock() {
                                        a.put(next, r);
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                    });
                    if let Ok(mut s) = slot.lock()
                        && let Some(old) = s.replace(task)
                    {
                        old.abort();
                    }
                    // The user moved on while this was being set up.
                    if !current()
                        && let Some(t) = slot.lock().ok().and_then(|mut s| s.take())
                    {
                        t.abort();
                    }
                });
            }
            Command::Strongest { layer, generation } => {
                let tx = tx.clone();
                let id = recording_id(&current);
                tokio::spawn(async move {
                    let req = pb::TopActivationsRequest {
                        recording_id: id,
                        layer: layer.to_string(),
                        k: 1,
                        ..Default::default()
                    };
                    match c.top(req).await {
                        Ok(t) => {
                            if let Some(a) = t.activations.first() {
                                let _ = tx.send(Msg::Strongest {
                                    generation,
                                    activation: *a,
                                });
                            }
                        }
                        Err(e) => report(e),
                    }
                });
            }
            Command::Patches {
                layer,
                feature,
                generation,
            } => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let req = pb::ScanTopRequest {
                        layer: layer.to_string(),
                        feature,
                        k: 9,
                        patches: Some(true),
                    };
                    match c.scan_top(req).await {
                        Ok(t) => {
                            let _ = tx.send(Msg::Patches {
                                generation,
                                hits: t.hits,
                            });
                        }
                        Err(e) if e.code() == Some(tonic::Code::FailedPrecondition) => {
                            let _ = tx.send(Msg::Error("no scan results are loaded: run `fovea scan`, then start the daemon with --scan".into()));
                        }
                        Err(e) => report(e),
                    }
                });
            }
            Command::Attribute {
                recording_id,
                class,
            } => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    match class_attribution(&c, &recording_id, class).await {
                        Ok(result) => {
                            let _ = tx.send(Msg::Attribution {
                                recording_id,
                                result: Box::new(result),
                            });
                        }
                        Err(e) => report(e),
                    }
                });
            }
            Command::Maximize {
                layer,
                feature,
                y,
                x,
                seed,
                channel,
            } => {
                let tx = tx.clone();
                maximizing = Some(tokio::spawn(async move {
                    // The TUI's maximizations are shorter, with previews.
                    let req = if channel {
                        pb::MaximizeRequest {
                            objective: format!("channel({layer},{feature})"),
                            starts: 1,
                            steps: 128,
                            seed,
                            preview_every: 8,
                            ..Default::default()
                        }
                    } else {
                        pb::MaximizeRequest {
                            preview_every: 10,
                            ..fovea_client::recommended_maximize(
                                neuron(&layer.to_string(), feature as i32, y as i32, x as i32),
                                150,
                                seed,
                            )
                        }
                    };
                    let ended = match c.maximize(req).await {
                        Ok(mut stream) => loop {
                            match stream.message().await {
                                Ok(Some(pb::MaximizeEvent {
                                    event: Some(pb::maximize_event::Event::Progress(p)),
                                })) => {
                                    let _ = tx.send(Msg::MaxProgress(p));
                                }
                                Ok(Some(pb::MaximizeEvent {
                                    event: Some(pb::maximize_event::Event::Result(r)),
                                })) => {
                                    let _ = tx.send(Msg::MaxResult(r));
                                }
                                Ok(Some(_)) => {}
                                Ok(None) => break None,
                                Err(e) => break Some(e.message().to_string()),
                            }
                        },
                        Err(e) => Some(e.to_string()),
                    };
                    let _ = tx.send(Msg::MaxEnded(ended));
                }));
            }
            Command::CancelMaximize => {
                if let Some(task) = maximizing.take() {
                    // Dropping the stream tells the daemon to stop.
                    task.abort();
                    let _ = tx.send(Msg::MaxEnded(Some("cancelled".into())));
                }
            }
            Command::Save | Command::CycleGraphics => {}
        }
    }
}

/// The open image's path and recording id.
type Shared = std::sync::Arc<std::sync::Mutex<Option<(PathBuf, String)>>>;

fn spawn_open(client: &Client, path: PathBuf, tx: &UnboundedSender<Msg>, current: &Shared) {
    let (c, tx, current) = (client.clone(), tx.clone(), current.clone());
    tokio::spawn(async move {
        match open(&c, &path).await {
            Ok(m) => {
                if let (Msg::Recorded { response, .. }, Ok(mut cur)) = (&m, current.lock()) {
                    *cur = Some((path.clone(), response.recording_id.clone()));
                }
                let _ = tx.send(m);
            }
            Err(e) => {
                let _ = tx.send(Msg::Error(e));
            }
        }
    });
}

fn recording_id(current: &Shared) -> String {
    current
        .lock()
        .ok()
        .and_then(|c| c.as_ref().map(|(_, id)| id.clone()))
        .unwrap_or_default()
}

/// Guided Grad-CAM of one of a recording's classes, at the last conv layer.
async fn class_attribution(
    c: &Client,
    recording_id: &str,
    class: u32,
) -> Result<pb::AttributeResult, fovea_client::ClientError> {
    let req = pb::AttributeRequest {
        recording_id: recording_id.to_string(),
        unit: i32::try_from(class).ok(),
        method: pb::AttributionMethod::GuidedGradCam as i32,
        png_only: true,
        ..Default::default()
    };
    let mut stream = c.attribute(req).await?;
    while let Some(event) = stream.message().await? {
        if let Some(pb::attribute_event::Event::Result(r)) = event.event {
            return Ok(r);
        }
    }
    Err(fovea_client::ClientError::Status(tonic::Status::internal(
        "the attribution ended without a result",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbours_stay_inside_the_layer() {
        let k: NeuronKey = ("id".into(), 13, 0, 0, 13, 7);
        let n = neighbours(&k, 512, (14, 14));
        let at: Vec<(u32, u32, u32)> = n.iter().map(|k| (k.2, k.3, k.4)).collect();
        assert_eq!(at, [(1, 0, 13), (0, 0, 12), (0, 1, 13)]);
        assert!(n.iter().all(|k| k.0 == "id" && k.1 == 13 && k.5 == 7));
    }

    #[test]
    fn ahead_keeps_the_newest() {
        let mut a = Ahead::default();
        for i in 0..(Ahead::KEEP as u32 + 5) {
            a.put(("id".into(), 1, i, 0, 0, 0), vec![]);
        }
        assert_eq!(a.entries.len(), Ahead::KEEP);
        assert!(a.get(&("id".into(), 1, 0, 0, 0, 0)).is_none());
        assert!(
            a.get(&("id".into(), 1, Ahead::KEEP as u32 + 4, 0, 0, 0))
                .is_some()
        );
    }
}
