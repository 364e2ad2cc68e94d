//! The snapshot step's decisions: which instances the selection tag
//! selects, which of their volumes are left out and why, and the creates,
//! grouped per instance into the sets snapshotted together.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};

use crate::config::{Policy, TagSelector};
use crate::inventory::{AttachedVolume, ExistingSnapshot, Inventory, SnapshotState};
use crate::plan::kinds::{
    InstanceSkip, NotSelected, Plan, SkipReason, SkippedInstance, SkippedVolume,
};
use crate::plan::requests::{Create, RunTags, SnapshotSet};
use crate::plan::tags::copied_tags;

/// The values of the selection tag that mean "do not back up".
const NEGATIVE_VALUES: [&str; 5] = ["false", "no", "off", "0", ""];

/// Whether an instance whose selection tag holds `value` is backed up.
/// `Err` carries the reason it is not.
pub(crate) fn is_selected(selector: &TagSelector, value: &str) -> Result<(), NotSelected> {
    match &selector.value {
        Some(wanted) if value == wanted => Ok(()),
        Some(wanted) => Err(NotSelected::OtherValue {
            key: selector.key.clone(),
            value: value.to_owned(),
            wanted: wanted.clone(),
        }),
        None if NEGATIVE_VALUES.contains(&value.trim().to_ascii_lowercase().as_str()) => {
            Err(NotSelected::OptsOut {
                key: selector.key.clone(),
                value: value.to_owned(),
            })
        }
        None => Ok(()),
    }
}

/// For each volume, the newest job snapshot (completed or pending) started
/// less than `--min-interval` ago: that volume is not snapshotted again.
pub(super) fn recent_snapshots<'a>(
    snapshots: &'a [ExistingSnapshot],
    policy: &Policy,
    now: DateTime<Utc>,
) -> BTreeMap<&'a str, &'a ExistingSnapshot> {
    let mut recent: BTreeMap<&str, &ExistingSnapshot> = BTreeMap::new();
    if policy.min_interval <= TimeDelta::zero() {
        return recent;
    }
    let since = now - policy.min_interval;
    for snapshot in snapshots {
        let counts = matches!(
            snapshot.state,
            SnapshotState::Completed | SnapshotState::Pending
        );
        if counts && snapshot.is_marked_for(&policy.job) && snapshot.start_time > since {
            let newest = recent.entry(&snapshot.volume_id).or_insert(snapshot);
            if snapshot.start_time > newest.start_time {
                *newest = snapshot;
            }
        }
    }
    recent
}

/// Why a volume is left out of every backup on purpose, if it is: tagged
/// `ebsnap:skip=true`, or the root with `--exclude-boot`. `check` asks the
/// same: such a volume has no stale backup.
pub(crate) fn left_out_on_purpose(
    volume: &AttachedVolume,
    skip_volume_ids: &BTreeSet<String>,
    policy: &Policy,
) -> Option<SkipReason> {
    if skip_volume_ids.contains(&volume.volume_id) {
        return Some(SkipReason::SkipTag);
    }
    if policy.exclude_boot && volume.is_root {
        return Some(SkipReason::ExcludedBoot);
    }
    None
}

/// Why a volume of a selected instance is left out of this run, if it is:
/// on purpose, or snapshotted within `--min-interval`.
fn skip_reason(
    volume: &AttachedVolume,
    inventory: &Inventory,
    policy: &Policy,
    recent: &BTreeMap<&str, &ExistingSnapshot>,
) -> Option<SkipReason> {
    if let Some(on_purpose) = left_out_on_purpose(volume, &inventory.skip_volume_ids, policy) {
        return Some(on_purpose);
    }
    recent
        .get(volume.volume_id.as_str())
        .map(|snapshot| SkipReason::Recent {
            snapshot_id: snapshot.id.clone(),
            started: snapshot.start_time,
        })
}

