//! State snapshots for assertions: the emulator's snapshots, volumes and
//! instances at one moment, and what changed between two such moments.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapInfo {
    pub id: String,
    pub volume_id: String,
    pub state: String,
    /// RFC 3339
    pub start_time: String,
    pub start_secs: i64,
    pub description: String,
    pub tags: BTreeMap<String, String>,
}

impl SnapInfo {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotState {
    pub snapshots: BTreeMap<String, SnapInfo>,
}

impl SnapshotState {
    pub fn get(&self, id: &str) -> Option<&SnapInfo> {
        self.snapshots.get(id)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.snapshots.contains_key(id)
    }

    pub fn of_volume(&self, volume_id: &str) -> Vec<&SnapInfo> {
        self.snapshots
            .values()
            .filter(|s| s.volume_id == volume_id)
            .collect()
    }

    /// What changed from `self` (before) to `after`.
    pub fn diff(&self, after: &SnapshotState) -> SnapshotDiff {
        let added = after
            .snapshots
            .values()
            .filter(|s| !self.contains(&s.id))
            .cloned()
            .collect();
        let removed = self
            .snapshots
            .values()
            .filter(|s| !after.contains(&s.id))
            .cloned()
            .collect();
        let changed = self
            .snapshots
            .values()
            .filter_map(|s| {
                let a = after.get(&s.id)?;
                (a != s).then(|| (s.clone(), a.clone()))
            })
            .collect();
        SnapshotDiff {
            added,
            removed,
            changed,
        }
    }
}

#[derive(Debug)]
pub struct SnapshotDiff {
    pub added: Vec<SnapInfo>,
    pub removed: Vec<SnapInfo>,
    pub changed: Vec<(SnapInfo, SnapInfo)>,
}

impl SnapshotDiff {
    pub fn added_ids(&self) -> BTreeSet<String> {
        self.added.iter().map(|s| s.id.clone()).collect()
    }

    pub fn removed_ids(&self) -> BTreeSet<String> {
        self.removed.iter().map(|s| s.id.clone()).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorldState {
    pub snapshots: SnapshotState,
    pub volumes: BTreeMap<String, String>,
    pub instances: BTreeMap<String, String>,
}

/// Asserts two world states are equal, printing only what differs.
pub fn assert_world_unchanged(before: &WorldState, after: &WorldState, context: &dyn fmt::Display) {
    if before == after {
        return;
    }
    let diff = before.snapshots.diff(&after.snapshots);
    let mut msg = "the emulator's state changed\n".to_string();
    for s in &diff.added {
        msg.push_str(&format!("  snapshot added:   {s:?}\n"));
    }
    for s in &diff.removed {
        msg.push_str(&format!("  snapshot removed: {s:?}\n"));
    }
    for (b, a) in &diff.changed {
        msg.push_str(&format!(
            "  snapshot changed: {b:?}\n                 -> {a:?}\n"
        ));
    }
    for (label, b, a) in [
        ("volume", &before.volumes, &after.volumes),
        ("instance", &before.instances, &after.instances),
    ] {
        for key in b.keys().chain(a.keys()).collect::<BTreeSet<_>>() {
            if b.get(key) != a.get(key) {
                msg.push_str(&format!(
                    "  {label} {key}: {:?} -> {:?}\n",
                    b.get(key),
                    a.get(key)
                ));
            }
        }
    }
    panic!("{msg}{context}");
}
