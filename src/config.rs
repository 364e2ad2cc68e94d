//! Flags and environment resolved once into plain data.
//!
//! cli.rs only checks what the user typed; this module turns it into what the
//! program uses (is stdout a terminal? which steps run?), so the rest of the
//! code never looks at flags or the environment again.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::TimeDelta;

pub use crate::cli::RestoreSource;
use crate::cli::{
    unset, AccountArgs, AwsArgs, Cli, Command, CopyArgs, GuardArgs, HookArgs, JobArgs, MetricsArgs,
    OutputArgs, RestoreArgs, RunControlArgs, SnapshotArgs, SnapshotTagArgs,
};
use crate::values::{ColorChoice, CopyTags, HookFailure, LogFormat, OutputFormat, Role};

/// Which steps a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub snapshot: bool,
    pub purge: bool,
}

/// Which instances are backed up (the selection half of the tag contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagSelector {
    pub key: String,
    /// When set, only this exact value selects; otherwise any value but
    /// `false`, `no`, `off`, `0` or empty does.
    pub value: Option<String>,
}

/// The judgement a run applies: what to back up and how long to keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The job name, written as the `ebsnap:job` marker.
    pub job: String,
    pub selector: TagSelector,
    /// Snapshots younger than this are kept (`--retention`, also spelt
    /// `--keep-within`); `None` when only calendar rules keep snapshots.
    pub retention: Option<TimeDelta>,
    /// The calendar rules (`--keep-last`, `--keep-hourly` ...).
    pub keep: KeepRules,
    /// The timezone of the calendar rules' periods (`--timezone`).
    pub timezone: chrono_tz::Tz,
    /// The newest this many completed snapshots of a volume are kept however
    /// old they are (`--keep-min`).
    pub keep_min: usize,
    /// `--orphans-after`: purge deletes every snapshot of an orphan series
    /// (its volume gone, or its instance no longer selected), `keep_min`
    /// aside, once the series' newest snapshot is older than this. `None`
    /// (the default): orphans are kept like any volume's backups.
    pub orphans_after: Option<TimeDelta>,
    /// `--archive-after`: a snapshot older than this that only the monthly
    /// or yearly rules keep moves to the archive tier. `None`: none does.
    pub archive_after: Option<TimeDelta>,
    /// A volume with a job snapshot newer than this is not snapshotted again
    /// (`--min-interval`); zero disables.
    pub min_interval: TimeDelta,
    /// `--max-delete`: an absolute cap on the snapshots one purge may delete
    /// in a region without `--force`; none by default (safety rule 8).
    pub max_delete: Option<usize>,
    /// `--force`: lift the delete guard.
    pub force: bool,
    /// `--exclude-boot`: leave out each instance's root volume.
    pub exclude_boot: bool,
    /// `--inherit-tags`: whose tags to copy onto the snapshots.
    pub copy_tags: Option<CopyTags>,
    /// `--snapshot-tag KEY=VALUE` (`EBSNAP_SNAPSHOT_TAG`): the user's own
    /// tags, on every snapshot the job makes and every copy, in the order
    /// given.
    pub user_tags: Vec<(String, String)>,
}

/// The calendar rules of retention: how many hours, days, ... to keep one
/// backup of, and how many newest backups to keep whatever their age. Zero
/// means the rule is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeepRules {
    pub last: usize,
    pub hourly: usize,
    pub daily: usize,
    pub weekly: usize,
    pub monthly: usize,
    pub yearly: usize,
}

impl KeepRules {
    /// Whether any rule is on.
    pub fn any(&self) -> bool {
        *self != KeepRules::default()
    }
}

/// The retention a job has when none is given: a week.
pub const DEFAULT_RETENTION: TimeDelta = TimeDelta::days(7);

/// Where and as whom to talk to EC2; unset fields fall back to the standard
/// AWS chain (environment, profile, instance role).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// Regions to handle in this run; empty means the chain's one region.
    pub regions: Vec<String>,
    /// `--all-regions`: every region enabled for the account.
    pub all_regions: bool,
    pub profile: Option<String>,
    pub endpoint_url: Option<String>,
    /// `--assume-role`: the accounts to work in, one role each; empty means
    /// the account of the chain's own credentials.
    pub roles: Vec<Role>,
    /// `--external-id`: sent with every AssumeRole.
    pub external_id: Option<String>,
}

