//! What a plan holds: the plan itself, and each of its verdicts with its
//! reason (kept, deleted, skipped, orphaned), each reason with its text
//! for people and its code for programs.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::Serialize;

use crate::inventory::{ExistingSnapshot, TAG_SKIP};
use crate::plan::requests::{Create, SnapshotSet};
use crate::retention::KeptBy;
use crate::values::{serde_name, ReasonCode};

/// What one run will do in one region.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Plan {
    pub creates: Vec<Create>,
    pub deletes: Vec<Delete>,
    pub kept: Vec<Kept>,
    pub skipped_instances: Vec<SkippedInstance>,
    /// Volumes of selected instances not snapshotted in this run, and why.
    pub skipped_volumes: Vec<SkippedVolume>,
    /// Why the purge was refused (safety rule 8), naming the numbers; its
    /// deletes are then in `kept` with [`KeepReason::DeleteGuard`].
    pub purge_refused: Option<String>,
    /// The creates grouped by instance: each set is snapshotted together.
    pub sets: Vec<SnapshotSet>,
    /// The purge's orphan series (see [`orphans`]), whether or not
    /// `--orphans-after` lets it delete them.
    pub orphans: Vec<Orphan>,
    /// Snapshots to move to the archive tier (`--archive-after`); each is
    /// also in `kept`, with the rule that keeps it.
    pub archives: Vec<Archive>,
}

/// A snapshot to move to the archive tier, and the rule that keeps it
/// there.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Archive {
    pub snapshot: ExistingSnapshot,
    pub kept_by: KeptBy,
    /// The earliest its rules could let it go: at least 90 days away.
    pub released_at_earliest: DateTime<Utc>,
}

/// A snapshot to delete, with the facts that justified it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Delete {
    pub snapshot: ExistingSnapshot,
    pub reason: DeleteReason,
}

/// The plan's verdict on one of the job's snapshots: kept, and why, or
/// deleted, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    Keep(KeepReason),
    Delete(DeleteReason),
}

impl Verdict {
    pub(crate) fn is_keep(&self) -> bool {
        matches!(self, Verdict::Keep(_))
    }
}

/// Why the plan deletes a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DeleteReason {
    /// Past retention, and not among the newest `keep_min` of its volume.
    Expired,
    /// In `error`: it holds nothing to restore, whatever its age (safety
    /// rule 4).
    Error,
    /// A second snapshot of its volume with the same run id: what a create
    /// retried after a lost answer left, when EC2's describes lagged behind
    /// its state. The oldest of the run stays (safety rule 7).
    Duplicate,
    /// Of an orphan series (its volume gone, or its instance no longer
    /// selected) whose newest snapshot is older than `--orphans-after`:
    /// the whole series goes, `--keep-min` aside.
    Orphaned,
}

impl ReasonCode for DeleteReason {
    /// A stable identifier for programs (`--output json`): serde's name.
    fn code(&self) -> &'static str {
        serde_name(self)
    }
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeleteReason::Expired => "past retention",
            DeleteReason::Error => "in error: it holds no backup",
            DeleteReason::Duplicate => "a second snapshot of its volume in one run",
            DeleteReason::Orphaned => "an orphan whose newest backup is older than --orphans-after",
        })
    }
}

/// A snapshot the plan leaves alone, and why.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Kept {
    pub snapshot: ExistingSnapshot,
    pub reason: KeepReason,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeepReason {
    /// Younger than the retention; purge deletes it after `expires_at`.
    WithinRetention { expires_at: DateTime<Utc> },
    /// Kept by a calendar rule: the newest backup of its period, or one of
    /// the `--keep-last` newest.
    Calendar(KeptBy),
    /// Past retention, but among the newest `keep_min` completed snapshots of
    /// its volume (safety rule 2).
    KeepMin { keep_min: usize },
    /// Not finished yet (`pending`, or a state ebsnap does not know): never
    /// deleted, never counted as a good backup (safety rule 4).
    NotFinished { state: String },
    /// Does not carry this job's marker (safety rule 1). The server-side
    /// filter should never return one; this is the client-side re-check.
    NotMarked,
    /// This run failed to copy the volume's snapshot (`--copy-to`), so
    /// none of its copies is deleted in this run (safety rule 3).
    VolumeFailed,
    /// Due for deletion, but the purge would have deleted too many at once
    /// (safety rule 8); `--force` lets it through.
    DeleteGuard,
    /// In the archive tier, archived by someone else than ebsnap: never
    /// deleted, and not counted as one of a volume's `keep_min` good
    /// backups, since it cannot be restored until it comes back from the
    /// archive (safety rule 4).
    Archived,
    /// Archived by ebsnap, and no rule keeps it any longer, but it has not
    /// spent the 90 days EC2 bills an archived snapshot for: deleted after
    /// `until` (`ARCHIVE_MINIMUM`).
    ArchiveMinimum { until: DateTime<Utc> },
}

