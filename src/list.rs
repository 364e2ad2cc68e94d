//! `ebsnap list`: the job's snapshots by instance and volume, and what the
//! next purge will do with each.
//!
//! The verdicts come from the same pure plan that purge executes, so the list
//! can never disagree with what purge will do. It names the orphans too (the
//! snapshots of a volume that no longer exists, or of an instance no longer
//! selected), with or without `--orphans-after`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use compact_str::CompactString;
use futures_util::future::join_all;
use serde::Serialize;

use crate::aws::RegionFailure;
use crate::config::ListFilter;
use crate::config::{Config, Policy, Steps};
use crate::exit::ExitStatus;
use crate::inventory::{ArchivedBy, ExistingSnapshot, Inventory, SnapshotState, StorageTier};
use crate::plan::{self, DeleteReason, KeepReason, OrphanReason, Verdict, ARCHIVE_RESTORE_HOURS};
use crate::retention::KeptBy;
use crate::values::{format_age, ReasonCode};

/// One snapshot of the job, and what purge will do with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListEntry {
    pub(crate) region: Arc<str>,
    pub(crate) instance_id: Option<Arc<str>>,
    pub(crate) volume_id: Arc<str>,
    pub(crate) device: Option<Arc<str>>,
    pub(crate) snapshot_id: CompactString,
    pub(crate) start_time: DateTime<Utc>,
    #[serde(serialize_with = "crate::values::as_text")]
    pub(crate) state: SnapshotState,
    /// How far along a pending snapshot is, e.g. `42%`.
    pub(crate) progress: Option<Box<str>>,
    pub(crate) size_gib: Option<i32>,
    /// `standard`, or `archive` for a snapshot in the archive tier (it must
    /// come back from the archive, which takes hours, before a restore).
    pub(crate) storage_tier: StorageTier,
    /// For an archived snapshot: how long bringing it back may take, in
    /// hours (EBS User Guide, "Considerations and limitations for archiving
    /// Amazon EBS snapshots": "It can take up to 72 hours to restore an
    /// archived snapshot"); `null` in the standard tier.
    pub(crate) restore_hours_at_most: Option<u32>,
    /// `ebsnap` when ebsnap archived it (or asked EC2 to: it may still be
    /// on its way), `other` when someone else did; `null` otherwise.
    pub(crate) archived_by: Option<ArchivedBy>,
    /// The next run with `--archive-after` sends it to the archive tier.
    pub(crate) archive_next_run: bool,
    /// The plan's verdict, written as `purge` (`delete` at the next purge,
    /// or `keep`), `reason`, `reason_code` (the delete's or the keep's
    /// code) and `expires_at` (when purge will delete a snapshot within
    /// retention).
    #[serde(flatten)]
    pub(crate) verdict: ListVerdict,
    /// `volume_gone` or `instance_not_selected` for a snapshot of an orphan
    /// series; `null` otherwise.
    pub(crate) orphan: Option<OrphanReason>,
}

/// What the next purge does with a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum PurgeAction {
    Keep,
    Delete,
}

/// The plan's verdict on a listed snapshot, and how the JSON writes it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListVerdict(pub(crate) Verdict);

impl ListVerdict {
    pub(crate) fn purge(&self) -> PurgeAction {
        match self.0 {
            Verdict::Keep(_) => PurgeAction::Keep,
            Verdict::Delete(_) => PurgeAction::Delete,
        }
    }

    pub(crate) fn code(&self) -> &'static str {
        match &self.0 {
            Verdict::Keep(reason) => reason.code(),
            Verdict::Delete(reason) => reason.code(),
        }
    }

    /// When purge will delete a snapshot kept within retention.
    pub(crate) fn expires_at(&self) -> Option<DateTime<Utc>> {
        match self.0 {
            Verdict::Keep(KeepReason::WithinRetention { expires_at }) => Some(expires_at),
            _ => None,
        }
    }
}

