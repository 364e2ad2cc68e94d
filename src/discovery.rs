//! Read-only EC2 calls: the instances carrying the selection tag, their
//! attached volumes, the job's existing snapshots, and, where orphans are
//! judged, which of those snapshots' volumes still exist.
//!
//! Always filtered on the server and paginated with the SDK's paginators; no
//! per-instance or per-volume calls, so a run costs the same few calls at any
//! fleet size. EC2's types are turned into ours (inventory.rs) right here.

use anyhow::{anyhow, Result};
use aws_sdk_ec2::types::{
    AttachmentStatus, Filter, Instance as Ec2Instance, Snapshot, StorageTier, Tag,
    TieringOperationStatus, Volume,
};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

use crate::aws::{
    error_text, INSTANCE_PAGE_SIZE, SNAPSHOT_PAGE_SIZE, TIER_STATUS_PAGE_SIZE, VOLUME_PAGE_SIZE,
};
use crate::config::{Policy, Steps, TagSelector};
use crate::inventory::{
    is_no_volume, AttachedVolume, CopyOrigin, ExistingSnapshot, Instance, Interner, Inventory,
    SnapshotState, SourceSnapshot, TAG_ARCHIVED_AT, TAG_DEVICE, TAG_INSTANCE_ID, TAG_JOB, TAG_NAME,
    TAG_RUN_ID, TAG_SKIP, TAG_SOURCE_REGION, TAG_SOURCE_SNAPSHOT,
};
use crate::values::CopyTags;

/// What a run needs to read; each part left out saves its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reads {
    /// The tagged instances, their volumes and the `ebsnap:skip` volumes.
    pub instances: bool,
    /// The job's snapshots (purge, `--min-interval`, check).
    pub snapshots: bool,
    /// The attached volumes' own tags (`--inherit-tags volume|both`).
    pub volume_tags: bool,
    /// What tells an orphan series (`list`, `check`, purge with
    /// `--orphans-after`): the tagged instances (without the `ebsnap:skip`
    /// volumes, unless `instances`) and which of the snapshots' volumes
    /// still exist. Needs `snapshots`.
    pub orphans: bool,
}

impl Reads {
    /// What a backup command reads: the snapshot step needs the instances
    /// (and their volumes' tags to copy them); the purge step, and
    /// `--min-interval` in the snapshot step, the job's snapshots.
    /// Orphans only matter to a purge that may delete them
    /// (`--orphans-after`): without it the daily run reads nothing more.
    pub(crate) fn for_backup(steps: Steps, policy: &Policy) -> Reads {
        Reads {
            instances: steps.snapshot,
            snapshots: steps.purge || policy.min_interval > chrono::TimeDelta::zero(),
            volume_tags: steps.snapshot
                && matches!(policy.copy_tags, Some(CopyTags::Volume | CopyTags::Both)),
            orphans: steps.purge && policy.orphans_after.is_some(),
        }
    }
}

/// Reads what a run needs, `reads`, of the instances `selector` selects and
/// the snapshots of `job`.
pub(crate) async fn discover(
    client: &Client,
    selector: &TagSelector,
    job: &str,
    reads: Reads,
) -> Result<Inventory> {
    let Reads {
        instances: with_instances,
        snapshots: with_snapshots,
        volume_tags: with_volume_tags,
        orphans: with_orphans,
    } = reads;
    // The three reads that depend on nothing go out at once (a region's
    // discovery costs its slowest read, not their sum); the two that need
    // the instances (and the snapshots) follow, also side by side.
    let (instances, skip_volume_ids, snapshots) = tokio::try_join!(
        async {
            if with_instances || with_orphans {
                tagged_instances(client, selector).await
            } else {
                Ok(vec![])
            }
        },
        async {
            if with_instances {
                skip_tagged_volumes(client).await
            } else {
                Ok(Default::default())
            }
        },
        async {
            if with_snapshots {
                job_snapshots(client, job).await
            } else {
                Ok(vec![])
            }
        },
    )?;
    let (volume_tags, existing_volume_ids) = tokio::try_join!(
        async {
            if !with_volume_tags {
                return Ok(Default::default());
            }
            let ids: Vec<String> = instances.iter().map(|i| i.id.clone()).collect();
            attached_volume_tags(client, &ids).await
        },
        async {
            if with_orphans {
                existing_volumes(client, &instances, &snapshots).await.map(Some)
            } else {
                Ok(None)
            }
        },
    )?;
    Ok(Inventory {
        instances,
        snapshots,
        skip_volume_ids,
        volume_tags,
        existing_volume_ids,
    })
}

