//! End-to-end tests: the real `ebsnap` binary against an EC2 emulator (moto) on
//! 127.0.0.1, one emulator per test. Every test asserts on the emulator's state
//! after the run, not only on what ebsnap printed.
//!
//! Run with `bash tests/run-all.sh` (installs moto and faketime), or, once they
//! are installed, `. tests/install-deps.sh && cargo test --test it e2e::`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::support::ages::*;
use crate::support::*;
use serde_json::Value;

/// The standard fleet: the shared one (`crate::support::Fleet`: web, db, off and the
/// orphan volume) with three more instances.
///
/// | instance | state | Scheduled-Snapshots | volumes |
/// |---|---|---|---|
/// | web   | running    | true  | /dev/sda1, /dev/sdf, /dev/sdg |
/// | db    | stopped    | Yes   | /dev/sda1, /dev/sdf (no Name tag) |
/// | off   | running    | false | /dev/sda1, /dev/sdf |
/// | plain | running    | (none)| /dev/sda1, /dev/sdf |
/// | bare  | running    | (none, no tags at all) | /dev/sda1 |
/// | gone  | terminated | true  | (none left) |
///
/// plus an "orphan" volume, deleted, whose job snapshots (made by gone) remain.
/// Derefs to the shared fleet, so tests name its instances, volumes and
/// seeded snapshots directly (`fleet.web`, `fleet.expired_default()`).
struct Fleet {
    shared: crate::support::Fleet,
    plain: String,
    bare: String,
    gone: String,
    plain_root: String,
    plain_sdf: String,
    bare_root: String,
}

impl std::ops::Deref for Fleet {
    type Target = crate::support::Fleet;

    fn deref(&self) -> &crate::support::Fleet {
        &self.shared
    }
}

impl std::ops::DerefMut for Fleet {
    fn deref_mut(&mut self) -> &mut crate::support::Fleet {
        &mut self.shared
    }
}

impl Fleet {
    fn seed(emu: &Emulator) -> Fleet {
        let gone = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "gone")]);
        let shared = crate::support::Fleet::seed_with(emu, &[("Role", "database")], Some(&gone));
        let plain = emu.launch_instance(&[("Name", "plain")]);
        let bare = emu.launch_instance(&[]);
        let plain_root = emu.root_volume(&plain).1;
        let plain_sdf = emu.attach_new_volume(&plain, "/dev/sdf");
        let bare_root = emu.root_volume(&bare).1;
        let mut fleet = Fleet {
            shared,
            plain,
            bare,
            gone,
            plain_root,
            plain_sdf,
            bare_root,
        };

        // More snapshots without our marker, older than any retention used here.
        let (web, web_root, plain_root) = (
            fleet.web.clone(),
            fleet.web_root.clone(),
            fleet.plain_root.clone(),
        );
        fleet.seed_other(
            emu,
            &web_root,
            H_8_5D,
            &[
                ("ebsnap:instance-id", web.as_str()),
                ("ebsnap:device", "/dev/sda1"),
            ],
        );
        fleet.seed_other(emu, &plain_root, H_9_5D, &[]);

        emu.terminate_instance(&fleet.gone);
        fleet
    }

    /// Volumes that must never get a snapshot from ebsnap.
    fn unselected_volume_ids(&self) -> BTreeSet<String> {
        [
            &self.off_root,
            &self.off_sdf,
            &self.plain_root,
            &self.plain_sdf,
            &self.bare_root,
        ]
        .into_iter()
        .cloned()
        .collect()
    }
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Asserts `diff.added` is exactly one snapshot per selected volume, each carrying
/// the whole tag contract, all sharing one run id; returns volume id -> snapshot.
fn assert_created_one_per_selected_volume(
    fleet: &Fleet,
    diff: &SnapshotDiff,
    job: &str,
    run: &EbsnapRun,
) -> BTreeMap<String, SnapInfo> {
    let mut by_volume: BTreeMap<String, Vec<SnapInfo>> = BTreeMap::new();
    for s in &diff.added {
        by_volume
            .entry(s.volume_id.clone())
            .or_default()
            .push(s.clone());
    }
    let selected = fleet.selected();
    let expected_volumes: BTreeSet<String> = selected.iter().map(|s| s.volume_id.clone()).collect();
    let got_volumes: BTreeSet<String> = by_volume.keys().cloned().collect();
    assert_eq!(
        got_volumes, expected_volumes,
        "volumes that got a new snapshot (expected: those of web and db)\nadded: {:#?}\n{run}",
        diff.added
    );
    for unselected in fleet.unselected_volume_ids() {
        assert!(
            !by_volume.contains_key(&unselected),
            "unselected volume {unselected} got a snapshot\n{run}"
        );
    }
    let mut run_ids = BTreeSet::new();
    let mut result = BTreeMap::new();
    for sel in &selected {
        let snaps = &by_volume[&sel.volume_id];
        assert_eq!(
            snaps.len(),
            1,
            "volume {} ({} {}) got {} new snapshots: {snaps:#?}\n{run}",
            sel.volume_id,
            sel.instance_id,
            sel.device,
            snaps.len()
        );
        let s = &snaps[0];
        assert_eq!(s.tag("ebsnap:job"), Some(job), "ebsnap:job of {s:?}");
        assert_eq!(
            s.tag("ebsnap:instance-id"),
            Some(sel.instance_id.as_str()),
            "ebsnap:instance-id of {s:?}"
        );
        assert_eq!(
            s.tag("ebsnap:device"),
            Some(sel.device.as_str()),
            "ebsnap:device of {s:?}"
        );
        assert_eq!(s.tag("Name"), Some(sel.name.as_str()), "Name of {s:?}");
        let run_id = s
            .tag("ebsnap:run-id")
            .unwrap_or_else(|| panic!("no ebsnap:run-id on {s:?}"));
        assert!(!run_id.is_empty(), "empty ebsnap:run-id on {s:?}");
        run_ids.insert(run_id.to_string());
        assert!(
            s.description.contains("ebsnap"),
            "description of {s:?} does not mention ebsnap"
        );
        result.insert(sel.volume_id.clone(), s.clone());
    }
    assert_eq!(
        run_ids.len(),
        1,
        "the new snapshots do not share one ebsnap:run-id: {run_ids:?}"
    );
    result
}

// ---------------------------------------------------------------------------
// The harness itself

#[test]
fn harness_clock_moves_snapshot_start_time() {
    let emu = Emulator::start();
    let instance = emu.launch_instance(&[]);
    let (_, volume) = emu.root_volume(&instance);
    let old = emu.create_snapshot_aged(&volume, H_9_5D, &[]);
    let new = emu.create_snapshot_aged(&volume, 0, &[]);
    let (old, new) = (emu.snapshot(&old), emu.snapshot(&new));
    let delta = new.start_secs - old.start_secs;
    let expected = i64::from(H_9_5D) * 3600;
    assert!(
        (delta - expected).abs() < 3600,
        "StartTime does not follow the clock file: {old:?} vs {new:?} (delta {delta}s, expected {expected}s)"
    );
    // With the clock file at +0 the emulator agrees with the clock ebsnap runs on.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (new.start_secs - now).abs() < 3600,
        "emulator clock at +0 is off: {new:?}, now {now}"
    );
}

#[test]
fn harness_fleet_is_as_described() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    assert_eq!(emu.instance_state(&fleet.web), "running");
    assert_eq!(emu.instance_state(&fleet.db), "stopped");
    assert_eq!(emu.instance_state(&fleet.gone), "terminated");
    assert_eq!(emu.instance_state(&fleet.plain), "running");
    assert_eq!(
        emu.attached_volumes(&fleet.bare),
        vec![("/dev/sda1".to_string(), fleet.bare_root.clone())]
    );
    assert_eq!(
        emu.attached_volumes(&fleet.web),
        vec![
            ("/dev/sda1".to_string(), fleet.web_root.clone()),
            ("/dev/sdf".to_string(), fleet.web_sdf.clone()),
            ("/dev/sdg".to_string(), fleet.web_sdg.clone()),
        ]
    );
    assert_eq!(emu.attached_volumes(&fleet.db).len(), 2);
    let state = emu.snapshot_state();
    for s in &fleet.seeded {
        let got = state
            .get(&s.id)
            .unwrap_or_else(|| panic!("seeded {s:?} missing"));
        assert_eq!(got.volume_id, s.volume_id);
        assert_eq!(got.state, "completed");
        assert_eq!(got.tag("ebsnap:job"), s.job.as_deref());
    }
    // The server-side filter ebsnap relies on sees exactly the seeded job snapshots.
    let out = emu
        .block_on(
            emu.client()
                .describe_snapshots()
                .owner_ids("self")
                .filters(filter("tag:ebsnap:job", "default"))
                .send(),
        )
        .expect("DescribeSnapshots");
    let filtered: BTreeSet<String> = out
        .snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect();
    let mut expected = fleet.expired_default();
    expected.extend(fleet.recent_default());
    assert_eq!(filtered, expected);
}

// ---------------------------------------------------------------------------
// 1. The real run

#[test]
fn run_snapshots_selected_volumes_and_purges_expired_job_snapshots() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();

    let run = emu.ebsnap(&["run"]);
    run.assert_success();
    assert_eq!(
        run.stdout, "",
        "a successful text-mode run prints nothing on stdout when it is not a terminal\n{run}"
    );

    let after = emu.world_state();
    let diff = before.snapshots.diff(&after.snapshots);
    assert_created_one_per_selected_volume(&fleet, &diff, "default", &run);
    assert_eq!(
        diff.removed_ids(),
        fleet.expired_default(),
        "deleted snapshots must be exactly the default job's snapshots older than 7 days\n{run}"
    );
    for id in fleet
        .recent_default()
        .iter()
        .chain(&fleet.not_default_job())
    {
        assert!(
            after.snapshots.contains(id),
            "snapshot {id} must remain\n{run}"
        );
    }
    assert!(
        diff.changed.is_empty(),
        "existing snapshots changed: {:#?}\n{run}",
        diff.changed
    );
    assert_eq!(before.volumes, after.volumes, "volumes changed\n{run}");
    assert_eq!(
        before.instances, after.instances,
        "instances changed\n{run}"
    );
}

// 2. Dry run, text

#[test]
fn dry_run_changes_nothing_and_prints_the_plan() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();

    let run = emu.ebsnap(&["run", "--dry-run"]);
    run.assert_success();
    assert_world_unchanged(&before, &emu.world_state(), &run);

    for volume in fleet.selected_volume_ids() {
        assert!(
            run.stdout.contains(&volume),
            "the plan does not mention volume {volume} to snapshot\n{run}"
        );
    }
    for snapshot in fleet.expired_default() {
        assert!(
            run.stdout.contains(&snapshot),
            "the plan does not mention snapshot {snapshot} to delete\n{run}"
        );
    }
    // -n is the same flag.
    let run = emu.ebsnap(&["run", "-n"]);
    run.assert_success();
    assert_world_unchanged(&before, &emu.world_state(), &run);

    // A plan that cannot be written (cron's `> plan.txt` on a full disk)
    // is no success: exit 1, and stderr says why.
    for output in ["text", "json"] {
        let run = emu
            .ebsnap_cmd(&["run", "--dry-run", "--output", output])
            .stdout_to(Path::new("/dev/full"))
            .run();
        run.assert_exit(1);
        assert!(
            run.stderr
                .contains("could not write the output to stdout: No space left on device"),
            "{run}"
        );
        assert_world_unchanged(&before, &emu.world_state(), &run);
    }
}

