//! Calendar retention (`--keep-last`, `--keep-hourly` ... `--keep-yearly`):
//! which of a volume's backups the rules keep, with the semantics restic's
//! `forget` made standard. A snapshot is kept if any rule keeps it; a period
//! rule keeps the newest completed backup of each of the last N periods that
//! have one. Periods are calendar periods in the job's timezone
//! (`--timezone`, UTC by default); weeks start on Monday (ISO 8601).
//!
//! Pure, like the plan that asks it: a `Calendar` is fed one volume's good
//! backups newest first and answers for each which rule keeps it.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use crate::config::KeepRules;

/// A calendar period a rule keeps one backup of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    /// Longest first: the rule named when several keep one snapshot is the
    /// one that keeps it longest.
    const LONGEST_FIRST: [Period; 5] = [
        Period::Yearly,
        Period::Monthly,
        Period::Weekly,
        Period::Daily,
        Period::Hourly,
    ];

    fn rule(self, rules: &KeepRules) -> usize {
        match self {
            Period::Hourly => rules.hourly,
            Period::Daily => rules.daily,
            Period::Weekly => rules.weekly,
            Period::Monthly => rules.monthly,
            Period::Yearly => rules.yearly,
        }
    }

    /// The stable reason code of the rule (`--output json`).
    pub(crate) fn code(self) -> &'static str {
        match self {
            Period::Hourly => "keep_hourly",
            Period::Daily => "keep_daily",
            Period::Weekly => "keep_weekly",
            Period::Monthly => "keep_monthly",
            Period::Yearly => "keep_yearly",
        }
    }
}

/// One calendar period: an hour, a day, an ISO week, a month or a year, in
/// the job's timezone. Small and `Copy`: one is held for each snapshot a
/// period rule keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PeriodOf {
    pub period: Period,
    /// The calendar year; for a week, the ISO week-numbering year.
    year: i32,
    /// The month (1-12), or for a week its ISO number (1-53).
    month_or_week: u8,
    day: u8,
    hour: u8,
}

impl PeriodOf {
    /// The `period` that `time`, seen in `timezone`, falls in.
    pub(crate) fn of(period: Period, time: DateTime<Utc>, timezone: Tz) -> PeriodOf {
        let local = time.with_timezone(&timezone);
        let (year, month_or_week, day, hour) = match period {
            Period::Hourly => (local.year(), local.month(), local.day(), local.hour()),
            Period::Daily => (local.year(), local.month(), local.day(), 0),
            Period::Weekly => {
                let week = local.iso_week();
                (week.year(), week.week(), 0, 0)
            }
            Period::Monthly => (local.year(), local.month(), 0, 0),
            Period::Yearly => (local.year(), 0, 0, 0),
        };
        PeriodOf {
            period,
            year,
            // Each at most 53, 31 and 23: they fit.
            month_or_week: month_or_week as u8,
            day: day as u8,
            hour: hour as u8,
        }
    }
}

impl PeriodOf {
    /// When the period `n` periods after this one starts, for the monthly
    /// and yearly rules (what the archive tier asks); `None` for the others.
    /// Midnight local on the first of the month or of January; where a
    /// daylight-saving change skips that midnight, the first instant after
    /// it.
    fn start_of_later(&self, n: usize, timezone: Tz) -> Option<DateTime<Utc>> {
        let n = i32::try_from(n).ok()?;
        let (year, month) = match self.period {
            Period::Monthly => {
                let months = self.year * 12 + i32::from(self.month_or_week) - 1 + n;
                (months.div_euclid(12), months.rem_euclid(12) as u32 + 1)
            }
            Period::Yearly => (self.year + n, 1),
            Period::Hourly | Period::Daily | Period::Weekly => return None,
        };
        let midnight = NaiveDate::from_ymd_opt(year, month, 1)?.and_hms_opt(0, 0, 0)?;
        (0..4)
            .find_map(|hour| {
                timezone
                    .from_local_datetime(&(midnight + chrono::TimeDelta::hours(hour)))
                    .earliest()
            })
            .map(|local| local.with_timezone(&Utc))
    }
}