/// Which of the volumes `snapshots` were taken of still exist. A volume
/// attached to one of the tagged `instances` exists (it is in their block
/// device mappings); only the others are looked up, by one DescribeVolumes
/// filtered on the server by `volume-id`, 200 ids a call, paginated: a fleet
/// whose backed-up volumes are all attached costs no call at all. A failed
/// read fails discovery, so nothing is ever an orphan for want of an answer.
pub(crate) async fn existing_volumes(
    client: &Client,
    instances: &[Instance],
    snapshots: &[ExistingSnapshot],
) -> Result<std::collections::BTreeSet<String>> {
    let mut existing: std::collections::BTreeSet<String> = instances
        .iter()
        .flat_map(|i| &i.volumes)
        .map(|v| v.volume_id.clone())
        .collect();
    let unknown: std::collections::BTreeSet<&str> = snapshots
        .iter()
        .map(|s| &*s.volume_id)
        .filter(|id| !is_no_volume(id) && !existing.contains(*id))
        .collect();
    let unknown: Vec<String> = unknown.into_iter().map(str::to_owned).collect();
    for volume in volumes_where(
        client,
        "volume-id",
        &unknown,
        "looking up which of the snapshots' volumes still exist",
    )
    .await?
    {
        // Only an id asked about: a server that ignored the filter must not
        // make an unrelated volume count.
        if let Some(id) = volume
            .volume_id()
            .filter(|id| unknown.iter().any(|i| i == id))
        {
            existing.insert(id.to_owned());
        }
    }
    Ok(existing)
}

/// The volumes whose `filter` is one of `values`: DescribeVolumes filtered on
/// the server, 200 values a call (the most a filter takes), each call
/// paginated. `doing` says what for, in the error.
pub(crate) async fn volumes_where(
    client: &Client,
    filter: &str,
    values: &[String],
    doing: &str,
) -> Result<Vec<Volume>> {
    let mut volumes = Vec::new();
    for chunk in values.chunks(200) {
        let mut pages = client
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name(filter)
                    .set_values(Some(chunk.to_vec()))
                    .build(),
            )
            .max_results(VOLUME_PAGE_SIZE)
            .into_paginator()
            .items()
            .send();
        while let Some(volume) = pages.next().await {
            volumes.push(volume.map_err(|err| anyhow!("{doing}: {}", error_text(&err)))?);
        }
    }
    Ok(volumes)
}

/// Instances carrying the selection tag key (with exactly `--tag-value` when
/// given), in every state but terminated and shutting-down.
pub(crate) async fn tagged_instances(
    client: &Client,
    selector: &TagSelector,
) -> Result<Vec<Instance>> {
    let tag_filter = match &selector.value {
        Some(value) => Filter::builder()
            .name(format!("tag:{}", selector.key))
            .values(value),
        None => Filter::builder().name("tag-key").values(&selector.key),
    };
    let state_filter = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(
            ["pending", "running", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        ));
    let mut pages = client
        .describe_instances()
        .filters(tag_filter.build())
        .filters(state_filter.build())
        .max_results(INSTANCE_PAGE_SIZE)
        .into_paginator()
        .items()
        .send();
    let mut instances = Vec::new();
    while let Some(reservation) = pages.next().await {
        let reservation = reservation.map_err(|err| {
            anyhow!(
                "listing instances tagged {}: {}",
                selector.key,
                error_text(&err)
            )
        })?;
        instances.extend(
            reservation
                .instances()
                .iter()
                .filter_map(|i| to_instance(i, &selector.key)),
        );
    }
    Ok(instances)
}

/// The volumes tagged `ebsnap:skip=true` (filtered on the server: one
/// call, whatever the fleet's size).
pub(crate) async fn skip_tagged_volumes(
    client: &Client,
) -> Result<std::collections::BTreeSet<String>> {
    let mut pages = client
        .describe_volumes()
        .filters(
            Filter::builder()
                .name(format!("tag:{TAG_SKIP}"))
                .set_values(Some(vec!["true".into(), "True".into(), "TRUE".into()]))
                .build(),
        )
        .max_results(VOLUME_PAGE_SIZE)
        .into_paginator()
        .items()
        .send();
    let mut ids = std::collections::BTreeSet::new();
    while let Some(volume) = pages.next().await {
        let volume = volume.map_err(|err| {
            anyhow!(
                "listing the volumes tagged {TAG_SKIP}=true: {}",
                error_text(&err)
            )
        })?;
        ids.extend(volume.volume_id().map(str::to_owned));
    }
    Ok(ids)
}

/// The tags of the volumes attached to `instance_ids`, by volume id: one
/// DescribeVolumes pass filtered on the server by attachment.
pub(crate) async fn attached_volume_tags(
    client: &Client,
    instance_ids: &[String],
) -> Result<std::collections::BTreeMap<String, Vec<(String, String)>>> {
    let mut tags = std::collections::BTreeMap::new();
    for volume in volumes_where(
        client,
        "attachment.instance-id",
        instance_ids,
        "reading the volumes' tags for --inherit-tags",
    )
    .await?
    {
        if let Some(id) = volume.volume_id() {
            tags.insert(id.to_owned(), tag_pairs(volume.tags()));
        }
    }
    Ok(tags)
}

