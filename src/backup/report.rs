//! What a run did, for a person (text) or a program (`--output json`), and
//! the exit code that tells cron the truth.
//!
//! Built from the plan and the outcomes of each action; rendering is pure, so
//! what a person sees is tested like any other decision.

use std::sync::Arc;

use serde::Serialize;

use crate::aws::accounts::{Blocked, Unit};
use crate::backup::archive::ArchiveOutcome;
use crate::backup::copy::{CopyOutcome, CopyRun};
pub(crate) use crate::backup::entries::{ArchiveRule, WhyKept};
pub use crate::backup::entries::{
    ArchivedEntry, CopiedEntry, CreatedEntry, DeletedEntry, FailedEntry, FailureAction, KeptEntry,
    Permission, SkippedEntry, SkippedVolumeEntry,
};
use crate::backup::purge::DeleteOutcome;
use crate::backup::snapshot::{CreateOutcome, HookFailed};
use crate::config::Config;
use crate::exit::ExitStatus;
use crate::inventory::ExistingSnapshot;
use crate::plan::{Archive, Create, Delete, Kept, Plan};
use crate::values::{OutputFormat, WithCode};

/// What one region's run produced: one per region, short-lived, so the
/// size of `Executed` costs nothing worth a box.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum RegionRun {
    /// Discovery failed: nothing was planned or changed in the region.
    DiscoveryFailed { reason: String },
    /// The plan, and the outcome of each create and delete, in plan order.
    Executed {
        plan: Plan,
        creates: Vec<CreateOutcome>,
        deletes: Vec<DeleteOutcome>,
        /// The outcome of each archive (`--archive-after`), in plan order.
        archives: Vec<ArchiveOutcome>,
        /// Pre- and post-hooks that failed, per instance.
        hook_failures: Vec<HookFailed>,
        /// `--copy-to`: the copies made in each destination, and the purge
        /// of the copies there.
        copies: Vec<CopyRun>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub(crate) dry_run: bool,
    pub(crate) command: &'static str,
    pub(crate) job: String,
    pub(crate) run_id: String,
    /// "retention 7d, keep-min 1", for the text header.
    #[serde(skip)]
    pub(crate) policy: String,
    pub(crate) regions: Vec<String>,
    /// The accounts of the roles assumed (`--assume-role`); absent without.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) accounts: Vec<String>,
    pub(crate) created: Vec<CreatedEntry>,
    /// `--copy-to`: the disaster-recovery copies made (or, dry run, planned).
    pub(crate) copied: Vec<CopiedEntry>,
    pub(crate) deleted: Vec<DeletedEntry>,
    /// `--archive-after`: the snapshots sent to the archive tier (or, dry
    /// run, allowed to be).
    pub(crate) archived: Vec<ArchivedEntry>,
    pub(crate) kept: Vec<KeptEntry>,
    pub failed: Vec<FailedEntry>,
    pub(crate) skipped_instances: Vec<SkippedEntry>,
    pub(crate) skipped_volumes: Vec<SkippedVolumeEntry>,
    /// Regions whose discovery succeeded, so something was attempted.
    #[serde(skip)]
    pub(crate) regions_attempted: usize,
    /// The units of work (account and region), each a section of the text.
    #[serde(skip)]
    pub(crate) units: Vec<Unit>,
}

impl Report {
    /// A report with a section per region, no accounts (tests build these).
    #[cfg(test)]
    pub(crate) fn new(config: &Config, run_id: String, regions: Vec<String>) -> Report {
        let units = regions
            .into_iter()
            .map(|region| Unit {
                account: None,
                region,
            })
            .collect();
        Report::for_units(config, run_id, units)
    }

    /// A report with a section per unit of work; the top-level `regions`
    /// and `accounts` are those of the units, in order.
    pub(crate) fn for_units(config: &Config, run_id: String, units: Vec<Unit>) -> Report {
        let mut regions: Vec<String> = Vec::new();
        let mut accounts: Vec<String> = Vec::new();
        for unit in &units {
            if !regions.contains(&unit.region) {
                regions.push(unit.region.clone());
            }
            if let Some(account) = unit.account.as_ref().filter(|a| !accounts.contains(a)) {
                accounts.push(account.clone());
            }
        }
        Report {
            dry_run: config.dry_run,
            command: config.command,
            job: config.policy.job.clone(),
            run_id,
            policy: crate::plan::describe_policy(&config.policy),
            regions,
            accounts,
            units,
            created: vec![],
            copied: vec![],
            deleted: vec![],
            archived: vec![],
            kept: vec![],
            failed: vec![],
            skipped_instances: vec![],
            skipped_volumes: vec![],
            regions_attempted: 0,
        }
    }

