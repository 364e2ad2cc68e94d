//! restore's EC2 calls: the reads it decides on (the snapshots, their
//! source volumes, the instances), and the creates, attaches and waits that
//! carry out its decisions.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use aws_sdk_ec2::types::{
    AttachmentStatus, Filter, ResourceType, Volume, VolumeAttachmentState, VolumeState, VolumeType,
};
use aws_sdk_ec2::Client;

use crate::aws::{self, error_text, CallError, CallErrorKind, SNAPSHOT_PAGE_SIZE};
use crate::config::RestoreRequest;
use crate::discovery::{snapshot_tier_status, to_source_snapshot, volumes_where};
use crate::inventory::{TAG_INSTANCE_ID, TAG_JOB};
use crate::restore::decide::{InstanceInfo, SourceSnapshot, SourceVolume, VolumeSpec};
use crate::restore::report::{restored, FailedRestore, RestoreReport};
use crate::timing::{
    self, PollPlan, Uninterrupted, BRING_BACK_MAX_POLL, FIRST_POLL, VOLUME_MAX_POLL,
};

/// Creates, waits, attaches, waits. Failures are recorded per volume; the
/// set is attached only when every volume of it is available, so an
/// instance never gets part of a backup run.
pub(super) async fn execute(
    client: &Client,
    specs: &[VolumeSpec],
    args: &RestoreRequest,
    report: &mut RestoreReport,
) {
    let timeout = args.wait_timeout;
    let fail = |report: &mut RestoreReport, spec: &VolumeSpec, volume: Option<&str>, reason| {
        report.failed.push(FailedRestore {
            snapshot_id: spec.snapshot_id.clone(),
            volume_id: volume.map(str::to_owned),
            reason,
        })
    };
    let mut created: Vec<(&VolumeSpec, String)> = vec![];
    for spec in specs {
        match create_request(client, spec, false).send().await {
            Ok(output) => match output.volume_id() {
                Some(id) => {
                    tracing::info!(volume = id, snapshot = %spec.snapshot_id, "created volume");
                    created.push((spec, id.to_string()));
                }
                None => fail(
                    report,
                    spec,
                    None,
                    "EC2 answered CreateVolume without a volume id".into(),
                ),
            },
            Err(err) => fail(
                report,
                spec,
                None,
                format!("creating a volume failed: {}", error_text(&err)),
            ),
        }
    }
    let ids: Vec<String> = created.iter().map(|(_, id)| id.clone()).collect();
    let available = wait_for_volumes(client, &ids, timeout, volume_available).await;
    let mut ready: Vec<(&VolumeSpec, String)> = vec![];
    for (spec, id) in created {
        match available.get(&id) {
            Some(Ok(())) => ready.push((spec, id)),
            Some(Err(reason)) => fail(report, spec, Some(&id), reason.clone()),
            None => fail(report, spec, Some(&id), "lost track of the volume".into()),
        }
    }
    let attaching = ready.iter().any(|(spec, _)| spec.attach.is_some());
    if attaching && !report.failed.is_empty() {
        for (spec, id) in ready {
            let mut entry = restored(spec, Some(id), None);
            entry.attached_to = None;
            report.restored.push(entry);
        }
        let note = "not attached: another volume of the set failed, and an incomplete set is not attached; \
                    attach the volumes by hand (aws ec2 attach-volume) once you have them all";
        for f in &mut report.failed {
            f.reason = format!("{}; the other volumes were {note}", f.reason);
        }
        return;
    }
    let mut attached: Vec<(&VolumeSpec, String)> = vec![];
    for (spec, id) in ready {
        let Some((instance, device)) = &spec.attach else {
            report.restored.push(restored(spec, Some(id), None));
            continue;
        };
        match client
            .attach_volume()
            .volume_id(&id)
            .instance_id(instance)
            .device(device)
            .send()
            .await
        {
            Ok(_) => attached.push((spec, id)),
            Err(err) => {
                let mut entry = restored(spec, Some(id.clone()), None);
                entry.attached_to = None;
                report.restored.push(entry);
                fail(
                    report,
                    spec,
                    Some(&id),
                    format!(
                        "{id} was made, but attaching it to {instance} at {device} failed: {}: attach it by hand",
                        error_text(&err)
                    ),
                );
            }
        }
    }
    let ids: Vec<String> = attached.iter().map(|(_, id)| id.clone()).collect();
    let done = wait_for_volumes(client, &ids, timeout, volume_attached).await;
    for (spec, id) in attached {
        report.restored.push(restored(spec, Some(id.clone()), None));
        if let Some(Err(reason)) = done.get(&id) {
            fail(report, spec, Some(&id), reason.clone());
        }
    }
}