/// How `list` and the report name the period: `daily 2026-11-30`,
/// `weekly 2026-W48`, `monthly 2026-11`.
impl fmt::Display for PeriodOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let PeriodOf {
            year,
            month_or_week: m,
            day: d,
            hour: h,
            ..
        } = *self;
        match self.period {
            Period::Hourly => write!(f, "hourly {year:04}-{m:02}-{d:02} {h:02}:00"),
            Period::Daily => write!(f, "daily {year:04}-{m:02}-{d:02}"),
            Period::Weekly => write!(f, "weekly {year:04}-W{m:02}"),
            Period::Monthly => write!(f, "monthly {year:04}-{m:02}"),
            Period::Yearly => write!(f, "yearly {year:04}"),
        }
    }
}

/// Which calendar rule keeps a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeptBy {
    /// One of the `--keep-last` newest backups of its volume.
    Last(usize),
    /// The newest backup of its period, one of the last N the rule keeps.
    Period(PeriodOf),
}

/// What the calendar says of one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judgement {
    /// The rule that keeps it longest, if any rule keeps it.
    pub kept_by: Option<KeptBy>,
    /// Only the monthly and yearly rules keep it: what the archive tier is
    /// for (EBS User Guide, "Considerations and limitations for archiving
    /// Amazon EBS snapshots": "Archiving is recommended for monthly,
    /// quarterly, or yearly snapshots").
    pub long_term_only: bool,
    /// With `long_term_only`: the earliest time those rules could let it
    /// go, were a backup taken in every period from now on (gaps only make
    /// it later).
    pub released_at_earliest: Option<DateTime<Utc>>,
}

/// One period rule's state over a volume's backups.
#[derive(Debug, Clone, Copy, Default)]
struct RuleState {
    /// How many periods it has kept a backup of.
    count: usize,
    /// The newest period it kept a backup of.
    first: Option<PeriodOf>,
    /// The oldest so far.
    latest: Option<PeriodOf>,
}

/// The calendar rules' state over one volume's backups, fed newest first.
#[derive(Debug, Clone)]
pub(crate) struct Calendar<'a> {
    rules: &'a KeepRules,
    timezone: Tz,
    /// How many backups keep-last has kept so far.
    last_kept: usize,
    /// Per period rule, in `Period` order.
    kept: [RuleState; 5],
}

