//! `ebsnap restore`: new volumes from one snapshot, or from one whole backup
//! run of an instance as of a time, optionally attached to an instance.
//!
//! A backup is worth what its restore is worth, and restores happen at 3 am.
//! So everything that can be known before creating a volume is checked
//! first (the snapshot is complete, the zone is in the region, the devices
//! on the target are free), and any problem stops the restore before it
//! creates anything, with one line that says what to do. The decisions
//! (which run, which parameters, which devices) are pure functions of what
//! was read; the async code around them only reads, creates, attaches and
//! waits.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{
    AttachmentStatus, Filter, ResourceType, Snapshot, Tag, TagSpecification, Volume,
    VolumeAttachmentState, VolumeState, VolumeType,
};
use aws_sdk_ec2::Client;
use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use crate::aws::{self, dry_run_verdict, error_text};
use crate::cli::RestoreArgs;
use crate::config::Config;
use crate::inventory::{SnapshotState, TAG_DEVICE, TAG_INSTANCE_ID, TAG_JOB, TAG_RUN_ID};
use crate::report::ExitStatus;

/// Set on every restored volume: the snapshot it was made from.
pub const TAG_RESTORED_FROM: &str = "ebsnap:restored-from";

/// DescribeSnapshots' largest page.
const SNAPSHOT_PAGE_SIZE: i32 = 1000;
/// The first pause between two looks at the new volumes; doubles up to
/// `MAX_POLL`.
const FIRST_POLL: Duration = Duration::from_secs(1);
const MAX_POLL: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// Our small types: what restore reads, and what it decides.

/// A snapshot to restore from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSnapshot {
    pub id: String,
    /// The volume it was taken of (it may no longer exist).
    pub volume_id: String,
    pub state: SnapshotState,
    /// EC2's progress while pending, e.g. `42%`.
    pub progress: Option<String>,
    pub start_time: DateTime<Utc>,
    /// The size of the volume it was taken of, in GiB.
    pub size_gib: i32,
    pub encrypted: bool,
    /// In the archive tier: no volume can be made of it until it is
    /// restored from the archive (EBS User Guide, "Archive Amazon EBS
    /// snapshots": an archived snapshot must be restored to the standard
    /// tier before it can be used).
    pub archived: bool,
    pub tags: Vec<(String, String)>,
}

impl SourceSnapshot {
    /// Completed and in the standard tier: a volume can be made of it now.
    pub fn is_restorable_now(&self) -> bool {
        self.state == SnapshotState::Completed && !self.archived
    }

    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `ebsnap:device`: where the volume was attached when it was taken.
    pub fn device(&self) -> Option<&str> {
        self.tag(TAG_DEVICE)
    }
}

/// The volume a snapshot was taken of, while it still exists.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceVolume {
    pub id: String,
    pub availability_zone: String,
    pub volume_type: Option<String>,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    pub encrypted: bool,
}

/// An instance restore reads: the source (for its root device) or the
/// target of `--attach-to`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    pub id: String,
    pub state: String,
    pub availability_zone: Option<String>,
    pub root_device: Option<String>,
    /// (device, volume id) of every volume attached or attaching.
    pub devices: Vec<(String, String)>,
}

/// One volume to create, and where to attach it.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub snapshot_id: String,
    pub source_volume_id: String,
    pub availability_zone: String,
    /// `None`: EC2's default type.
    pub volume_type: Option<String>,
    pub size_gib: i32,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    /// `Some(true)` to ask for encryption; `None` leaves it to EC2 (the
    /// snapshot's encryption, or the account's default).
    pub encrypted: Option<bool>,
    pub kms_key_id: Option<String>,
    /// Tags of the new volume, in the create call.
    pub tags: Vec<(String, String)>,
    /// The keys of the snapshot's tags left off the volume: past EC2's tag
    /// limits beside ebsnap's own.
    pub tags_dropped: Vec<String>,
    /// The device the snapshot was taken at (`ebsnap:device`), if known.
    pub snapshot_device: Option<String>,
    /// (instance, device) to attach to, with `--attach-to`.
    pub attach: Option<(String, String)>,
}

/// A snapshot of the chosen set that restore leaves out, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub snapshot_id: String,
    pub device: Option<String>,
    pub reason: String,
}

// ---------------------------------------------------------------------------
// Pure decisions

/// The job's run of `instance` to restore as of `at`: the newest run (one
/// `ebsnap:run-id`) whose snapshots are all completed and all started at or
/// before `at`. One consistent set, never a mix of runs. Within the run, one
/// snapshot per source volume (the newest), sorted by device.
pub fn choose_run(
    snapshots: &[SourceSnapshot],
    job: &str,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<(String, Vec<SourceSnapshot>), String> {
    // The server filtered on these tags; a server that ignored the filter
    // must not make restore pick another instance's snapshots.
    let ours: Vec<&SourceSnapshot> = snapshots
        .iter()
        .filter(|s| s.tag(TAG_JOB) == Some(job) && s.tag(TAG_INSTANCE_ID) == Some(instance))
        .collect();
    let Some(first) = ours.iter().map(|s| s.start_time).min() else {
        return Err(format!(
            "no snapshots of instance {instance} in job {job}: check the instance id, --job and --region \
             (`ebsnap list` shows the job's snapshots)"
        ));
    };
    let mut runs: BTreeMap<&str, Vec<&SourceSnapshot>> = BTreeMap::new();
    for snapshot in &ours {
        if let Some(run) = snapshot.tag(TAG_RUN_ID) {
            runs.entry(run).or_default().push(snapshot);
        }
    }
    let last_start = |run: &[&SourceSnapshot]| run.iter().map(|s| s.start_time).max();
    let chosen = runs
        .iter()
        .filter(|(_, run)| {
            run.iter()
                .all(|s| s.is_restorable_now() && s.start_time <= at)
        })
        .max_by_key(|(id, run)| (last_start(run), *id));
    let Some((run_id, run)) = chosen else {
        let at_text = rfc3339(at);
        // The earliest --at that works: the last start of the first complete
        // run, not its first snapshot's start (a run's snapshots start over
        // a few seconds, and a run counts only once all of it has started).
        let first_usable = runs
            .values()
            .filter(|run| run.iter().all(|s| s.is_restorable_now()))
            .filter_map(|run| last_start(run))
            .min();
        if let (true, Some(usable)) = (first > at, first_usable) {
            return Err(format!(
                "the first backup of {instance} in job {job} started at {}, after {at_text}: \
                 pass --at {} or later",
                rfc3339(first),
                // Rounded up: EC2's start times carry milliseconds, and a
                // whole second just before the last start would not do.
                rfc3339(
                    usable
                        .duration_round_up(TimeDelta::seconds(1))
                        .unwrap_or(usable)
                )
            ));
        }
        // Say why the newest run before `at` does not do.
        let blocker = runs
            .values()
            .filter(|run| run.iter().any(|s| s.start_time <= at))
            .max_by_key(|run| last_start(run))
            .and_then(|run| {
                run.iter().find(|s| !s.is_restorable_now()).map(|s| {
                    if s.archived {
                        format!(" ({} is in the archive tier)", s.id)
                    } else {
                        format!(" ({} is {})", s.id, s.state.as_str())
                    }
                })
            })
            .unwrap_or_default();
        return Err(format!(
            "no complete backup run of {instance} in job {job} started at or before {at_text}{blocker}: \
             wait for pending snapshots or pass another --at (`ebsnap list --instance {instance}` shows them)"
        ));
    };
    let mut newest: BTreeMap<&str, &SourceSnapshot> = BTreeMap::new();
    for snapshot in run {
        let entry = newest.entry(&snapshot.volume_id).or_insert(snapshot);
        if snapshot.start_time > entry.start_time {
            *entry = snapshot;
        }
    }
    let mut set: Vec<SourceSnapshot> = newest.into_values().cloned().collect();
    set.sort_by(|a, b| (a.device(), &a.id).cmp(&(b.device(), &b.id)));
    Ok((run_id.to_string(), set))
}

/// A snapshot given with `--snapshot` can be restored only once complete,
/// and only from the standard tier.
pub fn check_restorable(snapshot: &SourceSnapshot) -> Result<(), String> {
    if snapshot.archived && snapshot.state == SnapshotState::Completed {
        return Err(format!(
            "snapshot {id} is in the archive tier: bring it back first with \
             `aws ec2 restore-snapshot-tier --snapshot-id {id} --temporary-restore-days 7` \
             (hours: `aws ec2 describe-snapshot-tier-status` shows when), then run this again",
            id = snapshot.id
        ));
    }
    match &snapshot.state {
        SnapshotState::Completed => Ok(()),
        SnapshotState::Pending => Err(format!(
            "snapshot {} is still pending ({}): wait until it is completed, or restore an older one \
             (`ebsnap list` shows them)",
            snapshot.id,
            snapshot.progress.as_deref().unwrap_or("progress unknown")
        )),
        state => Err(format!(
            "snapshot {} is in state {}, not completed, and cannot be restored: pick another one \
             (`ebsnap list` shows them)",
            snapshot.id,
            state.as_str()
        )),
    }
}

/// Whether a zone belongs to a region: `us-east-1a` and local zones such as
/// `us-west-2-lax-1a` do, `us-east-2a` and `eu-west-1a` do not of `us-east-1`.
pub fn zone_in_region(zone: &str, region: &str) -> bool {
    zone.strip_prefix(region)
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_lowercase() || c == '-')
}

