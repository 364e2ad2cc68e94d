//! The snapshot step: one CreateSnapshot per planned volume, with every tag
//! of the contract in the create call itself.
//!
//! CreateSnapshot has no client token: a blind retry after a lost answer
//! makes a second snapshot. So the SDK does not retry creates; this module
//! does, and after any failure that may have taken effect it first looks for
//! the volume's snapshot of this run (by its run-id tag) (safety rule 7).

use aws_sdk_ec2::types::{InstanceSpecification, ResourceType};
use futures_util::{stream, StreamExt};

use crate::aws::{dry_run_verdict, ec2_tags, error_text, tag_spec, MAX_IN_FLIGHT};
use crate::backup::control::{Executor, VolumeGates};
use crate::backup::hooks::{HookEnv, HookKind};
use crate::backup::retry::{
    create_with_retries, failure_of, made_one, no_retries, only_snapshot, retry, Attempt, Backoff,
    CallFailure, GaveUp, Retries,
};
use crate::config::Hooks;
use crate::inventory::TAG_INSTANCE_ID;
use crate::plan::{Create, SnapshotSet};
use crate::values::HookFailure;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CreateOutcome {
    Created {
        snapshot_id: String,
    },
    /// Dry run: EC2 confirmed the credentials may create it.
    Allowed,
    Failed {
        reason: String,
    },
    /// Created, but with `--wait` it ended in error or was still pending at
    /// the timeout: no good backup, so a failure of the run.
    Unfinished {
        snapshot_id: String,
        reason: String,
    },
}

impl CreateOutcome {
    /// Whether the volume has a new backup (or, in a dry run, may get one):
    /// only then may its old snapshots go (safety rule 3).
    pub(crate) fn is_good_backup(&self) -> bool {
        matches!(self, CreateOutcome::Created { .. } | CreateOutcome::Allowed)
    }
}

/// A hook that failed for an instance: a failure of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookFailed {
    pub instance_id: String,
    pub which: HookKind,
    pub reason: String,
}

/// The hooks of a run and the region they are told about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunHooks<'a> {
    pub hooks: &'a Hooks,
    pub region: &'a str,
}

/// Carries out (or, in a dry run, checks) every create, set by set: with
/// hooks, the pre-hook, the set's snapshot calls, and the post-hook as soon
/// as they return. At most `MAX_IN_FLIGHT` sets are at that stage at once.
/// The CreateTags that follow a CreateSnapshots run after it, outside that
/// limit: a tag that EC2 refuses while it does not show the new snapshot
/// yet, and that waits to be asked again, holds up neither the next set's
/// create nor the database the post-hook unlocks. As each volume's outcome
/// is known, its `gates` are settled, so its deletes start without waiting
/// for the others. Outcomes come back in the order of `creates`, with the
/// hooks' failures.
pub(crate) async fn create_all(
    exec: &Executor,
    creates: &[Create],
    sets: &[SnapshotSet],
    job: &str,
    run_id: &str,
    hooks: Option<RunHooks<'_>>,
    gates: Option<&VolumeGates>,
) -> (Vec<CreateOutcome>, Vec<HookFailed>) {
    let mut snapshotting = stream::iter(sets)
        .map(|set| snapshot_set(exec, creates, set, job, run_id, hooks))
        .buffer_unordered(MAX_IN_FLIGHT);
    let mut tagging = futures_util::stream::FuturesUnordered::new();
    let mut outcomes: Vec<Option<CreateOutcome>> = vec![None; creates.len()];
    let mut failures = Vec::new();
    let mut settle = |index: usize, outcome: CreateOutcome| {
        if let Some(gates) = gates {
            gates.settle(&creates[index].volume_id, outcome.is_good_backup());
        }
        outcomes[index] = Some(outcome);
    };
    loop {
        tokio::select! {
            Some(set) = snapshotting.next() => {
                for (index, outcome) in set.outcomes {
                    settle(index, outcome);
                }
                failures.extend(set.hook_failures);
                for (index, snapshot_id) in set.to_tag {
                    let create = &creates[index];
                    tagging.push(async move {
                        (index, tag_made(exec, snapshot_id, create).await)
                    });
                }
            }
            Some((index, outcome)) = tagging.next() => settle(index, outcome),
            else => break,
        }
    }
    let outcomes = outcomes.into_iter().map(|o| {
        o.unwrap_or(CreateOutcome::Failed {
            reason: "in no snapshot set".into(),
        })
    });
    (outcomes.collect(), failures)
}

/// What one set's snapshot stage left: the outcomes known, the hooks'
/// failures, and the snapshots CreateSnapshots made that still need their
/// per-volume tags (by index into the run's creates).
struct SetOutcome {
    outcomes: Vec<(usize, CreateOutcome)>,
    hook_failures: Vec<HookFailed>,
    to_tag: Vec<(usize, String)>,
}

/// A snapshot CreateSnapshots made, once its per-volume tags are on.
async fn tag_made(exec: &Executor, snapshot_id: String, create: &Create) -> CreateOutcome {
    match tag_snapshot(exec, &snapshot_id, create).await {
        Ok(()) => {
            tracing::info!(snapshot = %snapshot_id, volume = %create.volume_id, "created snapshot");
            CreateOutcome::Created { snapshot_id }
        }
        Err(reason) => CreateOutcome::Unfinished {
            snapshot_id,
            reason: format!("created, but tagging it failed: {reason}"),
        },
    }
}

