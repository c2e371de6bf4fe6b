//! `time::` — the clock, durations, cron expressions and time zones.
//! `ALOOP_NOW` (RFC 3339) overrides "now", and the local zone becomes its
//! offset, for everything but `unix_ms`, so schedules can be tested at any
//! hour; `unix_ms` is always the real clock, for measuring durations.
//! `ALOOP_SLEEP_SCALE` (a number, for tests) multiplies every `time::sleep`:
//! 0 skips them, 0.001 makes an hour 3.6 seconds.

use std::time::{Duration, Instant};

use chrono::format::{Fixed, Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, Local, Offset, SecondsFormat, TimeZone, Timelike, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;
use jiff::tz::TimeZoneDatabase;
use jiff::Timestamp;
use rhai::Module;

use super::{fail, raise, Fallible};
use crate::context::SharedHost;

mod wall;

/// Now, in local time, or the `ALOOP_NOW` override in its own offset.
pub(crate) fn now() -> Result<DateTime<FixedOffset>, String> {
    match overridden() {
        Some(text) => DateTime::parse_from_rfc3339(&text)
            .map_err(|e| format!("ALOOP_NOW='{text}' is not an RFC 3339 time: {e}")),
        None => Ok(Local::now().fixed_offset()),
    }
}

fn overridden() -> Option<String> {
    std::env::var("ALOOP_NOW").ok().filter(|text| !text.is_empty())
}

fn parse(text: &str) -> Fallible<i64> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| raise(format!("'{text}' is not an RFC 3339 time: {e}")))
}

/// A time zone a script names: "local" (the offset of `ALOOP_NOW` when it is
/// set, else the system's zone with its daylight saving), "UTC", or an IANA
/// name such as "Europe/Berlin", read from the system's tz database
/// (/usr/share/zoneinfo, or `TZDIR`) so the binary carries no copy of it.
enum Zone {
    Fixed(FixedOffset),
    Local,
    Named(jiff::tz::TimeZone),
}

impl Zone {
    fn named(name: &str) -> Fallible<Zone> {
        match name {
            "local" => Ok(match overridden() {
                Some(_) => Zone::Fixed(*now().map_err(raise)?.offset()),
                None => Zone::Local,
            }),
            "UTC" => Ok(Zone::Named(jiff::tz::TimeZone::UTC)),
            _ => lookup(jiff::tz::db(), name).map(Zone::Named),
        }
    }
}

/// The IANA zone `name` in `db`; a machine without a tz database is told so,
/// rather than that Europe/Berlin does not exist.
fn lookup(db: &TimeZoneDatabase, name: &str) -> Fallible<jiff::tz::TimeZone> {
    db.get(name).map_err(|_| {
        raise(if db.is_definitively_empty() {
            format!(
                "'{name}' cannot be looked up: this machine has no time zone database in /usr/share/zoneinfo \
                 (install the tzdata package, or set TZDIR to one)"
            )
        } else {
            format!("'{name}' is not a time zone: use local, UTC or an IANA name such as Europe/Berlin")
        })
    })
}

/// The offset of the named zone `z` at the instant `unix`, and its
/// abbreviation there ("CET", "CEST").
fn offset_at(z: &jiff::tz::TimeZone, unix: i64) -> Fallible<(FixedOffset, String)> {
    let instant = Timestamp::from_second(unix).map_err(|_| unrepresentable(unix))?;
    let info = z.to_offset_info(instant);
    let offset = FixedOffset::east_opt(info.offset().seconds()).ok_or_else(|| unrepresentable(unix))?;
    Ok((offset, info.abbreviation().to_string()))
}

fn unrepresentable(unix: i64) -> Box<rhai::EvalAltResult> {
    raise(format!("{unix} is not a representable time"))
}

/// Evaluates `$body` with `$t` bound to the instant `$unix` seen in `$zone`:
/// one generic body for the kinds of zone. A named zone becomes its offset at
/// that instant, which is right for that one instant only.
macro_rules! in_zone {
    ($zone:expr, $unix:expr, |$t:ident| $body:expr) => {{
        let utc = Utc.timestamp_opt($unix, 0).single().ok_or_else(|| unrepresentable($unix))?;
        match $zone {
            Zone::Fixed(z) => {
                let $t = utc.with_timezone(&z);
                $body
            }
            Zone::Local => {
                let $t = utc.with_timezone(&Local);
                $body
            }
            Zone::Named(z) => {
                let $t = utc.with_timezone(&offset_at(&z, $unix)?.0);
                $body
            }
        }
    }};
}

