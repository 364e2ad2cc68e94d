//! Flags and environment resolved once into plain data.
//!
//! cli.rs only checks what the user typed; this module turns it into what the
//! program uses (is stdout a terminal? which steps run?), so the rest of the
//! code never looks at flags or the environment again.

use std::io::IsTerminal;
use std::path::PathBuf;

use chrono::TimeDelta;

use crate::cli::{
    Cli, ColorChoice, Command, ListArgs, LogFormat, OutputFormat, RestoreArgs, WaitArgs,
};

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
    /// Snapshots older than this are deleted (`--retention`).
    pub retention: TimeDelta,
    /// The newest this many completed snapshots of a volume are kept however
    /// old they are (`--keep-min`).
    pub keep_min: usize,
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
    pub copy_tags: Option<crate::cli::CopyTags>,
}

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
    /// `--copy-retention` (default: `--retention`).
    pub retention: TimeDelta,
    /// `--copy-kms-key-id`: the key for copies of encrypted snapshots.
    pub kms_key_id: Option<String>,
}

/// An IAM role to assume (`--assume-role`), and the account it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub arn: String,
    /// The 12-digit account id, from the ARN.
    pub account: String,
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
    pub hooks: Option<crate::hooks::Hooks>,
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
    List(ListArgs),
    /// `restore`: new volumes from snapshots.
    Restore(RestoreArgs),
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
            Command::List(args) => ("list", Action::List(args)),
            Command::Restore(args) => ("restore", Action::Restore(args)),
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
                retention: args.retention,
                keep_min: args.keep_min,
                min_interval: args.min_interval,
                max_delete: args.max_delete,
                force: args.force,
                exclude_boot: args.exclude_boot,
                copy_tags: args.copy_tags,
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
            hooks: (args.pre_hook.is_some() || args.post_hook.is_some()).then(|| {
                crate::hooks::Hooks {
                    pre: args.pre_hook,
                    post: args.post_hook,
                    timeout: to_std(args.hook_timeout),
                    on_failure: args.hook_failure,
                }
            }),
            color: use_color(
                args.color,
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()),
            ),
            log_format: args.log_format,
            copy: (!args.copy_to.is_empty()).then(|| CopySettings {
                regions: dedup_keep_order(args.copy_to),
                retention: args.copy_retention.unwrap_or(args.retention),
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

/// Parses a duration such as `7d`, `36h`, `2w`, `90m` or `3600s`.
/// Zero and negative durations are refused: a zero retention would delete
/// every backup but the `--keep-min` newest.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    let hint = "write a whole number and a unit (s, m, h, d or w), e.g. 7d or 36h";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("'{text}' is not a duration: {hint}"));
    }
    let amount: i64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large: {hint}"))?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(format!("'{text}' has no unit: {hint}")),
        other => return Err(format!("unknown unit '{other}' in '{text}': {hint}")),
    };
    if amount == 0 {
        return Err(format!(
            "'{text}' is zero: a duration must be longer than that"
        ));
    }
    amount
        .checked_mul(seconds_per_unit)
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(|| format!("'{text}' is too large: {hint}"))
}

/// Renders a duration the way a user would likely have typed it: in days,
/// hours, minutes or seconds (`7d`, `36h`; two weeks read `14d`).
pub fn format_duration(duration: TimeDelta) -> String {
    let seconds = duration.num_seconds();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// Checks that a job name can be a tag value and read well in reports:
/// letters, digits, spaces and `_ . : / = + - @`, at most 128 characters.
pub fn parse_job(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the job name is empty: give a name such as 'default' or 'hourly'".into());
    }
    if text.chars().count() > 128 {
        return Err("the job name is longer than 128 characters".into());
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_alphanumeric() || " _.:/=+-@".contains(*c)))
    {
        return Err(format!(
            "the job name may not contain '{bad}': use letters, digits, spaces and _ . : / = + - @"
        ));
    }
    Ok(text.to_owned())
}

/// Checks `--keep-min`: a whole number, at least 1, so that the last good
/// backup of a volume is never deleted.
pub fn parse_keep_min(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 would let purge delete a volume's last good backup: give 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{text}' is not a whole number: give how many snapshots to keep, e.g. 1"
        )),
    }
}

