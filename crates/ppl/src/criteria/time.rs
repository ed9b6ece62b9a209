//! `date`, `day_of_week` and `time_of_day`: criteria Pomerium documents for its Enterprise edition
//! (ppl.md §2.5), implemented here in the open. Their data is checked at compile time: dates, day
//! names, times of day and IANA time zones.

use super::Cx;
use crate::error::{
    InvalidDate, InvalidDayOfWeek, InvalidTimeOfDay, MissingField, UnknownField, UnknownTimeZone, WrongType,
};
use crate::model::{DateMatcher, DaySet, TimeOfDayMatcher};
use crate::suggest;
use crate::value::{Entry, Value, ValueKind};
use crate::warning::NeverMatches;
use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;

pub(super) fn date(data: &Value, cx: &mut Cx<'_>) -> Option<DateMatcher> {
    let entries = object(data, "date", "an object with `after` and/or `before`", cx)?;
    let mut matcher = DateMatcher { after: None, before: None };
    // A misspelt key was meant as something; "missing" errors would repeat the same mistake.
    let mut misspelt = false;
    for entry in entries {
        let slot = match entry.key.as_str() {
            "after" => &mut matcher.after,
            "before" => &mut matcher.before,
            other => {
                unknown_field("date", other, entry, &["after", "before"], cx);
                misspelt = true;
                continue;
            }
        };
        let Some(text) = string(&entry.value, &format!("the `{}` of `date`", entry.key), cx) else {
            continue;
        };
        match parse_date_time(text) {
            Some(timestamp) => *slot = Some(timestamp),
            None => cx.error(InvalidDate {
                text: text.to_owned(),
                span: entry.value.span.into(),
                reason: "not an iso 8601 date-time".to_owned(),
            }),
        }
    }
    if matcher.after.is_none()
        && matcher.before.is_none()
        && !misspelt
        && entries.iter().all(|e| e.key != "after" && e.key != "before")
    {
        missing("date", "`after` or `before`", data, cx);
    }
    if let (Some(after), Some(before)) = (matcher.after, matcher.before)
        && after >= before
    {
        cx.warn(NeverMatches {
            criterion: "date".to_owned(),
            reason: "`after` is not earlier than `before`".to_owned(),
            span: data.span.into(),
            help: Some("swap the two dates".to_owned()),
        });
    }
    Some(matcher)
}

/// An RFC 3339 / ISO 8601 date-time; without an offset it is read as UTC, and a bare date is
/// midnight UTC.
pub fn parse_date_time(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(timestamp) = text.parse::<jiff::Timestamp>() {
        return Some(timestamp);
    }
    let civil: jiff::civil::DateTime = text.parse().ok()?;
    civil.to_zoned(TimeZone::UTC).ok().map(|zoned| zoned.timestamp())
}

/// A day specification as a string, or as `{is: ...}` (the form Pomerium's SSH documentation uses).
pub(super) fn day_of_week(data: &Value, cx: &mut Cx<'_>) -> Option<DaySet> {
    let spec = match data.as_object() {
        Some(entries) => {
            for entry in entries.iter().filter(|e| e.key != "is") {
                unknown_field("day_of_week", &entry.key, entry, &["is"], cx);
            }
            match data.get("is") {
                Some(is) => &is.value,
                None => {
                    missing("day_of_week", "`is`", data, cx);
                    return None;
                }
            }
        }
        None => data,
    };
    let text = string(spec, "`day_of_week`", cx)?;
    match parse_days(text) {
        Ok(days) => Some(days),
        Err((reason, help)) => {
            cx.error(InvalidDayOfWeek { text: text.to_owned(), span: spec.span.into(), reason, help });
            None
        }
    }
}

const DAY_NAMES: &[&str] = &[
    "mon",
    "tue",
    "wed",
    "thu",
    "fri",
    "sat",
    "sun",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn weekday(name: &str) -> Option<Weekday> {
    Some(match name.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => return None,
    })
}

/// `*`, days separated by `,`, and ranges such as `mon-fri` (a range may wrap: `fri-mon`).
pub fn parse_days(text: &str) -> Result<DaySet, (String, Option<String>)> {
    if text.trim() == "*" {
        return Ok(DaySet::ALL);
    }
    let day = |name: &str| {
        weekday(name).ok_or_else(|| {
            let name = name.trim();
            let help = suggest::did_you_mean(&name.to_ascii_lowercase(), DAY_NAMES)
                .or_else(|| Some("write english day names or their first three letters: `mon`, `tue`, ... `sun`, or `*` for every day".to_owned()));
            (if name.is_empty() { "a day name is missing".to_owned() } else { format!("`{name}` is not a day") }, help)
        })
    };
    let mut bits = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((from, to)) => {
                let (from, to) = (day(from)?, day(to)?);
                let mut current = from;
                loop {
                    bits |= 1 << current.to_monday_zero_offset();
                    if current == to {
                        break;
                    }
                    current = current.next();
                }
            }
            None => bits |= 1 << day(part)?.to_monday_zero_offset(),
        }
    }
    Ok(DaySet(bits))
}

