//! The purge of the disaster-recovery copies one source region keeps in
//! another (`--copy-to`), under the same rules as the source's own.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Policy;
use crate::inventory::ExistingSnapshot;
use crate::plan::decide::{by_source_volume, good_backup_count, plan_purge};
use crate::plan::guard::guard_deletes;
use crate::plan::kinds::{Delete, KeepReason, Kept, Plan};

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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::build_copy_purge;
    use chrono::TimeDelta;

    use crate::plan::kinds::KeepReason;
    use crate::plan::testing::{
        completed, copy, deleted_ids, guarded, kept_reason, now, policy, purge,
    };

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
}
