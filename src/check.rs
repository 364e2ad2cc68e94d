//! `ebsnap check --max-age D`: does every selected volume have a completed
//! backup of this job newer than D? For monitoring, and for cron's MAILTO:
//! backups that silently stopped must not stay silent.
//!
//! It also names the orphan series (the snapshots of a volume that no
//! longer exists, or of an instance no longer selected), with their newest
//! snapshot, age and size, but they never fail the check: an orphan is no
//! stale backup of a selected volume, nothing is expected to back it up,
//! and what it costs is a decision (`--orphans-after`), not an outage.

use anyhow::Result;
use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use serde::Serialize;

use crate::config::{Config, Policy};
use crate::values::{format_age, format_duration};
use std::collections::BTreeSet;

use crate::aws::RegionFailure;
use crate::exit::ExitStatus;
use crate::inventory::{ExistingSnapshot, Instance, Inventory};
use crate::plan::{self, is_selected, left_out_on_purpose, OrphanReason};

/// One selected volume's backup health.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeHealth {
    pub(crate) region: String,
    pub(crate) instance_id: String,
    pub(crate) instance_name: Option<String>,
    pub(crate) volume_id: String,
    pub(crate) device: String,
    pub(crate) status: Freshness,
    /// The newest completed snapshot of the job for this volume.
    pub(crate) newest_snapshot_id: Option<String>,
    pub(crate) newest_start_time: Option<DateTime<Utc>>,
}

/// How recent a selected volume's newest completed backup is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Within `--max-age`.
    Fresh,
    /// Older than `--max-age`.
    Stale,
    /// The job has no completed backup of it.
    Never,
}

impl Freshness {
    /// Its name in the JSON: serde's.
    pub fn code(self) -> &'static str {
        crate::values::serde_name(&self)
    }
}

/// An orphan series: the job's snapshots of a volume nothing backs up any
/// more. Reported, never a failure of the check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrphanSeries {
    pub(crate) region: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) volume_id: String,
    pub(crate) device: Option<String>,
    /// Why it is an orphan: `orphan` (`volume_gone` or
    /// `instance_not_selected`) and `reason` (the same, for people) in the
    /// JSON.
    #[serde(flatten)]
    pub(crate) orphan: WhyOrphan,
    pub(crate) newest_snapshot_id: String,
    pub(crate) newest_start_time: DateTime<Utc>,
    /// How many of the job's snapshots the series holds.
    pub(crate) snapshots: usize,
    pub(crate) size_gib: Option<i32>,
    /// With `--orphans-after`: when purge deletes the whole series.
    pub(crate) purge_after: Option<DateTime<Utc>>,
}

/// Why a series is an orphan, as check's JSON writes it: its code, then its
/// text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WhyOrphan(pub(crate) OrphanReason);

impl Serialize for WhyOrphan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("WhyOrphan", 2)?;
        fields.serialize_field("orphan", &self.0)?;
        fields.serialize_field("reason", &format_args!("{}", self.0))?;
        fields.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub(crate) job: String,
    pub(crate) max_age: String,
    pub(crate) regions: Vec<String>,
    pub(crate) volumes: Vec<VolumeHealth>,
    pub(crate) orphans: Vec<OrphanSeries>,
    pub failed: Vec<RegionFailure>,
}

/// The orphan series of one region's inventory, as check reports them.
pub(crate) fn orphan_series(
    region: &str,
    inventory: &Inventory,
    policy: &Policy,
) -> Vec<OrphanSeries> {
    plan::orphans(inventory, &inventory.snapshots, policy)
        .into_iter()
        .map(|o| OrphanSeries {
            region: region.to_owned(),
            instance_id: o.instance_id.as_deref().map(str::to_owned),
            volume_id: o.volume_id.to_string(),
            device: o.device.as_deref().map(str::to_owned),
            orphan: WhyOrphan(o.reason),
            newest_snapshot_id: o.newest_snapshot_id.to_string(),
            newest_start_time: o.newest_start_time,
            snapshots: o.snapshots,
            size_gib: o.size_gib,
            purge_after: o.purge_after,
        })
        .collect()
}

