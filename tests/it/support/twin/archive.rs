//! The EC2 twin's EBS snapshot archive tier (`FaultPlan::archive_tier`,
//! `FaultPlan::archived`, `FaultPlan::archived_since`).
//!
//! Sources, cited where each rule is used:
//! - [ARCHIVE] EBS User Guide, "Archive Amazon EBS snapshots"
//!   (https://docs.aws.amazon.com/ebs/latest/userguide/snapshot-archive.html).
//! - [CONSIDER] "Considerations and limitations for archiving Amazon EBS
//!   snapshots" (snapshot-archive-considerations.html).
//! - [ARCHIVE-ONE] "Archive an Amazon EBS snapshot" (archive-snapshot.html).
//! - [RESTORE] "Restore an archived Amazon EBS snapshot"
//!   (restore-archived-snapshot.html).
//! - [MODIFY] "Modify the restore period for a temporarily restored Amazon EBS
//!   snapshot" (modify-temp-restore-period.html).
//! - [API-MST], [API-RST], [API-DSTS], [API-STS]: EC2 API Reference,
//!   ModifySnapshotTier, RestoreSnapshotTier, DescribeSnapshotTierStatus,
//!   SnapshotTierStatus (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_*.html).
//! - [ERRORS] EC2 API Reference, "Error codes for the Amazon EC2 API"
//!   (errors-overview.html), common client errors.
//!
//! The state machine is pure (`tier_state`: a record and the time give what
//! EC2 shows); the proxy glue below it reads the emulator and keeps the
//! records in the twin's `Book`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::super::{header, HttpRequest, ProxyRecord, ProxyShared, ACCOUNT_ID};
use super::{
    not_found, remove_element, set_element, set_items, top_level, top_level_value, Book, Outcome,
    TwinPlan, ARCHIVED_ERROR_CODE,
};

/// [CONSIDER]: "The minimum archive period is 90 days. If you delete or
/// permanently restore an archived snapshot before the minimum archive period
/// of 90 days, you are billed for remaining days in the archive tier". The
/// twin counts it from `archivalCompleteTime` (an archival still in progress
/// counts as 0 days: conservative, the pages do not say when the period
/// starts).
pub const MIN_ARCHIVE_PERIOD: chrono::TimeDelta = chrono::TimeDelta::days(90);

/// The error for a tier action on a snapshot in the wrong state: not
/// `completed`, already archived or being archived, used by an AMI, not
/// archived (a restore), being restored. [ARCHIVE-ONE] says what cannot be
/// archived ("You can't archive snapshots that are in the pending or error
/// states"; "If the snapshot is associated with one or more AMIs, then you
/// must first disable those associated AMIs") but no page names the code:
/// the twin answers with the common client error whose description fits,
/// `IncorrectState` ("The resource is in an incorrect state for the request",
/// [ERRORS]), as `ARCHIVED_ERROR_CODE` does.
pub const TIER_STATE_ERROR_CODE: &str = "IncorrectState";

/// RestoreSnapshotTier with both TemporaryRestoreDays and
/// PermanentRestore=true, or with neither. [API-RST]: "To permanently
/// restore an archived snapshot, specify true and omit the
/// RestoreSnapshotTierRequest$TemporaryRestoreDays parameter"; "To
/// temporarily restore an archived snapshot, specify the number of days and
/// omit the PermanentRestore parameter or set it to false". The page names
/// no code; [ERRORS] describes `InvalidParameterCombination` as "Indicates an
/// incorrect combination of parameters, or a missing parameter", which fits
/// both (rather than `MissingParameter`, "a required parameter": neither of
/// the two is required on its own).
pub const TIER_PARAMETER_ERROR_CODE: &str = "InvalidParameterCombination";

/// A tier action on a snapshot the caller does not own. [ARCHIVE-ONE]: "You
/// can archive any snapshot that is in the completed state and that you own
/// in your account. You can't archive ... snapshots that are shared with
/// you." No page names the code; the twin answers 403
/// `UnauthorizedOperation` ([ERRORS]: "You are not authorized to perform this
/// operation"), which ebsnap can only take as a failure, never as a state.
pub const NOT_OWNER_ERROR_CODE: &str = "UnauthorizedOperation";

/// The most items a DescribeSnapshotTierStatus page holds, and the page size
/// when the request gives no MaxResults. [API-DSTS] gives MaxResults no range
/// and no default ("The maximum number of items to return for this request.
/// To get the next page of items, make another request with the token
/// returned in the output"); the twin pages by 1000 (the largest MaxResults
/// of EC2's describe calls, e.g. DescribeSnapshots "Valid range: Minimum
/// value of 5. Maximum value of 1000") even without MaxResults, so a client
/// that ignores nextToken misses snapshots, and refuses a MaxResults outside
/// 1..=1000 with `InvalidParameterValue`. Both choices are the twin's, not
/// AWS's documented behaviour.
pub const TIER_STATUS_PAGE: usize = 1000;

/// What the twin remembers of a snapshot's tiering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierRecord {
    /// When ModifySnapshotTier started the archival (a preset: its
    /// completion time).
    pub archive_started: DateTime<Utc>,
    /// When the archival completes (or completed).
    pub archive_complete: DateTime<Utc>,
    /// The last restore, started after the archival completed.
    pub restore: Option<RestoreRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreRecord {
    pub started: DateTime<Utc>,
    /// When the snapshot is back in the standard tier.
    pub complete: DateTime<Utc>,
    pub kind: RestoreKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoreKind {
    /// [RESTORE]: "the snapshot is copied from the archive tier to the
    /// standard tier for a restore period that you specify ... After the
    /// period expires, the snapshot is automatically removed from the
    /// standard tier." `expires`: the end of the restore period.
    Temporary { days: u32, expires: DateTime<Utc> },
    /// [RESTORE]: "the snapshot is moved from the archive tier to the
    /// standard tier permanently ... the snapshot is removed from the archive
    /// tier."
    Permanent,
}

impl TierRecord {
    /// A snapshot whose archival completed at `since` (presets).
    pub fn archived_since(since: DateTime<Utc>) -> TierRecord {
        TierRecord {
            archive_started: since,
            archive_complete: since,
            restore: None,
        }
    }
}

/// Where a snapshot's tiering stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `archival-in-progress`: [ARCHIVE-ONE] "You can continue to use the
    /// snapshot while the archive is in process."
    Archiving,
    /// `archival-completed`: "As soon as the snapshot tiering status reaches
    /// the archival-complete state, you can no longer use the snapshot."
    Archived,
    /// `temporary-` / `permanent-restore-in-progress`: not restored yet
    /// ("Before you can use an archived snapshot, you must first restore it
    /// to the standard tier", [RESTORE]); [CONSIDER]: "It can take up to 72
    /// hours".
    Restoring,
    /// `temporary-restore-completed`, within the restore period.
    TemporarilyRestored,
    /// A temporary restore whose period ended: back in the archive tier only
    /// ([RESTORE]). Its lastTieringOperationStatus stays
    /// `temporary-restore-completed` (no page says what it becomes: the
    /// twin's choice), without restoreExpiryTime ("Only for archived
    /// snapshots that are temporarily restored", [API-STS]).
    RestoreExpired,
    /// `permanent-restore-completed`: standard tier for good.
    PermanentlyRestored,
}

