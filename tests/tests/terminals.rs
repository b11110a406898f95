//! `fovea-tui` in real terminal emulators on a virtual X display: xterm
//! with sixel, the same inside tmux, and kitty (Debian's 0.26, which has
//! no Unicode placeholders). Each test takes screenshots of the display and
//! checks that the input panel shows the network's input as real pixels:
//! the same mean colour, a coarse correlation with the picture, and detail
//! inside cells that half blocks cannot draw. `.ci/run` installs xvfb,
//! xterm, kitty, x11-utils, imagemagick and tmux.

use fovea_tests::{Daemon, bin, ready, sample_image, vgg16_daemon};
use fovea_tui::graphics::fit;
use image::RgbImage;
use ratatui::layout::Rect;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const COLS: u16 = 120;
const ROWS: u16 = 40;

fn spawn(cmd: &mut Command, what: &str) -> Child {
    spawn_logged(cmd, what, Stdio::null())
}

fn spawn_logged(cmd: &mut Command, what: &str, log: Stdio) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{what} could not start ({e}); install it (Debian: apt-get install {what})")
        })
}

/// A process killed when the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A virtual X display.
struct Display {
    name: String,
    _server: Killed,
}

impl Display {
    /// Tests run in parallel: each takes its own display number, and one
    /// whose server does not come up (a number in use) tries the next.
    fn start() -> Display {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        for _ in 0..20 {
            let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let n = 100 + (std::process::id() % 400) * 16 + k % 16;
            if PathBuf::from(format!("/tmp/.X{n}-lock")).exists() {
                continue;
            }
            let name = format!(":{n}");
            let mut server = Killed(spawn(
                Command::new("Xvfb").args([
                    &name,
                    "-screen",
                    "0",
                    "1600x1000x24",
                    "-nolisten",
                    "tcp",
                ]),
                "xvfb",
            ));
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            let t = Instant::now();
            while t.elapsed() < Duration::from_secs(20) {
                if !matches!(server.0.try_wait(), Ok(None)) {
                    break;
                }
                // The socket appears a little before the server answers.
                if socket.exists()
                    && Command::new("xdpyinfo")
                        .args(["-display", &name])
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status()
                        .is_ok_and(|s| s.success())
                {
                    return Display {
                        name,
                        _server: server,
                    };
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = server.0.kill();
        }
        panic!("no virtual X display could be started");
    }

    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.name);
        c
    }

