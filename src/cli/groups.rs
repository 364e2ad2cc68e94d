//! The groups of flags, one `Args` struct each with its help heading; a
//! command (mod.rs) flattens the groups it reads.

use chrono::TimeDelta;
use clap::Args;

use crate::values::{
    parse_archive_after, parse_duration, parse_job, parse_keep_count, parse_keep_min,
    parse_max_delete, parse_max_rate, parse_min_interval, parse_orphans_after, parse_region,
    parse_role_arn, parse_tag_key, parse_tag_value, parse_timezone, parse_user_tag, ColorChoice,
    CopyTags, HookFailure, LogFormat, OutputFormat, Role,
};

/// The job's name, written on its snapshots; restore reads it alone.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Selection")]
pub struct JobNameArgs {
    /// The job name, written on every snapshot as the ebsnap:job tag. Purge
    /// only ever touches snapshots of this job, so jobs with different
    /// schedules and retentions never touch each other's snapshots.
    #[arg(id = "job", long = "job", env = "EBSNAP_JOB", default_value = "default",
          value_name = "NAME", value_parser = parse_job)]
    pub name: String,
}

/// A job: which volumes it backs up, and how long it keeps their snapshots.
#[derive(Debug, Clone, PartialEq, Args)]
pub struct JobArgs {
    #[command(flatten)]
    pub selection: SelectionArgs,
    #[command(flatten)]
    pub retention: RetentionArgs,
}

/// Which instances and volumes the job backs up.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Selection")]
pub struct SelectionArgs {
    #[command(flatten)]
    pub job: JobNameArgs,

    /// The tag key that selects instances for backup.
    #[arg(long, env = "EBSNAP_TAG_KEY", default_value = "Scheduled-Snapshots",
          value_name = "KEY", value_parser = parse_tag_key)]
    pub tag_key: String,

    /// Select only instances whose tag has exactly this value. Without it,
    /// any value but false, no, off, 0 or empty selects (case-insensitive).
    #[arg(long, env = "EBSNAP_TAG_VALUE", value_name = "VALUE", value_parser = parse_tag_value)]
    pub tag_value: Option<String>,

    /// Leave out each instance's root (boot) volume: back up data only.
    /// A volume tagged ebsnap:skip=true is always left out.
    #[arg(long, env = "EBSNAP_EXCLUDE_BOOT")]
    pub exclude_boot: bool,
}

/// How long the job keeps its snapshots.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Retention")]
pub struct RetentionArgs {
    /// Keep the job's snapshots younger than this (s, m, h, d or w, e.g.
    /// 7d, 36h, 2w); older ones go unless a --keep-* rule keeps them.
    /// Default: 7d, or none when a --keep-* rule is given.
    #[arg(long, visible_alias = "keep-within", env = "EBSNAP_RETENTION",
          value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub retention: Option<TimeDelta>,

    /// Keep the N newest completed snapshots of each volume.
    #[arg(long, env = "EBSNAP_KEEP_LAST", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_last: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N hours that
    /// have one.
    #[arg(long, env = "EBSNAP_KEEP_HOURLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_hourly: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N days that
    /// have one.
    #[arg(long, env = "EBSNAP_KEEP_DAILY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_daily: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N weeks
    /// (Monday to Sunday) that have one.
    #[arg(long, env = "EBSNAP_KEEP_WEEKLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_weekly: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N months that
    /// have one.
    #[arg(long, env = "EBSNAP_KEEP_MONTHLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_monthly: Option<usize>,

