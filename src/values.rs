//! The values ebsnap works with, and how they are typed and shown: the
//! parsers behind the flags (durations, job names, regions, role ARNs...),
//! durations and ages rendered back as a user would write them, and the
//! small enums of the command line.
//!
//! A leaf: it knows nothing of clap (cli.rs maps its enums onto the command
//! line) nor of anything else in the crate, so every layer may use it.

use chrono::TimeDelta;
use serde::Serializer;

/// An IAM role to assume (`--assume-role`), and the account it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub arn: String,
    /// The 12-digit account id, from the ARN.
    pub account: String,
}

/// Whose tags `--inherit-tags` copies onto the snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyTags {
    /// The source volume's tags.
    Volume,
    /// The instance's tags.
    Instance,
    /// Both; the volume's value wins where both have a key.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal and NO_COLOR is not set.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One line per event, for people.
    Text,
    /// One JSON object per event, for log shippers.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A short summary for people.
    Text,
    /// One JSON document on stdout, for programs.
    Json,
}

/// What a failed pre-hook means for the instance's snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookFailure {
    /// Snapshot anyway (crash-consistent), and fail the run.
    Snapshot,
    /// No snapshot of that instance, and fail the run.
    Skip,
}

/// Parses a duration such as `7d`, `36h`, `2w`, `90m` or `3600s`.
/// Zero and negative durations are refused: a zero retention would delete
/// every backup but the `--keep-min` newest.
pub fn parse_duration(text: &str) -> Result<TimeDelta, String> {
    let text = text.trim();
    let hint = "write a whole number and a unit (s, m, h, d or w), e.g. 7d or 36h";
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("'{text}' is not a duration: {hint}"));
    }
    let amount: i64 = digits
        .parse()
        .map_err(|_| format!("'{text}' is too large: {hint}"))?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        "" => return Err(format!("'{text}' has no unit: {hint}")),
        other => return Err(format!("unknown unit '{other}' in '{text}': {hint}")),
    };
    if amount == 0 {
        return Err(format!(
            "'{text}' is zero: a duration must be longer than that"
        ));
    }
    amount
        .checked_mul(seconds_per_unit)
        .and_then(TimeDelta::try_seconds)
        .ok_or_else(|| format!("'{text}' is too large: {hint}"))
}

/// `--orphans-after`: how old an orphan series' newest snapshot must be
/// before purge deletes the whole series. A duration, never zero: zero would
/// delete an orphan's last backup the moment its volume is gone.
pub fn parse_orphans_after(text: &str) -> Result<TimeDelta, String> {
    parse_duration(text).map_err(|err| {
        format!("{err}; leave --orphans-after out to keep each orphan's last backup")
    })
}

/// `--archive-after`: how old a snapshot only the monthly or yearly rules
/// keep must be before it moves to the archive tier. A duration, never zero.
pub fn parse_archive_after(text: &str) -> Result<TimeDelta, String> {
    parse_duration(text).map_err(|err| {
        format!("{err}; leave --archive-after out to keep every snapshot in the standard tier")
    })
}

/// Renders a duration the way a user would likely have typed it: in days,
/// hours, minutes or seconds (`7d`, `36h`; two weeks read `14d`).
pub fn format_duration(duration: TimeDelta) -> String {
    let seconds = duration.num_seconds();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// Checks that a job name can be a tag value and read well in reports:
/// letters, digits, spaces and `_ . : / = + - @`, at most 128 characters.
pub fn parse_job(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the job name is empty: give a name such as 'default' or 'hourly'".into());
    }
    if text.chars().count() > 128 {
        return Err("the job name is longer than 128 characters".into());
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_alphanumeric() || " _.:/=+-@".contains(*c)))
    {
        return Err(format!(
            "the job name may not contain '{bad}': use letters, digits, spaces and _ . : / = + - @"
        ));
    }
    Ok(text.to_owned())
}