/// The volume types whose IOPS and throughput are set, not derived from size.
fn has_provisioned_iops(volume_type: &str) -> bool {
    matches!(volume_type, "io1" | "io2" | "gp3")
}

/// The new volume's parameters: the flags, else the source volume's (type,
/// IOPS, throughput, encryption), else the snapshot's (size). `target` is
/// the `--attach-to` instance, whose zone the volume must be in.
pub fn volume_spec(
    snapshot: &SourceSnapshot,
    source: Option<&SourceVolume>,
    args: &RestoreArgs,
    region: &str,
    target: Option<&InstanceInfo>,
    attach_device: Option<String>,
) -> Result<VolumeSpec, String> {
    let target_zone = target.and_then(|t| t.availability_zone.as_deref());
    let zone = match (&args.availability_zone, target_zone, source) {
        (Some(zone), Some(target_zone), _) if zone != target_zone => {
            return Err(format!(
                "--availability-zone {zone}, but {} is in {target_zone} and a volume attaches only \
                 to an instance in its own zone: leave out --availability-zone",
                target.map(|t| t.id.as_str()).unwrap_or_default()
            ))
        }
        (Some(zone), _, _) => zone.clone(),
        (None, Some(target_zone), _) => target_zone.to_string(),
        (None, None, Some(source)) => source.availability_zone.clone(),
        (None, None, None) => {
            return Err(format!(
            "the volume snapshot {} was taken of ({}) no longer exists, so its zone is unknown: \
                 pass --availability-zone (e.g. {region}a)",
            snapshot.id, snapshot.volume_id
        ))
        }
    };
    if !zone_in_region(&zone, region) {
        return Err(format!(
            "availability zone {zone} is not in region {region}: pass a zone of {region} \
             (e.g. {region}a), or the zone's region with --region"
        ));
    }
    if let Some(size) = args.size {
        if size < snapshot.size_gib {
            return Err(format!(
                "--size {size} is smaller than snapshot {} ({} GiB): pass --size {} or more, or leave it out",
                snapshot.id, snapshot.size_gib, snapshot.size_gib
            ));
        }
    }
    let source_type = source.and_then(|s| s.volume_type.clone());
    let volume_type = args.volume_type.clone().or_else(|| source_type.clone());
    // Performance follows the type: a gp2 volume reports a baseline IOPS
    // that gp2 cannot be given, and io2's IOPS may be more than gp3 allows.
    // So the source's numbers are kept only when the type is.
    let inherits = volume_type.is_some() && volume_type == source_type;
    let kept = |value: Option<i32>, applies: bool| value.filter(|_| inherits && applies);
    let provisioned = volume_type.as_deref().is_some_and(has_provisioned_iops);
    let iops = args
        .iops
        .or_else(|| kept(source.and_then(|s| s.iops), provisioned));
    let throughput = args.throughput.or_else(|| {
        kept(
            source.and_then(|s| s.throughput),
            volume_type.as_deref() == Some("gp3"),
        )
    });
    let encrypted =
        (args.kms_key_id.is_some() || snapshot.encrypted || source.is_some_and(|s| s.encrypted))
            .then_some(true);
    // ebsnap's own tags and Name first, restore's own last of those: the
    // snapshot's other tags only as far as EC2's limits leave room.
    let (mut tags, others): (Vec<_>, Vec<_>) = snapshot
        .tags
        .iter()
        .filter(|(key, _)| !key.starts_with("aws:") && key != TAG_RESTORED_FROM)
        .cloned()
        .partition(|(key, _)| key.starts_with("ebsnap:") || key == "Name");
    tags.push((TAG_RESTORED_FROM.to_string(), snapshot.id.clone()));
    let (others, tags_dropped) = crate::plan::fit_tags(tags.len(), others);
    tags.extend(others);
    Ok(VolumeSpec {
        snapshot_id: snapshot.id.clone(),
        source_volume_id: snapshot.volume_id.clone(),
        availability_zone: zone,
        volume_type,
        size_gib: args.size.unwrap_or(snapshot.size_gib),
        iops,
        throughput,
        encrypted,
        kms_key_id: args.kms_key_id.clone(),
        tags,
        tags_dropped,
        snapshot_device: snapshot.device().map(str::to_owned),
        attach: target.zip(attach_device).map(|(t, d)| (t.id.clone(), d)),
    })
}

/// Whether two device names are the same slot: EC2 and the kernel call
/// `/dev/sdf` also `/dev/xvdf`.
pub fn same_device(a: &str, b: &str) -> bool {
    fn slot(device: &str) -> &str {
        let name = device.strip_prefix("/dev/").unwrap_or(device);
        name.strip_prefix("xvd")
            .or_else(|| name.strip_prefix("sd"))
            .unwrap_or(name)
    }
    a == b || slot(a) == slot(b)
}

/// The device each snapshot goes to on the `--attach-to` instance: `--device`
/// for a single snapshot, else where it was taken (`ebsnap:device`).
/// `single`: whether the user may pass `--device` (with `--snapshot`).
pub fn attach_devices(
    snapshots: &[SourceSnapshot],
    device_flag: Option<&str>,
    single: bool,
) -> Result<Vec<String>, String> {
    snapshots
        .iter()
        .map(|snapshot| match (device_flag, snapshot.device()) {
            (Some(device), _) => Ok(device.to_string()),
            (None, Some(device)) => Ok(device.to_string()),
            (None, None) if single => Err(format!(
                "snapshot {} has no {TAG_DEVICE} tag, so the device to attach at is unknown: \
                 pass --device (e.g. /dev/sdf)",
                snapshot.id
            )),
            (None, None) => Err(format!(
                "snapshot {} has no {TAG_DEVICE} tag, so the device to attach at is unknown: \
                 restore it on its own with --snapshot {} --device (e.g. /dev/sdf)",
                snapshot.id, snapshot.id
            )),
        })
        .collect()
}

/// With `--instance` and `--attach-to`, the source's root volume is left
/// out: a running instance's root cannot be replaced, and a second root
/// file system (same label, same UUID) on another instance can be booted
/// by mistake. The root device is the source instance's, when it still
/// exists, else the target's.
pub fn split_off_root(
    snapshots: Vec<SourceSnapshot>,
    root_device: Option<&str>,
) -> (Vec<SourceSnapshot>, Vec<Skipped>) {
    let Some(root) = root_device else {
        return (snapshots, vec![]);
    };
    let (roots, rest): (Vec<_>, Vec<_>) = snapshots
        .into_iter()
        .partition(|s| s.device().is_some_and(|d| same_device(d, root)));
    let skipped = roots
        .into_iter()
        .map(|s| Skipped {
            reason: format!(
                "the root volume ({root}) is not attached by restore (a running instance's root cannot be \
                 swapped); if you need it, restore it alone: ebsnap restore --snapshot {}",
                s.id
            ),
            device: s.device().map(str::to_owned),
            snapshot_id: s.id,
        })
        .collect();
    (rest, skipped)
}

/// Refuses an attach plan that would use a device already taken on the
/// target, or the same device twice. `via_device_flag`: whether the user can
/// pick another device with `--device`.
pub fn check_devices_free(
    target: &InstanceInfo,
    wanted: &[(String, String)],
    via_device_flag: bool,
) -> Result<(), String> {
    for (i, (snapshot, device)) in wanted.iter().enumerate() {
        if let Some((taken, volume)) = target.devices.iter().find(|(d, _)| same_device(d, device)) {
            let root = if target
                .root_device
                .as_deref()
                .is_some_and(|r| same_device(r, taken))
            {
                " (its root volume)"
            } else {
                ""
            };
            let other = if via_device_flag {
                ", or pass another --device"
            } else {
                ""
            };
            return Err(format!(
                "device {taken} on {} is taken by {volume}{root}, where {snapshot} would go; nothing was created: \
                 stop what uses it, unmount it and detach it (aws ec2 detach-volume --volume-id {volume}){other}",
                target.id
            ));
        }
        if let Some((other, _)) = wanted[..i].iter().find(|(_, d)| same_device(d, device)) {
            return Err(format!(
                "snapshots {other} and {snapshot} both go to device {device}: restore them one at a time with \
                 --snapshot and --device"
            ));
        }
    }
    Ok(())
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------------------
// The report

/// A volume restore made (or, in a dry run, would make).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Restored {
    /// `None` in a dry run.
    pub volume_id: Option<String>,
    pub snapshot_id: String,
    pub source_volume_id: String,
    pub availability_zone: String,
    /// `None`: EC2's default.
    pub volume_type: Option<String>,
    pub size: i32,
    pub iops: Option<i32>,
    pub throughput: Option<i32>,
    /// The instance it is attached (or would be) to.
    pub attached_to: Option<String>,
    /// The device it is attached at, else the one it was snapshotted from.
    pub device: Option<String>,
    /// Dry run: `allowed` when EC2 confirmed the credentials may create it.
    pub permission: Option<String>,
    /// The keys of the snapshot's tags left off the volume (EC2's tag
    /// limits); absent when all fit.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags_dropped: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FailedRestore {
    pub snapshot_id: String,
    /// The volume, when one was made before the failure.
    pub volume_id: Option<String>,
    pub reason: String,
}