/// Checks `--tag-value`: an empty one would quietly select only instances
/// tagged with an empty value, i.e. almost never what was meant.
pub fn parse_tag_value(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the tag value is empty: leave --tag-value (and EBSNAP_TAG_VALUE) out to select any value but false, no, off or 0".into());
    }
    Ok(text.to_owned())
}

/// `--min-interval`: a duration, or 0 to disable.
pub fn parse_min_interval(text: &str) -> Result<TimeDelta, String> {
    match text.trim() {
        "0" | "0s" | "0m" | "0h" | "0d" => Ok(TimeDelta::zero()),
        other => parse_duration(other),
    }
}

/// `--max-delete`: a whole number, 0 or more.
pub fn parse_max_delete(text: &str) -> Result<usize, String> {
    text.trim().parse::<usize>().map_err(|_| {
        format!("'{text}' is not a whole number: give how many snapshots one purge may delete, e.g. 100")
    })
}

/// `--max-rate`: calls per second, more than 0 and at most EC2's burst.
pub fn parse_max_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 100.0 => Ok(rate),
        _ => Err(format!("'{text}' is not a rate: give calls per second, more than 0 and at most 100, e.g. 2 or 0.5")),
    }
}

/// Checks the shape of a region name (`us-east-1`, `us-gov-west-1`,
/// `ap-southeast-4`), so a typo fails at once instead of as a DNS error.
pub fn parse_region(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if well_formed {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not an AWS region name: use one such as us-east-1 or eu-west-2"
        ))
    }
}

/// Checks `--assume-role`: an IAM role ARN,
/// `arn:<partition>:iam::<12-digit account>:role/<path/><name>`, so a typo
/// fails at once, before any call, and the account it names is known.
pub fn parse_role_arn(text: &str) -> Result<Role, String> {
    let hint = "give a role's ARN, e.g. arn:aws:iam::111111111111:role/ebsnap";
    let fields: Vec<&str> = text.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = fields[..] else {
        return Err(format!("'{text}' is not an IAM role ARN: {hint}"));
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
    if arn != "arn" || !partition_ok || service != "iam" || !region.is_empty() {
        return Err(format!("'{text}' is not an IAM role ARN: {hint}"));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "'{account}' in '{text}' is not an AWS account id (12 digits): {hint}"
        ));
    }
    let name_ok = |name: &str| {
        !name.is_empty()
            && !name.ends_with('/')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
    };
    match resource.strip_prefix("role/") {
        Some(name) if name_ok(name) => Ok(Role {
            arn: text.to_owned(),
            account: account.to_owned(),
        }),
        _ => Err(format!(
            "'{text}' does not name a role (role/NAME after the account id): {hint}"
        )),
    }
}

/// Checks a tag key: not empty, and not in the `aws:` namespace EC2 reserves.
pub fn parse_tag_key(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the tag key is empty: give the key that marks instances to back up, e.g. Scheduled-Snapshots".into());
    }
    if text.len() > 128 {
        return Err("the tag key is longer than 128 characters".into());
    }
    if text.to_ascii_lowercase().starts_with("aws:") {
        return Err("tag keys starting with 'aws:' are reserved by AWS".into());
    }
    Ok(text.to_owned())
}

/// Fixtures for tests across the crate.
#[cfg(test)]
pub mod testing {
    use super::*;