/// Judges each volume of each selected instance by its newest completed
/// snapshot of the job: pending and failed snapshots are no backup.
pub(crate) fn assess(
    region: &str,
    instances: &[Instance],
    snapshots: &[ExistingSnapshot],
    skip_volume_ids: &BTreeSet<String>,
    policy: &Policy,
    max_age: TimeDelta,
    now: DateTime<Utc>,
) -> Vec<VolumeHealth> {
    let selected = instances
        .iter()
        .filter(|i| is_selected(&policy.selector, &i.selection_value).is_ok());
    let mut health = Vec::new();
    for instance in selected {
        // A volume left out of every backup on purpose is no stale backup.
        let checked = instance
            .volumes
            .iter()
            .filter(|v| left_out_on_purpose(v, skip_volume_ids, policy).is_none());
        for volume in checked {
            let newest = snapshots
                .iter()
                .filter(|s| *s.volume_id == *volume.volume_id && s.is_marked_for(&policy.job))
                // An archived snapshot is no backup a restore can use now.
                .filter(|s| s.is_good_backup())
                .max_by_key(|s| s.start_time);
            let status = match newest {
                None => Freshness::Never,
                Some(s) if now - s.start_time > max_age => Freshness::Stale,
                Some(_) => Freshness::Fresh,
            };
            health.push(VolumeHealth {
                region: region.to_owned(),
                instance_id: instance.id.clone(),
                instance_name: instance.name.clone(),
                volume_id: volume.volume_id.clone(),
                device: volume.device.clone(),
                status,
                newest_snapshot_id: newest.map(|s| s.id.to_string()),
                newest_start_time: newest.map(|s| s.start_time),
            });
        }
    }
    health
}

/// Reads every region's selected instances and job snapshots and judges them.
pub async fn run(config: &Config, max_age: TimeDelta, now: DateTime<Utc>) -> Result<CheckReport> {
    let shared = crate::aws::load_shared_config(&config.aws).await;
    let regions = crate::aws::regions(&config.aws, &shared).await?;
    let policy = &config.policy;
    let results = join_all(regions.iter().map(|region| {
        let client = crate::aws::client(&shared, region);
        async move {
            crate::discovery::discover(
                &client,
                &policy.selector,
                &policy.job,
                crate::discovery::Reads {
                    instances: true,
                    snapshots: true,
                    volume_tags: false,
                    orphans: true,
                },
            )
            .await
        }
    }))
    .await;
    let mut report = CheckReport {
        job: policy.job.clone(),
        max_age: format_duration(max_age),
        regions: regions.clone(),
        volumes: vec![],
        orphans: vec![],
        failed: vec![],
    };
    for (region, result) in regions.iter().zip(results) {
        match result {
            Ok(inventory) => {
                report.volumes.extend(assess(
                    region,
                    &inventory.instances,
                    &inventory.snapshots,
                    &inventory.skip_volume_ids,
                    policy,
                    max_age,
                    now,
                ));
                report
                    .orphans
                    .extend(orphan_series(region, &inventory, policy));
            }
            Err(err) => report.failed.push(RegionFailure {
                region: region.clone(),
                reason: format!("{err:#}"),
            }),
        }
    }
    Ok(report)
}

impl CheckReport {
    fn problems(&self) -> impl Iterator<Item = &VolumeHealth> {
        self.volumes.iter().filter(|v| v.status != Freshness::Fresh)
    }

