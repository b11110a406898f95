//! Pictures printed inline in the terminal (`--show`).

use crate::Graphics;
use image::RgbImage;

/// Prints pictures inline when asked: at their own size where the
/// terminal is wide enough, so labels stay readable.
pub struct Shower {
    target: Option<fovea_term::Target>,
}

impl Shower {
    /// Asks the terminal what it draws (its answers are read, so none
    /// reach the screen). Off unless `--show` and stdout is a terminal.
    pub fn new(on: bool, graphics: Graphics) -> Shower {
        use fovea_term::{Protocol, Target, detect};
        use std::io::IsTerminal;
        if !on || !std::io::stdout().is_terminal() {
            return Shower { target: None };
        }
        let env = detect::Env::read();
        let passthrough = env.tmux.then(detect::tmux_passthrough).flatten();
        let replies = match (graphics, crossterm::terminal::enable_raw_mode()) {
            (Graphics::Blocks, _) | (_, Err(_)) => detect::Replies::default(),
            (_, Ok(())) => {
                let r = detect::query(
                    env.tmux && passthrough != Some(false),
                    std::time::Duration::from_secs(2),
                );
                let _ = crossterm::terminal::disable_raw_mode();
                r
            }
        };
        let support = detect::decide(&env, &replies, passthrough);
        // Printed pictures are placed directly: kitty's placeholders need
        // a cell grid, which a command's output is not.
        let detected = support
            .usable
            .iter()
            .copied()
            .find(|p| !(support.wrap && *p == Protocol::Kitty))
            .unwrap_or(Protocol::Blocks);
        let protocol = match graphics {
            Graphics::Auto => detected,
            Graphics::Kitty => Protocol::KittyDirect,
            Graphics::Iterm => Protocol::Iterm2,
            Graphics::Sixel => Protocol::Sixel,
            Graphics::Blocks => Protocol::Blocks,
        };
        if let Some(note) = &support.note {
            eprintln!("fovea: {note}");
        }
        Shower {
            target: Some(Target {
                protocol,
                cell: detect::cell_size(&replies),
                wrap: support.wrap,
                pane: None,
            }),
        }
    }

    pub fn show(&self, img: &RgbImage) {
        use std::io::Write;
        let Some(target) = &self.target else {
            return;
        };
        let cols = crossterm::terminal::size().map_or(80, |(c, _)| c);
        match fovea_term::inline(img, cols, target) {
            Ok(text) => {
                let mut out = std::io::stdout();
                let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
            }
            Err(e) => eprintln!("fovea: cannot show the picture inline: {e}"),
        }
    }
}
