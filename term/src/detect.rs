//! What the terminal can draw: its own answers to a few queries (asked
//! through tmux to the terminal outside it, where tmux lets them pass),
//! the environment, and a small table of which protocol each terminal and
//! version shows correctly.

use crate::Protocol;
use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::Duration;

/// The environment variables that name a terminal or a multiplexer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Env {
    pub term: String,
    pub term_program: String,
    pub lc_terminal: String,
    pub tmux: bool,
    pub wezterm: bool,
    pub konsole: bool,
    pub kitty_window: bool,
}

impl Env {
    pub fn read() -> Env {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let term = var("TERM");
        let term_program = var("TERM_PROGRAM");
        Env {
            tmux: !var("TMUX").is_empty() || term_program == "tmux" || term.starts_with("tmux"),
            wezterm: !var("WEZTERM_EXECUTABLE").is_empty() || term_program == "WezTerm",
            konsole: !var("KONSOLE_VERSION").is_empty(),
            kitty_window: !var("KITTY_WINDOW_ID").is_empty() || term == "xterm-kitty",
            lc_terminal: var("LC_TERMINAL"),
            term,
            term_program,
        }
    }
}

/// What the terminal said about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replies {
    /// XTVERSION, e.g. `kitty(0.26.5)` or `XTerm(379)`.
    pub version: Option<String>,
    /// Primary device attributes; 4 means sixel.
    pub attributes: Option<Vec<u16>>,
    /// The kitty graphics query was answered OK.
    pub kitty_graphics: bool,
    /// Cell size in pixels (width, height).
    pub cell: Option<(u16, u16)>,
}

/// The queries, in the order their answers arrive; primary device
/// attributes last, since every terminal answers it.
const QUERIES: &str = "\x1b[>0q\x1b_Gi=31,s=1,v=1,a=q,t=d,f=24;AAAA\x1b\\\x1b[16t\x1b[c";

/// Wraps an escape sequence so tmux passes it to the terminal outside:
/// every ESC inside is doubled, including the inner string terminator.
pub fn tmux_wrap(seq: &str) -> String {
    let mut s = String::with_capacity(seq.len() + 16);
    s.push_str("\x1bPtmux;");
    s.push_str(&seq.replace('\x1b', "\x1b\x1b"));
    s.push_str("\x1b\\");
    s
}

/// Parses the terminal's answers. Unknown sequences are skipped.
pub fn parse_replies(bytes: &[u8]) -> Replies {
    let text = String::from_utf8_lossy(bytes);
    let mut r = Replies::default();
    let mut rest: &str = &text;
    while let Some(at) = rest.find('\x1b') {
        rest = &rest[at + 1..];
        if let Some(body) = rest.strip_prefix("P>|") {
            if let Some(end) = body.find('\x1b') {
                r.version = Some(body[..end].to_string());
                rest = &body[end..];
            }
        } else if let Some(body) = rest.strip_prefix("_G") {
            if let Some(end) = body.find('\x1b') {
                let reply = &body[..end];
                if reply.starts_with("i=31;") && reply.ends_with(";OK") || reply == "i=31;OK" {
                    r.kitty_graphics = true;
                }
                rest = &body[end..];
            }
        } else if let Some(body) = rest.strip_prefix("[?") {
            if let Some(end) = body.find('c') {
                let attrs = &body[..end];
                if attrs.bytes().all(|b| b.is_ascii_digit() || b == b';') {
                    r.attributes = Some(attrs.split(';').filter_map(|a| a.parse().ok()).collect());
                }
                rest = &body[end..];
            }
        } else if let Some(body) = rest.strip_prefix("[6;")
            && let Some(end) = body.find('t')
        {
            let mut it = body[..end].split(';').filter_map(|v| v.parse::<u16>().ok());
            if let (Some(h), Some(w)) = (it.next(), it.next())
                && h > 0
                && w > 0
            {
                r.cell = Some((w, h));
            }
            rest = &body[end..];
        }
    }
    r
}

/// A version such as `0.26.5` as comparable numbers.
fn version_of(text: &str) -> Vec<u32> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The terminal's name and version from its XTVERSION answer:
/// `kitty(0.26.5)` and `WezTerm 20240203` both occur.
pub fn name_version(version: &str) -> (String, Vec<u32>) {
    let split = version.find(['(', ' ']).unwrap_or(version.len());
    (version[..split].to_string(), version_of(&version[split..]))
}

/// The protocols that show pictures correctly here, best first (half
/// blocks always last), and a sentence for the user when the best
/// is out of reach for a reason they can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Support {
    pub usable: Vec<Protocol>,
    pub note: Option<String>,
    /// Inside tmux with passthrough on: every sequence is wrapped.
    pub wrap: bool,
}

