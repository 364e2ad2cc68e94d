//! Reliability tests: the real `ebsnap` binary against the EC2 emulator, with a
//! fault-injecting proxy in between (throttling, answers lost after the call
//! took effect, held calls), runs that overlap, runs killed half-way, bad input,
//! the delete guard and --min-interval. Every test asserts on the emulator's
//! state, compared with the state a clean run leaves.
//!
//! Run with `bash tests/run-all.sh`, or, once moto and faketime are installed,
//! `. tests/install-deps.sh && cargo test --test it faults::`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::support::ages::*;
use crate::support::*;
use serde_json::Value;

/// Safety net for waits on the proxy: never reached when ebsnap behaves.
const WAIT: Duration = Duration::from_secs(90);

/// The EC2 twin's archive tier, driven with the SDK (what ebsnap's archive
/// tests run against).
mod archive;
mod archive_job;
/// ebsnap under what real EC2 does and moto does not, through the EC2 twin.
mod real_ec2;

/// Asserts the snapshots added are exactly one per selected volume of the
/// fleet, tagged for `job`, from at most `max_runs` run ids; returns volume -> snapshot.
fn assert_one_new_per_selected_volume(
    fleet: &Fleet,
    diff: &SnapshotDiff,
    job: &str,
    max_runs: usize,
    context: &dyn std::fmt::Display,
) -> BTreeMap<String, SnapInfo> {
    let mut by_volume: BTreeMap<String, Vec<SnapInfo>> = BTreeMap::new();
    for s in &diff.added {
        by_volume
            .entry(s.volume_id.clone())
            .or_default()
            .push(s.clone());
    }
    let got: BTreeSet<String> = by_volume.keys().cloned().collect();
    assert_eq!(
        got,
        fleet.selected_volume_ids(),
        "the volumes that got new snapshots must be exactly the selected ones\nadded: {:#?}\n{context}",
        diff.added
    );
    let mut run_ids = BTreeSet::new();
    let mut result = BTreeMap::new();
    for sel in fleet.selected() {
        let snaps = &by_volume[&sel.volume_id];
        assert_eq!(
            snaps.len(),
            1,
            "volume {} ({} {}) got {} new snapshots, a clean run makes one: {snaps:#?}\n{context}",
            sel.volume_id,
            sel.instance_id,
            sel.device,
            snaps.len()
        );
        let s = &snaps[0];
        assert_eq!(s.tag("ebsnap:job"), Some(job), "{s:?}\n{context}");
        assert_eq!(
            s.tag("ebsnap:instance-id"),
            Some(sel.instance_id.as_str()),
            "{s:?}\n{context}"
        );
        assert_eq!(
            s.tag("ebsnap:device"),
            Some(sel.device.as_str()),
            "{s:?}\n{context}"
        );
        run_ids.insert(s.tag("ebsnap:run-id").unwrap_or_default().to_string());
        result.insert(sel.volume_id.clone(), s.clone());
    }
    assert!(
        !run_ids.contains("") && run_ids.len() <= max_runs,
        "run ids of the new snapshots: {run_ids:?} (at most {max_runs} runs)\n{context}"
    );
    result
}

/// The state a clean `ebsnap run` of the default job leaves, compared with `before`:
/// one new snapshot per selected volume, exactly the expired job snapshots gone,
/// nothing else changed (snapshots, volumes, instances).
fn assert_clean_run_effect(
    fleet: &Fleet,
    before: &WorldState,
    after: &WorldState,
    max_runs: usize,
    context: &dyn std::fmt::Display,
) -> BTreeMap<String, SnapInfo> {
    let diff = before.snapshots.diff(&after.snapshots);
    let created = assert_one_new_per_selected_volume(fleet, &diff, "default", max_runs, context);
    assert_eq!(
        diff.removed_ids(),
        fleet.expired_default(),
        "the snapshots deleted must be exactly the default job's expired ones\n{context}"
    );
    assert!(
        diff.changed.is_empty(),
        "existing snapshots changed: {:#?}\n{context}",
        diff.changed
    );
    assert_eq!(before.volumes, after.volumes, "volumes changed\n{context}");
    assert_eq!(
        before.instances, after.instances,
        "instances changed\n{context}"
    );
    created
}

/// The numbers written in `text` (runs of digits).
fn numbers_in(text: &str) -> BTreeSet<u64> {
    text.split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// Proxy log and run output, for assertion messages.
struct Ctx<'a>(&'a FaultProxy, &'a EbsnapRun);

impl std::fmt::Display for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n--- the proxy saw:\n{}", self.1, self.0.log())
    }
}

fn fault_summary(proxy: &FaultProxy) -> String {
    let mutations = proxy.real_mutations();
    let count = |f: &dyn Fn(&ProxyRecord) -> bool| mutations.iter().filter(|r| f(r)).count();
    format!(
        "{} mutating calls ({} CreateSnapshot, {} DeleteSnapshot): {} throttled, {} answers lost, \
         {} connections reset, {} refused, {} faulted in all",
        mutations.len(),
        count(&|r| r.action == "CreateSnapshot"),
        count(&|r| r.action == "DeleteSnapshot"),
        count(&|r| r.fault == Some(Fault::Throttle)),
        count(&|r| r.fault == Some(Fault::LostAnswer)),
        count(&|r| r.fault == Some(Fault::Reset)),
        count(&|r| matches!(r.fault, Some(Fault::Refuse(_)))),
        count(&|r| r.fault.is_some()),
    )
}

// ---------------------------------------------------------------------------
// The proxy itself (independent of ebsnap's behaviour)

#[test]
fn harness_proxy_forwards_faults_and_records_as_the_sdk_sees_it() {
    use aws_sdk_ec2::error::ProvideErrorMetadata;

    let emu = Emulator::start();
    let instance = emu.launch_instance(&[]);
    let (_, volume) = emu.root_volume(&instance);
    let proxy = emu.proxy(
        FaultPlan::none()
            .first_attempts("CreateSnapshot", Fault::Throttle, 1)
            .first_attempts_on("DeleteSnapshot", "snap-none", Fault::Refuse("X".into()), 1),
    );
    // A client through the proxy, without retries: it sees each fault as is.
    let client = aws_sdk_ec2::Client::from_conf(
        emu.client()
            .config()
            .to_builder()
            .endpoint_url(proxy.endpoint_url())
            .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
            .build(),
    );
    let before = emu.snapshot_state();

    // Reads pass through (several requests on one keep-alive connection).
    for _ in 0..3 {
        let out = emu
            .block_on(client.describe_volumes().volume_ids(&volume).send())
            .expect("DescribeVolumes through the proxy");
        assert_eq!(out.volumes().len(), 1);
    }
    // Throttled: 503 RequestLimitExceeded, nothing created.
    let err = emu
        .block_on(
            client
                .create_snapshot()
                .volume_id(&volume)
                .description("a b")
                .send(),
        )
        .expect_err("the first CreateSnapshot is throttled");
    assert_eq!(err.code(), Some("RequestLimitExceeded"), "{err:?}");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{err:?}"
    );
    assert!(before.diff(&emu.snapshot_state()).added.is_empty());
    // The second passes.
    let made = emu
        .block_on(client.create_snapshot().volume_id(&volume).send())
        .expect("the second CreateSnapshot passes");
    let made = made.snapshot_id().unwrap().to_string();
    assert!(emu.snapshot_state().contains(&made));
    // DryRun calls are recorded but never faulted.
    let err = emu
        .block_on(
            client
                .delete_snapshot()
                .snapshot_id(&made)
                .dry_run(true)
                .send(),
        )
        .expect_err("DryRun");
    assert_eq!(err.code(), Some("DryRunOperation"), "{err:?}");
    // Refused with the given code, not forwarded.
    let err = emu
        .block_on(client.delete_snapshot().snapshot_id("snap-none").send())
        .expect_err("refused");
    assert_eq!(err.code(), Some("X"), "{err:?}");

    // Lost answer: the create takes effect, the client sees 500 InternalError.
    let lost = emu.proxy(FaultPlan::none().first_attempts("CreateSnapshot", Fault::LostAnswer, 1));
    let client = aws_sdk_ec2::Client::from_conf(
        client
            .config()
            .to_builder()
            .endpoint_url(lost.endpoint_url())
            .build(),
    );
    let state = emu.snapshot_state();
    let err = emu
        .block_on(client.create_snapshot().volume_id(&volume).send())
        .expect_err("the answer is lost");
    assert_eq!(err.code(), Some("InternalError"), "{err:?}");
    let diff = state.diff(&emu.snapshot_state());
    assert_eq!(diff.added.len(), 1, "the lost create took effect: {diff:?}");

    let records = proxy.records();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "DescribeVolumes",
            "DescribeVolumes",
            "DescribeVolumes",
            "CreateSnapshot",
            "CreateSnapshot",
            "DeleteSnapshot",
            "DeleteSnapshot"
        ],
        "{}",
        proxy.log()
    );
    assert_eq!(records[3].fault, Some(Fault::Throttle));
    assert!(!records[3].forwarded && records[3].status == Some(503));
    assert!(records[4].forwarded && records[4].fault.is_none());
    assert!(records[5].dry_run && records[5].fault.is_none() && records[5].forwarded);
    assert_eq!(records[6].fault, Some(Fault::Refuse("X".into())));
    assert!(!records[6].forwarded);
    assert_eq!(records[3].resource.as_deref(), Some(volume.as_str()));
    assert_eq!(records[3].param("Description"), Some("a b"));
    assert_eq!(proxy.real_mutations().len(), 3);
    let lost_records = lost.records();
    assert_eq!(lost_records.len(), 1);
    assert!(lost_records[0].forwarded && lost_records[0].status == Some(500));

    // The gate holds mutating calls until released.
    let gated = emu.proxy(FaultPlan::none().gate_after(1));
    let client = aws_sdk_ec2::Client::from_conf(
        client
            .config()
            .to_builder()
            .endpoint_url(gated.endpoint_url())
            .build(),
    );
    let first = emu.block_on(client.create_snapshot().volume_id(&volume).send());
    assert!(first.is_ok(), "{first:?}");
    // The second is held, not forwarded, until released.
    let (answer, held) = emu.block_on(async {
        let call = client.create_snapshot().volume_id(&volume).send();
        let release = async {
            loop {
                if let Some(held) = gated.records().into_iter().find(|r| r.held) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let still = gated.records()[held.seq].clone();
                    gated.release(true);
                    return still;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::join!(call, release)
    });
    assert!(held.held && !held.forwarded, "{held}");
    let id = answer.expect("released call answered");
    assert!(emu.snapshot_state().contains(id.snapshot_id().unwrap()));
    assert!(gated.records()[1].forwarded, "{}", gated.log());
}

// ---------------------------------------------------------------------------
// Faults on the way: the run still ends in the state of a clean run

#[test]
fn faulted_run_converges_to_the_state_of_a_clean_run() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    // About a third of the mutating calls faulted: 1/6 throttled, 1/6 answers
    // lost (the call took effect). Seed 158 faults the first 24 calls, in order
    // of arrival, as "LTL.....T.LT.....L...L.." (L lost, T throttled): 8 of 24.
    // One call (action and resource) is faulted at most twice.
    let proxy = emu.proxy(
        FaultPlan::none()
            .random(158, 1.0 / 6.0, 1.0 / 6.0)
            .max_faults_per_key(2),
    );

    let run = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("faulted run: {}\n{}", fault_summary(&proxy), proxy.log());
    run.assert_success();
    let after = emu.world_state();
    let created = assert_clean_run_effect(&fleet, &before, &after, 1, &ctx);

    // The test did fault both ways.
    assert!(proxy.faulted(&Fault::Throttle) >= 1, "{ctx}");
    assert!(proxy.faulted(&Fault::LostAnswer) >= 1, "{ctx}");

    // The report agrees with the emulator, no failure, no duplicate.
    let doc = run.json();
    assert!(
        entries(&doc, "failed", &ctx).is_empty(),
        "nothing failed\n{ctx}"
    );
    let created_entries = entries(&doc, "created", &ctx);
    let created_ids: BTreeSet<String> = created.values().map(|s| s.id.clone()).collect();
    assert_eq!(ids_of(created_entries, "snapshot_id"), created_ids, "{ctx}");
    assert_eq!(created_entries.len(), created_ids.len(), "{ctx}");
    let deleted = entries(&doc, "deleted", &ctx);
    assert_eq!(
        ids_of(deleted, "snapshot_id"),
        fleet.expired_default(),
        "{ctx}"
    );
    assert_eq!(deleted.len(), fleet.expired_default().len(), "{ctx}");
}

