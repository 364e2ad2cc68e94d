//! How the calls that change the account are paced, retried and stopped.
//!
//! EC2 meters CreateSnapshot and DeleteSnapshot per account and region with
//! token buckets (100 calls of burst, 5 a second of refill) shared with any
//! other automation in the account. ebsnap keeps inside them on its own side
//! rather than leaning on `RequestLimitExceeded`. A run also stops starting
//! new work on SIGINT/SIGTERM or when its time budget is used up, and says
//! what it did not do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::HashMap;

use aws_sdk_ec2::Client;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use crate::timing;

/// EC2's bucket size for CreateSnapshot and DeleteSnapshot.
const EC2_BURST: f64 = 100.0;

/// A token bucket: `capacity` calls at once, refilled at `rate` a second.
/// Times are seconds since an arbitrary start, so the arithmetic is pure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bucket {
    capacity: f64,
    rate: f64,
    tokens: f64,
    last: f64,
}

impl Bucket {
    /// A full bucket.
    pub(crate) fn new(capacity: f64, rate: f64) -> Bucket {
        Bucket {
            capacity,
            rate,
            tokens: capacity,
            last: 0.0,
        }
    }

    /// The bucket ebsnap uses for `--max-rate` calls a second: EC2's burst,
    /// scaled down with the rate so a lowered rate also lowers the burst.
    pub(crate) fn for_rate(rate: f64) -> Bucket {
        Bucket::new((rate * 20.0).clamp(1.0, EC2_BURST), rate)
    }

    /// Reserves one call at time `now` and returns how many seconds the
    /// caller must wait before making it. Reservations queue: each caller
    /// waits behind the ones before it.
    pub(crate) fn reserve(&mut self, now: f64) -> f64 {
        let elapsed = (now - self.last).max(0.0);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            0.0
        } else {
            -self.tokens / self.rate
        }
    }
}

/// A bucket shared by every task of one region, refilled on ebsnap's
/// clock (`timing`: tokio's, at the time scale).
#[derive(Debug)]
pub(crate) struct Pacer {
    bucket: Mutex<Bucket>,
    start: Instant,
}

impl Pacer {
    pub(crate) fn new(bucket: Bucket) -> Pacer {
        Pacer {
            bucket: Mutex::new(bucket),
            start: Instant::now(),
        }
    }

    /// How many calls the bucket lets through at once when full: as many
    /// may be in flight without one waiting for a token.
    pub(crate) fn burst(&self) -> usize {
        let bucket = self
            .bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.capacity as usize
    }

    /// Waits for this call's turn; `Err` with the reason when the run is
    /// stopped first.
    pub(crate) async fn acquire(&self, stop: &Stop) -> Result<(), String> {
        stop.check()?;
        let wait = {
            let mut bucket = self
                .bucket
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            bucket.reserve(timing::since(self.start).as_secs_f64())
        };
        if wait > 0.0 {
            stop.sleep(Duration::from_secs_f64(wait)).await?;
        }
        Ok(())
    }
}

/// Tells running work to start nothing new: after a signal, or once the
/// run's time budget is used up. Cheap to clone; clones share the state.
/// Its waits are ebsnap's (`timing`): on tokio's clock, at the time scale.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    interrupted: Arc<AtomicBool>,
    wake: Arc<Notify>,
    deadline: Instant,
    budget: Duration,
}

impl Stop {
    pub(crate) fn new(budget: Duration) -> Stop {
        Stop {
            interrupted: Arc::new(AtomicBool::new(false)),
            wake: Arc::new(Notify::new()),
            deadline: timing::deadline(budget),
            budget,
        }
    }

    /// Asks all work to stop starting new calls.
    pub(crate) fn interrupt(&self) {
        self.interrupted.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
    }