// 3. The real run, JSON

#[test]
fn run_json_report_agrees_with_the_emulator() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();

    let run = emu.ebsnap(&["run", "--output", "json"]);
    run.assert_success();
    let doc = run.json();
    let after = emu.snapshot_state();
    let diff = before.diff(&after);
    let created_snaps = assert_created_one_per_selected_volume(&fleet, &diff, "default", &run);

    assert_eq!(doc["dry_run"], Value::Bool(false), "{run}");
    assert_eq!(doc["command"], "run", "{run}");
    assert_eq!(doc["job"], "default", "{run}");
    assert_eq!(doc["regions"], serde_json::json!([REGION]), "{run}");
    assert!(
        entries(&doc, "failed", &run).is_empty(),
        "failed must be empty\n{run}"
    );

    // created: the snapshots that appeared, with the right volume, instance, device.
    let created = entries(&doc, "created", &run);
    assert_eq!(
        ids_of(created, "snapshot_id"),
        diff.added_ids(),
        "created ids vs the emulator\n{run}"
    );
    assert_eq!(
        created.len(),
        diff.added.len(),
        "created has duplicates\n{run}"
    );
    for sel in fleet.selected() {
        let snap = &created_snaps[&sel.volume_id];
        let entry = created
            .iter()
            .find(|e| str_field(e, "snapshot_id") == Some(snap.id.as_str()))
            .unwrap_or_else(|| panic!("{} not in created\n{run}", snap.id));
        assert_eq!(
            str_field(entry, "volume_id"),
            Some(sel.volume_id.as_str()),
            "{entry}"
        );
        assert_eq!(
            str_field(entry, "instance_id"),
            Some(sel.instance_id.as_str()),
            "{entry}"
        );
        assert_eq!(
            str_field(entry, "device"),
            Some(sel.device.as_str()),
            "{entry}"
        );
        assert_eq!(str_field(entry, "region"), Some(REGION), "{entry}");
        assert_eq!(
            entry.get("permission"),
            Some(&Value::Null),
            "permission is null in a real run: {entry}"
        );
    }
    let run_id = created_snaps
        .values()
        .next()
        .unwrap()
        .tag("ebsnap:run-id")
        .unwrap();
    assert_eq!(
        str_field(&doc, "run_id"),
        Some(run_id),
        "run_id vs the ebsnap:run-id tag\n{run}"
    );

    // deleted: exactly the snapshots that disappeared, which are the expired ones.
    let deleted = entries(&doc, "deleted", &run);
    assert_eq!(
        ids_of(deleted, "snapshot_id"),
        diff.removed_ids(),
        "deleted ids vs the emulator\n{run}"
    );
    assert_eq!(diff.removed_ids(), fleet.expired_default(), "{run}");
    for entry in deleted {
        let id = str_field(entry, "snapshot_id").unwrap();
        let seeded = fleet.seeded.iter().find(|s| s.id == id).unwrap();
        assert_eq!(
            str_field(entry, "volume_id"),
            Some(seeded.volume_id.as_str()),
            "{entry}"
        );
        assert_eq!(str_field(entry, "region"), Some(REGION), "{entry}");
        assert!(
            str_field(entry, "start_time").is_some(),
            "deleted entry without start_time: {entry}"
        );
        assert_eq!(entry.get("permission"), Some(&Value::Null), "{entry}");
    }

    // kept: the job's newer snapshots, within retention.
    let kept = entries(&doc, "kept", &run);
    for id in fleet.recent_default() {
        let entry = kept
            .iter()
            .find(|e| str_field(e, "snapshot_id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("recent job snapshot {id} not in kept\n{run}"));
        assert_eq!(
            str_field(entry, "reason_code"),
            Some("within_retention"),
            "{entry}"
        );
        assert!(
            str_field(entry, "reason").is_some_and(|r| !r.is_empty()),
            "kept without a reason: {entry}"
        );
        assert!(after.contains(&id), "kept {id} is gone from the emulator");
    }
    let kept_ids = ids_of(kept, "snapshot_id");
    assert!(
        kept_ids.is_disjoint(&diff.removed_ids()),
        "snapshots both kept and deleted\n{run}"
    );
}

// 4. Dry run, JSON

#[test]
fn dry_run_json_lists_what_would_happen() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();

    let run = emu.ebsnap(&["run", "--dry-run", "--output", "json"]);
    run.assert_success();
    assert_world_unchanged(&before, &emu.world_state(), &run);
    let doc = run.json();
    assert_eq!(doc["dry_run"], Value::Bool(true), "{run}");
    assert_eq!(doc["command"], "run", "{run}");
    assert!(
        entries(&doc, "failed", &run).is_empty(),
        "failed must be empty\n{run}"
    );

    let created = entries(&doc, "created", &run);
    assert_eq!(
        created.len(),
        fleet.selected().len(),
        "one created entry per selected volume\n{run}"
    );
    for sel in fleet.selected() {
        let entry = created
            .iter()
            .find(|e| str_field(e, "volume_id") == Some(sel.volume_id.as_str()))
            .unwrap_or_else(|| panic!("volume {} not in created\n{run}", sel.volume_id));
        assert_eq!(entry.get("snapshot_id"), Some(&Value::Null), "{entry}");
        assert_eq!(str_field(entry, "permission"), Some("allowed"), "{entry}");
        assert_eq!(
            str_field(entry, "instance_id"),
            Some(sel.instance_id.as_str()),
            "{entry}"
        );
        assert_eq!(
            str_field(entry, "device"),
            Some(sel.device.as_str()),
            "{entry}"
        );
        assert_eq!(str_field(entry, "region"), Some(REGION), "{entry}");
    }

    let deleted = entries(&doc, "deleted", &run);
    assert_eq!(
        ids_of(deleted, "snapshot_id"),
        fleet.expired_default(),
        "would-delete list\n{run}"
    );
    assert_eq!(
        deleted.len(),
        fleet.expired_default().len(),
        "deleted has duplicates\n{run}"
    );
    for entry in deleted {
        assert_eq!(str_field(entry, "permission"), Some("allowed"), "{entry}");
    }
}

// 5. keep-min

#[test]
fn purge_keeps_the_newest_snapshot_of_a_volume_whose_backups_stopped() {
    let emu = Emulator::start();
    let mut fleet = Fleet::seed(&emu);
    // A volume whose only job snapshots are all older than the retention.
    let web = fleet.web.clone();
    let stale = emu.attach_new_volume(&web, "/dev/sdh");
    let stale_newest = fleet.seed_job(&emu, "default", &web, &stale, "/dev/sdh", H_7_5D);
    let stale_oldest = fleet.seed_job(&emu, "default", &web, &stale, "/dev/sdh", H_9_5D);
    let before = emu.world_state();

    // Flags after the subcommand work too.
    let run = emu.ebsnap(&["purge", "--output", "json"]);
    run.assert_success();
    let after = emu.world_state();
    let diff = before.snapshots.diff(&after.snapshots);
    assert!(
        diff.added.is_empty(),
        "purge created snapshots: {:#?}\n{run}",
        diff.added
    );
    assert!(
        after.snapshots.contains(&stale_newest),
        "keep-min: the newest snapshot of {stale} was deleted\n{run}"
    );
    assert!(
        !after.snapshots.contains(&stale_oldest),
        "the older expired snapshot of {stale} remains\n{run}"
    );
    let mut expected = fleet.expired_default();
    expected.remove(&stale_newest);
    assert_eq!(diff.removed_ids(), expected, "{run}");

    let doc = run.json();
    assert_eq!(doc["command"], "purge", "{run}");
    assert!(entries(&doc, "created", &run).is_empty(), "{run}");
    let kept = entries(&doc, "kept", &run);
    let entry = kept
        .iter()
        .find(|e| str_field(e, "snapshot_id") == Some(stale_newest.as_str()))
        .unwrap_or_else(|| panic!("{stale_newest} not in kept\n{run}"));
    assert_eq!(str_field(entry, "reason_code"), Some("keep_min"), "{entry}");
    assert_eq!(
        ids_of(entries(&doc, "deleted", &run), "snapshot_id"),
        expected,
        "{run}"
    );
}

#[test]
fn purge_with_keep_min_two_keeps_the_two_newest_of_each_volume() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();

    let run = emu.ebsnap(&["purge", "--keep-min", "2"]);
    run.assert_success();
    let diff = before.diff(&emu.snapshot_state());
    assert!(diff.added.is_empty(), "{run}");
    // Only volumes with three or more job snapshots lose expired ones:
    // web root (0.5, 2.5, 6.5 | 7.5, 9.5 days) loses 7.5 and 9.5;
    // web /dev/sdf (2.5 | 7.5, 9.5) keeps 7.5 as its second newest, loses 9.5.
    let expected = fleet.job_snapshots("default", |s| {
        (s.volume_id == fleet.web_root && s.hours_ago > RETENTION_H)
            || (s.volume_id == fleet.web_sdf && s.hours_ago == H_9_5D)
    });
    assert_eq!(expected.len(), 3);
    assert_eq!(diff.removed_ids(), expected, "{run}");
}

// 6. Jobs are independent

#[test]
fn other_job_purge_deletes_only_its_own_snapshots() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();

    let run = emu.ebsnap(&["purge", "--job", "weekly", "--retention", "1d"]);
    run.assert_success();
    let after = emu.world_state();
    let diff = before.snapshots.diff(&after.snapshots);
    assert!(diff.added.is_empty(), "purge created snapshots\n{run}");
    // weekly on web root: 0.5 d kept (within 1 d), 8.5 and 9.5 d deleted;
    // weekly on web /dev/sdf: 2.5 d, expired but the volume's only one (keep-min).
    let expected = fleet.job_snapshots("weekly", |s| {
        s.volume_id == fleet.web_root && s.hours_ago > 24
    });
    assert_eq!(expected.len(), 2);
    assert_eq!(diff.removed_ids(), expected, "{run}");
    for s in &fleet.seeded {
        if s.job.as_deref() != Some("weekly") {
            assert!(
                after.snapshots.contains(&s.id),
                "{s:?} is not the weekly job's, yet it is gone\n{run}"
            );
        }
    }
    assert!(diff.changed.is_empty(), "{run}");
}

#[test]
fn default_job_purge_leaves_other_jobs_and_unmarked_snapshots_alone() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();

    // A retention of one hour: every default-job snapshot has expired, far
    // more than half of the job's, so the delete guard wants --force.
    let refused = emu.ebsnap(&["purge", "--retention", "1h"]);
    refused.assert_exit(1);
    assert_eq!(
        emu.snapshot_state(),
        before,
        "a refused purge deletes nothing\n{refused}"
    );
    assert!(
        refused.stderr.contains("rerun with --force")
            || refused.stdout.contains("rerun with --force"),
        "{refused}"
    );
    let run = emu.ebsnap(&["purge", "--retention", "1h", "--force"]);
    run.assert_success();
    let after = emu.snapshot_state();
    let diff = before.diff(&after);
    for id in fleet.not_default_job() {
        assert!(
            after.contains(&id),
            "snapshot {id} (not the default job's) was deleted\n{run}"
        );
    }
    // Everything removed is the default job's; each volume keeps its newest one.
    let all_default = fleet.job_snapshots("default", |_| true);
    assert!(diff.removed_ids().is_subset(&all_default), "{run}");
    let kept = fleet.newest_per_volume("default");
    let expected: BTreeSet<String> = all_default.difference(&kept).cloned().collect();
    assert_eq!(diff.removed_ids(), expected, "{run}");
}

