//! Every duration ebsnap waits for or gives up after, in one place, and the
//! one way ebsnap waits: on tokio's clock (so a unit test can pause it), each
//! duration divided by the time scale.
//!
//! The time scale is 1: the durations below are the ones ebsnap waits, as
//! the README documents them. `EBSNAP_TIME_SCALE` sets another (a whole
//! number, 1 to 1000). It exists for ebsnap's own test suite, which runs
//! EC2's waits in its EC2 twin, and ebsnap's own (retry delays, the settle
//! window, polls, the pacing buckets' refill, `--timeout`, `--wait-timeout`),
//! that many times faster, so the same scenarios take minutes, not hours;
//! it is not documented for users and changes nothing else.
//!
//! It scales waits only, the durations both sides of a test keep by the
//! same clock. Every message that names a duration names the unscaled one
//! a user reads in the README or typed. Not scaled:
//! - the timeouts of a call (`CONNECT_TIMEOUT`, `ATTEMPT_TIMEOUT`,
//!   `OPERATION_TIMEOUT`): they bound how long the other side takes to
//!   answer, and the test suite's emulator answers in real time, however
//!   fast its machine is; scaled, they would fail a call the emulator is
//!   merely slow to answer on a busy machine;
//! - `--hook-timeout`: hooks run programs on the host, at the host's speed.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

/// The variable the test suite sets the time scale with.
pub const SCALE_VAR: &str = "EBSNAP_TIME_SCALE";
const MAX_SCALE: u32 = 1000;

static SCALE: OnceLock<u32> = OnceLock::new();

/// How long to wait for a TCP connection before giving up on an endpoint.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one attempt of a call may take before it counts as lost. A page
/// of 1,000 snapshots takes a second or two; an endpoint that accepts
/// connections but never answers must not hold a cron job for minutes.
pub(crate) const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one call may take, all its retries included.
pub(crate) const OPERATION_TIMEOUT: Duration = Duration::from_secs(40);

/// The SDK's own retries of the reads (standard mode): its first backoff,
/// and its longest (the SDK's defaults, 1 s and 20 s).
pub(crate) const SDK_RETRY_BACKOFF: Duration = Duration::from_secs(1);
pub(crate) const SDK_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(20);

/// The first wait after a throttled or lost call; doubles each time.
pub(crate) const RETRY_BASE_DELAY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub(crate) const RETRY_MAX_DELAY: Duration = Duration::from_secs(60);
/// The first wait when EC2 says the volume itself is busy. Error codes for
/// the Amazon EC2 API, `SnapshotCreationPerVolumeRateExceeded`: "Wait at
/// least 15 seconds between concurrent volume snapshots."
pub(crate) const VOLUME_BUSY_DELAY: Duration = Duration::from_secs(15);
/// How long EC2's answers may lag behind its state (EC2 API Reference,
/// "Eventual consistency in the Amazon EC2 API").
pub(crate) const SETTLE: Duration = Duration::from_secs(30);

/// `--wait`: how often to ask EC2 how the snapshots are doing.
pub(crate) const SNAPSHOT_POLL: Duration = Duration::from_secs(15);
/// `--wait`: how often to say so on stderr when no progress bar is shown.
pub(crate) const PROGRESS_LOG: Duration = Duration::from_secs(60);
/// `--wait`: a new snapshot EC2 has not shown for this long is gone (deleted
/// meanwhile), not lagging: twice `SETTLE`.
pub(crate) const GONE_AFTER: Duration = Duration::from_secs(60);

/// restore: the first pause between two looks at the new volumes (doubling
/// up to `VOLUME_MAX_POLL`), or at a snapshot coming back from the archive
/// tier (doubling up to `BRING_BACK_MAX_POLL`).
pub(crate) const FIRST_POLL: Duration = Duration::from_secs(1);
pub(crate) const VOLUME_MAX_POLL: Duration = Duration::from_secs(15);
/// `restore --from-archive`: the longest pause between two looks at a
/// snapshot coming back from the archive tier (which takes hours).
pub(crate) const BRING_BACK_MAX_POLL: Duration = Duration::from_secs(60);

