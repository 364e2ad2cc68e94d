//! Flags and environment resolved once into plain data.
//!
//! cli.rs only checks what the user typed; this module turns it into what the
//! program uses (is stdout a terminal? which steps run?), so the rest of the
//! code never looks at flags or the environment again.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::TimeDelta;

use crate::cli::{Cli, Command, ListArgs, RestoreArgs, WaitArgs};
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
    /// `--copy-tags`: whose tags to copy onto the snapshots.
    pub copy_tags: Option<CopyTags>,
    /// `--tag KEY=VALUE` (`EBSNAP_TAG`): the user's own tags, on every
    /// snapshot the job makes and every copy, in the order given.
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

impl From<ListArgs> for ListFilter {
    fn from(args: ListArgs) -> ListFilter {
        ListFilter {
            instance: args.instance,
            volume: args.volume,
        }
    }
}

/// `restore`: what to restore, where, and how long to wait for it. The
/// command line guarantees exactly one of `snapshot` and `instance`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreRequest {
    /// One volume from this snapshot.
    pub snapshot: Option<String>,
    /// Every volume of this instance, from one backup run of the job.
    pub instance: Option<String>,
    /// With `instance`: the newest complete run started at or before this.
    pub at: Option<chrono::DateTime<chrono::Utc>>,
    pub availability_zone: Option<String>,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub size: Option<i32>,
    pub kms_key_id: Option<String>,
    /// Attach each new volume to this instance.
    pub attach_to: Option<String>,
    /// With `snapshot` and `attach_to`: the device to attach at.
    pub device: Option<String>,
    /// `--from-archive`: bring an archived snapshot back first.
    pub from_archive: bool,
    /// How long to wait for the volumes to be available (and attached).
    pub wait_timeout: std::time::Duration,
}

impl From<RestoreArgs> for RestoreRequest {
    fn from(args: RestoreArgs) -> RestoreRequest {
        RestoreRequest {
            snapshot: args.snapshot,
            instance: args.instance,
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
        // --copy-to copies snapshots once completed: it waits as --wait does.
        let copying = !cli.common.copy_to.is_empty();
        let backup = |snapshot: bool, purge: bool, wait: Option<&WaitArgs>| Action::Backup {
            steps: Steps { snapshot, purge },
            wait: wait
                .filter(|w| w.wait || copying)
                .map(|w| to_std(w.wait_timeout)),
        };
        let (command, action) = match cli.command {
            Command::Run(wait) => ("run", backup(true, true, Some(&wait))),
            Command::Snapshot(wait) => ("snapshot", backup(true, false, Some(&wait))),
            Command::Purge => ("purge", backup(false, true, None)),
            Command::List(args) => ("list", Action::List(ListFilter::from(args))),
            Command::Restore(args) => ("restore", Action::Restore(RestoreRequest::from(args))),
            Command::Check(args) => (
                "check",
                Action::Check {
                    max_age: args.max_age,
                },
            ),
            Command::IamPolicy => ("iam-policy", Action::IamPolicy),
            Command::Completions { shell } => ("completions", Action::Completions(shell)),
            Command::Man => ("man", Action::Man),
        };
        let args = cli.common;
        let job = args.job.clone();
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
        Config {
            command,
            action,
            dry_run: args.dry_run,
            policy: Policy {
                job: args.job,
                selector: TagSelector {
                    key: args.tag_key,
                    value: args.tag_value,
                },
                retention,
                keep,
                timezone: args.timezone,
                keep_min: args.keep_min,
                orphans_after: args.orphans_after,
                archive_after: args.archive_after,
                min_interval: args.min_interval,
                max_delete: args.max_delete,
                force: args.force,
                exclude_boot: args.exclude_boot,
                copy_tags: args.copy_tags,
                user_tags: args.tag,
            },
            aws: AwsSettings {
                regions: dedup_keep_order(args.region),
                all_regions: args.all_regions,
                profile: args.profile,
                endpoint_url: args.endpoint_url,
                roles: dedup_keep_order(args.assume_role),
                external_id: args.external_id,
            },
            output: args.output,
            quiet: args.quiet,
            verbosity: args.verbose,
            stdout_is_terminal: std::io::stdout().is_terminal(),
            lock_file: args.lock_file.unwrap_or_else(|| {
                let env_dir = |name: &str| {
                    std::env::var_os(name)
                        .filter(|v| !v.is_empty())
                        .map(PathBuf::from)
                };
                let cache_dir = env_dir("XDG_CACHE_HOME")
                    .or_else(|| env_dir("HOME").map(|home| home.join(".cache")));
                default_lock_file(env_dir("XDG_RUNTIME_DIR"), cache_dir, &job)
            }),
            max_rate: args.max_rate,
            timeout: to_std(args.timeout),
            metrics_file: args.metrics_file,
            per_volume: args.per_volume,
            hooks: (args.pre_hook.is_some() || args.post_hook.is_some()).then(|| Hooks {
                pre: args.pre_hook,
                post: args.post_hook,
                timeout: to_std(args.hook_timeout),
                on_failure: args.hook_failure,
            }),
            color: use_color(
                args.color,
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            ),
            log_format: args.log_format,
            copy: (!args.copy_to.is_empty()).then(|| CopySettings {
                regions: dedup_keep_order(args.copy_to),
                retention: args.copy_retention.or(retention),
                kms_key_id: args.copy_kms_key_id,
            }),
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
