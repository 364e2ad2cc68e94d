//! The archive step (`--archive-after`): the planned snapshots are tagged
//! `ebsnap:archived-at` (one CreateTags for up to 100 of them), then each is
//! moved to the archive tier by ModifySnapshotTier. The tag goes first, so that a snapshot ebsnap asked
//! EC2 to archive is always known as ebsnap's to delete later, even when the
//! answer to ModifySnapshotTier is lost.
//!
//! EBS User Guide, "Archive an Amazon EBS snapshot" (archive-snapshot.html):
//! only a `completed` snapshot can be archived, and "you can continue to use
//! the snapshot while the archive is in process". ModifySnapshotTier's API
//! reference names no error codes of its own; a second request for a
//! snapshot already on its way answers with a refusal, which ebsnap
//! recognises by asking DescribeSnapshotTierStatus, not by the code.
//!
//! Both calls are retried by ebsnap (`retry`), not the SDK, like every call
//! that changes the account: the tags through the CreateTags bucket, the
//! archives through a bucket of their own (`Executor::archive_pacer`).

use aws_sdk_ec2::types::{TargetStorageTier, TieringOperationStatus};
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{stream, StreamExt};

use crate::aws::codes::Ec2Code;
use crate::aws::{dry_run_verdict, ec2_tags, error_text, CallError, MAX_IN_FLIGHT};
use crate::backup::control::Executor;
use crate::backup::retry::{failure_of, no_retries, retry, Attempt, Backoff, CallFailure, GaveUp};
use crate::discovery::snapshot_tier_status;
use crate::inventory::TAG_ARCHIVED_AT;
use crate::plan::Archive;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ArchiveOutcome {
    /// EC2 took the request: the snapshot is on its way to the archive.
    Requested,
    /// Dry run: EC2 confirmed the credentials may tag and archive it.
    Allowed,
    Failed {
        reason: String,
    },
}

/// How many snapshots one CreateTags names. All the run's archives carry
/// the same tag, so one call tags many; CreateTags' API reference sets no
/// limit on its resource ids, and a hundred keeps each call small.
const TAG_BATCH: usize = 100;

/// Carries out (or, in a dry run, checks) every archive; outcomes come back
/// in the order of `archives`. The tags go first, a batch a call; then the
/// ModifySnapshotTier calls, at most `MAX_IN_FLIGHT` at a time, each only
/// for a snapshot that got its tag.
pub(crate) async fn archive_all(
    exec: &Executor,
    archives: &[Archive],
    now: DateTime<Utc>,
) -> Vec<ArchiveOutcome> {
    let asked_at = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    let ids: Vec<&str> = archives.iter().map(|a| &*a.snapshot.id).collect();
    let tagged = tag_all(exec, &ids, &asked_at).await;
    stream::iter(ids.into_iter().zip(tagged))
        .map(|(id, tagged)| async move {
            match tagged {
                Ok(()) => archive_one(exec, id).await,
                Err(reason) => ArchiveOutcome::Failed {
                    reason: format!("tagging it {TAG_ARCHIVED_AT}: {reason}"),
                },
            }
        })
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await
}

/// Tags `ids` `ebsnap:archived-at`, `TAG_BATCH` a call; a batch EC2
/// refuses (one snapshot of it gone meanwhile, say) is tagged again one
/// snapshot a call, so one refusal fails only its own archive.
async fn tag_all(exec: &Executor, ids: &[&str], asked_at: &str) -> Vec<Result<(), String>> {
    let mut results = Vec::with_capacity(ids.len());
    for batch in ids.chunks(TAG_BATCH) {
        match tag(exec, batch, asked_at).await {
            Ok(()) => results.extend(batch.iter().map(|_| Ok(()))),
            Err(_) if batch.len() > 1 => {
                for id in batch {
                    results.push(tag(exec, std::slice::from_ref(id), asked_at).await);
                }
            }
            Err(reason) => results.push(Err(reason)),
        }
    }
    results
}

