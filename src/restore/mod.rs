//! `ebsnap restore`: new volumes from one snapshot, or from one whole backup
//! run of an instance as of a time, optionally attached to an instance.
//!
//! A backup is worth what its restore is worth, and restores happen at 3 am.
//! So everything that can be known before creating a volume is checked
//! first (the snapshot is complete, the zone is in the region, the devices
//! on the target are free), and any problem stops the restore before it
//! creates anything, with one line that says what to do. The decisions
//! (which run, which parameters, which devices) are pure functions of what
//! was read; the async code around them only reads, creates, attaches and
//! waits.

mod decide;
mod ec2;
mod report;

use decide::{
    attach_devices, check_devices_free, check_restorable, choose_run, split_off_root, volume_spec,
};
use report::{FailedRestore, RestoreReport};

use anyhow::{anyhow, bail, Result};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};

use crate::aws::{self, dry_run_verdict};
use crate::config::{Config, RestoreRequest, RestoreSource};
use ec2::{
    bring_back, create_request, describe_instance, execute, instance_snapshots, one_snapshot,
    source_volumes, target_instance,
};
use report::restored;

/// Restores as `args` says, in the one region of `config`. `Err`: nothing
/// was created (bad input, a snapshot that cannot be restored, a device
/// taken); the report tells what was done otherwise.
pub async fn run(config: &Config, args: &RestoreRequest) -> Result<RestoreReport> {
    let shared = aws::load_shared_config(&config.aws).await;
    // The command line gives restore one --region at most (and no
    // --all-regions), so this is that region or the chain's.
    let regions = aws::regions(&config.aws, &shared).await?;
    let [region] = regions.as_slice() else {
        bail!("restore works in one region: pass one --region");
    };
    let client = aws::client(&shared, region);
    restore(
        &client,
        region,
        &config.policy.job,
        config.dry_run,
        args,
        Utc::now(),
    )
    .await
}

