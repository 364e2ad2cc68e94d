//! The backup job: `run`, `snapshot` and `purge`. In each region of each
//! account at once: discover, plan (pure), then execute the plan's two
//! steps, snapshot and purge, overlapped volume by volume (and, with
//! `--archive-after`, the archive step beside them), and fold every outcome
//! into one report.
//!
//! control paces and stops the calls, retry says which failures are tried
//! again; snapshot, purge, archive, wait, copy and hooks make the calls; report
//! assembles what happened and render prints it.

pub(crate) mod archive;
pub(crate) mod control;
pub(crate) mod copy;
pub(crate) mod entries;
pub(crate) mod hooks;
pub(crate) mod purge;
pub(crate) mod render;
pub(crate) mod report;
pub(crate) mod retry;
pub(crate) mod snapshot;
pub(crate) mod wait;

use anyhow::Result;
use chrono::{DateTime, Utc};
use futures_util::future::join_all;

use crate::aws::accounts;
use crate::config::{Action, Config};
use crate::{aws, discovery, notice, plan};

use control::{Executor, RetryTiming, Stop, VolumeGates};
use indicatif::MultiProgress;
use report::{RegionRun, Report};
use tracing::Instrument;

/// Refuses, before any call, a job whose snapshots could not carry all the
/// user's tags (`--snapshot-tag`): a key given twice, or more than fit beside
/// ebsnap's own within EC2's 50 tags a resource; and `--archive-after`
/// without a rule whose snapshots it could move.
pub fn check_usage(config: &Config) -> Result<()> {
    plan::check_user_tags(&config.policy.user_tags, config.copy.is_some())
        .map_err(anyhow::Error::msg)?;
    plan::check_archive_after(&config.policy).map_err(anyhow::Error::msg)
}

/// Runs the configured command in every region of every account (one
/// unit of work each, all at once) and reports what happened. `Err` means
/// nothing was attempted (e.g. no region configured).
pub async fn run(config: &Config, now: DateTime<Utc>) -> Result<Report> {
    let shared = aws::load_shared_config(&config.aws).await;
    let accounts = accounts::resolve(&config.aws, &shared, &config.policy.job).await?;
    let units = accounts::units(accounts);
    let run_id = plan::run_id(now, run_entropy());
    // With --wait, the wait comes on top of the run's own budget.
    let wait = match config.action {
        Action::Backup {
            wait: Some(wait), ..
        } => wait,
        _ => std::time::Duration::ZERO,
    };
    let stop = Stop::new(config.timeout.saturating_add(wait));
    let signals = tokio::spawn(stop_on_signals(stop.clone()));
    let progress = MultiProgress::new();
    let unit_runs = join_all(units.iter().map(|(unit, access)| {
        let (run_id, stop, progress) = (&run_id, &stop, &progress);
        let span = match &unit.account {
            Some(account) => tracing::info_span!("unit", account = account.as_str()),
            None => tracing::Span::none(),
        };
        async move {
            let sdk = access.as_ref().map_err(Clone::clone)?;
            Ok(run_region(config, sdk, &unit.region, run_id, now, stop, progress).await)
        }
        .instrument(span)
    }))
    .await;
    signals.abort();
    let mut report = Report::for_units(
        config,
        run_id,
        units.iter().map(|(unit, _)| unit.clone()).collect(),
    );
    for ((unit, _), unit_run) in units.iter().zip(unit_runs) {
        match unit_run {
            Ok(region_run) => report.add_unit(unit, region_run),
            Err(blocked) => report.add_blocked(unit, blocked),
        }
    }
    Ok(report)
}

