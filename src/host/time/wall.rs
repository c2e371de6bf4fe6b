//! Wall-clock times as people write them ("6:20pm", "Apr 23 at 4pm"), turned
//! into the instant they next name in a zone: for messages such as "resets
//! 6:20pm (Europe/Berlin)". Now is `time::now()`'s (so `ALOOP_NOW` holds).

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::Timestamp;
use rhai::Module;

use super::{now, raise, unrepresentable, Fallible, Zone};

/// The zone as jiff's, so that a date and a clock time can be placed in it
/// with its daylight saving rules.
fn jiff_zone(tz: &str) -> Fallible<TimeZone> {
    Ok(match Zone::named(tz)? {
        Zone::Named(z) => z,
        Zone::Local => TimeZone::system(),
        Zone::Fixed(offset) => TimeZone::fixed(
            Offset::from_seconds(offset.local_minus_utc()).map_err(|e| raise(format!("{tz}: {e}")))?,
        ),
    })
}

/// "6:20pm", "6:20 PM", "2am", "12pm", "18:20", "9:05" -> a time of day.
fn clock(text: &str) -> Fallible<Time> {
    let bad = || raise(format!("'{text}' is not a clock time: use e.g. 6:20pm, 2am or 18:20"));
    let lower = text.trim().to_ascii_lowercase();
    let (digits, half) = match (lower.strip_suffix("am"), lower.strip_suffix("pm")) {
        (Some(d), _) => (d.trim_end(), Some(0)),
        (_, Some(d)) => (d.trim_end(), Some(12)),
        _ => (lower.as_str(), None),
    };
    let (hour, minute) = match digits.split_once(':') {
        Some((h, m)) if m.len() == 2 => (h, m),
        None if half.is_some() => (digits, "00"),
        _ => return Err(bad()),
    };
    let number = |s: &str| {
        (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i8>().ok())
            .flatten()
            .ok_or_else(bad)
    };
    let (mut hour, minute) = (number(hour)?, number(minute)?);
    if let Some(offset) = half {
        if !(1..=12).contains(&hour) {
            return Err(bad());
        }
        hour = hour % 12 + offset;
    }
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

const MONTHS: [&str; 12] =
    ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];

