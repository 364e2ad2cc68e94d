//! The snapshot step: one CreateSnapshot per planned volume, with every tag
//! of the contract in the create call itself.

use std::collections::HashSet;

use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;
use futures_util::{stream, StreamExt};

use crate::aws::{dry_run_verdict, error_text, MAX_IN_FLIGHT};
use crate::plan::Create;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created {
        snapshot_id: String,
    },
    /// Dry run: EC2 confirmed the credentials may create it.
    Allowed,
    Failed {
        reason: String,
    },
}

/// Carries out (or, in a dry run, checks) every create; outcomes come back
/// in the order of `creates`.
pub async fn create_all(
    client: &Client,
    creates: &[Create],
    job: &str,
    run_id: &str,
    dry_run: bool,
) -> Vec<CreateOutcome> {
    stream::iter(creates)
        .map(|create| create_one(client, create, job, run_id, dry_run))
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await
}

async fn create_one(
    client: &Client,
    create: &Create,
    job: &str,
    run_id: &str,
    dry_run: bool,
) -> CreateOutcome {
    let tags = create
        .tags(job, run_id)
        .into_iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build());
    let result = client
        .create_snapshot()
        .volume_id(&create.volume_id)
        .description(create.description(job))
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Snapshot)
                .set_tags(Some(tags.collect()))
                .build(),
        )
        .dry_run(dry_run)
        .send()
        .await;
    if dry_run {
        return match dry_run_verdict(result) {
            Ok(()) => CreateOutcome::Allowed,
            Err(reason) => CreateOutcome::Failed { reason },
        };
    }
    match result {
        Ok(output) => match output.snapshot_id() {
            Some(id) => {
                tracing::info!(snapshot = id, volume = %create.volume_id, "created snapshot");
                CreateOutcome::Created {
                    snapshot_id: id.to_owned(),
                }
            }
            None => CreateOutcome::Failed {
                reason: "EC2 answered without a snapshot id".into(),
            },
        },
        Err(err) => {
            let reason = error_text(&err);
            tracing::info!(volume = %create.volume_id, %reason, "snapshot failed");
            CreateOutcome::Failed { reason }
        }
    }
}

/// The volumes this run failed to snapshot: their deletes are withheld
/// (safety rule 3).
pub fn failed_volumes(creates: &[Create], outcomes: &[CreateOutcome]) -> HashSet<String> {
    creates
        .iter()
        .zip(outcomes)
        .filter(|(_, outcome)| matches!(outcome, CreateOutcome::Failed { .. }))
        .map(|(create, _)| create.volume_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::testing::ec2_error;
    use aws_sdk_ec2::operation::create_snapshot::{
        CreateSnapshotError, CreateSnapshotInput, CreateSnapshotOutput,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn create(volume: &str) -> Create {
        Create {
            instance_id: "i-1".into(),
            instance_name: Some("redis-1".into()),
            volume_id: volume.into(),
            device: "/dev/sdf".into(),
        }
    }

    fn requested_tags(req: &CreateSnapshotInput) -> Vec<(String, String)> {
        req.tag_specifications()
            .iter()
            .filter(|spec| spec.resource_type() == Some(&ResourceType::Snapshot))
            .flat_map(|spec| spec.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_contract_tag_is_set_in_the_create_call() {
        let rule = mock!(Client::create_snapshot)
            .match_requests(|req| {
                req.dry_run() == Some(false)
                    && req.description()
                        == Some("ebsnap job=nightly instance=i-1 (redis-1) device=/dev/sdf")
                    && requested_tags(req)
                        == [
                            ("ebsnap:job", "nightly"),
                            ("ebsnap:instance-id", "i-1"),
                            ("ebsnap:device", "/dev/sdf"),
                            ("ebsnap:run-id", "run-1"),
                            ("Name", "redis-1 /dev/sdf"),
                        ]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .then_output(|| {
                CreateSnapshotOutput::builder()
                    .snapshot_id("snap-new")
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, [&rule]);

        let outcomes = create_all(&client, &[create("vol-1")], "nightly", "run-1", false).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-new".into()
            }]
        );
    }

    #[tokio::test]
    async fn dry_run_reports_per_action_whether_it_is_permitted() {
        let allowed = mock!(Client::create_snapshot)
            .match_requests(|req| req.dry_run() == Some(true) && req.volume_id() == Some("vol-ok"))
            .then_error(|| {
                CreateSnapshotError::generic(ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded",
                ))
            });
        let denied = mock!(Client::create_snapshot)
            .match_requests(|req| {
                req.dry_run() == Some(true) && req.volume_id() == Some("vol-denied")
            })
            .then_error(|| {
                CreateSnapshotError::generic(ec2_error(
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                ))
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&allowed, &denied]);
        let creates = [create("vol-ok"), create("vol-denied")];

        let outcomes = create_all(&client, &creates, "default", "run-1", true).await;

        assert_eq!(
            outcomes,
            [
                CreateOutcome::Allowed,
                CreateOutcome::Failed {
                    reason: "not permitted: UnauthorizedOperation: You are not authorized to perform this operation.".into()
                },
            ]
        );
        assert_eq!(
            failed_volumes(&creates, &outcomes),
            HashSet::from(["vol-denied".to_string()])
        );
    }

    #[tokio::test]
    async fn a_refused_create_is_a_failure_of_that_volume_only() {
        let ok = mock!(Client::create_snapshot)
            .match_requests(|req| req.volume_id() == Some("vol-a"))
            .then_output(|| {
                CreateSnapshotOutput::builder()
                    .snapshot_id("snap-a")
                    .build()
            });
        let refused = mock!(Client::create_snapshot)
            .match_requests(|req| req.volume_id() == Some("vol-b"))
            .then_error(|| {
                CreateSnapshotError::generic(ec2_error("IncorrectState", "volume is busy"))
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&ok, &refused]);
        let creates = [create("vol-a"), create("vol-b")];

        let outcomes = create_all(&client, &creates, "default", "run-1", false).await;

        assert_eq!(
            outcomes[0],
            CreateOutcome::Created {
                snapshot_id: "snap-a".into()
            }
        );
        assert_eq!(
            outcomes[1],
            CreateOutcome::Failed {
                reason: "IncorrectState: volume is busy".into()
            }
        );
        assert_eq!(
            failed_volumes(&creates, &outcomes),
            HashSet::from(["vol-b".to_string()])
        );
    }
}
