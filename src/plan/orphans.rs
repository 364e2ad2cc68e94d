//! Orphan series: a volume's snapshots of the job that nothing backs up
//! any more (its volume gone, or its instance no longer selected).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::config::Policy;
use crate::inventory::{is_no_volume, ExistingSnapshot, Inventory};
use crate::plan::kinds::{Orphan, OrphanReason};
use crate::plan::select::is_selected;

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

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use crate::config::Policy;
    use crate::inventory::{ExistingSnapshot, Inventory, SnapshotState};
    use crate::plan::kinds::{DeleteReason, KeepReason};
    use crate::plan::testing::{
        completed, deleted_ids, kept_reason, now, of_instance, orphan_codes, orphan_fleet,
        orphans_after, policy, snap, PURGE,
    };
    use crate::plan::{build, describe_policy};
    use crate::values::ReasonCode;

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