impl<'a> Calendar<'a> {
    pub(crate) fn new(rules: &'a KeepRules, timezone: Tz) -> Calendar<'a> {
        Calendar {
            rules,
            timezone,
            last_kept: 0,
            kept: [RuleState::default(); 5],
        }
    }

    /// Starts over, for the next volume.
    pub(crate) fn reset(&mut self) {
        *self = Calendar::new(self.rules, self.timezone);
    }

    /// Judges the next backup of the volume (each one older than the one
    /// before): every rule sees it, and the answer names the rule that
    /// keeps it longest, if any does, with what the archive tier needs to
    /// know: whether only the long-term rules keep it, and until when at
    /// the earliest.
    pub(crate) fn judge(&mut self, start_time: DateTime<Utc>) -> Judgement {
        let mut by_last = None;
        if self.last_kept < self.rules.last {
            self.last_kept += 1;
            by_last = Some(KeptBy::Last(self.rules.last));
        }
        let mut by_period = None;
        let mut short_term = by_last.is_some();
        let mut released_at: Option<DateTime<Utc>> = None;
        for period in Period::LONGEST_FIRST {
            let wanted = period.rule(self.rules);
            let state = &mut self.kept[period as usize];
            if state.count >= wanted {
                continue;
            }
            let this = PeriodOf::of(period, start_time, self.timezone);
            // Newest first: the first backup seen in a period is its newest.
            if state.latest == Some(this) {
                continue;
            }
            state.count += 1;
            state.latest = Some(this);
            let first = *state.first.get_or_insert(this);
            by_period = by_period.or(Some(KeptBy::Period(this)));
            // Kept as the rule's `count`-th period: it goes once
            // `wanted - count + 1` periods after the newest kept one have a
            // backup, at the start of the last of them at the earliest.
            match first.start_of_later(wanted - state.count + 1, self.timezone) {
                Some(at) => released_at = released_at.max(Some(at)),
                None => short_term = true,
            }
        }
        let kept_by = by_period.or(by_last);
        let long_term_only = kept_by.is_some() && !short_term;
        Judgement {
            kept_by,
            long_term_only,
            released_at_earliest: released_at.filter(|_| long_term_only),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, min, 0).unwrap()
    }

    fn labels(period: Period, times: &[DateTime<Utc>], timezone: Tz) -> Vec<String> {
        times
            .iter()
            .map(|t| PeriodOf::of(period, *t, timezone).to_string())
            .collect()
    }

    #[test]
    fn periods_are_named_as_list_shows_them() {
        let t = utc(2026, 11, 30, 14, 5);
        let all: Vec<String> = [
            Period::Hourly,
            Period::Daily,
            Period::Weekly,
            Period::Monthly,
            Period::Yearly,
        ]
        .iter()
        .map(|p| PeriodOf::of(*p, t, Tz::UTC).to_string())
        .collect();
        assert_eq!(
            all,
            [
                "hourly 2026-11-30 14:00",
                "daily 2026-11-30",
                "weekly 2026-W49",
                "monthly 2026-11",
                "yearly 2026"
            ]
        );
    }

    #[test]
    fn weeks_start_on_monday_and_belong_to_their_iso_year() {
        // Sunday 2026-11-29 ends week 48; Monday 2026-11-30 starts week 49.
        assert_eq!(
            labels(
                Period::Weekly,
                &[utc(2026, 11, 29, 23, 0), utc(2026, 11, 30, 0, 0)],
                Tz::UTC
            ),
            ["weekly 2026-W48", "weekly 2026-W49"]
        );
        // Friday 2027-01-01 is in week 53 of ISO year 2026.
        assert_eq!(
            labels(Period::Weekly, &[utc(2027, 1, 1, 12, 0)], Tz::UTC),
            ["weekly 2026-W53"]
        );
    }

    #[test]
    fn a_daily_run_lands_in_its_local_day() {
        // 02:30 in Kolkata (UTC+5:30) is 21:00 UTC the day before.
        let run = utc(2026, 11, 29, 21, 0);
        assert_eq!(labels(Period::Daily, &[run], Tz::UTC), ["daily 2026-11-29"]);
        assert_eq!(
            labels(Period::Daily, &[run], Tz::Asia__Kolkata),
            ["daily 2026-11-30"]
        );
    }

    #[test]
    fn across_daylight_saving_changes_local_days_and_hours_hold() {
        let berlin = Tz::Europe__Berlin;
        // 00:30 local each night across the spring change (2026-03-29):
        // 23:30 UTC before it, 22:30 UTC after; each its own local day.
        let nights = [
            utc(2026, 3, 27, 23, 30),
            utc(2026, 3, 28, 23, 30),
            utc(2026, 3, 29, 22, 30),
            utc(2026, 3, 30, 22, 30),
        ];
        assert_eq!(
            labels(Period::Daily, &nights, berlin),
            [
                "daily 2026-03-28",
                "daily 2026-03-29",
                "daily 2026-03-30",
                "daily 2026-03-31"
            ]
        );
        // The autumn change (2026-10-25) repeats 02:00-03:00 local: 00:30
        // and 01:30 UTC are both 02:30 local, one hourly period.
        assert_eq!(
            labels(
                Period::Hourly,
                &[utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 0, 30)],
                berlin
            ),
            ["hourly 2026-10-25 02:00", "hourly 2026-10-25 02:00"]
        );
    }