/// What EC2 shows of a tier record at one time (SnapshotTierStatus,
/// [API-STS]; Snapshot's storageTier and restoreExpiryTime).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierView {
    pub phase: Phase,
    /// lastTieringOperationStatus.
    pub status: &'static str,
    /// lastTieringProgress, percent.
    pub progress: u32,
    /// lastTieringStartTime.
    pub started: DateTime<Utc>,
    /// storageTier: `archive` | `standard`.
    pub storage_tier: &'static str,
    /// archivalCompleteTime, once the archival completed.
    pub archival_complete: Option<DateTime<Utc>>,
    /// restoreExpiryTime: a temporary restore within its period.
    pub restore_expiry: Option<DateTime<Utc>>,
    /// CreateVolume and CopySnapshot may use it.
    pub usable: bool,
    /// A copy of it is in (or going to) the archive tier: deleting it early
    /// is billed for the rest of `MIN_ARCHIVE_PERIOD`.
    pub in_archive: bool,
}

fn percent(start: DateTime<Utc>, end: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
    let total = (end - start).num_milliseconds();
    if total <= 0 || now >= end {
        return 100;
    }
    let done = (now - start).num_milliseconds().clamp(0, total);
    (done * 100 / total) as u32
}

/// The state machine: what `record` shows at `now` (pure).
pub fn tier_state(record: &TierRecord, now: DateTime<Utc>) -> TierView {
    let archived = Some(record.archive_complete);
    let Some(restore) = &record.restore else {
        if now < record.archive_complete {
            return TierView {
                phase: Phase::Archiving,
                status: "archival-in-progress",
                progress: percent(record.archive_started, record.archive_complete, now),
                started: record.archive_started,
                storage_tier: "standard",
                archival_complete: None,
                restore_expiry: None,
                usable: true,
                in_archive: true,
            };
        }
        return TierView {
            phase: Phase::Archived,
            status: "archival-completed",
            progress: 100,
            started: record.archive_started,
            storage_tier: "archive",
            archival_complete: archived,
            restore_expiry: None,
            usable: false,
            in_archive: true,
        };
    };
    let (temporary, expires) = match &restore.kind {
        RestoreKind::Temporary { expires, .. } => (true, Some(*expires)),
        RestoreKind::Permanent => (false, None),
    };
    let base = TierView {
        phase: Phase::Restoring,
        status: if temporary {
            "temporary-restore-in-progress"
        } else {
            "permanent-restore-in-progress"
        },
        progress: percent(restore.started, restore.complete, now),
        started: restore.started,
        storage_tier: "archive",
        archival_complete: archived,
        restore_expiry: None,
        usable: false,
        in_archive: true,
    };
    if now < restore.complete {
        return base;
    }
    match expires {
        Some(expires) if now < expires => TierView {
            phase: Phase::TemporarilyRestored,
            status: "temporary-restore-completed",
            progress: 100,
            storage_tier: "standard",
            restore_expiry: Some(expires),
            usable: true,
            ..base
        },
        Some(_) => TierView {
            phase: Phase::RestoreExpired,
            status: "temporary-restore-completed",
            progress: 100,
            ..base
        },
        None => TierView {
            phase: Phase::PermanentlyRestored,
            status: "permanent-restore-completed",
            progress: 100,
            storage_tier: "standard",
            usable: true,
            in_archive: false,
            ..base
        },
    }
}

/// Why ModifySnapshotTier refuses a snapshot in `phase` (None: it may be
/// archived). [ARCHIVE-ONE]; a permanently restored snapshot "remains
/// restored and ready for use until you manually re-archive it" ([RESTORE]).
pub fn archive_refusal(phase: Option<Phase>) -> Option<&'static str> {
    match phase? {
        Phase::PermanentlyRestored => None,
        Phase::Archiving => Some("is already being archived"),
        Phase::Archived | Phase::RestoreExpired => Some("is already archived"),
        Phase::Restoring => Some("is being restored from the archive tier"),
        Phase::TemporarilyRestored => {
            Some("is temporarily restored; a copy remains in the archive tier")
        }
    }
}

/// What RestoreSnapshotTier does with a snapshot (pure).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestorePlan {
    /// Start a restore (archived, or back in the archive after a temporary
    /// restore).
    Start(RestoreRecord),
    /// [MODIFY]: "You can change the restore period for a temporarily
    /// restored snapshot at any time"; "the new restore period is effective
    /// from the current date"; "If you change the restore type from temporary
    /// to permanent, the snapshot copy is deleted from the archive tier".
    Modify(RestoreRecord),
    Refuse(&'static str),
}