/// `unix` as RFC 3339 text in the local zone.
fn rfc3339(unix: i64) -> Fallible<String> {
    in_zone!(Zone::named("local")?, unix, |t| Ok(t.to_rfc3339_opts(SecondsFormat::Secs, false)))
}

/// `unix` in zone `tz` through a strftime format ("%Y-%m-%d %H:%M %Z").
fn format(unix: i64, fmt: &str, tz: &str) -> Fallible<String> {
    let mut items =
        StrftimeItems::new(fmt).parse().map_err(|_| raise(format!("'{fmt}' is not a strftime format")))?;
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return fail(format!("'{fmt}' is not a strftime format"));
    }
    let zone = Zone::named(tz)?;
    if let Zone::Named(z) = &zone {
        // A fixed offset writes %Z as "+01:00": the zone's abbreviation goes in its place.
        let abbreviation: Box<str> = offset_at(z, unix)?.1.into();
        for item in &mut items {
            if matches!(item, Item::Fixed(Fixed::TimezoneName)) {
                *item = Item::OwnedLiteral(abbreviation.clone());
            }
        }
    }
    in_zone!(zone, unix, |t| Ok(t.format_with_items(items.iter()).to_string()))
}

/// The local offset from UTC of now, in seconds (3600 for UTC+01:00).
fn utc_offset() -> Fallible<i64> {
    let unix = now().map_err(raise)?.timestamp();
    in_zone!(Zone::named("local")?, unix, |t| Ok(i64::from(t.offset().fix().local_minus_utc())))
}

/// "900", "90s", "30m", "2h", "1d", "1h30m", "2h 15min", "1week" -> seconds.
/// Plain digits are seconds; the units are humantime's.
fn parse_duration(text: &str) -> Fallible<i64> {
    let trimmed = text.trim();
    let bad = || {
        raise(format!(
            "'{text}' is not a duration: use seconds or numbers with units, e.g. 900, 90s, 30m, 2h, 1d or 1h30m"
        ))
    };
    let duration = if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        Duration::from_secs(trimmed.parse().map_err(|_| bad())?)
    } else {
        humantime::parse_duration(trimmed).map_err(|_| bad())?
    };
    if duration.subsec_nanos() != 0 {
        return fail(format!("'{text}' is not a whole number of seconds"));
    }
    i64::try_from(duration.as_secs()).map_err(|_| bad())
}

/// 7200 -> "2h", 5400 -> "1h30m", 90061 -> "1d1h1m1s", 0 -> "0s".
fn format_duration(secs: i64) -> Fallible<String> {
    if secs < 0 {
        return fail(format!("time::format_duration: {secs} is not a number of seconds (it is negative)"));
    }
    let mut out = String::new();
    let mut left = secs;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if left >= size {
            out.push_str(&format!("{}{unit}", left / size));
            left %= size;
        }
    }
    Ok(if out.is_empty() { "0s".to_string() } else { out })
}

/// A five-field crontab expression ("0 9 * * 1-5", names and @daily allowed).
fn cron(expr: &str) -> Fallible<Cron> {
    CronParser::builder().seconds(Seconds::Disallowed).year(Year::Disallowed).build().parse(expr).map_err(
        |e| {
            let why = e.to_string();
            let why = why.trim_end_matches('.');
            raise(format!("'{expr}' is not a cron expression (minute hour day month weekday): {why}"))
        },
    )
}

/// The first time (unix) after now at which `expr` fires, read in zone `tz`.
fn cron_next(expr: &str, tz: &str) -> Fallible<i64> {
    let cron = cron(expr)?;
    let unix = now().map_err(raise)?.timestamp();
    let never = |_| raise(format!("the cron expression '{expr}' never fires"));
    match Zone::named(tz)? {
        // A named zone's offset changes across the year (daylight saving), so
        // the search walks jiff's zoned time rather than one fixed offset.
        Zone::Named(z) => {
            let start = Timestamp::from_second(unix).map_err(|_| unrepresentable(unix))?.to_zoned(z);
            Ok(cron.find_next_occurrence(&start, false).map_err(never)?.timestamp().as_second())
        }
        zone => {
            in_zone!(zone, unix, |t| Ok(cron.find_next_occurrence(&t, false).map_err(never)?.timestamp()))
        }
    }
}