/// The snapshots this account owns that carry this job's marker.
pub(crate) async fn job_snapshots(client: &Client, job: &str) -> Result<Vec<ExistingSnapshot>> {
    let mut snapshots = marked_snapshots(client, job, None).await?;
    // Only a job that has met the archive tier pays for the read: one
    // snapshot archived, temporarily restored, or asked by ebsnap to be.
    if !snapshots
        .iter()
        .any(|s| s.archived || s.archived_by_ebsnap.is_some())
    {
        return Ok(snapshots);
    }
    let tiers = tier_histories(client).await.map_err(|err| {
        tracing::warn!(
            reason = %err,
            "could not read the snapshots' archive states: what ebsnap archived is kept 90 days from now"
        );
    });
    let now = Utc::now();
    for snapshot in &mut snapshots {
        let tier = tiers.as_ref().map(|t| t.get(&*snapshot.id));
        settle_tier(snapshot, tier, now);
    }
    Ok(snapshots)
}

/// What EC2 says of a snapshot's last archive or restore.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TierHistory {
    pub last_operation: TieringOperationStatus,
    pub archival_complete: Option<DateTime<Utc>>,
}

/// Settles where a job snapshot stands with the archive tier, from
/// DescribeSnapshots' `storageTier` (already in `archived`), its
/// `ebsnap:archived-at` tag (in `archived_by_ebsnap`, as read) and EC2's
/// tier history (`Err`: it could not be read). The pure decision.
///
/// - In the archive tier counts as archived, and so does a snapshot being
///   archived (EBS User Guide, "Archive an Amazon EBS snapshot": usable
///   until archival completes, but on its way), or temporarily restored
///   ("Restore an archived Amazon EBS snapshot": "During the restore
///   period, a copy of the snapshot remains in the archive tier"): never a
///   good backup for `--keep-min`, and never deleted unless ebsnap archived
///   it.
/// - What ebsnap archived counts its 90 days from EC2's
///   `archivalCompleteTime` (the later of it and the tag); while archival
///   is under way, or when the history could not be read, from `now`: its
///   90 days have not begun, as far as ebsnap can tell.
/// - A snapshot ebsnap asked to archive that EC2 never archived (refused,
///   or `archival-failed`) is not ebsnap's archive: the next run may ask
///   again.
pub(crate) fn settle_tier(
    snapshot: &mut ExistingSnapshot,
    history: Result<Option<&TierHistory>, &()>,
    now: DateTime<Utc>,
) {
    use TieringOperationStatus as Op;
    let asked = snapshot.archived_by_ebsnap;
    let history = match history {
        Ok(history) => history,
        Err(()) => {
            snapshot.archived_by_ebsnap = asked.map(|_| now);
            return;
        }
    };
    let operation = history.map(|h| &h.last_operation);
    let in_archive = matches!(
        operation,
        Some(
            Op::ArchivalInProgress
                | Op::ArchivalCompleted
                | Op::TemporaryRestoreInProgress
                | Op::TemporaryRestoreCompleted
                | Op::TemporaryRestoreFailed
                | Op::PermanentRestoreInProgress
                | Op::PermanentRestoreFailed
        )
    );
    snapshot.archived |= in_archive;
    snapshot.archived_by_ebsnap = match (asked, history) {
        (None, _) | (Some(_), None) => None,
        (Some(_), Some(h)) if h.last_operation == Op::ArchivalInProgress => Some(now),
        (Some(_), Some(h)) if h.last_operation == Op::ArchivalFailed => None,
        (Some(asked), Some(h)) => Some(h.archival_complete.map_or(asked, |done| done.max(asked))),
    };
}

/// What EC2 says of one snapshot's archive tier (DescribeSnapshotTierStatus
/// filtered on `snapshot-id`); `None` when it shows none for it.
pub(crate) async fn snapshot_tier_status(
    client: &Client,
    snapshot_id: &str,
) -> Result<Option<aws_sdk_ec2::types::SnapshotTierStatus>> {
    let answer = client
        .describe_snapshot_tier_status()
        .filters(
            Filter::builder()
                .name("snapshot-id")
                .values(snapshot_id)
                .build(),
        )
        .send()
        .await
        .map_err(|err| {
            anyhow!(
                "reading the archive status of snapshot {snapshot_id}: {}",
                error_text(&err)
            )
        })?;
    Ok(answer
        .snapshot_tier_statuses()
        .iter()
        .find(|s| s.snapshot_id() == Some(snapshot_id))
        .cloned())
}

/// Every snapshot of the account with an archive history, and what EC2
/// says of it: one DescribeSnapshotTierStatus filtered on the server on
/// `last-tiering-operation` (any of its values: only snapshots ever
/// archived answer), paginated.
async fn tier_histories(client: &Client) -> Result<HashMap<String, TierHistory>> {
    let mut pages = client
        .describe_snapshot_tier_status()
        .filters(
            Filter::builder()
                .name("last-tiering-operation")
                .set_values(Some(
                    TieringOperationStatus::values()
                        .iter()
                        .map(|v| (*v).to_owned())
                        .collect(),
                ))
                .build(),
        )
        .max_results(TIER_STATUS_PAGE_SIZE)
        .into_paginator()
        .send();
    let mut histories = HashMap::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|err| {
            anyhow!(
                "reading the snapshots' archive states: {}",
                error_text(&err)
            )
        })?;
        for status in page.snapshot_tier_statuses() {
            let (Some(id), Some(last_operation)) =
                (status.snapshot_id(), status.last_tiering_operation_status())
            else {
                continue;
            };
            let archival_complete = status
                .archival_complete_time()
                .and_then(|t| DateTime::<Utc>::from_timestamp(t.secs(), 0));
            histories.insert(
                id.to_owned(),
                TierHistory {
                    last_operation: last_operation.clone(),
                    archival_complete,
                },
            );
        }
    }
    Ok(histories)
}

