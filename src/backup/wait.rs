//! `--wait`: wait until this run's snapshots are completed.
//!
//! A snapshot's point in time is fixed when it is created, but it is a
//! backup only once completed. With --wait, a snapshot that ends in `error`
//! (or is still pending at --wait-timeout) fails the run, and its volume's
//! old snapshots are kept (safety rule 3): the wait happens before the purge.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aws_sdk_ec2::types::Filter;
use aws_sdk_ec2::Client;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::aws::error_text;
use crate::backup::control::{Executor, Stop};
use crate::backup::snapshot::CreateOutcome;
use crate::inventory::SnapshotState;
use crate::timing::{self, PollEnd, PollPlan, GONE_AFTER, PROGRESS_LOG, SNAPSHOT_POLL};

/// A filter takes at most this many values.
const IDS_PER_CALL: usize = 200;

/// How one snapshot's wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WaitOutcome {
    Completed,
    /// It will never complete: ended in `error`, or vanished.
    Failed {
        reason: String,
    },
    /// Still pending when the wait ran out.
    TimedOut {
        progress: String,
    },
}

/// Marks each created snapshot whose wait did not end in `completed` as
/// unfinished, with the reason.
pub(crate) fn apply(creates: &mut [CreateOutcome], outcomes: &BTreeMap<String, WaitOutcome>) {
    for create in creates.iter_mut() {
        let CreateOutcome::Created { snapshot_id } = create else {
            continue;
        };
        let reason = match outcomes.get(snapshot_id.as_str()) {
            Some(WaitOutcome::Failed { reason }) => reason.clone(),
            Some(WaitOutcome::TimedOut { progress }) => {
                format!("still pending ({progress}) when --wait-timeout ran out")
            }
            Some(WaitOutcome::Completed) | None => continue,
        };
        *create = CreateOutcome::Unfinished {
            snapshot_id: std::mem::take(snapshot_id),
            reason,
        };
    }
}

/// With `--wait`: waits for the snapshots this run created in one region,
/// with a progress bar on a terminal, and marks those that did not complete.
pub(crate) async fn wait_for_created(
    exec: &Executor,
    creates: &mut [CreateOutcome],
    timeout: Duration,
    progress: &MultiProgress,
    region: &str,
    quiet: bool,
) {
    let created: Vec<String> = creates
        .iter()
        .filter_map(|c| match c {
            CreateOutcome::Created { snapshot_id } => Some(snapshot_id.clone()),
            _ => None,
        })
        .collect();
    let style = ProgressStyle::with_template(
        "{prefix} {bar:30} {pos}/{len} snapshots completed ({elapsed})",
    )
    .expect("a valid progress template");
    let bar = progress.add(
        ProgressBar::new(created.len() as u64)
            .with_style(style)
            .with_prefix(region.to_owned()),
    );
    let outcomes = wait_for(
        &exec.client,
        &created,
        Polling {
            timeout,
            interval: SNAPSHOT_POLL,
            gone_after: GONE_AFTER,
        },
        &bar,
        quiet,
        &exec.stop,
    )
    .await;
    bar.finish_and_clear();
    apply(creates, &outcomes);
}

/// The snapshots still worth waiting for, given the latest states.
pub(crate) fn still_pending(states: &BTreeMap<String, (SnapshotState, Option<String>)>) -> usize {
    states
        .values()
        .filter(|(state, _)| matches!(state, SnapshotState::Pending))
        .count()
}

/// How long and how often `wait_for` asks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Polling {
    /// The whole wait, at most.
    pub timeout: Duration,
    /// Between two polls.
    pub interval: Duration,
    /// A snapshot EC2 has not shown for this long counts as gone.
    pub gone_after: Duration,
}