/// Checks `--keep-min`: a whole number, at least 1, so that the last good
/// backup of a volume is never deleted.
pub fn parse_keep_min(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 would let purge delete a volume's last good backup: give 1 or more".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{text}' is not a whole number: give how many snapshots to keep, e.g. 1"
        )),
    }
}

/// Checks `--tag-value`: an empty one would quietly select only instances
/// tagged with an empty value, i.e. almost never what was meant.
pub fn parse_tag_value(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("the tag value is empty: leave --tag-value (and EBSNAP_TAG_VALUE) out to select any value but false, no, off or 0".into());
    }
    Ok(text.to_owned())
}

/// Checks a `--keep-*` count: a whole number, at least 1 (a rule that keeps
/// nothing is a rule left out).
pub fn parse_keep_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(0) => Err("0 keeps nothing: give 1 or more, or leave the flag out".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!(
            "'{text}' is not a whole number: give how many to keep, e.g. 7"
        )),
    }
}

/// Checks `--timezone`: an IANA timezone name, e.g. `Europe/Berlin`.
pub fn parse_timezone(text: &str) -> Result<chrono_tz::Tz, String> {
    text.trim().parse::<chrono_tz::Tz>().map_err(|_| {
        format!("'{text}' is not an IANA timezone: give a name such as UTC, Europe/Berlin or Asia/Kolkata")
    })
}

/// `--min-interval`: a duration, or 0 to disable.
pub fn parse_min_interval(text: &str) -> Result<TimeDelta, String> {
    match text.trim() {
        "0" | "0s" | "0m" | "0h" | "0d" => Ok(TimeDelta::zero()),
        other => parse_duration(other),
    }
}

/// `--max-delete`: a whole number, 0 or more.
pub fn parse_max_delete(text: &str) -> Result<usize, String> {
    text.trim().parse::<usize>().map_err(|_| {
        format!("'{text}' is not a whole number: give how many snapshots one purge may delete, e.g. 100")
    })
}

/// `--max-rate`: calls per second, more than 0 and at most EC2's burst.
pub fn parse_max_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= 100.0 => Ok(rate),
        _ => Err(format!("'{text}' is not a rate: give calls per second, more than 0 and at most 100, e.g. 2 or 0.5")),
    }
}

/// Checks the shape of a region name (`us-east-1`, `us-gov-west-1`,
/// `ap-southeast-4`), so a typo fails at once instead of as a DNS error.
pub fn parse_region(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('-').collect();
    let well_formed = parts.len() >= 3
        && parts[0].len() == 2
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if well_formed {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not an AWS region name: use one such as us-east-1 or eu-west-2"
        ))
    }
}

/// Checks `--assume-role`: an IAM role ARN,
/// `arn:<partition>:iam::<12-digit account>:role/<path/><name>`, so a typo
/// fails at once, before any call, and the account it names is known.
pub fn parse_role_arn(text: &str) -> Result<Role, String> {
    let hint = "give a role's ARN, e.g. arn:aws:iam::111111111111:role/ebsnap";
    let fields: Vec<&str> = text.splitn(6, ':').collect();
    let [arn, partition, service, region, account, resource] = fields[..] else {
        return Err(format!("'{text}' is not an IAM role ARN: {hint}"));
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty() && rest.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        });
    if arn != "arn" || !partition_ok || service != "iam" || !region.is_empty() {
        return Err(format!("'{text}' is not an IAM role ARN: {hint}"));
    }
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "'{account}' in '{text}' is not an AWS account id (12 digits): {hint}"
        ));
    }
    let name_ok = |name: &str| {
        !name.is_empty()
            && !name.ends_with('/')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
    };
    match resource.strip_prefix("role/") {
        Some(name) if name_ok(name) => Ok(Role {
            arn: text.to_owned(),
            account: account.to_owned(),
        }),
        _ => Err(format!(
            "'{text}' does not name a role (role/NAME after the account id): {hint}"
        )),
    }
}