impl std::fmt::Display for ListVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Verdict::Keep(reason) => reason.fmt(f),
            Verdict::Delete(reason) => write!(f, "{reason}: deleted at the next purge"),
        }
    }
}

impl Serialize for ListVerdict {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("ListVerdict", 4)?;
        fields.serialize_field("purge", &self.purge())?;
        fields.serialize_field("reason", &format_args!("{self}"))?;
        fields.serialize_field("reason_code", self.code())?;
        fields.serialize_field("expires_at", &self.expires_at())?;
        fields.end()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listing {
    pub(crate) job: String,
    pub(crate) regions: Vec<String>,
    pub(crate) snapshots: Vec<ListEntry>,
    /// Regions that could not be read, with the reason.
    pub failed: Vec<RegionFailure>,
}

/// The entries of one region: the purge plan's verdict on every job
/// snapshot of `inventory`, then the `--instance`/`--volume` filters,
/// sorted by instance, volume and newest first.
pub(crate) fn entries(
    region: &str,
    inventory: Inventory,
    policy: &Policy,
    filter: &ListFilter,
    now: DateTime<Utc>,
) -> Vec<ListEntry> {
    // The plan sees every snapshot of the job, so keep-min and the delete
    // guard judge as purge will; the filters apply afterwards.
    // No snapshot is made, so no run id is needed.
    let plan = plan::build(
        inventory,
        policy,
        Steps {
            snapshot: false,
            purge: true,
        },
        "",
        now,
    );
    let shared_region: Arc<str> = region.into();
    let orphans: HashMap<Arc<str>, OrphanReason> = plan
        .orphans
        .iter()
        .map(|o| (Arc::clone(&o.volume_id), o.reason))
        .collect();
    let deletes = plan
        .deletes
        .into_iter()
        .map(|d| (d.snapshot, Verdict::Delete(d.reason)));
    let to_archive: HashSet<CompactString> = plan
        .archives
        .iter()
        .map(|a| a.snapshot.id.clone())
        .collect();
    let kept = plan
        .kept
        .into_iter()
        .map(|k| (k.snapshot, Verdict::Keep(k.reason)));
    let mut entries: Vec<ListEntry> = deletes
        .chain(kept)
        .filter(|(s, _)| filter.volume.as_ref().is_none_or(|v| *s.volume_id == **v))
        .filter(|(s, _)| {
            filter.instance.is_none() || s.instance_id.as_deref() == filter.instance.as_deref()
        })
        .map(|(snapshot, verdict)| {
            let orphan = orphans.get(&snapshot.volume_id).copied();
            let archive_next_run = to_archive.contains(&snapshot.id);
            ListEntry {
                archive_next_run,
                ..entry(&shared_region, snapshot, verdict, orphan)
            }
        })
        .collect();
    entries.sort_by(|a, b| {
        (&a.instance_id, &a.volume_id, b.start_time, &a.snapshot_id).cmp(&(
            &b.instance_id,
            &b.volume_id,
            a.start_time,
            &b.snapshot_id,
        ))
    });
    entries
}

fn entry(
    region: &Arc<str>,
    snapshot: ExistingSnapshot,
    verdict: Verdict,
    orphan: Option<OrphanReason>,
) -> ListEntry {
    let (storage_tier, archived_by) = (snapshot.tier(), snapshot.archived_by());
    ListEntry {
        region: Arc::clone(region),
        instance_id: snapshot.instance_id,
        volume_id: snapshot.volume_id,
        device: snapshot.device,
        snapshot_id: snapshot.id,
        start_time: snapshot.start_time,
        state: snapshot.state,
        progress: snapshot.progress.map(|p| format!("{p}%").into()),
        size_gib: snapshot.size_gib,
        storage_tier,
        restore_hours_at_most: snapshot.archived.then_some(ARCHIVE_RESTORE_HOURS),
        archived_by,
        archive_next_run: false,
        verdict: ListVerdict(verdict),
        orphan,
    }
}

/// Reads the job's snapshots in every region, and what tells their orphans
/// (the tagged instances, which volumes still exist), and judges them.
pub async fn run(config: &Config, filter: &ListFilter, now: DateTime<Utc>) -> Result<Listing> {
    let shared = crate::aws::load_shared_config(&config.aws).await;
    let regions = crate::aws::regions(&config.aws, &shared).await?;
    let policy = &config.policy;
    let results =
        join_all(regions.iter().map(|region| {
            let client = crate::aws::client(&shared, region);
            let reads = crate::discovery::Reads {
                instances: false,
                snapshots: true,
                volume_tags: false,
                orphans: true,
            };
            async move {
                crate::discovery::discover(&client, &policy.selector, &policy.job, reads).await
            }
        }))
        .await;
    let mut listing = Listing {
        job: config.policy.job.clone(),
        regions: regions.clone(),
        snapshots: vec![],
        failed: vec![],
    };
    for (region, result) in regions.iter().zip(results) {
        match result {
            Ok(inventory) => listing
                .snapshots
                .extend(entries(region, inventory, policy, filter, now)),
            Err(err) => listing.failed.push(RegionFailure {
                region: region.clone(),
                reason: format!("{err:#}"),
            }),
        }
    }
    Ok(listing)
}

impl Listing {
    pub fn exit_status(&self) -> ExitStatus {
        match (self.failed.len(), self.regions.len()) {
            (0, _) => ExitStatus::Success,
            (failed, regions) if failed == regions => ExitStatus::NothingAttempted,
            _ => ExitStatus::Failure,
        }
    }

