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
    Created { snapshot_id: String },
    /// Dry run: EC2 confirmed the credentials may create it.
    Allowed,
    Failed { reason: String },
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

async fn create_one(client: &Client, create: &Create, job: &str, run_id: &str, dry_run: bool) -> CreateOutcome {
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
                CreateOutcome::Created { snapshot_id: id.to_owned() }
            }
            None => CreateOutcome::Failed { reason: "EC2 answered without a snapshot id".into() },
        },
        Err(err) => {
            let reason = error_text(&err);
            tracing::warn!(volume = %create.volume_id, %reason, "snapshot failed");
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
