//! The purge step: one DeleteSnapshot per planned delete, each re-checked
//! against the job's marker just before it is sent (safety rule 1).

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::LockState;
use futures_util::{stream, StreamExt};
use tokio::sync::Semaphore;

use crate::aws::{dry_run_verdict, error_text, CallError, CallErrorKind};
use crate::backup::control::{Executor, VolumeGates};
use crate::backup::retry::{classify_failure, no_retries, retry, Attempt, Backoff, CallFailure};
use crate::plan::Delete;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DeleteOutcome {
    Deleted,
    /// EC2 says the snapshot no longer exists: the goal is met, it counts as
    /// deleted.
    AlreadyGone,
    /// Dry run: EC2 confirmed the credentials may delete it.
    Allowed,
    /// An AMI still uses the snapshot: kept and reported, not a failure
    /// (safety rule 5).
    InUse {
        message: String,
    },
    /// The snapshot is locked (EBS snapshot lock): kept and reported, not a
    /// failure (safety rule 5). `until` is when the lock ends, when known.
    Locked {
        until: Option<chrono::DateTime<chrono::Utc>>,
        message: String,
    },
    Failed {
        reason: String,
    },
    /// This run failed to snapshot the volume, so its old snapshots stay
    /// (safety rule 3): never sent.
    Withheld,
}

/// Carries out (or, in a dry run, checks) every delete; outcomes come back in
/// the order of `deletes`. Each delete first waits at its volume's gate, for
/// that volume's create in this run. The deletes of volumes without a create
/// go first, then the others in the order their creates are sent, so a
/// delete waiting at its gate seldom holds up one that could go. As many
/// deletes are sent at a time as the delete bucket's burst lets through
/// (100 at the default `--max-rate`: EC2's own burst), so a purge within the
/// burst costs about one round trip, not one per handful; beyond it the
/// bucket paces them. Only `QUEUED` more wait at their gates at once,
/// however many the purge has.
pub(crate) async fn delete_all(
    exec: &Executor,
    deletes: &[Delete],
    job: &str,
    gates: &VolumeGates,
) -> Vec<DeleteOutcome> {
    const QUEUED: usize = 64;
    let width = exec.delete_pacer.burst().max(1);
    let in_flight = Semaphore::new(width);
    let order = delete_order(deletes, |volume| gates.create_rank(volume));
    let mut outcomes: Vec<Option<DeleteOutcome>> = vec![None; deletes.len()];
    let mut done = stream::iter(order)
        .map(|index| {
            let delete = &deletes[index];
            let in_flight = &in_flight;
            async move {
                if !gates.may_delete(&delete.snapshot.volume_id).await {
                    return (index, DeleteOutcome::Withheld);
                }
                let _slot = in_flight.acquire().await;
                (index, delete_one(exec, delete, job).await)
            }
        })
        .buffer_unordered(width + QUEUED);
    while let Some((index, outcome)) = done.next().await {
        outcomes[index] = Some(outcome);
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every delete has an outcome"))
        .collect()
}

/// The order to start the deletes in: those of volumes without a create in
/// this run (`create_rank` None) first, then by their volume's create rank;
/// plan order within each.
pub(crate) fn delete_order(
    deletes: &[Delete],
    create_rank: impl Fn(&str) -> Option<usize>,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..deletes.len()).collect();
    order.sort_by_key(|&i| create_rank(&deletes[i].snapshot.volume_id).map_or(0, |r| r + 1));
    order
}

