//! All of ebsnap's judgement: which volumes to snapshot, which snapshots to
//! delete, and why everything else is left alone.
//!
//! A pure function of (inventory, policy, steps, now). A dry run prints the
//! plan; a real run executes it. Nothing here does I/O, so every safety rule of
//! the README's "Safety rules" is unit-tested below with a fixed clock.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use compact_str::CompactString;
use serde::Serialize;

use crate::config::{Policy, Steps, TagSelector};
use crate::inventory::{
    is_no_volume, AttachedVolume, ExistingSnapshot, Inventory, SnapshotState, TAG_DEVICE,
    TAG_INSTANCE_ID, TAG_JOB, TAG_NAME, TAG_RUN_ID, TAG_SKIP,
};
use crate::retention::{Calendar, Judgement, KeptBy};
use crate::values::{format_duration, serde_name, ReasonCode};
use crate::values::{CopyTags, DuplicateTagKey, MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE};

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

/// EC2 bills an archived snapshot for 90 days at least, whenever it is
/// deleted or restored for good (EBS User Guide, "Considerations and
/// limitations for archiving Amazon EBS snapshots": "The minimum archive
/// period is 90 days"): ebsnap archives nothing its rules could delete
/// sooner, and deletes nothing it archived sooner.
pub(crate) const ARCHIVE_MINIMUM: TimeDelta = TimeDelta::days(90);

/// How long EC2 may take to bring a snapshot back from the archive tier
/// (same page: "It can take up to 72 hours to restore an archived snapshot
/// from the archive tier to the standard tier").
pub(crate) const ARCHIVE_RESTORE_HOURS: u32 = 72;

/// The creates of one instance, snapshotted together: by one CreateSnapshots
/// call at one instant (crash-consistent across the volumes), which must be
/// told what to leave out; or, with `--per-volume`, one CreateSnapshot per
/// volume. Hooks run around a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotSet {
    pub instance_id: String,
    /// Indices into [`Plan::creates`].
    pub creates: Vec<usize>,
    /// The instance's root volume is not among the creates.
    pub exclude_boot: bool,
    /// Attached data volumes that are not among the creates.
    pub exclude_data_volume_ids: Vec<String>,
    /// The one description CreateSnapshots gives every snapshot of the
    /// set: no device.
    pub description: String,
    /// What CreateSnapshots tags every snapshot of the set with, in the
    /// call itself: the marker, instance and run id, and the user's tags
    /// (`--tag`), so no snapshot exists a moment without them. The rest of
    /// each snapshot's tags (`Create::tags`) follow in a CreateTags.
    pub tags: Vec<(String, String)>,
}

impl SnapshotSet {
    /// The set of `instance_id`'s `creates`, which leaves out what the
    /// instance has beside them, its requests finished.
    pub(crate) fn new(
        instance_id: &str,
        instance_name: Option<&str>,
        creates: Vec<usize>,
        left_out: &[&AttachedVolume],
        run: RunTags<'_>,
    ) -> SnapshotSet {
        let tags = [
            (TAG_JOB, run.job),
            (TAG_INSTANCE_ID, instance_id),
            (TAG_RUN_ID, run.run_id),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .chain(run.user.iter().cloned())
        .collect();
        SnapshotSet {
            instance_id: instance_id.to_owned(),
            creates,
            exclude_boot: left_out.iter().any(|v| v.is_root),
            exclude_data_volume_ids: left_out
                .iter()
                .filter(|v| !v.is_root)
                .map(|v| v.volume_id.clone())
                .collect(),
            description: describe(run.job, instance_id, instance_name, None),
            tags,
        }
    }
}
/// A snapshot to take: one per attached EBS volume of a selected instance,
/// with its requests finished when the plan is built: the executor sends
/// them and records what EC2 answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Create {
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub volume_id: String,
    pub device: String,
    /// CreateSnapshot's description (`--per-volume`): who made it, for
    /// which job, of what.
    pub description: String,
    /// Every tag of the snapshot. In the create call itself
    /// (CreateSnapshot), so that no snapshot of ebsnap ever exists without
    /// its marker (nor the user's tags); after CreateSnapshots, in the
    /// CreateTags that follows.
    pub tags: Tags,
    /// The keys of the source's tags that did not fit (EC2's tag limits).
    pub dropped_tags: Vec<String>,
    /// `--copy-to`: a copy's tags but the two that say where it came from
    /// (`ebsnap:source-*`, known once the snapshot is made), which go right
    /// after the contract's: the copied ones are those that fit beside
    /// ebsnap's seven on a copy.
    pub copy_tags: Tags,
    /// The keys of the copied tags that fit on the snapshot but not on a
    /// copy.
    pub copy_dropped_tags: Vec<String>,
}

/// A snapshot's tags, in the order they are sent: the contract's, then the
/// user's (`--tag`: the same on every snapshot of the job, so one copy
/// shared by the whole plan, and never dropped), then the ones copied from
/// the source (`--copy-tags`) that fit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tags {
    pub contract: Vec<(String, String)>,
    pub user: Arc<[(String, String)]>,
    pub copied: Vec<(String, String)>,
}

impl Tags {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, String)> + Clone {
        self.contract
            .iter()
            .chain(self.user.iter())
            .chain(self.copied.iter())
    }

    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<(String, String)> {
        self.iter().cloned().collect()
    }
}

/// What every snapshot of one run shares beside its volume's own tags: the
/// job (the marker), the run id, and the user's tags (`--tag`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunTags<'a> {
    pub job: &'a str,
    pub run_id: &'a str,
    pub user: &'a Arc<[(String, String)]>,
}

