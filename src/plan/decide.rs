//! The purge's decision: each of the job's snapshots kept or deleted, and
//! why, per volume, newest first (retention, the calendar, `--keep-min`,
//! duplicates of a run, orphans past `--orphans-after`).

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Policy;
use crate::inventory::{is_no_volume, ExistingSnapshot, SnapshotState};
use crate::plan::archive::{archive_due, ARCHIVE_MINIMUM};
use crate::plan::kinds::{Delete, DeleteReason, KeepReason, Kept, Plan, Verdict};
use crate::retention::{Calendar, Judgement};

/// How many of `snapshots` are the job's good backups (completed, in the
/// standard tier), and those ebsnap archived itself: what retention can
/// delete, and so what the delete guard weighs a purge against. Those
/// archived by others, which pile up outside retention, must not make a
/// mistaken purge look small.
pub(super) fn good_backup_count(snapshots: &[ExistingSnapshot], policy: &Policy) -> usize {
    snapshots
        .iter()
        .filter(|s| {
            let ebsnaps_archive = s.archived && s.archived_by_ebsnap.is_some();
            s.is_marked_for(&policy.job) && (s.is_good_backup() || ebsnaps_archive)
        })
        .count()
}

/// Which volume a snapshot backs up, for keep-min and retention: its own.
pub(super) fn by_volume(snapshot: &ExistingSnapshot) -> (&str, &str) {
    (&snapshot.volume_id, "")
}

/// Which volume a disaster-recovery copy backs up: its instance and device.
pub(super) fn by_source_volume(snapshot: &ExistingSnapshot) -> (&str, &str) {
    (
        snapshot.instance_id.as_deref().unwrap_or_default(),
        snapshot.device.as_deref().unwrap_or_default(),
    )
}

/// Judges each snapshot, moving it into the plan: kept (and why) or
/// deleted. `volume_of` says which volume a snapshot backs up, for keep-min;
/// `orphans_due` names the volumes whose whole series goes
/// (`--orphans-after`). Unmarked ones come first, then each volume's,
/// newest first.
pub(super) fn plan_purge(
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

#[cfg(test)]
mod tests {
    use super::SHRINK_STEP;
    use chrono::{TimeDelta, TimeZone, Utc};

    use crate::config::Policy;
    use crate::inventory::testing::job_snapshot;
    use crate::inventory::{ExistingSnapshot, SnapshotState};
    use crate::plan::describe_policy;
    use crate::plan::kinds::{DeleteReason, KeepReason};
    use crate::plan::testing::{
        calendar, completed, dailies, deleted_ids, guarded, kept_ids, kept_reason, policy, purge,
        snap,
    };
    use crate::values::ReasonCode;

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
}
