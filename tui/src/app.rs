//! The TUI's state and its update: keys become [`Action`]s, actions change
//! the state and return [`Command`]s for the worker; worker answers come
//! back as [`Msg`]s. Nothing here touches the terminal or the network.

use fovea_client::v1 as pb;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Panels that take keyboard focus (Tab cycles them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Layers,
    Maps,
    Activation,
    Reconstructions,
    Maximize,
}

impl Focus {
    fn next(self) -> Focus {
        match self {
            Focus::Layers => Focus::Maps,
            Focus::Maps => Focus::Activation,
            Focus::Activation => Focus::Reconstructions,
            Focus::Reconstructions => Focus::Maximize,
            Focus::Maximize => Focus::Layers,
        }
    }
}

/// "1st", "2nd", "3rd", "4th", ...
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, k) if k != 11 => "st",
        (2, k) if k != 12 => "nd",
        (3, k) if k != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// What a key means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    LayerDown,
    LayerUp,
    FeatureNext,
    FeaturePrev,
    /// Arrow keys: move the location (or, with the maps focused, the feature).
    Move(i32, i32),
    JumpStrongest,
    FocusNext,
    Maximize,
    /// Maximize the recording's top class (a neuron of the head's last layer).
    MaximizeClass,
    Cancel,
    OpenPrompt,
    Reseed,
    Save,
    CycleGraphics,
    /// Show the dataset scan's strongest images for the feature instead of
    /// the reconstructions.
    TogglePatches,
    /// Open the n-th (0-based) of those images at its strongest location,
    /// with its four reconstructions.
    OpenPatch(usize),
    ToggleHelp,
    /// The focused panel fills the screen, or no longer.
    ToggleZoom,
    /// Pin the open image as B, whose activation patterns the layer list
    /// compares with the open image's; on B itself, unpin it.
    TogglePin,
    /// Show the image's top class attributed to its pixels (Guided
    /// Grad-CAM) beside the reconstructions, or no longer.
    ToggleAttribution,
    /// Attribute the image's next class (by score) instead, cycling
    /// through its predictions.
    NextClass,
    Quit,
    /// A click on the activation map at grid position (y, x).
    SelectLocation(u32, u32),
    /// A click on a row of the layer list (index into the conv layers).
    SelectLayer(usize),
    /// A click on a tile of the feature grid.
    SelectFeature(u32),
    /// Typing in the open-image prompt.
    PromptChar(char),
    PromptBackspace,
    PromptComplete,
    PromptSubmit,
    PromptCancel,
    /// `/`: type to narrow the layer list to names (or numbers) holding
    /// the text.
    FilterLayers,
    FilterChar(char),
    FilterBackspace,
    /// Enter: stop typing, keep the filter.
    FilterDone,
    /// Esc: drop the filter.
    FilterClear,
}

/// A row of the layer list: a group's heading (a VGG block such as
/// `conv3`, a ResNet stage such as `layer3.1`) or a conv layer (index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerRow {
    Group(String),
    Layer(usize),
}

/// The group a layer's name puts it in. A module path groups by its first
/// numbered block (`layer3.1.relu_1` -> `layer3.1`,
/// `features.4.conv.0.2` -> `features.4`); else by its first named block
/// with a number (`inception4c.branch2.0` -> `inception4c`, whose branches
/// it holds), or by its parent (`features.12` -> `features`); a block name
/// by what precedes its last `_` (`conv3_1` -> `conv3`). Empty when there
/// is none.
pub fn layer_group(name: &str) -> &str {
    if !name.contains('.') {
        return name.rfind('_').map_or("", |i| &name[..i]);
    }
    let mut end = 0;
    let mut named_block = None;
    for part in name.split('.') {
        let next = end + part.len();
        if next == name.len() {
            break;
        }
        if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
            return &name[..next];
        }
        if named_block.is_none() && part.bytes().any(|b| b.is_ascii_digit()) {
            named_block = Some(next);
        }
        end = next + 1;
    }
    match named_block {
        Some(next) => &name[..next],
        None => name.rfind('.').map_or("", |i| &name[..i]),
    }
}

/// Work for the worker.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Open(PathBuf),
    FetchLayer {
        layer: u32,
        generation: u64,
    },
    FetchNeuron {
        layer: u32,
        feature: u32,
        y: u32,
        x: u32,
        seed: u64,
        /// The pinned image's recording, to compare patterns with.
        pinned: Option<String>,
        generation: u64,
    },
    Strongest {
        layer: u32,
        generation: u64,
    },
    Patches {
        layer: u32,
        feature: u32,
        generation: u64,
    },
    /// Guided Grad-CAM of one of the recording's classes.
    Attribute {
        recording_id: String,
        class: u32,
    },
    Maximize {
        layer: u32,
        feature: u32,
        y: u32,
        x: u32,
        seed: u64,
        /// The whole channel over the whole image, not the neuron.
        channel: bool,
    },
    CancelMaximize,
    Save,
    CycleGraphics,
    Quit,
}

/// Answers from the worker.
#[derive(Debug)]
pub enum Msg {
    Model(Box<pb::ModelInfo>),
    Recorded {
        path: PathBuf,
        response: pb::RecordResponse,
        stats: pb::ActivationStatsResponse,
    },
    Layer {
        generation: u64,
        maps: pb::FeatureMaps,
    },
    Neuron {
        generation: u64,
        reconstructions: Vec<pb::Reconstruction>,
    },
    Strongest {
        generation: u64,
        activation: pb::Activation,
    },
    /// The selected neuron's linear region along its gradient and along a
    /// random direction, and its FOV tree's agreement with the pinned image.
    Instruments {
        generation: u64,
        radius: Radius,
        patterns: Option<pb::ComparePatternsResponse>,
    },
    Patches {
        generation: u64,
        hits: Vec<pb::ScanHit>,
    },
    /// The top class's attribution for a recording.
    Attribution {
        recording_id: String,
        result: Box<pb::AttributeResult>,
    },
    MaxProgress(pb::MaximizeProgress),
    MaxResult(pb::MaximizeResult),
    MaxEnded(Option<String>),
    Status(String),
    Error(String),
    Connection(bool),
}

/// The running or finished maximization.
#[derive(Debug, Default, Clone)]
pub struct MaxState {
    pub running: bool,
    pub neuron: Option<(u32, u32, u32, u32)>,
    pub step: u32,
    pub total: u32,
    /// Objective history per start.
    pub history: Vec<Vec<f32>>,
    pub previews: Vec<Vec<u8>>,
    pub result: Option<pb::MaximizeResult>,
    /// What the whole image is optimised for (the top class, a channel),
    /// in words; None for a neuron's field of view.
    pub subject: Option<String>,
    /// When the first step was reported (with its step number), for the
    /// time left.
    pub first_step: Option<(Instant, u32)>,
}

