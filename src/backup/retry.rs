//! One home for ebsnap's retries of the calls that change the account: which
//! failures are tried again (`CallFailure`), the one retry loop every step
//! uses (`retry`: creates, deletes, tags, archives), and the retries of a
//! call that makes snapshots and has no client token
//! (`create_with_retries`), which looks before it tries again so a lost
//! answer never makes a duplicate (safety rule 7). The SDK retries none of
//! these calls (`no_retries`): its retries would go round the pacing
//! buckets.

use std::time::Duration;

use aws_sdk_ec2::config::http::HttpResponse;
use aws_sdk_ec2::config::retry::RetryConfig;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::Filter;

use crate::aws::codes::Ec2Code;
use crate::aws::error_text;
use crate::backup::control::{Executor, Pacer, RetryTiming, Stop};
use crate::inventory::TAG_RUN_ID;
use crate::timing::{self, Interrupt, PollEnd, PollPlan, Uninterrupted};

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

/// How long the retry loop waits before the next attempt, by what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backoff {
    /// Throttled or lost: `RetryTiming`'s base delay, doubling, for at
    /// most `max_attempts` attempts in all.
    Standard,
    /// The volume is busy: the busy delay, doubling, within the same
    /// attempts.
    VolumeBusy,
    /// EC2 does not show the resource yet: through the settle window
    /// (`RetryTiming::settle_delays`), however many attempts that takes.
    Settle,
}

/// What one attempt came to.
#[derive(Debug)]
pub(crate) enum Attempt<T, F> {
    /// Finished: done, or an outcome no other attempt would change.
    Done(T),
    /// Failed; another attempt may do, after the backoff.
    Retry(Backoff, F),
    /// Failed for good: no other attempt.
    Failed(F),
}

/// Why the retry loop ended without a `Done`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum GaveUp<F> {
    /// The last failure, after which no attempt was left (or allowed).
    Failed(F),
    /// The run was stopped before the next attempt: the last failure, if
    /// there was one, and why.
    Stopped(Option<F>, String),
}

impl GaveUp<String> {
    /// Why, in one line: the last failure, and the stop that came after it.
    pub(crate) fn reason(self) -> String {
        match self {
            GaveUp::Failed(reason) | GaveUp::Stopped(None, reason) => reason,
            GaveUp::Stopped(Some(reason), stopped) => format!("{reason}; then {stopped}"),
        }
    }
}

/// Where the retry loop takes its turns and its timings from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retries<'a> {
    /// Each attempt waits its turn in this bucket, like the first: a
    /// throttled call never jumps the queue.
    pub pacer: &'a Pacer,
    pub timing: &'a RetryTiming,
    pub stop: &'a Stop,
    /// Whether the run's stop ends the retries (creates, deletes,
    /// archives), or they go on, unpaced and not cut short (the tags of a
    /// snapshot already made).
    pub stoppable: bool,
}

impl Executor {
    /// The retries of the calls paced by `pacer`, ended by the run's stop.
    pub(crate) fn retries<'a>(&'a self, pacer: &'a Pacer) -> Retries<'a> {
        Retries {
            pacer,
            timing: &self.retry,
            stop: &self.stop,
            stoppable: true,
        }
    }
}

