//! The report's entries: one per snapshot created, copied, deleted,
//! archived or kept, one per failure and one per instance or volume
//! skipped, and the closed sets they name (what failed, why a snapshot is
//! kept, what a dry run found), each written as the JSON report names it.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use compact_str::CompactString;
use serde::Serialize;

use crate::aws::accounts::BlockedStep;
use crate::backup::hooks::HookKind;
use crate::inventory::SnapshotState;
use crate::plan::{
    DeleteReason, InstanceSkip, KeepReason, SkipReason, VOLUME_FAILED, VOLUME_FAILED_TEXT,
};
use crate::retention::KeptBy;
use crate::values::{as_text, ReasonCode, WithCode};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CreatedEntry {
    /// `None` in a dry run.
    pub(crate) snapshot_id: Option<String>,
    pub(crate) volume_id: String,
    pub(crate) instance_id: String,
    pub(crate) instance_name: Option<String>,
    pub(crate) device: String,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<String>,
    pub(crate) region: String,
    /// `"allowed"` in a dry run, absent otherwise.
    pub(crate) permission: Option<Permission>,
    /// `--copy-tags`: the keys of the source's tags left off the snapshot,
    /// which EC2's tag limits had no room for; absent when all fit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags_dropped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CopiedEntry {
    /// The copy; `None` in a dry run.
    pub(crate) snapshot_id: Option<String>,
    /// The snapshot copied; `None` in a dry run (not made yet).
    pub(crate) source_snapshot_id: Option<String>,
    pub(crate) source_region: String,
    pub(crate) volume_id: String,
    pub(crate) instance_id: String,
    pub(crate) device: String,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<String>,
    /// The destination region.
    pub(crate) region: String,
    /// `"planned"` in a dry run (no call: the snapshot does not exist yet),
    /// absent otherwise.
    pub(crate) permission: Option<Permission>,
    /// `--copy-tags`: the keys of the source's tags left off the copy,
    /// which EC2's tag limits had no room for; absent when all fit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) tags_dropped: Vec<String>,
}

/// One per snapshot deleted, like `KeptEntry` one per snapshot kept: the
/// snapshot's own strings, moved, and the region and account shared by all
/// entries of a unit, so 30,000 entries cost no new allocation each.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeletedEntry {
    pub(crate) snapshot_id: CompactString,
    pub(crate) volume_id: Arc<str>,
    pub(crate) instance_id: Option<Arc<str>>,
    pub(crate) device: Option<Arc<str>>,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<Arc<str>>,
    pub(crate) region: Arc<str>,
    pub(crate) start_time: DateTime<Utc>,
    /// `"allowed"` in a dry run, absent otherwise.
    pub(crate) permission: Option<Permission>,
    /// EC2 said it was already gone (deleted by someone else meanwhile).
    pub(crate) already_gone: bool,
    /// Why it was deleted: past retention, in error, a duplicate or an
    /// orphan; `reason` and `reason_code` in the JSON.
    #[serde(flatten)]
    pub(crate) reason: WithCode<DeleteReason>,
}

/// One per snapshot sent to the archive tier.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchivedEntry {
    pub(crate) snapshot_id: CompactString,
    pub(crate) volume_id: Arc<str>,
    pub(crate) instance_id: Option<Arc<str>>,
    pub(crate) device: Option<Arc<str>>,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<Arc<str>>,
    pub(crate) region: Arc<str>,
    pub(crate) start_time: DateTime<Utc>,
    /// `"allowed"` in a dry run, absent otherwise.
    pub(crate) permission: Option<Permission>,
    /// The rule that keeps it: `kept_by` (`monthly 2026-03`) and
    /// `reason_code` (`keep_monthly`) in the JSON.
    #[serde(flatten)]
    pub(crate) kept_by: ArchiveRule,
    /// The earliest its rules could let it go, 90 days away at least.
    pub(crate) kept_until_at_least: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeptEntry {
    pub(crate) snapshot_id: CompactString,
    pub(crate) volume_id: Arc<str>,
    pub(crate) instance_id: Option<Arc<str>>,
    pub(crate) device: Option<Arc<str>>,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<Arc<str>>,
    pub(crate) region: Arc<str>,
    pub(crate) start_time: DateTime<Utc>,
    #[serde(serialize_with = "as_text")]
    pub(crate) state: SnapshotState,
    /// Rendered when written, not held as text for every kept snapshot:
    /// `reason` and `reason_code` in the JSON.
    #[serde(flatten)]
    pub(crate) reason: WithCode<WhyKept>,
}

