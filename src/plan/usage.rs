//! The jobs the plan could never carry out as asked, refused before any
//! call to AWS.

use std::fmt;

use crate::config::Policy;
use crate::plan::tags::{CONTRACT_TAGS, CONTRACT_TAGS_ON_COPY};
use crate::values::{DuplicateTagKey, MAX_TAGS};

/// Refuses, before any call, the user's tags (`--snapshot-tag`) that cannot all be
/// on every snapshot: a key given twice, or more than fit beside ebsnap's
/// own tags within EC2's 50 (beside the 7 of a copy with `--copy-to`).
/// ebsnap's tags and the user's are never dropped; only copied ones are.
pub(crate) fn check_user_tags(
    user_tags: &[(String, String)],
    copying: bool,
) -> Result<(), UsageError> {
    crate::values::check_distinct_tag_keys(user_tags).map_err(UsageError::DuplicateTag)?;
    let own = if copying {
        CONTRACT_TAGS_ON_COPY
    } else {
        CONTRACT_TAGS
    };
    if user_tags.len() > MAX_TAGS - own {
        return Err(UsageError::TooManyTags {
            given: user_tags.len(),
            copying,
        });
    }
    Ok(())
}

/// A job the plan could never carry out as asked, refused before any call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsageError {
    /// A key given twice among the user's tags.
    DuplicateTag(DuplicateTagKey),
    /// More user tags than fit beside ebsnap's own within EC2's limit, on
    /// a snapshot (or a `--copy-to` copy, which carries 2 more).
    TooManyTags { given: usize, copying: bool },
    /// `--archive-after` without `--keep-monthly` or `--keep-yearly`.
    ArchiveWithoutLongTermRule,
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UsageError::DuplicateTag(duplicate) => duplicate.fmt(f),
            UsageError::TooManyTags { given, copying } => {
                let (own, on) = if *copying {
                    (CONTRACT_TAGS_ON_COPY, "on a --copy-to copy")
                } else {
                    (CONTRACT_TAGS, "on a snapshot")
                };
                let room = MAX_TAGS - own;
                write!(
                    f,
                    "{given} --snapshot-tag tags and ebsnap's own {own} {on} are more than the {MAX_TAGS} tags EC2 allows: give at most {room} --snapshot-tag"
                )
            }
            UsageError::ArchiveWithoutLongTermRule => f.write_str(
                "--archive-after moves only snapshots that --keep-monthly or --keep-yearly \
                 alone keep: add one of them (e.g. --keep-monthly 12), or leave --archive-after out",
            ),
        }
    }
}

impl std::error::Error for UsageError {}

/// `--archive-after` moves only what the monthly or yearly rules alone
/// keep: without either, it could never move anything.
pub(crate) fn check_archive_after(policy: &Policy) -> Result<(), UsageError> {
    if policy.archive_after.is_some() && policy.keep.monthly == 0 && policy.keep.yearly == 0 {
        return Err(UsageError::ArchiveWithoutLongTermRule);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_user_tags, UsageError};

    use crate::plan::testing::pairs;

    #[test]
    fn users_tags_that_cannot_all_fit_beside_ebsnaps_are_refused_at_startup() {
        let user = |n: usize| -> Vec<(String, String)> {
            (0..n).map(|i| (format!("k{i}"), "v".to_owned())).collect()
        };
        assert_eq!(check_user_tags(&[], false), Ok(()));
        assert_eq!(check_user_tags(&user(45), false), Ok(()));
        let too_many = check_user_tags(&user(46), false);
        assert_eq!(
            too_many,
            Err(UsageError::TooManyTags {
                given: 46,
                copying: false
            })
        );
        assert_eq!(
            too_many.unwrap_err().to_string(),
            "46 --snapshot-tag tags and ebsnap's own 5 on a snapshot are more than the 50 tags \
             EC2 allows: give at most 45 --snapshot-tag"
        );
        // A copy carries 2 more of ebsnap's (where it came from).
        assert_eq!(check_user_tags(&user(43), true), Ok(()));
        let too_many = check_user_tags(&user(44), true);
        assert_eq!(
            too_many,
            Err(UsageError::TooManyTags {
                given: 44,
                copying: true
            })
        );
        assert_eq!(
            too_many.unwrap_err().to_string(),
            "44 --snapshot-tag tags and ebsnap's own 7 on a --copy-to copy are more than the 50 \
             tags EC2 allows: give at most 43 --snapshot-tag"
        );
        let twice = pairs(&[("Team", "db"), ("Team", "web")]);
        let err = check_user_tags(&twice, false).unwrap_err();
        assert!(
            matches!(&err, UsageError::DuplicateTag(d) if d.key == "Team"),
            "{err:?}"
        );
        assert!(err.to_string().contains("--snapshot-tag Team is given twice"));
    }
}
