//! The command line: what the user may type, and a first check of it.
//!
//! Each command takes only the flags it uses. The flags come in groups, one
//! `Args` struct each with its help heading (Selection, Retention, Hooks,
//! AWS ...), and a command flattens the groups it reads, so clap refuses
//! any other flag with its usual message. Only the logging flags, which
//! every command honours, are global (before or after the command).
//!
//! Only validation of the typed text lives here (durations, job names);
//! config.rs resolves the rest. Doc comments are the long help, `help` the
//! short. The groups are in groups.rs.

use std::ffi::OsString;

use chrono::TimeDelta;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use clap::builder::PossibleValue;

use crate::values::{
    parse_duration, parse_time, ColorChoice, CopyTags, HookFailure, LogFormat, OutputFormat,
};

mod groups;
pub use groups::{
    AccountArgs, AwsArgs, ConnectionArgs, CopyArgs, CopyRegionArgs, DryRunArgs, FormatArgs, GuardArgs, HookArgs,
    JobArgs, JobNameArgs, LoggingArgs, MetricsArgs, OutputArgs, RestoreAwsArgs, RetentionArgs,
    RunControlArgs, SelectionArgs, SnapshotArgs, SnapshotTagArgs,
};

/// The command line's names (and help) for the small enums of values.rs,
/// which know nothing of clap.
macro_rules! value_enum {
    ($type:ident { $($variant:ident => $name:literal $(: $help:literal)?),+ $(,)? }) => {
        impl ValueEnum for $type {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($type::$variant),+]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                Some(match self {
                    $($type::$variant => PossibleValue::new($name)$(.help($help))?),+
                })
            }
        }
    };
}

value_enum!(CopyTags {
    Volume => "volume": "The source volume's tags",
    Instance => "instance": "The instance's tags",
    Both => "both": "Both; the volume's value wins where both have a key",
});
value_enum!(ColorChoice {
    Auto => "auto": "Colour when stderr is a terminal and NO_COLOR is not set",
    Always => "always",
    Never => "never",
});
value_enum!(LogFormat {
    Text => "text": "One line per event, for people",
    Json => "json": "One JSON object per event, for log shippers",
});
value_enum!(OutputFormat {
    Text => "text": "A short summary for people",
    Json => "json": "One JSON document on stdout, for programs",
});
value_enum!(HookFailure {
    Snapshot => "snapshot": "Snapshot anyway (crash-consistent), and fail the run",
    Skip => "skip": "No snapshot of that instance, and fail the run",
});

/// Keeps EBS snapshot backups of tagged EC2 instances.
///
/// Finds the instances tagged for backup, snapshots each attached EBS volume,
/// and deletes the snapshots of this job that have aged out, never the last
/// good one. Run it from cron; try any command with --dry-run first.
#[derive(Debug, Parser)]
#[command(
    name = "ebsnap",
    version = env!("EBSNAP_VERSION"),
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub logging: LoggingArgs,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Snapshot the selected volumes, then purge the job's expired snapshots
    /// (what cron calls).
    Run(RunArgs),
    /// Only snapshot the selected volumes.
    Snapshot(SnapshotCommandArgs),
    /// Only delete the job's snapshots that are past retention.
    Purge(PurgeArgs),
    /// List the job's snapshots by instance and volume, with when purge will
    /// delete each or why it keeps it.
    List(ListArgs),
    /// Make new volumes from a snapshot, or from a whole instance's backup as
    /// of a time, and optionally attach them to an instance.
    Restore(RestoreArgs),
    /// Exit 1 when a selected volume has no completed backup newer than
    /// --max-age (for monitoring and cron's MAILTO).
    Check(CheckArgs),
    /// Print the least-privilege IAM policy for the job (--job).
    ///
    /// It takes the job's flags (selection, retention, snapshot tags,
    /// copies), so that it can be printed with the same flags as the run.
    IamPolicy(IamPolicyArgs),
    /// Print a shell completion script.
    Completions {
        /// The shell to complete ebsnap's commands and flags in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

// The commands: each flattens the groups of flags it reads, its own flags
// first (under "Options").

/// `run`: the whole backup job.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    #[command(flatten)]
    pub tags: SnapshotTagArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub copies: CopyArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub accounts: AccountArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub control: RunControlArgs,
}