    /// `Err` with the reason when nothing new may start.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.interrupted.load(Ordering::SeqCst) {
            Err("not started: the run was interrupted (SIGINT/SIGTERM)".into())
        } else if Instant::now() >= self.deadline {
            Err(format!(
                "not started: the run's time budget (--timeout {}) was used up",
                crate::values::format_duration(
                    chrono::TimeDelta::from_std(self.budget).unwrap_or_default()
                )
            ))
        } else {
            Ok(())
        }
    }

    /// Runs `work` unless the run is stopped first (signal or time budget);
    /// then `Err` with the reason, and `work` is dropped.
    pub(crate) async fn race<T>(
        &self,
        work: impl std::future::Future<Output = T>,
    ) -> Result<T, String> {
        let woken = self.wake.notified();
        self.check()?;
        tokio::select! {
            result = work => Ok(result),
            _ = tokio::time::sleep_until(self.deadline) => Err(self.check().unwrap_err()),
            _ = woken => Err(self.check().unwrap_err()),
        }
    }

    /// Sleeps for `duration` (unscaled), or less when the run is stopped
    /// meanwhile.
    pub(crate) async fn sleep(&self, duration: Duration) -> Result<(), String> {
        // Registered before the check, so an interrupt between the two still
        // wakes this sleep.
        let woken = self.wake.notified();
        self.check()?;
        let until = timing::deadline(duration).min(self.deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(until) => {}
            _ = woken => {}
        }
        self.check()
    }
}

impl timing::Interrupt for Stop {
    async fn sleep(&self, duration: Duration) -> Result<(), String> {
        Stop::sleep(self, duration).await
    }
}

/// How a volume's create in this run turned out, as far as its deletes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// The create has not returned yet (or, with `--wait`, not completed).
    Waiting,
    /// The volume has a new good backup: its old snapshots may go.
    Open,
    /// The create failed: none of the volume's snapshots is deleted in this
    /// run (safety rule 3).
    Closed,
}

/// The overlap of the snapshot and purge steps. A volume's deletes wait only
/// for that volume's create, not for the whole snapshot step, so a run with
/// V creates and D deletes spends about the larger of the two buckets' times
/// rather than their sum. Volumes without a create in this run have no gate.
#[derive(Debug, Default)]
pub(crate) struct VolumeGates {
    /// Each gate, with the rank of its volume's create in the run.
    gates: HashMap<String, (usize, watch::Sender<Gate>)>,
}

impl VolumeGates {
    /// One closed-until-settled gate per volume this run snapshots, given
    /// in the order their creates are sent.
    pub(crate) fn new<'a>(volume_ids: impl IntoIterator<Item = &'a str>) -> VolumeGates {
        let gates = volume_ids
            .into_iter()
            .enumerate()
            .map(|(rank, id)| (id.to_owned(), (rank, watch::Sender::new(Gate::Waiting))))
            .collect();
        VolumeGates { gates }
    }

    /// Where the volume's create comes in the run; `None` without one.
    pub(crate) fn create_rank(&self, volume_id: &str) -> Option<usize> {
        self.gates.get(volume_id).map(|(rank, _)| *rank)
    }

    /// Records how the volume's create turned out: `good` when it made a
    /// backup (or, in a dry run, was allowed), and wakes its deletes. The
    /// first verdict stands.
    pub(crate) fn settle(&self, volume_id: &str, good: bool) {
        if let Some((_, gate)) = self.gates.get(volume_id) {
            gate.send_if_modified(|state| {
                let waiting = *state == Gate::Waiting;
                if waiting {
                    *state = if good { Gate::Open } else { Gate::Closed };
                }
                waiting
            });
        }
    }

    /// Closes every gate not settled yet: once the snapshot step is over, a
    /// volume without a verdict has no new backup.
    pub(crate) fn close_unsettled(&self) {
        for volume_id in self.gates.keys() {
            self.settle(volume_id, false);
        }
    }

    /// Waits until the volume's deletes may be decided: `true` when they may
    /// go, `false` when the volume's create failed.
    pub(crate) async fn may_delete(&self, volume_id: &str) -> bool {
        let Some((_, gate)) = self.gates.get(volume_id) else {
            return true;
        };
        let mut state = gate.subscribe();
        let settled = state.wait_for(|gate| *gate != Gate::Waiting).await;
        settled.is_ok_and(|gate| *gate == Gate::Open)
    }
}

