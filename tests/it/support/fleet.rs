//! Seeding snapshots as ebsnap's runs would have made them.

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