    /// Folds one unit's plan and outcomes into the report; every entry
    /// carries the unit's account (and its region, or a copy's).
    pub(crate) fn add_unit(&mut self, unit: &Unit, run: RegionRun) {
        // The copy regions get a section of the text too.
        if let RegionRun::Executed { copies, .. } = &run {
            for copy in copies {
                let section = Unit {
                    account: unit.account.clone(),
                    region: copy.region.clone(),
                };
                if !self.units.contains(&section) {
                    self.units.push(section);
                }
            }
        }
        self.fold(unit, run);
    }

    /// A unit that could not start (its role not assumed, its account's
    /// regions not listed): a failure of that unit alone, nothing attempted.
    pub(crate) fn add_blocked(&mut self, unit: &Unit, blocked: Blocked) {
        self.failed.push(FailedEntry {
            action: blocked.action.into(),
            snapshot_id: None,
            volume_id: None,
            instance_id: None,
            account: unit.account.clone(),
            region: unit.region.clone(),
            reason: blocked.reason,
        });
    }

    /// Folds one region's plan and outcomes into the report, without an
    /// account (tests).
    #[cfg(test)]
    pub(crate) fn add_region(&mut self, region: &str, run: RegionRun) {
        let unit = Unit {
            account: None,
            region: region.to_owned(),
        };
        self.fold(&unit, run);
    }

    fn fold(&mut self, unit: &Unit, run: RegionRun) {
        let (region, account) = (unit.region.as_str(), &unit.account);
        let (plan, creates, deletes, archives, copies) = match run {
            RegionRun::DiscoveryFailed { reason } => {
                self.failed.push(FailedEntry {
                    action: FailureAction::Discover,
                    snapshot_id: None,
                    volume_id: None,
                    instance_id: None,
                    account: account.clone(),
                    region: region.to_owned(),
                    reason,
                });
                return;
            }
            RegionRun::Executed {
                plan,
                creates,
                deletes,
                archives,
                hook_failures,
                copies,
            } => {
                for failed in hook_failures {
                    self.failed.push(FailedEntry {
                        action: failed.which.into(),
                        snapshot_id: None,
                        volume_id: None,
                        instance_id: Some(failed.instance_id),
                        account: account.clone(),
                        region: region.to_owned(),
                        reason: failed.reason,
                    });
                }
                (plan, creates, deletes, archives, copies)
            }
        };
        self.regions_attempted += 1;
        for skipped in plan.skipped_instances {
            self.skipped_instances.push(SkippedEntry {
                instance_id: skipped.instance_id,
                instance_name: skipped.instance_name,
                account: account.clone(),
                region: region.to_owned(),
                reason: skipped.reason,
            });
        }
        for skipped in plan.skipped_volumes {
            self.skipped_volumes.push(SkippedVolumeEntry {
                volume_id: skipped.volume_id,
                instance_id: skipped.instance_id,
                instance_name: skipped.instance_name,
                device: skipped.device,
                account: account.clone(),
                region: region.to_owned(),
                reason: WithCode(skipped.reason),
            });
        }
        if let Some(reason) = plan.purge_refused {
            self.failed.push(FailedEntry {
                action: FailureAction::Purge,
                snapshot_id: None,
                volume_id: None,
                instance_id: None,
                account: account.clone(),
                region: region.to_owned(),
                reason,
            });
        }
        for (create, outcome) in plan.creates.into_iter().zip(creates) {
            self.add_create(unit, create, outcome);
        }
        let shared_region: Arc<str> = region.into();
        let shared_account: Option<Arc<str>> = account.as_deref().map(Arc::from);
        self.add_kept(&shared_region, &shared_account, plan.kept);
        self.deleted.reserve(plan.deletes.len());
        for (delete, outcome) in plan.deletes.into_iter().zip(deletes) {
            self.add_delete(&shared_region, &shared_account, delete, outcome);
        }
        for (archive, outcome) in plan.archives.into_iter().zip(archives) {
            self.add_archive(&shared_region, &shared_account, archive, outcome);
        }
        for copy in copies {
            self.add_copy_run(unit, copy);
        }
    }

