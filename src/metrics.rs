//! `--metrics-file`: a Prometheus textfile for node_exporter's textfile
//! collector, so monitoring notices when backups stop or start failing.
//!
//! Named by the book (Prometheus, "Metric and label naming"): units in the
//! name (`_seconds`), no `_total` (these are gauges of the last run, not
//! counters), and the job in `ebsnap_job`, since `job` is the scrape job's
//! own label. Several jobs may share one file: each run replaces only its
//! own job's samples for the regions (and accounts) it covered, and keeps a
//! region's last success time when this run failed there; a lock beside the
//! file keeps two jobs that write it at once from losing each other's
//! update. Written atomically, mode 0644 whatever the umask (a temporary
//! file in the same directory, fsync, rename), so the collector, running as
//! another user, reads the whole file or the previous one, never half.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use crate::backup::report::{FailureAction, Report};
use crate::check::{CheckReport, Freshness};

/// Each metric and its help text, in the order they are written.
const METRICS: [(&str, &str); 12] = [
    (
        "ebsnap_last_run_timestamp_seconds",
        "When the last run of the job finished in the region.",
    ),
    (
        "ebsnap_last_success_timestamp_seconds",
        "When the last run with no failure finished in the region.",
    ),
    (
        "ebsnap_last_run_duration_seconds",
        "How long the last run took.",
    ),
    (
        "ebsnap_last_run_created_snapshots",
        "Snapshots the last run created.",
    ),
    (
        "ebsnap_last_run_deleted_snapshots",
        "Snapshots the last run deleted.",
    ),
    (
        "ebsnap_last_run_archived_snapshots",
        "Snapshots the last run sent to the archive tier (--archive-after).",
    ),
    (
        "ebsnap_kept_snapshots",
        "Snapshots of the job the last run kept.",
    ),
    (
        "ebsnap_last_run_failures",
        "Actions of the last run that failed or were not started, by action.",
    ),
    (
        "ebsnap_volume_last_snapshot_timestamp_seconds",
        "When the newest snapshot the job made of the volume started.",
    ),
    (
        "ebsnap_volume_last_completed_snapshot_timestamp_seconds",
        "When the volume's newest completed snapshot of the job started, as the last check found it.",
    ),
    (
        "ebsnap_last_check_timestamp_seconds",
        "When the last check of the job finished in the region.",
    ),
    (
        "ebsnap_check_stale_volumes",
        "Selected volumes whose newest completed backup is older than --max-age, or that have none.",
    ),
];

/// One sample: its metric name and its labels, `ebsnap_job` first.
type Key = (String, Vec<(String, String)>);

/// Reads the samples ebsnap wrote: `name{ebsnap_job="..",...} value`. Other
/// lines are not ebsnap's, and the file is ebsnap's alone: they are left
/// out (an older ebsnap's samples, labelled `job`, among them).
fn parse(existing: &str) -> BTreeMap<Key, f64> {
    let mut samples = BTreeMap::new();
    for line in existing.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let labels: Vec<(String, String)> = labels
            .split(',')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                Some((k.to_owned(), v.trim_matches('"').to_owned()))
            })
            .collect();
        if labels.first().is_some_and(|(k, _)| k == "ebsnap_job") {
            if let Ok(value) = value.trim().parse() {
                samples.insert((name.to_owned(), labels), value);
            }
        }
    }
    samples
}

/// Checks, before a run changes anything, that the metrics file can be
/// written where it is asked for: its directory exists and is writable, and
/// the file, if there, is a Prometheus textfile.
pub fn check_writable(path: &Path) -> Result<()> {
    let dir = directory_of(path);
    let probe = dir.join(format!(".ebsnap-probe.{}", std::process::id()));
    File::create(&probe)
        .and_then(|_| std::fs::remove_file(&probe))
        .with_context(|| {
            format!(
                "cannot write the metrics file's directory {}: create it, or give it to this user, or change --metrics-file",
                dir.display()
            )
        })?;
    match std::fs::read_to_string(path) {
        Ok(text) => check_format(&text).with_context(|| {
            format!(
                "{} is not a Prometheus textfile: remove it, or change --metrics-file",
                path.display()
            )
        }),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(err).with_context(|| {
            format!(
                "cannot read the metrics file {}: check its permissions",
                path.display()
            )
        }),
    }
}

