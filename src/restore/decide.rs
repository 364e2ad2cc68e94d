//! restore's decisions, pure functions of what was read: which backup run
//! (`choose_run`), whether a snapshot can be restored now, each new volume's
//! parameters (`volume_spec`), and where each is attached. Tested like the
//! backup plan, with a fixed clock and no EC2.

use std::collections::BTreeMap;

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use crate::config::RestoreRequest;
pub(crate) use crate::inventory::SourceSnapshot;
use crate::inventory::{SnapshotState, TAG_DEVICE, TAG_INSTANCE_ID, TAG_JOB, TAG_RUN_ID};

/// Set on every restored volume: the snapshot it was made from.
pub(crate) const TAG_RESTORED_FROM: &str = "ebsnap:restored-from";

/// The volume a snapshot was taken of, while it still exists.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SourceVolume {
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
pub(crate) struct InstanceInfo {
    pub id: String,
    pub state: String,
    pub availability_zone: Option<String>,
    pub root_device: Option<String>,
    /// (device, volume id) of every volume attached or attaching.
    pub devices: Vec<(String, String)>,
}

/// One volume to create, and where to attach it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct VolumeSpec {
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
pub(crate) struct Skipped {
    pub snapshot_id: String,
    pub device: Option<String>,
    pub reason: String,
}

/// Why restore refuses before it creates anything (exit 2), with what the
/// user can do instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `--instance`: the job has no snapshot of it.
    NoSnapshots { instance: String, job: String },
    /// `--at` is before the first backup run; `usable` is the earliest
    /// `--at` that works (the first whole run's last start, rounded up).
    BeforeFirstBackup {
        instance: String,
        job: String,
        at: DateTime<Utc>,
        first: DateTime<Utc>,
        usable: DateTime<Utc>,
    },
    /// No run is whole and restorable by `--at`; `blocker` is a snapshot of
    /// the newest run before `at` that is not.
    NoCompleteRun {
        instance: String,
        job: String,
        at: DateTime<Utc>,
        blocker: Option<Blocker>,
    },
    /// `--snapshot` is in the archive tier.
    Archived { snapshot_id: String },
    /// `--snapshot` is still pending.
    Pending {
        snapshot_id: String,
        progress: Option<String>,
    },
    /// `--snapshot` is in another state than completed (error...).
    NotCompleted { snapshot_id: String, state: String },
    /// `--availability-zone` is not the `--attach-to` instance's zone.
    ZoneNotTargets {
        zone: String,
        target_id: String,
        target_zone: String,
    },
    /// The snapshot's volume is gone, and no zone was given.
    ZoneUnknown {
        snapshot_id: String,
        volume_id: String,
        region: String,
    },
    /// The zone is not in the region.
    ZoneNotInRegion { zone: String, region: String },
    /// `--size` is smaller than the snapshot.
    SizeTooSmall {
        size: i32,
        snapshot_id: String,
        snapshot_size: i32,
    },
    /// The snapshot has no `ebsnap:device` tag, so where to attach it is
    /// unknown; `single`: the user may pass `--device`.
    NoDevice { snapshot_id: String, single: bool },
    /// The device is taken on the `--attach-to` instance.
    DeviceTaken {
        device: String,
        target_id: String,
        volume_id: String,
        /// The taken device is the target's root.
        root: bool,
        snapshot_id: String,
        /// The user may pick another with `--device`.
        via_device_flag: bool,
    },
    /// Two snapshots would go to one device.
    SameDevice {
        first: String,
        second: String,
        device: String,
    },
}

