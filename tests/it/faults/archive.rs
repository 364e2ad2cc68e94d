//! The EC2 twin's archive tier (`FaultPlan::archive_tier`), driven with the
//! SDK client the harness provides (not the ebsnap binary): what the twin
//! answers is what ebsnap's `--archive-after`, purge and
//! `restore --from-archive` will be tested against, so it is pinned here.
//! Named twin_* with the other probes of the twin: `cargo test twin_`.
//! The twin's clock is a manual one here (`FaultPlan::manual_clock`): each
//! phase lasts until the test moves the clock past it.

use std::time::Duration;

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    Filter, SnapshotState, SnapshotTierStatus, StorageTier, TargetStorageTier,
    TieringOperationStatus,
};

use crate::support::twin::*;
use crate::support::*;

/// Short enough for a test.
const ARCHIVAL: Duration = Duration::from_secs(2);
const RESTORE: Duration = Duration::from_secs(2);
/// On the twin's manual clock (`FaultPlan::manual_clock`), which the test
/// moves past each phase once it has looked at it.
const SLOW_ARCHIVAL: Duration = Duration::from_secs(8);
const SLOW_RESTORE: Duration = Duration::from_secs(6);

/// The error code of a failed call, with its message.
fn code<E: ProvideErrorMetadata + std::fmt::Debug>(
    result: Result<impl std::fmt::Debug, E>,
) -> (String, String) {
    let err = result.expect_err("the call is refused");
    (
        err.code().unwrap_or("-").to_string(),
        err.message().unwrap_or("").to_string(),
    )
}

/// ModifySnapshotTier of `id` to the archive tier, through `client`: the
/// SDK's own result, whose error is large.
#[allow(clippy::result_large_err)]
fn modify_tier(
    emu: &Emulator,
    client: &aws_sdk_ec2::Client,
    id: &str,
    dry_run: bool,
) -> Result<
    aws_sdk_ec2::operation::modify_snapshot_tier::ModifySnapshotTierOutput,
    aws_sdk_ec2::error::SdkError<
        aws_sdk_ec2::operation::modify_snapshot_tier::ModifySnapshotTierError,
        aws_sdk_ec2::config::http::HttpResponse,
    >,
> {
    emu.block_on(
        client
            .modify_snapshot_tier()
            .snapshot_id(id)
            .storage_tier(TargetStorageTier::Archive)
            .dry_run(dry_run)
            .send(),
    )
}

fn last(proxy: &FaultProxy, action: &str) -> ProxyRecord {
    proxy
        .records()
        .into_iter()
        .rev()
        .find(|r| r.action == action)
        .unwrap_or_else(|| panic!("no {action} seen:\n{}", proxy.log()))
}

fn filter(name: &str, values: &[&str]) -> Filter {
    let mut f = Filter::builder().name(name);
    for v in values {
        f = f.values(*v);
    }
    f.build()
}

fn tier_status(emu: &Emulator, client: &aws_sdk_ec2::Client, id: &str) -> SnapshotTierStatus {
    let out = emu
        .block_on(
            client
                .describe_snapshot_tier_status()
                .filters(filter("snapshot-id", &[id]))
                .send(),
        )
        .expect("DescribeSnapshotTierStatus");
    assert_eq!(out.snapshot_tier_statuses().len(), 1, "{out:?}");
    out.snapshot_tier_statuses()[0].clone()
}

fn storage_tier(
    emu: &Emulator,
    client: &aws_sdk_ec2::Client,
    id: &str,
) -> aws_sdk_ec2::types::Snapshot {
    let out = emu
        .block_on(client.describe_snapshots().snapshot_ids(id).send())
        .expect("DescribeSnapshots");
    out.snapshots()[0].clone()
}

fn create_volume(
    emu: &Emulator,
    client: &aws_sdk_ec2::Client,
    id: &str,
) -> Result<(), (String, String)> {
    match emu.block_on(
        client
            .create_volume()
            .snapshot_id(id)
            .availability_zone(AZ)
            .send(),
    ) {
        Ok(_) => Ok(()),
        Err(e) => Err((
            e.code().unwrap_or("-").to_string(),
            e.message().unwrap_or("").to_string(),
        )),
    }
}