// ---------------------------------------------------------------------------
// More of the contract

#[test]
fn snapshot_command_creates_and_deletes_nothing() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();

    let run = emu.ebsnap(&["snapshot"]);
    run.assert_success();
    assert_eq!(run.stdout, "", "{run}");
    let diff = before.diff(&emu.snapshot_state());
    assert_created_one_per_selected_volume(&fleet, &diff, "default", &run);
    assert!(
        diff.removed.is_empty(),
        "`snapshot` deleted snapshots: {:#?}\n{run}",
        diff.removed
    );
    assert!(diff.changed.is_empty(), "{run}");
}

#[test]
fn job_and_retention_from_the_environment() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();

    let run = emu
        .ebsnap_cmd(&["run"])
        .env("EBSNAP_JOB", "weekly")
        .env("EBSNAP_RETENTION", "2w")
        .run();
    run.assert_success();
    let diff = before.diff(&emu.snapshot_state());
    assert_created_one_per_selected_volume(&fleet, &diff, "weekly", &run);
    // Nothing of the weekly job is older than two weeks; the default job is not this job.
    assert!(
        diff.removed.is_empty(),
        "deleted: {:#?}\n{run}",
        diff.removed
    );
}

/// Launches one instance per tag value (root volume only), runs `ebsnap ARGS snapshot`,
/// returns the set of instances whose root volume got a snapshot.
fn instances_snapshotted(emu: &Emulator, args: &[&str]) -> BTreeSet<String> {
    let before = emu.snapshot_state();
    // Each call snapshots the same fleet again: lift --min-interval.
    let mut full: Vec<&str> = vec!["snapshot", "--min-interval", "0"];
    full.extend(args);
    let run = emu.ebsnap(&full);
    run.assert_success();
    let diff = before.diff(&emu.snapshot_state());
    assert!(diff.removed.is_empty(), "{run}");
    diff.added
        .iter()
        .map(|s| {
            s.tag("ebsnap:instance-id")
                .unwrap_or_else(|| panic!("no ebsnap:instance-id on {s:?}\n{run}"))
                .to_string()
        })
        .collect()
}

#[test]
fn selection_by_tag_value() {
    let emu = Emulator::start();
    let mut by_value = BTreeMap::new();
    for value in [
        "true",
        "Yes",
        "1",
        "nightly",
        "Off-hours",
        "false",
        "FALSE",
        "No",
        "off",
        "0",
        "",
    ] {
        let id = emu.launch_instance(&[("Scheduled-Snapshots", value)]);
        by_value.insert(value, id);
    }
    let untagged = emu.launch_instance(&[("Name", "untagged")]);
    let other_key = emu.launch_instance(&[("Backup", "yes")]);
    let selected = |values: &[&str]| -> BTreeSet<String> {
        values.iter().map(|v| by_value[v].clone()).collect()
    };

    // Default: any value but false/no/off/0/empty, case-insensitive.
    let got = instances_snapshotted(&emu, &[]);
    assert_eq!(got, selected(&["true", "Yes", "1", "nightly", "Off-hours"]));
    assert!(!got.contains(&untagged) && !got.contains(&other_key));

    // --tag-value: exactly that value.
    let got = instances_snapshotted(&emu, &["--tag-value", "nightly"]);
    assert_eq!(got, selected(&["nightly"]));

    // --tag-key: another key.
    let got = instances_snapshotted(&emu, &["--tag-key", "Backup"]);
    assert_eq!(got, set(&[&other_key]));
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    // More --snapshot-tag tags than fit beside ebsnap's own 5 in EC2's 50
    // (some by the old name, --tag, an alias until the release after next).
    let too_many: Vec<String> = (0..46)
        .map(|i| match i % 2 {
            0 => format!("--snapshot-tag=k{i}=v"),
            _ => format!("--tag=k{i}=v"),
        })
        .collect();
    let too_many: Vec<&str> = std::iter::once("run")
        .chain(too_many.iter().map(String::as_str))
        .collect();
    for args in [
        &too_many[..],
        &["run", "--snapshot-tag", "Team"][..],
        &["run", "--snapshot-tag", "=ops"][..],
        &["run", "--snapshot-tag", "ebsnap:job=other"][..],
        &["run", "--snapshot-tag", "aws:createdBy=me"][..],
        &["run", "--snapshot-tag", "Name=mine"][..],
        &["run", "--snapshot-tag", "Team=db", "--tag", "Team=web"][..],
        // Flags of the job go after the command.
        &["--retention", "7d", "run"][..],
        // A flag the command does not take.
        &["snapshot", "--force"][..],
        &["run", "--retention", "soon"][..],
        &["run", "--output", "yaml"][..],
        &["purge", "--keep-min", "many"][..],
        &["purge", "--keep-min", "0"][..],
        &["purge", "--keep-daily", "0"][..],
        &["purge", "--keep-hourly", "-1"][..],
        &["purge", "--keep-weekly"][..],
        &["purge", "--keep-monthly", "twelve"][..],
        &["run", "--timezone", "Mars/Olympus"][..],
        &["purge", "--orphans-after", "0d"][..],
        &["purge", "--orphans-after", "soon"][..],
        &["frobnicate"][..],
        &[][..],
    ] {
        let run = emu.ebsnap(args);
        run.assert_exit(2);
        assert_eq!(run.stdout, "", "errors go to stderr, never stdout\n{run}");
        assert!(
            !run.stderr.trim().is_empty(),
            "exit 2 without saying why\n{run}"
        );
        if !args.is_empty() {
            assert_eq!(run.stderr.trim().lines().count(), 1, "one line\n{run}");
        }
    }
    assert_world_unchanged(&before, &emu.world_state(), &"after the bad invocations");
}

#[test]
fn keep_last_alone_keeps_each_volumes_newest_within_the_delete_guard() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();
    // A calendar rule without --retention: no week kept on top of it, so
    // keep-last 1 keeps each volume's newest job snapshot and nothing else.
    let kept = fleet.newest_per_volume("default");
    let due = fleet.job_snapshots("default", |s| !kept.contains(&s.id));
    assert_eq!((kept.len(), due.len()), (6, 10), "the fleet as seeded");

    // list says what purge would do: ten of sixteen at once is more than
    // half of the job's backups, so the delete guard holds them back.
    let list = emu.ebsnap(&["list", "--output", "json", "--keep-last", "1"]);
    list.assert_success();
    let doc = list.json();
    let listed = entries(&doc, "snapshots", &list);
    let with_code = |code: &str| -> BTreeSet<String> {
        listed
            .iter()
            .filter(|e| str_field(e, "reason_code") == Some(code))
            .filter_map(|e| str_field(e, "snapshot_id").map(str::to_string))
            .collect()
    };
    assert_eq!(with_code("keep_last"), kept, "{list}");
    assert_eq!(with_code("delete_guard"), due, "{list}");
    let forced_list = emu.ebsnap(&["list", "--output", "json", "--keep-last", "1", "--force"]);
    forced_list.assert_success();
    let doc = forced_list.json();
    let due_listed: BTreeSet<String> = entries(&doc, "snapshots", &forced_list)
        .iter()
        .filter(|e| str_field(e, "purge") == Some("delete"))
        .filter_map(|e| str_field(e, "snapshot_id").map(str::to_string))
        .collect();
    assert_eq!(due_listed, due, "{forced_list}");
    assert_eq!(emu.snapshot_state(), before, "list changes nothing");

    // The purge itself: refused, exit 1, nothing deleted; then forced.
    let refused = emu.ebsnap(&["purge", "--keep-last", "1"]);
    refused.assert_exit(1);
    assert_eq!(emu.snapshot_state(), before, "{refused}");
    let forced = emu.ebsnap(&["purge", "--keep-last", "1", "--force"]);
    forced.assert_success();
    assert_eq!(
        before.diff(&emu.snapshot_state()).removed_ids(),
        due,
        "{forced}"
    );
}

#[test]
fn no_credentials_exits_2_and_changes_nothing() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let run = emu
        .ebsnap_cmd(&["run"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .run();
    run.assert_exit(2);
    assert_eq!(run.stdout, "", "{run}");
    assert_world_unchanged(&before, &emu.world_state(), &run);
}

#[test]
fn snapshot_in_use_by_an_ami_is_kept_and_is_not_a_failure() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    // moto refuses to delete (InvalidSnapshot.InUse) the snapshot it creates for
    // every registered AMI. Register one 9.5 days ago and mark its snapshot as
    // the job's; a newer job snapshot of the same volume (a copy) makes the old
    // one eligible for deletion.
    let ami_snapshot = emu.with_clock_back(H_9_5D, || {
        let image = emu
            .block_on(
                emu.client()
                    .register_image()
                    .name("ebsnap-e2e-ami")
                    .root_device_name("/dev/sda1")
                    .send(),
            )
            .expect("RegisterImage");
        let image_id = image.image_id().expect("image id").to_string();
        let images = emu
            .block_on(emu.client().describe_images().image_ids(&image_id).send())
            .expect("DescribeImages");
        images.images()[0].block_device_mappings()[0]
            .ebs()
            .and_then(|e| e.snapshot_id())
            .expect("the AMI's snapshot")
            .to_string()
    });
    let tags = job_tags("default", &fleet.web, "/dev/sda1", "seeded-ami");
    emu.create_tags(&ami_snapshot, &tags);
    let newer_copy = emu.with_clock_back(H_0_5D, || {
        emu.block_on(
            emu.client()
                .copy_snapshot()
                .source_region(REGION)
                .source_snapshot_id(&ami_snapshot)
                .send(),
        )
        .expect("CopySnapshot")
        .snapshot_id()
        .expect("copy id")
        .to_string()
    });
    // A run of its own: one run's two snapshots of a volume are a duplicate.
    emu.create_tags(
        &newer_copy,
        &job_tags("default", &fleet.web, "/dev/sda1", "seeded-newer"),
    );
    let state = emu.snapshot_state();
    assert_eq!(
        state.get(&newer_copy).unwrap().volume_id,
        state.get(&ami_snapshot).unwrap().volume_id
    );
    let before = state;

    let run = emu.ebsnap(&["purge", "--output", "json"]);
    run.assert_success();
    let after = emu.snapshot_state();
    assert!(
        after.contains(&ami_snapshot),
        "the AMI's snapshot is gone\n{run}"
    );
    assert!(after.contains(&newer_copy), "{run}");
    assert_eq!(
        before.diff(&after).removed_ids(),
        fleet.expired_default(),
        "{run}"
    );
    let doc = run.json();
    assert!(
        entries(&doc, "failed", &run).is_empty(),
        "in use is not a failure\n{run}"
    );
    let kept = entries(&doc, "kept", &run);
    let entry = kept
        .iter()
        .find(|e| str_field(e, "snapshot_id") == Some(ami_snapshot.as_str()))
        .unwrap_or_else(|| panic!("{ami_snapshot} not in kept\n{run}"));
    assert_eq!(str_field(entry, "reason_code"), Some("in_use"), "{entry}");
    assert!(
        !ids_of(entries(&doc, "deleted", &run), "snapshot_id").contains(&ami_snapshot),
        "reported as deleted\n{run}"
    );
}