    /// 0 when every selected volume is fresh; 1 when one is stale or never
    /// backed up, or a region could not be read; 2 when none could be read.
    /// Orphans never change it.
    pub fn exit_status(&self) -> ExitStatus {
        if !self.failed.is_empty() && self.failed.len() == self.regions.len() {
            ExitStatus::NothingAttempted
        } else if !self.failed.is_empty() || self.problems().next().is_some() {
            ExitStatus::Failure
        } else {
            ExitStatus::Success
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a check report always serializes") + "\n"
    }

    /// One line per stale or never-backed-up volume, one per orphan series,
    /// then a summary.
    pub fn to_text(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        for failed in &self.failed {
            out += &format!("FAILED  {}: {}\n", failed.region, failed.reason);
        }
        for volume in self.problems() {
            let instance = match &volume.instance_name {
                Some(name) => format!("{name} ({})", volume.instance_id),
                None => volume.instance_id.clone(),
            };
            let what = match (&volume.newest_snapshot_id, volume.newest_start_time) {
                (Some(id), Some(start)) => format!(
                    "newest completed backup {id} is {} old",
                    format_age(now - start)
                ),
                _ => format!("no completed backup of job {}", self.job),
            };
            out += &format!(
                "{:<6}  {} {} of {instance} in {}: {what}\n",
                volume.status.code().to_uppercase(),
                volume.volume_id,
                volume.device,
                volume.region
            );
        }
        for orphan in &self.orphans {
            out += &format!("ORPHAN  {}\n", orphan_line(orphan, now));
        }
        let fresh = self.volumes.len() - self.problems().count();
        out += &format!(
            "{fresh} of {} selected volume(s) have a completed backup of job {} newer than {}.\n",
            self.volumes.len(),
            self.job,
            self.max_age
        );
        if !self.orphans.is_empty() {
            out += &format!(
                "{} orphan series (not a failure): see --orphans-after in docs/guide/orphans.md.\n",
                self.orphans.len()
            );
        }
        out
    }
}

/// `vol-0a1b /dev/sdh of i-0c2d in eu-west-1: its volume no longer exists;
/// newest snap-0e3f is 9d12h old, 2 snapshot(s) of 8 GiB, purge keeps its
/// newest (--keep-min; see --orphans-after)`.
fn orphan_line(orphan: &OrphanSeries, now: DateTime<Utc>) -> String {
    let size = orphan
        .size_gib
        .map(|gib| format!(" of {gib} GiB"))
        .unwrap_or_default();
    let fate = match orphan.purge_after {
        Some(at) if now > at => "deleted at the next purge (--orphans-after)".to_owned(),
        Some(at) => format!(
            "deleted from {} (--orphans-after)",
            at.format("%Y-%m-%d %H:%M UTC")
        ),
        None => "purge keeps its newest (--keep-min; see --orphans-after)".to_owned(),
    };
    format!(
        "{} {} of {} in {}: {}; newest {} is {} old, {} snapshot(s){size}, {fate}",
        orphan.volume_id,
        orphan.device.as_deref().unwrap_or("-"),
        orphan.instance_id.as_deref().unwrap_or("-"),
        orphan.region,
        orphan.orphan.0,
        orphan.newest_snapshot_id,
        format_age(now - orphan.newest_start_time),
        orphan.snapshots,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::policy;
    use crate::inventory::testing::job_snapshot;
    use crate::inventory::{AttachedVolume, SnapshotState};
    use crate::values::ReasonCode;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn instance(id: &str, value: &str, volumes: &[&str]) -> Instance {
        Instance {
            id: id.into(),
            name: Some(format!("{id}-name")),
            selection_value: value.into(),
            tags: vec![],
            volumes: volumes
                .iter()
                .map(|v| AttachedVolume {
                    volume_id: (*v).into(),
                    device: "/dev/sdf".into(),
                    is_root: false,
                })
                .collect(),
        }
    }

    fn snap(
        id: &str,
        volume: &str,
        hours: i64,
        state: SnapshotState,
        job: &str,
    ) -> ExistingSnapshot {
        ExistingSnapshot {
            state,
            job: Some(job.into()),
            instance_id: None,
            device: None,
            size_gib: None,
            ..job_snapshot(id, volume, now() - TimeDelta::hours(hours))
        }
    }

    #[test]
    fn fresh_stale_and_never_backed_up_volumes() {
        let instances = [
            instance(
                "i-1",
                "true",
                &["vol-fresh", "vol-stale", "vol-never", "vol-pending-only"],
            ),
            instance("i-off", "false", &["vol-ignored"]),
        ];
        let snapshots = [
            snap(
                "s-fresh",
                "vol-fresh",
                2,
                SnapshotState::Completed,
                "default",
            ),
            snap(
                "s-old",
                "vol-fresh",
                50,
                SnapshotState::Completed,
                "default",
            ),
            snap(
                "s-stale",
                "vol-stale",
                30,
                SnapshotState::Completed,
                "default",
            ),
            snap("s-error", "vol-stale", 1, SnapshotState::Error, "default"),
            snap(
                "s-other-job",
                "vol-never",
                1,
                SnapshotState::Completed,
                "weekly",
            ),
            snap(
                "s-pending",
                "vol-pending-only",
                1,
                SnapshotState::Pending,
                "default",
            ),
        ];
        let health = assess(
            "us-east-1",
            &instances,
            &snapshots,
            &BTreeSet::new(),
            &policy(),
            TimeDelta::hours(26),
            now(),
        );
        let view: Vec<_> = health
            .iter()
            .map(|h| (h.volume_id.as_str(), h.status))
            .collect();
        assert_eq!(
            view,
            [
                ("vol-fresh", Freshness::Fresh),
                ("vol-stale", Freshness::Stale),
                ("vol-never", Freshness::Never),
                ("vol-pending-only", Freshness::Never)
            ]
        );
        assert_eq!(health[1].newest_snapshot_id.as_deref(), Some("s-stale"));

        let report = CheckReport {
            job: "default".into(),
            max_age: "26h".into(),
            regions: vec!["us-east-1".into()],
            volumes: health,
            orphans: vec![],
            failed: vec![],
        };
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        let text = report.to_text(now());
        assert!(text.contains("STALE   vol-stale /dev/sdf of i-1-name (i-1) in us-east-1: newest completed backup s-stale is 1d6h old"), "{text}");
        assert!(text.contains("NEVER   vol-never /dev/sdf of i-1-name (i-1) in us-east-1: no completed backup of job default"), "{text}");
        assert!(text.ends_with("1 of 4 selected volume(s) have a completed backup of job default newer than 26h.\n"), "{text}");
    }

    #[test]
    fn volumes_left_out_on_purpose_are_not_checked() {
        let mut instances = [instance(
            "i-1",
            "true",
            &["vol-root", "vol-data", "vol-scratch"],
        )];
        instances[0].volumes[0].is_root = true;
        let snapshots = [snap(
            "s-data",
            "vol-data",
            1,
            SnapshotState::Completed,
            "default",
        )];
        let skip: BTreeSet<String> = ["vol-scratch".to_string()].into();
        let data_only = Policy {
            exclude_boot: true,
            ..policy()
        };
        let health = assess(
            "us-east-1",
            &instances,
            &snapshots,
            &skip,
            &data_only,
            TimeDelta::hours(26),
            now(),
        );
        let checked: Vec<_> = health
            .iter()
            .map(|h| (h.volume_id.as_str(), h.status))
            .collect();
        assert_eq!(checked, [("vol-data", Freshness::Fresh)]);
        let with_boot = assess(
            "us-east-1",
            &instances,
            &snapshots,
            &skip,
            &policy(),
            TimeDelta::hours(26),
            now(),
        );
        assert_eq!(
            with_boot.len(),
            2,
            "the root is checked unless --exclude-boot"
        );
    }

    #[test]
    fn all_fresh_exits_0_and_an_unreadable_region_does_not() {
        let instances = [instance("i-1", "true", &["vol-1"])];
        let snapshots = [snap("s-1", "vol-1", 1, SnapshotState::Completed, "default")];
        let mut report = CheckReport {
            job: "default".into(),
            max_age: "26h".into(),
            regions: vec!["us-east-1".into(), "eu-west-1".into()],
            volumes: assess(
                "us-east-1",
                &instances,
                &snapshots,
                &BTreeSet::new(),
                &policy(),
                TimeDelta::hours(26),
                now(),
            ),
            orphans: vec![],
            failed: vec![],
        };
        assert_eq!(report.exit_status(), ExitStatus::Success);
        report.failed.push(RegionFailure {
            region: "eu-west-1".into(),
            reason: "AuthFailure".into(),
        });
        assert_eq!(report.exit_status(), ExitStatus::Failure);
    }

    #[test]
    fn orphans_are_reported_with_age_and_size_but_never_fail_the_check() {
        let instances = [
            instance("i-1", "true", &["vol-1"]),
            instance("i-off", "false", &["vol-off"]),
        ];
        let with_instance = |id, volume, hours, instance: &str| ExistingSnapshot {
            instance_id: Some(instance.into()),
            device: Some("/dev/sdh".into()),
            size_gib: Some(4),
            ..snap(id, volume, hours, SnapshotState::Completed, "default")
        };
        let inventory = Inventory {
            instances: instances.to_vec(),
            snapshots: vec![
                snap("s-1", "vol-1", 1, SnapshotState::Completed, "default"),
                with_instance("s-gone-new", "vol-gone", 36, "i-1"),
                with_instance("s-gone-old", "vol-gone", 228, "i-1"),
                with_instance("s-off", "vol-off", 60, "i-off"),
            ],
            existing_volume_ids: Some(["vol-1", "vol-off"].map(String::from).into()),
            ..Inventory::default()
        };
        let orphans = orphan_series("us-east-1", &inventory, &policy());
        let view: Vec<_> = orphans
            .iter()
            .map(|o| {
                (
                    o.volume_id.as_str(),
                    o.orphan.0.code(),
                    o.newest_snapshot_id.as_str(),
                    o.snapshots,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("vol-gone", "volume_gone", "s-gone-new", 2),
                ("vol-off", "instance_not_selected", "s-off", 1)
            ]
        );
        let report = CheckReport {
            job: "default".into(),
            max_age: "26h".into(),
            regions: vec!["us-east-1".into()],
            volumes: assess(
                "us-east-1",
                &inventory.instances,
                &inventory.snapshots,
                &BTreeSet::new(),
                &policy(),
                TimeDelta::hours(26),
                now(),
            ),
            orphans,
            failed: vec![],
        };
        assert_eq!(
            report.exit_status(),
            ExitStatus::Success,
            "orphans never fail"
        );
        let text = report.to_text(now());
        assert!(text.contains("ORPHAN  vol-gone /dev/sdh of i-1 in us-east-1: its volume no longer exists; newest s-gone-new is 1d12h old, 2 snapshot(s) of 4 GiB, purge keeps its newest (--keep-min; see --orphans-after)\n"), "{text}");
        assert!(text.contains("ORPHAN  vol-off /dev/sdh of i-off in us-east-1: its instance is no longer selected; newest s-off is 2d12h old"), "{text}");
        assert!(text.ends_with("1 of 1 selected volume(s) have a completed backup of job default newer than 26h.\n2 orphan series (not a failure): see --orphans-after in docs/guide/orphans.md.\n"), "{text}");
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["orphans"][0]["orphan"], "volume_gone");
        assert_eq!(json["orphans"][0]["size_gib"], 4);
        assert_eq!(json["orphans"][1]["purge_after"], serde_json::Value::Null);

        // With --orphans-after: when purge deletes each series.
        let policy = Policy {
            orphans_after: Some(TimeDelta::days(2)),
            ..policy()
        };
        let report = CheckReport {
            orphans: orphan_series("us-east-1", &inventory, &policy),
            ..report
        };
        let text = report.to_text(now());
        assert!(
            text.contains("4 GiB, deleted from 2026-11-25 00:00 UTC (--orphans-after)"),
            "{text}"
        );
        assert!(
            text.contains("1 snapshot(s) of 4 GiB, deleted at the next purge (--orphans-after)"),
            "{text}"
        );
    }
}
