//! `--copy-to`: disaster-recovery copies of each new snapshot in other
//! regions, and the purge of those copies there.
//!
//! A copy carries the tag contract (so it is the job's, and only the job's
//! purge ever deletes it) plus `ebsnap:source-snapshot` and
//! `ebsnap:source-region`. CopySnapshot has no client token either: it is
//! retried like a create, and after a lost answer ebsnap first looks for a
//! copy of that snapshot made by this run (safety rule 7).

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use futures_util::{stream, StreamExt};

use crate::aws::{tag_spec, MAX_IN_FLIGHT};
use crate::backup::control::{Executor, VolumeGates};
use crate::backup::purge::DeleteOutcome;
use crate::backup::retry::{create_with_retries, made_one, no_retries, only_snapshot};
use crate::backup::snapshot::CreateOutcome;
use crate::config::{CopySettings, Policy};
use crate::inventory::{TAG_SOURCE_REGION, TAG_SOURCE_SNAPSHOT};
use crate::plan::{Create, Plan};

/// One copy to make: a snapshot of this run, to one destination region.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CopyJob {
    /// The create (in the source region's plan) whose snapshot is copied.
    pub create: Create,
    /// `None` in a dry run: the snapshot does not exist yet.
    pub source_snapshot_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CopyOutcome {
    Copied {
        snapshot_id: String,
    },
    /// Dry run: the copy would be made once the snapshot is completed. No
    /// call is sent: there is no snapshot yet to try CopySnapshot with.
    Planned,
    Failed {
        reason: String,
    },
}

/// What `--copy-to` did in one destination region for one source region.
#[derive(Debug)]
pub(crate) struct CopyRun {
    /// The destination region.
    pub region: String,
    pub copies: Vec<(CopyJob, CopyOutcome)>,
    /// The purge of the copies there (when the command purges): its plan and
    /// outcomes, or why the copies could not be listed.
    pub purge: Option<Result<(Plan, Vec<DeleteOutcome>), String>>,
}

/// The copies to make in one destination: one per snapshot this run made
/// (completed: the run waited for it), or in a dry run one per create EC2
/// allowed. A failed or unfinished snapshot is not copied.
pub(crate) fn plan_copies(creates: &[Create], outcomes: &[CreateOutcome]) -> Vec<CopyJob> {
    creates
        .iter()
        .zip(outcomes)
        .filter_map(|(create, outcome)| {
            let source_snapshot_id = match outcome {
                CreateOutcome::Created { snapshot_id } => Some(snapshot_id.clone()),
                CreateOutcome::Allowed => None,
                CreateOutcome::Failed { .. } | CreateOutcome::Unfinished { .. } => return None,
            };
            Some(CopyJob {
                create: create.clone(),
                source_snapshot_id,
            })
        })
        .collect()
}

/// The copies' tags: the contract's, as on the source, where it came from,
/// the user's (`--tag`), and as many copied tags as fit (planned with the
/// create). All in the CopySnapshot call itself, so a copy carries the
/// user's tags (cost allocation) from its first instant, like its source.
pub(crate) fn copy_tags(
    job: &CopyJob,
    source_snapshot_id: &str,
    source_region: &str,
) -> Vec<(String, String)> {
    let tags = &job.create.copy_tags;
    let source = [
        (TAG_SOURCE_SNAPSHOT, source_snapshot_id),
        (TAG_SOURCE_REGION, source_region),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()));
    tags.contract
        .iter()
        .cloned()
        .chain(source)
        .chain(tags.user.iter().cloned())
        .chain(tags.copied.iter().cloned())
        .collect()
}

/// The (instance, device) pairs whose copy failed: their old copies stay
/// (safety rule 3).
pub(crate) fn failed_sources(copies: &[(CopyJob, CopyOutcome)]) -> HashSet<(String, String)> {
    copies
        .iter()
        .filter(|(_, outcome)| matches!(outcome, CopyOutcome::Failed { .. }))
        .map(|(job, _)| (job.create.instance_id.clone(), job.create.device.clone()))
        .collect()
}

/// What one source region's run does in its copy regions.
pub(crate) struct CopyStep<'a> {
    pub settings: &'a CopySettings,
    pub source_region: &'a str,
    pub job: &'a str,
    pub run_id: &'a str,
    /// Whether the command purges (`run`, `purge`): then the copies there
    /// past `--copy-retention` go too.
    pub purge: bool,
    pub policy: &'a Policy,
    pub now: DateTime<Utc>,
}

