//! `--archive-after`: which snapshots the calendar keeps long enough to
//! move to the archive tier, and EC2's archive periods.

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::Policy;
use crate::inventory::ExistingSnapshot;
use crate::plan::kinds::Archive;
use crate::retention::{Judgement, KeptBy};

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

/// Whether a snapshot the calendar keeps moves to the archive tier now
/// (`--archive-after`), and if so the earliest its rules could let it go.
/// Only a good backup in the standard tier that ebsnap never asked to
/// archive before, that only the monthly or yearly rules keep (not
/// `--keep-within`, which returns before the calendar does), older than
/// `--archive-after`, with a newer good backup of its volume and outside
/// the `--keep-min` floor, and that those rules keep for 90 days more at
/// least.
pub(super) fn archive_due(
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use chrono::{TimeDelta, TimeZone, Utc};

    use crate::config::Policy;
    use crate::inventory::{ExistingSnapshot, Inventory};
    use crate::plan::build;
    use crate::plan::copies::build_copy_purge;
    use crate::plan::kinds::{DeleteReason, KeepReason};
    use crate::plan::testing::{
        archived_labels, calendar, completed, dailies, deleted_ids, kept_reason, now, purge,
        year_policy, PURGE,
    };
    use crate::values::ReasonCode;

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
}