/// One delete. Retried by ebsnap itself (`retry`), each attempt paced like
/// the first, so a throttled call never jumps the queue. A retry after a
/// lost answer is safe: one that finds the snapshot gone counts as deleted
/// (safety rule 7).
async fn delete_one(exec: &Executor, delete: &Delete, job: &str) -> DeleteOutcome {
    let snapshot = &delete.snapshot;
    if !snapshot.is_marked_for(job) {
        return DeleteOutcome::Failed {
            reason: format!("refused: {} does not carry ebsnap:job={job}", snapshot.id),
        };
    }
    let dry_run = exec.dry_run;
    let tried = retry(exec.retries(&exec.delete_pacer), async |attempt| {
        let result = exec
            .client
            .delete_snapshot()
            .snapshot_id(&*snapshot.id)
            .dry_run(dry_run)
            .customize()
            .config_override(no_retries())
            .send()
            .await;
        if dry_run {
            return Attempt::Done(match dry_run_verdict(result) {
                Ok(()) => DeleteOutcome::Allowed,
                Err(reason) => DeleteOutcome::Failed { reason },
            });
        }
        let err = match result {
            Ok(_) => {
                tracing::info!(snapshot = %snapshot.id, "deleted snapshot");
                return Attempt::Done(DeleteOutcome::Deleted);
            }
            Err(err) => err,
        };
        let call = CallError::new(&err);
        match call.kind {
            CallErrorKind::NotFound => return Attempt::Done(DeleteOutcome::AlreadyGone),
            CallErrorKind::InUse => {
                return Attempt::Done(DeleteOutcome::InUse {
                    message: call.message.unwrap_or_else(|| "in use".into()),
                })
            }
            _ => {}
        }
        let reason = error_text(&err);
        tracing::info!(snapshot = %snapshot.id, attempt, %reason, "delete failed");
        let status = err.raw_response().map(|r| r.status().as_u16());
        if classify_failure(err.code(), status) != CallFailure::Refused {
            return Attempt::Retry(Backoff::Standard, reason);
        }
        // EC2's refusal of a locked snapshot has no error code of its own
        // in the API reference, so ask the documented way: a lock that
        // DescribeLockedSnapshots shows in force explains it. A refusal of
        // the caller (no permission) is not about the snapshot: nothing to
        // ask.
        if call.kind != CallErrorKind::Unauthorized {
            if let Some(until) = lock_in_force(exec, &snapshot.id).await {
                let message = err.message().unwrap_or("locked").to_owned();
                return Attempt::Done(DeleteOutcome::Locked { until, message });
            }
        }
        Attempt::Failed(reason)
    })
    .await;
    tried.unwrap_or_else(|gave_up| DeleteOutcome::Failed {
        reason: gave_up.reason(),
    })
}

