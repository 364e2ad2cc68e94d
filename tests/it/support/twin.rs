//! The EC2 twin: what real EC2 does with snapshots that moto 5.2.5 does not.
//!
//! moto shows a snapshot the moment it exists, completes it at once, never
//! locks, errors or limits, and archives and restores at once, refusing
//! nothing and leaving an archived snapshot usable. The fault proxy (`FaultProxy`) asks this
//! module about every request it is about to forward (`ProxyShared::twin_before`)
//! and about every answer it got from the emulator (`ProxyShared::twin_forward`),
//! and so adds, each switched on per test by a `FaultPlan` method below:
//!
//! - eventual consistency: `FaultPlan::consistency_window`;
//! - creates carried out after the client gave up: `FaultPlan::slow_creates*`;
//! - snapshot states moto never produces: `FaultPlan::snapshot_state` (`error`,
//!   `recoverable`), `FaultPlan::archived` / `FaultPlan::archived_since`
//!   (snapshots in the archive tier), `FaultPlan::locked` (snapshot lock,
//!   with `DescribeLockedSnapshots`);
//! - the archive tier itself: `FaultPlan::archive_tier` (ModifySnapshotTier,
//!   RestoreSnapshotTier, DescribeSnapshotTierStatus; twin/archive.rs);
//! - per-volume limits: `FaultPlan::volume_limits`;
//! - tag limits: `FaultPlan::tag_limits`.
//!
//! Every behaviour cites the AWS page it was written from. What the twin did to
//! a request is in `ProxyRecord::twin`. A plan without any of these leaves every
//! request and answer untouched.
//!
//! Durations are given as EC2 documents them (a 15 s consistency window, a 90 s
//! pending period) and run on the twin's clock (`TwinClock`): the test's real
//! clock, every duration divided by `TIME_SCALE` as ebsnap's own are, so the
//! twin and the ebsnap it serves keep each other's order; or, with
//! `FaultPlan::manual_clock`, a clock that moves only when the test moves it
//! (`FaultProxy::advance`), for the probes of the twin itself, which then
//! see each phase for as long as they look, on any machine.
//!
//! The twin reads what it needs from the emulator itself (a volume's type, a
//! snapshot's volume, a resource's tags) with the caller's access key id and an
//! unchecked signature, as the harness's own raw requests do: it does not work
//! under `Emulator::enforce_iam(true)`.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpStream;
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{
    ec2_error_response, form_encode, forward_upstream, header, http_request, http_response, scaled,
    Emulator, Fault, FaultPlan, FaultProxy, HttpRequest, ProxyRecord, ProxyShared, UpstreamAnswer,
    ACCOUNT_ID,
};

/// EC2 refuses a second CreateSnapshot of a volume within this long of the
/// last one. Error codes for the Amazon EC2 API
/// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html),
/// `SnapshotCreationPerVolumeRateExceeded`: "The rate limit for creating
/// concurrent snapshots of an EBS volume has been exceeded. Wait at least 15
/// seconds between concurrent volume snapshots."; re:Post knowledge center
/// "ebs-snapshot-stuck": "wait 15 seconds between create-snapshot API requests
/// for the same volume".
pub const RATE_WINDOW: Duration = Duration::from_secs(15);
/// Pending snapshots a volume may have; `PENDING_LIMIT_HDD` for st1 and sc1.
/// EBS user guide, "Create Amazon EBS snapshots" (ebs-creating-snapshot): "There
/// is a limit of five pending snapshots for a single gp2, io1, or Magnetic
/// volume, and one pending snapshot for a single st1 or sc1 volume"; re:Post
/// knowledge center "ebs-snapshot-stuck": snapshots in an incomplete state such
/// as `error` count against the limit, and so do pending snapshots deleted
/// while in progress.
pub const PENDING_LIMIT: usize = 5;
pub const PENDING_LIMIT_HDD: usize = 1;
/// Tag restrictions, EC2 user guide "Tag your Amazon EC2 resources", section
/// "Tag restrictions" (Using_Tags.html#tag-restrictions): "Maximum number of
/// tags per resource – 50", "Maximum key length – 128 Unicode characters in
/// UTF-8", "Maximum value length – 256 Unicode characters in UTF-8", and tags
/// with the `aws:` prefix "do not count against your tags per resource limit".
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;

/// The error EC2 answers a DeleteSnapshot of a locked snapshot with.
///
/// The EBS user guide ("Amazon EBS snapshot lock", ebs-snapshot-lock) says only
/// that "while a snapshot is locked, it can't be deleted by any user, regardless
/// of their IAM permissions"; neither it, the LockSnapshot/DeleteSnapshot API
/// pages nor the error codes page name the error code. The twin answers with
/// the common client error whose description fits, `IncorrectState` ("The
/// resource is in an incorrect state for the request", errors-overview): ebsnap
/// should recognise a locked snapshot by DescribeLockedSnapshots, not by this
/// code alone.
pub const LOCKED_ERROR_CODE: &str = "IncorrectState";
/// The error EC2 answers a CreateVolume or CopySnapshot of an archived
/// snapshot with. "Archive Amazon EBS snapshots", considerations and
/// limitations (snapshot-archive.html): "You can't copy an archived snapshot.
/// If you need to copy an archived snapshot, you must first restore it", and
/// "Work with snapshot archiving": "As soon as the snapshot tiering status
/// reaches the archival-complete state, you can no longer use the snapshot",
/// "Before you can use an archived snapshot, you must first restore it to the
/// standard tier". No page names the code; the twin answers with the common
/// client error `IncorrectState` (errors-overview).
pub const ARCHIVED_ERROR_CODE: &str = "IncorrectState";

const NOT_FOUND: &str = "InvalidSnapshot.NotFound";

mod archive;
use archive::TierRecord;
pub use archive::{
    MIN_ARCHIVE_PERIOD, NOT_OWNER_ERROR_CODE, TIER_PARAMETER_ERROR_CODE, TIER_STATE_ERROR_CODE,
    TIER_STATUS_PAGE,
};

// ---------------------------------------------------------------------------
// The plan: what the twin does, set per test through FaultPlan

#[derive(Clone, Debug, Default)]
pub(super) struct TwinPlan {
    window: Option<Duration>,
    slow: Vec<SlowCreates>,
    /// (snapshot or volume id, state).
    states: Vec<(String, &'static str)>,
    /// (snapshot or volume id, when its archival completed).
    archived: Vec<(String, DateTime<Utc>)>,
    /// Some: the twin answers the archive-tier actions itself.
    archive_tier: Option<ArchiveTier>,
    locks: Vec<LockRule>,
    /// Some: per-volume limits on, new snapshots pending for this long.
    pending_for: Option<Duration>,
    tag_limits: bool,
    /// Some: the regions enabled for the account, as DescribeRegions shows.
    enabled_regions: Option<Vec<String>>,
    /// The twin's clock moves only by `FaultProxy::advance`.
    manual_clock: bool,
}

/// `FaultPlan::archive_tier`: how long an archival and a restore take.
#[derive(Clone, Copy, Debug)]
struct ArchiveTier {
    archival: Duration,
    restore: Duration,
}

#[derive(Clone, Debug)]
struct SlowCreates {
    /// How many creates this rule holds.
    first: usize,
}

#[derive(Clone, Debug)]
struct LockRule {
    target: String,
    state: &'static str,
    created: DateTime<Utc>,
    days: u32,
}

impl TwinPlan {
    fn is_active(&self) -> bool {
        self.window.is_some()
            || !self.slow.is_empty()
            || !self.states.is_empty()
            || !self.archived.is_empty()
            || self.archive_tier.is_some()
            || !self.locks.is_empty()
            || self.pending_for.is_some()
            || self.tag_limits
            || self.enabled_regions.is_some()
    }

    /// Some rule names a volume: the twin needs to know snapshots' volumes.
    fn has_volume_targets(&self) -> bool {
        let vol = |t: &String| t.starts_with("vol-");
        self.states.iter().any(|(t, _)| vol(t))
            || self.archived.iter().any(|(t, _)| vol(t))
            || self.locks.iter().any(|l| vol(&l.target))
    }

    fn state_of(&self, snapshot: &str, volume: Option<&str>) -> Option<&'static str> {
        self.states
            .iter()
            .find(|(t, _)| matches(t, snapshot, volume))
            .map(|(_, s)| *s)
    }

    /// Some snapshot may be in the archive tier: preset, or archived through
    /// the twin.
    fn has_tier(&self) -> bool {
        !self.archived.is_empty() || self.archive_tier.is_some()
    }

    /// The tier record a preset (`FaultPlan::archived*`) gives the snapshot:
    /// archived since the preset's time, never restored.
    fn preset_tier(&self, snapshot: &str, volume: Option<&str>) -> Option<TierRecord> {
        self.archived
            .iter()
            .find(|(t, _)| matches(t, snapshot, volume))
            .map(|(_, since)| TierRecord::archived_since(*since))
    }

    fn lock_of(&self, snapshot: &str, volume: Option<&str>) -> Option<&LockRule> {
        self.locks
            .iter()
            .find(|l| matches(&l.target, snapshot, volume))
    }
}

/// A rule's target (a snapshot id or a volume id) names this snapshot.
fn matches(target: &str, snapshot: &str, volume: Option<&str>) -> bool {
    target == snapshot || Some(target) == volume
}