pub(super) fn time_of_day(data: &Value, cx: &mut Cx<'_>) -> Option<TimeOfDayMatcher> {
    let entries = object(data, "time_of_day", "an object with `timezone`, `after` and/or `before`", cx)?;
    let mut zone = None;
    let (mut after, mut before) = (None, None);
    let mut misspelt = false;
    for entry in entries {
        let value = &entry.value;
        match entry.key.as_str() {
            "timezone" => {
                let Some(name) = string(value, "the `timezone` of `time_of_day`", cx) else {
                    continue;
                };
                match time_zone(name) {
                    Ok(tz) => zone = Some((name.to_owned(), tz)),
                    Err(help) => {
                        cx.error(UnknownTimeZone { zone: name.to_owned(), span: value.span.into(), help: Some(help) })
                    }
                }
            }
            "after" | "before" => {
                let slot = if entry.key == "after" { &mut after } else { &mut before };
                let what = format!("the `{}` of `time_of_day`", entry.key);
                if let ValueKind::Number(n) = &value.kind {
                    cx.error(WrongType {
                        what,
                        expected: "a time such as `9:00` or `5:30 PM`",
                        found: value.kind(),
                        span: value.span.into(),
                        help: Some(format!("write hours and minutes in quotes: `\"{n}:00\"`")),
                    });
                    continue;
                }
                let Some(text) = string(value, &what, cx) else {
                    continue;
                };
                match parse_time(text) {
                    Some(time) => *slot = Some(time),
                    None => cx.error(InvalidTimeOfDay { text: text.to_owned(), span: value.span.into() }),
                }
            }
            other => {
                unknown_field("time_of_day", other, entry, &["timezone", "after", "before"], cx);
                misspelt = true;
            }
        }
    }
    let has_timezone = entries.iter().any(|e| e.key == "timezone");
    if !has_timezone && !misspelt {
        missing("time_of_day", "a `timezone`", data, cx);
    }
    if !entries.iter().any(|e| e.key == "after" || e.key == "before") && !misspelt {
        missing("time_of_day", "`after` or `before`", data, cx);
    }
    if after.is_some() && after == before {
        cx.warn(NeverMatches {
            criterion: "time_of_day".to_owned(),
            reason: "`after` and `before` are the same time, so the window is empty".to_owned(),
            span: data.span.into(),
            help: None,
        });
    }
    let (zone_name, zone) = zone?;
    Some(TimeOfDayMatcher { zone_name, zone, after, before })
}

/// An IANA time zone from the bundled database; the error is the help to show.
pub fn time_zone(name: &str) -> Result<TimeZone, String> {
    if name.eq_ignore_ascii_case("local") {
        return Err("the server's local zone would make the policy depend on where it runs; name the zone, e.g. `Europe/Berlin`".to_owned());
    }
    jiff::tz::db().get(name).map_err(|_| {
        let names: Vec<String> = jiff::tz::db().available().map(|n| n.as_str().to_owned()).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        suggest::did_you_mean(name, &refs).unwrap_or_else(|| {
            "use an iana time zone name such as `America/New_York`, `Europe/Berlin` or `UTC`".to_owned()
        })
    })
}

/// The time formats Pomerium documents: `3:04 PM`, `3:04PM`, `3 PM`, `3PM`,
/// `15:04:05.999999999`, `15:04:05` and `15:04`.
pub fn parse_time(text: &str) -> Option<Time> {
    let text = text.trim();
    let upper = text.to_ascii_uppercase();
    let meridiem = upper
        .strip_suffix("AM")
        .map(|rest| (rest, false))
        .or_else(|| upper.strip_suffix("PM").map(|rest| (rest, true)));
    if let Some((clock, pm)) = meridiem {
        let clock = clock.trim_end();
        let (hour, minute) = match clock.split_once(':') {
            Some((h, m)) => (number(h, 1, 2)?, number(m, 2, 2)?),
            None => (number(clock, 1, 2)?, 0),
        };
        if !(1..=12).contains(&hour) || minute > 59 {
            return None;
        }
        let hour = hour % 12 + if pm { 12 } else { 0 };
        return Time::new(i8::try_from(hour).ok()?, i8::try_from(minute).ok()?, 0, 0).ok();
    }
    let mut parts = text.splitn(3, ':');
    let hour = number(parts.next()?, 1, 2)?;
    let minute = number(parts.next()?, 2, 2)?;
    let (second, nanos) = match parts.next() {
        None => (0, 0),
        Some(rest) => {
            let (sec, frac) = rest.split_once('.').map_or((rest, None), |(s, f)| (s, Some(f)));
            let nanos = match frac {
                None => 0,
                Some(frac) => {
                    let digits = number(frac, 1, 9)?;
                    let scale = 10u32.pow(9 - u32::try_from(frac.len()).ok()?);
                    digits * scale
                }
            };
            (number(sec, 2, 2)?, nanos)
        }
    };
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    Time::new(
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        i32::try_from(nanos).ok()?,
    )
    .ok()
}