/// Checks a tag key: not empty, and not in the `aws:` namespace EC2 reserves.
pub fn parse_tag_key(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err("the tag key is empty: give the key that marks instances to back up, e.g. Scheduled-Snapshots".into());
    }
    if text.len() > 128 {
        return Err("the tag key is longer than 128 characters".into());
    }
    if text.to_ascii_lowercase().starts_with("aws:") {
        return Err("tag keys starting with 'aws:' are reserved by AWS".into());
    }
    Ok(text.to_owned())
}

/// EC2's limits on one resource's tags (EC2 User Guide, "Tag your Amazon
/// EC2 resources", Tag restrictions,
/// https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html):
/// at most 50 tags, keys of at most 128 characters, values of at most 256.
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY: usize = 128;
pub const MAX_TAG_VALUE: usize = 256;

/// The tag ebsnap itself writes on every snapshot (`<instance> <device>`),
/// so a user's `--snapshot-tag` may not take it.
const NAME_TAG: &str = "Name";

/// Checks a `--snapshot-tag KEY=VALUE`, a tag of the user's own for every snapshot
/// the job makes: a key of 1 to 128 characters, a value of at most 256
/// (EC2's limits; an empty value is a tag EC2 allows), split at the first
/// `=`. Refused: a key in ebsnap's own namespace (`ebsnap:`) or the one AWS
/// reserves (`aws:`), and `Name`, which ebsnap writes itself. A key or
/// value holds no space: `EBSNAP_SNAPSHOT_TAG` separates tags by spaces.
pub fn parse_user_tag(text: &str) -> Result<(String, String), String> {
    let how = "write --snapshot-tag KEY=VALUE, e.g. --snapshot-tag CostCenter=ops";
    let Some((key, value)) = text.split_once('=') else {
        if text.is_empty() {
            return Err(format!(
                "an empty tag: {how} (in EBSNAP_SNAPSHOT_TAG, one space between tags; unset it for none)"
            ));
        }
        return Err(format!(
            "'{text}' has no value: {how} (no spaces: EBSNAP_SNAPSHOT_TAG separates tags by them)"
        ));
    };
    if key.is_empty() {
        return Err(format!("'{text}' has no key: {how}"));
    }
    if key.chars().count() > MAX_TAG_KEY {
        return Err(format!(
            "the tag key '{key}' is longer than EC2's {MAX_TAG_KEY} characters: give a shorter key"
        ));
    }
    if value.chars().count() > MAX_TAG_VALUE {
        return Err(format!(
            "the value of tag '{key}' is longer than EC2's {MAX_TAG_VALUE} characters: give a shorter value"
        ));
    }
    let lower = key.to_ascii_lowercase();
    if lower.starts_with("ebsnap:") {
        return Err(format!(
            "'{key}': keys starting with 'ebsnap:' are ebsnap's own: give a key of yours, e.g. --snapshot-tag CostCenter=ops"
        ));
    }
    if lower.starts_with("aws:") {
        return Err(format!(
            "'{key}': keys starting with 'aws:' are reserved by AWS: give a key of yours, e.g. --snapshot-tag CostCenter=ops"
        ));
    }
    if key == NAME_TAG {
        return Err(
            "'Name' is ebsnap's own tag ('<instance> <device>'): give a key of yours, e.g. --snapshot-tag CostCenter=ops"
                .into(),
        );
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// Refuses a key given twice among the user's tags (`--snapshot-tag`, `EBSNAP_SNAPSHOT_TAG`):
/// EC2 would refuse the create call, and neither value is surely the one
/// meant. Keys are case-sensitive, as EC2's are.
pub fn check_distinct_tag_keys(tags: &[(String, String)]) -> Result<(), DuplicateTagKey> {
    for (i, (key, value)) in tags.iter().enumerate() {
        if let Some((_, first)) = tags[..i].iter().find(|(k, _)| k == key) {
            return Err(DuplicateTagKey {
                key: key.clone(),
                first: first.clone(),
                second: value.clone(),
            });
        }
    }
    Ok(())
}

/// A key given twice among the user's tags, with both values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateTagKey {
    pub key: String,
    pub first: String,
    pub second: String,
}

impl std::fmt::Display for DuplicateTagKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DuplicateTagKey { key, first, second } = self;
        write!(
            f,
            "--snapshot-tag {key} is given twice ({key}={first} and {key}={second}): give each key once"
        )
    }
}