impl MaxState {
    /// The time left at the pace since the first reported step.
    pub fn eta(&self, now: Instant) -> Option<Duration> {
        let (t0, s0) = self.first_step?;
        let done = self.step.checked_sub(s0).filter(|d| *d > 0)?;
        let left = self.total.saturating_sub(self.step);
        Some(
            now.duration_since(t0)
                .mul_f64(f64::from(left) / f64::from(done)),
        )
    }
}

/// How far the input can move from the image, backward and forward along
/// a unit direction, before the neuron's configuration changes: along its
/// gradient and along a random direction (None: unbounded that way).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Radius {
    pub gradient: (Option<f64>, Option<f64>),
    pub random: (Option<f64>, Option<f64>),
    /// Units of the FOV tree exactly at their threshold at the image (ties
    /// in pool windows, as flat areas give): the image sits on boundaries.
    pub on_boundary: u32,
}

/// The image pinned as B.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    pub path: PathBuf,
    pub recording_id: String,
}

/// Path entry with completion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prompt {
    pub text: String,
    pub hint: String,
}

/// Delay before a changed selection is fetched: a held key fetches only the
/// neuron it stops on.
pub const SETTLE: Duration = Duration::from_millis(120);

#[derive(Debug)]
pub struct App {
    pub address: String,
    pub model: Option<pb::ModelInfo>,
    pub image: Option<PathBuf>,
    pub recording: Option<pb::RecordResponse>,
    pub stats: Option<pb::ActivationStatsResponse>,
    /// Index into the conv layers.
    pub layer: usize,
    pub feature: u32,
    pub cursor: (u32, u32),
    pub maps: Option<pb::FeatureMaps>,
    pub reconstructions: Vec<pb::Reconstruction>,
    pub fov: Option<pb::Box>,
    /// The reconstruction panel shows the scan's top images instead.
    pub show_patches: bool,
    pub patches: Vec<pb::ScanHit>,
    /// The image pinned as B (`b`).
    pub pinned: Option<Pinned>,
    /// The top class's attribution is shown beside the reconstructions
    /// (`a`), once fetched for the open recording.
    pub show_attribution: bool,
    pub attribution: Option<pb::AttributeResult>,
    /// Which of the recording's predictions (by score) `a` attributes.
    pub attribution_rank: usize,
    /// The selected neuron's region radius and, with B pinned, its FOV
    /// tree's agreement with B, once fetched.
    pub radius: Option<Radius>,
    pub patterns: Option<pb::ComparePatternsResponse>,
    pub max: MaxState,
    pub focus: Focus,
    pub status: String,
    pub error: Option<String>,
    pub help: bool,
    /// The focused panel fills the screen.
    pub zoom: bool,
    pub prompt: Option<Prompt>,
    /// The layer list shows only layers whose name (or number) holds this.
    pub layer_filter: String,
    /// Keys type into `layer_filter`.
    pub filtering: bool,
    pub seed: u64,
    pub graphics: String,
    /// The folder of the sample images shipped with Fovea, offered by `o`.
    pub samples: Option<PathBuf>,
    pub connected: bool,
    /// Requests in flight (spinner).
    pub busy: usize,
    pub quit: bool,
    /// Neuron (feature, y, x) to select once the image being opened is
    /// recorded.
    goto: Option<(u32, u32, u32)>,
    layer_gen: u64,
    neuron_gen: u64,
    layer_due: Option<Instant>,
    neuron_due: Option<Instant>,
}

impl App {
    pub fn new(address: &str, graphics: &str) -> App {
        App {
            address: address.into(),
            model: None,
            image: None,
            recording: None,
            stats: None,
            layer: 0,
            feature: 0,
            cursor: (0, 0),
            maps: None,
            reconstructions: Vec::new(),
            fov: None,
            show_patches: false,
            patches: Vec::new(),
            pinned: None,
            show_attribution: false,
            attribution: None,
            attribution_rank: 0,
            radius: None,
            patterns: None,
            max: MaxState::default(),
            focus: Focus::Layers,
            status: "connecting".into(),
            error: None,
            help: false,
            zoom: false,
            prompt: None,
            layer_filter: String::new(),
            filtering: false,
            seed: 0,
            graphics: graphics.into(),
            samples: None,
            connected: true,
            busy: 0,
            quit: false,
            goto: None,
            layer_gen: 0,
            neuron_gen: 0,
            layer_due: None,
            neuron_due: None,
        }
    }