    fn rules(f: impl FnOnce(&mut KeepRules)) -> KeepRules {
        let mut rules = KeepRules::default();
        f(&mut rules);
        rules
    }

    /// Feeds `times` (newest first) through a calendar; the reason of each.
    fn judged(rules: &KeepRules, timezone: Tz, times: &[DateTime<Utc>]) -> Vec<Option<String>> {
        let mut calendar = Calendar::new(rules, timezone);
        times
            .iter()
            .map(|t| calendar.judge(*t).kept_by.map(label))
            .collect()
    }

    #[test]
    fn a_period_rule_keeps_the_newest_of_each_of_the_last_n_periods_with_one() {
        let daily = rules(|r| r.daily = 3);
        // Two runs on the 30th, none on the 28th: the 28th is no period.
        let times = [
            utc(2026, 11, 30, 14, 0),
            utc(2026, 11, 30, 2, 0),
            utc(2026, 11, 29, 2, 0),
            utc(2026, 11, 27, 2, 0),
            utc(2026, 11, 26, 2, 0),
        ];
        assert_eq!(
            judged(&daily, Tz::UTC, &times),
            [
                Some("daily 2026-11-30".into()),
                None,
                Some("daily 2026-11-29".into()),
                Some("daily 2026-11-27".into()),
                None
            ]
        );
    }

    #[test]
    fn a_month_without_a_backup_is_skipped_not_counted() {
        let monthly = rules(|r| r.monthly = 3);
        let times = [
            utc(2026, 11, 1, 2, 0),
            utc(2026, 9, 1, 2, 0), // no backup in October
            utc(2026, 8, 1, 2, 0),
            utc(2026, 7, 1, 2, 0),
        ];
        assert_eq!(
            judged(&monthly, Tz::UTC, &times),
            [
                Some("monthly 2026-11".into()),
                Some("monthly 2026-09".into()),
                Some("monthly 2026-08".into()),
                None
            ]
        );
    }

    #[test]
    fn a_leap_day_is_a_day_of_its_month() {
        let rules = rules(|r| {
            r.daily = 2;
            r.monthly = 2;
        });
        let times = [
            utc(2028, 3, 1, 2, 0),
            utc(2028, 2, 29, 2, 0),
            utc(2028, 2, 28, 2, 0),
        ];
        assert_eq!(
            judged(&rules, Tz::UTC, &times),
            [
                Some("monthly 2028-03".into()),
                Some("monthly 2028-02".into()),
                None
            ]
        );
    }

    #[test]
    fn every_rule_sees_every_backup_and_the_longest_one_is_named() {
        let rules = rules(|r| {
            r.last = 1;
            r.daily = 2;
            r.weekly = 2;
        });
        // Daily runs, newest Wednesday 2026-12-02.
        let times: Vec<DateTime<Utc>> = (0..10)
            .map(|days| utc(2026, 12, 2, 2, 0) - chrono::TimeDelta::days(days))
            .collect();
        assert_eq!(
            judged(&rules, Tz::UTC, &times),
            [
                Some("weekly 2026-W49".into()), // also daily and last
                Some("daily 2026-12-01".into()),
                None,
                Some("weekly 2026-W48".into()), // Sunday 11-29, the week's newest
                None,
                None,
                None,
                None,
                None,
                None,
            ]
        );
    }

    #[test]
    fn keep_last_keeps_the_newest_n_whatever_their_periods() {
        let last = rules(|r| r.last = 2);
        let times = [
            utc(2026, 11, 30, 3, 0),
            utc(2026, 11, 30, 2, 0),
            utc(2026, 11, 30, 1, 0),
        ];
        assert_eq!(
            judged(&last, Tz::UTC, &times),
            [Some("last 2".into()), Some("last 2".into()), None]
        );
        let mut calendar = Calendar::new(&last, Tz::UTC);
        calendar.judge(times[0]);
        calendar.judge(times[1]);
        calendar.reset();
        assert_eq!(
            calendar.judge(times[2]).kept_by,
            Some(KeptBy::Last(2)),
            "next volume"
        );
    }