/// Why a snapshot is kept: the plan's reason, or what the purge met when it
/// went to delete it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum WhyKept {
    Plan(KeepReason),
    /// EC2 refused the delete because an AMI uses the snapshot (safety
    /// rule 5).
    InUse {
        message: String,
    },
    /// EC2 refused the delete: the snapshot is locked (EBS snapshot lock)
    /// until `until`, when EC2 said (safety rule 5).
    Locked {
        until: Option<DateTime<Utc>>,
        message: String,
    },
    /// This run failed to snapshot the volume, so the purge withheld its
    /// delete (safety rule 3).
    Withheld,
}

impl ReasonCode for WhyKept {
    fn code(&self) -> &'static str {
        match self {
            WhyKept::Plan(reason) => reason.code(),
            WhyKept::InUse { .. } => "in_use",
            WhyKept::Locked { .. } => "locked",
            WhyKept::Withheld => VOLUME_FAILED,
        }
    }
}

impl std::fmt::Display for WhyKept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WhyKept::Plan(reason) => reason.fmt(f),
            WhyKept::InUse { message } => write!(f, "in use by an AMI ({message})"),
            WhyKept::Locked {
                until: Some(until), ..
            } => write!(f, "locked until {}", until.format("%Y-%m-%d %H:%M UTC")),
            WhyKept::Locked {
                until: None,
                message,
            } => write!(f, "locked ({message})"),
            WhyKept::Withheld => f.write_str(VOLUME_FAILED_TEXT),
        }
    }
}

/// The calendar rule that keeps an archived snapshot, written as `kept_by`
/// (its text) and `reason_code` (its code).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ArchiveRule(pub(crate) KeptBy);

impl std::fmt::Display for ArchiveRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        KeepReason::Calendar(self.0).fmt(f)
    }
}

impl Serialize for ArchiveRule {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let reason = KeepReason::Calendar(self.0);
        let mut fields = serializer.serialize_struct("ArchiveRule", 2)?;
        fields.serialize_field("kept_by", &format_args!("{reason}"))?;
        fields.serialize_field("reason_code", reason.code())?;
        fields.end()
    }
}

/// What failed, as the JSON report's `action` and the metrics' `action`
/// label name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureAction {
    /// A region's reads (or, `--copy-to`, the listing of its copies).
    Discover,
    Create,
    /// `--wait`: a snapshot not completed in time.
    Wait,
    Delete,
    Archive,
    /// The delete guard refused the purge (safety rule 8).
    Purge,
    Copy,
    PreHook,
    PostHook,
    AssumeRole,
    ListRegions,
}

impl FailureAction {
    /// Every action, in the order the metrics file writes them: each is
    /// written, 0 when none failed, so an alert on one never waits for its
    /// first failure.
    pub const ALL: [FailureAction; 11] = [
        FailureAction::Discover,
        FailureAction::Create,
        FailureAction::Wait,
        FailureAction::Delete,
        FailureAction::Archive,
        FailureAction::Purge,
        FailureAction::Copy,
        FailureAction::PreHook,
        FailureAction::PostHook,
        FailureAction::AssumeRole,
        FailureAction::ListRegions,
    ];

    /// Its name in the report and the metrics: serde's.
    pub fn code(self) -> &'static str {
        crate::values::serde_name(&self)
    }
}

impl From<HookKind> for FailureAction {
    fn from(kind: HookKind) -> FailureAction {
        match kind {
            HookKind::PreHook => FailureAction::PreHook,
            HookKind::PostHook => FailureAction::PostHook,
        }
    }
}

impl From<BlockedStep> for FailureAction {
    fn from(step: BlockedStep) -> FailureAction {
        match step {
            BlockedStep::AssumeRole => FailureAction::AssumeRole,
            BlockedStep::ListRegions => FailureAction::ListRegions,
        }
    }
}

/// What a dry run found of an action it did not carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// EC2 answered the `DryRun=true` call: the credentials may do it.
    Allowed,
    /// No call could be made (a copy of a snapshot not made yet).
    Planned,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedEntry {
    pub(crate) action: FailureAction,
    pub(crate) snapshot_id: Option<String>,
    pub(crate) volume_id: Option<String>,
    pub(crate) instance_id: Option<String>,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<String>,
    pub(crate) region: String,
    pub(crate) reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedVolumeEntry {
    pub(crate) volume_id: String,
    pub(crate) instance_id: String,
    pub(crate) instance_name: Option<String>,
    pub(crate) device: String,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<String>,
    pub(crate) region: String,
    /// `reason` and `reason_code` in the JSON.
    #[serde(flatten)]
    pub(crate) reason: WithCode<SkipReason>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedEntry {
    pub(crate) instance_id: String,
    pub(crate) instance_name: Option<String>,
    /// The account (`--assume-role`); absent without roles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) account: Option<String>,
    pub(crate) region: String,
    #[serde(serialize_with = "as_text")]
    pub(crate) reason: InstanceSkip,
}