/// Discover, plan and execute in one region. Regions are independent: one
/// failing does not stop the others.
async fn run_region(
    config: &Config,
    shared: &aws::Ec2Config,
    region: &str,
    run_id: &str,
    now: DateTime<Utc>,
    stop: &Stop,
    progress: &MultiProgress,
) -> RegionRun {
    let client = aws::client(shared, region);
    let policy = &config.policy;
    let inventory = match stop
        .race(discovery::discover(
            &client,
            &policy.selector,
            &policy.job,
            discovery::Reads::for_backup(config.steps(), policy),
        ))
        .await
    {
        Ok(Ok(inventory)) => inventory,
        Ok(Err(err)) => {
            return RegionRun::DiscoveryFailed {
                reason: format!("{err:#}"),
            }
        }
        Err(stopped) => {
            return RegionRun::DiscoveryFailed {
                reason: format!("listing instances and snapshots: {stopped}"),
            }
        }
    };
    tracing::info!(
        region,
        instances = inventory.instances.len(),
        snapshots = inventory.snapshots.len(),
        "discovered"
    );
    let plan = plan::build(inventory, policy, config.steps(), run_id, now);
    let exec = executor(config, client, stop);
    // Hooks never run in a dry run: they would lock the databases.
    let hooks = config
        .hooks
        .as_ref()
        .filter(|_| !config.dry_run)
        .map(|hooks| snapshot::RunHooks { hooks, region });
    // The two steps overlap: a volume's deletes wait only for that volume's
    // create (safety rule 3), and with --wait for its completion. A dry run
    // checks every delete's permission all the same: a create refused there
    // is a permission to fix, and the operator should learn of every missing
    // permission at once.
    let gates = if config.dry_run {
        VolumeGates::default()
    } else {
        VolumeGates::new(plan.creates.iter().map(|c| c.volume_id.as_str()))
    };
    let wait = match (&config.action, config.dry_run) {
        (Action::Backup { wait, .. }, false) => *wait,
        _ => None,
    };
    let snapshot_step = async {
        let settle_at_once = wait.is_none().then_some(&gates);
        let (mut creates, hook_failures) = snapshot::create_all(
            &exec,
            &plan.creates,
            &plan.sets,
            &policy.job,
            run_id,
            hooks,
            settle_at_once,
        )
        .await;
        if let Some(timeout) = wait {
            wait::wait_for_created(&exec, &mut creates, timeout, progress, region, config.quiet)
                .await;
            for (create, outcome) in plan.creates.iter().zip(&creates) {
                gates.settle(&create.volume_id, outcome.is_good_backup());
            }
        }
        gates.close_unsettled();
        // --copy-to: the completed snapshots go to each copy region, and the
        // copies there past --copy-retention are purged.
        let copies = match &config.copy {
            Some(settings) => {
                // Each destination with its own pacing.
                let destinations: Vec<(String, Executor)> = settings
                    .regions
                    .iter()
                    .filter(|dest| *dest != region)
                    .map(|dest| {
                        (
                            dest.clone(),
                            executor(config, aws::client(shared, dest), stop),
                        )
                    })
                    .collect();
                let step = copy::CopyStep {
                    settings,
                    source_region: region,
                    job: &policy.job,
                    run_id,
                    purge: config.steps().purge,
                    policy,
                    now,
                };
                copy::copy_and_purge(&step, &destinations, &plan.creates, &creates).await
            }
            None => Vec::new(),
        };
        (creates, hook_failures, copies)
    };
    let purge_step = purge::delete_all(&exec, &plan.deletes, &policy.job, &gates);
    // Never a volume's newest (the plan's rule), so it waits for no create.
    let archive_step = archive::archive_all(&exec, &plan.archives, now);
    let ((creates, hook_failures, copies), deletes, archives) =
        tokio::join!(snapshot_step, purge_step, archive_step);
    RegionRun::Executed {
        plan,
        creates,
        deletes,
        archives,
        hook_failures,
        copies,
    }
}

/// The executor of one region's calls, paced and retried as configured.
fn executor(config: &Config, client: aws_sdk_ec2::Client, stop: &Stop) -> Executor {
    let mut exec = Executor::new(
        client,
        config.dry_run,
        stop.clone(),
        config.max_rate,
        RetryTiming::STANDARD,
    );
    exec.per_volume = config.per_volume;
    exec
}

/// On the first SIGINT or SIGTERM, start nothing new and let the calls in
/// flight finish, so the report can say exactly what was and was not done.
/// On a second one, exit at once.
async fn stop_on_signals(stop: Stop) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot listen for signals: SIGINT/SIGTERM will end the run at once");
        return;
    };
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    notice::tell(
        "interrupted: finishing the calls in flight, starting nothing new (again to quit now)",
    );
    stop.interrupt();
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
    notice::tell("interrupted twice: quitting without a report");
    std::process::exit(130);
}

/// A few bits that differ between two runs started in the same second.
fn run_entropy() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}