impl std::error::Error for DuplicateTagKey {}

/// An RFC 3339 time, e.g. `2026-11-24T03:00:00Z`.
pub fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| {
            format!("'{text}' is not an RFC 3339 time: write it like 2026-11-24T03:00:00Z")
        })
}

/// How old a snapshot is, for people, rounded down so it never looks older
/// than the retention it is kept under: `9d12h`, `23h`, `20m`.
pub fn format_age(age: TimeDelta) -> String {
    let minutes = age.num_minutes().max(0);
    let (days, hours) = (minutes / 1440, minutes % 1440 / 60);
    match (days, hours) {
        (0, 0) => format!("{minutes}m"),
        (0, _) => format!("{hours}h"),
        (_, 0) => format!("{days}d"),
        _ => format!("{days}d{hours}h"),
    }
}

/// Serialises a value as its `Display` text.
pub fn as_text<T: std::fmt::Display, S: Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

/// A reason with a stable identifier for programs beside its text for
/// people: `expired` beside "past retention".
pub trait ReasonCode: std::fmt::Display {
    fn code(&self) -> &'static str;
}

/// A reason as the JSON documents write it: two fields, `reason` (its text)
/// and `reason_code` (its code), both asked of the one value when written.
/// Used as a `#[serde(flatten)]` field; it reads as the reason itself.
#[derive(Debug, Clone, PartialEq)]
pub struct WithCode<R>(pub R);

impl<R> std::ops::Deref for WithCode<R> {
    type Target = R;
    fn deref(&self) -> &R {
        &self.0
    }
}

impl<R: ReasonCode> std::fmt::Display for WithCode<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<R: ReasonCode> serde::Serialize for WithCode<R> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut fields = serializer.serialize_struct("WithCode", 2)?;
        fields.serialize_field("reason", &format_args!("{}", self.0))?;
        fields.serialize_field("reason_code", self.0.code())?;
        fields.end()
    }
}

/// The name serde gives a unit variant of a closed set (after its
/// `rename_all`): `FailureAction::PreHook` is `"pre-hook"`. What the JSON
/// report and the metrics file write is that name, so a code shown beside
/// a value is never kept beside it: it is asked of serde. Anything but a
/// unit variant (or a unit struct) has no such name: a bug, caught by the
/// tests of every enum that uses this.
pub fn serde_name<T: serde::Serialize + ?Sized>(value: &T) -> &'static str {
    value
        .serialize(VariantName)
        .expect("serde_name is asked only of a unit variant")
}

/// A serde `Serializer` that yields the name of a unit variant, and refuses
/// everything else.
struct VariantName;

#[derive(Debug)]
struct NotAUnitVariant;

impl std::fmt::Display for NotAUnitVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a unit variant")
    }
}

impl std::error::Error for NotAUnitVariant {}

impl serde::ser::Error for NotAUnitVariant {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        NotAUnitVariant
    }
}

macro_rules! refuse {
    ($($method:ident($($ty:ty),*);)*) => {
        $(fn $method(self, $(_: $ty),*) -> Result<Self::Ok, Self::Error> {
            Err(NotAUnitVariant)
        })*
    };
}