/// A textfile's lines: comments, blank lines, and `name[{labels}] value`.
fn check_format(text: &str) -> Result<()> {
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let value = line.rsplit(' ').next().unwrap_or_default();
        let name_ok = line
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
        if !name_ok || !line.contains(' ') || value.parse::<f64>().is_err() {
            bail!("line {} is not a sample: {line:?}", number + 1);
        }
    }
    Ok(())
}

fn directory_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// The labels of a unit's samples: the job, the account when roles are
/// assumed, the region.
fn unit_labels(job: &str, account: Option<&str>, region: &str) -> Vec<(String, String)> {
    let mut labels = vec![("ebsnap_job".to_owned(), job.to_owned())];
    if let Some(account) = account {
        labels.push(("account".to_owned(), account.to_owned()));
    }
    labels.push(("region".to_owned(), region.to_owned()));
    labels
}

/// A volume's samples' labels: its unit's, then the instance, volume and
/// device.
fn volume_labels(
    labels: &[(String, String)],
    instance_id: &str,
    volume_id: &str,
    device: &str,
) -> Vec<(String, String)> {
    with(
        labels,
        &[
            ("instance_id", instance_id),
            ("volume_id", volume_id),
            ("device", device),
        ],
    )
}

fn with(labels: &[(String, String)], more: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut all = labels.to_vec();
    all.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    all
}

/// The new file after a backup run: this run's samples for its job and
/// units, on top of what the existing file says of other jobs and units
/// (and of the volumes this run did not snapshot).
pub(crate) fn render(
    existing: &str,
    report: &Report,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    duration: Duration,
) -> String {
    let mut samples = parse(existing);
    let finished = finished.timestamp() as f64;
    for unit in &report.units {
        let (account, region) = (unit.account.as_deref(), unit.region.as_str());
        let here = |entry_account: Option<&str>, r: &str| r == region && entry_account == account;
        let labels = unit_labels(&report.job, account, region);
        let failed: Vec<FailureAction> = report
            .failed
            .iter()
            .filter(|f| here(f.account.as_deref(), &f.region))
            .map(|f| f.action)
            .collect();
        let mut set = |name: &str, labels: Vec<(String, String)>, value: f64| {
            samples.insert((name.to_owned(), labels), value);
        };
        set(
            "ebsnap_last_run_timestamp_seconds",
            labels.clone(),
            finished,
        );
        if failed.is_empty() {
            set(
                "ebsnap_last_success_timestamp_seconds",
                labels.clone(),
                finished,
            );
        }
        set(
            "ebsnap_last_run_duration_seconds",
            labels.clone(),
            duration.as_secs_f64(),
        );
        let created = || {
            report
                .created
                .iter()
                .filter(|e| here(e.account.as_deref(), &e.region))
        };
        set(
            "ebsnap_last_run_created_snapshots",
            labels.clone(),
            created().count() as f64,
        );
        let deleted = report
            .deleted
            .iter()
            .filter(|e| here(e.account.as_deref(), &e.region))
            .count();
        set(
            "ebsnap_last_run_deleted_snapshots",
            labels.clone(),
            deleted as f64,
        );
        let archived = report
            .archived
            .iter()
            .filter(|e| here(e.account.as_deref(), &e.region))
            .count();
        set(
            "ebsnap_last_run_archived_snapshots",
            labels.clone(),
            archived as f64,
        );
        let kept = report
            .kept
            .iter()
            .filter(|e| here(e.account.as_deref(), &e.region))
            .count();
        set("ebsnap_kept_snapshots", labels.clone(), kept as f64);
        for action in FailureAction::ALL {
            let n = failed.iter().filter(|a| **a == action).count();
            set(
                "ebsnap_last_run_failures",
                with(&labels, &[("action", action.code())]),
                n as f64,
            );
        }
        // A dry run's "created" are plans: main never writes metrics for one.
        for entry in created().filter(|e| e.snapshot_id.is_some()) {
            set(
                "ebsnap_volume_last_snapshot_timestamp_seconds",
                volume_labels(&labels, &entry.instance_id, &entry.volume_id, &entry.device),
                started.timestamp() as f64,
            );
        }
    }
    to_text(&samples)
}