const POLICY_NO_CREATE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"*","Resource":"*"},
  {"Effect":"Deny","Action":["ec2:CreateSnapshot","ec2:CreateSnapshots"],"Resource":"*"}]}"#;

const POLICY_NO_DELETE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"*","Resource":"*"},
  {"Effect":"Deny","Action":"ec2:DeleteSnapshot","Resource":"*"}]}"#;

#[test]
fn failed_snapshots_keep_their_volumes_old_backups_and_exit_1() {
    // The policy denies creating snapshots. (moto 5.2.5 refuses ebsnap's
    // CreateSnapshot with AuthFailure under IAM enforcement anyway, see
    // dry_run_reports_deletes_the_credentials_may_not_do; either way each create fails.)
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let (key, secret) = emu.create_iam_user("no-create", POLICY_NO_CREATE);
    let before = emu.snapshot_state();

    emu.enforce_iam(true);
    let run = emu
        .ebsnap_cmd(&["run", "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .run();
    emu.enforce_iam(false);

    run.assert_exit(1);
    let after = emu.snapshot_state();
    let diff = before.diff(&after);
    assert!(diff.added.is_empty(), "{run}");
    // Rule 3: no snapshot of a volume that failed to snapshot is deleted...
    let selected = fleet.selected_volume_ids();
    for s in &diff.removed {
        assert!(
            !selected.contains(&s.volume_id),
            "deleted {s:?} although its volume failed to snapshot\n{run}"
        );
    }
    // ...while the volumes this run did not try to snapshot are purged as usual.
    let expected = fleet.job_snapshots("default", |s| {
        s.hours_ago > RETENTION_H && !selected.contains(&s.volume_id)
    });
    assert_eq!(diff.removed_ids(), expected, "{run}");

    let doc = run.json();
    let failed = entries(&doc, "failed", &run);
    let failed_volumes: BTreeSet<String> = failed
        .iter()
        .filter(|e| str_field(e, "action") == Some("create"))
        .filter_map(|e| str_field(e, "volume_id").map(str::to_string))
        .collect();
    assert_eq!(
        failed_volumes, selected,
        "every selected volume's create failed\n{run}"
    );
    let kept = entries(&doc, "kept", &run);
    for s in fleet.seeded.iter().filter(|s| {
        s.job.as_deref() == Some("default")
            && s.hours_ago > RETENTION_H
            && selected.contains(&s.volume_id)
    }) {
        let entry = kept
            .iter()
            .find(|e| str_field(e, "snapshot_id") == Some(s.id.as_str()))
            .unwrap_or_else(|| panic!("{s:?} not in kept\n{run}"));
        assert_eq!(
            str_field(entry, "reason_code"),
            Some("volume_failed"),
            "{entry}"
        );
    }
}

#[test]
fn dry_run_reports_deletes_the_credentials_may_not_do() {
    // `purge` only: moto 5.2.5 cannot verify aws-sdk-rust's signature on a request
    // whose body holds a space (it re-encodes the form with `+` where the SDK sent
    // `%20`) and answers AuthFailure, so under IAM enforcement every CreateSnapshot
    // of ebsnap (its description and Name tag hold spaces) fails whatever the
    // policy says. DeleteSnapshot carries no space and is judged by the policy.
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let (key, secret) = emu.create_iam_user("no-delete", POLICY_NO_DELETE);
    let before = emu.world_state();

    emu.enforce_iam(true);
    let run = emu
        .ebsnap_cmd(&["purge", "--dry-run", "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .run();
    emu.enforce_iam(false);

    assert_world_unchanged(&before, &emu.world_state(), &run);
    run.assert_exit(1);
    let doc = run.json();
    assert_eq!(doc["dry_run"], Value::Bool(true), "{run}");
    assert!(
        entries(&doc, "deleted", &run).is_empty(),
        "no delete may be reported allowed\n{run}"
    );
    let failed_deletes: BTreeSet<String> = entries(&doc, "failed", &run)
        .iter()
        .filter(|e| str_field(e, "action") == Some("delete"))
        .filter_map(|e| str_field(e, "snapshot_id").map(str::to_string))
        .collect();
    assert_eq!(failed_deletes, fleet.expired_default(), "{run}");
}

#[test]
fn region_and_endpoint_flags_cover_every_region_given() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let west = emu.client_for("us-west-2");
    let launched = emu
        .block_on(
            west.run_instances()
                .image_id(AMI)
                .min_count(1)
                .max_count(1)
                .tag_specifications(tag_spec(
                    aws_sdk_ec2::types::ResourceType::Instance,
                    &[("Scheduled-Snapshots", "true"), ("Name", "west")],
                ))
                .send(),
        )
        .expect("RunInstances in us-west-2");
    let west_instance = launched.instances()[0].instance_id().unwrap().to_string();
    let west_root = launched.instances()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.volume_id())
        .expect("root volume in us-west-2")
        .to_string();
    let (east_before, west_before) = (emu.snapshot_state(), emu.snapshot_state_in("us-west-2"));

    // Endpoint and regions from flags only, none from the environment.
    let endpoint = emu.endpoint_url();
    let run = emu
        .ebsnap_cmd(&[
            "snapshot",
            "--endpoint-url",
            &endpoint,
            "--region",
            "us-east-1",
            "--region",
            "us-west-2",
            "--output",
            "json",
        ])
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_REGION")
        .run();
    run.assert_success();

    let east = east_before.diff(&emu.snapshot_state());
    assert_created_one_per_selected_volume(&fleet, &east, "default", &run);
    let west_diff = west_before.diff(&emu.snapshot_state_in("us-west-2"));
    assert_eq!(
        west_diff.added.len(),
        1,
        "us-west-2: {:#?}\n{run}",
        west_diff.added
    );
    let snap = &west_diff.added[0];
    assert_eq!(snap.volume_id, west_root, "{run}");
    assert_eq!(snap.tag("ebsnap:instance-id"), Some(west_instance.as_str()));
    assert_eq!(snap.tag("Name"), Some("west /dev/sda1"));
    assert!(
        west_diff.removed.is_empty() && east.removed.is_empty(),
        "{run}"
    );

    let doc = run.json();
    let regions: BTreeSet<&str> = doc["regions"]
        .as_array()
        .unwrap_or_else(|| panic!("no regions\n{run}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(regions, BTreeSet::from(["us-east-1", "us-west-2"]), "{run}");
    let created = entries(&doc, "created", &run);
    let entry = created
        .iter()
        .find(|e| str_field(e, "snapshot_id") == Some(snap.id.as_str()))
        .unwrap_or_else(|| panic!("{} not in created\n{run}", snap.id));
    assert_eq!(str_field(entry, "region"), Some("us-west-2"), "{entry}");
    assert_eq!(created.len(), fleet.selected().len() + 1, "{run}");
}

const POLICY_NO_CREATE_NO_DELETE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"*","Resource":"*"},
  {"Effect":"Deny","Action":["ec2:CreateSnapshot","ec2:CreateSnapshots","ec2:DeleteSnapshot"],"Resource":"*"}]}"#;

#[test]
fn dry_run_checks_every_delete_even_when_creates_are_refused() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let (key, secret) = emu.create_iam_user("read-only", POLICY_NO_CREATE_NO_DELETE);
    let before = emu.world_state();

    emu.enforce_iam(true);
    let run = emu
        .ebsnap_cmd(&["run", "--dry-run", "--output", "json"])
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .run();
    emu.enforce_iam(false);

    assert_world_unchanged(&before, &emu.world_state(), &run);
    run.assert_exit(1);
    let doc = run.json();
    assert!(entries(&doc, "created", &run).is_empty(), "{run}");
    assert!(entries(&doc, "deleted", &run).is_empty(), "{run}");
    let failed = entries(&doc, "failed", &run);
    let failed_of = |action: &str, key: &str| -> BTreeSet<String> {
        failed
            .iter()
            .filter(|e| str_field(e, "action") == Some(action))
            .filter_map(|e| str_field(e, key).map(str::to_string))
            .collect()
    };
    assert_eq!(
        failed_of("create", "volume_id"),
        fleet.selected_volume_ids(),
        "{run}"
    );
    // Every missing permission at once: the deletes of the volumes whose create
    // was refused are checked too.
    assert_eq!(
        failed_of("delete", "snapshot_id"),
        fleet.expired_default(),
        "{run}"
    );
}

/// An endpoint nothing listens on (the port was free a moment ago).
fn dead_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
}

#[test]
fn discovery_failing_in_every_region_exits_2_without_a_report() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let run = emu
        .ebsnap_cmd(&["run"])
        .env("AWS_ENDPOINT_URL", &dead_endpoint())
        .run();
    run.assert_exit(2);
    assert_eq!(run.stdout, "", "exit 2: no report on stdout\n{run}");
    assert!(
        run.stderr.contains(REGION),
        "stderr names the region\n{run}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &run);
}

/// docs/guide/setup.md: "When nothing could be attempted (exit 2), there is no
/// report: one line per region on stderr says why" — in JSON mode too.
#[test]
fn nothing_attempted_prints_no_json_report() {
    let emu = Emulator::start();
    let dead = dead_endpoint();
    let runs = [
        emu.ebsnap_cmd(&["run", "--output", "json"])
            .env("AWS_ENDPOINT_URL", &dead)
            .run(),
        emu.ebsnap_cmd(&["run", "--output", "json"])
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .run(),
    ];
    for run in &runs {
        run.assert_exit(2);
        assert!(
            run.stderr.contains(REGION),
            "stderr names the region\n{run}"
        );
    }
    for run in &runs {
        assert_eq!(run.stdout, "", "exit 2: no report on stdout\n{run}");
    }
}

#[test]
fn quiet_silences_success_but_not_a_dry_run() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();

    let run = emu.ebsnap(&["run", "-q", "--dry-run", "--output", "json"]);
    run.assert_success();
    assert_world_unchanged(&before, &emu.world_state(), &run);
    assert_eq!(run.json()["dry_run"], Value::Bool(true), "{run}");
    let run = emu.ebsnap(&["run", "-q", "--dry-run"]);
    run.assert_success();
    assert!(
        !run.stdout.trim().is_empty(),
        "-q does not silence a dry run\n{run}"
    );

    let run = emu.ebsnap(&["run", "-q", "--output", "json"]);
    run.assert_success();
    assert_eq!(
        run.stdout, "",
        "-q: nothing on success, even in JSON\n{run}"
    );
    let diff = before.snapshots.diff(&emu.snapshot_state());
    assert_created_one_per_selected_volume(&fleet, &diff, "default", &run);
    assert_eq!(diff.removed_ids(), fleet.expired_default(), "{run}");
}

// ---------------------------------------------------------------------------
// list, check and the metrics file (issue 4)

