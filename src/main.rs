//! The `ebsnap` binary: parse, run, print the report, exit with a code that
//! tells cron the truth. All the work is in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use ebsnap::cli::{Cli, OutputFormat};
use ebsnap::config::Config;
use ebsnap::report::ExitStatus;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits 2: nothing attempted.
    let config = Config::from_cli(Cli::parse());
    init_logging(config.verbosity);
    match run(&config) {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("ebsnap: {err:#}");
            ExitStatus::NothingAttempted.into()
        }
    }
}

fn run(config: &Config) -> anyhow::Result<ExitStatus> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let now = chrono::Utc::now();
    let report = runtime.block_on(ebsnap::run(config, now))?;
    for failed in &report.failed {
        tracing::error!(action = failed.action, region = %failed.region, "{}", failed.reason);
    }
    if report.should_print(config) {
        let text = match config.output {
            OutputFormat::Json => report.to_json(),
            OutputFormat::Text => report.to_text(now),
        };
        // A closed pipe (`ebsnap run | head`) is not worth a panic.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
    Ok(report.exit_status())
}

/// Logs go to stderr: warnings by default, more with -v, or as RUST_LOG says.
fn init_logging(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "warn,ebsnap=info",
        2 => "info,ebsnap=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