/// The time scale of `value` (`EBSNAP_TIME_SCALE`): 1 when unset, else a
/// whole number from 1 to 1000.
pub(crate) fn parse_scale(value: Option<&str>) -> Result<u32, String> {
    let Some(value) = value else { return Ok(1) };
    match value.trim().parse::<u32>() {
        Ok(scale) if (1..=MAX_SCALE).contains(&scale) => Ok(scale),
        _ => Err(format!(
            "{SCALE_VAR}={value:?} is not a time scale: unset it (it is for ebsnap's test suite), \
             or give a whole number from 1 to {MAX_SCALE}"
        )),
    }
}

/// Reads the time scale from the environment, once, at the start of a run;
/// `Err` with one line when it is not one.
pub fn init() -> anyhow::Result<()> {
    let value = std::env::var_os(SCALE_VAR);
    let value = value.as_ref().map(|v| v.to_string_lossy());
    let scale = parse_scale(value.as_deref()).map_err(anyhow::Error::msg)?;
    let _ = SCALE.set(scale);
    Ok(())
}

/// The time scale: 1 unless `init` read another.
pub(crate) fn scale() -> u32 {
    *SCALE.get().unwrap_or(&1)
}

/// `duration` as ebsnap waits it: divided by the time scale.
pub(crate) fn scaled(duration: Duration) -> Duration {
    duration / scale()
}

/// Sleeps for `duration` (divided by the time scale).
pub(crate) async fn sleep(duration: Duration) {
    tokio::time::sleep(scaled(duration)).await
}

/// The instant `duration` from now (divided by the time scale); far in the
/// future for a duration too long to add.
pub(crate) fn deadline(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(scaled(duration))
        .unwrap_or_else(|| now + Duration::from_secs(10 * 365 * 86_400))
}

/// How long ago `since` was, in unscaled time: what the durations above
/// are compared with.
pub(crate) fn since(since: Instant) -> Duration {
    since.elapsed().saturating_mul(scale())
}

/// What may cut a wait short: the run's stop (a signal, the time budget).
pub(crate) trait Interrupt {
    /// Sleeps for `duration` (unscaled), or less when interrupted; then
    /// `Err` with the reason.
    fn sleep(&self, duration: Duration) -> impl Future<Output = Result<(), String>>;
}

/// A wait nothing cuts short but the deadline.
pub(crate) struct Uninterrupted;

impl Interrupt for Uninterrupted {
    async fn sleep(&self, duration: Duration) -> Result<(), String> {
        sleep(duration).await;
        Ok(())
    }
}

/// When a poll looks again: its pauses, in order, and the time it may take
/// in all.
#[derive(Debug, Clone)]
pub(crate) struct PollPlan<P> {
    /// The pauses between two looks (unscaled); the poll ends when they do.
    pub pauses: P,
    /// The whole poll, at most (unscaled): no pause goes past it, and no
    /// look is made after it.
    pub timeout: Duration,
    /// Whether the first look is made at once, or after the first pause.
    pub look_at_once: bool,
}

impl PollPlan<std::iter::Repeat<Duration>> {
    /// A look every `interval`, for `timeout` at most.
    pub(crate) fn every(interval: Duration, timeout: Duration) -> Self {
        PollPlan {
            pauses: std::iter::repeat(interval),
            timeout,
            look_at_once: true,
        }
    }
}

/// Pauses that start at `first` and double up to `max`.
pub(crate) fn doubling(first: Duration, max: Duration) -> impl Iterator<Item = Duration> + Clone {
    std::iter::successors(Some(first.min(max)), move |pause| {
        Some(pause.saturating_mul(2).min(max))
    })
}

/// How a poll ended, when its look did not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PollEnd {
    /// The timeout passed, or the pauses ran out.
    TimedOut,
    /// Interrupted, with the reason.
    Stopped(String),
}

