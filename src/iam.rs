//! `ebsnap iam-policy`: the least-privilege IAM policy for one job.
//!
//! Generated here rather than kept by hand, so it says exactly what the code
//! calls; examples/iam-policy.json is its output for the default job, and a
//! test keeps the two identical.

use serde_json::{json, Value};

use crate::inventory::TAG_JOB;

// Resource ARNs, from the Service Authorization Reference, "Actions,
// resources, and condition keys for Amazon EC2" (resource types table):
// `arn:${Partition}:ec2:${Region}:${Account}:volume/${VolumeId}`, and a
// snapshot's ARN has no account (`arn:${Partition}:ec2:${Region}::snapshot/${SnapshotId}`).
// The partition is a wildcard, so one policy serves aws, aws-cn and
// aws-us-gov (IAM User Guide, "IAM JSON policy elements: Resource": wildcards
// may stand in any segment of an ARN).
const VOLUMES: &str = "arn:*:ec2:*:*:volume/*";
const SNAPSHOTS: &str = "arn:*:ec2:*::snapshot/*";
const INSTANCES: &str = "arn:*:ec2:*:*:instance/*";

/// The create calls whose TagSpecifications IAM judges again as
/// `ec2:CreateTags` on the new resource, with `ec2:CreateAction` naming the
/// call (EC2 User Guide, "Grant permission to tag Amazon EC2 resources during
/// creation"): every call ebsnap makes that tags what it creates.
const TAGGING_CREATES: [&str; 4] = [
    "CreateSnapshot",
    "CreateSnapshots",
    "CopySnapshot",
    "CreateVolume",
];

/// The policy a role needs to run every ebsnap command for `job`.
///
/// It is the same whatever `--snapshot-tag` the job adds (and `--inherit-tags` copies):
/// its conditions name only what a request must carry (`aws:RequestTag/`
/// `ebsnap:job`: the request must tag the job's marker, and may carry other
/// tags too) and what a resource carries (`ec2:ResourceTag/...`), never
/// which keys a request may hold (`aws:TagKeys`). The tags of a create are
/// judged as `ec2:CreateTags` with `ec2:CreateAction`, and a statement with
/// that condition alone "allows users to ... apply any tags" during the
/// create (EC2 User Guide, "Grant permission to tag Amazon EC2 resources
/// during creation",
/// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html;
/// the condition keys: Service Authorization Reference, "Actions,
/// resources, and condition keys for Amazon EC2",
/// https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonec2.html).
/// Restricting the keys would need the user's keys and every key
/// `--inherit-tags` may copy, which no policy printed in advance can know.
pub(crate) fn policy(job: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "Discover",
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeInstances",
                    "ec2:DescribeLockedSnapshots",
                    "ec2:DescribeRegions",
                    "ec2:DescribeSnapshotTierStatus",
                    "ec2:DescribeSnapshots",
                    "ec2:DescribeVolumes"
                ],
                "Resource": "*"
            },
            {
                "Sid": "SnapshotAnyInstanceOrVolume",
                "Effect": "Allow",
                "Action": ["ec2:CreateSnapshot", "ec2:CreateSnapshots"],
                "Resource": [INSTANCES, VOLUMES]
            },
            {
                "Sid": "CreateOnlySnapshotsMarkedForThisJob",
                "Effect": "Allow",
                "Action": ["ec2:CreateSnapshot", "ec2:CreateSnapshots"],
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("aws:RequestTag/{TAG_JOB}"): job } }
            },
            {
                "Sid": "TagOnlyWhileCreating",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": [SNAPSHOTS, VOLUMES],
                "Condition": { "StringEquals": { "ec2:CreateAction": TAGGING_CREATES } }
            },
            {
                "Sid": "TagOnlyThisJobsSnapshots",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("ec2:ResourceTag/{TAG_JOB}"): job } }
            },
            {
                "Sid": "CopyOnlyThisJobsSnapshots",
                "Effect": "Allow",
                "Action": "ec2:CopySnapshot",
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("ec2:ResourceTag/{TAG_JOB}"): job } }
            },
            {
                "Sid": "CopiesMarkedForThisJob",
                "Effect": "Allow",
                "Action": "ec2:CopySnapshot",
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("aws:RequestTag/{TAG_JOB}"): job } }
            },
            {
                "Sid": "DeleteOnlyThisJobsSnapshots",
                "Effect": "Allow",
                "Action": "ec2:DeleteSnapshot",
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("ec2:ResourceTag/{TAG_JOB}"): job } }
            },
            {
                // --archive-after, and restore --from-archive. EBS User
                // Guide, "Required IAM permissions for archiving": the
                // snapshot is the resource of both.
                "Sid": "ArchiveAndBringBackOnlyThisJobsSnapshots",
                "Effect": "Allow",
                "Action": ["ec2:ModifySnapshotTier", "ec2:RestoreSnapshotTier"],
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("ec2:ResourceTag/{TAG_JOB}"): job } }
            },
            {
                "Sid": "RestoreVolumesFromThisJobsSnapshots",
                "Effect": "Allow",
                "Action": "ec2:CreateVolume",
                "Resource": SNAPSHOTS,
                "Condition": { "StringEquals": { format!("ec2:ResourceTag/{TAG_JOB}"): job } }
            },
            {
                "Sid": "CreateRestoredVolumes",
                "Effect": "Allow",
                "Action": "ec2:CreateVolume",
                "Resource": VOLUMES,
                "Condition": { "Null": { "aws:RequestTag/ebsnap:restored-from": "false" } }
            },
            {
                "Sid": "AttachOnlyRestoredVolumes",
                "Effect": "Allow",
                "Action": "ec2:AttachVolume",
                "Resource": VOLUMES,
                "Condition": { "Null": { "ec2:ResourceTag/ebsnap:restored-from": "false" } }
            },
            {
                "Sid": "AttachToAnyInstance",
                "Effect": "Allow",
                "Action": "ec2:AttachVolume",
                "Resource": INSTANCES
            }
        ]
    })
}

