//! ebsnap under what real EC2 does and moto does not (issue 11, part 2),
//! through the harness's EC2 twin (tests/it/support/twin.rs): eventual
//! consistency alone and mixed with throttling and lost answers, creates
//! carried out after their attempt timed out, duplicates, snapshots in
//! `error`, archived and locked, EC2's tag limits and Multi-Attach volumes.
//! Every test asserts on the emulator's state, not only on the report.

use super::*;

/// The twin's consistency window: what EC2 documents as "a few seconds".
/// ebsnap asks again for 30 s; the margin is wide on a loaded machine.
const WINDOW: Duration = Duration::from_secs(3);

/// The EC2 twin with IAM as EC2 evaluates it, under the policy
/// `ebsnap iam-policy` prints, unchanged: every call a scenario makes must
/// pass it on a real account too.
fn ec2_twin() -> FaultPlan {
    FaultPlan::none().under_printed_policy()
}

/// The two ways ebsnap creates: one CreateSnapshots per instance (the
/// default), or one CreateSnapshot per volume.
const MODES: [&[&str]; 2] = [&[], &["--per-volume"]];

/// The create action of a mode, and the resource each call is about.
fn create_action(mode: &[&str]) -> &'static str {
    if mode.is_empty() {
        "CreateSnapshots"
    } else {
        "CreateSnapshot"
    }
}

fn run_args<'a>(mode: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["run", "--output", "json"];
    args.extend_from_slice(mode);
    args.extend_from_slice(extra);
    args
}

/// Every tag of the contract on each new snapshot, Name included (restore
/// --attach-to needs the device; people need the Name).
fn assert_contract_tags(created: &BTreeMap<String, SnapInfo>, ctx: &dyn std::fmt::Display) {
    for s in created.values() {
        for key in [
            "ebsnap:job",
            "ebsnap:instance-id",
            "ebsnap:device",
            "ebsnap:run-id",
            "Name",
        ] {
            assert!(
                s.tag(key).is_some_and(|v| !v.is_empty()),
                "{} lacks {key}: {s:?}\n{ctx}",
                s.id
            );
        }
    }
}

/// The real create calls per resource (instance or volume) the proxy saw.
fn creates_per_resource(proxy: &FaultProxy, action: &str) -> BTreeMap<String, usize> {
    let mut calls = BTreeMap::new();
    for r in proxy.records() {
        if r.action == action && !r.dry_run {
            *calls
                .entry(r.resource.clone().unwrap_or_default())
                .or_insert(0) += 1;
        }
    }
    calls
}

pub(super) struct Ctx2<'a>(pub(super) &'a FaultProxy, pub(super) &'a EbsnapRun);

impl std::fmt::Display for Ctx2<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}\n--- the proxy saw:\n{}--- the twin did:\n{}",
            self.1,
            self.0.log(),
            self.0.twin_log()
        )
    }
}

/// One `ebsnap run ARGS` of the fleet in `mode`, through the EC2 twin (the
/// printed policy, and what `twin` adds): it must succeed with the effect
/// of a clean run, every tag of the contract on each new snapshot, no
/// request denied and nothing failed. `more` checks the rest.
fn clean_run_under(
    mode: &[&str],
    extra: &[&str],
    twin: impl FnOnce(FaultPlan) -> FaultPlan,
    more: impl FnOnce(&FaultProxy, &dyn std::fmt::Display),
) {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(twin(ec2_twin()));

    let run = emu.ebsnap_cmd(&run_args(mode, extra)).via(&proxy).run();
    let ctx = Ctx2(&proxy, &run);
    proxy.assert_no_denials(&ctx);
    run.assert_success();
    let created = assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    assert_contract_tags(&created, &ctx);
    assert!(entries(&run.json(), "failed", &ctx).is_empty(), "{ctx}");
    more(&proxy, &ctx);
}