/// The table: which protocol each terminal and version can show.
pub fn decide(env: &Env, replies: &Replies, passthrough: Option<bool>) -> Support {
    let mut usable = Vec::new();
    let mut note = None;
    let (name, version) = replies
        .version
        .as_deref()
        .map(name_version)
        .unwrap_or_default();
    let name = name.to_lowercase();
    let wezterm = env.wezterm || name == "wezterm";
    let konsole = env.konsole || name == "konsole";
    let iterm = env.term_program.contains("iTerm")
        || env.lc_terminal.contains("iTerm")
        || name.starts_with("iterm");
    // Placeholders arrived in kitty 0.28; ghostty has them from its start.
    let placeholders = match name.as_str() {
        "kitty" => version >= vec![0, 28],
        "ghostty" => true,
        _ => false,
    };
    let tmux_blocked = env.tmux && passthrough == Some(false);
    if tmux_blocked {
        note = Some("inside tmux pictures need: tmux set -g allow-passthrough on".to_string());
    } else {
        // WezTerm and Konsole answer the kitty query but draw it wrongly.
        if replies.kitty_graphics && !wezterm && !konsole {
            if placeholders {
                usable.push(Protocol::Kitty);
            }
            if !env.tmux {
                usable.push(Protocol::KittyDirect);
            } else if !placeholders {
                note = Some(format!(
                    "{} inside tmux: pictures need kitty 0.28 or later (Unicode placeholders)",
                    replies.version.as_deref().unwrap_or("kitty")
                ));
            }
        }
        let sixel = replies.attributes.as_ref().is_some_and(|a| a.contains(&4));
        if sixel && !wezterm && !konsole {
            usable.push(Protocol::Sixel);
        }
        if iterm || wezterm {
            usable.push(Protocol::Iterm2);
        }
    }
    usable.push(Protocol::Blocks);
    Support {
        usable,
        note,
        wrap: env.tmux && !tmux_blocked,
    }
}

/// A tmux format expanded for this pane, if tmux answers.
fn tmux_display(format: &str) -> Option<String> {
    let out = std::process::Command::new("tmux")
        .args(["display", "-p", format])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// tmux's `allow-passthrough` for this pane, if tmux answers.
pub fn tmux_passthrough() -> Option<bool> {
    let v = tmux_display("#{allow-passthrough}")?;
    Some(matches!(v.as_str(), "1" | "on" | "all"))
}

/// Where this tmux pane's first cell is on the terminal outside tmux.
pub fn tmux_pane_origin() -> Option<(u16, u16)> {
    let text = tmux_display("#{pane_left} #{pane_top}")?;
    let mut it = text.split_whitespace().filter_map(|v| v.parse().ok());
    Some((it.next()?, it.next()?))
}

/// Asks the terminal (raw mode must be on, no other reader of stdin yet).
/// A reader thread reads until the device attributes arrive; where they
/// never do, a status report, which terminals and tmux always answer,
/// releases it after the timeout so it cannot swallow the first key.
pub fn query(wrap: bool, timeout: Duration) -> Replies {
    let queries = if wrap {
        tmux_wrap(QUERIES)
    } else {
        QUERIES.to_string()
    };
    let mut out = std::io::stdout();
    if out
        .write_all(queries.as_bytes())
        .and_then(|_| out.flush())
        .is_err()
    {
        return Replies::default();
    }
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if ends_attributes(&seen) || seen.ends_with(b"\x1b[0n") {
                break;
            }
        }
        let _ = tx.send(seen);
    });
    match rx.recv_timeout(timeout) {
        Ok(bytes) => parse_replies(&bytes),
        Err(_) => {
            let _ = out.write_all(b"\x1b[5n").and_then(|_| out.flush());
            rx.recv_timeout(Duration::from_millis(500))
                .map(|b| parse_replies(&b))
                .unwrap_or_default()
        }
    }
}

/// Whether `seen` holds a complete primary device attributes answer.
fn ends_attributes(seen: &[u8]) -> bool {
    let Some(start) = seen.windows(3).rposition(|w| w == b"\x1b[?") else {
        return false;
    };
    seen[start + 3..]
        .iter()
        .find(|b| !(b.is_ascii_digit() || **b == b';'))
        .is_some_and(|b| *b == b'c')
}