#[test]
fn list_json_agrees_with_the_emulator_and_with_purge() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();

    let run = emu.ebsnap(&["list", "--output", "json"]);
    run.assert_success();
    let doc = run.json();
    let listed = entries(&doc, "snapshots", &run);
    assert_eq!(
        ids_of(listed, "snapshot_id"),
        fleet.job_snapshots("default", |_| true),
        "{run}"
    );
    let due: BTreeSet<String> = listed
        .iter()
        .filter(|e| str_field(e, "purge") == Some("delete"))
        .filter_map(|e| str_field(e, "snapshot_id").map(str::to_string))
        .collect();
    assert_eq!(
        due,
        fleet.expired_default(),
        "list must say what purge will delete\n{run}"
    );
    for entry in listed {
        let id = str_field(entry, "snapshot_id").unwrap();
        let emulated = before
            .get(id)
            .unwrap_or_else(|| panic!("{id} not in the emulator"));
        assert_eq!(
            str_field(entry, "volume_id"),
            Some(emulated.volume_id.as_str()),
            "{entry}"
        );
        assert_eq!(str_field(entry, "state"), Some("completed"), "{entry}");
        assert_eq!(
            str_field(entry, "instance_id"),
            emulated.tag("ebsnap:instance-id"),
            "{entry}"
        );
    }
    assert_eq!(emu.snapshot_state(), before, "list changes nothing");

    // A purge now deletes exactly what list said.
    let purge = emu.ebsnap(&["purge", "--force"]);
    purge.assert_success();
    let gone = before.diff(&emu.snapshot_state()).removed_ids();
    assert_eq!(gone, due, "{purge}");

    // Filters.
    let web_only = emu.ebsnap(&["list", "--output", "json", "--instance", &fleet.web]);
    web_only.assert_success();
    let doc = web_only.json();
    let listed = entries(&doc, "snapshots", &web_only);
    assert!(!listed.is_empty());
    assert!(
        listed
            .iter()
            .all(|e| str_field(e, "instance_id") == Some(fleet.web.as_str())),
        "{web_only}"
    );
    let one_volume = emu.ebsnap(&["list", "--output", "json", "--volume", &fleet.db_sdf]);
    let doc = one_volume.json();
    let listed = entries(&doc, "snapshots", &one_volume);
    assert!(
        listed
            .iter()
            .all(|e| str_field(e, "volume_id") == Some(fleet.db_sdf.as_str())),
        "{one_volume}"
    );

    // The table for people.
    let table = emu.ebsnap(&["list"]);
    table.assert_success();
    let header = table.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("SNAPSHOT") && header.contains("PURGE"),
        "{table}"
    );
    assert!(
        table.stdout.contains("snapshot(s) of job default"),
        "{table}"
    );
}

#[test]
fn check_names_stale_and_never_backed_up_volumes_until_a_run() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);

    let check = emu.ebsnap(&["check", "--max-age", "1d", "--output", "json"]);
    check.assert_exit(1);
    let doc = check.json();
    let status: BTreeMap<String, String> = entries(&doc, "volumes", &check)
        .iter()
        .map(|v| {
            (
                str_field(v, "volume_id").unwrap().to_string(),
                str_field(v, "status").unwrap().to_string(),
            )
        })
        .collect();
    let expected: BTreeMap<String, String> = [
        (&fleet.web_root, "fresh"), // 0.5 days
        (&fleet.web_sdf, "stale"),  // 2.5 days
        (&fleet.web_sdg, "never"),
        (&fleet.db_root, "stale"), // 6.5 days
        (&fleet.db_sdf, "fresh"),  // 0.5 days
    ]
    .into_iter()
    .map(|(v, s)| (v.clone(), s.to_string()))
    .collect();
    assert_eq!(
        status, expected,
        "only selected instances' volumes are checked\n{check}"
    );

    // Text, for cron's MAILTO: one line per problem.
    let text = emu.ebsnap(&["check", "--max-age", "1d"]);
    text.assert_exit(1);
    assert!(
        text.stdout
            .contains(&format!("NEVER   {} /dev/sdg", fleet.web_sdg)),
        "{text}"
    );
    assert!(
        text.stdout
            .contains(&format!("STALE   {} /dev/sdf", fleet.web_sdf)),
        "{text}"
    );

    // After a run every selected volume is fresh: exit 0, and silent off a terminal.
    emu.ebsnap(&["run", "--force"]).assert_success();
    let fresh = emu.ebsnap(&["check", "--max-age", "1d"]);
    fresh.assert_success();
    assert_eq!(fresh.stdout, "", "{fresh}");
}

// ---------------------------------------------------------------------------
// Orphans (issue 13): the snapshots of a volume that no longer exists, or of
// an instance no longer selected.

/// `ebsnap ARGS` through the EC2 twin under the policy `ebsnap iam-policy`
/// prints, unchanged; no request may be refused. Returns the run and the
/// requests it made.
fn under_printed_policy(emu: &Emulator, args: &[&str]) -> (EbsnapRun, Vec<ProxyRecord>) {
    let proxy = emu.proxy(FaultPlan::none().under_printed_policy());
    let run = emu.ebsnap_cmd(args).via(&proxy).run();
    proxy.assert_no_denials(&run);
    (run, proxy.records())
}

/// The volume ids each DescribeVolumes filtered by `volume-id` asked about.
fn volume_lookups(records: &[ProxyRecord]) -> Vec<BTreeSet<String>> {
    records
        .iter()
        .filter(|r| r.action == "DescribeVolumes")
        .filter_map(|r| r.filters().get("volume-id").cloned())
        .map(|ids| ids.into_iter().collect())
        .collect()
}

#[test]
fn orphans_are_named_by_list_and_check_and_purged_only_past_orphans_after() {
    let emu = Emulator::start();
    let mut fleet = Fleet::seed(&emu);
    // The standard fleet's orphans are recent: the orphan volume (gone,
    // newest 1.5 days) and off's /dev/sdf (off opts out, newest 2.5 days).
    // Two more whose newest is older than 5 days: a volume gone, and off's
    // root.
    let (gone, off) = (fleet.gone.clone(), fleet.off_root.clone());
    let old_gone = emu.create_volume(4);
    let old_gone_ids: BTreeSet<String> = [H_6_5D, H_8_5D]
        .into_iter()
        .map(|h| fleet.seed_job(&emu, "default", &gone, &old_gone, "/dev/sdi", h))
        .collect();
    emu.delete_volume(&old_gone);
    let off_instance = fleet.off.clone();
    let old_off_ids: BTreeSet<String> = [H_6_5D, H_7_5D]
        .into_iter()
        .map(|h| fleet.seed_job(&emu, "default", &off_instance, &off, "/dev/sda1", h))
        .collect();
    // A volume detached from web, which is still selected: no orphan.
    let web = fleet.web.clone();
    let detached = emu.attach_new_volume(&web, "/dev/sdj");
    let detached_id = fleet.seed_job(&emu, "default", &web, &detached, "/dev/sdj", H_9_5D);
    emu.block_on(
        emu.client()
            .detach_volume()
            .volume_id(&detached)
            .instance_id(&web)
            .device("/dev/sdj")
            .send(),
    )
    .expect("DetachVolume");
    let orphan_vol = fleet.orphan_vol.clone();
    let expected: BTreeMap<String, &str> = [
        (orphan_vol.clone(), "volume_gone"),
        (old_gone.clone(), "volume_gone"),
        (fleet.off_sdf.clone(), "instance_not_selected"),
        (off.clone(), "instance_not_selected"),
    ]
    .into_iter()
    .collect();
    let before = emu.snapshot_state();

    // list: every entry says whether it is of an orphan series, and why.
    let (list, records) = under_printed_policy(&emu, &["list", "--output", "json"]);
    list.assert_success();
    let doc = list.json();
    let mut listed: BTreeMap<String, Option<String>> = BTreeMap::new();
    for entry in entries(&doc, "snapshots", &list) {
        let volume = str_field(entry, "volume_id").unwrap().to_string();
        assert!(entry.get("orphan").is_some(), "no orphan field: {entry}");
        let orphan = str_field(entry, "orphan").map(str::to_string);
        let previous = listed.insert(volume.clone(), orphan.clone());
        assert!(
            previous.is_none() || previous == Some(orphan),
            "one verdict per series: {entry}\n{list}"
        );
        if str_field(entry, "snapshot_id") == Some(detached_id.as_str()) {
            assert_eq!(str_field(entry, "reason_code"), Some("keep_min"), "{entry}");
        }
    }
    let orphans: BTreeMap<String, &str> = listed
        .iter()
        .filter_map(|(v, o)| Some((v.clone(), o.as_deref()?)))
        .collect();
    assert_eq!(orphans, expected, "{list}");
    assert_eq!(
        listed.get(&detached),
        Some(&None),
        "detached is not gone\n{list}"
    );
    assert_eq!(
        listed.get(&fleet.db_root),
        Some(&None),
        "db is stopped, not gone\n{list}"
    );
    // One lookup, of the volumes attached to no tagged instance only.
    let asked = volume_lookups(&records);
    assert_eq!(
        asked,
        [set(&[&orphan_vol, &old_gone, &detached])],
        "one DescribeVolumes filtered by volume-id\n{}",
        describe_records(&records)
    );

    // The table names each orphan series with its age and size.
    let table = emu.ebsnap(&["list"]);
    table.assert_success();
    assert!(
        table
            .stdout
            .contains("Orphans (nothing backs these volumes up any more):"),
        "{table}"
    );
    assert!(
        table.stdout.contains(&format!(
            "{old_gone} /dev/sdi of {gone}: its volume no longer exists; newest"
        )),
        "{table}"
    );
    assert!(table.stdout.contains("2 snapshot(s) of 4 GiB"), "{table}");
    assert!(table.stdout.contains("4 orphan series."), "{table}");

    // check names them, and they do not fail it.
    let (check, _) = under_printed_policy(&emu, &["check", "--max-age", "1d", "--output", "json"]);
    check.assert_exit(1); // web's /dev/sdf and db's root are stale; the orphans are not why
    let doc = check.json();
    let reported: BTreeMap<String, &str> = entries(&doc, "orphans", &check)
        .iter()
        .map(|o| {
            (
                str_field(o, "volume_id").unwrap().to_string(),
                str_field(o, "orphan").unwrap(),
            )
        })
        .collect();
    assert_eq!(reported, expected, "{check}");
    let checked: BTreeSet<String> = ids_of(entries(&doc, "volumes", &check), "volume_id");
    assert_eq!(
        checked,
        fleet.selected_volume_ids(),
        "orphans are not checked volumes\n{check}"
    );
    let text = emu.ebsnap(&["check", "--max-age", "1d"]);
    assert!(
        text.stdout.contains(&format!(
            "ORPHAN  {off} /dev/sda1 of {off_instance} in {REGION}: its instance is no longer selected; newest"
        )),
        "{text}"
    );
    assert_eq!(
        emu.snapshot_state(),
        before,
        "list and check change nothing"
    );

    // purge --orphans-after 5d: the orphan series whose newest is older
    // than 5 days go whole, whatever the retention; the rest stays.
    let (purge, _) = under_printed_policy(
        &emu,
        &[
            "purge",
            "--retention",
            "30d",
            "--orphans-after",
            "5d",
            "--output",
            "json",
        ],
    );
    purge.assert_success();
    let diff = before.diff(&emu.snapshot_state());
    let mut orphaned = old_gone_ids.clone();
    orphaned.extend(old_off_ids.iter().cloned());
    assert_eq!(diff.removed_ids(), orphaned, "{purge}");
    let doc = purge.json();
    for deleted in entries(&doc, "deleted", &purge) {
        assert_eq!(
            str_field(deleted, "reason_code"),
            Some("orphaned"),
            "{deleted}"
        );
    }

    // Off by default: the recent orphans keep their newest (keep-min) ...
    let kept = emu.ebsnap(&["purge", "--force"]);
    kept.assert_success();
    let before = emu.snapshot_state();
    let newest: BTreeSet<String> = [&orphan_vol, &fleet.off_sdf]
        .into_iter()
        .map(|volume| {
            let left = before.of_volume(volume);
            assert_eq!(left.len(), 1, "keep-min keeps {volume}'s newest\n{kept}");
            left[0].id.clone()
        })
        .collect();
    // ... and go once older than EBSNAP_ORPHANS_AFTER.
    let env = emu
        .ebsnap_cmd(&["purge", "--force"])
        .env("EBSNAP_ORPHANS_AFTER", "1d")
        .run();
    env.assert_success();
    let last = emu.snapshot_state();
    assert_eq!(before.diff(&last).removed_ids(), newest, "{env}");
    assert!(
        last.contains(&detached_id),
        "the detached volume's last backup stays\n{env}"
    );
}