    /// The policy of `ebsnap run` with every default: job `default`, any
    /// `Scheduled-Snapshots` value, 7 days, keep-min 1, min-interval 10m,
    /// no --max-delete, no --force.
    pub fn policy() -> Policy {
        Policy {
            job: "default".into(),
            selector: TagSelector {
                key: "Scheduled-Snapshots".into(),
                value: None,
            },
            retention: TimeDelta::days(7),
            keep_min: 1,
            min_interval: TimeDelta::minutes(10),
            max_delete: None,
            force: false,
            exclude_boot: false,
            copy_tags: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("7d"), Ok(TimeDelta::days(7)));
        assert_eq!(parse_duration("36h"), Ok(TimeDelta::hours(36)));
        assert_eq!(parse_duration("2w"), Ok(TimeDelta::weeks(2)));
        assert_eq!(parse_duration("90m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("3600s"), Ok(TimeDelta::seconds(3600)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for bad in [
            "7x",
            "-1d",
            "0d",
            "d",
            "7",
            "",
            "1.5d",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_duration("7x")
            .unwrap_err()
            .contains("unknown unit 'x'"));
        assert!(parse_duration("0d").unwrap_err().contains("zero"));
        assert!(parse_duration("7").unwrap_err().contains("no unit"));
    }

    #[test]
    fn durations_render_as_typed() {
        assert_eq!(format_duration(TimeDelta::days(7)), "7d");
        assert_eq!(format_duration(TimeDelta::weeks(2)), "14d");
        assert_eq!(format_duration(TimeDelta::days(8)), "8d");
        assert_eq!(format_duration(TimeDelta::hours(36)), "36h");
        assert_eq!(format_duration(TimeDelta::seconds(61)), "61s");
    }

    #[test]
    fn job_names_must_fit_a_tag_value() {
        assert_eq!(parse_job("hourly-db").as_deref(), Ok("hourly-db"));
        assert!(parse_job("").is_err());
        assert!(parse_job("a;b").unwrap_err().contains("';'"));
        assert!(parse_job(&"x".repeat(129)).is_err());
    }

    #[test]
    fn region_names_are_checked_for_shape() {
        for good in [
            "us-east-1",
            "eu-west-2",
            "us-gov-west-1",
            "ap-southeast-4",
            "il-central-1",
        ] {
            assert_eq!(parse_region(good).as_deref(), Ok(good));
        }
        for bad in [
            "mars-1",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "useast1",
            "",
            "us--1",
        ] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
        assert!(parse_region("mars-1")
            .unwrap_err()
            .contains("not an AWS region name"));
    }

    #[test]
    fn min_interval_may_be_zero_and_rates_must_be_positive() {
        assert_eq!(parse_min_interval("0"), Ok(TimeDelta::zero()));
        assert_eq!(parse_min_interval("10m"), Ok(TimeDelta::minutes(10)));
        assert!(parse_min_interval("5x").is_err());
        assert_eq!(parse_max_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "fast", "101"] {
            assert!(parse_max_rate(bad).is_err(), "{bad}");
        }
    }

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
    fn keep_min_is_at_least_one() {
        assert_eq!(parse_keep_min("3"), Ok(3));
        assert!(parse_keep_min("0")
            .unwrap_err()
            .contains("last good backup"));
        assert!(parse_keep_min("-1").unwrap_err().contains("whole number"));
        assert!(parse_keep_min("many").is_err());
    }

    #[test]
    fn tag_keys_must_be_usable() {
        assert!(parse_tag_key("").is_err());
        assert!(parse_tag_key("aws:foo").is_err());
        assert_eq!(parse_tag_key("Backup").as_deref(), Ok("Backup"));
    }

    #[test]
    fn role_arns_name_their_account() {
        for (arn, account) in [
            ("arn:aws:iam::111111111111:role/backup", "111111111111"),
            (
                "arn:aws:iam::012345678901:role/ops/ebsnap-backup",
                "012345678901",
            ),
            (
                "arn:aws-us-gov:iam::222222222222:role/a+b=c,d.e@f_g-h",
                "222222222222",
            ),
            ("arn:aws-cn:iam::333333333333:role/x", "333333333333"),
        ] {
            let role = parse_role_arn(arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
            assert_eq!(role.arn, arn);
            assert_eq!(role.account, account);
        }
    }

    #[test]
    fn bad_role_arns_say_how_to_write_one() {
        for bad in [
            "",
            "backup",
            "arn:aws:iam::111111111111:user/backup",
            "arn:aws:iam::111111111111:role/",
            "arn:aws:iam::111111111111:role/dir/",
            "arn:aws:iam::111111111111:role/bad name",
            "arn:aws:iam::11111111111:role/backup",
            "arn:aws:iam::1111111111111:role/backup",
            "arn:aws:iam::11111111111x:role/backup",
            "arn:aws:iam:us-east-1:111111111111:role/backup",
            "arn:aws:sts::111111111111:role/backup",
            "arn:gcp:iam::111111111111:role/backup",
            "arn:aws:iam::111111111111",
        ] {
            let err = parse_role_arn(bad).expect_err(bad);
            assert!(
                err.contains("arn:aws:iam::111111111111:role/ebsnap"),
                "{bad}: {err}"
            );
        }
        assert!(parse_role_arn("arn:aws:iam::1234:role/x")
            .unwrap_err()
            .contains("'1234' in 'arn:aws:iam::1234:role/x' is not an AWS account id"));
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