/// `--copy-to`: where each new snapshot is copied for disaster recovery, and
/// how the copies there are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySettings {
    /// The destination regions; a source region never copies to itself.
    pub regions: Vec<String>,
    /// `--copy-retention` (default: `--retention`); the copies are kept by
    /// the job's calendar rules too.
    pub retention: Option<TimeDelta>,
    /// `--copy-kms-key-id`: the key for copies of encrypted snapshots.
    pub kms_key_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The subcommand's name, as reported (`run`, `snapshot`, `purge`, ...).
    pub command: &'static str,
    pub action: Action,
    /// Send only read calls and `DryRun=true` calls.
    pub dry_run: bool,
    pub policy: Policy,
    pub aws: AwsSettings,
    pub output: OutputFormat,
    /// `-q`: print nothing on success.
    pub quiet: bool,
    /// Number of `-v` given.
    pub verbosity: u8,
    /// Whether a person is likely watching stdout. When not (cron), a
    /// successful real run prints nothing.
    pub stdout_is_terminal: bool,
    /// The advisory lock that keeps two real runs of one job apart.
    pub lock_file: PathBuf,
    /// Most creates (and deletes) per second per region.
    pub max_rate: f64,
    /// The run's time budget.
    pub timeout: std::time::Duration,
    /// Where to write the Prometheus textfile after a run, if anywhere.
    pub metrics_file: Option<PathBuf>,
    /// `--per-volume`: one CreateSnapshot per volume, not one CreateSnapshots
    /// per instance.
    pub per_volume: bool,
    /// `--pre-hook`/`--post-hook`, when either is given.
    pub hooks: Option<Hooks>,
    /// Whether logs and progress on stderr may use colour.
    pub color: bool,
    pub log_format: LogFormat,
    /// `--copy-to`, when given.
    pub copy: Option<CopySettings>,
}

/// What the command does.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `run`, `snapshot` and `purge`: the backup job, and with `--wait`, how
    /// long to wait for this run's snapshots to complete.
    Backup {
        steps: Steps,
        wait: Option<std::time::Duration>,
    },
    /// `list`: the job's snapshots, optionally of one instance or volume.
    List(ListFilter),
    /// `restore`: new volumes from snapshots.
    Restore(RestoreRequest),
    /// `check`: is every selected volume's newest completed backup younger
    /// than `max_age`?
    Check { max_age: TimeDelta },
    /// `iam-policy`: print the job's least-privilege policy.
    IamPolicy,
    /// `completions SHELL`: print a completion script.
    Completions(clap_complete::Shell),
    /// `man`: print the man page.
    Man,
}

/// The hooks of a run (`--pre-hook`, `--post-hook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hooks {
    pub pre: Option<String>,
    pub post: Option<String>,
    pub timeout: std::time::Duration,
    pub on_failure: HookFailure,
}

/// `list`: which of the job's snapshots to show; none set means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Only this instance's snapshots.
    pub instance: Option<String>,
    /// Only this volume's snapshots.
    pub volume: Option<String>,
}

/// `restore`: what to restore, where, and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreRequest {
    /// One volume from a snapshot, or every volume of an instance from one
    /// backup run of the job.
    pub source: RestoreSource,
    /// With an instance: the newest complete run started at or before this.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    pub availability_zone: Option<String>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub size: Option<i32>,
    pub kms_key_id: Option<String>,
    /// Attach each new volume to this instance.
    pub attach_to: Option<String>,
    /// With a snapshot and `attach_to`: the device to attach at.
    pub device: Option<String>,
    /// `--from-archive`: bring an archived snapshot back first.
    pub from_archive: bool,
    /// How long to wait for the volumes to be available (and attached).
    pub wait_timeout: std::time::Duration,
}

impl From<RestoreArgs> for RestoreRequest {
    fn from(args: RestoreArgs) -> RestoreRequest {
        RestoreRequest {
            source: args.source,
            at: args.at,
            availability_zone: args.availability_zone,
            volume_type: args.volume_type,
            iops: args.iops,
            throughput: args.throughput,
            size: args.size,
            kms_key_id: args.kms_key_id,
            attach_to: args.attach_to,
            device: args.device,
            from_archive: args.from_archive,
            wait_timeout: to_std(args.wait_timeout),
        }
    }
}

/// Colour on stderr: as asked, or when it is a terminal and NO_COLOR unset.
pub fn use_color(choice: ColorChoice, stderr_is_terminal: bool, no_color: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => stderr_is_terminal && !no_color,
    }
}

fn to_std(duration: TimeDelta) -> std::time::Duration {
    duration.to_std().unwrap_or(std::time::Duration::MAX)
}