#[test]
fn metrics_file_records_each_run_by_job_and_region() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let dir = TempDir::new("ebsnap-metrics");
    let path = dir.path().join("ebsnap.prom");
    let path_arg = path.to_str().unwrap();

    emu.ebsnap(&["run", "--dry-run", "--metrics-file", path_arg])
        .assert_success();
    assert!(!path.exists(), "a dry run writes no metrics");

    emu.ebsnap(&["run", "--metrics-file", path_arg])
        .assert_success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_promtool_accepts(&text);
    let value = |name: &str, extra: &str| {
        let prefix = format!("{name}{{ebsnap_job=\"default\",region=\"us-east-1\"{extra}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {prefix} in\n{text}"))
            .to_string()
    };
    assert_eq!(
        value("ebsnap_last_run_created_snapshots", ""),
        fleet.selected().len().to_string(),
        "{text}"
    );
    assert_eq!(
        value("ebsnap_last_run_deleted_snapshots", ""),
        fleet.expired_default().len().to_string(),
        "{text}"
    );
    assert_eq!(value("ebsnap_last_run_failures", ",action=\"create\""), "0");
    assert_eq!(
        value("ebsnap_last_run_timestamp_seconds", ""),
        value("ebsnap_last_success_timestamp_seconds", "")
    );
    for sel in fleet.selected() {
        let labels = format!(
            ",instance_id=\"{}\",volume_id=\"{}\",device=\"{}\"",
            sel.instance_id, sel.volume_id, sel.device
        );
        value("ebsnap_volume_last_snapshot_timestamp_seconds", &labels);
    }
    assert!(
        text.contains("# TYPE ebsnap_last_run_duration_seconds gauge"),
        "{text}"
    );

    // check writes the freshness metrics into the same file, beside the run's.
    let check = emu.ebsnap(&["check", "--max-age", "26h", "--metrics-file", path_arg]);
    check.assert_success();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_promtool_accepts(&text);
    assert!(
        text.contains("ebsnap_check_stale_volumes{ebsnap_job=\"default\",region=\"us-east-1\"} 0"),
        "{text}"
    );
    assert!(
        text.contains("ebsnap_last_run_created_snapshots{"),
        "the run's lines stay\n{text}"
    );
    let completed = text
        .lines()
        .filter(|l| l.starts_with("ebsnap_volume_last_completed_snapshot_timestamp_seconds{"))
        .count();
    assert_eq!(completed, fleet.selected().len(), "{text}");
}

#[test]
fn an_unwritable_metrics_directory_exits_2_before_any_change() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let dir = TempDir::new("ebsnap-metrics-bad");
    let missing = dir.path().join("no-such-dir").join("ebsnap.prom");
    let malformed = dir.path().join("malformed.prom");
    std::fs::write(&malformed, "not a sample\n").unwrap();
    for (path, says) in [
        (&missing, "create it, or give it to this user"),
        (&malformed, "is not a Prometheus textfile"),
    ] {
        for command in ["run", "check"] {
            let mut args = vec![command, "--metrics-file", path.to_str().unwrap()];
            if command == "check" {
                args.extend(["--max-age", "26h"]);
            }
            let run = emu.ebsnap(&args);
            run.assert_exit(2);
            assert!(run.stderr.contains(says), "{run}");
            assert_eq!(run.stderr.trim().lines().count(), 1, "one line\n{run}");
        }
    }
    assert_world_unchanged(&before, &emu.world_state(), &"after the refused runs");
}

// ---------------------------------------------------------------------------
// Leaving volumes out: ebsnap:skip=true and --exclude-boot (issue 5)

#[test]
fn skip_tagged_and_boot_volumes_are_left_out_and_not_checked() {
    let emu = Emulator::start();
    let db = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "db")]);
    let root = emu.root_volume(&db).1;
    let data = emu.attach_new_volume(&db, "/dev/sdf");
    let scratch = emu.attach_new_volume(&db, "/dev/sdg");
    emu.create_tags(&scratch, &[("ebsnap:skip", "true")]);
    let snapshotted = |run: &EbsnapRun| -> BTreeSet<String> {
        let doc = run.json();
        ids_of(entries(&doc, "created", run), "volume_id")
    };
    let skipped = |run: &EbsnapRun| -> BTreeMap<String, String> {
        let doc = run.json();
        entries(&doc, "skipped_volumes", run)
            .iter()
            .map(|v| {
                (
                    str_field(v, "volume_id").unwrap().to_string(),
                    str_field(v, "reason_code").unwrap().to_string(),
                )
            })
            .collect()
    };

    let run = emu.ebsnap(&["snapshot", "--output", "json"]);
    run.assert_success();
    assert_eq!(
        snapshotted(&run),
        [root.clone(), data.clone()].into(),
        "{run}"
    );
    assert_eq!(
        skipped(&run),
        [(scratch.clone(), "skip_tag".to_string())].into(),
        "{run}"
    );
    assert!(
        emu.snapshot_state().of_volume(&scratch).is_empty(),
        "no snapshot of a skipped volume"
    );

    let data_only = emu.ebsnap(&[
        "snapshot",
        "--exclude-boot",
        "--min-interval",
        "0",
        "--output",
        "json",
    ]);
    data_only.assert_success();
    assert_eq!(
        snapshotted(&data_only),
        [data.clone()].into(),
        "{data_only}"
    );
    assert_eq!(skipped(&data_only)[&root], "excluded_boot", "{data_only}");

    // check never calls a volume left out on purpose stale or never backed up.
    let check = emu.ebsnap(&["check", "--max-age", "1d", "--output", "json"]);
    check.assert_success();
    let doc = check.json();
    let checked = ids_of(entries(&doc, "volumes", &check), "volume_id");
    assert_eq!(checked, [root, data].into(), "{check}");
}

#[test]
fn hooks_run_around_each_instances_snapshot_with_its_environment() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let dir = TempDir::new("ebsnap-hooks");
    let log = dir.path().join("hooks.log");
    let pre = format!(
        "echo \"pre $EBSNAP_INSTANCE_ID $EBSNAP_REGION $EBSNAP_JOB\" >> {}; echo to-stdout",
        log.display()
    );
    let post = format!("echo \"post $EBSNAP_INSTANCE_ID\" >> {}", log.display());

    let dry = emu.ebsnap(&[
        "snapshot",
        "--dry-run",
        "--pre-hook",
        &pre,
        "--post-hook",
        &post,
    ]);
    dry.assert_success();
    assert!(!log.exists(), "a dry run runs no hook\n{dry}");

    let run = emu.ebsnap(&["snapshot", "--pre-hook", &pre, "--post-hook", &post]);
    run.assert_success();
    assert_eq!(
        run.stdout, "",
        "hook output goes to the log, never to stdout\n{run}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort();
    let expected_pre = |id: &str| format!("pre {id} us-east-1 default");
    let mut expected = vec![
        expected_pre(&fleet.web),
        expected_pre(&fleet.db),
        format!("post {}", fleet.web),
        format!("post {}", fleet.db),
    ];
    expected.sort();
    assert_eq!(
        lines, expected,
        "one pre and one post per selected instance\n{run}"
    );

    // A failing pre-hook with --hook-failure skip: no snapshot, exit 1, post still runs.
    std::fs::remove_file(&log).unwrap();
    let before = emu.snapshot_state();
    let skip = emu.ebsnap(&[
        "snapshot",
        "--min-interval",
        "0",
        "--hook-failure",
        "skip",
        "--pre-hook",
        "exit 3",
        "--post-hook",
        &post,
        "--output",
        "json",
    ]);
    skip.assert_exit(1);
    assert_eq!(
        before.diff(&emu.snapshot_state()).added_ids(),
        BTreeSet::new(),
        "{skip}"
    );
    let doc = skip.json();
    let hook_failures = entries(&doc, "failed", &skip)
        .iter()
        .filter(|f| str_field(f, "action") == Some("pre-hook"))
        .count();
    assert_eq!(hook_failures, 2, "{skip}");
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        2,
        "post-hooks ran"
    );
}

#[test]
fn copy_tags_puts_the_sources_tags_on_the_snapshots_but_never_over_ebsnaps() {
    let emu = Emulator::start();
    let db = emu.launch_instance(&[
        ("Scheduled-Snapshots", "true"),
        ("Name", "db"),
        ("team", "data"),
    ]);
    let data = emu.attach_new_volume(&db, "/dev/sdf");
    emu.create_tags(
        &data,
        &[
            ("tier", "hot"),
            ("team", "storage"),
            ("ebsnap:device", "/dev/forged"),
        ],
    );

    let run = emu.ebsnap(&["snapshot", "--inherit-tags", "both"]);
    run.assert_success();
    let state = emu.snapshot_state();
    let snaps = state.of_volume(&data);
    assert_eq!(snaps.len(), 1, "{run}");
    let snap = snaps[0];
    assert_eq!(snap.tag("tier"), Some("hot"), "the volume's tag");
    assert_eq!(
        snap.tag("team"),
        Some("storage"),
        "the volume's value wins over the instance's"
    );
    assert_eq!(
        snap.tag("ebsnap:device"),
        Some("/dev/sdf"),
        "ebsnap's own tags win"
    );
    assert_eq!(snap.tag("Name"), Some("db /dev/sdf"));

    let root = emu.root_volume(&db).1;
    // By its old name, --copy-tags, an alias until the release after next.
    let instance_only = emu.ebsnap(&["snapshot", "--copy-tags", "instance", "--min-interval", "0"]);
    instance_only.assert_success();
    let state = emu.snapshot_state();
    let newest = state
        .of_volume(&root)
        .into_iter()
        .max_by_key(|s| s.start_time.clone())
        .unwrap()
        .clone();
    assert_eq!(newest.tag("team"), Some("data"), "{instance_only}");
    assert_eq!(newest.tag("tier"), None);
}