/// `snapshot`: the job's snapshot step; it deletes nothing, so it has no
/// delete guard.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct SnapshotCommandArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub snapshots: SnapshotArgs,
    #[command(flatten)]
    pub tags: SnapshotTagArgs,
    #[command(flatten)]
    pub hooks: HookArgs,
    #[command(flatten)]
    pub copies: CopyArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub accounts: AccountArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub control: RunControlArgs,
}

/// `purge`: the job's purge step; it makes no snapshot (and no copy), and
/// with --copy-to purges the job's copies in those regions too.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
    #[command(flatten)]
    pub copies: CopyRegionArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub accounts: AccountArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
    #[command(flatten)]
    pub control: RunControlArgs,
}

/// `list`: what purge would do with each of the job's snapshots, so it
/// reads the job and the delete guard; it changes nothing.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct ListArgs {
    /// Only this instance's snapshots.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,

    /// Only this volume's snapshots.
    #[arg(long, value_name = "ID")]
    pub volume: Option<String>,

    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub guard: GuardArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub format: FormatArgs,
}

/// `check`: the job's selected volumes and their newest backups.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct CheckArgs {
    /// The oldest a volume's newest completed backup may be, e.g. 26h for a
    /// daily job.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true, env = "EBSNAP_MAX_AGE")]
    pub max_age: TimeDelta,

    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub aws: AwsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

/// `iam-policy`: the job's flags, and no AWS call.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct IamPolicyArgs {
    #[command(flatten)]
    pub job: JobArgs,
    #[command(flatten)]
    pub tags: SnapshotTagArgs,
    #[command(flatten)]
    pub copies: CopyArgs,
}

/// `restore`: its own flags, the job whose backups it reads, and one region.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub source: RestoreSource,

    /// With --instance: the newest run whose snapshots are all completed and
    /// started at or before this time (RFC 3339, e.g. 2026-11-24T03:00:00Z).
    /// Default: now.
    #[arg(long, value_name = "TIME", requires = "instance", conflicts_with = "snapshot",
          value_parser = parse_time)]
    pub at: Option<chrono::DateTime<chrono::Utc>>,

    /// The availability zone of the new volumes. Default: the zone of the
    /// volume each snapshot came from, when that still exists.
    #[arg(long, value_name = "AZ")]
    pub availability_zone: Option<String>,

    /// The new volumes' type (gp3, io2, ...). Default: the source volume's.
    #[arg(long, value_name = "TYPE")]
    pub volume_type: Option<String>,

    /// Provisioned IOPS. Default: the source volume's.
    #[arg(long, value_name = "N")]
    pub iops: Option<i32>,

    /// Throughput in MiB/s (gp3). Default: the source volume's.
    #[arg(long, value_name = "N")]
    pub throughput: Option<i32>,

    /// Size in GiB, not smaller than the snapshot. Default: the snapshot's.
    #[arg(long, value_name = "GIB")]
    pub size: Option<i32>,

    /// Encrypt the new volumes with this KMS key.
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,

    /// Attach each new volume to this instance, at the device it was
    /// snapshotted from; refused when that device is taken there.
    #[arg(long, value_name = "ID")]
    pub attach_to: Option<String>,

    /// With --snapshot and --attach-to: the device to attach at (with
    /// --instance each volume goes back to the device it was snapshotted
    /// from).
    #[arg(
        long,
        value_name = "DEVICE",
        requires = "attach_to",
        conflicts_with = "instance"
    )]
    pub device: Option<String>,

    /// With --snapshot of a snapshot in the archive tier: bring it back first
    /// (RestoreSnapshotTier, a temporary restore of 7 days), wait for it
    /// with progress (up to 72 hours), then restore.
    #[arg(long, requires = "snapshot", conflicts_with = "instance")]
    pub from_archive: bool,

    /// How long to wait for the volumes to be available (and attached).
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub wait_timeout: TimeDelta,

    #[command(flatten)]
    pub job: JobNameArgs,
    #[command(flatten)]
    pub aws: RestoreAwsArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten, next_help_heading = "Run control")]
    pub dry_run: DryRunArgs,
}

/// What `restore` restores: one snapshot, or one backup run of an instance.
/// Made by clap from the group "source" of `--snapshot` and `--instance`
/// (required, one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreSource {
    /// `--snapshot SNAP`: one volume from this snapshot.
    Snapshot(String),
    /// `--instance ID`: every volume of this instance, from one backup run
    /// of the job.
    Instance(String),
}

impl Args for RestoreSource {
    fn group_id() -> Option<clap::Id> {
        Some(clap::Id::from("source"))
    }