/// The `ALOOP_SLEEP_SCALE` factor for sleeps (1 when unset).
fn sleep_scale() -> Fallible<f64> {
    match std::env::var("ALOOP_SLEEP_SCALE") {
        Ok(text) if !text.is_empty() => match text.trim().parse::<f64>() {
            Ok(scale) if (0.0..=1.0).contains(&scale) => Ok(scale),
            _ => fail(format!("ALOOP_SLEEP_SCALE='{text}' is not a number between 0 and 1")),
        },
        _ => Ok(1.0),
    }
}

/// Sleeps in slices so that Ctrl-C ends the wait at once.
fn sleep(host: &SharedHost, secs: f64) -> Fallible<()> {
    if !(0.0..=31_536_000.0).contains(&secs) {
        return fail(format!("time::sleep: {secs} is not a number of seconds between 0 and a year"));
    }
    let end = Instant::now() + Duration::from_secs_f64(secs * sleep_scale()?);
    loop {
        if crate::cancel::is_interrupted() {
            return fail("interrupted");
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
    host.budget.refill();
    Ok(())
}

pub(crate) fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    // time::now() -> "2026-11-22T04:38:21+01:00"
    primitive!(m, "now", || { Ok(now().map_err(raise)?.to_rfc3339_opts(SecondsFormat::Secs, false)) });
    // time::unix() -> seconds since the epoch.
    primitive!(m, "unix", || { Ok(now().map_err(raise)?.timestamp()) });
    // time::unix_ms() -> real milliseconds since the epoch (never overridden).
    primitive!(m, "unix_ms", || { Ok(Local::now().timestamp_millis()) });
    // time::local_hour() -> 0..=23, time::local_minute() -> 0..=59.
    primitive!(m, "local_hour", || { Ok(i64::from(now().map_err(raise)?.hour())) });
    primitive!(m, "local_minute", || { Ok(i64::from(now().map_err(raise)?.minute())) });
    // time::utc_offset() -> the local offset from UTC now, in seconds.
    primitive!(m, "utc_offset", || utc_offset());
    // time::parse("RFC 3339 text") -> unix seconds.
    primitive!(m, "parse", |text: &str| parse(text));
    // time::format(unix) -> RFC 3339 text in local time.
    primitive!(m, "format", |unix: i64| rfc3339(unix));
    // time::format(unix, "%H:%M") -> strftime text in local time;
    // time::format(unix, fmt, tz) in zone tz ("UTC", "Europe/Berlin", "local").
    primitive!(m, "format", |unix: i64, fmt: &str| format(unix, fmt, "local"));
    primitive!(m, "format", |unix: i64, fmt: &str, tz: &str| format(unix, fmt, tz));
    // time::parse_duration("1h30m") -> 5400; time::format_duration(5400) -> "1h30m".
    primitive!(m, "parse_duration", |text: &str| parse_duration(text));
    primitive!(m, "format_duration", |secs: i64| format_duration(secs));
    // time::cron_next("0 9 * * 1-5") -> the unix time it next fires after
    // now, in local time; time::cron_next(expr, tz) in zone tz.
    primitive!(m, "cron_next", |expr: &str| cron_next(expr, "local"));
    primitive!(m, "cron_next", |expr: &str, tz: &str| cron_next(expr, tz));
    wall::register(&mut m);
    let h = host.clone();
    primitive!(m, "sleep", |secs: i64| sleep(&h, super::int_to_float(secs)));
    let h = host.clone();
    primitive!(m, "sleep", |secs: f64| sleep(&h, secs));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_a_tz_database_is_told_so() {
        let err = lookup(&TimeZoneDatabase::none(), "Europe/Berlin").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some(
                "Runtime error: 'Europe/Berlin' cannot be looked up: this machine has no time zone database \
                 in /usr/share/zoneinfo (install the tzdata package, or set TZDIR to one)"
            )
        );
    }
}