    /// Keep the newest completed snapshot of each of the last N years that
    /// have one.
    #[arg(long, env = "EBSNAP_KEEP_YEARLY", value_name = "N",
          value_parser = parse_keep_count, allow_hyphen_values = true)]
    pub keep_yearly: Option<usize>,

    /// The timezone of the --keep-* rules' hours, days, weeks, months and
    /// years: an IANA name such as Asia/Kolkata or Europe/Berlin.
    #[arg(long, env = "EBSNAP_TIMEZONE", default_value = "UTC",
          value_name = "ZONE", value_parser = parse_timezone)]
    pub timezone: chrono_tz::Tz,

    /// Always keep this many newest completed snapshots of each volume, however
    /// old: a volume whose backups stopped keeps its last good one. At least 1.
    #[arg(long, env = "EBSNAP_KEEP_MIN", default_value = "1",
          value_name = "N", value_parser = parse_keep_min, allow_hyphen_values = true)]
    pub keep_min: usize,

    /// Let purge delete every snapshot of an orphan (a volume that no longer
    /// exists, or of an instance no longer selected), --keep-min aside, once
    /// its newest snapshot is older than this. Off by default: an orphan
    /// keeps its newest --keep-min snapshots forever. list and check name
    /// the orphans either way.
    #[arg(long, env = "EBSNAP_ORPHANS_AFTER", value_name = "DURATION",
          value_parser = parse_orphans_after, allow_hyphen_values = true)]
    pub orphans_after: Option<TimeDelta>,

    /// Move to the archive tier (ModifySnapshotTier: a quarter of the
    /// standard price, up to 72 hours to bring back) the snapshots older
    /// than this that only --keep-monthly or --keep-yearly keep; never a
    /// volume's newest, never one due for deletion within 90 days (EC2 bills
    /// an archived snapshot for 90 days at least). Purge deletes what ebsnap
    /// archived once its rules let it go and it has spent 90 days archived.
    #[arg(long, env = "EBSNAP_ARCHIVE_AFTER", value_name = "DURATION",
          value_parser = parse_archive_after, allow_hyphen_values = true)]
    pub archive_after: Option<TimeDelta>,
}

/// The delete guard: what stops a purge that looks like a mistake.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Delete guard")]
pub struct GuardArgs {
    /// Refuse a purge that would delete more than this many snapshots in a
    /// region without --force. No cap by default: a purge is refused anyway
    /// when it would delete more than half of the job's snapshots there.
    #[arg(long, env = "EBSNAP_MAX_DELETE", value_name = "N",
          value_parser = parse_max_delete, allow_hyphen_values = true)]
    pub max_delete: Option<usize>,

    /// Purge even past --max-delete or half of the job's snapshots.
    #[arg(long)]
    pub force: bool,
}

/// How the snapshots are made.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Snapshots")]
pub struct SnapshotArgs {
    /// Do not snapshot a volume that has a snapshot of this job (completed or
    /// pending) newer than this, so an immediate re-run after a crash or a
    /// cron entry that fires twice does no work twice. 0 disables.
    #[arg(long, env = "EBSNAP_MIN_INTERVAL", default_value = "10m",
          value_name = "DURATION", value_parser = parse_min_interval, allow_hyphen_values = true)]
    pub min_interval: TimeDelta,

    /// Snapshot each volume on its own (one CreateSnapshot per volume)
    /// instead of all of an instance's volumes at one instant (one
    /// CreateSnapshots per instance, the default).
    #[arg(long, env = "EBSNAP_PER_VOLUME")]
    pub per_volume: bool,

    /// Wait until this run's snapshots are completed; one that ends in error
    /// is a failure of the run.
    #[arg(long, env = "EBSNAP_WAIT")]
    pub wait: bool,

    /// How long --wait waits before it gives up (the snapshots go on).
    #[arg(long, default_value = "2h", value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true,
          requires = "wait", env = "EBSNAP_WAIT_TIMEOUT")]
    pub wait_timeout: TimeDelta,
}

/// The tags the job puts on its snapshots besides its own.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Snapshots")]
pub struct SnapshotTagArgs {
    /// A tag of your own for every snapshot the job makes (and every
    /// --copy-to copy), in the create call itself, e.g. CostCenter=ops;
    /// repeat for several. Not ebsnap:*, aws:* nor Name (ebsnap's own), no
    /// key twice, no spaces. In the environment: tags separated by spaces.
    /// Formerly --tag (EBSNAP_TAG), which still works until the release
    /// after next.
    #[arg(long, alias = "tag", env = "EBSNAP_SNAPSHOT_TAG", value_name = "KEY=VALUE",
          value_parser = parse_user_tag, value_delimiter = ' ')]
    pub snapshot_tag: Vec<(String, String)>,

    /// Copy the source's tags onto its snapshots (never aws: tags; ebsnap's
    /// own tags win, within EC2's 50 tags a resource). Formerly --copy-tags
    /// (EBSNAP_COPY_TAGS), which still works until the release after next.
    #[arg(
        long,
        alias = "copy-tags",
        env = "EBSNAP_INHERIT_TAGS",
        value_enum,
        value_name = "WHOSE"
    )]
    pub inherit_tags: Option<CopyTags>,
}