/// A snapshot that keeps a run from being restorable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blocker {
    pub snapshot_id: String,
    /// `None`: in the archive tier; else its state.
    pub state: Option<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoSnapshots { instance, job } => write!(
                f,
                "no snapshots of instance {instance} in job {job}: check the instance id, --job and --region \
                 (`ebsnap list` shows the job's snapshots)"
            ),
            Refusal::BeforeFirstBackup {
                instance,
                job,
                at,
                first,
                usable,
            } => write!(
                f,
                "the first backup of {instance} in job {job} started at {}, after {}: \
                 pass --at {} or later",
                rfc3339(*first),
                rfc3339(*at),
                rfc3339(*usable)
            ),
            Refusal::NoCompleteRun {
                instance,
                job,
                at,
                blocker,
            } => {
                let blocker = match blocker {
                    None => String::new(),
                    Some(Blocker {
                        snapshot_id,
                        state: None,
                    }) => format!(" ({snapshot_id} is in the archive tier)"),
                    Some(Blocker {
                        snapshot_id,
                        state: Some(state),
                    }) => format!(" ({snapshot_id} is {state})"),
                };
                write!(
                    f,
                    "no complete backup run of {instance} in job {job} started at or before {}{blocker}: \
                     wait for pending snapshots or pass another --at (`ebsnap list --instance {instance}` shows them)",
                    rfc3339(*at)
                )
            }
            Refusal::Archived { snapshot_id } => write!(
                f,
                "snapshot {snapshot_id} is in the archive tier: add --from-archive to bring it back first \
                 (up to 72 hours, kept out of the archive for 7 days), or restore a newer one \
                 (`ebsnap list` shows the tiers)"
            ),
            Refusal::Pending {
                snapshot_id,
                progress,
            } => write!(
                f,
                "snapshot {snapshot_id} is still pending ({}): wait until it is completed, or restore an older one \
                 (`ebsnap list` shows them)",
                progress.as_deref().unwrap_or("progress unknown")
            ),
            Refusal::NotCompleted { snapshot_id, state } => write!(
                f,
                "snapshot {snapshot_id} is in state {state}, not completed, and cannot be restored: pick another one \
                 (`ebsnap list` shows them)"
            ),
            Refusal::ZoneNotTargets {
                zone,
                target_id,
                target_zone,
            } => write!(
                f,
                "--availability-zone {zone}, but {target_id} is in {target_zone} and a volume attaches only \
                 to an instance in its own zone: leave out --availability-zone"
            ),
            Refusal::ZoneUnknown {
                snapshot_id,
                volume_id,
                region,
            } => write!(
                f,
                "the volume snapshot {snapshot_id} was taken of ({volume_id}) no longer exists, so its zone is unknown: \
                 pass --availability-zone (e.g. {region}a)"
            ),
            Refusal::ZoneNotInRegion { zone, region } => write!(
                f,
                "availability zone {zone} is not in region {region}: pass a zone of {region} \
                 (e.g. {region}a), or the zone's region with --region"
            ),
            Refusal::SizeTooSmall {
                size,
                snapshot_id,
                snapshot_size,
            } => write!(
                f,
                "--size {size} is smaller than snapshot {snapshot_id} ({snapshot_size} GiB): pass --size {snapshot_size} or more, or leave it out"
            ),
            Refusal::NoDevice {
                snapshot_id,
                single: true,
            } => write!(
                f,
                "snapshot {snapshot_id} has no {TAG_DEVICE} tag, so the device to attach at is unknown: \
                 pass --device (e.g. /dev/sdf)"
            ),
            Refusal::NoDevice {
                snapshot_id,
                single: false,
            } => write!(
                f,
                "snapshot {snapshot_id} has no {TAG_DEVICE} tag, so the device to attach at is unknown: \
                 restore it on its own with --snapshot {snapshot_id} --device (e.g. /dev/sdf)"
            ),
            Refusal::DeviceTaken {
                device,
                target_id,
                volume_id,
                root,
                snapshot_id,
                via_device_flag,
            } => {
                let root = if *root { " (its root volume)" } else { "" };
                let other = if *via_device_flag {
                    ", or pass another --device"
                } else {
                    ""
                };
                write!(
                    f,
                    "device {device} on {target_id} is taken by {volume_id}{root}, where {snapshot_id} would go; nothing was created: \
                     stop what uses it, unmount it and detach it (aws ec2 detach-volume --volume-id {volume_id}){other}"
                )
            }
            Refusal::SameDevice {
                first,
                second,
                device,
            } => write!(
                f,
                "snapshots {first} and {second} both go to device {device}: restore them one at a time with \
                 --snapshot and --device"
            ),
        }
    }
}

impl std::error::Error for Refusal {}

// ---------------------------------------------------------------------------
// Pure decisions