/// The job's disaster-recovery copies in the client's region that came from
/// `source_region` (`--copy-to`).
pub(crate) async fn job_copies(
    client: &Client,
    job: &str,
    source_region: &str,
) -> Result<Vec<ExistingSnapshot>> {
    marked_snapshots(client, job, Some(source_region)).await
}

async fn marked_snapshots(
    client: &Client,
    job: &str,
    copied_from: Option<&str>,
) -> Result<Vec<ExistingSnapshot>> {
    let tag_filter = |key: &str, value: &str| {
        Filter::builder()
            .name(format!("tag:{key}"))
            .values(value)
            .build()
    };
    let mut request = client
        .describe_snapshots()
        .owner_ids("self")
        .filters(tag_filter(TAG_JOB, job));
    if let Some(region) = copied_from {
        request = request.filters(tag_filter(TAG_SOURCE_REGION, region));
    }
    let mut pages = request
        .max_results(SNAPSHOT_PAGE_SIZE)
        .into_paginator()
        .send();
    let mut snapshots = Vec::new();
    let mut interner = Interner::default();
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|err| anyhow!("listing the snapshots of job {job}: {}", error_text(&err)))?;
        snapshots.extend(
            page.snapshots()
                .iter()
                .filter_map(|snapshot| to_existing_snapshot(snapshot, &mut interner)),
        );
        // The page's parsed snapshots leave holes between the strings kept:
        // give them back before the next page, or the heap grows by about a
        // page each time (5 MiB at 30,000 snapshots).
        drop(page);
        crate::memory::give_back();
    }
    Ok(snapshots)
}

/// EC2 tags as (key, value) pairs; a tag without a key is no tag.
fn tag_pairs(tags: &[Tag]) -> Vec<(String, String)> {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_owned(),
                t.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|tag| tag.key() == Some(key))
        .and_then(Tag::value)
}

/// Our view of an EC2 instance; `None` when it lacks the selection tag (a
/// server that ignored the filter) or an id.
fn to_instance(instance: &Ec2Instance, tag_key: &str) -> Option<Instance> {
    let id = instance.instance_id()?.to_owned();
    let selection_value = tag_value(instance.tags(), tag_key)?.to_owned();
    let root_device = instance.root_device_name();
    let volumes = instance
        .block_device_mappings()
        .iter()
        .filter_map(|mapping| {
            let ebs = mapping.ebs()?;
            if ebs.status() == Some(&AttachmentStatus::Detached) {
                return None;
            }
            let device = mapping.device_name()?.to_owned();
            Some(AttachedVolume {
                volume_id: ebs.volume_id()?.to_owned(),
                is_root: root_device == Some(device.as_str()),
                device,
            })
        })
        .collect();
    let tags = tag_pairs(instance.tags());
    Some(Instance {
        id,
        name: tag_value(instance.tags(), TAG_NAME).map(str::to_owned),
        selection_value,
        volumes,
        tags,
    })
}

/// What every reading of a snapshot needs and EC2 may leave out: its id,
/// start time and state, and whether it is in the archive tier. `None`
/// without an id or a start time: not a snapshot ebsnap can reason about.
struct SnapshotBasics<'a> {
    id: &'a str,
    start_time: DateTime<Utc>,
    state: SnapshotState,
    archived: bool,
}

fn basics(snapshot: &Snapshot) -> Option<SnapshotBasics<'_>> {
    let start = snapshot.start_time()?;
    Some(SnapshotBasics {
        id: snapshot.snapshot_id()?,
        start_time: DateTime::<Utc>::from_timestamp(start.secs(), start.subsec_nanos())?,
        state: SnapshotState::parse(snapshot.state().map(|s| s.as_str()).unwrap_or("unknown")),
        archived: snapshot.storage_tier() == Some(&StorageTier::Archive),
    })
}

