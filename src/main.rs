//! The `ebsnap` binary: parse, run, print the report, exit with a code that
//! tells cron the truth. All the work is in the library.

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use tracing_subscriber::EnvFilter;

use ebsnap::cli::Cli;
use ebsnap::config::{Action, Config};
use ebsnap::exit::ExitStatus;
use ebsnap::values::{LogFormat, OutputFormat};

fn main() -> ExitCode {
    ebsnap::memory::tune();
    ebsnap::notice::set_priorities(ebsnap::notice::stderr_is_journal());
    // A variable renamed with its flag (EBSNAP_TAG) still feeds it, before
    // any thread starts.
    for (name, value) in ebsnap::cli::renamed_env(|name| std::env::var_os(name)) {
        std::env::set_var(name, value);
    }
    let config = Config::from_cli(parse_cli());
    init_logging(&config);
    match run(&config) {
        Ok(status) => status.into(),
        Err(err) => {
            ebsnap::notice::tell(&format!("{err:#}"));
            ExitStatus::NothingAttempted.into()
        }
    }
}

/// The command line, or exit 2 with a one-line error: nothing attempted.
/// Help and version go to stdout as clap prints them.
fn parse_cli() -> Cli {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            err.exit()
        }
        Err(err) => {
            let says_how_to_fix = err.kind() == ErrorKind::ValueValidation;
            let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
            ebsnap::notice::tell(&ebsnap::cli::one_line_usage_error(
                &err.render().to_string(),
                says_how_to_fix,
                &args,
            ));
            std::process::exit(ExitStatus::NothingAttempted as i32);
        }
    }
}

fn run(config: &Config) -> anyhow::Result<ExitStatus> {
    ebsnap::timing::init()?;
    let now = chrono::Utc::now();
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    };
    ebsnap::aws::accounts::check_usage(&config.aws)?;
    ebsnap::backup::check_usage(config)?;
    match &config.action {
        Action::Backup { .. } => backup(config, &runtime()?, now),
        Action::List(filter) => {
            let listing = runtime()?.block_on(ebsnap::list::run(config, filter, now))?;
            for failed in &listing.failed {
                ebsnap::notice::tell(&format!("{}: {}", failed.region, failed.reason));
            }
            let width = config
                .stdout_is_terminal
                .then(|| console::Term::stdout().size().1);
            let status = listing.exit_status();
            Ok(match config.output {
                OutputFormat::Text => print(status, listing.to_text(now, width)),
                OutputFormat::Json => print_with(status, |out| listing.write_json(out)),
            })
        }
        Action::Check { max_age } => {
            if let Some(path) = &config.metrics_file {
                ebsnap::metrics::check_writable(path)?;
            }
            let report = runtime()?.block_on(ebsnap::check::run(config, *max_age, now))?;
            let mut status = report.exit_status();
            if let Some(path) = &config.metrics_file {
                if let Err(err) = ebsnap::metrics::write_check(path, &report, chrono::Utc::now()) {
                    ebsnap::notice::tell(&format!("{err:#}"));
                    status = status.max(ExitStatus::Failure);
                }
            }
            // Like a run: quiet when all is well and nobody watches, so cron
            // mails only bad news.
            let watched =
                !config.quiet && (config.stdout_is_terminal || config.output == OutputFormat::Json);
            if status == ExitStatus::Success && !watched {
                return Ok(status);
            }
            Ok(print(
                status,
                match config.output {
                    OutputFormat::Text => report.to_text(now),
                    OutputFormat::Json => report.to_json(),
                },
            ))
        }
        Action::Restore(args) => {
            let report = runtime()?.block_on(ebsnap::restore::run(config, args))?;
            let status = report.exit_status();
            // A person asked for it, so it prints unless -q; failures always.
            if config.quiet && status == ExitStatus::Success && !config.dry_run {
                return Ok(status);
            }
            Ok(print(
                status,
                match config.output {
                    OutputFormat::Text => report.to_text(),
                    OutputFormat::Json => report.to_json(),
                },
            ))
        }
        Action::IamPolicy => Ok(print(
            ExitStatus::Success,
            ebsnap::iam::policy_text(&config.policy.job),
        )),
        // Rendered into memory, then printed like everything else, so that
        // `ebsnap man | head` is no error.
        Action::Completions(shell) => {
            let mut script = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "ebsnap", &mut script);
            Ok(print(
                ExitStatus::Success,
                String::from_utf8_lossy(&script).into_owned(),
            ))
        }
        Action::Man => {
            let mut page = Vec::new();
            ebsnap::cli::man_page(&mut page)?;
            Ok(print(
                ExitStatus::Success,
                String::from_utf8_lossy(&page).into_owned(),
            ))
        }
    }
}

