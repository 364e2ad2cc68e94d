//! The report for people and programs: text, written line by line as it is
//! rendered, and the JSON document (`--output json`). Pure: what a person
//! sees is tested like any other decision, in report.rs's tests.

use chrono::{DateTime, Utc};

use crate::aws::accounts::Unit;
use crate::backup::report::{FailedEntry, KeptEntry, Permission, Report, WhyKept};
use crate::plan::{DeleteReason, KeepReason};
use crate::values::format_age;

impl Report {
    #[cfg(test)]
    pub(crate) fn to_json(&self) -> String {
        let mut out = Vec::new();
        self.write_json(&mut out)
            .expect("a report always serializes");
        String::from_utf8(out).expect("JSON is UTF-8")
    }

    /// The JSON document, written as it is rendered: at 30,000 snapshots
    /// it is megabytes, never held whole in memory.
    pub fn write_json(&self, mut out: impl std::io::Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut out, self)?;
        out.write_all(b"\n")
    }

    #[cfg(test)]
    /// The text for people, as a String, for tests.
    pub(crate) fn to_text(&self, now: DateTime<Utc>) -> String {
        let mut out = Vec::new();
        self.write_text(now, &mut out)
            .expect("writing to memory cannot fail");
        String::from_utf8(out).expect("the text is UTF-8")
    }

    /// The text for people, written line by line as it is rendered: a dry
    /// run at 30,000 snapshots is megabytes. A dry run lists the whole
    /// plan, kept snapshots included; a real run lists what changed and
    /// what failed.
    pub fn write_text(
        &self,
        now: DateTime<Utc>,
        out: &mut dyn std::io::Write,
    ) -> std::io::Result<()> {
        let what = if self.dry_run { "Dry run of" } else { "Ran" };
        writeln!(
            out,
            "{what} `ebsnap {}` for job {} ({}), run {}",
            self.command, self.job, self.policy, self.run_id
        )?;
        for unit in &self.units {
            let here = |account: Option<&str>, region: &str| {
                account == unit.account.as_deref() && region == unit.region
            };
            let mut lines = UnitLines {
                out: &mut *out,
                unit,
                started: false,
            };
            for failed in self
                .failed
                .iter()
                .filter(|f| here(f.account.as_deref(), &f.region))
            {
                lines.line(format_args!("  FAILED  {}", failed.describe()))?;
            }
            for created in self
                .created
                .iter()
                .filter(|c| here(c.account.as_deref(), &c.region))
            {
                let instance = created
                    .instance_name
                    .as_deref()
                    .unwrap_or(&created.instance_id);
                let verb = if self.dry_run { "create" } else { "created" };
                let id = created
                    .snapshot_id
                    .as_deref()
                    .map(|id| format!("{id} "))
                    .unwrap_or_default();
                let dropped = match created.tags_dropped.len() {
                    0 => String::new(),
                    n => format!(
                        "; {n} copied tag(s) left out, past EC2's tag limits: {}",
                        created.tags_dropped.join(", ")
                    ),
                };
                lines.line(format_args!(
                    "  {verb:<8}{id}{} of {instance} {} ({}){}{dropped}",
                    created.volume_id,
                    created.device,
                    created.instance_id,
                    permission_note(created.permission),
                ))?;
            }
            for copied in self
                .copied
                .iter()
                .filter(|c| here(c.account.as_deref(), &c.region))
            {
                let verb = if self.dry_run { "copy" } else { "copied" };
                let copy = copied.snapshot_id.as_deref().unwrap_or("the new snapshot");
                let source = copied
                    .source_snapshot_id
                    .as_deref()
                    .unwrap_or("the new snapshot");
                let note = if copied.permission.is_some() {
                    " (once completed; permission not checked: it does not exist yet)"
                } else {
                    ""
                };
                lines.line(format_args!(
                    "  {verb:<8}{copy} from {source} of {} {} in {}{note}",
                    copied.volume_id, copied.device, copied.source_region,
                ))?;
            }
            for deleted in self
                .deleted
                .iter()
                .filter(|d| here(d.account.as_deref(), &d.region))
            {
                let verb = if self.dry_run { "delete" } else { "deleted" };
                let gone = if deleted.already_gone {
                    ", already gone"
                } else {
                    ""
                };
                let why = match *deleted.reason {
                    DeleteReason::Expired => String::new(),
                    other => format!(": {other}"),
                };
                lines.line(format_args!(
                    "  {verb:<8}{} of {}, {} old{gone}{why}{}",
                    deleted.snapshot_id,
                    deleted.volume_id,
                    format_age(now - deleted.start_time),
                    permission_note(deleted.permission),
                ))?;
            }
            for archived in self
                .archived
                .iter()
                .filter(|a| here(a.account.as_deref(), &a.region))
            {
                let verb = if self.dry_run { "archive" } else { "archived" };
                lines.line(format_args!(
                    "  {verb:<8}{} of {}, {} old: {}, kept until {} at least{}",
                    archived.snapshot_id,
                    archived.volume_id,
                    format_age(now - archived.start_time),
                    archived.kept_by,
                    archived.kept_until_at_least.format("%Y-%m-%d"),
                    permission_note(archived.permission),
                ))?;
            }
            // A real run shows only the kept snapshots worth a look.
            let notable = |k: &&KeptEntry| {
                self.dry_run
                    || matches!(
                        *k.reason,
                        WhyKept::InUse { .. }
                            | WhyKept::Locked { .. }
                            | WhyKept::Withheld
                            | WhyKept::Plan(
                                KeepReason::VolumeFailed
                                    | KeepReason::DeleteGuard
                                    | KeepReason::Archived
                            )
                    )
            };
            for kept in self
                .kept
                .iter()
                .filter(|k| here(k.account.as_deref(), &k.region))
                .filter(notable)
            {
                lines.line(format_args!(
                    "  keep    {} of {}, {} old: {}",
                    kept.snapshot_id,
                    kept.volume_id,
                    format_age(now - kept.start_time),
                    kept.reason
                ))?;
            }
            for skipped in self
                .skipped_volumes
                .iter()
                .filter(|s| here(s.account.as_deref(), &s.region))
            {
                let instance = skipped
                    .instance_name
                    .as_deref()
                    .unwrap_or(&skipped.instance_id);
                lines.line(format_args!(
                    "  skip    {} of {instance} {}: {}",
                    skipped.volume_id, skipped.device, skipped.reason
                ))?;
            }
            if self.dry_run {
                for skipped in self
                    .skipped_instances
                    .iter()
                    .filter(|s| here(s.account.as_deref(), &s.region))
                {
                    let name = skipped
                        .instance_name
                        .as_deref()
                        .map(|n| format!(" {n}"))
                        .unwrap_or_default();
                    lines.line(format_args!(
                        "  skip    {}{name}: {}",
                        skipped.instance_id, skipped.reason
                    ))?;
                }
            }
        }
        writeln!(out, "{}", self.summary())
    }

    /// One line: what was (or would be) done.
    pub(crate) fn summary(&self) -> String {
        let (create, delete, keep) = if self.dry_run {
            ("would create", "delete", "keep")
        } else {
            ("created", "deleted", "kept")
        };
        let copied = match (self.copied.len(), self.dry_run) {
            (0, _) => String::new(),
            (n, true) => format!(", copy {n}"),
            (n, false) => format!(", copied {n}"),
        };
        let archived = match (self.archived.len(), self.dry_run) {
            (0, _) => String::new(),
            (n, true) => format!(", archive {n}"),
            (n, false) => format!(", archived {n}"),
        };
        let counts = format!(
            "{create} {} snapshot(s){copied}, {delete} {}{archived}, {keep} {}, {} failed",
            self.created.len(),
            self.deleted.len(),
            self.kept.len(),
            self.failed.len()
        );
        if self.dry_run {
            format!("Dry run: {counts}. Nothing was changed.")
        } else {
            let mut text = counts;
            text[..1].make_ascii_uppercase();
            text + "."
        }
    }
}

