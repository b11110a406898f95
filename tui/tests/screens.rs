//! The main screens drawn on ratatui's TestBackend at a laptop's 80x24, at
//! 120x40 and at 200x60, compared with insta snapshots (`cargo insta
//! review`, or `INSTA_UPDATE=always`, accepts changes), and the picture
//! protocols' escape sequences checked to be well-formed.

use fovea_client::v1 as pb;
use fovea_tui::app::{Action, App, Msg};
use fovea_tui::graphics::{self, Protocol, Target, detect::Support};
use fovea_tui::pictures::Pictures;
use fovea_tui::ui;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::path::PathBuf;
use std::time::Instant;

/// A torchvision ResNet's layers, named by module path: grouped by block
/// (`layer1.0`), each row showing the rest of its path, and the filter
/// matching whole paths.
#[test]
fn module_paths_are_grouped_by_block_and_shown_within_it() {
    let now = Instant::now();
    let mut app = App::new("127.0.0.1:50051", "half blocks");
    let mut names = vec!["relu".to_string()];
    for stage in 1..=2 {
        for block in 0..2 {
            for relu in ["relu", "relu_1"] {
                names.push(format!("layer{stage}.{block}.{relu}"));
            }
        }
    }
    let layers = names
        .iter()
        .enumerate()
        .map(|(k, name)| pb::Layer {
            number: k as u32 + 1,
            name: name.clone(),
            kind: pb::LayerKind::Conv as i32,
            channels: 64,
            height: 56,
            width: 56,
            fov: 7 + 8 * k as u32,
            stride: 4,
            ..Default::default()
        })
        .collect();
    app.apply(
        Msg::Model(Box::new(pb::ModelInfo {
            name: "resnet18".into(),
            layers,
            ..Default::default()
        })),
        now,
    );
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("── layer2.0")
            && screen.contains("── layer2.1")
            && screen.contains(" 7 relu_1 ")
            && !screen.contains("layer2.0.relu"),
        "{screen}"
    );
    for _ in 0..8 {
        app.update(Action::LayerUp, now);
    }
    assert_eq!(app.layer, 0);
    let screen = render(&app, 80, 24);
    insta::assert_snapshot!("module_paths_80x24", screen);
    app.update(Action::FilterLayers, now);
    for c in "layer2.1.".chars() {
        app.update(Action::FilterChar(c), now);
    }
    assert_eq!(app.visible_layers().len(), 2);
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("── layer2.1")
            && screen.contains(" 8 relu ")
            && screen.contains(" 9 relu_1"),
        "{screen}"
    );
}

fn png(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    fovea_engine::probe::render::png(&image::RgbImage::from_fn(w, h, |x, y| image::Rgb(f(x, y))))
}

