//! The command line: what the user may type, and a first check of it.
//!
//! Only validation of the typed text lives here (durations, job names);
//! config.rs resolves the rest. Doc comments are the long help, `help` the
//! short.

use chrono::TimeDelta;
use clap::{Args, Parser, Subcommand, ValueEnum};

use clap::builder::PossibleValue;

use crate::values::{
    parse_archive_after, parse_duration, parse_job, parse_keep_count, parse_keep_min,
    parse_max_delete, parse_max_rate, parse_min_interval, parse_orphans_after, parse_region,
    parse_role_arn, parse_tag_key, parse_tag_value, parse_time, parse_timezone, parse_user_tag,
    ColorChoice, CopyTags, HookFailure, LogFormat, OutputFormat, Role,
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
    pub common: CommonArgs,
}

#[derive(Debug, Clone, PartialEq, Subcommand)]
pub enum Command {
    /// Snapshot the selected volumes, then purge the job's expired snapshots
    /// (what cron calls).
    Run(WaitArgs),
    /// Only snapshot the selected volumes.
    Snapshot(WaitArgs),
    /// Only delete the job's snapshots that are past retention.
    Purge,
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
    IamPolicy,
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct WaitArgs {
    /// Wait until this run's snapshots are completed; one that ends in error
    /// is a failure of the run.
    #[arg(long, env = "EBSNAP_WAIT")]
    pub wait: bool,

    /// How long --wait waits before it gives up (the snapshots go on).
    #[arg(long, default_value = "2h", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
          requires = "wait", env = "EBSNAP_WAIT_TIMEOUT")]
    pub wait_timeout: TimeDelta,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct ListArgs {
    /// Only this instance's snapshots.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,

    /// Only this volume's snapshots.
    #[arg(long, value_name = "ID")]
    pub volume: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Args)]
pub struct CheckArgs {
    /// The oldest a volume's newest completed backup may be, e.g. 26h for a
    /// daily job.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true, env = "EBSNAP_MAX_AGE")]
    pub max_age: TimeDelta,
}

#[derive(Debug, Clone, PartialEq, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["snapshot", "instance"])))]
pub struct RestoreArgs {
    /// Restore one volume from this snapshot.
    #[arg(long, value_name = "SNAP")]
    pub snapshot: Option<String>,

    /// Restore every volume of this instance from one backup run of the job.
    #[arg(long, value_name = "ID")]
    pub instance: Option<String>,

    /// With --instance: the newest run whose snapshots are all completed and
    /// started at or before this time (RFC 3339, e.g. 2026-11-24T03:00:00Z).
    /// Default: now.
    #[arg(long, value_name = "TIME", requires = "instance", value_parser = parse_time)]
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

    /// With --snapshot and --attach-to: the device to attach at.
    #[arg(long, value_name = "DEVICE", requires = "attach_to")]
    pub device: Option<String>,

    /// With --snapshot of a snapshot in the archive tier: bring it back first
    /// (RestoreSnapshotTier, a temporary restore of 7 days), wait for it
    /// with progress (up to 72 hours), then restore.
    #[arg(long, requires = "snapshot")]
    pub from_archive: bool,

    /// How long to wait for the volumes to be available (and attached).
    #[arg(long, default_value = "30m", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub wait_timeout: TimeDelta,
}

/// A usage error in one line, as every error of ebsnap is: clap's message,
/// the values it accepts or its tip, and where to read more unless the
/// message already says how to fix it (ebsnap's own value parsers do).
pub fn one_line_usage_error(rendered: &str, says_how_to_fix: bool) -> String {
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
        text.push_str("; see 'ebsnap --help'");
    }
    text
}