/// A job snapshot as the plan reads it: the contract's tags only, their
/// values shared through `interner` (tens of thousands are held at once).
fn to_existing_snapshot(snapshot: &Snapshot, interner: &mut Interner) -> Option<ExistingSnapshot> {
    let basics = basics(snapshot)?;
    let mut shared_tag = |key: &str| tag_value(snapshot.tags(), key).map(|v| interner.get(v));
    Some(ExistingSnapshot {
        id: basics.id.into(),
        job: shared_tag(TAG_JOB),
        instance_id: shared_tag(TAG_INSTANCE_ID),
        device: shared_tag(TAG_DEVICE),
        run_id: shared_tag(TAG_RUN_ID),
        // Temporarily restored, it is back in the standard tier for a
        // while, and a copy stays in the archive (API reference, Snapshot:
        // restoreExpiryTime, "Only for archived snapshots that are
        // temporarily restored"): archived, as far as purge is concerned.
        archived: basics.archived || snapshot.restore_expiry_time().is_some(),
        archived_by_ebsnap: tag_value(snapshot.tags(), TAG_ARCHIVED_AT)
            .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
            .map(|at| at.with_timezone(&Utc)),
        volume_id: interner.get(snapshot.volume_id().unwrap_or_default()),
        // Progress matters only while pending ("100%" on every completed one).
        progress: snapshot
            .progress()
            .filter(|_| basics.state == SnapshotState::Pending)
            .and_then(|p| p.trim_end_matches('%').parse().ok()),
        state: basics.state,
        start_time: basics.start_time,
        size_gib: snapshot.volume_size(),
        copy_of: match (
            tag_value(snapshot.tags(), TAG_SOURCE_REGION),
            tag_value(snapshot.tags(), TAG_SOURCE_SNAPSHOT),
        ) {
            (Some(region), Some(snapshot_id)) => Some(Box::new(CopyOrigin {
                region: region.to_owned(),
                snapshot_id: snapshot_id.to_owned(),
            })),
            _ => None,
        },
    })
}