/// Seconds since the epoch of an SDK timestamp.
fn secs(t: Option<&aws_sdk_ec2::primitives::DateTime>) -> i64 {
    t.unwrap_or_else(|| panic!("a timestamp")).secs()
}

#[test]
fn twin_archive_tier_archives_restores_and_refuses_as_ec2_does() {
    let emu = Emulator::start();
    let volume = emu.create_volume(4);
    let snap = emu.create_snapshot_aged(&volume, 0, &[("ebsnap:job", "default")]);
    let proxy = emu.proxy(
        FaultPlan::none()
            .manual_clock()
            .archive_tier(SLOW_ARCHIVAL, SLOW_RESTORE),
    );
    let client = proxy.sdk_client(&emu);
    let ctx = || format!("{}\n{}", proxy.log(), proxy.twin_log());

    // Archive: answered by the twin, in progress, still usable.
    let out = modify_tier(&emu, &client, &snap, false).expect("ModifySnapshotTier");
    assert_eq!(out.snapshot_id(), Some(snap.as_str()));
    assert!(out.tiering_start_time().is_some(), "{out:?}");
    let status = tier_status(&emu, &client, &snap);
    assert_eq!(
        status.last_tiering_operation_status(),
        Some(&TieringOperationStatus::ArchivalInProgress),
        "{status:?}"
    );
    assert_eq!(status.storage_tier(), Some(&StorageTier::Standard));
    assert!(
        status.last_tiering_progress().unwrap_or(100) < 100,
        "{status:?}"
    );
    assert!(status.archival_complete_time().is_none(), "{status:?}");
    assert_eq!(status.tags().len(), 1, "the snapshot's tags: {status:?}");
    assert_eq!(
        storage_tier(&emu, &client, &snap).storage_tier(),
        Some(&StorageTier::Standard)
    );
    create_volume(&emu, &client, &snap).expect("CreateVolume while the archival is in progress");
    // Twice, and a restore of what is not archived yet: IncorrectState.
    let (c, m) = code(modify_tier(&emu, &client, &snap, false));
    assert_eq!(c, TIER_STATE_ERROR_CODE, "{m}");
    let (c, m) = code(
        emu.block_on(
            client
                .restore_snapshot_tier()
                .snapshot_id(&snap)
                .temporary_restore_days(1)
                .send(),
        ),
    );
    assert_eq!(c, TIER_STATE_ERROR_CODE, "{m}");

    // A second before the archival ends: still in progress.
    proxy.advance(SLOW_ARCHIVAL - Duration::from_secs(1));
    let status = tier_status(&emu, &client, &snap);
    assert_eq!(
        status.last_tiering_operation_status(),
        Some(&TieringOperationStatus::ArchivalInProgress),
        "{status:?}"
    );
    // Archived: unusable, `archive` in DescribeSnapshots.
    proxy.advance(Duration::from_secs(1));
    let s = storage_tier(&emu, &client, &snap);
    assert_eq!(s.storage_tier(), Some(&StorageTier::Archive), "{s:?}");
    assert_eq!(s.state(), Some(&SnapshotState::Completed), "{s:?}");
    assert!(s.restore_expiry_time().is_none(), "{s:?}");
    let status = tier_status(&emu, &client, &snap);
    assert_eq!(
        status.last_tiering_operation_status(),
        Some(&TieringOperationStatus::ArchivalCompleted)
    );
    assert_eq!(status.last_tiering_progress(), Some(100));
    assert!(status.archival_complete_time().is_some(), "{status:?}");
    let (c, m) =
        create_volume(&emu, &client, &snap).expect_err("CreateVolume of an archived snapshot");
    assert_eq!(c, ARCHIVED_ERROR_CODE, "{m}");
    let (c, m) = code(
        emu.block_on(
            client
                .copy_snapshot()
                .source_snapshot_id(&snap)
                .source_region(REGION)
                .send(),
        ),
    );
    assert_eq!(c, ARCHIVED_ERROR_CODE, "{m}");

    // RestoreSnapshotTier needs exactly one of days and permanent.
    for req in [
        client.restore_snapshot_tier().snapshot_id(&snap),
        client
            .restore_snapshot_tier()
            .snapshot_id(&snap)
            .temporary_restore_days(2)
            .permanent_restore(true),
    ] {
        let (c, m) = code(emu.block_on(req.send()));
        assert_eq!(c, TIER_PARAMETER_ERROR_CODE, "{m}");
    }

    // A temporary restore: in progress (unusable), then standard until its expiry.
    let out = emu
        .block_on(
            client
                .restore_snapshot_tier()
                .snapshot_id(&snap)
                .temporary_restore_days(3)
                .send(),
        )
        .expect("RestoreSnapshotTier");
    assert_eq!(out.is_permanent_restore(), Some(false), "{out:?}");
    assert_eq!(out.restore_duration(), Some(3), "{out:?}");
    let started = secs(out.restore_start_time());
    let status = tier_status(&emu, &client, &snap);
    assert_eq!(
        status.last_tiering_operation_status(),
        Some(&TieringOperationStatus::TemporaryRestoreInProgress)
    );
    assert!(
        create_volume(&emu, &client, &snap).is_err(),
        "not restored yet"
    );
    proxy.advance(SLOW_RESTORE - Duration::from_secs(1));
    assert_eq!(
        tier_status(&emu, &client, &snap).last_tiering_operation_status(),
        Some(&TieringOperationStatus::TemporaryRestoreInProgress)
    );
    proxy.advance(Duration::from_secs(1));
    let s = storage_tier(&emu, &client, &snap);
    assert_eq!(s.storage_tier(), Some(&StorageTier::Standard), "{s:?}");
    let expiry = secs(s.restore_expiry_time());
    let expected = started + SLOW_RESTORE.as_secs() as i64 + 3 * 86_400;
    assert!(
        (expiry - expected).abs() <= 1,
        "{expiry} vs {expected}: {s:?}"
    );
    let status = tier_status(&emu, &client, &snap);
    assert_eq!(
        status.last_tiering_operation_status(),
        Some(&TieringOperationStatus::TemporaryRestoreCompleted)
    );
    assert_eq!(secs(status.restore_expiry_time()), expiry);
    create_volume(&emu, &client, &snap).expect("CreateVolume of a restored snapshot");

    // Modify the restore: a new period from now, then permanent.
    let out = emu
        .block_on(
            client
                .restore_snapshot_tier()
                .snapshot_id(&snap)
                .temporary_restore_days(1)
                .send(),
        )
        .expect("RestoreSnapshotTier: a new restore period");
    assert_eq!(out.restore_duration(), Some(1));
    let s = storage_tier(&emu, &client, &snap);
    // From now on the twin's clock: the restore completed, a day.
    let now = started + SLOW_RESTORE.as_secs() as i64;
    assert!(
        (secs(s.restore_expiry_time()) - (now + 86_400)).abs() <= 1,
        "{s:?}"
    );
    let out = emu
        .block_on(
            client
                .restore_snapshot_tier()
                .snapshot_id(&snap)
                .permanent_restore(true)
                .send(),
        )
        .expect("RestoreSnapshotTier: temporary to permanent");
    assert_eq!(out.is_permanent_restore(), Some(true));
    let status = tier_status(&emu, &client, &snap);
    assert_eq!(
        status.last_tiering_operation_status(),
        Some(&TieringOperationStatus::PermanentRestoreCompleted)
    );
    assert!(status.restore_expiry_time().is_none(), "{status:?}");
    let s = storage_tier(&emu, &client, &snap);
    assert_eq!(s.storage_tier(), Some(&StorageTier::Standard));
    assert!(s.restore_expiry_time().is_none(), "{s:?}");
    // Permanently restored: not archived any more.
    let (c, _) = code(
        emu.block_on(
            client
                .restore_snapshot_tier()
                .snapshot_id(&snap)
                .permanent_restore(true)
                .send(),
        ),
    );
    assert_eq!(c, TIER_STATE_ERROR_CODE);

    // None of it reached moto; the delete of a snapshot out of the archive
    // is no early delete.
    for action in [
        "ModifySnapshotTier",
        "RestoreSnapshotTier",
        "DescribeSnapshotTierStatus",
    ] {
        assert_eq!(proxy.forwarded(action), 0, "{action}: {}", ctx());
    }
    emu.block_on(client.delete_snapshot().snapshot_id(&snap).send())
        .expect("DeleteSnapshot");
    assert!(proxy.early_archive_deletes().is_empty(), "{}", ctx());
}