/// How long ebsnap waits between its own attempts at a create.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RetryTiming {
    /// Attempts at one create before it counts as failed.
    pub max_attempts: u32,
    /// The first wait after a throttled or lost call; doubles each time.
    pub base_delay: Duration,
    /// The longest wait between two attempts.
    pub max_delay: Duration,
    /// The first wait when EC2 says the volume itself is busy
    /// (`SnapshotCreationPerVolumeRateExceeded`, `ConcurrentSnapshotLimitExceeded`).
    pub busy_delay: Duration,
    /// How long EC2's answers may lag behind its state: for this long after
    /// a create, a look for the snapshot that finds nothing, and a CreateTags
    /// or describe that answers `InvalidSnapshot.NotFound`, are asked again
    /// before they count (EC2 API Reference, "Eventual consistency in the
    /// Amazon EC2 API": "Amazon EC2 uses a model of eventual consistency ...
    /// a resource that you create might not be immediately visible").
    pub settle: Duration,
}

impl RetryTiming {
    pub(crate) const STANDARD: RetryTiming = RetryTiming {
        max_attempts: 6,
        base_delay: timing::RETRY_BASE_DELAY,
        max_delay: timing::RETRY_MAX_DELAY,
        busy_delay: timing::VOLUME_BUSY_DELAY,
        settle: timing::SETTLE,
    };

    /// The wait before attempt `attempt + 1`, after `attempt` failed ones.
    pub(crate) fn delay(&self, attempt: u32, volume_busy: bool) -> Duration {
        let first = if volume_busy {
            self.busy_delay
        } else {
            self.base_delay
        };
        first
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay)
    }

    /// The waits between the looks and asks of the settle window: the base
    /// delay, doubling, until `settle` has passed in all.
    pub(crate) fn settle_delays(&self) -> impl Iterator<Item = Duration> + '_ {
        let mut total = Duration::ZERO;
        (1..)
            .map(|attempt| self.delay(attempt, false))
            .take_while(move |delay| {
                let before = total;
                total += *delay;
                before < self.settle
            })
    }
}

/// Everything the executors (snapshot.rs, purge.rs) need in one region.
#[derive(Debug)]
pub(crate) struct Executor {
    pub client: Client,
    pub dry_run: bool,
    pub stop: Stop,
    pub create_pacer: Pacer,
    pub delete_pacer: Pacer,
    /// CreateTags has a bucket of its own (100 burst, 10 a second).
    pub tag_pacer: Pacer,
    /// ModifySnapshotTier has a bucket of its own. "Request throttling for
    /// the Amazon EC2 API"
    /// (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-throttling.html)
    /// meters each action in a bucket of its own, but documents no figure
    /// for ModifySnapshotTier that ebsnap could find, so it is given the
    /// size of the snapshot actions' buckets it does document
    /// (CreateSnapshot, DeleteSnapshot: 100 burst, 5 a second), scaled by
    /// `--max-rate` like them; no action that changes the account is
    /// documented with a smaller one. Apart from the delete bucket it used
    /// to share, an archive no longer holds up the purge's deletes, nor
    /// they it.
    pub archive_pacer: Pacer,
    /// `--per-volume`: one CreateSnapshot per volume instead of one
    /// CreateSnapshots per instance.
    pub per_volume: bool,
    pub retry: RetryTiming,
}