/// A snapshot as restore reads it: every tag, and what a new volume of it
/// needs (size, encryption).
pub(crate) fn to_source_snapshot(snapshot: &Snapshot) -> Option<SourceSnapshot> {
    let basics = basics(snapshot)?;
    Some(SourceSnapshot {
        id: basics.id.to_owned(),
        volume_id: snapshot.volume_id().unwrap_or_default().to_owned(),
        state: basics.state,
        progress: snapshot.progress().map(str::to_owned),
        start_time: basics.start_time,
        size_gib: snapshot.volume_size().unwrap_or(0),
        encrypted: snapshot.encrypted().unwrap_or(false),
        archived: basics.archived,
        tags: tag_pairs(snapshot.tags()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::describe_instances::{
        DescribeInstancesInput, DescribeInstancesOutput,
    };
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsInput, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::primitives::DateTime as AwsDateTime;
    use aws_sdk_ec2::types::{
        EbsInstanceBlockDevice, InstanceBlockDeviceMapping, Reservation, SnapshotState as Ec2State,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use std::collections::BTreeSet;

    fn tag(key: &str, value: &str) -> Tag {
        Tag::builder().key(key).value(value).build()
    }

    fn mapping(device: &str, volume: &str) -> InstanceBlockDeviceMapping {
        InstanceBlockDeviceMapping::builder()
            .device_name(device)
            .ebs(
                EbsInstanceBlockDevice::builder()
                    .volume_id(volume)
                    .status(AttachmentStatus::Attached)
                    .build(),
            )
            .build()
    }

    fn reservation(id: &str, tags: Vec<Tag>) -> Reservation {
        let instance = Ec2Instance::builder()
            .instance_id(id)
            .root_device_name("/dev/xvda")
            .set_tags(Some(tags))
            .block_device_mappings(mapping("/dev/xvda", &format!("{id}-root")))
            .block_device_mappings(mapping("/dev/sdf", &format!("{id}-data")))
            .build();
        Reservation::builder().instances(instance).build()
    }

    fn has_filter(filters: &[Filter], name: &str, value: &str) -> bool {
        filters
            .iter()
            .any(|f| f.name() == Some(name) && f.values().iter().any(|v| v == value))
    }

    /// The server-side filters every DescribeInstances page must carry.
    fn filtered(req: &DescribeInstancesInput) -> bool {
        let filters = req.filters();
        has_filter(filters, "tag-key", "Scheduled-Snapshots")
            && has_filter(filters, "instance-state-name", "stopped")
            && !has_filter(filters, "instance-state-name", "terminated")
    }

    #[tokio::test]
    async fn instances_are_read_across_three_pages_with_server_side_filters() {
        let selection = || tag("Scheduled-Snapshots", "true");
        let page1 = mock!(Client::describe_instances)
            .match_requests(|req| filtered(req) && req.next_token().is_none())
            .then_output(move || {
                DescribeInstancesOutput::builder()
                    .reservations(reservation(
                        "i-1",
                        vec![selection(), tag("Name", "mongo-1")],
                    ))
                    .next_token("page-2")
                    .build()
            });
        let page2 = mock!(Client::describe_instances)
            .match_requests(|req| filtered(req) && req.next_token() == Some("page-2"))
            .then_output(move || {
                DescribeInstancesOutput::builder()
                    .reservations(reservation("i-2", vec![selection()]))
                    // A server that ignored the filter: no selection tag, never ours.
                    .reservations(reservation("i-untagged", vec![tag("Name", "proxy")]))
                    .next_token("page-3")
                    .build()
            });
        let page3 = mock!(Client::describe_instances)
            .match_requests(|req| filtered(req) && req.next_token() == Some("page-3"))
            .then_output(move || {
                DescribeInstancesOutput::builder()
                    .reservations(reservation("i-3", vec![tag("Scheduled-Snapshots", "off")]))
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&page1, &page2, &page3]);
        let selector = TagSelector {
            key: "Scheduled-Snapshots".into(),
            value: None,
        };

        let instances = tagged_instances(&client, &selector).await.unwrap();

        let ids: Vec<_> = instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["i-1", "i-2", "i-3"]);
        assert_eq!(
            (page1.num_calls(), page2.num_calls(), page3.num_calls()),
            (1, 1, 1)
        );
        let first = &instances[0];
        assert_eq!(first.name.as_deref(), Some("mongo-1"));
        assert_eq!(first.selection_value, "true");
        assert_eq!(
            first.volumes,
            vec![
                AttachedVolume {
                    volume_id: "i-1-root".into(),
                    device: "/dev/xvda".into(),
                    is_root: true
                },
                AttachedVolume {
                    volume_id: "i-1-data".into(),
                    device: "/dev/sdf".into(),
                    is_root: false
                },
            ]
        );
        assert_eq!(
            instances[2].selection_value, "off",
            "the plan, not discovery, judges the value"
        );
    }

    #[tokio::test]
    async fn volumes_tagged_to_skip_are_found_with_one_filtered_call() {
        use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
        use aws_sdk_ec2::types::Volume;
        let rule = mock!(Client::describe_volumes)
            .match_requests(|req| has_filter(req.filters(), "tag:ebsnap:skip", "true"))
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(Volume::builder().volume_id("vol-scratch").build())
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let ids = skip_tagged_volumes(&client).await.unwrap();
        assert_eq!(ids, ["vol-scratch".to_string()].into());
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn volume_tags_are_read_by_attachment_in_one_filtered_pass() {
        use aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput;
        use aws_sdk_ec2::types::Volume;
        let rule = mock!(Client::describe_volumes)
            .match_requests(|req| {
                has_filter(req.filters(), "attachment.instance-id", "i-1")
                    && has_filter(req.filters(), "attachment.instance-id", "i-2")
            })
            .then_output(|| {
                DescribeVolumesOutput::builder()
                    .volumes(
                        Volume::builder()
                            .volume_id("vol-1")
                            .tags(tag("disk", "data"))
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let tags = attached_volume_tags(&client, &["i-1".to_string(), "i-2".to_string()])
            .await
            .unwrap();
        assert_eq!(
            tags["vol-1"],
            vec![("disk".to_string(), "data".to_string())]
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn existing_volumes_are_looked_up_200_ids_a_call_paginated_attached_ones_never() {
        use aws_sdk_ec2::operation::describe_volumes::{
            DescribeVolumesInput, DescribeVolumesOutput,
        };
        use aws_sdk_ec2::types::Volume;
        let now = chrono::Utc::now();
        let mut snapshots: Vec<ExistingSnapshot> = (0..250)
            .map(|n| {
                crate::inventory::testing::job_snapshot(
                    &format!("snap-{n}"),
                    &format!("vol-{n:03}"),
                    now,
                )
            })
            .collect();
        // Two snapshots of one volume: asked once.
        snapshots.push(crate::inventory::testing::job_snapshot(
            "snap-again",
            "vol-007",
            now,
        ));
        // A copy has no volume; an attached volume is known to exist.
        snapshots.push(crate::inventory::testing::job_snapshot(
            "snap-copy",
            "vol-ffffffff",
            now,
        ));
        snapshots.push(crate::inventory::testing::job_snapshot(
            "snap-attached",
            "vol-attached",
            now,
        ));
        let instances = [Instance {
            id: "i-stopped".into(),
            name: None,
            selection_value: "true".into(),
            volumes: vec![AttachedVolume {
                volume_id: "vol-attached".into(),
                device: "/dev/sdf".into(),
                is_root: false,
            }],
            tags: vec![],
        }];
        // Every call: the volume-id filter, at most 200 distinct ids, never
        // the copy's nor the attached volume's.
        fn asks(req: &DescribeVolumesInput, first: &str, last: &str) -> bool {
            let [filter] = req.filters() else {
                return false;
            };
            let values = filter.values();
            let distinct: BTreeSet<&String> = values.iter().collect();
            filter.name() == Some("volume-id")
                && values.len() <= 200
                && distinct.len() == values.len()
                && values.first().map(String::as_str) == Some(first)
                && values.last().map(String::as_str) == Some(last)
                && !values
                    .iter()
                    .any(|v| v == "vol-ffffffff" || v == "vol-attached")
        }
        let volume = |id: &str| Volume::builder().volume_id(id).build();
        let first_page = mock!(Client::describe_volumes)
            .match_requests(|req| asks(req, "vol-000", "vol-199") && req.next_token().is_none())
            .then_output(move || {
                DescribeVolumesOutput::builder()
                    .volumes(volume("vol-000"))
                    .volumes(volume("vol-001"))
                    .next_token("page-2")
                    .build()
            });
        let second_page = mock!(Client::describe_volumes)
            .match_requests(|req| {
                asks(req, "vol-000", "vol-199") && req.next_token() == Some("page-2")
            })
            .then_output(move || {
                DescribeVolumesOutput::builder()
                    .volumes(volume("vol-007"))
                    .build()
            });
        let second_batch = mock!(Client::describe_volumes)
            .match_requests(|req| asks(req, "vol-200", "vol-249") && req.next_token().is_none())
            .then_output(move || {
                DescribeVolumesOutput::builder()
                    .volumes(volume("vol-249"))
                    // Not asked about: never counted as existing.
                    .volumes(volume("vol-unasked"))
                    .build()
            });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&first_page, &second_page, &second_batch]
        );

        let existing = existing_volumes(&client, &instances, &snapshots)
            .await
            .unwrap();

        assert_eq!(
            existing,
            ["vol-000", "vol-001", "vol-007", "vol-249", "vol-attached"]
                .map(String::from)
                .into(),
        );
        assert_eq!(
            (
                first_page.num_calls(),
                second_page.num_calls(),
                second_batch.num_calls()
            ),
            (1, 1, 1),
            "250 ids: two batches, the first over two pages"
        );
    }

    #[tokio::test]
    async fn no_describe_volumes_when_every_snapshots_volume_is_attached() {
        let now = chrono::Utc::now();
        let snapshots = [crate::inventory::testing::job_snapshot(
            "snap-1", "vol-1", now,
        )];
        let instances = [Instance {
            id: "i-1".into(),
            name: None,
            selection_value: "true".into(),
            volumes: vec![AttachedVolume {
                volume_id: "vol-1".into(),
                device: "/dev/sdf".into(),
                is_root: false,
            }],
            tags: vec![],
        }];
        let rule = mock!(Client::describe_volumes).then_output(|| {
            aws_sdk_ec2::operation::describe_volumes::DescribeVolumesOutput::builder().build()
        });
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let existing = existing_volumes(&client, &instances, &snapshots)
            .await
            .unwrap();
        assert_eq!(existing, ["vol-1".to_string()].into());
        assert_eq!(rule.num_calls(), 0);
    }

    #[tokio::test]
    async fn a_failed_volume_lookup_fails_discovery() {
        let rule = mock!(Client::describe_volumes).then_error(|| {
            aws_sdk_ec2::operation::describe_volumes::DescribeVolumesError::generic(
                crate::aws::testing::ec2_error("UnauthorizedOperation", "You are not authorized"),
            )
        });
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let snapshots = [crate::inventory::testing::job_snapshot(
            "snap-1",
            "vol-gone",
            chrono::Utc::now(),
        )];
        let err = existing_volumes(&client, &[], &snapshots)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "looking up which of the snapshots' volumes still exist: UnauthorizedOperation: You are not authorized"
        );
    }

    #[tokio::test]
    async fn a_tag_value_is_filtered_on_the_server() {
        let rule = mock!(Client::describe_instances)
            .match_requests(|req| has_filter(req.filters(), "tag:Backup", "hourly"))
            .then_output(|| DescribeInstancesOutput::builder().build());
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let selector = TagSelector {
            key: "Backup".into(),
            value: Some("hourly".into()),
        };
        assert!(tagged_instances(&client, &selector)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(rule.num_calls(), 1);
    }

    fn ec2_snapshot(id: &str, state: Ec2State, job: Option<&str>) -> Snapshot {
        let mut tags = vec![tag(TAG_INSTANCE_ID, "i-1"), tag(TAG_DEVICE, "/dev/sdf")];
        tags.extend(job.map(|job| tag(TAG_JOB, job)));
        Snapshot::builder()
            .snapshot_id(id)
            .volume_id("vol-1")
            .state(state)
            .start_time(AwsDateTime::from_secs(1_790_000_000))
            .set_tags(Some(tags))
            .build()
    }

    fn job_filtered(req: &DescribeSnapshotsInput) -> bool {
        req.owner_ids() == ["self"] && has_filter(req.filters(), "tag:ebsnap:job", "nightly")
    }

    #[tokio::test]
    async fn job_snapshots_are_read_across_three_pages_owned_by_self_and_marked() {
        let page1 = mock!(Client::describe_snapshots)
            .match_requests(|req| job_filtered(req) && req.next_token().is_none())
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot("snap-1", Ec2State::Completed, Some("nightly")))
                    .next_token("page-2")
                    .build()
            });
        let page2 = mock!(Client::describe_snapshots)
            .match_requests(|req| job_filtered(req) && req.next_token() == Some("page-2"))
            .then_output(|| {
                // Once asked by ebsnap to be archived: the archive states
                // are read.
                let mut asked = ec2_snapshot("snap-2", Ec2State::Pending, Some("nightly"));
                asked.tags.get_or_insert_with(Vec::new).push(tag(
                    crate::inventory::TAG_ARCHIVED_AT,
                    "2026-11-01T00:00:00Z",
                ));
                DescribeSnapshotsOutput::builder()
                    .snapshots(asked)
                    .next_token("page-3")
                    .build()
            });
        let page3 = mock!(Client::describe_snapshots)
            .match_requests(|req| job_filtered(req) && req.next_token() == Some("page-3"))
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot("snap-3", Ec2State::Error, None))
                    .build()
            });
        // One read of the archive states, filtered on the server: snap-1 is
        // being archived by someone.
        let tiers = mock!(Client::describe_snapshot_tier_status)
            .match_requests(|req| {
                req.filters().iter().any(|f| {
                    f.name() == Some("last-tiering-operation") && f.values().len() == 9
                })
            })
            .then_output(|| {
                aws_sdk_ec2::operation::describe_snapshot_tier_status::DescribeSnapshotTierStatusOutput::builder()
                    .snapshot_tier_statuses(
                        aws_sdk_ec2::types::SnapshotTierStatus::builder()
                            .snapshot_id("snap-1")
                            .last_tiering_operation_status(TieringOperationStatus::ArchivalInProgress)
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&page1, &page2, &page3, &tiers]
        );

        let snapshots = job_snapshots(&client, "nightly").await.unwrap();
        assert_eq!(tiers.num_calls(), 1);
        assert!(snapshots[0].archived, "on its way to the archive");
        assert!(!snapshots[1].archived);
        assert_eq!(
            snapshots[1].archived_by_ebsnap, None,
            "asked, but EC2 never archived it"
        );

        let states: Vec<_> = snapshots
            .iter()
            .map(|s| (&*s.id, s.state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("snap-1", "completed"),
                ("snap-2", "pending"),
                ("snap-3", "error")
            ]
        );
        assert_eq!(snapshots[0].job.as_deref(), Some("nightly"));
        assert_eq!(snapshots[0].device.as_deref(), Some("/dev/sdf"));
        assert_eq!(snapshots[0].start_time.timestamp(), 1_790_000_000);
        assert_eq!(
            snapshots[2].job, None,
            "an unmarked snapshot is read as unmarked"
        );
    }

    #[tokio::test]
    async fn a_refused_describe_names_what_ebsnap_was_doing() {
        let rule = mock!(Client::describe_snapshots).then_error(|| {
            aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsError::generic(
                crate::aws::testing::ec2_error("UnauthorizedOperation", "You are not authorized"),
            )
        });
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let err = job_snapshots(&client, "default")
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "listing the snapshots of job default: UnauthorizedOperation: You are not authorized"
        );
    }

    #[test]
    fn the_archive_state_settles_who_archived_what_and_since_when() {
        use crate::inventory::testing::job_snapshot;
        use chrono::{TimeDelta, TimeZone};
        use TieringOperationStatus as Op;
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 3, 0, 0).unwrap();
        let asked = now - TimeDelta::days(100);
        let done = now - TimeDelta::days(98);
        let settle = |tagged: bool, tier_archive: bool, op: Option<Op>, read: bool| {
            let mut s = job_snapshot("snap-1", "vol-1", now - TimeDelta::days(200));
            s.archived = tier_archive;
            s.archived_by_ebsnap = tagged.then_some(asked);
            let history = op.map(|last_operation| TierHistory {
                last_operation,
                archival_complete: Some(done),
            });
            let read = if read { Ok(history.as_ref()) } else { Err(&()) };
            settle_tier(&mut s, read, now);
            (s.archived, s.archived_by_ebsnap)
        };
        // ebsnap's, archived: 90 days from EC2's completion.
        assert_eq!(
            settle(true, true, Some(Op::ArchivalCompleted), true),
            (true, Some(done))
        );
        // ebsnap's, on its way: archived for the plan, its 90 days not begun.
        assert_eq!(
            settle(true, false, Some(Op::ArchivalInProgress), true),
            (true, Some(now))
        );
        // ebsnap asked, EC2 never archived it: not ebsnap's archive, asked again.
        assert_eq!(settle(true, false, None, true), (false, None));
        assert_eq!(
            settle(true, false, Some(Op::ArchivalFailed), true),
            (false, None)
        );
        // Someone else's, being archived or temporarily restored: archived.
        assert_eq!(
            settle(false, false, Some(Op::ArchivalInProgress), true),
            (true, None)
        );
        assert_eq!(
            settle(false, false, Some(Op::TemporaryRestoreCompleted), true),
            (true, None)
        );
        // Permanently restored: standard, and asked once.
        assert_eq!(
            settle(true, false, Some(Op::PermanentRestoreCompleted), true),
            (false, Some(done))
        );
        // No history could be read: what ebsnap archived waits 90 days from now.
        assert_eq!(settle(true, true, None, false), (true, Some(now)));
        assert_eq!(settle(false, false, None, false), (false, None));
    }

    #[tokio::test]
    async fn a_job_that_never_met_the_archive_tier_reads_no_archive_states() {
        let page = mock!(Client::describe_snapshots).then_output(|| {
            DescribeSnapshotsOutput::builder()
                .snapshots(ec2_snapshot("snap-1", Ec2State::Completed, Some("nightly")))
                .build()
        });
        let tiers = mock!(Client::describe_snapshot_tier_status).then_output(|| {
            aws_sdk_ec2::operation::describe_snapshot_tier_status::DescribeSnapshotTierStatusOutput::builder().build()
        });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&page, &tiers]);
        let snapshots = job_snapshots(&client, "nightly").await.unwrap();
        assert_eq!(snapshots.len(), 1);
        assert_eq!(tiers.num_calls(), 0);
    }
}