async fn snapshot_set(
    exec: &Executor,
    creates: &[Create],
    set: &SnapshotSet,
    job: &str,
    run_id: &str,
    hooks: Option<RunHooks<'_>>,
) -> SetOutcome {
    let all = |outcome: CreateOutcome| -> Vec<(usize, CreateOutcome)> {
        set.creates.iter().map(|&i| (i, outcome.clone())).collect()
    };
    // Nothing starts once the run is stopped: no pre-hook, so no post-hook.
    if let Err(reason) = exec.stop.check() {
        return SetOutcome {
            outcomes: all(CreateOutcome::Failed { reason }),
            hook_failures: vec![],
            to_tag: vec![],
        };
    }
    let first = &creates[set.creates[0]];
    let env = hooks.map(|h| HookEnv {
        instance_id: set.instance_id.clone(),
        instance_name: first.instance_name.clone(),
        region: h.region.to_owned(),
        job: job.to_owned(),
    });
    let mut failures = Vec::new();
    let mut skip = None;
    if let (Some(RunHooks { hooks, .. }), Some(env)) = (hooks, &env) {
        if let Some(pre) = &hooks.pre {
            if let Err(reason) =
                crate::backup::hooks::run(pre, HookKind::PreHook, env, hooks.timeout).await
            {
                if hooks.on_failure == HookFailure::Skip {
                    skip = Some(format!("not snapshotted: {reason}"));
                }
                failures.push(HookFailed {
                    instance_id: set.instance_id.clone(),
                    which: HookKind::PreHook,
                    reason,
                });
            }
        }
    }
    let (outcomes, to_tag) = match skip {
        Some(reason) => (all(CreateOutcome::Failed { reason }), vec![]),
        None if exec.per_volume => {
            let each = set
                .creates
                .iter()
                .map(|&i| async move { (i, create_one(exec, &creates[i], run_id).await) });
            (futures_util::future::join_all(each).await, vec![])
        }
        None => create_at_once(exec, creates, set, run_id).await,
    };
    if let (Some(RunHooks { hooks, .. }), Some(env)) = (hooks, &env) {
        if let Some(post) = &hooks.post {
            if let Err(reason) =
                crate::backup::hooks::run(post, HookKind::PostHook, env, hooks.timeout).await
            {
                failures.push(HookFailed {
                    instance_id: set.instance_id.clone(),
                    which: HookKind::PostHook,
                    reason,
                });
            }
        }
    }
    SetOutcome {
        outcomes,
        hook_failures: failures,
        to_tag,
    }
}

/// What a set's CreateSnapshots left: the outcomes known (by index into the
/// run's creates), and the snapshots made that still need their tags.
type MadeAtOnce = (Vec<(usize, CreateOutcome)>, Vec<(usize, String)>);

/// A set by one CreateSnapshots call: all its volumes at one instant. The
/// marker, instance and run id, and the user's tags (`--snapshot-tag`), go in the
/// call; each snapshot's device, Name and copied tags follow in one CreateTags each (CreateSnapshots tags all
/// of an instance's snapshots alike), which `create_all` sends. The call
/// has no client token either, so a lost answer is followed by a look for
/// the instance's snapshots of this run before any new attempt (safety
/// rule 7).
async fn create_at_once(
    exec: &Executor,
    creates: &[Create],
    set: &SnapshotSet,
    run_id: &str,
) -> MadeAtOnce {
    let all = |outcome: CreateOutcome| -> MadeAtOnce {
        (
            set.creates.iter().map(|&i| (i, outcome.clone())).collect(),
            vec![],
        )
    };
    if exec.dry_run {
        if let Err(reason) = exec.create_pacer.acquire(&exec.stop).await {
            return all(CreateOutcome::Failed { reason });
        }
        return all(match dry_run_verdict(set_request(exec, set).send().await) {
            Ok(()) => CreateOutcome::Allowed,
            Err(reason) => CreateOutcome::Failed { reason },
        });
    }
    let send = || async {
        let output = set_request(exec, set)
            .customize()
            .config_override(no_retries())
            .send()
            .await?;
        Ok(output
            .snapshots()
            .iter()
            .filter_map(|s| Some((s.volume_id()?.to_owned(), s.snapshot_id()?.to_owned())))
            .collect())
    };
    let lookup = (TAG_INSTANCE_ID, set.instance_id.as_str());
    let expected: Vec<&str> = set
        .creates
        .iter()
        .map(|&i| creates[i].volume_id.as_str())
        .collect();
    let made =
        match create_with_retries(exec, send, lookup, &expected, run_id, "the snapshots").await {
            Ok(made) => made,
            Err(reason) => return all(CreateOutcome::Failed { reason }),
        };
    let mut outcomes = Vec::new();
    let mut to_tag = Vec::new();
    for &i in &set.creates {
        match made
            .iter()
            .find(|(volume, _)| *volume == creates[i].volume_id)
        {
            Some((_, snapshot_id)) => to_tag.push((i, snapshot_id.clone())),
            None => outcomes.push((
                i,
                CreateOutcome::Failed {
                    reason: "CreateSnapshots made no snapshot of this volume".into(),
                },
            )),
        }
    }
    (outcomes, to_tag)
}

fn set_request(
    exec: &Executor,
    set: &SnapshotSet,
) -> aws_sdk_ec2::operation::create_snapshots::builders::CreateSnapshotsFluentBuilder {
    exec.client
        .create_snapshots()
        .instance_specification(
            InstanceSpecification::builder()
                .instance_id(&set.instance_id)
                .exclude_boot_volume(set.exclude_boot)
                .set_exclude_data_volume_ids(
                    (!set.exclude_data_volume_ids.is_empty())
                        .then(|| set.exclude_data_volume_ids.clone()),
                )
                .build(),
        )
        .description(&set.description)
        .tag_specifications(tag_spec(ResourceType::Snapshot, set.tags.iter().cloned()))
        .dry_run(exec.dry_run)
}

/// The per-volume half of the tag contract on a snapshot CreateSnapshots
/// made: device, Name and copied tags (the whole contract, so a snapshot
/// found after a lost answer gets everything). Tagging twice is harmless,
/// so every failure that may pass is tried again, by ebsnap itself and each
/// attempt through the CreateTags bucket, as a create is (the SDK's own
/// retries would go round the bucket and throttle the calls after them):
/// throttled or lost, after a backoff; `InvalidSnapshot.NotFound`, EC2 not
/// showing the new snapshot yet right after its create, through the settle
/// window.
async fn tag_snapshot(exec: &Executor, snapshot_id: &str, create: &Create) -> Result<(), String> {
    // Tagging completes a create already made, so it goes ahead even once
    // the run is stopped: unpaced then, its waits not cut short.
    let retries = Retries {
        stoppable: false,
        ..exec.retries(&exec.tag_pacer)
    };
    let tagged = retry(retries, async |attempt| {
        let err = match exec
            .client
            .create_tags()
            .resources(snapshot_id)
            .set_tags(Some(ec2_tags(create.tags.iter().cloned())))
            .customize()
            .config_override(no_retries())
            .send()
            .await
        {
            Ok(_) => return Attempt::Done(()),
            Err(err) => err,
        };
        let reason = error_text(&err);
        tracing::info!(snapshot = snapshot_id, attempt, %reason, "tagging failed");
        match failure_of(&err) {
            CallFailure::NotVisibleYet => Attempt::Retry(Backoff::Settle, reason),
            CallFailure::Throttled | CallFailure::MaybeApplied => {
                Attempt::Retry(Backoff::Standard, reason)
            }
            _ => Attempt::Failed(reason),
        }
    })
    .await;
    tagged.map_err(GaveUp::reason)
}

