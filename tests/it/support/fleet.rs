//! Seeding snapshots as ebsnap's runs would have made them.

use std::collections::BTreeSet;

use ages::*;

use super::Emulator;

/// Ages (hours) of seeded snapshots around the default 7-day retention, with
/// 12 h margins on each side of the line, so no test depends on timing.
pub mod ages {
    pub const H_0_5D: u32 = 12;
    pub const H_1_5D: u32 = 36;
    pub const H_2_5D: u32 = 60;
    pub const H_6_5D: u32 = 156;
    pub const H_7_5D: u32 = 180;
    pub const H_8_5D: u32 = 204;
    pub const H_9_5D: u32 = 228;
    /// The default retention (7 days) in hours.
    pub const RETENTION_H: u32 = 168;
}

/// The tags ebsnap puts on a job's snapshot, for seeding one by hand. Each
/// run has its own id: two snapshots of one volume with one run id are a
/// duplicate, which purge deletes (safety rule 7).
pub fn job_tags<'a>(
    job: &'a str,
    instance_id: &'a str,
    device: &'a str,
    run_id: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("ebsnap:job", job),
        ("ebsnap:instance-id", instance_id),
        ("ebsnap:device", device),
        ("ebsnap:run-id", run_id),
    ]
}

/// The run id of a seeded snapshot of `hours_ago`: one run a seeded age.
pub fn seeded_run_id(hours_ago: u32) -> String {
    format!("seeded-{hours_ago}h")
}

/// A snapshot a test seeded.
#[derive(Clone, Debug)]
pub struct Seeded {
    pub id: String,
    pub volume_id: String,
    pub hours_ago: u32,
    /// Value of `ebsnap:job`, None for unmarked snapshots.
    pub job: Option<String>,
}

/// A selected volume: what ebsnap must snapshot.
#[derive(Clone, Debug)]
pub struct Selected {
    pub instance_id: String,
    pub device: String,
    pub volume_id: String,
    /// Expected `Name` tag of its snapshots.
    pub name: String,
}

/// The fleet the e2e and faults tests share:
///
/// | instance | state | Scheduled-Snapshots | volumes |
/// |---|---|---|---|
/// | web | running | true  | /dev/sda1, /dev/sdf, /dev/sdg |
/// | db  | stopped | Yes   | /dev/sda1, /dev/sdf (no Name tag) |
/// | off | running | false | /dev/sda1, /dev/sdf |
///
/// plus an "orphan" volume, deleted, whose job snapshots remain; the default
/// job's snapshots (8 expired of 16; every volume with expired ones also has a
/// newer one, so keep-min 1 never protects an expired one), another job's
/// (`weekly`) and unmarked ones. tests/it/e2e.rs adds instances around it.
pub struct Fleet {
    pub web: String,
    pub db: String,
    pub off: String,
    pub web_root: String,
    pub web_sdf: String,
    pub web_sdg: String,
    pub db_root: String,
    pub db_sdf: String,
    pub off_root: String,
    pub off_sdf: String,
    /// The volume that no longer exists.
    pub orphan_vol: String,
    pub seeded: Vec<Seeded>,
}

impl Fleet {
    /// The fleet, with the orphan volume's job snapshots made by web.
    pub fn seed(emu: &Emulator) -> Fleet {
        Fleet::seed_with(emu, &[], None)
    }

    /// The fleet, db with `db_tags` besides Scheduled-Snapshots, and the
    /// orphan volume's job snapshots made by `orphan_owner` (web when None).
    pub fn seed_with(
        emu: &Emulator,
        db_tags: &[(&str, &str)],
        orphan_owner: Option<&str>,
    ) -> Fleet {
        let web = emu.launch_instance(&[("Scheduled-Snapshots", "true"), ("Name", "web")]);
        let db_tags: Vec<(&str, &str)> = [("Scheduled-Snapshots", "Yes")]
            .into_iter()
            .chain(db_tags.iter().copied())
            .collect();
        let db = emu.launch_instance(&db_tags);
        let off = emu.launch_instance(&[("Scheduled-Snapshots", "false"), ("Name", "off")]);
        let web_root = emu.root_volume(&web).1;
        let web_sdf = emu.attach_new_volume(&web, "/dev/sdf");
        let web_sdg = emu.attach_new_volume(&web, "/dev/sdg");
        let db_root = emu.root_volume(&db).1;
        let db_sdf = emu.attach_new_volume(&db, "/dev/sdf");
        let off_root = emu.root_volume(&off).1;
        let off_sdf = emu.attach_new_volume(&off, "/dev/sdf");
        let orphan_vol = emu.create_volume(4);
        let orphan_owner = orphan_owner.unwrap_or(&web).to_string();
        let mut fleet = Fleet {
            web: web.clone(),
            db: db.clone(),
            off: off.clone(),
            web_root: web_root.clone(),
            web_sdf: web_sdf.clone(),
            web_sdg,
            db_root: db_root.clone(),
            db_sdf: db_sdf.clone(),
            off_root,
            off_sdf: off_sdf.clone(),
            orphan_vol: orphan_vol.clone(),
            seeded: Vec::new(),
        };
        let default_job: &[(&str, &str, &str, &[u32])] = &[
            (
                &web,
                &web_root,
                "/dev/sda1",
                &[H_0_5D, H_2_5D, H_6_5D, H_7_5D, H_9_5D],
            ),
            (&web, &web_sdf, "/dev/sdf", &[H_2_5D, H_7_5D, H_9_5D]),
            (&db, &db_root, "/dev/sda1", &[H_6_5D, H_9_5D]),
            (&db, &db_sdf, "/dev/sdf", &[H_0_5D, H_7_5D]),
            // An instance that is no longer selected: its job snapshots still age out.
            (&off, &off_sdf, "/dev/sdf", &[H_2_5D, H_9_5D]),
            // A volume that no longer exists: its job snapshots still age out.
            (&orphan_owner, &orphan_vol, "/dev/sdh", &[H_1_5D, H_9_5D]),
        ];
        for (instance, volume, device, ages) in default_job {
            for h in *ages {
                fleet.seed_job(emu, "default", instance, volume, device, *h);
            }
        }
        // Another job's snapshots.
        for h in [H_0_5D, H_8_5D, H_9_5D] {
            fleet.seed_job(emu, "weekly", &web, &web_root, "/dev/sda1", h);
        }
        fleet.seed_job(emu, "weekly", &web, &web_sdf, "/dev/sdf", H_2_5D);
        // Snapshots without our marker, all older than any retention used here.
        fleet.seed_other(emu, &web_root, H_9_5D, &[]);
        fleet.seed_other(emu, &web_sdf, H_9_5D, &[("Name", "manual backup")]);
        fleet.seed_other(emu, &db_root, H_9_5D, &[("ebsnap:job", "default-archive")]);
        // Finally change the instances' lives: db stopped, orphan deleted.
        emu.stop_instance(&db);
        emu.delete_volume(&orphan_vol);
        fleet
    }