impl FaultPlan {
    /// Eventual consistency. EC2 developer guide, "Eventual consistency in the
    /// Amazon EC2 API" (devguide/eventual-consistency.html): "if you run a
    /// command to modify or describe the resource that you just created, its ID
    /// might not have propagated throughout the system, and you will get an
    /// error responding that the resource does not exist".
    ///
    /// For `window` after a CreateSnapshot, CreateSnapshots or CopySnapshot took
    /// effect (its answer came back from the emulator, also when the proxy then
    /// loses that answer: `Fault::LostAnswer`, `Fault::Reset`):
    /// - DescribeSnapshots leaves the new snapshot out of its answer, filtered
    ///   or not;
    /// - a DescribeSnapshots naming it (`SnapshotId.N`), CreateTags on it
    ///   (`ResourceId.N`), DeleteSnapshot, CreateVolume from it and CopySnapshot
    ///   of it answer 400 `InvalidSnapshot.NotFound`, "The snapshot 'snap-…'
    ///   does not exist." (the message EC2 gives, e.g. the AWS workshop output
    ///   "An error occurred (InvalidSnapshot.NotFound) when calling the
    ///   DescribeSnapshots operation: The snapshot 'snap-0643b6dcd0a6f01f0' does
    ///   not exist."), without reaching the emulator.
    pub fn consistency_window(mut self, window: Duration) -> FaultPlan {
        self.twin.window = Some(window);
        self
    }

    /// The first `count` CreateSnapshot and CreateSnapshots calls are each
    /// held until the client gives up on them (closes the connection: its
    /// attempt timed out, whatever its timeout), then forwarded: EC2 carries
    /// out a create the client no longer waits for. At most `SLOW_HOLD_LIMIT`
    /// (a safety net for a client that never gives up: the create is then
    /// answered late).
    pub fn slow_creates_first(mut self, count: usize) -> FaultPlan {
        self.twin.slow.push(SlowCreates { first: count });
        self
    }

    /// The twin's clock moves only when the test moves it
    /// (`FaultProxy::advance`), and EC2's durations last as documented on
    /// it: a probe of the twin looks at each phase (inside a consistency
    /// window, an archival in progress) for as long as it likes.
    pub fn manual_clock(mut self) -> FaultPlan {
        self.twin.manual_clock = true;
        self
    }

    /// DescribeSnapshots shows the snapshot `target` (a snapshot id), or every
    /// snapshot of the volume `target` (a volume id), in `state`: `error` or
    /// `recoverable` (Snapshot data type, EC2 API reference, `status`: "pending
    /// | completed | error | recoverable | recovering"). Its `<status>` is
    /// rewritten; the other fields stay as the emulator gives them (the API
    /// reference documents `stateMessage` only for failed copies of encrypted
    /// snapshots). Snapshots in `error` count against the volume's pending
    /// limit (see `volume_limits`).
    pub fn snapshot_state(mut self, target: &str, state: &str) -> FaultPlan {
        let state = match state {
            "error" => "error",
            "recoverable" => "recoverable",
            other => panic!("snapshot_state: {other:?} is not error or recoverable"),
        };
        self.twin.states.push((target.to_string(), state));
        self
    }

    /// The snapshot `target` (or every snapshot of the volume `target`) is in
    /// the archive tier. "Archive Amazon EBS snapshots" and "Work with snapshot
    /// archiving" (EBS user guide): DescribeSnapshots shows it `completed` with
    /// StorageTier `archive` and no `restoreExpiryTime` ("returned only for
    /// snapshots that are temporarily restored"); CreateVolume from it and
    /// CopySnapshot of it are refused with `ARCHIVED_ERROR_CODE`;
    /// DeleteSnapshot is allowed (deleting it early is billed for the rest of
    /// the 90-day minimum archive period).
    ///
    /// Archived since now: `archived_since(target, Utc::now())`. With
    /// `archive_tier` on, DescribeSnapshotTierStatus shows it
    /// `archival-completed` and RestoreSnapshotTier restores it.
    pub fn archived(self, target: &str) -> FaultPlan {
        self.archived_since(target, Utc::now())
    }

    /// `archived`, its archival completed at `archival_complete` (in the past:
    /// a snapshot archived for 100 days has `Utc::now() - 100 days`). Its
    /// `archivalCompleteTime` and `lastTieringStartTime` in
    /// DescribeSnapshotTierStatus are that time; the 90-day minimum archive
    /// period (`FaultProxy::early_archive_deletes`) counts from it.
    pub fn archived_since(mut self, target: &str, archival_complete: DateTime<Utc>) -> FaultPlan {
        self.twin
            .archived
            .push((target.to_string(), archival_complete));
        self
    }

    /// The snapshot `target` (or every snapshot of the volume `target`) is
    /// locked for `days` days from now, `state` one of `governance`,
    /// `compliance`, `compliance-cooloff` (LockedSnapshotsInfo, EC2 API
    /// reference). "Amazon EBS snapshot lock" (EBS user guide): "While a
    /// snapshot is locked, it can't be deleted by any user, regardless of their
    /// IAM permissions": DeleteSnapshot is refused with `LOCKED_ERROR_CODE`.
    /// DescribeLockedSnapshots (which moto 5.2.5 does not implement) is
    /// answered by the twin for the locked snapshots, with `lockState`,
    /// `lockDuration`, `lockCreatedOn`, `lockDurationStartTime`,
    /// `lockExpiresOn` (and `coolOffPeriod`, `coolOffPeriodExpiresOn` in
    /// `compliance-cooloff`), filtered by `SnapshotId.N` and the `lock-state`
    /// filter.
    pub fn locked(mut self, target: &str, state: &str, days: u32) -> FaultPlan {
        let state = match state {
            "governance" => "governance",
            "compliance" => "compliance",
            "compliance-cooloff" => "compliance-cooloff",
            other => panic!("locked: {other:?} is not a lock state"),
        };
        self.twin.locks.push(LockRule {
            target: target.to_string(),
            state,
            created: Utc::now(),
            days,
        });
        self
    }

    /// Per-volume snapshot limits. New snapshots (of CreateSnapshot and
    /// CreateSnapshots) look `pending` in DescribeSnapshots and in
    /// CreateSnapshot's answer for `pending_for` (moto completes them at once;
    /// "Snapshot creation is asynchronous ... it remains in the pending state
    /// until all of data has been transferred", ebs-creating-snapshot), and a
    /// CreateSnapshot/CreateSnapshots is refused with 400
    /// - `SnapshotCreationPerVolumeRateExceeded` within `RATE_WINDOW` of the
    ///   last create of one of its volumes, "The maximum per volume
    ///   CreateSnapshot request rate has been exceeded. Use an increasing or
    ///   variable sleep interval between requests." (the message EC2 gives, as
    ///   quoted by N2WS' knowledge base);
    /// - `ConcurrentSnapshotLimitExceeded` when one of its volumes already has
    ///   `PENDING_LIMIT` snapshots pending (`PENDING_LIMIT_HDD` for st1 and
    ///   sc1), counting those the twin shows in `error`, "Maximum allowed
    ///   in-progress snapshots for a single volume exceeded." (EC2's message as
    ///   logged by a client).
    pub fn volume_limits(mut self, pending_for: Duration) -> FaultPlan {
        self.twin.pending_for = Some(pending_for);
        self
    }

    /// Tag limits (EC2 tag restrictions, see `MAX_TAGS`): a CreateTags, or a
    /// create's TagSpecification, with a key longer than `MAX_TAG_KEY` or a
    /// value longer than `MAX_TAG_VALUE` characters is refused with 400
    /// `InvalidParameterValue` ("Tag value exceeds the maximum length of 256
    /// characters" is EC2's message for a value); one that would leave a
    /// resource with more than `MAX_TAGS` tags (counting those it has,
    /// overwriting same keys, `aws:` tags not counted) with 400
    /// `TagLimitExceeded` (errors-overview: "You've reached the limit on the
    /// number of tags that you can assign to the specified resource").
    pub fn tag_limits(mut self) -> FaultPlan {
        self.twin.tag_limits = true;
        self
    }

    /// The account has only `regions` enabled. EC2 API reference,
    /// DescribeRegions: "Describes the Regions that are enabled for your
    /// account, or all Regions" (`AllRegions`, default false: only those
    /// enabled). moto shows every region it knows, and reading each one's
    /// snapshots at once is more than it can serve in a test.
    pub fn enabled_regions(mut self, regions: &[&str]) -> FaultPlan {
        self.twin.enabled_regions = Some(regions.iter().map(|r| r.to_string()).collect());
        self
    }