#[test]
fn per_volume_and_whole_instance_modes_leave_the_same_contract() {
    let emu = Emulator::start();
    let db = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "db")]);
    let root = emu.root_volume(&db).1;
    let data = emu.attach_new_volume(&db, "/dev/sdf");
    let logs = emu.attach_new_volume(&db, "/dev/sdg");

    // Default: one CreateSnapshots for the instance; three snapshots, one run.
    let at_once = emu.ebsnap(&["snapshot"]);
    at_once.assert_success();
    let state = emu.snapshot_state();
    let mut run_ids = BTreeSet::new();
    for (volume, device) in [
        (&root, "/dev/sda1"),
        (&data, "/dev/sdf"),
        (&logs, "/dev/sdg"),
    ] {
        let snaps = state.of_volume(volume);
        assert_eq!(snaps.len(), 1, "{at_once}");
        let s = snaps[0];
        assert_eq!(s.tag("ebsnap:device"), Some(device));
        assert_eq!(s.tag("Name"), Some(format!("db {device}").as_str()));
        assert_eq!(s.tag("ebsnap:instance-id"), Some(db.as_str()));
        assert_eq!(
            s.description,
            format!("ebsnap job=default instance={db} (db)"),
            "one call for the instance"
        );
        run_ids.insert(s.tag("ebsnap:run-id").unwrap().to_string());
    }
    assert_eq!(
        run_ids.len(),
        1,
        "one run id shared by the instance's snapshots"
    );

    // --per-volume: one CreateSnapshot per volume, the device in each description.
    let per_volume = emu.ebsnap(&["snapshot", "--per-volume", "--min-interval", "0"]);
    per_volume.assert_success();
    let state = emu.snapshot_state();
    let newest = state
        .of_volume(&data)
        .into_iter()
        .find(|s| s.description.contains("device="))
        .cloned();
    let newest = newest.unwrap_or_else(|| panic!("no per-volume snapshot of {data}\n{per_volume}"));
    assert_eq!(
        newest.description,
        format!("ebsnap job=default instance={db} (db) device=/dev/sdf")
    );
    assert_eq!(newest.tag("ebsnap:device"), Some("/dev/sdf"));
}

