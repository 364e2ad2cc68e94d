//! End-to-end tests of `ebsnap restore`: the real binary against the EC2
//! emulator (moto) on 127.0.0.1, one emulator per test. Every test asserts on
//! the emulator's volumes and attachments after the run, not only on what
//! ebsnap printed.
//!
//! Run with `bash tests/run-all.sh`, or, once moto and faketime are
//! installed, `. tests/install-deps.sh && cargo test --test it restore::`.

use std::collections::{BTreeMap, BTreeSet};

use crate::support::*;
use aws_sdk_ec2::types::{ResourceType, Volume, VolumeType};
use chrono::{SecondsFormat, TimeDelta, Utc};
use serde_json::Value;

/// Another zone of the region, so a test can tell "the source's zone" from
/// the harness's default zone.
const AZ_B: &str = "us-east-1b";

/// The tags of a default job's snapshot (`support::job_tags`), with the Name
/// ebsnap gives it.
fn named_job_tags<'a>(
    instance_id: &'a str,
    device: &'a str,
    run_id: &'a str,
) -> Vec<(&'a str, &'a str)> {
    let mut tags = job_tags("default", instance_id, device, run_id);
    tags.push(("Name", device));
    tags
}

/// `ebsnap ARGS` as on a real account: through the EC2 twin, every request
/// judged under the policy `ebsnap iam-policy` prints, unchanged, and new
/// snapshots hidden from describes for a while (eventual consistency). No
/// request may be refused: restore must work under the policy users get.
fn ebsnap_on_ec2(emu: &Emulator, args: &[&str]) -> EbsnapRun {
    let proxy = emu.proxy(
        FaultPlan::none()
            .under_printed_policy()
            .consistency_window(std::time::Duration::from_secs(2)),
    );
    let run = emu.ebsnap_cmd(args).via(&proxy).run();
    proxy.assert_no_denials(&run);
    run
}

/// Every volume in the emulator, by id.
fn volumes(emu: &Emulator) -> BTreeMap<String, Volume> {
    let out = emu
        .block_on(emu.client().describe_volumes().send())
        .expect("DescribeVolumes");
    out.volumes()
        .iter()
        .map(|v| (v.volume_id().unwrap_or_default().to_string(), v.clone()))
        .collect()
}

/// The volumes present now that were not in `before` (ids).
fn new_volumes<V>(emu: &Emulator, before: &BTreeMap<String, V>) -> Vec<Volume> {
    volumes(emu)
        .into_values()
        .filter(|v| !before.contains_key(v.volume_id().unwrap_or_default()))
        .collect()
}

fn snapshot_of(volume: &Volume) -> String {
    volume.snapshot_id().unwrap_or_default().to_string()
}

fn tag_of<'a>(volume: &'a Volume, key: &str) -> Option<&'a str> {
    volume
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

/// A gp3 volume with set IOPS and throughput, in `AZ_B`.
fn create_gp3_volume(emu: &Emulator, size: i32) -> String {
    let out = emu
        .block_on(
            emu.client()
                .create_volume()
                .availability_zone(AZ_B)
                .size(size)
                .volume_type(VolumeType::Gp3)
                .iops(4000)
                .throughput(250)
                .tag_specifications(tag_spec(ResourceType::Volume, &[("Name", "db-data")]))
                .send(),
        )
        .expect("CreateVolume");
    out.volume_id().expect("volume id").to_string()
}