/// Copies this run's snapshots to each destination (an executor each, with
/// its own pacing), then purges the copies there; destinations concurrently.
pub(crate) async fn copy_and_purge(
    step: &CopyStep<'_>,
    destinations: &[(String, Executor)],
    creates: &[Create],
    outcomes: &[CreateOutcome],
) -> Vec<CopyRun> {
    let jobs = plan_copies(creates, outcomes);
    let each = destinations
        .iter()
        .map(|(region, exec)| copy_to_region(step, region, exec, &jobs));
    futures_util::future::join_all(each).await
}

async fn copy_to_region(
    step: &CopyStep<'_>,
    region: &str,
    exec: &Executor,
    jobs: &[CopyJob],
) -> CopyRun {
    let copies: Vec<(CopyJob, CopyOutcome)> = stream::iter(jobs)
        .map(|job| async move { (job.clone(), copy_one(step, exec, job).await) })
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await;
    let purge = if step.purge {
        Some(purge_copies(step, exec, &failed_sources(&copies)).await)
    } else {
        None
    };
    CopyRun {
        region: region.to_owned(),
        copies,
        purge,
    }
}

async fn copy_one(step: &CopyStep<'_>, exec: &Executor, job: &CopyJob) -> CopyOutcome {
    let Some(source_id) = &job.source_snapshot_id else {
        return CopyOutcome::Planned;
    };
    let tags = copy_tags(job, source_id, step.source_region);
    let description = format!(
        "copy of {source_id} from {}: {}",
        step.source_region, job.create.description
    );
    let kms_key_id = step.settings.kms_key_id.as_deref();
    let send = || async {
        let output = exec
            .client
            .copy_snapshot()
            .source_region(step.source_region)
            .source_snapshot_id(source_id)
            .description(&description)
            .set_kms_key_id(kms_key_id.map(str::to_owned))
            .set_encrypted(kms_key_id.map(|_| true))
            .tag_specifications(tag_spec(
                aws_sdk_ec2::types::ResourceType::Snapshot,
                tags.iter().cloned(),
            ))
            .customize()
            .config_override(no_retries())
            .send()
            .await?;
        Ok(made_one(&job.create.volume_id, output.snapshot_id()))
    };
    let lookup = (TAG_SOURCE_SNAPSHOT, source_id.as_str());
    match only_snapshot(create_with_retries(exec, send, lookup, &[], step.run_id, "the copy").await)
    {
        Ok(snapshot_id) => {
            tracing::info!(snapshot = %snapshot_id, source = %source_id, "copied snapshot");
            CopyOutcome::Copied { snapshot_id }
        }
        Err(reason) => CopyOutcome::Failed { reason },
    }
}