/// A run of `min..=max` ASCII digits.
fn number(text: &str, min: usize, max: usize) -> Option<u32> {
    (min..=max).contains(&text.len()).then_some(())?;
    text.bytes().all(|b| b.is_ascii_digit()).then(|| text.parse().ok()).flatten()
}

fn object<'v>(data: &'v Value, criterion: &str, expected: &'static str, cx: &mut Cx<'_>) -> Option<&'v [Entry]> {
    match data.as_object() {
        Some(entries) => Some(entries),
        None => {
            cx.error(WrongType {
                what: format!("`{criterion}`"),
                expected,
                found: data.kind(),
                span: data.span.into(),
                help: None,
            });
            None
        }
    }
}

fn string<'v>(value: &'v Value, what: &str, cx: &mut Cx<'_>) -> Option<&'v str> {
    match &value.kind {
        ValueKind::String(text) => Some(text),
        _ => {
            cx.error(WrongType {
                what: what.to_owned(),
                expected: "a string",
                found: value.kind(),
                span: value.span.into(),
                help: None,
            });
            None
        }
    }
}

fn unknown_field(criterion: &str, field: &str, entry: &Entry, fields: &[&str], cx: &mut Cx<'_>) {
    cx.error(UnknownField {
        criterion: criterion.to_owned(),
        field: field.to_owned(),
        span: entry.key_span.into(),
        help: Some(suggest::help(field, fields, &format!("fields of `{criterion}`"))),
    });
}

fn missing(criterion: &str, field: &'static str, data: &Value, cx: &mut Cx<'_>) {
    cx.error(MissingField { criterion: criterion.to_owned(), field, span: data.span.into(), help: None });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_time_format() {
        let t = |s: &str| parse_time(s).map(|t| t.to_string());
        assert_eq!(t("3:04 PM").as_deref(), Some("15:04:00"));
        assert_eq!(t("3:04PM").as_deref(), Some("15:04:00"));
        assert_eq!(t("3 PM").as_deref(), Some("15:00:00"));
        assert_eq!(t("3PM").as_deref(), Some("15:00:00"));
        assert_eq!(t("12 AM").as_deref(), Some("00:00:00"));
        assert_eq!(t("12:30 pm").as_deref(), Some("12:30:00"));
        assert_eq!(t("15:04:05.25").as_deref(), Some("15:04:05.25"));
        assert_eq!(t("15:04:05").as_deref(), Some("15:04:05"));
        assert_eq!(t("2:20:00").as_deref(), Some("02:20:00"));
        assert_eq!(t("15:04").as_deref(), Some("15:04:00"));
        for bad in ["", "25:00", "13 PM", "0 AM", "9", "9:5", "noon", "15:04:05.", "15:04:05.1234567890"] {
            assert_eq!(t(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_day_lists_and_ranges() {
        assert_eq!(parse_days("*").unwrap(), DaySet::ALL);
        assert_eq!(parse_days("mon-fri").unwrap(), DaySet(0b001_1111));
        assert_eq!(parse_days("Monday,wed,FRI").unwrap(), DaySet(0b001_0101));
        assert_eq!(parse_days("fri-mon").unwrap(), DaySet(0b111_0001));
        let (reason, help) = parse_days("mon-thurs").unwrap_err();
        assert_eq!(reason, "`thurs` is not a day");
        assert_eq!(help.as_deref(), Some("did you mean `thursday`?"));
    }

    #[test]
    fn parses_dates_with_and_without_offsets() {
        let utc = parse_date_time("2020-01-02T16:20:00Z").unwrap();
        assert_eq!(parse_date_time("2020-01-02T16:20:00").unwrap(), utc);
        assert_eq!(parse_date_time("2020-01-02T11:20:00-05:00").unwrap(), utc);
        assert!(parse_date_time("2020-01-02").is_some());
        assert!(parse_date_time("2020-13-02").is_none());
        assert!(parse_date_time("yesterday").is_none());
    }

    #[test]
    fn time_zones_come_from_the_bundled_database() {
        assert!(time_zone("America/Phoenix").is_ok());
        assert!(time_zone("UTC").is_ok());
        assert_eq!(time_zone("Europe/Berln").unwrap_err(), "did you mean `Europe/Berlin`?");
        assert!(time_zone("Local").is_err());
    }
}