#[test]
fn twin_archive_tier_refuses_what_cannot_be_archived_or_restored() {
    let emu = Emulator::start();
    let volume = emu.create_volume(4);
    let standard = emu.create_snapshot_aged(&volume, 0, &[]);
    let failed = emu.create_snapshot_aged(&volume, 0, &[]);
    // A snapshot an AMI uses (CreateImage: moto keeps its block device
    // mappings).
    let instance = emu.launch_instance(&[]);
    let image = emu
        .block_on(
            emu.client()
                .create_image()
                .instance_id(&instance)
                .name("twin-archive-ami")
                .send(),
        )
        .expect("CreateImage");
    let image_id = image.image_id().expect("image id").to_string();
    let images = emu
        .block_on(emu.client().describe_images().image_ids(&image_id).send())
        .expect("DescribeImages");
    let ami_snapshot = images.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("the AMI's snapshot")
        .to_string();
    // A snapshot of another account: the built-in AMI's.
    let builtin = emu
        .block_on(emu.client().describe_images().image_ids(AMI).send())
        .expect("DescribeImages");
    let foreign = builtin.images()[0].block_device_mappings()[0]
        .ebs()
        .and_then(|e| e.snapshot_id())
        .expect("the built-in AMI's snapshot")
        .to_string();

    let proxy = emu.proxy(
        FaultPlan::none()
            .manual_clock()
            .archive_tier(ARCHIVAL, RESTORE)
            .volume_limits(Duration::from_secs(120))
            .snapshot_state(&failed, "error"),
    );
    let client = proxy.sdk_client(&emu);
    let archive = |id: &str| code(modify_tier(&emu, &client, id, false));
    // Pending (a new snapshot under volume_limits) and error: not completed.
    let other = emu.create_volume(4);
    let pending = emu
        .block_on(client.create_snapshot().volume_id(&other).send())
        .expect("CreateSnapshot")
        .snapshot_id()
        .expect("id")
        .to_string();
    for (id, state) in [(&pending, "pending"), (&failed, "error")] {
        let (c, m) = archive(id);
        assert_eq!(c, TIER_STATE_ERROR_CODE, "{m}");
        assert!(m.contains(state), "{m}");
    }
    let (c, m) = archive(&ami_snapshot);
    assert_eq!(c, TIER_STATE_ERROR_CODE, "{m}");
    assert!(m.contains(&image_id), "{m}");
    let (c, m) = archive("snap-0123456789abcdef0");
    assert_eq!(c, "InvalidSnapshot.NotFound", "{m}");
    let (c, m) = archive(&foreign);
    assert_eq!(c, NOT_OWNER_ERROR_CODE, "{m}");
    assert_eq!(last(&proxy, "ModifySnapshotTier").status, Some(403));
    // A restore of a snapshot never archived.
    let (c, m) = code(
        emu.block_on(
            client
                .restore_snapshot_tier()
                .snapshot_id(&standard)
                .temporary_restore_days(1)
                .send(),
        ),
    );
    assert_eq!(c, TIER_STATE_ERROR_CODE, "{m}");
    // DryRun: DryRunOperation, nothing archived.
    let (c, _) = code(modify_tier(&emu, &client, &standard, true));
    assert_eq!(c, "DryRunOperation");
    let status = tier_status(&emu, &client, &standard);
    assert!(
        status.last_tiering_operation_status().is_none(),
        "{status:?}"
    );
    assert_eq!(status.storage_tier(), Some(&StorageTier::Standard));
    // Then a real one goes through.
    modify_tier(&emu, &client, &standard, false)
        .expect("ModifySnapshotTier of a completed snapshot");
}