impl Executor {
    pub(crate) fn new(
        client: Client,
        dry_run: bool,
        stop: Stop,
        max_rate: f64,
        retry: RetryTiming,
    ) -> Executor {
        Executor {
            client,
            dry_run,
            stop,
            create_pacer: Pacer::new(Bucket::for_rate(max_rate)),
            delete_pacer: Pacer::new(Bucket::for_rate(max_rate)),
            tag_pacer: Pacer::new(Bucket::for_rate(max_rate * 2.0)),
            archive_pacer: Pacer::new(Bucket::for_rate(max_rate)),
            per_volume: false,
            retry,
        }
    }
}

/// An executor for tests of the SDK edge: no pacing to speak of, and retry
/// waits of milliseconds.
#[cfg(test)]
pub(crate) fn test_executor(client: Client, dry_run: bool) -> Executor {
    let fast = RetryTiming {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        busy_delay: Duration::from_millis(2),
        settle: Duration::from_millis(20),
    };
    // The per-volume path unless a test asks for CreateSnapshots.
    let mut exec = Executor::new(
        client,
        dry_run,
        Stop::new(Duration::from_secs(3600)),
        100.0,
        fast,
    );
    exec.per_volume = true;
    exec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_paces_at_the_rate() {
        let mut bucket = Bucket::new(100.0, 5.0);
        for _ in 0..100 {
            assert_eq!(bucket.reserve(0.0), 0.0);
        }
        // The 101st waits one refill (0.2 s), the 102nd two.
        assert!((bucket.reserve(0.0) - 0.2).abs() < 1e-9);
        assert!((bucket.reserve(0.0) - 0.4).abs() < 1e-9);
    }

    #[test]
    fn the_bucket_refills_with_time_but_never_past_capacity() {
        let mut bucket = Bucket::new(10.0, 5.0);
        for _ in 0..10 {
            bucket.reserve(0.0);
        }
        // Two seconds refill 10 tokens: 10 more calls at once, then a wait.
        for _ in 0..10 {
            assert_eq!(bucket.reserve(2.0), 0.0);
        }
        assert!(bucket.reserve(2.0) > 0.0);
        // An hour idle refills to capacity, not beyond.
        let mut idle = Bucket::new(10.0, 5.0);
        for _ in 0..10 {
            assert_eq!(idle.reserve(3600.0), 0.0);
        }
        assert!(idle.reserve(3600.0) > 0.0);
    }

    #[test]
    fn n_calls_past_the_burst_take_n_over_rate_seconds() {
        // 300 creates at EC2's limits: the last starts (300 - 100) / 5 = 40 s in.
        let mut bucket = Bucket::new(100.0, 5.0);
        let last_wait = (0..300).map(|_| bucket.reserve(0.0)).fold(0.0, f64::max);
        assert!((last_wait - 40.0).abs() < 1e-6, "{last_wait}");
    }

    #[test]
    fn creates_and_deletes_overlapped_take_the_longer_of_their_buckets() {
        // 300 creates and 250 deletes, each on its own bucket at EC2's
        // limits, all asked for at once: the last create starts at 40 s and
        // the last delete at 30 s, so the run takes 40 s, not 40 + 30.
        let (mut creates, mut deletes) = (Bucket::new(100.0, 5.0), Bucket::new(100.0, 5.0));
        let mut last_start: f64 = 0.0;
        for call in 0..300 {
            last_start = last_start.max(creates.reserve(0.0));
            if call < 250 {
                last_start = last_start.max(deletes.reserve(0.0));
            }
        }
        assert!((last_start - 40.0).abs() < 1e-6, "{last_start}");
    }

    #[tokio::test]
    async fn a_volume_without_a_create_in_this_run_may_delete_at_once() {
        let gates = VolumeGates::new(["vol-a"]);
        assert!(gates.may_delete("vol-other").await);
        assert!(VolumeGates::default().may_delete("vol-a").await);
    }

    #[tokio::test]
    async fn deletes_wait_for_their_volumes_create_and_follow_its_verdict() {
        let gates = std::sync::Arc::new(VolumeGates::new(["vol-a", "vol-b"]));
        let waiter = |volume: &'static str| {
            let gates = std::sync::Arc::clone(&gates);
            tokio::spawn(async move { gates.may_delete(volume).await })
        };
        let (a, b) = (waiter("vol-a"), waiter("vol-b"));
        tokio::task::yield_now().await;
        assert!(!a.is_finished() && !b.is_finished(), "nothing settled yet");
        gates.settle("vol-a", true);
        assert!(a.await.unwrap(), "vol-a has a new backup");
        assert!(!b.is_finished(), "vol-b still waits for its own create");
        gates.settle("vol-b", false);
        assert!(!b.await.unwrap(), "vol-b's create failed: rule 3");
    }

    #[tokio::test]
    async fn the_first_verdict_stands_and_unsettled_gates_close() {
        let gates = VolumeGates::new(["vol-a", "vol-b"]);
        gates.settle("vol-a", true);
        gates.close_unsettled();
        gates.settle("vol-b", true);
        assert!(gates.may_delete("vol-a").await);
        assert!(!gates.may_delete("vol-b").await);
    }

    #[test]
    fn a_pacer_lets_its_burst_through_at_once() {
        assert_eq!(Pacer::new(Bucket::for_rate(5.0)).burst(), 100);
        assert_eq!(Pacer::new(Bucket::for_rate(1.0)).burst(), 20);
        assert_eq!(Pacer::new(Bucket::for_rate(0.01)).burst(), 1);
    }

    #[test]
    fn a_lower_max_rate_lowers_the_burst_too() {
        assert_eq!(Bucket::for_rate(5.0), Bucket::new(100.0, 5.0));
        assert_eq!(Bucket::for_rate(1.0), Bucket::new(20.0, 1.0));
        assert_eq!(Bucket::for_rate(0.01), Bucket::new(1.0, 0.01));
    }

    #[test]
    fn retry_delays_double_and_are_capped() {
        let timing = RetryTiming::STANDARD;
        assert_eq!(timing.delay(1, false), Duration::from_secs(1));
        assert_eq!(timing.delay(2, false), Duration::from_secs(2));
        assert_eq!(timing.delay(3, false), Duration::from_secs(4));
        assert_eq!(timing.delay(1, true), Duration::from_secs(15));
        assert_eq!(timing.delay(3, true), Duration::from_secs(60));
        assert_eq!(timing.delay(40, false), Duration::from_secs(60));
    }

    #[tokio::test]
    async fn an_interrupt_wakes_sleepers_and_stops_new_work() {
        let stop = Stop::new(Duration::from_secs(3600));
        assert!(stop.check().is_ok());
        let sleeper = {
            let stop = stop.clone();
            tokio::spawn(async move { stop.sleep(Duration::from_secs(3600)).await })
        };
        tokio::task::yield_now().await;
        stop.interrupt();
        let woke = tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .unwrap()
            .unwrap();
        assert!(woke.unwrap_err().contains("interrupted"));
        assert!(stop.check().unwrap_err().contains("interrupted"));
    }

    #[tokio::test]
    async fn a_race_against_the_budget_ends_work_that_never_answers() {
        let stop = Stop::new(Duration::from_millis(20));
        let never = std::future::pending::<()>();
        let reason = tokio::time::timeout(Duration::from_secs(10), stop.race(never))
            .await
            .unwrap()
            .unwrap_err();
        assert!(reason.contains("time budget"), "{reason}");
        let quick = Stop::new(Duration::from_secs(3600));
        assert_eq!(quick.race(async { 7 }).await, Ok(7));
    }

    #[tokio::test]
    async fn a_used_up_budget_stops_new_work() {
        let stop = Stop::new(Duration::ZERO);
        let reason = stop.check().unwrap_err();
        assert!(reason.contains("time budget (--timeout"), "{reason}");
    }
}