/// RestoreSnapshotTier at `now` on `record` (None: never archived): `days`
/// Some for a temporary restore, None for a permanent one.
pub fn plan_restore(
    record: Option<&TierRecord>,
    days: Option<u32>,
    restore_takes: Duration,
    now: DateTime<Utc>,
) -> RestorePlan {
    let Some(record) = record else {
        return RestorePlan::Refuse("is not archived");
    };
    let view = tier_state(record, now);
    let restore_takes = chrono::TimeDelta::from_std(restore_takes).expect("restore duration");
    match view.phase {
        Phase::Archived | Phase::RestoreExpired => {
            let complete = now + restore_takes;
            RestorePlan::Start(RestoreRecord {
                started: now,
                complete,
                kind: match days {
                    Some(days) => RestoreKind::Temporary {
                        days,
                        expires: complete + chrono::TimeDelta::days(days.into()),
                    },
                    None => RestoreKind::Permanent,
                },
            })
        }
        Phase::TemporarilyRestored => {
            let current = record.restore.clone().expect("a restore");
            RestorePlan::Modify(RestoreRecord {
                kind: match days {
                    Some(days) => RestoreKind::Temporary {
                        days,
                        expires: now + chrono::TimeDelta::days(days.into()),
                    },
                    None => RestoreKind::Permanent,
                },
                ..current
            })
        }
        // Not documented: a second RestoreSnapshotTier while a restore runs.
        // Refused (conservative: ebsnap must look at the tier status first).
        Phase::Restoring => RestorePlan::Refuse("is already being restored"),
        // [ARCHIVE-ONE]: the archival completes before the snapshot is
        // archived; until then there is nothing to restore.
        Phase::Archiving => RestorePlan::Refuse("is still being archived"),
        Phase::PermanentlyRestored => RestorePlan::Refuse("is not archived"),
    }
}

/// Deleting a snapshot in this state at `now` is billed for the rest of the
/// minimum archive period ([CONSIDER]).
pub fn is_early_delete(record: &TierRecord, now: DateTime<Utc>) -> bool {
    let view = tier_state(record, now);
    view.in_archive
        && view
            .archival_complete
            .is_none_or(|complete| now - complete < MIN_ARCHIVE_PERIOD)
}

/// EC2's timestamp format in answers.
pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn xml_answer(action: &str, inner: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{action}Response \
         xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>twin</requestId>\
         {inner}</{action}Response>"
    )
}

/// ModifySnapshotTier's answer ([API-MST]: snapshotId, tieringStartTime).
pub fn modify_tier_answer(snapshot: &str, started: DateTime<Utc>) -> String {
    xml_answer(
        "ModifySnapshotTier",
        &format!(
            "<snapshotId>{snapshot}</snapshotId><tieringStartTime>{}</tieringStartTime>",
            ts(started)
        ),
    )
}

/// RestoreSnapshotTier's answer ([API-RST]: snapshotId, restoreStartTime,
/// restoreDuration "For temporary restores only", isPermanentRestore).
pub fn restore_tier_answer(snapshot: &str, restore: &RestoreRecord) -> String {
    let (duration, permanent) = match &restore.kind {
        RestoreKind::Temporary { days, .. } => {
            (format!("<restoreDuration>{days}</restoreDuration>"), false)
        }
        RestoreKind::Permanent => (String::new(), true),
    };
    xml_answer(
        "RestoreSnapshotTier",
        &format!(
            "<snapshotId>{snapshot}</snapshotId><restoreStartTime>{}</restoreStartTime>\
             {duration}<isPermanentRestore>{permanent}</isPermanentRestore>",
            ts(restore.started)
        ),
    )
}

/// A snapshot as DescribeSnapshotTierStatus lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierStatusItem {
    pub snapshot: String,
    pub volume: String,
    /// The snapshot's state (pending | completed | error | ...).
    pub status: String,
    pub owner: String,
    /// The snapshot's `<tagSet>…</tagSet>` element as DescribeSnapshots gave it.
    pub tag_set: String,
    /// storageTier of a snapshot without tiering history.
    pub storage_tier: String,
    pub view: Option<TierView>,
}

/// One `<item>` of snapshotTierStatusSet ([API-STS]); the tiering fields
/// only for a snapshot with a tiering history, restoreExpiryTime only
/// within a temporary restore period.
pub fn tier_status_item(item: &TierStatusItem) -> String {
    let mut out = format!(
        "<item><snapshotId>{}</snapshotId><volumeId>{}</volumeId><status>{}</status>\
         <ownerId>{}</ownerId>{}",
        item.snapshot, item.volume, item.status, item.owner, item.tag_set
    );
    match &item.view {
        None => out.push_str(&format!("<storageTier>{}</storageTier>", item.storage_tier)),
        Some(view) => {
            out.push_str(&format!(
                "<storageTier>{}</storageTier><lastTieringStartTime>{}</lastTieringStartTime>\
                 <lastTieringProgress>{}</lastTieringProgress>\
                 <lastTieringOperationStatus>{}</lastTieringOperationStatus>\
                 <lastTieringOperationStatusDetail>{}</lastTieringOperationStatusDetail>",
                view.storage_tier,
                ts(view.started),
                view.progress,
                view.status,
                status_detail(view.phase),
            ));
            if let Some(t) = view.archival_complete {
                out.push_str(&format!(
                    "<archivalCompleteTime>{}</archivalCompleteTime>",
                    ts(t)
                ));
            }
            if let Some(t) = view.restore_expiry {
                out.push_str(&format!("<restoreExpiryTime>{}</restoreExpiryTime>", ts(t)));
            }
        }
    }
    out.push_str("</item>");
    out
}

/// lastTieringOperationStatusDetail: "A message describing the status of the
/// last archive or restore process" ([API-STS]; the wording is the twin's).
fn status_detail(phase: Phase) -> &'static str {
    match phase {
        Phase::Archiving => "Archival in progress",
        Phase::Archived => "Archival completed successfully",
        Phase::Restoring => "Restore in progress",
        Phase::TemporarilyRestored => "Temporary restore completed successfully",
        Phase::RestoreExpired => "Temporary restore period ended; the snapshot is archived",
        Phase::PermanentlyRestored => "Permanent restore completed successfully",
    }
}

/// DescribeSnapshotTierStatus' answer: one page of `items` (sorted by
/// snapshot id) after the token `after`, at most `max`; with the token of
/// the next page when there is one.
pub fn tier_status_page(items: &[TierStatusItem], after: Option<&str>, max: usize) -> String {
    let rest: Vec<&TierStatusItem> = items
        .iter()
        .filter(|i| after.is_none_or(|a| i.snapshot.as_str() > a))
        .collect();
    let page = &rest[..rest.len().min(max)];
    let body: String = page.iter().map(|i| tier_status_item(i)).collect();
    let next = if rest.len() > max {
        format!(
            "<nextToken>{}{}</nextToken>",
            TOKEN_PREFIX,
            page.last().expect("a page").snapshot
        )
    } else {
        String::new()
    };
    xml_answer(
        "DescribeSnapshotTierStatus",
        &format!("<snapshotTierStatusSet>{body}</snapshotTierStatusSet>{next}"),
    )
}