fn rfc3339_hours_ago(hours: i64) -> String {
    (Utc::now() - TimeDelta::hours(hours)).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An instance with a root volume and data volumes at /dev/sdf and /dev/sdg,
/// and two backup runs of it: run-a 48 h ago and run-b 24 h ago.
struct Backed {
    instance: String,
    /// (device, volume id), sorted by device.
    volumes: Vec<(String, String)>,
    run_a: BTreeSet<String>,
    run_b: BTreeSet<String>,
}

fn seed_two_runs(emu: &Emulator) -> Backed {
    let instance = emu.launch_instance(&[("Name", "db")]);
    emu.attach_new_volume(&instance, "/dev/sdf");
    emu.attach_new_volume(&instance, "/dev/sdg");
    let volumes = emu.attached_volumes(&instance);
    assert_eq!(volumes.len(), 3, "root, /dev/sdf and /dev/sdg");
    let run = |hours_ago: u32, run_id: &str| -> BTreeSet<String> {
        volumes
            .iter()
            .map(|(device, volume)| {
                emu.create_snapshot_aged(
                    volume,
                    hours_ago,
                    &named_job_tags(&instance, device, run_id),
                )
            })
            .collect()
    };
    let run_a = run(48, "run-a");
    let run_b = run(24, "run-b");
    Backed {
        instance,
        volumes,
        run_a,
        run_b,
    }
}

// ---------------------------------------------------------------------------

#[test]
fn restore_of_one_snapshot_makes_a_volume_like_its_source() {
    let emu = Emulator::start();
    let instance = emu.launch_instance(&[]);
    let source = create_gp3_volume(&emu, 20);
    let snapshot =
        emu.create_snapshot_aged(&source, 5, &named_job_tags(&instance, "/dev/sdf", "run-1"));
    let before = volumes(&emu);

    let run = ebsnap_on_ec2(&emu, &["restore", "--snapshot", &snapshot]);
    run.assert_success();

    let new = new_volumes(&emu, &before);
    assert_eq!(new.len(), 1, "one new volume\n{run}");
    let volume = &new[0];
    let id = volume.volume_id().unwrap();
    assert!(
        run.stdout.contains(id),
        "stdout names the new volume {id}\n{run}"
    );
    assert_eq!(snapshot_of(volume), snapshot);
    assert_eq!(volume.availability_zone(), Some(AZ_B), "the source's zone");
    assert_eq!(volume.size(), Some(20));
    assert_eq!(volume.volume_type(), Some(&VolumeType::Gp3));
    assert_eq!(
        (volume.iops(), volume.throughput()),
        (Some(4000), Some(250))
    );
    assert_eq!(volume.state().map(|s| s.as_str()), Some("available"));
    assert!(volume.attachments().is_empty(), "not attached\n{run}");
    assert_eq!(
        tag_of(volume, "ebsnap:restored-from"),
        Some(snapshot.as_str())
    );
    assert_eq!(tag_of(volume, "ebsnap:device"), Some("/dev/sdf"));
    assert_eq!(tag_of(volume, "ebsnap:job"), Some("default"));

    // Overrides, and the JSON report agrees with the emulator.
    let before = volumes(&emu);
    let run = ebsnap_on_ec2(
        &emu,
        &[
            "restore",
            "--snapshot",
            &snapshot,
            "--availability-zone",
            AZ,
            "--volume-type",
            "io2",
            "--iops",
            "5000",
            "--size",
            "30",
            "--output",
            "json",
        ],
    );
    run.assert_success();
    let doc = run.json();
    let new = new_volumes(&emu, &before);
    assert_eq!(new.len(), 1, "{run}");
    let volume = &new[0];
    assert_eq!(
        (volume.availability_zone(), volume.size(), volume.iops()),
        (Some(AZ), Some(30), Some(5000))
    );
    assert_eq!(volume.volume_type(), Some(&VolumeType::Io2));
    assert_eq!(doc["dry_run"], false);
    let restored = doc["restored"].as_array().expect("restored");
    assert_eq!(restored.len(), 1, "{run}");
    assert_eq!(restored[0]["volume_id"], volume.volume_id().unwrap());
    assert_eq!(restored[0]["snapshot_id"], snapshot.as_str());
    assert_eq!(restored[0]["source_volume_id"], source.as_str());
    assert_eq!(restored[0]["availability_zone"], AZ);
    assert_eq!(restored[0]["volume_type"], "io2");
    assert_eq!(restored[0]["size"], 30);
    assert_eq!(restored[0]["attached_to"], Value::Null);
    assert_eq!(doc["failed"].as_array().map(Vec::len), Some(0));

    // Smaller than the snapshot: refused, nothing made.
    let before = emu.world_state();
    let run = ebsnap_on_ec2(&emu, &["restore", "--snapshot", &snapshot, "--size", "10"]);
    run.assert_exit(2);
    assert!(
        run.stderr.contains("--size 10 is smaller than snapshot") && run.stderr.contains("20 GiB"),
        "{run}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &run);
}

#[test]
fn restore_of_an_instance_at_a_time_between_two_runs_gets_exactly_the_earlier_run() {
    let emu = Emulator::start();
    let backed = seed_two_runs(&emu);
    let before = volumes(&emu);

    let at = rfc3339_hours_ago(36);
    let run = ebsnap_on_ec2(
        &emu,
        &["restore", "--instance", &backed.instance, "--at", &at],
    );
    run.assert_success();

    let new = new_volumes(&emu, &before);
    let from: BTreeSet<String> = new.iter().map(snapshot_of).collect();
    assert_eq!(
        from, backed.run_a,
        "exactly run-a's set, one volume each\n{run}"
    );
    assert_eq!(new.len(), 3, "{run}");
    for volume in &new {
        assert!(run.stdout.contains(volume.volume_id().unwrap()), "{run}");
        assert_eq!(volume.availability_zone(), Some(AZ), "the sources' zone");
        assert!(volume.attachments().is_empty());
    }
    // The instance itself is untouched.
    assert_eq!(emu.attached_volumes(&backed.instance), backed.volumes);

    // Without --at: the newest run.
    let before = volumes(&emu);
    let run = ebsnap_on_ec2(&emu, &["restore", "--instance", &backed.instance, "-q"]);
    run.assert_success();
    let from: BTreeSet<String> = new_volumes(&emu, &before).iter().map(snapshot_of).collect();
    assert_eq!(from, backed.run_b, "{run}");

    // Before the first backup: refused, saying when the first one was.
    let before = emu.world_state();
    let at = rfc3339_hours_ago(72);
    let run = ebsnap_on_ec2(
        &emu,
        &["restore", "--instance", &backed.instance, "--at", &at],
    );
    run.assert_exit(2);
    // run-a's snapshots may start a second or two apart: the time that
    // works is the last of their starts.
    let run_a_whole = backed
        .run_a
        .iter()
        .map(|id| emu.snapshot(id).start_secs)
        .max()
        .unwrap();
    let first_time = chrono::DateTime::from_timestamp(run_a_whole, 0)
        .unwrap()
        .to_rfc3339_opts(SecondsFormat::Secs, true);
    assert!(
        run.stderr.contains("the first backup of")
            && run
                .stderr
                .contains(&format!("pass --at {first_time} or later")),
        "{run}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &run);
    // The suggested time works, and finds run-a.
    let run = ebsnap_on_ec2(
        &emu,
        &[
            "restore",
            "--instance",
            &backed.instance,
            "--at",
            &first_time,
            "--dry-run",
        ],
    );
    run.assert_success();
    for snapshot in &backed.run_a {
        assert!(run.stdout.contains(snapshot.as_str()), "{run}");
    }

    // An instance with no backups.
    let run = ebsnap_on_ec2(&emu, &["restore", "--instance", "i-0123456789abcdef0"]);
    run.assert_exit(2);
    assert!(
        run.stderr
            .contains("no snapshots of instance i-0123456789abcdef0"),
        "{run}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &run);
}

/// Production, backed up by a real `ebsnap snapshot`; staging with only its
/// root volume.
fn prod_and_staging(emu: &Emulator) -> (String, String, BTreeSet<String>) {
    let prod = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "prod")]);
    emu.attach_new_volume(&prod, "/dev/sdf");
    emu.attach_new_volume(&prod, "/dev/sdg");
    let staging = emu.launch_instance(&[("Name", "staging")]);
    let before = emu.snapshot_state();
    ebsnap_on_ec2(emu, &["snapshot"]).assert_success();
    let made = before.diff(&emu.snapshot_state()).added_ids();
    assert_eq!(
        made.len(),
        3,
        "ebsnap snapshot backed up prod's three volumes"
    );
    (prod, staging, made)
}

#[test]
fn restore_attaches_to_another_instance_at_the_original_devices() {
    let emu = Emulator::start();
    let (prod, staging, made) = prod_and_staging(&emu);
    let staging_root = emu.root_volume(&staging);
    let before = volumes(&emu);

    let run = ebsnap_on_ec2(
        &emu,
        &["restore", "--instance", &prod, "--attach-to", &staging],
    );
    run.assert_success();

    let new = new_volumes(&emu, &before);
    assert_eq!(new.len(), 2, "the data volumes only, never the root\n{run}");
    let state = emu.snapshot_state();
    let mut expected = vec![staging_root.clone()];
    for volume in &new {
        let id = volume.volume_id().unwrap().to_string();
        let from = snapshot_of(volume);
        assert!(made.contains(&from), "{from} is of the backup run\n{run}");
        let device = state.get(&from).unwrap().tag("ebsnap:device").unwrap();
        assert_ne!(device, "/dev/sda1");
        assert!(run.stdout.contains(&id), "{run}");
        expected.push((device.to_string(), id));
    }
    expected.sort();
    assert_eq!(
        emu.attached_volumes(&staging),
        expected,
        "staging holds its root and prod's data volumes at their devices\n{run}"
    );
    for volume in volumes(&emu)
        .values()
        .filter(|v| !before.contains_key(v.volume_id().unwrap()))
    {
        assert_eq!(volume.state().map(|s| s.as_str()), Some("in-use"));
    }
    assert!(
        run.stdout.contains("root volume"),
        "the report says the root volume was left out\n{run}"
    );

    // One snapshot at a device of choice.
    let data = made
        .iter()
        .find(|id| state.get(id).unwrap().tag("ebsnap:device") == Some("/dev/sdf"))
        .unwrap();
    let run = ebsnap_on_ec2(
        &emu,
        &[
            "restore",
            "--snapshot",
            data,
            "--attach-to",
            &staging,
            "--device",
            "/dev/sdh",
        ],
    );
    run.assert_success();
    let at_sdh = emu
        .attached_volumes(&staging)
        .into_iter()
        .find(|(d, _)| d == "/dev/sdh")
        .unwrap_or_else(|| panic!("nothing at /dev/sdh\n{run}"));
    assert_eq!(snapshot_of(&volumes(&emu)[&at_sdh.1]), *data);
}

#[test]
fn restore_refuses_a_taken_device_and_creates_nothing() {
    let emu = Emulator::start();
    let (prod, staging, made) = prod_and_staging(&emu);
    let busy = emu.attach_new_volume(&staging, "/dev/sdg");
    let before = emu.world_state();

    let run = ebsnap_on_ec2(
        &emu,
        &["restore", "--instance", &prod, "--attach-to", &staging],
    );
    run.assert_exit(2);
    assert!(
        run.stderr.contains("device /dev/sdg")
            && run.stderr.contains(&busy)
            && run.stderr.contains("nothing was created"),
        "the refusal names the device and the volume there\n{run}"
    );
    assert_eq!(run.stderr.trim().lines().count(), 1, "one line\n{run}");
    assert_world_unchanged(&before, &emu.world_state(), &run);

    // The root device of a single snapshot's target: also refused.
    let state = emu.snapshot_state();
    let root = made
        .iter()
        .find(|id| state.get(id).unwrap().tag("ebsnap:device") == Some("/dev/sda1"))
        .unwrap();
    let run = ebsnap_on_ec2(
        &emu,
        &["restore", "--snapshot", root, "--attach-to", &staging],
    );
    run.assert_exit(2);
    assert!(
        run.stderr.contains("device /dev/sda1") && run.stderr.contains("root volume"),
        "{run}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &run);
}

#[test]
fn restore_of_a_missing_snapshot_and_other_bad_input_exit_2_and_change_nothing() {
    let emu = Emulator::start();
    let instance = emu.launch_instance(&[]);
    let source = create_gp3_volume(&emu, 8);
    let snapshot =
        emu.create_snapshot_aged(&source, 1, &named_job_tags(&instance, "/dev/sdf", "r"));
    let before = emu.world_state();

    let missing = "snap-0123456789abcdef0";
    let run = ebsnap_on_ec2(&emu, &["restore", "--snapshot", missing]);
    run.assert_exit(2);
    assert!(
        run.stderr
            .contains(&format!("snapshot {missing} does not exist"))
            && run.stderr.contains("ebsnap list"),
        "{run}"
    );
    assert_eq!(run.stdout, "", "{run}");

    for (args, expected) in [
        (
            vec!["--availability-zone", "eu-west-1a"],
            "availability zone eu-west-1a is not in region us-east-1",
        ),
        (
            vec!["--region", "us-east-1", "--region", "eu-west-1"],
            "the argument '--region <REGION>' cannot be used multiple times; see 'ebsnap restore --help'",
        ),
        (
            vec!["--attach-to", "i-0123456789abcdef0"],
            "instance i-0123456789abcdef0 (--attach-to) does not exist",
        ),
    ] {
        let mut all = vec!["restore", "--snapshot", snapshot.as_str()];
        all.extend(args);
        let run = ebsnap_on_ec2(&emu, &all);
        run.assert_exit(2);
        assert!(run.stderr.contains(expected), "{run}");
    }
    assert_world_unchanged(&before, &emu.world_state(), &"bad input");

    // The source volume is gone: its zone must be given.
    emu.delete_volume(&source);
    let before = emu.world_state();
    let run = ebsnap_on_ec2(&emu, &["restore", "--snapshot", &snapshot]);
    run.assert_exit(2);
    assert!(run.stderr.contains("pass --availability-zone"), "{run}");
    assert_world_unchanged(&before, &emu.world_state(), &run);
    let run = ebsnap_on_ec2(
        &emu,
        &[
            "restore",
            "--snapshot",
            &snapshot,
            "--availability-zone",
            AZ,
        ],
    );
    run.assert_success();
    let new = new_volumes(&emu, &before.volumes);
    assert_eq!(new.len(), 1, "{run}");
    assert_eq!(new[0].availability_zone(), Some(AZ));
}

#[test]
fn a_dry_run_prints_the_plan_and_creates_nothing() {
    let emu = Emulator::start();
    let (prod, staging, made) = prod_and_staging(&emu);
    let before = emu.world_state();

    let run = ebsnap_on_ec2(
        &emu,
        &[
            "restore",
            "--instance",
            &prod,
            "--attach-to",
            &staging,
            "-n",
        ],
    );
    run.assert_success();
    assert_world_unchanged(&before, &emu.world_state(), &run);
    assert!(run.stdout.starts_with("Dry run"), "{run}");
    let state = emu.snapshot_state();
    for id in &made {
        let device = state.get(id).unwrap().tag("ebsnap:device").unwrap();
        if device != "/dev/sda1" {
            assert!(
                run.stdout.contains(id.as_str())
                    && run.stdout.contains(&format!("{staging} at {device}")),
                "the plan names {id} and where it goes\n{run}"
            );
        }
    }

    let run = ebsnap_on_ec2(
        &emu,
        &[
            "restore",
            "--instance",
            &prod,
            "--dry-run",
            "--output",
            "json",
        ],
    );
    run.assert_success();
    assert_world_unchanged(&before, &emu.world_state(), &run);
    let doc = run.json();
    assert_eq!(doc["dry_run"], true);
    let restored = doc["restored"].as_array().expect("restored");
    let planned: BTreeSet<String> = restored
        .iter()
        .map(|r| r["snapshot_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        planned, made,
        "the whole run, root included, without --attach-to"
    );
    for r in restored {
        assert_eq!(r["volume_id"], Value::Null);
        assert_eq!(r["permission"], "allowed");
        assert_eq!(r["availability_zone"], AZ);
    }
}

#[test]
fn the_3am_recipe_puts_last_nights_data_volumes_back_in_place() {
    let emu = Emulator::start();
    let backed = seed_two_runs(&emu);
    let (root_device, root) = emu.root_volume(&backed.instance);
    // Stop the app, unmount, detach the data volumes (the root stays).
    for (device, volume) in &backed.volumes {
        if *device != root_device {
            emu.block_on(
                emu.client()
                    .detach_volume()
                    .volume_id(volume)
                    .instance_id(&backed.instance)
                    .device(device)
                    .send(),
            )
            .expect("DetachVolume");
        }
    }
    let at = rfc3339_hours_ago(36);
    let restore = [
        "restore",
        "--instance",
        &backed.instance,
        "--at",
        &at,
        "--attach-to",
        &backed.instance,
    ];

    let run = ebsnap_on_ec2(&emu, &restore);
    run.assert_success();

    let attached = emu.attached_volumes(&backed.instance);
    assert_eq!(attached.len(), 3, "{run}");
    let all = volumes(&emu);
    let state = emu.snapshot_state();
    for (device, volume) in &attached {
        if *device == root_device {
            assert_eq!(*volume, root, "the root volume is left alone\n{run}");
            continue;
        }
        let from = snapshot_of(&all[volume]);
        assert!(
            backed.run_a.contains(&from),
            "{device} is from run-a\n{run}"
        );
        assert_eq!(
            state.get(&from).unwrap().tag("ebsnap:device"),
            Some(device.as_str())
        );
    }
    // Run again: every device is taken now, so nothing is made.
    let before = emu.world_state();
    ebsnap_on_ec2(&emu, &restore).assert_exit(2);
    assert_world_unchanged(&before, &emu.world_state(), &"second restore");
}
