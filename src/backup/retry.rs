//! One home for ebsnap's retries of the calls that change the account: which
//! failures are tried again (`CallFailure`), and the retry loop of a call
//! that makes snapshots and has no client token (`create_with_retries`),
//! which looks before it tries again so a lost answer never makes a
//! duplicate (safety rule 7). The SDK retries none of these calls
//! (`no_retries`): its retries would go round the pacing buckets.

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;

use crate::aws::codes::Ec2Code;
use crate::aws::error_text;
use crate::backup::control::Executor;
use crate::inventory::TAG_RUN_ID;

/// What a failed call that changes the account (a create, copy or delete)
/// means for its next attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallFailure {
    /// EC2 refused it before doing anything (throttled): try again later.
    Throttled,
    /// The volume has too many snapshots in progress: wait longer, retry.
    VolumeBusy,
    /// The answer was lost (5xx, timeout, connection reset): the snapshot
    /// may exist. Look before trying again.
    MaybeApplied,
    /// EC2 does not know the snapshot the call names (a copy's source),
    /// which right after its create is EC2's answers lagging behind its
    /// state: try again through the settle window.
    NotVisibleYet,
    /// EC2 said no for good (bad volume, no permission): do not retry.
    Refused,
}

/// Classifies a failed call from EC2's error code and the HTTP status.
pub(crate) fn classify_failure(code: Option<&str>, status: Option<u16>) -> CallFailure {
    match Ec2Code::of(code) {
        Some(known) if known.is_throttled() => CallFailure::Throttled,
        // ResourceLimitExceeded: too many copies in progress (CopySnapshot).
        Some(known) if known.is_busy() => CallFailure::VolumeBusy,
        Some(Ec2Code::SnapshotNotFound) => CallFailure::NotVisibleYet,
        _ if code.is_some() && status.is_some_and(|s| s < 500) => CallFailure::Refused,
        _ => CallFailure::MaybeApplied,
    }
}

pub(crate) fn failure_of<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> CallFailure {
    classify_failure(err.code(), err.raw_response().map(|r| r.status().as_u16()))
}

/// What a call that makes one snapshot (CreateSnapshot, CopySnapshot)
/// made, as `create_with_retries` takes it: (volume id, snapshot id).
pub(crate) fn made_one(volume_id: &str, snapshot_id: Option<&str>) -> Vec<(String, String)> {
    snapshot_id
        .map(|id| (volume_id.to_owned(), id.to_owned()))
        .into_iter()
        .collect()
}

/// The one snapshot id of what `create_with_retries` made, or why none.
pub(crate) fn only_snapshot(made: Result<Vec<(String, String)>, String>) -> Result<String, String> {
    made?
        .into_iter()
        .next()
        .map(|(_, snapshot_id)| snapshot_id)
        .ok_or_else(|| "EC2 answered without a snapshot id".into())
}

/// The SDK retries nothing of a create: ebsnap does (create_with_retries).
pub(crate) fn no_retries() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// ebsnap's own retries of a create call (CreateSnapshot or CreateSnapshots),
/// which has no client token. `send` makes one attempt and returns what it
/// made as (volume id, snapshot id). A throttled call is tried again after a
/// backoff; a busy volume waits longer. Once an attempt may have taken
/// effect (a 5xx, a timeout, a reset), every later attempt is preceded by a
/// look for the snapshots this run made that match `lookup`, and what it
/// finds is used (safety rule 7). EC2's describes lag behind its state, so
/// a look that finds nothing, or not every volume in `expected`, is asked
/// again through the settle window before it counts; a look that cannot be
/// made in that time gives up rather than risk a duplicate. `Err` is the
/// reason it failed.
pub(crate) async fn create_with_retries<E, Fut>(
    exec: &Executor,
    send: impl Fn() -> Fut,
    lookup: (&str, &str),
    expected: &[&str],
    run_id: &str,
    what: &str,
) -> Result<Vec<(String, String)>, String>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Vec<(String, String)>, SdkError<E, HttpResponse>>>,
{
    let mut attempt = 0;
    // The reason of the last attempt that may have taken effect, and, once
    // ebsnap stops trying, why.
    let mut maybe_made: Option<String> = None;
    let mut give_up: Option<String> = None;
    loop {
        // Before any new attempt, and before giving up: a look (through the
        // settle window; a single one once the run is stopped).
        if let Some(first) = &maybe_made {
            match look_until_settled(exec, lookup, expected, run_id).await {
                Ok(found) if !found.is_empty() => {
                    tracing::info!(
                        resource = lookup.1,
                        "found what a create with a lost answer had made"
                    );
                    return Ok(found);
                }
                Ok(_) => {}
                Err(looked) => {
                    let reason = give_up.as_deref().unwrap_or(first);
                    return Err(format!(
                        "{reason}; and looking for {what} it may have made failed: {looked}"
                    ));
                }
            }
        }
        if let Some(reason) = give_up {
            return Err(reason);
        }
        attempt += 1;
        exec.create_pacer.acquire(&exec.stop).await?;
        let err = match send().await {
            Ok(made) => return Ok(made),
            Err(err) => err,
        };
        let failure = failure_of(&err);
        let reason = error_text(&err);
        tracing::info!(resource = lookup.1, attempt, ?failure, %reason, "create failed");
        if failure == CallFailure::MaybeApplied {
            maybe_made = Some(reason.clone());
        }
        if failure == CallFailure::Refused || attempt >= exec.retry.max_attempts {
            give_up = Some(
                match maybe_made
                    .as_deref()
                    .filter(|_| failure != CallFailure::MaybeApplied)
                {
                    Some(first) => format!("{reason} (after {first})"),
                    None => reason,
                },
            );
            continue;
        }
        let delay = exec
            .retry
            .delay(attempt, failure == CallFailure::VolumeBusy);
        if let Err(stopped) = exec.stop.sleep(delay).await {
            give_up = Some(format!("{reason}; then {stopped}"));
        }
    }
}