#[test]
fn twin_archive_tier_status_is_paginated_and_filtered_and_presets_take_part() {
    let emu = Emulator::start();
    let a = emu.create_volume(4);
    let b = emu.create_volume(4);
    let old = emu.create_snapshot_aged(&a, 0, &[]);
    let new = emu.create_snapshot_aged(&a, 0, &[]);
    let plain = emu.create_snapshot_aged(&a, 0, &[]);
    let of_b = emu.create_snapshot_aged(&b, 0, &[]);
    // Archived for longer than the 90-day minimum.
    let hundred_days_ago = chrono::Utc::now() - MIN_ARCHIVE_PERIOD - chrono::TimeDelta::days(10);
    let proxy = emu.proxy(
        FaultPlan::none()
            .manual_clock()
            .archive_tier(ARCHIVAL, SLOW_RESTORE)
            .archived_since(&old, hundred_days_ago)
            .archived(&new),
    );
    let client = proxy.sdk_client(&emu);

    // Volume a's three snapshots, two a page.
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = emu
            .block_on(
                client
                    .describe_snapshot_tier_status()
                    .filters(filter("volume-id", &[&a]))
                    .max_results(2)
                    .set_next_token(token.clone())
                    .send(),
            )
            .expect("DescribeSnapshotTierStatus");
        pages.push(
            out.snapshot_tier_statuses()
                .iter()
                .map(|s| s.snapshot_id().unwrap_or("-").to_string())
                .collect::<Vec<_>>(),
        );
        token = out.next_token().map(String::from);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 1],
        "{pages:?}"
    );
    let mut got: Vec<String> = pages.concat();
    let mut want = vec![old.clone(), new.clone(), plain.clone()];
    got.sort();
    want.sort();
    assert_eq!(got, want);

    // last-tiering-operation: the presets, archived.
    let out = emu
        .block_on(
            client
                .describe_snapshot_tier_status()
                .filters(filter("volume-id", &[&a, &b]))
                .filters(filter("last-tiering-operation", &["archival-completed"]))
                .send(),
        )
        .expect("DescribeSnapshotTierStatus");
    let mut archived: Vec<&str> = out
        .snapshot_tier_statuses()
        .iter()
        .filter_map(|s| s.snapshot_id())
        .collect();
    archived.sort();
    let mut presets = vec![old.as_str(), new.as_str()];
    presets.sort();
    assert_eq!(archived, presets, "{out:?}");
    let status = tier_status(&emu, &client, &old);
    assert_eq!(status.storage_tier(), Some(&StorageTier::Archive));
    assert!(
        (secs(status.archival_complete_time()) - hundred_days_ago.timestamp()).abs() <= 1,
        "{status:?}"
    );
    let status = tier_status(&emu, &client, &of_b);
    assert!(
        status.last_tiering_operation_status().is_none(),
        "{status:?}"
    );
    assert_eq!(status.volume_id(), Some(b.as_str()));
    assert_eq!(status.owner_id(), Some(ACCOUNT_ID));

    // Unfiltered, through the SDK's paginator: every snapshot the caller
    // owns, in pages of at most TIER_STATUS_PAGE, none of another account.
    let all: Vec<SnapshotTierStatus> = emu
        .block_on(
            client
                .describe_snapshot_tier_status()
                .into_paginator()
                .items()
                .send()
                .collect::<Result<Vec<_>, _>>(),
        )
        .expect("DescribeSnapshotTierStatus, every page");
    assert!(all.iter().all(|s| s.owner_id() == Some(ACCOUNT_ID)));
    for id in [&old, &new, &plain, &of_b] {
        assert!(
            all.iter().any(|s| s.snapshot_id() == Some(id.as_str())),
            "{id}"
        );
    }
    let calls = proxy.count("DescribeSnapshotTierStatus");
    let pages_needed = all.len().div_ceil(TIER_STATUS_PAGE).max(1);
    assert!(
        calls >= pages_needed,
        "{calls} calls for {} items",
        all.len()
    );
    let (c, _) = code(
        emu.block_on(
            client
                .describe_snapshot_tier_status()
                .next_token("not-a-token")
                .send(),
        ),
    );
    assert_eq!(c, "InvalidPaginationToken");

    // A preset restores; the snapshot archived since now is deleted early
    // (billed), the one archived 100 days ago is not.
    emu.block_on(
        client
            .restore_snapshot_tier()
            .snapshot_id(&old)
            .permanent_restore(true)
            .send(),
    )
    .expect("RestoreSnapshotTier of a preset");
    assert_eq!(
        tier_status(&emu, &client, &old).last_tiering_operation_status(),
        Some(&TieringOperationStatus::PermanentRestoreInProgress)
    );
    let proxy2 = emu.proxy(
        FaultPlan::none()
            .manual_clock()
            .archive_tier(ARCHIVAL, RESTORE)
            .archived_since(&old, hundred_days_ago)
            .archived(&new),
    );
    let client2 = proxy2.sdk_client(&emu);
    for id in [&old, &new] {
        emu.block_on(client2.delete_snapshot().snapshot_id(id).send())
            .expect("DeleteSnapshot of an archived snapshot");
    }
    assert_eq!(
        proxy2.early_archive_deletes(),
        std::slice::from_ref(&new),
        "{}",
        proxy2.twin_log()
    );
}