pub(super) fn create_request(
    client: &Client,
    spec: &VolumeSpec,
    dry_run: bool,
) -> aws_sdk_ec2::operation::create_volume::builders::CreateVolumeFluentBuilder {
    // CreateVolume carries a client token (the SDK makes one per call and
    // keeps it across its retries), so a retry after a lost answer does not
    // make a second volume.
    client
        .create_volume()
        .snapshot_id(&spec.snapshot_id)
        .availability_zone(&spec.availability_zone)
        .size(spec.size_gib)
        .set_volume_type(spec.volume_type.as_deref().map(VolumeType::from))
        .set_iops(spec.iops)
        .set_throughput(spec.throughput)
        .set_encrypted(spec.encrypted)
        .set_kms_key_id(spec.kms_key_id.clone())
        .tag_specifications(aws::tag_spec(
            ResourceType::Volume,
            spec.tags.iter().cloned(),
        ))
        .dry_run(dry_run)
}

/// Whether a volume is ready to attach: `Err` when it never will be.
fn volume_available(volume: &Volume) -> Result<bool, String> {
    match volume.state() {
        Some(VolumeState::Available | VolumeState::InUse) => Ok(true),
        Some(VolumeState::Creating) | None => Ok(false),
        Some(state) => Err(format!(
            "the new volume went to state {}: look at it with aws ec2 describe-volumes, then delete it and try again",
            state.as_str()
        )),
    }
}

/// Whether a volume's attachment is complete.
fn volume_attached(volume: &Volume) -> Result<bool, String> {
    let state = volume.attachments().first().and_then(|a| a.state());
    match state {
        Some(VolumeAttachmentState::Attached) => Ok(true),
        Some(VolumeAttachmentState::Attaching) => Ok(false),
        None if volume.state() == Some(&VolumeState::Available) => Ok(false),
        other => Err(format!(
            "the attachment went to {}: look at it with aws ec2 describe-volumes",
            other.map(|s| s.as_str()).unwrap_or("nothing")
        )),
    }
}