/// Waits for `snapshot_ids` until all are completed or failed, or the
/// timeout passes (`timing::poll`: on tokio's clock, at the time scale, cut
/// short by `stop`). `progress` counts finished snapshots (hidden when
/// nobody watches; then a line a minute on stderr, unless `quiet`).
pub(crate) async fn wait_for(
    client: &Client,
    snapshot_ids: &[String],
    polling: Polling,
    progress: &ProgressBar,
    quiet: bool,
    stop: &Stop,
) -> BTreeMap<String, WaitOutcome> {
    let Polling {
        timeout,
        interval,
        gone_after,
    } = polling;
    let mut states: BTreeMap<String, (SnapshotState, Option<String>)> = snapshot_ids
        .iter()
        .map(|id| (id.clone(), (SnapshotState::Pending, None)))
        .collect();
    let mut failures: BTreeMap<String, String> = BTreeMap::new();
    // Left out of the answers about them since then (how long the wait had
    // run): not visible yet right after the create (EC2's eventual
    // consistency), or deleted since.
    let mut missing_since: BTreeMap<String, Duration> = BTreeMap::new();
    let mut last_log = Duration::ZERO;
    let polled = timing::poll(PollPlan::every(interval, timeout), stop, async |ran| {
        let pending: Vec<String> = states
            .iter()
            .filter(|(_, (state, _))| *state == SnapshotState::Pending)
            .map(|(id, _)| id.clone())
            .collect();
        for ids in pending.chunks(IDS_PER_CALL) {
            // By a filter, not SnapshotIds: an id EC2 does not show (not yet,
            // or no longer) fails a describe by ids whole, and a filter
            // leaves it out of the answer instead.
            match client
                .describe_snapshots()
                .owner_ids("self")
                .filters(
                    Filter::builder()
                        .name("snapshot-id")
                        .set_values(Some(ids.to_vec()))
                        .build(),
                )
                .send()
                .await
            {
                Ok(output) => {
                    let shown: BTreeSet<&str> = output
                        .snapshots()
                        .iter()
                        .filter_map(|s| s.snapshot_id())
                        .collect();
                    for id in ids {
                        if shown.contains(id.as_str()) {
                            missing_since.remove(id);
                            continue;
                        }
                        let since = *missing_since.entry(id.clone()).or_insert(ran);
                        if ran.saturating_sub(since) >= gone_after {
                            failures.insert(
                                id.clone(),
                                format!(
                                    "EC2 has not shown the snapshot for {:?}: deleted meanwhile?",
                                    gone_after
                                ),
                            );
                            states.insert(id.clone(), (SnapshotState::Other("gone".into()), None));
                        }
                    }
                    for snapshot in output.snapshots() {
                        let Some(id) = snapshot.snapshot_id() else {
                            continue;
                        };
                        let state = SnapshotState::parse(
                            snapshot.state().map(|s| s.as_str()).unwrap_or("pending"),
                        );
                        if state == SnapshotState::Error {
                            let message = snapshot.state_message().unwrap_or("no reason given");
                            failures.insert(
                                id.to_owned(),
                                format!("the snapshot ended in error: {message}"),
                            );
                        }
                        states.insert(
                            id.to_owned(),
                            (state, snapshot.progress().map(str::to_owned)),
                        );
                    }
                }
                // A failed poll is not a failed snapshot: try again next time.
                Err(err) => {
                    tracing::info!(reason = %error_text(&err), "checking snapshot progress failed")
                }
            }
        }
        let waiting = still_pending(&states);
        progress.set_position((states.len() - waiting) as u64);
        if waiting == 0 {
            return Some(());
        }
        if progress.is_hidden() && !quiet && ran.saturating_sub(last_log) >= PROGRESS_LOG {
            crate::notice::tell(&format!(
                "waiting for {waiting} of {} snapshot(s) to complete",
                states.len()
            ));
            last_log = ran;
        }
        None
    })
    .await;
    // Set when a signal or the run's budget ended the wait early.
    let stopped = match polled {
        Err(PollEnd::Stopped(reason)) => Some(reason),
        Ok(()) | Err(PollEnd::TimedOut) => None,
    };
    states
        .into_iter()
        .map(|(id, (state, progress))| {
            let outcome = match state {
                SnapshotState::Completed => WaitOutcome::Completed,
                SnapshotState::Pending => match &stopped {
                    Some(reason) => WaitOutcome::Failed {
                        reason: format!("still pending when the wait ended: {reason}"),
                    },
                    None => WaitOutcome::TimedOut {
                        progress: progress.unwrap_or_else(|| "0%".into()),
                    },
                },
                other => WaitOutcome::Failed {
                    reason: failures
                        .remove(&id)
                        .unwrap_or_else(|| format!("the snapshot is {}", other.as_str())),
                },
            };
            (id, outcome)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ec2::operation::describe_snapshots::DescribeSnapshotsOutput;
    use aws_sdk_ec2::types::{Snapshot, SnapshotState as Ec2State};
    use aws_smithy_mocks::{mock, mock_client};

    fn answer(
        states: &'static [(&'static str, Ec2State, &'static str)],
    ) -> impl Fn() -> DescribeSnapshotsOutput {
        move || {
            let snapshots = states.iter().map(|(id, state, progress)| {
                Snapshot::builder()
                    .snapshot_id(*id)
                    .state(state.clone())
                    .progress(*progress)
                    .state_message("the volume is unreachable")
                    .build()
            });
            DescribeSnapshotsOutput::builder()
                .set_snapshots(Some(snapshots.collect()))
                .build()
        }
    }

    /// A run budget far away: these tests are not about stopping.
    fn far() -> Stop {
        Stop::new(Duration::from_secs(3600))
    }

    #[tokio::test(start_paused = true)]
    async fn an_interrupt_ends_the_wait_and_fails_what_is_still_pending() {
        let rule = mock!(Client::describe_snapshots)
            .sequence()
            .output(answer(&[("snap-1", Ec2State::Pending, "10%")]))
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let stop = far();
        stop.interrupt();

        let outcomes = wait_for(
            &client,
            &ids(&["snap-1"]),
            Polling {
                timeout: Duration::from_secs(3600),
                interval: Duration::from_secs(60),
                gone_after: GONE_AFTER,
            },
            &ProgressBar::hidden(),
            true,
            &stop,
        )
        .await;

        let WaitOutcome::Failed { reason } = &outcomes["snap-1"] else {
            panic!("{outcomes:?}")
        };
        assert!(
            reason.starts_with(
                "still pending when the wait ended: not started: the run was interrupted"
            ),
            "{reason}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_ec2_does_not_show_holds_up_none_of_the_others() {
        // Asked by filter, EC2 leaves out the id it does not know (yet, or
        // any more) instead of failing the whole describe.
        let rule = mock!(Client::describe_snapshots)
            .match_requests(|req| {
                req.snapshot_ids().is_empty()
                    && req
                        .filters()
                        .iter()
                        .any(|f| f.name() == Some("snapshot-id"))
            })
            .sequence()
            .output(answer(&[("snap-here", Ec2State::Pending, "50%")]))
            .output(answer(&[("snap-here", Ec2State::Completed, "100%")]))
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_ec2, [&rule]);

        let outcomes = wait_for(
            &client,
            &ids(&["snap-here", "snap-gone"]),
            Polling {
                timeout: Duration::from_secs(3600),
                interval: SNAPSHOT_POLL,
                gone_after: GONE_AFTER,
            },
            &ProgressBar::hidden(),
            true,
            &far(),
        )
        .await;

        assert_eq!(outcomes["snap-here"], WaitOutcome::Completed);
        let WaitOutcome::Failed { reason } = &outcomes["snap-gone"] else {
            panic!("{outcomes:?}")
        };
        assert!(
            reason.contains("EC2 has not shown the snapshot"),
            "{reason}"
        );
    }

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn unfinished_snapshots_fail_their_volume() {
        let mut creates = vec![
            CreateOutcome::Created {
                snapshot_id: "snap-ok".into(),
            },
            CreateOutcome::Created {
                snapshot_id: "snap-bad".into(),
            },
            CreateOutcome::Created {
                snapshot_id: "snap-slow".into(),
            },
            CreateOutcome::Failed {
                reason: "refused".into(),
            },
        ];
        let outcomes = BTreeMap::from([
            ("snap-ok".to_string(), WaitOutcome::Completed),
            (
                "snap-bad".to_string(),
                WaitOutcome::Failed {
                    reason: "the snapshot ended in error: x".into(),
                },
            ),
            (
                "snap-slow".to_string(),
                WaitOutcome::TimedOut {
                    progress: "40%".into(),
                },
            ),
        ]);
        apply(&mut creates, &outcomes);
        assert_eq!(
            creates[0],
            CreateOutcome::Created {
                snapshot_id: "snap-ok".into()
            }
        );
        assert_eq!(
            creates[1],
            CreateOutcome::Unfinished {
                snapshot_id: "snap-bad".into(),
                reason: "the snapshot ended in error: x".into()
            }
        );
        assert_eq!(
            creates[2],
            CreateOutcome::Unfinished {
                snapshot_id: "snap-slow".into(),
                reason: "still pending (40%) when --wait-timeout ran out".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn pending_then_completed() {
        let rule = mock!(Client::describe_snapshots)
            .sequence()
            .output(answer(&[
                ("snap-1", Ec2State::Pending, "10%"),
                ("snap-2", Ec2State::Pending, "50%"),
            ]))
            .output(answer(&[
                ("snap-1", Ec2State::Completed, "100%"),
                ("snap-2", Ec2State::Pending, "90%"),
            ]))
            .output(answer(&[("snap-2", Ec2State::Completed, "100%")]))
            .build();
        let client = mock_client!(aws_sdk_ec2, [&rule]);
        let bar = ProgressBar::hidden();

        let outcomes = wait_for(
            &client,
            &ids(&["snap-1", "snap-2"]),
            Polling {
                timeout: Duration::from_secs(3600),
                interval: SNAPSHOT_POLL,
                gone_after: GONE_AFTER,
            },
            &bar,
            true,
            &far(),
        )
        .await;

        assert_eq!(outcomes["snap-1"], WaitOutcome::Completed);
        assert_eq!(outcomes["snap-2"], WaitOutcome::Completed);
        assert_eq!(
            rule.num_calls(),
            3,
            "asks only about the snapshots still pending"
        );
        assert_eq!(bar.position(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_that_ends_in_error_fails_with_ec2s_reason() {
        let rule = mock!(Client::describe_snapshots)
            .sequence()
            .output(answer(&[("snap-1", Ec2State::Pending, "10%")]))
            .output(answer(&[("snap-1", Ec2State::Error, "10%")]))
            .build();
        let client = mock_client!(aws_sdk_ec2, [&rule]);

        let outcomes = wait_for(
            &client,
            &ids(&["snap-1"]),
            Polling {
                timeout: Duration::from_secs(3600),
                interval: SNAPSHOT_POLL,
                gone_after: GONE_AFTER,
            },
            &ProgressBar::hidden(),
            true,
            &far(),
        )
        .await;

        assert_eq!(
            outcomes["snap-1"],
            WaitOutcome::Failed {
                reason: "the snapshot ended in error: the volume is unreachable".into()
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_snapshot_still_pending_at_the_timeout_says_how_far_it_got() {
        let rule = mock!(Client::describe_snapshots)
            .sequence()
            .output(answer(&[("snap-1", Ec2State::Pending, "37%")]))
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_ec2, [&rule]);

        let outcomes = wait_for(
            &client,
            &ids(&["snap-1"]),
            Polling {
                timeout: Duration::from_secs(60),
                interval: SNAPSHOT_POLL,
                gone_after: GONE_AFTER,
            },
            &ProgressBar::hidden(),
            true,
            &far(),
        )
        .await;

        assert_eq!(
            outcomes["snap-1"],
            WaitOutcome::TimedOut {
                progress: "37%".into()
            }
        );
    }
}