#[test]
fn under_the_consistency_window_each_volume_gets_one_snapshot_with_every_tag() {
    for mode in MODES {
        clean_run_under(
            mode,
            &[],
            |twin| {
                // The first CreateTags of a new snapshot comes inside the
                // window on EC2; the proxy makes sure it does here, however
                // long the machine took to send it.
                twin.consistency_window(WINDOW).first_attempts(
                    "CreateTags",
                    Fault::Refuse("InvalidSnapshot.NotFound".into()),
                    1,
                )
            },
            |proxy, ctx| {
                if mode.is_empty() {
                    // CreateSnapshots tags all of an instance's snapshots alike;
                    // the device and Name follow in CreateTags, which EC2 refuses
                    // for a snapshot it does not show yet: ebsnap asked again,
                    // until it went through.
                    let tags: Vec<ProxyRecord> = proxy
                        .records()
                        .into_iter()
                        .filter(|r| r.action == "CreateTags" && !r.dry_run)
                        .collect();
                    let refused: Vec<&ProxyRecord> =
                        tags.iter().filter(|r| r.status == Some(400)).collect();
                    assert!(!refused.is_empty(), "{ctx}");
                    for no in refused {
                        assert!(
                            tags.iter().any(|r| r.resource == no.resource
                                && r.seq > no.seq
                                && r.status == Some(200)),
                            "{no}: asked again until tagged\n{ctx}"
                        );
                    }
                }
            },
        );
    }
}

#[test]
fn lost_answers_under_the_window_are_looked_up_never_created_twice() {
    for mode in MODES {
        for fault in [Fault::LostAnswer, Fault::Reset] {
            let action = create_action(mode);
            let plan = |twin: FaultPlan| {
                twin.consistency_window(WINDOW)
                    .first_attempts(action, fault.clone(), 1)
                    .first_attempts("CreateTags", Fault::Throttle, 1)
                    .first_attempts("DeleteSnapshot", Fault::Throttle, 1)
            };
            clean_run_under(mode, &[], plan, |proxy, ctx| {
                assert!(proxy.faulted(&fault) > 0, "{fault:?} never struck\n{ctx}");
                // The look after the lost answer found what the first
                // attempt made, although EC2 did not show it at first: no
                // second call.
                for (resource, calls) in creates_per_resource(proxy, action) {
                    assert_eq!(
                        calls, 1,
                        "{mode:?} {fault:?}: {action} of {resource} sent again\n{ctx}"
                    );
                }
            });
        }
    }
}

#[test]
fn a_create_carried_out_after_its_attempt_timed_out_makes_no_duplicate() {
    // EC2 carries out the first create once ebsnap's attempt gave up on it
    // (the twin holds it until ebsnap closes the connection); its answer
    // never reaches ebsnap, and what it made is hidden for the window.
    for mode in MODES {
        let plan = |twin: FaultPlan| twin.consistency_window(WINDOW).slow_creates_first(1);
        clean_run_under(mode, &[], plan, |proxy, ctx| {
            let held = proxy.records().into_iter().any(|r| {
                r.twin
                    .as_deref()
                    .is_some_and(|t| t.contains("held until the client gave up on it"))
            });
            assert!(held, "ebsnap gave up on the held create\n{ctx}");
            let calls = creates_per_resource(proxy, create_action(mode));
            assert!(
                calls.values().all(|&n| n == 1),
                "a create was sent again: {calls:?}\n{ctx}"
            );
        });
    }
}

#[test]
fn a_duplicate_that_slipped_through_is_deleted_by_the_next_purge() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    // Two snapshots of one volume from one run: what a create EC2 carried
    // out unseen, then made again, leaves.
    let tags = job_tags("default", &fleet.web, "/dev/sdf", "20261201T023000Z-0a1b");
    let first = emu.create_snapshot_aged(&fleet.web_sdf, 2, &tags);
    let duplicate = emu.create_snapshot_aged(&fleet.web_sdf, 1, &tags);
    let before = emu.snapshot_state();
    let proxy = emu.proxy(ec2_twin());

    let run = emu
        .ebsnap_cmd(&["purge", "--output", "json"])
        .via(&proxy)
        .run();
    run.assert_success();
    proxy.assert_no_denials(&run);
    let removed = before.diff(&emu.snapshot_state()).removed_ids();
    let mut expected = fleet.expired_default();
    expected.insert(duplicate.clone());
    assert_eq!(removed, expected, "{run}");
    assert!(
        emu.snapshot_state().contains(&first),
        "the older one stays\n{run}"
    );
    let doc = run.json();
    let deleted = entries(&doc, "deleted", &run);
    let entry = deleted
        .iter()
        .find(|e| str_field(e, "snapshot_id") == Some(duplicate.as_str()))
        .unwrap_or_else(|| panic!("{duplicate} not reported deleted\n{run}"));
    assert_eq!(
        str_field(entry, "reason_code"),
        Some("duplicate"),
        "{entry}"
    );
    let text = emu.ebsnap(&["purge", "--dry-run"]);
    text.assert_success();
    assert!(
        !text.stdout.contains(&duplicate),
        "gone, so no longer planned\n{text}"
    );
}