#[test]
fn lost_answer_on_every_first_create_leaves_one_snapshot_per_volume() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(FaultPlan::none().first_attempts("CreateSnapshot", Fault::LostAnswer, 1));

    let run = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("lost first creates: {}", fault_summary(&proxy));
    run.assert_success();
    assert_eq!(
        proxy.faulted(&Fault::LostAnswer),
        fleet.selected().len(),
        "{ctx}"
    );
    let created = assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    let doc = run.json();
    assert!(entries(&doc, "failed", &ctx).is_empty(), "{ctx}");
    let created_ids: BTreeSet<String> = created.values().map(|s| s.id.clone()).collect();
    assert_eq!(
        ids_of(entries(&doc, "created", &ctx), "snapshot_id"),
        created_ids,
        "the report names the snapshots the lost creates made\n{ctx}"
    );

    // Safety rule 7: each create took effect the first time, so the look after
    // the lost answer finds it and no second create is sent for that volume.
    let records = proxy.records();
    let run_id = str_field(&doc, "run_id").unwrap_or_default().to_string();
    for sel in fleet.selected() {
        let creates: Vec<&ProxyRecord> = records
            .iter()
            .filter(|r| {
                r.action == "CreateSnapshot"
                    && !r.dry_run
                    && r.resource.as_deref() == Some(sel.volume_id.as_str())
            })
            .collect();
        assert_eq!(
            creates.len(),
            1,
            "volume {}: a create whose answer was lost is looked up, not sent again\n{ctx}",
            sel.volume_id
        );
        let looked = records.iter().any(|r| {
            r.seq > creates[0].seq
                && r.action == "DescribeSnapshots"
                && r.filters()
                    .get("tag:ebsnap:run-id")
                    .is_some_and(|v| v.contains(&run_id))
        });
        assert!(
            looked,
            "no DescribeSnapshots filtered on tag:ebsnap:run-id={run_id} after the lost create \
             of {}\n{ctx}",
            sel.volume_id
        );
    }
}

#[test]
fn lost_answer_on_deletes_counts_as_deleted() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(FaultPlan::none().first_attempts("DeleteSnapshot", Fault::LostAnswer, 1));

    let run = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("lost deletes: {}", fault_summary(&proxy));
    run.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    let doc = run.json();
    assert!(
        entries(&doc, "failed", &ctx).is_empty(),
        "a retried delete that finds the snapshot gone is not a failure\n{ctx}"
    );
    assert_eq!(
        ids_of(entries(&doc, "deleted", &ctx), "snapshot_id"),
        fleet.expired_default(),
        "{ctx}"
    );
    assert_eq!(
        proxy.faulted(&Fault::LostAnswer),
        fleet.expired_default().len(),
        "{ctx}"
    );
}

/// The reads are retried by the SDK: as ebsnap sets it (5 attempts), unless
/// the user chose otherwise with AWS_MAX_ATTEMPTS or the profile's
/// `max_attempts`, which the SDK must then follow (AWS SDKs and Tools
/// Reference Guide, "Retry behavior").
#[test]
fn sdk_retried_reads_follow_aws_max_attempts_and_the_profile() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let lost_first_read =
        || emu.proxy(FaultPlan::none().first_attempts("DescribeInstances", Fault::LostAnswer, 1));

    let proxy = lost_first_read();
    let run = emu.ebsnap_cmd(&["snapshot", "-n"]).via(&proxy).run();
    run.assert_success();
    assert_eq!(
        proxy.count("DescribeInstances"),
        2,
        "retried once\n{}",
        proxy.log()
    );

    let proxy = lost_first_read();
    let run = emu
        .ebsnap_cmd(&["snapshot", "-n"])
        .via(&proxy)
        .env("AWS_MAX_ATTEMPTS", "1")
        .run();
    run.assert_exit(2);
    assert!(run.stderr.contains("InternalError"), "{run}");
    assert_eq!(
        proxy.count("DescribeInstances"),
        1,
        "not retried\n{}",
        proxy.log()
    );

    let config = emu.runtime_dir().join("aws-config");
    std::fs::write(&config, "[default]\nmax_attempts = 1\n").unwrap();
    let proxy = lost_first_read();
    let run = emu
        .ebsnap_cmd(&["snapshot", "-n"])
        .via(&proxy)
        .env("AWS_CONFIG_FILE", config.to_str().unwrap())
        .run();
    run.assert_exit(2);
    assert_eq!(
        proxy.count("DescribeInstances"),
        1,
        "the profile's max_attempts\n{}",
        proxy.log()
    );
}

/// A profile made by `aws login` (`login_session`): aws-config reads its
/// credentials from the login cache (AWS SDKs and Tools Reference Guide,
/// "Login for AWS local development using console credentials"), named by
/// the SHA-256 of the session's ARN, in `AWS_LOGIN_CACHE_DIRECTORY`. Not
/// expired, so no call to AWS Sign-In: the run works with no key in the
/// environment.
#[test]
fn a_profile_made_by_aws_login_works() {
    let emu = Emulator::start();
    Fleet::seed(&emu);
    let dir = emu.runtime_dir();
    let session = "arn:aws:iam::123456789012:user/Admin";
    let config = dir.join("aws-config");
    std::fs::write(
        &config,
        format!("[profile console]\nlogin_session = {session}\nregion = us-east-1\n"),
    )
    .unwrap();
    let cache = dir.join("login-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let digest = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(session.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let digest = String::from_utf8(digest.stdout).unwrap();
    let expires = (chrono::Utc::now() + chrono::TimeDelta::hours(2))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    std::fs::write(
        cache.join(format!(
            "{}.json",
            digest.split_whitespace().next().unwrap()
        )),
        format!(
            r#"{{"accessToken": {{"accessKeyId": "test", "secretAccessKey": "test",
                "sessionToken": "session", "accountId": "123456789012", "expiresAt": "{expires}"}},
              "tokenType": "aws_sigv4", "refreshToken": "refresh", "idToken": "id",
              "clientId": "arn:aws:signin:::devtools/same-device",
              "dpopKey": "-----BEGIN EC PRIVATE KEY-----\ntest\n-----END EC PRIVATE KEY-----\n"}}"#
        ),
    )
    .unwrap();
    let run = emu
        .ebsnap_cmd(&["list", "--profile", "console", "--output", "json"])
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env("AWS_CONFIG_FILE", config.to_str().unwrap())
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_LOGIN_CACHE_DIRECTORY", cache.to_str().unwrap())
        .run();
    run.assert_success();
    assert!(
        !entries(&run.json(), "snapshots", &run).is_empty(),
        "the job's snapshots, read with the login's credentials\n{run}"
    );
}

