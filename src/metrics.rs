//! `--metrics-file`: a Prometheus textfile for node_exporter's textfile
//! collector, so monitoring notices when backups stop or start failing.
//!
//! Several jobs may share one file: each run replaces only its own job's
//! lines for the regions it covered, and keeps a region's last success time
//! when this run failed there. With `--assume-role`, the lines also carry
//! an `account` label, one set per account and region. Written atomically (a temporary file, then a
//! rename), so the collector never reads half a file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};

use crate::backup::report::Report;

/// Each metric, its help text, in the order they are written.
const METRICS: [(&str, &str); 7] = [
    (
        "ebsnap_last_run_timestamp_seconds",
        "When the last run of the job finished in the region.",
    ),
    (
        "ebsnap_last_success_timestamp_seconds",
        "When the last run with no failure finished in the region.",
    ),
    (
        "ebsnap_snapshots_created",
        "Snapshots the last run created.",
    ),
    (
        "ebsnap_snapshots_deleted",
        "Snapshots the last run deleted.",
    ),
    (
        "ebsnap_snapshots_kept",
        "Snapshots of the job the last run kept.",
    ),
    (
        "ebsnap_snapshots_failed",
        "Actions of the last run that failed or were not started.",
    ),
    ("ebsnap_run_duration_seconds", "How long the last run took."),
];

/// A sample's identity: metric name and its `job`, `account` (empty when
/// the line has none) and `region` labels.
type Key = (String, String, String, String);

/// Reads the samples of an existing file:
/// `name{job="..",region=".."} value`, or with `account=".."` too.
/// Lines it does not understand (comments, other metrics) are dropped.
fn parse(existing: &str) -> BTreeMap<Key, f64> {
    let mut samples = BTreeMap::new();
    for line in existing.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, rest)) = line.split_once('{') else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let label = |key: &str| {
            labels.split(',').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == key).then(|| v.trim_matches('"').to_owned())
            })
        };
        if let (Some(job), Some(region), Ok(value)) =
            (label("job"), label("region"), value.trim().parse())
        {
            let account = label("account").unwrap_or_default();
            samples.insert((name.to_owned(), job, account, region), value);
        }
    }
    samples
}

/// The new file: this run's samples for its job and regions, on top of what
/// the existing file says of other jobs and regions.
pub(crate) fn render(
    existing: &str,
    report: &Report,
    finished: DateTime<Utc>,
    duration: Duration,
) -> String {
    let mut samples = parse(existing);
    let finished = finished.timestamp() as f64;
    for unit in &report.units {
        let job = &report.job;
        let count = |n: usize| n as f64;
        let region = &unit.region;
        let account = unit.account.clone().unwrap_or_default();
        let here = |entry_account: Option<&str>, r: &str| {
            r == region && entry_account == unit.account.as_deref()
        };
        let failed = report
            .failed
            .iter()
            .filter(|f| here(f.account.as_deref(), &f.region))
            .count();
        let mut set = |name: &str, value: f64| {
            let key = (
                name.to_owned(),
                job.clone(),
                account.clone(),
                region.clone(),
            );
            samples.insert(key, value);
        };
        set("ebsnap_last_run_timestamp_seconds", finished);
        if failed == 0 {
            set("ebsnap_last_success_timestamp_seconds", finished);
        }
        set(
            "ebsnap_snapshots_created",
            count(
                report
                    .created
                    .iter()
                    .filter(|e| here(e.account.as_deref(), &e.region))
                    .count(),
            ),
        );
        set(
            "ebsnap_snapshots_deleted",
            count(
                report
                    .deleted
                    .iter()
                    .filter(|e| here(e.account.as_deref(), &e.region))
                    .count(),
            ),
        );
        set(
            "ebsnap_snapshots_kept",
            count(
                report
                    .kept
                    .iter()
                    .filter(|e| here(e.account.as_deref(), &e.region))
                    .count(),
            ),
        );
        set("ebsnap_snapshots_failed", count(failed));
        set("ebsnap_run_duration_seconds", duration.as_secs_f64());
    }
    let mut out = String::new();
    for (name, help) in METRICS {
        out += &format!("# HELP {name} {help}\n# TYPE {name} gauge\n");
        for ((_, job, account, region), value) in samples.iter().filter(|(key, _)| key.0 == name) {
            let account = if account.is_empty() {
                String::new()
            } else {
                format!(",account=\"{account}\"")
            };
            out += &format!("{name}{{job=\"{job}\"{account},region=\"{region}\"}} {value}\n");
        }
    }
    out
}