/// Lists the job's copies from this source region in the destination, plans
/// their purge under `--copy-retention`, and carries it out.
async fn purge_copies(
    step: &CopyStep<'_>,
    exec: &Executor,
    failed: &HashSet<(String, String)>,
) -> Result<(Plan, Vec<DeleteOutcome>), String> {
    let listed = exec
        .stop
        .race(crate::discovery::job_copies(
            &exec.client,
            step.job,
            step.source_region,
        ))
        .await?;
    let copies = listed.map_err(|err| format!("{err:#}"))?;
    let plan = crate::plan::build_copy_purge(
        copies,
        step.policy,
        step.settings.retention,
        failed,
        step.now,
    );
    let deletes =
        crate::backup::purge::delete_all(exec, &plan.deletes, step.job, &VolumeGates::default())
            .await;
    Ok((plan, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::control::test_executor;
    use aws_sdk_ec2::operation::copy_snapshot::{CopySnapshotInput, CopySnapshotOutput};
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsInput, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::types::Snapshot;
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::{TimeDelta, TimeZone};

    /// The create of `volume` at `device` of i-1 (redis-1), planned for job
    /// `default`, run `run-1`, with the user's tags `user` and `copied`
    /// ones.
    fn create_tagged(
        volume: &str,
        device: &str,
        user: &[(String, String)],
        copied: Vec<(String, String)>,
    ) -> Create {
        let run = crate::plan::RunTags {
            job: "default",
            run_id: "run-1",
            user: &user.into(),
        };
        Create::new("i-1", Some("redis-1"), volume, device, run, copied, vec![])
    }

    fn create(volume: &str, device: &str) -> Create {
        create_tagged(volume, device, &[], vec![])
    }

    #[test]
    fn a_copy_keeps_ebsnaps_own_tags_and_as_many_copied_ones_as_fit_in_fifty() {
        let mut job = copy_of_snap_src();
        // As many as fit on the source beside the contract: 45.
        let copied = (0..45).map(|i| (format!("k{i:02}"), "v".into())).collect();
        job.create = create_tagged("vol-a", "/dev/xvda", &[], copied);
        let tags = copy_tags(&job, "snap-src", "us-east-1");
        assert_eq!(tags.len(), 50);
        for key in [
            TAG_SOURCE_SNAPSHOT,
            TAG_SOURCE_REGION,
            "ebsnap:job",
            "ebsnap:device",
        ] {
            assert!(tags.iter().any(|(k, _)| k == key), "{key}");
        }
        assert_eq!(job.create.copy_dropped_tags, ["k43", "k44"]);
    }

    #[test]
    fn a_copy_carries_the_users_tags_which_take_room_from_the_copied_ones() {
        let mut job = copy_of_snap_src();
        let user: Vec<(String, String)> =
            (0..3).map(|i| (format!("user-{i}"), "u".into())).collect();
        // As many as fit on the source beside the contract and the user's.
        let copied = (0..42).map(|i| (format!("k{i:02}"), "v".into())).collect();
        job.create = create_tagged("vol-a", "/dev/xvda", &user, copied);
        let tags = copy_tags(&job, "snap-src", "us-east-1");
        assert_eq!(tags.len(), 50);
        for (key, value) in &user {
            assert!(tags.contains(&(key.clone(), value.clone())), "{key}");
        }
        assert!(tags.iter().any(|(k, _)| k == TAG_SOURCE_SNAPSHOT));
        assert_eq!(job.create.copy_dropped_tags, ["k40", "k41"]);
    }

    /// The copy of snap-src, this run's snapshot of vol-a.
    fn copy_of_snap_src() -> CopyJob {
        CopyJob {
            create: create("vol-a", "/dev/xvda"),
            source_snapshot_id: Some("snap-src".into()),
        }
    }

    fn settings(kms_key_id: Option<&str>) -> CopySettings {
        CopySettings {
            regions: vec!["us-west-2".into()],
            retention: Some(TimeDelta::days(30)),
            kms_key_id: kms_key_id.map(str::to_owned),
        }
    }

    fn step<'a>(settings: &'a CopySettings, policy: &'a Policy) -> CopyStep<'a> {
        CopyStep {
            settings,
            source_region: "us-east-1",
            job: "default",
            run_id: "run-1",
            purge: false,
            policy,
            now: Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap(),
        }
    }

    fn error_body(code: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{code}</Code>\
             <Message>{code} happened</Message></Error></Errors><RequestID>r-1</RequestID></Response>"
        )
    }

    fn requested_tags(req: &CopySnapshotInput) -> Vec<(String, String)> {
        req.tag_specifications()
            .iter()
            .flat_map(|spec| spec.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// The look, after a lost answer, for this run's copy of snap-src.
    fn looks_for_the_copy(req: &DescribeSnapshotsInput) -> bool {
        let has = |name: &str, value: &str| {
            req.filters()
                .iter()
                .any(|f| f.name() == Some(name) && f.values().iter().any(|v| v == value))
        };
        has("tag:ebsnap:run-id", "run-1") && has("tag:ebsnap:source-snapshot", "snap-src")
    }

    #[test]
    fn only_snapshots_this_run_made_are_copied() {
        let creates = [
            create("vol-a", "/dev/xvda"),
            create("vol-b", "/dev/xvdb"),
            create("vol-c", "/dev/xvdc"),
            create("vol-d", "/dev/xvdd"),
        ];
        let outcomes = [
            CreateOutcome::Created {
                snapshot_id: "snap-a".into(),
            },
            CreateOutcome::Failed {
                reason: "boom".into(),
            },
            CreateOutcome::Unfinished {
                snapshot_id: "snap-c".into(),
                reason: "ended in error".into(),
            },
            CreateOutcome::Allowed,
        ];
        let jobs = plan_copies(&creates, &outcomes);
        let planned: Vec<(&str, Option<&str>)> = jobs
            .iter()
            .map(|j| (j.create.volume_id.as_str(), j.source_snapshot_id.as_deref()))
            .collect();
        assert_eq!(planned, [("vol-a", Some("snap-a")), ("vol-d", None)]);
    }

    #[tokio::test]
    async fn a_copy_carries_the_contract_and_its_source_in_the_call() {
        let rule = mock!(Client::copy_snapshot)
            .match_requests(|req| {
                req.source_region() == Some("us-east-1")
                    && req.source_snapshot_id() == Some("snap-src")
                    && req.kms_key_id() == Some("alias/dr")
                    && req.encrypted() == Some(true)
                    && requested_tags(req)
                        == [
                            ("ebsnap:job", "default"),
                            ("ebsnap:instance-id", "i-1"),
                            ("ebsnap:device", "/dev/xvda"),
                            ("ebsnap:run-id", "run-1"),
                            ("Name", "redis-1 /dev/xvda"),
                            ("ebsnap:source-snapshot", "snap-src"),
                            ("ebsnap:source-region", "us-east-1"),
                        ]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .then_output(|| {
                CopySnapshotOutput::builder()
                    .snapshot_id("snap-copy")
                    .build()
            });
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), false);
        let (settings, policy) = (settings(Some("alias/dr")), crate::config::testing::policy());
        let job = copy_of_snap_src();

        let outcome = copy_one(&step(&settings, &policy), &exec, &job).await;

        assert_eq!(
            outcome,
            CopyOutcome::Copied {
                snapshot_id: "snap-copy".into()
            }
        );
    }

    #[tokio::test]
    async fn a_copy_whose_answer_was_lost_is_found_instead_of_made_twice() {
        let copy_rule = mock!(Client::copy_snapshot)
            .sequence()
            .http_status(500, Some(error_body("InternalError")))
            .output(|| {
                CopySnapshotOutput::builder()
                    .snapshot_id("snap-second")
                    .build()
            })
            .build();
        let lookup = mock!(Client::describe_snapshots)
            .match_requests(looks_for_the_copy)
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(
                        Snapshot::builder()
                            .snapshot_id("snap-made")
                            .volume_id("vol-ffffffff")
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&copy_rule, &lookup]);
        let exec = test_executor(client, false);
        let (settings, policy) = (settings(None), crate::config::testing::policy());
        let job = copy_of_snap_src();

        let outcome = copy_one(&step(&settings, &policy), &exec, &job).await;

        assert_eq!(
            outcome,
            CopyOutcome::Copied {
                snapshot_id: "snap-made".into()
            }
        );
        assert_eq!(copy_rule.num_calls(), 1, "never a second copy (rule 7)");
        assert_eq!(lookup.num_calls(), 1);
    }

    #[tokio::test]
    async fn too_many_copies_in_progress_waits_and_tries_again() {
        let copy_rule = mock!(Client::copy_snapshot)
            .sequence()
            .http_status(400, Some(error_body("ResourceLimitExceeded")))
            .times(2)
            .output(|| {
                CopySnapshotOutput::builder()
                    .snapshot_id("snap-copy")
                    .build()
            })
            .build();
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&copy_rule]);
        let exec = test_executor(client, false);
        let (settings, policy) = (settings(None), crate::config::testing::policy());
        let job = copy_of_snap_src();

        let outcome = copy_one(&step(&settings, &policy), &exec, &job).await;

        assert_eq!(
            outcome,
            CopyOutcome::Copied {
                snapshot_id: "snap-copy".into()
            }
        );
        assert_eq!(copy_rule.num_calls(), 3);
    }

    #[tokio::test]
    async fn a_dry_run_plans_copies_without_a_call() {
        let rule = mock!(Client::copy_snapshot)
            .then_output(|| CopySnapshotOutput::builder().snapshot_id("never").build());
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), true);
        let (settings, policy) = (settings(None), crate::config::testing::policy());
        let jobs = plan_copies(&[create("vol-a", "/dev/xvda")], &[CreateOutcome::Allowed]);

        let outcome = copy_one(&step(&settings, &policy), &exec, &jobs[0]).await;

        assert_eq!(outcome, CopyOutcome::Planned);
        assert_eq!(rule.num_calls(), 0);
    }

    #[test]
    fn a_failed_copy_names_its_source_volume_for_rule_3() {
        let copies = [
            (
                CopyJob {
                    create: create("vol-a", "/dev/xvda"),
                    source_snapshot_id: Some("snap-a".into()),
                },
                CopyOutcome::Failed {
                    reason: "boom".into(),
                },
            ),
            (
                CopyJob {
                    create: create("vol-b", "/dev/xvdb"),
                    source_snapshot_id: Some("snap-b".into()),
                },
                CopyOutcome::Copied {
                    snapshot_id: "snap-b-copy".into(),
                },
            ),
        ];
        assert_eq!(
            failed_sources(&copies),
            HashSet::from([("i-1".to_string(), "/dev/xvda".to_string())])
        );
    }
}