/// The new file after `check`: each region's check time and stale count,
/// and each selected volume's newest completed backup, replacing what the
/// last check of the job said there.
pub(crate) fn render_check(
    existing: &str,
    report: &CheckReport,
    finished: DateTime<Utc>,
) -> String {
    let mut samples = parse(existing);
    let checked: Vec<&String> = report
        .regions
        .iter()
        .filter(|r| !report.failed.iter().any(|f| &&f.region == r))
        .collect();
    // The volumes a check no longer sees (deleted, no longer selected) go.
    samples.retain(|(name, labels), _| {
        name != "ebsnap_volume_last_completed_snapshot_timestamp_seconds"
            || labels[0].1 != report.job
            || !labels
                .iter()
                .any(|(k, v)| k == "region" && checked.contains(&v))
    });
    for region in checked {
        let labels = unit_labels(&report.job, None, region);
        samples.insert(
            (
                "ebsnap_last_check_timestamp_seconds".to_owned(),
                labels.clone(),
            ),
            finished.timestamp() as f64,
        );
        let volumes = || report.volumes.iter().filter(|v| &v.region == region);
        samples.insert(
            ("ebsnap_check_stale_volumes".to_owned(), labels.clone()),
            volumes().filter(|v| v.status != Freshness::Fresh).count() as f64,
        );
        for volume in volumes() {
            if let Some(start) = volume.newest_start_time {
                samples.insert(
                    (
                        "ebsnap_volume_last_completed_snapshot_timestamp_seconds".to_owned(),
                        volume_labels(
                            &labels,
                            &volume.instance_id,
                            &volume.volume_id,
                            &volume.device,
                        ),
                    ),
                    start.timestamp() as f64,
                );
            }
        }
    }
    to_text(&samples)
}