impl Config {
    /// The backup steps this command runs (none for list, restore, check).
    pub fn steps(&self) -> Steps {
        match self.action {
            Action::Backup { steps, .. } => steps,
            _ => Steps {
                snapshot: false,
                purge: false,
            },
        }
    }
    pub fn from_cli(cli: Cli) -> Config {
        let (command, action, flags) = Flags::of(cli.command);
        let logging = cli.logging;
        let Flags {
            job,
            guard,
            snapshots,
            tags,
            hooks,
            copies,
            aws,
            accounts,
            output,
            metrics,
            control,
        } = flags;
        // --copy-to copies snapshots once completed: it waits as --wait does.
        let action = match action {
            Action::Backup { steps, .. } => Action::Backup {
                steps,
                wait: (steps.snapshot && (snapshots.wait || !copies.regions.copy_to.is_empty()))
                    .then(|| to_std(snapshots.wait_timeout)),
            },
            other => other,
        };
        let (selection, args) = (job.selection, job.retention);
        let keep = KeepRules {
            last: args.keep_last.unwrap_or(0),
            hourly: args.keep_hourly.unwrap_or(0),
            daily: args.keep_daily.unwrap_or(0),
            weekly: args.keep_weekly.unwrap_or(0),
            monthly: args.keep_monthly.unwrap_or(0),
            yearly: args.keep_yearly.unwrap_or(0),
        };
        // A week unless a calendar rule says what to keep: `--keep-daily 7`
        // alone keeps seven dailies, not every hourly of the week too.
        let retention = args
            .retention
            .or((!keep.any()).then_some(DEFAULT_RETENTION));
        let job = selection.job.name;
        Config {
            command,
            action,
            dry_run: control.dry_run.dry_run,
            lock_file: control.lock_file.unwrap_or_else(|| {
                let env_dir = |name: &str| {
                    std::env::var_os(name)
                        .filter(|v| !v.is_empty())
                        .map(PathBuf::from)
                };
                let cache_dir = env_dir("XDG_CACHE_HOME")
                    .or_else(|| env_dir("HOME").map(|home| home.join(".cache")));
                default_lock_file(env_dir("XDG_RUNTIME_DIR"), cache_dir, &job)
            }),
            policy: Policy {
                job,
                selector: TagSelector {
                    key: selection.tag_key,
                    value: selection.tag_value,
                },
                retention,
                keep,
                timezone: args.timezone,
                keep_min: args.keep_min,
                orphans_after: args.orphans_after,
                archive_after: args.archive_after,
                min_interval: snapshots.min_interval,
                max_delete: guard.max_delete,
                force: guard.force,
                exclude_boot: selection.exclude_boot,
                copy_tags: tags.inherit_tags,
                user_tags: tags.snapshot_tag,
            },
            aws: AwsSettings {
                regions: dedup_keep_order(aws.region),
                all_regions: aws.all_regions,
                profile: aws.connection.profile,
                endpoint_url: aws.connection.endpoint_url,
                roles: dedup_keep_order(accounts.assume_role),
                external_id: accounts.external_id,
            },
            output: output.format.output,
            quiet: output.quiet,
            verbosity: logging.verbose,
            stdout_is_terminal: std::io::stdout().is_terminal(),
            max_rate: control.max_rate,
            timeout: to_std(control.timeout),
            metrics_file: metrics.metrics_file,
            per_volume: snapshots.per_volume,
            hooks: (hooks.pre_hook.is_some() || hooks.post_hook.is_some()).then(|| Hooks {
                pre: hooks.pre_hook,
                post: hooks.post_hook,
                timeout: to_std(hooks.hook_timeout),
                on_failure: hooks.hook_failure,
            }),
            color: use_color(
                logging.color,
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            ),
            log_format: logging.log_format,
            copy: (!copies.regions.copy_to.is_empty()).then(|| CopySettings {
                regions: dedup_keep_order(copies.regions.copy_to),
                retention: copies.regions.copy_retention.or(retention),
                kms_key_id: copies.copy_kms_key_id,
            }),
        }
    }
}

/// Every group of flags, as the command gave them or, for the groups it
/// does not take, clap's defaults (`cli::unset`): so a command without
/// hooks has none, whatever the environment says.
struct Flags {
    job: JobArgs,
    guard: GuardArgs,
    snapshots: SnapshotArgs,
    tags: SnapshotTagArgs,
    hooks: HookArgs,
    copies: CopyArgs,
    aws: AwsArgs,
    accounts: AccountArgs,
    output: OutputArgs,
    metrics: MetricsArgs,
    control: RunControlArgs,
}