/// The job's run of `instance` to restore as of `at`: the newest run (one
/// `ebsnap:run-id`) whose snapshots are all completed and all started at or
/// before `at`. One consistent set, never a mix of runs. Within the run, one
/// snapshot per source volume (the newest), sorted by device.
pub(crate) fn choose_run(
    snapshots: &[SourceSnapshot],
    job: &str,
    instance: &str,
    at: DateTime<Utc>,
) -> Result<(String, Vec<SourceSnapshot>), Refusal> {
    // The server filtered on these tags; a server that ignored the filter
    // must not make restore pick another instance's snapshots.
    let ours: Vec<&SourceSnapshot> = snapshots
        .iter()
        .filter(|s| s.tag(TAG_JOB) == Some(job) && s.tag(TAG_INSTANCE_ID) == Some(instance))
        .collect();
    let Some(first) = ours.iter().map(|s| s.start_time).min() else {
        return Err(Refusal::NoSnapshots {
            instance: instance.to_owned(),
            job: job.to_owned(),
        });
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
        // The earliest --at that works: the last start of the first complete
        // run, not its first snapshot's start (a run's snapshots start over
        // a few seconds, and a run counts only once all of it has started).
        let first_usable = runs
            .values()
            .filter(|run| run.iter().all(|s| s.is_restorable_now()))
            .filter_map(|run| last_start(run))
            .min();
        if let (true, Some(usable)) = (first > at, first_usable) {
            return Err(Refusal::BeforeFirstBackup {
                instance: instance.to_owned(),
                job: job.to_owned(),
                at,
                first,
                // Rounded up: EC2's start times carry milliseconds, and a
                // whole second just before the last start would not do.
                usable: usable
                    .duration_round_up(TimeDelta::seconds(1))
                    .unwrap_or(usable),
            });
        }
        // Say why the newest run before `at` does not do.
        let blocker = runs
            .values()
            .filter(|run| run.iter().any(|s| s.start_time <= at))
            .max_by_key(|run| last_start(run))
            .and_then(|run| {
                run.iter()
                    .find(|s| !s.is_restorable_now())
                    .map(|s| Blocker {
                        snapshot_id: s.id.clone(),
                        state: (!s.archived).then(|| s.state.as_str().to_owned()),
                    })
            });
        return Err(Refusal::NoCompleteRun {
            instance: instance.to_owned(),
            job: job.to_owned(),
            at,
            blocker,
        });
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
pub(crate) fn check_restorable(snapshot: &SourceSnapshot) -> Result<(), Refusal> {
    if snapshot.archived && snapshot.state == SnapshotState::Completed {
        return Err(Refusal::Archived {
            snapshot_id: snapshot.id.clone(),
        });
    }
    match &snapshot.state {
        SnapshotState::Completed => Ok(()),
        SnapshotState::Pending => Err(Refusal::Pending {
            snapshot_id: snapshot.id.clone(),
            progress: snapshot.progress.clone(),
        }),
        state => Err(Refusal::NotCompleted {
            snapshot_id: snapshot.id.clone(),
            state: state.as_str().to_owned(),
        }),
    }
}

/// Whether a zone belongs to a region: `us-east-1a` and local zones such as
/// `us-west-2-lax-1a` do, `us-east-2a` and `eu-west-1a` do not of `us-east-1`.
pub(crate) fn zone_in_region(zone: &str, region: &str) -> bool {
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
pub(crate) fn volume_spec(
    snapshot: &SourceSnapshot,
    source: Option<&SourceVolume>,
    args: &RestoreRequest,
    region: &str,
    target: Option<&InstanceInfo>,
    attach_device: Option<String>,
) -> Result<VolumeSpec, Refusal> {
    let target_zone = target.and_then(|t| t.availability_zone.as_deref());
    let zone = match (&args.availability_zone, target_zone, source) {
        (Some(zone), Some(target_zone), _) if zone != target_zone => {
            return Err(Refusal::ZoneNotTargets {
                zone: zone.clone(),
                target_id: target.map(|t| t.id.clone()).unwrap_or_default(),
                target_zone: target_zone.to_owned(),
            })
        }
        (Some(zone), _, _) => zone.clone(),
        (None, Some(target_zone), _) => target_zone.to_string(),
        (None, None, Some(source)) => source.availability_zone.clone(),
        (None, None, None) => {
            return Err(Refusal::ZoneUnknown {
                snapshot_id: snapshot.id.clone(),
                volume_id: snapshot.volume_id.clone(),
                region: region.to_owned(),
            })
        }
    };
    if !zone_in_region(&zone, region) {
        return Err(Refusal::ZoneNotInRegion {
            zone,
            region: region.to_owned(),
        });
    }
    if let Some(size) = args.size {
        if size < snapshot.size_gib {
            return Err(Refusal::SizeTooSmall {
                size,
                snapshot_id: snapshot.id.clone(),
                snapshot_size: snapshot.size_gib,
            });
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
pub(crate) fn same_device(a: &str, b: &str) -> bool {
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
pub(crate) fn attach_devices(
    snapshots: &[SourceSnapshot],
    device_flag: Option<&str>,
    single: bool,
) -> Result<Vec<String>, Refusal> {
    snapshots
        .iter()
        .map(|snapshot| match (device_flag, snapshot.device()) {
            (Some(device), _) => Ok(device.to_string()),
            (None, Some(device)) => Ok(device.to_string()),
            (None, None) => Err(Refusal::NoDevice {
                snapshot_id: snapshot.id.clone(),
                single,
            }),
        })
        .collect()
}

/// With `--instance` and `--attach-to`, the source's root volume is left
/// out: a running instance's root cannot be replaced, and a second root
/// file system (same label, same UUID) on another instance can be booted
/// by mistake. The root device is the source instance's, when it still
/// exists, else the target's.
pub(crate) fn split_off_root(
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
pub(crate) fn check_devices_free(
    target: &InstanceInfo,
    wanted: &[(String, String)],
    via_device_flag: bool,
) -> Result<(), Refusal> {
    for (i, (snapshot, device)) in wanted.iter().enumerate() {
        if let Some((taken, volume)) = target.devices.iter().find(|(d, _)| same_device(d, device)) {
            return Err(Refusal::DeviceTaken {
                device: taken.clone(),
                target_id: target.id.clone(),
                volume_id: volume.clone(),
                root: target
                    .root_device
                    .as_deref()
                    .is_some_and(|r| same_device(r, taken)),
                snapshot_id: snapshot.clone(),
                via_device_flag,
            });
        }
        if let Some((other, _)) = wanted[..i].iter().find(|(_, d)| same_device(d, device)) {
            return Err(Refusal::SameDevice {
                first: other.clone(),
                second: snapshot.clone(),
                device: device.clone(),
            });
        }
    }
    Ok(())
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::restore::report::restored;
    use chrono::{TimeDelta, TimeZone};
    use std::time::Duration;

    pub(in crate::restore) fn t(hour: u32) -> DateTime<Utc> {
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

    pub(in crate::restore) fn args() -> RestoreRequest {
        RestoreRequest {
            source: crate::config::RestoreSource::Instance("i-1".into()),
            at: None,
            availability_zone: None,
            volume_type: None,
            iops: None,
            throughput: None,
            size: None,
            kms_key_id: None,
            attach_to: None,
            device: None,
            from_archive: false,
            wait_timeout: Duration::from_secs(30 * 60),
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
        assert!(
            matches!(
                &err,
                Refusal::NoCompleteRun {
                    blocker: Some(Blocker { state: None, .. }),
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("is in the archive tier"), "{err}");
    }

    #[test]
    fn an_archived_snapshot_is_refused_with_how_to_bring_it_back() {
        let mut s = snap("snap-1", "vol-data", "/dev/sdf", "run-1", t(1));
        s.archived = true;
        let err = check_restorable(&s).unwrap_err();
        assert_eq!(
            err,
            Refusal::Archived {
                snapshot_id: "snap-1".into()
            }
        );
        let err = err.to_string();
        assert!(
            err.starts_with("snapshot snap-1 is in the archive tier: add --from-archive"),
            "{err}"
        );
        assert!(err.contains("up to 72 hours"), "{err}");
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
        assert!(
            matches!(&err, Refusal::BeforeFirstBackup { first, .. } if *first == t(1)),
            "{err:?}"
        );
        assert_eq!(
            err.to_string(),
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
            let at = DateTime::parse_from_rfc3339(suggested).unwrap().to_utc();
            assert!(
                matches!(&err, Refusal::BeforeFirstBackup { usable, .. } if *usable == at),
                "{err:?}"
            );
            assert!(
                err.to_string()
                    .ends_with(&format!("pass --at {suggested} or later")),
                "{err}"
            );
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
        assert_eq!(
            err,
            Refusal::NoCompleteRun {
                instance: "i-1".into(),
                job: "default".into(),
                at: t(2),
                blocker: Some(Blocker {
                    snapshot_id: "snap-a-root".into(),
                    state: Some("pending".into())
                })
            }
        );
        let err = err.to_string();
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
        assert_eq!(
            err,
            Refusal::NoSnapshots {
                instance: "i-9".into(),
                job: "default".into()
            }
        );
        assert!(
            err.to_string()
                .starts_with("no snapshots of instance i-9 in job default"),
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
        assert_eq!(
            err,
            Refusal::Pending {
                snapshot_id: "snap-1".into(),
                progress: Some("42%".into())
            }
        );
        assert!(
            err.to_string()
                .starts_with("snapshot snap-1 is still pending (42%): wait"),
            "{err}"
        );
        s.state = SnapshotState::Error;
        let err = check_restorable(&s).unwrap_err();
        assert_eq!(
            err,
            Refusal::NotCompleted {
                snapshot_id: "snap-1".into(),
                state: "error".into()
            }
        );
        assert!(err.to_string().contains("in state error"));
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
        assert!(matches!(err, Refusal::ZoneUnknown { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "the volume snapshot snap-1 was taken of (vol-gone) no longer exists, so its zone is unknown: \
             pass --availability-zone (e.g. us-east-1a)"
        );
        for zone in ["eu-west-1a", "us-east-2a", "us-east-1"] {
            let mut a = args();
            a.availability_zone = Some(zone.into());
            let err = volume_spec(&s, None, &a, "us-east-1", None, None).unwrap_err();
            assert_eq!(
                err,
                Refusal::ZoneNotInRegion {
                    zone: zone.into(),
                    region: "us-east-1".into()
                }
            );
            assert!(
                err.to_string().starts_with(&format!(
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
            Refusal::SizeTooSmall {
                size: 4,
                snapshot_id: "snap-1".into(),
                snapshot_size: 8
            }
        );
        assert_eq!(
            err.to_string(),
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
        assert_eq!(
            err,
            Refusal::ZoneNotTargets {
                zone: "us-east-1a".into(),
                target_id: "i-staging".into(),
                target_zone: "us-east-1c".into()
            }
        );
        assert!(
            err.to_string().contains("i-staging is in us-east-1c"),
            "{err}"
        );
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
        assert_eq!(
            err,
            Refusal::NoDevice {
                snapshot_id: "snap-1".into(),
                single: true
            }
        );
        assert!(
            err.to_string().ends_with("pass --device (e.g. /dev/sdf)"),
            "{err}"
        );
        let err = attach_devices(&[bare], None, false).unwrap_err();
        assert_eq!(
            err,
            Refusal::NoDevice {
                snapshot_id: "snap-1".into(),
                single: false
            }
        );
        assert!(
            err.to_string()
                .ends_with("restore it on its own with --snapshot snap-1 --device (e.g. /dev/sdf)"),
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
            Refusal::DeviceTaken {
                device: "/dev/xvdf".into(),
                target_id: "i-staging".into(),
                volume_id: "vol-busy".into(),
                root: false,
                snapshot_id: "snap-1".into(),
                via_device_flag: false
            }
        );
        assert_eq!(
            err.to_string(),
            "device /dev/xvdf on i-staging is taken by vol-busy, where snap-1 would go; nothing was created: \
             stop what uses it, unmount it and detach it (aws ec2 detach-volume --volume-id vol-busy)"
        );
        let err = check_devices_free(&target, &wanted("/dev/xvda"), true).unwrap_err();
        assert!(
            matches!(
                &err,
                Refusal::DeviceTaken {
                    root: true,
                    via_device_flag: true,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = err.to_string();
        assert!(err.contains("vol-root (its root volume)"), "{err}");
        assert!(err.ends_with(", or pass another --device"), "{err}");
        assert!(check_devices_free(&target, &wanted("/dev/sdg"), false).is_ok());
        let twice = vec![
            ("snap-1".to_string(), "/dev/sdg".to_string()),
            ("snap-2".to_string(), "/dev/xvdg".to_string()),
        ];
        let err = check_devices_free(&target, &twice, false).unwrap_err();
        assert_eq!(
            err,
            Refusal::SameDevice {
                first: "snap-1".into(),
                second: "snap-2".into(),
                device: "/dev/xvdg".into()
            }
        );
        assert!(err
            .to_string()
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
}