    /// Seeds a snapshot of `job` as its run `hours_ago` would have made it.
    pub fn seed_job(
        &mut self,
        emu: &Emulator,
        job: &str,
        instance_id: &str,
        volume_id: &str,
        device: &str,
        hours_ago: u32,
    ) -> String {
        let run_id = seeded_run_id(hours_ago);
        let id = emu.create_snapshot_aged(
            volume_id,
            hours_ago,
            &job_tags(job, instance_id, device, &run_id),
        );
        self.seeded.push(Seeded {
            id: id.clone(),
            volume_id: volume_id.to_string(),
            hours_ago,
            job: Some(job.to_string()),
        });
        id
    }

    /// Seeds a snapshot with these tags only (no job's, or part of one).
    pub fn seed_other(
        &mut self,
        emu: &Emulator,
        volume_id: &str,
        hours_ago: u32,
        tags: &[(&str, &str)],
    ) {
        let id = emu.create_snapshot_aged(volume_id, hours_ago, tags);
        let job = tags
            .iter()
            .find(|(k, _)| *k == "ebsnap:job")
            .map(|(_, v)| v.to_string());
        self.seeded.push(Seeded {
            id,
            volume_id: volume_id.to_string(),
            hours_ago,
            job,
        });
    }

    /// Snapshots of `job` matching `pred`.
    pub fn job_snapshots(&self, job: &str, pred: impl Fn(&Seeded) -> bool) -> BTreeSet<String> {
        self.seeded
            .iter()
            .filter(|s| s.job.as_deref() == Some(job) && pred(s))
            .map(|s| s.id.clone())
            .collect()
    }

    /// The newest snapshot of `job` of each volume.
    pub fn newest_per_volume(&self, job: &str) -> BTreeSet<String> {
        let mut newest: std::collections::BTreeMap<&str, &Seeded> = Default::default();
        for s in self.seeded.iter().filter(|s| s.job.as_deref() == Some(job)) {
            let entry = newest.entry(s.volume_id.as_str()).or_insert(s);
            if s.hours_ago < entry.hours_ago {
                *entry = s;
            }
        }
        newest.values().map(|s| s.id.clone()).collect()
    }

    /// The default job's snapshots older than the default retention.
    pub fn expired_default(&self) -> BTreeSet<String> {
        self.job_snapshots("default", |s| s.hours_ago > RETENTION_H)
    }

    /// The default job's snapshots within the default retention.
    pub fn recent_default(&self) -> BTreeSet<String> {
        self.job_snapshots("default", |s| s.hours_ago <= RETENTION_H)
    }

    /// Every seeded snapshot that is not the default job's.
    pub fn not_default_job(&self) -> BTreeSet<String> {
        self.seeded
            .iter()
            .filter(|s| s.job.as_deref() != Some("default"))
            .map(|s| s.id.clone())
            .collect()
    }

    /// The volumes `ebsnap run` must snapshot.
    pub fn selected(&self) -> Vec<Selected> {
        let sel = |instance_id: &str, name: &str, device: &str, volume_id: &str| Selected {
            instance_id: instance_id.to_string(),
            device: device.to_string(),
            volume_id: volume_id.to_string(),
            name: format!("{name} {device}"),
        };
        vec![
            sel(&self.web, "web", "/dev/sda1", &self.web_root),
            sel(&self.web, "web", "/dev/sdf", &self.web_sdf),
            sel(&self.web, "web", "/dev/sdg", &self.web_sdg),
            // db has no Name tag: its id stands in.
            sel(&self.db, &self.db, "/dev/sda1", &self.db_root),
            sel(&self.db, &self.db, "/dev/sdf", &self.db_sdf),
        ]
    }

    pub fn selected_volume_ids(&self) -> BTreeSet<String> {
        self.selected().into_iter().map(|s| s.volume_id).collect()
    }
}