    /// The EBS snapshot archive tier, as EC2 runs it: the twin answers
    /// ModifySnapshotTier, RestoreSnapshotTier and DescribeSnapshotTierStatus
    /// itself (never forwarded: moto 5.2.5 archives and restores at once,
    /// refuses nothing, leaves a temporarily restored snapshot in `archive`
    /// and lets CreateVolume use an archived one) and keeps each snapshot's
    /// tier state, driven by the test's real clock:
    ///
    /// - an archival takes `archival` (`archival-in-progress`, the snapshot
    ///   still usable and `standard`), then the snapshot is `archive` and
    ///   unusable until restored;
    /// - a restore takes `restore` (`temporary-` or
    ///   `permanent-restore-in-progress`, still unusable), then the snapshot
    ///   is `standard`, a temporary one until its `restoreExpiryTime`;
    /// - DescribeSnapshots shows `storageTier` and `restoreExpiryTime`
    ///   accordingly; CreateVolume and CopySnapshot of an unusable snapshot
    ///   are refused with `ARCHIVED_ERROR_CODE`;
    /// - a DeleteSnapshot of a snapshot with a copy in the archive tier for
    ///   less than `MIN_ARCHIVE_PERIOD` is carried out, and listed by
    ///   `FaultProxy::early_archive_deletes`.
    ///
    /// Refusals (each code and its source: tests/it/support/twin/archive.rs):
    /// - ModifySnapshotTier: no SnapshotId `MissingParameter`; StorageTier
    ///   not `archive` `InvalidParameterValue`; DryRun `DryRunOperation`
    ///   (after IAM); unknown (or hidden by the consistency window)
    ///   `InvalidSnapshot.NotFound`; not the caller's 403
    ///   `NOT_OWNER_ERROR_CODE`; not `completed` (the twin's `snapshot_state`
    ///   and pending included), already archived or being archived, being
    ///   restored or temporarily restored, or used by a registered AMI:
    ///   `TIER_STATE_ERROR_CODE`.
    /// - RestoreSnapshotTier: both or neither of TemporaryRestoreDays and
    ///   PermanentRestore=true `TIER_PARAMETER_ERROR_CODE`; days < 1
    ///   `InvalidParameterValue`; DryRun, unknown, not the caller's as above;
    ///   never archived, archival or restore in progress, permanently
    ///   restored: `TIER_STATE_ERROR_CODE`. On a temporarily restored
    ///   snapshot it sets a new restore period from now, or makes the restore
    ///   permanent ("Modify the restore period").
    /// - DescribeSnapshotTierStatus: a filter other than snapshot-id,
    ///   volume-id, last-tiering-operation, or MaxResults outside
    ///   1..=`TIER_STATUS_PAGE`: `InvalidParameterValue`; a NextToken not the
    ///   twin's `InvalidPaginationToken`. Pages of MaxResults (default
    ///   `TIER_STATUS_PAGE`), sorted by snapshot id, the caller's snapshots
    ///   only.
    ///
    /// Presets (`archived`, `archived_since`) take part.
    pub fn archive_tier(mut self, archival: Duration, restore: Duration) -> FaultPlan {
        self.twin.archive_tier = Some(ArchiveTier { archival, restore });
        self
    }
}

// ---------------------------------------------------------------------------
// The twin's memory

pub(super) struct TwinState {
    book: Mutex<Book>,
    clock: TwinClock,
}

impl TwinState {
    pub(super) fn new(plan: &TwinPlan) -> TwinState {
        let clock = TwinClock::new(plan.manual_clock);
        let book = Book {
            limits: VolumeLimits::with_rate_window(clock.span(RATE_WINDOW)),
            ..Book::default()
        };
        TwinState {
            book: Mutex::new(book),
            clock,
        }
    }
}

/// The longest the twin holds a slow create for a client that does not
/// give up on it (`FaultPlan::slow_creates_first`).
pub const SLOW_HOLD_LIMIT: Duration = Duration::from_secs(60);

/// The twin's clock: real time with EC2's durations divided by
/// `TIME_SCALE`, or a manual one (`FaultPlan::manual_clock`) on which they
/// last as documented.
pub(super) struct TwinClock {
    /// Some: manual, moved this far since the start.
    moved: Option<Mutex<Duration>>,
    start: Instant,
    start_utc: DateTime<Utc>,
}

impl TwinClock {
    fn new(manual: bool) -> TwinClock {
        TwinClock {
            moved: manual.then(|| Mutex::new(Duration::ZERO)),
            start: Instant::now(),
            start_utc: Utc::now(),
        }
    }

    pub(super) fn now(&self) -> Instant {
        match &self.moved {
            Some(moved) => self.start + *moved.lock().unwrap(),
            None => Instant::now(),
        }
    }

    pub(super) fn utc(&self) -> DateTime<Utc> {
        match &self.moved {
            Some(moved) => {
                self.start_utc + chrono::TimeDelta::from_std(*moved.lock().unwrap()).unwrap()
            }
            None => Utc::now(),
        }
    }

    /// How long EC2's `documented` duration lasts on this clock.
    pub(super) fn span(&self, documented: Duration) -> Duration {
        match self.moved {
            Some(_) => documented,
            None => scaled(documented),
        }
    }

    fn advance(&self, by: Duration) {
        let moved = self
            .moved
            .as_ref()
            .expect("FaultProxy::advance needs FaultPlan::manual_clock");
        *moved.lock().unwrap() += by;
    }
}

impl FaultProxy {
    /// Moves the twin's manual clock (`FaultPlan::manual_clock`) `by`.
    pub fn advance(&self, by: Duration) {
        self.shared.twin.clock.advance(by);
    }
}

#[derive(Default)]
struct Book {
    /// Snapshots created through the proxy: when their create took effect.
    created: HashMap<String, Created>,
    /// Snapshot id -> volume id, as seen in answers.
    volume_of: HashMap<String, String>,
    /// Volume id -> volume type.
    volume_type: HashMap<String, String>,
    limits: VolumeLimits,
    /// Slow-create rule index -> creates held so far.
    slow_done: HashMap<usize, usize>,
    /// Snapshot id -> its tiering through the twin (presets until then: the
    /// plan's `archived`).
    tiers: HashMap<String, TierRecord>,
    /// Snapshots deleted within the minimum archive period, in order.
    early_deletes: Vec<String>,
}

#[derive(Clone, Debug)]
struct Created {
    at: Instant,
    /// Counts against its volume's limits (not a copy).
    pending_until: Option<Instant>,
}

impl Book {
    fn hidden(&self, window: Option<Duration>, snapshot: &str, now: Instant) -> bool {
        match (window, self.created.get(snapshot)) {
            (Some(window), Some(created)) => now < created.at + window,
            _ => false,
        }
    }

    fn pending(&self, snapshot: &str, now: Instant) -> bool {
        self.created
            .get(snapshot)
            .and_then(|c| c.pending_until)
            .is_some_and(|until| now < until)
    }
}

/// Per-volume bookkeeping for EC2's snapshot limits (pure: the caller gives
/// the time).
#[derive(Debug)]
pub(crate) struct VolumeLimits {
    /// `RATE_WINDOW` on the twin's clock.
    rate_window: Duration,
    last_create: HashMap<String, Instant>,
    /// Volume -> when each of its new snapshots stops being pending.
    pending: HashMap<String, Vec<Instant>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LimitRefusal {
    /// Within RATE_WINDOW of the volume's last create.
    Rate,
    /// The volume has this many pending (or incomplete) snapshots, the limit.
    Concurrent(usize),
}

impl Default for VolumeLimits {
    fn default() -> VolumeLimits {
        VolumeLimits::with_rate_window(RATE_WINDOW)
    }
}

impl VolumeLimits {
    pub(crate) fn with_rate_window(rate_window: Duration) -> VolumeLimits {
        VolumeLimits {
            rate_window,
            last_create: HashMap::new(),
            pending: HashMap::new(),
        }
    }

    /// May a new snapshot of `volume` be started at `now`? `hdd`: an st1 or
    /// sc1 volume; `incomplete`: its snapshots in `error`, which count against
    /// the pending limit.
    pub(crate) fn check(
        &self,
        volume: &str,
        hdd: bool,
        incomplete: usize,
        now: Instant,
    ) -> Result<(), LimitRefusal> {
        if self
            .last_create
            .get(volume)
            .is_some_and(|last| now.saturating_duration_since(*last) < self.rate_window)
        {
            return Err(LimitRefusal::Rate);
        }
        let limit = if hdd {
            PENDING_LIMIT_HDD
        } else {
            PENDING_LIMIT
        };
        let busy = self.pending_count(volume, now) + incomplete;
        if busy >= limit {
            return Err(LimitRefusal::Concurrent(busy));
        }
        Ok(())
    }

    /// A snapshot of `volume` was started at `now`, pending until `until`.
    pub(crate) fn record(&mut self, volume: &str, now: Instant, until: Instant) {
        self.last_create.insert(volume.to_string(), now);
        let pending = self.pending.entry(volume.to_string()).or_default();
        pending.retain(|u| *u > now);
        pending.push(until);
    }

    /// Snapshots of `volume` pending at `now` (deleted ones included: a
    /// deleted pending snapshot still completes).
    pub(crate) fn pending_count(&self, volume: &str, now: Instant) -> usize {
        self.pending
            .get(volume)
            .map_or(0, |p| p.iter().filter(|u| **u > now).count())
    }
}

// ---------------------------------------------------------------------------
// The proxy's hooks

/// What the twin does with a request instead of forwarding it.
enum Outcome {
    /// An EC2 error answer (HTTP `status`).
    Refuse {
        status: u16,
        code: String,
        message: String,
        note: String,
    },
    /// An answer of the twin's own (HTTP 200).
    Answer { body: String, note: String },
    /// Nothing: the proxy is stopping.
    Drop,
}

fn refuse(code: &str, message: String, note: String) -> Option<Outcome> {
    Some(Outcome::Refuse {
        status: 400,
        code: code.to_string(),
        message,
        note,
    })
}

fn not_found(id: &str, note: &str) -> Option<Outcome> {
    refuse(
        NOT_FOUND,
        format!("The snapshot '{id}' does not exist."),
        format!("refused: {NOT_FOUND} {id} ({note})"),
    )
}

/// Adds a line to what the twin did with a request.
fn add_note(record: &mut ProxyRecord, note: &str) {
    match &mut record.twin {
        Some(notes) => {
            notes.push_str("; ");
            notes.push_str(note);
        }
        None => record.twin = Some(note.to_string()),
    }
}

impl ProxyShared {
    fn twin_note(&self, seq: usize, note: &str) {
        self.update(seq, |r| add_note(r, note));
    }