/// Whether `snapshot_id` is locked (EBS User Guide, "Amazon EBS snapshot
/// lock": "While a snapshot is locked, it can't be deleted by any user"),
/// and until when: `Some(until)` for a lock in force (governance,
/// compliance, or compliance in its cooling-off period), `None` when it is
/// not locked or the lock could not be read.
async fn lock_in_force(
    exec: &Executor,
    snapshot_id: &str,
) -> Option<Option<chrono::DateTime<chrono::Utc>>> {
    let output = exec
        .client
        .describe_locked_snapshots()
        .snapshot_ids(snapshot_id)
        .send()
        .await
        .map_err(|err| tracing::info!(snapshot = snapshot_id, reason = %error_text(&err), "reading the snapshot's lock failed"))
        .ok()?;
    let lock = output
        .snapshots()
        .iter()
        .find(|lock| lock.snapshot_id() == Some(snapshot_id))?;
    match lock.lock_state()? {
        LockState::Governance | LockState::Compliance | LockState::ComplianceCooloff => Some(
            lock.lock_expires_on()
                .and_then(|t| chrono::DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::testing::{ec2_error, ec2_error_body};
    use crate::backup::control::test_executor;
    use crate::backup::report::{RegionRun, Report};
    use crate::exit::ExitStatus;
    use crate::inventory::testing::job_snapshot;
    use crate::inventory::ExistingSnapshot;
    use crate::plan::Plan;
    use crate::values::ReasonCode;
    use aws_sdk_ec2::operation::delete_snapshot::{DeleteSnapshotError, DeleteSnapshotOutput};
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::{TimeZone, Utc};

    fn delete(id: &str, job: Option<&str>) -> Delete {
        Delete {
            snapshot: ExistingSnapshot {
                job: job.map(Into::into),
                ..job_snapshot(
                    id,
                    "vol-1",
                    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
                )
            },
            reason: crate::plan::DeleteReason::Expired,
        }
    }

    fn failing_with(code: &'static str, message: &'static str) -> aws_smithy_mocks::Rule {
        mock!(Client::delete_snapshot)
            .then_error(move || DeleteSnapshotError::generic(ec2_error(code, message)))
    }

    #[tokio::test]
    async fn a_locked_snapshot_is_kept_until_its_lock_ends() {
        use aws_sdk_ec2::operation::describe_locked_snapshots::DescribeLockedSnapshotsOutput;
        use aws_sdk_ec2::types::{LockState, LockedSnapshotsInfo};
        // EC2 refuses the delete (a 400 with a code of its own) and
        // DescribeLockedSnapshots shows the lock in force.
        let refused = mock!(Client::delete_snapshot).then_http_response(|| {
            aws_sdk_ec2::config::http::HttpResponse::new(
                400.try_into().unwrap(),
                ec2_error_body("SnapshotLocked").unwrap().into(),
            )
        });
        let locks = mock!(Client::describe_locked_snapshots)
            .match_requests(|req| req.snapshot_ids() == ["snap-1"])
            .then_output(|| {
                DescribeLockedSnapshotsOutput::builder()
                    .snapshots(
                        LockedSnapshotsInfo::builder()
                            .snapshot_id("snap-1")
                            .lock_state(LockState::Governance)
                            .lock_expires_on(aws_sdk_ec2::primitives::DateTime::from_secs(
                                1_800_000_000,
                            ))
                            .build(),
                    )
                    .build()
            });
        let unlocked = mock!(Client::describe_locked_snapshots)
            .match_requests(|req| req.snapshot_ids() == ["snap-2"])
            .then_output(|| DescribeLockedSnapshotsOutput::builder().build());
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&refused, &locks, &unlocked]
        );
        let deletes = vec![
            delete("snap-1", Some("default")),
            delete("snap-2", Some("default")),
        ];

        let outcomes = delete_all(
            &test_executor(client, false),
            &deletes,
            "default",
            &VolumeGates::default(),
        )
        .await;

        assert_eq!(
            outcomes[0],
            DeleteOutcome::Locked {
                until: chrono::DateTime::from_timestamp(1_800_000_000, 0),
                message: "SnapshotLocked happened".into()
            }
        );
        // Refused without a lock: a failure, as before.
        assert!(
            matches!(&outcomes[1], DeleteOutcome::Failed { reason } if reason.contains("SnapshotLocked")),
            "{:?}",
            outcomes[1]
        );
    }

    #[tokio::test]
    async fn a_snapshot_in_use_by_an_ami_is_kept_reported_and_exits_0() {
        let rule = failing_with(
            "InvalidSnapshot.InUse",
            "The snapshot snap-1 is currently in use by ami-1",
        );
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let deletes = vec![delete("snap-1", Some("default"))];

        let outcomes = delete_all(
            &test_executor(client, false),
            &deletes,
            "default",
            &VolumeGates::default(),
        )
        .await;
        assert_eq!(
            outcomes,
            [DeleteOutcome::InUse {
                message: "The snapshot snap-1 is currently in use by ami-1".into()
            }]
        );

        let config =
            crate::config::Config::from_cli(<crate::cli::Cli as clap::Parser>::parse_from([
                "ebsnap", "purge",
            ]));
        let mut report = Report::new(&config, "run-1".into(), vec!["us-east-1".into()]);
        let plan = Plan {
            deletes,
            ..Plan::default()
        };
        report.add_region(
            "us-east-1",
            RegionRun::Executed {
                plan,
                creates: vec![],
                deletes: outcomes,
                archives: vec![],
                hook_failures: vec![],
                copies: vec![],
            },
        );
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert!(report.deleted.is_empty() && report.failed.is_empty());
        assert!(
            matches!(
                *report.kept[0].reason,
                crate::backup::report::WhyKept::InUse { .. }
            ),
            "{:?}",
            report.kept[0].reason
        );
        assert_eq!(report.kept[0].reason.code(), "in_use");
    }

    #[tokio::test]
    async fn a_retried_delete_that_finds_the_snapshot_gone_counts_as_deleted() {
        // The first attempt deleted it but its answer was lost (500);
        // ebsnap's retry then finds it gone.
        let rule = mock!(Client::delete_snapshot)
            .sequence()
            .http_status(500, None)
            .error(|| DeleteSnapshotError::generic(ec2_error("InvalidSnapshot.NotFound", "gone")))
            .build();
        let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]);
        let outcomes = delete_all(
            &test_executor(client, false),
            &[delete("snap-1", Some("default"))],
            "default",
            &VolumeGates::default(),
        )
        .await;
        assert_eq!(outcomes, [DeleteOutcome::AlreadyGone]);
        assert_eq!(rule.num_calls(), 2);
    }

    #[tokio::test]
    async fn a_snapshot_already_gone_counts_as_deleted() {
        let rule = failing_with(
            "InvalidSnapshot.NotFound",
            "The snapshot 'snap-1' does not exist.",
        );
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let outcomes = delete_all(
            &test_executor(client, false),
            &[delete("snap-1", Some("default"))],
            "default",
            &VolumeGates::default(),
        )
        .await;
        assert_eq!(outcomes, [DeleteOutcome::AlreadyGone]);
    }

    #[tokio::test]
    async fn an_unmarked_snapshot_is_refused_without_any_call() {
        let rule =
            mock!(Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let deletes = [
            delete("snap-theirs", None),
            delete("snap-weekly", Some("weekly")),
        ];

        let outcomes = delete_all(
            &test_executor(client, false),
            &deletes,
            "default",
            &VolumeGates::default(),
        )
        .await;

        assert!(outcomes.iter().all(
            |o| matches!(o, DeleteOutcome::Failed { reason } if reason.starts_with("refused"))
        ));
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test]
    async fn dry_run_deletes_send_dry_run_and_report_permission() {
        let allowed = mock!(Client::delete_snapshot)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(|| {
                DeleteSnapshotError::generic(ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded",
                ))
            });
        let client = mock_client!(aws_sdk_ec2, [&allowed]);
        let outcomes = delete_all(
            &test_executor(client, true),
            &[delete("snap-1", Some("default"))],
            "default",
            &VolumeGates::default(),
        )
        .await;
        assert_eq!(outcomes, [DeleteOutcome::Allowed]);

        let denied = failing_with(
            "UnauthorizedOperation",
            "You are not authorized to perform this operation.",
        );
        let client = mock_client!(aws_sdk_ec2, [&denied]);
        let outcomes = delete_all(
            &test_executor(client, true),
            &[delete("snap-1", Some("default"))],
            "default",
            &VolumeGates::default(),
        )
        .await;
        assert!(
            matches!(&outcomes[0], DeleteOutcome::Failed { reason } if reason.starts_with("not permitted: UnauthorizedOperation"))
        );
    }

    #[tokio::test]
    async fn a_volumes_deletes_wait_for_its_create_while_other_volumes_go_on() {
        let rule =
            mock!(Client::delete_snapshot).then_output(|| DeleteSnapshotOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&rule]);
        let mut waiting = delete("snap-a", Some("default"));
        waiting.snapshot.volume_id = "vol-a".into();
        let mut free = delete("snap-b", Some("default"));
        free.snapshot.volume_id = "vol-b".into();
        let gates = VolumeGates::new(["vol-a"]);
        let exec = test_executor(client, false);

        let deletes = [waiting, free];
        let purge = delete_all(&exec, &deletes, "default", &gates);
        let snapshot_step = async {
            // vol-b's delete is sent while vol-a's create is still out...
            while rule.num_calls() == 0 {
                tokio::task::yield_now().await;
            }
            // ...then vol-a's create fails.
            gates.settle("vol-a", false);
        };
        let (outcomes, ()) = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            tokio::join!(purge, snapshot_step)
        })
        .await
        .expect("vol-b's delete must not wait for vol-a's create");

        assert_eq!(outcomes, [DeleteOutcome::Withheld, DeleteOutcome::Deleted]);
        assert_eq!(rule.num_calls(), 1, "vol-a's snapshot is never sent");
    }

    #[test]
    fn deletes_of_volumes_without_a_create_go_first_then_in_create_order() {
        let on = |id: &str, volume: &str| {
            let mut d = delete(id, Some("default"));
            d.snapshot.volume_id = volume.into();
            d
        };
        let deletes = [
            on("a1", "vol-late"),
            on("b1", "vol-free"),
            on("c1", "vol-early"),
            on("b2", "vol-free"),
            on("a2", "vol-late"),
        ];
        let gates = VolumeGates::new(["vol-early", "vol-late"]);
        let order = delete_order(&deletes, |v| gates.create_rank(v));
        let ids: Vec<&str> = order.iter().map(|&i| &*deletes[i].snapshot.id).collect();
        assert_eq!(ids, ["b1", "b2", "c1", "a1", "a2"]);
    }

    #[tokio::test]
    async fn a_throttled_delete_is_retried_by_ebsnap_through_its_pacing() {
        let rule = mock!(Client::delete_snapshot)
            .sequence()
            .http_status(503, None)
            .times(2)
            .output(|| DeleteSnapshotOutput::builder().build())
            .build();
        let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&rule]);
        let exec = test_executor(client, false);
        let outcomes = delete_all(
            &exec,
            &[delete("snap-1", Some("default"))],
            "default",
            &VolumeGates::default(),
        )
        .await;
        assert_eq!(outcomes, [DeleteOutcome::Deleted]);
        assert_eq!(rule.num_calls(), 3, "one SDK attempt per paced try");
    }
}