    /// One destination's copies and the purge of the copies there.
    fn add_copy_run(&mut self, unit: &Unit, run: CopyRun) {
        let (source_region, account) = (unit.region.as_str(), &unit.account);
        let dest = run.region.as_str();
        for (job, outcome) in run.copies {
            let (snapshot_id, permission) = match outcome {
                CopyOutcome::Copied { snapshot_id } => (Some(snapshot_id), None),
                CopyOutcome::Planned => (None, Some(Permission::Planned)),
                CopyOutcome::Failed { reason } => {
                    self.failed.push(FailedEntry {
                        action: FailureAction::Copy,
                        snapshot_id: job.source_snapshot_id,
                        volume_id: Some(job.create.volume_id),
                        instance_id: Some(job.create.instance_id),
                        account: account.clone(),
                        region: dest.to_owned(),
                        reason,
                    });
                    continue;
                }
            };
            let mut tags_dropped = job.create.dropped_tags.clone();
            tags_dropped.extend(job.create.copy_dropped_tags.iter().cloned());
            self.copied.push(CopiedEntry {
                tags_dropped,
                snapshot_id,
                source_snapshot_id: job.source_snapshot_id,
                source_region: source_region.to_owned(),
                volume_id: job.create.volume_id,
                instance_id: job.create.instance_id,
                device: job.create.device,
                account: account.clone(),
                region: dest.to_owned(),
                permission,
            });
        }
        match run.purge {
            None => {}
            Some(Err(reason)) => self.failed.push(FailedEntry {
                action: FailureAction::Discover,
                snapshot_id: None,
                volume_id: None,
                instance_id: None,
                account: account.clone(),
                region: dest.to_owned(),
                reason: format!("listing the copies from {source_region}: {reason}"),
            }),
            Some(Ok((plan, deletes))) => {
                if let Some(reason) = plan.purge_refused {
                    self.failed.push(FailedEntry {
                        action: FailureAction::Purge,
                        snapshot_id: None,
                        volume_id: None,
                        instance_id: None,
                        account: account.clone(),
                        region: dest.to_owned(),
                        reason: format!("copies from {source_region}: {reason}"),
                    });
                }
                let shared_dest: Arc<str> = dest.into();
                let shared_account: Option<Arc<str>> = account.as_deref().map(Arc::from);
                self.add_kept(&shared_dest, &shared_account, plan.kept);
                self.deleted.reserve(plan.deletes.len());
                for (delete, outcome) in plan.deletes.into_iter().zip(deletes) {
                    self.add_delete(&shared_dest, &shared_account, delete, outcome);
                }
            }
        }
    }

    fn add_create(&mut self, unit: &Unit, create: Create, outcome: CreateOutcome) {
        let (region, account) = (unit.region.as_str(), &unit.account);
        let (snapshot_id, permission) = match outcome {
            CreateOutcome::Created { snapshot_id } => (Some(snapshot_id), None),
            CreateOutcome::Unfinished {
                snapshot_id,
                reason,
            } => {
                self.failed.push(FailedEntry {
                    action: FailureAction::Wait,
                    snapshot_id: Some(snapshot_id.clone()),
                    volume_id: Some(create.volume_id.clone()),
                    instance_id: Some(create.instance_id.clone()),
                    account: account.clone(),
                    region: region.to_owned(),
                    reason,
                });
                (Some(snapshot_id), None)
            }
            CreateOutcome::Allowed => (None, Some(Permission::Allowed)),
            CreateOutcome::Failed { reason } => {
                self.failed.push(FailedEntry {
                    action: FailureAction::Create,
                    snapshot_id: None,
                    volume_id: Some(create.volume_id),
                    instance_id: Some(create.instance_id),
                    account: account.clone(),
                    region: region.to_owned(),
                    reason,
                });
                return;
            }
        };
        self.created.push(CreatedEntry {
            snapshot_id,
            volume_id: create.volume_id,
            instance_id: create.instance_id,
            instance_name: create.instance_name,
            device: create.device,
            account: account.clone(),
            region: region.to_owned(),
            permission,
            tags_dropped: create.dropped_tags,
        });
    }

    /// The plan's kept snapshots as entries. The conversion reuses the
    /// plan's buffer (an entry is no larger than a `Kept`), so the largest
    /// list of a run is never held twice.
    fn add_kept(&mut self, region: &Arc<str>, account: &Option<Arc<str>>, kept: Vec<Kept>) {
        let entries: Vec<KeptEntry> = kept
            .into_iter()
            .map(|kept| kept_entry(region, account, kept.snapshot, WhyKept::Plan(kept.reason)))
            .collect();
        if self.kept.is_empty() {
            self.kept = entries;
        } else {
            self.kept.reserve(entries.len());
            self.kept.extend(entries);
        }
    }

