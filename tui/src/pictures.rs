//! The pictures the TUI shows, composed from the app's state, and how
//! each is on screen. Scaling and encoding happen on a worker thread so
//! drawing never waits; until a panel's new picture is ready its previous
//! one stays, marked as updating.

use crate::app::App;
use crate::graphics::{self, Encoded, Protocol, Target};
use fovea_client::picture;
use fovea_client::v1 as pb;
use image::RgbImage;
use ratatui::buffer::Buffer;
use ratatui::layout::Rect;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};

/// Panels that show a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Panel {
    Input,
    Grid,
    Map,
    Reconstructions,
    Maximize,
}

pub const PANELS: [Panel; 5] = [
    Panel::Input,
    Panel::Grid,
    Panel::Map,
    Panel::Reconstructions,
    Panel::Maximize,
];

impl Panel {
    /// The panel's picture id for kitty: a new picture replaces the old.
    fn kitty_id(self) -> u32 {
        0x00F0_0100 + self as u32
    }
}

/// Composes one panel's picture from the app's state.
type Compose = dyn Fn(&App) -> Option<RgbImage>;

/// Features shown per page of the thumbnail grid.
pub const PAGE: u32 = 64;

/// What an encoding is for: the picture, the area's size, the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Spec {
    key: u64,
    /// The area; its position only counts inside tmux, where a picture
    /// carries its position.
    area: Rect,
    target: Target,
}

/// Work for the encoding thread.
pub struct Job {
    panel: Panel,
    spec: Spec,
    img: Arc<RgbImage>,
}

impl Job {
    pub fn encode(self) -> Done {
        let s = &self.spec;
        Done {
            result: graphics::encode(&self.img, s.area, &s.target, self.panel.kitty_id()),
            panel: self.panel,
            spec: self.spec,
        }
    }
}

/// A finished encoding.
pub struct Done {
    panel: Panel,
    spec: Spec,
    result: Result<Encoded, graphics::EncodeError>,
}

/// Encodes jobs until the sender is gone; of several waiting for one
/// panel only the newest is done.
pub fn encode_jobs(jobs: Receiver<Job>, done: impl Fn(Done) -> bool) {
    while let Ok(first) = jobs.recv() {
        let mut latest: Vec<Job> = vec![first];
        while let Ok(more) = jobs.try_recv() {
            latest.retain(|j| j.panel != more.panel);
            latest.push(more);
        }
        for j in latest {
            if !done(j.encode()) {
                return;
            }
        }
    }
}

/// How a panel's picture stands after drawing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// The current picture.
    Current,
    /// The previous picture while the new one is encoded.
    Updating,
    /// No picture.
    Nothing,
}

pub struct Pictures {
    target: Target,
    usable: Vec<Protocol>,
    note: Option<String>,
    forced: bool,
    jobs: Sender<Job>,
    sources: HashMap<Panel, (u64, Arc<RgbImage>)>,
    encoded: HashMap<Panel, (Spec, Encoded)>,
    pending: HashMap<Panel, Spec>,
    /// Encodings that failed, not asked for again.
    failed: HashMap<Panel, Spec>,
    /// Sequences to write after the next frame.
    after_frame: String,
    /// Where each picture was drawn this frame and the last.
    drawn: HashMap<Panel, Rect>,
    drawn_before: HashMap<Panel, Rect>,
    needs_clear: bool,
}

fn key_of(h: impl Hash) -> u64 {
    let mut s = std::collections::hash_map::DefaultHasher::new();
    h.hash(&mut s);
    s.finish()
}

impl Pictures {
    /// `usable` is best first; `forced` is the user's choice, if any.
    pub fn new(
        cell: (u16, u16),
        support: graphics::detect::Support,
        forced: Option<Protocol>,
        jobs: Sender<Job>,
    ) -> Pictures {
        let mut usable = support.usable;
        if let Some(p) = forced
            && !usable.contains(&p)
        {
            usable.insert(0, p);
        }
        let protocol = forced.unwrap_or(usable.first().copied().unwrap_or(Protocol::Blocks));
        Pictures {
            target: Target {
                protocol,
                cell,
                wrap: support.wrap,
                pane: None,
            },
            usable,
            note: support.note,
            forced: forced.is_some(),
            jobs,
            sources: HashMap::new(),
            encoded: HashMap::new(),
            pending: HashMap::new(),
            failed: HashMap::new(),
            after_frame: String::new(),
            drawn: HashMap::new(),
            drawn_before: HashMap::new(),
            needs_clear: false,
        }
    }

