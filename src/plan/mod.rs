//! All of ebsnap's judgement: which volumes to snapshot, which snapshots to
//! delete, and why everything else is left alone.
//!
//! A pure function of (inventory, policy, steps, run id, now). A dry run
//! prints the plan; a real run executes it, sending the requests the plan
//! finished. Nothing here does I/O, so every safety rule of
//! docs/reference/safety.md is unit-tested with a fixed clock, beside the code that
//! keeps it.
//!
//! By job, from the bottom up:
//! - `tags`: which source tags are copied, and what fits in EC2's 50;
//! - `requests`: the creates and sets, their descriptions and tags
//!   finished;
//! - `kinds`: the plan and its verdicts, each reason with its text and code;
//! - `usage`: what is refused before any call (tags that cannot fit,
//!   `--archive-after` without a rule to move);
//! - `select`: which instances and volumes are snapshotted, and why not;
//! - `archive`: what moves to the archive tier;
//! - `guard`: the delete guard (safety rule 8);
//! - `orphans`: the series nothing backs up any more;
//! - `decide`: each snapshot kept or deleted, and why;
//! - `copies`: the purge of the disaster-recovery copies;
//! - here: `build`, which runs them for one region, the run id and the
//!   policy in words.

mod archive;
mod copies;
mod decide;
mod guard;
mod kinds;
mod orphans;
mod requests;
mod select;
mod tags;
mod usage;

pub(crate) use archive::ARCHIVE_RESTORE_HOURS;
pub(crate) use copies::build_copy_purge;
pub(crate) use kinds::{
    Archive, Delete, DeleteReason, InstanceSkip, KeepReason, Kept, OrphanReason, Plan, SkipReason,
    Verdict, VOLUME_FAILED, VOLUME_FAILED_TEXT,
};
#[cfg(test)]
pub(crate) use kinds::{NotSelected, SkippedInstance};
pub(crate) use orphans::orphans;
#[cfg(test)]
pub(crate) use requests::RunTags;
pub(crate) use requests::{Create, SnapshotSet};
pub(crate) use select::{is_selected, left_out_on_purpose};
pub(crate) use tags::fit_tags;
pub(crate) use usage::{check_archive_after, check_user_tags};

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::{Policy, Steps};
use crate::inventory::Inventory;
use crate::plan::decide::{by_volume, good_backup_count, plan_purge};
use crate::plan::guard::guard_deletes;
use crate::plan::select::{plan_creates, recent_snapshots};
use crate::values::format_duration;

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
    use super::{build, run_id};
    use chrono::TimeDelta;

    use crate::inventory::Inventory;
    use crate::plan::testing::{completed, deleted_ids, instance, now, policy, PURGE, SNAPSHOT};
    use crate::values::format_age;

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
}

#[cfg(test)]
pub(crate) mod testing {
    //! What the plan's tests share: a fixed clock, policies, snapshots,
    //! instances and a few ways to read a plan.

    use chrono::{DateTime, TimeDelta, TimeZone, Utc};

    use crate::config::{Policy, Steps};
    use crate::inventory::testing::job_snapshot;
    use crate::inventory::{AttachedVolume, ExistingSnapshot, Instance, Inventory, SnapshotState};
    use crate::plan::build;
    use crate::plan::kinds::{KeepReason, Plan};
    use crate::values::ReasonCode;

    pub(crate) fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    pub(crate) fn policy() -> Policy {
        // The small fixtures here would trip the delete guard; its own
        // tests turn it back on.
        Policy {
            force: true,
            ..crate::config::testing::policy()
        }
    }

    pub(crate) fn guarded() -> Policy {
        Policy {
            force: false,
            ..policy()
        }
    }

    pub(crate) const PURGE: Steps = Steps {
        snapshot: false,
        purge: true,
    };

    pub(crate) const SNAPSHOT: Steps = Steps {
        snapshot: true,
        purge: false,
    };

    pub(crate) fn snap(
        id: &str,
        volume: &str,
        age: TimeDelta,
        state: SnapshotState,
    ) -> ExistingSnapshot {
        ExistingSnapshot {
            state,
            device: Some("/dev/xvda".into()),
            ..job_snapshot(id, volume, now() - age)
        }
    }