    fn add_archive(
        &mut self,
        region: &Arc<str>,
        account: &Option<Arc<str>>,
        archive: Archive,
        outcome: ArchiveOutcome,
    ) {
        let Archive {
            snapshot,
            kept_by,
            released_at_earliest,
        } = archive;
        let permission = match outcome {
            ArchiveOutcome::Requested => None,
            ArchiveOutcome::Allowed => Some(Permission::Allowed),
            ArchiveOutcome::Failed { reason } => {
                self.failed.push(FailedEntry {
                    action: FailureAction::Archive,
                    snapshot_id: Some(snapshot.id.into()),
                    volume_id: Some(snapshot.volume_id.to_string()),
                    instance_id: snapshot.instance_id.as_deref().map(str::to_owned),
                    account: account.as_deref().map(str::to_owned),
                    region: region.to_string(),
                    reason,
                });
                return;
            }
        };
        self.archived.push(ArchivedEntry {
            snapshot_id: snapshot.id,
            volume_id: snapshot.volume_id,
            instance_id: snapshot.instance_id,
            device: snapshot.device,
            account: account.clone(),
            region: Arc::clone(region),
            start_time: snapshot.start_time,
            permission,
            kept_by: ArchiveRule(kept_by),
            kept_until_at_least: released_at_earliest,
        });
    }

    fn add_delete(
        &mut self,
        region: &Arc<str>,
        account: &Option<Arc<str>>,
        delete: Delete,
        outcome: DeleteOutcome,
    ) {
        let Delete { snapshot, reason } = delete;
        let (permission, already_gone) = match outcome {
            DeleteOutcome::Deleted => (None, false),
            DeleteOutcome::AlreadyGone => (None, true),
            DeleteOutcome::Allowed => (Some(Permission::Allowed), false),
            DeleteOutcome::InUse { message } => {
                let why = WhyKept::InUse { message };
                self.kept.push(kept_entry(region, account, snapshot, why));
                return;
            }
            DeleteOutcome::Locked { until, message } => {
                let why = WhyKept::Locked { until, message };
                self.kept.push(kept_entry(region, account, snapshot, why));
                return;
            }
            DeleteOutcome::Withheld => {
                let why = WhyKept::Withheld;
                self.kept.push(kept_entry(region, account, snapshot, why));
                return;
            }
            DeleteOutcome::Failed { reason } => {
                self.failed.push(FailedEntry {
                    action: FailureAction::Delete,
                    snapshot_id: Some(snapshot.id.into()),
                    volume_id: Some(snapshot.volume_id.to_string()),
                    instance_id: snapshot.instance_id.as_deref().map(str::to_owned),
                    account: account.as_deref().map(str::to_owned),
                    region: region.to_string(),
                    reason,
                });
                return;
            }
        };
        self.deleted.push(DeletedEntry {
            snapshot_id: snapshot.id,
            volume_id: snapshot.volume_id,
            instance_id: snapshot.instance_id,
            device: snapshot.device,
            account: account.clone(),
            region: Arc::clone(region),
            start_time: snapshot.start_time,
            permission,
            already_gone,
            reason: WithCode(reason),
        });
    }

    pub fn exit_status(&self) -> ExitStatus {
        if self.failed.is_empty() {
            ExitStatus::Success
        } else if self.regions_attempted == 0 {
            ExitStatus::NothingAttempted
        } else {
            ExitStatus::Failure
        }
    }

    /// Whether stdout gets anything. A dry run always shows its plan;
    /// failures are always shown (cron mails them); otherwise `-q` prints
    /// nothing, JSON is printed for the program that asked for it, and text
    /// only when a person watches.
    pub fn should_print(&self, config: &Config) -> bool {
        self.dry_run
            || !self.failed.is_empty()
            || (!config.quiet && (config.stdout_is_terminal || config.output == OutputFormat::Json))
    }
}