#[test]
fn connection_reset_after_each_first_create_and_delete_still_converges() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    // Each call takes effect, then the connection closes without an answer.
    let proxy = emu.proxy(
        FaultPlan::none()
            .first_attempts("CreateSnapshot", Fault::Reset, 1)
            .first_attempts("DeleteSnapshot", Fault::Reset, 1),
    );

    let run = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("connections reset: {}", fault_summary(&proxy));
    run.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    let doc = run.json();
    assert!(entries(&doc, "failed", &ctx).is_empty(), "{ctx}");
    assert_eq!(
        proxy.count("CreateSnapshot"),
        fleet.selected().len(),
        "a create cut off after it took effect is looked up, not sent again\n{ctx}"
    );
}

#[test]
fn throttled_twice_on_every_call_still_converges() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(
        FaultPlan::none()
            .first_attempts("CreateSnapshot", Fault::Throttle, 2)
            .first_attempts("DeleteSnapshot", Fault::Throttle, 2),
    );

    let run = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("throttled twice: {}", fault_summary(&proxy));
    run.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    assert!(entries(&run.json(), "failed", &ctx).is_empty(), "{ctx}");
}

#[test]
fn per_volume_snapshot_limits_wait_and_retry_that_volume() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(
        FaultPlan::none()
            .first_attempts_on(
                "CreateSnapshot",
                &fleet.web_sdf,
                Fault::Refuse("SnapshotCreationPerVolumeRateExceeded".into()),
                2,
            )
            .first_attempts_on(
                "CreateSnapshot",
                &fleet.db_root,
                Fault::Refuse("ConcurrentSnapshotLimitExceeded".into()),
                1,
            ),
    );

    let run = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("per-volume limits: {}", fault_summary(&proxy));
    run.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    assert!(entries(&run.json(), "failed", &ctx).is_empty(), "{ctx}");
    // The other volumes were not held back: their creates went out before the
    // refused volume's retries.
    let records = proxy.records();
    let last_retry = records
        .iter()
        .filter(|r| r.action == "CreateSnapshot" && r.resource.as_deref() == Some(&fleet.web_sdf))
        .map(|r| r.seq)
        .max()
        .unwrap();
    for volume in [&fleet.web_root, &fleet.web_sdg, &fleet.db_sdf] {
        assert!(
            records.iter().any(|r| r.action == "CreateSnapshot"
                && r.resource.as_deref() == Some(volume.as_str())
                && r.seq < last_retry),
            "volume {volume} waited for {}\n{ctx}",
            fleet.web_sdf
        );
    }
}

// ---------------------------------------------------------------------------
// Overlapping runs, crashes, signals

#[test]
fn a_second_run_of_the_same_job_exits_2_while_the_first_holds_the_lock() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    // Run A's mutating calls are held at the proxy until released.
    let proxy_a = emu.proxy(FaultPlan::none().gate_after(0));
    let a = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy_a)
        .spawn();
    proxy_a.wait_for("run A's first mutating call", WAIT, |r| {
        r.iter().any(|r| r.held)
    });

    let proxy_b = emu.proxy(FaultPlan::none());
    for args in [
        &["run"][..],
        &["purge", "--output", "json"][..],
        &["snapshot"][..],
    ] {
        let b = emu.ebsnap_cmd(args).via(&proxy_b).run();
        b.assert_exit(2);
        assert_eq!(b.stdout, "", "exit 2: no report\n{b}");
        let stderr = b.stderr.to_lowercase();
        assert!(
            stderr.contains("already running")
                && stderr.contains("default")
                && b.stderr.contains(&a.pid().to_string()),
            "run B must say the job `default` is already running, held by pid {}\n{b}",
            a.pid()
        );
    }
    // The default lock is $XDG_RUNTIME_DIR/ebsnap-<job>.lock: naming it with
    // --lock-file is the same lock.
    let lock = emu.runtime_dir().join("ebsnap-default.lock");
    let b = emu
        .ebsnap_cmd(&["run", "--lock-file", &lock.display().to_string()])
        .via(&proxy_b)
        .run();
    b.assert_exit(2);
    assert!(b.stderr.contains(&a.pid().to_string()), "{b}");
    assert!(
        proxy_b.records().iter().all(|r| !r.mutating),
        "the refused runs sent a mutating call:\n{}",
        proxy_b.log()
    );
    // A dry run takes no lock.
    let dry = emu.ebsnap_cmd(&["run", "--dry-run"]).via(&proxy_b).run();
    dry.assert_success();
    assert!(proxy_b.real_mutations().is_empty(), "{}", proxy_b.log());

    proxy_a.release(true);
    let a = a.wait();
    let ctx = Ctx(&proxy_a, &a);
    a.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);

    // The lock went with run A: the next run proceeds (and, within
    // --min-interval of A, snapshots nothing again).
    let after_a = emu.world_state();
    let next = emu.ebsnap(&["run"]);
    next.assert_success();
    assert_world_unchanged(&after_a, &emu.world_state(), &next);
}

#[test]
fn runs_of_different_jobs_do_not_block_each_other() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy_a = emu.proxy(FaultPlan::none().gate_after(0));
    let a = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy_a)
        .spawn();
    proxy_a.wait_for("run A's first mutating call", WAIT, |r| {
        r.iter().any(|r| r.held)
    });

    // Another job (its name needs a sanitized lock file name) runs meanwhile.
    let job = "db nightly/a";
    let other = emu.ebsnap(&["snapshot", "--job", job]);
    other.assert_success();
    let mid = emu.snapshot_state();
    let other_diff = before.snapshots.diff(&mid);
    assert_one_new_per_selected_volume(&fleet, &other_diff, job, 1, &other);

    proxy_a.release(true);
    let a = a.wait();
    let ctx = Ctx(&proxy_a, &a);
    a.assert_success();
    let after = emu.world_state();
    let diff = mid.diff(&after.snapshots);
    assert_one_new_per_selected_volume(&fleet, &diff, "default", 1, &ctx);
    assert_eq!(diff.removed_ids(), fleet.expired_default(), "{ctx}");
}

#[test]
fn a_run_killed_half_way_then_run_again_converges() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    // Two mutating calls pass; the rest are held until the run is killed,
    // then dropped: they never reach EC2.
    let proxy = emu.proxy(FaultPlan::none().gate_after(2));
    let first = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .spawn();
    proxy.wait_for("two calls done and one held", WAIT, |r| {
        r.iter()
            .filter(|r| r.is_real_mutation() && r.forwarded && r.status.is_some())
            .count()
            >= 2
            && r.iter().any(|r| r.held)
    });
    first.signal("KILL");
    let first = first.wait();
    proxy.release(false);
    assert_eq!(first.code, -1, "killed by SIGKILL\n{first}");

    // Half-way: what went through is there, no more.
    let mid = emu.world_state();
    let mid_diff = before.snapshots.diff(&mid.snapshots);
    let forwarded_creates = proxy.forwarded("CreateSnapshot");
    let forwarded_deletes = proxy.forwarded("DeleteSnapshot");
    assert_eq!(mid_diff.added.len(), forwarded_creates, "{}", proxy.log());
    assert_eq!(mid_diff.removed.len(), forwarded_deletes, "{}", proxy.log());
    assert!(
        mid_diff.added.len() < fleet.selected().len()
            || forwarded_deletes < fleet.expired_default().len(),
        "the first run was not interrupted half-way\n{}",
        proxy.log()
    );
    eprintln!(
        "killed half-way: {forwarded_creates} creates and {forwarded_deletes} deletes had gone through"
    );
    let done_volumes: BTreeSet<String> =
        mid_diff.added.iter().map(|s| s.volume_id.clone()).collect();

    // Again, straight away: the lock died with the process; the volumes done
    // are skipped as recent, the rest snapshotted, the expired ones deleted.
    let second = emu.ebsnap(&["run", "--output", "json"]);
    second.assert_success();
    let after = emu.world_state();
    assert_clean_run_effect(&fleet, &before, &after, 2, &second);
    let doc = second.json();
    let skipped = entries(&doc, "skipped_volumes", &second);
    assert_eq!(ids_of(skipped, "volume_id"), done_volumes, "{second}");
    for entry in skipped {
        assert_eq!(str_field(entry, "reason_code"), Some("recent"), "{entry}");
    }
}

#[test]
fn sigterm_mid_run_finishes_in_flight_calls_starts_nothing_new_and_exits_1() {
    interrupted_mid_run("TERM");
}

#[test]
fn sigint_mid_run_finishes_in_flight_calls_starts_nothing_new_and_exits_1() {
    interrupted_mid_run("INT");
}