    /// The JSON document as a String, for tests.
    #[cfg(test)]
    pub(crate) fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out)
            .expect("a listing always serializes");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The JSON document, written as it is rendered, never held whole.
    pub fn write_json(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")
    }

    /// A table for people, fitted to `width` columns when given (a terminal),
    /// then a one-line summary.
    pub fn to_text(&self, now: DateTime<Utc>, width: Option<u16>) -> String {
        if self.snapshots.is_empty() {
            return format!("No snapshots of job {} found.\n", self.job);
        }
        let several_regions = self.regions.len() > 1;
        let mut table = Table::new();
        table.load_style(presets::NOTHING);
        table.set_content_arrangement(ContentArrangement::Dynamic);
        if let Some(width) = width {
            table.set_width(width);
        }
        let mut header = vec![
            "INSTANCE", "DEVICE", "VOLUME", "SNAPSHOT", "STARTED", "AGE", "STATE", "SIZE", "PURGE",
        ];
        if several_regions {
            header.insert(0, "REGION");
        }
        table.set_header(header);
        for entry in &self.snapshots {
            let state = match (&entry.progress, entry.state.as_str()) {
                (Some(progress), "pending") => format!("pending {progress}"),
                _ if entry.storage_tier == StorageTier::Archive => format!(
                    "archived (restore up to {}h)",
                    entry.restore_hours_at_most.unwrap_or(ARCHIVE_RESTORE_HOURS)
                ),
                _ => entry.state.to_string(),
            };
            let mut row: Vec<String> = vec![
                entry.instance_id.as_deref().unwrap_or("-").into(),
                entry.device.as_deref().unwrap_or("-").into(),
                entry.volume_id.to_string(),
                entry.snapshot_id.to_string(),
                entry.start_time.format("%Y-%m-%d %H:%M").to_string(),
                format_age(now - entry.start_time),
                state,
                entry
                    .size_gib
                    .map(|gib| format!("{gib} GiB"))
                    .unwrap_or_else(|| "-".into()),
                purge_column(entry),
            ];
            if several_regions {
                row.insert(0, entry.region.to_string());
            }
            table.add_row(row);
        }
        let due = self
            .snapshots
            .iter()
            .filter(|e| e.verdict.purge() == PurgeAction::Delete)
            .count();
        let mut text = format!("{table}\n");
        let orphans = self.orphan_lines(now);
        if !orphans.is_empty() {
            text += "Orphans (nothing backs these volumes up any more):\n";
            for line in &orphans {
                text += &format!("  {line}\n");
            }
        }
        text += &format!(
            "{} snapshot(s) of job {}; {due} due for deletion at the next purge",
            self.snapshots.len(),
            self.job
        );
        if !orphans.is_empty() {
            text += &format!("; {} orphan series", orphans.len());
        }
        text + ".\n"
    }

