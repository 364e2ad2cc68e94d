//! The plan's creates, with their requests finished when the plan is
//! built: each snapshot's description and tags, each set's (CreateSnapshots)
//! description and shared tags, and what a `--copy-to` copy carries. The
//! executor sends them and records what EC2 answered.

use std::sync::Arc;

use crate::inventory::{
    AttachedVolume, TAG_DEVICE, TAG_INSTANCE_ID, TAG_JOB, TAG_NAME, TAG_RUN_ID,
};
use crate::plan::tags::{fit_tags, CONTRACT_TAGS_ON_COPY};

/// The creates of one instance, snapshotted together: by one CreateSnapshots
/// call at one instant (crash-consistent across the volumes), which must be
/// told what to leave out; or, with `--per-volume`, one CreateSnapshot per
/// volume. Hooks run around a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SnapshotSet {
    pub instance_id: String,
    /// Indices into [`Plan::creates`].
    pub creates: Vec<usize>,
    /// The instance's root volume is not among the creates.
    pub exclude_boot: bool,
    /// Attached data volumes that are not among the creates.
    pub exclude_data_volume_ids: Vec<String>,
    /// The one description CreateSnapshots gives every snapshot of the
    /// set: no device.
    pub description: String,
    /// What CreateSnapshots tags every snapshot of the set with, in the
    /// call itself: the marker, instance and run id, and the user's tags
    /// (`--snapshot-tag`), so no snapshot exists a moment without them. The rest of
    /// each snapshot's tags (`Create::tags`) follow in a CreateTags.
    pub tags: Vec<(String, String)>,
}

impl SnapshotSet {
    /// The set of `instance_id`'s `creates`, which leaves out what the
    /// instance has beside them, its requests finished.
    pub(crate) fn new(
        instance_id: &str,
        instance_name: Option<&str>,
        creates: Vec<usize>,
        left_out: &[&AttachedVolume],
        run: RunTags<'_>,
    ) -> SnapshotSet {
        let tags = [
            (TAG_JOB, run.job),
            (TAG_INSTANCE_ID, instance_id),
            (TAG_RUN_ID, run.run_id),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .chain(run.user.iter().cloned())
        .collect();
        SnapshotSet {
            instance_id: instance_id.to_owned(),
            creates,
            exclude_boot: left_out.iter().any(|v| v.is_root),
            exclude_data_volume_ids: left_out
                .iter()
                .filter(|v| !v.is_root)
                .map(|v| v.volume_id.clone())
                .collect(),
            description: describe(run.job, instance_id, instance_name, None),
            tags,
        }
    }
}

/// A snapshot to take: one per attached EBS volume of a selected instance,
/// with its requests finished when the plan is built: the executor sends
/// them and records what EC2 answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Create {
    pub instance_id: String,
    pub instance_name: Option<String>,
    pub volume_id: String,
    pub device: String,
    /// CreateSnapshot's description (`--per-volume`): who made it, for
    /// which job, of what.
    pub description: String,
    /// Every tag of the snapshot. In the create call itself
    /// (CreateSnapshot), so that no snapshot of ebsnap ever exists without
    /// its marker (nor the user's tags); after CreateSnapshots, in the
    /// CreateTags that follows.
    pub tags: Tags,
    /// The keys of the source's tags that did not fit (EC2's tag limits).
    pub dropped_tags: Vec<String>,
    /// `--copy-to`: a copy's tags but the two that say where it came from
    /// (`ebsnap:source-*`, known once the snapshot is made), which go right
    /// after the contract's: the copied ones are those that fit beside
    /// ebsnap's seven on a copy.
    pub copy_tags: Tags,
    /// The keys of the copied tags that fit on the snapshot but not on a
    /// copy.
    pub copy_dropped_tags: Vec<String>,
}

/// A snapshot's tags, in the order they are sent: the contract's, then the
/// user's (`--snapshot-tag`: the same on every snapshot of the job, so one copy
/// shared by the whole plan, and never dropped), then the ones copied from
/// the source (`--inherit-tags`) that fit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Tags {
    pub contract: Vec<(String, String)>,
    pub user: Arc<[(String, String)]>,
    pub copied: Vec<(String, String)>,
}

impl Tags {
    pub(crate) fn iter(&self) -> impl Iterator<Item = &(String, String)> + Clone {
        self.contract
            .iter()
            .chain(self.user.iter())
            .chain(self.copied.iter())
    }

    #[cfg(test)]
    pub(crate) fn to_vec(&self) -> Vec<(String, String)> {
        self.iter().cloned().collect()
    }
}

/// What every snapshot of one run shares beside its volume's own tags: the
/// job (the marker), the run id, and the user's tags (`--snapshot-tag`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunTags<'a> {
    pub job: &'a str,
    pub run_id: &'a str,
    pub user: &'a Arc<[(String, String)]>,
}