/// The one polling loop: `look` until it has its answer (`Some`), pausing
/// between two looks as `plan` says, on tokio's clock and the time scale.
/// `interrupt` may cut a pause short, which ends the poll. `look` is told
/// how long the poll has run (unscaled).
pub(crate) async fn poll<T, P>(
    plan: PollPlan<P>,
    interrupt: &impl Interrupt,
    mut look: impl AsyncFnMut(Duration) -> Option<T>,
) -> Result<T, PollEnd>
where
    P: Iterator<Item = Duration>,
{
    let started = Instant::now();
    let mut pauses = plan.pauses;
    let mut pause_first = !plan.look_at_once;
    loop {
        if pause_first {
            let Some(pause) = pauses.next() else {
                return Err(PollEnd::TimedOut);
            };
            let left = plan.timeout.saturating_sub(since(started));
            interrupt
                .sleep(pause.min(left))
                .await
                .map_err(PollEnd::Stopped)?;
        }
        pause_first = true;
        if let Some(answer) = look(since(started)).await {
            return Ok(answer);
        }
        if since(started) >= plan.timeout {
            return Err(PollEnd::TimedOut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn the_scale_is_1_unless_set_to_a_whole_number_up_to_1000() {
        assert_eq!(parse_scale(None), Ok(1));
        assert_eq!(parse_scale(Some("20")), Ok(20));
        assert_eq!(parse_scale(Some("1000")), Ok(1000));
        for bad in ["0", "1001", "-3", "2.5", "fast", ""] {
            let err = parse_scale(Some(bad)).unwrap_err();
            assert!(
                err.starts_with(&format!("{SCALE_VAR}=")) && !err.contains('\n'),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn doubling_pauses_stop_growing_at_their_max() {
        let s = Duration::from_secs;
        let pauses: Vec<_> = doubling(s(1), s(15)).take(6).collect();
        assert_eq!(pauses, [s(1), s(2), s(4), s(8), s(15), s(15)]);
    }

    /// The instants (since the start) at which a poll looked.
    async fn looks(
        plan: PollPlan<impl Iterator<Item = Duration>>,
        answer_at: usize,
    ) -> (Vec<Duration>, Result<usize, PollEnd>) {
        let start = Instant::now();
        let seen = RefCell::new(Vec::new());
        let end = poll(plan, &Uninterrupted, async |_| {
            seen.borrow_mut().push(start.elapsed());
            let n = seen.borrow().len();
            (n == answer_at).then_some(n)
        })
        .await;
        (seen.into_inner(), end)
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_looks_at_once_then_after_each_pause_until_it_has_its_answer() {
        let s = Duration::from_secs;
        let (at, end) = looks(
            PollPlan {
                pauses: doubling(s(1), s(15)),
                timeout: s(3600),
                look_at_once: true,
            },
            6,
        )
        .await;
        assert_eq!(end, Ok(6));
        assert_eq!(at, [s(0), s(1), s(3), s(7), s(15), s(30)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_that_pauses_first_never_looks_at_once() {
        let s = Duration::from_secs;
        let (at, end) = looks(
            PollPlan {
                pauses: doubling(s(1), s(60)),
                timeout: s(3600),
                look_at_once: false,
            },
            3,
        )
        .await;
        assert_eq!(end, Ok(3));
        assert_eq!(at, [s(1), s(3), s(7)]);
    }

    #[tokio::test(start_paused = true)]
    async fn no_pause_goes_past_the_timeout_and_no_look_is_made_after_it() {
        let s = Duration::from_secs;
        let (at, end) = looks(PollPlan::every(s(15), s(40)), usize::MAX).await;
        assert_eq!(end, Err(PollEnd::TimedOut));
        assert_eq!(at, [s(0), s(15), s(30), s(40)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_ends_when_its_pauses_do() {
        let s = Duration::from_secs;
        let plan = PollPlan {
            pauses: [s(1), s(2)].into_iter(),
            timeout: Duration::MAX,
            look_at_once: true,
        };
        let (at, end) = looks(plan, usize::MAX).await;
        assert_eq!(end, Err(PollEnd::TimedOut));
        assert_eq!(at, [s(0), s(1), s(3)]);
    }

    struct Stopped;
    impl Interrupt for Stopped {
        async fn sleep(&self, _: Duration) -> Result<(), String> {
            Err("interrupted".into())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupted_pause_ends_the_poll_after_one_look() {
        let mut n = 0;
        let end = poll(
            PollPlan::every(Duration::from_secs(15), Duration::MAX),
            &Stopped,
            async |_| {
                n += 1;
                None::<()>
            },
        )
        .await;
        assert_eq!(end, Err(PollEnd::Stopped("interrupted".into())));
        assert_eq!(n, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_look_is_told_how_long_the_poll_has_run() {
        let s = Duration::from_secs;
        let mut told = Vec::new();
        let _ = poll(PollPlan::every(s(15), s(30)), &Uninterrupted, async |ran| {
            told.push(ran);
            None::<()>
        })
        .await;
        assert_eq!(told, [s(0), s(15), s(30)]);
    }
}