    #[test]
    fn without_rules_nothing_is_kept_by_the_calendar() {
        let none = KeepRules::default();
        assert!(!none.any());
        assert_eq!(judged(&none, Tz::UTC, &[utc(2026, 11, 30, 3, 0)]), [None]);
    }

    fn label(by: KeptBy) -> String {
        match by {
            KeptBy::Last(n) => format!("last {n}"),
            KeptBy::Period(p) => p.to_string(),
        }
    }

    #[test]
    fn only_a_backup_the_long_term_rules_alone_keep_is_long_term_only() {
        let rules = rules(|r| {
            r.daily = 2;
            r.monthly = 3;
        });
        let mut calendar = Calendar::new(&rules, Tz::UTC);
        // Daily runs at 02:00, newest 2026-12-02.
        let weighed: Vec<Judgement> = (0..70)
            .map(|days| calendar.judge(utc(2026, 12, 2, 2, 0) - chrono::TimeDelta::days(days)))
            .collect();
        // 12-02 is daily and monthly: not long-term only.
        assert!(weighed[0].kept_by.is_some() && !weighed[0].long_term_only);
        // 12-01: daily only.
        assert!(!weighed[1].long_term_only);
        // 11-30, the newest of November: monthly only, rank 2 of 3; it goes
        // once two months after December have a backup: 2027-02-01.
        assert_eq!(
            weighed[2].kept_by.map(label),
            Some("monthly 2026-11".into())
        );
        assert!(weighed[2].long_term_only);
        assert_eq!(weighed[2].released_at_earliest, Some(utc(2027, 2, 1, 0, 0)));
        // 10-31, rank 3: goes when January has a backup.
        let october = &weighed[32];
        assert_eq!(october.kept_by.map(label), Some("monthly 2026-10".into()));
        assert_eq!(october.released_at_earliest, Some(utc(2027, 1, 1, 0, 0)));
        // Kept by nothing: no release time.
        assert_eq!(
            weighed[3],
            Judgement {
                kept_by: None,
                long_term_only: false,
                released_at_earliest: None
            }
        );
    }

    #[test]
    fn the_release_is_the_later_of_the_monthly_and_yearly_rules_in_local_time() {
        let rules = rules(|r| {
            r.monthly = 1;
            r.yearly = 2;
        });
        let kolkata = Tz::Asia__Kolkata;
        let mut calendar = Calendar::new(&rules, kolkata);
        // 2026-11-15 and then 2025-12-31 local.
        let newest = calendar.judge(utc(2026, 11, 14, 21, 0));
        assert!(newest.long_term_only);
        // Monthly keeps it until December starts, yearly until 2028 does:
        // midnight local, 18:30 UTC the day before.
        assert_eq!(newest.released_at_earliest, Some(utc(2027, 12, 31, 18, 30)));
        let last_year = calendar.judge(utc(2025, 12, 30, 21, 0));
        assert_eq!(last_year.kept_by.map(label), Some("yearly 2025".into()));
        assert_eq!(
            last_year.released_at_earliest,
            Some(utc(2026, 12, 31, 18, 30))
        );
    }

    #[test]
    fn a_month_is_counted_across_the_year_end() {
        let december = PeriodOf::of(Period::Monthly, utc(2026, 12, 5, 0, 0), Tz::UTC);
        assert_eq!(
            december.start_of_later(1, Tz::UTC),
            Some(utc(2027, 1, 1, 0, 0))
        );
        assert_eq!(
            december.start_of_later(14, Tz::UTC),
            Some(utc(2028, 2, 1, 0, 0))
        );
        let daily = PeriodOf::of(Period::Daily, utc(2026, 12, 5, 0, 0), Tz::UTC);
        assert_eq!(daily.start_of_later(1, Tz::UTC), None);
    }
}