    /// The whole screen.
    fn screenshot(&self) -> RgbImage {
        let out = self
            .command("import")
            .args(["-window", "root", "png:-"])
            .output()
            .unwrap_or_else(|e| {
                panic!("imagemagick's import could not run ({e}); install imagemagick")
            });
        image::load_from_memory(&out.stdout)
            .unwrap_or_else(|e| {
                panic!(
                    "import gave no picture ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            })
            .to_rgb8()
    }

    /// Position and size of the largest top-level window (the terminal).
    fn terminal_window(&self) -> Option<(u32, u32, u32, u32)> {
        let out = self
            .command("xwininfo")
            .args(["-root", "-children"])
            .output()
            .unwrap_or_else(|e| panic!("xwininfo could not run ({e}); install x11-utils"));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                // `0x200001 "xterm": ("xterm" "XTerm")  1084x724+0+0  +0+0`
                let geom = l.split_whitespace().rev().nth(1)?;
                let (size, pos) = geom.split_once('+')?;
                let (w, h) = size.split_once('x')?;
                let (x, y) = pos.split_once('+')?;
                Some((
                    x.parse().ok()?,
                    y.parse().ok()?,
                    w.parse().ok()?,
                    h.parse().ok()?,
                ))
            })
            .max_by_key(|(_, _, w, h)| w * h)
    }
}

/// The real VGG-16 serving on CPU, and the input picture it makes of the
/// chelsea sample (what the TUI's input panel shows).
fn vgg16() -> (Daemon, RgbImage) {
    let d = vgg16_daemon();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let input = rt.block_on(async {
        let c = ready(&d.addr).await;
        let image = std::fs::read(sample_image("chelsea.png")).unwrap();
        c.record(image, "").await.unwrap().input_png
    });
    (d, image::load_from_memory(&input).unwrap().to_rgb8())
}

fn tui_command(d: &Daemon) -> Vec<String> {
    vec![
        bin("fovea-tui").display().to_string(),
        "--connect".into(),
        d.addr.clone(),
        sample_image("chelsea.png").display().to_string(),
    ]
}

/// The command inside tmux (its own server, passthrough on, no status
/// line so the TUI has the whole window).
/// Where the TUI is, in cells of the terminal window, and the window's
/// size in cells.
#[derive(Debug, Clone, Copy)]
struct Pane {
    x: u16,
    y: u16,
    cols: u16,
    rows: u16,
    window: (u16, u16),
}

const WHOLE: Pane = Pane {
    x: 0,
    y: 0,
    cols: COLS,
    rows: ROWS,
    window: (COLS, ROWS),
};

/// The TUI's pane in the tmux server on `socket` (`target` as tmux names
/// it) in a window of `window` cells.
fn tmux_pane(socket: &str, target: &str, window: (u16, u16)) -> Option<Pane> {
    let out = Command::new("tmux")
        .args(["-L", socket, "display", "-p", "-t", target])
        .arg("#{pane_left} #{pane_top} #{pane_width} #{pane_height}")
        .output()
        .ok()?;
    let v: Vec<u16> = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    match v[..] {
        [x, y, cols, rows] => Some(Pane {
            x,
            y,
            cols,
            rows,
            window,
        }),
        _ => None,
    }
}

fn in_tmux(cmd: &[String], socket: &str, dir: &std::path::Path) -> Vec<String> {
    let conf = dir.join("tmux.conf");
    std::fs::write(
        &conf,
        "set -g allow-passthrough on\nset -g default-terminal tmux-256color\nset -g status off\n",
    )
    .unwrap();
    let mut v: Vec<String> = ["tmux", "-L", socket, "-f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    v.push(conf.display().to_string());
    v.extend(["new-session".to_string(), "-s".into(), "shot".into()]);
    v.push(cmd.join(" "));
    v
}

/// A terminal emulator and the file its error output goes to.
struct Terminal {
    process: Killed,
    log: tempfile::NamedTempFile,
}

impl Terminal {
    fn start(cmd: &mut Command, what: &str) -> Terminal {
        let log = tempfile::NamedTempFile::new().unwrap();
        let out = log.reopen().unwrap();
        Terminal {
            process: Killed(spawn_logged(cmd, what, Stdio::from(out))),
            log,
        }
    }

    /// Whether it still runs, else how it ended and what it said.
    fn state(&mut self) -> String {
        match self.process.0.try_wait() {
            Ok(None) => "running".into(),
            other => format!(
                "ended ({other:?}): {}",
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            ),
        }
    }
}

fn xterm(display: &Display, cmd: &[String]) -> Terminal {
    xterm_sized(display, cmd, (COLS, ROWS))
}

fn xterm_sized(display: &Display, cmd: &[String], (cols, rows): (u16, u16)) -> Terminal {
    Terminal::start(
        display
            .command("xterm")
            .args(["-ti", "vt340", "-xrm", "XTerm*decTerminalID: vt340"])
            .args([
                "-xrm",
                "XTerm*numColorRegisters: 256",
                "-fa",
                "Monospace",
                "-fs",
                "9",
            ])
            .arg("-geometry")
            .arg(format!("{cols}x{rows}+0+0"))
            .arg("-e")
            .args(cmd),
        "xterm",
    )
}

fn kitty(display: &Display, cmd: &[String]) -> Terminal {
    Terminal::start(
        display
            .command("kitty")
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .args(["--config", "NONE", "-o", "window_padding_width=0"])
            .args(["-o", "remember_window_size=no"])
            .arg("-o")
            .arg(format!("initial_window_width={COLS}c"))
            .arg("-o")
            .arg(format!("initial_window_height={ROWS}c"))
            .args(cmd),
        "kitty",
    )
}

/// Mean colour of a picture.
fn mean(img: &RgbImage) -> [f64; 3] {
    let mut m = [0.0; 3];
    for p in img.pixels() {
        for c in 0..3 {
            m[c] += f64::from(p[c]);
        }
    }
    let n = f64::from((img.width() * img.height()).max(1));
    m.map(|v| v / n)
}

/// Pearson correlation of the luminance of two pictures of one size.
fn correlation(a: &RgbImage, b: &RgbImage) -> f64 {
    let lum = |img: &RgbImage| -> Vec<f64> {
        img.pixels()
            .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
            .collect()
    };
    let (x, y) = (lum(a), lum(b));
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (u, v) in x.iter().zip(&y) {
        sxy += (u - mx) * (v - my);
        sxx += (u - mx) * (u - mx);
        syy += (v - my) * (v - my);
    }
    sxy / (sxx * syy).sqrt().max(1e-9)
}

/// Share of half-cells (cell width x half the cell height) holding more
/// than six colours: a half block draws each in one colour (a few more
/// where a window straddles two, or at the glyph's anti-aliased edge).
fn detail(img: &RgbImage, cell: (u32, u32)) -> f64 {
    let (w, h) = (cell.0.max(1), (cell.1 / 2).max(1));
    let (mut varied, mut all) = (0usize, 0usize);
    for by in 0..img.height() / h {
        for bx in 0..img.width() / w {
            let mut colours = std::collections::HashSet::new();
            for y in 0..h {
                for x in 0..w {
                    colours.insert(img.get_pixel(bx * w + x, by * h + y).0);
                }
            }
            varied += usize::from(colours.len() > 6);
            all += 1;
        }
    }
    varied as f64 / all.max(1) as f64
}

/// What the input panel shows in a screenshot, and the measures.
struct Seen {
    /// Where the picture was looked for: window, cell size.
    geometry: String,
    mean_diff: f64,
    correlation: f64,
    detail: f64,
}

fn input_panel(display: &Display, input: &RgbImage, pane: Pane) -> Option<(Seen, RgbImage)> {
    let (wx, wy, ww, wh) = display.terminal_window()?;
    let (cols, rows) = (u32::from(pane.window.0), u32::from(pane.window.1));
    let cell = (ww / cols, wh / rows);
    // The terminal's border around the cells.
    let (bx, by) = ((ww - cell.0 * cols) / 2, (wh - cell.1 * rows) / 2);
    let view = fovea_tui::ui::View {
        focus: fovea_tui::app::Focus::Layers,
        zoom: false,
    };
    let areas = fovea_tui::ui::layout(Rect::new(0, 0, pane.cols, pane.rows), view);
    let inner = Rect::new(
        pane.x + areas.input.x + 1,
        pane.y + areas.input.y + 1,
        areas.input.width.saturating_sub(2),
        areas.input.height.saturating_sub(2),
    );
    let f = fit(
        input.width(),
        input.height(),
        inner.width,
        inner.height,
        (cell.0 as u16, cell.1 as u16),
    )?;
    let x = wx + bx + u32::from(inner.x + f.dx) * cell.0;
    let y = wy + by + u32::from(inner.y + f.dy) * cell.1;
    let shot = display.screenshot();
    if x + f.width > shot.width() || y + f.height > shot.height() {
        return None;
    }
    let crop = image::imageops::crop_imm(&shot, x, y, f.width, f.height).to_image();
    let small = |img: &RgbImage| {
        image::imageops::resize(img, 24, 24, image::imageops::FilterType::Triangle)
    };
    let (m1, m2) = (mean(&crop), mean(input));
    let seen = Seen {
        geometry: format!(
            "window {ww}x{wh}+{wx}+{wy}, cells {}x{} px, picture at {x},{y}",
            cell.0, cell.1
        ),
        mean_diff: (0..3).map(|c| (m1[c] - m2[c]).abs()).fold(0.0, f64::max),
        correlation: correlation(&small(&crop), &small(input)),
        detail: detail(&crop, cell),
    };
    Some((seen, shot))
}

/// Waits for the input panel to show the input as real pixels; on failure
/// the last screenshot is saved in the temporary folder and named.
fn assert_input_picture(
    display: &Display,
    term: &mut Terminal,
    input: &RgbImage,
    pane: impl Fn() -> Option<Pane>,
    what: &str,
) {
    let t = Instant::now();
    let mut last = String::from("no terminal window");
    loop {
        if let Some((s, shot)) = pane().and_then(|p| input_panel(display, input, p)) {
            if s.mean_diff < 20.0 && s.correlation > 0.9 && s.detail > 0.75 {
                return;
            }
            last = format!(
                "mean colour off by {:.1}, correlation {:.3}, detail {:.2}; {}",
                s.mean_diff, s.correlation, s.detail, s.geometry
            );
            if t.elapsed() > Duration::from_secs(60) {
                let path = std::env::temp_dir().join(format!("fovea-{what}.png"));
                let _ = shot.save(&path);
                panic!(
                    "{what}: the input panel does not show the input picture ({last}); screenshot: {}",
                    path.display()
                );
            }
        } else {
            assert!(
                t.elapsed() < Duration::from_secs(60),
                "{what}: {last}; the terminal: {}",
                term.state()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn xterm_with_sixel_shows_the_input_picture() {
    let (d, input) = vgg16();
    let display = Display::start();
    let mut term = xterm(&display, &tui_command(&d));
    assert_input_picture(&display, &mut term, &input, || Some(WHOLE), "xterm-sixel");
}

#[test]
fn tmux_in_xterm_passes_sixel_through() {
    let (d, input) = vgg16();
    let display = Display::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("fovea-shot-{}", std::process::id());
    let mut term = xterm(&display, &in_tmux(&tui_command(&d), &socket, dir.path()));
    assert_input_picture(&display, &mut term, &input, || Some(WHOLE), "tmux-sixel");
    pictures_stay_in_their_panels(&display, &mut term, &socket, || Some(WHOLE), (COLS, ROWS));
    let _ = Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .status();
}

/// Presses `l` (next feature) three times: the map, grid and
/// reconstructions are redrawn alone, and their pictures must land in their
/// panels, not where tmux last wrote text (the end of a panel title on the
/// first row), which would colour the first row.
fn pictures_stay_in_their_panels(
    display: &Display,
    term: &mut Terminal,
    socket: &str,
    pane: impl Fn() -> Option<Pane>,
    window: (u16, u16),
) {
    let first_row_colour = || {
        let (wx, wy, ww, wh) = display.terminal_window()?;
        let p = pane()?;
        let cell = (ww / u32::from(window.0), wh / u32::from(window.1));
        let shot = display.screenshot();
        let (x0, y0) = (wx + u32::from(p.x) * cell.0, wy + u32::from(p.y) * cell.1);
        let band =
            image::imageops::crop_imm(&shot, x0, y0, u32::from(p.cols) * cell.0, cell.1).to_image();
        let coloured = band
            .pixels()
            .filter(|q| q.0.iter().max().unwrap_or(&0) - q.0.iter().min().unwrap_or(&0) > 60)
            .count();
        Some(coloured as f64 / f64::from((band.width() * band.height()).max(1)))
    };
    for _ in 0..3 {
        let target = format!(
            "shot:0.{}",
            if pane().is_some_and(|p| p.x > 0) {
                1
            } else {
                0
            }
        );
        let keys = ["-L", socket, "send-keys", "-t", &target, "l"];
        assert!(Command::new("tmux").args(keys).status().unwrap().success());
        std::thread::sleep(Duration::from_secs(3));
        let c = first_row_colour().unwrap_or(1.0);
        assert!(
            c < 0.02,
            "a picture landed on the pane's first row ({:.1}% coloured); the terminal: {}",
            100.0 * c,
            term.state()
        );
    }
}

/// tmux does not move the outer terminal's cursor before a passthrough:
/// in a pane that does not start at the window's corner, a picture lands
/// in its panel only if it carries its own position.
#[test]
fn tmux_split_pane_places_sixel_in_its_panel() {
    let (d, input) = vgg16();
    let display = Display::start();
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("fovea-split-{}", std::process::id());
    let mut cmd = in_tmux(&["sleep 600".to_string()], &socket, dir.path());
    // Wide enough for every panel beside the other pane.
    let window = (180, 48);
    cmd.extend([";", "split-window", "-h", "-l", "130"].map(String::from));
    cmd.push(tui_command(&d).join(" "));
    let mut term = xterm_sized(&display, &cmd, window);
    let pane = || tmux_pane(&socket, "shot:0.1", window).filter(|p| p.x > 0);
    assert_input_picture(&display, &mut term, &input, pane, "tmux-split-sixel");
    pictures_stay_in_their_panels(&display, &mut term, &socket, pane, window);
    let _ = Command::new("tmux")
        .args(["-L", &socket, "kill-server"])
        .status();
}

#[test]
fn kitty_without_placeholders_places_pictures_directly() {
    let (d, input) = vgg16();
    let display = Display::start();
    let mut term = kitty(&display, &tui_command(&d));
    assert_input_picture(&display, &mut term, &input, || Some(WHOLE), "kitty");
}

/// The measure tells half blocks from pictures: the same panel drawn with
/// half blocks correlates with the input but has no detail inside cells.
#[test]
fn half_blocks_in_xterm_fail_the_detail_measure() {
    let (d, input) = vgg16();
    let display = Display::start();
    let mut cmd = tui_command(&d);
    cmd.extend(["--graphics".to_string(), "blocks".into()]);
    let mut term = xterm(&display, &cmd);
    let t = Instant::now();
    loop {
        if let Some((s, _)) = input_panel(&display, &input, WHOLE)
            && s.correlation > 0.9
        {
            // Measured: pictures 0.9-1.0, half blocks about 0.4.
            assert!(
                s.detail < 0.55,
                "half blocks measured as detailed ({:.2})",
                s.detail
            );
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "the half-block input never appeared; the terminal: {}",
            term.state()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