/// Flags every command takes, before or after the subcommand.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// Show what would be done and check permissions with DryRun=true calls;
    /// change nothing.
    #[arg(short = 'n', long, global = true)]
    pub dry_run: bool,

    /// The job name, written on every snapshot as the ebsnap:job tag. Purge
    /// only ever touches snapshots of this job, so jobs with different
    /// schedules and retentions never touch each other's snapshots.
    #[arg(long, global = true, env = "EBSNAP_JOB", default_value = "default",
          value_name = "NAME", value_parser = parse_job)]
    pub job: String,

    /// The tag key that selects instances for backup.
    #[arg(long, global = true, env = "EBSNAP_TAG_KEY", default_value = "Scheduled-Snapshots",
          value_name = "KEY", value_parser = parse_tag_key)]
    pub tag_key: String,

    /// Select only instances whose tag has exactly this value. Without it,
    /// any value but false, no, off, 0 or empty selects (case-insensitive).
    #[arg(long, global = true, env = "EBSNAP_TAG_VALUE", value_name = "VALUE",
          value_parser = parse_tag_value)]
    pub tag_value: Option<String>,

    /// Keep the job's snapshots younger than this (s, m, h, d or w, e.g.
    /// 7d, 36h, 2w); older ones go unless a --keep-* rule keeps them.
    /// Default: 7d, or none when a --keep-* rule is given.
    #[arg(long, visible_alias = "keep-within", global = true, env = "EBSNAP_RETENTION",
          value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub retention: Option<TimeDelta>,

    /// Keep the N newest completed snapshots of each volume.
    #[arg(long, global = true, env = "EBSNAP_KEEP_LAST", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_last: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N hours that
    /// have one.
    #[arg(long, global = true, env = "EBSNAP_KEEP_HOURLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_hourly: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N days that
    /// have one.
    #[arg(long, global = true, env = "EBSNAP_KEEP_DAILY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_daily: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N weeks
    /// (Monday to Sunday) that have one.
    #[arg(long, global = true, env = "EBSNAP_KEEP_WEEKLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_weekly: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N months that
    /// have one.
    #[arg(long, global = true, env = "EBSNAP_KEEP_MONTHLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_monthly: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N years that
    /// have one.
    #[arg(long, global = true, env = "EBSNAP_KEEP_YEARLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_yearly: Option<usize>,

    /// The timezone of the --keep-* rules' hours, days, weeks, months and
    /// years: an IANA name such as Asia/Kolkata or Europe/Berlin.
    #[arg(long, global = true, env = "EBSNAP_TIMEZONE", default_value = "UTC",
          value_name = "ZONE", value_parser = parse_timezone)]
    pub timezone: chrono_tz::Tz,

    /// Always keep this many newest completed snapshots of each volume, however
    /// old: a volume whose backups stopped keeps its last good one. At least 1.
    #[arg(long, global = true, env = "EBSNAP_KEEP_MIN", default_value = "1",
          value_name = "N", value_parser = parse_keep_min, allow_hyphen_values = true)]
    pub keep_min: usize,

    /// Let purge delete every snapshot of an orphan (a volume that no longer
    /// exists, or of an instance no longer selected), --keep-min aside, once
    /// its newest snapshot is older than this. Off by default: an orphan
    /// keeps its newest --keep-min snapshots forever. list and check name
    /// the orphans either way.
    #[arg(long, global = true, env = "EBSNAP_ORPHANS_AFTER", value_name = "DURATION",
          value_parser = parse_orphans_after, allow_hyphen_values = true)]
    pub orphans_after: Option<TimeDelta>,

    /// Move to the archive tier (ModifySnapshotTier: a quarter of the
    /// standard price, up to 72 hours to bring back) the snapshots older
    /// than this that only --keep-monthly or --keep-yearly keep; never a
    /// volume's newest, never one due for deletion within 90 days (EC2 bills
    /// an archived snapshot for 90 days at least). Purge deletes what ebsnap
    /// archived once its rules let it go and it has spent 90 days archived.
    #[arg(long, global = true, env = "EBSNAP_ARCHIVE_AFTER", value_name = "DURATION",
          value_parser = parse_archive_after, allow_hyphen_values = true)]
    pub archive_after: Option<TimeDelta>,

    /// A region to work in; repeat for several. Default: the region of the
    /// standard AWS chain (AWS_REGION, profile).
    #[arg(long, global = true, value_name = "REGION", value_parser = parse_region, env = "EBSNAP_REGION", value_delimiter = ' ')]
    pub region: Vec<String>,

    /// Every region enabled for the account (DescribeRegions), each handled
    /// in the same run with its own rate limits.
    #[arg(
        long,
        global = true,
        conflicts_with = "region",
        env = "EBSNAP_ALL_REGIONS"
    )]
    pub all_regions: bool,

    /// The AWS profile to use (default: the standard chain, AWS_PROFILE).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,

    /// Talk to this EC2 endpoint instead of AWS's (e.g. a local emulator).
    #[arg(long, global = true, value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Work in the account of this IAM role, assumed through STS with the
    /// standard chain's credentials; repeat for several accounts (one role
    /// each), each handled in the same run, every region its own unit with
    /// its own rate limits. One account failing does not stop the others.
    /// With run, snapshot and purge. In the environment: ARNs separated by
    /// spaces.
    #[arg(long, global = true, env = "EBSNAP_ASSUME_ROLE", value_name = "ARN",
          value_parser = parse_role_arn, value_delimiter = ' ')]
    pub assume_role: Vec<Role>,

    /// The external id the roles' trust policies ask for (sent with every
    /// --assume-role).
    #[arg(
        long,
        global = true,
        env = "EBSNAP_EXTERNAL_ID",
        value_name = "ID",
        requires = "assume_role"
    )]
    pub external_id: Option<String>,

    /// What to print on stdout.
    #[arg(long, global = true, env = "EBSNAP_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Print nothing on success.
    #[arg(
        short,
        long,
        global = true,
        conflicts_with = "verbose",
        env = "EBSNAP_QUIET"
    )]
    pub quiet: bool,

    /// Log more on stderr (-v: progress, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Do not snapshot a volume that has a snapshot of this job (completed or
    /// pending) newer than this, so an immediate re-run after a crash or a
    /// cron entry that fires twice does no work twice. 0 disables.
    #[arg(long, global = true, env = "EBSNAP_MIN_INTERVAL", default_value = "10m",
          value_name = "DURATION", value_parser = parse_min_interval, allow_hyphen_values = true)]
    pub min_interval: TimeDelta,

    /// Refuse a purge that would delete more than this many snapshots in a
    /// region without --force. No cap by default: a purge is refused anyway
    /// when it would delete more than half of the job's snapshots there.
    #[arg(long, global = true, env = "EBSNAP_MAX_DELETE", value_name = "N",
          value_parser = parse_max_delete, allow_hyphen_values = true)]
    pub max_delete: Option<usize>,

    /// A command run (through sh -c, on this host) before each instance's
    /// snapshot, e.g. to lock a database: ssh db1 mongosh --eval 'db.fsyncLock()'.
    /// EBSNAP_INSTANCE_ID, EBSNAP_INSTANCE_NAME, EBSNAP_REGION and EBSNAP_JOB
    /// are in its environment.
    #[arg(long, global = true, env = "EBSNAP_PRE_HOOK", value_name = "CMD")]
    pub pre_hook: Option<String>,

    /// A command run as soon as the instance's snapshot calls return (the
    /// point in time is fixed then); always, once the pre-hook has started.
    #[arg(long, global = true, env = "EBSNAP_POST_HOOK", value_name = "CMD")]
    pub post_hook: Option<String>,

    /// How long a hook may run before it is killed (and fails).
    #[arg(long, global = true, default_value = "2m", value_name = "DURATION",
          value_parser = parse_duration, allow_hyphen_values = true, env = "EBSNAP_HOOK_TIMEOUT")]
    pub hook_timeout: TimeDelta,

    /// When the pre-hook fails: snapshot anyway (crash-consistent) or skip
    /// the instance; either way the run fails.
    #[arg(long, global = true, value_enum, default_value_t = HookFailure::Snapshot, env = "EBSNAP_HOOK_FAILURE")]
    pub hook_failure: HookFailure,

    /// Copy the source's tags onto its snapshots (never aws: tags; ebsnap's
    /// own tags win, within EC2's 50 tags a resource).
    #[arg(
        long,
        global = true,
        env = "EBSNAP_COPY_TAGS",
        value_enum,
        value_name = "WHOSE"
    )]
    pub copy_tags: Option<CopyTags>,

    /// A tag of your own for every snapshot the job makes (and every
    /// --copy-to copy), in the create call itself, e.g. CostCenter=ops;
    /// repeat for several. Not ebsnap:*, aws:* nor Name (ebsnap's own), no
    /// key twice, no spaces. In the environment: tags separated by spaces.
    #[arg(long, global = true, env = "EBSNAP_TAG", value_name = "KEY=VALUE",
          value_parser = parse_user_tag, value_delimiter = ' ')]
    pub tag: Vec<(String, String)>,

    /// Disaster recovery: copy each new snapshot, once completed, to this
    /// region (repeatable), and purge the copies there under
    /// --copy-retention. The run waits for its snapshots to complete.
    #[arg(long, global = true, value_name = "REGION", value_parser = parse_region, env = "EBSNAP_COPY_TO", value_delimiter = ' ')]
    pub copy_to: Vec<String>,

    /// How long the copies made by --copy-to are kept (default: --retention).
    #[arg(long, global = true, value_name = "DURATION", requires = "copy_to",
          value_parser = parse_duration, allow_hyphen_values = true, env = "EBSNAP_COPY_RETENTION")]
    pub copy_retention: Option<TimeDelta>,

    /// The KMS key for the copies of encrypted snapshots (--copy-to); by
    /// default EC2 uses the destination region's default EBS key.
    #[arg(
        long,
        global = true,
        value_name = "KEY",
        requires = "copy_to",
        env = "EBSNAP_COPY_KMS_KEY_ID"
    )]
    pub copy_kms_key_id: Option<String>,

    /// Snapshot each volume on its own (one CreateSnapshot per volume)
    /// instead of all of an instance's volumes at one instant (one
    /// CreateSnapshots per instance, the default).
    #[arg(long, global = true, env = "EBSNAP_PER_VOLUME")]
    pub per_volume: bool,

    /// Leave out each instance's root (boot) volume: back up data only.
    /// A volume tagged ebsnap:skip=true is always left out.
    #[arg(long, global = true, env = "EBSNAP_EXCLUDE_BOOT")]
    pub exclude_boot: bool,

    /// Purge even past --max-delete or half of the job's snapshots.
    #[arg(long, global = true)]
    pub force: bool,

    /// The lock that keeps two runs of one job apart on this host.
    /// Default: $XDG_RUNTIME_DIR/ebsnap-JOB.lock, else ~/.cache/ebsnap-JOB.lock.
    #[arg(long, global = true, value_name = "PATH", env = "EBSNAP_LOCK_FILE")]
    pub lock_file: Option<std::path::PathBuf>,

    /// At most this many snapshot creates, and as many deletes, per second
    /// in each region (EC2 refills its buckets at 5 per second).
    #[arg(long, global = true, env = "EBSNAP_MAX_RATE", default_value = "5", value_name = "N",
          value_parser = parse_max_rate, allow_hyphen_values = true)]
    pub max_rate: f64,

    /// The run's time budget: past it, nothing new is started, and the report
    /// says what was not done.
    #[arg(long, global = true, env = "EBSNAP_TIMEOUT", default_value = "30m",
          value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: TimeDelta,

    /// After each run, write a Prometheus textfile here (for node_exporter's
    /// textfile collector), atomically.
    #[arg(long, global = true, env = "EBSNAP_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,

    /// Colour in logs and progress on stderr.
    #[arg(long, global = true, env = "EBSNAP_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// The format of the logs on stderr.
    #[arg(long, global = true, env = "EBSNAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ebsnap").chain(args.iter().copied()))
    }

    #[test]
    fn the_cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults_follow_the_design() {
        let cli = parse(&["run"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Run(WaitArgs { wait: false, .. })
        ));
        assert_eq!(cli.common.job, "default");
        assert_eq!(cli.common.tag_key, "Scheduled-Snapshots");
        assert_eq!(cli.common.retention, None, "7d, resolved in config");
        assert_eq!(cli.common.timezone, chrono_tz::Tz::UTC);
        assert_eq!(cli.common.keep_min, 1);
        assert_eq!(
            cli.common.orphans_after, None,
            "orphans are kept by default"
        );
        assert_eq!(cli.common.output, OutputFormat::Text);
        assert!(!cli.common.dry_run);
    }

    #[test]
    fn common_flags_go_before_or_after_the_subcommand() {
        let before = parse(&["-n", "--retention", "36h", "purge"]).unwrap();
        let after = parse(&["purge", "-n", "--retention", "36h"]).unwrap();
        for cli in [before, after] {
            assert_eq!(cli.command, Command::Purge);
            assert!(cli.common.dry_run);
            assert_eq!(cli.common.retention, Some(TimeDelta::hours(36)));
        }
    }

    fn one_line(args: &[&str]) -> String {
        let err = parse(args).unwrap_err();
        let says_how = err.kind() == clap::error::ErrorKind::ValueValidation;
        one_line_usage_error(&err.render().to_string(), says_how)
    }

    #[test]
    fn usage_errors_fit_on_one_line_and_say_what_to_do() {
        assert_eq!(
            one_line(&["run", "--output", "yaml"]),
            "invalid value 'yaml' for '--output <OUTPUT>' [possible values: text, json]; see 'ebsnap --help'"
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
            "the following required arguments were not provided: <--snapshot <SNAP>|--instance <ID>>; see 'ebsnap --help'"
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
        let cli = parse(&["run", "--region", "eu-west-1", "--region", "us-east-1"]).unwrap();
        assert_eq!(cli.common.region, vec!["eu-west-1", "us-east-1"]);
    }

    #[test]
    fn assume_role_repeats_and_names_the_accounts() {
        let cli = parse(&[
            "run",
            "--assume-role",
            "arn:aws:iam::111111111111:role/backup",
            "--assume-role",
            "arn:aws:iam::222222222222:role/backup",
            "--external-id",
            "x-1",
        ])
        .unwrap();
        let accounts: Vec<&str> = cli
            .common
            .assume_role
            .iter()
            .map(|r| r.account.as_str())
            .collect();
        assert_eq!(accounts, ["111111111111", "222222222222"]);
        assert_eq!(cli.common.external_id.as_deref(), Some("x-1"));
        let before = parse(&[
            "--assume-role",
            "arn:aws:iam::111111111111:role/backup",
            "--assume-role",
            "arn:aws:iam::222222222222:role/backup",
            "run",
        ])
        .unwrap();
        assert_eq!(before.common.assume_role, cli.common.assume_role);
        assert!(parse(&["run"]).unwrap().common.assume_role.is_empty());
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
    fn tag_repeats_in_order() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        for args in [
            &["--tag", "CostCenter=ops", "--tag", "Team=db", "run"][..],
            &["run", "--tag", "CostCenter=ops", "--tag", "Team=db"],
        ] {
            assert_eq!(
                parse(args).unwrap().common.tag,
                [pair("CostCenter", "ops"), pair("Team", "db")],
                "{args:?}"
            );
        }
        assert!(parse(&["run"]).unwrap().common.tag.is_empty());
        let policy = parse(&["iam-policy", "--tag", "CostCenter=ops"]).unwrap();
        assert_eq!(policy.command, Command::IamPolicy);
    }

    #[test]
    fn a_bad_tag_is_a_one_line_usage_error_that_says_what_to_write() {
        assert_eq!(
            one_line(&["run", "--tag", "Team"]),
            "invalid value 'Team' for '--tag <KEY=VALUE>': 'Team' has no value: write --tag \
             KEY=VALUE, e.g. --tag CostCenter=ops (no spaces: EBSNAP_TAG separates tags by them)"
        );
        for args in [
            &["run", "--tag", "ebsnap:job=x"][..],
            &["run", "--tag", "aws:x=y"],
            &["run", "--tag", "Name=x"],
            &["run", "--tag", "=x"],
            &["run", "--tag", "Team=a b"],
        ] {
            let line = one_line(args);
            assert!(
                line.contains("e.g. --tag CostCenter=ops"),
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
        use clap::CommandFactory;
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
}