impl Create {
    /// The create of `volume_id` at `device` of an instance, its requests
    /// finished: `copied` are the source's tags to copy (`--inherit-tags`),
    /// `dropped` the keys of those that did not fit on the snapshot.
    pub(crate) fn new(
        instance_id: &str,
        instance_name: Option<&str>,
        volume_id: &str,
        device: &str,
        run: RunTags<'_>,
        copied: Vec<(String, String)>,
        dropped: Vec<String>,
    ) -> Create {
        let label = instance_name.unwrap_or(instance_id);
        let contract: Vec<(String, String)> = [
            (TAG_JOB, run.job.to_owned()),
            (TAG_INSTANCE_ID, instance_id.to_owned()),
            (TAG_DEVICE, device.to_owned()),
            (TAG_RUN_ID, run.run_id.to_owned()),
            (TAG_NAME, format!("{label} {device}")),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value))
        .collect();
        let (on_copy, copy_dropped_tags) = fit_tags(
            CONTRACT_TAGS_ON_COPY + run.user.len(),
            copied.iter().cloned(),
        );
        let copy_tags = Tags {
            contract: contract.clone(),
            user: Arc::clone(run.user),
            copied: on_copy,
        };
        let tags = Tags {
            contract,
            user: Arc::clone(run.user),
            copied,
        };
        Create {
            instance_id: instance_id.to_owned(),
            instance_name: instance_name.map(str::to_owned),
            volume_id: volume_id.to_owned(),
            device: device.to_owned(),
            description: describe(run.job, instance_id, instance_name, Some(device)),
            tags,
            dropped_tags: dropped,
            copy_tags,
            copy_dropped_tags,
        }
    }
}

/// A snapshot's description: `ebsnap job=JOB instance=ID (NAME)
/// device=DEVICE`, without the device for CreateSnapshots' set.
fn describe(job: &str, instance_id: &str, name: Option<&str>, device: Option<&str>) -> String {
    let mut text = format!("ebsnap job={job} instance={instance_id}");
    if let Some(name) = name {
        text.push_str(&format!(" ({name})"));
    }
    if let Some(device) = device {
        text.push_str(&format!(" device={device}"));
    }
    text
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Create, RunTags};

    use crate::config::Policy;
    use crate::inventory::Inventory;
    use crate::plan::build;
    use crate::plan::testing::{instance, now, pairs, policy, SNAPSHOT};
    use crate::values::CopyTags;

    #[test]
    fn create_carries_every_contract_tag_and_a_description() {
        let run = RunTags {
            job: "hourly",
            run_id: "r1",
            user: &Arc::default(),
        };
        let create = Create::new(
            "i-1",
            Some("mongo-1"),
            "vol-1",
            "/dev/xvdf",
            run,
            vec![],
            vec![],
        );
        let tags = create.tags.to_vec();
        let expected = [
            ("ebsnap:job", "hourly"),
            ("ebsnap:instance-id", "i-1"),
            ("ebsnap:device", "/dev/xvdf"),
            ("ebsnap:run-id", "r1"),
            ("Name", "mongo-1 /dev/xvdf"),
        ];
        assert_eq!(tags, expected.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert_eq!(
            create.description,
            "ebsnap job=hourly instance=i-1 (mongo-1) device=/dev/xvdf"
        );
        let unnamed = Create::new("i-1", None, "vol-1", "/dev/xvdf", run, vec![], vec![]);
        assert_eq!(unnamed.tags.to_vec()[4].1, "i-1 /dev/xvdf");
        assert_eq!(
            unnamed.description,
            "ebsnap job=hourly instance=i-1 device=/dev/xvdf"
        );
    }

    #[test]
    fn plan_copies_the_sources_tags_onto_each_create() {
        let mut web = instance("i-1", "true", &["vol-a"]);
        web.tags = pairs(&[("team", "web")]);
        let inventory = Inventory {
            instances: vec![web],
            volume_tags: [("vol-a".to_string(), pairs(&[("disk", "data")]))].into(),
            ..Inventory::default()
        };
        let both = Policy {
            copy_tags: Some(CopyTags::Both),
            ..policy()
        };
        let plan = build(inventory.clone(), &both, SNAPSHOT, "r1", now());
        assert_eq!(
            plan.creates[0].tags.copied,
            pairs(&[("disk", "data"), ("team", "web")])
        );
    }

    #[test]
    fn the_users_tags_go_on_every_create_after_the_contract_and_win_over_copied_ones() {
        let mut web = instance("i-1", "true", &["vol-a", "vol-b"]);
        web.tags = pairs(&[("Team", "web"), ("env", "prod")]);
        let inventory = Inventory {
            instances: vec![web],
            ..Inventory::default()
        };
        let tagged = Policy {
            user_tags: pairs(&[("CostCenter", "ops"), ("Team", "db")]),
            copy_tags: Some(CopyTags::Instance),
            ..policy()
        };
        let plan = build(inventory, &tagged, SNAPSHOT, "r1", now());
        assert_eq!(plan.creates.len(), 2);
        for create in &plan.creates {
            let tags = create.tags.to_vec();
            let keys: Vec<&str> = tags.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                keys,
                [
                    "ebsnap:job",
                    "ebsnap:instance-id",
                    "ebsnap:device",
                    "ebsnap:run-id",
                    "Name",
                    "CostCenter",
                    "Team",
                    "env"
                ],
                "one key once: the user's Team, not the instance's"
            );
            assert!(tags.contains(&("Team".into(), "db".into())));
            assert!(create.dropped_tags.is_empty());
        }
        assert!(
            std::sync::Arc::ptr_eq(&plan.creates[0].tags.user, &plan.creates[1].tags.user),
            "one copy for the whole plan"
        );
    }
}