    /// The file name of `path` when it is one of the shipped samples.
    fn sample_name<'a>(&self, path: &'a std::path::Path) -> Option<&'a str> {
        let dir = self.samples.as_deref()?;
        let name = path.file_name()?.to_str()?;
        (path.parent() == Some(dir) && fovea_samples::bytes(name).is_some()).then_some(name)
    }

    /// Conv layers of the model.
    pub fn convs(&self) -> Vec<&pb::Layer> {
        self.model
            .as_ref()
            .map(|m| {
                m.layers
                    .iter()
                    .filter(|l| l.kind == pb::LayerKind::Conv as i32)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Indices of the conv layers the filter lets through.
    pub fn visible_layers(&self) -> Vec<usize> {
        let text = self.layer_filter.to_lowercase();
        self.convs()
            .iter()
            .enumerate()
            .filter(|(_, l)| {
                text.is_empty()
                    || l.name.to_lowercase().contains(&text)
                    || l.number.to_string() == text
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// The layer list's rows: the visible layers, each group headed when
    /// the network has more than one.
    pub fn layer_rows(&self) -> Vec<LayerRow> {
        let convs = self.convs();
        let grouped = convs
            .iter()
            .map(|l| layer_group(&l.name))
            .collect::<std::collections::HashSet<_>>()
            .len()
            > 1;
        let mut rows = Vec::new();
        let mut last: Option<&str> = None;
        for i in self.visible_layers() {
            let group = layer_group(&convs[i].name);
            // Layers before the first group (a stem) need no heading.
            let stem = group.is_empty() && last.is_none();
            if grouped && last != Some(group) && !stem {
                rows.push(LayerRow::Group(group.to_string()));
            }
            last = Some(group);
            rows.push(LayerRow::Layer(i));
        }
        rows
    }

    /// The next (`step` 1) or previous (-1) visible layer from the current.
    fn neighbour_layer(&self, step: i32) -> Option<usize> {
        let visible = self.visible_layers();
        if step > 0 {
            visible.into_iter().find(|&i| i > self.layer)
        } else {
            visible.into_iter().rev().find(|&i| i < self.layer)
        }
    }

    fn update_filter(&mut self, action: Action, now: Instant) -> Vec<Command> {
        match action {
            Action::FilterChar(c) if self.layer_filter.chars().count() < 64 => {
                self.layer_filter.push(c);
            }
            Action::FilterBackspace => {
                self.layer_filter.pop();
            }
            Action::FilterDone => self.filtering = false,
            Action::FilterClear => {
                self.filtering = false;
                self.layer_filter.clear();
            }
            Action::Quit => {
                self.quit = true;
                return vec![Command::Quit];
            }
            _ => return Vec::new(),
        }
        let visible = self.visible_layers();
        if let Some(&first) = visible.first()
            && !visible.contains(&self.layer)
        {
            self.select_layer(first, now);
        }
        let total = self.convs().len();
        self.status = match (self.layer_filter.is_empty(), visible.len()) {
            (true, _) => format!("all {total} layers shown; / filters them"),
            (false, 0) => format!(
                "no layer name holds \"{}\"; Backspace edits, Esc shows all",
                self.layer_filter
            ),
            (false, n) if self.filtering => {
                format!("{n} of {total} layers; Enter keeps the filter, Esc shows all")
            }
            (false, n) => format!("{n} of {total} layers; / edits the filter"),
        };
        Vec::new()
    }

    pub fn current_layer(&self) -> Option<&pb::Layer> {
        self.convs().get(self.layer).copied()
    }

    pub fn layer_number(&self) -> u32 {
        self.current_layer().map_or(1, |l| l.number)
    }

    fn depth(&self) -> u32 {
        self.current_layer().map_or(1, |l| l.channels.max(1))
    }

    fn grid(&self) -> (u32, u32) {
        self.current_layer()
            .map_or((1, 1), |l| (l.height.max(1), l.width.max(1)))
    }

    /// Columns of the thumbnail grid (arrows move by them when it has focus).
    pub fn grid_columns(&self) -> u32 {
        let n = self.depth().min(64);
        (n as f64).sqrt().ceil().max(1.0) as u32
    }

    /// Selects conv layer `index`, keeping the location where it is on the
    /// image: the cursor is scaled by the ratio of the two grids (the
    /// stride between the layers).
    fn select_layer(&mut self, index: usize, now: Instant) {
        if index == self.layer || index >= self.convs().len() {
            return;
        }
        let (h0, w0) = self.grid();
        self.layer = index;
        let (h1, w1) = self.grid();
        let scale = |v: u32, from: u32, to: u32| {
            ((u64::from(v) * 2 + 1) * u64::from(to) / (2 * u64::from(from.max(1)))) as u32
        };
        self.cursor = (scale(self.cursor.0, h0, h1), scale(self.cursor.1, w0, w1));
        self.layer_changed(now);
    }

    fn layer_changed(&mut self, now: Instant) {
        let (h, w) = self.grid();
        self.feature = self.feature.min(self.depth() - 1);
        self.cursor = (self.cursor.0.min(h - 1), self.cursor.1.min(w - 1));
        self.layer_gen += 1;
        self.layer_due = Some(now + SETTLE);
        self.neuron_changed(now);
    }

    fn neuron_changed(&mut self, now: Instant) {
        self.radius = None;
        self.patterns = None;
        self.neuron_gen += 1;
        self.neuron_due = Some(now + SETTLE);
    }

    pub fn layer_gen(&self) -> u64 {
        self.layer_gen
    }

    pub fn neuron_gen(&self) -> u64 {
        self.neuron_gen
    }

    /// Asks for the scan's top images of the selected feature.
    fn patches_command(&mut self) -> Command {
        self.busy += 1;
        Command::Patches {
            layer: self.layer_number(),
            feature: self.feature,
            generation: self.neuron_gen,
        }
    }

    /// Applies a key's action; returns the work it asks for.
    pub fn update(&mut self, action: Action, now: Instant) -> Vec<Command> {
        if self.prompt.is_some() {
            return self.update_prompt(action);
        }
        if self.filtering {
            return self.update_filter(action, now);
        }
        if self.help && !matches!(action, Action::ToggleHelp | Action::Quit) {
            self.help = false;
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.recording.is_none()
            && matches!(
                action,
                Action::JumpStrongest
                    | Action::Maximize
                    | Action::MaximizeClass
                    | Action::TogglePatches
                    | Action::TogglePin
                    | Action::ToggleAttribution
                    | Action::NextClass
                    | Action::SelectLocation(..)
            )
        {
            self.status = "no image recorded yet: o opens one".into();
            return out;
        }
        match action {
            Action::Quit => {
                self.quit = true;
                out.push(Command::Quit);
            }
            Action::ToggleHelp => self.help = !self.help,
            Action::ToggleZoom => self.zoom = !self.zoom,
            Action::TogglePin => self.toggle_pin(now),
            Action::NextClass => {
                let classes = self.recording.as_ref().map_or(0, |r| r.predictions.len());
                if classes > 0 {
                    self.attribution_rank = (self.attribution_rank + 1) % classes;
                    self.attribution = None;
                    self.show_attribution = true;
                }
                out.extend(self.attribution_command());
            }
            Action::ToggleAttribution => {
                self.show_attribution = !self.show_attribution;
                if self.show_attribution {
                    out.extend(self.attribution_command());
                } else {
                    self.status = "attribution hidden; a shows it again".into();
                }
            }
            Action::LayerDown => {
                if let Some(i) = self.neighbour_layer(1) {
                    self.select_layer(i, now);
                }
            }
            Action::LayerUp => {
                if let Some(i) = self.neighbour_layer(-1) {
                    self.select_layer(i, now);
                }
            }
            Action::FilterLayers => {
                self.filtering = true;
                self.focus = Focus::Layers;
                self.status =
                    "type part of a layer name; Enter keeps the filter, Esc shows all".into();
            }
            Action::FilterClear => return self.update_filter(action, now),
            Action::SelectLayer(i) => {
                self.focus = Focus::Layers;
                self.select_layer(i, now);
            }
            Action::SelectFeature(f) => {
                self.focus = Focus::Maps;
                if f < self.depth() && f != self.feature {
                    self.feature = f;
                    self.neuron_changed(now);
                }
            }
            Action::FeatureNext => {
                self.feature = (self.feature + 1) % self.depth();
                self.neuron_changed(now);
            }
            Action::FeaturePrev => {
                self.feature = (self.feature + self.depth() - 1) % self.depth();
                self.neuron_changed(now);
            }
            Action::Move(dy, dx) if self.focus == Focus::Maps => {
                let step = dy * self.grid_columns() as i32 + dx;
                let d = self.depth() as i32;
                self.feature = (self.feature as i32 + step).rem_euclid(d) as u32;
                self.neuron_changed(now);
            }
            Action::Move(dy, dx) => {
                let (h, w) = self.grid();
                let y = (self.cursor.0 as i32 + dy).clamp(0, h as i32 - 1) as u32;
                let x = (self.cursor.1 as i32 + dx).clamp(0, w as i32 - 1) as u32;
                if (y, x) != self.cursor {
                    self.cursor = (y, x);
                    self.neuron_changed(now);
                }
            }
            Action::SelectLocation(y, x) => {
                let (h, w) = self.grid();
                self.cursor = (y.min(h - 1), x.min(w - 1));
                self.focus = Focus::Activation;
                self.neuron_changed(now);
            }
            Action::JumpStrongest => {
                self.neuron_gen += 1;
                self.neuron_due = None;
                self.busy += 1;
                out.push(Command::Strongest {
                    layer: self.layer_number(),
                    generation: self.neuron_gen,
                });
            }
            Action::FocusNext => self.focus = self.focus.next(),
            // On the feature maps: the whole channel (feature visualisation).
            Action::Maximize if self.focus == Focus::Maps => {
                let (layer, feature) = (self.layer_number(), self.feature);
                out.extend(self.start_maximize(layer, feature, 0, 0));
                if let Some(Command::Maximize { channel, .. }) = out.last_mut() {
                    *channel = true;
                    let name = format!("channel {feature} of layer {layer}");
                    self.status = format!("visualising {name} (Fourier, transformations)");
                    self.max.subject = Some(name);
                }
            }
            Action::Maximize => {
                let (y, x) = self.cursor;
                out.extend(self.start_maximize(self.layer_number(), self.feature, y, x));
            }
            Action::MaximizeClass => {
                let class_layer = self.model.as_ref().and_then(|m| {
                    m.layers
                        .iter()
                        .rfind(|l| l.kind == pb::LayerKind::Dense as i32)
                        .map(|l| l.number)
                });
                let top = self.recording.as_ref().and_then(|r| r.predictions.first());
                match (class_layer, top) {
                    (Some(layer), Some(p)) => {
                        let (class, label) = (p.class_index, p.label.clone());
                        let name = format!("class {class} {label}").trim_end().to_string();
                        out.extend(self.start_maximize(layer, class, 0, 0));
                        if self.max.running {
                            self.status = format!("maximizing the image's top class, {name}");
                            self.max.subject = Some(name);
                        }
                    }
                    _ => {
                        self.status =
                            "no class to maximize: the model's head does not run at this size"
                                .into()
                    }
                }
            }
            Action::Cancel => {
                if self.max.running {
                    out.push(Command::CancelMaximize);
                }
            }
            Action::OpenPrompt => {
                let mut hint = String::from("Tab completes, Enter opens, Esc cancels");
                // The names first: the folder is in the text already.
                if self.samples.is_some() {
                    let names: Vec<&str> = fovea_samples::SAMPLES.iter().map(|s| s.name).collect();
                    hint = format!("samples: {} | {hint}", names.join("  "));
                }
                let text = match (&self.image, &self.samples) {
                    (Some(image), _) => image.display().to_string(),
                    (None, Some(dir)) => format!("{}/", dir.display()),
                    (None, None) => String::new(),
                };
                self.prompt = Some(Prompt { text, hint });
            }
            Action::Reseed => {
                self.seed += 1;
                self.status = format!("random weights reseeded: seed {}", self.seed);
                self.neuron_changed(now);
            }
            Action::Save => out.push(Command::Save),
            Action::OpenPatch(i) => {
                if let (true, Some(hit)) = (self.show_patches, self.patches.get(i)) {
                    self.goto = Some((self.feature, hit.y, hit.x));
                    self.busy += 1;
                    self.status = format!("opening {}", hit.image);
                    out.push(Command::Open(PathBuf::from(&hit.image)));
                }
            }
            Action::TogglePatches => {
                self.show_patches = !self.show_patches;
                if self.show_patches {
                    out.push(self.patches_command());
                }
            }
            Action::CycleGraphics => out.push(Command::CycleGraphics),
            Action::PromptChar(_)
            | Action::PromptBackspace
            | Action::PromptComplete
            | Action::PromptSubmit
            | Action::PromptCancel
            | Action::FilterChar(_)
            | Action::FilterBackspace
            | Action::FilterDone => {}
        }
        out
    }

    /// The attribution to fetch for the open recording, unless it is here.
    fn attribution_command(&mut self) -> Option<Command> {
        let rec = self.recording.as_ref()?;
        let class_layer = self.model.as_ref().is_some_and(|m| {
            m.layers
                .iter()
                .any(|l| l.kind == pb::LayerKind::Dense as i32)
        });
        if !class_layer || rec.predictions.is_empty() {
            self.status =
                "no class to attribute: the model's head does not run at this size".into();
            self.show_attribution = false;
            return None;
        }
        if self.attribution.is_some() {
            return None;
        }
        let rank = self.attribution_rank.min(rec.predictions.len() - 1);
        let class = rec.predictions[rank].class_index;
        self.busy += 1;
        self.status = format!(
            "attributing class {class} ({} of the image's {} classes by score; Guided Grad-CAM)",
            ordinal(rank + 1),
            rec.predictions.len()
        );
        Some(Command::Attribute {
            recording_id: rec.recording_id.clone(),
            class,
        })
    }

    /// Pins the open image as B, or unpins B when it is the open image.
    fn toggle_pin(&mut self, now: Instant) {
        let (Some(path), Some(rec)) = (&self.image, &self.recording) else {
            return;
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        if self
            .pinned
            .as_ref()
            .is_some_and(|p| p.recording_id == rec.recording_id)
        {
            self.pinned = None;
            self.status = format!("{name} unpinned");
        } else {
            self.pinned = Some(Pinned {
                path: path.clone(),
                recording_id: rec.recording_id.clone(),
            });
            self.status = format!(
                "{name} pinned as B: open another image (o) and the layer list shows how alike their patterns are in the neuron's FOV tree"
            );
        }
        self.neuron_changed(now);
    }

    /// The pinned image's recording when it is not the open one.
    fn other_pinned(&self) -> Option<String> {
        let pinned = self.pinned.as_ref()?;
        let open = self.recording.as_ref()?;
        (pinned.recording_id != open.recording_id).then(|| pinned.recording_id.clone())
    }

    /// Starts a maximization unless one is running.
    fn start_maximize(&mut self, layer: u32, feature: u32, y: u32, x: u32) -> Vec<Command> {
        if self.max.running {
            self.status = "a maximization is already running (x cancels it)".into();
            return Vec::new();
        }
        self.max = MaxState {
            running: true,
            neuron: Some((layer, feature, y, x)),
            ..Default::default()
        };
        self.focus = Focus::Maximize;
        vec![Command::Maximize {
            layer,
            feature,
            y,
            x,
            seed: self.seed,
            channel: false,
        }]
    }

    fn update_prompt(&mut self, action: Action) -> Vec<Command> {
        let Some(p) = self.prompt.as_mut() else {
            return Vec::new();
        };
        match action {
            Action::PromptChar(c) => p.text.push(c),
            Action::PromptBackspace => {
                p.text.pop();
            }
            Action::PromptComplete => {
                let (text, hint) = complete_path(&p.text);
                p.text = text;
                p.hint = hint;
            }
            Action::PromptCancel => self.prompt = None,
            Action::PromptSubmit => {
                let path = PathBuf::from(p.text.trim());
                self.prompt = None;
                if !path.as_os_str().is_empty() {
                    self.busy += 1;
                    self.status = format!("recording {}", path.display());
                    return vec![Command::Open(path)];
                }
            }
            Action::Quit => {
                self.quit = true;
                return vec![Command::Quit];
            }
            _ => {}
        }
        Vec::new()
    }

    /// Time passing: issues the settled fetches.
    pub fn tick(&mut self, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        if self.recording.is_none() || self.model.is_none() {
            return out;
        }
        if self.layer_due.is_some_and(|t| now >= t) {
            self.layer_due = None;
            self.busy += 1;
            out.push(Command::FetchLayer {
                layer: self.layer_number(),
                generation: self.layer_gen,
            });
        }
        if self.neuron_due.is_some_and(|t| now >= t) {
            self.neuron_due = None;
            self.busy += 1;
            out.push(Command::FetchNeuron {
                layer: self.layer_number(),
                feature: self.feature,
                y: self.cursor.0,
                x: self.cursor.1,
                seed: self.seed,
                pinned: self.other_pinned(),
                generation: self.neuron_gen,
            });
            if self.show_patches {
                out.push(self.patches_command());
            }
        }
        out
    }

    /// Applies a worker answer; stale ones (older generations) are dropped.
    pub fn apply(&mut self, msg: Msg, now: Instant) -> Vec<Command> {
        let mut out = Vec::new();
        match msg {
            Msg::Model(m) => {
                self.layer = m
                    .layers
                    .iter()
                    .filter(|l| l.kind == pb::LayerKind::Conv as i32)
                    .count()
                    .saturating_sub(1);
                self.model = Some(*m);
            }
            Msg::Recorded {
                path,
                response,
                stats,
            } => {
                self.busy = self.busy.saturating_sub(1);
                self.status = match self.sample_name(&path) {
                    Some(name) => format!("sample {name} recorded; o opens another"),
                    None => format!("{} recorded", path.display()),
                };
                self.error = None;
                self.image = Some(path);
                self.recording = Some(response);
                self.stats = Some(stats);
                self.maps = None;
                self.reconstructions.clear();
                self.attribution = None;
                self.attribution_rank = 0;
                if self.show_attribution {
                    out.extend(self.attribution_command());
                }
                self.layer_changed(now);
                match self.goto.take() {
                    // Opened from a scan patch: show that neuron there.
                    Some((feature, y, x)) => {
                        self.feature = feature;
                        self.cursor = (y, x);
                        self.show_patches = false;
                        self.neuron_changed(now);
                    }
                    // Start on the strongest neuron of the layer.
                    None => out.extend(self.update(Action::JumpStrongest, now)),
                }
            }
            Msg::Layer { generation, maps } => {
                self.busy = self.busy.saturating_sub(1);
                if generation == self.layer_gen {
                    self.maps = Some(maps);
                }
            }
            Msg::Neuron {
                generation,
                reconstructions,
            } => {
                self.busy = self.busy.saturating_sub(1);
                if generation == self.neuron_gen {
                    self.fov = reconstructions.first().and_then(|r| r.fov);
                    self.reconstructions = reconstructions;
                }
            }
            Msg::Strongest {
                generation,
                activation,
            } => {
                self.busy = self.busy.saturating_sub(1);
                if generation == self.neuron_gen {
                    self.feature = activation.feature;
                    self.cursor = (activation.y, activation.x);
                    self.neuron_changed(now);
                    // Fetch at once: the user asked for this neuron.
                    self.neuron_due = Some(now);
                }
            }
            Msg::Instruments {
                generation,
                radius,
                patterns,
            } => {
                if generation == self.neuron_gen {
                    self.radius = Some(radius);
                    self.patterns = patterns;
                }
            }
            Msg::Attribution {
                recording_id,
                result,
            } => {
                self.busy = self.busy.saturating_sub(1);
                let wanted = self
                    .recording
                    .as_ref()
                    .filter(|r| r.recording_id == recording_id)
                    .and_then(|r| r.predictions.get(self.attribution_rank));
                if wanted.is_some_and(|p| p.class_index == result.unit) {
                    let class = if result.label.is_empty() {
                        format!("class {}", result.unit)
                    } else {
                        format!("class {} {}", result.unit, result.label)
                    };
                    self.status = format!(
                        "{class} (logit {:.2}) attributed by Guided Grad-CAM at layer {}; A next class, a hides it",
                        result.objective,
                        result.cam.as_ref().map_or(0, |c| c.layer)
                    );
                    self.attribution = Some(*result);
                }
            }
            Msg::Patches { generation, hits } => {
                self.busy = self.busy.saturating_sub(1);
                if generation == self.neuron_gen {
                    self.patches = hits;
                }
            }
            Msg::MaxProgress(p) => {
                if self.max.first_step.is_none() {
                    self.max.first_step = Some((now, p.step));
                }
                self.max.step = p.step;
                self.max.total = p.total_steps;
                if self.max.history.len() < p.objective.len() {
                    self.max.history.resize(p.objective.len(), Vec::new());
                }
                for (h, o) in self.max.history.iter_mut().zip(&p.objective) {
                    h.push(*o);
                }
                if !p.previews.is_empty() {
                    self.max.previews = p.previews;
                }
            }
            Msg::MaxResult(r) => {
                self.max.previews = r.pngs.clone();
                self.max.result = Some(r);
            }
            Msg::MaxEnded(err) => {
                self.max.running = false;
                match err {
                    Some(e) => self.status = format!("maximization stopped: {e}"),
                    None => self.status = "maximization finished".into(),
                }
            }
            Msg::Status(s) => {
                self.busy = self
                    .busy
                    .saturating_sub(usize::from(s.starts_with("saved")));
                self.status = s;
            }
            Msg::Error(e) => {
                self.busy = self.busy.saturating_sub(1);
                // While the daemon is away, its absence is the message.
                if self.connected {
                    self.error = Some(e);
                }
            }
            Msg::Connection(up) => {
                self.connected = up;
                if up {
                    self.error = None;
                    self.status = format!("connected to {}", self.address);
                    // Everything may have been lost: fetch again.
                    self.layer_changed(now);
                } else {
                    self.error = Some(format!("daemon unreachable at {}; retrying", self.address));
                }
            }
        }
        out
    }
}

/// Completes a path: the longest common prefix of the matching entries, and
/// a hint listing them.
pub fn complete_path(text: &str) -> (String, String) {
    let path = std::path::Path::new(text);
    let (dir, stem) = if text.ends_with('/') || text.is_empty() {
        (
            if text.is_empty() {
                std::path::Path::new(".")
            } else {
                path
            },
            String::new(),
        )
    } else {
        (
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(std::path::Path::new(".")),
            path.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (text.into(), format!("no folder {}", dir.display()));
    };
    let mut names: Vec<(String, bool)> = rd
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.path().is_dir(),
            )
        })
        .filter(|(n, _)| n.starts_with(&stem) && !n.starts_with('.'))
        .collect();
    names.sort();
    if names.is_empty() {
        return (text.into(), "no match".into());
    }
    let first = &names[0].0;
    let common = names.iter().fold(first.len(), |n, (s, _)| {
        first
            .chars()
            .zip(s.chars())
            .take(n)
            .take_while(|(a, b)| a == b)
            .count()
    });
    let mut completed: String = first.chars().take(common).collect();
    if names.len() == 1 && names[0].1 {
        completed.push('/');
    }
    let prefix = if text.ends_with('/') || text.is_empty() {
        text.to_string()
    } else {
        match text.rfind('/') {
            Some(i) => text[..=i].to_string(),
            None => String::new(),
        }
    };
    let hint = names
        .iter()
        .take(8)
        .map(|(n, d)| if *d { format!("{n}/") } else { n.clone() })
        .collect::<Vec<_>>()
        .join("  ");
    (format!("{prefix}{completed}"), hint)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn model() -> pb::ModelInfo {
        let conv = |number: u32, name: &str, channels: u32, side: u32| pb::Layer {
            number,
            name: name.into(),
            kind: pb::LayerKind::Conv as i32,
            channels,
            height: side,
            width: side,
            ..Default::default()
        };
        pb::ModelInfo {
            layers: vec![
                pb::Layer {
                    number: 0,
                    name: "input".into(),
                    kind: pb::LayerKind::Input as i32,
                    ..Default::default()
                },
                conv(1, "conv1_1", 4, 8),
                conv(2, "conv1_2", 6, 4),
            ],
            ..Default::default()
        }
    }

    pub(crate) fn loaded() -> (App, Instant) {
        let mut app = App::new("test", "half blocks");
        let now = Instant::now();
        app.apply(Msg::Model(Box::new(model())), now);
        let cmds = app.apply(
            Msg::Recorded {
                path: "cat.png".into(),
                response: pb::RecordResponse::default(),
                stats: pb::ActivationStatsResponse::default(),
            },
            now,
        );
        assert!(matches!(
            cmds.as_slice(),
            [Command::Strongest { layer: 2, .. }]
        ));
        (app, now)
    }

    #[test]
    fn layers_group_by_block_and_by_first_numbered_module() {
        for (name, group) in [
            ("conv3_1", "conv3"),
            ("layer3.1.relu_1", "layer3.1"),
            ("features.4.conv.0.2", "features.4"),
            ("features.12", "features"),
            ("inception4c.branch2.0", "inception4c"),
            ("inception4c.branch1", "inception4c"),
            ("features.3.squeeze_activation", "features.3"),
            ("relu", ""),
            ("stem.act", "stem"),
        ] {
            assert_eq!(layer_group(name), group, "{name}");
        }
    }

    #[test]
    fn a_fetches_the_top_class_attribution_once_per_recording() {
        let (mut app, now) = loaded();
        // A model without a head has no class to attribute.
        assert!(app.update(Action::ToggleAttribution, now).is_empty());
        assert!(!app.show_attribution && app.status.contains("no class"));
        let mut m = model();
        m.layers.push(pb::Layer {
            number: 3,
            name: "fc3".into(),
            kind: pb::LayerKind::Dense as i32,
            channels: 5,
            ..Default::default()
        });
        app.apply(Msg::Model(Box::new(m)), now);
        let response = |id: &str| pb::RecordResponse {
            recording_id: id.into(),
            predictions: vec![
                pb::Prediction {
                    class_index: 2,
                    ..Default::default()
                },
                pb::Prediction {
                    class_index: 0,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let record = |app: &mut App, id: &str| {
            app.apply(
                Msg::Recorded {
                    path: "cat.png".into(),
                    response: response(id),
                    stats: pb::ActivationStatsResponse::default(),
                },
                now,
            )
        };
        record(&mut app, "a");
        let cmds = app.update(Action::ToggleAttribution, now);
        assert_eq!(
            cmds,
            vec![Command::Attribute {
                recording_id: "a".into(),
                class: 2,
            }]
        );
        let answer = |id: &str, unit: u32| Msg::Attribution {
            recording_id: id.into(),
            result: Box::new(pb::AttributeResult {
                unit,
                label: "tabby".into(),
                ..Default::default()
            }),
        };
        let result = |id: &str| answer(id, 2);
        // An answer for another recording is dropped.
        app.apply(result("old"), now);
        assert!(app.attribution.is_none());
        app.apply(result("a"), now);
        assert_eq!(app.attribution.as_ref().map(|a| a.unit), Some(2));
        assert!(app.status.contains("class 2 tabby"), "{}", app.status);
        // Hidden and shown again: no second fetch.
        app.update(Action::ToggleAttribution, now);
        assert!(app.update(Action::ToggleAttribution, now).is_empty());
        // A new image, while shown: its own attribution is fetched.
        let cmds = record(&mut app, "b");
        assert!(app.attribution.is_none());
        assert!(cmds.contains(&Command::Attribute {
            recording_id: "b".into(),
            class: 2,
        }));
        // A: the next class by score, then around to the top one again.
        let cmds = app.update(Action::NextClass, now);
        assert_eq!(
            cmds,
            vec![Command::Attribute {
                recording_id: "b".into(),
                class: 0,
            }]
        );
        assert!(
            app.status.contains("2nd of the image's 2 classes"),
            "{}",
            app.status
        );
        // The top class's late answer is not shown for the second one.
        app.apply(result("b"), now);
        assert!(app.attribution.is_none());
        app.apply(answer("b", 0), now);
        assert_eq!(app.attribution.as_ref().map(|a| a.unit), Some(0));
        let cmds = app.update(Action::NextClass, now);
        assert!(matches!(
            cmds.as_slice(),
            [Command::Attribute { class: 2, .. }]
        ));
    }

    #[test]
    fn starts_on_the_last_layer_and_moves_between_layers() {
        let (mut app, now) = loaded();
        assert_eq!(app.layer_number(), 2);
        app.update(Action::LayerDown, now);
        assert_eq!(app.layer_number(), 2, "no layer below the last");
        app.update(Action::LayerUp, now);
        assert_eq!(app.layer_number(), 1);
        // The fetch waits until the selection settles.
        assert!(app.tick(now).is_empty());
        let cmds = app.tick(now + SETTLE);
        assert!(
            cmds.iter()
                .any(|c| matches!(c, Command::FetchLayer { layer: 1, .. }))
        );
        assert!(
            cmds.iter()
                .any(|c| matches!(c, Command::FetchNeuron { layer: 1, .. }))
        );
    }

    #[test]
    fn holding_a_key_fetches_only_the_last_neuron() {
        let (mut app, now) = loaded();
        app.tick(now + SETTLE);
        for _ in 0..5 {
            app.update(Action::FeatureNext, now);
        }
        let cmds = app.tick(now + SETTLE);
        let fetches: Vec<_> = cmds
            .iter()
            .filter(|c| matches!(c, Command::FetchNeuron { .. }))
            .collect();
        assert_eq!(fetches.len(), 1);
        assert!(matches!(
            fetches[0],
            Command::FetchNeuron { feature: 5, .. }
        ));
        // An answer for an older selection is dropped.
        let generation = app.neuron_gen();
        app.update(Action::FeatureNext, now);
        app.apply(
            Msg::Neuron {
                generation,
                reconstructions: vec![pb::Reconstruction::default()],
            },
            now,
        );
        assert!(app.reconstructions.is_empty());
    }

    fn recorded(path: &str, id: &str) -> Msg {
        Msg::Recorded {
            path: path.into(),
            response: pb::RecordResponse {
                recording_id: id.into(),
                ..Default::default()
            },
            stats: pb::ActivationStatsResponse::default(),
        }
    }

    fn fetched_pin(cmds: &[Command]) -> Option<Option<String>> {
        cmds.iter().find_map(|c| match c {
            Command::FetchNeuron { pinned, .. } => Some(pinned.clone()),
            _ => None,
        })
    }

    #[test]
    fn a_pinned_image_is_compared_with_the_next_one_opened() {
        let (mut app, now) = loaded();
        app.apply(recorded("cat.png", "a"), now);
        app.update(Action::TogglePin, now);
        assert!(app.status.contains("cat.png pinned as B"), "{}", app.status);
        // Pinned to itself: nothing to compare yet.
        assert_eq!(fetched_pin(&app.tick(now + SETTLE)), Some(None));
        app.apply(recorded("dog.png", "b"), now);
        app.update(Action::FeatureNext, now);
        assert_eq!(
            fetched_pin(&app.tick(now + SETTLE)),
            Some(Some("a".to_string()))
        );
        // The answer for the selection shows; a move clears it.
        let radius = Radius {
            gradient: (Some(-0.5), Some(0.25)),
            random: (None, Some(2.0)),
            on_boundary: 0,
        };
        let patterns = pb::ComparePatternsResponse::default();
        app.apply(
            Msg::Instruments {
                generation: app.neuron_gen(),
                radius,
                patterns: Some(patterns.clone()),
            },
            now,
        );
        assert_eq!(
            (app.radius, app.patterns.clone()),
            (Some(radius), Some(patterns))
        );
        app.update(Action::FeatureNext, now);
        assert!(app.radius.is_none() && app.patterns.is_none());
        // b on another image pins it instead; on B itself, unpins.
        app.update(Action::TogglePin, now);
        assert_eq!(
            app.pinned.as_ref().map(|p| p.recording_id.as_str()),
            Some("b")
        );
        app.update(Action::TogglePin, now);
        assert!(app.pinned.is_none() && app.status.contains("unpinned"));
    }

    #[test]
    fn features_wrap_and_the_cursor_stays_on_the_map() {
        let (mut app, now) = loaded();
        app.update(Action::FeaturePrev, now);
        assert_eq!(app.feature, 5);
        for _ in 0..10 {
            app.update(Action::Move(1, 1), now);
        }
        assert_eq!(app.cursor, (3, 3));
        app.update(Action::SelectLocation(9, 1), now);
        assert_eq!(app.cursor, (3, 1));
        assert_eq!(app.focus, Focus::Activation);
        // With the maps focused, arrows move through the features.
        app.focus = Focus::Maps;
        app.update(Action::Move(0, 1), now);
        assert_eq!(app.feature, 0);
    }

    #[test]
    fn the_samples_are_offered_and_named() {
        let (mut app, now) = loaded();
        let dir = PathBuf::from("/opt/fovea/samples");
        app.samples = Some(dir.clone());
        app.image = None;
        app.update(Action::OpenPrompt, now);
        let prompt = app.prompt.clone().unwrap();
        assert_eq!(prompt.text, "/opt/fovea/samples/");
        assert!(
            prompt
                .hint
                .starts_with("samples: chelsea.png  astronaut.png  rocket.jpg | "),
            "{}",
            prompt.hint
        );
        app.update(Action::PromptCancel, now);
        app.apply(
            Msg::Recorded {
                path: dir.join("rocket.jpg"),
                response: pb::RecordResponse::default(),
                stats: pb::ActivationStatsResponse::default(),
            },
            now,
        );
        assert!(
            app.status.starts_with("sample rocket.jpg recorded"),
            "{}",
            app.status
        );
        // A file of the same name elsewhere is the user's own.
        app.apply(
            Msg::Recorded {
                path: PathBuf::from("/home/me/rocket.jpg"),
                response: pb::RecordResponse::default(),
                stats: pb::ActivationStatsResponse::default(),
            },
            now,
        );
        assert_eq!(app.status, "/home/me/rocket.jpg recorded");
    }

    #[test]
    fn help_prompt_maximize_and_quit() {
        let (mut app, now) = loaded();
        app.update(Action::ToggleHelp, now);
        assert!(app.help);
        app.update(Action::LayerUp, now);
        assert!(!app.help, "any key closes the help");
        assert_eq!(app.layer_number(), 2, "and does nothing else");
        app.update(Action::OpenPrompt, now);
        app.prompt = Some(Prompt::default());
        for c in "dog.png".chars() {
            app.update(Action::PromptChar(c), now);
        }
        let cmds = app.update(Action::PromptSubmit, now);
        assert_eq!(cmds, vec![Command::Open("dog.png".into())]);
        let cmds = app.update(Action::Maximize, now);
        assert!(matches!(
            cmds.as_slice(),
            [Command::Maximize { layer: 2, .. }]
        ));
        assert!(
            app.update(Action::Maximize, now).is_empty(),
            "one at a time"
        );
        assert_eq!(
            app.update(Action::Cancel, now),
            vec![Command::CancelMaximize]
        );
        app.apply(Msg::MaxEnded(Some("cancelled".into())), now);
        assert!(!app.max.running);
        app.update(Action::Reseed, now);
        assert_eq!(app.seed, 1);
        assert_eq!(app.update(Action::Quit, now), vec![Command::Quit]);
        assert!(app.quit);
    }

    #[test]
    fn the_top_class_is_maximized_over_the_head() {
        let (mut app, now) = loaded();
        app.update(Action::MaximizeClass, now);
        assert!(!app.max.running, "no head, no class");
        assert!(app.status.contains("no class"), "{}", app.status);
        let mut m = model();
        m.layers.push(pb::Layer {
            number: 3,
            name: "fc1".into(),
            kind: pb::LayerKind::Dense as i32,
            channels: 5,
            height: 1,
            width: 1,
            ..Default::default()
        });
        app.apply(Msg::Model(Box::new(m)), now);
        app.recording = Some(pb::RecordResponse {
            predictions: vec![pb::Prediction {
                class_index: 4,
                label: "tabby".into(),
                score: 0.9,
            }],
            ..Default::default()
        });
        let cmds = app.update(Action::MaximizeClass, now);
        assert_eq!(
            cmds,
            vec![Command::Maximize {
                layer: 3,
                feature: 4,
                y: 0,
                x: 0,
                seed: 0,
                channel: false,
            }]
        );
        assert!(app.status.contains("tabby"), "{}", app.status);
        assert!(app.update(Action::MaximizeClass, now).is_empty());
    }

    #[test]
    fn m_on_the_feature_maps_visualises_the_channel() {
        let (mut app, now) = loaded();
        app.update(Action::FocusNext, now);
        assert_eq!(app.focus, Focus::Maps);
        app.feature = 3;
        let cmds = app.update(Action::Maximize, now);
        assert_eq!(
            cmds,
            vec![Command::Maximize {
                layer: 2,
                feature: 3,
                y: 0,
                x: 0,
                seed: 0,
                channel: true,
            }]
        );
        assert_eq!(app.max.subject.as_deref(), Some("channel 3 of layer 2"));
        assert!(
            app.status.contains("visualising channel 3"),
            "{}",
            app.status
        );
    }

    #[test]
    fn patches_follow_the_selected_feature() {
        let (mut app, now) = loaded();
        let cmds = app.update(Action::TogglePatches, now);
        assert!(matches!(
            cmds.as_slice(),
            [Command::Patches { layer: 2, .. }]
        ));
        app.update(Action::FeatureNext, now);
        let cmds = app.tick(now + SETTLE);
        assert!(
            cmds.iter()
                .any(|c| matches!(c, Command::Patches { feature: 1, .. }))
        );
        assert!(app.update(Action::TogglePatches, now).is_empty());
    }

    #[test]
    fn a_scan_patch_opens_at_its_neuron() {
        let (mut app, now) = loaded();
        app.update(Action::TogglePatches, now);
        app.apply(
            Msg::Patches {
                generation: app.neuron_gen(),
                hits: vec![pb::ScanHit {
                    image: "dog.png".into(),
                    value: 3.0,
                    y: 2,
                    x: 1,
                    ..Default::default()
                }],
            },
            now,
        );
        assert_eq!(
            app.update(Action::OpenPatch(0), now),
            vec![Command::Open("dog.png".into())]
        );
        app.apply(
            Msg::Recorded {
                path: "dog.png".into(),
                response: pb::RecordResponse::default(),
                stats: pb::ActivationStatsResponse::default(),
            },
            now,
        );
        assert_eq!((app.feature, app.cursor), (0, (2, 1)));
        assert!(!app.show_patches, "back to the reconstructions");
        let cmds = app.tick(now + SETTLE);
        assert!(cmds.iter().any(|c| matches!(
            c,
            Command::FetchNeuron {
                feature: 0,
                y: 2,
                x: 1,
                ..
            }
        )));
    }

    #[test]
    fn path_completion() {
        let dir = std::env::temp_dir().join(format!("fovea-complete-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("images/cat.png"), b"x").unwrap();
        std::fs::write(dir.join("images/car.png"), b"x").unwrap();
        let base = dir.display().to_string();
        let (t, _) = complete_path(&format!("{base}/ima"));
        assert_eq!(t, format!("{base}/images/"));
        let (t, hint) = complete_path(&format!("{base}/images/c"));
        assert_eq!(t, format!("{base}/images/ca"));
        assert!(hint.contains("cat.png") && hint.contains("car.png"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_location_keeps_its_place_on_the_image_across_layers() {
        let (mut app, now) = loaded();
        // Layer 2 is 4x4, layer 1 8x8: stride 2 between them.
        assert_eq!(app.layer, 1);
        app.cursor = (3, 1);
        app.update(Action::LayerUp, now);
        assert_eq!(app.cursor, (7, 3));
        app.update(Action::LayerDown, now);
        assert_eq!(app.cursor, (3, 1));
        app.update(Action::SelectLayer(0), now);
        assert_eq!(
            (app.layer, app.cursor, app.focus),
            (0, (7, 3), Focus::Layers)
        );
    }

    #[test]
    fn without_a_recording_probe_keys_say_how_to_get_one() {
        let mut app = App::new("test", "half blocks");
        let now = Instant::now();
        app.apply(Msg::Model(Box::new(model())), now);
        for a in [
            Action::JumpStrongest,
            Action::Maximize,
            Action::TogglePatches,
        ] {
            assert!(app.update(a, now).is_empty());
            assert_eq!(app.status, "no image recorded yet: o opens one");
        }
    }

    #[test]
    fn time_left_follows_the_pace_since_the_first_step() {
        let t0 = Instant::now();
        let m = MaxState {
            step: 30,
            total: 150,
            first_step: Some((t0, 10)),
            ..Default::default()
        };
        assert_eq!(
            m.eta(t0 + Duration::from_secs(4)),
            Some(Duration::from_secs(24))
        );
        assert_eq!(MaxState::default().eta(t0), None);
    }
}