/// `: permitted` after a dry-run action EC2 confirmed the credentials may do.
fn permission_note(permission: Option<Permission>) -> &'static str {
    match permission {
        Some(Permission::Allowed) => ": permitted",
        Some(Permission::Planned) | None => "",
    }
}

impl FailedEntry {
    /// Where it failed: the region, after the account when there is one.
    pub fn location(&self) -> String {
        match &self.account {
            Some(account) => format!("account {account} {}", self.region),
            None => self.region.clone(),
        }
    }

    /// `create vol-1 i-1: reason`: the action, what it was about, and why it
    /// failed.
    pub fn describe(&self) -> String {
        let mut text = self.action.code().to_owned();
        for id in [&self.snapshot_id, &self.volume_id, &self.instance_id]
            .into_iter()
            .flatten()
        {
            text.push(' ');
            text.push_str(id);
        }
        format!("{text}: {}", self.reason)
    }
}

/// One unit's section of the text: its header goes out before its first
/// line, and a unit with nothing to say has none.
struct UnitLines<'a> {
    out: &'a mut dyn std::io::Write,
    unit: &'a Unit,
    started: bool,
}

impl UnitLines<'_> {
    fn line(&mut self, line: std::fmt::Arguments<'_>) -> std::io::Result<()> {
        if !self.started {
            self.started = true;
            match &self.unit.account {
                Some(account) => writeln!(self.out, "account {account} {}:", self.unit.region)?,
                None => writeln!(self.out, "{}:", self.unit.region)?,
            }
        }
        writeln!(self.out, "{line}")
    }
}