/// A loaded app on a two-layer network, as if the daemon had answered.
fn app() -> App {
    let now = Instant::now();
    let mut app = App::new("127.0.0.1:50051", "half blocks");
    let conv = |number: u32, name: &str, channels: u32, side: u32, fov: u32| pb::Layer {
        number,
        name: name.into(),
        kind: pb::LayerKind::Conv as i32,
        channels,
        height: side,
        width: side,
        fov,
        stride: 1,
        ..Default::default()
    };
    app.apply(
        Msg::Model(Box::new(pb::ModelInfo {
            name: "tiny".into(),
            execution_provider: "cpu".into(),
            layers: vec![conv(1, "conv1_1", 4, 8, 3), conv(2, "conv1_2", 4, 8, 5)],
            runtime: Some(pb::RuntimeInfo {
                provider: "cpu".into(),
                cpu_reason: "no NVIDIA driver".into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        now,
    );
    app.apply(
        Msg::Recorded {
            path: PathBuf::from("cat.png"),
            response: pb::RecordResponse {
                recording_id: "ab".into(),
                input_png: png(32, 32, |x, y| [(x * 8) as u8, (y * 8) as u8, 128]),
                activity: vec![
                    pb::LayerActivity {
                        layer: 1,
                        fraction_active: 0.5,
                    },
                    pb::LayerActivity {
                        layer: 2,
                        fraction_active: 0.25,
                    },
                ],
                ..Default::default()
            },
            stats: pb::ActivationStatsResponse {
                layers: vec![
                    pb::LayerStats {
                        layer: 1,
                        features: 4,
                        locations: 64,
                        histogram: vec![4, 10, 30, 15, 5],
                        fraction_active: 0.5,
                        ..Default::default()
                    },
                    pb::LayerStats {
                        layer: 2,
                        features: 4,
                        locations: 64,
                        histogram: vec![20, 30, 10, 4, 0],
                        fraction_active: 0.25,
                        ..Default::default()
                    },
                ],
            },
        },
        now,
    );
    app.apply(
        Msg::Strongest {
            generation: app.neuron_gen(),
            activation: pb::Activation {
                feature: 2,
                y: 3,
                x: 4,
                value: 1.5,
            },
        },
        now,
    );
    app.apply(
        Msg::Layer {
            generation: app.layer_gen(),
            maps: pb::FeatureMaps {
                layer: 2,
                height: 8,
                width: 8,
                maps: (0..4)
                    .map(|f| pb::FeatureMap {
                        feature: f,
                        max: 2.0,
                        quantized: (0..64).map(|i| ((i * (f + 1) * 7) % 256) as u8).collect(),
                        scale: 2.0 / 255.0,
                        ..Default::default()
                    })
                    .collect(),
            },
        },
        now,
    );
    app.apply(
        Msg::Neuron {
            generation: app.neuron_gen(),
            reconstructions: (1..=4)
                .map(|m| pb::Reconstruction {
                    mode: m,
                    png: png(12, 12, |x, y| {
                        [(x * 20) as u8, (y * 20) as u8, (m * 50) as u8]
                    }),
                    fov: Some(pb::Box {
                        x0: 4,
                        y0: 4,
                        x1: 16,
                        y1: 16,
                    }),
                    activation: 1.5,
                    ..Default::default()
                })
                .collect(),
        },
        now,
    );
    app.status = "cat.png recorded".into();
    app
}

/// Pictures drawn with half blocks, and the encoding jobs they ask for.
fn blocks_pictures() -> (
    Pictures,
    std::sync::mpsc::Receiver<fovea_tui::pictures::Job>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let support = Support {
        usable: vec![Protocol::Blocks],
        note: None,
        wrap: false,
    };
    (Pictures::new((9, 18), support, None, tx), rx)
}

/// Draws twice: the first draw asks for encoded pictures, which are
/// encoded here synchronously before the second.
fn render(app: &App, w: u16, h: u16) -> String {
    let (mut pictures, rx) = blocks_pictures();
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    pictures.refresh(app);
    terminal
        .draw(|f| ui::draw(f, app, &mut pictures, 0))
        .unwrap();
    while let Ok(job) = rx.try_recv() {
        assert!(pictures.encoded(job.encode()).is_none());
    }
    terminal
        .draw(|f| ui::draw(f, app, &mut pictures, 0))
        .unwrap();
    let buf = terminal.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn main_screen() {
    let screen = render(&app(), 120, 40);
    assert!(
        screen
            .lines()
            .any(|l| l.contains(">  2 conv1_2") && l.contains("4x8x8") && l.contains("0.25")),
        "{screen}"
    );
    assert!(screen.contains("f2 @ (3,4) = 1.500"), "{screen}");
    assert!(screen.contains("cat.png recorded"));
    assert!(
        screen.contains('▀') || screen.contains('▄'),
        "pictures drawn as half blocks"
    );
    insta::assert_snapshot!("main_120x40", screen);
}

#[test]
fn a_laptop_screen_shows_input_list_and_one_picture_panel() {
    let mut app = app();
    let screen = render(&app, 80, 24);
    assert!(screen.contains("layers (j/k, / filters)"), "{screen}");
    assert!(screen.contains("reconstructions"), "{screen}");
    assert!(!screen.contains("feature maps"), "{screen}");
    assert!(screen.trim_end().ends_with("? help"), "{screen}");
    insta::assert_snapshot!("main_80x24", screen);
    // Tab brings the next panel in its place.
    app.update(Action::FocusNext, Instant::now());
    let screen = render(&app, 80, 24);
    assert!(screen.contains("feature maps"), "{screen}");
    assert!(!screen.contains("reconstructions"), "{screen}");
}

#[test]
fn a_large_screen_and_zoom() {
    let mut app = app();
    insta::assert_snapshot!("main_200x60", render(&app, 200, 60));
    app.update(Action::FocusNext, Instant::now());
    app.update(Action::ToggleZoom, Instant::now());
    let screen = render(&app, 200, 60);
    assert!(screen.contains("feature maps"), "{screen}");
    assert!(!screen.contains("layers (j/k, / filters)"), "{screen}");
    insta::assert_snapshot!("zoomed_grid_200x60", screen);
}

#[test]
fn too_small_a_screen_says_the_size_needed() {
    let screen = render(&app(), 50, 12);
    let words = screen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("needs at least 60x16"), "{screen}");
    assert!(words.contains("this terminal is 50x12"), "{screen}");
}

#[test]
fn help_overlay_hides_pictures_and_lists_every_key() {
    let mut app = app();
    app.update(Action::ToggleHelp, Instant::now());
    let screen = render(&app, 120, 40);
    for key in [
        "j / k", "h / l", "arrows", "t ", "Tab", "m ", "x ", "o ", "r ", "s ", "g ", "q ",
    ] {
        assert!(screen.contains(key), "help lacks {key:?}");
    }
    insta::assert_snapshot!("help_120x40", screen);
}

#[test]
fn maximize_panel_shows_progress() {
    let mut app = app();
    let now = Instant::now();
    app.update(Action::Maximize, now);
    for step in 1..=5 {
        app.apply(
            Msg::MaxProgress(pb::MaximizeProgress {
                step,
                total_steps: 10,
                objective: vec![step as f32, 2.0 * step as f32, 0.5],
                previews: vec![],
            }),
            now,
        );
    }
    let screen = render(&app, 120, 40);
    assert!(screen.contains("step 5/10"), "{screen}");
    assert!(screen.contains("start 2      10.0"), "{screen}");
}

/// Every picture protocol's output for a small image.
fn encoded(protocol: Protocol) -> String {
    let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 90]));
    let target = Target::plain(protocol, (9, 18));
    let area = ratatui::layout::Rect::new(0, 0, 8, 4);
    let e = graphics::encode(&img, area, &target, 7).unwrap();
    let mut buf = ratatui::buffer::Buffer::empty(area);
    assert!(e.render(area, &mut buf));
    buf.content().iter().map(|c| c.symbol()).collect()
}

#[test]
fn graphics_protocols_emit_well_formed_sequences() {
    let sixel = encoded(Protocol::Sixel);
    let start = sixel.find("\x1bP").expect("sixel starts with DCS");
    assert!(sixel[start..].contains('q'), "sixel introducer");
    assert!(sixel[start..].contains("\x1b\\"), "sixel ends with ST");
    for kitty in [encoded(Protocol::Kitty), encoded(Protocol::KittyDirect)] {
        assert!(kitty.contains("\x1b_G"), "kitty graphics APC");
        assert!(kitty.contains("\x1b\\"), "kitty APC terminated");
    }
    // Placeholders: one per cell, the picture's id in the colour.
    assert!(encoded(Protocol::Kitty).contains('\u{10EEEE}'));
    let iterm = encoded(Protocol::Iterm2);
    let start = iterm.find("\x1b]1337;File=").expect("iTerm2 OSC 1337");
    assert!(iterm[start..].contains("inline=1"));
    assert!(iterm[start..].contains('\x07'), "OSC terminated by BEL");
    let blocks = encoded(Protocol::Blocks);
    assert!(!blocks.contains('\x1b') && blocks.contains('▀'));
}

#[test]
fn s_saves_every_picture_on_screen_named_by_what_it_shows() {
    let app = app();
    let (mut pictures, _jobs) = blocks_pictures();
    pictures.refresh(&app);
    let dir = tempfile::tempdir().unwrap();
    let panels = [
        fovea_tui::pictures::Panel::Input,
        fovea_tui::pictures::Panel::Reconstructions,
    ];
    let written = fovea_tui::save::save(&app, &pictures, &panels, true, dir.path()).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "cat_input_L2_f2_y3x4-fov.png",
        "L2_f2_y3x4_deconvnet.png",
        "L2_f2_y3x4_deconvnet-masked.png",
        "L2_f2_y3x4_random-weights.png",
        "L2_f2_y3x4_linear-filter.png",
        "L2_active-features-histogram.png",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    for p in &written {
        let img = image::open(p).unwrap();
        assert!(img.width() > 0);
        let side: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(p.with_extension("json")).unwrap())
                .unwrap();
        assert!(side.get("layer").is_some(), "{}: {side}", p.display());
    }
    let side: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("L2_f2_y3x4_deconvnet.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(side["mode"], "deconvnet");
    assert_eq!(side["feature"], 2);
    assert_eq!(side["activation"], 1.5);
    assert_eq!(side["fov"]["x1"], 16);
}

#[test]
fn a_picture_that_cannot_be_encoded_is_not_asked_for_again() {
    let app = app();
    let (mut pictures, jobs) = blocks_pictures();
    pictures.refresh(&app);
    let nowhere = ratatui::layout::Rect::new(0, 0, 0, 0);
    let mut buf = ratatui::buffer::Buffer::empty(ratatui::layout::Rect::new(0, 0, 10, 10));
    let panel = fovea_tui::pictures::Panel::Input;
    pictures.draw(panel, nowhere, &mut buf);
    let job = jobs.try_recv().expect("an encoding is asked for");
    assert!(
        pictures.encoded(job.encode()).is_some(),
        "no room is an error"
    );
    pictures.draw(panel, nowhere, &mut buf);
    assert!(
        jobs.try_recv().is_err(),
        "the failure is not retried every frame"
    );
}

#[test]
fn leaving_kitty_direct_placement_deletes_its_pictures() {
    let (tx, _jobs) = std::sync::mpsc::channel();
    let support = Support {
        usable: vec![Protocol::KittyDirect, Protocol::Blocks],
        note: None,
        wrap: false,
    };
    let mut pictures = Pictures::new((9, 18), support, None, tx);
    assert_eq!(pictures.protocol(), Protocol::KittyDirect);
    pictures.cycle();
    assert_eq!(pictures.protocol(), Protocol::Blocks);
    let out = pictures.end_frame();
    assert_eq!(out.matches("\x1b_Ga=d,d=I,").count(), 5, "{out:?}");
    assert!(pictures.end_frame().is_empty());
}

/// A VGG-19-shaped list (16 conv layers in five blocks) on a short screen:
/// blocks get headings, the list scrolls with the selection, and `/`
/// narrows it to the layers whose name holds what is typed.
#[test]
fn a_long_layer_list_is_grouped_scrolls_and_filters() {
    let now = Instant::now();
    let mut app = App::new("127.0.0.1:50051", "half blocks");
    let blocks = [2, 2, 4, 4, 4];
    let mut layers = Vec::new();
    for (b, &n) in blocks.iter().enumerate() {
        for k in 1..=n {
            layers.push(pb::Layer {
                number: layers.len() as u32 + 1,
                name: format!("conv{}_{k}", b + 1),
                kind: pb::LayerKind::Conv as i32,
                channels: 64 << b.min(3),
                height: 224 >> b,
                width: 224 >> b,
                fov: 3 + 2 * layers.len() as u32,
                stride: 1 << b,
                ..Default::default()
            });
        }
    }
    app.apply(
        Msg::Model(Box::new(pb::ModelInfo {
            name: "vgg19".into(),
            layers,
            ..Default::default()
        })),
        now,
    );
    for _ in 0..15 {
        app.update(Action::LayerDown, now);
    }
    assert_eq!(app.layer, 15);
    let screen = render(&app, 80, 24);
    assert!(
        screen.contains("── conv5") && screen.contains("16 conv5_4"),
        "{screen}"
    );
    assert!(
        screen.contains("↑") && screen.contains("16 of 16"),
        "{screen}"
    );
    insta::assert_snapshot!("layers_scrolled_80x24", screen);

    app.update(Action::FilterLayers, now);
    for c in "conv3".chars() {
        app.update(Action::FilterChar(c), now);
    }
    // The selection moves to the first layer left in the list.
    assert_eq!(app.layer, 4);
    let screen = render(&app, 80, 24);
    assert!(screen.contains("layers /conv3_ (4 of 16)"), "{screen}");
    assert!(
        screen.contains("5 conv3_1") && !screen.contains("conv2_2"),
        "{screen}"
    );
    assert!(app.status.contains("4 of 16 layers"), "{}", app.status);
    insta::assert_snapshot!("layers_filtered_80x24", screen);
    app.update(Action::FilterDone, now);
    // j/k move within what the filter shows; other keys act again.
    app.update(Action::LayerUp, now);
    assert_eq!(app.layer, 4);
    for _ in 0..5 {
        app.update(Action::LayerDown, now);
    }
    assert_eq!(app.layer, 7);
    app.update(Action::FilterClear, now);
    assert!(app.layer_filter.is_empty());
    assert_eq!(app.visible_layers().len(), 16);
    // A filter nothing matches says so and keeps the selection.
    app.update(Action::FilterLayers, now);
    app.update(Action::FilterChar('x'), now);
    assert_eq!(app.layer, 7);
    assert!(app.status.contains("no layer name holds"), "{}", app.status);
}
