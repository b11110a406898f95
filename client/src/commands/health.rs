//! `fovea health [ADDR]`: whether a daemon is serving (exit 0 when it is).

use fovea_client::Client;
use serde::Serialize;
use std::path::Path;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Address (default: --connect, else 127.0.0.1:50051).
    addr: Option<String>,
}

#[derive(Serialize)]
struct View<'a> {
    address: &'a str,
    status: &'static str,
}

/// Asks the daemon at `addr` (else `connect`) for its health; it answers
/// without the token, but TLS still needs its CA.
pub async fn run(
    args: &Args,
    connect: Option<&str>,
    tls_ca: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    let addr = args
        .addr
        .as_deref()
        .or(connect)
        .unwrap_or("127.0.0.1:50051");
    let (_, ca) = fovea_client::read_credentials(None, tls_ca)?;
    let client = Client::connect_with(addr, ca.as_deref()).await?;
    client.wait_ready(std::time::Duration::from_secs(2)).await?;
    let view = View {
        address: addr,
        status: "SERVING",
    };
    if json {
        super::print_json(&view);
    } else {
        println!("{addr}: SERVING");
    }
    Ok(())
}