/// Whether a failed archive call is tried again: throttled, or its answer
/// lost (the classes the SDK's own retries covered before ebsnap took them
/// over, so they go through the buckets). Anything else is its outcome.
fn archive_retry<T>(failure: CallFailure, reason: String) -> Attempt<T, String> {
    match failure {
        CallFailure::Throttled | CallFailure::MaybeApplied => {
            Attempt::Retry(Backoff::Standard, reason)
        }
        _ => Attempt::Failed(reason),
    }
}

/// Tags `ids` (one CreateTags), retried by ebsnap through the CreateTags
/// bucket; a dry run asks once.
async fn tag(exec: &Executor, ids: &[&str], asked_at: &str) -> Result<(), String> {
    let tagged = retry(exec.retries(&exec.tag_pacer), async |_| {
        let tagged = exec
            .client
            .create_tags()
            .set_resources(Some(ids.iter().map(|id| (*id).to_owned()).collect()))
            .set_tags(Some(ec2_tags([(TAG_ARCHIVED_AT, asked_at)])))
            .dry_run(exec.dry_run)
            .customize()
            .config_override(no_retries())
            .send()
            .await;
        if exec.dry_run {
            return Attempt::Done(dry_run_verdict(tagged));
        }
        match tagged {
            Ok(_) => Attempt::Done(Ok(())),
            Err(err) => archive_retry(failure_of(&err), error_text(&err)),
        }
    })
    .await;
    tagged.unwrap_or_else(|gave_up| Err(gave_up.reason()))
}

/// One ModifySnapshotTier, retried by ebsnap through the archive bucket
/// (`Executor::archive_pacer`); a dry run asks once.
async fn archive_one(exec: &Executor, id: &str) -> ArchiveOutcome {
    let dry_run = exec.dry_run;
    // Whether EC2 refused the caller, rather than the request.
    let mut unauthorized = false;
    let tried = retry(exec.retries(&exec.archive_pacer), async |_| {
        let result = exec
            .client
            .modify_snapshot_tier()
            .snapshot_id(id)
            .storage_tier(TargetStorageTier::Archive)
            .dry_run(dry_run)
            .customize()
            .config_override(no_retries())
            .send()
            .await;
        if dry_run {
            return Attempt::Done(match dry_run_verdict(result) {
                Ok(()) => ArchiveOutcome::Allowed,
                Err(reason) => ArchiveOutcome::Failed { reason },
            });
        }
        match result {
            Ok(_) => {
                tracing::info!(snapshot = id, "archiving snapshot");
                Attempt::Done(ArchiveOutcome::Requested)
            }
            Err(err) => {
                unauthorized = CallError::new(&err).code == Some(Ec2Code::UnauthorizedOperation);
                archive_retry(failure_of(&err), error_text(&err))
            }
        }
    })
    .await;
    match tried {
        Ok(outcome) => outcome,
        // Stopped before any attempt: nothing was asked.
        Err(GaveUp::Stopped(None, reason)) => ArchiveOutcome::Failed { reason },
        // A retry after a lost answer finds the archive under way and is
        // refused: ask EC2 what it is doing with it.
        Err(_) if !unauthorized && archival_under_way(exec, id).await => {
            tracing::info!(snapshot = id, "archive already under way");
            ArchiveOutcome::Requested
        }
        Err(gave_up) => ArchiveOutcome::Failed {
            reason: gave_up.reason(),
        },
    }
}