    /// Inside tmux: where the pane is on the terminal outside (it moves
    /// when panes are split or resized).
    pub fn set_pane(&mut self, pane: Option<(u16, u16)>) {
        if self.target.wrap && self.target.pane != pane {
            self.target.pane = pane;
            self.needs_clear = true;
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.target.protocol
    }

    /// The status line's words for how pictures are drawn.
    pub fn mode(&self) -> String {
        let mut s = self.target.protocol.name().to_string();
        if !self.forced && Some(&self.target.protocol) == self.usable.first() {
            s.push_str(" (detected)");
        }
        if let Some(n) = &self.note {
            s.push_str("; ");
            s.push_str(n);
        }
        s
    }

    /// The next protocol that works here; every picture is encoded again.
    pub fn cycle(&mut self) {
        let at = self
            .usable
            .iter()
            .position(|p| *p == self.target.protocol)
            .unwrap_or(0);
        // Kitty's directly placed pictures are not cells: clearing the
        // screen need not remove them.
        if self.target.protocol == Protocol::KittyDirect {
            for p in PANELS {
                self.after_frame
                    .push_str(&graphics::kitty_delete(p.kitty_id(), &self.target));
            }
        }
        self.target.protocol = self.usable[(at + 1) % self.usable.len().max(1)];
        self.forced = true;
        self.encoded.clear();
        self.pending.clear();
        self.failed.clear();
        self.needs_clear = true;
    }

    pub fn image(&self, panel: Panel) -> Option<&RgbImage> {
        self.sources.get(&panel).map(|(_, i)| i.as_ref())
    }

    /// A finished encoding; one no longer wanted is dropped.
    pub fn encoded(&mut self, done: Done) -> Option<graphics::EncodeError> {
        if self.pending.get(&done.panel) != Some(&done.spec) {
            return None;
        }
        self.pending.remove(&done.panel);
        match done.result {
            Ok(e) => {
                self.encoded.insert(done.panel, (done.spec, e));
                None
            }
            Err(e) => {
                self.failed.insert(done.panel, done.spec);
                Some(e)
            }
        }
    }

    /// Draws `panel`'s picture into `area`, asking for an encoding where
    /// the one at hand is not for this picture, size and terminal.
    pub fn draw(&mut self, panel: Panel, area: Rect, buf: &mut Buffer) -> Shown {
        let Some((key, img)) = self.sources.get(&panel) else {
            return Shown::Nothing;
        };
        let placed = if self.target.wrap {
            area
        } else {
            Rect::new(0, 0, area.width, area.height)
        };
        let want = Spec {
            key: *key,
            area: placed,
            target: self.target,
        };
        let have = self.encoded.get(&panel).map(|(s, _)| *s);
        if have != Some(want)
            && self.pending.get(&panel) != Some(&want)
            && self.failed.get(&panel) != Some(&want)
        {
            let job = Job {
                panel,
                spec: want,
                img: Arc::clone(img),
            };
            if self.jobs.send(job).is_ok() {
                self.pending.insert(panel, want);
            }
        }
        let Some((spec, enc)) = self.encoded.get(&panel) else {
            return Shown::Nothing;
        };
        if spec.target != self.target || spec.area != want.area || !enc.render(area, buf) {
            return Shown::Nothing;
        }
        if let Some(r) = enc.rect(area) {
            self.drawn.insert(panel, r);
        }
        if spec.key == want.key {
            Shown::Current
        } else {
            Shown::Updating
        }
    }

    /// Ends a frame: what must be written besides the cells (kitty
    /// pictures of panels no longer drawn are deleted; they are not
    /// cells). Sixel pixels outside a panel's new picture are only
    /// cleared by clearing the screen, which `take_clear` asks for.
    pub fn end_frame(&mut self) -> String {
        let mut out = std::mem::take(&mut self.after_frame);
        let gone: HashSet<Panel> = self
            .drawn_before
            .iter()
            .filter(|(p, r)| self.drawn.get(p) != Some(r))
            .map(|(p, _)| *p)
            .collect();
        match self.target.protocol {
            Protocol::KittyDirect => {
                for p in &gone {
                    if !self.drawn.contains_key(p) {
                        out.push_str(&graphics::kitty_delete(p.kitty_id(), &self.target));
                    }
                }
            }
            Protocol::Sixel | Protocol::Iterm2 => {
                if !gone.is_empty() {
                    self.needs_clear = true;
                }
            }
            Protocol::Kitty | Protocol::Blocks => {}
        }
        self.drawn_before = std::mem::take(&mut self.drawn);
        out
    }

    /// Whether the screen must be cleared and drawn again.
    pub fn take_clear(&mut self) -> bool {
        std::mem::take(&mut self.needs_clear)
    }

    /// Where `panel`'s picture was last drawn.
    pub fn drawn_at(&self, panel: Panel) -> Option<Rect> {
        self.drawn_before.get(&panel).copied()
    }

    /// Recomposes the pictures whose inputs changed.
    pub fn refresh(&mut self, app: &App) {
        let jobs: [(Panel, u64, &Compose); 5] = [
            (
                Panel::Input,
                key_of((&app.recording.as_ref().map(|r| &r.recording_id), app.fov)),
                &input_picture,
            ),
            (
                Panel::Grid,
                key_of((
                    app.maps.as_ref().map(|m| (m.layer, m.maps.len())),
                    app.feature,
                    app.layer_gen(),
                )),
                &grid_picture,
            ),
            (
                Panel::Map,
                key_of((
                    app.maps.as_ref().map(|m| m.layer),
                    app.feature,
                    app.cursor,
                    app.layer_gen(),
                )),
                &map_picture,
            ),
            (
                Panel::Reconstructions,
                key_of((
                    app.reconstructions
                        .iter()
                        .map(|r| (r.mode, r.png.len(), r.neuron_index))
                        .collect::<Vec<_>>(),
                    app.show_attribution,
                    app.attribution.as_ref().map(|a| a.png.len()),
                )),
                &reconstruction_picture,
            ),
            (
                Panel::Maximize,
                key_of((
                    app.max.previews.iter().map(Vec::len).collect::<Vec<_>>(),
                    app.max.result.is_some(),
                )),
                &maximize_picture,
            ),
        ];
        for (panel, key, make) in jobs {
            if self.sources.get(&panel).is_some_and(|(k, _)| *k == key) {
                continue;
            }
            match make(app) {
                Some(img) => {
                    self.sources.insert(panel, (key, Arc::new(img)));
                }
                None => {
                    self.sources.remove(&panel);
                    self.encoded.remove(&panel);
                }
            }
        }
    }
}

fn decode(png: &[u8]) -> Option<RgbImage> {
    image::load_from_memory(png).ok().map(|i| i.to_rgb8())
}

/// The network's input with the selected neuron's field of view.
pub fn input_picture(app: &App) -> Option<RgbImage> {
    let mut img = decode(&app.recording.as_ref()?.input_png)?;
    if let Some(b) = app.fov {
        picture::outline(
            &mut img,
            b.x0 as i64,
            b.y0 as i64,
            b.x1 as i64,
            b.y1 as i64,
            picture::ACCENT,
            2,
        );
    }
    Some(img)
}

fn map_rgb(maps: &pb::FeatureMaps, m: &pb::FeatureMap) -> RgbImage {
    let (h, w) = (maps.height as usize, maps.width as usize);
    let values: Vec<f32> = if m.quantized.is_empty() {
        m.values.clone()
    } else {
        m.quantized.iter().map(|&b| b as f32 * m.scale).collect()
    };
    fovea_engine::probe::render::render_map(&values, h, w, m.max).0
}

/// Thumbnails of a page of the layer's feature maps, the selected outlined.
pub fn grid_picture(app: &App) -> Option<RgbImage> {
    let maps = app.maps.as_ref()?;
    let page = app.feature / PAGE;
    let tile = (48 / maps.width.max(1)).max(1) * maps.width.max(1);
    let tiles: Vec<RgbImage> = maps
        .maps
        .iter()
        .filter(|m| m.feature / PAGE == page)
        .map(|m| {
            let mut t = picture::scale_to(
                &map_rgb(maps, m),
                tile,
                tile * maps.height.max(1) / maps.width.max(1),
            );
            if m.feature == app.feature {
                let (w, h) = (t.width() as i64, t.height() as i64);
                picture::outline(&mut t, 0, 0, w, h, picture::ACCENT, 3);
            }
            t
        })
        .collect();
    let cols = (tiles.len() as f64).sqrt().ceil().max(1.0) as usize;
    Some(picture::grid(&tiles, cols, None))
}

/// The selected feature's map, large, with the cursor.
pub fn map_picture(app: &App) -> Option<RgbImage> {
    let maps = app.maps.as_ref()?;
    let m = maps.maps.iter().find(|m| m.feature == app.feature)?;
    let scale = (224 / maps.width.max(1)).max(1);
    let mut img = picture::scale_to(&map_rgb(maps, m), maps.width * scale, maps.height * scale);
    let (y, x) = (
        app.cursor.0 as i64 * scale as i64,
        app.cursor.1 as i64 * scale as i64,
    );
    let t = (scale as i64 / 4).clamp(1, 3);
    picture::outline(
        &mut img,
        x,
        y,
        x + scale as i64,
        y + scale as i64,
        picture::ACCENT,
        t,
    );
    Some(img)
}

/// A reconstruction mode's caption on screen and its name in file names.
pub fn mode_names(m: i32) -> (&'static str, &'static str) {
    match pb::ReconstructionMode::try_from(m) {
        Ok(pb::ReconstructionMode::Deconvnet) => ("deconvnet", "deconvnet"),
        Ok(pb::ReconstructionMode::DeconvnetMasked) => ("+ masks", "deconvnet-masked"),
        Ok(pb::ReconstructionMode::RandomWeights) => ("random weights", "random-weights"),
        Ok(pb::ReconstructionMode::LinearFilter) => ("linear filter", "linear-filter"),
        _ => ("?", "reconstruction"),
    }
}

/// The four reconstructions, labelled, 2 x 2; or the scan's strongest
/// images for the feature, 3 x 3.
pub fn reconstruction_picture(app: &App) -> Option<RgbImage> {
    if app.show_patches {
        let tiles: Vec<RgbImage> = app
            .patches
            .iter()
            .filter_map(|h| {
                let name = std::path::Path::new(&h.image)
                    .file_name()?
                    .to_string_lossy()
                    .into_owned();
                decode(&h.patch_png)
                    .map(|img| picture::captioned(&img, &format!("{:.1} {name}", h.value), 120))
            })
            .collect();
        return (!tiles.is_empty()).then(|| picture::grid(&tiles, 3, None));
    }
    if app.reconstructions.is_empty() {
        return None;
    }
    let mut tiles: Vec<RgbImage> = app
        .reconstructions
        .iter()
        .filter_map(|r| {
            decode(&r.png).map(|img| picture::captioned(&img, mode_names(r.mode).0, 160))
        })
        .collect();
    // The top class's attribution, scaled to the reconstructions' size.
    let attribution = app.attribution.as_ref().filter(|_| app.show_attribution);
    if let Some((a, img)) = attribution.and_then(|a| Some((a, decode(&a.png)?))) {
        let class = if a.label.is_empty() {
            format!("class {}", a.unit)
        } else {
            a.label.clone()
        };
        let caption = format!("{class}: Guided Grad-CAM");
        // Wide enough for its caption (8 pixels a character).
        let width = (8 * caption.chars().count() as u32).clamp(160, 320);
        tiles.push(picture::captioned(&img, &caption, width));
    }
    let cols = if tiles.len() > 4 { 3 } else { 2 };
    Some(picture::grid(&tiles, cols, None))
}

/// Maximization previews or results, side by side.
pub fn maximize_picture(app: &App) -> Option<RgbImage> {
    if app.max.previews.is_empty() {
        return None;
    }
    let tiles: Vec<RgbImage> = app
        .max
        .previews
        .iter()
        .filter_map(|p| decode(p))
        .map(|i| picture::scale_to(&i, 128, 128))
        .collect();
    Some(picture::grid(&tiles, tiles.len(), None))
}