impl ReasonCode for KeepReason {
    /// A stable identifier for programs (`--output json`).
    fn code(&self) -> &'static str {
        match self {
            KeepReason::WithinRetention { .. } => "within_retention",
            KeepReason::Calendar(KeptBy::Last(_)) => "keep_last",
            KeepReason::Calendar(KeptBy::Period(period)) => period.period.code(),
            KeepReason::KeepMin { .. } => "keep_min",
            KeepReason::NotFinished { .. } => "pending",
            KeepReason::NotMarked => "not_marked",
            KeepReason::VolumeFailed => VOLUME_FAILED,
            KeepReason::DeleteGuard => "delete_guard",
            KeepReason::Archived => "archived",
            KeepReason::ArchiveMinimum { .. } => "archive_minimum",
        }
    }
}

impl fmt::Display for KeepReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepReason::WithinRetention { expires_at } => {
                write!(
                    f,
                    "within retention, expires {}",
                    expires_at.format("%Y-%m-%d %H:%M UTC")
                )
            }
            KeepReason::Calendar(KeptBy::Last(n)) => write!(
                f,
                "one of the {n} newest completed snapshots of its volume (keep-last)"
            ),
            KeepReason::Calendar(KeptBy::Period(period)) => write!(f, "{period}"),
            KeepReason::KeepMin { keep_min: 1 } => {
                write!(
                    f,
                    "past retention, but the newest completed snapshot of its volume"
                )
            }
            KeepReason::KeepMin { keep_min } => write!(
                f,
                "past retention, but among the {keep_min} newest completed snapshots of its volume"
            ),
            KeepReason::NotFinished { state } => {
                write!(f, "{state}: not finished, so never deleted")
            }
            KeepReason::NotMarked => write!(f, "not marked as this job's snapshot"),
            KeepReason::VolumeFailed => f.write_str(VOLUME_FAILED_TEXT),
            KeepReason::DeleteGuard => {
                write!(f, "past retention, but the purge was refused as too large")
            }
            KeepReason::Archived => write!(
                f,
                "in the archive tier: kept, and not counted as a restorable backup"
            ),
            KeepReason::ArchiveMinimum { until } => write!(
                f,
                "archived by ebsnap: out of its rules, deleted after its 90 days in the archive, {}",
                until.format("%Y-%m-%d %H:%M UTC")
            ),
        }
    }
}

/// The code of a snapshot kept because this run failed its volume, whether
/// the plan withheld it (a failed copy) or the purge did (a failed create).
pub(crate) const VOLUME_FAILED: &str = "volume_failed";

/// And its text.
pub(crate) const VOLUME_FAILED_TEXT: &str =
    "this run failed to snapshot its volume, so its snapshots are kept";

/// Why a volume's series of the job's snapshots is an orphan: nothing backs
/// the volume up any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OrphanReason {
    /// The volume no longer exists.
    VolumeGone,
    /// The volume exists, but the instance the newest snapshot was taken of
    /// is no longer selected (untagged, opted out, terminated), and the
    /// volume is not attached to any selected instance.
    InstanceNotSelected,
}

impl ReasonCode for OrphanReason {
    /// A stable identifier for programs (`--output json`): serde's name.
    fn code(&self) -> &'static str {
        serde_name(self)
    }
}

impl fmt::Display for OrphanReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OrphanReason::VolumeGone => "its volume no longer exists",
            OrphanReason::InstanceNotSelected => "its instance is no longer selected",
        })
    }
}

/// An orphan series: the job's snapshots of one volume that nothing backs up
/// any more, named by its newest snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Orphan {
    pub volume_id: Arc<str>,
    pub reason: OrphanReason,
    /// The instance and device of the newest snapshot.
    pub instance_id: Option<Arc<str>>,
    pub device: Option<Arc<str>>,
    pub newest_snapshot_id: CompactString,
    pub newest_start_time: DateTime<Utc>,
    /// How many of the job's snapshots the series holds.
    pub snapshots: usize,
    /// The volume's size, from the newest snapshot, in GiB.
    pub size_gib: Option<i32>,
    /// With `--orphans-after D`: the newest snapshot's start plus D, past
    /// which purge deletes the whole series.
    pub purge_after: Option<DateTime<Utc>>,
}

impl Orphan {
    /// Whether purge deletes the whole series `now`: `--orphans-after` is
    /// given and the newest snapshot is older than it.
    pub(crate) fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.purge_after.is_some_and(|at| now > at)
    }
}

/// An instance that carries the selection tag key but is not backed up.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SkippedInstance {
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub reason: InstanceSkip,
}

/// Why an instance that carries the selection tag key is not backed up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstanceSkip {
    NotSelected(NotSelected),
    /// Selected, but no EBS volume is attached to it.
    NoVolume,
}

impl fmt::Display for InstanceSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstanceSkip::NotSelected(why) => why.fmt(f),
            InstanceSkip::NoVolume => f.write_str("no EBS volume attached"),
        }
    }
}