impl Flags {
    /// The command's name, what it does, and its flags.
    fn of(command: Command) -> (&'static str, Action, Flags) {
        let unset_all = || Flags {
            job: unset(),
            guard: unset(),
            snapshots: unset(),
            tags: unset(),
            hooks: unset(),
            copies: unset(),
            aws: unset(),
            accounts: unset(),
            output: unset(),
            metrics: unset(),
            control: unset(),
        };
        // The wait is settled in from_cli, which sees --copy-to.
        let backup = |snapshot: bool, purge: bool| Action::Backup {
            steps: Steps { snapshot, purge },
            wait: None,
        };
        match command {
            Command::Run(a) => (
                "run",
                backup(true, true),
                Flags {
                    job: a.job,
                    guard: a.guard,
                    snapshots: a.snapshots,
                    tags: a.tags,
                    hooks: a.hooks,
                    copies: a.copies,
                    aws: a.aws,
                    accounts: a.accounts,
                    output: a.output,
                    metrics: a.metrics,
                    control: a.control,
                },
            ),
            Command::Snapshot(a) => (
                "snapshot",
                backup(true, false),
                Flags {
                    job: a.job,
                    snapshots: a.snapshots,
                    tags: a.tags,
                    hooks: a.hooks,
                    copies: a.copies,
                    aws: a.aws,
                    accounts: a.accounts,
                    output: a.output,
                    metrics: a.metrics,
                    control: a.control,
                    ..unset_all()
                },
            ),
            Command::Purge(a) => (
                "purge",
                backup(false, true),
                Flags {
                    job: a.job,
                    guard: a.guard,
                    copies: CopyArgs {
                        regions: a.copies,
                        ..unset()
                    },
                    aws: a.aws,
                    accounts: a.accounts,
                    output: a.output,
                    metrics: a.metrics,
                    control: a.control,
                    ..unset_all()
                },
            ),
            Command::List(a) => (
                "list",
                Action::List(ListFilter {
                    instance: a.instance,
                    volume: a.volume,
                }),
                Flags {
                    job: a.job,
                    guard: a.guard,
                    aws: a.aws,
                    output: OutputArgs {
                        format: a.format,
                        ..unset()
                    },
                    ..unset_all()
                },
            ),
            Command::Check(a) => (
                "check",
                Action::Check { max_age: a.max_age },
                Flags {
                    job: a.job,
                    aws: a.aws,
                    output: a.output,
                    metrics: a.metrics,
                    ..unset_all()
                },
            ),
            Command::Restore(a) => {
                let mut flags = unset_all();
                flags.job.selection.job = a.job.clone();
                flags.aws = AwsArgs {
                    region: a.aws.region.clone().into_iter().collect(),
                    all_regions: false,
                    connection: a.aws.connection.clone(),
                };
                flags.output = a.output.clone();
                flags.control.dry_run = a.dry_run.clone();
                ("restore", Action::Restore(RestoreRequest::from(a)), flags)
            }
            Command::IamPolicy(a) => (
                "iam-policy",
                Action::IamPolicy,
                Flags {
                    job: a.job,
                    tags: a.tags,
                    copies: a.copies,
                    ..unset_all()
                },
            ),
            Command::Completions { shell } => {
                ("completions", Action::Completions(shell), unset_all())
            }
            Command::Man => ("man", Action::Man, unset_all()),
        }
    }
}

/// `$XDG_RUNTIME_DIR/ebsnap-JOB.lock`, else in the user's cache directory
/// (`$XDG_CACHE_HOME`, `~/.cache`), else `/tmp`; the job name made safe for
/// a file name. A per-user place, so another user of the host can neither
/// hold the lock nor be locked out (cron gives no XDG_RUNTIME_DIR).
pub fn default_lock_file(
    runtime_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    job: &str,
) -> PathBuf {
    let safe: String = job
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    runtime_dir
        .filter(|dir| dir.is_dir())
        .or(cache_dir)
        .unwrap_or_else(|| PathBuf::from("/tmp"))
        .join(format!("ebsnap-{safe}.lock"))
}

