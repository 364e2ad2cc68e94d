//! What a restore did, for a person (text) or a program (`--output json`),
//! and its exit status.

use std::fmt::Write as _;

use serde::Serialize;

use crate::exit::ExitStatus;
use crate::restore::decide::{Skipped, VolumeSpec};

/// A volume restore made (or, in a dry run, would make).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    /// `None` in a dry run.
    pub(crate) volume_id: Option<String>,
    pub(crate) snapshot_id: String,
    pub(crate) source_volume_id: String,
    pub(crate) availability_zone: String,
    /// `None`: EC2's default.
    pub(crate) volume_type: Option<String>,
    pub(crate) size: i32,
    pub(crate) iops: Option<i32>,
    pub(crate) throughput: Option<i32>,
    /// The instance it is attached (or would be) to.
    pub(crate) attached_to: Option<String>,
    /// The device it is attached at, else the one it was snapshotted from.
    pub(crate) device: Option<String>,
    /// Dry run: `allowed` when EC2 confirmed the credentials may create it.
    pub(crate) permission: Option<String>,
    /// The keys of the snapshot's tags left off the volume (EC2's tag
    /// limits); absent when all fit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags_dropped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedRestore {
    pub(crate) snapshot_id: String,
    /// The volume, when one was made before the failure.
    pub(crate) volume_id: Option<String>,
    pub(crate) reason: String,
}

/// What a restore did, for people (`to_text`) and programs (`to_json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    pub(crate) dry_run: bool,
    pub(crate) region: String,
    /// The run restored, with `--instance`.
    pub(crate) run_id: Option<String>,
    pub(crate) restored: Vec<Restored>,
    pub failed: Vec<FailedRestore>,
    pub(crate) skipped: Vec<Skipped>,
    /// `--from-archive`: the snapshot brought back from the archive tier
    /// first (in a dry run: allowed to be; the rest is checked once back).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) brought_back_from_archive: Vec<String>,
}

impl RestoreReport {
    pub fn exit_status(&self) -> ExitStatus {
        if self.failed.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a restore report always serializes") + "\n"
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let run = self
            .run_id
            .as_deref()
            .map(|r| format!(" from backup run {r}"))
            .unwrap_or_default();
        if self.dry_run {
            let _ = writeln!(
                out,
                "Dry run: nothing was changed. In {}{run}, restore would:",
                self.region
            );
        } else if !self.restored.is_empty() {
            let _ = writeln!(out, "Restored in {}{run}:", self.region);
        }
        for id in &self.brought_back_from_archive {
            let _ = if self.dry_run {
                writeln!(
                    out,
                    "  bring {id} back from the archive tier (permitted), then restore it: \
                     run without --dry-run (up to 72 hours)"
                )
            } else {
                writeln!(out, "  brought {id} back from the archive tier")
            };
        }
        for r in &self.restored {
            let what = format!(
                "{} volume of {} GiB in {} from {} (of {}{})",
                r.volume_type.as_deref().unwrap_or("default-type"),
                r.size,
                r.availability_zone,
                r.snapshot_id,
                r.source_volume_id,
                r.device
                    .as_deref()
                    .filter(|_| r.attached_to.is_none())
                    .map(|d| format!(" at {d}"))
                    .unwrap_or_default()
            );
            let mut attach = match (&r.attached_to, &r.device) {
                (Some(instance), Some(device)) => format!(", attached to {instance} at {device}"),
                _ => String::new(),
            };
            if !r.tags_dropped.is_empty() {
                let _ = write!(
                    attach,
                    "; {} of the snapshot's tags left out, past EC2's tag limits: {}",
                    r.tags_dropped.len(),
                    r.tags_dropped.join(", ")
                );
            }
            if self.dry_run {
                // As in a backup's dry run: EC2 confirmed the credentials may.
                let permission = match r.permission.as_deref() {
                    Some("allowed") => "permitted",
                    _ => "not checked",
                };
                let attach = attach.replace("attached", "then attach it");
                let _ = writeln!(out, "  create a {what}{attach}: {permission}");
            } else {
                let id = r.volume_id.as_deref().unwrap_or("?");
                let _ = writeln!(out, "  {id}: {what}{attach}");
            }
        }
        if self.dry_run && self.restored.iter().any(|r| r.attached_to.is_some()) {
            let _ = writeln!(
                out,
                "  (attaching is not checked in a dry run: AttachVolume needs a volume that exists)"
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "Left out {}: {}", s.snapshot_id, s.reason);
        }
        for f in &self.failed {
            let volume = f
                .volume_id
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default();
            let _ = writeln!(out, "FAILED {}{volume}: {}", f.snapshot_id, f.reason);
        }
        out
    }
}

/// The report's entry for the volume `spec` made (`None` in a dry run).
pub(super) fn restored(
    spec: &VolumeSpec,
    volume_id: Option<String>,
    permission: Option<String>,
) -> Restored {
    Restored {
        volume_id,
        snapshot_id: spec.snapshot_id.clone(),
        source_volume_id: spec.source_volume_id.clone(),
        availability_zone: spec.availability_zone.clone(),
        volume_type: spec.volume_type.clone(),
        size: spec.size_gib,
        iops: spec.iops,
        throughput: spec.throughput,
        attached_to: spec.attach.as_ref().map(|(i, _)| i.clone()),
        device: spec
            .attach
            .as_ref()
            .map(|(_, d)| d.clone())
            .or_else(|| spec.snapshot_device.clone()),
        permission,
        tags_dropped: spec.tags_dropped.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_lists_volumes_and_failures_and_tells_the_exit_status() {
        let mut report = RestoreReport {
            dry_run: false,
            region: "us-east-1".into(),
            run_id: Some("run-b".into()),
            restored: vec![Restored {
                volume_id: Some("vol-new".into()),
                snapshot_id: "snap-1".into(),
                source_volume_id: "vol-data".into(),
                availability_zone: "us-east-1a".into(),
                volume_type: Some("gp3".into()),
                size: 8,
                iops: None,
                throughput: None,
                attached_to: Some("i-staging".into()),
                device: Some("/dev/sdf".into()),
                permission: None,
                tags_dropped: vec![],
            }],
            failed: vec![],
            skipped: vec![],
            brought_back_from_archive: vec![],
        };
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert_eq!(
            report.to_text(),
            "Restored in us-east-1 from backup run run-b:\n  vol-new: gp3 volume of 8 GiB in us-east-1a \
             from snap-1 (of vol-data), attached to i-staging at /dev/sdf\n"
        );
        report.failed.push(FailedRestore {
            snapshot_id: "snap-2".into(),
            volume_id: None,
            reason: "creating a volume failed: X".into(),
        });
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["dry_run"], false);
        assert_eq!(json["restored"][0]["volume_id"], "vol-new");
        assert_eq!(json["restored"][0]["attached_to"], "i-staging");
        assert_eq!(json["failed"][0]["snapshot_id"], "snap-2");
        assert_eq!(json["failed"][0]["reason"], "creating a volume failed: X");
    }
}