/// Looks at the volumes `ids` until each is done, failed, or `timeout` has
/// passed (`timing::poll`: soon, then less often, at the time scale).
/// Errors of DescribeVolumes itself are retried: a volume just made may not
/// be visible yet. A restore waits on volumes, seconds not hours, and with
/// no run's stop: Ctrl-C ends the process.
async fn wait_for_volumes(
    client: &Client,
    ids: &[String],
    timeout: Duration,
    done: fn(&Volume) -> Result<bool, String>,
) -> BTreeMap<String, Result<(), String>> {
    let mut outcomes = BTreeMap::new();
    let mut last_error = None;
    let plan = PollPlan {
        pauses: timing::doubling(FIRST_POLL, VOLUME_MAX_POLL),
        timeout,
        look_at_once: true,
    };
    let polled = timing::poll(plan, &Uninterrupted, async |_| {
        let waiting: Vec<String> = ids
            .iter()
            .filter(|id| !outcomes.contains_key(*id))
            .cloned()
            .collect();
        if waiting.is_empty() {
            return Some(());
        }
        // By a filter, not VolumeIds: one volume EC2 does not show (not
        // yet, or no longer) would fail a describe by ids whole.
        match client
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("volume-id")
                    .set_values(Some(waiting.clone()))
                    .build(),
            )
            .send()
            .await
        {
            Ok(output) => {
                for volume in output.volumes() {
                    let Some(id) = volume.volume_id() else {
                        continue;
                    };
                    match done(volume) {
                        Ok(true) => {
                            outcomes.insert(id.to_string(), Ok(()));
                        }
                        Ok(false) => {}
                        Err(reason) => {
                            outcomes.insert(id.to_string(), Err(reason));
                        }
                    }
                }
            }
            Err(err) => last_error = Some(error_text(&err)),
        }
        if ids.iter().all(|id| outcomes.contains_key(id)) {
            return Some(());
        }
        tracing::info!(waiting = waiting.len(), "waiting for the new volumes");
        None
    })
    .await;
    if polled.is_err() {
        let seen = last_error
            .map(|e| format!(" (last look: {e})"))
            .unwrap_or_default();
        for id in ids {
            outcomes.entry(id.clone()).or_insert_with(|| {
                Err(format!(
                    "not ready within --wait-timeout{seen}: it may still get there; look with \
                     aws ec2 describe-volumes --volume-ids {id}"
                ))
            });
        }
    }
    outcomes
}

/// One snapshot of this account, by id.
pub(super) async fn one_snapshot(
    client: &Client,
    id: &str,
    region: &str,
) -> Result<SourceSnapshot> {
    let missing = || {
        anyhow!(
            "snapshot {id} does not exist in {region} (or is not this account's): check the id and --region \
             (`ebsnap list` shows the job's snapshots)"
        )
    };
    let output = match client
        .describe_snapshots()
        .owner_ids("self")
        .snapshot_ids(id)
        .send()
        .await
    {
        Ok(output) => output,
        Err(err) if CallError::new(&err).kind == CallErrorKind::NotFound => return Err(missing()),
        Err(err) => bail!("reading snapshot {id}: {}", error_text(&err)),
    };
    output
        .snapshots()
        .iter()
        .filter(|s| s.snapshot_id() == Some(id))
        .find_map(to_source_snapshot)
        .ok_or_else(missing)
}

/// The job's snapshots of one instance.
pub(super) async fn instance_snapshots(
    client: &Client,
    job: &str,
    instance: &str,
) -> Result<Vec<SourceSnapshot>> {
    let filter = |name: String, value: &str| Filter::builder().name(name).values(value).build();
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(format!("tag:{TAG_JOB}"), job))
        .filters(filter(format!("tag:{TAG_INSTANCE_ID}"), instance))
        .max_results(SNAPSHOT_PAGE_SIZE)
        .into_paginator()
        .items()
        .send();
    let mut snapshots = Vec::new();
    while let Some(snapshot) = pages.next().await {
        let snapshot = snapshot.map_err(|err| {
            anyhow!(
                "listing the snapshots of {instance} in job {job}: {}",
                error_text(&err)
            )
        })?;
        snapshots.extend(to_source_snapshot(&snapshot));
    }
    Ok(snapshots)
}