/// The one retry loop: `attempt` (told its number, from 1) until it is
/// done, fails for good, or has no attempt left; each attempt paced, each
/// wait between two on tokio's clock at the time scale (`timing`) and, when
/// `how.stoppable`, cut short by the run's stop.
pub(crate) async fn retry<T, F>(
    how: Retries<'_>,
    mut attempt: impl AsyncFnMut(u32) -> Attempt<T, F>,
) -> Result<T, GaveUp<F>> {
    let mut settle = how.timing.settle_delays();
    let mut last = None;
    let mut number = 0;
    loop {
        number += 1;
        // Once the run is stopped, an unstoppable call goes ahead unpaced
        // (acquire returns at once).
        if let Err(stopped) = how.pacer.acquire(how.stop).await {
            if how.stoppable {
                return Err(GaveUp::Stopped(last, stopped));
            }
        }
        let (backoff, failure) = match attempt(number).await {
            Attempt::Done(done) => return Ok(done),
            Attempt::Failed(failure) => return Err(GaveUp::Failed(failure)),
            Attempt::Retry(backoff, failure) => (backoff, failure),
        };
        let delay = match backoff {
            Backoff::Settle => settle.next(),
            _ if number >= how.timing.max_attempts => None,
            Backoff::Standard => Some(how.timing.delay(number, false)),
            Backoff::VolumeBusy => Some(how.timing.delay(number, true)),
        };
        let Some(delay) = delay else {
            return Err(GaveUp::Failed(failure));
        };
        tracing::debug!(attempt = number, ?backoff, ?delay, "trying again");
        let slept = if how.stoppable {
            how.stop.sleep(delay).await
        } else {
            Uninterrupted.sleep(delay).await
        };
        if let Err(stopped) = slept {
            return Err(GaveUp::Stopped(Some(failure), stopped));
        }
        last = Some(failure);
    }
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
    // The reason of the last attempt that may have taken effect.
    let mut maybe_made: Option<String> = None;
    let tried = retry(exec.retries(&exec.create_pacer), async |attempt| {
        // Before any new attempt after one that may have taken effect: a
        // look, through the settle window.
        if let Some(first) = &maybe_made {
            match look_until_settled(exec, lookup, expected, run_id).await {
                Ok(found) if !found.is_empty() => {
                    tracing::info!(
                        resource = lookup.1,
                        "found what a create with a lost answer had made"
                    );
                    return Attempt::Done(Ok(found));
                }
                Ok(_) => {}
                Err(looked) => {
                    return Attempt::Done(Err(format!(
                        "{first}; and looking for {what} it may have made failed: {looked}"
                    )))
                }
            }
        }
        let err = match send().await {
            Ok(made) => return Attempt::Done(Ok(made)),
            Err(err) => err,
        };
        let failure = failure_of(&err);
        let reason = error_text(&err);
        tracing::info!(resource = lookup.1, attempt, ?failure, %reason, "create failed");
        if failure == CallFailure::MaybeApplied {
            maybe_made = Some(reason.clone());
        }
        match failure {
            CallFailure::Refused => Attempt::Failed((reason, failure)),
            CallFailure::VolumeBusy => Attempt::Retry(Backoff::VolumeBusy, (reason, failure)),
            _ => Attempt::Retry(Backoff::Standard, (reason, failure)),
        }
    })
    .await;
    let give_up = match tried {
        Ok(done) => return done,
        Err(GaveUp::Failed((reason, failure))) => match maybe_made
            .as_deref()
            .filter(|_| failure != CallFailure::MaybeApplied)
        {
            Some(first) => format!("{reason} (after {first})"),
            None => reason,
        },
        Err(GaveUp::Stopped(Some((reason, _)), stopped)) => format!("{reason}; then {stopped}"),
        Err(GaveUp::Stopped(None, stopped)) => stopped,
    };
    // Before giving up after an attempt that may have taken effect: a
    // last look (a single one once the run is stopped).
    if maybe_made.is_none() {
        return Err(give_up);
    }
    match look_until_settled(exec, lookup, expected, run_id).await {
        Ok(found) if !found.is_empty() => {
            tracing::info!(
                resource = lookup.1,
                "found what a create with a lost answer had made"
            );
            Ok(found)
        }
        Ok(_) => Err(give_up),
        Err(looked) => Err(format!(
            "{give_up}; and looking for {what} it may have made failed: {looked}"
        )),
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
    let plan = PollPlan {
        pauses: exec.retry.settle_delays(),
        timeout: Duration::MAX,
        look_at_once: true,
    };
    // The latest look that answered (a later one sees more), and the
    // latest failure, for when no look answered.
    let mut found_last = None;
    let mut failed_last = String::new();
    let polled = timing::poll(plan, &exec.stop, async |_| {
        match find_snapshots_of_run(exec, &[lookup], run_id).await {
            Ok(found) if complete(&found) => return Some(found),
            Ok(found) => found_last = Some(found),
            Err(reason) => failed_last = reason,
        }
        tracing::info!(
            resource = lookup.1,
            "not found yet: EC2's describes may lag"
        );
        None
    })
    .await;
    match polled {
        Ok(found) => Ok(found),
        Err(PollEnd::TimedOut) => found_last.ok_or(failed_last),
        Err(PollEnd::Stopped(stopped)) => found_last.ok_or(stopped),
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
    use crate::backup::control::Bucket;
    use tokio::time::Instant;

    /// A bucket that never makes a call wait, the standard timings, and a
    /// run budget far away.
    fn unpaced() -> (Pacer, Stop) {
        (
            Pacer::new(Bucket::new(1000.0, 1000.0)),
            Stop::new(Duration::from_secs(100_000)),
        )
    }

    /// When each attempt was made (seconds since the start), and how the
    /// retries ended, for attempts that each fail with `backoff`.
    async fn attempts_at(
        how: Retries<'_>,
        backoff: impl Fn(u32) -> Option<Backoff>,
    ) -> (Vec<u64>, Result<(), GaveUp<u32>>) {
        let start = Instant::now();
        let mut at = Vec::new();
        let end = retry(how, async |n| {
            at.push(start.elapsed().as_secs());
            match backoff(n) {
                Some(backoff) => Attempt::Retry(backoff, n),
                None => Attempt::Failed(n),
            }
        })
        .await;
        (at, end)
    }

    fn how<'a>(pacer: &'a Pacer, stop: &'a Stop) -> Retries<'a> {
        Retries {
            pacer,
            timing: &RetryTiming::STANDARD,
            stop,
            stoppable: true,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_or_lost_call_is_tried_again_after_a_doubling_wait_six_times_in_all() {
        let (pacer, stop) = unpaced();
        let (at, end) = attempts_at(how(&pacer, &stop), |_| Some(Backoff::Standard)).await;
        assert_eq!(at, [0, 1, 3, 7, 15, 31]);
        assert_eq!(end, Err(GaveUp::Failed(6)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_volume_waits_15_s_then_doubling_up_to_a_minute() {
        let (pacer, stop) = unpaced();
        let (at, end) = attempts_at(how(&pacer, &stop), |_| Some(Backoff::VolumeBusy)).await;
        assert_eq!(at, [0, 15, 45, 105, 165, 225]);
        assert_eq!(end, Err(GaveUp::Failed(6)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_resource_ec2_does_not_show_yet_is_asked_through_the_settle_window() {
        let (pacer, stop) = unpaced();
        // Waits of 1, 2, 4, 8 and 16 s: the last attempt after 30 s.
        let (at, end) = attempts_at(how(&pacer, &stop), |_| Some(Backoff::Settle)).await;
        assert_eq!(at, [0, 1, 3, 7, 15, 31]);
        assert_eq!(end, Err(GaveUp::Failed(6)));
        // The settle window is not counted in attempts: a throttle after it
        // still gets its retry... within the attempts left.
        let (at, end) = attempts_at(how(&pacer, &stop), |n| {
            Some(if n <= 3 {
                Backoff::Settle
            } else {
                Backoff::Standard
            })
        })
        .await;
        assert_eq!(at, [0, 1, 3, 7, 15, 31]);
        assert_eq!(end, Err(GaveUp::Failed(6)));
    }

    #[tokio::test(start_paused = true)]
    async fn done_and_failed_for_good_end_the_retries_at_once() {
        let (pacer, stop) = unpaced();
        let (at, end) = attempts_at(how(&pacer, &stop), |_| None).await;
        assert_eq!((at, end), (vec![0], Err(GaveUp::Failed(1))));
        let done: Result<u32, GaveUp<u32>> =
            retry(how(&pacer, &stop), async |n| Attempt::Done(n)).await;
        assert_eq!(done, Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn each_attempt_waits_its_turn_in_the_bucket() {
        // One call of burst, one a second: the retries' 1 s and 2 s waits
        // come on top of the turns they wait for.
        let pacer = Pacer::new(Bucket::new(1.0, 1.0));
        let stop = Stop::new(Duration::from_secs(100_000));
        // A call that took the only token just now.
        pacer.acquire(&stop).await.unwrap();
        let (at, _) =
            attempts_at(how(&pacer, &stop), |n| (n < 3).then_some(Backoff::Standard)).await;
        assert_eq!(at, [1, 2, 4]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait_and_says_why_unless_the_call_must_go_on() {
        let (pacer, stop) = unpaced();
        let stopper = {
            let stop = stop.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(2500)).await;
                stop.interrupt();
            })
        };
        let (at, end) = attempts_at(how(&pacer, &stop), |_| Some(Backoff::Standard)).await;
        stopper.await.unwrap();
        assert_eq!(at, [0, 1]);
        let Err(GaveUp::Stopped(Some(2), reason)) = end else {
            panic!("{end:?}")
        };
        assert!(reason.contains("interrupted"), "{reason}");
        // Stopped before the first attempt: nothing was tried.
        let (at, end) = attempts_at(how(&pacer, &stop), |_| Some(Backoff::Standard)).await;
        assert!(at.is_empty());
        assert!(matches!(end, Err(GaveUp::Stopped(None, _))), "{end:?}");
        // The tags of a snapshot already made go on, unpaced, to the end.
        let go_on = Retries {
            stoppable: false,
            ..how(&pacer, &stop)
        };
        let (at, end) = attempts_at(go_on, |_| Some(Backoff::Standard)).await;
        assert_eq!(at, [0, 1, 3, 7, 15, 31]);
        assert_eq!(end, Err(GaveUp::Failed(6)));
    }

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