    /// Called by `handle` before the request `seq` would reach the emulator
    /// (after throttling and refusal faults, which answer before EC2 would
    /// look at the request). None: go on and forward it. Some(answer): the
    /// twin answered (Some(None): close the connection), as EC2 would, and the
    /// proxy's fault still applies to that answer (`LostAnswer` turns it into
    /// a 500, `Reset` drops it).
    pub(super) fn twin_before(
        &self,
        seq: usize,
        req: &HttpRequest,
        fault: &Option<Fault>,
        client: &TcpStream,
    ) -> Option<Option<Vec<u8>>> {
        if !self.plan.twin.is_active() || matches!(fault, Some(Fault::Throttle | Fault::Refuse(_)))
        {
            return None;
        }
        let record = self.state.lock().unwrap().records[seq].clone();
        let request_id = format!("twin-{seq}");
        let (status, answer, note) = match self.twin_decide(seq, &record, req, client)? {
            Outcome::Drop => return Some(None),
            Outcome::Refuse {
                status,
                code,
                message,
                note,
            } => (
                status,
                ec2_error_response(status, &code, &message, &request_id),
                note,
            ),
            Outcome::Answer { body, note } => (
                200,
                http_response(
                    200,
                    "OK",
                    &[("Content-Type".into(), "text/xml;charset=UTF-8".into())],
                    body.as_bytes(),
                    req.keep_alive,
                ),
                note,
            ),
        };
        let (status, answer) = match fault {
            Some(Fault::LostAnswer) => (
                Some(500),
                Some(ec2_error_response(
                    500,
                    "InternalError",
                    "An internal error has occurred.",
                    &request_id,
                )),
            ),
            Some(Fault::Reset) => (None, None),
            _ => (Some(status), Some(answer)),
        };
        self.update(seq, |r| {
            add_note(r, &note);
            r.status = status;
        });
        Some(answer)
    }

    /// Forwards the request `seq` to the emulator and lets the twin see the
    /// answer: it remembers the snapshots a create made and rewrites what
    /// DescribeSnapshots shows. Used wherever `handle` forwards.
    pub(super) fn twin_forward(
        &self,
        seq: usize,
        req: &HttpRequest,
    ) -> std::io::Result<UpstreamAnswer> {
        let (status, reason, headers, body) = forward_upstream(self.upstream_port, req)?;
        if !self.plan.twin.is_active() || status != 200 {
            return Ok((status, reason, headers, body));
        }
        let record = self.state.lock().unwrap().records[seq].clone();
        let text = String::from_utf8_lossy(&body).into_owned();
        let body = match record.action.as_str() {
            "CreateSnapshot" | "CreateSnapshots" | "CopySnapshot" if !record.dry_run => {
                self.twin_created(seq, &record, &text)
            }
            "DescribeSnapshots" => self.twin_describe(seq, &record, &text),
            "DeleteSnapshot" if !record.dry_run && self.plan.twin.has_tier() => {
                if let Some(id) = record.param("SnapshotId") {
                    self.twin_tier_deleted(seq, id);
                }
                None
            }
            _ => None,
        };
        Ok((
            status,
            reason,
            headers,
            body.map_or(text.into_bytes(), String::into_bytes),
        ))
    }

    fn twin_decide(
        &self,
        seq: usize,
        record: &ProxyRecord,
        req: &HttpRequest,
        client: &TcpStream,
    ) -> Option<Outcome> {
        let plan = &self.plan.twin;
        let action = record.action.as_str();
        if action == "DescribeLockedSnapshots" && !plan.locks.is_empty() {
            return Some(self.twin_locked_snapshots(record, req));
        }
        if let Some(regions) = plan
            .enabled_regions
            .as_ref()
            .filter(|_| action == "DescribeRegions")
        {
            return Some(enabled_regions_answer(regions, record.dry_run));
        }
        if let Some(outcome) = self.twin_archive_tier(record, req) {
            return Some(outcome);
        }
        if record.dry_run {
            return None;
        }
        if matches!(action, "CreateSnapshot" | "CreateSnapshots") && !self.twin_hold(seq, client) {
            return Some(Outcome::Drop);
        }
        let now = self.twin.clock.now();
        // Eventual consistency: the snapshots this request names.
        let named = named_snapshots(action, &record.params);
        {
            let book = self.twin.book.lock().unwrap();
            let window = self.twin_window();
            if let Some(id) = named.iter().find(|id| book.hidden(window, id, now)) {
                return not_found(id, "consistency window");
            }
        }
        if action == "DeleteSnapshot" && plan.has_tier() {
            // Its volume, while the emulator still has it: a preset may name
            // the volume, and `twin_tier_deleted` looks after the delete.
            if let Some(id) = record.param("SnapshotId") {
                let _ = self.twin_volume_of(req, id);
            }
        }
        match action {
            "DeleteSnapshot" if !plan.locks.is_empty() => {
                let id = record.param("SnapshotId")?;
                let volume = self.twin_volume_of(req, id);
                let lock = plan.lock_of(id, volume.as_deref())?;
                if lock_state(lock, Utc::now()) == "expired" {
                    return None;
                }
                refuse(
                    LOCKED_ERROR_CODE,
                    format!("The snapshot '{id}' is locked and can't be deleted."),
                    format!("refused: locked {id} ({})", lock.state),
                )
            }
            "CreateVolume" | "CopySnapshot" if plan.has_tier() => {
                let key = if action == "CreateVolume" {
                    "SnapshotId"
                } else {
                    "SourceSnapshotId"
                };
                let Some(id) = record.param(key) else {
                    return self.twin_check_tags(record, req);
                };
                self.twin_unusable(req, id)
                    .or_else(|| self.twin_check_tags(record, req))
            }
            "CreateSnapshot" | "CreateSnapshots" => self
                .twin_check_tags(record, req)
                .or_else(|| self.twin_check_limits(record, req)),
            _ => self.twin_check_tags(record, req),
        }
    }

    /// The consistency window on the twin's clock.
    pub(super) fn twin_window(&self) -> Option<Duration> {
        self.plan.twin.window.map(|w| self.twin.clock.span(w))
    }

    /// Holds a create per the slow-create rules, until the client gives up
    /// on it (closes the connection) or `SLOW_HOLD_LIMIT`; false when the
    /// proxy stopped.
    fn twin_hold(&self, seq: usize, client: &TcpStream) -> bool {
        let hold = {
            let mut book = self.twin.book.lock().unwrap();
            let mut hold = false;
            for (i, rule) in self.plan.twin.slow.iter().enumerate() {
                let done = book.slow_done.entry(i).or_insert(0);
                if *done < rule.first {
                    *done += 1;
                    hold = true;
                    break;
                }
            }
            hold
        };
        if !hold {
            return true;
        }
        let until = Instant::now() + SLOW_HOLD_LIMIT;
        let _ = client.set_read_timeout(Some(Duration::from_millis(20)));
        let gave_up = loop {
            if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            // Ok(0): the client closed its end. Data or a timeout: it waits.
            match client.peek(&mut [0u8; 1]) {
                Ok(0) => break true,
                Err(e)
                    if !matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    break true
                }
                _ if Instant::now() >= until => break false,
                Ok(_) => std::thread::sleep(Duration::from_millis(20)),
                Err(_) => {}
            }
        };
        let _ = client.set_read_timeout(None);
        self.twin_note(
            seq,
            if gave_up {
                "held until the client gave up on it (slow create)"
            } else {
                "held, the client never gave up on it (slow create)"
            },
        );
        true
    }

    fn twin_check_tags(&self, record: &ProxyRecord, req: &HttpRequest) -> Option<Outcome> {
        if !self.plan.twin.tag_limits {
            return None;
        }
        let refusal = if record.action == "CreateTags" {
            let tags = request_tags(&record.params, "Tag.");
            indexed(&record.params, "ResourceId").iter().find_map(|id| {
                let existing = self.twin_existing_tags(req, id);
                check_tags(&existing, &tags).err().map(|r| (r, id.clone()))
            })
        } else {
            tag_specifications(&record.params)
                .into_iter()
                .find_map(|(kind, tags)| {
                    check_tags(&BTreeSet::new(), &tags)
                        .err()
                        .map(|r| (r, format!("new {kind}")))
                })
        };
        let ((code, message), resource) = refusal?;
        let note = format!("refused: {code} {resource} ({message})");
        refuse(code, message, note)
    }

    fn twin_check_limits(&self, record: &ProxyRecord, req: &HttpRequest) -> Option<Outcome> {
        self.plan.twin.pending_for?;
        let volumes = self.twin_create_volumes(record, req);
        let now = self.twin.clock.now();
        let book = self.twin.book.lock().unwrap();
        for (volume, kind) in &volumes {
            let hdd = matches!(kind.as_deref(), Some("st1" | "sc1"));
            let incomplete = book
                .volume_of
                .iter()
                .filter(|(snap, vol)| {
                    *vol == volume
                        && self.plan.twin.state_of(snap, Some(vol.as_str())) == Some("error")
                })
                .count();
            match book.limits.check(volume, hdd, incomplete, now) {
                Ok(()) => {}
                Err(LimitRefusal::Rate) => {
                    return refuse(
                        "SnapshotCreationPerVolumeRateExceeded",
                        "The maximum per volume CreateSnapshot request rate has been exceeded. \
                         Use an increasing or variable sleep interval between requests."
                            .into(),
                        format!(
                            "refused: SnapshotCreationPerVolumeRateExceeded {volume} (within {RATE_WINDOW:?} of its last create)"
                        ),
                    )
                }
                Err(LimitRefusal::Concurrent(busy)) => {
                    return refuse(
                        "ConcurrentSnapshotLimitExceeded",
                        "Maximum allowed in-progress snapshots for a single volume exceeded."
                            .into(),
                        format!(
                            "refused: ConcurrentSnapshotLimitExceeded {volume} ({busy} pending, {})",
                            kind.as_deref().unwrap_or("unknown type")
                        ),
                    )
                }
            }
        }
        None
    }