pub(super) fn plan_creates(
    inventory: &Inventory,
    policy: &Policy,
    run_id: &str,
    recent: &BTreeMap<&str, &ExistingSnapshot>,
    plan: &mut Plan,
) {
    // The instance each volume is snapshotted with: a volume attached to
    // two selected instances (io2 Multi-Attach) gets one snapshot a run,
    // with the first; the other leaves it out.
    let mut snapshotted_with: BTreeMap<&str, &str> = BTreeMap::new();
    let user_tags: Arc<[(String, String)]> = policy.user_tags.as_slice().into();
    let run = RunTags {
        job: &policy.job,
        run_id,
        user: &user_tags,
    };
    for instance in &inventory.instances {
        if let Err(reason) = is_selected(&policy.selector, &instance.selection_value) {
            plan.skipped_instances.push(SkippedInstance {
                instance_id: instance.id.clone(),
                instance_name: instance.name.clone(),
                reason: InstanceSkip::NotSelected(reason),
            });
            continue;
        }
        if instance.volumes.is_empty() {
            plan.skipped_instances.push(SkippedInstance {
                instance_id: instance.id.clone(),
                instance_name: instance.name.clone(),
                reason: InstanceSkip::NoVolume,
            });
        }
        let first_create = plan.creates.len();
        let mut left_out = Vec::new();
        // A volume attached twice in the mappings is still one volume.
        let mut seen = HashSet::new();
        for volume in instance
            .volumes
            .iter()
            .filter(|v| seen.insert(&v.volume_id))
        {
            let skip = match snapshotted_with.get(volume.volume_id.as_str()) {
                Some(other) => Some(SkipReason::MultiAttach {
                    other_instance_id: (*other).to_owned(),
                }),
                None => skip_reason(volume, inventory, policy, recent),
            };
            if let Some(reason) = skip {
                left_out.push(volume);
                plan.skipped_volumes.push(SkippedVolume {
                    instance_id: instance.id.clone(),
                    instance_name: instance.name.clone(),
                    volume_id: volume.volume_id.clone(),
                    device: volume.device.clone(),
                    reason,
                });
                continue;
            }
            let volume_tags = inventory
                .volume_tags
                .get(&volume.volume_id)
                .map(Vec::as_slice)
                .unwrap_or_default();
            snapshotted_with.insert(&volume.volume_id, &instance.id);
            let (copied, dropped) =
                copied_tags(policy.copy_tags, run.user, &instance.tags, volume_tags);
            plan.creates.push(Create::new(
                &instance.id,
                instance.name.as_deref(),
                &volume.volume_id,
                &volume.device,
                run,
                copied,
                dropped,
            ));
        }
        if plan.creates.len() > first_create {
            plan.sets.push(SnapshotSet::new(
                &instance.id,
                instance.name.as_deref(),
                (first_create..plan.creates.len()).collect(),
                &left_out,
                run,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_selected;
    use chrono::TimeDelta;

    use crate::config::{Policy, TagSelector};
    use crate::inventory::{Inventory, SnapshotState};
    use crate::plan::build;
    use crate::plan::kinds::{InstanceSkip, NotSelected, SkipReason};
    use crate::plan::requests::SnapshotSet;
    use crate::plan::testing::{completed, instance, now, pairs, policy, snap, SNAPSHOT};
    use crate::values::ReasonCode;

    #[test]
    fn selection_values_without_tag_value() {
        let selector = TagSelector {
            key: "Scheduled-Snapshots".into(),
            value: None,
        };
        for yes in ["true", "yes", "True", "daily", "1"] {
            assert_eq!(is_selected(&selector, yes), Ok(()), "{yes}");
        }
        for no in ["false", "FALSE", "no", "off", "Off", "0", "", "  "] {
            assert!(is_selected(&selector, no).is_err(), "{no:?}");
        }
    }

    #[test]
    fn selection_with_tag_value_is_exact() {
        let selector = TagSelector {
            key: "Backup".into(),
            value: Some("hourly".into()),
        };
        assert_eq!(is_selected(&selector, "hourly"), Ok(()));
        assert!(is_selected(&selector, "Hourly").is_err());
        assert!(is_selected(&selector, "true").is_err());
        let err = is_selected(&selector, "daily").unwrap_err();
        assert_eq!(
            err,
            NotSelected::OtherValue {
                key: "Backup".into(),
                value: "daily".into(),
                wanted: "hourly".into()
            }
        );
        assert_eq!(err.to_string(), "Backup=\"daily\", not \"hourly\"");
    }

    #[test]
    fn creates_one_snapshot_per_volume_of_selected_instances_only() {
        let inventory = Inventory {
            instances: vec![
                instance("i-yes", "true", &["vol-a", "vol-b"]),
                instance("i-off", "off", &["vol-c"]),
                instance("i-empty", "", &["vol-d"]),
                instance("i-twice", "yes", &["vol-e", "vol-e"]),
            ],
            snapshots: vec![],
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        let volumes: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(volumes, ["vol-a", "vol-b", "vol-e"]);
        let skipped: Vec<_> = plan
            .skipped_instances
            .iter()
            .map(|s| s.instance_id.as_str())
            .collect();
        assert_eq!(skipped, ["i-off", "i-empty"]);
        assert_eq!(
            plan.skipped_instances[0].reason,
            InstanceSkip::NotSelected(NotSelected::OptsOut {
                key: "Scheduled-Snapshots".into(),
                value: "off".into()
            })
        );
        assert!(plan.skipped_instances[0]
            .reason
            .to_string()
            .contains("opts out"));
    }

    #[test]
    fn an_instance_without_volumes_is_reported() {
        let inventory = Inventory {
            instances: vec![instance("i-1", "true", &[])],
            snapshots: vec![],
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        assert!(plan.creates.is_empty());
        assert_eq!(plan.skipped_instances[0].reason, InstanceSkip::NoVolume);
        assert_eq!(
            plan.skipped_instances[0].reason.to_string(),
            "no EBS volume attached"
        );
    }

    #[test]
    fn a_volume_snapshotted_within_min_interval_is_not_snapshotted_again() {
        let mut other_job = snap(
            "weekly-new",
            "vol-c",
            TimeDelta::minutes(1),
            SnapshotState::Completed,
        );
        other_job.job = Some("weekly".into());
        let inventory = Inventory {
            instances: vec![instance(
                "i-1",
                "true",
                &["vol-a", "vol-b", "vol-c", "vol-d"],
            )],
            snapshots: vec![
                snap(
                    "a-pending",
                    "vol-a",
                    TimeDelta::minutes(3),
                    SnapshotState::Pending,
                ),
                completed("b-old", "vol-b", TimeDelta::minutes(11)),
                other_job,
                snap(
                    "d-error",
                    "vol-d",
                    TimeDelta::minutes(1),
                    SnapshotState::Error,
                ),
            ],
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        let created: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(
            created,
            ["vol-b", "vol-c", "vol-d"],
            "only a recent good or pending job snapshot counts"
        );
        assert_eq!(plan.skipped_volumes.len(), 1);
        assert_eq!(plan.skipped_volumes[0].volume_id, "vol-a");
        assert!(
            matches!(
                &plan.skipped_volumes[0].reason,
                SkipReason::Recent { snapshot_id, .. } if snapshot_id == "a-pending"
            ),
            "{:?}",
            plan.skipped_volumes[0].reason
        );
        assert_eq!(plan.skipped_volumes[0].reason.code(), "recent");
        assert!(plan.skipped_volumes[0]
            .reason
            .to_string()
            .starts_with("a-pending of this job started"));

        let disabled = Policy {
            min_interval: TimeDelta::zero(),
            ..policy()
        };
        assert_eq!(
            build(inventory.clone(), &disabled, SNAPSHOT, "r1", now())
                .creates
                .len(),
            4
        );
    }

    #[test]
    fn a_volume_attached_to_two_selected_instances_gets_one_snapshot() {
        let inventory = Inventory {
            instances: vec![
                instance("i-1", "true", &["vol-root1", "vol-shared"]),
                instance("i-2", "true", &["vol-root2", "vol-shared"]),
            ],
            ..Inventory::default()
        };
        let plan = build(inventory, &policy(), SNAPSHOT, "r1", now());
        let volumes: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(volumes, ["vol-root1", "vol-shared", "vol-root2"]);
        assert_eq!(plan.skipped_volumes.len(), 1);
        assert_eq!(plan.skipped_volumes[0].instance_id, "i-2");
        assert_eq!(
            plan.skipped_volumes[0].reason,
            SkipReason::MultiAttach {
                other_instance_id: "i-1".into()
            }
        );
        assert_eq!(plan.skipped_volumes[0].reason.code(), "multi_attach");
        // CreateSnapshots of i-2 is told to leave it out.
        assert_eq!(plan.sets[1].exclude_data_volume_ids, ["vol-shared"]);
    }

    #[test]
    fn skip_tagged_and_excluded_boot_volumes_are_left_out_with_their_reason() {
        let inventory = Inventory {
            instances: vec![instance(
                "i-1",
                "true",
                &["vol-root", "vol-data", "vol-scratch"],
            )],
            snapshots: vec![],
            skip_volume_ids: ["vol-scratch".to_string()].into(),
            ..Inventory::default()
        };
        let plan = build(inventory.clone(), &policy(), SNAPSHOT, "r1", now());
        let created: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(created, ["vol-root", "vol-data"]);
        assert_eq!(plan.skipped_volumes[0].reason, SkipReason::SkipTag);
        assert_eq!(plan.skipped_volumes[0].reason.code(), "skip_tag");
        assert_eq!(
            plan.skipped_volumes[0].reason.to_string(),
            "tagged ebsnap:skip=true"
        );

        let data_only = Policy {
            exclude_boot: true,
            ..policy()
        };
        let plan = build(inventory.clone(), &data_only, SNAPSHOT, "r1", now());
        let created: Vec<_> = plan.creates.iter().map(|c| c.volume_id.as_str()).collect();
        assert_eq!(created, ["vol-data"]);
        let codes: Vec<_> = plan
            .skipped_volumes
            .iter()
            .map(|s| (s.volume_id.as_str(), s.reason.code()))
            .collect();
        assert_eq!(
            codes,
            [("vol-root", "excluded_boot"), ("vol-scratch", "skip_tag")]
        );
        assert_eq!(plan.skipped_volumes[0].reason, SkipReason::ExcludedBoot);
    }

    #[test]
    fn each_instances_creates_form_a_set_that_names_what_it_leaves_out() {
        let inventory = Inventory {
            instances: vec![
                instance(
                    "i-1",
                    "true",
                    &["vol-root", "vol-data", "vol-scratch", "vol-recent"],
                ),
                instance("i-2", "true", &["vol-2root"]),
            ],
            snapshots: vec![completed("recent", "vol-recent", TimeDelta::minutes(1))],
            skip_volume_ids: ["vol-scratch".to_string()].into(),
            ..Inventory::default()
        };
        let data_only = Policy {
            exclude_boot: true,
            ..policy()
        };
        let plan = build(inventory.clone(), &data_only, SNAPSHOT, "r1", now());
        assert_eq!(
            plan.sets,
            [SnapshotSet {
                instance_id: "i-1".into(),
                creates: vec![0],
                exclude_boot: true,
                exclude_data_volume_ids: vec!["vol-scratch".into(), "vol-recent".into()],
                description: "ebsnap job=default instance=i-1".into(),
                tags: pairs(&[
                    ("ebsnap:job", "default"),
                    ("ebsnap:instance-id", "i-1"),
                    ("ebsnap:run-id", "r1")
                ]),
            }],
            "i-2 has nothing left to snapshot, so no set"
        );
        assert_eq!(plan.creates[0].volume_id, "vol-data");

        let all = build(
            Inventory {
                skip_volume_ids: Default::default(),
                snapshots: vec![],
                ..inventory
            },
            &policy(),
            SNAPSHOT,
            "r1",
            now(),
        );
        assert_eq!(all.sets.len(), 2);
        assert_eq!(all.sets[0].creates, [0, 1, 2, 3]);
        assert_eq!(all.sets[1].creates, [4]);
        assert!(!all.sets[0].exclude_boot && all.sets[0].exclude_data_volume_ids.is_empty());
    }
}
