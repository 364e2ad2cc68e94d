//! ebsnap's archive tier end to end (`--archive-after`, the purge of what
//! ebsnap archived, `restore --from-archive`), through the EC2 twin's
//! archive tier (`FaultPlan::archive_tier`) under the IAM policy
//! `ebsnap iam-policy` prints, unwidened. Every test asserts on the
//! emulator's state and the twin's record, not only on the report.

use super::real_ec2::Ctx2;
use super::*;

const ARCHIVAL: Duration = Duration::from_secs(2);
const RESTORE: Duration = Duration::from_secs(2);

fn archive_twin() -> FaultPlan {
    FaultPlan::none()
        .under_printed_policy()
        .archive_tier(ARCHIVAL, RESTORE)
}

/// One instance with one data volume, and job snapshots of it 1, 40, 70
/// and 400 days old (December, October, September and October a year ago,
/// counted from today, 2026-12-02 in the brief; the ages hold any day).
fn monthly_history(emu: &Emulator) -> (String, Vec<String>) {
    let app = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "app")]);
    let volume = emu.attach_new_volume(&app, "/dev/sdf");
    let ids = [24, 40 * 24, 70 * 24, 400 * 24]
        .iter()
        .map(|hours| {
            let run_id = seeded_run_id(*hours);
            emu.create_snapshot_aged(
                &volume,
                *hours,
                &job_tags("default", &app, "/dev/sdf", &run_id),
            )
        })
        .collect();
    (volume, ids)
}

fn tag_of(emu: &Emulator, id: &str, key: &str) -> Option<String> {
    emu.snapshot_state()
        .get(id)
        .and_then(|s| s.tag(key).map(str::to_owned))
}

