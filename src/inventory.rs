//! What discovery found in one region, in ebsnap's own small types.
//!
//! EC2's types stay at the edges (discovery reads them, snapshot and purge
//! write them); the plan works only on these, so every decision can be tested
//! with hand-built values and a fixed clock.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::Serialize;

/// The tag keys of the tag contract (docs/reference/tags.md): users
/// write IAM policies and scripts against them, so they never change.
pub(crate) const TAG_JOB: &str = "ebsnap:job";
pub(crate) const TAG_INSTANCE_ID: &str = "ebsnap:instance-id";
pub(crate) const TAG_DEVICE: &str = "ebsnap:device";
pub(crate) const TAG_RUN_ID: &str = "ebsnap:run-id";
pub(crate) const TAG_NAME: &str = "Name";
/// On a disaster-recovery copy (`--copy-to`): the snapshot it was copied
/// from, and that snapshot's region.
pub(crate) const TAG_SOURCE_SNAPSHOT: &str = "ebsnap:source-snapshot";
pub(crate) const TAG_SOURCE_REGION: &str = "ebsnap:source-region";
/// On a volume: `true` leaves it out of every backup.
pub(crate) const TAG_SKIP: &str = "ebsnap:skip";
/// Set by ebsnap, just before it asks EC2 to archive a snapshot
/// (`--archive-after`): when it asked (RFC 3339). What marks an archived
/// snapshot as ebsnap's to delete once its rules let it go; one archived by
/// anyone else is kept.
pub(crate) const TAG_ARCHIVED_AT: &str = "ebsnap:archived-at";

/// Everything one region holds that a run needs to decide.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Inventory {
    /// Instances carrying the selection tag key, whatever its value; the plan
    /// decides which of them are selected, and says why the others are not.
    pub instances: Vec<Instance>,
    /// Snapshots returned by the job's server-side filter. The plan checks
    /// the marker again before it deletes any of them (safety rule 1).
    pub snapshots: Vec<ExistingSnapshot>,
    /// Volumes tagged `ebsnap:skip=true`: never snapshotted.
    pub skip_volume_ids: std::collections::BTreeSet<String>,
    /// The attached volumes' tags, by volume id, read only for
    /// `--inherit-tags volume` or `both`.
    pub volume_tags: std::collections::BTreeMap<String, Vec<(String, String)>>,
    /// Of the volumes the job's snapshots were taken of, those that still
    /// exist (attached to a tagged instance, or found by DescribeVolumes),
    /// read only where orphans are judged (`list`, `check`, purge with
    /// `--orphans-after`), and always with the tagged instances. `None`:
    /// not read, so no series is judged an orphan.
    pub existing_volume_ids: Option<std::collections::BTreeSet<String>>,
}

/// The volume id EC2 gives a snapshot that was not taken of a volume of
/// this region (a copy), and the empty one of a snapshot without any:
/// neither is a volume that could exist or be gone.
pub(crate) fn is_no_volume(volume_id: &str) -> bool {
    matches!(volume_id, "" | "vol-ffffffff")
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    pub id: String,
    /// The instance's `Name` tag, when it has one.
    pub name: Option<String>,
    /// The value of the selection tag (`Scheduled-Snapshots` by default).
    pub selection_value: String,
    pub volumes: Vec<AttachedVolume>,
    /// All its tags, for `--inherit-tags instance`.
    pub tags: Vec<(String, String)>,
}

/// An EBS volume attached to an instance, from its block device mappings.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AttachedVolume {
    pub volume_id: String,
    /// The device name it is attached at, e.g. `/dev/xvda`.
    pub device: String,
    /// Whether it is the instance's root (boot) volume.
    pub is_root: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapshotState {
    Pending,
    Completed,
    Error,
    /// Any state EC2 may add later (e.g. `recoverable`): never deleted.
    Other(Box<str>),
}

impl SnapshotState {
    pub(crate) fn parse(state: &str) -> SnapshotState {
        match state {
            "pending" => SnapshotState::Pending,
            "completed" => SnapshotState::Completed,
            "error" => SnapshotState::Error,
            other => SnapshotState::Other(other.into()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            SnapshotState::Pending => "pending",
            SnapshotState::Completed => "completed",
            SnapshotState::Error => "error",
            SnapshotState::Other(state) => state,
        }
    }
}

impl std::fmt::Display for SnapshotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot that already exists in the account.
///
/// Compact on purpose: a run holds one per job snapshot (30,000 at 1,000
/// instances with 10 days of history). The strings many snapshots repeat
/// (volume, job, instance, device) are shared, one allocation each
/// (`Interner`); the id is held inline (an EC2 id fits in a
/// `CompactString`'s 24 bytes), so a snapshot costs no allocation of its
/// own, and none is left between EC2's parsed pages to keep the heap from
/// shrinking.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExistingSnapshot {
    pub id: CompactString,
    /// The volume it was taken of.
    pub volume_id: Arc<str>,
    pub state: SnapshotState,
    pub start_time: DateTime<Utc>,
    /// `ebsnap:job`: the marker. `None` on a snapshot ebsnap did not make.
    pub job: Option<Arc<str>>,
    /// `ebsnap:instance-id`.
    pub instance_id: Option<Arc<str>>,
    /// `ebsnap:device`.
    pub device: Option<Arc<str>>,
    /// `ebsnap:run-id`: two snapshots of one volume with one run id are a
    /// duplicate that a retried create left (safety rule 7).
    pub run_id: Option<Arc<str>>,
    /// In the archive tier (StorageTier `archive`): it must be restored from
    /// the archive before a volume can be made of it, so it is no backup a
    /// restore can use now (safety rule 4).
    pub archived: bool,
    /// Set when ebsnap archived it (`ebsnap:archived-at`): when its 90 days
    /// in the archive tier began, the later of ebsnap's request and EC2's
    /// `archivalCompleteTime` where discovery read it. Purge deletes such a
    /// snapshot once its rules let it go and the 90 days are over.
    pub archived_by_ebsnap: Option<DateTime<Utc>>,
    /// How far along a pending snapshot is, in percent (EC2's `42%`).
    pub progress: Option<u8>,
    /// The size of the volume it was taken of, in GiB.
    pub size_gib: Option<i32>,
    /// Set on a disaster-recovery copy made by `--copy-to`: purged only by
    /// the copy purge, under `--copy-retention`, never as a backup of a
    /// volume of this region.
    pub copy_of: Option<Box<CopyOrigin>>,
}

