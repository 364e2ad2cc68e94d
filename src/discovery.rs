//! Read-only EC2 calls: the instances carrying the selection tag, their
//! attached volumes, and the job's existing snapshots.
//!
//! Always filtered on the server and paginated with the SDK's paginators; no
//! per-instance or per-volume calls, so a run costs the same few calls at any
//! fleet size. EC2's types are turned into ours (inventory.rs) right here.

use anyhow::{anyhow, Result};
use aws_sdk_ec2::types::{AttachmentStatus, Filter, Instance as Ec2Instance, Snapshot, Tag};
use aws_sdk_ec2::Client;
use chrono::{DateTime, Utc};

use crate::aws::error_text;
use crate::config::TagSelector;
use crate::inventory::{
    AttachedVolume, ExistingSnapshot, Instance, Inventory, SnapshotState, TAG_DEVICE,
    TAG_INSTANCE_ID, TAG_JOB, TAG_NAME,
};

/// DescribeSnapshots' largest page.
const SNAPSHOT_PAGE_SIZE: i32 = 1000;
/// DescribeInstances' largest page.
const INSTANCE_PAGE_SIZE: i32 = 1000;

/// Reads what a run needs. `with_snapshots` is false for the snapshot step
/// alone, which needs no existing snapshots.
pub async fn discover(
    client: &Client,
    selector: &TagSelector,
    job: &str,
    with_instances: bool,
    with_snapshots: bool,
) -> Result<Inventory> {
    let instances = if with_instances { tagged_instances(client, selector).await? } else { vec![] };
    let snapshots = if with_snapshots { job_snapshots(client, job).await? } else { vec![] };
    Ok(Inventory { instances, snapshots })
}

/// Instances carrying the selection tag key (with exactly `--tag-value` when
/// given), in every state but terminated and shutting-down.
pub async fn tagged_instances(client: &Client, selector: &TagSelector) -> Result<Vec<Instance>> {
    let tag_filter = match &selector.value {
        Some(value) => Filter::builder().name(format!("tag:{}", selector.key)).values(value),
        None => Filter::builder().name("tag-key").values(&selector.key),
    };
    let state_filter = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(["pending", "running", "stopping", "stopped"].map(String::from).to_vec()));
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
            anyhow!("listing instances tagged {}: {}", selector.key, error_text(&err))
        })?;
        instances.extend(reservation.instances().iter().filter_map(|i| to_instance(i, &selector.key)));
    }
    Ok(instances)
}

/// The snapshots this account owns that carry this job's marker.
pub async fn job_snapshots(client: &Client, job: &str) -> Result<Vec<ExistingSnapshot>> {
    let mut pages = client
        .describe_snapshots()
        .owner_ids("self")
        .filters(Filter::builder().name(format!("tag:{TAG_JOB}")).values(job).build())
        .max_results(SNAPSHOT_PAGE_SIZE)
        .into_paginator()
        .items()
        .send();
    let mut snapshots = Vec::new();
    while let Some(snapshot) = pages.next().await {
        let snapshot = snapshot
            .map_err(|err| anyhow!("listing the snapshots of job {job}: {}", error_text(&err)))?;
        snapshots.extend(to_existing_snapshot(&snapshot));
    }
    Ok(snapshots)
}

fn tag_value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter().find(|tag| tag.key() == Some(key)).and_then(Tag::value)
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
    Some(Instance {
        id,
        name: tag_value(instance.tags(), TAG_NAME).map(str::to_owned),
        selection_value,
        volumes,
    })
}

fn to_existing_snapshot(snapshot: &Snapshot) -> Option<ExistingSnapshot> {
    let start = snapshot.start_time()?;
    Some(ExistingSnapshot {
        id: snapshot.snapshot_id()?.to_owned(),
        volume_id: snapshot.volume_id().unwrap_or_default().to_owned(),
        state: SnapshotState::parse(snapshot.state().map(|s| s.as_str()).unwrap_or("unknown")),
        start_time: DateTime::<Utc>::from_timestamp(start.secs(), start.subsec_nanos())?,
        job: tag_value(snapshot.tags(), TAG_JOB).map(str::to_owned),
        instance_id: tag_value(snapshot.tags(), TAG_INSTANCE_ID).map(str::to_owned),
        device: tag_value(snapshot.tags(), TAG_DEVICE).map(str::to_owned),
    })
}