/// Runs `ebsnap run` with every mutating call held at the proxy, sends
/// `signal` once the run waits on them, then lets them through.
fn interrupted_mid_run(signal: &str) {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(FaultPlan::none().gate_after(0));
    let running = emu
        .ebsnap_cmd(&["run", "--per-volume", "--output", "json"])
        .via(&proxy)
        .spawn();
    // Wait until the run is blocked on held calls: one is held and nothing new
    // arrived for a second.
    proxy.wait_for("a held call", WAIT, |r| r.iter().any(|r| r.held));
    let mut seen = proxy.records().len();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(1) {
        std::thread::sleep(Duration::from_millis(50));
        let now = proxy.records().len();
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        }
    }
    let in_flight = proxy.records();
    running.signal(signal);
    // Let ebsnap take the signal in before its calls come back (it may log it).
    wait_until(Duration::from_secs(2), || {
        let e = running.stderr_so_far().to_lowercase();
        e.contains("interrupt") || e.contains("sigterm") || e.contains("signal")
    });
    proxy.release(true);
    let run = running.wait();
    let ctx = Ctx(&proxy, &run);
    eprintln!(
        "SIG{signal} after {} calls: {}",
        in_flight.len(),
        fault_summary(&proxy)
    );
    run.assert_exit(1);

    // Nothing started after the signal.
    let records = proxy.records();
    let new_calls: Vec<&ProxyRecord> = records[in_flight.len()..]
        .iter()
        .filter(|r| r.mutating)
        .collect();
    assert!(
        new_calls.is_empty(),
        "mutating calls sent after SIG{signal}: {new_calls:?}\n{ctx}"
    );
    // The in-flight calls finished and are in the report; what was not
    // started is reported failed, interrupted.
    let doc = run.json();
    let after = emu.world_state();
    let diff = before.snapshots.diff(&after.snapshots);
    let created = entries(&doc, "created", &ctx);
    let deleted = entries(&doc, "deleted", &ctx);
    let failed = entries(&doc, "failed", &ctx);
    assert_eq!(ids_of(created, "snapshot_id"), diff.added_ids(), "{ctx}");
    assert_eq!(ids_of(deleted, "snapshot_id"), diff.removed_ids(), "{ctx}");
    assert_eq!(
        diff.added.len(),
        in_flight
            .iter()
            .filter(|r| r.action == "CreateSnapshot" && !r.dry_run)
            .count(),
        "every create in flight finished\n{ctx}"
    );
    let interrupted = |e: &&Value| {
        str_field(e, "reason").is_some_and(|r| r.to_lowercase().contains("interrupted"))
    };
    assert!(
        failed.iter().any(|e| interrupted(&e)),
        "the report says what was interrupted\n{ctx}"
    );
    let done_volumes: BTreeSet<String> = diff.added.iter().map(|s| s.volume_id.clone()).collect();
    let failed_volumes: BTreeSet<String> = failed
        .iter()
        .filter(|e| str_field(e, "action") == Some("create") && interrupted(e))
        .filter_map(|e| str_field(e, "volume_id").map(str::to_string))
        .collect();
    for volume in fleet.selected_volume_ids() {
        assert!(
            done_volumes.contains(&volume) ^ failed_volumes.contains(&volume),
            "volume {volume} is neither snapshotted nor reported interrupted (or both)\n{ctx}"
        );
    }
    // A delete not done is reported failed (not started), or kept because
    // its volume's create was interrupted (safety rule 3).
    let kept = entries(&doc, "kept", &ctx);
    let not_deleted: BTreeSet<String> = failed
        .iter()
        .filter(|e| str_field(e, "action") == Some("delete"))
        .chain(
            kept.iter()
                .filter(|e| str_field(e, "reason_code") == Some("volume_failed")),
        )
        .filter_map(|e| str_field(e, "snapshot_id").map(str::to_string))
        .collect();
    for id in fleet.expired_default() {
        let gone = diff.removed_ids().contains(&id);
        assert!(
            gone ^ not_deleted.contains(&id),
            "expired {id} is neither deleted nor reported not done (or both)\n{ctx}"
        );
    }
    assert!(
        diff.removed_ids().is_subset(&fleet.expired_default()),
        "{ctx}"
    );

    // A re-run converges.
    let again = emu.ebsnap(&["run"]);
    again.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 2, &again);
}

// ---------------------------------------------------------------------------
// Bad input: exit 2, one line saying what is wrong, no mutating call

/// Asserts exit 2, nothing on stdout, and exactly one error line on stderr,
/// holding every one of `all` and at least one of `any` (case-insensitive).
fn assert_refused(run: &EbsnapRun, all: &[&str], any: &[&str]) {
    run.assert_exit(2);
    assert_eq!(run.stdout, "", "exit 2: nothing on stdout\n{run}");
    assert_eq!(
        run.stderr.lines().count(),
        1,
        "bad input: one line on stderr, nothing else\n{run}"
    );
    let error_lines: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| {
            let l = l.trim_start().to_lowercase();
            l.starts_with("error") || l.starts_with("ebsnap:")
        })
        .collect();
    assert_eq!(
        error_lines.len(),
        1,
        "exactly one line saying what is wrong (got {error_lines:?})\n{run}"
    );
    let line = error_lines[0].to_lowercase();
    for f in all {
        assert!(
            line.contains(&f.to_lowercase()),
            "the error line does not name {f:?}\n{run}"
        );
    }
    assert!(
        any.is_empty() || any.iter().any(|f| line.contains(&f.to_lowercase())),
        "the error line names none of {any:?}\n{run}"
    );
}

#[test]
fn bad_input_exits_2_before_any_mutating_call() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(FaultPlan::none());
    // (arguments, fragments the error line must hold)
    let cases: &[(&[&str], &[&str])] = &[
        (&["run", "--retention", "7x"], &["--retention", "7x"]),
        (&["run", "--retention=-1d"], &["--retention", "-1d"]),
        (&["run", "--retention", "0d"], &["--retention", "0d"]),
        (&["purge", "--keep-min=-1"], &["--keep-min", "-1"]),
        (&["purge", "--keep-min", "many"], &["--keep-min", "many"]),
        (&["purge", "--keep-min", "0"], &["--keep-min", "0"]),
        (&["run", "--tag-key", ""], &["--tag-key"]),
        (&["run", "--region", "mars-1"], &["--region", "mars-1"]),
        (&["run", "--output", "yaml"], &["--output", "yaml"]),
        (&["run", "--job", "a;b"], &["--job", "a;b"]),
        (&["run", "-q", "-v"], &["--quiet", "--verbose"]),
        (&["purge", "--max-delete=-1"], &["--max-delete", "-1"]),
        (&["run", "--min-interval", "5x"], &["--min-interval", "5x"]),
        (
            &["snapshot", "--min-interval", "5x"],
            &["--min-interval", "5x"],
        ),
        (&["run", "--max-rate", "0"], &["--max-rate"]),
        (&["run", "--timeout", "0s"], &["--timeout"]),
    ];
    for (args, fragments) in cases {
        let run = emu.ebsnap_cmd(args).via(&proxy).run();
        assert_refused(&run, fragments, &[]);
    }
    // The same through the environment.
    for (var, value) in [
        ("EBSNAP_RETENTION", "7x"),
        ("EBSNAP_MIN_INTERVAL", "5x"),
        ("EBSNAP_KEEP_MIN", "0"),
    ] {
        let run = emu.ebsnap_cmd(&["run"]).via(&proxy).env(var, value).run();
        assert_refused(&run, &[value], &[]);
    }
    // The test suite's time scale, when it is not one.
    for value in ["0", "fast", "1001"] {
        let run = emu
            .ebsnap_cmd(&["run"])
            .via(&proxy)
            .env("EBSNAP_TIME_SCALE", value)
            .run();
        assert_refused(&run, &["EBSNAP_TIME_SCALE", value], &[]);
    }
    assert!(
        proxy.records().iter().all(|r| !r.mutating),
        "a refused invocation sent a mutating call:\n{}",
        proxy.log()
    );
    assert_world_unchanged(&before, &emu.world_state(), &"after the bad invocations");
}

const POLICY_NO_DESCRIBE: &str = r#"{"Version":"2012-10-17","Statement":[
  {"Effect":"Allow","Action":"*","Resource":"*"},
  {"Effect":"Deny","Action":"ec2:Describe*","Resource":"*"}]}"#;

#[test]
fn unusable_credentials_exit_2_before_any_mutating_call() {
    let emu = Emulator::start();
    let _fleet = Fleet::seed(&emu);
    let (key, secret) = emu.create_iam_user("no-describe", POLICY_NO_DESCRIBE);
    let before = emu.world_state();
    let proxy = emu.proxy(FaultPlan::none());

    let none = emu
        .ebsnap_cmd(&["run"])
        .via(&proxy)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .run();

    emu.enforce_iam(true);
    let unknown = emu
        .ebsnap_cmd(&["run"])
        .via(&proxy)
        .env("AWS_ACCESS_KEY_ID", "AKIAEBSNAPUNKNOWN000")
        .env("AWS_SECRET_ACCESS_KEY", "not-a-secret")
        .run();
    let denied = emu
        .ebsnap_cmd(&["run"])
        .via(&proxy)
        .env("AWS_ACCESS_KEY_ID", &key)
        .env("AWS_SECRET_ACCESS_KEY", &secret)
        .run();
    emu.enforce_iam(false);

    assert_refused(&none, &["credentials"], &[]);
    assert_refused(
        &unknown,
        &[],
        &["AuthFailure", "InvalidClientTokenId", "credentials"],
    );
    assert_refused(
        &denied,
        &[],
        &["UnauthorizedOperation", "not authorized", "permission"],
    );
    assert!(
        proxy.records().iter().all(|r| !r.mutating),
        "a mutating call was sent:\n{}",
        proxy.log()
    );
    assert_world_unchanged(&before, &emu.world_state(), &"after the refused runs");
}

// How long ebsnap waits for an endpoint is its timeouts' business (5 s to
// connect, 15 s an attempt, 40 s a call: the unit test
// `an_endpoint_that_never_answers_is_given_up_on_within_a_minute` in
// src/aws/mod.rs); these tests assert that it gives up by itself, and why,
// not how long the machine took.