#[test]
#[allow(clippy::result_large_err)]
fn twin_archive_tier_is_judged_by_the_iam_twin() {
    let emu = Emulator::start();
    let volume = emu.create_volume(4);
    let mine = emu.create_snapshot_aged(&volume, 0, &[("ebsnap:job", "default")]);
    let other = emu.create_snapshot_aged(&volume, 0, &[("ebsnap:job", "other")]);
    let without = r#"{"Version":"2012-10-17","Statement":[
      {"Effect":"Allow","Action":["ec2:DescribeSnapshots","ec2:DescribeSnapshotTierStatus","ec2:RestoreSnapshotTier"],"Resource":"*"}]}"#;
    let proxy = emu.proxy(
        FaultPlan::none()
            .manual_clock()
            .archive_tier(ARCHIVAL, RESTORE)
            .iam_policy(without),
    );
    let client = proxy.sdk_client(&emu);
    let archive = |client: &aws_sdk_ec2::Client, id: &str| modify_tier(&emu, client, id, false);
    let (c, m) = code(archive(&client, &mine));
    assert_eq!(c, "UnauthorizedOperation", "{m}");
    let record = last(&proxy, "ModifySnapshotTier");
    assert_eq!(record.status, Some(403));
    assert_eq!(
        record.denied.as_deref(),
        Some(format!("ec2:ModifySnapshotTier on arn:aws:ec2:{REGION}::snapshot/{mine}").as_str())
    );
    assert!(!record.forwarded && record.twin.is_none(), "{record}");
    // A DryRun is judged the same.
    let (c, _) = code(modify_tier(&emu, &client, &mine, true));
    assert_eq!(c, "UnauthorizedOperation");
    emu.block_on(client.describe_snapshot_tier_status().send())
        .expect("DescribeSnapshotTierStatus allowed on *");

    // Allowed on the job's snapshots only, by their tag.
    let by_tag = r#"{"Version":"2012-10-17","Statement":[
      {"Effect":"Allow","Action":"ec2:ModifySnapshotTier","Resource":"arn:aws:ec2:*::snapshot/*",
       "Condition":{"StringEquals":{"aws:ResourceTag/ebsnap:job":"default"}}}]}"#;
    let proxy = emu.proxy(
        FaultPlan::none()
            .manual_clock()
            .archive_tier(ARCHIVAL, RESTORE)
            .iam_policy(by_tag),
    );
    let client = proxy.sdk_client(&emu);
    archive(&client, &mine).expect("ModifySnapshotTier of the job's snapshot");
    let (c, _) = code(archive(&client, &other));
    assert_eq!(c, "UnauthorizedOperation");
    assert_eq!(proxy.denials().len(), 1, "{}", proxy.log());
}