#[test]
fn archive_after_moves_what_only_the_monthly_rule_keeps_once_and_purge_waits_out_its_90_days() {
    let emu = Emulator::start();
    let (_, ids) = monthly_history(&emu);
    let (newest, older) = (&ids[0], &ids[1..]);
    let proxy = emu.proxy(archive_twin());
    let before = emu.snapshot_state();
    let job = [
        "purge",
        "--keep-monthly",
        "12",
        "--archive-after",
        "30d",
        "--output",
        "json",
    ];

    let run = emu.ebsnap_cmd(&job).via(&proxy).run();
    let ctx = Ctx2(&proxy, &run);
    proxy.assert_no_denials(&ctx);
    run.assert_success();
    // Nothing deleted; the three older ones (each the newest of its month,
    // kept for months more) sent to the archive, the newest not.
    assert!(
        before.diff(&emu.snapshot_state()).removed.is_empty(),
        "{ctx}"
    );
    let archived: BTreeSet<String> = entries(&run.json(), "archived", &ctx)
        .iter()
        .filter_map(|e| str_field(e, "snapshot_id").map(str::to_owned))
        .collect();
    assert_eq!(archived, older.iter().cloned().collect(), "{ctx}");
    assert_eq!(proxy.count("ModifySnapshotTier"), 3, "{ctx}");
    for id in older {
        let at = tag_of(&emu, id, "ebsnap:archived-at");
        assert!(
            at.as_deref()
                .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok()),
            "{id}: {at:?}\n{ctx}"
        );
    }
    assert_eq!(tag_of(&emu, newest, "ebsnap:archived-at"), None, "{ctx}");

    // Once archived: list shows the tier; the next run asks nothing again.
    // The archivals began before the run ended: on the twin's clock they
    // are over `ARCHIVAL` later.
    std::thread::sleep(scaled(ARCHIVAL));
    let list = emu
        .ebsnap_cmd(&["list", "--keep-monthly", "12", "--output", "json"])
        .via(&proxy)
        .run();
    list.assert_success();
    for entry in entries(&list.json(), "snapshots", &list) {
        let id = str_field(entry, "snapshot_id").unwrap();
        let tier = str_field(entry, "storage_tier");
        if id == newest {
            assert_eq!(tier, Some("standard"), "{list}");
        } else {
            assert_eq!(tier, Some("archive"), "{id}\n{list}");
            assert_eq!(str_field(entry, "archived_by"), Some("ebsnap"), "{list}");
            assert_eq!(entry["restore_hours_at_most"], 72, "{list}");
        }
    }
    let again = emu.ebsnap_cmd(&job).via(&proxy).run();
    again.assert_success();
    assert_eq!(
        proxy.count("ModifySnapshotTier"),
        3,
        "{}",
        Ctx2(&proxy, &again)
    );

    // Rules that no longer keep them: still kept, out of their 90 days.
    let shorter = emu
        .ebsnap_cmd(&["purge", "--keep-monthly", "1", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx2(&proxy, &shorter);
    proxy.assert_no_denials(&ctx);
    shorter.assert_success();
    assert!(
        before.diff(&emu.snapshot_state()).removed.is_empty(),
        "{ctx}"
    );
    for entry in entries(&shorter.json(), "kept", &ctx) {
        if str_field(entry, "snapshot_id") != Some(newest.as_str()) {
            assert_eq!(
                str_field(entry, "reason_code"),
                Some("archive_minimum"),
                "{ctx}"
            );
        }
    }
    assert!(proxy.early_archive_deletes().is_empty(), "{ctx}");
}

#[test]
fn what_ebsnap_archived_100_days_ago_goes_when_its_rules_let_it_go_and_others_archives_stay() {
    let emu = Emulator::start();
    let (_, ids) = monthly_history(&emu);
    let long_ago = chrono::Utc::now() - chrono::TimeDelta::days(100);
    let stamp = long_ago.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // ebsnap archived the 400-day-old one 100 days ago; someone else the
    // 70-day-old one.
    emu.create_tags(&ids[3], &[("ebsnap:archived-at", &stamp)]);
    let proxy = emu.proxy(
        archive_twin()
            .archived_since(&ids[3], long_ago)
            .archived_since(&ids[2], long_ago),
    );
    let before = emu.snapshot_state();

    // --keep-monthly 2 keeps December and October (September's, archived
    // by someone else, fills no month): not the 400-day-old one any more.
    let run = emu
        .ebsnap_cmd(&["purge", "--keep-monthly", "2", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx2(&proxy, &run);
    proxy.assert_no_denials(&ctx);
    run.assert_success();
    let removed = before.diff(&emu.snapshot_state()).removed_ids();
    assert_eq!(removed, BTreeSet::from([ids[3].clone()]), "{ctx}");
    assert!(proxy.early_archive_deletes().is_empty(), "{ctx}");
    // September's, archived by someone else, is kept whatever the rules.
    let kept: Vec<(String, String)> = entries(&run.json(), "kept", &ctx)
        .iter()
        .map(|e| {
            (
                str_field(e, "snapshot_id").unwrap().to_owned(),
                str_field(e, "reason_code").unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        kept.contains(&(ids[2].clone(), "archived".to_owned())),
        "{kept:?}\n{ctx}"
    );
    assert_eq!(proxy.count("DescribeSnapshotTierStatus"), 1, "{ctx}");
}

#[test]
fn restore_from_archive_brings_the_snapshot_back_then_restores_it() {
    let emu = Emulator::start();
    let (_, ids) = monthly_history(&emu);
    let archived = &ids[2];
    let proxy = emu.proxy(archive_twin().archived(archived));
    let before = emu.world_state();

    let refused = emu
        .ebsnap_cmd(&["restore", "--snapshot", archived])
        .via(&proxy)
        .run();
    assert_eq!(refused.code, 2, "{refused}");
    assert!(refused.stderr.contains("add --from-archive"), "{refused}");
    assert_world_unchanged(&before, &emu.world_state(), &refused);

    let dry = emu
        .ebsnap_cmd(&["restore", "--snapshot", archived, "--from-archive", "-n"])
        .via(&proxy)
        .run();
    dry.assert_success();
    assert!(
        dry.stdout
            .contains("back from the archive tier (permitted)"),
        "{dry}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &dry);
    assert_eq!(proxy.count("CreateVolume"), 0, "{}", proxy.log());

    let restore = emu
        .ebsnap_cmd(&[
            "restore",
            "--snapshot",
            archived,
            "--from-archive",
            "--output",
            "json",
        ])
        .via(&proxy)
        .run();
    let ctx = Ctx2(&proxy, &restore);
    proxy.assert_no_denials(&ctx);
    restore.assert_success();
    assert!(
        restore.stderr.contains("back from the archive tier"),
        "{ctx}"
    );
    let doc = restore.json();
    assert_eq!(
        doc["brought_back_from_archive"][0],
        archived.as_str(),
        "{ctx}"
    );
    let restored = entries(&doc, "restored", &ctx);
    assert_eq!(restored.len(), 1, "{ctx}");
    assert!(str_field(&restored[0], "volume_id").is_some(), "{ctx}");
    // One temporary restore, by the snapshot's id.
    let asks: Vec<ProxyRecord> = proxy
        .records()
        .into_iter()
        .filter(|r| r.action == "RestoreSnapshotTier" && !r.dry_run)
        .collect();
    assert_eq!(asks.len(), 1, "{ctx}");
}

#[test]
fn archive_after_without_a_long_term_rule_is_refused_before_any_call() {
    let emu = Emulator::start();
    let proxy = emu.proxy(archive_twin());
    for args in [
        &["run", "--archive-after", "30d"][..],
        &["run", "--keep-daily", "7", "--archive-after", "30d"],
        &["run", "--keep-monthly", "12", "--archive-after", "0d"],
        &["run", "--keep-monthly", "12", "--archive-after", "soon"],
    ] {
        let run = emu.ebsnap_cmd(args).via(&proxy).run();
        assert_eq!(run.code, 2, "{args:?}\n{run}");
        assert_eq!(run.stderr.trim().lines().count(), 1, "{args:?}\n{run}");
        assert!(run.stderr.contains("--archive-after"), "{args:?}\n{run}");
    }
    assert!(proxy.records().is_empty(), "{}", proxy.log());
}