/// The samples in the textfile format, each metric once with its HELP and
/// TYPE, label values escaped as the format requires.
fn to_text(samples: &BTreeMap<Key, f64>) -> String {
    let escape = |v: &str| {
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut out = String::new();
    for (name, help) in METRICS {
        let mut lines = samples.iter().filter(|((n, _), _)| n == name).peekable();
        if lines.peek().is_none() {
            continue;
        }
        out += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
        for ((_, labels), value) in lines {
            let labels: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            out += &format!("{name}{{{}}} {value}\n", labels.join(","));
        }
    }
    out
}

/// Writes the file after a backup run (see `replace`).
pub fn write(
    path: &Path,
    report: &Report,
    started: DateTime<Utc>,
    finished: DateTime<Utc>,
    duration: Duration,
) -> Result<()> {
    replace(path, |existing| {
        render(existing, report, started, finished, duration)
    })
}

/// Writes the file after `check` (see `replace`).
pub fn write_check(path: &Path, report: &CheckReport, finished: DateTime<Utc>) -> Result<()> {
    replace(path, |existing| render_check(existing, report, finished))
}

/// Replaces the file with `update` of what it holds: under a lock beside
/// it (`<file>.lock`), so two jobs sharing it never lose each other's
/// samples; through a temporary file in the same directory, written with
/// mode 0644 and fsynced, then renamed over it; and the temporary file
/// removed if anything fails.
fn replace(path: &Path, update: impl FnOnce(&str) -> String) -> Result<()> {
    let context = || {
        format!(
            "cannot write the metrics file {}: check --metrics-file and its directory",
            path.display()
        )
    };
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(context)?;
    lock.lock().with_context(context)?;
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = update(&existing);
    let temporary = path.with_extension(format!("prom.tmp.{}", std::process::id()));
    let written = (|| -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        // Readable by the collector's user whatever this process's umask.
        file.set_permissions(Permissions::from_mode(0o644))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself, durable.
        File::open(directory_of(path))?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written.with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::accounts::Unit;
    use crate::aws::RegionFailure;
    use crate::backup::report::{CreatedEntry, FailedEntry};
    use chrono::TimeZone;

    fn report(job: &str, regions: &[&str]) -> Report {
        Report {
            dry_run: false,
            command: "run",
            job: job.into(),
            run_id: "r1".into(),
            policy: String::new(),
            regions: regions.iter().map(|r| (*r).to_owned()).collect(),
            accounts: vec![],
            copied: vec![],
            created: vec![],
            deleted: vec![],
            archived: vec![],
            kept: vec![],
            failed: vec![],
            skipped_instances: vec![],
            skipped_volumes: vec![],
            regions_attempted: regions.len(),
            units: regions
                .iter()
                .map(|r| Unit {
                    account: None,
                    region: (*r).to_owned(),
                })
                .collect(),
        }
    }

    fn created(region: &str, volume: &str) -> CreatedEntry {
        CreatedEntry {
            snapshot_id: Some("snap-1".into()),
            volume_id: volume.into(),
            instance_id: "i-1".into(),
            instance_name: None,
            device: "/dev/sdf".into(),
            account: None,
            region: region.into(),
            permission: None,
            tags_dropped: vec![],
        }
    }

    fn failed(action: FailureAction, account: Option<&str>) -> FailedEntry {
        FailedEntry {
            action,
            snapshot_id: None,
            volume_id: Some("vol-1".into()),
            instance_id: None,
            account: account.map(Into::into),
            region: "us-east-1".into(),
            reason: "boom".into(),
        }
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, 0, 0).unwrap()
    }

    fn render_at(existing: &str, report: &Report, hour: u32) -> String {
        render(
            existing,
            report,
            at(hour - 1),
            at(hour),
            Duration::from_millis(2500),
        )
    }

    fn has(text: &str, line: &str) {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }

    #[test]
    fn a_run_writes_every_metric_by_ebsnap_job_and_region() {
        let mut report = report("default", &["us-east-1"]);
        report.created = vec![created("us-east-1", "vol-1"), created("us-east-1", "vol-2")];
        report.failed = vec![failed(FailureAction::Delete, None)];
        let text = render_at("", &report, 3);
        for line in [
            "# TYPE ebsnap_last_run_timestamp_seconds gauge",
            "ebsnap_last_run_timestamp_seconds{ebsnap_job=\"default\",region=\"us-east-1\"} 1795489200",
            "ebsnap_last_run_created_snapshots{ebsnap_job=\"default\",region=\"us-east-1\"} 2",
            "ebsnap_last_run_deleted_snapshots{ebsnap_job=\"default\",region=\"us-east-1\"} 0",
            "ebsnap_kept_snapshots{ebsnap_job=\"default\",region=\"us-east-1\"} 0",
            "ebsnap_last_run_duration_seconds{ebsnap_job=\"default\",region=\"us-east-1\"} 2.5",
            "ebsnap_last_run_failures{ebsnap_job=\"default\",region=\"us-east-1\",action=\"delete\"} 1",
            "ebsnap_last_run_failures{ebsnap_job=\"default\",region=\"us-east-1\",action=\"create\"} 0",
            "ebsnap_volume_last_snapshot_timestamp_seconds{ebsnap_job=\"default\",region=\"us-east-1\",instance_id=\"i-1\",volume_id=\"vol-2\",device=\"/dev/sdf\"} 1795485600",
        ] {
            has(&text, line);
        }
        assert!(
            !text.contains("ebsnap_last_success_timestamp_seconds{"),
            "a failed run\n{text}"
        );
        assert!(!text.contains("_total"), "gauges, no counters\n{text}");
        assert!(
            !text.contains("{job="),
            "job is the scrape job's label\n{text}"
        );
        assert_eq!(
            text.matches("ebsnap_last_run_failures{").count(),
            FailureAction::ALL.len(),
            "every action, 0 when none failed"
        );
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_other_jobs_and_volumes_are_left_alone() {
        let mut first_report = report("default", &["us-east-1"]);
        first_report.created = vec![created("us-east-1", "vol-1")];
        let first = render_at("", &first_report, 3);
        let with_weekly = render_at(&first, &report("weekly", &["us-east-1"]), 4);
        let mut failing = report("default", &["us-east-1"]);
        failing.failed.push(failed(FailureAction::Create, None));
        let text = render_at(&with_weekly, &failing, 5);
        let value = |name: &str, job: &str| {
            let prefix = format!("{name}{{ebsnap_job=\"{job}\",region=\"us-east-1\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .map(str::to_owned)
        };
        assert_eq!(
            value("ebsnap_last_run_timestamp_seconds", "default").as_deref(),
            Some("1795496400")
        );
        assert_eq!(
            value("ebsnap_last_success_timestamp_seconds", "default").as_deref(),
            Some("1795489200")
        );
        assert_eq!(
            value("ebsnap_last_success_timestamp_seconds", "weekly").as_deref(),
            Some("1795492800")
        );
        // vol-1 was not snapshotted by the failed run: its last snapshot stays.
        assert!(
            text.contains("volume_id=\"vol-1\",device=\"/dev/sdf\"} 1795485600"),
            "{text}"
        );
        assert_eq!(
            text.matches("# TYPE ebsnap_last_run_failures gauge")
                .count(),
            1
        );
    }

    #[test]
    fn an_older_files_samples_labelled_job_are_left_out() {
        let old = "# TYPE ebsnap_snapshots_failed gauge\nebsnap_snapshots_failed{job=\"default\",region=\"us-east-1\"} 0\n";
        let text = render_at(old, &report("default", &["us-east-1"]), 3);
        assert!(!text.contains("ebsnap_snapshots_failed"), "{text}");
    }

    #[test]
    fn with_roles_each_account_and_region_has_its_own_lines() {
        let unit = |account: &str| Unit {
            account: Some(account.into()),
            region: "us-east-1".into(),
        };
        let mut two = report("default", &[]);
        two.units = vec![unit("111111111111"), unit("222222222222")];
        two.created = vec![CreatedEntry {
            account: Some("111111111111".into()),
            ..created("us-east-1", "vol-1")
        }];
        two.failed
            .push(failed(FailureAction::AssumeRole, Some("222222222222")));
        let text = render_at("", &two, 3);
        has(&text, "ebsnap_last_run_created_snapshots{ebsnap_job=\"default\",account=\"111111111111\",region=\"us-east-1\"} 1");
        has(&text, "ebsnap_last_run_failures{ebsnap_job=\"default\",account=\"222222222222\",region=\"us-east-1\",action=\"assume-role\"} 1");
        has(&text, "ebsnap_last_success_timestamp_seconds{ebsnap_job=\"default\",account=\"111111111111\",region=\"us-east-1\"} 1795489200");
        assert!(!text.contains("ebsnap_last_success_timestamp_seconds{ebsnap_job=\"default\",account=\"222222222222\""), "{text}");
    }

    #[test]
    fn label_values_are_escaped() {
        let mut report = report("db \"nightly\"", &["us-east-1"]);
        report.created = vec![created("us-east-1", "vol-1")];
        let text = render_at("", &report, 3);
        has(&text, "ebsnap_last_run_created_snapshots{ebsnap_job=\"db \\\"nightly\\\"\",region=\"us-east-1\"} 1");
        check_format(&text).unwrap();
    }

    #[test]
    fn check_writes_each_volumes_newest_completed_backup_and_the_stale_count() {
        use crate::check::VolumeHealth;
        let volume = |id: &str, status: Freshness, newest: Option<DateTime<Utc>>| VolumeHealth {
            region: "us-east-1".into(),
            instance_id: "i-1".into(),
            instance_name: None,
            volume_id: id.into(),
            device: "/dev/sdf".into(),
            status,
            newest_snapshot_id: newest.map(|_| "snap-1".into()),
            newest_start_time: newest,
        };
        let report = CheckReport {
            job: "default".into(),
            max_age: "26h".into(),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            volumes: vec![
                volume("vol-fresh", Freshness::Fresh, Some(at(2))),
                volume("vol-never", Freshness::Never, None),
            ],
            failed: vec![RegionFailure {
                region: "eu-west-1".into(),
                reason: "x".into(),
            }],
            orphans: vec![],
        };
        let before = "ebsnap_volume_last_completed_snapshot_timestamp_seconds{ebsnap_job=\"default\",region=\"us-east-1\",instance_id=\"i-9\",volume_id=\"vol-gone\",device=\"/dev/sdf\"} 1\n";
        let text = render_check(before, &report, at(3));
        has(
            &text,
            "ebsnap_check_stale_volumes{ebsnap_job=\"default\",region=\"us-east-1\"} 1",
        );
        has(&text, "ebsnap_last_check_timestamp_seconds{ebsnap_job=\"default\",region=\"us-east-1\"} 1795489200");
        has(&text, "ebsnap_volume_last_completed_snapshot_timestamp_seconds{ebsnap_job=\"default\",region=\"us-east-1\",instance_id=\"i-1\",volume_id=\"vol-fresh\",device=\"/dev/sdf\"} 1795485600");
        assert!(
            !text.contains("vol-never"),
            "no backup, no timestamp\n{text}"
        );
        assert!(
            !text.contains("vol-gone"),
            "a volume the check no longer sees\n{text}"
        );
        assert!(
            !text.contains("region=\"eu-west-1\""),
            "a region that could not be read\n{text}"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("ebsnap-metrics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_file_is_replaced_atomically_readable_by_all_whatever_the_umask() {
        let dir = scratch("atomic");
        let path = dir.join("ebsnap.prom");
        // SAFETY: umask is process-wide; this test restores it at once.
        let previous = unsafe { libc::umask(0o077) };
        let first = write(
            &path,
            &report("default", &["us-east-1"]),
            at(2),
            at(3),
            Duration::from_secs(1),
        );
        unsafe { libc::umask(previous) };
        first.unwrap();
        write(
            &path,
            &report("weekly", &["us-east-1"]),
            at(3),
            at(4),
            Duration::from_secs(1),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("ebsnap_job=\"default\"") && text.contains("ebsnap_job=\"weekly\""),
            "{text}"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644, "node_exporter runs as another user");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        left.sort();
        assert_eq!(
            left,
            ["ebsnap.prom", "ebsnap.prom.lock"],
            "no temporary file left behind"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn jobs_writing_one_file_at_once_lose_nothing() {
        let dir = scratch("shared");
        let path = dir.join("ebsnap.prom");
        let writers: Vec<_> = (0..8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let report = report(&format!("job-{n}"), &["us-east-1"]);
                        write(&path, &report, at(2), at(3), Duration::from_secs(1)).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for n in 0..8 {
            assert!(
                text.contains(&format!(
                    "ebsnap_last_run_timestamp_seconds{{ebsnap_job=\"job-{n}\""
                )),
                "job-{n}'s update was lost\n{text}"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = scratch("failed");
        // The final path is a directory: the rename fails.
        let path = dir.join("taken.prom");
        std::fs::create_dir_all(path.join("inside")).unwrap();
        let err = write(
            &path,
            &report("default", &["us-east-1"]),
            at(2),
            at(3),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot write the metrics file"),
            "{err:#}"
        );
        let temporaries = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .count();
        assert_eq!(temporaries, 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_unwritable_directory_or_a_malformed_file_is_refused_before_the_run() {
        let dir = scratch("check");
        let missing = dir.join("no-such-dir").join("ebsnap.prom");
        let err = check_writable(&missing).unwrap_err();
        assert!(
            format!("{err:#}").contains("create it, or give it to this user"),
            "{err:#}"
        );
        let bad = dir.join("bad.prom");
        std::fs::write(&bad, "this is not prometheus\n").unwrap();
        let err = format!("{:#}", check_writable(&bad).unwrap_err());
        assert!(
            err.contains("is not a Prometheus textfile") && err.contains("line 1"),
            "{err}"
        );
        let good = dir.join("good.prom");
        std::fs::write(&good, "# HELP x y\nnode_thing{a=\"b\"} 1\nother 2.5\n").unwrap();
        check_writable(&good).unwrap();
        check_writable(&dir.join("new.prom")).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