    pub(crate) fn completed(id: &str, volume: &str, age: TimeDelta) -> ExistingSnapshot {
        snap(id, volume, age, SnapshotState::Completed)
    }

    pub(crate) fn instance(id: &str, value: &str, volumes: &[&str]) -> Instance {
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

    pub(crate) fn purge(snapshots: Vec<ExistingSnapshot>, policy: &Policy) -> Plan {
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

    pub(crate) fn deleted_ids(plan: &Plan) -> Vec<&str> {
        plan.deletes.iter().map(|d| &*d.snapshot.id).collect()
    }

    pub(crate) fn kept_reason<'a>(plan: &'a Plan, id: &str) -> &'a KeepReason {
        &plan
            .kept
            .iter()
            .find(|k| *k.snapshot.id == *id)
            .expect(id)
            .reason
    }

    /// A disaster-recovery copy from us-east-1 of `device` on i-1. Like real
    /// EC2's copies, it names no volume of its own.
    pub(crate) fn copy(id: &str, device: &str, age: TimeDelta) -> ExistingSnapshot {
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

    pub(crate) fn expired(n: usize, volume: &str) -> Vec<ExistingSnapshot> {
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

    /// Daily runs at 02:00 for `days` days on `volumes` volumes, as the
    /// job's snapshots would stand just before the run of `now()`.
    pub(crate) fn daily_history(volumes: usize, days: i64) -> Vec<ExistingSnapshot> {
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

    pub(crate) fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // -- calendar retention ---------------------------------------------

    /// A daily backup of `vol-1` at 02:00 UTC for `days` days, the newest
    /// today (`now()` is 2026-11-24 12:00), named by date.
    pub(crate) fn dailies(days: i64) -> Vec<ExistingSnapshot> {
        (0..days)
            .map(|back| {
                let start =
                    Utc.with_ymd_and_hms(2026, 11, 24, 2, 0, 0).unwrap() - TimeDelta::days(back);
                job_snapshot(&start.format("%Y-%m-%d").to_string(), "vol-1", start)
            })
            .collect()
    }

    pub(crate) fn calendar(f: impl FnOnce(&mut crate::config::KeepRules)) -> Policy {
        let mut keep = crate::config::KeepRules::default();
        f(&mut keep);
        Policy {
            retention: None,
            keep,
            ..policy()
        }
    }

    pub(crate) fn kept_ids(plan: &Plan) -> Vec<&str> {
        let mut ids: Vec<&str> = plan.kept.iter().map(|k| &*k.snapshot.id).collect();
        ids.sort_unstable();
        ids.reverse();
        ids
    }

    // -- the archive tier ------------------------------------------------

    pub(crate) fn year_policy(archive_after: Option<TimeDelta>) -> Policy {
        Policy {
            archive_after,
            ..calendar(|k| {
                k.daily = 7;
                k.weekly = 5;
                k.monthly = 12;
            })
        }
    }

    pub(crate) fn archived_labels(plan: &Plan) -> Vec<String> {
        plan.archives
            .iter()
            .map(|a| format!("{} {}", a.snapshot.id, KeepReason::Calendar(a.kept_by)))
            .collect()
    }

    // Orphans (issue 13): the snapshots of a volume that no longer exists,
    // or of an instance no longer selected.

    pub(crate) fn of_instance(instance: &str, snapshot: ExistingSnapshot) -> ExistingSnapshot {
        ExistingSnapshot {
            instance_id: Some(instance.into()),
            ..snapshot
        }
    }

    /// i-1 (selected, stopped or running alike: discovery lists both) has
    /// vol-a attached; i-off opts out and has vol-off attached; vol-gone no
    /// longer exists; vol-detached exists, attached to nothing.
    pub(crate) fn orphan_fleet(snapshots: Vec<ExistingSnapshot>) -> Inventory {
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

    pub(crate) fn orphans_after(days: i64) -> Policy {
        Policy {
            orphans_after: Some(TimeDelta::days(days)),
            ..policy()
        }
    }

    pub(crate) fn orphan_codes(plan: &Plan) -> Vec<(&str, &str)> {
        plan.orphans
            .iter()
            .map(|o| (&*o.volume_id, o.reason.code()))
            .collect()
    }
}