    /// One line per orphan series shown: its volume, instance, why, its
    /// newest snapshot's age, how many snapshots of what size, and what
    /// purge does with them. The entries are sorted by instance, volume and
    /// newest first, so a series' first entry is its newest.
    fn orphan_lines(&self, now: DateTime<Utc>) -> Vec<String> {
        let mut lines = Vec::new();
        let mut rest = &self.snapshots[..];
        while let Some(newest) = rest.first() {
            let len = rest
                .iter()
                .take_while(|e| (&e.region, &e.volume_id) == (&newest.region, &newest.volume_id))
                .count();
            let (series, after) = rest.split_at(len);
            rest = after;
            let Some(why) = newest.orphan else {
                continue;
            };
            let size = newest
                .size_gib
                .map(|gib| format!(" of {gib} GiB"))
                .unwrap_or_default();
            let deleting = series
                .iter()
                .filter(|e| e.verdict.purge() == PurgeAction::Delete)
                .count();
            let fate = if series
                .iter()
                .any(|e| e.verdict.0 == Verdict::Delete(DeleteReason::Orphaned))
            {
                format!("{deleting} deleted at the next purge (--orphans-after)")
            } else if series
                .iter()
                .any(|e| matches!(e.verdict.0, Verdict::Keep(KeepReason::KeepMin { .. })))
            {
                "its newest kept by --keep-min (see --orphans-after)".to_owned()
            } else {
                format!("{deleting} due for deletion")
            };
            let region = if self.regions.len() > 1 {
                format!(" in {}", newest.region)
            } else {
                String::new()
            };
            lines.push(format!(
                "{} {} of {}{region}: {why}; newest {} is {} old, {} snapshot(s){size}; {fate}",
                newest.volume_id,
                newest.device.as_deref().unwrap_or("-"),
                newest.instance_id.as_deref().unwrap_or("-"),
                newest.snapshot_id,
                format_age(now - newest.start_time),
                series.len(),
            ));
        }
        lines
    }
}

/// The PURGE column: short, so the table fits a terminal.
fn purge_column(entry: &ListEntry) -> String {
    let verdict = purge_verdict(entry);
    if entry.archive_next_run {
        verdict + ", to archive"
    } else {
        verdict
    }
}