#[test]
fn an_endpoint_nothing_listens_on_exits_2_within_a_minute() {
    let emu = Emulator::start();
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port())
    };
    let started = Instant::now();
    let run = emu
        .ebsnap_cmd(&["run"])
        .env("AWS_ENDPOINT_URL", &dead)
        .run();
    eprintln!(
        "nothing listening: exit {} after {:?}",
        run.code,
        started.elapsed()
    );
    run.assert_exit(2);
    assert_eq!(run.stdout, "", "{run}");
    assert!(
        run.stderr.contains("Connection refused"),
        "ebsnap gave up on the refused connection and says so\n{run}"
    );
}

#[test]
fn an_endpoint_that_accepts_but_never_answers_exits_2_within_a_minute() {
    let emu = Emulator::start();
    // The kernel accepts the connections (backlog); nobody ever reads or answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let run = emu.ebsnap_cmd(&["run"]).env("AWS_ENDPOINT_URL", &url).run();
    run.assert_exit(2);
    // Given up by its own operation timeout, within the minute.
    assert!(
        run.stderr.contains("operation timeout") && run.stderr.contains("after 40s"),
        "ebsnap gave up on the silent endpoint after its 40 s operation timeout\n{run}"
    );
    drop(silent);
}

#[test]
fn the_time_budget_bounds_a_run_against_a_silent_endpoint() {
    let emu = Emulator::start();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", silent.local_addr().unwrap().port());
    let run = emu
        .ebsnap_cmd(&["run", "--timeout", "10s"])
        .env("AWS_ENDPOINT_URL", &url)
        .run();
    assert_ne!(run.code, 0, "{run}");
    // Ended by the budget, before the 40 s operation timeout, and the
    // message names the budget as the user gave it.
    assert!(
        run.stderr
            .contains("the run's time budget (--timeout 10s) was used up"),
        "--timeout 10s ended the run\n{run}"
    );
    drop(silent);
}

// ---------------------------------------------------------------------------
// The delete guard (safety rule 8)

/// One selected instance, root volume and /dev/sdf, with job snapshots of the
/// given ages (hours) on each. Returns the instance and, per volume, (age, id).
fn small_fleet(
    emu: &Emulator,
    root_ages: &[u32],
    sdf_ages: &[u32],
) -> (String, BTreeMap<String, Vec<(u32, String)>>) {
    let app = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "app")]);
    let root = emu.root_volume(&app).1;
    let sdf = emu.attach_new_volume(&app, "/dev/sdf");
    let mut by_volume = BTreeMap::new();
    for (volume, device, ages) in [
        (&root, "/dev/sda1", root_ages),
        (&sdf, "/dev/sdf", sdf_ages),
    ] {
        let ids = ages
            .iter()
            .map(|h| {
                let run_id = seeded_run_id(*h);
                let id = emu.create_snapshot_aged(
                    volume,
                    *h,
                    &job_tags("default", &app, device, &run_id),
                );
                (*h, id)
            })
            .collect();
        by_volume.insert(volume.clone(), ids);
    }
    (app, by_volume)
}

fn expired_of(by_volume: &BTreeMap<String, Vec<(u32, String)>>) -> BTreeSet<String> {
    by_volume
        .values()
        .flatten()
        .filter(|(h, _)| *h > RETENTION_H)
        .map(|(_, id)| id.clone())
        .collect()
}

/// Asserts a purge refused by the guard: exit 1, nothing deleted, the expired
/// snapshots kept with reason_code delete_guard, a failed `purge` entry naming
/// `numbers` and --force.
fn assert_guard_refused(
    emu: &Emulator,
    run: &EbsnapRun,
    before: &WorldState,
    expired: &BTreeSet<String>,
    numbers: &[u64],
) {
    run.assert_exit(1);
    assert_world_unchanged(before, &emu.world_state(), run);
    let doc = run.json();
    let failed = entries(&doc, "failed", run);
    let purge_failures: Vec<&Value> = failed
        .iter()
        .filter(|e| str_field(e, "action") == Some("purge"))
        .collect();
    assert_eq!(purge_failures.len(), 1, "one failed purge entry\n{run}");
    let reason = str_field(purge_failures[0], "reason").unwrap_or_default();
    for n in numbers {
        assert!(
            numbers_in(reason).contains(n),
            "the refusal names {n}: {reason:?}\n{run}"
        );
    }
    assert!(
        reason.contains("--force"),
        "the refusal says to use --force: {reason:?}\n{run}"
    );
    assert!(entries(&doc, "deleted", run).is_empty(), "{run}");
    let kept = entries(&doc, "kept", run);
    for id in expired {
        let entry = kept
            .iter()
            .find(|e| str_field(e, "snapshot_id") == Some(id.as_str()))
            .unwrap_or_else(|| panic!("expired {id} not in kept\n{run}"));
        assert_eq!(
            str_field(entry, "reason_code"),
            Some("delete_guard"),
            "{entry}\n{run}"
        );
    }
}

#[test]
fn purge_of_more_than_half_of_the_jobs_snapshots_needs_force() {
    let emu = Emulator::start();
    // 5 of the job's 7 snapshots have expired.
    let (_app, by_volume) = small_fleet(
        &emu,
        &[H_0_5D, H_7_5D, H_8_5D, H_9_5D],
        &[H_1_5D, H_7_5D, H_9_5D],
    );
    let expired = expired_of(&by_volume);
    assert_eq!(expired.len(), 5);
    let before = emu.world_state();

    let run = emu.ebsnap(&["purge", "--output", "json"]);
    assert_guard_refused(&emu, &run, &before, &expired, &[5, 7]);

    let forced = emu.ebsnap(&["purge", "--force", "--output", "json"]);
    forced.assert_success();
    let diff = before.snapshots.diff(&emu.snapshot_state());
    assert_eq!(diff.removed_ids(), expired, "{forced}");
    assert!(diff.added.is_empty(), "{forced}");
}

#[test]
fn purge_of_more_than_max_delete_needs_force() {
    let emu = Emulator::start();
    // 3 of 8 expired: under half, over --max-delete 2.
    let (_app, by_volume) = small_fleet(
        &emu,
        &[H_0_5D, H_1_5D, H_2_5D, H_7_5D, H_9_5D],
        &[H_0_5D, H_2_5D, H_8_5D],
    );
    let expired = expired_of(&by_volume);
    assert_eq!(expired.len(), 3);
    let before = emu.world_state();

    let run = emu.ebsnap(&["purge", "--max-delete", "2", "--output", "json"]);
    assert_guard_refused(&emu, &run, &before, &expired, &[3, 2]);

    let forced = emu.ebsnap(&["purge", "--force", "--max-delete", "2"]);
    forced.assert_success();
    let diff = before.snapshots.diff(&emu.snapshot_state());
    assert_eq!(diff.removed_ids(), expired, "{forced}");
    assert!(diff.added.is_empty(), "{forced}");
}

// ---------------------------------------------------------------------------
// --min-interval

#[test]
fn an_immediate_second_run_creates_nothing_unless_min_interval_is_0() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();

    let first = emu.ebsnap(&["run", "--output", "json"]);
    first.assert_success();
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &first);
    let after_first = emu.world_state();

    // A double-fired cron entry: nothing to do.
    let second = emu.ebsnap(&["run", "--output", "json"]);
    second.assert_success();
    assert_world_unchanged(&after_first, &emu.world_state(), &second);
    let doc = second.json();
    assert!(entries(&doc, "created", &second).is_empty(), "{second}");
    assert!(entries(&doc, "failed", &second).is_empty(), "{second}");
    let skipped = entries(&doc, "skipped_volumes", &second);
    assert_eq!(
        ids_of(skipped, "volume_id"),
        fleet.selected_volume_ids(),
        "{second}"
    );
    assert_eq!(skipped.len(), fleet.selected().len(), "{second}");
    for sel in fleet.selected() {
        let entry = skipped
            .iter()
            .find(|e| str_field(e, "volume_id") == Some(sel.volume_id.as_str()))
            .unwrap();
        assert_eq!(str_field(entry, "reason_code"), Some("recent"), "{entry}");
        assert_eq!(
            str_field(entry, "instance_id"),
            Some(sel.instance_id.as_str()),
            "{entry}"
        );
        assert_eq!(str_field(entry, "region"), Some(REGION), "{entry}");
        assert!(
            str_field(entry, "reason").is_some_and(|r| !r.is_empty()),
            "skipped without a reason: {entry}"
        );
    }

    // --min-interval 0: snapshot again.
    let third = emu.ebsnap(&["run", "--min-interval", "0"]);
    third.assert_success();
    let diff = after_first.snapshots.diff(&emu.snapshot_state());
    assert_one_new_per_selected_volume(&fleet, &diff, "default", 1, &third);
    assert!(diff.removed.is_empty(), "{third}");
}

#[test]
fn min_interval_counts_only_the_jobs_own_snapshots() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.snapshot_state();
    // weekly has a 0.5-day-old snapshot of web's root only; the default job's
    // 0.5-day-old snapshot of db's /dev/sdf does not count for weekly.
    let run = emu.ebsnap(&[
        "snapshot",
        "--job",
        "weekly",
        "--min-interval",
        "1d",
        "--output",
        "json",
    ]);
    run.assert_success();
    let diff = before.diff(&emu.snapshot_state());
    let got: BTreeSet<String> = diff.added.iter().map(|s| s.volume_id.clone()).collect();
    let mut expected = fleet.selected_volume_ids();
    expected.remove(&fleet.web_root);
    assert_eq!(got, expected, "{run}");
    assert_eq!(diff.added.len(), expected.len(), "{run}");
    let doc = run.json();
    let skipped = entries(&doc, "skipped_volumes", &run);
    assert_eq!(
        ids_of(skipped, "volume_id"),
        BTreeSet::from([fleet.web_root.clone()]),
        "{run}"
    );
}