/// Writes the file atomically, next to its final place.
pub fn write(
    path: &Path,
    report: &Report,
    finished: DateTime<Utc>,
    duration: Duration,
) -> Result<()> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let text = render(&existing, report, finished, duration);
    let temporary = path.with_extension(format!("prom.tmp.{}", std::process::id()));
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .with_context(|| {
            format!(
                "cannot write the metrics file {}: check --metrics-file",
                path.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::accounts::Unit;
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

    fn created(region: &str) -> CreatedEntry {
        CreatedEntry {
            snapshot_id: Some("snap-1".into()),
            volume_id: "vol-1".into(),
            instance_id: "i-1".into(),
            instance_name: None,
            device: "/dev/sdf".into(),
            account: None,
            region: region.into(),
            permission: None,
            tags_dropped: vec![],
        }
    }

    #[test]
    fn with_roles_each_account_and_region_has_its_own_lines() {
        let unit = |account: &str| Unit {
            account: Some(account.into()),
            region: "us-east-1".into(),
        };
        let mut two = report("default", &[]);
        two.units = vec![unit("111111111111"), unit("222222222222")];
        two.accounts = vec!["111111111111".into(), "222222222222".into()];
        two.created = vec![CreatedEntry {
            account: Some("111111111111".into()),
            ..created("us-east-1")
        }];
        two.failed.push(FailedEntry {
            action: "assume-role",
            snapshot_id: None,
            volume_id: None,
            instance_id: None,
            account: Some("222222222222".into()),
            region: "us-east-1".into(),
            reason: "AccessDenied".into(),
        });
        let first = render("", &two, at(3), Duration::from_secs(1));
        for line in [
            "ebsnap_snapshots_created{job=\"default\",account=\"111111111111\",region=\"us-east-1\"} 1",
            "ebsnap_snapshots_failed{job=\"default\",account=\"111111111111\",region=\"us-east-1\"} 0",
            "ebsnap_last_success_timestamp_seconds{job=\"default\",account=\"111111111111\",region=\"us-east-1\"} 1795489200",
            "ebsnap_snapshots_created{job=\"default\",account=\"222222222222\",region=\"us-east-1\"} 0",
            "ebsnap_snapshots_failed{job=\"default\",account=\"222222222222\",region=\"us-east-1\"} 1",
        ] {
            assert!(first.lines().any(|l| l == line), "missing {line:?} in\n{first}");
        }
        assert!(
            !first.contains(
                "ebsnap_last_success_timestamp_seconds{job=\"default\",account=\"222222222222\""
            ),
            "{first}"
        );
        // A later run without roles keeps the accounts' lines and adds its own.
        let second = render(
            &first,
            &report("default", &["us-east-1"]),
            at(4),
            Duration::from_secs(1),
        );
        assert!(second.contains("ebsnap_snapshots_failed{job=\"default\",account=\"222222222222\",region=\"us-east-1\"} 1"), "{second}");
        assert!(
            second.contains("ebsnap_snapshots_failed{job=\"default\",region=\"us-east-1\"} 0"),
            "{second}"
        );
    }

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, 0, 0).unwrap()
    }

    #[test]
    fn a_run_writes_every_metric_by_job_and_region() {
        let mut report = report("default", &["us-east-1"]);
        report.created = vec![created("us-east-1"), created("us-east-1")];
        let text = render("", &report, at(3), Duration::from_millis(2500));
        for line in [
            "# TYPE ebsnap_last_run_timestamp_seconds gauge",
            "ebsnap_last_run_timestamp_seconds{job=\"default\",region=\"us-east-1\"} 1795489200",
            "ebsnap_last_success_timestamp_seconds{job=\"default\",region=\"us-east-1\"} 1795489200",
            "ebsnap_snapshots_created{job=\"default\",region=\"us-east-1\"} 2",
            "ebsnap_snapshots_deleted{job=\"default\",region=\"us-east-1\"} 0",
            "ebsnap_snapshots_failed{job=\"default\",region=\"us-east-1\"} 0",
            "ebsnap_run_duration_seconds{job=\"default\",region=\"us-east-1\"} 2.5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn a_failed_run_keeps_the_last_success_and_other_jobs_are_left_alone() {
        let first = render(
            "",
            &report("default", &["us-east-1"]),
            at(3),
            Duration::from_secs(1),
        );
        let with_weekly = render(
            &first,
            &report("weekly", &["us-east-1"]),
            at(4),
            Duration::from_secs(1),
        );

        let mut failing = report("default", &["us-east-1"]);
        failing.failed.push(FailedEntry {
            action: "create",
            snapshot_id: None,
            volume_id: Some("vol-1".into()),
            instance_id: None,
            account: None,
            region: "us-east-1".into(),
            reason: "boom".into(),
        });
        let text = render(&with_weekly, &failing, at(5), Duration::from_secs(1));

        let value = |name: &str, job: &str| {
            let prefix = format!("{name}{{job=\"{job}\",region=\"us-east-1\"}} ");
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
            value("ebsnap_snapshots_failed", "default").as_deref(),
            Some("1")
        );
        assert_eq!(
            value("ebsnap_last_success_timestamp_seconds", "weekly").as_deref(),
            Some("1795492800")
        );
        assert_eq!(
            text.matches("# TYPE ebsnap_snapshots_failed gauge").count(),
            1
        );
    }

    #[test]
    fn the_file_is_replaced_atomically() {
        let dir = std::env::temp_dir().join(format!("ebsnap-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ebsnap.prom");
        write(
            &path,
            &report("default", &["us-east-1"]),
            at(3),
            Duration::from_secs(1),
        )
        .unwrap();
        write(
            &path,
            &report("weekly", &["us-east-1"]),
            at(4),
            Duration::from_secs(1),
        )
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("job=\"default\"") && text.contains("job=\"weekly\""),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