/// The cell size in pixels: the terminal's answer, else the size of the
/// window the kernel knows divided by the cells, else a common guess.
pub fn cell_size(replies: &Replies) -> (u16, u16) {
    if let Some(c) = replies.cell {
        return c;
    }
    if let Ok(ws) = crossterm::terminal::window_size()
        && ws.width > 0
        && ws.height > 0
        && ws.columns > 0
        && ws.rows > 0
    {
        return ((ws.width / ws.columns).max(1), (ws.height / ws.rows).max(1));
    }
    (10, 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Answers recorded from the real terminals.
    const XTERM: &[u8] = b"\x1bP>|XTerm(379)\x1b\\\x1b[?63;1;2;4;6;9;15;16;22;28c";
    const KITTY: &[u8] = b"\x1bP>|kitty(0.26.5)\x1b\\\x1b_Gi=31;OK\x1b\\\x1b[6;20;9t\x1b[?62;c";
    const TMUX_ITSELF: &[u8] = b"\x1bP>|tmux 3.3a\x1b\\\x1b[?1;2c";

    #[test]
    fn replies_of_real_terminals_parse() {
        let x = parse_replies(XTERM);
        assert_eq!(x.version.as_deref(), Some("XTerm(379)"));
        assert_eq!(x.attributes, Some(vec![63, 1, 2, 4, 6, 9, 15, 16, 22, 28]));
        assert!(!x.kitty_graphics);
        assert_eq!(x.cell, None);
        let k = parse_replies(KITTY);
        assert_eq!(k.version.as_deref(), Some("kitty(0.26.5)"));
        assert!(k.kitty_graphics);
        assert_eq!(k.cell, Some((9, 20)));
        assert_eq!(k.attributes, Some(vec![62]));
        let t = parse_replies(TMUX_ITSELF);
        assert_eq!(t.version.as_deref(), Some("tmux 3.3a"));
        assert_eq!(t.attributes, Some(vec![1, 2]));
        assert!(ends_attributes(XTERM) && ends_attributes(KITTY));
        assert!(!ends_attributes(b"\x1b[?63;1"));
        assert_eq!(
            parse_replies(b"\x1b_Gi=31;ENOENT\x1b\\"),
            Replies::default()
        );
    }

    #[test]
    fn versions_compare() {
        assert_eq!(
            name_version("kitty(0.26.5)"),
            ("kitty".to_string(), vec![0, 26, 5])
        );
        assert_eq!(
            name_version("WezTerm 20240203-110809-5046fc22"),
            ("WezTerm".to_string(), vec![20240203, 110809, 5046, 22])
        );
        assert!(vec![0, 26, 5] < vec![0, 28]);
        assert!(vec![0, 28, 1] >= vec![0, 28]);
    }

    fn env(tmux: bool) -> Env {
        Env {
            tmux,
            ..Env::default()
        }
    }

    #[test]
    fn table() {
        use Protocol::*;
        let xterm = parse_replies(XTERM);
        let kitty = parse_replies(KITTY);
        let mut new_kitty = kitty.clone();
        new_kitty.version = Some("kitty(0.35.2)".into());
        assert_eq!(decide(&env(false), &xterm, None).usable, [Sixel, Blocks]);
        let s = decide(&env(true), &xterm, Some(true));
        assert_eq!(
            (s.usable.as_slice(), s.wrap),
            ([Sixel, Blocks].as_slice(), true)
        );
        let s = decide(&env(true), &xterm, Some(false));
        assert_eq!(s.usable, [Blocks]);
        assert!(s.note.is_some_and(|n| n.contains("allow-passthrough on")));
        assert_eq!(
            decide(&env(false), &kitty, None).usable,
            [KittyDirect, Blocks]
        );
        let s = decide(&env(true), &kitty, Some(true));
        assert_eq!(s.usable, [Blocks]);
        assert!(s.note.is_some_and(|n| n.contains("0.28")));
        assert_eq!(
            decide(&env(false), &new_kitty, None).usable,
            [Kitty, KittyDirect, Blocks]
        );
        assert_eq!(
            decide(&env(true), &new_kitty, Some(true)).usable,
            [Kitty, Blocks]
        );
        let wez = Env {
            wezterm: true,
            ..Env::default()
        };
        let mut both = kitty.clone();
        both.attributes = Some(vec![62, 4]);
        assert_eq!(decide(&wez, &both, None).usable, [Iterm2, Blocks]);
        assert_eq!(
            decide(&env(false), &Replies::default(), None).usable,
            [Blocks]
        );
    }

    #[test]
    fn tmux_wrapping_doubles_every_escape() {
        let w = tmux_wrap("\x1bPq#0~\x1b\\");
        assert_eq!(w, "\x1bPtmux;\x1b\x1bPq#0~\x1b\x1b\\\x1b\\");
        // The passthrough ends only at the last, single, terminator.
        let inner = &w["\x1bPtmux;".len()..w.len() - 2];
        assert!(!inner.replace("\x1b\x1b", "").contains('\x1b'));
    }
}
