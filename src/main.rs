//! The `herald` binary: flags, logging, signals (SIGINT and SIGTERM shut down gracefully, a
//! second one at once; SIGHUP reloads). Everything else lives in the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tracing::{error, info};
use tracing_subscriber::EnvFilter;

use herald::config::{Config, LogFormat};

fn main() -> ExitCode {
    let config = Config::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // A closed stderr must not turn every log line into a panic.
        .log_internal_errors(false);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is announced: a signal from then on must reach the graceful path, and
    // SIGHUP, whose default action ends the process, must only ever reload.
    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    // Its errors say which address failed, or why it refused to start.
    let running = herald::server::start(config)?;
    info!(
        websocket = %running.public_addr,
        control = %running.control_addr,
        "herald listening"
    );
    let handle = running.handle().clone();
    let reloader = running.reloader().clone();
    std::thread::Builder::new()
        .name("herald-signals".into())
        .spawn(move || {
            let mut stops = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    info!(signal = sig, "SIGHUP received; reloading");
                    // Each part logs what it reloaded, or why it kept what it had.
                    let _ = reloader.reload();
                    continue;
                }
                stops += 1;
                if stops == 1 {
                    info!(
                        signal = sig,
                        "signal received; shutting down (again to exit at once)"
                    );
                    let _ = handle.send(herald::command::Command::Shutdown);
                } else {
                    error!(
                        signal = sig,
                        "second signal: exiting without waiting for clients"
                    );
                    std::process::exit(130);
                }
            }
        })?;
    running.join()?;
    Ok(())
}