/// `run` with its client and clock given (tests use a mocked client).
pub(crate) async fn restore(
    client: &Client,
    region: &str,
    job: &str,
    dry_run: bool,
    args: &RestoreRequest,
    now: DateTime<Utc>,
) -> Result<RestoreReport> {
    let target = match &args.attach_to {
        Some(id) => Some(target_instance(client, id, region).await?),
        None => None,
    };
    let mut brought_back_from_archive = vec![];
    let (run_id, snapshots, skipped) = match &args.source {
        RestoreSource::Snapshot(id) => {
            let mut snapshot = one_snapshot(client, id, region).await?;
            if snapshot.archived && args.from_archive {
                bring_back(client, id, dry_run).await?;
                if dry_run {
                    // The rest of the restore can be checked only once it
                    // is back: say so, with what was checked.
                    return Ok(RestoreReport {
                        dry_run,
                        region: region.to_string(),
                        run_id: None,
                        restored: vec![],
                        failed: vec![],
                        skipped: vec![],
                        brought_back_from_archive: vec![id.clone()],
                    });
                }
                brought_back_from_archive.push(id.clone());
                snapshot = one_snapshot(client, id, region).await?;
            }
            check_restorable(&snapshot).map_err(|e| anyhow!(e))?;
            (None, vec![snapshot], vec![])
        }
        RestoreSource::Instance(instance) => {
            let all = instance_snapshots(client, job, instance).await?;
            let at = args.at.unwrap_or(now);
            let (run_id, set) = choose_run(&all, job, instance, at).map_err(|e| anyhow!(e))?;
            let (set, skipped) = match &target {
                Some(target) => {
                    let source_root = describe_instance(client, instance)
                        .await?
                        .and_then(|i| i.root_device);
                    let root = source_root.or_else(|| target.root_device.clone());
                    split_off_root(set, root.as_deref())
                }
                None => (set, vec![]),
            };
            if set.is_empty() {
                bail!(
                    "backup run {run_id} of {instance} holds only its root volume, which restore does not attach \
                     to another instance: restore it without --attach-to"
                );
            }
            (Some(run_id), set, skipped)
        }
    };
    let by_snapshot = matches!(args.source, RestoreSource::Snapshot(_));
    let devices: Vec<Option<String>> = match &target {
        Some(target) => {
            let devices = attach_devices(&snapshots, args.device.as_deref(), by_snapshot)
                .map_err(|e| anyhow!(e))?;
            let wanted: Vec<(String, String)> = snapshots
                .iter()
                .map(|s| s.id.clone())
                .zip(devices.iter().cloned())
                .collect();
            check_devices_free(target, &wanted, by_snapshot).map_err(|e| anyhow!(e))?;
            devices.into_iter().map(Some).collect()
        }
        None => vec![None; snapshots.len()],
    };
    let sources = source_volumes(client, &snapshots).await?;
    let specs = snapshots
        .iter()
        .zip(devices)
        .map(|(snapshot, device)| {
            volume_spec(
                snapshot,
                sources.get(&snapshot.volume_id),
                args,
                region,
                target.as_ref(),
                device,
            )
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!(e))?;

    let mut report = RestoreReport {
        dry_run,
        region: region.to_string(),
        run_id,
        restored: vec![],
        failed: vec![],
        skipped,
        brought_back_from_archive,
    };
    if dry_run {
        for spec in &specs {
            match dry_run_verdict(create_request(client, spec, true).send().await) {
                Ok(()) => report
                    .restored
                    .push(restored(spec, None, Some("allowed".into()))),
                Err(reason) => report.failed.push(FailedRestore {
                    snapshot_id: spec.snapshot_id.clone(),
                    volume_id: None,
                    reason,
                }),
            }
        }
        return Ok(report);
    }
    execute(client, &specs, args, &mut report).await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::ExitStatus;
    use crate::inventory::{TAG_DEVICE, TAG_INSTANCE_ID, TAG_JOB, TAG_RUN_ID};
    use aws_sdk_ec2::types::{
        AttachmentStatus, Filter, Snapshot, Tag, Volume, VolumeState, VolumeType,
    };
    use decide::tests::{args, t};
    use decide::TAG_RESTORED_FROM;
    use std::time::Duration;

    /// The values of a describe's `volume-id` filter.
    fn filtered_ids(filters: &[Filter]) -> Vec<&str> {
        filters
            .iter()
            .filter(|f| f.name() == Some("volume-id"))
            .flat_map(|f| f.values().iter().map(String::as_str))
            .collect()
    }

    /// A describe of the volumes restore made (`vol-new*` here), not of the
    /// snapshots' source volumes.
    fn is_poll_of_new_volumes(filters: &[Filter]) -> bool {
        filtered_ids(filters)
            .iter()
            .any(|id| id.starts_with("vol-new"))
    }

    use aws_sdk_ec2::operation::create_volume::{CreateVolumeError, CreateVolumeOutput};
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsError, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
    use aws_sdk_ec2::primitives::DateTime as AwsDateTime;
    use aws_sdk_ec2::types::SnapshotState as Ec2State;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn ec2_snapshot(state: Ec2State) -> Snapshot {
        Snapshot::builder()
            .snapshot_id("snap-1")
            .volume_id("vol-data")
            .state(state)
            .progress("42%")
            .volume_size(8)
            .start_time(AwsDateTime::from_secs(1_790_000_000))
            .tags(Tag::builder().key(TAG_DEVICE).value("/dev/sdf").build())
            .tags(Tag::builder().key("aws:x").value("y").build())
            .build()
    }

    fn snapshot_args() -> RestoreRequest {
        RestoreRequest {
            source: RestoreSource::Snapshot("snap-1".into()),
            ..args()
        }
    }

    #[tokio::test]
    async fn a_pending_snapshot_is_refused_before_anything_is_created() {
        let describe = mock!(Client::describe_snapshots)
            .match_requests(|req| req.snapshot_ids() == ["snap-1"] && req.owner_ids() == ["self"])
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot(Ec2State::Pending))
                    .build()
            });
        let create =
            mock!(Client::create_volume).then_output(|| CreateVolumeOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &create]);

        let err = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &snapshot_args(),
            t(5),
        )
        .await
        .unwrap_err()
        .to_string();

        assert!(
            err.starts_with("snapshot snap-1 is still pending (42%)"),
            "{err}"
        );
        assert_eq!(create.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_missing_snapshot_says_so_and_points_to_list() {
        let describe = mock!(Client::describe_snapshots).then_error(|| {
            DescribeSnapshotsError::generic(crate::aws::testing::ec2_error(
                "InvalidSnapshot.NotFound",
                "The snapshot 'snap-1' does not exist.",
            ))
        });
        let client = mock_client!(aws_sdk_ec2, [&describe]);
        let err = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &snapshot_args(),
            t(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "snapshot snap-1 does not exist in us-east-1 (or is not this account's): check the id and --region \
             (`ebsnap list` shows the job's snapshots)"
        );
    }

    #[tokio::test]
    async fn a_restore_creates_waits_and_reports_the_new_volume() {
        let describe = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(ec2_snapshot(Ec2State::Completed))
                .build()
        });
        let sources = mock!(Client::describe_volumes)
            .match_requests(|req| !is_poll_of_new_volumes(req.filters()))
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-data")
                            .availability_zone("us-east-1b")
                            .volume_type(VolumeType::Gp3)
                            .iops(3000)
                            .throughput(125)
                            .build(),
                    )
                    .build()
            });
        let create = mock!(Client::create_volume)
            .match_requests(|req| {
                let tags: Vec<_> = req
                    .tag_specifications()
                    .iter()
                    .flat_map(|s| s.tags())
                    .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
                    .collect();
                req.snapshot_id() == Some("snap-1")
                    && req.availability_zone() == Some("us-east-1b")
                    && req.volume_type() == Some(&VolumeType::Gp3)
                    && req.iops() == Some(3000)
                    && req.size() == Some(8)
                    && req.dry_run() == Some(false)
                    && tags == [(TAG_DEVICE, "/dev/sdf"), (TAG_RESTORED_FROM, "snap-1")]
            })
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new").build());
        // Still creating at the first look, then available.
        let poll = mock!(Client::describe_volumes)
            .match_requests(|req| filtered_ids(req.filters()) == ["vol-new"])
            .sequence()
            .output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-new")
                            .state(VolumeState::Creating)
                            .build(),
                    )
                    .build()
            })
            .output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-new")
                            .state(VolumeState::Available)
                            .build(),
                    )
                    .build()
            })
            .build();
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &sources, &create, &poll]
        );

        let report = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &snapshot_args(),
            t(5),
        )
        .await
        .unwrap();

        assert_eq!(report.failed, []);
        assert_eq!(report.restored.len(), 1);
        assert_eq!(report.restored[0].volume_id.as_deref(), Some("vol-new"));
        assert_eq!(report.restored[0].device.as_deref(), Some("/dev/sdf"));
        assert_eq!((create.num_calls(), poll.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn a_dry_run_checks_the_create_and_creates_nothing() {
        let describe = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(ec2_snapshot(Ec2State::Completed))
                .build()
        });
        let sources = mock!(Client::describe_volumes)
            .then_output(|| DescribeVolumesOutput::builder().build());
        let target = mock!(Client::describe_instances).then_output(|| {
            DescribeInstancesOutput::builder()
                .reservations(
                    aws_sdk_ec2::types::Reservation::builder()
                        .instances(
                            aws_sdk_ec2::types::Instance::builder()
                                .instance_id("i-staging")
                                .placement(
                                    aws_sdk_ec2::types::Placement::builder()
                                        .availability_zone("us-east-1c")
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let create = mock!(Client::create_volume)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(|| {
                CreateVolumeError::generic(crate::aws::testing::ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded",
                ))
            });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &sources, &target, &create]
        );
        let mut a = snapshot_args();
        a.attach_to = Some("i-staging".into());

        let report = restore(&client, "us-east-1", "default", true, &a, t(5))
            .await
            .unwrap();

        assert_eq!(report.exit_status(), ExitStatus::Success);
        let r = &report.restored[0];
        assert_eq!(r.volume_id, None);
        assert_eq!(r.permission.as_deref(), Some("allowed"));
        assert_eq!(r.availability_zone, "us-east-1c");
        assert_eq!(
            (r.attached_to.as_deref(), r.device.as_deref()),
            (Some("i-staging"), Some("/dev/sdf"))
        );
        assert_eq!(create.num_calls(), 1);
        let text = report.to_text();
        assert!(text.starts_with("Dry run: nothing was changed."), "{text}");
        assert!(
            text.contains("then attach it to i-staging at /dev/sdf: permitted"),
            "{text}"
        );
    }

    fn job_snapshot(id: &str, volume: &str, device: &str) -> Snapshot {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        Snapshot::builder()
            .snapshot_id(id)
            .volume_id(volume)
            .state(Ec2State::Completed)
            .volume_size(8)
            .start_time(AwsDateTime::from_secs(1_790_000_000))
            .tags(tag(TAG_JOB, "default"))
            .tags(tag(TAG_INSTANCE_ID, "i-prod"))
            .tags(tag(TAG_DEVICE, device))
            .tags(tag(TAG_RUN_ID, "run-1"))
            .build()
    }

    fn instance(id: &str, zone: &str, devices: &[(&str, &str)]) -> DescribeInstancesOutput {
        use aws_sdk_ec2::types::{EbsInstanceBlockDevice, InstanceBlockDeviceMapping};
        let mut builder = aws_sdk_ec2::types::Instance::builder()
            .instance_id(id)
            .root_device_name("/dev/xvda")
            .placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(zone)
                    .build(),
            );
        for (device, volume) in devices {
            builder = builder.block_device_mappings(
                InstanceBlockDeviceMapping::builder()
                    .device_name(*device)
                    .ebs(
                        EbsInstanceBlockDevice::builder()
                            .volume_id(*volume)
                            .status(AttachmentStatus::Attached)
                            .build(),
                    )
                    .build(),
            );
        }
        DescribeInstancesOutput::builder()
            .reservations(
                aws_sdk_ec2::types::Reservation::builder()
                    .instances(builder.build())
                    .build(),
            )
            .build()
    }

    fn volume_in(id: &str, state: VolumeState) -> Volume {
        Volume::builder().volume_id(id).state(state).build()
    }

    /// The job's run of i-prod (root, /dev/sdf, /dev/sdg), to be restored onto
    /// i-staging; the client answers with these and `creates` and `polls`.
    fn staging_client(
        creates: &aws_smithy_mocks::Rule,
        polls: &aws_smithy_mocks::Rule,
        attach: &aws_smithy_mocks::Rule,
    ) -> Client {
        let snapshots = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(job_snapshot("snap-root", "vol-root", "/dev/xvda"))
                .snapshots(job_snapshot("snap-f", "vol-f", "/dev/sdf"))
                .snapshots(job_snapshot("snap-g", "vol-g", "/dev/sdg"))
                .build()
        });
        let prod = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-prod"])
            .then_output(|| instance("i-prod", "us-east-1a", &[("/dev/xvda", "vol-root")]));
        let staging = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-staging"])
            .then_output(|| instance("i-staging", "us-east-1a", &[("/dev/xvda", "vol-sroot")]));
        let sources = mock!(Client::describe_volumes)
            .match_requests(|req| !is_poll_of_new_volumes(req.filters()))
            .then_output(|| DescribeVolumesOutput::builder().build());
        mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&snapshots, &prod, &staging, &sources, creates, polls, attach]
        )
    }

    fn staging_args() -> RestoreRequest {
        RestoreRequest {
            source: RestoreSource::Instance("i-prod".into()),
            attach_to: Some("i-staging".into()),
            ..args()
        }
    }

    #[tokio::test]
    async fn a_set_with_a_failed_volume_is_not_attached_and_exits_1() {
        let creates = mock!(Client::create_volume).then_output(|| {
            // Any id will do: the polls below decide each volume's fate.
            CreateVolumeOutput::builder().volume_id("vol-new").build()
        });
        let creates_f = mock!(Client::create_volume)
            .match_requests(|req| req.snapshot_id() == Some("snap-f"))
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new-f").build());
        let creates_g = mock!(Client::create_volume)
            .match_requests(|req| req.snapshot_id() == Some("snap-g"))
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new-g").build());
        let polls = mock!(Client::describe_volumes)
            .match_requests(|req| is_poll_of_new_volumes(req.filters()))
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(volume_in("vol-new-f", VolumeState::Available))
                    .volumes(volume_in("vol-new-g", VolumeState::Error))
                    .build()
            });
        let attach = mock!(Client::attach_volume).then_output(|| {
            aws_sdk_ec2::operation::attach_volume::AttachVolumeOutput::builder().build()
        });
        let snapshots = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(job_snapshot("snap-root", "vol-root", "/dev/xvda"))
                .snapshots(job_snapshot("snap-f", "vol-f", "/dev/sdf"))
                .snapshots(job_snapshot("snap-g", "vol-g", "/dev/sdg"))
                .build()
        });
        let prod = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-prod"])
            .then_output(|| instance("i-prod", "us-east-1a", &[("/dev/xvda", "vol-root")]));
        let staging = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-staging"])
            .then_output(|| instance("i-staging", "us-east-1a", &[("/dev/xvda", "vol-sroot")]));
        let sources = mock!(Client::describe_volumes)
            .match_requests(|req| !is_poll_of_new_volumes(req.filters()))
            .then_output(|| DescribeVolumesOutput::builder().build());
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [
                &snapshots, &prod, &staging, &sources, &creates_f, &creates_g, &creates, &polls,
                &attach
            ]
        );

        let report = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &staging_args(),
            t(5),
        )
        .await
        .unwrap();

        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(attach.num_calls(), 0, "an incomplete set is never attached");
        assert_eq!(
            (
                creates_f.num_calls(),
                creates_g.num_calls(),
                creates.num_calls()
            ),
            (1, 1, 0),
            "the root volume is left out"
        );
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].snapshot_id, "snap-root");
        assert_eq!(report.restored.len(), 1);
        assert_eq!(report.restored[0].volume_id.as_deref(), Some("vol-new-f"));
        assert_eq!(report.restored[0].attached_to, None);
        assert_eq!(report.failed.len(), 1);
        let failed = &report.failed[0];
        assert_eq!(
            (failed.snapshot_id.as_str(), failed.volume_id.as_deref()),
            ("snap-g", Some("vol-new-g"))
        );
        assert!(
            failed.reason.contains("went to state error"),
            "{}",
            failed.reason
        );
        assert!(failed.reason.contains("not attached"), "{}", failed.reason);
    }

    #[tokio::test]
    async fn a_volume_not_ready_within_the_wait_timeout_is_a_failure_that_says_where_to_look() {
        let creates = mock!(Client::create_volume)
            .sequence()
            .output(|| {
                CreateVolumeOutput::builder()
                    .volume_id("vol-new-slow")
                    .build()
            })
            .output(|| {
                CreateVolumeOutput::builder()
                    .volume_id("vol-new-slower")
                    .build()
            })
            .build();
        let polls = mock!(Client::describe_volumes)
            .match_requests(|req| filtered_ids(req.filters()) == ["vol-new-slow", "vol-new-slower"])
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(volume_in("vol-new-slow", VolumeState::Creating))
                    .volumes(volume_in("vol-new-slower", VolumeState::Creating))
                    .build()
            });
        let attach = mock!(Client::attach_volume).then_output(|| {
            aws_sdk_ec2::operation::attach_volume::AttachVolumeOutput::builder().build()
        });
        let client = staging_client(&creates, &polls, &attach);
        let mut a = staging_args();
        a.wait_timeout = Duration::ZERO;

        let report = restore(&client, "us-east-1", "default", false, &a, t(5))
            .await
            .unwrap();

        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(
            (creates.num_calls(), polls.num_calls(), attach.num_calls()),
            (2, 1, 0)
        );
        assert_eq!(report.failed.len(), 2);
        assert!(
            report.failed[0].reason.starts_with(
                "not ready within --wait-timeout: it may still get there; look with \
                              aws ec2 describe-volumes --volume-ids vol-new-slow"
            ),
            "{}",
            report.failed[0].reason
        );
    }
}
