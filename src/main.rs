//! The `herald` binary: flags, logging, signals. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use herald::config::Config;

fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let (listen, control) = (config.listen, config.control);
    let running = herald::server::start(config)
        .map_err(|e| format!("cannot listen on {listen} / {control}: {e}"))?;
    info!(
        websocket = %running.public_addr,
        control = %running.control_addr,
        "herald listening"
    );
    let mut signals = Signals::new([SIGINT, SIGTERM])?;
    let handle = running.handle().clone();
    std::thread::Builder::new()
        .name("herald-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                info!(signal = sig, "signal received; shutting down");
                let _ = handle.send(herald::command::Command::Shutdown);
            }
        })?;
    running.join()?;
    Ok(())
}