/// What a restore did, for people (`to_text`) and programs (`to_json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    pub dry_run: bool,
    pub region: String,
    /// The run restored, with `--instance`.
    pub run_id: Option<String>,
    pub restored: Vec<Restored>,
    pub failed: Vec<FailedRestore>,
    pub skipped: Vec<Skipped>,
}

impl RestoreReport {
    pub fn exit_status(&self) -> ExitStatus {
        if self.failed.is_empty() {
            ExitStatus::Success
        } else {
            ExitStatus::Failure
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a restore report always serializes") + "\n"
    }

    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let run = self
            .run_id
            .as_deref()
            .map(|r| format!(" from backup run {r}"))
            .unwrap_or_default();
        if self.dry_run {
            let _ = writeln!(
                out,
                "Dry run: nothing was changed. In {}{run}, restore would:",
                self.region
            );
        } else if !self.restored.is_empty() {
            let _ = writeln!(out, "Restored in {}{run}:", self.region);
        }
        for r in &self.restored {
            let what = format!(
                "{} volume of {} GiB in {} from {} (of {}{})",
                r.volume_type.as_deref().unwrap_or("default-type"),
                r.size,
                r.availability_zone,
                r.snapshot_id,
                r.source_volume_id,
                r.device
                    .as_deref()
                    .filter(|_| r.attached_to.is_none())
                    .map(|d| format!(" at {d}"))
                    .unwrap_or_default()
            );
            let mut attach = match (&r.attached_to, &r.device) {
                (Some(instance), Some(device)) => format!(", attached to {instance} at {device}"),
                _ => String::new(),
            };
            if !r.tags_dropped.is_empty() {
                let _ = write!(
                    attach,
                    "; {} of the snapshot's tags left out, past EC2's tag limits: {}",
                    r.tags_dropped.len(),
                    r.tags_dropped.join(", ")
                );
            }
            if self.dry_run {
                // As in a backup's dry run: EC2 confirmed the credentials may.
                let permission = match r.permission.as_deref() {
                    Some("allowed") => "permitted",
                    _ => "not checked",
                };
                let attach = attach.replace("attached", "then attach it");
                let _ = writeln!(out, "  create a {what}{attach}: {permission}");
            } else {
                let id = r.volume_id.as_deref().unwrap_or("?");
                let _ = writeln!(out, "  {id}: {what}{attach}");
            }
        }
        if self.dry_run && self.restored.iter().any(|r| r.attached_to.is_some()) {
            let _ = writeln!(
                out,
                "  (attaching is not checked in a dry run: AttachVolume needs a volume that exists)"
            );
        }
        for s in &self.skipped {
            let _ = writeln!(out, "Left out {}: {}", s.snapshot_id, s.reason);
        }
        for f in &self.failed {
            let volume = f
                .volume_id
                .as_deref()
                .map(|v| format!(" ({v})"))
                .unwrap_or_default();
            let _ = writeln!(out, "FAILED {}{volume}: {}", f.snapshot_id, f.reason);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// I/O

/// Restores as `args` says, in the one region of `config`. `Err`: nothing
/// was created (bad input, a snapshot that cannot be restored, a device
/// taken); the report tells what was done otherwise.
pub async fn run(config: &Config, args: &RestoreArgs) -> Result<RestoreReport> {
    let shared = aws::load_shared_config(&config.aws).await;
    let regions = aws::regions(&config.aws, &shared).await?;
    let [region] = regions.as_slice() else {
        bail!("restore works in one region: pass one --region");
    };
    let client = aws::client(&shared, region);
    restore(
        &client,
        region,
        &config.policy.job,
        config.dry_run,
        args,
        Utc::now(),
    )
    .await
}

/// `run` with its client and clock given (tests use a mocked client).
pub async fn restore(
    client: &Client,
    region: &str,
    job: &str,
    dry_run: bool,
    args: &RestoreArgs,
    now: DateTime<Utc>,
) -> Result<RestoreReport> {
    if args.instance.is_some() && args.device.is_some() {
        bail!("--device works with --snapshot: with --instance each volume goes back to the device it was snapshotted from");
    }
    let target = match &args.attach_to {
        Some(id) => Some(target_instance(client, id, region).await?),
        None => None,
    };
    let (run_id, snapshots, skipped) = match (&args.snapshot, &args.instance) {
        (Some(id), _) => {
            let snapshot = one_snapshot(client, id, region).await?;
            check_restorable(&snapshot).map_err(|e| anyhow!(e))?;
            (None, vec![snapshot], vec![])
        }
        (None, Some(instance)) => {
            let all = instance_snapshots(client, job, instance).await?;
            let at = args.at.unwrap_or(now);
            let (run_id, set) = choose_run(&all, job, instance, at).map_err(|e| anyhow!(e))?;
            let (set, skipped) = match &target {
                Some(target) => {
                    let source_root = describe_instance(client, instance)
                        .await?
                        .and_then(|i| i.root_device);
                    let root = source_root.or_else(|| target.root_device.clone());
                    split_off_root(set, root.as_deref())
                }
                None => (set, vec![]),
            };
            if set.is_empty() {
                bail!(
                    "backup run {run_id} of {instance} holds only its root volume, which restore does not attach \
                     to another instance: restore it without --attach-to"
                );
            }
            (Some(run_id), set, skipped)
        }
        (None, None) => bail!("pass --snapshot SNAP or --instance ID"),
    };
    let devices: Vec<Option<String>> = match &target {
        Some(target) => {
            let devices =
                attach_devices(&snapshots, args.device.as_deref(), args.snapshot.is_some())
                    .map_err(|e| anyhow!(e))?;
            let wanted: Vec<(String, String)> = snapshots
                .iter()
                .map(|s| s.id.clone())
                .zip(devices.iter().cloned())
                .collect();
            check_devices_free(target, &wanted, args.snapshot.is_some()).map_err(|e| anyhow!(e))?;
            devices.into_iter().map(Some).collect()
        }
        None => vec![None; snapshots.len()],
    };
    let sources = source_volumes(client, &snapshots).await?;
    let specs = snapshots
        .iter()
        .zip(devices)
        .map(|(snapshot, device)| {
            volume_spec(
                snapshot,
                sources.get(&snapshot.volume_id),
                args,
                region,
                target.as_ref(),
                device,
            )
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(|e| anyhow!(e))?;

    let mut report = RestoreReport {
        dry_run,
        region: region.to_string(),
        run_id,
        restored: vec![],
        failed: vec![],
        skipped,
    };
    if dry_run {
        for spec in &specs {
            match dry_run_verdict(create_request(client, spec, true).send().await) {
                Ok(()) => report
                    .restored
                    .push(restored(spec, None, Some("allowed".into()))),
                Err(reason) => report.failed.push(FailedRestore {
                    snapshot_id: spec.snapshot_id.clone(),
                    volume_id: None,
                    reason,
                }),
            }
        }
        return Ok(report);
    }
    execute(client, &specs, args, &mut report).await;
    Ok(report)
}

fn restored(spec: &VolumeSpec, volume_id: Option<String>, permission: Option<String>) -> Restored {
    Restored {
        volume_id,
        snapshot_id: spec.snapshot_id.clone(),
        source_volume_id: spec.source_volume_id.clone(),
        availability_zone: spec.availability_zone.clone(),
        volume_type: spec.volume_type.clone(),
        size: spec.size_gib,
        iops: spec.iops,
        throughput: spec.throughput,
        attached_to: spec.attach.as_ref().map(|(i, _)| i.clone()),
        device: spec
            .attach
            .as_ref()
            .map(|(_, d)| d.clone())
            .or_else(|| spec.snapshot_device.clone()),
        permission,
        tags_dropped: spec.tags_dropped.clone(),
    }
}

/// Creates, waits, attaches, waits. Failures are recorded per volume; the
/// set is attached only when every volume of it is available, so an
/// instance never gets part of a backup run.
async fn execute(
    client: &Client,
    specs: &[VolumeSpec],
    args: &RestoreArgs,
    report: &mut RestoreReport,
) {
    let timeout = args.wait_timeout.to_std().unwrap_or(Duration::MAX);
    let fail = |report: &mut RestoreReport, spec: &VolumeSpec, volume: Option<&str>, reason| {
        report.failed.push(FailedRestore {
            snapshot_id: spec.snapshot_id.clone(),
            volume_id: volume.map(str::to_owned),
            reason,
        })
    };
    let mut created: Vec<(&VolumeSpec, String)> = vec![];
    for spec in specs {
        match create_request(client, spec, false).send().await {
            Ok(output) => match output.volume_id() {
                Some(id) => {
                    tracing::info!(volume = id, snapshot = %spec.snapshot_id, "created volume");
                    created.push((spec, id.to_string()));
                }
                None => fail(
                    report,
                    spec,
                    None,
                    "EC2 answered CreateVolume without a volume id".into(),
                ),
            },
            Err(err) => fail(
                report,
                spec,
                None,
                format!("creating a volume failed: {}", error_text(&err)),
            ),
        }
    }
    let ids: Vec<String> = created.iter().map(|(_, id)| id.clone()).collect();
    let available = wait_for(client, &ids, timeout, volume_available).await;
    let mut ready: Vec<(&VolumeSpec, String)> = vec![];
    for (spec, id) in created {
        match available.get(&id) {
            Some(Ok(())) => ready.push((spec, id)),
            Some(Err(reason)) => fail(report, spec, Some(&id), reason.clone()),
            None => fail(report, spec, Some(&id), "lost track of the volume".into()),
        }
    }
    let attaching = ready.iter().any(|(spec, _)| spec.attach.is_some());
    if attaching && !report.failed.is_empty() {
        for (spec, id) in ready {
            let mut entry = restored(spec, Some(id), None);
            entry.attached_to = None;
            report.restored.push(entry);
        }
        let note = "not attached: another volume of the set failed, and an incomplete set is not attached; \
                    attach the volumes by hand (aws ec2 attach-volume) once you have them all";
        for f in &mut report.failed {
            f.reason = format!("{}; the other volumes were {note}", f.reason);
        }
        return;
    }
    let mut attached: Vec<(&VolumeSpec, String)> = vec![];
    for (spec, id) in ready {
        let Some((instance, device)) = &spec.attach else {
            report.restored.push(restored(spec, Some(id), None));
            continue;
        };
        match client
            .attach_volume()
            .volume_id(&id)
            .instance_id(instance)
            .device(device)
            .send()
            .await
        {
            Ok(_) => attached.push((spec, id)),
            Err(err) => {
                let mut entry = restored(spec, Some(id.clone()), None);
                entry.attached_to = None;
                report.restored.push(entry);
                fail(
                    report,
                    spec,
                    Some(&id),
                    format!(
                        "{id} was made, but attaching it to {instance} at {device} failed: {}: attach it by hand",
                        error_text(&err)
                    ),
                );
            }
        }
    }
    let ids: Vec<String> = attached.iter().map(|(_, id)| id.clone()).collect();
    let done = wait_for(client, &ids, timeout, volume_attached).await;
    for (spec, id) in attached {
        report.restored.push(restored(spec, Some(id.clone()), None));
        if let Some(Err(reason)) = done.get(&id) {
            fail(report, spec, Some(&id), reason.clone());
        }
    }
}

fn create_request(
    client: &Client,
    spec: &VolumeSpec,
    dry_run: bool,
) -> aws_sdk_ec2::operation::create_volume::builders::CreateVolumeFluentBuilder {
    let tags = spec
        .tags
        .iter()
        .map(|(key, value)| Tag::builder().key(key).value(value).build());
    // CreateVolume carries a client token (the SDK makes one per call and
    // keeps it across its retries), so a retry after a lost answer does not
    // make a second volume.
    client
        .create_volume()
        .snapshot_id(&spec.snapshot_id)
        .availability_zone(&spec.availability_zone)
        .size(spec.size_gib)
        .set_volume_type(spec.volume_type.as_deref().map(VolumeType::from))
        .set_iops(spec.iops)
        .set_throughput(spec.throughput)
        .set_encrypted(spec.encrypted)
        .set_kms_key_id(spec.kms_key_id.clone())
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Volume)
                .set_tags(Some(tags.collect()))
                .build(),
        )
        .dry_run(dry_run)
}

/// Whether a volume is ready to attach: `Err` when it never will be.
fn volume_available(volume: &Volume) -> Result<bool, String> {
    match volume.state() {
        Some(VolumeState::Available | VolumeState::InUse) => Ok(true),
        Some(VolumeState::Creating) | None => Ok(false),
        Some(state) => Err(format!(
            "the new volume went to state {}: look at it with aws ec2 describe-volumes, then delete it and try again",
            state.as_str()
        )),
    }
}

/// Whether a volume's attachment is complete.
fn volume_attached(volume: &Volume) -> Result<bool, String> {
    let state = volume.attachments().first().and_then(|a| a.state());
    match state {
        Some(VolumeAttachmentState::Attached) => Ok(true),
        Some(VolumeAttachmentState::Attaching) => Ok(false),
        None if volume.state() == Some(&VolumeState::Available) => Ok(false),
        other => Err(format!(
            "the attachment went to {}: look at it with aws ec2 describe-volumes",
            other.map(|s| s.as_str()).unwrap_or("nothing")
        )),
    }
}

/// Looks at `ids` until each is done, failed, or `timeout` has passed.
/// Errors of DescribeVolumes itself are retried: a volume just made may not
/// be visible yet.
async fn wait_for(
    client: &Client,
    ids: &[String],
    timeout: Duration,
    done: fn(&Volume) -> Result<bool, String>,
) -> BTreeMap<String, Result<(), String>> {
    let deadline = tokio::time::Instant::now() + timeout.min(Duration::from_secs(365 * 86_400));
    let mut outcomes = BTreeMap::new();
    let mut pause = FIRST_POLL;
    let mut last_error = None;
    loop {
        let waiting: Vec<String> = ids
            .iter()
            .filter(|id| !outcomes.contains_key(*id))
            .cloned()
            .collect();
        if waiting.is_empty() {
            return outcomes;
        }
        // By a filter, not VolumeIds: one volume EC2 does not show (not
        // yet, or no longer) would fail a describe by ids whole.
        match client
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("volume-id")
                    .set_values(Some(waiting.clone()))
                    .build(),
            )
            .send()
            .await
        {
            Ok(output) => {
                for volume in output.volumes() {
                    let Some(id) = volume.volume_id() else {
                        continue;
                    };
                    match done(volume) {
                        Ok(true) => {
                            outcomes.insert(id.to_string(), Ok(()));
                        }
                        Ok(false) => {}
                        Err(reason) => {
                            outcomes.insert(id.to_string(), Err(reason));
                        }
                    }
                }
            }
            Err(err) => last_error = Some(error_text(&err)),
        }
        if ids.iter().all(|id| outcomes.contains_key(id)) {
            return outcomes;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            let seen = last_error
                .map(|e| format!(" (last look: {e})"))
                .unwrap_or_default();
            for id in ids {
                outcomes.entry(id.clone()).or_insert_with(|| {
                    Err(format!(
                        "not ready within --wait-timeout{seen}: it may still get there; look with \
                         aws ec2 describe-volumes --volume-ids {id}"
                    ))
                });
            }
            return outcomes;
        }
        tracing::info!(waiting = waiting.len(), "waiting for the new volumes");
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

fn to_source_snapshot(snapshot: &Snapshot) -> Option<SourceSnapshot> {
    let start = snapshot.start_time()?;
    Some(SourceSnapshot {
        id: snapshot.snapshot_id()?.to_owned(),
        volume_id: snapshot.volume_id().unwrap_or_default().to_owned(),
        state: SnapshotState::parse(snapshot.state().map(|s| s.as_str()).unwrap_or("unknown")),
        progress: snapshot.progress().map(str::to_owned),
        start_time: DateTime::<Utc>::from_timestamp(start.secs(), start.subsec_nanos())?,
        size_gib: snapshot.volume_size().unwrap_or(0),
        encrypted: snapshot.encrypted().unwrap_or(false),
        archived: snapshot.storage_tier() == Some(&aws_sdk_ec2::types::StorageTier::Archive),
        tags: snapshot
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
            .collect(),
    })
}

/// One snapshot of this account, by id.
async fn one_snapshot(client: &Client, id: &str, region: &str) -> Result<SourceSnapshot> {
    let missing = || {
        anyhow!(
            "snapshot {id} does not exist in {region} (or is not this account's): check the id and --region \
             (`ebsnap list` shows the job's snapshots)"
        )
    };
    let output = match client
        .describe_snapshots()
        .owner_ids("self")
        .snapshot_ids(id)
        .send()
        .await
    {
        Ok(output) => output,
        Err(err)
            if matches!(
                err.code(),
                Some("InvalidSnapshot.NotFound" | "InvalidSnapshotID.Malformed")
            ) =>
        {
            return Err(missing())
        }
        Err(err) => bail!("reading snapshot {id}: {}", error_text(&err)),
    };
    output
        .snapshots()
        .iter()
        .filter(|s| s.snapshot_id() == Some(id))
        .find_map(to_source_snapshot)
        .ok_or_else(missing)
}

/// The job's snapshots of one instance.
async fn instance_snapshots(
    client: &Client,
    job: &str,
    instance: &str,
) -> Result<Vec<SourceSnapshot>> {
    let filter = |name: String, value: &str| Filter::builder().name(name).values(value).build();
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .filters(filter(format!("tag:{TAG_JOB}"), job))
        .filters(filter(format!("tag:{TAG_INSTANCE_ID}"), instance))
        .max_results(SNAPSHOT_PAGE_SIZE)
        .into_paginator()
        .items()
        .send();
    let mut snapshots = Vec::new();
    while let Some(snapshot) = pages.next().await {
        let snapshot = snapshot.map_err(|err| {
            anyhow!(
                "listing the snapshots of {instance} in job {job}: {}",
                error_text(&err)
            )
        })?;
        snapshots.extend(to_source_snapshot(&snapshot));
    }
    Ok(snapshots)
}

/// The source volumes that still exist, by id. Filtered rather than asked
/// by id, so a deleted volume is simply absent instead of an error.
async fn source_volumes(
    client: &Client,
    snapshots: &[SourceSnapshot],
) -> Result<BTreeMap<String, SourceVolume>> {
    let mut ids: Vec<String> = snapshots.iter().map(|s| s.volume_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let mut pages = client
        .describe_volumes()
        .filters(
            Filter::builder()
                .name("volume-id")
                .set_values(Some(ids))
                .build(),
        )
        .into_paginator()
        .items()
        .send();
    let mut volumes = BTreeMap::new();
    while let Some(volume) = pages.next().await {
        let volume = volume.map_err(|err| {
            anyhow!(
                "reading the snapshots' source volumes: {}",
                error_text(&err)
            )
        })?;
        let (Some(id), Some(zone)) = (volume.volume_id(), volume.availability_zone()) else {
            continue;
        };
        volumes.insert(
            id.to_string(),
            SourceVolume {
                id: id.to_string(),
                availability_zone: zone.to_string(),
                volume_type: volume.volume_type().map(|t| t.as_str().to_string()),
                iops: volume.iops(),
                throughput: volume.throughput(),
                encrypted: volume.encrypted().unwrap_or(false),
            },
        );
    }
    Ok(volumes)
}

/// An instance by id; `None` when it does not exist (any more).
async fn describe_instance(client: &Client, id: &str) -> Result<Option<InstanceInfo>> {
    let output = match client.describe_instances().instance_ids(id).send().await {
        Ok(output) => output,
        Err(err)
            if matches!(
                err.code(),
                Some("InvalidInstanceID.NotFound" | "InvalidInstanceID.Malformed")
            ) =>
        {
            return Ok(None)
        }
        Err(err) => bail!("reading instance {id}: {}", error_text(&err)),
    };
    let Some(instance) = output
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.instance_id() == Some(id))
    else {
        return Ok(None);
    };
    let devices = instance
        .block_device_mappings()
        .iter()
        .filter_map(|m| {
            let ebs = m.ebs()?;
            if ebs.status() == Some(&AttachmentStatus::Detached) {
                return None;
            }
            Some((
                m.device_name()?.to_string(),
                ebs.volume_id().unwrap_or("a volume").to_string(),
            ))
        })
        .collect();
    Ok(Some(InstanceInfo {
        id: id.to_string(),
        state: instance
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        availability_zone: instance
            .placement()
            .and_then(|p| p.availability_zone())
            .map(str::to_owned),
        root_device: instance.root_device_name().map(str::to_owned),
        devices,
    }))
}

/// The `--attach-to` instance, which must exist and be running or stopped.
async fn target_instance(client: &Client, id: &str, region: &str) -> Result<InstanceInfo> {
    let Some(target) = describe_instance(client, id).await? else {
        bail!("instance {id} (--attach-to) does not exist in {region}: check the id and --region");
    };
    if matches!(
        target.state.as_str(),
        "terminated" | "shutting-down" | "stopping"
    ) {
        bail!(
            "instance {id} (--attach-to) is {}: attach to a running or stopped instance",
            target.state
        );
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeDelta, TimeZone};

    /// The values of a describe's `volume-id` filter.
    fn filtered_ids(filters: &[Filter]) -> Vec<&str> {
        filters
            .iter()
            .filter(|f| f.name() == Some("volume-id"))
            .flat_map(|f| f.values().iter().map(String::as_str))
            .collect()
    }

    /// A describe of the volumes restore made (`vol-new*` here), not of the
    /// snapshots' source volumes.
    fn is_poll_of_new_volumes(filters: &[Filter]) -> bool {
        filtered_ids(filters)
            .iter()
            .any(|id| id.starts_with("vol-new"))
    }

    fn t(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, hour, 0, 0).unwrap()
    }

    fn snap(
        id: &str,
        volume: &str,
        device: &str,
        run: &str,
        start: DateTime<Utc>,
    ) -> SourceSnapshot {
        SourceSnapshot {
            id: id.into(),
            volume_id: volume.into(),
            state: SnapshotState::Completed,
            progress: Some("100%".into()),
            start_time: start,
            size_gib: 8,
            encrypted: false,
            archived: false,
            tags: vec![
                (TAG_JOB.into(), "default".into()),
                (TAG_INSTANCE_ID.into(), "i-1".into()),
                (TAG_DEVICE.into(), device.into()),
                (TAG_RUN_ID.into(), run.into()),
                ("Name".into(), format!("db {device}")),
            ],
        }
    }

    fn args() -> RestoreArgs {
        RestoreArgs {
            snapshot: None,
            instance: Some("i-1".into()),
            at: None,
            availability_zone: None,
            volume_type: None,
            iops: None,
            throughput: None,
            size: None,
            kms_key_id: None,
            attach_to: None,
            device: None,
            wait_timeout: TimeDelta::minutes(30),
        }
    }

    /// Two nightly runs of i-1 (root and data), 01:00 and 03:00.
    fn two_runs() -> Vec<SourceSnapshot> {
        vec![
            snap("snap-a-root", "vol-root", "/dev/xvda", "run-a", t(1)),
            snap("snap-a-data", "vol-data", "/dev/sdf", "run-a", t(1)),
            snap("snap-b-root", "vol-root", "/dev/xvda", "run-b", t(3)),
            snap("snap-b-data", "vol-data", "/dev/sdf", "run-b", t(3)),
        ]
    }

    fn ids(set: &[SourceSnapshot]) -> Vec<&str> {
        set.iter().map(|s| s.id.as_str()).collect()
    }

    #[test]
    fn the_newest_run_at_or_before_the_time_is_chosen_whole() {
        let all = two_runs();
        let (run, set) = choose_run(&all, "default", "i-1", t(2)).unwrap();
        assert_eq!(run, "run-a");
        assert_eq!(
            ids(&set),
            ["snap-a-data", "snap-a-root"],
            "sorted by device"
        );
        let (run, _) = choose_run(&all, "default", "i-1", t(5)).unwrap();
        assert_eq!(run, "run-b");
        let (run, _) = choose_run(&all, "default", "i-1", t(3)).unwrap();
        assert_eq!(
            run, "run-b",
            "at or before: a run started exactly then counts"
        );
    }

    #[test]
    fn a_run_with_a_pending_or_failed_snapshot_is_passed_over_never_mixed() {
        for state in [SnapshotState::Pending, SnapshotState::Error] {
            let mut all = two_runs();
            all[3].state = state.clone();
            let (run, set) = choose_run(&all, "default", "i-1", t(5)).unwrap();
            assert_eq!(run, "run-a", "{state:?}");
            assert_eq!(ids(&set), ["snap-a-data", "snap-a-root"]);
        }
    }

    #[test]
    fn a_run_with_an_archived_snapshot_is_passed_over_and_named() {
        let mut all = two_runs();
        all[3].archived = true;
        let (run, set) = choose_run(&all, "default", "i-1", t(5)).unwrap();
        assert_eq!(run, "run-a");
        assert_eq!(ids(&set), ["snap-a-data", "snap-a-root"]);
        // With no other run to fall back on, the error names the archived one.
        all[1].archived = true;
        let err = choose_run(&all, "default", "i-1", t(5)).unwrap_err();
        assert!(err.contains("is in the archive tier"), "{err}");
    }

    #[test]
    fn an_archived_snapshot_is_refused_with_how_to_bring_it_back() {
        let mut s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        s.archived = true;
        let err = check_restorable(&s).unwrap_err();
        assert!(
            err.starts_with("snapshot snap-1 is in the archive tier: bring it back first with"),
            "{err}"
        );
        assert!(
            err.contains("aws ec2 restore-snapshot-tier --snapshot-id snap-1"),
            "{err}"
        );
    }

    #[test]
    fn a_run_that_straddles_the_time_is_passed_over() {
        let mut all = two_runs();
        all[3].start_time = t(4);
        let (run, _) = choose_run(&all, "default", "i-1", t(3)).unwrap();
        assert_eq!(run, "run-a");
    }

    #[test]
    fn a_time_before_the_first_backup_says_when_that_was() {
        let err = choose_run(&two_runs(), "default", "i-1", t(0)).unwrap_err();
        assert_eq!(
            err,
            "the first backup of i-1 in job default started at 2026-11-24T01:00:00Z, after \
             2026-11-24T00:00:00Z: pass --at 2026-11-24T01:00:00Z or later"
        );
    }

    #[test]
    fn the_suggested_time_is_one_at_which_the_first_run_is_whole() {
        // run-a's snapshots started apart: --at its first start would still
        // be too early for the run as a whole. Real EC2 start times carry
        // milliseconds: the suggestion rounds up, or it would fall 250 ms
        // before the last start.
        for (last_start_ms, suggested) in [
            (1_000, "2026-11-24T01:00:01Z"),
            (1_250, "2026-11-24T01:00:02Z"),
        ] {
            let mut all = two_runs();
            all[1].start_time = t(1) + chrono::Duration::milliseconds(last_start_ms);
            let err = choose_run(&all, "default", "i-1", t(0)).unwrap_err();
            assert!(
                err.ends_with(&format!("pass --at {suggested} or later")),
                "{err}"
            );
            let at = DateTime::parse_from_rfc3339(suggested).unwrap().to_utc();
            let (run, _) =
                choose_run(&all, "default", "i-1", at).expect("the suggested time works");
            assert_eq!(run, "run-a");
        }
    }

    #[test]
    fn no_complete_run_names_the_snapshot_in_the_way() {
        let mut all = two_runs();
        all[0].state = SnapshotState::Pending;
        let err = choose_run(&all, "default", "i-1", t(2)).unwrap_err();
        assert!(err.starts_with("no complete backup run of i-1"), "{err}");
        assert!(err.contains("(snap-a-root is pending)"), "{err}");
    }

    #[test]
    fn other_instances_jobs_and_unmarked_snapshots_are_never_chosen() {
        let mut all = two_runs();
        let mut other_job = snap("snap-x", "vol-data", "/dev/sdf", "run-x", t(4));
        other_job.tags[0].1 = "weekly".into();
        let mut other_instance = snap("snap-y", "vol-data", "/dev/sdf", "run-y", t(4));
        other_instance.tags[1].1 = "i-2".into();
        all.extend([other_job, other_instance]);
        let (run, _) = choose_run(&all, "default", "i-1", t(5)).unwrap();
        assert_eq!(run, "run-b");
        let err = choose_run(&all, "default", "i-9", t(5)).unwrap_err();
        assert!(
            err.starts_with("no snapshots of instance i-9 in job default"),
            "{err}"
        );
    }

    #[test]
    fn one_snapshot_per_volume_within_a_run() {
        let mut all = two_runs();
        all.push(snap(
            "snap-b-data2",
            "vol-data",
            "/dev/sdf",
            "run-b",
            t(3) + TimeDelta::seconds(5),
        ));
        let (_, set) = choose_run(&all, "default", "i-1", t(5)).unwrap();
        assert_eq!(ids(&set), ["snap-b-data2", "snap-b-root"]);
    }

    #[test]
    fn only_a_completed_snapshot_is_restorable() {
        let mut s = snap("snap-1", "vol-1", "/dev/sdf", "r", t(1));
        assert!(check_restorable(&s).is_ok());
        s.state = SnapshotState::Pending;
        s.progress = Some("42%".into());
        let err = check_restorable(&s).unwrap_err();
        assert!(
            err.starts_with("snapshot snap-1 is still pending (42%): wait"),
            "{err}"
        );
        s.state = SnapshotState::Error;
        assert!(check_restorable(&s).unwrap_err().contains("in state error"));
    }

    fn gp3_source() -> SourceVolume {
        SourceVolume {
            id: "vol-data".into(),
            availability_zone: "us-east-1b".into(),
            volume_type: Some("gp3".into()),
            iops: Some(6000),
            throughput: Some(500),
            encrypted: false,
        }
    }

    fn target(devices: &[(&str, &str)]) -> InstanceInfo {
        InstanceInfo {
            id: "i-staging".into(),
            state: "running".into(),
            availability_zone: Some("us-east-1c".into()),
            root_device: Some("/dev/xvda".into()),
            devices: devices
                .iter()
                .map(|(d, v)| (d.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_new_volume_is_like_the_source_and_tagged_with_its_snapshot() {
        let mut s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        s.tags
            .push(("aws:backup:source-resource".into(), "x".into()));
        s.tags.push((TAG_RESTORED_FROM.into(), "snap-older".into()));
        let spec = volume_spec(&s, Some(&gp3_source()), &args(), "us-east-1", None, None).unwrap();
        assert_eq!(spec.availability_zone, "us-east-1b");
        assert_eq!(spec.volume_type.as_deref(), Some("gp3"));
        assert_eq!(
            (spec.size_gib, spec.iops, spec.throughput),
            (8, Some(6000), Some(500))
        );
        assert_eq!((spec.encrypted, spec.kms_key_id.as_deref()), (None, None));
        assert_eq!(spec.attach, None);
        let keys: Vec<&str> = spec.tags.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                TAG_JOB,
                TAG_INSTANCE_ID,
                TAG_DEVICE,
                TAG_RUN_ID,
                "Name",
                TAG_RESTORED_FROM
            ]
        );
        assert_eq!(spec.tags.last().unwrap().1, "snap-1");
    }

    #[test]
    fn a_snapshot_with_fifty_tags_gives_a_volume_within_ec2s_limit_keeping_ebsnaps_own() {
        let mut s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        let own = s.tags.len();
        // The snapshot holds EC2's most: 50 tags, copied ones after ebsnap's.
        s.tags
            .extend((own..50).map(|i| (format!("team-{i:02}"), "x".to_owned())));
        let spec = volume_spec(&s, Some(&gp3_source()), &args(), "us-east-1", None, None).unwrap();
        assert_eq!(spec.tags.len(), 50);
        assert_eq!(
            spec.tags[own],
            (TAG_RESTORED_FROM.to_owned(), "snap-1".to_owned())
        );
        assert!(s.tags[..own].iter().all(|t| spec.tags.contains(t)));
        assert_eq!(spec.tags_dropped, ["team-49"]);
        let restored = restored(&spec, Some("vol-new".into()), None);
        assert_eq!(restored.tags_dropped, ["team-49"]);
    }

    #[test]
    fn flags_override_the_source_and_performance_follows_the_type() {
        let s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        let mut a = args();
        a.volume_type = Some("gp2".into());
        a.size = Some(20);
        a.availability_zone = Some("us-east-1d".into());
        let spec = volume_spec(&s, Some(&gp3_source()), &a, "us-east-1", None, None).unwrap();
        assert_eq!(spec.availability_zone, "us-east-1d");
        assert_eq!(
            (spec.size_gib, spec.iops, spec.throughput),
            (20, None, None)
        );
        a.volume_type = Some("io2".into());
        a.iops = Some(10_000);
        let spec = volume_spec(&s, Some(&gp3_source()), &a, "us-east-1", None, None).unwrap();
        assert_eq!((spec.iops, spec.throughput), (Some(10_000), None));
        // A gp2 source reports a baseline IOPS that must not be sent back.
        let gp2 = SourceVolume {
            volume_type: Some("gp2".into()),
            iops: Some(100),
            throughput: None,
            ..gp3_source()
        };
        let spec = volume_spec(&s, Some(&gp2), &args(), "us-east-1", None, None).unwrap();
        assert_eq!(
            (spec.volume_type.as_deref(), spec.iops),
            (Some("gp2"), None)
        );
    }

    #[test]
    fn encryption_follows_the_source_or_the_kms_key() {
        let mut s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        let mut a = args();
        a.kms_key_id = Some("alias/restore".into());
        let spec = volume_spec(&s, Some(&gp3_source()), &a, "us-east-1", None, None).unwrap();
        assert_eq!(
            (spec.encrypted, spec.kms_key_id.as_deref()),
            (Some(true), Some("alias/restore"))
        );
        s.encrypted = true;
        let spec = volume_spec(
            &s,
            None,
            &{
                let mut a = args();
                a.availability_zone = Some("us-east-1a".into());
                a
            },
            "us-east-1",
            None,
            None,
        )
        .unwrap();
        assert_eq!((spec.encrypted, spec.kms_key_id), (Some(true), None));
    }

    #[test]
    fn the_zone_must_be_known_and_in_the_region() {
        let s = snap("snap-1", "vol-gone", "/dev/sdf", "run-1", t(1));
        let err = volume_spec(&s, None, &args(), "us-east-1", None, None).unwrap_err();
        assert_eq!(
            err,
            "the volume snapshot snap-1 was taken of (vol-gone) no longer exists, so its zone is unknown: \
             pass --availability-zone (e.g. us-east-1a)"
        );
        for zone in ["eu-west-1a", "us-east-2a", "us-east-1"] {
            let mut a = args();
            a.availability_zone = Some(zone.into());
            let err = volume_spec(&s, None, &a, "us-east-1", None, None).unwrap_err();
            assert!(
                err.starts_with(&format!(
                    "availability zone {zone} is not in region us-east-1"
                )),
                "{err}"
            );
        }
        assert!(zone_in_region("us-west-2-lax-1a", "us-west-2"));
        assert!(!zone_in_region("us-east-11a", "us-east-1"));
    }

    #[test]
    fn the_size_may_not_be_smaller_than_the_snapshot() {
        let s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        let mut a = args();
        a.size = Some(4);
        let err = volume_spec(&s, Some(&gp3_source()), &a, "us-east-1", None, None).unwrap_err();
        assert_eq!(
            err,
            "--size 4 is smaller than snapshot snap-1 (8 GiB): pass --size 8 or more, or leave it out"
        );
        a.size = Some(8);
        assert!(volume_spec(&s, Some(&gp3_source()), &a, "us-east-1", None, None).is_ok());
    }

    #[test]
    fn attached_volumes_go_to_the_targets_zone() {
        let s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        let target = target(&[]);
        let spec = volume_spec(
            &s,
            Some(&gp3_source()),
            &args(),
            "us-east-1",
            Some(&target),
            Some("/dev/sdf".into()),
        )
        .unwrap();
        assert_eq!(spec.availability_zone, "us-east-1c");
        assert_eq!(spec.attach, Some(("i-staging".into(), "/dev/sdf".into())));
        let mut a = args();
        a.availability_zone = Some("us-east-1a".into());
        let err = volume_spec(&s, None, &a, "us-east-1", Some(&target), None).unwrap_err();
        assert!(err.contains("i-staging is in us-east-1c"), "{err}");
    }

    #[test]
    fn devices_come_from_the_flag_or_the_snapshot() {
        let s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        assert_eq!(
            attach_devices(std::slice::from_ref(&s), None, true).unwrap(),
            ["/dev/sdf"]
        );
        assert_eq!(
            attach_devices(std::slice::from_ref(&s), Some("/dev/sdz"), true).unwrap(),
            ["/dev/sdz"]
        );
        let mut bare = s;
        bare.tags.clear();
        let err = attach_devices(&[bare.clone()], None, true).unwrap_err();
        assert!(err.ends_with("pass --device (e.g. /dev/sdf)"), "{err}");
        let err = attach_devices(&[bare], None, false).unwrap_err();
        assert!(
            err.ends_with("restore it on its own with --snapshot snap-1 --device (e.g. /dev/sdf)"),
            "{err}"
        );
    }

    #[test]
    fn a_taken_device_is_refused_naming_the_volume_there() {
        let target = target(&[("/dev/xvda", "vol-root"), ("/dev/xvdf", "vol-busy")]);
        let wanted = |d: &str| vec![("snap-1".to_string(), d.to_string())];
        let err = check_devices_free(&target, &wanted("/dev/sdf"), false).unwrap_err();
        assert_eq!(
            err,
            "device /dev/xvdf on i-staging is taken by vol-busy, where snap-1 would go; nothing was created: \
             stop what uses it, unmount it and detach it (aws ec2 detach-volume --volume-id vol-busy)"
        );
        let err = check_devices_free(&target, &wanted("/dev/xvda"), true).unwrap_err();
        assert!(err.contains("vol-root (its root volume)"), "{err}");
        assert!(err.ends_with(", or pass another --device"), "{err}");
        assert!(check_devices_free(&target, &wanted("/dev/sdg"), false).is_ok());
        let twice = vec![
            ("snap-1".to_string(), "/dev/sdg".to_string()),
            ("snap-2".to_string(), "/dev/xvdg".to_string()),
        ];
        assert!(check_devices_free(&target, &twice, false)
            .unwrap_err()
            .starts_with("snapshots snap-1 and snap-2 both go to device"));
    }

    #[test]
    fn the_root_volume_is_left_out_when_attaching_a_whole_run() {
        let (_, set) = choose_run(&two_runs(), "default", "i-1", t(5)).unwrap();
        let (rest, skipped) = split_off_root(set.clone(), Some("/dev/xvda"));
        assert_eq!(ids(&rest), ["snap-b-data"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].snapshot_id, "snap-b-root");
        assert!(skipped[0]
            .reason
            .contains("ebsnap restore --snapshot snap-b-root"));
        assert_eq!(split_off_root(set, None).0.len(), 2);
    }

    #[test]
    fn the_report_lists_volumes_and_failures_and_tells_the_exit_status() {
        let mut report = RestoreReport {
            dry_run: false,
            region: "us-east-1".into(),
            run_id: Some("run-b".into()),
            restored: vec![Restored {
                volume_id: Some("vol-new".into()),
                snapshot_id: "snap-1".into(),
                source_volume_id: "vol-data".into(),
                availability_zone: "us-east-1a".into(),
                volume_type: Some("gp3".into()),
                size: 8,
                iops: None,
                throughput: None,
                attached_to: Some("i-staging".into()),
                device: Some("/dev/sdf".into()),
                permission: None,
                tags_dropped: vec![],
            }],
            failed: vec![],
            skipped: vec![],
        };
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert_eq!(
            report.to_text(),
            "Restored in us-east-1 from backup run run-b:\n  vol-new: gp3 volume of 8 GiB in us-east-1a \
             from snap-1 (of vol-data), attached to i-staging at /dev/sdf\n"
        );
        report.failed.push(FailedRestore {
            snapshot_id: "snap-2".into(),
            volume_id: None,
            reason: "creating a volume failed: X".into(),
        });
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(json["dry_run"], false);
        assert_eq!(json["restored"][0]["volume_id"], "vol-new");
        assert_eq!(json["restored"][0]["attached_to"], "i-staging");
        assert_eq!(json["failed"][0]["snapshot_id"], "snap-2");
        assert_eq!(json["failed"][0]["reason"], "creating a volume failed: X");
    }

    // -- the SDK edge -------------------------------------------------------

    use aws_sdk_ec2::operation::create_volume::{CreateVolumeError, CreateVolumeOutput};
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsError, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
    use aws_sdk_ec2::primitives::DateTime as AwsDateTime;
    use aws_sdk_ec2::types::SnapshotState as Ec2State;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn ec2_snapshot(state: Ec2State) -> Snapshot {
        Snapshot::builder()
            .snapshot_id("snap-1")
            .volume_id("vol-data")
            .state(state)
            .progress("42%")
            .volume_size(8)
            .start_time(AwsDateTime::from_secs(1_790_000_000))
            .tags(Tag::builder().key(TAG_DEVICE).value("/dev/sdf").build())
            .tags(Tag::builder().key("aws:x").value("y").build())
            .build()
    }

    fn snapshot_args() -> RestoreArgs {
        RestoreArgs {
            snapshot: Some("snap-1".into()),
            instance: None,
            ..args()
        }
    }

    #[tokio::test]
    async fn a_pending_snapshot_is_refused_before_anything_is_created() {
        let describe = mock!(Client::describe_snapshots)
            .match_requests(|req| req.snapshot_ids() == ["snap-1"] && req.owner_ids() == ["self"])
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot(Ec2State::Pending))
                    .build()
            });
        let create =
            mock!(Client::create_volume).then_output(|| CreateVolumeOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&describe, &create]);

        let err = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &snapshot_args(),
            t(5),
        )
        .await
        .unwrap_err()
        .to_string();

        assert!(
            err.starts_with("snapshot snap-1 is still pending (42%)"),
            "{err}"
        );
        assert_eq!(create.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_missing_snapshot_says_so_and_points_to_list() {
        let describe = mock!(Client::describe_snapshots).then_error(|| {
            DescribeSnapshotsError::generic(crate::aws::testing::ec2_error(
                "InvalidSnapshot.NotFound",
                "The snapshot 'snap-1' does not exist.",
            ))
        });
        let client = mock_client!(aws_sdk_ec2, [&describe]);
        let err = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &snapshot_args(),
            t(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "snapshot snap-1 does not exist in us-east-1 (or is not this account's): check the id and --region \
             (`ebsnap list` shows the job's snapshots)"
        );
    }

    #[tokio::test]
    async fn a_restore_creates_waits_and_reports_the_new_volume() {
        let describe = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(ec2_snapshot(Ec2State::Completed))
                .build()
        });
        let sources = mock!(Client::describe_volumes)
            .match_requests(|req| !is_poll_of_new_volumes(req.filters()))
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-data")
                            .availability_zone("us-east-1b")
                            .volume_type(VolumeType::Gp3)
                            .iops(3000)
                            .throughput(125)
                            .build(),
                    )
                    .build()
            });
        let create = mock!(Client::create_volume)
            .match_requests(|req| {
                let tags: Vec<_> = req
                    .tag_specifications()
                    .iter()
                    .flat_map(|s| s.tags())
                    .map(|t| (t.key().unwrap_or(""), t.value().unwrap_or("")))
                    .collect();
                req.snapshot_id() == Some("snap-1")
                    && req.availability_zone() == Some("us-east-1b")
                    && req.volume_type() == Some(&VolumeType::Gp3)
                    && req.iops() == Some(3000)
                    && req.size() == Some(8)
                    && req.dry_run() == Some(false)
                    && tags == [(TAG_DEVICE, "/dev/sdf"), (TAG_RESTORED_FROM, "snap-1")]
            })
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new").build());
        // Still creating at the first look, then available.
        let poll = mock!(Client::describe_volumes)
            .match_requests(|req| filtered_ids(req.filters()) == ["vol-new"])
            .sequence()
            .output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-new")
                            .state(VolumeState::Creating)
                            .build(),
                    )
                    .build()
            })
            .output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-new")
                            .state(VolumeState::Available)
                            .build(),
                    )
                    .build()
            })
            .build();
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &sources, &create, &poll]
        );

        let report = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &snapshot_args(),
            t(5),
        )
        .await
        .unwrap();

        assert_eq!(report.failed, []);
        assert_eq!(report.restored.len(), 1);
        assert_eq!(report.restored[0].volume_id.as_deref(), Some("vol-new"));
        assert_eq!(report.restored[0].device.as_deref(), Some("/dev/sdf"));
        assert_eq!((create.num_calls(), poll.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn a_dry_run_checks_the_create_and_creates_nothing() {
        let describe = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(ec2_snapshot(Ec2State::Completed))
                .build()
        });
        let sources = mock!(Client::describe_volumes)
            .then_output(|| DescribeVolumesOutput::builder().build());
        let target = mock!(Client::describe_instances).then_output(|| {
            DescribeInstancesOutput::builder()
                .reservations(
                    aws_sdk_ec2::types::Reservation::builder()
                        .instances(
                            aws_sdk_ec2::types::Instance::builder()
                                .instance_id("i-staging")
                                .placement(
                                    aws_sdk_ec2::types::Placement::builder()
                                        .availability_zone("us-east-1c")
                                        .build(),
                                )
                                .build(),
                        )
                        .build(),
                )
                .build()
        });
        let create = mock!(Client::create_volume)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(|| {
                CreateVolumeError::generic(crate::aws::testing::ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded",
                ))
            });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&describe, &sources, &target, &create]
        );
        let mut a = snapshot_args();
        a.attach_to = Some("i-staging".into());

        let report = restore(&client, "us-east-1", "default", true, &a, t(5))
            .await
            .unwrap();

        assert_eq!(report.exit_status(), ExitStatus::Success);
        let r = &report.restored[0];
        assert_eq!(r.volume_id, None);
        assert_eq!(r.permission.as_deref(), Some("allowed"));
        assert_eq!(r.availability_zone, "us-east-1c");
        assert_eq!(
            (r.attached_to.as_deref(), r.device.as_deref()),
            (Some("i-staging"), Some("/dev/sdf"))
        );
        assert_eq!(create.num_calls(), 1);
        let text = report.to_text();
        assert!(text.starts_with("Dry run: nothing was changed."), "{text}");
        assert!(
            text.contains("then attach it to i-staging at /dev/sdf: permitted"),
            "{text}"
        );
    }

    fn job_snapshot(id: &str, volume: &str, device: &str) -> Snapshot {
        let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
        Snapshot::builder()
            .snapshot_id(id)
            .volume_id(volume)
            .state(Ec2State::Completed)
            .volume_size(8)
            .start_time(AwsDateTime::from_secs(1_790_000_000))
            .tags(tag(TAG_JOB, "default"))
            .tags(tag(TAG_INSTANCE_ID, "i-prod"))
            .tags(tag(TAG_DEVICE, device))
            .tags(tag(TAG_RUN_ID, "run-1"))
            .build()
    }

    fn instance(id: &str, zone: &str, devices: &[(&str, &str)]) -> DescribeInstancesOutput {
        use aws_sdk_ec2::types::{EbsInstanceBlockDevice, InstanceBlockDeviceMapping};
        let mut builder = aws_sdk_ec2::types::Instance::builder()
            .instance_id(id)
            .root_device_name("/dev/xvda")
            .placement(
                aws_sdk_ec2::types::Placement::builder()
                    .availability_zone(zone)
                    .build(),
            );
        for (device, volume) in devices {
            builder = builder.block_device_mappings(
                InstanceBlockDeviceMapping::builder()
                    .device_name(*device)
                    .ebs(
                        EbsInstanceBlockDevice::builder()
                            .volume_id(*volume)
                            .status(AttachmentStatus::Attached)
                            .build(),
                    )
                    .build(),
            );
        }
        DescribeInstancesOutput::builder()
            .reservations(
                aws_sdk_ec2::types::Reservation::builder()
                    .instances(builder.build())
                    .build(),
            )
            .build()
    }

    fn volume_in(id: &str, state: VolumeState) -> Volume {
        Volume::builder().volume_id(id).state(state).build()
    }

    /// The job's run of i-prod (root, /dev/sdf, /dev/sdg), to be restored onto
    /// i-staging; the client answers with these and `creates` and `polls`.
    fn staging_client(
        creates: &aws_smithy_mocks::Rule,
        polls: &aws_smithy_mocks::Rule,
        attach: &aws_smithy_mocks::Rule,
    ) -> Client {
        let snapshots = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(job_snapshot("snap-root", "vol-root", "/dev/xvda"))
                .snapshots(job_snapshot("snap-f", "vol-f", "/dev/sdf"))
                .snapshots(job_snapshot("snap-g", "vol-g", "/dev/sdg"))
                .build()
        });
        let prod = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-prod"])
            .then_output(|| instance("i-prod", "us-east-1a", &[("/dev/xvda", "vol-root")]));
        let staging = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-staging"])
            .then_output(|| instance("i-staging", "us-east-1a", &[("/dev/xvda", "vol-sroot")]));
        let sources = mock!(Client::describe_volumes)
            .match_requests(|req| !is_poll_of_new_volumes(req.filters()))
            .then_output(|| DescribeVolumesOutput::builder().build());
        mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&snapshots, &prod, &staging, &sources, creates, polls, attach]
        )
    }

    fn staging_args() -> RestoreArgs {
        RestoreArgs {
            instance: Some("i-prod".into()),
            attach_to: Some("i-staging".into()),
            ..args()
        }
    }

    #[tokio::test]
    async fn a_set_with_a_failed_volume_is_not_attached_and_exits_1() {
        let creates = mock!(Client::create_volume).then_output(|| {
            // Any id will do: the polls below decide each volume's fate.
            CreateVolumeOutput::builder().volume_id("vol-new").build()
        });
        let creates_f = mock!(Client::create_volume)
            .match_requests(|req| req.snapshot_id() == Some("snap-f"))
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new-f").build());
        let creates_g = mock!(Client::create_volume)
            .match_requests(|req| req.snapshot_id() == Some("snap-g"))
            .then_output(|| CreateVolumeOutput::builder().volume_id("vol-new-g").build());
        let polls = mock!(Client::describe_volumes)
            .match_requests(|req| is_poll_of_new_volumes(req.filters()))
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(volume_in("vol-new-f", VolumeState::Available))
                    .volumes(volume_in("vol-new-g", VolumeState::Error))
                    .build()
            });
        let attach = mock!(Client::attach_volume).then_output(|| {
            aws_sdk_ec2::operation::attach_volume::AttachVolumeOutput::builder().build()
        });
        let snapshots = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(job_snapshot("snap-root", "vol-root", "/dev/xvda"))
                .snapshots(job_snapshot("snap-f", "vol-f", "/dev/sdf"))
                .snapshots(job_snapshot("snap-g", "vol-g", "/dev/sdg"))
                .build()
        });
        let prod = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-prod"])
            .then_output(|| instance("i-prod", "us-east-1a", &[("/dev/xvda", "vol-root")]));
        let staging = mock!(Client::describe_instances)
            .match_requests(|req| req.instance_ids() == ["i-staging"])
            .then_output(|| instance("i-staging", "us-east-1a", &[("/dev/xvda", "vol-sroot")]));
        let sources = mock!(Client::describe_volumes)
            .match_requests(|req| !is_poll_of_new_volumes(req.filters()))
            .then_output(|| DescribeVolumesOutput::builder().build());
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [
                &snapshots, &prod, &staging, &sources, &creates_f, &creates_g, &creates, &polls,
                &attach
            ]
        );

        let report = restore(
            &client,
            "us-east-1",
            "default",
            false,
            &staging_args(),
            t(5),
        )
        .await
        .unwrap();

        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(attach.num_calls(), 0, "an incomplete set is never attached");
        assert_eq!(
            (
                creates_f.num_calls(),
                creates_g.num_calls(),
                creates.num_calls()
            ),
            (1, 1, 0),
            "the root volume is left out"
        );
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(report.skipped[0].snapshot_id, "snap-root");
        assert_eq!(report.restored.len(), 1);
        assert_eq!(report.restored[0].volume_id.as_deref(), Some("vol-new-f"));
        assert_eq!(report.restored[0].attached_to, None);
        assert_eq!(report.failed.len(), 1);
        let failed = &report.failed[0];
        assert_eq!(
            (failed.snapshot_id.as_str(), failed.volume_id.as_deref()),
            ("snap-g", Some("vol-new-g"))
        );
        assert!(
            failed.reason.contains("went to state error"),
            "{}",
            failed.reason
        );
        assert!(failed.reason.contains("not attached"), "{}", failed.reason);
    }

    #[tokio::test]
    async fn a_volume_not_ready_within_the_wait_timeout_is_a_failure_that_says_where_to_look() {
        let creates = mock!(Client::create_volume)
            .sequence()
            .output(|| {
                CreateVolumeOutput::builder()
                    .volume_id("vol-new-slow")
                    .build()
            })
            .output(|| {
                CreateVolumeOutput::builder()
                    .volume_id("vol-new-slower")
                    .build()
            })
            .build();
        let polls = mock!(Client::describe_volumes)
            .match_requests(|req| filtered_ids(req.filters()) == ["vol-new-slow", "vol-new-slower"])
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(volume_in("vol-new-slow", VolumeState::Creating))
                    .volumes(volume_in("vol-new-slower", VolumeState::Creating))
                    .build()
            });
        let attach = mock!(Client::attach_volume).then_output(|| {
            aws_sdk_ec2::operation::attach_volume::AttachVolumeOutput::builder().build()
        });
        let client = staging_client(&creates, &polls, &attach);
        let mut a = staging_args();
        a.wait_timeout = TimeDelta::zero();

        let report = restore(&client, "us-east-1", "default", false, &a, t(5))
            .await
            .unwrap();

        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(
            (creates.num_calls(), polls.num_calls(), attach.num_calls()),
            (2, 1, 0)
        );
        assert_eq!(report.failed.len(), 2);
        assert!(
            report.failed[0].reason.starts_with(
                "not ready within --wait-timeout: it may still get there; look with \
                              aws ec2 describe-volumes --volume-ids vol-new-slow"
            ),
            "{}",
            report.failed[0].reason
        );
    }
}