/// The source volumes that still exist, by id. Filtered rather than asked
/// by id, so a deleted volume is simply absent instead of an error.
pub(super) async fn source_volumes(
    client: &Client,
    snapshots: &[SourceSnapshot],
) -> Result<BTreeMap<String, SourceVolume>> {
    let mut ids: Vec<String> = snapshots.iter().map(|s| s.volume_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut volumes = BTreeMap::new();
    for volume in volumes_where(
        client,
        "volume-id",
        &ids,
        "reading the snapshots' source volumes",
    )
    .await?
    {
        let (Some(id), Some(zone)) = (volume.volume_id(), volume.availability_zone()) else {
            continue;
        };
        volumes.insert(
            id.to_string(),
            SourceVolume {
                id: id.to_string(),
                availability_zone: zone.to_string(),
                volume_type: volume.volume_type().map(|t| t.as_str().to_string()),
                iops: volume.iops(),
                throughput: volume.throughput(),
                encrypted: volume.encrypted().unwrap_or(false),
            },
        );
    }
    Ok(volumes)
}

/// An instance by id; `None` when it does not exist (any more).
pub(super) async fn describe_instance(client: &Client, id: &str) -> Result<Option<InstanceInfo>> {
    let output = match client.describe_instances().instance_ids(id).send().await {
        Ok(output) => output,
        Err(err) if CallError::new(&err).kind == CallErrorKind::NotFound => return Ok(None),
        Err(err) => bail!("reading instance {id}: {}", error_text(&err)),
    };
    let Some(instance) = output
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
    else {
        return Ok(None);
    };
    let devices = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            if ebs.status() == Some(&AttachmentStatus::Detached) {
                return None;
            }
            Some((
                m.device_name()?.to_string(),
                ebs.volume_id().unwrap_or("a volume").to_string(),
            ))
        })
        .collect();
    Ok(Some(InstanceInfo {
        id: id.to_string(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        root_device: instance.root_device_name().map(str::to_owned),
        devices,
    }))
}

/// The `--attach-to` instance, which must exist and be running or stopped.
pub(super) async fn target_instance(
    client: &Client,
    id: &str,
    region: &str,
) -> Result<InstanceInfo> {
    let Some(target) = describe_instance(client, id).await? else {
        bail!("instance {id} (--attach-to) does not exist in {region}: check the id and --region");
    };
    if matches!(
        target.state.as_str(),
        "terminated" | "shutting-down" | "stopping"
    ) {
        bail!(
            "instance {id} (--attach-to) is {}: attach to a running or stopped instance",
            target.state
        );
    }
    Ok(target)
}

/// How long a snapshot brought back by `restore --from-archive` stays in the
/// standard tier before EC2 archives it again by itself: long enough for a
/// bring-back of up to 72 hours and a restore after it. A temporary restore
/// keeps the archived copy (EBS User Guide, "Restore an archived Amazon EBS
/// snapshot": "During the restore period, a copy of the snapshot remains in
/// the archive tier"), so ebsnap's purge still counts its 90 days.
pub(crate) const TEMPORARY_RESTORE_DAYS: i32 = 7;

/// The longest `--from-archive` waits for a snapshot to come back: EC2's
/// `ARCHIVE_RESTORE_HOURS`, and 8 hours more.
const BRING_BACK_TIMEOUT: Duration =
    Duration::from_secs((crate::plan::ARCHIVE_RESTORE_HOURS as u64 + 8) * 3600);