async fn create_one(exec: &Executor, create: &Create, run_id: &str) -> CreateOutcome {
    if exec.dry_run {
        if let Err(reason) = exec.create_pacer.acquire(&exec.stop).await {
            return CreateOutcome::Failed { reason };
        }
        return match dry_run_verdict(create_request(exec, create).send().await) {
            Ok(()) => CreateOutcome::Allowed,
            Err(reason) => CreateOutcome::Failed { reason },
        };
    }
    let send = || async {
        let output = create_request(exec, create)
            .customize()
            .config_override(no_retries())
            .send()
            .await?;
        Ok(made_one(&create.volume_id, output.snapshot_id()))
    };
    let lookup = ("volume-id", create.volume_id.as_str());
    let expected = [create.volume_id.as_str()];
    match only_snapshot(
        create_with_retries(exec, send, lookup, &expected, run_id, "the snapshot").await,
    ) {
        Ok(snapshot_id) => {
            tracing::info!(snapshot = %snapshot_id, volume = %create.volume_id, "created snapshot");
            CreateOutcome::Created { snapshot_id }
        }
        Err(reason) => CreateOutcome::Failed { reason },
    }
}

fn create_request(
    exec: &Executor,
    create: &Create,
) -> aws_sdk_ec2::operation::create_snapshot::builders::CreateSnapshotFluentBuilder {
    exec.client
        .create_snapshot()
        .volume_id(&create.volume_id)
        .description(&create.description)
        .tag_specifications(tag_spec(
            ResourceType::Snapshot,
            create.tags.iter().cloned(),
        ))
        .dry_run(exec.dry_run)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    use crate::aws::testing::{ec2_error, ec2_error_body};
    use crate::backup::control::test_executor;
    use crate::inventory::AttachedVolume;
    use crate::plan::RunTags;
    use aws_sdk_ec2::operation::create_snapshot::{
        CreateSnapshotError, CreateSnapshotInput, CreateSnapshotOutput,
    };
    use aws_sdk_ec2::operation::create_snapshots::{CreateSnapshotsError, CreateSnapshotsOutput};
    use aws_sdk_ec2::operation::create_tags::{CreateTagsError, CreateTagsOutput};
    use aws_sdk_ec2::operation::describe_snapshots::{
        DescribeSnapshotsError, DescribeSnapshotsInput, DescribeSnapshotsOutput,
    };
    use aws_sdk_ec2::types::Snapshot;
    use aws_sdk_ec2::types::SnapshotInfo;
    use aws_sdk_ec2::Client;
    use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};

    /// The volumes whose create made no good backup.
    fn failed_volumes(creates: &[Create], outcomes: &[CreateOutcome]) -> HashSet<String> {
        creates
            .iter()
            .zip(outcomes)
            .filter(|(_, outcome)| !outcome.is_good_backup())
            .map(|(create, _)| create.volume_id.clone())
            .collect()
    }

    /// The creates of one instance as one set, as the plan makes them.
    fn set_of(creates: &[Create]) -> Vec<SnapshotSet> {
        vec![set("i-1", creates, (0..creates.len()).collect(), &[])]
    }

    async fn run_creates(
        exec: &Executor,
        creates: &[Create],
        job: &str,
        run_id: &str,
    ) -> Vec<CreateOutcome> {
        create_all(exec, creates, &set_of(creates), job, run_id, None, None)
            .await
            .0
    }

    async fn with_hooks(
        exec: &Executor,
        creates: &[Create],
        job: &str,
        run_id: &str,
        hooks: &Hooks,
        region: &str,
    ) -> (Vec<CreateOutcome>, Vec<HookFailed>) {
        create_all(
            exec,
            creates,
            &set_of(creates),
            job,
            run_id,
            Some(RunHooks { hooks, region }),
            None,
        )
        .await
    }

    /// The create of `volume` at /dev/sdf of i-1 (redis-1), planned for
    /// job `default`, run `run-1`.
    fn create(volume: &str) -> Create {
        create_in("default", volume)
    }

    fn create_in(job: &str, volume: &str) -> Create {
        planned_create(job, volume, &Default::default(), vec![])
    }

    /// The create of `volume` at /dev/sdf of i-1 (redis-1) for `job`, run
    /// `run-1`, with the user's tags `user` and the copied tags `copied`.
    fn planned_create(
        job: &str,
        volume: &str,
        user: &std::sync::Arc<[(String, String)]>,
        copied: Vec<(String, String)>,
    ) -> Create {
        let run = RunTags {
            job,
            run_id: "run-1",
            user,
        };
        Create::new(
            "i-1",
            Some("redis-1"),
            volume,
            "/dev/sdf",
            run,
            copied,
            vec![],
        )
    }

    /// The set of `instance_id`'s creates at `indices`, leaving out `left_out`,
    /// as the plan makes it for job `default`, run `run-1`, with the user's
    /// tags of the first create.
    fn set(
        instance_id: &str,
        creates: &[Create],
        indices: Vec<usize>,
        left_out: &[&AttachedVolume],
    ) -> SnapshotSet {
        let run = RunTags {
            job: "default",
            run_id: "run-1",
            user: &creates[indices[0]].tags.user,
        };
        SnapshotSet::new(instance_id, Some("redis-1"), indices, left_out, run)
    }

    fn created(id: &'static str) -> impl Fn() -> CreateSnapshotOutput + Send + Sync + 'static {
        move || CreateSnapshotOutput::builder().snapshot_id(id).build()
    }

    /// A DescribeSnapshots that looks for this run's snapshot of vol-1.
    fn lookup(req: &DescribeSnapshotsInput) -> bool {
        let has = |name: &str, value: &str| {
            req.filters()
                .iter()
                .any(|f| f.name() == Some(name) && f.values().iter().any(|v| v == value))
        };
        req.owner_ids() == ["self"]
            && has("tag:ebsnap:run-id", "run-1")
            && has("volume-id", "vol-1")
    }

    fn ec2_snapshot(volume: &str, id: &str) -> Snapshot {
        Snapshot::builder()
            .snapshot_id(id)
            .volume_id(volume)
            .build()
    }

    /// vol-1's create, as a run makes it, against these two rules.
    async fn create_vol1(create_rule: &Rule, lookup_rule: &Rule) -> Vec<CreateOutcome> {
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [create_rule, lookup_rule]);
        run_creates(
            &test_executor(client, false),
            &[create("vol-1")],
            "default",
            "run-1",
        )
        .await
    }

    fn lookup_finding(found: Option<&'static str>) -> Rule {
        mock!(Client::describe_snapshots)
            .match_requests(lookup)
            .then_output(move || {
                let snapshots = found.map(|id| {
                    Snapshot::builder()
                        .snapshot_id(id)
                        .volume_id("vol-1")
                        .build()
                });
                DescribeSnapshotsOutput::builder()
                    .set_snapshots(snapshots.map(|s| vec![s]))
                    .build()
            })
    }

    fn requested_tags(req: &CreateSnapshotInput) -> Vec<(String, String)> {
        req.tag_specifications()
            .iter()
            .filter(|spec| spec.resource_type() == Some(&ResourceType::Snapshot))
            .flat_map(|spec| spec.tags())
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_owned(),
                    t.value().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn every_contract_tag_is_set_in_the_create_call() {
        let rule = mock!(Client::create_snapshot)
            .match_requests(|req| {
                req.dry_run() == Some(false)
                    && req.description()
                        == Some("ebsnap job=nightly instance=i-1 (redis-1) device=/dev/sdf")
                    && requested_tags(req)
                        == [
                            ("ebsnap:job", "nightly"),
                            ("ebsnap:instance-id", "i-1"),
                            ("ebsnap:device", "/dev/sdf"),
                            ("ebsnap:run-id", "run-1"),
                            ("Name", "redis-1 /dev/sdf"),
                        ]
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .then_output(created("snap-new"));
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), false);

        let outcomes =
            run_creates(&exec, &[create_in("nightly", "vol-1")], "nightly", "run-1").await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-new".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_throttled_create_is_retried_without_a_lookup() {
        let create_rule = mock!(Client::create_snapshot)
            .sequence()
            .http_status(503, ec2_error_body("RequestLimitExceeded"))
            .times(2)
            .output(created("snap-1"))
            .build();
        let lookup_rule = lookup_finding(None);
        let outcomes = create_vol1(&create_rule, &lookup_rule).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-1".into()
            }]
        );
        assert_eq!(create_rule.num_calls(), 3);
        assert_eq!(
            lookup_rule.num_calls(),
            0,
            "a throttled call never took effect"
        );
    }

    #[tokio::test]
    async fn a_create_whose_answer_was_lost_is_found_instead_of_made_twice() {
        // EC2 made the snapshot, then the answer was lost (500).
        let create_rule = mock!(Client::create_snapshot)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .output(created("snap-second"))
            .build();
        let lookup_rule = lookup_finding(Some("snap-made"));
        let outcomes = create_vol1(&create_rule, &lookup_rule).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-made".into()
            }]
        );
        assert_eq!(
            create_rule.num_calls(),
            1,
            "never a second create once the snapshot exists"
        );
        assert_eq!(lookup_rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn a_lost_create_that_made_nothing_is_tried_again() {
        let create_rule = mock!(Client::create_snapshot)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .output(created("snap-2"))
            .build();
        let lookup_rule = lookup_finding(None);
        let outcomes = create_vol1(&create_rule, &lookup_rule).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-2".into()
            }]
        );
        // The look that found nothing was asked again through the settle
        // window before it counted: EC2's describes lag behind its state.
        let looks = 1 + test_executor(mock_client!(aws_sdk_ec2, []), false)
            .retry
            .settle_delays()
            .count();
        assert!(looks > 1);
        assert_eq!(
            (create_rule.num_calls(), lookup_rule.num_calls()),
            (2, looks)
        );
    }

    #[tokio::test]
    async fn a_look_that_fails_once_is_made_again_and_finds_the_snapshot() {
        // A loaded endpoint: the first look after the lost answer fails, the
        // next one finds what the create made. No second create.
        let create_rule = mock!(Client::create_snapshot)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .output(created("snap-dup"))
            .build();
        let lookup_rule = mock!(Client::describe_snapshots)
            .match_requests(lookup)
            .sequence()
            .http_status(400, ec2_error_body("RequestTimeout"))
            .output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot("vol-1", "snap-1"))
                    .build()
            })
            .build();
        let outcomes = create_vol1(&create_rule, &lookup_rule).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-1".into()
            }]
        );
        assert_eq!((create_rule.num_calls(), lookup_rule.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn when_the_last_attempts_answer_is_lost_a_last_look_finds_it() {
        let exec_attempts = test_executor(mock_client!(aws_sdk_ec2, []), false)
            .retry
            .max_attempts as usize;
        let looks_per_round = 1 + test_executor(mock_client!(aws_sdk_ec2, []), false)
            .retry
            .settle_delays()
            .count();
        // Every attempt's answer is lost; only the last one took effect.
        let create_rule = mock!(Client::create_snapshot)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .times(exec_attempts)
            .build();
        let lookup_rule = mock!(Client::describe_snapshots)
            .match_requests(lookup)
            .sequence()
            .output(|| DescribeSnapshotsOutput::builder().build())
            .times((exec_attempts - 1) * looks_per_round)
            .output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot("vol-1", "snap-last"))
                    .build()
            })
            .build();
        let outcomes = create_vol1(&create_rule, &lookup_rule).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-last".into()
            }]
        );
        assert_eq!(create_rule.num_calls(), exec_attempts);
    }

    #[tokio::test]
    async fn a_failed_lookup_gives_up_rather_than_risk_a_duplicate() {
        let create_rule = mock!(Client::create_snapshot)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .output(created("snap-dup"))
            .build();
        let lookup_rule = mock!(Client::describe_snapshots).then_error(|| {
            DescribeSnapshotsError::generic(ec2_error("UnauthorizedOperation", "no describe"))
        });
        let outcomes = create_vol1(&create_rule, &lookup_rule).await;

        assert_eq!(create_rule.num_calls(), 1);
        let CreateOutcome::Failed { reason } = &outcomes[0] else {
            panic!("{outcomes:?}")
        };
        assert!(
            reason.contains("looking for the snapshot it may have made failed"),
            "{reason}"
        );
    }
    #[tokio::test]
    async fn a_busy_volume_waits_and_tries_again_while_others_go_on() {
        let busy = mock!(Client::create_snapshot)
            .match_requests(|req| req.volume_id() == Some("vol-busy"))
            .sequence()
            .error(|| {
                CreateSnapshotError::generic(ec2_error(
                    "SnapshotCreationPerVolumeRateExceeded",
                    "too soon",
                ))
            })
            .error(|| {
                CreateSnapshotError::generic(ec2_error(
                    "ConcurrentSnapshotLimitExceeded",
                    "5 pending",
                ))
            })
            .output(created("snap-busy"))
            .build();
        let free = mock!(Client::create_snapshot)
            .match_requests(|req| req.volume_id() == Some("vol-free"))
            .then_output(created("snap-free"));
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&busy, &free]);

        let outcomes = run_creates(
            &test_executor(client, false),
            &[create("vol-busy"), create("vol-free")],
            "default",
            "run-1",
        )
        .await;

        assert_eq!(
            outcomes,
            [
                CreateOutcome::Created {
                    snapshot_id: "snap-busy".into()
                },
                CreateOutcome::Created {
                    snapshot_id: "snap-free".into()
                },
            ]
        );
        assert_eq!((busy.num_calls(), free.num_calls()), (3, 1));
    }

    #[tokio::test]
    async fn a_refused_create_is_not_retried_and_fails_that_volume_only() {
        let ok = mock!(Client::create_snapshot)
            .match_requests(|req| req.volume_id() == Some("vol-a"))
            .then_output(created("snap-a"));
        let refused = mock!(Client::create_snapshot)
            .match_requests(|req| req.volume_id() == Some("vol-b"))
            .then_http_response(|| {
                aws_sdk_ec2::config::http::HttpResponse::new(
                    400.try_into().unwrap(),
                    ec2_error_body("IncorrectState").unwrap().into(),
                )
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&ok, &refused]);
        let creates = [create("vol-a"), create("vol-b")];

        let outcomes =
            run_creates(&test_executor(client, false), &creates, "default", "run-1").await;

        assert_eq!(
            outcomes[0],
            CreateOutcome::Created {
                snapshot_id: "snap-a".into()
            }
        );
        assert_eq!(
            outcomes[1],
            CreateOutcome::Failed {
                reason: "IncorrectState: IncorrectState happened".into()
            }
        );
        assert_eq!(refused.num_calls(), 1);
        assert_eq!(
            failed_volumes(&creates, &outcomes),
            HashSet::from(["vol-b".to_string()])
        );
    }

    #[tokio::test]
    async fn dry_run_reports_per_action_whether_it_is_permitted() {
        let allowed = mock!(Client::create_snapshot)
            .match_requests(|req| req.dry_run() == Some(true) && req.volume_id() == Some("vol-ok"))
            .then_error(|| {
                CreateSnapshotError::generic(ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded",
                ))
            });
        let denied = mock!(Client::create_snapshot)
            .match_requests(|req| {
                req.dry_run() == Some(true) && req.volume_id() == Some("vol-denied")
            })
            .then_error(|| {
                CreateSnapshotError::generic(ec2_error(
                    "UnauthorizedOperation",
                    "You are not authorized to perform this operation.",
                ))
            });
        let client = mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&allowed, &denied]);
        let creates = [create("vol-ok"), create("vol-denied")];

        let outcomes =
            run_creates(&test_executor(client, true), &creates, "default", "run-1").await;

        assert_eq!(
            outcomes,
            [
                CreateOutcome::Allowed,
                CreateOutcome::Failed {
                    reason: "not permitted: UnauthorizedOperation: You are not authorized to perform this operation.".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn an_interrupted_run_starts_no_create() {
        let rule = mock!(Client::create_snapshot).then_output(created("snap-1"));
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), false);
        exec.stop.interrupt();

        let outcomes = run_creates(&exec, &[create("vol-1")], "default", "run-1").await;

        assert!(
            matches!(&outcomes[0], CreateOutcome::Failed { reason } if reason.contains("interrupted"))
        );
        assert_eq!(rule.num_calls(), 0);
    }

    /// Hooks that append `pre-<instance>` / `post-<instance>` to `log`.
    fn logging_hooks(log: &std::path::Path, pre: &str, on_failure: HookFailure) -> Hooks {
        Hooks {
            pre: Some(format!(
                "{pre}echo pre-$EBSNAP_INSTANCE_ID >> {}",
                log.display()
            )),
            post: Some(format!(
                "echo post-$EBSNAP_INSTANCE_ID >> {}",
                log.display()
            )),
            timeout: std::time::Duration::from_secs(10),
            on_failure,
        }
    }

    fn hook_log(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("ebsnap-hooks-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// A create that records itself in the hooks' log, so the order shows.
    fn logged_create(log: &std::path::Path) -> Rule {
        let log = log.to_owned();
        mock!(Client::create_snapshot)
            .match_requests(move |req| {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(&log)
                    .unwrap();
                writeln!(file, "create-{}", req.volume_id().unwrap_or_default()).unwrap();
                true
            })
            .then_output(created("snap-1"))
    }

    #[tokio::test]
    async fn hooks_run_pre_then_the_instances_creates_then_post() {
        let log = hook_log("order");
        let rule = logged_create(&log);
        let exec = test_executor(
            mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&rule]),
            false,
        );
        let hooks = logging_hooks(&log, "", HookFailure::Snapshot);

        let (outcomes, failures) = with_hooks(
            &exec,
            &[create("vol-a"), create("vol-b")],
            "default",
            "run-1",
            &hooks,
            "us-east-1",
        )
        .await;

        let order = lines(&log);
        assert_eq!(
            order.first().map(String::as_str),
            Some("pre-i-1"),
            "{order:?}"
        );
        assert_eq!(
            order.last().map(String::as_str),
            Some("post-i-1"),
            "{order:?}"
        );
        let mut middle = order[1..order.len() - 1].to_vec();
        middle.sort();
        assert_eq!(middle, ["create-vol-a", "create-vol-b"]);
        assert!(outcomes
            .iter()
            .all(|o| matches!(o, CreateOutcome::Created { .. })));
        assert!(failures.is_empty());
        let _ = std::fs::remove_file(log);
    }

    #[tokio::test]
    async fn a_failed_pre_hook_snapshots_anyway_and_fails_the_run_or_skips_the_instance() {
        let log = hook_log("pre-fails");
        let rule = logged_create(&log);
        let exec = test_executor(
            mock_client!(aws_sdk_ec2, RuleMode::MatchAny, [&rule]),
            false,
        );

        let anyway = logging_hooks(&log, "exit 4; ", HookFailure::Snapshot);
        let (outcomes, failures) =
            with_hooks(&exec, &[create("vol-a")], "default", "run-1", &anyway, "r").await;
        assert!(
            matches!(outcomes[0], CreateOutcome::Created { .. }),
            "crash-consistent snapshot all the same"
        );
        assert_eq!(failures[0].which, HookKind::PreHook);
        assert!(
            failures[0]
                .reason
                .starts_with("the pre-hook failed (exit status: 4)"),
            "{:?}",
            failures
        );
        assert_eq!(
            lines(&log),
            ["create-vol-a", "post-i-1"],
            "the post-hook runs after a failed pre-hook"
        );

        let _ = std::fs::remove_file(&log);
        let skip = logging_hooks(&log, "exit 4; ", HookFailure::Skip);
        let (outcomes, failures) =
            with_hooks(&exec, &[create("vol-a")], "default", "run-1", &skip, "r").await;
        assert!(
            matches!(&outcomes[0], CreateOutcome::Failed { reason } if reason.starts_with("not snapshotted: the pre-hook failed"))
        );
        assert_eq!(failures.len(), 1);
        assert_eq!(
            lines(&log),
            ["post-i-1"],
            "no create, but the post-hook still runs"
        );
        assert_eq!(rule.num_calls(), 1, "only the first round created");
        let _ = std::fs::remove_file(log);
    }

    #[tokio::test]
    async fn the_post_hook_runs_after_a_failed_create() {
        let log = hook_log("create-fails");
        let rule = mock!(Client::create_snapshot).then_error(|| {
            CreateSnapshotError::generic(ec2_error("IncorrectState", "volume busy"))
        });
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), false);
        let hooks = logging_hooks(&log, "", HookFailure::Snapshot);

        let (outcomes, failures) =
            with_hooks(&exec, &[create("vol-a")], "default", "run-1", &hooks, "r").await;

        assert!(matches!(outcomes[0], CreateOutcome::Failed { .. }));
        assert!(failures.is_empty());
        assert_eq!(lines(&log), ["pre-i-1", "post-i-1"]);
        let _ = std::fs::remove_file(log);
    }

    #[tokio::test]
    async fn an_interrupt_during_the_pre_hook_starts_no_create_but_runs_the_post_hook() {
        let log = hook_log("interrupted");
        let rule = logged_create(&log);
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), false);
        let hooks = logging_hooks(&log, "sleep 0.5; ", HookFailure::Snapshot);
        let stop = exec.stop.clone();
        let interrupter = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            stop.interrupt();
        });

        let (outcomes, _) =
            with_hooks(&exec, &[create("vol-a")], "default", "run-1", &hooks, "r").await;
        interrupter.await.unwrap();

        assert!(
            matches!(&outcomes[0], CreateOutcome::Failed { reason } if reason.contains("interrupted")),
            "{outcomes:?}"
        );
        assert_eq!(rule.num_calls(), 0);
        assert_eq!(
            lines(&log),
            ["pre-i-1", "post-i-1"],
            "the pre-hook finishes, then the post-hook runs"
        );
        let _ = std::fs::remove_file(log);
    }

    fn at_once(client: Client) -> Executor {
        let mut exec = test_executor(client, false);
        exec.per_volume = false;
        exec
    }

    fn made(
        pairs: &'static [(&'static str, &'static str)],
    ) -> impl Fn() -> CreateSnapshotsOutput + Send + Sync + 'static {
        move || {
            let infos = pairs.iter().map(|(volume, snapshot)| {
                SnapshotInfo::builder()
                    .volume_id(*volume)
                    .snapshot_id(*snapshot)
                    .build()
            });
            CreateSnapshotsOutput::builder()
                .set_snapshots(Some(infos.collect()))
                .build()
        }
    }

    fn tags_ok() -> Rule {
        mock!(Client::create_tags).then_output(|| CreateTagsOutput::builder().build())
    }

    fn set_with_exclusions(creates: &[Create]) -> Vec<SnapshotSet> {
        let root = AttachedVolume {
            volume_id: "vol-root".into(),
            device: "/dev/xvda".into(),
            is_root: true,
        };
        let scratch = AttachedVolume {
            volume_id: "vol-scratch".into(),
            device: "/dev/sdg".into(),
            is_root: false,
        };
        vec![set(
            "i-1",
            creates,
            (0..creates.len()).collect(),
            &[&root, &scratch],
        )]
    }

    #[tokio::test]
    async fn an_instance_is_snapshotted_at_one_instant_then_each_snapshot_tagged() {
        let set_call = mock!(Client::create_snapshots)
            .match_requests(|req| {
                let spec = req.instance_specification().unwrap();
                let tags: Vec<_> = req
                    .tag_specifications()
                    .iter()
                    .flat_map(|t| t.tags())
                    .map(|t| t.key().unwrap_or_default())
                    .collect();
                spec.instance_id() == Some("i-1")
                    && spec.exclude_boot_volume() == Some(true)
                    && spec.exclude_data_volume_ids() == ["vol-scratch"]
                    && tags == ["ebsnap:job", "ebsnap:instance-id", "ebsnap:run-id"]
                    && req.description() == Some("ebsnap job=default instance=i-1 (redis-1)")
            })
            .then_output(made(&[("vol-a", "snap-a"), ("vol-b", "snap-b")]));
        let tag_calls = mock!(Client::create_tags)
            .match_requests(|req| {
                let keys: Vec<_> = req
                    .tags()
                    .iter()
                    .map(|t| t.key().unwrap_or_default())
                    .collect();
                req.resources().len() == 1
                    && keys.contains(&"ebsnap:device")
                    && keys.contains(&"Name")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &tag_calls]
        ));
        let creates = [create("vol-a"), create("vol-b")];

        let (outcomes, _) = create_all(
            &exec,
            &creates,
            &set_with_exclusions(&creates),
            "default",
            "run-1",
            None,
            None,
        )
        .await;

        assert_eq!(
            outcomes,
            [
                CreateOutcome::Created {
                    snapshot_id: "snap-a".into()
                },
                CreateOutcome::Created {
                    snapshot_id: "snap-b".into()
                },
            ]
        );
        assert_eq!(
            (set_call.num_calls(), tag_calls.num_calls()),
            (1, 2),
            "1 + N calls per instance"
        );
    }

    /// vol-a and vol-b of i-1, planned with the user's tags
    /// `--snapshot-tag CostCenter=ops --snapshot-tag Team=db` and one copied tag.
    fn creates_with_user_tags() -> [Create; 2] {
        let user_tags: std::sync::Arc<[(String, String)]> = [
            ("CostCenter".to_owned(), "ops".to_owned()),
            ("Team".to_owned(), "db".to_owned()),
        ]
        .into();
        ["vol-a", "vol-b"].map(|volume| {
            planned_create(
                "default",
                volume,
                &user_tags,
                vec![("env".into(), "prod".into())],
            )
        })
    }

    #[tokio::test]
    async fn the_users_tags_are_in_the_create_snapshots_call_itself() {
        // Not left to the CreateTags that follow: a snapshot is never
        // without its cost-allocation tags, even when those fail.
        let set_call = mock!(Client::create_snapshots)
            .match_requests(|req| {
                let tags: Vec<(&str, &str)> = req
                    .tag_specifications()
                    .iter()
                    .filter(|spec| spec.resource_type() == Some(&ResourceType::Snapshot))
                    .flat_map(|t| t.tags())
                    .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
                    .collect();
                tags == [
                    ("ebsnap:job", "default"),
                    ("ebsnap:instance-id", "i-1"),
                    ("ebsnap:run-id", "run-1"),
                    ("CostCenter", "ops"),
                    ("Team", "db"),
                ]
            })
            .then_output(made(&[("vol-a", "snap-a"), ("vol-b", "snap-b")]));
        let tag_calls = mock!(Client::create_tags)
            .match_requests(|req| {
                let keys: Vec<_> = req
                    .tags()
                    .iter()
                    .map(|t| t.key().unwrap_or_default())
                    .collect();
                keys.ends_with(&["Name", "CostCenter", "Team", "env"])
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &tag_calls]
        ));
        let creates = creates_with_user_tags();

        let (outcomes, _) = create_all(
            &exec,
            &creates,
            &set_of(&creates),
            "default",
            "run-1",
            None,
            None,
        )
        .await;

        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, CreateOutcome::Created { .. })),
            "{outcomes:?}"
        );
        assert_eq!((set_call.num_calls(), tag_calls.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn the_users_tags_are_in_each_create_snapshot_call_with_per_volume() {
        let rule = mock!(Client::create_snapshot)
            .match_requests(|req| {
                let keys: Vec<String> = requested_tags(req).into_iter().map(|(k, _)| k).collect();
                keys == [
                    "ebsnap:job",
                    "ebsnap:instance-id",
                    "ebsnap:device",
                    "ebsnap:run-id",
                    "Name",
                    "CostCenter",
                    "Team",
                    "env",
                ] && requested_tags(req).contains(&("CostCenter".into(), "ops".into()))
            })
            .then_output(created("snap-new"));
        let exec = test_executor(mock_client!(aws_sdk_ec2, [&rule]), false);

        let creates = creates_with_user_tags();
        let outcomes = run_creates(&exec, &creates[..1], "default", "run-1").await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-new".into()
            }]
        );
    }

    #[tokio::test]
    async fn tagging_a_snapshot_ec2_does_not_show_yet_is_asked_again() {
        let set_call = mock!(Client::create_snapshots).then_output(made(&[("vol-a", "snap-a")]));
        // Right after the create EC2 may not know the snapshot yet.
        let tag_calls = mock!(Client::create_tags)
            .sequence()
            .http_status(400, ec2_error_body("InvalidSnapshot.NotFound"))
            .times(2)
            .output(|| CreateTagsOutput::builder().build())
            .build();
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &tag_calls]
        ));
        let creates = [create("vol-a")];
        let sets = set_of(&creates);

        let (outcomes, _) =
            create_all(&exec, &creates, &sets, "default", "run-1", None, None).await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-a".into()
            }]
        );
        assert_eq!((set_call.num_calls(), tag_calls.num_calls()), (1, 3));
    }

    #[tokio::test]
    async fn tags_that_wait_for_ec2_hold_up_no_other_instances_create() {
        use std::sync::{Arc, Mutex};
        // One more instance than may be snapshotted at once, and EC2 does
        // not show the new snapshots yet: the first two CreateTags per
        // instance are refused.
        let instances = MAX_IN_FLIGHT + 1;
        let refusals = 2 * instances;
        let events = Arc::new(Mutex::new(Vec::<&'static str>::new()));
        let seen = Arc::clone(&events);
        let set_call = mock!(Client::create_snapshots)
            .match_requests(move |_| {
                seen.lock().unwrap().push("create");
                true
            })
            .then_output(made(&[("vol-x", "snap-x")]));
        let seen = Arc::clone(&events);
        let tag_calls = mock!(Client::create_tags)
            .match_requests(move |_| {
                seen.lock().unwrap().push("tag");
                true
            })
            .sequence()
            .http_status(400, ec2_error_body("InvalidSnapshot.NotFound"))
            .times(refusals)
            .output(|| CreateTagsOutput::builder().build())
            .repeatedly()
            .build();
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &tag_calls]
        ));
        let creates: Vec<Create> = (0..instances).map(|_| create("vol-x")).collect();
        let sets: Vec<SnapshotSet> = (0..instances)
            .map(|i| set(&format!("i-{i}"), &creates, vec![i], &[]))
            .collect();

        let (outcomes, _) =
            create_all(&exec, &creates, &sets, "default", "run-1", None, None).await;

        assert!(
            outcomes.iter().all(CreateOutcome::is_good_backup),
            "{outcomes:?}"
        );
        let events = events.lock().unwrap().clone();
        let last_create = events.iter().rposition(|e| *e == "create").unwrap();
        let first_tagged = events
            .iter()
            .enumerate()
            .filter(|(_, e)| **e == "tag")
            .nth(refusals)
            .map(|(i, _)| i)
            .unwrap();
        assert!(
            last_create < first_tagged,
            "the last instance's create waited for the others' tags: {events:?}"
        );
    }

    #[tokio::test]
    async fn a_lookup_that_sees_only_part_of_an_instances_snapshots_looks_again() {
        // The answer of CreateSnapshots is lost; the first look shows one of
        // the two snapshots it made, the next shows both.
        let set_call = mock!(Client::create_snapshots)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .build();
        let looks = mock!(Client::describe_snapshots)
            .sequence()
            .output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot("vol-a", "snap-a"))
                    .build()
            })
            .output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(ec2_snapshot("vol-a", "snap-a"))
                    .snapshots(ec2_snapshot("vol-b", "snap-b"))
                    .build()
            })
            .build();
        let tags = tags_ok();
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &looks, &tags]
        ));
        let creates = [create("vol-a"), create("vol-b")];
        let sets = set_of(&creates);

        let (outcomes, _) =
            create_all(&exec, &creates, &sets, "default", "run-1", None, None).await;

        assert_eq!(
            outcomes,
            [
                CreateOutcome::Created {
                    snapshot_id: "snap-a".into()
                },
                CreateOutcome::Created {
                    snapshot_id: "snap-b".into()
                },
            ]
        );
        assert_eq!((set_call.num_calls(), looks.num_calls()), (1, 2));
    }

    #[tokio::test]
    async fn a_lost_create_snapshots_is_found_by_run_and_instance_instead_of_made_twice() {
        let set_call = mock!(Client::create_snapshots)
            .sequence()
            .http_status(500, ec2_error_body("InternalError"))
            .output(made(&[("vol-a", "snap-second")]))
            .build();
        let lookup = mock!(Client::describe_snapshots)
            .match_requests(|req| {
                let has = |name: &str, value: &str| {
                    req.filters()
                        .iter()
                        .any(|f| f.name() == Some(name) && f.values().iter().any(|v| v == value))
                };
                has("tag:ebsnap:run-id", "run-1") && has("tag:ebsnap:instance-id", "i-1")
            })
            .then_output(|| {
                DescribeSnapshotsOutput::builder()
                    .snapshots(
                        Snapshot::builder()
                            .snapshot_id("snap-made")
                            .volume_id("vol-a")
                            .build(),
                    )
                    .build()
            });
        let tags = tags_ok();
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &lookup, &tags]
        ));
        let creates = [create("vol-a")];

        let outcomes = run_creates(&exec, &creates, "default", "run-1").await;

        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-made".into()
            }]
        );
        assert_eq!(
            set_call.num_calls(),
            1,
            "never a second CreateSnapshots once its snapshots exist"
        );
        assert_eq!(
            tags.num_calls(),
            1,
            "the found snapshot still gets its device and Name"
        );
    }

    #[tokio::test]
    async fn a_volume_missing_from_the_answer_fails_and_a_failed_tagging_is_unfinished() {
        let set_call = mock!(Client::create_snapshots).then_output(made(&[("vol-a", "snap-a")]));
        let tags = mock!(Client::create_tags).then_error(|| {
            CreateTagsError::generic(ec2_error("UnauthorizedOperation", "no CreateTags"))
        });
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &tags]
        ));
        let creates = [create("vol-a"), create("vol-gone")];

        let outcomes = run_creates(&exec, &creates, "default", "run-1").await;

        assert!(
            matches!(&outcomes[0], CreateOutcome::Unfinished { snapshot_id, reason } if snapshot_id == "snap-a" && reason.starts_with("created, but tagging it failed: UnauthorizedOperation")),
            "{outcomes:?}"
        );
        assert_eq!(
            outcomes[1],
            CreateOutcome::Failed {
                reason: "CreateSnapshots made no snapshot of this volume".into()
            }
        );
        assert_eq!(
            failed_volumes(&creates, &outcomes).len(),
            2,
            "both keep their old snapshots (rule 3)"
        );
    }

    #[tokio::test]
    async fn snapshots_made_before_an_interrupt_still_get_their_tags() {
        let client_stop: std::sync::Arc<std::sync::Mutex<Option<crate::backup::control::Stop>>> =
            Default::default();
        let stop_slot = client_stop.clone();
        // The interrupt arrives while CreateSnapshots is in flight.
        let set_call = mock!(Client::create_snapshots)
            .match_requests(move |_| {
                if let Some(stop) = stop_slot.lock().unwrap().as_ref() {
                    stop.interrupt();
                }
                true
            })
            .then_output(made(&[("vol-a", "snap-a")]));
        let tags = tags_ok();
        let exec = at_once(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            [&set_call, &tags]
        ));
        *client_stop.lock().unwrap() = Some(exec.stop.clone());
        let creates = [create("vol-a")];

        let outcomes = run_creates(&exec, &creates, "default", "run-1").await;

        assert!(exec.stop.check().is_err(), "the run was interrupted");
        assert_eq!(
            outcomes,
            [CreateOutcome::Created {
                snapshot_id: "snap-a".into()
            }]
        );
        assert_eq!(tags.num_calls(), 1, "device and Name still set");
    }

    #[tokio::test]
    async fn a_dry_run_checks_create_snapshots_once_for_the_instance() {
        let set_call = mock!(Client::create_snapshots)
            .match_requests(|req| req.dry_run() == Some(true))
            .then_error(|| {
                CreateSnapshotsError::generic(ec2_error(
                    "DryRunOperation",
                    "Request would have succeeded",
                ))
            });
        let mut exec = at_once(mock_client!(aws_sdk_ec2, [&set_call]));
        exec.dry_run = true;
        let creates = [create("vol-a"), create("vol-b")];

        let outcomes = run_creates(&exec, &creates, "default", "run-1").await;

        assert_eq!(outcomes, [CreateOutcome::Allowed, CreateOutcome::Allowed]);
        assert_eq!(set_call.num_calls(), 1);
    }
}