/// Whether EC2 is archiving `snapshot_id`, or has: DescribeSnapshotTierStatus
/// (API reference, SnapshotTierStatus: lastTieringOperationStatus
/// `archival-in-progress` or `archival-completed`).
async fn archival_under_way(exec: &Executor, snapshot_id: &str) -> bool {
    let status = snapshot_tier_status(&exec.client, snapshot_id).await;
    matches!(
        status
            .ok()
            .flatten()
            .as_ref()
            .and_then(|s| s.last_tiering_operation_status()),
        Some(
            TieringOperationStatus::ArchivalInProgress | TieringOperationStatus::ArchivalCompleted
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::testing::ec2_error;
    use crate::backup::control::test_executor;
    use crate::backup::report::{RegionRun, Report};
    use crate::exit::ExitStatus;
    use crate::inventory::testing::job_snapshot;
    use crate::plan::Plan;
    use crate::retention::KeptBy;
    use aws_sdk_ec2::operation::create_tags::{CreateTagsError, CreateTagsOutput};
    use aws_sdk_ec2::operation::describe_snapshot_tier_status::DescribeSnapshotTierStatusOutput;
    use aws_sdk_ec2::operation::modify_snapshot_tier::{
        ModifySnapshotTierError, ModifySnapshotTierOutput,
    };
    use aws_sdk_ec2::types::SnapshotTierStatus;
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::{TimeZone, Utc};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 2, 3, 0, 0).unwrap()
    }

    fn archive(id: &str) -> Archive {
        let start = Utc.with_ymd_and_hms(2026, 9, 30, 2, 0, 0).unwrap();
        Archive {
            snapshot: job_snapshot(id, "vol-1", start),
            kept_by: KeptBy::Last(1),
            released_at_earliest: Utc.with_ymd_and_hms(2027, 9, 1, 0, 0, 0).unwrap(),
        }
    }

    fn tagged_archived_at() -> aws_smithy_mocks::Rule {
        mock!(Client::create_tags)
            .match_requests(|req| {
                req.tags().len() == 1
                    && req.tags()[0].key() == Some(TAG_ARCHIVED_AT)
                    && req.tags()[0].value() == Some("2026-12-02T03:00:00Z")
            })
            .then_output(|| CreateTagsOutput::builder().build())
    }

    #[tokio::test]
    async fn each_snapshot_is_tagged_then_sent_to_the_archive() {
        let tag = tagged_archived_at();
        let modify = mock!(Client::modify_snapshot_tier)
            .match_requests(|req| {
                req.snapshot_id() == Some("snap-1")
                    && req.storage_tier() == Some(&TargetStorageTier::Archive)
            })
            .then_output(|| {
                ModifySnapshotTierOutput::builder()
                    .snapshot_id("snap-1")
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::Sequential, [&tag, &modify]);
        let outcomes =
            archive_all(&test_executor(client, false), &[archive("snap-1")], now()).await;
        assert_eq!(outcomes, [ArchiveOutcome::Requested]);
        assert_eq!((tag.num_calls(), modify.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn the_tags_go_a_batch_a_call_and_a_refused_batch_one_snapshot_a_call() {
        let modify = mock!(Client::modify_snapshot_tier)
            .then_output(|| ModifySnapshotTierOutput::builder().build());
        // Three archives: one CreateTags names all three.
        let batch = mock!(Client::create_tags)
            .match_requests(|req| req.resources() == ["snap-1", "snap-2", "snap-3"])
            .then_output(|| CreateTagsOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&batch, &modify]);
        let three = [archive("snap-1"), archive("snap-2"), archive("snap-3")];
        let outcomes = archive_all(&test_executor(client, false), &three, now()).await;
        assert_eq!(outcomes, vec![ArchiveOutcome::Requested; 3]);
        assert_eq!((batch.num_calls(), modify.num_calls()), (1, 3));

        // snap-2 is gone: the batch is refused, then each is tagged alone,
        // and only snap-2's archive fails.
        let refused = |req: &aws_sdk_ec2::operation::create_tags::CreateTagsInput| {
            req.resources().iter().any(|r| r == "snap-2")
        };
        let gone = mock!(Client::create_tags)
            .match_requests(refused)
            .then_error(|| {
                CreateTagsError::generic(ec2_error("InvalidSnapshot.NotFound", "snap-2"))
            });
        let alone = mock!(Client::create_tags)
            .match_requests(move |req| !refused(req) && req.resources().len() == 1)
            .then_output(|| CreateTagsOutput::builder().build());
        let modify = mock!(Client::modify_snapshot_tier)
            .then_output(|| ModifySnapshotTierOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&gone, &alone, &modify]);
        let outcomes = archive_all(&test_executor(client, false), &three, now()).await;
        assert_eq!(outcomes[0], ArchiveOutcome::Requested);
        assert!(
            matches!(&outcomes[1], ArchiveOutcome::Failed { reason } if reason.contains("NotFound")),
            "{outcomes:?}"
        );
        assert_eq!(outcomes[2], ArchiveOutcome::Requested);
        assert_eq!(
            (gone.num_calls(), alone.num_calls(), modify.num_calls()),
            (2, 2, 2)
        );
    }

    #[tokio::test]
    async fn a_refusal_of_one_already_on_its_way_counts_and_any_other_fails() {
        let tag = tagged_archived_at();
        let refused = mock!(Client::modify_snapshot_tier).then_error(|| {
            ModifySnapshotTierError::generic(ec2_error("IncorrectState", "already archiving"))
        });
        let under_way = mock!(Client::describe_snapshot_tier_status)
            .match_requests(|req| {
                req.filters()
                    .iter()
                    .any(|f| f.name() == Some("snapshot-id") && f.values() == ["snap-1"])
            })
            .then_output(|| {
                DescribeSnapshotTierStatusOutput::builder()
                    .snapshot_tier_statuses(
                        SnapshotTierStatus::builder()
                            .snapshot_id("snap-1")
                            .last_tiering_operation_status(
                                TieringOperationStatus::ArchivalInProgress,
                            )
                            .build(),
                    )
                    .build()
            });
        let not_under_way = mock!(Client::describe_snapshot_tier_status)
            .then_output(|| DescribeSnapshotTierStatusOutput::builder().build());
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&tag, &refused, &under_way, &not_under_way]
        );
        let exec = test_executor(client, false);
        let outcomes = archive_all(&exec, &[archive("snap-1"), archive("snap-2")], now()).await;
        assert_eq!(outcomes[0], ArchiveOutcome::Requested);
        assert!(
            matches!(&outcomes[1], ArchiveOutcome::Failed { reason } if reason.contains("IncorrectState")),
            "{:?}",
            outcomes[1]
        );
    }

    #[tokio::test]
    async fn an_untaggable_snapshot_is_never_sent_to_the_archive() {
        // Without its tag ebsnap could not tell the archived snapshot for
        // its own: the archive waits for a run that can tag it.
        let refused = mock!(Client::create_tags).then_error(|| {
            CreateTagsError::generic(ec2_error("UnauthorizedOperation", "not allowed"))
        });
        let modify = mock!(Client::modify_snapshot_tier)
            .then_output(|| ModifySnapshotTierOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&refused, &modify]);
        let outcomes =
            archive_all(&test_executor(client, false), &[archive("snap-1")], now()).await;
        assert!(
            matches!(&outcomes[0], ArchiveOutcome::Failed { reason } if reason.starts_with("tagging it ebsnap:archived-at")),
            "{outcomes:?}"
        );
        assert_eq!(modify.num_calls(), 0);

        // The report names it, and the run fails: the operator must fix it.
        let config =
            crate::config::Config::from_cli(<crate::cli::Cli as clap::Parser>::parse_from([
                "ebsnap", "purge",
            ]));
        let mut report = Report::new(&config, "run-1".into(), vec!["us-east-1".into()]);
        let plan = Plan {
            archives: vec![archive("snap-1")],
            ..Plan::default()
        };
        report.add_region(
            "us-east-1",
            RegionRun::Executed {
                plan,
                creates: vec![],
                deletes: vec![],
                archives: outcomes,
                hook_failures: vec![],
                copies: vec![],
            },
        );
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(
            report.failed[0].action,
            crate::backup::report::FailureAction::Archive
        );
        assert!(report.archived.is_empty());
    }

    #[tokio::test]
    async fn a_dry_run_checks_both_permissions_and_changes_nothing() {
        let dry = |code: &'static str| ec2_error(code, "Request would have succeeded");
        let tag = mock!(Client::create_tags)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(move || CreateTagsError::generic(dry("DryRunOperation")));
        let modify = mock!(Client::modify_snapshot_tier)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(move || ModifySnapshotTierError::generic(dry("DryRunOperation")));
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&tag, &modify]);
        let outcomes = archive_all(&test_executor(client, true), &[archive("snap-1")], now()).await;
        assert_eq!(outcomes, [ArchiveOutcome::Allowed]);
        assert_eq!((tag.num_calls(), modify.num_calls()), (1, 1));
    }
}
