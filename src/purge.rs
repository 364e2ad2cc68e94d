//! The purge step: one DeleteSnapshot per planned delete, each re-checked
//! against the job's marker just before it is sent (safety rule 1).

use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::Client;
use futures_util::{stream, StreamExt};

use crate::aws::{dry_run_verdict, error_text, MAX_IN_FLIGHT};
use crate::plan::Delete;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// EC2 says the snapshot no longer exists: the goal is met, it counts as
    /// deleted.
    AlreadyGone,
    /// Dry run: EC2 confirmed the credentials may delete it.
    Allowed,
    /// An AMI still uses the snapshot: kept and reported, not a failure
    /// (safety rule 5).
    InUse { message: String },
    Failed { reason: String },
}

/// Carries out (or, in a dry run, checks) every delete; outcomes come back in
/// the order of `deletes`.
pub async fn delete_all(client: &Client, deletes: &[Delete], job: &str, dry_run: bool) -> Vec<DeleteOutcome> {
    stream::iter(deletes)
        .map(|delete| delete_one(client, delete, job, dry_run))
        .buffered(MAX_IN_FLIGHT)
        .collect()
        .await
}

async fn delete_one(client: &Client, delete: &Delete, job: &str, dry_run: bool) -> DeleteOutcome {
    let snapshot = &delete.snapshot;
    if !snapshot.is_marked_for(job) {
        return DeleteOutcome::Failed {
            reason: format!("refused: {} does not carry ebsnap:job={job}", snapshot.id),
        };
    }
    let result = client.delete_snapshot().snapshot_id(&snapshot.id).dry_run(dry_run).send().await;
    if dry_run {
        return match dry_run_verdict(result) {
            Ok(()) => DeleteOutcome::Allowed,
            Err(reason) => DeleteOutcome::Failed { reason },
        };
    }
    match result {
        Ok(_) => {
            tracing::info!(snapshot = %snapshot.id, "deleted snapshot");
            DeleteOutcome::Deleted
        }
        Err(err) => match err.code() {
            Some("InvalidSnapshot.NotFound") => DeleteOutcome::AlreadyGone,
            Some("InvalidSnapshot.InUse") => {
                DeleteOutcome::InUse { message: err.message().unwrap_or("in use").to_owned() }
            }
            _ => {
                let reason = error_text(&err);
                tracing::warn!(snapshot = %snapshot.id, %reason, "delete failed");
                DeleteOutcome::Failed { reason }
            }
        },
    }
}