/// Where a disaster-recovery copy came from (its `ebsnap:source-*` tags).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CopyOrigin {
    pub region: String,
    pub snapshot_id: String,
}

impl ExistingSnapshot {
    /// Safety rule 1: only a snapshot carrying this job's marker is ours.
    pub(crate) fn is_marked_for(&self, job: &str) -> bool {
        self.job.as_deref() == Some(job)
    }

    /// Completed and in the standard tier: a volume can be restored from it
    /// now, so it is a good backup (safety rules 2 and 4).
    pub(crate) fn is_good_backup(&self) -> bool {
        self.state == SnapshotState::Completed && !self.archived
    }
    /// The storage tier it is in.
    pub(crate) fn tier(&self) -> StorageTier {
        if self.archived {
            StorageTier::Archive
        } else {
            StorageTier::Standard
        }
    }

    /// Who archived it, if it is archived or ebsnap asked EC2 to archive it
    /// (it may still be on its way).
    pub(crate) fn archived_by(&self) -> Option<ArchivedBy> {
        match (self.archived_by_ebsnap, self.archived) {
            (Some(_), _) => Some(ArchivedBy::Ebsnap),
            (None, true) => Some(ArchivedBy::Other),
            (None, false) => None,
        }
    }
}

/// A snapshot's storage tier (EC2's StorageTier), as `list` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum StorageTier {
    Standard,
    /// Restorable only after it comes back from the archive, which takes
    /// hours.
    Archive,
}

/// Who archived a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ArchivedBy {
    /// ebsnap (`--archive-after`): deleted once its rules and the 90 days
    /// let it go.
    Ebsnap,
    /// Someone else: never deleted.
    Other,
}

/// Hands out one shared allocation per distinct string: discovery reads the
/// same volume, job, instance and device strings from many snapshots.
#[derive(Debug, Default)]
pub(crate) struct Interner(HashSet<Arc<str>>);

impl Interner {
    pub(crate) fn get(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.0.get(text) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = text.into();
        self.0.insert(Arc::clone(&shared));
        shared
    }
}

/// A snapshot as restore reads it: all its tags, and whether a volume can
/// be made of it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceSnapshot {
    pub id: String,
    /// The volume it was taken of (it may no longer exist).
    pub volume_id: String,
    pub state: SnapshotState,
    /// EC2's progress while pending, e.g. `42%`.
    pub progress: Option<String>,
    pub start_time: DateTime<Utc>,
    /// The size of the volume it was taken of, in GiB.
    pub size_gib: i32,
    pub encrypted: bool,
    /// In the archive tier: no volume can be made of it until it is
    /// restored from the archive (EBS User Guide, "Archive Amazon EBS
    /// snapshots": an archived snapshot must be restored to the standard
    /// tier before it can be used).
    pub archived: bool,
    pub tags: Vec<(String, String)>,
}

impl SourceSnapshot {
    /// Completed and in the standard tier: a volume can be made of it now.
    pub(crate) fn is_restorable_now(&self) -> bool {
        self.state == SnapshotState::Completed && !self.archived
    }

    pub(crate) fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `ebsnap:device`: where the volume was attached when it was taken.
    pub(crate) fn device(&self) -> Option<&str> {
        self.tag(TAG_DEVICE)
    }
}

/// Fixtures for tests across the crate.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A completed snapshot of job `default`, of `volume` as `/dev/sdf` of
    /// `i-1`, 8 GiB, started at `start_time`; tests change what they need
    /// with struct update syntax.
    pub(crate) fn job_snapshot(
        id: &str,
        volume: &str,
        start_time: DateTime<Utc>,
    ) -> ExistingSnapshot {
        ExistingSnapshot {
            id: id.into(),
            volume_id: volume.into(),
            state: SnapshotState::Completed,
            start_time,
            job: Some("default".into()),
            instance_id: Some("i-1".into()),
            device: Some("/dev/sdf".into()),
            progress: None,
            size_gib: Some(8),
            run_id: None,
            archived: false,
            archived_by_ebsnap: None,
            copy_of: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interner_gives_one_allocation_per_distinct_string() {
        let mut interner = Interner::default();
        let a = interner.get("vol-1");
        let b = interner.get("vol-1");
        let c = interner.get("vol-2");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!((&*a, &*c), ("vol-1", "vol-2"));
    }

    #[test]
    fn a_snapshot_stays_small() {
        // 30,000 of them are held at once: each field matters.
        let size = std::mem::size_of::<ExistingSnapshot>();
        assert!(size <= 176, "{size}");
    }

    #[test]
    fn an_ec2_id_is_held_without_an_allocation() {
        let id = CompactString::from("snap-0123456789abcdef0");
        assert!(!id.is_heap_allocated());
    }
}
