//! `fovea`: the command line of the Fovea probe API. Talks to a daemon given
//! by `--connect`, or starts one in-process.

mod commands;
mod plots;
mod show;

use clap::{Parser, ValueEnum};
use commands::Command;
use fovea_client::embedded::EmbeddedOptions;
use fovea_client::{Client, ClientError};
use fovea_daemon::flags::LoadFlags;
use show::Shower;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "fovea",
    version,
    about = "Probe a convolutional network: recordings, reconstructions, maximizations, the paper's figures",
    after_help = "Without --connect, a daemon is started in this process with the model options given before the command (for example `fovea --model my.onnx record cat.png`)."
)]
struct Cli {
    /// Address of a running fovead (host:port or unix:/path).
    #[arg(long, env = "FOVEA_CONNECT", global = true)]
    connect: Option<String>,
    /// File holding the bearer token of a daemon started with --token-file.
    #[arg(long, env = "FOVEA_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Certificate authority (PEM) to trust for a daemon serving TLS.
    #[arg(long, env = "FOVEA_TLS_CA", global = true)]
    tls_ca: Option<PathBuf>,
    /// Scan results for the in-process daemon to serve (ScanTop).
    #[arg(long, env = "FOVEA_SCAN", global = true)]
    scan_results: Option<PathBuf>,
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Also print the log of the in-process daemon (-vv: more of it).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Also print pictures inline in the terminal.
    #[arg(long, global = true)]
    show: bool,
    /// Inline picture protocol for --show.
    #[arg(long, value_enum, default_value = "auto", global = true)]
    graphics: Graphics,
    #[command(flatten)]
    load: LoadFlags,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Graphics {
    Auto,
    Kitty,
    Iterm,
    Sixel,
    Blocks,
}

/// Exit codes: 1 failure, 2 bad arguments, 3 daemon unreachable, 130 interrupted.
#[derive(Debug)]
struct Exit(i32, anyhow::Error);

fn classify(e: anyhow::Error) -> Exit {
    let code = match e.downcast_ref::<ClientError>() {
        Some(ClientError::Transport { .. }) | Some(ClientError::Address { .. }) => 3,
        Some(ClientError::Status(s)) if s.code() == tonic::Code::InvalidArgument => 2,
        Some(ClientError::Status(s)) if s.code() == tonic::Code::Unavailable => 3,
        Some(ClientError::Status(s)) if s.code() == tonic::Code::Cancelled => 130,
        _ => 1,
    };
    Exit(code, e)
}

fn main() {
    let cli = Cli::parse();
    fovea_daemon::progress::install_bars();
    // The in-process daemon's log is for -v; by default only this
    // command's own messages reach the user.
    let level = match cli.verbose {
        0 => "off",
        1 => "info,ort=warn",
        _ => "debug,ort=info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fovea: {e}");
            std::process::exit(1);
        }
    };
    if let Err(Exit(code, e)) = rt.block_on(run(cli)) {
        // One line: the causes joined, each said once.
        let err: &(dyn std::error::Error + 'static) = e.as_ref();
        eprintln!("fovea: {}", fovea_client::causes(err).replace('\n', " "));
        std::process::exit(code);
    }
}

async fn connect(cli: &Cli) -> anyhow::Result<Client> {
    let (token, ca) =
        fovea_client::read_credentials(cli.token_file.as_deref(), cli.tls_ca.as_deref())?;
    let client = match &cli.connect {
        Some(addr) => {
            let mut c = Client::connect_with(addr, ca.as_deref()).await?;
            if let Some(t) = &token {
                c = c.with_token(t);
            }
            c.wait_ready(std::time::Duration::from_secs(30)).await?;
            c
        }
        None => {
            let opts = EmbeddedOptions::new(cli.load.options(), cli.scan_results.as_deref())?;
            Client::embedded(opts).await?
        }
    };
    Ok(client)
}

async fn run(cli: Cli) -> Result<(), Exit> {
    run_inner(cli).await.map_err(classify)
}

async fn run_inner(cli: Cli) -> anyhow::Result<()> {
    match &cli.command {
        Command::Health(args) => {
            let (connect, ca) = (cli.connect.as_deref(), cli.tls_ca.as_deref());
            commands::health::run(args, connect, ca, cli.json).await
        }
        Command::Scan(args) => {
            commands::scan::run_command(args, &cli.load.options(), cli.json).await
        }
        command => {
            let ctx = commands::Context {
                shower: Shower::new(cli.show, cli.graphics),
                client: connect(&cli).await?,
                json: cli.json,
            };
            command.run(&ctx).await
        }
    }
}