/// "Apr 23", "April 23rd", "Dec 29th, 2025", "2025-12-29" -> (year if
/// given, month, day).
fn calendar_day(text: &str) -> Fallible<(Option<i16>, i8, i8)> {
    let bad = || raise(format!("'{text}' is not a date: use e.g. Apr 23, Dec 29th, 2025 or 2025-12-29"));
    let trimmed = text.trim();
    if let Ok(date) = trimmed.parse::<Date>() {
        return Ok((Some(date.year()), date.month(), date.day()));
    }
    let mut words = trimmed.split([' ', ',']).filter(|w| !w.is_empty());
    let month = words.next().map(str::to_ascii_lowercase).ok_or_else(bad)?;
    let month = MONTHS
        .iter()
        .position(|m| month.len() >= 3 && m.starts_with(&month[..3]) && month.is_char_boundary(3))
        .ok_or_else(bad)?;
    let day = words.next().ok_or_else(bad)?;
    let day = day.trim_end_matches(|c: char| c.is_ascii_alphabetic()).parse::<i8>().map_err(|_| bad())?;
    let year = words.next().map(|y| y.parse::<i16>().map_err(|_| bad())).transpose()?;
    if words.next().is_some() {
        return Err(bad());
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
    Ok((year, month as i8 + 1, day))
}

fn now_in(zone: &TimeZone) -> Fallible<jiff::Zoned> {
    let unix = now().map_err(raise)?.timestamp();
    Ok(Timestamp::from_second(unix).map_err(|_| unrepresentable(unix))?.to_zoned(zone.clone()))
}

/// `day` at `time` in `zone` (a time skipped by daylight saving moves on by
/// the gap) as unix seconds.
fn instant(zone: &TimeZone, day: Date, time: Time) -> Fallible<i64> {
    let zoned = DateTime::from_parts(day, time)
        .to_zoned(zone.clone())
        .map_err(|e| raise(format!("{day} {time} cannot be placed in its zone: {e}")))?;
    Ok(zoned.timestamp().as_second())
}

/// The first instant after now at which the clock in `tz` shows `text`.
fn next_time(text: &str, tz: &str) -> Fallible<i64> {
    let time = clock(text)?;
    let zone = jiff_zone(tz)?;
    let now = now_in(&zone)?;
    let today = instant(&zone, now.date(), time)?;
    if today > now.timestamp().as_second() {
        return Ok(today);
    }
    let tomorrow = now.date().tomorrow().map_err(|e| raise(e.to_string()))?;
    instant(&zone, tomorrow, time)
}

/// `date` at `time` in `tz`; a date without a year is its next occurrence
/// after now (this year's, else next year's).
fn next_date(date: &str, time: &str, tz: &str) -> Fallible<i64> {
    let (year, month, day) = calendar_day(date)?;
    let time = clock(time)?;
    let zone = jiff_zone(tz)?;
    let now = now_in(&zone)?;
    let not_a_day = |year: i16| raise(format!("'{date}' is not a day of {year}"));
    if let Some(year) = year {
        return instant(&zone, Date::new(year, month, day).map_err(|_| not_a_day(year))?, time);
    }
    // Feb 29 exists only in leap years: look up to 8 years ahead.
    for year in now.year()..now.year().saturating_add(8) {
        if let Ok(day) = Date::new(year, month, day) {
            let at = instant(&zone, day, time)?;
            if at > now.timestamp().as_second() {
                return Ok(at);
            }
        }
    }
    Err(not_a_day(now.year()))
}

pub(super) fn register(m: &mut Module) {
    // time::next_time("6:20pm"[, tz]) -> the unix time the clock (12- or
    // 24-hour) next shows it after now, in local time or zone tz.
    primitive!(m, "next_time", |text: &str| next_time(text, "local"));
    primitive!(m, "next_time", |text: &str, tz: &str| next_time(text, tz));
    // time::next_date("Apr 23", "4pm"[, tz]) -> that date and time (the next
    // one after now when the date has no year; "Dec 29th, 2025" has one).
    primitive!(m, "next_date", |date: &str, time: &str| next_date(date, time, "local"));
    primitive!(m, "next_date", |date: &str, time: &str, tz: &str| next_date(date, time, tz));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_times_in_the_forms_clis_print() {
        let hm = |t: &str| clock(t).map(|t| (t.hour(), t.minute())).map_err(|e| e.to_string());
        assert_eq!(hm("6:20pm"), Ok((18, 20)));
        assert_eq!(hm("3:15 PM"), Ok((15, 15)));
        assert_eq!(hm("2am"), Ok((2, 0)));
        assert_eq!(hm("12am"), Ok((0, 0)));
        assert_eq!(hm("12pm"), Ok((12, 0)));
        assert_eq!(hm("18:05"), Ok((18, 5)));
        for bad in ["13pm", "6:2pm", "25:00", "noon", "", "0am", "18"] {
            assert!(hm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn calendar_days_with_and_without_a_year() {
        assert_eq!(calendar_day("Apr 23").ok(), Some((None, 4, 23)));
        assert_eq!(calendar_day("April 23rd").ok(), Some((None, 4, 23)));
        assert_eq!(calendar_day("Dec 29th, 2025").ok(), Some((Some(2025), 12, 29)));
        assert_eq!(calendar_day("2025-12-29").ok(), Some((Some(2025), 12, 29)));
        for bad in ["Foo 3", "Apr", "Apr x", "Apr 3 2025 x", "Ap 3"] {
            assert!(calendar_day(bad).is_err(), "{bad}");
        }
    }
}