    fn augment_args(command: clap::Command) -> clap::Command {
        command
            .arg(
                clap::Arg::new("snapshot")
                    .long("snapshot")
                    .value_name("SNAP")
                    .help("Restore one volume from this snapshot"),
            )
            .arg(
                clap::Arg::new("instance")
                    .long("instance")
                    .value_name("ID")
                    .help("Restore every volume of this instance from one backup run of the job"),
            )
            .group(
                clap::ArgGroup::new("source")
                    .args(["snapshot", "instance"])
                    .required(true)
                    .multiple(false),
            )
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl FromArgMatches for RestoreSource {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let given = |id: &str| matches.get_one::<String>(id).cloned();
        match (given("snapshot"), given("instance")) {
            (Some(snapshot), None) => Ok(RestoreSource::Snapshot(snapshot)),
            (None, Some(instance)) => Ok(RestoreSource::Instance(instance)),
            // The group admits neither case; a matches of another command.
            _ => Err(clap::Error::raw(
                clap::error::ErrorKind::MissingRequiredArgument,
                "give either --snapshot SNAP or --instance ID",
            )),
        }
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

/// A group's values when its command does not take it: clap's defaults,
/// read from neither the command line nor the environment. So a command
/// without, say, the hooks gets no hooks, whatever EBSNAP_PRE_HOOK says.
pub fn unset<T: Args + FromArgMatches>() -> T {
    let command =
        T::augment_args(clap::Command::new("unset").no_binary_name(true)).mut_args(|arg| {
            // Nothing from the environment, and no ties to flags of other
            // groups (quiet's conflict with the global --verbose).
            use clap::builder::Resettable::Reset;
            arg.env(Reset).conflicts_with(Reset).requires(Reset)
        });
    let matches = command
        .try_get_matches_from(std::iter::empty::<OsString>())
        .expect("a group's defaults parse");
    T::from_arg_matches(&matches).expect("a group's defaults parse")
}

/// The man page: clap_mangen's sections of the program (synopsis, what it
/// does, the logging flags), then a section per command with its synopsis,
/// what it does, and its flags under their headings (subsections), as
/// clap_mangen renders them for the command alone: one page, where the
/// list of SUBCOMMANDS would name pages (ebsnap-run(1)) that do not exist.
pub fn man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let man = clap_mangen::Man::new(cli.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    for command in cli.get_subcommands() {
        let name = format!("ebsnap {}", command.get_name());
        let man = clap_mangen::Man::new(command.clone());
        let mut section = Vec::new();
        man.render_synopsis_section(&mut section)?;
        man.render_description_section(&mut section)?;
        if command.get_arguments().any(|arg| !arg.is_hide_set()) {
            man.render_options_section(&mut section)?;
        }
        // Its sections become subsections of the command's own section;
        // its synopsis and description need no heading there.
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        for line in String::from_utf8_lossy(&section).lines() {
            match line.strip_prefix(".SH ") {
                Some("SYNOPSIS") => {}
                Some("DESCRIPTION") => writeln!(out, ".PP")?,
                Some(heading) => writeln!(out, ".SS {heading}")?,
                None => writeln!(out, "{line}")?,
            }
        }
    }
    man.render_version_section(out)
}

/// Environment variables renamed with their flags: (old, new). The old one
/// is read when the new one is not set, until the release after next.
pub const RENAMED_ENV: [(&str, &str); 2] = [
    ("EBSNAP_TAG", "EBSNAP_SNAPSHOT_TAG"),
    ("EBSNAP_COPY_TAGS", "EBSNAP_INHERIT_TAGS"),
];

/// The renamed variables to set before parsing, `(new, value)`, from
/// the environment `get` reads: each old one that is set, where its new
/// one is not.
pub fn renamed_env(get: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, OsString)> {
    RENAMED_ENV
        .iter()
        .filter(|(_, new)| get(new).is_none())
        .filter_map(|&(old, new)| get(old).map(|value| (new, value)))
        .collect()
}

/// A usage error in one line, as every error of ebsnap is: clap's message,
/// the values it accepts or its tip, and where to read more unless the
/// message already says how to fix it (ebsnap's own value parsers do): the
/// help of the command typed in `args` (the arguments after the program's
/// name), which lists the flags that command takes.
pub fn one_line_usage_error(rendered: &str, says_how_to_fix: bool, args: &[OsString]) -> String {
    // The error line and its continuation (the missing arguments, the
    // possible values) up to the first blank line, then clap's tip.
    let mut parts: Vec<&str> = Vec::new();
    let mut in_error = false;
    for line in rendered.lines().map(str::trim) {
        if let Some(what) = line.strip_prefix("error: ") {
            parts.push(what);
            in_error = true;
        } else if line.is_empty() {
            in_error = false;
        } else if in_error || line.starts_with("tip:") {
            parts.push(line);
        }
    }
    let mut text = parts.join(" ");
    if !says_how_to_fix {
        // No value of a global flag is a command's name, so the first
        // argument that is one is the command.
        let cli = Cli::command();
        let command = args
            .iter()
            .filter_map(|arg| arg.to_str())
            .find(|arg| cli.find_subcommand(arg).is_some());
        match command {
            Some(name) => text.push_str(&format!("; see 'ebsnap {name} --help'")),
            None => text.push_str("; see 'ebsnap --help'"),
        }
    }
    text
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ebsnap").chain(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> RunArgs {
        match parse(&[&["run"], args].concat()).unwrap().command {
            Command::Run(run) => run,
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_follow_the_design() {
        let run = run_args(&[]);
        assert!(!run.snapshots.wait);
        assert_eq!(run.job.selection.job.name, "default");
        assert_eq!(run.job.selection.tag_key, "Scheduled-Snapshots");
        let retention = &run.job.retention;
        assert_eq!(retention.retention, None, "7d, resolved in config");
        assert_eq!(retention.timezone, chrono_tz::Tz::UTC);
        assert_eq!(retention.keep_min, 1);
        assert_eq!(retention.orphans_after, None, "orphans are kept by default");
        assert_eq!(run.output.format.output, OutputFormat::Text);
        assert!(!run.control.dry_run.dry_run);
    }

    #[test]
    fn flags_go_after_their_command_and_only_the_logging_flags_before() {
        let Command::Purge(purge) = parse(&["purge", "-n", "--retention", "36h"])
            .unwrap()
            .command
        else {
            panic!("not purge")
        };
        assert!(purge.control.dry_run.dry_run);
        assert_eq!(purge.job.retention.retention, Some(TimeDelta::hours(36)));
        for args in [
            &["-n", "purge"][..],
            &["--retention", "36h", "purge"],
            &["--job", "weekly", "run"],
            &["--region", "eu-west-1", "list"],
            &["--output", "json", "check", "--max-age", "1d"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
        }
        for args in [
            &["-v", "--color", "never", "--log-format", "json", "purge"][..],
            &["purge", "-v", "--color", "never", "--log-format", "json"],
        ] {
            let cli = parse(args).unwrap();
            assert_eq!(cli.logging.verbose, 1, "{args:?}");
            assert_eq!(cli.logging.color, ColorChoice::Never, "{args:?}");
            assert_eq!(cli.logging.log_format, LogFormat::Json, "{args:?}");
        }
    }

    /// The flags each command takes, by long name, help and version aside.
    fn flags_of(name: &str) -> Vec<String> {
        let command = Cli::command();
        let sub = command.find_subcommand(name).unwrap();
        command
            .get_arguments()
            .chain(sub.get_arguments())
            .filter_map(|arg| arg.get_long().map(str::to_owned))
            .collect()
    }

    #[test]
    fn each_command_takes_only_the_flags_it_uses() {
        let logging = ["verbose", "color", "log-format"];
        let selection = ["job", "tag-key", "tag-value", "exclude-boot"];
        let retention = [
            "retention",
            "keep-last",
            "keep-hourly",
            "keep-daily",
            "keep-weekly",
            "keep-monthly",
            "keep-yearly",
            "timezone",
            "keep-min",
            "orphans-after",
            "archive-after",
        ];
        let guard = ["max-delete", "force"];
        let snapshots = ["min-interval", "per-volume", "wait", "wait-timeout"];
        let tags = ["snapshot-tag", "inherit-tags"];
        let hooks = ["pre-hook", "post-hook", "hook-timeout", "hook-failure"];
        let copies = ["copy-to", "copy-retention", "copy-kms-key-id"];
        let aws = ["region", "all-regions", "profile", "endpoint-url"];
        let accounts = ["assume-role", "external-id"];
        let output = ["output", "quiet"];
        let control = ["dry-run", "lock-file", "max-rate", "timeout"];
        let job: Vec<&str> = [&selection[..], &retention].concat();
        let expected: [(&str, Vec<&str>); 9] = [
            (
                "run",
                [
                    &job[..],
                    &guard,
                    &snapshots,
                    &tags,
                    &hooks,
                    &copies,
                    &aws,
                    &accounts,
                    &output,
                    &["metrics-file"],
                    &control,
                ]
                .concat(),
            ),
            (
                "snapshot",
                [
                    &job[..],
                    &snapshots,
                    &tags,
                    &hooks,
                    &copies,
                    &aws,
                    &accounts,
                    &output,
                    &["metrics-file"],
                    &control,
                ]
                .concat(),
            ),
            (
                "purge",
                [
                    &job[..],
                    &guard,
                    &copies[..2],
                    &aws,
                    &accounts,
                    &output,
                    &["metrics-file"],
                    &control,
                ]
                .concat(),
            ),
            (
                "list",
                [&["instance", "volume"][..], &job, &guard, &aws, &["output"]].concat(),
            ),
            (
                "check",
                [&["max-age"][..], &job, &aws, &output, &["metrics-file"]].concat(),
            ),
            ("iam-policy", [&job[..], &tags, &copies].concat()),
            (
                "restore",
                [
                    &[
                        "snapshot",
                        "instance",
                        "at",
                        "availability-zone",
                        "volume-type",
                        "iops",
                        "throughput",
                        "size",
                        "kms-key-id",
                        "attach-to",
                        "device",
                        "from-archive",
                        "wait-timeout",
                        "job",
                        "region",
                        "profile",
                        "endpoint-url",
                    ][..],
                    &output,
                    &["dry-run"],
                ]
                .concat(),
            ),
            ("completions", vec![]),
            ("man", vec![]),
        ];
        for (name, own) in expected {
            let mut want: Vec<&str> = logging.iter().chain(&own).copied().collect();
            want.sort_unstable();
            let mut got = flags_of(name);
            got.sort_unstable();
            assert_eq!(got, want, "ebsnap {name}");
        }
    }

    fn one_line(args: &[&str]) -> String {
        let err = parse(args).unwrap_err();
        let says_how = err.kind() == clap::error::ErrorKind::ValueValidation;
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        one_line_usage_error(&err.render().to_string(), says_how, &args)
    }

    #[test]
    fn a_flag_the_command_does_not_use_is_refused_by_clap() {
        for (args, flag, command) in [
            (&["iam-policy", "--dry-run"][..], "--dry-run", "iam-policy"),
            (
                &["iam-policy", "--pre-hook", "true"],
                "--pre-hook",
                "iam-policy",
            ),
            (&["man", "--copy-to", "x", "--force"], "--copy-to", "man"),
            (
                &["completions", "bash", "--region", "us-east-1"],
                "--region",
                "completions",
            ),
            (
                &["restore", "--snapshot", "snap-1", "--copy-to", "eu-west-1"],
                "--copy-to",
                "restore",
            ),
            (
                &["list", "--assume-role", "arn:aws:iam::111111111111:role/b"],
                "--assume-role",
                "list",
            ),
            (
                &["check", "--max-age", "1d", "--dry-run"],
                "--dry-run",
                "check",
            ),
            (&["snapshot", "--force"], "--force", "snapshot"),
            (&["purge", "--pre-hook", "true"], "--pre-hook", "purge"),
            (&["list", "-q"], "-q", "list"),
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::UnknownArgument,
                "{args:?}"
            );
            let line = one_line(args);
            assert!(
                line.starts_with(&format!("unexpected argument '{flag}' found")),
                "{args:?}: {line}"
            );
            assert!(
                line.ends_with(&format!("; see 'ebsnap {command} --help'")),
                "{args:?}: {line}"
            );
            assert!(!line.contains('\n'), "{args:?}: {line}");
        }
    }

    #[test]
    fn usage_errors_fit_on_one_line_and_say_what_to_do() {
        assert_eq!(
            one_line(&["run", "--output", "yaml"]),
            "invalid value 'yaml' for '--output <OUTPUT>' [possible values: text, json]; see 'ebsnap run --help'"
        );
        assert_eq!(
            one_line(&["run", "--retention", "7x"]),
            "invalid value '7x' for '--retention <DURATION>': unknown unit 'x' in '7x': \
             write a whole number and a unit (s, m, h, d or w), e.g. 7d or 36h"
        );
        assert_eq!(
            one_line(&["frobnicate"]),
            "unrecognized subcommand 'frobnicate'; see 'ebsnap --help'"
        );
        assert_eq!(
            one_line(&["restore"]),
            "the following required arguments were not provided: <--snapshot <SNAP>|--instance <ID>>; see 'ebsnap restore --help'"
        );
        // Negative numbers reach ebsnap's own parsers, which say how to fix them.
        assert!(one_line(&["run", "--max-delete", "-1"]).contains("'-1' is not a whole number"));
        assert!(one_line(&["run", "--keep-min", "-1"]).contains("'-1' is not a whole number"));
        assert!(one_line(&["run", "--retention", "-1d"]).contains("'-1d' is not a duration"));
        let conflict = one_line(&["run", "-q", "-v"]);
        assert!(
            conflict.starts_with("the argument '--quiet' cannot be used with '--verbose"),
            "{conflict}"
        );
        for args in [
            &["run", "--output", "yaml"][..],
            &["frobnicate"],
            &["run", "-q", "-v"],
            &["run", "--all-regions", "--region", "us-east-1"],
            &["run", "--keep-min", "0"],
        ] {
            assert!(!one_line(args).contains('\n'), "{args:?}");
        }
    }

    #[test]
    fn region_repeats() {
        let run = run_args(&["--region", "eu-west-1", "--region", "us-east-1"]);
        assert_eq!(run.aws.region, vec!["eu-west-1", "us-east-1"]);
    }

    fn restore(args: &[&str]) -> Result<RestoreArgs, clap::Error> {
        parse(&[&["restore"], args].concat()).map(|cli| match cli.command {
            Command::Restore(restore) => restore,
            other => panic!("not restore: {other:?}"),
        })
    }

    #[test]
    fn restore_takes_a_snapshot_or_an_instance() {
        assert_eq!(
            restore(&["--snapshot", "snap-1"]).unwrap().source,
            RestoreSource::Snapshot("snap-1".into())
        );
        let by_instance = restore(&["--instance", "i-1", "--at", "2026-11-24T03:00:00Z"]).unwrap();
        assert_eq!(by_instance.source, RestoreSource::Instance("i-1".into()));
        assert!(by_instance.at.is_some());
        let both = restore(&["--snapshot", "snap-1", "--instance", "i-1"]).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert_eq!(
            one_line(&["restore", "--snapshot", "snap-1", "--instance", "i-1"]),
            "the argument '--snapshot <SNAP>' cannot be used with '--instance <ID>'; see 'ebsnap restore --help'"
        );
    }

    #[test]
    fn restore_refuses_flags_that_do_not_go_together() {
        assert_eq!(
            one_line(&["restore", "--instance", "i-1", "--attach-to", "i-2", "--device", "/dev/sdf"]),
            "the argument '--instance <ID>' cannot be used with '--device <DEVICE>'; see 'ebsnap restore --help'"
        );
        assert!(restore(&[
            "--snapshot",
            "s",
            "--attach-to",
            "i-2",
            "--device",
            "/dev/sdf"
        ])
        .is_ok());
        assert_eq!(
            one_line(&["restore", "--snapshot", "s", "--device", "/dev/sdf"]),
            "the following required arguments were not provided: --attach-to <ID>; see 'ebsnap restore --help'"
        );
        assert_eq!(
            one_line(&["restore", "--snapshot", "s", "--at", "2026-11-24T03:00:00Z"]),
            "the argument '--snapshot <SNAP>' cannot be used with '--at <TIME>'; see 'ebsnap restore --help'"
        );
        assert_eq!(
            one_line(&["restore", "--instance", "i-1", "--from-archive"]),
            "the argument '--instance <ID>' cannot be used with '--from-archive'; see 'ebsnap restore --help'"
        );
        assert_eq!(
            one_line(&["restore", "--snapshot", "s", "--region", "us-east-1", "--region", "eu-west-1"]),
            "the argument '--region <REGION>' cannot be used multiple times; see 'ebsnap restore --help'"
        );
        assert_eq!(
            one_line(&["restore", "--snapshot", "s", "--all-regions"]),
            "unexpected argument '--all-regions' found tip: a similar argument exists: '--region'; \
             see 'ebsnap restore --help'"
        );
    }

    #[test]
    fn assume_role_repeats_and_names_the_accounts() {
        let run = run_args(&[
            "--assume-role",
            "arn:aws:iam::111111111111:role/backup",
            "--assume-role",
            "arn:aws:iam::222222222222:role/backup",
            "--external-id",
            "x-1",
        ]);
        let accounts: Vec<&str> = run
            .accounts
            .assume_role
            .iter()
            .map(|r| r.account.as_str())
            .collect();
        assert_eq!(accounts, ["111111111111", "222222222222"]);
        assert_eq!(run.accounts.external_id.as_deref(), Some("x-1"));
        assert!(run_args(&[]).accounts.assume_role.is_empty());
        // Only run, snapshot and purge work in several accounts.
        for name in ["run", "snapshot", "purge"] {
            assert!(flags_of(name).contains(&"assume-role".into()), "{name}");
        }
        for name in ["list", "check", "restore", "iam-policy"] {
            assert!(!flags_of(name).contains(&"assume-role".into()), "{name}");
        }
    }

    #[test]
    fn assume_role_errors_are_one_line_usage_errors() {
        let bad = one_line(&["run", "--assume-role", "arn:aws:iam::1234:role/x"]);
        assert!(
            bad.contains("'1234' in 'arn:aws:iam::1234:role/x' is not an AWS account id"),
            "{bad}"
        );
        assert!(!bad.contains('\n'), "{bad}");
        let lonely = one_line(&["run", "--external-id", "x-1"]);
        assert!(
            lonely.starts_with(
                "the following required arguments were not provided: --assume-role <ARN>"
            ),
            "{lonely}"
        );
        assert!(!lonely.contains('\n'), "{lonely}");
    }

    #[test]
    fn snapshot_tag_repeats_in_order_and_answers_to_its_old_name() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        for args in [
            &[
                "--snapshot-tag",
                "CostCenter=ops",
                "--snapshot-tag",
                "Team=db",
            ][..],
            &["--tag", "CostCenter=ops", "--snapshot-tag", "Team=db"],
        ] {
            assert_eq!(
                run_args(args).tags.snapshot_tag,
                [pair("CostCenter", "ops"), pair("Team", "db")],
                "{args:?}"
            );
        }
        assert!(run_args(&[]).tags.snapshot_tag.is_empty());
        let policy = parse(&["iam-policy", "--snapshot-tag", "CostCenter=ops"]).unwrap();
        assert!(matches!(policy.command, Command::IamPolicy(_)));
    }

    #[test]
    fn inherit_tags_answers_to_its_old_name() {
        for flag in ["--inherit-tags", "--copy-tags"] {
            assert_eq!(
                run_args(&[flag, "both"]).tags.inherit_tags,
                Some(CopyTags::Both),
                "{flag}"
            );
        }
    }

    #[test]
    fn the_old_names_are_hidden_aliases() {
        let command = Cli::command();
        let run = command.find_subcommand("run").unwrap();
        for (id, old) in [("snapshot_tag", "tag"), ("inherit_tags", "copy-tags")] {
            let arg = run.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert_eq!(arg.get_aliases(), Some(vec![old]), "--{old} is an alias");
            assert!(
                arg.get_visible_aliases().unwrap_or_default().is_empty(),
                "--{old} is hidden"
            );
        }
        let help = parse(&["run", "--help"]).unwrap_err().render().to_string();
        assert!(help.contains("[alias: --keep-within]"), "visible: {help}");
        assert!(!help.contains("alias: --tag"), "{help}");
        assert!(!help.contains("alias: --copy-tags"), "{help}");
    }

    #[test]
    fn renamed_variables_feed_the_new_ones_unless_those_are_set() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            renamed_env(env(&[
                ("EBSNAP_TAG", "Team=db"),
                ("EBSNAP_COPY_TAGS", "both")
            ])),
            [
                ("EBSNAP_SNAPSHOT_TAG", OsString::from("Team=db")),
                ("EBSNAP_INHERIT_TAGS", OsString::from("both")),
            ]
        );
        assert_eq!(
            renamed_env(env(&[
                ("EBSNAP_TAG", "Team=db"),
                ("EBSNAP_SNAPSHOT_TAG", "Team=web")
            ])),
            [],
            "the new name wins"
        );
        assert_eq!(renamed_env(env(&[])), []);
    }

    #[test]
    fn a_group_a_command_does_not_take_has_clap_defaults() {
        let retention: RetentionArgs = unset();
        assert_eq!(retention.keep_min, 1);
        assert_eq!(retention.timezone, chrono_tz::Tz::UTC);
        assert_eq!(retention.retention, None);
        let output: OutputArgs = unset();
        assert_eq!(output.format.output, OutputFormat::Text);
        assert!(!output.quiet);
        let control: RunControlArgs = unset();
        assert_eq!(control.max_rate, 5.0);
        assert_eq!(control.timeout, TimeDelta::minutes(30));
        let hooks: HookArgs = unset();
        assert_eq!(hooks.pre_hook, None);
        assert_eq!(hooks.hook_failure, HookFailure::Snapshot);
    }

    #[test]
    fn a_bad_tag_is_a_one_line_usage_error_that_says_what_to_write() {
        assert_eq!(
            one_line(&["run", "--snapshot-tag", "Team"]),
            "invalid value 'Team' for '--snapshot-tag <KEY=VALUE>': 'Team' has no value: write --snapshot-tag \
             KEY=VALUE, e.g. --snapshot-tag CostCenter=ops (no spaces: EBSNAP_SNAPSHOT_TAG separates tags by them)"
        );
        for args in [
            &["run", "--snapshot-tag", "ebsnap:job=x"][..],
            &["run", "--snapshot-tag", "aws:x=y"],
            &["run", "--snapshot-tag", "Name=x"],
            &["run", "--snapshot-tag", "=x"],
            &["run", "--snapshot-tag", "Team=a b"],
        ] {
            let line = one_line(args);
            assert!(
                line.contains("e.g. --snapshot-tag CostCenter=ops"),
                "{args:?}: {line}"
            );
            assert!(!line.contains('\n'), "{args:?}: {line}");
        }
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["run", "--retention", "7x"][..],
            &["run", "--retention", "0d"],
            &["run", "--keep-min", "-1"],
            &["run", "--keep-min", "many"],
            &["run", "--keep-min", "0"],
            &["run", "--tag-key", ""],
            &["run", "--tag-value", ""],
            &["run", "--output", "yaml"],
            &["run", "--job", "a;b"],
            &["run", "--region", "mars-1"],
            &["run", "-q", "-v"],
            &["run", "--max-delete", "-1"],
            &["run", "--min-interval", "5x"],
            &["run", "--max-rate", "0"],
            &["run", "--timeout", "0s"],
            &["purge", "--orphans-after", "0d"],
            &["purge", "--orphans-after", "soon"],
            &["frobnicate"],
            &[],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    /// A unit's EnvironmentFile can hold a whole job: every flag of the
    /// backup job and of check reads EBSNAP_*, but those that are one
    /// invocation's decision (a dry run, lifting the delete guard) and
    /// those the AWS chain already reads (AWS_PROFILE, AWS_ENDPOINT_URL_EC2;
    /// RUST_LOG for -v).
    #[test]
    fn every_job_flag_reads_the_environment() {
        let not_from_env = [
            "dry_run",
            "force",
            "profile",
            "endpoint_url",
            "verbose",
            "help",
            "version",
        ];
        let command = Cli::command();
        for name in ["run", "check"] {
            let sub = command.find_subcommand(name).unwrap();
            for arg in command.get_arguments().chain(sub.get_arguments()) {
                let id = arg.get_id().as_str();
                if not_from_env.contains(&id) {
                    continue;
                }
                let env = arg
                    .get_env()
                    .unwrap_or_else(|| panic!("--{id} of {name} reads no EBSNAP_*"));
                assert_eq!(
                    env.to_str().unwrap(),
                    format!("EBSNAP_{}", id.to_uppercase()),
                    "--{id}"
                );
            }
        }
    }

    #[test]
    fn the_man_page_has_a_section_per_command_with_its_flags() {
        let mut page = Vec::new();
        man_page(&mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        assert!(page.lines().any(|l| l.starts_with(".TH ebsnap")), "{page}");
        for command in ["RUN", "RESTORE", "IAM-POLICY", "MAN"] {
            assert!(
                page.contains(&format!(".SH \"EBSNAP {command}\"")),
                "{command}"
            );
        }
        assert!(page.contains(".SS HOOKS"), "flags under their headings");
        assert!(page.contains("pre\\-hook"), "the hooks' flags");
        assert!(!page.contains("ebsnap\\-run(1)"), "no page of its own");
    }

    #[test]
    fn cli_reference_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference/cli.md");
        let rendered = reference::markdown(Cli::command());
        if std::env::var_os("EBSNAP_BLESS").is_some() {
            std::fs::create_dir_all(std::path::Path::new(path).parent().unwrap()).unwrap();
            std::fs::write(path, &rendered).unwrap();
        }
        let on_disk = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            on_disk == rendered,
            "docs/reference/cli.md is stale: run `EBSNAP_BLESS=1 cargo test --lib cli_reference`"
        );
    }
}