/// Why an instance's selection tag does not select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotSelected {
    /// `--tag-value` is given, and the tag holds another value.
    OtherValue {
        key: String,
        value: String,
        wanted: String,
    },
    /// The tag holds a value that means "do not back up" (`false`, `no`...).
    OptsOut { key: String, value: String },
}

impl fmt::Display for NotSelected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotSelected::OtherValue { key, value, wanted } => {
                write!(f, "{key}={value:?}, not {wanted:?}")
            }
            NotSelected::OptsOut { key, value } => write!(f, "{key}={value:?} opts out"),
        }
    }
}

impl std::error::Error for NotSelected {}

/// A volume of a selected instance that this run does not snapshot.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SkippedVolume {
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub volume_id: String,
    pub device: String,
    pub reason: SkipReason,
}

/// Why a volume of a selected instance is not snapshotted in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SkipReason {
    /// Tagged `ebsnap:skip=true`.
    SkipTag,
    /// The boot volume, with `--exclude-boot`.
    ExcludedBoot,
    /// The job snapshotted it within `--min-interval`.
    Recent {
        snapshot_id: CompactString,
        started: DateTime<Utc>,
    },
    /// Attached to another selected instance too (io2 Multi-Attach), and
    /// snapshotted with that one.
    MultiAttach { other_instance_id: String },
}

impl ReasonCode for SkipReason {
    /// A stable identifier for programs (`--output json`).
    fn code(&self) -> &'static str {
        match self {
            SkipReason::SkipTag => "skip_tag",
            SkipReason::ExcludedBoot => "excluded_boot",
            SkipReason::Recent { .. } => "recent",
            SkipReason::MultiAttach { .. } => "multi_attach",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::SkipTag => write!(f, "tagged {TAG_SKIP}=true"),
            SkipReason::ExcludedBoot => f.write_str("the boot volume, left out by --exclude-boot"),
            SkipReason::Recent {
                snapshot_id,
                started,
            } => write!(
                f,
                "{snapshot_id} of this job started {}, within --min-interval",
                started.format("%Y-%m-%d %H:%M UTC")
            ),
            SkipReason::MultiAttach { other_instance_id } => write!(
                f,
                "attached to {other_instance_id} too, and snapshotted with it"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::{DeleteReason, KeepReason, OrphanReason};

    use crate::plan::orphans::orphan_reason;
    use crate::plan::testing::now;
    use crate::values::ReasonCode;

    #[test]
    fn reasons_read_well_and_have_stable_codes() {
        let expires_at = now();
        let reason = KeepReason::WithinRetention { expires_at };
        assert_eq!(
            reason.to_string(),
            "within retention, expires 2026-11-24 12:00 UTC"
        );
        assert_eq!(reason.code(), "within_retention");
        assert!(KeepReason::KeepMin { keep_min: 3 }
            .to_string()
            .contains("3 newest"));
        // A delete's code is serde's name of it, as the JSON writes it.
        for (reason, code) in [
            (DeleteReason::Expired, "expired"),
            (DeleteReason::Error, "error"),
            (DeleteReason::Duplicate, "duplicate"),
            (DeleteReason::Orphaned, "orphaned"),
        ] {
            assert_eq!(reason.code(), code);
            assert_eq!(serde_json::to_value(reason).unwrap(), code);
        }
        assert_eq!(OrphanReason::VolumeGone.code(), "volume_gone");
        assert_eq!(
            OrphanReason::InstanceNotSelected.code(),
            "instance_not_selected"
        );
    }

    #[test]
    fn orphan_reasons_read_well_and_have_stable_codes() {
        assert_eq!(OrphanReason::VolumeGone.code(), "volume_gone");
        assert_eq!(
            OrphanReason::InstanceNotSelected.code(),
            "instance_not_selected"
        );
        assert_eq!(DeleteReason::Orphaned.code(), "orphaned");
        assert_eq!(
            OrphanReason::VolumeGone.to_string(),
            "its volume no longer exists"
        );
        let selected: HashSet<&str> = ["i-1"].into();
        assert_eq!(
            orphan_reason(false, false, Some("i-1"), Some(&selected)),
            Some(OrphanReason::VolumeGone)
        );
        assert_eq!(
            orphan_reason(true, false, Some("i-off"), Some(&selected)),
            Some(OrphanReason::InstanceNotSelected)
        );
        // Detached from a selected instance: it exists, so it is not gone.
        assert_eq!(
            orphan_reason(true, false, Some("i-1"), Some(&selected)),
            None
        );
        // Moved onto a selected instance: backed up from now on.
        assert_eq!(
            orphan_reason(true, true, Some("i-off"), Some(&selected)),
            None
        );
        // Whose instance cannot be told.
        assert_eq!(orphan_reason(true, false, None, Some(&selected)), None);
        // No instance carries the tag key (a mistyped --tag-key): only a
        // gone volume is an orphan.
        assert_eq!(orphan_reason(true, false, Some("i-off"), None), None);
        assert_eq!(
            orphan_reason(false, false, Some("i-off"), None),
            Some(OrphanReason::VolumeGone)
        );
    }
}