/// The seeded snapshot of `volume` made `hours_ago`.
fn seeded_of(emu: &Emulator, volume: &str, hours_ago: u32) -> String {
    let run_id = seeded_run_id(hours_ago);
    emu.snapshot_state()
        .of_volume(volume)
        .into_iter()
        .find(|s| {
            s.tag("ebsnap:run-id") == Some(run_id.as_str())
                && s.tag("ebsnap:job") == Some("default")
        })
        .unwrap_or_else(|| panic!("no seeded snapshot of {volume} {hours_ago}h old"))
        .id
        .clone()
}

#[test]
fn error_snapshots_go_archived_and_locked_ones_stay_and_the_run_succeeds() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    // web's root: 0.5d, 2.5d, 6.5d within retention; 7.5d, 9.5d expired.
    let broken = seeded_of(&emu, &fleet.web_root, H_2_5D);
    let archived = seeded_of(&emu, &fleet.web_root, H_7_5D);
    let locked = seeded_of(&emu, &fleet.web_root, H_9_5D);
    // db's root: 6.5d within retention, 9.5d expired. With the 6.5d one
    // archived, the 9.5d one is the volume's last restorable backup.
    let db_archived = seeded_of(&emu, &fleet.db_root, H_6_5D);
    let db_last_good = seeded_of(&emu, &fleet.db_root, H_9_5D);
    let before = emu.snapshot_state();
    let proxy = emu.proxy(
        FaultPlan::none()
            .snapshot_state(&broken, "error")
            .archived(&archived)
            .archived(&db_archived)
            .locked(&locked, "compliance", 30),
    );

    let run = emu
        .ebsnap_cmd(&["purge", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx2(&proxy, &run);
    proxy.assert_no_denials(&ctx);
    run.assert_success();
    let removed = before.diff(&emu.snapshot_state()).removed_ids();
    let mut expected = fleet.expired_default();
    for kept in [&archived, &locked, &db_last_good] {
        expected.remove(kept);
    }
    expected.insert(broken.clone());
    assert_eq!(removed, expected, "{ctx}");

    let doc = run.json();
    let reason_of = |list: &str, id: &str| {
        entries(&doc, list, &ctx)
            .iter()
            .find(|e| str_field(e, "snapshot_id") == Some(id))
            .and_then(|e| str_field(e, "reason_code"))
            .map(str::to_owned)
    };
    for (list, id, code) in [
        ("deleted", &broken, "error"),
        ("kept", &archived, "archived"),
        ("kept", &db_archived, "archived"),
        ("kept", &db_last_good, "keep_min"),
        ("kept", &locked, "locked"),
    ] {
        assert_eq!(reason_of(list, id).as_deref(), Some(code), "{id}\n{ctx}");
    }
    let locked_entry = entries(&doc, "kept", &ctx)
        .iter()
        .find(|e| str_field(e, "snapshot_id") == Some(locked.as_str()))
        .unwrap();
    assert!(
        str_field(locked_entry, "reason").is_some_and(|r| r.starts_with("locked until ")),
        "{locked_entry}"
    );
    assert!(entries(&doc, "failed", &ctx).is_empty(), "{ctx}");

    // list shows the tier.
    let list = emu
        .ebsnap_cmd(&["list", "--output", "json"])
        .via(&proxy)
        .run();
    list.assert_success();
    let listed = list.json();
    let tier_of = |id: &str| {
        listed["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| str_field(e, "snapshot_id") == Some(id))
            .and_then(|e| str_field(e, "storage_tier"))
            .map(str::to_owned)
    };
    assert_eq!(tier_of(&archived).as_deref(), Some("archive"), "{list}");
    assert_eq!(tier_of(&locked).as_deref(), Some("standard"), "{list}");
    let table = emu.ebsnap_cmd(&["list"]).via(&proxy).run();
    assert!(
        table.stdout.contains("archived (restore up to 72h)"),
        "{table}"
    );
}

#[test]
fn restore_refuses_an_archived_snapshot_and_passes_over_a_run_with_one() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    // Two runs of web: the older complete, the newer with one snapshot
    // archived.
    let first = emu.ebsnap(&["snapshot", "--output", "json"]);
    first.assert_success();
    let second = emu.ebsnap(&["snapshot", "--output", "json", "--min-interval", "0"]);
    second.assert_success();
    let run_id = |run: &EbsnapRun| str_field(&run.json(), "run_id").unwrap().to_owned();
    let (older_run, newer_run) = (run_id(&first), run_id(&second));
    let newer_of_web = entries(&second.json(), "created", &second)
        .iter()
        .filter(|e| str_field(e, "instance_id") == Some(fleet.web.as_str()))
        .filter_map(|e| str_field(e, "snapshot_id").map(str::to_owned))
        .collect::<Vec<_>>();
    let archived = newer_of_web[0].clone();
    let proxy = emu.proxy(ec2_twin().archived(&archived));
    let before = emu.world_state();

    let refused = emu
        .ebsnap_cmd(&["restore", "--snapshot", &archived])
        .via(&proxy)
        .run();
    assert_eq!(refused.code, 2, "{refused}");
    assert!(
        refused.stderr.contains("is in the archive tier")
            && refused.stderr.contains("add --from-archive"),
        "{refused}"
    );
    assert_world_unchanged(&before, &emu.world_state(), &refused);
    assert_eq!(proxy.count("CreateVolume"), 0, "{}", proxy.log());

    let by_instance = emu
        .ebsnap_cmd(&["restore", "--instance", &fleet.web, "--output", "json"])
        .via(&proxy)
        .run();
    by_instance.assert_success();
    proxy.assert_no_denials(&by_instance);
    let doc = by_instance.json();
    assert_eq!(
        str_field(&doc, "run_id"),
        Some(older_run.as_str()),
        "{by_instance}"
    );
    assert_ne!(older_run, newer_run);
    let restored: BTreeSet<String> = doc["restored"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| str_field(r, "snapshot_id").map(str::to_owned))
        .collect();
    assert_eq!(restored.len(), 3, "web's three volumes\n{by_instance}");
    assert!(!restored.contains(&archived), "{by_instance}");
}

#[test]
fn copied_tags_past_ec2s_limit_are_left_out_and_named_in_every_mode() {
    for mode in MODES {
        let emu = Emulator::start();
        // 48 tags on the instance: with the contract's 5 on each snapshot,
        // 53 would not fit in EC2's 50.
        let mut tags: Vec<(String, String)> = vec![
            ("Scheduled-Snapshots".into(), "true".into()),
            ("Name".into(), "app".into()),
        ];
        tags.extend((0..46).map(|i| (format!("cost-{i:02}"), format!("v{i}"))));
        let borrowed: Vec<(&str, &str)> =
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = emu.launch_instance(&borrowed);
        emu.attach_new_volume(&app, "/dev/sdf");
        let proxy = emu.proxy(ec2_twin().tag_limits().consistency_window(WINDOW));
        let before = emu.snapshot_state();

        let run = emu
            .ebsnap_cmd(&run_args(mode, &["--copy-tags", "instance"]))
            .via(&proxy)
            .run();
        let ctx = Ctx2(&proxy, &run);
        proxy.assert_no_denials(&ctx);
        run.assert_success();
        let added = before.diff(&emu.snapshot_state()).added;
        assert_eq!(added.len(), 2, "{ctx}");
        // Name is ebsnap's own; the other 47 are copyable, 45 fit.
        for s in &added {
            assert_eq!(s.tags.len(), 50, "{s:?}\n{ctx}");
            assert_eq!(s.tag("ebsnap:job"), Some("default"), "{ctx}");
            assert!(
                s.tag("ebsnap:device").is_some() && s.tag("Name").is_some(),
                "{ctx}"
            );
        }
        let doc = run.json();
        for created in entries(&doc, "created", &ctx) {
            let dropped = created["tags_dropped"].as_array().map_or(0, Vec::len);
            assert_eq!(dropped, 2, "{created}\n{ctx}");
        }
        assert!(run.stdout.contains("tags_dropped"), "{ctx}");
    }
}

/// The tags (key, value) a create or copy request asks for in its
/// TagSpecifications, as the proxy saw it.
fn requested_tags(r: &ProxyRecord) -> BTreeMap<String, String> {
    r.params
        .iter()
        .filter_map(|(name, key)| {
            let at = name.strip_prefix("TagSpecification.")?;
            let (spec, tag) = at.split_once(".Tag.")?;
            let n = tag.strip_suffix(".Key")?;
            let value = r.param(&format!("TagSpecification.{spec}.Tag.{n}.Value"));
            Some((key.clone(), value.unwrap_or_default().to_string()))
        })
        .collect()
}

/// `--tag` (issue 13): the user's own tags on every snapshot and every
/// `--copy-to` copy, in the create (and copy) call itself, not left to the
/// CreateTags after it, under the policy printed with the same flags and
/// EC2's tag limits. In the default mode as flags, with `--per-volume` from
/// `EBSNAP_TAG`.
#[test]
fn the_users_tags_are_on_every_snapshot_and_copy_from_the_create_call_in_every_mode() {
    let user_tags = [("CostCenter", "ops"), ("Team", "db")];
    let as_flags = ["--tag", "CostCenter=ops", "--tag", "Team=db"];
    let as_env = [("EBSNAP_TAG", "CostCenter=ops Team=db")];
    for mode in MODES {
        let (flags, env): (&[&str], &[(&str, &str)]) = if mode.is_empty() {
            (&as_flags, &[])
        } else {
            (&[], &as_env)
        };
        let emu = Emulator::start();
        let fleet = Fleet::seed(&emu);
        let before = emu.world_state();
        let copies_before = emu.snapshot_state_in("us-west-2");
        let twin = FaultPlan::none()
            .under_policy_printed_with(flags, env)
            .tag_limits();
        let proxy = emu.proxy(twin);
        let mut extra = flags.to_vec();
        extra.extend(["--copy-to", "us-west-2"]);
        let mut cmd = emu.ebsnap_cmd(&run_args(mode, &extra)).via(&proxy);
        for (key, value) in env {
            cmd = cmd.env(key, value);
        }

        let run = cmd.run();
        let ctx = Ctx2(&proxy, &run);
        proxy.assert_no_denials(&ctx);
        run.assert_success();
        let created = assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
        assert_contract_tags(&created, &ctx);
        let copies = copies_before
            .diff(&emu.snapshot_state_in("us-west-2"))
            .added;
        assert_eq!(copies.len(), created.len(), "a copy of each\n{ctx}");
        for s in created.values().chain(&copies) {
            for (key, value) in user_tags {
                assert_eq!(
                    s.tag(key),
                    Some(value),
                    "{} lacks {key}: {s:?}\n{ctx}",
                    s.id
                );
            }
        }
        // In the calls that make them, so none is ever without them.
        let records = proxy.records();
        let makers: Vec<&ProxyRecord> = records
            .iter()
            .filter(|r| {
                r.is_real_mutation()
                    && [create_action(mode), "CopySnapshot"].contains(&r.action.as_str())
            })
            .collect();
        assert!(makers.len() >= 2, "{ctx}");
        for r in makers {
            let asked = requested_tags(r);
            for (key, value) in user_tags {
                assert_eq!(
                    asked.get(key).map(String::as_str),
                    Some(value),
                    "{r}\n{ctx}"
                );
            }
        }
    }
}

#[test]
fn a_volume_restored_from_a_snapshot_with_fifty_tags_stays_within_the_limit() {
    let emu = Emulator::start();
    let app = emu.launch_instance(&[("Name", "app")]);
    let volume = emu.attach_new_volume(&app, "/dev/sdf");
    let mut tags: Vec<(String, String)> = job_tags("default", &app, "/dev/sdf", "run-1")
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    tags.extend((tags.len()..50).map(|i| (format!("cost-{i:02}"), "x".to_owned())));
    let borrowed: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let snapshot = emu.create_snapshot_aged(&volume, 2, &borrowed);
    let proxy = emu.proxy(ec2_twin().tag_limits());

    let run = emu
        .ebsnap_cmd(&["restore", "--snapshot", &snapshot, "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx2(&proxy, &run);
    proxy.assert_no_denials(&ctx);
    run.assert_success();
    let doc = run.json();
    let restored = &doc["restored"][0];
    assert_eq!(
        restored["tags_dropped"],
        serde_json::json!(["cost-49"]),
        "{ctx}"
    );
    let new_volume = str_field(restored, "volume_id").unwrap();
    let described = emu
        .block_on(
            emu.client()
                .describe_volumes()
                .volume_ids(new_volume)
                .send(),
        )
        .expect("DescribeVolumes");
    let volume_tags = tag_map(described.volumes()[0].tags());
    assert_eq!(volume_tags.len(), 50, "{volume_tags:?}");
    assert_eq!(
        volume_tags.get("ebsnap:restored-from").map(String::as_str),
        Some(snapshot.as_str())
    );
}

#[test]
fn a_multi_attach_volume_gets_one_snapshot_a_run() {
    for mode in MODES {
        let emu = Emulator::start();
        let a = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "a")]);
        let b = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "b")]);
        // io2 Multi-Attach: one volume attached to both instances.
        let shared = emu
            .block_on(
                emu.client()
                    .create_volume()
                    .availability_zone(format!("{REGION}a"))
                    .size(8)
                    .volume_type(aws_sdk_ec2::types::VolumeType::Io2)
                    .iops(1000)
                    .multi_attach_enabled(true)
                    .send(),
            )
            .expect("CreateVolume")
            .volume_id()
            .unwrap()
            .to_owned();
        for instance in [&a, &b] {
            emu.block_on(
                emu.client()
                    .attach_volume()
                    .volume_id(&shared)
                    .instance_id(instance)
                    .device("/dev/sdf")
                    .send(),
            )
            .expect("AttachVolume");
        }
        for instance in [&a, &b] {
            assert!(
                emu.attached_volumes(instance)
                    .iter()
                    .any(|(_, v)| *v == shared),
                "the emulator shows {shared} on {instance}"
            );
        }
        let before = emu.snapshot_state();
        let proxy = emu.proxy(ec2_twin());

        let run = emu.ebsnap_cmd(&run_args(mode, &[])).via(&proxy).run();
        run.assert_success();
        proxy.assert_no_denials(&run);
        let added = before.diff(&emu.snapshot_state()).added;
        let of_shared = added.iter().filter(|s| s.volume_id == shared).count();
        assert_eq!(of_shared, 1, "{mode:?}: {added:#?}\n{run}");
        // Each instance's root, and the shared volume once.
        assert_eq!(added.len(), 3, "{mode:?}: {added:#?}\n{run}");
        let doc = run.json();
        let skipped = entries(&doc, "skipped_volumes", &run);
        assert!(
            skipped
                .iter()
                .any(|s| str_field(s, "volume_id") == Some(shared.as_str())
                    && str_field(s, "reason_code") == Some("multi_attach")),
            "{run}"
        );
    }
}

#[test]
fn wait_waits_for_snapshots_ec2_does_not_show_yet() {
    // New snapshots pending for 5 s, and invisible for the first 3.
    let plan = |twin: FaultPlan| {
        twin.consistency_window(WINDOW)
            .volume_limits(Duration::from_secs(5))
    };
    clean_run_under(&[], &["--wait"], plan, |_, _| {});
}
