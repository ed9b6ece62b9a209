//! The time criteria (`date`, `day_of_week`, `time_of_day`), which Pomerium documents for its
//! Enterprise edition; ours read the input's clock. Intervals are half-open: `after` is
//! inclusive, `before` exclusive. `day_of_week` reads the day in UTC; `time_of_day` reads the
//! wall clock in its time zone, and a window whose `after` is later than its `before` wraps past
//! midnight (`after: 22:00, before: 6:00` is the night).

use ppl::model::{DateMatcher, DaySet, TimeOfDayMatcher};

pub fn date_matches(m: &DateMatcher, now: jiff::Timestamp) -> bool {
    m.after.is_none_or(|after| now >= after) && m.before.is_none_or(|before| now < before)
}

pub fn day_matches(days: DaySet, now: jiff::Timestamp) -> bool {
    days.contains(now.to_zoned(jiff::tz::TimeZone::UTC).weekday())
}

pub fn time_of_day_matches(m: &TimeOfDayMatcher, now: jiff::Timestamp) -> bool {
    let time = now.to_zoned(m.zone.clone()).time();
    match (m.after, m.before) {
        (Some(after), Some(before)) if after <= before => after <= time && time < before,
        (Some(after), Some(before)) => time >= after || time < before,
        (Some(after), None) => time >= after,
        (None, Some(before)) => time < before,
        (None, None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn window(zone: &str, after: Option<&str>, before: Option<&str>) -> TimeOfDayMatcher {
        TimeOfDayMatcher {
            zone_name: zone.to_owned(),
            zone: jiff::tz::TimeZone::get(zone).unwrap(),
            after: after.map(|t| t.parse().unwrap()),
            before: before.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn time_of_day_reads_the_zone_and_wraps_midnight() {
        let office = window("America/New_York", Some("09:00"), Some("17:00"));
        assert!(time_of_day_matches(&office, at("2026-01-05T14:00:00Z")), "9:00 in New York");
        assert!(!time_of_day_matches(&office, at("2026-01-05T13:59:59Z")));
        assert!(!time_of_day_matches(&office, at("2026-01-05T22:00:00Z")), "17:00 is excluded");
        let night = window("UTC", Some("22:00"), Some("06:00"));
        assert!(time_of_day_matches(&night, at("2026-01-05T23:30:00Z")));
        assert!(time_of_day_matches(&night, at("2026-01-05T05:59:00Z")));
        assert!(!time_of_day_matches(&night, at("2026-01-05T12:00:00Z")));
    }

    #[test]
    fn days_are_read_in_utc() {
        let weekdays = DaySet(0b001_1111);
        assert!(day_matches(weekdays, at("2026-01-05T00:00:00Z")), "a Monday");
        assert!(!day_matches(weekdays, at("2026-01-04T23:59:59Z")), "a Sunday");
    }
}