// ---------------------------------------------------------------------------
// The default: one CreateSnapshots per instance, then CreateTags per snapshot

#[test]
fn create_snapshots_lost_answers_and_throttled_tags_still_converge() {
    let emu = Emulator::start();
    let fleet = Fleet::seed(&emu);
    let before = emu.world_state();
    let proxy = emu.proxy(
        FaultPlan::none()
            .first_attempts("CreateSnapshots", Fault::LostAnswer, 1)
            .first_attempts("CreateTags", Fault::Throttle, 1),
    );

    let run = emu
        .ebsnap_cmd(&["run", "--output", "json"])
        .via(&proxy)
        .run();
    let ctx = Ctx(&proxy, &run);
    eprintln!("CreateSnapshots faults: {}", fault_summary(&proxy));
    run.assert_success();
    let instances: BTreeSet<String> = fleet
        .selected()
        .iter()
        .map(|s| s.instance_id.clone())
        .collect();
    assert_eq!(proxy.faulted(&Fault::LostAnswer), instances.len(), "{ctx}");
    assert!(proxy.faulted(&Fault::Throttle) > 0, "{ctx}");
    // Exactly one new snapshot per selected volume, every tag of the contract,
    // exactly the expired ones gone, nothing else changed.
    assert_clean_run_effect(&fleet, &before, &emu.world_state(), 1, &ctx);
    let doc = run.json();
    assert!(entries(&doc, "failed", &ctx).is_empty(), "{ctx}");
    // Safety rule 7: each instance's CreateSnapshots took effect the first
    // time; the look after the lost answer found its snapshots.
    for instance in &instances {
        let calls = proxy
            .records()
            .iter()
            .filter(|r| {
                r.action == "CreateSnapshots"
                    && !r.dry_run
                    && r.resource.as_deref() == Some(instance.as_str())
            })
            .count();
        assert_eq!(
            calls, 1,
            "instance {instance}: looked up, not sent again\n{ctx}"
        );
    }
}

// ---------------------------------------------------------------------------
// The EC2 twin (tests/it/support/twin.rs), probed directly with an SDK client
// pointed at the proxy: each behaviour does what EC2 does.

// The probes' closures return the SDK's own results, whose error is large.
#[allow(clippy::result_large_err)]
mod twin_probes {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use aws_sdk_ec2::error::ProvideErrorMetadata;
    use aws_sdk_ec2::types::{
        LockState, ResourceType, SnapshotState, StorageTier, Tag, VolumeType,
    };

    use crate::support::twin::*;
    use crate::support::*;

    /// The error code of a failed call, with the error for the message.
    fn code<E: ProvideErrorMetadata + std::fmt::Debug>(
        result: Result<impl std::fmt::Debug, E>,
    ) -> (String, String) {
        let err = result.expect_err("the call is refused");
        (
            err.code().unwrap_or("-").to_string(),
            err.message().unwrap_or("").to_string(),
        )
    }