/// Looks for what this run made that matches `lookup`, again and again
/// through the settle window, until it has found a snapshot of every volume
/// in `expected` (any one, when `expected` is empty), or the run is stopped.
/// What the last look found is the answer, maybe nothing; `Err` when no look
/// could be made.
async fn look_until_settled(
    exec: &Executor,
    lookup: (&str, &str),
    expected: &[&str],
    run_id: &str,
) -> Result<Vec<(String, String)>, String> {
    let complete = |found: &[(String, String)]| {
        !found.is_empty()
            && expected
                .iter()
                .all(|volume| found.iter().any(|(v, _)| v == volume))
    };
    let mut delays = exec.retry.settle_delays();
    // The latest look that answered (a later one sees more), and the
    // latest failure, for when no look answered.
    let mut found_last = None;
    let mut failed_last = String::new();
    loop {
        match find_snapshots_of_run(exec, &[lookup], run_id).await {
            Ok(found) if complete(&found) => return Ok(found),
            Ok(found) => found_last = Some(found),
            Err(reason) => failed_last = reason,
        }
        let Some(delay) = delays.next() else {
            return found_last.ok_or(failed_last);
        };
        tracing::info!(
            resource = lookup.1,
            ?delay,
            "looking again: EC2's describes may lag"
        );
        if let Err(stopped) = exec.stop.sleep(delay).await {
            return found_last.ok_or(stopped);
        }
    }
}

/// The snapshots this run made that match `filters` (a volume, or an
/// instance), as (volume id, snapshot id): what a create whose answer was
/// lost may have made.
async fn find_snapshots_of_run(
    exec: &Executor,
    filters: &[(&str, &str)],
    run_id: &str,
) -> Result<Vec<(String, String)>, String> {
    let name = |key: &str| {
        if key.starts_with("ebsnap:") {
            format!("tag:{key}")
        } else {
            key.to_owned()
        }
    };
    let mut request = exec.client.describe_snapshots().owner_ids("self").filters(
        Filter::builder()
            .name(format!("tag:{TAG_RUN_ID}"))
            .values(run_id)
            .build(),
    );
    for (key, value) in filters {
        request = request.filters(Filter::builder().name(name(key)).values(*value).build());
    }
    let output = request.send().await.map_err(|err| error_text(&err))?;
    Ok(output
        .snapshots()
        .iter()
        .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_failures_are_classified_by_code_and_status() {
        use CallFailure::*;
        assert_eq!(
            classify_failure(Some("RequestLimitExceeded"), Some(503)),
            Throttled
        );
        assert_eq!(
            classify_failure(Some("SnapshotCreationPerVolumeRateExceeded"), Some(400)),
            VolumeBusy
        );
        assert_eq!(
            classify_failure(Some("ConcurrentSnapshotLimitExceeded"), Some(400)),
            VolumeBusy
        );
        assert_eq!(
            classify_failure(Some("InternalError"), Some(500)),
            MaybeApplied
        );
        assert_eq!(
            classify_failure(Some("Unavailable"), Some(503)),
            MaybeApplied
        );
        assert_eq!(
            classify_failure(None, None),
            MaybeApplied,
            "a timeout or reset"
        );
        assert_eq!(
            classify_failure(Some("UnauthorizedOperation"), Some(403)),
            Refused
        );
        assert_eq!(
            classify_failure(Some("InvalidVolume.NotFound"), Some(400)),
            Refused
        );
    }
}