    /// The volumes a create would snapshot, with their types.
    fn twin_create_volumes(
        &self,
        record: &ProxyRecord,
        req: &HttpRequest,
    ) -> Vec<(String, Option<String>)> {
        let volumes: Vec<String> = if record.action == "CreateSnapshot" {
            record
                .param("VolumeId")
                .map(String::from)
                .into_iter()
                .collect()
        } else {
            let Some(instance) = record.param("InstanceSpecification.InstanceId") else {
                return Vec::new();
            };
            let Some(body) = self.twin_upstream(
                req,
                &[("Action", "DescribeInstances"), ("InstanceId.1", instance)],
            ) else {
                return Vec::new();
            };
            let exclude_boot = record
                .param("InstanceSpecification.ExcludeBootVolume")
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let excluded = indexed(&record.params, "InstanceSpecification.ExcludeDataVolumeId");
            instance_volumes(&body)
                .into_iter()
                .filter(|(volume, root)| !(excluded.contains(volume) || exclude_boot && *root))
                .map(|(volume, _)| volume)
                .collect()
        };
        let unknown: Vec<String> = {
            let book = self.twin.book.lock().unwrap();
            volumes
                .iter()
                .filter(|v| !book.volume_type.contains_key(*v))
                .cloned()
                .collect()
        };
        if !unknown.is_empty() {
            let mut params = vec![("Action".to_string(), "DescribeVolumes".to_string())];
            for (i, v) in unknown.iter().enumerate() {
                params.push((format!("VolumeId.{}", i + 1), v.clone()));
            }
            let params: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            if let Some(body) = self.twin_upstream(req, &params) {
                let mut book = self.twin.book.lock().unwrap();
                for item in set_items(&body, "volumeSet") {
                    let item = &body[item];
                    if let (Some(id), Some(kind)) = (
                        top_level_value(item, "volumeId"),
                        top_level_value(item, "volumeType"),
                    ) {
                        book.volume_type.insert(id.to_string(), kind.to_string());
                    }
                }
            }
        }
        let book = self.twin.book.lock().unwrap();
        volumes
            .into_iter()
            .map(|v| {
                let kind = book.volume_type.get(&v).cloned();
                (v, kind)
            })
            .collect()
    }

    /// A create's answer came back: remember what it made.
    fn twin_created(&self, seq: usize, record: &ProxyRecord, body: &str) -> Option<String> {
        let plan = &self.plan.twin;
        let made = created_snapshots(&record.action, body);
        if made.is_empty() {
            return None;
        }
        let now = self.twin.clock.now();
        let copy = record.action == "CopySnapshot";
        let pending_until = plan
            .pending_for
            .filter(|_| !copy)
            .map(|p| now + self.twin.clock.span(p));
        let mut notes = Vec::new();
        {
            let mut book = self.twin.book.lock().unwrap();
            for (id, volume) in &made {
                book.created.insert(
                    id.clone(),
                    Created {
                        at: now,
                        pending_until,
                    },
                );
                if let Some(volume) = volume {
                    if !copy {
                        book.volume_of.insert(id.clone(), volume.clone());
                        if let Some(until) = pending_until {
                            book.limits.record(volume, now, until);
                        }
                    }
                }
                let mut note = format!("created {id}");
                if let Some(volume) = volume.as_ref().filter(|_| !copy) {
                    note.push_str(&format!(" of {volume}"));
                }
                if let Some(window) = plan.window {
                    note.push_str(&format!(", hidden for {window:?}"));
                }
                if let Some(pending) = plan.pending_for.filter(|_| !copy) {
                    note.push_str(&format!(", pending for {pending:?}"));
                }
                notes.push(note);
            }
        }
        self.twin_note(seq, &notes.join("; "));
        // CreateSnapshot's answer shows the new snapshot's state.
        if record.action == "CreateSnapshot" && pending_until.is_some() {
            return Some(set_element(body, "status", "pending"));
        }
        None
    }

    /// Rewrites a DescribeSnapshots answer to what EC2 would show.
    fn twin_describe(&self, seq: usize, record: &ProxyRecord, body: &str) -> Option<String> {
        let plan = &self.plan.twin;
        let now = self.twin.clock.now();
        let utc_now = self.twin.clock.utc();
        let window = self.twin_window();
        let filters = record.filters();
        let mut notes = Vec::new();
        let mut book = self.twin.book.lock().unwrap();
        let out = rewrite_set(body, "snapshotSet", |item| {
            let Some(id) = top_level_value(item, "snapshotId").map(String::from) else {
                return Some(item.to_string());
            };
            let volume = top_level_value(item, "volumeId").map(String::from);
            if let Some(volume) = &volume {
                book.volume_of.insert(id.clone(), volume.clone());
            }
            if book.hidden(window, &id, now) {
                notes.push(format!("hidden {id} (consistency window)"));
                return None;
            }
            let mut item = item.to_string();
            let state = plan
                .state_of(&id, volume.as_deref())
                .or_else(|| book.pending(&id, now).then_some("pending"));
            if let Some(state) = state {
                item = set_element(&item, "status", state);
                notes.push(format!("{id} {state}"));
            }
            if let Some((tiered, status)) =
                self.twin_tier_item(&book, &id, volume.as_deref(), &item, utc_now)
            {
                item = tiered;
                notes.push(format!("{id} {status}"));
            }
            for (name, element) in [("status", "status"), ("storage-tier", "storageTier")] {
                if let Some(values) = filters.get(name) {
                    if !top_level_value(&item, element)
                        .is_some_and(|v| values.iter().any(|f| f == v))
                    {
                        notes.push(format!("{id} left out: no longer matches {name}"));
                        return None;
                    }
                }
            }
            Some(item)
        });
        drop(book);
        if notes.is_empty() {
            return None;
        }
        self.twin_note(seq, &notes.join("; "));
        Some(out)
    }

    /// The twin's own DescribeLockedSnapshots answer.
    fn twin_locked_snapshots(&self, record: &ProxyRecord, req: &HttpRequest) -> Outcome {
        if record.dry_run {
            // DryRunOperation comes with HTTP 412, as EC2 (and moto) answer it.
            return Outcome::Refuse {
                status: 412,
                code: "DryRunOperation".into(),
                message: "Request would have succeeded, but DryRun flag is set.".into(),
                note: "answered DescribeLockedSnapshots (DryRun)".into(),
            };
        }
        let plan = &self.plan.twin;
        let mut ids = indexed(&record.params, "SnapshotId");
        if ids.is_empty() {
            // Every locked snapshot: those named, and those of named volumes.
            for lock in &plan.locks {
                if lock.target.starts_with("vol-") {
                    if let Some(body) = self.twin_upstream(
                        req,
                        &[
                            ("Action", "DescribeSnapshots"),
                            ("Filter.1.Name", "volume-id"),
                            ("Filter.1.Value.1", lock.target.as_str()),
                        ],
                    ) {
                        for item in set_items(&body, "snapshotSet") {
                            if let Some(id) = top_level_value(&body[item], "snapshotId") {
                                ids.push(id.to_string());
                            }
                        }
                    }
                } else {
                    ids.push(lock.target.clone());
                }
            }
            ids.sort();
            ids.dedup();
        }
        let states = record.filters().remove("lock-state");
        let owner = header(&req.headers, "x-moto-account-id").unwrap_or(ACCOUNT_ID);
        let now = Utc::now();
        let mut items = String::new();
        let mut shown = Vec::new();
        for id in &ids {
            let volume = self.twin_volume_of(req, id);
            let Some(lock) = plan.lock_of(id, volume.as_deref()) else {
                continue;
            };
            let state = lock_state(lock, now);
            if states
                .as_ref()
                .is_some_and(|s| !s.iter().any(|v| v == state))
            {
                continue;
            }
            items.push_str(&locked_snapshot_item(id, owner, lock, state));
            shown.push(id.clone());
        }
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeLockedSnapshotsResponse \
             xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>twin</requestId>\
             <snapshotSet>{items}</snapshotSet></DescribeLockedSnapshotsResponse>"
        );
        Outcome::Answer {
            body,
            note: format!("answered DescribeLockedSnapshots: {}", shown.join(", ")),
        }
    }

    /// The volume a snapshot was made of: from answers seen, else asked of the
    /// emulator (only when some rule names a volume).
    fn twin_volume_of(&self, req: &HttpRequest, snapshot: &str) -> Option<String> {
        if let Some(v) = self.twin.book.lock().unwrap().volume_of.get(snapshot) {
            return Some(v.clone());
        }
        if !self.plan.twin.has_volume_targets() {
            return None;
        }
        let body = self.twin_upstream(
            req,
            &[("Action", "DescribeSnapshots"), ("SnapshotId.1", snapshot)],
        )?;
        let item = set_items(&body, "snapshotSet").into_iter().next()?;
        let volume = top_level_value(&body[item], "volumeId")?.to_string();
        self.twin
            .book
            .lock()
            .unwrap()
            .volume_of
            .insert(snapshot.to_string(), volume.clone());
        Some(volume)
    }

    /// The tag keys a resource has now (DescribeTags on the emulator).
    fn twin_existing_tags(&self, req: &HttpRequest, resource: &str) -> BTreeSet<String> {
        let Some(body) = self.twin_upstream(
            req,
            &[
                ("Action", "DescribeTags"),
                ("Filter.1.Name", "resource-id"),
                ("Filter.1.Value.1", resource),
            ],
        ) else {
            return BTreeSet::new();
        };
        set_items(&body, "tagSet")
            .into_iter()
            .filter_map(|item| top_level_value(&body[item], "key").map(xml_unescape))
            .collect()
    }

    /// A read of the twin's own from the emulator, in the region and account
    /// of `req`. None when it fails.
    fn twin_upstream(&self, req: &HttpRequest, params: &[(&str, &str)]) -> Option<String> {
        let scope = header(&req.headers, "authorization")?
            .split("Credential=")
            .nth(1)?;
        let mut parts = scope.split('/');
        let key = parts.next()?;
        let region = parts.nth(1)?;
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={key}/20200101/{region}/ec2/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let mut headers = vec![
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Authorization", auth.as_str()),
        ];
        if let Some(account) = header(&req.headers, "x-moto-account-id") {
            headers.push(("x-moto-account-id", account));
        }
        let mut all = vec![("Version", "2016-11-15")];
        all.extend_from_slice(params);
        let (status, body) = http_request(
            self.upstream_port,
            "POST",
            "/",
            &headers,
            &form_encode(&all),
            Duration::from_secs(60),
        )
        .ok()?;
        (status == 200).then_some(body)
    }
}