/// The twin's NextToken: the last snapshot id of the page before.
const TOKEN_PREFIX: &str = "twin-tier-after-";

/// The filters DescribeSnapshotTierStatus knows ([API-DSTS]).
const TIER_FILTERS: [&str; 3] = ["snapshot-id", "volume-id", "last-tiering-operation"];

// ---------------------------------------------------------------------------
// The proxy glue

fn refusal(status: u16, code: &str, message: String, note: String) -> Outcome {
    Outcome::Refuse {
        status,
        code: code.to_string(),
        message,
        note,
    }
}

fn dry_run_ok(action: &str) -> Outcome {
    // DryRunOperation comes with HTTP 412, as EC2 (and moto) answer it.
    refusal(
        412,
        "DryRunOperation",
        "Request would have succeeded, but DryRun flag is set.".into(),
        format!("answered {action} (DryRun)"),
    )
}

fn state_refusal(id: &str, why: &str) -> Outcome {
    refusal(
        400,
        TIER_STATE_ERROR_CODE,
        format!("The snapshot '{id}' {why}."),
        format!("refused: {TIER_STATE_ERROR_CODE} {id} ({why})"),
    )
}

/// The tier record of a snapshot: the twin's own, else a preset's.
pub(super) fn tier_record(
    book: &Book,
    plan: &TwinPlan,
    snapshot: &str,
    volume: Option<&str>,
) -> Option<TierRecord> {
    book.tiers
        .get(snapshot)
        .cloned()
        .or_else(|| plan.preset_tier(snapshot, volume))
}

/// What a snapshot of the emulator is, as the twin shows it.
struct Seen {
    volume: Option<String>,
    owner: Option<String>,
    /// Its state, with the twin's (`snapshot_state`, pending) applied.
    status: String,
}

impl ProxyShared {
    /// The twin's answer to an archive-tier action, when `archive_tier` is on.
    pub(super) fn twin_archive_tier(
        &self,
        record: &ProxyRecord,
        req: &HttpRequest,
    ) -> Option<Outcome> {
        let tier = self.plan.twin.archive_tier.as_ref()?;
        Some(match record.action.as_str() {
            "ModifySnapshotTier" => {
                self.twin_modify_tier(record, req, self.twin.clock.span(tier.archival))
            }
            "RestoreSnapshotTier" => {
                self.twin_restore_tier(record, req, self.twin.clock.span(tier.restore))
            }
            "DescribeSnapshotTierStatus" => self.twin_tier_status(record, req),
            _ => return None,
        })
    }

