//! Go's duration syntax (`time.ParseDuration`), which Pomerium's options use: `30s`, `1h30m`,
//! `500ms`, `1.5h`, `0`.

use std::time::Duration;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DurationError {
    Empty,
    Negative,
    MissingUnit,
    UnknownUnit(String),
    Invalid,
    TooLarge,
}

impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::Empty => f.write_str("it is empty"),
            DurationError::Negative => f.write_str("durations here cannot be negative"),
            DurationError::MissingUnit => f.write_str("a number needs a unit"),
            DurationError::UnknownUnit(unit) => write!(f, "unknown unit `{unit}`"),
            DurationError::Invalid => f.write_str("expected numbers each followed by a unit"),
            DurationError::TooLarge => f.write_str("it is longer than go's limit of about 292 years"),
        }
    }
}

/// Go's `time.Duration` is an `int64` of nanoseconds.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Parses a Go duration. Negative durations, which Go accepts, are refused: no option here means
/// anything by one.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..).unwrap_or_default()),
        Some(b'+') => (false, text.get(1..).unwrap_or_default()),
        Some(_) => (false, text),
        None => return Err(DurationError::Empty),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(DurationError::Invalid);
    }
    let nanos = components(rest)?;
    if negative && nanos > 0 {
        return Err(DurationError::Negative);
    }
    let seconds = u64::try_from(nanos / 1_000_000_000).map_err(|_| DurationError::TooLarge)?;
    let sub = u32::try_from(nanos % 1_000_000_000).map_err(|_| DurationError::TooLarge)?;
    Ok(Duration::new(seconds, sub))
}

/// The sum of the `<number><unit>` components, in nanoseconds.
fn components(mut rest: &str) -> Result<u128, DurationError> {
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let (whole, after_whole) = split_digits(rest);
        let (fraction, after_fraction) = match after_whole.strip_prefix('.') {
            Some(after_dot) => split_digits(after_dot),
            None => ("", after_whole),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(DurationError::Invalid);
        }
        let unit_len = after_fraction.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after_fraction.len());
        let unit = after_fraction.get(..unit_len).unwrap_or_default();
        if unit.is_empty() {
            return Err(DurationError::MissingUnit);
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit(unit.to_owned()))?;
        total = total.checked_add(component(whole, fraction, scale)?).ok_or(DurationError::TooLarge)?;
        if total > MAX_NANOS {
            return Err(DurationError::TooLarge);
        }
        rest = after_fraction.get(unit_len..).unwrap_or_default();
    }
    Ok(total)
}

fn split_digits(text: &str) -> (&str, &str) {
    let end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    (text.get(..end).unwrap_or_default(), text.get(end..).unwrap_or_default())
}

/// `whole.fraction` times `scale`, rounding the fraction down as Go does.
fn component(whole: &str, fraction: &str, scale: u128) -> Result<u128, DurationError> {
    let whole_value: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| DurationError::TooLarge)? };
    let mut value = whole_value.checked_mul(scale).ok_or(DurationError::TooLarge)?;
    let mut unit = scale;
    for digit in fraction.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        value = value.checked_add(u128::from(digit - b'0') * unit).ok_or(DurationError::TooLarge)?;
    }
    Ok(value)
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        _ => return None,
    })
}

/// A duration in Go's shortest form (`1h30m0s`), for summaries and messages.
pub fn format(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        return match nanos {
            n if n % 1_000_000 == 0 => format!("{}ms", n / 1_000_000),
            n if n % 1_000 == 0 => format!("{}µs", n / 1_000),
            n => format!("{n}ns"),
        };
    }
    let seconds = duration.as_secs();
    let (hours, minutes, secs) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let fraction = duration.subsec_nanos();
    let secs_text = if fraction == 0 {
        format!("{secs}s")
    } else {
        format!("{secs}.{}s", format!("{fraction:09}").trim_end_matches('0'))
    };
    match (hours, minutes) {
        (0, 0) => secs_text,
        (0, m) => format!("{m}m{secs_text}"),
        (h, m) => format!("{h}h{m}m{secs_text}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_durations() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2us"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("2µs"), Ok(Duration::from_micros(2)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("-0"), Ok(Duration::ZERO));
        assert_eq!(parse("+5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h2m3.004s"), Ok(Duration::new(3723, 4_000_000)));
    }

    #[test]
    fn refuses_what_go_refuses_and_negatives() {
        assert_eq!(parse(""), Err(DurationError::Empty));
        assert_eq!(parse("30"), Err(DurationError::MissingUnit));
        assert_eq!(parse("5d"), Err(DurationError::UnknownUnit("d".into())));
        assert_eq!(parse("s"), Err(DurationError::Invalid));
        assert_eq!(parse("."), Err(DurationError::Invalid));
        assert_eq!(parse("-5s"), Err(DurationError::Negative));
        assert_eq!(parse("9999999999h"), Err(DurationError::TooLarge));
        assert_eq!(parse("1h 30m"), Err(DurationError::UnknownUnit("h ".into())));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format(Duration::from_secs(5400)), "1h30m0s");
        assert_eq!(format(Duration::from_secs(30)), "30s");
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(14 * 3600)), "14h0m0s");
    }
}