impl FaultProxy {
    /// An SDK client of `emu`'s account and region talking to this proxy,
    /// without retries: it sees each answer of the proxy (and the twin) as is.
    pub fn sdk_client(&self, emu: &Emulator) -> aws_sdk_ec2::Client {
        aws_sdk_ec2::Client::from_conf(
            emu.client()
                .config()
                .to_builder()
                .endpoint_url(self.endpoint_url())
                .retry_config(aws_sdk_ec2::config::retry::RetryConfig::disabled())
                .build(),
        )
    }

    /// The snapshots ebsnap deleted while they had a copy in the archive tier
    /// for less than the 90-day minimum archive period (`MIN_ARCHIVE_PERIOD`),
    /// in order: each one billed for the remaining days on a real account
    /// ("Considerations and limitations for archiving Amazon EBS snapshots").
    /// Needs `FaultPlan::archive_tier` or `FaultPlan::archived*`.
    pub fn early_archive_deletes(&self) -> Vec<String> {
        self.shared.twin.book.lock().unwrap().early_deletes.clone()
    }

    /// What the twin did, one line per request it touched ("#seq Action: notes").
    pub fn twin_log(&self) -> String {
        let mut out = String::new();
        for r in self.records() {
            if let Some(twin) = &r.twin {
                out.push_str(&format!("  #{} {}: {twin}\n", r.seq, r.action));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Locks

/// The lock's state now: its configured state until it expires.
fn lock_state(lock: &LockRule, now: DateTime<Utc>) -> &'static str {
    if now >= lock.created + chrono::Duration::days(lock.days.into()) {
        "expired"
    } else {
        lock.state
    }
}

/// DescribeRegions' answer for an account with `regions` enabled
/// (RegionInfo: regionName, regionEndpoint, optInStatus); a DryRun is
/// answered DryRunOperation, as EC2 does.
fn enabled_regions_answer(regions: &[String], dry_run: bool) -> Outcome {
    if dry_run {
        return Outcome::Refuse {
            status: 412,
            code: "DryRunOperation".into(),
            message: "Request would have succeeded, but DryRun flag is set.".into(),
            note: "answered DescribeRegions (DryRun)".into(),
        };
    }
    let items: String = regions
        .iter()
        .map(|r| {
            format!(
                "<item><regionName>{r}</regionName><regionEndpoint>ec2.{r}.amazonaws.com</regionEndpoint>\
                 <optInStatus>opt-in-not-required</optInStatus></item>"
            )
        })
        .collect();
    Outcome::Answer {
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse \
             xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\"><requestId>twin</requestId>\
             <regionInfo>{items}</regionInfo></DescribeRegionsResponse>"
        ),
        note: format!("answered DescribeRegions: {}", regions.join(", ")),
    }
}

/// One `<item>` of DescribeLockedSnapshots (LockedSnapshotsInfo, EC2 API
/// reference).
fn locked_snapshot_item(id: &str, owner: &str, lock: &LockRule, state: &str) -> String {
    let ts = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let expires = lock.created + chrono::Duration::days(lock.days.into());
    let mut item = format!(
        "<item><ownerId>{owner}</ownerId><snapshotId>{id}</snapshotId>\
         <lockState>{state}</lockState><lockDuration>{}</lockDuration>\
         <lockCreatedOn>{}</lockCreatedOn><lockDurationStartTime>{}</lockDurationStartTime>\
         <lockExpiresOn>{}</lockExpiresOn>",
        lock.days,
        ts(lock.created),
        ts(lock.created),
        ts(expires)
    );
    if lock.state == "compliance-cooloff" {
        // CoolOffPeriod: "Allowed values: Min 1, max 72" hours (LockSnapshot).
        let hours = 72;
        item.push_str(&format!(
            "<coolOffPeriod>{hours}</coolOffPeriod><coolOffPeriodExpiresOn>{}</coolOffPeriodExpiresOn>",
            ts(lock.created + chrono::Duration::hours(hours))
        ));
    }
    item.push_str("</item>");
    item
}

// ---------------------------------------------------------------------------
// Requests: the parameters the twin reads

/// The values of `Prefix.1`, `Prefix.2`, ... in order.
fn indexed(params: &std::collections::BTreeMap<String, String>, prefix: &str) -> Vec<String> {
    let mut found: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?.strip_prefix('.')?.parse().ok()?;
            Some((n, v.clone()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, v)| v).collect()
}

/// The existing snapshots a request names (the consistency window hides them).
fn named_snapshots(
    action: &str,
    params: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let one = |key: &str| params.get(key).cloned().into_iter().collect();
    match action {
        "DescribeSnapshots" => indexed(params, "SnapshotId"),
        "CreateTags" => indexed(params, "ResourceId"),
        "DeleteSnapshot" | "CreateVolume" | "ModifySnapshotTier" | "RestoreSnapshotTier" => {
            one("SnapshotId")
        }
        "CopySnapshot" => one("SourceSnapshotId"),
        _ => Vec::new(),
    }
}

/// The (key, value) pairs of `{prefix}N.Key` / `{prefix}N.Value`.
fn request_tags(
    params: &std::collections::BTreeMap<String, String>,
    prefix: &str,
) -> Vec<(String, String)> {
    let mut tags: Vec<(u32, String, String)> = params
        .iter()
        .filter_map(|(k, key)| {
            let n = k.strip_prefix(prefix)?.strip_suffix(".Key")?.parse().ok()?;
            let value = params
                .get(&format!("{prefix}{n}.Value"))
                .cloned()
                .unwrap_or_default();
            Some((n, key.clone(), value))
        })
        .collect();
    tags.sort();
    tags.into_iter().map(|(_, k, v)| (k, v)).collect()
}

/// A create's TagSpecification.N: (resource type, its tags), in order.
fn tag_specifications(
    params: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, Vec<(String, String)>)> {
    (1..)
        .map_while(|n| {
            let prefix = format!("TagSpecification.{n}.");
            let kind = params.get(&format!("{prefix}ResourceType"))?;
            Some((kind.clone(), request_tags(params, &format!("{prefix}Tag."))))
        })
        .collect()
}

/// EC2's tag restrictions for tags `new` added to a resource that has the
/// keys `existing`: Err((code, message)) as EC2 refuses them.
pub(crate) fn check_tags(
    existing: &BTreeSet<String>,
    new: &[(String, String)],
) -> Result<(), (&'static str, String)> {
    for (key, value) in new {
        if key.chars().count() > MAX_TAG_KEY {
            return Err((
                "InvalidParameterValue",
                format!("Tag key exceeds the maximum length of {MAX_TAG_KEY} characters"),
            ));
        }
        if value.chars().count() > MAX_TAG_VALUE {
            return Err((
                "InvalidParameterValue",
                format!("Tag value exceeds the maximum length of {MAX_TAG_VALUE} characters"),
            ));
        }
    }
    let counted = |k: &&String| !k.to_ascii_lowercase().starts_with("aws:");
    let mut keys: BTreeSet<&String> = existing.iter().filter(counted).collect();
    keys.extend(new.iter().map(|(k, _)| k).filter(counted));
    if keys.len() > MAX_TAGS {
        return Err((
            "TagLimitExceeded",
            format!(
                "You've reached the limit on the number of tags that you can assign to the \
                 specified resource ({} of at most {MAX_TAGS}).",
                keys.len()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Answers: the emulator's XML, read and edited

/// The snapshots a create's answer names, with their volumes where it says:
/// CreateSnapshot (`snapshotId`, `volumeId` at the top), CreateSnapshots (the
/// items of `snapshotSet`), CopySnapshot (`snapshotId`; no volume).
pub(crate) fn created_snapshots(action: &str, body: &str) -> Vec<(String, Option<String>)> {
    match action {
        "CreateSnapshots" => set_items(body, "snapshotSet")
            .into_iter()
            .filter_map(|item| {
                let item = &body[item];
                let id = top_level_value(item, "snapshotId")?;
                Some((
                    id.to_string(),
                    top_level_value(item, "volumeId").map(String::from),
                ))
            })
            .collect(),
        "CreateSnapshot" | "CopySnapshot" => top_level_value(body, "snapshotId")
            .map(|id| {
                (
                    id.to_string(),
                    top_level_value(body, "volumeId").map(String::from),
                )
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    }
}

/// The byte ranges of the `<item>…</item>` elements directly inside the first
/// `<{set}>` of `xml` (items nest: a snapshot's `tagSet` has items too).
pub(crate) fn set_items(xml: &str, set: &str) -> Vec<Range<usize>> {
    let open = format!("<{set}>");
    let close = format!("</{set}>");
    let Some(start) = xml.find(&open) else {
        return Vec::new();
    };
    let mut pos = start + open.len();
    let mut depth = 0usize;
    let mut item_start = 0;
    let mut items = Vec::new();
    loop {
        let rest = &xml[pos..];
        let next = [
            rest.find("<item>").map(|i| (i, 0)),
            rest.find("</item>").map(|i| (i, 1)),
            rest.find(&close).map(|i| (i, 2)),
        ]
        .into_iter()
        .flatten()
        .min();
        let Some((at, kind)) = next else {
            return items;
        };
        let at = pos + at;
        match kind {
            0 => {
                if depth == 0 {
                    item_start = at;
                }
                depth += 1;
                pos = at + "<item>".len();
            }
            1 => {
                pos = at + "</item>".len();
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    items.push(item_start..pos);
                }
            }
            _ => {
                if depth == 0 {
                    return items;
                }
                pos = at + close.len();
            }
        }
    }
}

/// Rewrites the items of `<{set}>`: `edit` gets each item (`<item>…</item>`)
/// and returns its replacement, or None to leave it out.
pub(crate) fn rewrite_set(
    xml: &str,
    set: &str,
    mut edit: impl FnMut(&str) -> Option<String>,
) -> String {
    let mut out = String::with_capacity(xml.len());
    let mut pos = 0;
    for item in set_items(xml, set) {
        out.push_str(&xml[pos..item.start]);
        if let Some(new) = edit(&xml[item.clone()]) {
            out.push_str(&new);
        }
        pos = item.end;
    }
    out.push_str(&xml[pos..]);
    out
}

/// Where `<{name}>…</{name}>` (or `<{name}/>`) is in `xml` outside any nested
/// `<item>`: (whole element, its content).
fn top_level(xml: &str, name: &str) -> Option<(Range<usize>, Range<usize>)> {
    let open = format!("<{name}>");
    let empty = format!("<{name}/>");
    let close = format!("</{name}>");
    // An item of our own: look inside it, not at its start tag.
    let mut pos = if xml.starts_with("<item>") { 6 } else { 0 };
    let mut depth = 0usize;
    loop {
        let rest = &xml[pos..];
        let next = [
            rest.find("<item>").map(|i| (i, 0)),
            rest.find("</item>").map(|i| (i, 1)),
            rest.find(&open).map(|i| (i, 2)),
            rest.find(&empty).map(|i| (i, 3)),
        ]
        .into_iter()
        .flatten()
        .min()?;
        let at = pos + next.0;
        match next.1 {
            0 => {
                depth += 1;
                pos = at + 6;
            }
            1 => {
                if depth == 0 {
                    return None; // the end of our own item
                }
                depth -= 1;
                pos = at + 7;
            }
            2 if depth == 0 => {
                let content = at + open.len();
                let end = content + xml[content..].find(&close)?;
                return Some((at..end + close.len(), content..end));
            }
            3 if depth == 0 => {
                let end = at + empty.len();
                return Some((at..end, end..end));
            }
            _ => pos = at + 1,
        }
    }
}

/// The content of `<{name}>` in `xml` outside nested items.
pub(crate) fn top_level_value<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    top_level(xml, name).map(|(_, content)| &xml[content])
}

/// `xml` with `<{name}>` (outside nested items) set to `value`, added at the
/// end (before a closing `</item>`, or before the root's end tag) when absent.
pub(crate) fn set_element(xml: &str, name: &str, value: &str) -> String {
    let element = format!("<{name}>{value}</{name}>");
    if let Some((whole, _)) = top_level(xml, name) {
        return format!("{}{element}{}", &xml[..whole.start], &xml[whole.end..]);
    }
    let insert_at = if xml.starts_with("<item>") && xml.ends_with("</item>") {
        xml.len() - "</item>".len()
    } else {
        xml.rfind("</").unwrap_or(xml.len())
    };
    format!("{}{element}{}", &xml[..insert_at], &xml[insert_at..])
}

/// `xml` without `<{name}>` (outside nested items).
pub(crate) fn remove_element(xml: &str, name: &str) -> String {
    match top_level(xml, name) {
        Some((whole, _)) => format!("{}{}", &xml[..whole.start], &xml[whole.end..]),
        None => xml.to_string(),
    }
}

/// DescribeInstances' one instance: its volumes, each with whether it is at
/// the root device.
fn instance_volumes(body: &str) -> Vec<(String, bool)> {
    let root = top_level_value_anywhere(body, "rootDeviceName");
    set_items(body, "blockDeviceMapping")
        .into_iter()
        .filter_map(|item| {
            let item = &body[item];
            let device = top_level_value(item, "deviceName");
            let volume = top_level_value(item, "volumeId")?;
            Some((volume.to_string(), device.is_some() && device == root))
        })
        .collect()
}

fn top_level_value_anywhere<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(&xml[start..end])
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

// ---------------------------------------------------------------------------
// Unit tests of the pure parts (named twin_* so `cargo test twin_` finds them)

#[cfg(test)]
mod tests {
    use super::*;

    /// DescribeSnapshots as moto 5.2.5 answers it (two snapshots, tags nested).
    const DESCRIBE: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<DescribeSnapshotsResponse \
        xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\"><snapshotSet><item><tagSet><item><key>a</key>\
        <value>b</value></item><item><key>snapshotId</key><value>x</value></item></tagSet>\
        <storageTier>standard</storageTier><snapshotId>snap-1</snapshotId><volumeId>vol-1</volumeId>\
        <status>completed</status><progress>100%</progress></item><item><tagSet/><storageTier>standard\
        </storageTier><snapshotId>snap-2</snapshotId><volumeId>vol-2</volumeId><status>completed</status>\
        </item></snapshotSet><requestId>request-id</requestId></DescribeSnapshotsResponse>";

    #[test]
    fn twin_set_items_finds_top_level_items_only() {
        let items = set_items(DESCRIBE, "snapshotSet");
        assert_eq!(items.len(), 2);
        assert!(DESCRIBE[items[0].clone()].starts_with("<item><tagSet><item>"));
        assert!(DESCRIBE[items[0].clone()].ends_with("100%</progress></item>"));
        assert!(DESCRIBE[items[1].clone()].contains("snap-2"));
        assert!(set_items("<x><snapshotSet/></x>", "snapshotSet").is_empty());
        assert!(set_items("<x/>", "snapshotSet").is_empty());
    }

    #[test]
    fn twin_top_level_value_skips_nested_items() {
        let items = set_items(DESCRIBE, "snapshotSet");
        let first = &DESCRIBE[items[0].clone()];
        assert_eq!(top_level_value(first, "snapshotId"), Some("snap-1"));
        assert_eq!(top_level_value(first, "volumeId"), Some("vol-1"));
        // `key` exists only inside nested tag items.
        assert_eq!(top_level_value(first, "key"), None);
        assert_eq!(top_level_value(first, "description"), None);
        assert_eq!(
            top_level_value("<item><description/></item>", "description"),
            Some("")
        );
    }

    #[test]
    fn twin_rewrite_set_removes_one_item_and_keeps_the_rest_intact() {
        let out = rewrite_set(DESCRIBE, "snapshotSet", |item| {
            (top_level_value(item, "snapshotId") != Some("snap-1")).then(|| item.to_string())
        });
        assert!(
            !out.contains("snap-1") && !out.contains("<key>a</key>"),
            "{out}"
        );
        assert!(out.contains("<snapshotSet><item><tagSet/>"), "{out}");
        assert!(out.ends_with(
            "</item></snapshotSet><requestId>request-id</requestId></DescribeSnapshotsResponse>"
        ));
        assert_eq!(set_items(&out, "snapshotSet").len(), 1);
        // Removing every item leaves an empty set.
        let none = rewrite_set(DESCRIBE, "snapshotSet", |_| None);
        assert!(none.contains("<snapshotSet></snapshotSet>"), "{none}");
        // Keeping all is the identity.
        assert_eq!(
            rewrite_set(DESCRIBE, "snapshotSet", |i| Some(i.into())),
            DESCRIBE
        );
    }

    #[test]
    fn twin_set_and_remove_element_edit_the_item_not_its_tags() {
        let items = set_items(DESCRIBE, "snapshotSet");
        let first = &DESCRIBE[items[0].clone()];
        let error = set_element(first, "status", "error");
        assert_eq!(top_level_value(&error, "status"), Some("error"));
        assert!(error.contains("<key>snapshotId</key><value>x</value>"));
        let archived = set_element(first, "storageTier", "archive");
        assert_eq!(top_level_value(&archived, "storageTier"), Some("archive"));
        let added = set_element(first, "restoreExpiryTime", "t");
        assert!(added.ends_with("<restoreExpiryTime>t</restoreExpiryTime></item>"));
        let removed = remove_element(&added, "restoreExpiryTime");
        assert_eq!(removed, first);
        assert_eq!(remove_element(first, "nothing"), first);
        // At the root of an answer (CreateSnapshot).
        let root = "<R><tagSet><item><key>k</key></item></tagSet><status>completed</status></R>";
        assert_eq!(
            set_element(root, "status", "pending"),
            "<R><tagSet><item><key>k</key></item></tagSet><status>pending</status></R>"
        );
    }

    #[test]
    fn twin_created_snapshots_reads_the_three_create_answers() {
        // moto 5.2.5's answers, as captured.
        let create = "<CreateSnapshotResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15\">\
            <tagSet><item><key>a</key><value>b</value></item></tagSet><storageTier>standard</storageTier>\
            <snapshotId>snap-08cc3b6d016992d54</snapshotId><volumeId>vol-3244033680b54e1c9</volumeId>\
            <status>completed</status></CreateSnapshotResponse>";
        assert_eq!(
            created_snapshots("CreateSnapshot", create),
            [(
                "snap-08cc3b6d016992d54".to_string(),
                Some("vol-3244033680b54e1c9".to_string())
            )]
        );
        let many = "<CreateSnapshotsResponse><snapshotSet><item><description/><tagSet><item><key>x</key>\
            <value>y</value></item></tagSet><volumeId>vol-a</volumeId><snapshotId>snap-a</snapshotId></item>\
            <item><tagSet/><volumeId>vol-b</volumeId><snapshotId>snap-b</snapshotId></item></snapshotSet>\
            <requestId>r</requestId></CreateSnapshotsResponse>";
        assert_eq!(
            created_snapshots("CreateSnapshots", many),
            [
                ("snap-a".to_string(), Some("vol-a".to_string())),
                ("snap-b".to_string(), Some("vol-b".to_string()))
            ]
        );
        let copy = "<CopySnapshotResponse><tagSet/><snapshotId>snap-624b22430ef9ec877</snapshotId>\
            <requestId>request-id</requestId></CopySnapshotResponse>";
        assert_eq!(
            created_snapshots("CopySnapshot", copy),
            [("snap-624b22430ef9ec877".to_string(), None)]
        );
        assert!(created_snapshots("CreateTags", copy).is_empty());
    }

    #[test]
    fn twin_request_parameters_are_read_in_index_order() {
        let params: std::collections::BTreeMap<String, String> = [
            ("SnapshotId.10", "snap-10"),
            ("SnapshotId.2", "snap-2"),
            ("SnapshotId.1", "snap-1"),
            ("Tag.2.Key", "b"),
            ("Tag.1.Key", "a"),
            ("Tag.1.Value", "1"),
            ("TagSpecification.1.ResourceType", "snapshot"),
            ("TagSpecification.1.Tag.1.Key", "k"),
            ("TagSpecification.1.Tag.1.Value", "v"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            indexed(&params, "SnapshotId"),
            ["snap-1", "snap-2", "snap-10"]
        );
        assert_eq!(named_snapshots("DescribeSnapshots", &params).len(), 3);
        assert_eq!(
            request_tags(&params, "Tag."),
            [
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), String::new())
            ]
        );
        assert_eq!(
            tag_specifications(&params),
            [(
                "snapshot".to_string(),
                vec![("k".to_string(), "v".to_string())]
            )]
        );
    }

    #[test]
    fn twin_instance_volumes_marks_the_root_device() {
        let body = "<DescribeInstancesResponse><reservationSet><item><instancesSet><item>\
            <rootDeviceName>/dev/sda1</rootDeviceName><blockDeviceMapping><item><deviceName>/dev/sda1\
            </deviceName><ebs><volumeId>vol-root</volumeId></ebs></item><item><deviceName>/dev/sdf\
            </deviceName><ebs><volumeId>vol-data</volumeId></ebs></item></blockDeviceMapping>\
            </item></instancesSet></item></reservationSet></DescribeInstancesResponse>";
        assert_eq!(
            instance_volumes(body),
            [
                ("vol-root".to_string(), true),
                ("vol-data".to_string(), false)
            ]
        );
    }

    fn tags(n: usize) -> Vec<(String, String)> {
        (0..n).map(|i| (format!("k{i}"), "v".to_string())).collect()
    }

    #[test]
    fn twin_tag_limits_count_existing_tags_and_check_lengths() {
        let existing: BTreeSet<String> = (0..49).map(|i| format!("k{i}")).collect();
        // 49 + 1 new = 50: allowed; + 2 new = 51: refused.
        assert!(check_tags(&existing, &[("new".into(), "v".into())]).is_ok());
        let err = check_tags(
            &existing,
            &[("n1".into(), "v".into()), ("n2".into(), "v".into())],
        )
        .unwrap_err();
        assert_eq!(err.0, "TagLimitExceeded");
        // Overwriting existing keys adds nothing; aws: tags do not count.
        assert!(check_tags(&existing, &tags(49)).is_ok());
        let mut with_aws = existing.clone();
        with_aws.insert("aws:cloudformation:stack-name".into());
        assert!(check_tags(&with_aws, &[("new".into(), "v".into())]).is_ok());
        assert!(check_tags(&BTreeSet::new(), &tags(50)).is_ok());
        assert_eq!(
            check_tags(&BTreeSet::new(), &tags(51)).unwrap_err().0,
            "TagLimitExceeded"
        );
        // Lengths in characters, not bytes.
        let key = |n| "é".repeat(n);
        assert!(check_tags(&BTreeSet::new(), &[(key(128), "v".into())]).is_ok());
        let err = check_tags(&BTreeSet::new(), &[(key(129), "v".into())]).unwrap_err();
        assert_eq!(err.0, "InvalidParameterValue");
        assert!(err.1.contains("key"), "{err:?}");
        assert!(check_tags(&BTreeSet::new(), &[("k".into(), "v".repeat(256))]).is_ok());
        let err = check_tags(&BTreeSet::new(), &[("k".into(), "v".repeat(257))]).unwrap_err();
        assert_eq!(err.0, "InvalidParameterValue");
        assert!(err.1.contains("value"), "{err:?}");
    }

    #[test]
    fn twin_volume_limits_rate_window_and_pending_counts() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut limits = VolumeLimits::default();
        assert_eq!(limits.check("vol-a", false, 0, t0), Ok(()));
        limits.record("vol-a", t0, t0 + s(300));
        // Within 15 s of the last create: refused, whatever the pending count.
        assert_eq!(
            limits.check("vol-a", false, 0, t0 + s(14)),
            Err(LimitRefusal::Rate)
        );
        assert_eq!(limits.check("vol-a", false, 0, t0 + s(15)), Ok(()));
        // Other volumes are not affected.
        assert_eq!(limits.check("vol-b", false, 0, t0), Ok(()));
        // Five pending: the sixth is refused until one completes.
        for i in 1..5 {
            limits.record("vol-a", t0 + s(20 * i), t0 + s(300));
        }
        assert_eq!(limits.pending_count("vol-a", t0 + s(100)), 5);
        assert_eq!(
            limits.check("vol-a", false, 0, t0 + s(100)),
            Err(LimitRefusal::Concurrent(5))
        );
        assert_eq!(limits.check("vol-a", false, 0, t0 + s(300)), Ok(()));
        // st1/sc1: one pending is the limit; error snapshots count.
        let mut hdd = VolumeLimits::default();
        hdd.record("vol-h", t0, t0 + s(60));
        assert_eq!(
            hdd.check("vol-h", true, 0, t0 + s(20)),
            Err(LimitRefusal::Concurrent(1))
        );
        assert_eq!(hdd.check("vol-h", true, 0, t0 + s(60)), Ok(()));
        assert_eq!(
            hdd.check("vol-h", true, 1, t0 + s(60)),
            Err(LimitRefusal::Concurrent(1))
        );
        assert_eq!(
            VolumeLimits::default().check("vol-x", false, 5, t0),
            Err(LimitRefusal::Concurrent(5))
        );
    }

    #[test]
    fn twin_lock_items_carry_the_documented_fields() {
        let created = DateTime::parse_from_rfc3339("2025-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let lock = LockRule {
            target: "snap-1".into(),
            state: "compliance-cooloff",
            created,
            days: 30,
        };
        let item = locked_snapshot_item("snap-1", "123456789012", &lock, lock.state);
        for part in [
            "<snapshotId>snap-1</snapshotId>",
            "<lockState>compliance-cooloff</lockState>",
            "<lockDuration>30</lockDuration>",
            "<lockCreatedOn>2025-01-01T00:00:00.000Z</lockCreatedOn>",
            "<lockExpiresOn>2025-01-31T00:00:00.000Z</lockExpiresOn>",
            "<coolOffPeriod>72</coolOffPeriod>",
        ] {
            assert!(item.contains(part), "{part} in {item}");
        }
        assert_eq!(
            lock_state(&lock, created + chrono::Duration::days(29)),
            "compliance-cooloff"
        );
        assert_eq!(
            lock_state(&lock, created + chrono::Duration::days(30)),
            "expired"
        );
    }
}
