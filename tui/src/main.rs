//! `fovea-tui`: the terminal UI. With `--connect` it talks to a running
//! daemon (for example through an SSH tunnel); without, it starts one
//! in-process.

use clap::{Parser, ValueEnum};
use fovea_client::embedded::EmbeddedOptions;
use fovea_daemon::launch::LoadOptions;
use fovea_tui::app::{App, Command, Msg};
use fovea_tui::pictures::{PANELS, Panel, Pictures};
use fovea_tui::worker::{self, Target};
use fovea_tui::{keys, ui};
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::thread::ResizeRequest;
use std::collections::HashMap;
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
    load: LoadOptions,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Graphics {
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    Blocks,
}

enum Event {
    Term(crossterm::event::Event),
    Msg(Msg),
    Resized(
        Panel,
        Result<ratatui_image::thread::ResizeResponse, ratatui_image::errors::Errors>,
    ),
}

fn main() {
    let args = Args::parse();
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
    let (token, ca) =
        fovea_client::read_credentials(args.token_file.as_deref(), args.tls_ca.as_deref())?;
    let target = match &args.connect {
        Some(addr) => Target::Remote {
            addr: addr.clone(),
            token,
            ca,
        },
        None => {
            let opts = EmbeddedOptions::new(args.load.clone(), args.scan.as_deref())?;
            Target::Embedded(opts)
        }
    };
    let address = args
        .connect
        .clone()
        .unwrap_or_else(|| "in-process daemon".into());
    // The shipped samples, as files `o` can list; written into the cache
    // where the source tree is gone (an installed binary).
    let samples = fovea_samples::folder(&fovea_daemon::paths::cache_dir().join("samples"));
    let (first, samples_dir) = match (args.images.first(), samples) {
        (Some(image), samples) => (Some(image.clone()), samples.ok()),
        (None, Ok(dir)) => (Some(dir.join(fovea_samples::DEFAULT)), Some(dir)),
        (None, Err(e)) => {
            tracing::warn!("the sample images could not be written: {e}");
            (None, None)
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    // ratatui::init restores the terminal on panic too.
    let mut terminal = ratatui::init();
    crossterm::execute!(std::io::stdout(), crossterm::event::EnableMouseCapture)?;
    // Ask the terminal what it can draw, after entering the alternate screen
    // and before reading events (a generous timeout for SSH).
    let mut picker = match args.graphics {
        Graphics::Blocks => Picker::halfblocks(),
        _ => Picker::from_query_stdio_with_options(
            ratatui_image::picker::cap_parser::QueryStdioOptions {
                timeout: Duration::from_secs(2),
                ..Default::default()
            },
        )
        .unwrap_or_else(|_| Picker::halfblocks()),
    };
    if !matches!(args.graphics, Graphics::Blocks) {
        release_query_reader();
    }
    let forced = match args.graphics {
        Graphics::Auto => None,
        Graphics::Kitty => Some(ProtocolType::Kitty),
        Graphics::Sixel => Some(ProtocolType::Sixel),
        Graphics::Iterm2 => Some(ProtocolType::Iterm2),
        Graphics::Blocks => Some(ProtocolType::Halfblocks),
    };
    if let Some(p) = forced {
        picker.set_protocol_type(p);
    }
    let result = rt.block_on(event_loop(
        &mut terminal,
        picker,
        forced.is_some(),
        target,
        address,
        first,
        samples_dir,
    ));
    let _ = crossterm::execute!(std::io::stdout(), crossterm::event::DisableMouseCapture);
    ratatui::restore();
    result
}

/// When the terminal leaves part of the capability query unanswered, the
/// query gives up after its timeout but its reader thread stays blocked on
/// stdin, where it would swallow the first key typed. A bare status report
/// request, which terminals (and tmux) answer, hands that reader the reply it
/// waits for; where the reader is already gone, the reply is an event the
/// input loop ignores.
fn release_query_reader() {
    use std::io::Write;
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\x1b[5n");
    let _ = out.flush();
    std::thread::sleep(Duration::from_millis(100));
}

async fn event_loop(
    terminal: &mut ratatui::DefaultTerminal,
    picker: Picker,
    forced: bool,
    target: Target,
    address: String,
    first: Option<PathBuf>,
    samples: Option<PathBuf>,
) -> anyhow::Result<()> {
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
    // One resize/encode thread per picture panel, answers tagged.
    let mut senders = HashMap::new();
    for panel in PANELS {
        let (tx_req, rx_req) = std::sync::mpsc::channel::<ResizeRequest>();
        let tx = events_tx.clone();
        std::thread::spawn(move || {
            while let Ok(req) = rx_req.recv() {
                if tx.send(Event::Resized(panel, req.resize_encode())).is_err() {
                    break;
                }
            }
        });
        senders.insert(panel, tx_req);
    }
    let mut pictures = Pictures::new(picker, forced, senders);
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
            if tx.send(Event::Msg(m)).is_err() {
                break;
            }
        }
    });

    let mut ticker = tokio::time::interval(Duration::from_millis(60));
    let mut tick = 0usize;
    let mut last_size = terminal.size()?;
    loop {
        pictures.refresh(&app);
        terminal.draw(|f| ui::draw(f, &app, &mut pictures, tick))?;
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
                    }
                    let areas = ui::layout(ratatui::layout::Rect::new(0, 0, size.width, size.height));
                    let was_overlay = app.help || app.prompt.is_some();
                    let cmds = match keys::action(&app, &areas, &ev) {
                        Some(a) => app.update(a, Instant::now()),
                        None => Vec::new(),
                    };
                    if was_overlay != (app.help || app.prompt.is_some()) {
                        terminal.clear()?;
                    }
                    cmds
                }
                Some(Event::Msg(m)) => app.apply(m, Instant::now()),
                Some(Event::Resized(panel, r)) => {
                    match r {
                        Ok(done) => pictures.resized(panel, done),
                        Err(e) => app.error = Some(format!("picture encoding failed: {e}")),
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
                Command::Save => app.status = save(&pictures),
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

/// Writes every picture on screen to `fovea-shots/<time>-<panel>.png`.
fn save(pictures: &Pictures) -> String {
    let dir = PathBuf::from("fovea-shots");
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return format!("cannot save: {}: {e}", dir.display());
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut written = 0;
    for panel in PANELS {
        if let Some(img) = pictures.image(panel) {
            let path = dir.join(format!(
                "{stamp}-{}.png",
                format!("{panel:?}").to_lowercase()
            ));
            if img.save(&path).is_ok() {
                written += 1;
            }
        }
    }
    format!(
        "saved {written} pictures to {}/{stamp}-*.png",
        dir.display()
    )
}
