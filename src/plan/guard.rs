//! The delete guard (safety rule 8): a purge that looks like a mistake is
//! refused unless `--force`.

use crate::config::Policy;
use crate::plan::kinds::{Delete, DeleteReason, KeepReason, Kept, Plan};

/// Safety rule 8: a purge that would expire more than half of the job's
/// snapshots in the region, or delete more than `--max-delete` when given,
/// is refused unless `--force`. A healthy purge expires about one snapshot
/// of each volume's retention's worth (one in eight for daily runs kept 7
/// days), whatever the fleet's size; half or more gone at once is the mark
/// of a mistake: a clock far ahead, a retention cut by an order of
/// magnitude. Snapshots in error hold nothing: they neither count towards
/// the half nor are ever held back.
pub(super) fn guard_deletes(plan: &mut Plan, good_backups: usize, policy: &Policy) {
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

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use crate::config::Policy;
    use crate::inventory::{ExistingSnapshot, Inventory, SnapshotState};
    use crate::plan::build;
    use crate::plan::kinds::KeepReason;
    use crate::plan::testing::{
        completed, daily_history, deleted_ids, expired, guarded, now, policy, purge, snap, PURGE,
    };

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
}