fn purge_verdict(entry: &ListEntry) -> String {
    let keep = match &entry.verdict.0 {
        Verdict::Delete(reason) => return format!("delete ({})", reason.code()),
        Verdict::Keep(keep) => keep,
    };
    match keep {
        KeepReason::WithinRetention { expires_at } => {
            format!("keep until {}", expires_at.format("%m-%d %H:%M"))
        }
        KeepReason::KeepMin { .. } if entry.orphan.is_some() => "keep (last good, orphan)".into(),
        KeepReason::KeepMin { .. } => "keep (last good)".into(),
        KeepReason::NotFinished { .. } => "keep (not finished)".into(),
        KeepReason::DeleteGuard => "keep (purge refused)".into(),
        KeepReason::ArchiveMinimum { .. } => "keep (90 days archived)".into(),
        // The calendar rule and its period: `keep (daily 2026-11-30)`.
        KeepReason::Calendar(KeptBy::Period(_)) => format!("keep ({keep})"),
        KeepReason::Calendar(KeptBy::Last(_)) => "keep (keep-last)".into(),
        KeepReason::NotMarked | KeepReason::VolumeFailed | KeepReason::Archived => {
            format!("keep ({})", keep.code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::policy;
    use crate::inventory::testing::job_snapshot;
    use crate::inventory::SnapshotState;
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn snap(
        id: &str,
        instance: &str,
        volume: &str,
        days: i64,
        state: SnapshotState,
    ) -> ExistingSnapshot {
        ExistingSnapshot {
            state,
            instance_id: Some(instance.into()),
            size_gib: Some(100),
            ..job_snapshot(id, volume, now() - TimeDelta::days(days))
        }
    }

    fn fleet() -> Vec<ExistingSnapshot> {
        let mut pending = snap("b-pending", "i-b", "vol-b", 0, SnapshotState::Pending);
        pending.progress = Some(42);
        vec![
            snap("a-old", "i-a", "vol-a", 9, SnapshotState::Completed),
            snap("a-mid", "i-a", "vol-a", 3, SnapshotState::Completed),
            snap("a-new", "i-a", "vol-a", 1, SnapshotState::Completed),
            snap("a-older", "i-a", "vol-a", 10, SnapshotState::Completed),
            snap("b-last", "i-b", "vol-b", 20, SnapshotState::Completed),
            pending,
        ]
    }

    fn inventory(snapshots: Vec<ExistingSnapshot>) -> Inventory {
        Inventory {
            snapshots,
            ..Inventory::default()
        }
    }

    fn no_filter() -> ListFilter {
        ListFilter {
            instance: None,
            volume: None,
        }
    }

    #[test]
    fn every_snapshot_gets_purges_verdict_sorted_newest_first_per_volume() {
        let entries = entries(
            "us-east-1",
            inventory(fleet()),
            &policy(),
            &no_filter(),
            now(),
        );
        let view: Vec<_> = entries
            .iter()
            .map(|e| (&*e.snapshot_id, e.verdict.purge(), e.verdict.code()))
            .collect();
        assert_eq!(
            view,
            [
                ("a-new", PurgeAction::Keep, "within_retention"),
                ("a-mid", PurgeAction::Keep, "within_retention"),
                ("a-old", PurgeAction::Delete, "expired"),
                ("a-older", PurgeAction::Delete, "expired"),
                ("b-pending", PurgeAction::Keep, "pending"),
                ("b-last", PurgeAction::Keep, "keep_min"),
            ]
        );
        assert_eq!(
            entries[0].verdict.expires_at(),
            Some(now() + TimeDelta::days(6))
        );
    }

    #[test]
    fn the_tier_who_archived_and_the_restore_time_are_shown() {
        let policy = Policy {
            retention: None,
            keep: crate::config::KeepRules {
                monthly: 12,
                ..Default::default()
            },
            archive_after: Some(TimeDelta::days(30)),
            ..policy()
        };
        let snapshots = vec![
            snap("newest", "i-a", "vol-a", 1, SnapshotState::Completed),
            snap("due", "i-a", "vol-a", 40, SnapshotState::Completed),
            ExistingSnapshot {
                archived: true,
                archived_by_ebsnap: Some(now() - TimeDelta::days(50)),
                ..snap("ours", "i-a", "vol-a", 70, SnapshotState::Completed)
            },
            ExistingSnapshot {
                archived: true,
                ..snap("theirs", "i-a", "vol-a", 400, SnapshotState::Completed)
            },
        ];
        let listing = Listing {
            job: "default".into(),
            regions: vec!["us-east-1".into()],
            snapshots: entries(
                "us-east-1",
                inventory(snapshots),
                &policy,
                &no_filter(),
                now(),
            ),
            failed: vec![],
        };
        let view: Vec<_> = listing
            .snapshots
            .iter()
            .map(|e| {
                (
                    &*e.snapshot_id,
                    e.storage_tier,
                    e.archived_by,
                    e.restore_hours_at_most,
                    e.archive_next_run,
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("newest", StorageTier::Standard, None, None, false),
                ("due", StorageTier::Standard, None, None, true),
                (
                    "ours",
                    StorageTier::Archive,
                    Some(ArchivedBy::Ebsnap),
                    Some(72),
                    false
                ),
                (
                    "theirs",
                    StorageTier::Archive,
                    Some(ArchivedBy::Other),
                    Some(72),
                    false
                ),
            ]
        );
        let text = listing.to_text(now(), None);
        assert!(text.contains("archived (restore up to 72h)"), "{text}");
        assert!(
            text.contains("keep (monthly 2026-10), to archive"),
            "{text}"
        );
        let json = listing.to_json();
        assert!(json.contains("\"archived_by\": \"ebsnap\""), "{json}");
        assert!(json.contains("\"restore_hours_at_most\": 72"), "{json}");
    }

    #[test]
    fn filters_narrow_the_list_after_judging_the_whole_job() {
        let by_instance = ListFilter {
            instance: Some("i-b".into()),
            volume: None,
        };
        let entries = entries(
            "us-east-1",
            inventory(fleet()),
            &policy(),
            &by_instance,
            now(),
        );
        assert_eq!(entries.len(), 2);
        // b-last is kept as vol-b's last good backup, whatever the filter.
        assert_eq!(
            entries[1].verdict.0,
            Verdict::Keep(KeepReason::KeepMin { keep_min: 1 })
        );
        let by_volume = ListFilter {
            instance: None,
            volume: Some("vol-a".into()),
        };
        assert_eq!(
            super::entries(
                "us-east-1",
                inventory(fleet()),
                &policy(),
                &by_volume,
                now()
            )
            .len(),
            4
        );
    }

    fn listing() -> Listing {
        Listing {
            job: "default".into(),
            regions: vec!["us-east-1".into()],
            snapshots: entries(
                "us-east-1",
                inventory(fleet()),
                &policy(),
                &no_filter(),
                now(),
            ),
            failed: vec![],
        }
    }

    #[test]
    fn the_table_shows_progress_verdicts_and_a_summary() {
        let text = listing().to_text(now(), None);
        let header = text.lines().next().unwrap();
        for column in [
            "INSTANCE", "DEVICE", "VOLUME", "SNAPSHOT", "STARTED", "AGE", "STATE", "SIZE", "PURGE",
        ] {
            assert!(header.contains(column), "{header}");
        }
        assert!(text.contains("pending 42%"), "{text}");
        assert!(text.contains("keep until 11-30 12:00"), "{text}");
        assert!(text.contains("delete (expired)"), "{text}");
        assert!(text.contains("keep (last good)"), "{text}");
        assert!(text.contains("100 GiB"), "{text}");
        assert!(
            text.ends_with("6 snapshot(s) of job default; 2 due for deletion at the next purge.\n"),
            "{text}"
        );
    }

    #[test]
    fn the_table_fits_a_narrow_terminal() {
        let text = listing().to_text(now(), Some(60));
        for line in text.lines().filter(|l| !l.contains("snapshot(s) of job")) {
            assert!(
                console::measure_text_width(line) <= 60,
                "{} wide: {line:?}\n{text}",
                line.len()
            );
        }
        assert!(
            text.contains("a-new"),
            "every snapshot still shown:\n{text}"
        );
    }

    #[test]
    fn an_empty_job_says_so_and_failed_regions_set_the_exit_code() {
        let mut empty = Listing {
            snapshots: vec![],
            ..listing()
        };
        assert_eq!(
            empty.to_text(now(), None),
            "No snapshots of job default found.\n"
        );
        assert_eq!(empty.exit_status(), ExitStatus::Success);
        empty.failed.push(RegionFailure {
            region: "us-east-1".into(),
            reason: "down".into(),
        });
        assert_eq!(empty.exit_status(), ExitStatus::NothingAttempted);
        let json: serde_json::Value = serde_json::from_str(&listing().to_json()).unwrap();
        assert_eq!(json["snapshots"][2]["purge"], "delete");
        assert_eq!(json["snapshots"][4]["progress"], "42%");
    }

    #[test]
    fn orphans_are_marked_in_json_and_named_with_age_and_size_in_the_table() {
        use crate::inventory::{AttachedVolume, Instance};
        let mut snapshots = fleet();
        snapshots.push(snap(
            "gone-1",
            "i-a",
            "vol-gone",
            12,
            SnapshotState::Completed,
        ));
        snapshots.push(snap(
            "gone-2",
            "i-a",
            "vol-gone",
            15,
            SnapshotState::Completed,
        ));
        let attached = |id: &str, volumes: &[&str]| Instance {
            id: id.into(),
            name: None,
            selection_value: "true".into(),
            volumes: volumes
                .iter()
                .map(|v| AttachedVolume {
                    volume_id: (*v).into(),
                    device: "/dev/sdf".into(),
                    is_root: false,
                })
                .collect(),
            tags: vec![],
        };
        let inventory = |snapshots| Inventory {
            // i-b is no longer tagged: vol-b still exists, attached to it.
            instances: vec![attached("i-a", &["vol-a"])],
            snapshots,
            existing_volume_ids: Some(["vol-a", "vol-b"].map(String::from).into()),
            ..Inventory::default()
        };
        let entries = entries(
            "us-east-1",
            inventory(snapshots.clone()),
            &policy(),
            &no_filter(),
            now(),
        );
        let view: Vec<_> = entries
            .iter()
            .map(|e| {
                (
                    &*e.snapshot_id,
                    e.verdict.code(),
                    e.orphan.as_ref().map(ReasonCode::code),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("a-new", "within_retention", None),
                ("a-mid", "within_retention", None),
                ("a-old", "expired", None),
                ("a-older", "expired", None),
                ("gone-1", "keep_min", Some("volume_gone")),
                ("gone-2", "expired", Some("volume_gone")),
                ("b-pending", "pending", Some("instance_not_selected")),
                ("b-last", "keep_min", Some("instance_not_selected")),
            ]
        );
        let listing = Listing {
            job: "default".into(),
            regions: vec!["us-east-1".into()],
            snapshots: entries,
            failed: vec![],
        };
        let json: serde_json::Value = serde_json::from_str(&listing.to_json()).unwrap();
        assert_eq!(json["snapshots"][0]["orphan"], serde_json::Value::Null);
        assert_eq!(json["snapshots"][4]["orphan"], "volume_gone");
        assert_eq!(json["snapshots"][7]["orphan"], "instance_not_selected");
        let text = listing.to_text(now(), None);
        assert!(text.contains("keep (last good, orphan)"), "{text}");
        assert!(
            text.contains(
                "  vol-gone /dev/sdf of i-a: its volume no longer exists; newest gone-1 is 12d old, \
                 2 snapshot(s) of 100 GiB; its newest kept by --keep-min (see --orphans-after)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  vol-b /dev/sdf of i-b: its instance is no longer selected; newest b-pending is 0m old"),
            "{text}"
        );
        assert!(
            text.ends_with("8 snapshot(s) of job default; 3 due for deletion at the next purge; 2 orphan series.\n"),
            "{text}"
        );

        // With --orphans-after, list says what purge will delete.
        let entries = super::entries(
            "us-east-1",
            inventory(snapshots),
            &Policy {
                orphans_after: Some(TimeDelta::days(10)),
                force: true,
                ..policy()
            },
            &no_filter(),
            now(),
        );
        let gone: Vec<_> = entries
            .iter()
            .filter(|e| &*e.volume_id == "vol-gone")
            .map(|e| &e.verdict.0)
            .collect();
        assert_eq!(
            gone,
            [&Verdict::Delete(DeleteReason::Orphaned); 2],
            "the whole orphan series goes"
        );
        let listing = Listing {
            snapshots: entries,
            ..listing
        };
        let text = listing.to_text(now(), None);
        assert!(text.contains("delete (orphaned)"), "{text}");
        assert!(
            text.contains(
                "2 snapshot(s) of 100 GiB; 2 deleted at the next purge (--orphans-after)"
            ),
            "{text}"
        );
    }
}
