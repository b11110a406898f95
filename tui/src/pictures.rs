//! The pictures the TUI shows, composed from the app's state, and their
//! terminal-graphics states (kitty, sixel, iTerm2 or half blocks). Resizing
//! and encoding happen on a worker thread so drawing never waits for them.

use crate::app::App;
use fovea_client::picture;
use fovea_client::v1 as pb;
use image::{DynamicImage, RgbImage};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::thread::{ResizeRequest, ResizeResponse, ThreadProtocol};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::mpsc::Sender;

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

/// Composes one panel's picture from the app's state.
type Compose = dyn Fn(&App) -> Option<RgbImage>;

/// Features shown per page of the thumbnail grid.
pub const PAGE: u32 = 64;

pub struct Pictures {
    picker: Picker,
    detected: ProtocolType,
    forced: bool,
    senders: HashMap<Panel, Sender<ResizeRequest>>,
    states: HashMap<Panel, (u64, RgbImage, ThreadProtocol)>,
}

fn key_of(h: impl Hash) -> u64 {
    let mut s = std::collections::hash_map::DefaultHasher::new();
    h.hash(&mut s);
    s.finish()
}

pub fn protocol_name(p: ProtocolType) -> &'static str {
    match p {
        ProtocolType::Halfblocks => "half blocks",
        ProtocolType::Sixel => "sixel",
        ProtocolType::Kitty => "kitty",
        ProtocolType::Iterm2 => "iTerm2",
    }
}

impl Pictures {
    /// `senders` carry each panel's resize work to a thread that reports
    /// back tagged with the panel.
    pub fn new(
        picker: Picker,
        forced: bool,
        senders: HashMap<Panel, Sender<ResizeRequest>>,
    ) -> Pictures {
        Pictures {
            detected: picker.protocol_type(),
            picker,
            forced,
            senders,
            states: HashMap::new(),
        }
    }

    pub fn mode(&self) -> String {
        let p = self.picker.protocol_type();
        let mut s = protocol_name(p).to_string();
        if !self.forced && p == self.detected {
            s.push_str(" (detected)");
        }
        if p == ProtocolType::Halfblocks && self.picker.tmux_detected() {
            s.push_str("; in tmux set allow-passthrough on for real pictures");
        }
        s
    }

    /// Next protocol; every picture is encoded again.
    pub fn cycle(&mut self) {
        let next = self.picker.protocol_type().next();
        self.picker.set_protocol_type(next);
        self.forced = true;
        let panels: Vec<(Panel, u64, RgbImage)> = self
            .states
            .iter()
            .map(|(p, (k, img, _))| (*p, *k, img.clone()))
            .collect();
        for (p, k, img) in panels {
            self.put(p, k, img);
        }
    }

    fn put(&mut self, panel: Panel, key: u64, img: RgbImage) {
        let Some(tx) = self.senders.get(&panel) else {
            return;
        };
        let proto = self
            .picker
            .new_resize_protocol(DynamicImage::ImageRgb8(img.clone()));
        self.states.insert(
            panel,
            (key, img, ThreadProtocol::new(tx.clone(), Some(proto))),
        );
    }

    pub fn state(&mut self, panel: Panel) -> Option<&mut ThreadProtocol> {
        self.states.get_mut(&panel).map(|(_, _, s)| s)
    }

    pub fn image(&self, panel: Panel) -> Option<&RgbImage> {
        self.states.get(&panel).map(|(_, i, _)| i)
    }

    /// A finished resize for `panel` (stale ones are ignored by the state).
    pub fn resized(&mut self, panel: Panel, done: ResizeResponse) {
        if let Some((_, _, s)) = self.states.get_mut(&panel) {
            s.update_resized_protocol(done);
        }
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
                key_of(
                    app.reconstructions
                        .iter()
                        .map(|r| (r.mode, r.png.len(), r.neuron_index))
                        .collect::<Vec<_>>(),
                ),
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
            if self.states.get(&panel).is_some_and(|(k, _, _)| *k == key) {
                continue;
            }
            match make(app) {
                Some(img) => self.put(panel, key, img),
                None => {
                    self.states.remove(&panel);
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
    fovea_daemon::render::render_map(&values, h, w, m.max).0
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

fn mode_name(m: i32) -> &'static str {
    match pb::ReconstructionMode::try_from(m) {
        Ok(pb::ReconstructionMode::Deconvnet) => "deconvnet",
        Ok(pb::ReconstructionMode::DeconvnetMasked) => "+ masks",
        Ok(pb::ReconstructionMode::RandomWeights) => "random weights",
        Ok(pb::ReconstructionMode::LinearFilter) => "linear filter",
        _ => "?",
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
    let tiles: Vec<RgbImage> = app
        .reconstructions
        .iter()
        .filter_map(|r| decode(&r.png).map(|img| picture::captioned(&img, mode_name(r.mode), 160)))
        .collect();
    Some(picture::grid(&tiles, 2, None))
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