fn dedup_keep_order<T: PartialEq>(items: Vec<T>) -> Vec<T> {
    let mut seen = Vec::with_capacity(items.len());
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// Fixtures for tests across the crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// The policy of `ebsnap run` with every default: job `default`, any
    /// `Scheduled-Snapshots` value, 7 days, keep-min 1, no --orphans-after,
    /// min-interval 10m,
    /// no --max-delete, no --force.
    pub fn policy() -> Policy {
        Policy {
            job: "default".into(),
            selector: TagSelector {
                key: "Scheduled-Snapshots".into(),
                value: None,
            },
            retention: Some(TimeDelta::days(7)),
            keep: KeepRules::default(),
            timezone: chrono_tz::Tz::UTC,
            keep_min: 1,
            orphans_after: None,
            archive_after: None,
            min_interval: TimeDelta::minutes(10),
            max_delete: None,
            force: false,
            exclude_boot: false,
            copy_tags: None,
            user_tags: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_files_are_per_job_per_user_and_safe_names() {
        let tmp = PathBuf::from("/tmp");
        let cache = PathBuf::from("/home/backup/.cache");
        assert_eq!(
            default_lock_file(None, None, "default"),
            tmp.join("ebsnap-default.lock")
        );
        assert_eq!(
            default_lock_file(None, None, "db nightly/a"),
            tmp.join("ebsnap-db_nightly_a.lock")
        );
        assert_eq!(
            default_lock_file(None, Some(cache.clone()), "x"),
            cache.join("ebsnap-x.lock"),
            "cron"
        );
        let missing = PathBuf::from("/nonexistent-runtime-dir");
        assert_eq!(
            default_lock_file(Some(missing), Some(cache.clone()), "x"),
            cache.join("ebsnap-x.lock")
        );
        let run_dir = std::env::temp_dir();
        assert_eq!(
            default_lock_file(Some(run_dir.clone()), Some(cache), "x"),
            run_dir.join("ebsnap-x.lock")
        );
    }

    #[test]
    fn colour_follows_the_choice_the_terminal_and_no_color() {
        assert!(use_color(ColorChoice::Auto, true, false));
        assert!(
            !use_color(ColorChoice::Auto, false, false),
            "not a terminal"
        );
        assert!(!use_color(ColorChoice::Auto, true, true), "NO_COLOR");
        assert!(use_color(ColorChoice::Always, false, true));
        assert!(!use_color(ColorChoice::Never, true, false));
    }

    fn config(args: &[&str]) -> Config {
        use clap::Parser;
        Config::from_cli(Cli::try_parse_from([&["ebsnap"], args].concat()).unwrap())
    }

    #[test]
    fn every_command_makes_a_config_with_the_groups_it_does_not_take_at_their_defaults() {
        for args in [
            &["run"][..],
            &["snapshot"],
            &["purge"],
            &["list"],
            &["check", "--max-age", "1d"],
            &["restore", "--snapshot", "snap-1"],
            &["iam-policy"],
            &["completions", "bash"],
            &["man"],
        ] {
            let config = config(args);
            assert_eq!(config.command, args[0]);
            assert_eq!(config.policy.keep_min, 1, "{args:?}");
            assert_eq!(
                config.policy.min_interval,
                TimeDelta::minutes(10),
                "{args:?}"
            );
            assert_eq!(config.max_rate, 5.0, "{args:?}");
        }
        let restore = config(&[
            "restore",
            "--instance",
            "i-1",
            "--job",
            "weekly",
            "--region",
            "eu-west-1",
            "-n",
        ]);
        assert_eq!(restore.policy.job, "weekly");
        assert_eq!(restore.aws.regions, ["eu-west-1"]);
        assert!(restore.dry_run);
        assert!(matches!(
            restore.action,
            Action::Restore(RestoreRequest { source: RestoreSource::Instance(ref id), .. }) if id == "i-1"
        ));
    }

    #[test]
    fn purge_purges_the_copies_in_copy_to_regions() {
        let purge = config(&["purge", "--copy-to", "eu-west-1", "--copy-retention", "30d"]);
        let copy = purge.copy.expect("purge takes --copy-to");
        assert_eq!(copy.regions, ["eu-west-1"]);
        assert_eq!(copy.retention, Some(chrono::TimeDelta::days(30)));
        assert!(matches!(
            purge.action,
            Action::Backup {
                steps: Steps {
                    snapshot: false,
                    purge: true
                },
                wait: None,
            }
        ));
    }

    #[test]
    fn copies_make_a_backup_wait_as_wait_does() {
        let wait = |args: &[&str]| match config(args).action {
            Action::Backup { wait, .. } => wait,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(&["run"]), None);
        assert_eq!(
            wait(&["run", "--wait"]),
            Some(std::time::Duration::from_secs(2 * 3600))
        );
        assert_eq!(
            wait(&["snapshot", "--copy-to", "eu-west-1"]),
            Some(std::time::Duration::from_secs(2 * 3600))
        );
        assert_eq!(
            wait(&["purge", "--copy-to", "eu-west-1"]),
            None,
            "purge makes no snapshot to wait for, and purges the copies at once"
        );
    }

    #[test]
    fn regions_are_deduplicated_in_order() {
        let regions = vec![
            "eu-west-1".to_string(),
            "us-east-1".into(),
            "eu-west-1".into(),
        ];
        assert_eq!(dedup_keep_order(regions), vec!["eu-west-1", "us-east-1"]);
    }
}