/// Commands run on this host around each instance's snapshot.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Hooks")]
pub struct HookArgs {
    /// A command run (through sh -c, on this host) before each instance's
    /// snapshot, e.g. to lock a database: ssh db1 mongosh --eval 'db.fsyncLock()'.
    /// EBSNAP_INSTANCE_ID, EBSNAP_INSTANCE_NAME, EBSNAP_REGION and EBSNAP_JOB
    /// are in its environment.
    #[arg(long, env = "EBSNAP_PRE_HOOK", value_name = "CMD")]
    pub pre_hook: Option<String>,

    /// A command run as soon as the instance's snapshot calls return (the
    /// point in time is fixed then); always, once the pre-hook has started.
    #[arg(long, env = "EBSNAP_POST_HOOK", value_name = "CMD")]
    pub post_hook: Option<String>,

    /// How long a hook may run before it is killed (and fails).
    #[arg(long, default_value = "2m", value_name = "DURATION",
          value_parser = parse_duration, allow_hyphen_values = true, env = "EBSNAP_HOOK_TIMEOUT")]
    pub hook_timeout: TimeDelta,

    /// When the pre-hook fails: snapshot anyway (crash-consistent) or skip
    /// the instance; either way the run fails.
    #[arg(long, value_enum, default_value_t = HookFailure::Snapshot, env = "EBSNAP_HOOK_FAILURE")]
    pub hook_failure: HookFailure,
}

/// Copies of the snapshots in other regions, for disaster recovery: where
/// they go and how long they stay (what purge needs), and their key.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Copies")]
pub struct CopyArgs {
    #[command(flatten)]
    pub regions: CopyRegionArgs,

    /// The KMS key for the copies of encrypted snapshots (--copy-to); by
    /// default EC2 uses the destination region's default EBS key.
    #[arg(
        long,
        value_name = "KEY",
        requires = "copy_to",
        env = "EBSNAP_COPY_KMS_KEY_ID"
    )]
    pub copy_kms_key_id: Option<String>,
}

/// The regions the copies are in, and how long they are kept there: all
/// that `purge` needs of the copies.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Copies")]
pub struct CopyRegionArgs {
    /// Disaster recovery: copy each new snapshot, once completed, to this
    /// region (repeatable), and purge the copies there under
    /// --copy-retention. The run waits for its snapshots to complete.
    #[arg(long, value_name = "REGION", value_parser = parse_region, env = "EBSNAP_COPY_TO", value_delimiter = ' ')]
    pub copy_to: Vec<String>,

    /// How long the copies made by --copy-to are kept (default: --retention).
    #[arg(long, value_name = "DURATION", requires = "copy_to",
          value_parser = parse_duration, allow_hyphen_values = true, env = "EBSNAP_COPY_RETENTION")]
    pub copy_retention: Option<TimeDelta>,
}

/// Where to talk to EC2: the regions, and the connection.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "AWS")]
pub struct AwsArgs {
    /// A region to work in; repeat for several. Default: the region of the
    /// standard AWS chain (AWS_REGION, profile).
    #[arg(long, value_name = "REGION", value_parser = parse_region, env = "EBSNAP_REGION", value_delimiter = ' ')]
    pub region: Vec<String>,