    /// The last record of `action` the proxy saw.
    fn last(proxy: &FaultProxy, action: &str) -> ProxyRecord {
        proxy
            .records()
            .into_iter()
            .rev()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("no {action} seen:\n{}", proxy.log()))
    }

    fn twin_note(record: &ProxyRecord) -> &str {
        record.twin.as_deref().unwrap_or("")
    }

    /// A refusal of the twin's: answered, never forwarded, and noted.
    fn assert_refused_by_twin(proxy: &FaultProxy, action: &str, note: &str) {
        let record = last(proxy, action);
        assert!(
            !record.forwarded && record.status == Some(400) && twin_note(&record).contains(note),
            "{action} refused by the twin ({note}): {record}\n{}",
            proxy.twin_log()
        );
    }

    #[test]
    fn twin_consistency_window_hides_new_snapshots_until_it_ends() {
        let emu = Emulator::start();
        let instance = emu.launch_instance(&[]);
        let (_, volume) = emu.root_volume(&instance);
        let seeded = emu.create_snapshot_aged(&volume, 0, &[]);
        let window = Duration::from_secs(15);
        // The first CreateSnapshot takes effect and its answer is lost: the
        // window covers what it made too. The twin's clock stands still
        // until the test moves it: every check below is inside the window.
        let proxy = emu.proxy(
            FaultPlan::none()
                .manual_clock()
                .consistency_window(window)
                .first_attempts("CreateSnapshot", Fault::LostAnswer, 1),
        );
        let client = proxy.sdk_client(&emu);
        let run_tag = || tag_spec(ResourceType::Snapshot, &[("ebsnap:run-id", "twin-run")]);
        let before = emu.snapshot_state();

        // Made four ways.
        let mut made: Vec<String> = Vec::new();
        let lost = emu.block_on(
            client
                .create_snapshot()
                .volume_id(&volume)
                .tag_specifications(run_tag())
                .send(),
        );
        assert_eq!(code(lost).0, "InternalError");
        let diff = before.diff(&emu.snapshot_state());
        assert_eq!(diff.added.len(), 1, "the lost create took effect: {diff:?}");
        made.push(diff.added_ids().into_iter().next().unwrap());
        let out = emu
            .block_on(
                client
                    .create_snapshot()
                    .volume_id(&volume)
                    .tag_specifications(run_tag())
                    .send(),
            )
            .expect("CreateSnapshot");
        let id = out.snapshot_id().unwrap().to_string();
        made.push(id.clone());
        let out = emu
            .block_on(
                client
                    .create_snapshots()
                    .instance_specification(
                        aws_sdk_ec2::types::InstanceSpecification::builder()
                            .instance_id(&instance)
                            .build(),
                    )
                    .tag_specifications(run_tag())
                    .send(),
            )
            .expect("CreateSnapshots");
        for s in out.snapshots() {
            made.push(s.snapshot_id().unwrap().to_string());
        }
        let out = emu
            .block_on(
                client
                    .copy_snapshot()
                    .source_snapshot_id(&seeded)
                    .source_region(REGION)
                    .tag_specifications(run_tag())
                    .send(),
            )
            .expect("CopySnapshot");
        made.push(out.snapshot_id().unwrap().to_string());
        assert_eq!(made.len(), 4, "{made:?}");
        let on_moto = emu.snapshot_state();
        for snap in &made {
            assert!(on_moto.contains(snap), "{snap} exists on the emulator");
        }

        // The run's snapshots DescribeSnapshots lists, filtered on the server.
        let listed_run = || -> BTreeSet<String> {
            emu.block_on(
                client
                    .describe_snapshots()
                    .owner_ids("self")
                    .filters(filter("tag:ebsnap:run-id", "twin-run"))
                    .send(),
            )
            .expect("DescribeSnapshots filtered")
            .snapshots()
            .iter()
            .filter_map(|s| s.snapshot_id().map(String::from))
            .collect()
        };
        let listed = listed_run();
        for snap in &made {
            assert!(
                !listed.contains(snap),
                "{snap} left out of a filtered describe: {listed:?}"
            );
        }
        type Check<'a> = (&'a str, Box<dyn Fn() -> (String, String) + 'a>);
        let checks: Vec<Check> = vec![
            (
                "DescribeSnapshots",
                Box::new(|| {
                    code(emu.block_on(client.describe_snapshots().snapshot_ids(&id).send()))
                }),
            ),
            (
                "CreateTags",
                Box::new(|| {
                    code(
                        emu.block_on(
                            client
                                .create_tags()
                                .resources(&id)
                                .tags(Tag::builder().key("Name").value("x").build())
                                .send(),
                        ),
                    )
                }),
            ),
            (
                "DeleteSnapshot",
                Box::new(|| code(emu.block_on(client.delete_snapshot().snapshot_id(&id).send()))),
            ),
            (
                "CreateVolume",
                Box::new(|| {
                    code(
                        emu.block_on(
                            client
                                .create_volume()
                                .snapshot_id(&id)
                                .availability_zone(AZ)
                                .send(),
                        ),
                    )
                }),
            ),
            (
                "CopySnapshot",
                Box::new(|| {
                    code(
                        emu.block_on(
                            client
                                .copy_snapshot()
                                .source_snapshot_id(&id)
                                .source_region(REGION)
                                .send(),
                        ),
                    )
                }),
            ),
        ];
        for (action, check) in &checks {
            let (code, message) = check();
            assert_eq!(code, "InvalidSnapshot.NotFound", "{action}: {message}");
            assert_eq!(
                message,
                format!("The snapshot '{id}' does not exist."),
                "{action}"
            );
            assert_refused_by_twin(&proxy, action, "consistency window");
        }
        assert!(
            emu.snapshot_state().contains(&id),
            "the refused delete did not reach the emulator"
        );

        // A second before the window ends: still hidden.
        let by_id = || emu.block_on(client.describe_snapshots().snapshot_ids(&id).send());
        proxy.advance(window - Duration::from_secs(1));
        assert_eq!(code(by_id()).0, "InvalidSnapshot.NotFound");
        // Once it has ended: found by id, listed, taggable.
        proxy.advance(Duration::from_secs(1));
        by_id().unwrap_or_else(|e| panic!("{id} visible once its window ended: {e:?}"));
        let all: BTreeSet<String> = made.iter().cloned().collect();
        let listed = listed_run();
        assert!(
            all.is_subset(&listed),
            "every new snapshot listed once the window ended: {listed:?}\n{}",
            proxy.twin_log()
        );
        emu.block_on(
            client
                .create_tags()
                .resources(&id)
                .tags(Tag::builder().key("Name").value("x").build())
                .send(),
        )
        .expect("CreateTags after the window");
        assert!(last(&proxy, "CreateTags").forwarded);
        assert_eq!(emu.snapshot(&id).tag("Name"), Some("x"));
        eprintln!("what the twin did:\n{}", proxy.twin_log());
    }

    #[test]
    fn twin_slow_create_is_carried_out_after_the_client_gave_up() {
        let emu = Emulator::start();
        let instance = emu.launch_instance(&[]);
        let (_, volume) = emu.root_volume(&instance);
        // The create is held until the client gives up on it.
        let proxy = emu.proxy(FaultPlan::none().slow_creates_first(1));
        // The client gives up on an attempt after 1 s.
        let client = aws_sdk_ec2::Client::from_conf(
            proxy
                .sdk_client(&emu)
                .config()
                .to_builder()
                .timeout_config(
                    aws_sdk_ec2::config::timeout::TimeoutConfig::builder()
                        .operation_attempt_timeout(Duration::from_secs(1))
                        .build(),
                )
                .build(),
        );
        let before = emu.snapshot_state();
        let err = emu
            .block_on(client.create_snapshot().volume_id(&volume).send())
            .expect_err("the held create times out");
        assert!(
            matches!(err, aws_sdk_ec2::error::SdkError::TimeoutError(_)),
            "{err:?}"
        );
        // EC2 carries it out all the same, once the client gave up on it:
        // the client closes the connection as its runtime runs on.
        let forwarded = emu.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            while tokio::time::Instant::now() < deadline {
                let records = proxy.records();
                if records
                    .iter()
                    .any(|r| r.action == "CreateSnapshot" && r.forwarded)
                {
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        });
        assert!(forwarded, "the held create forwarded\n{}", proxy.log());
        let record = last(&proxy, "CreateSnapshot");
        assert!(
            twin_note(&record).contains("held until the client gave up on it (slow create)"),
            "{record}"
        );
        let diff = before.diff(&emu.snapshot_state());
        assert_eq!(
            diff.added.len(),
            1,
            "the timed-out create took effect: {diff:?}"
        );
        // Only the first create is slow: the next one answers in time.
        let out = emu
            .block_on(client.create_snapshot().volume_id(&volume).send())
            .expect("the second create is not held");
        assert!(emu.snapshot_state().contains(out.snapshot_id().unwrap()));
        assert!(!twin_note(&last(&proxy, "CreateSnapshot")).contains("slow create"));
    }

    #[test]
    fn twin_error_and_recoverable_states_show_in_describes() {
        let emu = Emulator::start();
        let vol_a = emu.create_volume(4);
        let vol_b = emu.create_volume(4);
        let s1 = emu.create_snapshot_aged(&vol_a, 0, &[]);
        let s2 = emu.create_snapshot_aged(&vol_a, 0, &[]);
        let s3 = emu.create_snapshot_aged(&vol_b, 0, &[]);
        let proxy = emu.proxy(
            FaultPlan::none()
                .snapshot_state(&s1, "error")
                .snapshot_state(&vol_b, "recoverable"),
        );
        let client = proxy.sdk_client(&emu);
        let states = |out: &aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput| {
            out.snapshots()
                .iter()
                .map(|s| (s.snapshot_id().unwrap().to_string(), s.state().cloned()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let out = emu
            .block_on(
                client
                    .describe_snapshots()
                    .snapshot_ids(&s1)
                    .snapshot_ids(&s2)
                    .snapshot_ids(&s3)
                    .send(),
            )
            .expect("DescribeSnapshots");
        let seen = states(&out);
        assert_eq!(seen[&s1], Some(SnapshotState::Error), "{seen:?}");
        assert_eq!(seen[&s2], Some(SnapshotState::Completed), "{seen:?}");
        assert_eq!(seen[&s3], Some(SnapshotState::Recoverable), "{seen:?}");
        // A status filter sees the twin's states, not the emulator's.
        let out = emu
            .block_on(
                client
                    .describe_snapshots()
                    .snapshot_ids(&s1)
                    .snapshot_ids(&s2)
                    .snapshot_ids(&s3)
                    .filters(filter("status", "completed"))
                    .send(),
            )
            .expect("DescribeSnapshots status=completed");
        assert_eq!(
            states(&out).into_keys().collect::<Vec<_>>(),
            std::slice::from_ref(&s2)
        );
        // The emulator itself still has them all completed.
        for s in [&s1, &s2, &s3] {
            assert_eq!(emu.snapshot(s).state, "completed");
        }
        assert!(twin_note(&last(&proxy, "DescribeSnapshots")).contains("left out"));
    }

    #[test]
    fn twin_archived_snapshot_refuses_create_volume_and_copy_but_not_delete() {
        let emu = Emulator::start();
        let volume = emu.create_volume(4);
        let archived = emu.create_snapshot_aged(&volume, 0, &[]);
        let standard = emu.create_snapshot_aged(&volume, 0, &[]);
        let proxy = emu.proxy(FaultPlan::none().archived(&archived));
        let client = proxy.sdk_client(&emu);
        let out = emu
            .block_on(
                client
                    .describe_snapshots()
                    .snapshot_ids(&archived)
                    .snapshot_ids(&standard)
                    .send(),
            )
            .expect("DescribeSnapshots");
        for s in out.snapshots() {
            let is_archived = s.snapshot_id() == Some(archived.as_str());
            let tier = if is_archived {
                StorageTier::Archive
            } else {
                StorageTier::Standard
            };
            assert_eq!(s.storage_tier(), Some(&tier), "{s:?}");
            assert_eq!(s.state(), Some(&SnapshotState::Completed), "{s:?}");
            assert!(s.restore_expiry_time().is_none(), "{s:?}");
        }
        let (c, message) = code(
            emu.block_on(
                client
                    .create_volume()
                    .snapshot_id(&archived)
                    .availability_zone(AZ)
                    .send(),
            ),
        );
        assert_eq!(c, ARCHIVED_ERROR_CODE, "{message}");
        assert_refused_by_twin(&proxy, "CreateVolume", "archived");
        let (c, message) = code(
            emu.block_on(
                client
                    .copy_snapshot()
                    .source_snapshot_id(&archived)
                    .source_region(REGION)
                    .send(),
            ),
        );
        assert_eq!(c, ARCHIVED_ERROR_CODE, "{message}");
        assert_refused_by_twin(&proxy, "CopySnapshot", "archived");
        // The standard one restores; the archived one can be deleted.
        emu.block_on(
            client
                .create_volume()
                .snapshot_id(&standard)
                .availability_zone(AZ)
                .send(),
        )
        .expect("CreateVolume from a standard-tier snapshot");
        emu.block_on(client.delete_snapshot().snapshot_id(&archived).send())
            .expect("DeleteSnapshot of an archived snapshot");
        assert!(!emu.snapshot_state().contains(&archived));
    }

    #[test]
    fn twin_locked_snapshot_refuses_delete_and_is_described_as_locked() {
        let emu = Emulator::start();
        let vol_a = emu.create_volume(4);
        let vol_b = emu.create_volume(4);
        let s1 = emu.create_snapshot_aged(&vol_a, 0, &[]);
        let free = emu.create_snapshot_aged(&vol_a, 0, &[]);
        let s3 = emu.create_snapshot_aged(&vol_b, 0, &[]);
        let proxy = emu.proxy(FaultPlan::none().locked(&s1, "governance", 30).locked(
            &vol_b,
            "compliance",
            7,
        ));
        let client = proxy.sdk_client(&emu);
        let out = emu
            .block_on(client.describe_locked_snapshots().snapshot_ids(&s1).send())
            .expect("DescribeLockedSnapshots by id");
        let [lock] = out.snapshots() else {
            panic!("one locked snapshot: {out:?}")
        };
        assert_eq!(lock.snapshot_id(), Some(s1.as_str()));
        assert_eq!(lock.lock_state(), Some(&LockState::Governance));
        assert_eq!(lock.lock_duration(), Some(30));
        assert_eq!(lock.owner_id(), Some(ACCOUNT_ID));
        let expires = lock.lock_expires_on().expect("LockExpiresOn").secs();
        let in_30_days = chrono::Utc::now().timestamp() + 30 * 86_400;
        assert!((expires - in_30_days).abs() < 3_600, "{lock:?}");
        assert!(lock.lock_created_on().is_some() && lock.lock_duration_start_time().is_some());
        // Unfiltered: both locked snapshots, the one locked through its volume too.
        let out = emu
            .block_on(client.describe_locked_snapshots().send())
            .expect("DescribeLockedSnapshots");
        let ids: BTreeSet<&str> = out
            .snapshots()
            .iter()
            .filter_map(|l| l.snapshot_id())
            .collect();
        assert_eq!(ids, BTreeSet::from([s1.as_str(), s3.as_str()]));
        let out = emu
            .block_on(
                client
                    .describe_locked_snapshots()
                    .filters(filter("lock-state", "compliance"))
                    .send(),
            )
            .expect("DescribeLockedSnapshots lock-state=compliance");
        let ids: Vec<&str> = out
            .snapshots()
            .iter()
            .filter_map(|l| l.snapshot_id())
            .collect();
        assert_eq!(ids, [s3.as_str()]);
        let (c, _) = code(emu.block_on(client.describe_locked_snapshots().dry_run(true).send()));
        assert_eq!(c, "DryRunOperation");
        // Deleting a locked snapshot is refused; an unlocked one goes.
        for locked in [&s1, &s3] {
            let (c, message) =
                code(emu.block_on(client.delete_snapshot().snapshot_id(locked).send()));
            assert_eq!(c, LOCKED_ERROR_CODE, "{message}");
            assert_refused_by_twin(&proxy, "DeleteSnapshot", "locked");
            assert!(emu.snapshot_state().contains(locked));
        }
        emu.block_on(client.delete_snapshot().snapshot_id(&free).send())
            .expect("DeleteSnapshot of an unlocked snapshot");
        assert!(!emu.snapshot_state().contains(&free));
    }

    #[test]
    fn twin_per_volume_rate_and_pending_limits() {
        let emu = Emulator::start();
        let gp2 = emu.create_volume(4);
        let st1 = emu
            .block_on(
                emu.client()
                    .create_volume()
                    .availability_zone(AZ)
                    .size(125)
                    .volume_type(VolumeType::St1)
                    .send(),
            )
            .expect("CreateVolume st1")
            .volume_id()
            .unwrap()
            .to_string();
        let pending_for = Duration::from_secs(90);
        // The twin's clock moves only when the test moves it.
        let proxy = emu.proxy(FaultPlan::none().manual_clock().volume_limits(pending_for));
        let client = proxy.sdk_client(&emu);
        let create = |volume: &str| emu.block_on(client.create_snapshot().volume_id(volume).send());

        let first = create(&gp2).expect("the first create of a volume");
        assert_eq!(first.state(), Some(&SnapshotState::Pending), "{first:?}");
        let first = first.snapshot_id().unwrap().to_string();
        let out = emu
            .block_on(client.describe_snapshots().snapshot_ids(&first).send())
            .expect("DescribeSnapshots");
        assert_eq!(out.snapshots()[0].state(), Some(&SnapshotState::Pending));
        assert_eq!(
            emu.snapshot(&first).state,
            "completed",
            "the emulator completed it"
        );
        // A second create of the volume within 15 s is refused.
        let (c, message) = code(create(&gp2));
        assert_eq!(c, "SnapshotCreationPerVolumeRateExceeded", "{message}");
        assert_refused_by_twin(
            &proxy,
            "CreateSnapshot",
            "SnapshotCreationPerVolumeRateExceeded",
        );

        // st1: one pending snapshot is the limit.
        create(&st1).expect("the first create of the st1 volume");
        proxy.advance(RATE_WINDOW);
        let (c, message) = code(create(&st1));
        assert_eq!(c, "ConcurrentSnapshotLimitExceeded", "{message}");
        assert_refused_by_twin(&proxy, "CreateSnapshot", "ConcurrentSnapshotLimitExceeded");
        // gp2, past its rate window with one pending: allowed (limit 5).
        create(&gp2).expect("a gp2 volume may have more than one pending snapshot");

        // CreateSnapshots is judged per volume of the instance, boot volume
        // excluded when asked.
        let instance = emu.launch_instance(&[]);
        let (_, root) = emu.root_volume(&instance);
        let data = emu.attach_new_volume(&instance, "/dev/sdf");
        let spec = |exclude_boot: bool| {
            aws_sdk_ec2::types::InstanceSpecification::builder()
                .instance_id(&instance)
                .exclude_boot_volume(exclude_boot)
                .build()
        };
        create(&root).expect("a create of the root volume");
        let all = emu.block_on(
            client
                .create_snapshots()
                .instance_specification(spec(false))
                .send(),
        );
        let (c, message) = code(all);
        assert_eq!(c, "SnapshotCreationPerVolumeRateExceeded", "{message}");
        let record = last(&proxy, "CreateSnapshots");
        assert!(twin_note(&record).contains(&root), "{record}");
        let data_only = emu
            .block_on(
                client
                    .create_snapshots()
                    .instance_specification(spec(true))
                    .send(),
            )
            .expect("CreateSnapshots without the boot volume");
        let volumes: Vec<&str> = data_only
            .snapshots()
            .iter()
            .filter_map(|s| s.volume_id())
            .collect();
        assert_eq!(volumes, [data.as_str()]);
        eprintln!("what the twin did:\n{}", proxy.twin_log());
    }

    #[test]
    fn twin_tag_limits_refuse_as_ec2_does() {
        let emu = Emulator::start();
        let volume = emu.create_volume(4);
        let full = emu.create_snapshot_aged(&volume, 0, &[]);
        let tags: Vec<(String, String)> = (0..48).map(|i| (format!("k{i}"), "v".into())).collect();
        let tag_refs: Vec<(&str, &str)> =
            tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        emu.create_tags(&full, &tag_refs);
        let fresh = emu.create_snapshot_aged(&volume, 0, &[]);
        let proxy = emu.proxy(FaultPlan::none().tag_limits());
        let client = proxy.sdk_client(&emu);
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        let create_tags = |resource: &str, new: Vec<Tag>| {
            emu.block_on(
                client
                    .create_tags()
                    .resources(resource)
                    .set_tags(Some(new))
                    .send(),
            )
        };

        // 48 + 3 new = 51: refused; 48 + 2 = 50: allowed; same keys overwrite.
        let (c, message) = code(create_tags(
            &full,
            vec![tag("n1", "v"), tag("n2", "v"), tag("n3", "v")],
        ));
        assert_eq!(c, "TagLimitExceeded", "{message}");
        assert_refused_by_twin(&proxy, "CreateTags", "TagLimitExceeded");
        create_tags(&full, vec![tag("n1", "v"), tag("n2", "v")]).expect("the 50th tag");
        create_tags(&full, vec![tag("k0", "new value")])
            .expect("overwriting a tag of a full resource");
        assert_eq!(emu.snapshot(&full).tags.len(), 50);
        // Key and value lengths, in characters.
        let (c, message) = code(create_tags(
            &fresh,
            vec![tag(&"k".repeat(MAX_TAG_KEY + 1), "v")],
        ));
        assert_eq!(c, "InvalidParameterValue", "{message}");
        assert_refused_by_twin(&proxy, "CreateTags", "InvalidParameterValue");
        let (c, message) = code(create_tags(
            &fresh,
            vec![tag("k", &"v".repeat(MAX_TAG_VALUE + 1))],
        ));
        assert_eq!(c, "InvalidParameterValue", "{message}");
        create_tags(
            &fresh,
            vec![tag(&"é".repeat(MAX_TAG_KEY), &"é".repeat(MAX_TAG_VALUE))],
        )
        .expect("a key and a value at their maximum length");
        // A create with too many tags is refused before anything is made.
        let before = emu.snapshot_state();
        let many: Vec<(String, String)> = (0..MAX_TAGS + 1)
            .map(|i| (format!("t{i}"), "v".into()))
            .collect();
        let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (c, message) = code(
            emu.block_on(
                client
                    .create_snapshot()
                    .volume_id(&volume)
                    .tag_specifications(tag_spec(ResourceType::Snapshot, &many))
                    .send(),
            ),
        );
        assert_eq!(c, "TagLimitExceeded", "{message}");
        assert_refused_by_twin(&proxy, "CreateSnapshot", "TagLimitExceeded");
        assert!(before.diff(&emu.snapshot_state()).added.is_empty());
    }
}

/// A purge sends its deletes as wide as the delete bucket's burst (100 at
/// the default --max-rate, EC2's own), not a handful at a time: with every
/// call that changes the account held at the proxy, all of a 20-odd delete
/// purge is in flight at once (before, 8 were, and the rest waited for them).
#[test]
fn a_purge_sends_its_deletes_as_wide_as_the_delete_buckets_burst() {
    let emu = Emulator::start();
    let mut fleet = Fleet::seed(&emu);
    let web = fleet.web.clone();
    let volume = emu.attach_new_volume(&web, "/dev/sdh");
    for hours in 0..20 {
        fleet.seed_job(&emu, "default", &web, &volume, "/dev/sdh", H_9_5D + hours);
    }
    // More than half of the job's good backups: the delete guard wants --force.
    let dry = emu.ebsnap(&["purge", "--force", "--dry-run", "--output", "json"]);
    dry.assert_success();
    let planned = dry.json()["deleted"].as_array().expect("deleted").len();
    assert!(planned > 16, "a purge wider than the old 8 in flight: {planned}\n{dry}");
    let before = emu.world_state();

    let proxy = emu.proxy(FaultPlan::none().gate_after(0));
    let running = emu
        .ebsnap_cmd(&["purge", "--force", "--output", "json"])
        .via(&proxy)
        .spawn();
    let held_deletes = |records: &[ProxyRecord]| {
        records
            .iter()
            .filter(|r| r.action == "DeleteSnapshot" && r.held)
            .filter_map(|r| r.resource.clone())
            .collect::<BTreeSet<String>>()
            .len()
    };
    proxy.wait_for("every planned delete held at once", WAIT, |records| {
        held_deletes(records) == planned
    });
    proxy.release(true);
    let run = running.wait();
    run.assert_success();
    let diff = before.snapshots.diff(&emu.world_state().snapshots);
    assert_eq!(diff.removed.len(), planned, "every planned delete done\n{run}");
}