impl Serializer for VariantName {
    type Ok = &'static str;
    type Error = NotAUnitVariant;
    type SerializeSeq = serde::ser::Impossible<&'static str, NotAUnitVariant>;
    type SerializeTuple = serde::ser::Impossible<&'static str, NotAUnitVariant>;
    type SerializeTupleStruct = serde::ser::Impossible<&'static str, NotAUnitVariant>;
    type SerializeTupleVariant = serde::ser::Impossible<&'static str, NotAUnitVariant>;
    type SerializeMap = serde::ser::Impossible<&'static str, NotAUnitVariant>;
    type SerializeStruct = serde::ser::Impossible<&'static str, NotAUnitVariant>;
    type SerializeStructVariant = serde::ser::Impossible<&'static str, NotAUnitVariant>;

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<&'static str, NotAUnitVariant> {
        Ok(variant)
    }

    fn serialize_unit_struct(self, name: &'static str) -> Result<&'static str, NotAUnitVariant> {
        Ok(name)
    }

    refuse! {
        serialize_bool(bool); serialize_i8(i8); serialize_i16(i16); serialize_i32(i32);
        serialize_i64(i64); serialize_u8(u8); serialize_u16(u16); serialize_u32(u32);
        serialize_u64(u64); serialize_f32(f32); serialize_f64(f64); serialize_char(char);
        serialize_str(&str); serialize_bytes(&[u8]); serialize_none(); serialize_unit();
    }

    fn serialize_some<T: serde::Serialize + ?Sized>(self, _: &T) -> Result<Self::Ok, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_newtype_struct<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_newtype_variant<T: serde::Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Self::Ok, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, Self::Error> {
        Err(NotAUnitVariant)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Self::Error> {
        Err(NotAUnitVariant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_names_a_unit_variant_and_nothing_else() {
        use serde::Serialize;
        #[derive(serde::Serialize)]
        #[serde(rename_all = "kebab-case")]
        enum Step {
            PreHook,
            #[allow(dead_code)]
            Other(u8),
        }
        assert_eq!(serde_name(&Step::PreHook), "pre-hook");
        assert!(Step::Other(1).serialize(VariantName).is_err());
        assert!(7u8.serialize(VariantName).is_err());
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(parse_duration("7d"), Ok(TimeDelta::days(7)));
        assert_eq!(parse_duration("36h"), Ok(TimeDelta::hours(36)));
        assert_eq!(parse_duration("2w"), Ok(TimeDelta::weeks(2)));
        assert_eq!(parse_duration("90m"), Ok(TimeDelta::minutes(90)));
        assert_eq!(parse_duration("3600s"), Ok(TimeDelta::seconds(3600)));
    }

    #[test]
    fn bad_durations_say_how_to_write_one() {
        for bad in [
            "7x",
            "-1d",
            "0d",
            "d",
            "7",
            "",
            "1.5d",
            "99999999999999999999d",
        ] {
            let err = parse_duration(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
        assert!(parse_duration("7x")
            .unwrap_err()
            .contains("unknown unit 'x'"));
        assert!(parse_duration("0d").unwrap_err().contains("zero"));
        assert!(parse_duration("7").unwrap_err().contains("no unit"));
    }

    #[test]
    fn durations_render_as_typed() {
        assert_eq!(format_duration(TimeDelta::days(7)), "7d");
        assert_eq!(format_duration(TimeDelta::weeks(2)), "14d");
        assert_eq!(format_duration(TimeDelta::days(8)), "8d");
        assert_eq!(format_duration(TimeDelta::hours(36)), "36h");
        assert_eq!(format_duration(TimeDelta::seconds(61)), "61s");
    }

    #[test]
    fn job_names_must_fit_a_tag_value() {
        assert_eq!(parse_job("hourly-db").as_deref(), Ok("hourly-db"));
        assert!(parse_job("").is_err());
        assert!(parse_job("a;b").unwrap_err().contains("';'"));
        assert!(parse_job(&"x".repeat(129)).is_err());
    }

    #[test]
    fn region_names_are_checked_for_shape() {
        for good in [
            "us-east-1",
            "eu-west-2",
            "us-gov-west-1",
            "ap-southeast-4",
            "il-central-1",
        ] {
            assert_eq!(parse_region(good).as_deref(), Ok(good));
        }
        for bad in [
            "mars-1",
            "us-east",
            "US-EAST-1",
            "us-east-1a",
            "useast1",
            "",
            "us--1",
        ] {
            assert!(parse_region(bad).is_err(), "{bad}");
        }
        assert!(parse_region("mars-1")
            .unwrap_err()
            .contains("not an AWS region name"));
    }

    #[test]
    fn min_interval_may_be_zero_and_rates_must_be_positive() {
        assert_eq!(parse_min_interval("0"), Ok(TimeDelta::zero()));
        assert_eq!(parse_min_interval("10m"), Ok(TimeDelta::minutes(10)));
        assert!(parse_min_interval("5x").is_err());
        assert_eq!(parse_max_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "fast", "101"] {
            assert!(parse_max_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keep_counts_are_at_least_one_and_timezones_are_iana_names() {
        assert_eq!(parse_keep_count("7"), Ok(7));
        for bad in ["0", "-1", "", "seven", "1.5"] {
            assert!(parse_keep_count(bad).is_err(), "{bad}");
        }
        assert!(parse_keep_count("0")
            .unwrap_err()
            .contains("leave the flag out"));
        assert_eq!(
            parse_timezone("Asia/Kolkata"),
            Ok(chrono_tz::Tz::Asia__Kolkata)
        );
        assert_eq!(parse_timezone("UTC"), Ok(chrono_tz::Tz::UTC));
        for bad in ["Mars/Olympus", "", "+05:30", "utc+1"] {
            let err = parse_timezone(bad).expect_err(bad);
            assert!(err.contains("Europe/Berlin"), "{bad}: {err}");
        }
    }

    #[test]
    fn orphans_after_is_a_duration_and_never_zero() {
        assert_eq!(parse_orphans_after("30d"), Ok(TimeDelta::days(30)));
        for bad in ["0d", "soon", "-1d", "5"] {
            let err = parse_orphans_after(bad).unwrap_err();
            assert!(err.contains("leave --orphans-after out"), "{bad}: {err}");
        }
    }

    #[test]
    fn keep_min_is_at_least_one() {
        assert_eq!(parse_keep_min("3"), Ok(3));
        assert!(parse_keep_min("0")
            .unwrap_err()
            .contains("last good backup"));
        assert!(parse_keep_min("-1").unwrap_err().contains("whole number"));
        assert!(parse_keep_min("many").is_err());
    }

    #[test]
    fn tag_keys_must_be_usable() {
        assert!(parse_tag_key("").is_err());
        assert!(parse_tag_key("aws:foo").is_err());
        assert_eq!(parse_tag_key("Backup").as_deref(), Ok("Backup"));
    }

    #[test]
    fn user_tags_are_key_equals_value() {
        let tag = |k: &str, v: &str| Ok((k.to_owned(), v.to_owned()));
        assert_eq!(parse_user_tag("CostCenter=ops"), tag("CostCenter", "ops"));
        assert_eq!(
            parse_user_tag("a=b=c"),
            tag("a", "b=c"),
            "the first = splits"
        );
        assert_eq!(parse_user_tag("Empty="), tag("Empty", ""), "EC2 allows it");
        assert_eq!(
            parse_user_tag("name=x"),
            tag("name", "x"),
            "keys are case-sensitive"
        );
        assert_eq!(parse_user_tag("team:db=1"), tag("team:db", "1"));
        let k128 = "k".repeat(128);
        let v256 = "v".repeat(256);
        assert_eq!(parse_user_tag(&format!("{k128}={v256}")), tag(&k128, &v256));
        // Characters, not bytes.
        let accented = "é".repeat(128);
        assert!(parse_user_tag(&format!("{accented}=x")).is_ok());
    }

    #[test]
    fn bad_user_tags_say_what_to_write_in_one_line() {
        for (bad, says) in [
            (
                "Team",
                "'Team' has no value: write --snapshot-tag KEY=VALUE, e.g. --snapshot-tag CostCenter=ops",
            ),
            ("", "an empty tag: write --snapshot-tag KEY=VALUE"),
            ("=ops", "'=ops' has no key: write --snapshot-tag KEY=VALUE"),
            (
                "ebsnap:job=x",
                "'ebsnap:job': keys starting with 'ebsnap:' are ebsnap's own",
            ),
            (
                "EBSNAP:job=x",
                "keys starting with 'ebsnap:' are ebsnap's own",
            ),
            (
                "aws:createdBy=x",
                "keys starting with 'aws:' are reserved by AWS",
            ),
            ("AWS:x=y", "reserved by AWS"),
            ("Name=x", "'Name' is ebsnap's own tag"),
        ] {
            let err = parse_user_tag(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
            assert!(!err.contains('\n'), "{bad}: {err}");
        }
        let long_key = format!("{}=x", "k".repeat(129));
        assert!(parse_user_tag(&long_key)
            .unwrap_err()
            .contains("longer than EC2's 128 characters"));
        let long_value = format!("k={}", "v".repeat(257));
        assert!(parse_user_tag(&long_value)
            .unwrap_err()
            .contains("longer than EC2's 256 characters"));
    }

    #[test]
    fn a_user_tag_key_given_twice_is_refused() {
        let tags = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(check_distinct_tag_keys(&[]), Ok(()));
        assert_eq!(
            check_distinct_tag_keys(&tags(&[("Team", "db"), ("team", "web")])),
            Ok(()),
            "keys are case-sensitive"
        );
        let twice = check_distinct_tag_keys(&tags(&[("Team", "db"), ("A", "1"), ("Team", "web")]));
        assert_eq!(
            twice,
            Err(DuplicateTagKey {
                key: "Team".into(),
                first: "db".into(),
                second: "web".into()
            })
        );
        assert_eq!(
            twice.unwrap_err().to_string(),
            "--snapshot-tag Team is given twice (Team=db and Team=web): give each key once"
        );
    }

    #[test]
    fn role_arns_name_their_account() {
        for (arn, account) in [
            ("arn:aws:iam::111111111111:role/backup", "111111111111"),
            (
                "arn:aws:iam::012345678901:role/ops/ebsnap-backup",
                "012345678901",
            ),
            (
                "arn:aws-us-gov:iam::222222222222:role/a+b=c,d.e@f_g-h",
                "222222222222",
            ),
            ("arn:aws-cn:iam::333333333333:role/x", "333333333333"),
        ] {
            let role = parse_role_arn(arn).unwrap_or_else(|e| panic!("{arn}: {e}"));
            assert_eq!(role.arn, arn);
            assert_eq!(role.account, account);
        }
    }

    #[test]
    fn bad_role_arns_say_how_to_write_one() {
        for bad in [
            "",
            "backup",
            "arn:aws:iam::111111111111:user/backup",
            "arn:aws:iam::111111111111:role/",
            "arn:aws:iam::111111111111:role/dir/",
            "arn:aws:iam::111111111111:role/bad name",
            "arn:aws:iam::11111111111:role/backup",
            "arn:aws:iam::1111111111111:role/backup",
            "arn:aws:iam::11111111111x:role/backup",
            "arn:aws:iam:us-east-1:111111111111:role/backup",
            "arn:aws:sts::111111111111:role/backup",
            "arn:gcp:iam::111111111111:role/backup",
            "arn:aws:iam::111111111111",
        ] {
            let err = parse_role_arn(bad).expect_err(bad);
            assert!(
                err.contains("arn:aws:iam::111111111111:role/ebsnap"),
                "{bad}: {err}"
            );
        }
        assert!(parse_role_arn("arn:aws:iam::1234:role/x")
            .unwrap_err()
            .contains("'1234' in 'arn:aws:iam::1234:role/x' is not an AWS account id"));
    }
}
