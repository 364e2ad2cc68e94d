//! The tags ebsnap puts on what it makes beside the contract's: which of
//! the source's tags `--inherit-tags` copies, and how many fit within EC2's
//! limits beside ebsnap's own and the user's (`--snapshot-tag`).

use std::collections::BTreeMap;

use crate::inventory::TAG_NAME;
use crate::values::{CopyTags, MAX_TAGS, MAX_TAG_KEY, MAX_TAG_VALUE};

/// The tags of the contract, on every snapshot.
pub(crate) const CONTRACT_TAGS: usize = 5;

/// ebsnap's own tags on a disaster-recovery copy (`--copy-to`): the
/// contract's and where it came from (`ebsnap:source-snapshot`,
/// `ebsnap:source-region`).
pub(crate) const CONTRACT_TAGS_ON_COPY: usize = CONTRACT_TAGS + 2;

/// The `extra` tags that fit on a resource beside `kept` tags of ebsnap's
/// own (which always stay): within EC2's limits, in order, the first that
/// fit. Returns them, and the keys of those left out.
pub(crate) fn fit_tags(
    kept: usize,
    extra: impl IntoIterator<Item = (String, String)>,
) -> (Vec<(String, String)>, Vec<String>) {
    let (mut fit, mut dropped) = (Vec::new(), Vec::new());
    for (key, value) in extra {
        let within = key.chars().count() <= MAX_TAG_KEY && value.chars().count() <= MAX_TAG_VALUE;
        if within && kept + fit.len() < MAX_TAGS {
            fit.push((key, value));
        } else {
            dropped.push(key);
        }
    }
    (fit, dropped)
}

/// The tags `--inherit-tags` puts on a volume's snapshot: the instance's and/or
/// the volume's (the volume's value wins), never `aws:` tags (reserved) nor
/// the contract's own keys (ebsnap's tags win) nor the user's (`--snapshot-tag`
/// wins), sorted, and no more than fit beside the contract and the user's
/// tags within EC2's limits. Returns them, and the keys of those that did
/// not fit.
pub(crate) fn copied_tags(
    mode: Option<CopyTags>,
    user_tags: &[(String, String)],
    instance_tags: &[(String, String)],
    volume_tags: &[(String, String)],
) -> (Vec<(String, String)>, Vec<String>) {
    let (from_instance, from_volume) = match mode {
        None => return (vec![], vec![]),
        Some(CopyTags::Instance) => (instance_tags, &[][..]),
        Some(CopyTags::Volume) => (&[][..], volume_tags),
        Some(CopyTags::Both) => (instance_tags, volume_tags),
    };
    let copyable = |key: &str| {
        let lower = key.to_ascii_lowercase();
        !lower.starts_with("aws:")
            && !lower.starts_with("ebsnap:")
            && key != TAG_NAME
            && !user_tags.iter().any(|(user, _)| user == key)
    };
    let mut tags: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, value) in from_instance
        .iter()
        .chain(from_volume)
        .filter(|(k, _)| copyable(k))
    {
        tags.insert(key, value);
    }
    let tags = tags.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned()));
    fit_tags(CONTRACT_TAGS + user_tags.len(), tags)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{copied_tags, fit_tags, CONTRACT_TAGS};

    use crate::plan::requests::{Create, RunTags};
    use crate::plan::testing::pairs;
    use crate::values::CopyTags;

    #[test]
    fn copied_tags_never_take_aws_or_contract_keys_and_the_volume_wins() {
        let instance = pairs(&[
            ("team", "db"),
            ("env", "prod"),
            ("Name", "mongo-1"),
            ("aws:cloudformation:stack-name", "x"),
        ]);
        let volume = pairs(&[
            ("env", "prod-data"),
            ("ebsnap:skip", "false"),
            ("AWS:backup", "y"),
            ("tier", "hot"),
        ]);
        assert_eq!(copied_tags(None, &[], &instance, &volume).0, vec![]);
        assert_eq!(
            copied_tags(Some(CopyTags::Instance), &[], &instance, &volume).0,
            pairs(&[("env", "prod"), ("team", "db")])
        );
        assert_eq!(
            copied_tags(Some(CopyTags::Volume), &[], &instance, &volume).0,
            pairs(&[("env", "prod-data"), ("tier", "hot")])
        );
        assert_eq!(
            copied_tags(Some(CopyTags::Both), &[], &instance, &volume).0,
            pairs(&[("env", "prod-data"), ("team", "db"), ("tier", "hot")])
        );
    }

    #[test]
    fn copied_tags_stay_within_ec2s_fifty_beside_the_contract() {
        let many: Vec<(String, String)> = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        let (copied, dropped) = copied_tags(Some(CopyTags::Instance), &[], &many, &[]);
        assert_eq!(copied.len(), 45);
        assert_eq!(
            dropped,
            (45..60).map(|i| format!("k{i}")).collect::<Vec<_>>()
        );
        let run = RunTags {
            job: "default",
            run_id: "r1",
            user: &Arc::default(),
        };
        let create = Create::new("i-1", None, "vol-1", "/dev/sdf", run, copied, dropped);
        let tags = create.tags.to_vec();
        assert_eq!(tags.len(), 50);
        assert_eq!(
            tags[0],
            ("ebsnap:job".to_owned(), "default".to_owned()),
            "the contract comes first"
        );
    }

    #[test]
    fn a_tag_past_ec2s_key_or_value_length_is_left_out_and_named() {
        let long_key = "k".repeat(129);
        let tags = vec![
            ("ok".to_owned(), "v".repeat(256)),
            (long_key.clone(), "v".into()),
            ("long-value".to_owned(), "v".repeat(257)),
        ];
        let (fit, dropped) = fit_tags(CONTRACT_TAGS, tags);
        assert_eq!(fit, vec![("ok".to_owned(), "v".repeat(256))]);
        assert_eq!(dropped, vec![long_key, "long-value".to_owned()]);
        // Beside 49 tags of its own, one more fits; none beside 50.
        assert_eq!(fit_tags(49, pairs(&[("a", "1"), ("b", "2")])).1, ["b"]);
        assert_eq!(fit_tags(50, pairs(&[("a", "1")])).1, ["a"]);
    }

    #[test]
    fn the_users_tags_take_room_from_the_copied_ones_and_are_never_dropped() {
        let user = (0..10)
            .map(|i| (format!("user-{i}"), "u".to_owned()))
            .collect::<Vec<_>>();
        let many: Vec<(String, String)> = (0..60)
            .map(|i| (format!("k{i:02}"), "v".to_owned()))
            .collect();
        let (copied, dropped) = copied_tags(Some(CopyTags::Instance), &user, &many, &[]);
        assert_eq!(copied.len(), 50 - CONTRACT_TAGS - 10);
        assert_eq!(dropped.len(), 60 - 35);
        // With 45 of the user's, nothing is copied; all 45 are there.
        let most: Vec<(String, String)> = (0..45)
            .map(|i| (format!("user-{i:02}"), "u".to_owned()))
            .collect();
        let (copied, dropped) = copied_tags(Some(CopyTags::Instance), &most, &many, &[]);
        assert_eq!((copied.len(), dropped.len()), (0, 60));
        let run = RunTags {
            job: "default",
            run_id: "r1",
            user: &most.as_slice().into(),
        };
        let create = Create::new("i-1", None, "vol-1", "/dev/sdf", run, copied, dropped);
        let tags = create.tags.to_vec();
        assert_eq!(tags.len(), 50);
        assert_eq!(&tags[CONTRACT_TAGS..], most.as_slice());
    }
}