/// Brings `snapshot_id` back from the archive tier (`restore
/// --from-archive`): RestoreSnapshotTier for `TEMPORARY_RESTORE_DAYS` days,
/// unless a restore of it is already under way (a rerun after an
/// interrupted wait), then waits, telling its progress, until
/// DescribeSnapshotTierStatus shows it in the standard tier. A dry run only
/// asks whether the credentials may.
pub(super) async fn bring_back(client: &Client, snapshot_id: &str, dry_run: bool) -> Result<()> {
    use aws_sdk_ec2::types::TieringOperationStatus as Status;
    let status = snapshot_tier_status(client, snapshot_id).await?;
    let under_way = status.as_ref().filter(|s| {
        matches!(
            s.last_tiering_operation_status(),
            Some(Status::TemporaryRestoreInProgress | Status::PermanentRestoreInProgress)
        )
    });
    // Only what EC2 says of this restore counts, not a status left by the
    // archival or an earlier, failed restore.
    let mut since = under_way
        .and_then(|s| s.last_tiering_start_time())
        .map(|t| t.secs());
    if under_way.is_none() || dry_run {
        let asked = client
            .restore_snapshot_tier()
            .snapshot_id(snapshot_id)
            .temporary_restore_days(TEMPORARY_RESTORE_DAYS)
            .dry_run(dry_run)
            .send()
            .await;
        if dry_run {
            return aws::dry_run_verdict(asked).map_err(|reason| {
                anyhow!("bringing snapshot {snapshot_id} back from the archive: {reason}")
            });
        }
        let asked = asked.map_err(|err| {
            anyhow!(
                "bringing snapshot {snapshot_id} back from the archive: {}",
                error_text(&err)
            )
        })?;
        since = Some(
            asked
                .restore_start_time()
                .map_or_else(|| chrono::Utc::now().timestamp(), |t| t.secs()),
        );
    }
    crate::notice::tell(&format!(
        "bringing {snapshot_id} back from the archive tier (up to 72 hours; Ctrl-C stops \
         waiting, not the restore: run this again to pick it up)"
    ));
    // EC2 may show a restore a little after it took it: look after a
    // pause, never at once.
    let plan = PollPlan {
        pauses: timing::doubling(FIRST_POLL, BRING_BACK_MAX_POLL),
        timeout: BRING_BACK_TIMEOUT,
        look_at_once: false,
    };
    let mut told = None;
    let polled = timing::poll(plan, &Uninterrupted, async |_| {
        let status = snapshot_tier_status(client, snapshot_id).await;
        let of_this_restore = status.as_ref().ok().and_then(Option::as_ref).filter(|s| {
            let started = s.last_tiering_start_time().map(|t| t.secs());
            // EC2's times are whole seconds: a second's slack.
            since.is_none_or(|since| started.is_some_and(|started| started + 1 >= since))
        })?;
        match bring_back_progress(of_this_restore) {
            BringBack::Back => Some(Ok(())),
            BringBack::Failed(detail) => Some(Err(anyhow!(
                "EC2 could not bring snapshot {snapshot_id} back from the archive: {detail}"
            ))),
            BringBack::Progress(percent) => {
                if told != Some(percent) {
                    crate::notice::tell(&format!("{snapshot_id}: {percent}% back"));
                    told = Some(percent);
                }
                None
            }
        }
    })
    .await;
    polled.unwrap_or_else(|_| {
        bail!(
            "snapshot {snapshot_id} is not back from the archive after 80 hours: look with \
             aws ec2 describe-snapshot-tier-status --filters Name=snapshot-id,Values={snapshot_id}"
        )
    })
}

/// Where a bring-back from the archive stands, from its tier status.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum BringBack {
    Back,
    Progress(i32),
    Failed(String),
}