    /// Every region enabled for the account (DescribeRegions), each handled
    /// in the same run with its own rate limits.
    #[arg(long, conflicts_with = "region", env = "EBSNAP_ALL_REGIONS")]
    pub all_regions: bool,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// `restore`'s AWS flags: it works in one region.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "AWS")]
pub struct RestoreAwsArgs {
    /// The region to restore in. Default: the region of the standard AWS
    /// chain (AWS_REGION, profile).
    #[arg(long, value_name = "REGION", value_parser = parse_region, env = "EBSNAP_REGION")]
    pub region: Option<String>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// As whom, and through which endpoint, to talk to EC2.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "AWS")]
pub struct ConnectionArgs {
    /// The AWS profile to use (default: the standard chain, AWS_PROFILE).
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Talk to this EC2 endpoint instead of AWS's (e.g. a local emulator).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

/// The accounts the backup commands work in.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "AWS")]
pub struct AccountArgs {
    /// Work in the account of this IAM role, assumed through STS with the
    /// standard chain's credentials; repeat for several accounts (one role
    /// each), each handled in the same run, every region its own unit with
    /// its own rate limits. One account failing does not stop the others.
    /// In the environment: ARNs separated by spaces. (list, check and
    /// restore work in one account: give them a profile that assumes the
    /// role, role_arn in ~/.aws/config, with --profile.)
    #[arg(long, env = "EBSNAP_ASSUME_ROLE", value_name = "ARN",
          value_parser = parse_role_arn, value_delimiter = ' ')]
    pub assume_role: Vec<Role>,

    /// The external id the roles' trust policies ask for (sent with every
    /// --assume-role).
    #[arg(
        long,
        env = "EBSNAP_EXTERNAL_ID",
        value_name = "ID",
        requires = "assume_role"
    )]
    pub external_id: Option<String>,
}

/// What to print on stdout, for commands that have nothing to leave out.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Output")]
pub struct FormatArgs {
    /// What to print on stdout.
    #[arg(long, env = "EBSNAP_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// What to print on stdout, and whether to print it on success.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    #[command(flatten)]
    pub format: FormatArgs,

    /// Print nothing on success.
    #[arg(short, long, conflicts_with = "verbose", env = "EBSNAP_QUIET")]
    pub quiet: bool,
}

/// The Prometheus textfile.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Output")]
pub struct MetricsArgs {
    /// After each run, write a Prometheus textfile here (for node_exporter's
    /// textfile collector), atomically.
    #[arg(long, env = "EBSNAP_METRICS_FILE", value_name = "PATH")]
    pub metrics_file: Option<std::path::PathBuf>,
}

/// Change nothing.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Run control")]
pub struct DryRunArgs {
    /// Show what would be done and check permissions with DryRun=true calls;
    /// change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// How a backup run goes: dry or real, one at a time, paced, within a budget.
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Run control")]
pub struct RunControlArgs {
    #[command(flatten)]
    pub dry_run: DryRunArgs,

    /// The lock that keeps two runs of one job apart on this host.
    /// Default: $XDG_RUNTIME_DIR/ebsnap-JOB.lock, else ~/.cache/ebsnap-JOB.lock.
    #[arg(long, value_name = "PATH", env = "EBSNAP_LOCK_FILE")]
    pub lock_file: Option<std::path::PathBuf>,

    /// At most this many snapshot creates, and as many deletes, per second
    /// in each region (EC2 refills its buckets at 5 per second).
    #[arg(long, env = "EBSNAP_MAX_RATE", default_value = "5", value_name = "N",
          value_parser = parse_max_rate, allow_hyphen_values = true)]
    pub max_rate: f64,

    /// The run's time budget: past it, nothing new is started, and the report
    /// says what was not done.
    #[arg(long, env = "EBSNAP_TIMEOUT", default_value = "30m",
          value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub timeout: TimeDelta,
}

/// The logs on stderr: every command logs, so these are global (before or
/// after the command).
#[derive(Debug, Clone, PartialEq, Args)]
#[command(next_help_heading = "Logging")]
pub struct LoggingArgs {
    /// Log more on stderr (-v: progress, -vv: debug). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,

    /// Colour in logs and progress on stderr.
    #[arg(long, global = true, env = "EBSNAP_COLOR", value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,

    /// The format of the logs on stderr.
    #[arg(long, global = true, env = "EBSNAP_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}