/// `run`, `snapshot` and `purge`: the backup job.
fn backup(
    config: &Config,
    runtime: &tokio::runtime::Runtime,
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<ExitStatus> {
    // A dry run changes nothing, so it needs no lock and may run beside a
    // real run. The lock is held until this function returns.
    // The metrics file must be writable before anything changes.
    if let (Some(path), false) = (&config.metrics_file, config.dry_run) {
        ebsnap::metrics::check_writable(path)?;
    }
    let _lock = if config.dry_run {
        None
    } else {
        Some(ebsnap::lock::JobLock::acquire(
            &config.lock_file,
            &config.policy.job,
        )?)
    };
    let started = std::time::Instant::now();
    let report = runtime.block_on(ebsnap::backup::run(config, now))?;
    let mut status = report.exit_status();
    // A dry run is no backup: it leaves the metrics alone.
    if let (Some(path), false) = (&config.metrics_file, config.dry_run) {
        if let Err(err) =
            ebsnap::metrics::write(path, &report, now, chrono::Utc::now(), started.elapsed())
        {
            ebsnap::notice::tell(&format!("{err:#}"));
            status = status.max(ExitStatus::Failure);
        }
    }
    // Failures reach stderr when there is no report to read them in (nothing
    // was attempted: one line per region says why), or the report is JSON.
    let nothing_attempted = status == ExitStatus::NothingAttempted;
    if nothing_attempted || config.output == OutputFormat::Json {
        for failed in &report.failed {
            ebsnap::notice::tell(&format!("{}: {}", failed.location(), failed.describe()));
        }
    }
    if nothing_attempted {
        return Ok(status);
    }
    if report.should_print(config) {
        status = match config.output {
            OutputFormat::Text => print_with(status, |out| report.write_text(now, out)),
            OutputFormat::Json => print_with(status, |out| report.write_json(out)),
        };
    }
    Ok(status)
}

/// Writes `text` to stdout; see `print_with`.
fn print(status: ExitStatus, text: String) -> ExitStatus {
    print_with(status, |out| out.write_all(text.as_bytes()))
}

/// Streams a document to stdout through a buffer, as `write` renders it, and
/// returns `status` with a failed write folded in: a report that never
/// reached its file (a full disk under cron's `> run.log`) is a failure
/// cron must hear of. A closed pipe (`ebsnap list | head`) is the reader's
/// choice, and no failure.
fn print_with(
    status: ExitStatus,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> ExitStatus {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            ebsnap::notice::tell(&format!(
                "could not write the output to stdout: {err}: free space or fix the file stdout goes to"
            ));
            status.max(ExitStatus::Failure)
        }
        _ => status,
    }
}

/// Logs go to stderr: warnings by default, more with -v, or as RUST_LOG
/// says; as text, or JSON for log shippers (`--log-format json`).
fn init_logging(config: &Config) {
    // By default only ebsnap's own warnings: the SDK's (a region not found
    // in instance metadata, say) would only repeat, in debug form, what
    // ebsnap then says in one line.
    let default = match config.verbosity {
        0 => "ebsnap=warn",
        1 => "warn,ebsnap=info",
        2 => "info,ebsnap=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // The progress bar on stderr follows the same colour choice.
    console::set_colors_enabled_stderr(config.color);
    ebsnap::notice::set_json_logs(config.log_format == LogFormat::Json);
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(PrioritizedStderr)
        .with_target(false);
    match config.log_format {
        LogFormat::Text => logs.with_ansi(config.color).init(),
        LogFormat::Json => logs.json().with_ansi(false).init(),
    }
}

/// stderr for the log, each event's lines prefixed with its syslog priority
/// when stderr is the journal (`ebsnap::notice::priority_prefix`).
struct PrioritizedStderr;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for PrioritizedStderr {
    type Writer = PrefixedLines;

    fn make_writer(&'a self) -> PrefixedLines {
        PrefixedLines::new(6)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> PrefixedLines {
        let priority = match *meta.level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        PrefixedLines::new(priority)
    }
}

/// One event's writer: its text with the priority prefix at each line start.
struct PrefixedLines {
    prefix: String,
    at_line_start: bool,
}

impl PrefixedLines {
    fn new(priority: u8) -> PrefixedLines {
        PrefixedLines {
            prefix: ebsnap::notice::priority_prefix(priority),
            at_line_start: true,
        }
    }
}

impl std::io::Write for PrefixedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut stderr = std::io::stderr().lock();
        if self.prefix.is_empty() {
            return stderr.write_all(buf).map(|()| buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + self.prefix.len());
        for &byte in buf {
            if self.at_line_start {
                out.extend_from_slice(self.prefix.as_bytes());
            }
            out.push(byte);
            self.at_line_start = byte == b'\n';
        }
        stderr.write_all(&out).map(|()| buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}