    /// The caller's account (moto's, or the one `x-moto-account-id` names),
    /// as `DescribeLockedSnapshots` reads it.
    fn twin_caller_account<'a>(&self, req: &'a HttpRequest) -> &'a str {
        header(&req.headers, "x-moto-account-id").unwrap_or(ACCOUNT_ID)
    }

    /// The snapshot `id` in the emulator (None: it has none), as the twin
    /// shows it; remembers its volume.
    fn twin_seen(&self, req: &HttpRequest, id: &str) -> Option<Seen> {
        let body = self.twin_upstream(
            req,
            &[("Action", "DescribeSnapshots"), ("SnapshotId.1", id)],
        )?;
        let item = set_items(&body, "snapshotSet")
            .into_iter()
            .map(|r| body[r].to_string())
            .find(|item| top_level_value(item, "snapshotId") == Some(id))?;
        let volume = top_level_value(&item, "volumeId").map(String::from);
        let mut book = self.twin.book.lock().unwrap();
        if let Some(v) = &volume {
            book.volume_of.insert(id.to_string(), v.clone());
        }
        let status = self.twin_status_of(&book, id, volume.as_deref(), &item);
        Some(Seen {
            owner: top_level_value(&item, "ownerId").map(String::from),
            volume,
            status,
        })
    }

    /// A snapshot's state as the twin shows it: `snapshot_state`'s, pending
    /// under `volume_limits`, else the emulator's.
    fn twin_status_of(&self, book: &Book, id: &str, volume: Option<&str>, item: &str) -> String {
        self.plan
            .twin
            .state_of(id, volume)
            .or_else(|| book.pending(id, self.twin.clock.now()).then_some("pending"))
            .map(String::from)
            .or_else(|| top_level_value(item, "status").map(String::from))
            .unwrap_or_default()
    }

    /// The snapshot named by a tier action, checked as EC2 checks it before
    /// looking at its tier: it exists (and the consistency window shows it),
    /// and it is the caller's.
    fn twin_tier_target(
        &self,
        record: &ProxyRecord,
        req: &HttpRequest,
        id: &str,
    ) -> Result<Seen, Outcome> {
        let hidden = {
            let book = self.twin.book.lock().unwrap();
            book.hidden(self.twin_window(), id, self.twin.clock.now())
        };
        if hidden {
            return Err(not_found(id, "consistency window").expect("an outcome"));
        }
        let Some(seen) = self.twin_seen(req, id) else {
            return Err(
                not_found(id, &format!("{} of no snapshot", record.action)).expect("an outcome")
            );
        };
        let caller = self.twin_caller_account(req);
        if seen.owner.as_deref().is_some_and(|o| o != caller) {
            return Err(refusal(
                403,
                NOT_OWNER_ERROR_CODE,
                format!(
                    "You are not authorized to perform this operation. The snapshot '{id}' is not owned by {caller}."
                ),
                format!("refused: {NOT_OWNER_ERROR_CODE} {id} (owned by {:?})", seen.owner),
            ));
        }
        Ok(seen)
    }

    fn twin_modify_tier(
        &self,
        record: &ProxyRecord,
        req: &HttpRequest,
        archival: Duration,
    ) -> Outcome {
        let Some(id) = record.param("SnapshotId").filter(|s| !s.is_empty()) else {
            return refusal(
                400,
                "MissingParameter",
                "The request must contain the parameter SnapshotId".into(),
                "refused: MissingParameter SnapshotId".into(),
            );
        };
        // [API-MST] StorageTier: "The name of the storage tier. You must
        // specify archive."
        if record.param("StorageTier") != Some("archive") {
            let got = record.param("StorageTier").unwrap_or("(none)");
            return refusal(
                400,
                "InvalidParameterValue",
                format!(
                    "Value ({got}) for parameter StorageTier is invalid. You must specify archive."
                ),
                format!("refused: InvalidParameterValue StorageTier={got}"),
            );
        }
        // [API-MST] DryRun: "Checks whether you have the required permissions
        // for the action, without actually making the request": judged by the
        // IAM twin before this.
        if record.dry_run {
            return dry_run_ok("ModifySnapshotTier");
        }
        let seen = match self.twin_tier_target(record, req, id) {
            Ok(seen) => seen,
            Err(refused) => return refused,
        };
        // [ARCHIVE-ONE]: "You can archive any snapshot that is in the
        // completed state ... You can't archive snapshots that are in the
        // pending or error states".
        if seen.status != "completed" {
            return state_refusal(id, &format!("is in state {}", seen.status));
        }
        let now = self.twin.clock.utc();
        let current = {
            let book = self.twin.book.lock().unwrap();
            tier_record(&book, &self.plan.twin, id, seen.volume.as_deref())
        };
        if let Some(why) = archive_refusal(current.as_ref().map(|r| tier_state(r, now).phase)) {
            return state_refusal(id, why);
        }
        // [ARCHIVE-ONE]: "If the snapshot is associated with one or more AMIs,
        // then you must first disable those associated AMIs". DescribeImages
        // leaves disabled AMIs out unless IncludeDisabled (DescribeImages, EC2
        // API Reference): what it lists is registered and enabled. The
        // caller's AMIs, scanned for the snapshot in their block device
        // mappings: moto 5.2.5 answers the `block-device-mapping.snapshot-id`
        // filter with a 500, and its RegisterImage does not keep the mappings
        // it is given (CreateImage's AMIs carry theirs).
        let needle = format!("<snapshotId>{id}</snapshotId>");
        let amis = self
            .twin_upstream(req, &[("Action", "DescribeImages"), ("Owner.1", "self")])
            .map(|body| {
                set_items(&body, "imagesSet")
                    .into_iter()
                    .map(|r| &body[r])
                    .filter(|image| image.contains(&needle))
                    .filter_map(|image| top_level_value(image, "imageId").map(String::from))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        if !amis.is_empty() {
            return state_refusal(
                id,
                &format!(
                    "is associated with AMI {}; disable the AMI before archiving the snapshot",
                    amis.join(", ")
                ),
            );
        }
        let complete = now + chrono::TimeDelta::from_std(archival).expect("archival duration");
        self.twin.book.lock().unwrap().tiers.insert(
            id.to_string(),
            TierRecord {
                archive_started: now,
                archive_complete: complete,
                restore: None,
            },
        );
        Outcome::Answer {
            body: modify_tier_answer(id, now),
            note: format!("archiving {id} for {archival:?}"),
        }
    }

    fn twin_restore_tier(
        &self,
        record: &ProxyRecord,
        req: &HttpRequest,
        restore: Duration,
    ) -> Outcome {
        let Some(id) = record.param("SnapshotId").filter(|s| !s.is_empty()) else {
            return refusal(
                400,
                "MissingParameter",
                "The request must contain the parameter SnapshotId".into(),
                "refused: MissingParameter SnapshotId".into(),
            );
        };
        let permanent = record
            .param("PermanentRestore")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let days = record.param("TemporaryRestoreDays");
        let days = match (days, permanent) {
            (Some(_), true) | (None, false) => {
                let why = if permanent {
                    "specify either TemporaryRestoreDays or PermanentRestore, not both"
                } else {
                    "specify TemporaryRestoreDays for a temporary restore or PermanentRestore=true"
                };
                return refusal(
                    400,
                    TIER_PARAMETER_ERROR_CODE,
                    format!("{why}."),
                    format!("refused: {TIER_PARAMETER_ERROR_CODE} {id} ({why})"),
                );
            }
            (None, true) => None,
            // [API-RST] TemporaryRestoreDays: "Type: Integer"; a number of
            // days is at least 1 ([MODIFY]: "You can end a temporary restore
            // early by setting the restore period to 1 day"). No page gives a
            // maximum; the twin sets none.
            (Some(d), false) => match d.parse::<u32>() {
                Ok(n) if n >= 1 => Some(n),
                _ => {
                    return refusal(
                        400,
                        "InvalidParameterValue",
                        format!("Value ({d}) for parameter TemporaryRestoreDays is invalid."),
                        format!("refused: InvalidParameterValue TemporaryRestoreDays={d}"),
                    )
                }
            },
        };
        if record.dry_run {
            return dry_run_ok("RestoreSnapshotTier");
        }
        let seen = match self.twin_tier_target(record, req, id) {
            Ok(seen) => seen,
            Err(refused) => return refused,
        };
        let now = self.twin.clock.utc();
        let mut book = self.twin.book.lock().unwrap();
        let mut current = tier_record(&book, &self.plan.twin, id, seen.volume.as_deref());
        let (restore, what) = match plan_restore(current.as_ref(), days, restore, now) {
            RestorePlan::Refuse(why) => {
                drop(book);
                return state_refusal(id, why);
            }
            RestorePlan::Start(r) => (r, "restoring"),
            RestorePlan::Modify(r) => (r, "modified the restore of"),
        };
        let record_now = current.as_mut().expect("an archived snapshot");
        record_now.restore = Some(restore.clone());
        book.tiers.insert(id.to_string(), record_now.clone());
        drop(book);
        let kind = match &restore.kind {
            RestoreKind::Temporary { days, expires } => {
                format!("temporarily for {days} d, until {}", ts(*expires))
            }
            RestoreKind::Permanent => "permanently".into(),
        };
        Outcome::Answer {
            body: restore_tier_answer(id, &restore),
            note: format!("{what} {id} {kind}"),
        }
    }

    fn twin_tier_status(&self, record: &ProxyRecord, req: &HttpRequest) -> Outcome {
        let filters = record.filters();
        if let Some(unknown) = filters.keys().find(|f| !TIER_FILTERS.contains(&f.as_str())) {
            return refusal(
                400,
                "InvalidParameterValue",
                format!("The filter '{unknown}' is invalid"),
                format!("refused: InvalidParameterValue filter {unknown}"),
            );
        }
        let max = match record.param("MaxResults") {
            None => TIER_STATUS_PAGE,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=TIER_STATUS_PAGE).contains(&n) => n,
                _ => {
                    return refusal(
                        400,
                        "InvalidParameterValue",
                        format!("Value ({v}) for parameter MaxResults is invalid."),
                        format!("refused: InvalidParameterValue MaxResults={v}"),
                    )
                }
            },
        };
        let after = match record.param("NextToken") {
            None => None,
            Some(t) => match t.strip_prefix(TOKEN_PREFIX) {
                Some(after) => Some(after.to_string()),
                None => {
                    // [ERRORS] InvalidPaginationToken: "The specified
                    // pagination token is not valid or is expired."
                    return refusal(
                        400,
                        "InvalidPaginationToken",
                        "The specified pagination token is not valid or is expired.".into(),
                        format!("refused: InvalidPaginationToken {t}"),
                    );
                }
            },
        };
        if record.dry_run {
            return dry_run_ok("DescribeSnapshotTierStatus");
        }
        // The caller's snapshots, read from the emulator (moto 5.2.5 ignores
        // OwnerId: the twin keeps the caller's own).
        let mut params: Vec<(String, String)> = vec![
            ("Action".into(), "DescribeSnapshots".into()),
            ("OwnerId.1".into(), "self".into()),
        ];
        let mut n = 0;
        for name in ["snapshot-id", "volume-id"] {
            if let Some(values) = filters.get(name) {
                n += 1;
                params.push((format!("Filter.{n}.Name"), name.into()));
                for (i, v) in values.iter().enumerate() {
                    params.push((format!("Filter.{n}.Value.{}", i + 1), v.clone()));
                }
            }
        }
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let Some(body) = self.twin_upstream(req, &params) else {
            return refusal(
                500,
                "InternalError",
                "An internal error has occurred.".into(),
                "DescribeSnapshotTierStatus: the emulator's DescribeSnapshots failed".into(),
            );
        };
        let caller = self.twin_caller_account(req);
        let operations = filters.get("last-tiering-operation");
        let now = self.twin.clock.utc();
        let instant = self.twin.clock.now();
        let mut items = Vec::new();
        {
            let mut book = self.twin.book.lock().unwrap();
            for range in set_items(&body, "snapshotSet") {
                let item = &body[range];
                let Some(id) = top_level_value(item, "snapshotId") else {
                    continue;
                };
                if top_level_value(item, "ownerId").is_some_and(|o| o != caller)
                    || book.hidden(self.plan.twin.window, id, instant)
                {
                    continue;
                }
                let volume = top_level_value(item, "volumeId").unwrap_or_default();
                if !volume.is_empty() {
                    book.volume_of.insert(id.to_string(), volume.to_string());
                }
                let view = tier_record(&book, &self.plan.twin, id, Some(volume))
                    .map(|r| tier_state(&r, now));
                if let Some(ops) = operations {
                    if !view
                        .as_ref()
                        .is_some_and(|v| ops.iter().any(|o| o == v.status))
                    {
                        continue;
                    }
                }
                let tag_set = top_level(item, "tagSet")
                    .map(|(whole, _)| item[whole].to_string())
                    .unwrap_or_else(|| "<tagSet/>".into());
                items.push(TierStatusItem {
                    snapshot: id.to_string(),
                    volume: volume.to_string(),
                    status: self.twin_status_of(&book, id, Some(volume), item),
                    owner: top_level_value(item, "ownerId")
                        .unwrap_or(caller)
                        .to_string(),
                    tag_set,
                    storage_tier: top_level_value(item, "storageTier")
                        .unwrap_or("standard")
                        .to_string(),
                    view,
                });
            }
        }
        items.sort_by(|a, b| a.snapshot.cmp(&b.snapshot));
        let body = tier_status_page(&items, after.as_deref(), max);
        let shown = set_items(&body, "snapshotTierStatusSet").len();
        let with_history = items.iter().filter(|i| i.view.is_some()).count();
        Outcome::Answer {
            body,
            note: format!(
                "answered DescribeSnapshotTierStatus: {shown} of {} ({with_history} with a tiering history)",
                items.len()
            ),
        }
    }

    /// A DescribeSnapshots item rewritten to the snapshot's tier state
    /// (`storageTier`, `restoreExpiryTime`); None: no tier record.
    pub(super) fn twin_tier_item(
        &self,
        book: &Book,
        id: &str,
        volume: Option<&str>,
        item: &str,
        now: DateTime<Utc>,
    ) -> Option<(String, &'static str)> {
        let record = tier_record(book, &self.plan.twin, id, volume)?;
        let view = tier_state(&record, now);
        let item = set_element(item, "storageTier", view.storage_tier);
        let item = match view.restore_expiry {
            Some(t) => set_element(&item, "restoreExpiryTime", &ts(t)),
            None => remove_element(&item, "restoreExpiryTime"),
        };
        Some((item, view.status))
    }

    /// Why CreateVolume from, or CopySnapshot of, `id` is refused (None: it
    /// is usable).
    pub(super) fn twin_unusable(&self, req: &HttpRequest, id: &str) -> Option<Outcome> {
        let volume = self.twin_volume_of(req, id);
        let record = {
            let book = self.twin.book.lock().unwrap();
            tier_record(&book, &self.plan.twin, id, volume.as_deref())?
        };
        let view = tier_state(&record, self.twin.clock.utc());
        if view.usable {
            return None;
        }
        let why = match view.phase {
            Phase::Restoring => {
                "is being restored from the archive tier; wait until the restore completes"
            }
            _ => "is in the archive tier; restore it before using it",
        };
        Some(refusal(
            400,
            ARCHIVED_ERROR_CODE,
            format!("The snapshot '{id}' {why}."),
            format!("refused: archived {id} ({})", view.status),
        ))
    }

    /// A DeleteSnapshot of `id` took effect: an early delete of an archived
    /// snapshot is recorded, its tier record forgotten.
    pub(super) fn twin_tier_deleted(&self, seq: usize, id: &str) {
        let volume = self.twin.book.lock().unwrap().volume_of.get(id).cloned();
        let now = self.twin.clock.utc();
        let early = {
            let mut book = self.twin.book.lock().unwrap();
            let Some(record) = tier_record(&book, &self.plan.twin, id, volume.as_deref()) else {
                return;
            };
            book.tiers.remove(id);
            let early = is_early_delete(&record, now);
            if early {
                book.early_deletes.push(id.to_string());
            }
            early
        };
        if early {
            self.twin_note(
                seq,
                &format!("deleted {id} within the 90-day minimum archive period (billed)"),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Unit tests of the pure parts (named twin_* so `cargo test twin_` finds them)

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn secs(n: i64) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(n)
    }

    fn archiving(archival: i64) -> TierRecord {
        TierRecord {
            archive_started: t0(),
            archive_complete: t0() + secs(archival),
            restore: None,
        }
    }

    #[test]
    fn twin_tier_archival_progresses_then_the_snapshot_is_archived_and_unusable() {
        let r = archiving(100);
        let v = tier_state(&r, t0());
        assert_eq!(
            (v.phase, v.status, v.progress, v.storage_tier, v.usable),
            (
                Phase::Archiving,
                "archival-in-progress",
                0,
                "standard",
                true
            )
        );
        assert_eq!(v.archival_complete, None);
        assert_eq!(tier_state(&r, t0() + secs(50)).progress, 50);
        assert_eq!(tier_state(&r, t0() + secs(99)).progress, 99);
        let done = tier_state(&r, t0() + secs(100));
        assert_eq!(
            (
                done.phase,
                done.status,
                done.progress,
                done.storage_tier,
                done.usable
            ),
            (Phase::Archived, "archival-completed", 100, "archive", false)
        );
        assert_eq!(done.archival_complete, Some(t0() + secs(100)));
        assert_eq!(done.started, t0());
        assert_eq!(done.restore_expiry, None);
        // A preset: archived since its time, complete at once.
        let preset = tier_state(&TierRecord::archived_since(t0()), t0());
        assert_eq!((preset.phase, preset.progress), (Phase::Archived, 100));
    }

    #[test]
    fn twin_tier_temporary_restore_is_standard_until_it_expires() {
        let archived = archiving(10);
        let at = t0() + secs(20);
        let RestorePlan::Start(restore) =
            plan_restore(Some(&archived), Some(2), Duration::from_secs(100), at)
        else {
            panic!("a restore starts")
        };
        assert_eq!(restore.complete, at + secs(100));
        let expires = at + secs(100) + chrono::TimeDelta::days(2);
        assert_eq!(restore.kind, RestoreKind::Temporary { days: 2, expires });
        let r = TierRecord {
            restore: Some(restore),
            ..archived
        };
        let v = tier_state(&r, at + secs(25));
        assert_eq!(
            (v.phase, v.status, v.progress, v.storage_tier, v.usable),
            (
                Phase::Restoring,
                "temporary-restore-in-progress",
                25,
                "archive",
                false
            )
        );
        assert_eq!(v.started, at);
        let v = tier_state(&r, at + secs(100));
        assert_eq!(
            (v.phase, v.status, v.storage_tier, v.usable),
            (
                Phase::TemporarilyRestored,
                "temporary-restore-completed",
                "standard",
                true
            )
        );
        assert_eq!(v.restore_expiry, Some(expires));
        assert_eq!(v.archival_complete, Some(t0() + secs(10)));
        let v = tier_state(&r, expires);
        assert_eq!(
            (v.phase, v.storage_tier, v.usable, v.restore_expiry),
            (Phase::RestoreExpired, "archive", false, None)
        );
        // Back in the archive: it can be restored again, not archived again.
        assert!(matches!(
            plan_restore(Some(&r), None, Duration::from_secs(1), expires),
            RestorePlan::Start(_)
        ));
        assert!(archive_refusal(Some(v.phase)).is_some());
    }

    #[test]
    fn twin_tier_restore_period_and_type_are_modified_from_now() {
        let at = t0() + secs(10);
        let restored = TierRecord {
            restore: Some(RestoreRecord {
                started: at,
                complete: at + secs(5),
                kind: RestoreKind::Temporary {
                    days: 10,
                    expires: at + secs(5) + chrono::TimeDelta::days(10),
                },
            }),
            ..archiving(10)
        };
        let now = at + secs(3600);
        let RestorePlan::Modify(longer) =
            plan_restore(Some(&restored), Some(5), Duration::ZERO, now)
        else {
            panic!("a temporarily restored snapshot's period is modified")
        };
        // "the new restore period is effective from the current date".
        assert_eq!(
            longer.kind,
            RestoreKind::Temporary {
                days: 5,
                expires: now + chrono::TimeDelta::days(5)
            }
        );
        assert_eq!((longer.started, longer.complete), (at, at + secs(5)));
        let RestorePlan::Modify(permanent) =
            plan_restore(Some(&restored), None, Duration::ZERO, now)
        else {
            panic!("temporary to permanent")
        };
        let r = TierRecord {
            restore: Some(permanent),
            ..restored.clone()
        };
        let v = tier_state(&r, now);
        assert_eq!(
            (
                v.phase,
                v.status,
                v.storage_tier,
                v.usable,
                v.in_archive,
                v.restore_expiry
            ),
            (
                Phase::PermanentlyRestored,
                "permanent-restore-completed",
                "standard",
                true,
                false,
                None
            )
        );
        // Permanently restored: not archived any more, may be archived again.
        assert_eq!(
            plan_restore(Some(&r), Some(1), Duration::ZERO, now),
            RestorePlan::Refuse("is not archived")
        );
        assert_eq!(archive_refusal(Some(v.phase)), None);
    }

    #[test]
    fn twin_tier_refusals_follow_the_phase() {
        let d = Duration::from_secs(1);
        assert_eq!(
            plan_restore(None, Some(1), d, t0()),
            RestorePlan::Refuse("is not archived")
        );
        let r = archiving(100);
        assert_eq!(
            plan_restore(Some(&r), Some(1), d, t0() + secs(50)),
            RestorePlan::Refuse("is still being archived")
        );
        let restoring = TierRecord {
            restore: Some(RestoreRecord {
                started: t0() + secs(100),
                complete: t0() + secs(200),
                kind: RestoreKind::Permanent,
            }),
            ..r.clone()
        };
        let v = tier_state(&restoring, t0() + secs(150));
        assert_eq!(
            (v.phase, v.status),
            (Phase::Restoring, "permanent-restore-in-progress")
        );
        assert_eq!(
            plan_restore(Some(&restoring), None, d, t0() + secs(150)),
            RestorePlan::Refuse("is already being restored")
        );
        assert_eq!(archive_refusal(None), None);
        for phase in [
            Phase::Archiving,
            Phase::Archived,
            Phase::Restoring,
            Phase::TemporarilyRestored,
            Phase::RestoreExpired,
        ] {
            assert!(archive_refusal(Some(phase)).is_some(), "{phase:?}");
        }
    }

    #[test]
    fn twin_tier_early_deletes_count_90_days_from_archival_completion() {
        let now = t0();
        let days = chrono::TimeDelta::days;
        assert!(is_early_delete(
            &TierRecord::archived_since(now - days(89)),
            now
        ));
        assert!(!is_early_delete(
            &TierRecord::archived_since(now - days(90)),
            now
        ));
        assert!(!is_early_delete(
            &TierRecord::archived_since(now - days(100)),
            now
        ));
        // Still being archived: counts as archived for 0 days.
        assert!(is_early_delete(&archiving(100), t0() + secs(1)));
        // Temporarily restored: a copy stays in the archive tier.
        let temp = TierRecord {
            restore: Some(RestoreRecord {
                started: now - days(10),
                complete: now - days(10),
                kind: RestoreKind::Temporary {
                    days: 30,
                    expires: now + days(20),
                },
            }),
            ..TierRecord::archived_since(now - days(11))
        };
        assert!(is_early_delete(&temp, now));
        // Permanently restored: it left the archive tier.
        let permanent = TierRecord {
            restore: Some(RestoreRecord {
                kind: RestoreKind::Permanent,
                ..temp.restore.clone().unwrap()
            }),
            ..temp
        };
        assert!(!is_early_delete(&permanent, now));
    }

    #[test]
    fn twin_tier_answers_carry_the_documented_elements() {
        let modify = modify_tier_answer("snap-1", t0());
        assert!(modify.contains(
            "<ModifySnapshotTierResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">"
        ));
        assert!(modify.contains("<snapshotId>snap-1</snapshotId><tieringStartTime>2025-03-01T00:00:00.000Z</tieringStartTime>"));
        let temp = RestoreRecord {
            started: t0(),
            complete: t0(),
            kind: RestoreKind::Temporary {
                days: 7,
                expires: t0(),
            },
        };
        let restore = restore_tier_answer("snap-1", &temp);
        for part in [
            "<RestoreSnapshotTierResponse ",
            "<snapshotId>snap-1</snapshotId>",
            "<restoreStartTime>2025-03-01T00:00:00.000Z</restoreStartTime>",
            "<restoreDuration>7</restoreDuration>",
            "<isPermanentRestore>false</isPermanentRestore>",
        ] {
            assert!(restore.contains(part), "{part} in {restore}");
        }
        let permanent = restore_tier_answer(
            "snap-1",
            &RestoreRecord {
                kind: RestoreKind::Permanent,
                ..temp
            },
        );
        assert!(permanent.contains("<isPermanentRestore>true</isPermanentRestore>"));
        assert!(!permanent.contains("restoreDuration"), "{permanent}");
    }

    fn item(id: &str, view: Option<TierView>) -> TierStatusItem {
        TierStatusItem {
            snapshot: id.into(),
            volume: "vol-1".into(),
            status: "completed".into(),
            owner: "123456789012".into(),
            tag_set: "<tagSet><item><key>k</key><value>v</value></item></tagSet>".into(),
            storage_tier: "standard".into(),
            view,
        }
    }

    #[test]
    fn twin_tier_status_items_and_pages() {
        let plain = tier_status_item(&item("snap-a", None));
        assert_eq!(
            plain,
            "<item><snapshotId>snap-a</snapshotId><volumeId>vol-1</volumeId><status>completed</status>\
             <ownerId>123456789012</ownerId><tagSet><item><key>k</key><value>v</value></item></tagSet>\
             <storageTier>standard</storageTier></item>"
        );
        let view = tier_state(&TierRecord::archived_since(t0()), t0());
        let archived = tier_status_item(&item("snap-b", Some(view)));
        for part in [
            "<storageTier>archive</storageTier>",
            "<lastTieringStartTime>2025-03-01T00:00:00.000Z</lastTieringStartTime>",
            "<lastTieringProgress>100</lastTieringProgress>",
            "<lastTieringOperationStatus>archival-completed</lastTieringOperationStatus>",
            "<lastTieringOperationStatusDetail>",
            "<archivalCompleteTime>2025-03-01T00:00:00.000Z</archivalCompleteTime>",
        ] {
            assert!(archived.contains(part), "{part} in {archived}");
        }
        assert!(!archived.contains("restoreExpiryTime"), "{archived}");
        // The item's own fields, not its tags', are what set_items and
        // top_level_value read.
        assert_eq!(top_level_value(&archived, "storageTier"), Some("archive"));

        let items: Vec<TierStatusItem> = (0..5).map(|i| item(&format!("snap-{i}"), None)).collect();
        let first = tier_status_page(&items, None, 2);
        assert!(first.contains("<DescribeSnapshotTierStatusResponse "));
        assert_eq!(set_items(&first, "snapshotTierStatusSet").len(), 2);
        let token = top_level_value(&first, "nextToken")
            .expect("a next page")
            .to_string();
        assert_eq!(token, format!("{TOKEN_PREFIX}snap-1"));
        let after = token.strip_prefix(TOKEN_PREFIX);
        let second = tier_status_page(&items, after, 2);
        let ids: Vec<String> = set_items(&second, "snapshotTierStatusSet")
            .into_iter()
            .filter_map(|r| top_level_value(&second[r], "snapshotId").map(String::from))
            .collect();
        assert_eq!(ids, ["snap-2", "snap-3"]);
        let last = tier_status_page(&items, Some("snap-3"), 2);
        assert_eq!(set_items(&last, "snapshotTierStatusSet").len(), 1);
        assert_eq!(top_level_value(&last, "nextToken"), None);
        // Exactly a page: no next token.
        assert_eq!(
            top_level_value(&tier_status_page(&items, None, 5), "nextToken"),
            None
        );
        let empty = tier_status_page(&[], None, 5);
        assert!(
            empty.contains("<snapshotTierStatusSet></snapshotTierStatusSet>"),
            "{empty}"
        );
    }
}
