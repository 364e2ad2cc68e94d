//! The `ebsnap` binary: parse, run, print the report, exit with a code that
//! tells cron the truth. All the work is in the library.

use std::io::{IsTerminal, Write};
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
    // A dry run changes nothing, so it needs no lock and may run beside a
    // real run. The lock is held until this function returns.
    let _lock = if config.dry_run {
        None
    } else {
        Some(ebsnap::lock::JobLock::acquire(
            &config.lock_file,
            &config.policy.job,
        )?)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let now = chrono::Utc::now();
    let report = runtime.block_on(ebsnap::run(config, now))?;
    let status = report.exit_status();
    if status == ExitStatus::NothingAttempted {
        // No report to read: one line per region on stderr says why.
        for failed in &report.failed {
            eprintln!("ebsnap: {}: {}", failed.region, failed.describe());
        }
        return Ok(status);
    }
    if config.output == OutputFormat::Json {
        // The document lists failures; stderr gets them too, for people.
        for failed in &report.failed {
            eprintln!("ebsnap: {}: {}", failed.region, failed.describe());
        }
    }
    if report.should_print(config) {
        let text = match config.output {
            OutputFormat::Text => report.to_text(now),
            OutputFormat::Json => report.to_json(),
        };
        // A closed pipe (`ebsnap run | head`) is not worth a panic.
        let _ = std::io::stdout().lock().write_all(text.as_bytes());
    }
    Ok(status)
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
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(color)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