fn kept_entry(
    region: &Arc<str>,
    account: &Option<Arc<str>>,
    snapshot: ExistingSnapshot,
    why: WhyKept,
) -> KeptEntry {
    let ExistingSnapshot {
        id,
        volume_id,
        state,
        start_time,
        instance_id,
        device,
        ..
    } = snapshot;
    KeptEntry {
        snapshot_id: id,
        volume_id,
        instance_id,
        device,
        account: account.clone(),
        region: Arc::clone(region),
        start_time,
        state,
        reason: WithCode(why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::accounts::BlockedStep;
    use crate::backup::hooks::HookKind;
    use crate::config::{Action, AwsSettings, Steps};
    use crate::inventory::testing::job_snapshot;
    use crate::plan::{DeleteReason, KeepReason};
    use crate::values::ReasonCode;
    use chrono::{DateTime, Utc};
    use chrono::{TimeDelta, TimeZone};

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 12, 0, 0).unwrap()
    }

    fn config(dry_run: bool) -> Config {
        Config {
            command: "run",
            action: Action::Backup {
                steps: Steps {
                    snapshot: true,
                    purge: true,
                },
                wait: None,
            },
            dry_run,
            policy: crate::config::testing::policy(),
            aws: AwsSettings::default(),
            output: OutputFormat::Text,
            quiet: false,
            verbosity: 0,
            stdout_is_terminal: false,
            lock_file: "/tmp/ebsnap-test.lock".into(),
            max_rate: 5.0,
            timeout: std::time::Duration::from_secs(60),
            metrics_file: None,
            per_volume: false,
            hooks: None,
            color: false,
            log_format: crate::values::LogFormat::Text,
            copy: None,
        }
    }
    fn snapshot(id: &str, volume: &str, days: i64) -> ExistingSnapshot {
        job_snapshot(id, volume, now() - TimeDelta::days(days))
    }

    fn create(volume: &str) -> Create {
        let run = crate::plan::RunTags {
            job: "default",
            run_id: "r1",
            user: &Default::default(),
        };
        Create::new(
            "i-1",
            Some("mongo-1"),
            volume,
            "/dev/sdf",
            run,
            vec![],
            vec![],
        )
    }

    fn plan() -> Plan {
        Plan {
            creates: vec![create("vol-1"), create("vol-2")],
            deletes: vec![Delete {
                snapshot: snapshot("snap-old", "vol-1", 9),
                reason: crate::plan::DeleteReason::Expired,
            }],
            kept: vec![Kept {
                snapshot: snapshot("snap-new", "vol-1", 2),
                reason: KeepReason::WithinRetention {
                    expires_at: now() + TimeDelta::days(5),
                },
            }],
            ..Plan::default()
        }
    }

    fn report(dry_run: bool, run: RegionRun) -> Report {
        let mut report = Report::new(&config(dry_run), "r1".into(), vec!["us-east-1".into()]);
        report.add_region("us-east-1", run);
        report
    }

    fn created(id: &str) -> CreateOutcome {
        CreateOutcome::Created {
            snapshot_id: id.into(),
        }
    }

    #[test]
    fn the_kept_snapshots_become_entries_in_the_plans_own_memory() {
        // At 30,000 snapshots the kept list is the run's largest: turning it
        // into report entries must not hold it twice.
        let kept: Vec<Kept> = (0..1000)
            .map(|i| Kept {
                snapshot: snapshot(&format!("snap-{i}"), "vol-1", 2),
                reason: KeepReason::KeepMin { keep_min: 2 },
            })
            .collect();
        // What lets std collect in place: an entry no larger than a Kept,
        // with the same alignment. Should this fail, the buffer check below
        // fails too, and this says why.
        assert!(std::mem::size_of::<KeptEntry>() <= std::mem::size_of::<Kept>());
        assert_eq!(
            std::mem::align_of::<KeptEntry>(),
            std::mem::align_of::<Kept>()
        );
        let buffer = kept.as_ptr() as usize;
        let run = RegionRun::Executed {
            plan: Plan {
                kept,
                ..Plan::default()
            },
            creates: vec![],
            deletes: vec![],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(true, run);
        assert_eq!(report.kept.len(), 1000);
        assert_eq!(report.kept.as_ptr() as usize, buffer, "the same buffer");
        assert_eq!(&*report.kept[999].snapshot_id, "snap-999");
        // The reason is text only in the output.
        let json = serde_json::to_value(&report.kept[0]).unwrap();
        assert_eq!(
            json["reason"],
            "past retention, but among the 2 newest completed snapshots of its volume"
        );
        assert_eq!(json["state"], "completed");
    }

    #[test]
    fn a_clean_run_succeeds_and_is_quiet_off_a_terminal() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::Deleted],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert_eq!(report.created.len(), 2);
        assert_eq!(&*report.deleted[0].snapshot_id, "snap-old");
        assert!(!report.should_print(&config(false)));
        let watched = Config {
            stdout_is_terminal: true,
            ..config(false)
        };
        assert!(report.should_print(&watched));
        let quiet = Config {
            quiet: true,
            ..watched
        };
        assert!(!report.should_print(&quiet));
        let json = Config {
            output: OutputFormat::Json,
            ..config(false)
        };
        assert!(
            report.should_print(&json),
            "JSON is for programs: printed off a terminal"
        );
        assert!(
            !report.should_print(&Config {
                quiet: true,
                ..json
            }),
            "-q wins on success"
        );
        assert_eq!(
            report.summary(),
            "Created 2 snapshot(s), deleted 1, kept 1, 0 failed."
        );
    }

    #[test]
    fn a_failure_exits_1_and_is_always_printed() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![
                created("snap-a"),
                CreateOutcome::Failed {
                    reason: "boom".into(),
                },
            ],
            deletes: vec![DeleteOutcome::Deleted],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert!(report.should_print(&Config {
            quiet: true,
            ..config(false)
        }));
        assert_eq!(report.failed[0].action, FailureAction::Create);
        assert_eq!(report.failed[0].volume_id.as_deref(), Some("vol-2"));
        let text = report.to_text(now());
        assert!(text.contains("FAILED  create vol-2 i-1: boom"), "{text}");
    }

    #[test]
    fn a_snapshot_in_use_is_kept_and_reported_without_failing_the_run() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::InUse {
                message: "used by ami-1".into(),
            }],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert!(report.deleted.is_empty());
        let in_use = report
            .kept
            .iter()
            .find(|k| &*k.snapshot_id == "snap-old")
            .unwrap();
        assert_eq!(
            *in_use.reason,
            WhyKept::InUse {
                message: "used by ami-1".into()
            }
        );
        assert_eq!(in_use.reason.code(), "in_use");
        assert!(report
            .to_text(now())
            .contains("in use by an AMI (used by ami-1)"));
    }

    #[test]
    fn a_locked_snapshot_is_kept_until_its_lock_ends_without_failing_the_run() {
        let until = Utc.with_ymd_and_hms(2027, 1, 31, 0, 0, 0).unwrap();
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::Locked {
                until: Some(until),
                message: "locked".into(),
            }],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert!(report.deleted.is_empty());
        let locked = report
            .kept
            .iter()
            .find(|k| &*k.snapshot_id == "snap-old")
            .unwrap();
        assert_eq!(
            *locked.reason,
            WhyKept::Locked {
                until: Some(until),
                message: "locked".into()
            }
        );
        assert_eq!(locked.reason.code(), "locked");
        assert!(report
            .to_text(now())
            .contains("keep    snap-old of vol-1, 9d old: locked until 2027-01-31 00:00 UTC"));
    }

    #[test]
    fn a_delete_says_why_unless_it_expired_and_dropped_tags_are_named() {
        let mut plan = plan();
        plan.deletes[0].reason = DeleteReason::Error;
        plan.creates[0].dropped_tags = vec!["team".into(), "cost".into()];
        let run = RegionRun::Executed {
            plan,
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::Deleted],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(*report.deleted[0].reason, DeleteReason::Error);
        assert_eq!(report.deleted[0].reason.code(), "error");
        assert_eq!(report.created[0].tags_dropped, ["team", "cost"]);
        let text = report.to_text(now());
        assert!(
            text.contains("deleted snap-old of vol-1, 9d old: in error: it holds no backup"),
            "{text}"
        );
        assert!(
            text.contains("; 2 copied tag(s) left out, past EC2's tag limits: team, cost"),
            "{text}"
        );
        let json = report.to_json();
        assert!(json.contains("\"tags_dropped\""), "{json}");
    }

    #[test]
    fn a_delete_withheld_after_its_volumes_create_failed_is_reported_kept() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![
                CreateOutcome::Failed {
                    reason: "boom".into(),
                },
                created("snap-b"),
            ],
            deletes: vec![DeleteOutcome::Withheld],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert!(report.deleted.is_empty());
        let withheld = report
            .kept
            .iter()
            .find(|k| &*k.snapshot_id == "snap-old")
            .unwrap();
        assert_eq!(*withheld.reason, WhyKept::Withheld);
        assert_eq!(withheld.reason.code(), "volume_failed");
        assert_eq!(report.failed.len(), 1, "only the create is a failure");
    }

    #[test]
    fn a_delete_that_finds_the_snapshot_gone_counts_as_deleted() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::AlreadyGone],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Success);
        assert!(report.deleted[0].already_gone);
    }

    #[test]
    fn discovery_failing_everywhere_means_nothing_was_attempted() {
        let report = report(
            false,
            RegionRun::DiscoveryFailed {
                reason: "AuthFailure: bad".into(),
            },
        );
        assert_eq!(report.exit_status(), ExitStatus::NothingAttempted);
        assert_eq!(report.failed[0].action, FailureAction::Discover);
        assert_eq!(report.failed[0].describe(), "discover: AuthFailure: bad");
    }

    #[test]
    fn discovery_failing_in_one_of_two_regions_is_a_failure() {
        let mut report = Report::new(&config(false), "r1".into(), vec!["a".into(), "b".into()]);
        report.add_region(
            "a",
            RegionRun::DiscoveryFailed {
                reason: "down".into(),
            },
        );
        report.add_region(
            "b",
            RegionRun::Executed {
                plan: Plan::default(),
                creates: vec![],
                deletes: vec![],
                archives: vec![],
                hook_failures: vec![],
                copies: vec![],
            },
        );
        assert_eq!(report.exit_status(), ExitStatus::Failure);
    }

    #[test]
    fn a_dry_run_prints_the_whole_plan_even_off_a_terminal() {
        let mut plan = plan();
        plan.skipped_instances.push(crate::plan::SkippedInstance {
            instance_id: "i-9".into(),
            instance_name: Some("proxy".into()),
            reason: crate::plan::InstanceSkip::NotSelected(crate::plan::NotSelected::OptsOut {
                key: "Scheduled-Snapshots".into(),
                value: "false".into(),
            }),
        });
        let run = RegionRun::Executed {
            plan,
            creates: vec![
                CreateOutcome::Allowed,
                CreateOutcome::Failed {
                    reason: "not permitted: UnauthorizedOperation: no".into(),
                },
            ],
            deletes: vec![DeleteOutcome::Allowed],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(true, run);
        assert!(report.should_print(&Config {
            quiet: true,
            ..config(true)
        }));
        assert_eq!(report.created[0].permission, Some(Permission::Allowed));
        assert_eq!(report.created[0].snapshot_id, None);
        // The whole text, so that a line lost, repeated or out of order shows.
        assert_eq!(
            report.to_text(now()),
            "\
Dry run of `ebsnap run` for job default (retention 7d, keep-min 1), run r1
us-east-1:
  FAILED  create vol-2 i-1: not permitted: UnauthorizedOperation: no
  create  vol-1 of mongo-1 /dev/sdf (i-1): permitted
  delete  snap-old of vol-1, 9d old: permitted
  keep    snap-new of vol-1, 2d old: within retention, expires 2026-11-29 12:00 UTC
  skip    i-9 proxy: Scheduled-Snapshots=\"false\" opts out
Dry run: would create 1 snapshot(s), delete 1, keep 1, 1 failed. Nothing was changed.
"
        );
    }

    #[test]
    fn a_refused_purge_is_a_failure_that_names_the_numbers() {
        let mut plan = plan();
        let withheld = plan.deletes.remove(0).snapshot;
        plan.kept.push(Kept {
            snapshot: withheld,
            reason: KeepReason::DeleteGuard,
        });
        plan.purge_refused = Some(
            "refused to delete 1 snapshots (more than --max-delete 0): rerun with --force".into(),
        );
        let run = RegionRun::Executed {
            plan,
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(report.failed[0].action, FailureAction::Purge);
        let text = report.to_text(now());
        assert!(
            text.contains("FAILED  purge: refused to delete 1 snapshots"),
            "{text}"
        );
        assert!(
            text.contains(
                "keep    snap-old of vol-1, 9d old: past retention, but the purge was refused"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_hook_fails_the_run_and_names_the_instance() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::Deleted],
            archives: vec![],
            hook_failures: vec![HookFailed {
                instance_id: "i-1".into(),
                which: HookKind::PostHook,
                reason: "the post-hook failed (exit status: 1): unlock refused".into(),
            }],
            copies: vec![],
        };
        let report = report(false, run);
        assert_eq!(report.exit_status(), ExitStatus::Failure);
        assert_eq!(
            report.deleted.len(),
            1,
            "a hook failure withholds no delete: the snapshots exist"
        );
        assert!(report.to_text(now()).contains(
            "FAILED  post-hook i-1: the post-hook failed (exit status: 1): unlock refused"
        ));
    }

    #[test]
    fn failure_actions_are_named_by_serde_as_the_report_and_metrics_write_them() {
        let names: Vec<&str> = FailureAction::ALL.iter().map(|a| a.code()).collect();
        assert_eq!(
            names,
            [
                "discover",
                "create",
                "wait",
                "delete",
                "archive",
                "purge",
                "copy",
                "pre-hook",
                "post-hook",
                "assume-role",
                "list-regions"
            ]
        );
        for action in FailureAction::ALL {
            assert_eq!(serde_json::to_value(action).unwrap(), action.code());
        }
        assert_eq!(
            FailureAction::from(HookKind::PostHook),
            FailureAction::PostHook
        );
        assert_eq!(
            FailureAction::from(BlockedStep::ListRegions),
            FailureAction::ListRegions
        );
        assert_eq!(
            serde_json::to_value(Permission::Planned).unwrap(),
            "planned"
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let run = RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::Deleted],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        };
        let json: serde_json::Value = serde_json::from_str(&report(false, run).to_json()).unwrap();
        for key in [
            "dry_run",
            "command",
            "job",
            "run_id",
            "regions",
            "created",
            "deleted",
            "kept",
            "failed",
            "skipped_instances",
            "skipped_volumes",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["created"][0]["snapshot_id"], "snap-a");
        assert_eq!(json["created"][0]["region"], "us-east-1");
        assert_eq!(json["deleted"][0]["instance_id"], "i-1");
        assert_eq!(json["kept"][0]["reason_code"], "within_retention");
        assert_eq!(json["deleted"][0]["start_time"], "2026-11-15T12:00:00Z");
    }

    fn unit(account: &str) -> Unit {
        Unit {
            account: Some(account.into()),
            region: "us-east-1".into(),
        }
    }

    fn clean_run() -> RegionRun {
        RegionRun::Executed {
            plan: plan(),
            creates: vec![created("snap-a"), created("snap-b")],
            deletes: vec![DeleteOutcome::Deleted],
            archives: vec![],
            hook_failures: vec![],
            copies: vec![],
        }
    }

    fn denied() -> Blocked {
        Blocked {
            action: BlockedStep::AssumeRole,
            reason: "assuming arn:aws:iam::222222222222:role/backup: AccessDenied".into(),
        }
    }

    #[test]
    fn one_accounts_failure_leaves_the_other_accounts_entries_and_outcome_alone() {
        let (a, b) = (unit("111111111111"), unit("222222222222"));
        let mut report = Report::for_units(&config(false), "r1".into(), vec![a.clone(), b.clone()]);
        report.add_unit(&a, clean_run());
        report.add_blocked(&b, denied());

        assert_eq!(
            report.exit_status(),
            ExitStatus::Failure,
            "A ran: exit 1, not 2"
        );
        assert_eq!(report.accounts, ["111111111111", "222222222222"]);
        assert_eq!(report.regions, ["us-east-1"]);
        let of_a = Some("111111111111".to_owned());
        assert!(report.created.iter().all(|e| e.account == of_a));
        assert!(report
            .deleted
            .iter()
            .all(|e| e.account.as_deref() == of_a.as_deref()));
        assert!(report
            .kept
            .iter()
            .all(|e| e.account.as_deref() == of_a.as_deref()));
        assert_eq!(report.failed.len(), 1);
        assert_eq!(report.failed[0].account.as_deref(), Some("222222222222"));
        assert_eq!(report.failed[0].action, FailureAction::AssumeRole);
        assert_eq!(
            report.failed[0].location(),
            "account 222222222222 us-east-1"
        );

        // Each account is its own section; B's failure is only in B's.
        let text = report.to_text(now());
        let (section_a, section_b) = text
            .split_once("account 222222222222 us-east-1:\n")
            .unwrap_or_else(|| panic!("no section for B in\n{text}"));
        assert!(
            section_a.contains("account 111111111111 us-east-1:\n  created snap-a"),
            "{text}"
        );
        assert!(!section_a.contains("FAILED"), "{text}");
        assert!(
            section_b.starts_with(
                "  FAILED  assume-role: assuming arn:aws:iam::222222222222:role/backup: AccessDenied\n"
            ),
            "{text}"
        );
        assert!(!section_b.contains("snap-a"), "{text}");

        let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
        assert_eq!(
            json["accounts"],
            serde_json::json!(["111111111111", "222222222222"])
        );
        assert_eq!(json["created"][0]["account"], "111111111111");
        assert_eq!(json["deleted"][0]["account"], "111111111111");
        assert_eq!(json["failed"][0]["account"], "222222222222");
    }

    #[test]
    fn the_same_outcome_in_each_account_is_reported_per_account() {
        let (a, b) = (unit("111111111111"), unit("222222222222"));
        let mut report = Report::for_units(&config(false), "r1".into(), vec![a.clone(), b.clone()]);
        report.add_unit(&a, clean_run());
        report.add_unit(&b, clean_run());
        assert_eq!(report.exit_status(), ExitStatus::Success);
        let accounts: Vec<_> = report
            .created
            .iter()
            .map(|e| e.account.as_deref())
            .collect();
        assert_eq!(
            accounts,
            [
                Some("111111111111"),
                Some("111111111111"),
                Some("222222222222"),
                Some("222222222222")
            ]
        );
    }

    #[test]
    fn every_account_blocked_means_nothing_was_attempted() {
        let (a, b) = (unit("111111111111"), unit("222222222222"));
        let mut report = Report::for_units(&config(false), "r1".into(), vec![a.clone(), b.clone()]);
        report.add_blocked(&a, denied());
        report.add_blocked(&b, denied());
        assert_eq!(report.exit_status(), ExitStatus::NothingAttempted);
    }

    #[test]
    fn without_roles_the_json_names_no_account() {
        let json: serde_json::Value =
            serde_json::from_str(&report(false, clean_run()).to_json()).unwrap();
        assert!(json.get("accounts").is_none(), "{json}");
        for list in ["created", "deleted", "kept"] {
            assert!(json[list][0].get("account").is_none(), "{list}: {json}");
        }
        let text = report(false, clean_run()).to_text(now());
        assert!(text.contains("\nus-east-1:\n"), "{text}");
    }
}