/// API reference, SnapshotTierStatus: `storageTier` `standard` "indicates
/// that the snapshot is stored in the standard snapshot storage tier and
/// that it is ready for use"; `lastTieringOperationStatus` ends in
/// `temporary-restore-completed` (or `-failed`).
pub(super) fn bring_back_progress(status: &aws_sdk_ec2::types::SnapshotTierStatus) -> BringBack {
    use aws_sdk_ec2::types::{StorageTier, TieringOperationStatus as Status};
    match status.last_tiering_operation_status() {
        Some(Status::TemporaryRestoreFailed | Status::PermanentRestoreFailed) => BringBack::Failed(
            status
                .last_tiering_operation_status_detail()
                .unwrap_or("restore failed")
                .to_owned(),
        ),
        _ if status.storage_tier() == Some(&StorageTier::Standard) => BringBack::Back,
        _ => BringBack::Progress(status.last_tiering_progress().unwrap_or(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::describe_snapshot_tier_status::DescribeSnapshotTierStatusOutput;
    use aws_sdk_ec2::operation::restore_snapshot_tier::RestoreSnapshotTierOutput;
    use aws_sdk_ec2::types::{SnapshotTierStatus, StorageTier, TieringOperationStatus as Status};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn status(
        tier: StorageTier,
        op: Status,
        progress: i32,
        started: i64,
    ) -> DescribeSnapshotTierStatusOutput {
        DescribeSnapshotTierStatusOutput::builder()
            .snapshot_tier_statuses(
                SnapshotTierStatus::builder()
                    .snapshot_id("snap-1")
                    .storage_tier(tier)
                    .last_tiering_operation_status(op)
                    .last_tiering_progress(progress)
                    .last_tiering_start_time(aws_sdk_ec2::primitives::DateTime::from_secs(started))
                    .build(),
            )
            .build()
    }

    #[tokio::test(start_paused = true)]
    async fn an_archived_snapshot_is_restored_for_7_days_and_only_its_restore_is_watched() {
        use StorageTier::{Archive, Standard};
        // An earlier restore failed (at 500); this one starts at 1000.
        let failed_before = || status(Archive, Status::TemporaryRestoreFailed, 0, 500);
        let first_look = mock!(Client::describe_snapshot_tier_status).then_output(failed_before);
        let restore = mock!(Client::restore_snapshot_tier)
            .match_requests(|req| {
                req.snapshot_id() == Some("snap-1")
                    && req.temporary_restore_days() == Some(TEMPORARY_RESTORE_DAYS)
                    && req.permanent_restore().is_none()
            })
            .then_output(|| {
                RestoreSnapshotTierOutput::builder()
                    .restore_start_time(aws_sdk_ec2::primitives::DateTime::from_secs(1000))
                    .build()
            });
        // EC2 still shows the old failure at first: not this restore's.
        let stale = mock!(Client::describe_snapshot_tier_status).then_output(failed_before);
        let halfway = mock!(Client::describe_snapshot_tier_status)
            .then_output(|| status(Archive, Status::TemporaryRestoreInProgress, 50, 1000));
        let back = mock!(Client::describe_snapshot_tier_status)
            .then_output(|| status(Standard, Status::TemporaryRestoreCompleted, 100, 1000));
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&first_look, &restore, &stale, &halfway, &back]
        );
        bring_back(&client, "snap-1", false).await.unwrap();
        assert_eq!(restore.num_calls(), 1);
        assert_eq!(back.num_calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_restore_already_under_way_is_waited_for_not_asked_again() {
        let under_way = mock!(Client::describe_snapshot_tier_status).then_output(|| {
            status(
                StorageTier::Archive,
                Status::TemporaryRestoreInProgress,
                10,
                1000,
            )
        });
        let back = mock!(Client::describe_snapshot_tier_status).then_output(|| {
            status(
                StorageTier::Standard,
                Status::TemporaryRestoreCompleted,
                100,
                1000,
            )
        });
        let restore = mock!(Client::restore_snapshot_tier)
            .then_output(|| RestoreSnapshotTierOutput::builder().build());
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            [&under_way, &back, &restore]
        );
        bring_back(&client, "snap-1", false).await.unwrap();
        assert_eq!(restore.num_calls(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dry_run_always_asks_for_the_permission() {
        let under_way = mock!(Client::describe_snapshot_tier_status).then_output(|| {
            status(
                StorageTier::Archive,
                Status::TemporaryRestoreInProgress,
                10,
                1000,
            )
        });
        let denied = mock!(Client::restore_snapshot_tier)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(|| {
                aws_sdk_ec2::operation::restore_snapshot_tier::RestoreSnapshotTierError::generic(
                    crate::aws::testing::ec2_error("UnauthorizedOperation", "no"),
                )
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&under_way, &denied]);
        let err = bring_back(&client, "snap-1", true).await.unwrap_err();
        assert!(err.to_string().contains("not permitted"), "{err}");
    }

    #[test]
    fn a_failed_bring_back_says_what_ec2_said() {
        let failed = SnapshotTierStatus::builder()
            .storage_tier(StorageTier::Archive)
            .last_tiering_operation_status(Status::TemporaryRestoreFailed)
            .last_tiering_operation_status_detail("internal error")
            .build();
        assert_eq!(
            bring_back_progress(&failed),
            BringBack::Failed("internal error".into())
        );
    }
}