#[test]
fn all_regions_covers_every_enabled_region_in_one_run() {
    let emu = Emulator::start();
    Fleet::seed(&emu);
    // The account's enabled regions, as EC2's DescribeRegions answers them
    // (the twin): moto enables every region it knows, about 30, and serving
    // them all at once from one emulator process is more than a loaded test
    // machine does within ebsnap's 40 s per call.
    let enabled = ["ap-southeast-2", "eu-west-1", "us-east-1", "us-west-2"];
    let proxy = emu.proxy(FaultPlan::none().enabled_regions(&enabled));

    // `snapshot --min-interval 0` lists no snapshots: the test is about the
    // regions.
    let run = emu
        .ebsnap_cmd(&[
            "snapshot",
            "--all-regions",
            "--dry-run",
            "--min-interval",
            "0",
            "--output",
            "json",
        ])
        .via(&proxy)
        .run();
    run.assert_success();
    let doc = run.json();
    let regions: Vec<String> = doc["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(regions, enabled, "{run}");
    // The fleet lives in us-east-1: its creates are planned there and nowhere else.
    let created = entries(&doc, "created", &run);
    assert!(!created.is_empty());
    assert!(
        created
            .iter()
            .all(|c| str_field(c, "region") == Some("us-east-1")),
        "{run}"
    );

    let conflict = emu.ebsnap(&["run", "--all-regions", "--region", "us-east-1"]);
    conflict.assert_exit(2);
}

// ---------------------------------------------------------------------------
// Several accounts: --assume-role
//
// moto's STS lets anyone assume any role, and answers with credentials that
// moto maps to the role's account: ebsnap's calls with them land in that
// account. The harness seeds and inspects each account directly (moto's
// x-moto-account-id header), never through STS.

const ROLE_A: &str = "arn:aws:iam::111111111111:role/backup";
const ROLE_B: &str = "arn:aws:iam::222222222222:role/backup";

/// One instance tagged for backup in `account`, with its root volume and a
/// data volume at /dev/sdf; returns the instance and its volumes.
fn seed_account(emu: &Emulator, account: &str) -> (String, BTreeSet<String>) {
    let (instance_id, root) = emu.launch_instance_in(
        account,
        &[("Scheduled-Snapshots", "true"), ("Name", account)],
    );
    let client = emu.client_in_account(account);
    let data = emu
        .block_on(client.create_volume().availability_zone(AZ).size(8).send())
        .expect("CreateVolume")
        .volume_id()
        .unwrap()
        .to_string();
    emu.block_on(
        client
            .attach_volume()
            .volume_id(&data)
            .instance_id(&instance_id)
            .device("/dev/sdf")
            .send(),
    )
    .expect("AttachVolume");
    (instance_id, BTreeSet::from([root, data]))
}

/// The snapshots carrying `ebsnap:job` in `account` (us-east-1): snapshot id
/// -> (volume id, ebsnap:instance-id).
fn job_snapshots_in(emu: &Emulator, account: &str) -> BTreeMap<String, (String, String)> {
    let client = emu.client_in_account(account);
    let out = emu
        .block_on(
            client
                .describe_snapshots()
                .owner_ids("self")
                .filters(filter("tag-key", "ebsnap:job"))
                .send(),
        )
        .expect("DescribeSnapshots");
    out.snapshots()
        .iter()
        .map(|s| {
            let tags = tag_map(s.tags());
            (
                s.snapshot_id().unwrap_or_default().to_string(),
                (
                    s.volume_id().unwrap_or_default().to_string(),
                    tags.get("ebsnap:instance-id").cloned().unwrap_or_default(),
                ),
            )
        })
        .collect()
}

/// Asserts `account` holds exactly one job snapshot of each of `volumes`,
/// all of `instance`.
fn assert_one_snapshot_per_volume(
    emu: &Emulator,
    account: &str,
    instance: &str,
    volumes: &BTreeSet<String>,
    run: &EbsnapRun,
) {
    let snapshots = job_snapshots_in(emu, account);
    let mut got: Vec<&String> = snapshots.values().map(|(volume, _)| volume).collect();
    got.sort();
    assert_eq!(
        got,
        volumes.iter().collect::<Vec<_>>(),
        "account {account}: {snapshots:?}\n{run}"
    );
    assert!(
        snapshots.values().all(|(_, i)| i == instance),
        "account {account}: {snapshots:?}\n{run}"
    );
}

#[test]
fn endpoint_url_is_ec2s_alone_and_sts_keeps_its_own() {
    let emu = Emulator::start();
    let (instance_a, volumes_a) = seed_account(&emu, "111111111111");
    let ec2 = emu.proxy(FaultPlan::none());
    let sts = emu.proxy(FaultPlan::none());
    // The global endpoint points at nothing: a call that went there instead
    // of to its service's own endpoint would fail the run (and never leaves
    // 127.0.0.1).
    let nowhere = dead_endpoint();
    let run = emu
        .ebsnap_cmd(&[
            "snapshot",
            "--endpoint-url",
            &ec2.endpoint_url(),
            "--assume-role",
            ROLE_A,
        ])
        .env("AWS_ENDPOINT_URL", &nowhere)
        .env("AWS_ENDPOINT_URL_STS", &sts.endpoint_url())
        .run();
    run.assert_success();
    assert_one_snapshot_per_volume(&emu, "111111111111", &instance_a, &volumes_a, &run);
    assert_eq!(
        ec2.count("AssumeRole"),
        0,
        "--endpoint-url is EC2's alone\n{}",
        ec2.log()
    );
    assert_eq!(sts.count("AssumeRole"), 1, "{}", sts.log());
    assert!(
        sts.records().iter().all(|r| r.action == "AssumeRole"),
        "only STS calls at STS's endpoint\n{}",
        sts.log()
    );
    assert!(ec2.count("CreateSnapshots") >= 1, "{}", ec2.log());

    // AWS_ENDPOINT_URL_EC2 works as it does for any AWS SDK.
    let before = ec2.count("CreateSnapshots");
    let run = emu
        .ebsnap_cmd(&["snapshot", "--assume-role", ROLE_A, "--min-interval", "0"])
        .env("AWS_ENDPOINT_URL", &nowhere)
        .env("AWS_ENDPOINT_URL_EC2", &ec2.endpoint_url())
        .env("AWS_ENDPOINT_URL_STS", &sts.endpoint_url())
        .run();
    run.assert_success();
    assert_eq!(ec2.count("CreateSnapshots"), before + 1, "{}", ec2.log());
    assert_eq!(sts.count("AssumeRole"), 2, "{}", sts.log());
}

#[test]
fn assume_role_backs_up_each_account_in_one_run() {
    let emu = Emulator::start();
    let (instance_a, volumes_a) = seed_account(&emu, "111111111111");
    let (instance_b, volumes_b) = seed_account(&emu, "222222222222");
    // The caller's own account has a tagged instance too: no role, no backup.
    emu.launch_instance(&[("Scheduled-Snapshots", "true")]);

    let run = emu.ebsnap(&[
        "snapshot",
        "--assume-role",
        ROLE_A,
        "--assume-role",
        ROLE_B,
        "--output",
        "json",
    ]);
    run.assert_success();

    assert_one_snapshot_per_volume(&emu, "111111111111", &instance_a, &volumes_a, &run);
    assert_one_snapshot_per_volume(&emu, "222222222222", &instance_b, &volumes_b, &run);
    assert_eq!(
        job_snapshots_in(&emu, ACCOUNT_ID),
        BTreeMap::new(),
        "nothing in the caller's own account\n{run}"
    );

    let doc = run.json();
    assert_eq!(
        doc["accounts"],
        serde_json::json!(["111111111111", "222222222222"]),
        "{run}"
    );
    assert_eq!(doc["regions"], serde_json::json!([REGION]), "{run}");
    let created = entries(&doc, "created", &run);
    for (account, instance, volumes) in [
        ("111111111111", &instance_a, &volumes_a),
        ("222222222222", &instance_b, &volumes_b),
    ] {
        let of_account: Vec<&Value> = created
            .iter()
            .filter(|e| str_field(e, "account") == Some(account))
            .collect();
        assert_eq!(
            ids_of(
                &of_account.iter().copied().cloned().collect::<Vec<_>>(),
                "volume_id"
            ),
            *volumes,
            "{run}"
        );
        assert!(
            of_account
                .iter()
                .all(|e| str_field(e, "instance_id") == Some(instance.as_str())
                    && str_field(e, "region") == Some(REGION)),
            "{run}"
        );
        // The snapshots the report names are the ones in that account.
        let in_account: BTreeSet<String> = job_snapshots_in(&emu, account).into_keys().collect();
        let reported: BTreeSet<String> = of_account
            .iter()
            .filter_map(|e| str_field(e, "snapshot_id").map(str::to_string))
            .collect();
        assert_eq!(reported, in_account, "{run}");
    }
    assert_eq!(created.len(), volumes_a.len() + volumes_b.len(), "{run}");
}

#[test]
fn a_role_that_cannot_be_assumed_fails_only_its_account() {
    let emu = Emulator::start();
    let (instance_a, volumes_a) = seed_account(&emu, "111111111111");
    seed_account(&emu, "222222222222");
    let proxy = emu.proxy(FaultPlan::none().deny_assume_role(ROLE_B));

    let run = emu
        .ebsnap_cmd(&[
            "run",
            "--assume-role",
            ROLE_A,
            "--assume-role",
            ROLE_B,
            "--external-id",
            "ebsnap-e2e",
            "--output",
            "json",
        ])
        .via(&proxy)
        .run();
    run.assert_exit(1);
    assert_one_snapshot_per_volume(&emu, "111111111111", &instance_a, &volumes_a, &run);
    assert_eq!(
        job_snapshots_in(&emu, "222222222222"),
        BTreeMap::new(),
        "{run}"
    );

    // STS was asked through the same endpoint as EC2, once per role, with
    // the job's session name and the external id.
    let assumed: Vec<ProxyRecord> = proxy
        .records()
        .into_iter()
        .filter(|r| r.action == "AssumeRole")
        .collect();
    let roles: BTreeSet<&str> = assumed.iter().filter_map(|r| r.param("RoleArn")).collect();
    assert_eq!(roles, BTreeSet::from([ROLE_A, ROLE_B]), "{}", proxy.log());
    assert_eq!(assumed.len(), 2, "one AssumeRole per role\n{}", proxy.log());
    for record in &assumed {
        assert_eq!(record.param("RoleSessionName"), Some("ebsnap-default"));
        assert_eq!(record.param("ExternalId"), Some("ebsnap-e2e"));
    }

    let doc = run.json();
    let failed = entries(&doc, "failed", &run);
    assert_eq!(failed.len(), 1, "{run}");
    assert_eq!(
        str_field(&failed[0], "account"),
        Some("222222222222"),
        "{run}"
    );
    assert_eq!(
        str_field(&failed[0], "action"),
        Some("assume-role"),
        "{run}"
    );
    let reason = str_field(&failed[0], "reason").unwrap_or_default();
    assert!(
        reason.contains(ROLE_B)
            && reason.contains("AccessDenied")
            && reason.contains("trust policy"),
        "{run}"
    );
    let created = entries(&doc, "created", &run);
    assert_eq!(created.len(), volumes_a.len(), "{run}");
    assert!(
        created
            .iter()
            .all(|e| str_field(e, "account") == Some("111111111111")),
        "{run}"
    );
    assert!(
        run.stderr
            .contains("account 222222222222 us-east-1: assume-role: assuming"),
        "{run}"
    );

    // The text report: a section per account.
    let text = emu
        .ebsnap_cmd(&[
            "run",
            "--assume-role",
            ROLE_A,
            "--assume-role",
            ROLE_B,
            "-n",
        ])
        .via(&proxy)
        .run();
    text.assert_exit(1);
    let sections: Vec<&str> = text
        .stdout
        .lines()
        .filter(|l| l.starts_with("account "))
        .collect();
    assert_eq!(
        sections,
        [
            "account 111111111111 us-east-1:",
            "account 222222222222 us-east-1:"
        ],
        "{text}"
    );
    let after_b = text
        .stdout
        .split("account 222222222222 us-east-1:")
        .nth(1)
        .unwrap();
    assert!(
        after_b.trim_start().starts_with(
            "FAILED  assume-role: assuming arn:aws:iam::222222222222:role/backup: AccessDenied"
        ),
        "{text}"
    );

    // No account reachable: nothing was attempted.
    let proxy_all = emu.proxy(
        FaultPlan::none()
            .deny_assume_role(ROLE_A)
            .deny_assume_role(ROLE_B),
    );
    let before = (
        job_snapshots_in(&emu, "111111111111"),
        job_snapshots_in(&emu, "222222222222"),
    );
    let none = emu
        .ebsnap_cmd(&[
            "run",
            "--assume-role",
            ROLE_A,
            "--assume-role",
            ROLE_B,
            "--output",
            "json",
        ])
        .via(&proxy_all)
        .run();
    none.assert_exit(2);
    assert_eq!(none.stdout, "", "exit 2: no report\n{none}");
    for account in ["111111111111", "222222222222"] {
        assert!(
            none.stderr
                .contains(&format!("account {account} us-east-1: assume-role")),
            "{none}"
        );
    }
    assert!(
        proxy_all.records().iter().all(|r| r.action == "AssumeRole"),
        "{}",
        proxy_all.log()
    );
    assert_eq!(
        before,
        (
            job_snapshots_in(&emu, "111111111111"),
            job_snapshots_in(&emu, "222222222222"),
        )
    );
}

#[test]
fn bad_assume_role_input_exits_2_before_any_call() {
    let emu = Emulator::start();
    let proxy = emu.proxy(FaultPlan::none());
    for (args, says) in [
        (
            &["run", "--assume-role", "arn:aws:iam::1111:role/backup"][..],
            "'1111' in 'arn:aws:iam::1111:role/backup' is not an AWS account id (12 digits)",
        ),
        (
            &["run", "--assume-role", "backup"][..],
            "'backup' is not an IAM role ARN: give a role's ARN, e.g. arn:aws:iam::111111111111:role/ebsnap",
        ),
        (
            &["run", "--external-id", "x"][..],
            "--assume-role <ARN>",
        ),
        (
            &["run", "--assume-role", ROLE_A, "--assume-role", "arn:aws:iam::111111111111:role/other"][..],
            "are both in account 111111111111: give one --assume-role per account",
        ),
        (
            &["list", "--assume-role", ROLE_A][..],
            "unexpected argument '--assume-role' found; see 'ebsnap list --help'",
        ),
    ] {
        let run = emu.ebsnap_cmd(args).via(&proxy).run();
        run.assert_exit(2);
        assert_eq!(run.stdout, "", "{run}");
        assert_eq!(run.stderr.lines().count(), 1, "one line\n{run}");
        assert!(run.stderr.contains(says), "expected {says:?}\n{run}");
    }
    assert!(
        proxy.records().is_empty(),
        "calls were made:\n{}",
        proxy.log()
    );
}

/// A snapshot in us-west-2 made `hours_ago`, tagged as a copy of `device` of
/// `instance` that came from `source_region`.
fn seed_west_copy(
    emu: &Emulator,
    west_volume: &str,
    hours_ago: u32,
    instance: &str,
    device: &str,
    source_region: &str,
) -> String {
    let west = emu.client_for("us-west-2");
    let run_id = seeded_run_id(hours_ago);
    emu.with_clock_back(hours_ago, || {
        let tags = [
            ("ebsnap:job", "default"),
            ("ebsnap:instance-id", instance),
            ("ebsnap:device", device),
            ("ebsnap:run-id", run_id.as_str()),
            ("ebsnap:source-snapshot", "snap-seeded"),
            ("ebsnap:source-region", source_region),
        ];
        let out = emu
            .block_on(
                west.create_snapshot()
                    .volume_id(west_volume)
                    .tag_specifications(tag_spec(aws_sdk_ec2::types::ResourceType::Snapshot, &tags))
                    .send(),
            )
            .expect("CreateSnapshot in us-west-2");
        out.snapshot_id().expect("snapshot id").to_string()
    })
}

#[test]
fn copy_to_copies_each_new_snapshot_and_purges_only_its_own_old_copies_there() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let west = emu.client_for("us-west-2");
    let west_volume = emu
        .block_on(
            west.create_volume()
                .availability_zone("us-west-2a")
                .size(8)
                .send(),
        )
        .expect("CreateVolume in us-west-2")
        .volume_id()
        .expect("volume id")
        .to_string();
    let web_root = &fleet.selected()[0];
    let (instance, device) = (web_root.instance_id.as_str(), web_root.device.as_str());
    let expired_copy = seed_west_copy(&emu, &west_volume, 40 * 24, instance, device, REGION);
    let recent_copy = seed_west_copy(&emu, &west_volume, 10 * 24, instance, device, REGION);
    // Another source region's copy, as old: not this run's to purge.
    let foreign_copy = seed_west_copy(&emu, &west_volume, 40 * 24, instance, device, "eu-west-1");
    let (east_before, west_before) = (emu.snapshot_state(), emu.snapshot_state_in("us-west-2"));

    let run = emu.ebsnap(&[
        "run",
        "--copy-to",
        "us-west-2",
        "--copy-retention",
        "30d",
        "--output",
        "json",
    ]);
    run.assert_success();

    let east = east_before.diff(&emu.snapshot_state());
    let new_by_volume = assert_created_one_per_selected_volume(&fleet, &east, "default", &run);
    let west_diff = west_before.diff(&emu.snapshot_state_in("us-west-2"));
    assert_eq!(
        west_diff.removed_ids(),
        BTreeSet::from([expired_copy.clone()]),
        "only this source's copy past --copy-retention goes\n{run}"
    );
    assert!(
        emu.snapshot_state_in("us-west-2").contains(&recent_copy)
            && emu.snapshot_state_in("us-west-2").contains(&foreign_copy),
        "{run}"
    );
    // One copy per new snapshot, with the contract and its source.
    let sources: BTreeMap<String, &SnapInfo> =
        new_by_volume.values().map(|s| (s.id.clone(), s)).collect();
    assert_eq!(west_diff.added.len(), sources.len(), "{run}");
    for copy in &west_diff.added {
        let source_id = copy.tag("ebsnap:source-snapshot").unwrap_or_default();
        let source = sources
            .get(source_id)
            .unwrap_or_else(|| panic!("{copy:?} names no new snapshot\n{run}"));
        assert_eq!(copy.tag("ebsnap:source-region"), Some(REGION));
        for key in [
            "ebsnap:job",
            "ebsnap:instance-id",
            "ebsnap:device",
            "ebsnap:run-id",
            "Name",
        ] {
            assert_eq!(copy.tag(key), source.tag(key), "{key} of {copy:?}");
        }
    }
    // The report says so, by region.
    let doc = run.json();
    let copied = entries(&doc, "copied", &run);
    assert_eq!(
        ids_of(copied, "snapshot_id"),
        west_diff.added_ids(),
        "{run}"
    );
    assert!(copied
        .iter()
        .all(|c| str_field(c, "region") == Some("us-west-2")
            && str_field(c, "source_region") == Some(REGION)));
    let deleted_west: BTreeSet<String> = entries(&doc, "deleted", &run)
        .iter()
        .filter(|d| str_field(d, "region") == Some("us-west-2"))
        .filter_map(|d| str_field(d, "snapshot_id").map(str::to_owned))
        .collect();
    assert_eq!(deleted_west, BTreeSet::from([expired_copy]), "{run}");

    // A dry run plans the copies and calls nothing that changes the account.
    let before = (emu.snapshot_state(), emu.snapshot_state_in("us-west-2"));
    let dry = emu.ebsnap(&[
        "run",
        "-n",
        "--min-interval",
        "0",
        "--copy-to",
        "us-west-2",
        "--output",
        "json",
    ]);
    dry.assert_success();
    assert!(
        before.0.diff(&emu.snapshot_state()).added.is_empty(),
        "{dry}"
    );
    assert!(
        before
            .1
            .diff(&emu.snapshot_state_in("us-west-2"))
            .added
            .is_empty(),
        "{dry}"
    );
    let planned = entries(&dry.json(), "copied", &dry).clone();
    assert_eq!(planned.len(), fleet.selected().len(), "{dry}");
    assert!(
        planned
            .iter()
            .all(|c| str_field(c, "permission") == Some("planned")),
        "{dry}"
    );
}

#[test]
fn one_regions_endpoint_failing_leaves_the_other_done_and_exits_1() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let east_before = emu.snapshot_state();
    let proxy = emu.proxy(FaultPlan::none().fail_region("us-west-2"));

    let run = emu
        .ebsnap_cmd(&[
            "run",
            "--region",
            "us-east-1",
            "--region",
            "us-west-2",
            "--output",
            "json",
        ])
        .via(&proxy)
        .run();

    run.assert_exit(1);
    // us-east-1 did all its work, as if alone.
    let east = east_before.diff(&emu.snapshot_state());
    assert_created_one_per_selected_volume(&fleet, &east, "default", &run);
    assert_eq!(east.removed_ids(), fleet.expired_default(), "{run}");
    // The report names the failed region, and only it.
    let doc = run.json();
    let failed = entries(&doc, "failed", &run);
    assert!(!failed.is_empty(), "{run}");
    for entry in failed {
        assert_eq!(
            str_field(entry, "region"),
            Some("us-west-2"),
            "{entry}\n{run}"
        );
        assert_eq!(str_field(entry, "action"), Some("discover"), "{entry}");
    }
    assert!(run.stderr.contains("us-west-2"), "{run}");
}