/// The policy as printed: pretty JSON and a final newline.
pub fn policy_text(job: &str) -> String {
    serde_json::to_string_pretty(&policy(job)).expect("a policy always serializes") + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_policy_is_the_default_jobs_policy() {
        assert_eq!(
            policy_text("default"),
            include_str!("../examples/iam-policy.json"),
            "regenerate it: cargo run -- iam-policy > examples/iam-policy.json"
        );
    }

    #[test]
    fn no_statement_limits_the_tag_keys_so_the_users_tags_are_allowed() {
        // `--snapshot-tag` (and `--inherit-tags`) put keys on snapshots that this policy
        // does not know: a condition on aws:TagKeys, or on a RequestTag of
        // another key, would deny them. Add one only with those keys.
        let text = policy_text("default");
        assert!(!text.contains("aws:TagKeys"), "{text}");
        let request_tags: Vec<&str> = text
            .match_indices("aws:RequestTag/")
            .map(|(at, _)| text[at..].split('"').next().unwrap_or_default())
            .collect();
        assert_eq!(
            request_tags,
            [
                "aws:RequestTag/ebsnap:job",
                "aws:RequestTag/ebsnap:job",
                "aws:RequestTag/ebsnap:restored-from"
            ],
            "only what a request must carry, never what else it may"
        );
    }

    #[test]
    fn the_job_name_narrows_creates_copies_deletes_and_restores() {
        let text = policy_text("hourly");
        assert_eq!(
            text.matches("\"ebsnap:job\"").count(),
            0,
            "keys carry the prefix"
        );
        assert_eq!(
            text.matches("/ebsnap:job\": \"hourly\"").count(),
            7,
            "{text}"
        );
        assert!(!text.contains("\"default\""), "{text}");
    }
}
