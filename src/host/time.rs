//! `time::` — the clock. `ALOOP_NOW` (RFC 3339) overrides "now" for
//! `now`, `unix`, `local_hour` and `local_minute`, so schedules can be tested
//! at any hour; `unix_ms` is always the real clock, for measuring durations.

use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local, SecondsFormat, TimeZone, Timelike};
use rhai::Module;

use super::{fail, raise, Fallible};
use crate::engine::SharedHost;

/// Now, in local time, or the `ALOOP_NOW` override in its own offset.
pub fn now() -> Result<DateTime<FixedOffset>, String> {
    match std::env::var("ALOOP_NOW") {
        Ok(text) if !text.is_empty() => DateTime::parse_from_rfc3339(&text)
            .map_err(|e| format!("ALOOP_NOW='{text}' is not an RFC 3339 time: {e}")),
        _ => Ok(Local::now().fixed_offset()),
    }
}

fn parse(text: &str) -> Fallible<i64> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp())
        .map_err(|e| raise(format!("'{text}' is not an RFC 3339 time: {e}")))
}

fn format(unix: i64) -> Fallible<String> {
    let offset = *now().map_err(raise)?.offset();
    match offset.timestamp_opt(unix, 0).single() {
        Some(t) => Ok(t.to_rfc3339_opts(SecondsFormat::Secs, false)),
        None => fail(format!("{unix} is not a representable time")),
    }
}

/// Sleeps in slices so that Ctrl-C ends the wait at once.
fn sleep(host: &SharedHost, secs: f64) -> Fallible<()> {
    if !(0.0..=31_536_000.0).contains(&secs) {
        return fail(format!("time::sleep: {secs} is not a number of seconds between 0 and a year"));
    }
    let end = Instant::now() + Duration::from_secs_f64(secs);
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
    host.refill_budget();
    Ok(())
}

pub fn module(host: &SharedHost) -> Module {
    let mut m = Module::new();
    // time::now() -> "2026-11-22T04:38:21+01:00"
    primitive!(m, "now", || { Ok(now().map_err(raise)?.to_rfc3339_opts(SecondsFormat::Secs, false)) });
    // time::unix() -> seconds since the epoch.
    primitive!(m, "unix", || { Ok(now().map_err(raise)?.timestamp()) });
    // time::unix_ms() -> real milliseconds since the epoch (never overridden).
    primitive!(m, "unix_ms", || { Ok(Local::now().timestamp_millis()) });
    // time::local_hour() -> 0..=23, time::local_minute() -> 0..=59.
    primitive!(m, "local_hour", || { Ok(now().map_err(raise)?.hour() as i64) });
    primitive!(m, "local_minute", || { Ok(now().map_err(raise)?.minute() as i64) });
    // time::parse("RFC 3339 text") -> unix seconds.
    primitive!(m, "parse", |text: &str| parse(text));
    // time::format(unix) -> RFC 3339 text in local time.
    primitive!(m, "format", |unix: i64| format(unix));
    let h = host.clone();
    primitive!(m, "sleep", |secs: i64| sleep(&h, secs as f64));
    let h = host.clone();
    primitive!(m, "sleep", |secs: f64| sleep(&h, secs));
    m
}