impl Create {
    /// The create of `volume_id` at `device` of an instance, its requests
    /// finished: `copied` are the source's tags to copy (`--copy-tags`),
    /// `dropped` the keys of those that did not fit on the snapshot.
    pub(crate) fn new(
        instance_id: &str,
        instance_name: Option<&str>,
        volume_id: &str,
        device: &str,
        run: RunTags<'_>,
        copied: Vec<(String, String)>,
        dropped: Vec<String>,
    ) -> Create {
        let label = instance_name.unwrap_or(instance_id);
        let contract: Vec<(String, String)> = [
            (TAG_JOB, run.job.to_owned()),
            (TAG_INSTANCE_ID, instance_id.to_owned()),
            (TAG_DEVICE, device.to_owned()),
            (TAG_RUN_ID, run.run_id.to_owned()),
            (TAG_NAME, format!("{label} {device}")),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let (on_copy, copy_dropped_tags) = fit_tags(
            CONTRACT_TAGS_ON_COPY + run.user.len(),
            copied.iter().cloned(),
        );
        let copy_tags = Tags {
            contract: contract.clone(),
            user: Arc::clone(run.user),
            copied: on_copy,
        };
        let tags = Tags {
            contract,
            user: Arc::clone(run.user),
            copied,
        };
        Create {
            instance_id: instance_id.to_owned(),
            instance_name: instance_name.map(str::to_owned),
            volume_id: volume_id.to_owned(),
            device: device.to_owned(),
            description: describe(run.job, instance_id, instance_name, Some(device)),
            tags,
            dropped_tags: dropped,
            copy_tags,
            copy_dropped_tags,
        }
    }
}

/// A snapshot's description: `ebsnap job=JOB instance=ID (NAME)
/// device=DEVICE`, without the device for CreateSnapshots' set.
fn describe(job: &str, instance_id: &str, name: Option<&str>, device: Option<&str>) -> String {
    let mut text = format!("ebsnap job={job} instance={instance_id}");
    if let Some(name) = name {
        text.push_str(&format!(" ({name})"));
    }
    if let Some(device) = device {
        text.push_str(&format!(" device={device}"));
    }
    text
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

/// Why a volume's series is an orphan, if it is: the pure decision.
/// `exists` says whether the volume still exists; `newest_instance` is the
/// `ebsnap:instance-id` of the series' newest snapshot; the selected
/// instances and the volumes attached to them are what discovery found.
/// A volume that exists is never gone, attached or not; a volume attached to
/// a selected instance (running or stopped) is backed up, so no orphan; a
/// series whose instance is unknown is no orphan of an instance.
/// `selected_instances` is `None` where no instance carries the selection
/// tag key at all: a mistyped `--tag-key` looks just like that, so no
/// instance's series is judged there, only gone volumes.
pub(crate) fn orphan_reason(
    exists: bool,
    attached_to_selected: bool,
    newest_instance: Option<&str>,
    selected_instances: Option<&HashSet<&str>>,
) -> Option<OrphanReason> {
    if !exists {
        return Some(OrphanReason::VolumeGone);
    }
    if attached_to_selected {
        return None;
    }
    match (newest_instance, selected_instances) {
        (Some(instance), Some(selected)) if !selected.contains(instance) => {
            Some(OrphanReason::InstanceNotSelected)
        }
        _ => None,
    }
}

/// The orphan series among `snapshots` (the job's own, not its copies), by
/// volume id. None unless discovery read which volumes exist
/// (`inventory.existing_volume_ids`, with the tagged instances): what
/// discovery could not tell is never an orphan.
pub(crate) fn orphans(
    inventory: &Inventory,
    snapshots: &[ExistingSnapshot],
    policy: &Policy,
) -> Vec<Orphan> {
    let Some(existing) = &inventory.existing_volume_ids else {
        return vec![];
    };
    let selected: Vec<_> = inventory
        .instances
        .iter()
        .filter(|i| is_selected(&policy.selector, &i.selection_value).is_ok())
        .collect();
    let selected_instances: HashSet<&str> = selected.iter().map(|i| i.id.as_str()).collect();
    let selected_volumes: HashSet<&str> = selected
        .iter()
        .flat_map(|i| &i.volumes)
        .map(|v| v.volume_id.as_str())
        .collect();
    // Each volume's newest snapshot (any state: a pending one is news) and
    // how many it has.
    let mut series: BTreeMap<&str, (&ExistingSnapshot, usize)> = BTreeMap::new();
    for snapshot in snapshots.iter().filter(|s| {
        s.is_marked_for(&policy.job) && s.copy_of.is_none() && !is_no_volume(&s.volume_id)
    }) {
        let (newest, count) = series.entry(&snapshot.volume_id).or_insert((snapshot, 0));
        *count += 1;
        if (snapshot.start_time, &snapshot.id) > (newest.start_time, &newest.id) {
            *newest = snapshot;
        }
    }
    series
        .into_iter()
        .filter_map(|(volume, (newest, count))| {
            let reason = orphan_reason(
                existing.contains(volume),
                selected_volumes.contains(volume),
                newest.instance_id.as_deref(),
                (!inventory.instances.is_empty()).then_some(&selected_instances),
            )?;
            Some(Orphan {
                volume_id: Arc::clone(&newest.volume_id),
                reason,
                instance_id: newest.instance_id.clone(),
                device: newest.device.clone(),
                newest_snapshot_id: newest.id.clone(),
                newest_start_time: newest.start_time,
                snapshots: count,
                size_gib: newest.size_gib,
                purge_after: policy.orphans_after.map(|d| newest.start_time + d),
            })
        })
        .collect()
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

/// The tags of the contract, on every snapshot.
pub(crate) const CONTRACT_TAGS: usize = 5;
/// ebsnap's own tags on a disaster-recovery copy (`--copy-to`): the
/// contract's and where it came from (`ebsnap:source-snapshot`,
/// `ebsnap:source-region`).
pub(crate) const CONTRACT_TAGS_ON_COPY: usize = CONTRACT_TAGS + 2;

/// Refuses, before any call, the user's tags (`--tag`) that cannot all be
/// on every snapshot: a key given twice, or more than fit beside ebsnap's
/// own tags within EC2's 50 (beside the 7 of a copy with `--copy-to`).
/// ebsnap's tags and the user's are never dropped; only copied ones are.
pub(crate) fn check_user_tags(
    user_tags: &[(String, String)],
    copying: bool,
) -> Result<(), UsageError> {
    crate::values::check_distinct_tag_keys(user_tags).map_err(UsageError::DuplicateTag)?;
    let own = if copying {
        CONTRACT_TAGS_ON_COPY
    } else {
        CONTRACT_TAGS
    };
    if user_tags.len() > MAX_TAGS - own {
        return Err(UsageError::TooManyTags {
            given: user_tags.len(),
            copying,
        });
    }
    Ok(())
}

/// A job the plan could never carry out as asked, refused before any call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsageError {
    /// A key given twice among the user's tags.
    DuplicateTag(DuplicateTagKey),
    /// More user tags than fit beside ebsnap's own within EC2's limit, on
    /// a snapshot (or a `--copy-to` copy, which carries 2 more).
    TooManyTags { given: usize, copying: bool },
    /// `--archive-after` without `--keep-monthly` or `--keep-yearly`.
    ArchiveWithoutLongTermRule,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::DuplicateTag(duplicate) => duplicate.fmt(f),
            UsageError::TooManyTags { given, copying } => {
                let (own, on) = if *copying {
                    (CONTRACT_TAGS_ON_COPY, "on a --copy-to copy")
                } else {
                    (CONTRACT_TAGS, "on a snapshot")
                };
                let room = MAX_TAGS - own;
                write!(
                    f,
                    "{given} --tag tags and ebsnap's own {own} {on} are more than the {MAX_TAGS} tags EC2 allows: give at most {room} --tag"
                )
            }
            UsageError::ArchiveWithoutLongTermRule => f.write_str(
                "--archive-after moves only snapshots that --keep-monthly or --keep-yearly \
                 alone keep: add one of them (e.g. --keep-monthly 12), or leave --archive-after out",
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// The `extra` tags that fit on a resource beside `kept` tags of ebsnap's
/// own (which always stay): within EC2's limits, in order, the first that
/// fit. Returns them, and the keys of those left out.
pub(crate) fn fit_tags(
    kept: usize,
    extra: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let (mut fit, mut dropped) = (Vec::new(), Vec::new());
    for (key, value) in extra {
        let within = key.chars().count() <= MAX_TAG_KEY && value.chars().count() <= MAX_TAG_VALUE;
        if within && kept + fit.len() < MAX_TAGS {
            fit.push((key, value));
        } else {
            dropped.push(key);
        }
    }
    (fit, dropped)
}

/// The tags `--copy-tags` puts on a volume's snapshot: the instance's and/or
/// the volume's (the volume's value wins), never `aws:` tags (reserved) nor
/// the contract's own keys (ebsnap's tags win) nor the user's (`--tag`
/// wins), sorted, and no more than fit beside the contract and the user's
/// tags within EC2's limits. Returns them, and the keys of those that did
/// not fit.
pub(crate) fn copied_tags(
    mode: Option<CopyTags>,
    user_tags: &[(String, String)],
    instance_tags: &[(String, String)],
    volume_tags: &[(String, String)],
) -> (Vec<(String, String)>, Vec<String>) {
    let (from_instance, from_volume) = match mode {
        None => return (vec![], vec![]),
        Some(CopyTags::Instance) => (instance_tags, &[][..]),
        Some(CopyTags::Volume) => (&[][..], volume_tags),
        Some(CopyTags::Both) => (instance_tags, volume_tags),
    };
    let copyable = |key: &str| {
        let lower = key.to_ascii_lowercase();
        !lower.starts_with("aws:")
            && !lower.starts_with("ebsnap:")
            && key != TAG_NAME
            && !user_tags.iter().any(|(user, _)| user == key)
    };
    let mut tags: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in from_instance
        .iter()
        .chain(from_volume)
        .filter(|(k, _)| copyable(k))
    {
        tags.insert(key, value);
    }
    let tags = tags.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
    fit_tags(CONTRACT_TAGS + user_tags.len(), tags)
}

/// The values of the selection tag that mean "do not back up".
const NEGATIVE_VALUES: [&str; 5] = ["false", "no", "off", "0", ""];

/// Whether an instance whose selection tag holds `value` is backed up.
/// `Err` carries the reason it is not.
pub(crate) fn is_selected(selector: &TagSelector, value: &str) -> Result<(), NotSelected> {
    match &selector.value {
        Some(wanted) if value == wanted => Ok(()),
        Some(wanted) => Err(NotSelected::OtherValue {
            key: selector.key.clone(),
            value: value.to_owned(),
            wanted: wanted.clone(),
        }),
        None if NEGATIVE_VALUES.contains(&value.trim().to_ascii_lowercase().as_str()) => {
            Err(NotSelected::OptsOut {
                key: selector.key.clone(),
                value: value.to_owned(),
            })
        }
        None => Ok(()),
    }
}

/// Builds the plan for one region. It takes the inventory whole: its
/// snapshots move into the plan rather than being copied (30,000 of them
/// are megabytes). `run_id` tags every snapshot the run makes.
pub(crate) fn build(
    mut inventory: Inventory,
    policy: &Policy,
    steps: Steps,
    run_id: &str,
    now: DateTime<Utc>,
) -> Plan {
    let mut plan = Plan::default();
    // Disaster-recovery copies kept here for another region are not backups
    // of this region's volumes: only the copy purge judges them.
    // In place, here and below: at 30,000 snapshots every extra copy of
    // the list is megabytes.
    let mut own = std::mem::take(&mut inventory.snapshots);
    own.retain(|s| s.copy_of.is_none());
    if steps.snapshot {
        let recent = recent_snapshots(&own, policy, now);
        plan_creates(&inventory, policy, run_id, &recent, &mut plan);
    }
    if steps.purge {
        let good_backups = good_backup_count(&own, policy);
        plan.orphans = orphans(&inventory, &own, policy);
        let due: HashSet<Arc<str>> = plan
            .orphans
            .iter()
            .filter(|o| o.is_due(now))
            .map(|o| Arc::clone(&o.volume_id))
            .collect();
        plan_purge(own, by_volume, &due, policy, now, &mut plan);
        guard_deletes(&mut plan, good_backups, policy);
    }
    plan
}

/// The purge of the disaster-recovery copies one source region keeps in
/// another (`--copy-to`): the same rules as for the source's own snapshots,
/// under `--copy-retention`. A copy has no volume of its own, so each source
/// volume is known by its instance and device. `failed` names the
/// (instance, device) pairs whose copy failed in this run: their old copies
/// all stay (safety rule 3).
pub(crate) fn build_copy_purge(
    copies: Vec<ExistingSnapshot>,
    policy: &Policy,
    copy_retention: Option<TimeDelta>,
    failed: &HashSet<(String, String)>,
    now: DateTime<Utc>,
) -> Plan {
    // The copies stay where they are: the archive tier is for the source
    // region's own backups.
    let policy = Policy {
        retention: copy_retention,
        archive_after: None,
        ..policy.clone()
    };
    let mut copies = copies;
    copies.retain(|s| s.copy_of.is_some());
    let good_backups = good_backup_count(&copies, &policy);
    let mut plan = Plan::default();
    // A copy's source volume is judged in its own region: no orphans here.
    plan_purge(
        copies,
        by_source_volume,
        &HashSet::new(),
        &policy,
        now,
        &mut plan,
    );
    let (withheld, deletes): (Vec<Delete>, Vec<Delete>) = std::mem::take(&mut plan.deletes)
        .into_iter()
        .partition(|delete| {
            let (instance, device) = by_source_volume(&delete.snapshot);
            failed.contains(&(instance.to_owned(), device.to_owned()))
        });
    plan.deletes = deletes;
    plan.kept.extend(withheld.into_iter().map(|delete| Kept {
        snapshot: delete.snapshot,
        reason: KeepReason::VolumeFailed,
    }));
    guard_deletes(&mut plan, good_backups, &policy);
    plan
}

/// How many of `snapshots` are the job's good backups (completed, in the
/// standard tier), and those ebsnap archived itself: what retention can
/// delete, and so what the delete guard weighs a purge against. Those
/// archived by others, which pile up outside retention, must not make a
/// mistaken purge look small.
fn good_backup_count(snapshots: &[ExistingSnapshot], policy: &Policy) -> usize {
    snapshots
        .iter()
        .filter(|s| {
            let ebsnaps_archive = s.archived && s.archived_by_ebsnap.is_some();
            s.is_marked_for(&policy.job) && (s.is_good_backup() || ebsnaps_archive)
        })
        .count()
}

/// Which volume a snapshot backs up, for keep-min and retention: its own.
fn by_volume(snapshot: &ExistingSnapshot) -> (&str, &str) {
    (&snapshot.volume_id, "")
}

/// Which volume a disaster-recovery copy backs up: its instance and device.
fn by_source_volume(snapshot: &ExistingSnapshot) -> (&str, &str) {
    (
        snapshot.instance_id.as_deref().unwrap_or_default(),
        snapshot.device.as_deref().unwrap_or_default(),
    )
}

/// For each volume, the newest job snapshot (completed or pending) started
/// less than `--min-interval` ago: that volume is not snapshotted again.
fn recent_snapshots<'a>(
    snapshots: &'a [ExistingSnapshot],
    policy: &Policy,
    now: DateTime<Utc>,
) -> BTreeMap<&'a str, &'a ExistingSnapshot> {
    let mut recent: BTreeMap<&str, &ExistingSnapshot> = BTreeMap::new();
    if policy.min_interval <= TimeDelta::zero() {
        return recent;
    }
    let since = now - policy.min_interval;
    for snapshot in snapshots {
        let counts = matches!(
            snapshot.state,
            SnapshotState::Completed | SnapshotState::Pending
        );
        if counts && snapshot.is_marked_for(&policy.job) && snapshot.start_time > since {
            let newest = recent.entry(&snapshot.volume_id).or_insert(snapshot);
            if snapshot.start_time > newest.start_time {
                *newest = snapshot;
            }
        }
    }
    recent
}

/// Safety rule 8: a purge that would expire more than half of the job's
/// snapshots in the region, or delete more than `--max-delete` when given,
/// is refused unless `--force`. A healthy purge expires about one snapshot
/// of each volume's retention's worth (one in eight for daily runs kept 7
/// days), whatever the fleet's size; half or more gone at once is the mark
/// of a mistake: a clock far ahead, a retention cut by an order of
/// magnitude. Snapshots in error hold nothing: they neither count towards
/// the half nor are ever held back.
fn guard_deletes(plan: &mut Plan, good_backups: usize, policy: &Policy) {
    let planned = plan.deletes.len();
    if policy.force || planned == 0 {
        return;
    }
    let expiring = plan
        .deletes
        .iter()
        .filter(|d| d.reason != DeleteReason::Error)
        .count();
    let mut reasons = Vec::new();
    if let Some(max_delete) = policy.max_delete.filter(|&max| planned > max) {
        reasons.push(format!("more than --max-delete {max_delete}"));
    }
    if expiring * 2 > good_backups {
        reasons.push(format!(
            "more than half of the job's {good_backups} snapshots here"
        ));
    }
    if reasons.is_empty() {
        return;
    }
    plan.purge_refused = Some(format!(
        "refused to delete {planned} snapshots ({}): check the plan with --dry-run, then rerun with --force",
        reasons.join(", ")
    ));
    // What makes a purge too large (a clock far ahead, rules cut by
    // mistake) makes its archives suspect too, and each costs 90 days.
    plan.archives.clear();
    let (errors, withheld): (Vec<Delete>, Vec<Delete>) = std::mem::take(&mut plan.deletes)
        .into_iter()
        .partition(|d| d.reason == DeleteReason::Error);
    plan.deletes = errors;
    plan.kept.extend(withheld.into_iter().map(|delete| Kept {
        snapshot: delete.snapshot,
        reason: KeepReason::DeleteGuard,
    }));
}

/// Why a volume is left out of every backup on purpose, if it is: tagged
/// `ebsnap:skip=true`, or the root with `--exclude-boot`. `check` asks the
/// same: such a volume has no stale backup.
pub(crate) fn left_out_on_purpose(
    volume: &AttachedVolume,
    skip_volume_ids: &BTreeSet<String>,
    policy: &Policy,
) -> Option<SkipReason> {
    if skip_volume_ids.contains(&volume.volume_id) {
        return Some(SkipReason::SkipTag);
    }
    if policy.exclude_boot && volume.is_root {
        return Some(SkipReason::ExcludedBoot);
    }
    None
}

/// Why a volume of a selected instance is left out of this run, if it is:
/// on purpose, or snapshotted within `--min-interval`.
fn skip_reason(
    volume: &AttachedVolume,
    inventory: &Inventory,
    policy: &Policy,
    recent: &BTreeMap<&str, &ExistingSnapshot>,
) -> Option<SkipReason> {
    if let Some(on_purpose) = left_out_on_purpose(volume, &inventory.skip_volume_ids, policy) {
        return Some(on_purpose);
    }
    recent
        .get(volume.volume_id.as_str())
        .map(|snapshot| SkipReason::Recent {
            snapshot_id: snapshot.id.clone(),
            started: snapshot.start_time,
        })
}

fn plan_creates(
    inventory: &Inventory,
    policy: &Policy,
    run_id: &str,
    recent: &BTreeMap<&str, &ExistingSnapshot>,
    plan: &mut Plan,
) {
    // The instance each volume is snapshotted with: a volume attached to
    // two selected instances (io2 Multi-Attach) gets one snapshot a run,
    // with the first; the other leaves it out.
    let mut snapshotted_with: BTreeMap<&str, &str> = BTreeMap::new();
    let user_tags: Arc<[(String, String)]> = policy.user_tags.as_slice().into();
    let run = RunTags {
        job: &policy.job,
        run_id,
        user: &user_tags,
    };
    for instance in &inventory.instances {
        if let Err(reason) = is_selected(&policy.selector, &instance.selection_value) {
            plan.skipped_instances.push(SkippedInstance {
                instance_id: instance.id.clone(),
                instance_name: instance.name.clone(),
                reason: InstanceSkip::NotSelected(reason),
            });
            continue;
        }
        if instance.volumes.is_empty() {
            plan.skipped_instances.push(SkippedInstance {
                instance_id: instance.id.clone(),
                instance_name: instance.name.clone(),
                reason: InstanceSkip::NoVolume,
            });
        }
        let first_create = plan.creates.len();
        let mut left_out = Vec::new();
        // A volume attached twice in the mappings is still one volume.
        let mut seen = HashSet::new();
        for volume in instance
            .volumes
            .iter()
            .filter(|v| seen.insert(&v.volume_id))
        {
            let skip = match snapshotted_with.get(volume.volume_id.as_str()) {
                Some(other) => Some(SkipReason::MultiAttach {
                    other_instance_id: (*other).to_owned(),
                }),
                None => skip_reason(volume, inventory, policy, recent),
            };
            if let Some(reason) = skip {
                left_out.push(volume);
                plan.skipped_volumes.push(SkippedVolume {
                    instance_id: instance.id.clone(),
                    instance_name: instance.name.clone(),
                    volume_id: volume.volume_id.clone(),
                    device: volume.device.clone(),
                    reason,
                });
                continue;
            }
            let volume_tags = inventory
                .volume_tags
                .get(&volume.volume_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            snapshotted_with.insert(&volume.volume_id, &instance.id);
            let (copied, dropped) =
                copied_tags(policy.copy_tags, run.user, &instance.tags, volume_tags);
            plan.creates.push(Create::new(
                &instance.id,
                instance.name.as_deref(),
                &volume.volume_id,
                &volume.device,
                run,
                copied,
                dropped,
            ));
        }
        if plan.creates.len() > first_create {
            plan.sets.push(SnapshotSet::new(
                &instance.id,
                instance.name.as_deref(),
                (first_create..plan.creates.len()).collect(),
                &left_out,
                run,
            ));
        }
    }
}

/// Judges each snapshot, moving it into the plan: kept (and why) or
/// deleted. `volume_of` says which volume a snapshot backs up, for keep-min;
/// `orphans_due` names the volumes whose whole series goes
/// (`--orphans-after`). Unmarked ones come first, then each volume's,
/// newest first.
fn plan_purge(
    mut snapshots: Vec<ExistingSnapshot>,
    volume_of: for<'a> fn(&'a ExistingSnapshot) -> (&'a str, &'a str),
    orphans_due: &HashSet<Arc<str>>,
    policy: &Policy,
    now: DateTime<Utc>,
    plan: &mut Plan,
) {
    let unmarked = snapshots.extract_if(.., |s| !s.is_marked_for(&policy.job));
    plan.kept.extend(unmarked.map(|snapshot| Kept {
        snapshot,
        reason: KeepReason::NotMarked,
    }));
    // By volume, newest first; the id makes the order total, so the plan is
    // deterministic.
    snapshots.sort_unstable_by(|a, b| {
        volume_of(a)
            .cmp(&volume_of(b))
            .then(b.start_time.cmp(&a.start_time))
            .then(a.id.cmp(&b.id))
    });
    let duplicates = duplicates_of_a_run(&snapshots, volume_of);
    let mut verdicts = Vec::with_capacity(snapshots.len());
    let mut newer_good = 0;
    let mut calendar = Calendar::new(&policy.keep, policy.timezone);
    for (position, snapshot) in snapshots.iter().enumerate() {
        if position == 0 || volume_of(&snapshots[position - 1]) != volume_of(snapshot) {
            newer_good = 0;
            calendar.reset();
        }
        let verdict = if duplicates.contains(&position) {
            Verdict::Delete(DeleteReason::Duplicate)
        } else {
            let orphaned = orphans_due.contains(&snapshot.volume_id);
            let (verdict, judgement) =
                verdict(snapshot, newer_good, orphaned, &mut calendar, policy, now);
            if let (Verdict::Keep(KeepReason::Calendar(kept_by)), Some(judgement)) =
                (&verdict, judgement)
            {
                plan.archives.extend(archive_due(
                    snapshot, *kept_by, &judgement, newer_good, policy, now,
                ));
            }
            verdict
        };
        if verdict.is_keep() && snapshot.is_good_backup() {
            newer_good += 1;
        }
        verdicts.push(verdict);
    }
    let kept = verdicts.iter().filter(|v| v.is_keep()).count();
    plan.kept.reserve_exact(kept);
    plan.deletes.reserve_exact(verdicts.len() - kept);
    let (first_kept, first_delete) = (plan.kept.len(), plan.deletes.len());
    // Moved from the back, the list shrinking as the plan fills, so that at
    // 30,000 snapshots they are never held twice; then turned back into
    // sorted order.
    while let (Some(snapshot), Some(verdict)) = (snapshots.pop(), verdicts.pop()) {
        match verdict {
            Verdict::Keep(reason) => plan.kept.push(Kept { snapshot, reason }),
            Verdict::Delete(reason) => plan.deletes.push(Delete { snapshot, reason }),
        }
        if snapshots.capacity() - snapshots.len() >= SHRINK_STEP {
            snapshots.shrink_to_fit();
        }
    }
    plan.kept[first_kept..].reverse();
    plan.deletes[first_delete..].reverse();
}

/// How many moved-out snapshots `plan_purge` lets pile up before it hands
/// their memory back: about 160 KiB.
const SHRINK_STEP: usize = 1024;

/// The positions in `sorted` (by volume, newest first) of the snapshots of
/// a volume that share their instance and run id with another one (both set
/// in the create call itself, so on every snapshot ebsnap makes): a run makes
/// one snapshot of a volume, so all but one are the duplicates a retried
/// create left. The one kept is the oldest with its `ebsnap:device` tag (a
/// CreateSnapshots whose answer was lost leaves a first snapshot without
/// it), else the oldest. Only good backups count: a pending one is never
/// deleted (it is judged next run), one in error is deleted anyway, an
/// archived one stays. A snapshot without a volume of its own (EC2 gives a
/// copy `vol-ffffffff`) is never taken for a duplicate.
fn duplicates_of_a_run(
    sorted: &[ExistingSnapshot],
    volume_of: for<'a> fn(&'a ExistingSnapshot) -> (&'a str, &'a str),
) -> HashSet<usize> {
    let mut duplicates = HashSet::new();
    // One volume at a time (`sorted` holds each volume's snapshots
    // together), so the work space is one volume's, never the account's.
    let mut start = 0;
    while start < sorted.len() {
        let volume = volume_of(&sorted[start]);
        let end = start
            + sorted[start..]
                .iter()
                .take_while(|s| volume_of(s) == volume)
                .count();
        if !is_no_volume(volume.0) {
            let mut runs: Vec<(Option<&str>, &str, usize)> = (start..end)
                .filter(|&p| sorted[p].is_good_backup())
                .filter_map(|p| {
                    let s = &sorted[p];
                    Some((s.instance_id.as_deref(), s.run_id.as_deref()?, p))
                })
                .collect();
            runs.sort_unstable();
            for run in runs.chunk_by(|a, b| (a.0, a.1) == (b.0, b.1)) {
                if run.len() < 2 {
                    continue;
                }
                // Newest first: a larger position is older.
                let keep = run
                    .iter()
                    .map(|&(_, _, p)| p)
                    .max_by_key(|&p| (sorted[p].device.is_some(), p));
                duplicates.extend(run.iter().map(|&(_, _, p)| p).filter(|&p| Some(p) != keep));
            }
        }
        start = end;
    }
    duplicates
}

/// Whether a job snapshot is kept or deleted, and why, and what the
/// calendar said of it where it weighed it.
/// `newer_good` counts the good backups (`is_good_backup`) of the same
/// volume that started after this one and are kept; `calendar` has seen
/// those newer backups, and sees this one if it is a good backup or one
/// ebsnap archived: every rule weighs every backup, whichever rule keeps
/// it. `orphaned`: the snapshot's series is an orphan past
/// `--orphans-after`, so it goes whatever retention, the calendar and
/// `--keep-min` say; what is never deleted (pending, archived by others)
/// still stays, what ebsnap archived stays its 90 days, and the delete
/// guard still weighs it.
fn verdict(
    snapshot: &ExistingSnapshot,
    newer_good: usize,
    orphaned: bool,
    calendar: &mut Calendar<'_>,
    policy: &Policy,
    now: DateTime<Utc>,
) -> (Verdict, Option<Judgement>) {
    match &snapshot.state {
        SnapshotState::Pending | SnapshotState::Other(_) => {
            let state = snapshot.state.as_str().to_owned();
            return (Verdict::Keep(KeepReason::NotFinished { state }), None);
        }
        SnapshotState::Error => return (Verdict::Delete(DeleteReason::Error), None),
        SnapshotState::Completed => {}
    }
    if snapshot.archived && snapshot.archived_by_ebsnap.is_none() {
        return (Verdict::Keep(KeepReason::Archived), None);
    }
    // What ebsnap asked to archive (archived, or still on its way, or
    // restored since) is billed its 90 days whenever it goes.
    let archive_minimum = snapshot
        .archived_by_ebsnap
        .map(|since| since + ARCHIVE_MINIMUM)
        .filter(|until| now < *until);
    let gone = |reason: DeleteReason| match archive_minimum {
        Some(until) => Verdict::Keep(KeepReason::ArchiveMinimum { until }),
        None => Verdict::Delete(reason),
    };
    if orphaned {
        return (gone(DeleteReason::Orphaned), None);
    }
    let judgement = calendar.judge(snapshot.start_time);
    let verdict = if let Some(expires_at) = policy
        .retention
        .map(|r| snapshot.start_time + r)
        .filter(|expires_at| now <= *expires_at)
    {
        Verdict::Keep(KeepReason::WithinRetention { expires_at })
    } else if let Some(by) = judgement.kept_by {
        Verdict::Keep(KeepReason::Calendar(by))
    } else if newer_good < policy.keep_min && !snapshot.archived {
        Verdict::Keep(KeepReason::KeepMin {
            keep_min: policy.keep_min,
        })
    } else {
        gone(DeleteReason::Expired)
    };
    (verdict, Some(judgement))
}

/// `--archive-after` moves only what the monthly or yearly rules alone
/// keep: without either, it could never move anything.
pub(crate) fn check_archive_after(policy: &Policy) -> Result<(), UsageError> {
    if policy.archive_after.is_some() && policy.keep.monthly == 0 && policy.keep.yearly == 0 {
        return Err(UsageError::ArchiveWithoutLongTermRule);
    }
    Ok(())
}

/// Whether a snapshot the calendar keeps moves to the archive tier now
/// (`--archive-after`), and if so the earliest its rules could let it go.
/// Only a good backup in the standard tier that ebsnap never asked to
/// archive before, that only the monthly or yearly rules keep (not
/// `--keep-within`, which returns before the calendar does), older than
/// `--archive-after`, with a newer good backup of its volume and outside
/// the `--keep-min` floor, and that those rules keep for 90 days more at
/// least.
fn archive_due(
    snapshot: &ExistingSnapshot,
    kept_by: KeptBy,
    judgement: &Judgement,
    newer_good: usize,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Option<Archive> {
    let after = policy.archive_after?;
    let released_at_earliest = judgement.released_at_earliest?;
    let due = snapshot.is_good_backup()
        && snapshot.archived_by_ebsnap.is_none()
        && judgement.long_term_only
        && newer_good >= policy.keep_min.max(1)
        && snapshot.start_time + after <= now
        && released_at_earliest >= now + ARCHIVE_MINIMUM;
    due.then(|| Archive {
        snapshot: snapshot.clone(),
        kept_by,
        released_at_earliest,
    })
}

/// One id per run, shared by every snapshot of the run: the time it started
/// and a few bits to tell apart two runs in the same second.
pub(crate) fn run_id(now: DateTime<Utc>, entropy: u32) -> String {
    format!("{}-{:04x}", now.format("%Y%m%dT%H%M%SZ"), entropy & 0xffff)
}

/// Describes the policy in one line, for reports: `retention 7d, keep-min 1`,
/// or `keep-daily 7, keep-weekly 5, timezone Asia/Kolkata, keep-min 1`.
pub(crate) fn describe_policy(policy: &Policy) -> String {
    let keep = &policy.keep;
    let mut parts: Vec<String> = Vec::new();
    if let Some(retention) = policy.retention {
        parts.push(format!("retention {}", format_duration(retention)));
    }
    for (name, n) in [
        ("keep-last", keep.last),
        ("keep-hourly", keep.hourly),
        ("keep-daily", keep.daily),
        ("keep-weekly", keep.weekly),
        ("keep-monthly", keep.monthly),
        ("keep-yearly", keep.yearly),
    ] {
        if n > 0 {
            parts.push(format!("{name} {n}"));
        }
    }
    if keep.any() && policy.timezone != chrono_tz::Tz::UTC {
        parts.push(format!("timezone {}", policy.timezone.name()));
    }
    parts.push(format!("keep-min {}", policy.keep_min));
    if let Some(after) = policy.orphans_after {
        parts.push(format!("orphans-after {}", format_duration(after)));
    }
    if let Some(after) = policy.archive_after {
        parts.push(format!("archive-after {}", format_duration(after)));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::testing::job_snapshot;
    use crate::inventory::{AttachedVolume, Instance};
    use crate::values::format_age;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn policy() -> Policy {
        // The small fixtures here would trip the delete guard; its own
        // tests turn it back on.
        Policy {
            force: true,
            ..crate::config::testing::policy()
        }
    }

    fn guarded() -> Policy {
        Policy {
            force: false,
            ..policy()
        }
    }
    const PURGE: Steps = Steps {
        snapshot: false,
        purge: true,
    };
    const SNAPSHOT: Steps = Steps {
        snapshot: true,
        purge: false,
    };

    fn snap(id: &str, volume: &str, age: TimeDelta, state: SnapshotState) -> ExistingSnapshot {
        ExistingSnapshot {
            state,
            device: Some("/dev/xvda".into()),
            ..job_snapshot(id, volume, now() - age)
        }
    }

    fn completed(id: &str, volume: &str, age: TimeDelta) -> ExistingSnapshot {
        snap(id, volume, age, SnapshotState::Completed)
    }

    fn instance(id: &str, value: &str, volumes: &[&str]) -> Instance {
        Instance {
            id: id.into(),
            name: None,
            selection_value: value.into(),
            tags: vec![],
            volumes: volumes
                .iter()
                .enumerate()
                .map(|(i, v)| AttachedVolume {
                    volume_id: (*v).into(),
                    device: format!("/dev/sd{}", (b'a' + i as u8) as char),
                    is_root: i == 0,
                })
                .collect(),
        }
    }

    fn purge(snapshots: Vec<ExistingSnapshot>, policy: &Policy) -> Plan {
        build(
            Inventory {
                instances: vec![],
                snapshots,
                ..Inventory::default()
            },
            policy,
            PURGE,
            "r1",
            now(),
        )
    }

    fn deleted_ids(plan: &Plan) -> Vec<&str> {
        plan.deletes.iter().map(|d| &*d.snapshot.id).collect()
    }

    fn kept_reason<'a>(plan: &'a Plan, id: &str) -> &'a KeepReason {
        &plan
            .kept
            .iter()
            .find(|k| *k.snapshot.id == *id)
            .expect(id)
            .reason
    }

    #[test]
    fn selection_values_without_tag_value() {
        let selector = TagSelector {
            key: "Scheduled-Snapshots".into(),
            value: None,
        };
        for yes in ["true", "yes", "True", "daily", "1"] {
            assert_eq!(is_selected(&selector, yes), Ok(()), "{yes}");
        }
        for no in ["false", "FALSE", "no", "off", "Off", "0", "", "  "] {
            assert!(is_selected(&selector, no).is_err(), "{no:?}");
        }
    }

    #[test]
    fn selection_with_tag_value_is_exact() {
        let selector = TagSelector {
            key: "Backup".into(),
            value: Some("hourly".into()),
        };
        assert_eq!(is_selected(&selector, "hourly"), Ok(()));
        assert!(is_selected(&selector, "Hourly").is_err());
        assert!(is_selected(&selector, "true").is_err());
        let err = is_selected(&selector, "daily").unwrap_err();
        assert_eq!(
            err,
            NotSelected::OtherValue {
                key: "Backup".into(),
                value: "daily".into(),
                wanted: "hourly".into()
            }
        );
        assert_eq!(err.to_string(), "Backup=\"daily\", not \"hourly\"");
    }

    #[test]
    fn creates_one_snapshot_per_volume_of_selected_instances_only() {
        let inventory = Inventory {
            instances: vec![
                instance("i-yes", "true", &["vol-a", "vol-b"]),
                instance("i-off", "off", &["vol-c"]),
                instance("i-empty", "", &["vol-d"]),
                instance("i-twice", "yes", &["vol-e", "vol-e"]),
            ],
            snapshots: vec![],
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        let volumes: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(volumes, ["vol-a", "vol-b", "vol-e"]);
        let skipped: Vec<_> = plan
            .skipped_instances
            .iter()
            .map(|s| s.instance_id.as_str())
            .collect();
        assert_eq!(skipped, ["i-off", "i-empty"]);
        assert_eq!(
            plan.skipped_instances[0].reason,
            InstanceSkip::NotSelected(NotSelected::OptsOut {
                key: "Scheduled-Snapshots".into(),
                value: "off".into()
            })
        );
        assert!(plan.skipped_instances[0]
            .reason
            .to_string()
            .contains("opts out"));
    }

    #[test]
    fn an_instance_without_volumes_is_reported() {
        let inventory = Inventory {
            instances: vec![instance("i-1", "true", &[])],
            snapshots: vec![],
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        assert!(plan.creates.is_empty());
        assert_eq!(plan.skipped_instances[0].reason, InstanceSkip::NoVolume);
        assert_eq!(
            plan.skipped_instances[0].reason.to_string(),
            "no EBS volume attached"
        );
    }

    #[test]
    fn create_carries_every_contract_tag_and_a_description() {
        let run = RunTags {
            job: "hourly",
            run_id: "r1",
            user: &Arc::default(),
        };
        let create = Create::new(
            "i-1",
            Some("mongo-1"),
            "vol-1",
            "/dev/xvdf",
            run,
            vec![],
            vec![],
        );
        let tags = create.tags.to_vec();
        let expected = [
            ("ebsnap:job", "hourly"),
            ("ebsnap:instance-id", "i-1"),
            ("ebsnap:device", "/dev/xvdf"),
            ("ebsnap:run-id", "r1"),
            ("Name", "mongo-1 /dev/xvdf"),
        ];
        assert_eq!(tags, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(
            create.description,
            "ebsnap job=hourly instance=i-1 (mongo-1) device=/dev/xvdf"
        );
        let unnamed = Create::new("i-1", None, "vol-1", "/dev/xvdf", run, vec![], vec![]);
        assert_eq!(unnamed.tags.to_vec()[4].1, "i-1 /dev/xvdf");
        assert_eq!(
            unnamed.description,
            "ebsnap job=hourly instance=i-1 device=/dev/xvdf"
        );
    }

    #[test]
    fn retention_boundary() {
        let just_under = TimeDelta::days(7) - TimeDelta::seconds(1);
        let just_over = TimeDelta::days(7) + TimeDelta::seconds(1);
        let plan = purge(
            vec![
                completed("snap-new", "vol-1", TimeDelta::hours(1)),
                completed("snap-under", "vol-1", just_under),
                completed("snap-over", "vol-1", just_over),
            ],
            &policy(),
        );
        assert_eq!(deleted_ids(&plan), ["snap-over"]);
        assert!(matches!(
            kept_reason(&plan, "snap-under"),
            KeepReason::WithinRetention { .. }
        ));
    }

    #[test]
    fn exactly_at_retention_is_kept() {
        let plan = purge(
            vec![
                completed("snap-new", "vol-1", TimeDelta::hours(1)),
                completed("snap-7d", "vol-1", TimeDelta::days(7)),
            ],
            &policy(),
        );
        assert!(plan.deletes.is_empty());
    }

    #[test]
    fn a_list_longer_than_the_shrink_step_keeps_its_order_and_every_verdict() {
        // Three volumes, 1,200 hourly snapshots each (50 days), handed over
        // shuffled and with unmarked ones among them: the plan hands memory
        // back as it goes (SHRINK_STEP), and must still judge each snapshot
        // once, by volume and newest first.
        let hours = 1_200;
        let mut snapshots = Vec::new();
        for hour in 0..hours {
            for volume in ["vol-c", "vol-a", "vol-b"] {
                let id = format!("snap-{volume}-{hour:04}");
                snapshots.push(completed(&id, volume, TimeDelta::hours(hour)));
            }
            if hour % 100 == 0 {
                let mut other = completed(
                    &format!("snap-other-{hour:04}"),
                    "vol-a",
                    TimeDelta::hours(hour),
                );
                other.job = None;
                snapshots.push(other);
            }
        }
        snapshots.reverse();
        assert!(snapshots.len() > 3 * SHRINK_STEP);
        let plan = purge(snapshots, &policy());

        // 7 days of retention: hours 0..=168 stay, the rest go.
        let expected = |keep: bool| -> Vec<String> {
            ["vol-a", "vol-b", "vol-c"]
                .iter()
                .flat_map(|volume| {
                    (0..hours)
                        .filter(move |hour| (*hour <= 168) == keep)
                        .map(move |hour| format!("snap-{volume}-{hour:04}"))
                })
                .collect()
        };
        assert_eq!(deleted_ids(&plan), expected(false));
        let unmarked: Vec<String> = (0..hours)
            .rev()
            .filter(|hour| hour % 100 == 0)
            .map(|hour| format!("snap-other-{hour:04}"))
            .collect();
        let kept: Vec<&str> = plan.kept.iter().map(|k| &*k.snapshot.id).collect();
        let mut wanted: Vec<String> = unmarked;
        wanted.extend(expected(true));
        assert_eq!(kept, wanted);
        assert!(plan.kept[..12]
            .iter()
            .all(|k| matches!(k.reason, KeepReason::NotMarked)));
    }

    #[test]
    fn keep_min_protects_the_newest_completed_snapshot_past_retention() {
        let plan = purge(
            vec![
                completed("snap-10d", "vol-1", TimeDelta::days(10)),
                completed("snap-9d", "vol-1", TimeDelta::days(9)),
                completed("snap-20d", "vol-1", TimeDelta::days(20)),
            ],
            &policy(),
        );
        assert_eq!(deleted_ids(&plan), ["snap-10d", "snap-20d"]);
        assert_eq!(
            kept_reason(&plan, "snap-9d"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
    }

    #[test]
    fn keep_min_counts_per_volume_and_honours_larger_values() {
        let policy = Policy {
            keep_min: 2,
            ..policy()
        };
        let plan = purge(
            vec![
                completed("a1", "vol-a", TimeDelta::days(8)),
                completed("a2", "vol-a", TimeDelta::days(9)),
                completed("a3", "vol-a", TimeDelta::days(10)),
                completed("b1", "vol-b", TimeDelta::days(30)),
            ],
            &policy,
        );
        assert_eq!(deleted_ids(&plan), ["a3"]);
        assert_eq!(
            kept_reason(&plan, "b1"),
            &KeepReason::KeepMin { keep_min: 2 }
        );
    }

    #[test]
    fn pending_is_never_deleted_and_never_counts_as_a_good_backup() {
        let plan = purge(
            vec![
                snap(
                    "pending-old",
                    "vol-1",
                    TimeDelta::days(9),
                    SnapshotState::Pending,
                ),
                snap(
                    "pending-new",
                    "vol-1",
                    TimeDelta::hours(1),
                    SnapshotState::Pending,
                ),
                completed("done-old", "vol-1", TimeDelta::days(8)),
            ],
            &policy(),
        );
        assert!(plan.deletes.is_empty(), "{:?}", deleted_ids(&plan));
        assert_eq!(kept_reason(&plan, "pending-old").code(), "pending");
        // The newer pending snapshot does not count: the completed one is the last good backup.
        assert_eq!(
            kept_reason(&plan, "done-old"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
    }

    #[test]
    fn unknown_states_are_never_deleted() {
        let plan = purge(
            vec![
                snap(
                    "odd",
                    "vol-1",
                    TimeDelta::days(30),
                    SnapshotState::Other("recoverable".into()),
                ),
                completed("good", "vol-1", TimeDelta::days(1)),
            ],
            &policy(),
        );
        assert!(plan.deletes.is_empty());
        assert_eq!(
            kept_reason(&plan, "odd").to_string(),
            "recoverable: not finished, so never deleted"
        );
    }

    #[test]
    fn an_error_snapshot_is_no_good_backup_and_ages_out() {
        let plan = purge(
            vec![
                snap("broken", "vol-1", TimeDelta::days(8), SnapshotState::Error),
                completed("good", "vol-1", TimeDelta::days(9)),
            ],
            &policy(),
        );
        assert_eq!(deleted_ids(&plan), ["broken"]);
        assert_eq!(
            kept_reason(&plan, "good"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
    }

    #[test]
    fn unmarked_and_other_job_snapshots_are_never_deleted() {
        let mut unmarked = completed("unmarked", "vol-1", TimeDelta::days(30));
        unmarked.job = None;
        let mut weekly = completed("weekly", "vol-1", TimeDelta::days(30));
        weekly.job = Some("weekly".into());
        let plan = purge(
            vec![
                unmarked,
                weekly,
                completed("ours", "vol-1", TimeDelta::days(1)),
            ],
            &policy(),
        );
        assert!(plan.deletes.is_empty());
        assert_eq!(kept_reason(&plan, "unmarked"), &KeepReason::NotMarked);
        assert_eq!(kept_reason(&plan, "weekly"), &KeepReason::NotMarked);
    }

    /// A disaster-recovery copy from us-east-1 of `device` on i-1. Like real
    /// EC2's copies, it names no volume of its own.
    fn copy(id: &str, device: &str, age: TimeDelta) -> ExistingSnapshot {
        ExistingSnapshot {
            volume_id: "vol-ffffffff".into(),
            device: Some(device.into()),
            copy_of: Some(Box::new(crate::inventory::CopyOrigin {
                region: "us-east-1".into(),
                snapshot_id: format!("src-{id}"),
            })),
            ..completed(id, "vol-ffffffff", age)
        }
    }

    #[test]
    fn the_source_regions_purge_leaves_copies_kept_there_alone() {
        let plan = purge(
            vec![
                copy("copy-old", "/dev/xvda", TimeDelta::days(30)),
                completed("own-old", "vol-a", TimeDelta::days(9)),
                completed("own-new", "vol-a", TimeDelta::days(1)),
            ],
            &policy(),
        );
        assert_eq!(deleted_ids(&plan), ["own-old"]);
        assert!(
            plan.kept.iter().all(|k| &*k.snapshot.id != "copy-old"),
            "{plan:?}"
        );
    }

    #[test]
    fn copies_are_purged_under_copy_retention_per_source_volume() {
        let copies = vec![
            copy("a-1d", "/dev/xvda", TimeDelta::days(1)),
            copy("a-20d", "/dev/xvda", TimeDelta::days(20)),
            copy("a-40d", "/dev/xvda", TimeDelta::days(40)),
            // /dev/xvdf's backups stopped: its newest copy stays (rule 2).
            copy("f-40d", "/dev/xvdf", TimeDelta::days(40)),
            copy("f-50d", "/dev/xvdf", TimeDelta::days(50)),
        ];
        let plan = build_copy_purge(
            copies,
            &policy(),
            Some(TimeDelta::days(30)),
            &HashSet::new(),
            now(),
        );
        assert_eq!(deleted_ids(&plan), ["a-40d", "f-50d"]);
        assert!(matches!(
            kept_reason(&plan, "a-20d"),
            KeepReason::WithinRetention { .. }
        ));
        assert_eq!(
            kept_reason(&plan, "f-40d"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
    }

    #[test]
    fn a_failed_copy_keeps_that_volumes_old_copies() {
        let copies = vec![
            copy("a-1d", "/dev/xvda", TimeDelta::days(1)),
            copy("a-9d", "/dev/xvda", TimeDelta::days(9)),
            copy("f-1d", "/dev/xvdf", TimeDelta::days(1)),
            copy("f-9d", "/dev/xvdf", TimeDelta::days(9)),
        ];
        let failed = HashSet::from([("i-1".to_string(), "/dev/xvdf".to_string())]);
        let plan = build_copy_purge(copies, &policy(), Some(TimeDelta::days(7)), &failed, now());
        assert_eq!(deleted_ids(&plan), ["a-9d"]);
        assert_eq!(kept_reason(&plan, "f-9d"), &KeepReason::VolumeFailed);
    }

    #[test]
    fn the_copy_purge_has_the_delete_guard_too() {
        let copies = vec![
            copy("a-1d", "/dev/xvda", TimeDelta::days(1)),
            copy("a-9d", "/dev/xvda", TimeDelta::days(9)),
            copy("a-10d", "/dev/xvda", TimeDelta::days(10)),
        ];
        let plan = build_copy_purge(
            copies,
            &guarded(),
            Some(TimeDelta::days(7)),
            &HashSet::new(),
            now(),
        );
        assert!(plan.deletes.is_empty());
        assert!(plan.purge_refused.is_some());
        assert_eq!(kept_reason(&plan, "a-9d"), &KeepReason::DeleteGuard);
    }

    #[test]
    fn snapshot_only_plans_no_purge_and_purge_only_plans_no_create() {
        let inventory = Inventory {
            instances: vec![instance("i-1", "true", &["vol-1"])],
            snapshots: vec![
                completed("new", "vol-1", TimeDelta::days(1)),
                completed("old", "vol-1", TimeDelta::days(9)),
            ],
            ..Inventory::default()
        };
        let snapshot_only = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        assert_eq!(snapshot_only.creates.len(), 1);
        assert!(snapshot_only.deletes.is_empty() && snapshot_only.kept.is_empty());
        let purge_only = build(inventory.clone(), &policy(), PURGE, "r1", now());
        assert!(purge_only.creates.is_empty());
        assert_eq!(deleted_ids(&purge_only), ["old"]);
    }

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
    fn a_volume_snapshotted_within_min_interval_is_not_snapshotted_again() {
        let mut other_job = snap(
            "weekly-new",
            "vol-c",
            TimeDelta::minutes(1),
            SnapshotState::Completed,
        );
        other_job.job = Some("weekly".into());
        let inventory = Inventory {
            instances: vec![instance(
                "i-1",
                "true",
                &["vol-a", "vol-b", "vol-c", "vol-d"],
            )],
            snapshots: vec![
                snap(
                    "a-pending",
                    "vol-a",
                    TimeDelta::minutes(3),
                    SnapshotState::Pending,
                ),
                completed("b-old", "vol-b", TimeDelta::minutes(11)),
                other_job,
                snap(
                    "d-error",
                    "vol-d",
                    TimeDelta::minutes(1),
                    SnapshotState::Error,
                ),
            ],
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        let created: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(
            created,
            ["vol-b", "vol-c", "vol-d"],
            "only a recent good or pending job snapshot counts"
        );
        assert_eq!(plan.skipped_volumes.len(), 1);
        assert_eq!(plan.skipped_volumes[0].volume_id, "vol-a");
        assert!(
            matches!(
                &plan.skipped_volumes[0].reason,
                SkipReason::Recent { snapshot_id, .. } if snapshot_id == "a-pending"
            ),
            "{:?}",
            plan.skipped_volumes[0].reason
        );
        assert_eq!(plan.skipped_volumes[0].reason.code(), "recent");
        assert!(plan.skipped_volumes[0]
            .reason
            .to_string()
            .starts_with("a-pending of this job started"));

        let disabled = Policy {
            min_interval: TimeDelta::zero(),
            ..policy()
        };
        assert_eq!(
            build(inventory.clone(), &disabled, SNAPSHOT, "r1", now())
                .creates
                .len(),
            4
        );
    }

    fn expired(n: usize, volume: &str) -> Vec<ExistingSnapshot> {
        (0..n)
            .map(|i| {
                completed(
                    &format!("{volume}-old{i}"),
                    volume,
                    TimeDelta::days(8 + i as i64),
                )
            })
            .collect()
    }

    #[test]
    fn a_normal_purge_passes_the_guard() {
        let mut snapshots = expired(1, "vol-a");
        snapshots
            .extend((0..7).map(|d| completed(&format!("new{d}"), "vol-a", TimeDelta::days(d))));
        let plan = purge(snapshots, &guarded());
        assert_eq!(plan.deletes.len(), 1);
        assert_eq!(plan.purge_refused, None);
    }

    #[test]
    fn a_purge_of_more_than_half_of_the_job_is_refused_without_force() {
        // 3 volumes, each with 1 recent and 2 expired snapshots: 6 of 9 would go.
        let mut snapshots = Vec::new();
        for volume in ["vol-a", "vol-b", "vol-c"] {
            snapshots.push(completed(
                &format!("{volume}-new"),
                volume,
                TimeDelta::days(1),
            ));
            snapshots.extend(expired(2, volume));
        }
        let plan = purge(snapshots.clone(), &guarded());
        assert!(plan.deletes.is_empty());
        assert_eq!(
            plan.purge_refused.as_deref(),
            Some("refused to delete 6 snapshots (more than half of the job's 9 snapshots here): check the plan with --dry-run, then rerun with --force")
        );
        assert_eq!(
            plan.kept
                .iter()
                .filter(|k| k.reason == KeepReason::DeleteGuard)
                .count(),
            6
        );

        let forced = purge(
            snapshots,
            &Policy {
                force: true,
                ..policy()
            },
        );
        assert_eq!(forced.deletes.len(), 6);
        assert_eq!(forced.purge_refused, None);
    }

    #[test]
    fn a_purge_past_max_delete_is_refused_without_force() {
        let mut snapshots = expired(3, "vol-a");
        snapshots
            .extend((0..7).map(|d| completed(&format!("new{d}"), "vol-a", TimeDelta::days(d))));
        let policy = Policy {
            max_delete: Some(2),
            ..guarded()
        };
        let plan = purge(snapshots.clone(), &policy);
        assert!(plan.deletes.is_empty());
        assert!(plan
            .purge_refused
            .as_deref()
            .unwrap()
            .contains("refused to delete 3 snapshots (more than --max-delete 2)"));
        assert_eq!(
            purge(
                snapshots,
                &Policy {
                    force: true,
                    ..policy
                }
            )
            .deletes
            .len(),
            3
        );
    }

    /// Daily runs at 02:00 for `days` days on `volumes` volumes, as the
    /// job's snapshots would stand just before the run of `now()`.
    fn daily_history(volumes: usize, days: i64) -> Vec<ExistingSnapshot> {
        let mut snapshots = Vec::new();
        for v in 0..volumes {
            let volume = format!("vol-{v}");
            for d in 1..=days {
                snapshots.push(completed(
                    &format!("{volume}-d{d}"),
                    &volume,
                    TimeDelta::days(d),
                ));
            }
        }
        snapshots
    }

    #[test]
    fn the_delete_guard_lets_a_healthy_nightly_purge_through_at_any_fleet_size() {
        // 1,000 volumes, daily runs, 7-day retention: the snapshot of 8 days
        // ago goes on every volume, 1,000 deletes, every night.
        for volumes in [1, 100, 1_000] {
            let plan = purge(daily_history(volumes, 8), &guarded());
            assert_eq!(plan.purge_refused, None, "{volumes} volumes");
            assert_eq!(plan.deletes.len(), volumes);
        }
    }

    #[test]
    fn the_delete_guard_refuses_a_clock_a_year_ahead_or_a_retention_cut_24_fold() {
        let history = daily_history(1_000, 8);
        let year_ahead = build(
            Inventory {
                snapshots: history.clone(),
                ..Inventory::default()
            },
            &guarded(),
            PURGE,
            "r1",
            now() + TimeDelta::days(365),
        );
        assert!(year_ahead.deletes.is_empty());
        assert!(year_ahead.purge_refused.is_some());
        let cut = Policy {
            retention: Some(TimeDelta::hours(7)),
            ..guarded()
        };
        let plan = purge(history, &cut);
        assert!(plan.deletes.is_empty());
        assert!(plan
            .purge_refused
            .as_deref()
            .is_some_and(|r| r.contains("more than half")));
    }

    #[test]
    fn a_snapshot_in_error_is_deleted_whatever_its_age_and_never_counts_as_a_backup() {
        let snapshots = vec![
            snap("broken", "vol-a", TimeDelta::hours(1), SnapshotState::Error),
            completed("old", "vol-a", TimeDelta::days(9)),
        ];
        let plan = purge(snapshots, &guarded());
        assert_eq!(deleted_ids(&plan), ["broken"]);
        assert_eq!(plan.deletes[0].reason, DeleteReason::Error);
        // The expired one is the volume's newest good backup: kept.
        assert_eq!(
            kept_reason(&plan, "old"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
    }

    #[test]
    fn an_archived_snapshot_is_kept_and_not_counted_towards_keep_min() {
        let mut archived = completed("archived", "vol-a", TimeDelta::days(1));
        archived.archived = true;
        let mut archived_old = completed("archived-old", "vol-a", TimeDelta::days(400));
        archived_old.archived = true;
        let snapshots = vec![
            archived,
            archived_old,
            completed("standard-old", "vol-a", TimeDelta::days(9)),
        ];
        let plan = purge(snapshots, &policy());
        assert!(plan.deletes.is_empty(), "{:?}", deleted_ids(&plan));
        assert_eq!(kept_reason(&plan, "archived"), &KeepReason::Archived);
        assert_eq!(kept_reason(&plan, "archived-old"), &KeepReason::Archived);
        // The newer archived one cannot be restored now, so this expired one
        // is still the volume's last good backup.
        assert_eq!(
            kept_reason(&plan, "standard-old"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
    }

    #[test]
    fn the_younger_of_two_snapshots_of_one_run_is_deleted_as_a_duplicate() {
        let with_run = |id: &str, volume: &str, age: TimeDelta, run: &str| ExistingSnapshot {
            run_id: Some(run.into()),
            ..completed(id, volume, age)
        };
        let snapshots = vec![
            with_run("first", "vol-a", TimeDelta::minutes(30), "run-1"),
            with_run("dup", "vol-a", TimeDelta::minutes(29), "run-1"),
            // Same run, another volume: no duplicate.
            with_run("other", "vol-b", TimeDelta::minutes(29), "run-1"),
            // Another run of the same volume: no duplicate.
            with_run("earlier", "vol-a", TimeDelta::days(1), "run-0"),
            // A pending one is never deleted, even as a duplicate.
            ExistingSnapshot {
                state: SnapshotState::Pending,
                ..with_run("pending-dup", "vol-b", TimeDelta::minutes(28), "run-1")
            },
        ];
        let plan = purge(snapshots, &guarded());
        assert_eq!(deleted_ids(&plan), ["dup"]);
        assert_eq!(plan.deletes[0].reason, DeleteReason::Duplicate);
        assert_eq!(plan.purge_refused, None);
        for kept in ["first", "other", "earlier", "pending-dup"] {
            assert!(plan.kept.iter().any(|k| *k.snapshot.id == *kept), "{kept}");
        }
    }

    #[test]
    fn of_a_duplicate_pair_the_one_with_its_device_tag_stays() {
        // A CreateSnapshots whose answer was lost made the first snapshot,
        // which never got its per-volume tags; the second was tagged.
        let untagged = ExistingSnapshot {
            run_id: Some("run-1".into()),
            device: None,
            ..completed("untagged", "vol-a", TimeDelta::minutes(30))
        };
        let tagged = ExistingSnapshot {
            run_id: Some("run-1".into()),
            ..completed("tagged", "vol-a", TimeDelta::minutes(29))
        };
        let plan = purge(vec![untagged, tagged], &guarded());
        assert_eq!(deleted_ids(&plan), ["untagged"]);
        assert_eq!(plan.deletes[0].reason, DeleteReason::Duplicate);
    }

    #[test]
    fn copies_without_a_volume_of_their_own_are_never_duplicates() {
        let copy = |id: &str| ExistingSnapshot {
            run_id: Some("run-1".into()),
            ..completed(id, "vol-ffffffff", TimeDelta::minutes(30))
        };
        let plan = purge(vec![copy("copy-a"), copy("copy-b")], &guarded());
        assert!(plan.deletes.is_empty(), "{:?}", deleted_ids(&plan));
    }

    #[test]
    fn archived_snapshots_do_not_water_down_the_delete_guard() {
        // 100 volumes, 31 daily snapshots each in the standard tier and 301
        // archived: a retention cut from 30 days to 30 hours would expire
        // nearly all the standard ones.
        let mut snapshots = daily_history(100, 31);
        for v in 0..100 {
            for d in 32..=332 {
                snapshots.push(ExistingSnapshot {
                    archived: true,
                    ..completed(
                        &format!("vol-{v}-a{d}"),
                        &format!("vol-{v}"),
                        TimeDelta::days(d),
                    )
                });
            }
        }
        let cut = Policy {
            retention: Some(TimeDelta::hours(30)),
            ..guarded()
        };
        let plan = purge(snapshots, &cut);
        assert!(plan.deletes.is_empty(), "{} deletes", plan.deletes.len());
        assert!(plan.purge_refused.is_some());
    }

    #[test]
    fn a_refused_purge_still_deletes_the_snapshots_in_error() {
        let mut snapshots = daily_history(2, 8);
        snapshots.push(snap(
            "broken",
            "vol-0",
            TimeDelta::hours(3),
            SnapshotState::Error,
        ));
        let cut = Policy {
            retention: Some(TimeDelta::hours(7)),
            ..guarded()
        };
        let plan = purge(snapshots, &cut);
        assert!(plan.purge_refused.is_some());
        assert_eq!(deleted_ids(&plan), ["broken"]);
    }

    #[test]
    fn a_volume_attached_to_two_selected_instances_gets_one_snapshot() {
        let inventory = Inventory {
            instances: vec![
                instance("i-1", "true", &["vol-root1", "vol-shared"]),
                instance("i-2", "true", &["vol-root2", "vol-shared"]),
            ],
            ..Inventory::default()
        };
        let plan = build(inventory, &policy(), SNAPSHOT, "r1", now());
        let volumes: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(volumes, ["vol-root1", "vol-shared", "vol-root2"]);
        assert_eq!(plan.skipped_volumes.len(), 1);
        assert_eq!(plan.skipped_volumes[0].instance_id, "i-2");
        assert_eq!(
            plan.skipped_volumes[0].reason,
            SkipReason::MultiAttach {
                other_instance_id: "i-1".into()
            }
        );
        assert_eq!(plan.skipped_volumes[0].reason.code(), "multi_attach");
        // CreateSnapshots of i-2 is told to leave it out.
        assert_eq!(plan.sets[1].exclude_data_volume_ids, ["vol-shared"]);
    }

    #[test]
    fn skip_tagged_and_excluded_boot_volumes_are_left_out_with_their_reason() {
        let inventory = Inventory {
            instances: vec![instance(
                "i-1",
                "true",
                &["vol-root", "vol-data", "vol-scratch"],
            )],
            snapshots: vec![],
            skip_volume_ids: ["vol-scratch".to_string()].into(),
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        let created: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(created, ["vol-root", "vol-data"]);
        assert_eq!(plan.skipped_volumes[0].reason, SkipReason::SkipTag);
        assert_eq!(plan.skipped_volumes[0].reason.code(), "skip_tag");
        assert_eq!(
            plan.skipped_volumes[0].reason.to_string(),
            "tagged ebsnap:skip=true"
        );

        let data_only = Policy {
            exclude_boot: true,
            ..policy()
        };
        let plan = build(inventory.clone(), &data_only, SNAPSHOT, "r1", now());
        let created: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(created, ["vol-data"]);
        let codes: Vec<_> = plan
            .skipped_volumes
            .iter()
            .map(|s| (s.volume_id.as_str(), s.reason.code()))
            .collect();
        assert_eq!(
            codes,
            [("vol-root", "excluded_boot"), ("vol-scratch", "skip_tag")]
        );
        assert_eq!(plan.skipped_volumes[0].reason, SkipReason::ExcludedBoot);
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn copied_tags_never_take_aws_or_contract_keys_and_the_volume_wins() {
        let instance = pairs(&[
            ("team", "db"),
            ("env", "prod"),
            ("Name", "mongo-1"),
            ("aws:cloudformation:stack-name", "x"),
        ]);
        let volume = pairs(&[
            ("env", "prod-data"),
            ("ebsnap:skip", "false"),
            ("AWS:backup", "y"),
            ("tier", "hot"),
        ]);
        assert_eq!(copied_tags(None, &[], &instance, &volume).0, vec![]);
        assert_eq!(
            copied_tags(Some(CopyTags::Instance), &[], &instance, &volume).0,
            pairs(&[("env", "prod"), ("team", "db")])
        );
        assert_eq!(
            copied_tags(Some(CopyTags::Volume), &[], &instance, &volume).0,
            pairs(&[("env", "prod-data"), ("tier", "hot")])
        );
        assert_eq!(
            copied_tags(Some(CopyTags::Both), &[], &instance, &volume).0,
            pairs(&[("env", "prod-data"), ("team", "db"), ("tier", "hot")])
        );
    }

    #[test]
    fn copied_tags_stay_within_ec2s_fifty_beside_the_contract() {
        let many: Vec<(String, String)> = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        let (copied, dropped) = copied_tags(Some(CopyTags::Instance), &[], &many, &[]);
        assert_eq!(copied.len(), 45);
        assert_eq!(
            dropped,
            (45..60).map(|i| format!("k{i}")).collect::<Vec<_>>()
        );
        let run = RunTags {
            job: "default",
            run_id: "r1",
            user: &Arc::default(),
        };
        let create = Create::new("i-1", None, "vol-1", "/dev/sdf", run, copied, dropped);
        let tags = create.tags.to_vec();
        assert_eq!(tags.len(), 50);
        assert_eq!(
            tags[0],
            ("ebsnap:job".to_owned(), "default".to_owned()),
            "the contract comes first"
        );
    }

    #[test]
    fn a_tag_past_ec2s_key_or_value_length_is_left_out_and_named() {
        let long_key = "k".repeat(129);
        let tags = vec![
            ("ok".to_owned(), "v".repeat(256)),
            (long_key.clone(), "v".into()),
            ("long-value".to_owned(), "v".repeat(257)),
        ];
        let (fit, dropped) = fit_tags(CONTRACT_TAGS, tags);
        assert_eq!(fit, vec![("ok".to_owned(), "v".repeat(256))]);
        assert_eq!(dropped, vec![long_key, "long-value".to_owned()]);
        // Beside 49 tags of its own, one more fits; none beside 50.
        assert_eq!(fit_tags(49, pairs(&[("a", "1"), ("b", "2")])).1, ["b"]);
        assert_eq!(fit_tags(50, pairs(&[("a", "1")])).1, ["a"]);
    }

    #[test]
    fn plan_copies_the_sources_tags_onto_each_create() {
        let mut web = instance("i-1", "true", &["vol-a"]);
        web.tags = pairs(&[("team", "web")]);
        let inventory = Inventory {
            instances: vec![web],
            volume_tags: [("vol-a".to_string(), pairs(&[("disk", "data")]))].into(),
            ..Inventory::default()
        };
        let both = Policy {
            copy_tags: Some(CopyTags::Both),
            ..policy()
        };
        let plan = build(inventory.clone(), &both, SNAPSHOT, "r1", now());
        assert_eq!(
            plan.creates[0].tags.copied,
            pairs(&[("disk", "data"), ("team", "web")])
        );
    }

    #[test]
    fn the_users_tags_go_on_every_create_after_the_contract_and_win_over_copied_ones() {
        let mut web = instance("i-1", "true", &["vol-a", "vol-b"]);
        web.tags = pairs(&[("Team", "web"), ("env", "prod")]);
        let inventory = Inventory {
            instances: vec![web],
            ..Inventory::default()
        };
        let tagged = Policy {
            user_tags: pairs(&[("CostCenter", "ops"), ("Team", "db")]),
            copy_tags: Some(CopyTags::Instance),
            ..policy()
        };
        let plan = build(inventory, &tagged, SNAPSHOT, "r1", now());
        assert_eq!(plan.creates.len(), 2);
        for create in &plan.creates {
            let tags = create.tags.to_vec();
            let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "ebsnap:job",
                    "ebsnap:instance-id",
                    "ebsnap:device",
                    "ebsnap:run-id",
                    "Name",
                    "CostCenter",
                    "Team",
                    "env"
                ],
                "one key once: the user's Team, not the instance's"
            );
            assert!(tags.contains(&("Team".into(), "db".into())));
            assert!(create.dropped_tags.is_empty());
        }
        assert!(
            std::sync::Arc::ptr_eq(&plan.creates[0].tags.user, &plan.creates[1].tags.user),
            "one copy for the whole plan"
        );
    }

    #[test]
    fn the_users_tags_take_room_from_the_copied_ones_and_are_never_dropped() {
        let user = (0..10)
            .map(|i| (format!("user-{i}"), "u".to_owned()))
            .collect::<Vec<_>>();
        let many: Vec<(String, String)> = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        let (copied, dropped) = copied_tags(Some(CopyTags::Instance), &user, &many, &[]);
        assert_eq!(copied.len(), 50 - CONTRACT_TAGS - 10);
        assert_eq!(dropped.len(), 60 - 35);
        // With 45 of the user's, nothing is copied; all 45 are there.
        let most: Vec<(String, String)> = (0..45)
            .map(|i| (format!("user-{i:02}"), "u".to_owned()))
            .collect();
        let (copied, dropped) = copied_tags(Some(CopyTags::Instance), &most, &many, &[]);
        assert_eq!((copied.len(), dropped.len()), (0, 60));
        let run = RunTags {
            job: "default",
            run_id: "r1",
            user: &most.as_slice().into(),
        };
        let create = Create::new("i-1", None, "vol-1", "/dev/sdf", run, copied, dropped);
        let tags = create.tags.to_vec();
        assert_eq!(tags.len(), 50);
        assert_eq!(&tags[CONTRACT_TAGS..], most.as_slice());
    }

    #[test]
    fn users_tags_that_cannot_all_fit_beside_ebsnaps_are_refused_at_startup() {
        let user = |n: usize| -> Vec<(String, String)> {
            (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect()
        };
        assert_eq!(check_user_tags(&[], false), Ok(()));
        assert_eq!(check_user_tags(&user(45), false), Ok(()));
        let too_many = check_user_tags(&user(46), false);
        assert_eq!(
            too_many,
            Err(UsageError::TooManyTags {
                given: 46,
                copying: false
            })
        );
        assert_eq!(
            too_many.unwrap_err().to_string(),
            "46 --tag tags and ebsnap's own 5 on a snapshot are more than the 50 tags \
             EC2 allows: give at most 45 --tag"
        );
        // A copy carries 2 more of ebsnap's (where it came from).
        assert_eq!(check_user_tags(&user(43), true), Ok(()));
        let too_many = check_user_tags(&user(44), true);
        assert_eq!(
            too_many,
            Err(UsageError::TooManyTags {
                given: 44,
                copying: true
            })
        );
        assert_eq!(
            too_many.unwrap_err().to_string(),
            "44 --tag tags and ebsnap's own 7 on a --copy-to copy are more than the 50 \
             tags EC2 allows: give at most 43 --tag"
        );
        let twice = pairs(&[("Team", "db"), ("Team", "web")]);
        let err = check_user_tags(&twice, false).unwrap_err();
        assert!(
            matches!(&err, UsageError::DuplicateTag(d) if d.key == "Team"),
            "{err:?}"
        );
        assert!(err.to_string().contains("--tag Team is given twice"));
    }

    #[test]
    fn each_instances_creates_form_a_set_that_names_what_it_leaves_out() {
        let inventory = Inventory {
            instances: vec![
                instance(
                    "i-1",
                    "true",
                    &["vol-root", "vol-data", "vol-scratch", "vol-recent"],
                ),
                instance("i-2", "true", &["vol-2root"]),
            ],
            snapshots: vec![completed("recent", "vol-recent", TimeDelta::minutes(1))],
            skip_volume_ids: ["vol-scratch".to_string()].into(),
            ..Inventory::default()
        };
        let data_only = Policy {
            exclude_boot: true,
            ..policy()
        };
        let plan = build(inventory.clone(), &data_only, SNAPSHOT, "r1", now());
        assert_eq!(
            plan.sets,
            [SnapshotSet {
                instance_id: "i-1".into(),
                creates: vec![0],
                exclude_boot: true,
                exclude_data_volume_ids: vec!["vol-scratch".into(), "vol-recent".into()],
                description: "ebsnap job=default instance=i-1".into(),
                tags: pairs(&[
                    ("ebsnap:job", "default"),
                    ("ebsnap:instance-id", "i-1"),
                    ("ebsnap:run-id", "r1")
                ]),
            }],
            "i-2 has nothing left to snapshot, so no set"
        );
        assert_eq!(plan.creates[0].volume_id, "vol-data");

        let all = build(
            Inventory {
                skip_volume_ids: Default::default(),
                snapshots: vec![],
                ..inventory
            },
            &policy(),
            SNAPSHOT,
            "r1",
            now(),
        );
        assert_eq!(all.sets.len(), 2);
        assert_eq!(all.sets[0].creates, [0, 1, 2, 3]);
        assert_eq!(all.sets[1].creates, [4]);
        assert!(!all.sets[0].exclude_boot && all.sets[0].exclude_data_volume_ids.is_empty());
    }

    #[test]
    fn run_ids_and_ages() {
        assert_eq!(run_id(now(), 0x1_abcd), "20261124T120000Z-abcd");
        assert_eq!(format_age(TimeDelta::hours(228)), "9d12h");
        assert_eq!(
            format_age(TimeDelta::days(8) - TimeDelta::minutes(1)),
            "7d23h"
        );
        assert_eq!(format_age(TimeDelta::days(7)), "7d");
        assert_eq!(format_age(TimeDelta::hours(23)), "23h");
        assert_eq!(format_age(TimeDelta::minutes(20)), "20m");
        assert_eq!(format_age(TimeDelta::minutes(-5)), "0m");
    }

    // -- calendar retention ---------------------------------------------

    /// A daily backup of `vol-1` at 02:00 UTC for `days` days, the newest
    /// today (`now()` is 2026-11-24 12:00), named by date.
    fn dailies(days: i64) -> Vec<ExistingSnapshot> {
        (0..days)
            .map(|back| {
                let start =
                    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap() - TimeDelta::days(back);
                job_snapshot(&start.format("%Y-%m-%d").to_string(), "vol-1", start)
            })
            .collect()
    }

    fn calendar(f: impl FnOnce(&mut crate::config::KeepRules)) -> Policy {
        let mut keep = crate::config::KeepRules::default();
        f(&mut keep);
        Policy {
            retention: None,
            keep,
            ..policy()
        }
    }

    fn kept_ids(plan: &Plan) -> Vec<&str> {
        let mut ids: Vec<&str> = plan.kept.iter().map(|k| &*k.snapshot.id).collect();
        ids.sort_unstable();
        ids.reverse();
        ids
    }

    #[test]
    fn daily_weekly_monthly_from_one_series_of_daily_backups() {
        let policy = calendar(|k| {
            k.daily = 7;
            k.weekly = 5;
            k.monthly = 12;
        });
        let plan = purge(dailies(400), &policy);
        // 2026-11-24 is a Tuesday. Seven dailies; the Sundays that end the
        // four weeks before this one (this week's newest is today; 11-22 is
        // a daily too); the last day of each month before this one, back to
        // 2025-12.
        let mut expected: Vec<String> = (18..=24).map(|d| format!("2026-11-{d:02}")).collect();
        expected.extend(["2026-11-15", "2026-11-08", "2026-11-01"].map(String::from));
        expected.extend(
            [
                "2026-10-31",
                "2026-09-30",
                "2026-08-31",
                "2026-07-31",
                "2026-06-30",
                "2026-05-31",
                "2026-04-30",
                "2026-03-31",
                "2026-02-28",
                "2026-01-31",
                "2025-12-31",
            ]
            .map(String::from),
        );
        expected.sort_unstable();
        expected.reverse();
        assert_eq!(kept_ids(&plan), expected);
        assert_eq!(plan.deletes.len(), 400 - expected.len());
        assert!(plan
            .deletes
            .iter()
            .all(|d| d.reason == DeleteReason::Expired));
        assert_eq!(kept_reason(&plan, "2026-11-24").code(), "keep_monthly");
        assert_eq!(kept_reason(&plan, "2026-11-23").code(), "keep_daily");
        assert_eq!(kept_reason(&plan, "2026-11-22").code(), "keep_weekly");
        assert_eq!(
            kept_reason(&plan, "2026-11-15").to_string(),
            "weekly 2026-W46"
        );
        assert_eq!(
            kept_reason(&plan, "2026-02-28").to_string(),
            "monthly 2026-02"
        );
        assert_eq!(
            describe_policy(&policy),
            "keep-daily 7, keep-weekly 5, keep-monthly 12, keep-min 1"
        );
    }

    // -- the archive tier ------------------------------------------------

    fn year_policy(archive_after: Option<TimeDelta>) -> Policy {
        Policy {
            archive_after,
            ..calendar(|k| {
                k.daily = 7;
                k.weekly = 5;
                k.monthly = 12;
            })
        }
    }

    fn archived_labels(plan: &Plan) -> Vec<String> {
        plan.archives
            .iter()
            .map(|a| format!("{} {}", a.snapshot.id, KeepReason::Calendar(a.kept_by)))
            .collect()
    }

    #[test]
    fn the_archive_takes_what_only_the_monthly_rule_keeps_for_90_days_more() {
        let plan = purge(dailies(400), &year_policy(Some(TimeDelta::days(30))));
        // 2026-10-31 is monthly only but 24 days old; 2026-02-28 and older
        // go within 90 days (the rule lets February go when 2027-02 has a
        // backup, 2027-02-01 at the earliest, before 2027-02-22).
        assert_eq!(
            archived_labels(&plan),
            [
                "2026-09-30 monthly 2026-09",
                "2026-08-31 monthly 2026-08",
                "2026-07-31 monthly 2026-07",
                "2026-06-30 monthly 2026-06",
                "2026-05-31 monthly 2026-05",
                "2026-04-30 monthly 2026-04",
                "2026-03-31 monthly 2026-03",
            ]
        );
        let march = &plan.archives[6];
        assert_eq!(
            march.released_at_earliest,
            Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).unwrap()
        );
        // Each is kept all the same, by its rule.
        assert_eq!(kept_reason(&plan, "2026-09-30").code(), "keep_monthly");
        // Without --archive-after nothing moves.
        assert!(purge(dailies(400), &year_policy(None)).archives.is_empty());
        // The DR copies' purge never archives.
        let copies: Vec<ExistingSnapshot> = dailies(400)
            .into_iter()
            .map(|s| ExistingSnapshot {
                copy_of: Some(Box::new(crate::inventory::CopyOrigin {
                    region: "eu-west-1".into(),
                    snapshot_id: "snap-src".into(),
                })),
                ..s
            })
            .collect();
        let policy = year_policy(Some(TimeDelta::days(30)));
        let copy_plan = build_copy_purge(copies, &policy, None, &HashSet::new(), now());
        assert!(copy_plan.archives.is_empty());
    }

    #[test]
    fn a_refused_purge_archives_nothing_either() {
        // Thirty monthlies cut to six: the guard refuses the 24 deletes,
        // and the archives of the same plan go with them.
        let monthlies: Vec<ExistingSnapshot> = (0..30)
            .map(|m| completed(&format!("m{m:02}"), "vol-1", TimeDelta::days(30 * m + 1)))
            .collect();
        let cut = Policy {
            archive_after: Some(TimeDelta::days(30)),
            ..Policy {
                force: false,
                ..calendar(|k| k.monthly = 6)
            }
        };
        let plan = purge(monthlies.clone(), &cut);
        assert!(plan.purge_refused.is_some());
        assert!(plan.archives.is_empty());
        let forced = Policy { force: true, ..cut };
        assert!(!purge(monthlies, &forced).archives.is_empty());
    }

    #[test]
    fn never_the_newest_nor_what_keep_within_keep_min_or_a_short_rule_keeps() {
        // Monthly alone keeps the newest too: never archived.
        let monthly = Policy {
            archive_after: Some(TimeDelta::days(1)),
            ..calendar(|k| k.monthly = 24)
        };
        let snapshots = vec![
            completed("newest", "vol-1", TimeDelta::days(200)),
            completed("older", "vol-1", TimeDelta::days(240)),
        ];
        let plan = purge(snapshots.clone(), &monthly);
        assert_eq!(
            plan.archives
                .iter()
                .map(|a| &*a.snapshot.id)
                .collect::<Vec<_>>(),
            ["older"]
        );
        // --keep-min 2 keeps both restorable.
        let floor = Policy {
            keep_min: 2,
            ..monthly.clone()
        };
        assert!(purge(snapshots.clone(), &floor).archives.is_empty());
        // --keep-within covering both: kept by it, not the calendar.
        let within = Policy {
            retention: Some(TimeDelta::days(365)),
            ..monthly.clone()
        };
        assert!(purge(snapshots.clone(), &within).archives.is_empty());
        // A weekly rule that also keeps it: not long-term only.
        let weekly = Policy {
            archive_after: Some(TimeDelta::days(1)),
            ..calendar(|k| {
                k.monthly = 24;
                k.weekly = 52;
            })
        };
        assert!(purge(snapshots.clone(), &weekly).archives.is_empty());
        // Already asked (archival under way): not asked again.
        let asked = vec![
            snapshots[0].clone(),
            ExistingSnapshot {
                archived_by_ebsnap: Some(now() - TimeDelta::hours(3)),
                ..snapshots[1].clone()
            },
        ];
        assert!(purge(asked, &monthly).archives.is_empty());
    }

    #[test]
    fn what_ebsnap_archived_goes_when_its_rules_let_it_go_and_its_90_days_are_over() {
        let policy = calendar(|k| k.monthly = 2);
        let ebsnap_archived = |id: &str, days_old: i64, archived_days_ago: i64| ExistingSnapshot {
            archived: true,
            archived_by_ebsnap: Some(now() - TimeDelta::days(archived_days_ago)),
            ..completed(id, "vol-1", TimeDelta::days(days_old))
        };
        let snapshots = vec![
            completed("nov", "vol-1", TimeDelta::days(1)),
            // October's place is held by the archived one: the standard
            // October backup beside it is no month's newest.
            ebsnap_archived("oct-archived", 25, 10),
            completed("oct-standard", "vol-1", TimeDelta::days(35)),
            ebsnap_archived("out-of-rules-long-archived", 300, 100),
            ebsnap_archived("out-of-rules-recently-archived", 310, 30),
            ExistingSnapshot {
                archived: true,
                ..completed("archived-by-someone-else", "vol-1", TimeDelta::days(320))
            },
            // Asked to archive, still standard: billed its 90 days too.
            ExistingSnapshot {
                archived_by_ebsnap: Some(now() - TimeDelta::days(2)),
                ..completed("archiving", "vol-1", TimeDelta::days(330))
            },
        ];
        let plan = purge(snapshots, &policy);
        assert_eq!(
            deleted_ids(&plan),
            ["oct-standard", "out-of-rules-long-archived"]
        );
        assert!(plan
            .deletes
            .iter()
            .all(|d| d.reason == DeleteReason::Expired));
        assert_eq!(
            kept_reason(&plan, "oct-archived").to_string(),
            "monthly 2026-10"
        );
        assert_eq!(
            kept_reason(&plan, "out-of-rules-recently-archived"),
            &KeepReason::ArchiveMinimum {
                until: now() + TimeDelta::days(60)
            }
        );
        assert_eq!(
            kept_reason(&plan, "out-of-rules-recently-archived").code(),
            "archive_minimum"
        );
        assert_eq!(
            kept_reason(&plan, "archived-by-someone-else"),
            &KeepReason::Archived
        );
        assert_eq!(kept_reason(&plan, "archiving").code(), "archive_minimum");
    }

    #[test]
    fn an_orphan_ebsnap_archived_still_spends_its_90_days() {
        let policy = Policy {
            orphans_after: Some(TimeDelta::days(30)),
            ..calendar(|k| k.monthly = 12)
        };
        let snapshots = vec![
            completed("gone-newest", "vol-gone", TimeDelta::days(60)),
            ExistingSnapshot {
                archived: true,
                archived_by_ebsnap: Some(now() - TimeDelta::days(10)),
                ..completed("gone-archived", "vol-gone", TimeDelta::days(200))
            },
        ];
        let inventory = Inventory {
            snapshots,
            existing_volume_ids: Some(BTreeSet::new()),
            ..Inventory::default()
        };
        let plan = build(inventory, &policy, PURGE, "r1", now());
        assert_eq!(deleted_ids(&plan), ["gone-newest"]);
        assert_eq!(
            kept_reason(&plan, "gone-archived").code(),
            "archive_minimum"
        );
    }

    #[test]
    fn any_rule_keeps_and_retention_is_within() {
        let policy = Policy {
            retention: Some(TimeDelta::days(3)),
            ..calendar(|k| k.last = 5)
        };
        let plan = purge(dailies(10), &policy);
        assert_eq!(
            kept_ids(&plan),
            [
                "2026-11-24",
                "2026-11-23",
                "2026-11-22",
                "2026-11-21",
                "2026-11-20"
            ]
        );
        assert_eq!(kept_reason(&plan, "2026-11-22").code(), "within_retention");
        assert_eq!(kept_reason(&plan, "2026-11-20").code(), "keep_last");
        assert_eq!(
            describe_policy(&policy),
            "retention 3d, keep-last 5, keep-min 1"
        );
    }

    #[test]
    fn periods_follow_the_timezone() {
        // A backup at 21:00 UTC is 02:30 the next day in Kolkata: with one
        // at 03:00 UTC the same UTC day, they are two local days, one UTC day.
        let late = |day: u32| {
            let start = Utc.with_ymd_and_hms(2026, 11, day, 21, 0, 0).unwrap();
            job_snapshot(&format!("late-{day}"), "vol-1", start)
        };
        let early = |day: u32| {
            let start = Utc.with_ymd_and_hms(2026, 11, day, 3, 0, 0).unwrap();
            job_snapshot(&format!("early-{day}"), "vol-1", start)
        };
        let snapshots = || vec![late(22), early(22), late(21), early(21)];
        let in_utc = purge(snapshots(), &calendar(|k| k.daily = 2));
        assert_eq!(kept_ids(&in_utc), ["late-22", "late-21"]);
        let kolkata = Policy {
            timezone: chrono_tz::Tz::Asia__Kolkata,
            ..calendar(|k| k.daily = 2)
        };
        let in_kolkata = purge(snapshots(), &kolkata);
        assert_eq!(kept_ids(&in_kolkata), ["late-22", "early-22"]);
        assert_eq!(
            kept_reason(&in_kolkata, "late-22").to_string(),
            "daily 2026-11-23"
        );
        assert_eq!(
            describe_policy(&kolkata),
            "keep-daily 2, timezone Asia/Kolkata, keep-min 1"
        );
    }

    #[test]
    fn unfinished_and_failed_snapshots_fill_no_period() {
        let mut snapshots = dailies(3);
        snapshots[0].state = SnapshotState::Pending;
        snapshots[1].state = SnapshotState::Error;
        let plan = purge(snapshots, &calendar(|k| k.daily = 1));
        assert_eq!(kept_reason(&plan, "2026-11-24").code(), "pending");
        assert_eq!(deleted_ids(&plan), ["2026-11-23"]);
        assert_eq!(plan.deletes[0].reason, DeleteReason::Error);
        assert_eq!(kept_reason(&plan, "2026-11-22").code(), "keep_daily");
    }

    #[test]
    fn keep_min_stays_the_floor_under_every_rule() {
        let policy = Policy {
            keep_min: 3,
            ..calendar(|k| k.yearly = 1)
        };
        let plan = purge(dailies(5), &policy);
        assert_eq!(kept_ids(&plan), ["2026-11-24", "2026-11-23", "2026-11-22"]);
        assert_eq!(kept_reason(&plan, "2026-11-24").code(), "keep_yearly");
        assert_eq!(kept_reason(&plan, "2026-11-22").code(), "keep_min");
    }

    #[test]
    fn each_volume_has_its_own_periods() {
        let mut snapshots = dailies(3);
        snapshots.extend(dailies(3).into_iter().map(|s| ExistingSnapshot {
            id: format!("b-{}", s.id).into(),
            volume_id: "vol-2".into(),
            ..s
        }));
        let plan = purge(snapshots, &calendar(|k| k.daily = 2));
        assert_eq!(
            kept_ids(&plan),
            ["b-2026-11-24", "b-2026-11-23", "2026-11-24", "2026-11-23"]
        );
    }

    #[test]
    fn a_policy_changed_between_runs_deletes_only_what_it_no_longer_keeps() {
        let thirty = calendar(|k| k.daily = 30);
        let first = purge(dailies(30), &thirty);
        assert!(first.deletes.is_empty(), "30 dailies kept");
        // Longer: everything still there is kept.
        let longer = purge(dailies(30), &calendar(|k| k.daily = 60));
        assert!(longer.deletes.is_empty());
        // Shorter: the 23 dailies it no longer keeps go, but that is more
        // than half of the volume's 30 good backups: the guard refuses
        // without --force.
        let shorter = calendar(|k| k.daily = 7);
        let forced = purge(dailies(30), &shorter);
        assert_eq!(forced.deletes.len(), 23);
        assert_eq!(kept_ids(&forced).len(), 7);
        let guarded = Policy {
            force: false,
            ..shorter
        };
        let refused = purge(dailies(30), &guarded);
        assert!(refused.deletes.is_empty());
        assert!(refused.purge_refused.is_some());
        assert_eq!(
            refused
                .kept
                .iter()
                .filter(|k| k.reason == KeepReason::DeleteGuard)
                .count(),
            23
        );
    }

    // Orphans (issue 13): the snapshots of a volume that no longer exists,
    // or of an instance no longer selected.

    fn of_instance(instance: &str, snapshot: ExistingSnapshot) -> ExistingSnapshot {
        ExistingSnapshot {
            instance_id: Some(instance.into()),
            ..snapshot
        }
    }

    /// i-1 (selected, stopped or running alike: discovery lists both) has
    /// vol-a attached; i-off opts out and has vol-off attached; vol-gone no
    /// longer exists; vol-detached exists, attached to nothing.
    fn orphan_fleet(snapshots: Vec<ExistingSnapshot>) -> Inventory {
        Inventory {
            instances: vec![
                instance("i-1", "true", &["vol-a"]),
                instance("i-off", "false", &["vol-off"]),
            ],
            snapshots,
            existing_volume_ids: Some(
                ["vol-a", "vol-off", "vol-detached"]
                    .map(String::from)
                    .into(),
            ),
            ..Inventory::default()
        }
    }

    fn orphans_after(days: i64) -> Policy {
        Policy {
            orphans_after: Some(TimeDelta::days(days)),
            ..policy()
        }
    }

    fn orphan_codes(plan: &Plan) -> Vec<(&str, &str)> {
        plan.orphans
            .iter()
            .map(|o| (&*o.volume_id, o.reason.code()))
            .collect()
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

    #[test]
    fn without_orphans_after_an_orphan_keeps_its_newest_by_keep_min_and_is_named() {
        let plan = build(
            orphan_fleet(vec![
                completed("gone-8d", "vol-gone", TimeDelta::days(8)),
                completed("gone-9d", "vol-gone", TimeDelta::days(9)),
                of_instance("i-off", completed("off-8d", "vol-off", TimeDelta::days(8))),
                completed("a-1d", "vol-a", TimeDelta::days(1)),
            ]),
            &policy(),
            PURGE,
            "r1",
            now(),
        );
        assert_eq!(deleted_ids(&plan), ["gone-9d"], "expired, as before");
        assert_eq!(
            kept_reason(&plan, "gone-8d"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
        assert_eq!(
            kept_reason(&plan, "off-8d"),
            &KeepReason::KeepMin { keep_min: 1 }
        );
        assert_eq!(
            orphan_codes(&plan),
            [
                ("vol-gone", "volume_gone"),
                ("vol-off", "instance_not_selected")
            ]
        );
        let gone = &plan.orphans[0];
        assert_eq!(
            (&*gone.newest_snapshot_id, gone.snapshots, gone.size_gib),
            ("gone-8d", 2, Some(8))
        );
        assert_eq!(gone.newest_start_time, now() - TimeDelta::days(8));
        assert_eq!(gone.purge_after, None);
        assert!(!gone.is_due(now() + TimeDelta::days(3650)));
    }

    #[test]
    fn with_orphans_after_a_whole_orphan_series_goes_once_its_newest_is_older() {
        let mut pending = snap(
            "gone-pending-9d",
            "vol-gone",
            TimeDelta::days(9),
            SnapshotState::Pending,
        );
        pending.progress = Some(99);
        let archived = ExistingSnapshot {
            archived: true,
            ..completed("gone-archived-20d", "vol-gone", TimeDelta::days(20))
        };
        let plan = build(
            orphan_fleet(vec![
                completed("gone-6d", "vol-gone", TimeDelta::days(6)),
                completed("gone-9d", "vol-gone", TimeDelta::days(9)),
                pending,
                archived,
                of_instance("i-off", completed("off-6d", "vol-off", TimeDelta::days(6))),
                completed("a-1d", "vol-a", TimeDelta::days(1)),
                completed("a-9d", "vol-a", TimeDelta::days(9)),
            ]),
            // A retention longer than D: the orphan goes anyway.
            &Policy {
                retention: Some(TimeDelta::days(30)),
                keep_min: 3,
                ..orphans_after(5)
            },
            PURGE,
            "r1",
            now(),
        );
        let mut deleted = deleted_ids(&plan);
        deleted.sort_unstable();
        assert_eq!(deleted, ["gone-6d", "gone-9d", "off-6d"]);
        assert!(plan
            .deletes
            .iter()
            .all(|d| d.reason == DeleteReason::Orphaned));
        // Never deleted, orphan or not.
        assert_eq!(kept_reason(&plan, "gone-pending-9d").code(), "pending");
        assert_eq!(kept_reason(&plan, "gone-archived-20d").code(), "archived");
        // The selected volume keeps its own.
        assert_eq!(kept_reason(&plan, "a-9d").code(), "within_retention");
        assert_eq!(
            plan.orphans[0].purge_after,
            Some(now() - TimeDelta::days(1))
        );
        assert!(describe_policy(&orphans_after(5)).ends_with("keep-min 1, orphans-after 5d"));
    }

    #[test]
    fn an_orphan_stays_until_its_newest_is_older_than_orphans_after() {
        let plan = build(
            orphan_fleet(vec![
                completed("gone-4d", "vol-gone", TimeDelta::days(4)),
                completed("gone-9d", "vol-gone", TimeDelta::days(9)),
                // Exactly D old: not older than D yet.
                of_instance("i-off", completed("off-5d", "vol-off", TimeDelta::days(5))),
                of_instance("i-off", completed("off-8d", "vol-off", TimeDelta::days(8))),
            ]),
            &orphans_after(5),
            PURGE,
            "r1",
            now(),
        );
        // Only retention's deletes, as without the flag.
        let mut deleted = deleted_ids(&plan);
        deleted.sort_unstable();
        assert_eq!(deleted, ["gone-9d", "off-8d"]);
        assert!(plan
            .deletes
            .iter()
            .all(|d| d.reason == DeleteReason::Expired));
        assert_eq!(kept_reason(&plan, "gone-4d").code(), "within_retention");
        assert_eq!(orphan_codes(&plan).len(), 2);
        assert!(plan.orphans.iter().all(|o| !o.is_due(now())));
        // A second later, off-5d's series is due.
        let later = build(
            orphan_fleet(vec![of_instance(
                "i-off",
                completed("off-5d", "vol-off", TimeDelta::days(5)),
            )]),
            &orphans_after(5),
            PURGE,
            "r1",
            now() + TimeDelta::seconds(1),
        );
        assert_eq!(deleted_ids(&later), ["off-5d"]);
    }

    #[test]
    fn a_detached_volume_or_a_stopped_instances_volume_is_no_orphan() {
        let plan = build(
            orphan_fleet(vec![
                // Detached from i-1, which is still selected.
                completed("detached-30d", "vol-detached", TimeDelta::days(30)),
                // i-1 may be stopped: discovery lists it all the same.
                completed("a-30d", "vol-a", TimeDelta::days(30)),
                // Moved from i-off onto selected i-1.
                of_instance(
                    "i-off",
                    completed("moved-30d", "vol-a", TimeDelta::days(31)),
                ),
                // No instance tag: what cannot be told is no orphan.
                ExistingSnapshot {
                    instance_id: None,
                    ..completed("untagged-30d", "vol-detached", TimeDelta::days(32))
                },
                // A copy has no volume of its own.
                completed("copy-30d", "vol-ffffffff", TimeDelta::days(30)),
            ]),
            &orphans_after(5),
            PURGE,
            "r1",
            now(),
        );
        assert!(plan.orphans.is_empty(), "{:?}", plan.orphans);
        assert_eq!(kept_reason(&plan, "detached-30d").code(), "keep_min");
        assert_eq!(kept_reason(&plan, "a-30d").code(), "keep_min");
        assert!(plan
            .deletes
            .iter()
            .all(|d| d.reason != DeleteReason::Orphaned));
    }

    #[test]
    fn no_orphan_when_discovery_did_not_read_which_volumes_exist() {
        let plan = build(
            Inventory {
                existing_volume_ids: None,
                ..orphan_fleet(vec![completed("gone-30d", "vol-gone", TimeDelta::days(30))])
            },
            &orphans_after(5),
            PURGE,
            "r1",
            now(),
        );
        assert!(plan.orphans.is_empty());
        assert_eq!(kept_reason(&plan, "gone-30d").code(), "keep_min");
    }

    #[test]
    fn with_no_instance_carrying_the_tag_key_only_gone_volumes_are_orphans() {
        // A mistyped --tag-key finds no instance: the volumes that exist are
        // not taken for orphans of unselected instances.
        let snapshots = vec![
            completed("a-30d", "vol-a", TimeDelta::days(30)),
            completed("gone-30d", "vol-gone", TimeDelta::days(30)),
        ];
        let plan = build(
            Inventory {
                instances: vec![],
                ..orphan_fleet(snapshots)
            },
            &orphans_after(5),
            PURGE,
            "r1",
            now(),
        );
        assert_eq!(orphan_codes(&plan), [("vol-gone", "volume_gone")]);
        assert_eq!(kept_reason(&plan, "a-30d").code(), "keep_min");
        assert_eq!(deleted_ids(&plan), ["gone-30d"]);
    }

    #[test]
    fn the_delete_guard_refuses_a_mass_orphan_purge() {
        // Three of four volumes gone at once (a region's volumes deleted, a
        // typo in --tag-key): most of the job's backups would go.
        let snapshots = ["vol-a", "vol-gone-1", "vol-gone-2", "vol-gone-3"]
            .iter()
            .flat_map(|volume| {
                [6, 7].map(|days| {
                    completed(&format!("{volume}-{days}d"), volume, TimeDelta::days(days))
                })
            })
            .collect();
        let guarded_orphans = Policy {
            force: false,
            ..orphans_after(5)
        };
        let plan = build(
            orphan_fleet(snapshots),
            &guarded_orphans,
            PURGE,
            "r1",
            now(),
        );
        assert!(plan.deletes.is_empty(), "{:?}", plan.deletes);
        let refused = plan.purge_refused.as_deref().unwrap();
        assert!(
            refused.contains("refused to delete 6 snapshots"),
            "{refused}"
        );
        assert_eq!(kept_reason(&plan, "vol-gone-1-6d").code(), "delete_guard");
        assert_eq!(orphan_codes(&plan).len(), 3);
        // --max-delete too.
        let capped = Policy {
            max_delete: Some(1),
            ..guarded_orphans
        };
        let one_gone = orphan_fleet(vec![
            completed("a-1d", "vol-a", TimeDelta::days(1)),
            completed("a-2d", "vol-a", TimeDelta::days(2)),
            completed("a-3d", "vol-a", TimeDelta::days(3)),
            completed("gone-6d", "vol-gone", TimeDelta::days(6)),
            completed("gone-7d", "vol-gone", TimeDelta::days(7)),
        ]);
        let plan = build(one_gone.clone(), &capped, PURGE, "r1", now());
        assert!(plan.deletes.is_empty() && plan.purge_refused.is_some());
        let plan = build(
            one_gone,
            &Policy {
                max_delete: None,
                ..capped
            },
            PURGE,
            "r1",
            now(),
        );
        assert_eq!(
            deleted_ids(&plan).len(),
            2,
            "two of five: the guard lets it through"
        );
    }
}
