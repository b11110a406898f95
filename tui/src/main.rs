//! `fovea-tui`: the terminal UI. With `--connect` it talks to a running
//! daemon (for example through an SSH tunnel); without, it starts one
//! in-process.

use clap::{Parser, ValueEnum};
use fovea_client::embedded::EmbeddedOptions;
use fovea_daemon::flags::LoadFlags;
use fovea_tui::app::{App, Command, Msg};
use fovea_tui::graphics::{Protocol, detect};
use fovea_tui::pictures::{self, Done, PANELS, Panel, Pictures};
use fovea_tui::worker::{self, Target};
use fovea_tui::{keys, save, ui};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "fovea-tui",
    version,
    about = "Browse a network's neurons in the terminal"
)]
struct Args {
    /// Images to open (the first is shown; `o` opens others). Without one, a
    /// sample photograph shipped with Fovea is opened.
    images: Vec<PathBuf>,
    /// Address of a running fovead (host:port or unix:/path); else a daemon
    /// starts in-process.
    #[arg(long, env = "FOVEA_CONNECT")]
    connect: Option<String>,
    /// Bearer token file for a daemon started with --token-file.
    #[arg(long, env = "FOVEA_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Certificate authority (PEM) for a daemon serving TLS.
    #[arg(long, env = "FOVEA_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Dataset scan results for the in-process daemon (`p` shows them).
    #[arg(long, env = "FOVEA_SCAN")]
    scan: Option<PathBuf>,
    /// Picture protocol (default: detected from the terminal).
    #[arg(long, value_enum, default_value = "auto")]
    graphics: Graphics,
    #[command(flatten)]
    load: LoadFlags,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Graphics {
    Auto,
    /// Kitty's protocol with Unicode placeholders (kitty 0.28+).
    Kitty,
    /// Kitty's protocol placed at the cursor (older kitty; not in tmux).
    KittyDirect,
    Sixel,
    Iterm2,
    Blocks,
}

enum Event {
    Term(crossterm::event::Event),
    Msg(Box<Msg>),
    Encoded(Done),
}

fn main() {
    let args = Args::parse();
    fovea_daemon::progress::install_bars();
    // Logs would tear the screen: only errors, to a file when asked.
    let filter = tracing_subscriber::EnvFilter::try_from_env("FOVEA_TUI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(args) {
        eprintln!("fovea-tui: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    // A picture that cannot be read is an error before the screen changes.
    for image in &args.images {
        std::fs::File::open(image)
            .and_then(|f| f.metadata())
            .and_then(|m| {
                if m.is_file() {
                    Ok(())
                } else {
                    Err(std::io::Error::other("not a file"))
                }
            })
            .map_err(|e| anyhow::anyhow!("cannot read the image {}: {e}", image.display()))?;
    }
    let (token, ca) =
        fovea_client::read_credentials(args.token_file.as_deref(), args.tls_ca.as_deref())?;
    let target = match &args.connect {
        Some(addr) => Target::Remote {
            addr: addr.clone(),
            token,
            ca,
        },
        None => {
            let opts = EmbeddedOptions::new(args.load.options(), args.scan.as_deref())?;
            Target::Embedded(opts)
        }
    };
    let address = args
        .connect
        .clone()
        .unwrap_or_else(|| "in-process daemon".into());
    // The shipped samples, as files `o` can list; written into the cache
    // where the source tree is gone (an installed binary).
    let samples = fovea_samples::folder(&fovea_engine::paths::cache_dir().join("samples"));
    let (first, samples_dir) = match (args.images.first(), samples) {
        (Some(image), samples) => (Some(image.clone()), samples.ok()),
        (None, Ok(dir)) => (Some(dir.join(fovea_samples::DEFAULT)), Some(dir)),
        (None, Err(e)) => {
            tracing::warn!("the sample images could not be written: {e}");
            (None, None)
        }
    };
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<pictures::Job>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // ratatui::init restores the terminal on panic too.
    let mut terminal = ratatui::init();
    crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
    // Ask the terminal what it can draw, after entering the alternate screen
    // and before reading events (a generous timeout for SSH).
    let (cell, support) = match args.graphics {
        Graphics::Blocks => (
            detect::cell_size(&detect::Replies::default()),
            detect::Support {
                usable: vec![Protocol::Blocks],
                note: None,
                wrap: false,
            },
        ),
        _ => {
            let env = detect::Env::read();
            let passthrough = env.tmux.then(detect::tmux_passthrough).flatten();
            let replies = detect::query(
                env.tmux && passthrough != Some(false),
                Duration::from_secs(2),
            );
            (
                detect::cell_size(&replies),
                detect::decide(&env, &replies, passthrough),
            )
        }
    };
    let forced = match args.graphics {
        Graphics::Auto => None,
        Graphics::Kitty => Some(Protocol::Kitty),
        Graphics::KittyDirect => Some(Protocol::KittyDirect),
        Graphics::Sixel => Some(Protocol::Sixel),
        Graphics::Iterm2 => Some(Protocol::Iterm2),
        Graphics::Blocks => Some(Protocol::Blocks),
    };
    let result = rt.block_on(event_loop(
        &mut terminal,
        Pictures::new(cell, support, forced, jobs_tx),
        jobs_rx,
        target,
        address,
        first,
        samples_dir,
    ));
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    result
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    mut pictures: Pictures,
    jobs: std::sync::mpsc::Receiver<pictures::Job>,
    target: Target,
    address: String,
    first: Option<PathBuf>,
    samples: Option<PathBuf>,
) -> anyhow::Result<()> {
    pictures.set_pane(pane_origin());
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel::<Event>();
    // Terminal input on its own thread. It polls rather than blocking in
    // read(), so the reader lock is free now and then for the cursor query
    // that clearing the screen makes.
    let tx = events_tx.clone();
    std::thread::spawn(move || {
        loop {
            match crossterm::event::poll(Duration::from_millis(40)) {
                Ok(true) => match crossterm::event::read() {
                    Ok(ev) => {
                        if tx.send(Event::Term(ev)).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                },
                Ok(false) => {
                    if tx.is_closed() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    });
    // Scaling and encoding pictures on their own thread.
    let tx = events_tx.clone();
    std::thread::spawn(move || {
        pictures::encode_jobs(jobs, |done| tx.send(Event::Encoded(done)).is_ok())
    });
    let mut app = App::new(&address, &pictures.mode());
    app.samples = samples;
    if first.is_none() {
        app.status = "press o to open an image".into();
    }
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel::<Command>();
    let (msg_tx, mut msgs) = tokio::sync::mpsc::unbounded_channel::<Msg>();
    tokio::spawn(worker::run(target, first, cmd_rx, msg_tx));
    let tx = events_tx.clone();
    tokio::spawn(async move {
        while let Some(m) = msgs.recv().await {
            if tx.send(Event::Msg(Box::new(m))).is_err() {
                break;
            }
        }
    });

    let mut ticker = tokio::time::interval(Duration::from_millis(60));
    let mut tick = 0usize;
    let mut last_size = terminal.size()?;
    loop {
        pictures.refresh(&app);
        draw(terminal, &app, &mut pictures, tick)?;
        if pictures.take_clear() {
            terminal.clear()?;
            draw(terminal, &app, &mut pictures, tick)?;
        }
        let commands = tokio::select! {
            ev = events.recv() => match ev {
                None => break,
                Some(Event::Term(ev)) => {
                    let size = terminal.size()?;
                    if size != last_size {
                        // Pictures drawn by graphics protocols are not cells:
                        // clear them with the old layout.
                        last_size = size;
                        terminal.clear()?;
                        pictures.set_pane(pane_origin());
                    }
                    let was_overlay = app.help || app.prompt.is_some();
                    let cmds = match keys::action(&app, &ui::Hits {
                        areas: ui::layout(ratatui::layout::Rect::new(0, 0, size.width, size.height), ui::View::of(&app)),
                        map: pictures.drawn_at(Panel::Map),
                        grid: pictures.drawn_at(Panel::Grid),
                    }, &ev) {
                        Some(a) => app.update(a, Instant::now()),
                        None => Vec::new(),
                    };
                    if was_overlay != (app.help || app.prompt.is_some()) {
                        terminal.clear()?;
                    }
                    cmds
                }
                Some(Event::Msg(m)) => app.apply(*m, Instant::now()),
                Some(Event::Encoded(done)) => {
                    if let Some(e) = pictures.encoded(done) {
                        app.error = Some(e.to_string());
                    }
                    Vec::new()
                }
            },
            _ = ticker.tick() => {
                tick = tick.wrapping_add(1);
                app.tick(Instant::now())
            }
        };
        for c in commands {
            match c {
                Command::Save => {
                    let size = terminal.size()?;
                    let areas = ui::layout(
                        ratatui::layout::Rect::new(0, 0, size.width, size.height),
                        ui::View::of(&app),
                    );
                    let panels: Vec<Panel> = PANELS
                        .into_iter()
                        .filter(|p| pictures.drawn_at(*p).is_some())
                        .collect();
                    let dir = PathBuf::from("fovea-shots");
                    let histogram = areas.histogram.width > 0;
                    app.status = match save::save(&app, &pictures, &panels, histogram, &dir) {
                        Ok(w) => format!(
                            "saved {} pictures, each with its settings as JSON, to {}/",
                            w.len(),
                            dir.display()
                        ),
                        Err(e) => format!("cannot save to {}: {e}", dir.display()),
                    };
                }
                Command::CycleGraphics => {
                    pictures.cycle();
                    app.graphics = pictures.mode();
                    terminal.clear()?;
                }
                Command::Quit => {
                    let _ = cmd_tx.send(Command::Quit);
                    return Ok(());
                }
                other => {
                    let _ = cmd_tx.send(other);
                }
            }
        }
        if app.quit {
            break;
        }
    }
    Ok(())
}

/// Inside tmux, where the pane is on the terminal outside.
fn pane_origin() -> Option<(u16, u16)> {
    detect::Env::read()
        .tmux
        .then(detect::tmux_pane_origin)
        .flatten()
}

/// Draws a frame, then what is not cells: deletions of pictures the
/// terminal keeps apart from its text.
fn draw(
    terminal: &mut ratatui::DefaultTerminal,
    app: &App,
    pictures: &mut Pictures,
    tick: usize,
) -> std::io::Result<()> {
    terminal.draw(|f| ui::draw(f, app, pictures, tick))?;
    let extra = pictures.end_frame();
    if !extra.is_empty() {
        let mut out = std::io::stdout();
        out.write_all(extra.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}
