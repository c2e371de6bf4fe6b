//! `aloop iterate`: goals, run, runs, show, watch and tick, run as the real
//! binary in temporary git repositories with their own `ALOOP_HOME`. The
//! agent-invoking tests use the fake agents of `tests/fakes`.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cloud::assert_actionlint_passes;
use crate::support::{Output, Project};

// ------------------------------------------------------------------ helpers

fn home_json(p: &Project, name: &str) -> Value {
    serde_json::from_str(&p.read_home(name)).unwrap_or_else(|e| panic!("{name} is not JSON: {e}"))
}

/// The run history, `iterate-runs.jsonl`: one record per line, oldest first.
fn runs(p: &Project) -> Vec<Value> {
    p.read_home("iterate-runs.jsonl")
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("a history line is not JSON: {e}")))
        .collect()
}

/// Every file of the project and `ALOOP_HOME` except lock files (which a
/// command may create while it waits for a state file), with its bytes.
fn files(p: &Project) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut all = p.snapshot();
    all.retain(|path, _| path.extension().is_none_or(|e| e != "lock"));
    all
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn iterate(p: &Project, args: &[&str]) -> Output {
    let mut all = vec!["iterate"];
    all.extend_from_slice(args);
    p.aloop(&all).run()
}

fn dry_run(p: &Project, args: &[&str]) -> Output {
    let mut all = vec!["run", "--dry-run"];
    all.extend_from_slice(args);
    iterate(p, &all)
}

/// A record shaped like the ones `iterate run` writes.
fn old_record(i: usize) -> Value {
    json!({
        "id": format!("old-{i:03}"), "project": "/elsewhere", "startedAt": "2026-01-01T00:00:00+00:00",
        "finishedAt": "2026-01-01T00:01:00+00:00", "agent": "claude", "model": null, "scope": "all",
        "goals": {}, "signals": [], "status": "applied", "exitCode": 0, "costUsd": null,
        "diff": "", "diffStat": "", "files": [], "output": "", "error": null
    })
}

fn write_runs(p: &Project, n: usize) {
    let runs: Vec<Value> = (0..n).map(old_record).collect();
    std::fs::write(p.home().join("iterate-runs.json"), json!({"version": 1, "runs": runs}).to_string())
        .unwrap();
}

// -------------------------------------------------------------------- goals

#[test]
fn goals_set_list_unset_clear() {
    let p = Project::git();
    iterate(&p, &["goals", "set", "conversion=8%", "churn=2%", "nps.score=40"]).ok();
    let file = p.home().join("iterate-goals.json");
    assert_eq!(mode(&file), 0o600);
    assert_eq!(
        home_json(&p, "iterate-goals.json"),
        json!({"version": 1, "goals": {"conversion": "8%", "churn": "2%", "nps.score": "40"}})
    );
    let list = iterate(&p, &["goals"]).ok();
    assert!(list.stdout.contains("conversion") && list.stdout.contains("8%"), "{}", list.stdout);
    let listed = iterate(&p, &["goals", "--json"]).ok().json();
    assert_eq!(listed, json!({"conversion": "8%", "churn": "2%", "nps.score": "40"}));

    iterate(&p, &["goals", "--unset", "churn", "--unset", "nosuch"])
        .ok()
        .stderr_has("no goal named 'nosuch'");
    assert_eq!(iterate(&p, &["goals", "--json"]).ok().json(), json!({"conversion": "8%", "nps.score": "40"}));
    iterate(&p, &["goals", "set", "conversion=10%"]).ok();
    assert_eq!(iterate(&p, &["goals", "--json"]).ok().json()["conversion"], "10%");
    iterate(&p, &["goals", "--clear"]).ok();
    assert_eq!(iterate(&p, &["goals", "--json"]).ok().json(), json!({}));
    iterate(&p, &["goals"]).ok().stderr_has("no goals set");
}

#[test]
fn a_bad_goal_pair_is_named_and_nothing_is_written() {
    let p = Project::git();
    iterate(&p, &["goals", "set", "conversion=8%"]).ok();
    let before = files(&p);
    for bad in ["1st=3", "no-equals", "=5", "empty=", "sp ace=1", "bad/key=2"] {
        iterate(&p, &["goals", "set", "ok=1", bad]).code(2).stderr_has(&format!("'{bad}'"));
    }
    assert_eq!(files(&p), before);
}

#[test]
fn a_malformed_goals_file_is_reported_and_left_byte_identical() {
    let p = Project::git()
        .home_file("iterate-goals.json", "{\n  \"version\": 1,\n  \"goals\": {\"a\": \"1\",}\n}\n");
    let before = files(&p);
    let out = iterate(&p, &["goals", "set", "b=2"]).code(1);
    let path = p.home().join("iterate-goals.json");
    assert!(out.stderr.contains(&format!("{}:3:", path.display())), "{}", out.stderr);
    iterate(&p, &["goals"]).code(1).stderr_has("iterate-goals.json:3:");
    dry_run(&p, &[]).code(1).stderr_has("iterate-goals.json:3:");
    assert_eq!(files(&p), before);
}

// ------------------------------------------------------------------ dry run

#[test]
fn dry_run_shows_plan_and_prompt_and_saves_a_skipped_record() {
    let p = Project::git().fixture("iterate/metrics-1.json", "metrics.json");
    iterate(&p, &["goals", "set", "conversion=8%"]).ok();
    let out = dry_run(&p, &["--scope", "pricing", "--metrics", "metrics.json", "--max-files", "3"]).ok();
    let record_line = out.stderr.clone();
    // The plan: agent and its command line, scope, goals, signals.
    for text in [
        "agent:    claude",
        "command:  claude",
        "scope:    pricing",
        "conversion=8%",
        "conversion_rate: 0.021",
    ] {
        assert!(out.stderr.contains(text), "plan lacks {text:?}\n{}", out.stderr);
    }
    // The prompt, on stdout.
    for text in [
        "**conversion**: 8%",
        "Scope: pricing",
        "- conversion_rate: 0.021",
        "at most 3 files",
        "trial_to_paid",
    ] {
        assert!(out.stdout.contains(text), "prompt lacks {text:?}\n{}", out.stdout);
    }
    let runs = runs(&p);
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["status"], "skipped");
    assert_eq!(run["reason"], "dry run");
    assert_eq!(run["scope"], "pricing");
    assert_eq!(run["agent"], "claude");
    assert_eq!(run["goals"], json!({"conversion": "8%"}));
    assert_eq!(run["project"], p.root().canonicalize().unwrap().display().to_string());
    for key in [
        "id",
        "startedAt",
        "finishedAt",
        "model",
        "signals",
        "exitCode",
        "costUsd",
        "inputTokens",
        "outputTokens",
        "diff",
        "diffStat",
        "output",
        "error",
    ] {
        assert!(run.get(key).is_some(), "record lacks {key}: {run}");
    }
    assert_eq!(mode(&p.home().join("iterate-runs.jsonl")), 0o600);
    assert_eq!(mode(&p.home().join("iterate-metrics.json")), 0o600);
    assert!(
        record_line.contains(&format!("recorded as run {}", run["id"].as_str().unwrap())),
        "{record_line}"
    );
}

#[test]
fn dry_run_json_prints_exactly_one_json_document() {
    let p = Project::git();
    let out = dry_run(&p, &["--json", "--scope", "bugs"]).ok();
    let record = out.json();
    assert_eq!(record["status"], "skipped");
    assert_eq!(record["scope"], "bugs");
    assert_eq!(record["id"], runs(&p)[0]["id"]);
    // The plan and the prompt still reach the person, on stderr.
    out.stderr_has("Plan for").stderr_has("No metrics source was given");
}

#[test]
fn dry_run_works_outside_a_git_repository() {
    let p = Project::new();
    dry_run(&p, &[]).ok().stdout_has("(not a git repository)");
    assert_eq!(runs(&p)[0]["status"], "skipped");
}

#[test]
fn unknown_scope_agent_and_bad_numbers_are_usage_errors() {
    let p = Project::git();
    iterate(&p, &["run", "--dry-run", "--scope", "marketing"]).code(2).stderr_has("marketing");
    iterate(&p, &["run", "--dry-run", "--agent", "nosuchagent"])
        .code(2)
        .stderr_has("no agent adapter named 'nosuchagent'");
    iterate(&p, &["run", "--dry-run", "--max-files", "0"]).code(2).stderr_has("--max-files");
    iterate(&p, &["run", "--dry-run", "--metrics", "m.json", "--metrics-cmd", "echo", "{}"])
        .code(2)
        .stderr_has("not both");
    iterate(&p, &["run", "--dry-run", "--timeout=-5m"]).code(2).stderr_has("--timeout '-5m'");
    iterate(&p, &["run", "--dry-run", "--timeout", "soon"]).code(2).stderr_has("e.g. 30m");
    assert!(!p.home().join("iterate-runs.jsonl").exists());
}

// ------------------------------------------------------------------ metrics

#[test]
fn metrics_are_compared_with_the_previous_snapshot_of_the_scope() {
    let p = Project::git()
        .fixture("iterate/metrics-1.json", "m1.json")
        .fixture("iterate/metrics-2.json", "m2.json");
    dry_run(&p, &["--metrics", "m1.json"]).ok();
    let first = &runs(&p)[0]["signals"];
    assert_eq!(first[0], json!({"name": "installs", "value": 120, "previous": null, "change": null}));

    dry_run(&p, &["--metrics", "m2.json"])
        .ok()
        .stdout_has("- installs: 150 (was 120, +30)")
        .stdout_has("- signup_rate: 0.029 (was 0.031, -0.002)");
    let second = &runs(&p)[1]["signals"];
    let by_name = |name: &str| second.as_array().unwrap().iter().find(|s| s["name"] == name).unwrap().clone();
    assert_eq!(by_name("installs"), json!({"name": "installs", "value": 150, "previous": 120, "change": 30}));
    assert_eq!(
        by_name("signup_rate"),
        json!({"name": "signup_rate", "value": 0.029, "previous": 0.031, "change": -0.002})
    );
    assert_eq!(
        by_name("conversion_rate"),
        json!({"name": "conversion_rate", "value": 0.012, "previous": 0.021, "change": -0.009})
    );
    assert_eq!(
        by_name("churn_rate"),
        json!({"name": "churn_rate", "value": null, "previous": null, "change": null})
    );
    assert_eq!(
        by_name("error_rate"),
        json!({"name": "error_rate", "value": null, "previous": 0.02, "change": null})
    );

    // The newest snapshot per scope is stored; another scope has its own.
    let stored = home_json(&p, "iterate-metrics.json");
    assert_eq!(stored["snapshots"]["all"]["signals"]["installs"], 150);
    assert_eq!(stored["snapshots"]["all"]["source"], format!("file {}", p.path("m2.json").display()));
    assert_eq!(stored["snapshots"]["all"]["scope"], "all");
    assert!(stored["snapshots"]["all"]["capturedAt"].is_string());
    dry_run(&p, &["--scope", "perf", "--metrics", "m1.json"]).ok();
    let perf = &runs(&p)[2]["signals"];
    assert_eq!(perf[0], json!({"name": "p50_latency_ms", "value": 180, "previous": null, "change": null}));

    // With no source the values are null, the prompt says so, and the stored
    // snapshots are not replaced by empty ones.
    let before = p.read_home("iterate-metrics.json");
    dry_run(&p, &[])
        .ok()
        .stdout_has("No metrics source was given")
        .stdout_has("- installs: no data (was 150)");
    assert_eq!(p.read_home("iterate-metrics.json"), before);
}

#[test]
fn metrics_from_a_command() {
    let p = Project::git()
        .file("metrics.sh", "#!/bin/sh\necho \"{\\\"error_rate\\\": $1, \\\"crash_rate\\\": 0.5}\"\n");
    std::fs::set_permissions(p.path("metrics.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = dry_run(&p, &["--scope", "bugs", "--json", "--metrics-cmd", "./metrics.sh", "0.25"]).ok();
    let record = out.json();
    assert_eq!(
        record["signals"][0],
        json!({"name": "error_rate", "value": 0.25, "previous": null, "change": null})
    );
    assert_eq!(record["metricsSource"], "command ./metrics.sh 0.25");
}

#[test]
fn a_failing_or_invalid_metrics_source_is_an_error_and_snapshots_are_untouched() {
    let p = Project::git()
        .fixture("iterate/metrics-1.json", "m1.json")
        .file("bad.json", "{\"installs\": 3,\n oops}\n")
        .file("list.json", "[1, 2]\n")
        .file("text.json", "{\"installs\": \"many\"}\n");
    dry_run(&p, &["--metrics", "m1.json"]).ok();
    let before = files(&p);
    dry_run(&p, &["--metrics", "bad.json"]).code(1).stderr_has("bad.json:2:");
    dry_run(&p, &["--metrics", "list.json"]).code(1).stderr_has("expected a JSON object");
    dry_run(&p, &["--metrics", "text.json"]).code(1).stderr_has("\"installs\" must be a number");
    dry_run(&p, &["--metrics", "missing.json"]).code(1).stderr_has("missing.json");
    dry_run(&p, &["--metrics-cmd", "sh", "-c", "echo broken >&2; exit 3"])
        .code(1)
        .stderr_has("exited with 3")
        .stderr_has("broken");
    dry_run(&p, &["--metrics-cmd", "echo", "{not json"]).code(1).stderr_has("printed invalid JSON");
    dry_run(&p, &["--metrics-cmd", "/no/such/program"]).code(1).stderr_has("/no/such/program");
    assert_eq!(files(&p), before);
}

// -------------------------------------------------------------- run records

#[test]
fn the_newest_100_records_are_kept() {
    let p = Project::git();
    write_runs(&p, 99);
    dry_run(&p, &[]).ok();
    assert_eq!(runs(&p).len(), 100, "the old file's records moved into the history");
    assert_eq!(runs(&p)[0]["id"], "old-000");
    assert!(!p.home().join("iterate-runs.json").exists(), "the old file is gone once moved");
    dry_run(&p, &[]).ok();
    let mut kept =
        iterate(&p, &["runs", "--json", "--limit", "1000"]).ok().json().as_array().unwrap().clone();
    kept.reverse();
    assert_eq!(kept.len(), 100);
    assert_eq!(kept[0]["id"], "old-001", "the oldest record was dropped");
    assert_eq!(kept[98]["status"], "skipped");
    assert_eq!(kept[99]["status"], "skipped");
    assert_ne!(kept[98]["id"], kept[99]["id"]);
}

#[test]
fn ten_concurrent_dry_runs_leave_ten_records() {
    let p = Project::git();
    let children: Vec<_> = (0..10)
        .map(|_| {
            p.aloop(&["iterate", "run", "--dry-run", "--json"])
                .env("ALOOP_NOW", "2026-03-01T10:00:00+00:00")
                .spawn()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).expect("one JSON document");
    }
    let kept = runs(&p);
    assert_eq!(kept.len(), 10);
    let mut ids: Vec<&str> = kept.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 10, "ids are unique");
    assert!(ids.iter().all(|id| id.starts_with("20260301-100000-")), "{ids:?}");
}

#[test]
fn malformed_runs_and_metrics_files_are_reported_and_left_byte_identical() {
    let p = Project::git().fixture("iterate/metrics-1.json", "m1.json");
    let runs_file = p.home().join("iterate-runs.json");
    std::fs::write(&runs_file, "{\"version\": 1, \"runs\": [\n  {\"id\": \"x\"},\n  nope\n]}\n").unwrap();
    let before = files(&p);
    dry_run(&p, &["--metrics", "m1.json"]).code(1).stderr_has(&format!("{}:3:", runs_file.display()));
    iterate(&p, &["runs"]).code(1).stderr_has("iterate-runs.json:3:");
    iterate(&p, &["show", "x"]).code(1).stderr_has("iterate-runs.json:3:");
    assert_eq!(files(&p), before, "nothing changed, the metrics snapshot included");

    std::fs::write(&runs_file, "{\"version\": 1, \"runs\": {}}\n").unwrap();
    dry_run(&p, &[]).code(1).stderr_has("\"runs\" must be an array");
    std::fs::remove_file(&runs_file).unwrap();

    let metrics_file = p.home().join("iterate-metrics.json");
    std::fs::write(&metrics_file, "{\"snapshots\": {\"all\": }}").unwrap();
    let before = files(&p);
    dry_run(&p, &["--metrics", "m1.json"]).code(1).stderr_has(&format!("{}:1:", metrics_file.display()));
    assert_eq!(files(&p), before);
}

#[test]
fn runs_lists_newest_first_and_show_prints_one() {
    let p = Project::git();
    write_runs(&p, 3);
    dry_run(&p, &["--scope", "copy"]).ok();
    let newest = runs(&p)[3]["id"].as_str().unwrap().to_string();
    let table = iterate(&p, &["runs"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID") && lines[0].contains("STATUS"), "{table}");
    assert!(lines[2].starts_with(&newest), "{table}");
    assert!(lines[5].starts_with("old-000"), "{table}");
    let limited = iterate(&p, &["runs", "--limit", "2", "--json"]).ok().json();
    assert_eq!(limited.as_array().unwrap().len(), 2);
    assert_eq!(limited[0]["id"], newest.as_str());
    assert_eq!(limited[1]["id"], "old-002");
    iterate(&p, &["runs", "--limit", "0"]).code(2);

    let shown = iterate(&p, &["show", &newest[..17]]).ok();
    shown
        .stdout_has(&format!("run      {newest}"))
        .stdout_has("skipped (dry run)")
        .stdout_has("scope    copy");
    assert_eq!(iterate(&p, &["show", &newest, "--json"]).ok().json()["id"], newest.as_str());
    iterate(&p, &["show", "old-"]).code(1).stderr_has("matches 3 runs");
    iterate(&p, &["show", "zzz"]).code(1).stderr_has("no iterate run");
}

// -------------------------------------------------------------------- watch

/// This project's schedule in iterate-watch.json (keyed by project root).
fn watch_json(p: &Project) -> Value {
    let file = home_json(p, "iterate-watch.json");
    assert_eq!(file["version"], 2, "{file}");
    file["schedules"][p.root().canonicalize().unwrap().display().to_string()].clone()
}

#[test]
fn watch_saves_the_schedule_and_prints_a_crontab_line() {
    let p = Project::git();
    let root = p.root().canonicalize().unwrap().display().to_string();
    let home = p.home().canonicalize().unwrap().display().to_string();
    let exe = Path::new(env!("CARGO_BIN_EXE_aloop")).canonicalize().unwrap().display().to_string();
    for (interval, schedule) in [
        ("30m", "*/30 * * * *"),
        ("2h", "0 */2 * * *"),
        ("1d", "0 0 * * *"),
        ("900", "*/15 * * * *"),
        ("60s", "* * * * *"),
        ("1h", "0 * * * *"),
        ("7d", "0 0 * * 0"),
    ] {
        let out = iterate(&p, &["watch", "--interval", interval]).ok();
        let line = out.stdout.trim_end();
        assert!(line.starts_with(&format!("{schedule} cd {root} && ")), "{interval}: {line}");
        assert!(line.contains(&format!("{exe} iterate tick >> {home}/iterate-watch.log 2>&1")), "{line}");
        assert_eq!(out.stdout.lines().count(), 1, "only the line is on stdout");
    }
    iterate(
        &p,
        &["watch", "--interval", "2h", "--agent", "codex", "--scope", "perf", "--quiet-hours", "22-08"],
    )
    .ok();
    let cfg = watch_json(&p);
    assert_eq!(mode(&p.home().join("iterate-watch.json")), 0o600);
    assert_eq!(cfg["project"], root.as_str());
    assert_eq!(cfg["agent"], "codex");
    assert_eq!(cfg["scope"], "perf");
    assert_eq!(cfg["interval"], "2h");
    assert_eq!(cfg["quietHours"], json!({"start": "22:00", "end": "08:00"}));
    assert_eq!(cfg["cloud"], false);
    assert!(cfg["createdAt"].is_string());
    assert!(cfg["lastRunAt"].is_null());
    // Options left out keep their saved value.
    let created = cfg["createdAt"].clone();
    let out = iterate(&p, &["watch", "--interval", "30m", "--json"]).ok().json();
    assert_eq!(out["config"]["agent"], "codex");
    assert_eq!(out["config"]["quietHours"]["start"], "22:00");
    assert_eq!(out["config"]["createdAt"], created);
    assert!(out["crontab"].as_str().unwrap().starts_with("*/30 * * * * cd "));
    iterate(&p, &["watch", "--quiet-hours", "none"]).ok();
    assert!(watch_json(&p)["quietHours"].is_null());
}

#[test]
fn the_crontab_line_runs_a_tick_with_crons_bare_environment() {
    let p = Project::git();
    let line = iterate(&p, &["watch", "--interval", "1h", "--quiet-hours", "22-08"]).ok().stdout;
    let fakes = crate::support::fakes_dir().canonicalize().unwrap().display().to_string();
    assert!(
        line.contains(&format!("PATH={fakes}:/usr/local/bin:/usr/bin:/bin ")),
        "the agent's folder leads PATH: {line}"
    );
    assert_eq!(line.lines().count(), 1, "{line}");
    // What cron runs: the line without its five schedule fields, `\%` back
    // to `%`, by /bin/sh, from a home directory whose ~/.aloop is not this
    // ALOOP_HOME, with cron's environment and nothing of the user's shell
    // (ALOOP_NOW and FAKE_AGENT_PLAN steer the test, not aloop).
    let command = line.trim_end().splitn(6, ' ').nth(5).unwrap().replace("\\%", "%");
    let (plan, _) =
        with_plan(&p, &json!([{"text": "Tightened the copy.", "write": {"copy.txt": "better\n"}}]));
    let cron_home = p.root().parent().unwrap().to_path_buf();
    let cron = |now: &str| {
        let out = Command::new("env")
            .args(["-i", "SHELL=/bin/sh", "LOGNAME=root", "PATH=/usr/bin:/bin"])
            .arg(format!("HOME={}", cron_home.display()))
            .arg(format!("ALOOP_NOW={now}"))
            .arg(format!("FAKE_AGENT_PLAN={plan}"))
            .args(["/bin/sh", "-c", &command])
            .current_dir(&cron_home)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    cron("2026-01-01T23:00:00+01:00");
    cron("2026-01-02T12:00:00+01:00");
    let kept = runs(&p);
    assert_eq!(kept[0]["status"], "skipped");
    assert_eq!(kept[1]["status"], "applied", "{}", p.read_home("iterate-watch.log"));
    assert_eq!(kept[1]["files"], json!(["copy.txt"]));
    let log = p.read_home("iterate-watch.log");
    assert!(
        log.contains("skipped (quiet hours 22:00-08:00)") && log.contains("applied: 1 file changed"),
        "{log}"
    );
    assert_eq!(watch_json(&p)["lastRunAt"], "2026-01-02T12:00:00+01:00");
}

#[test]
fn a_crontab_line_is_one_line_or_none() {
    let p = Project::new();
    let out = p.shell(
        "mkdir \"$(printf 'two\\nlines')\" && cd two*lines && git init -q && \"$ALOOP\" iterate watch --interval 1h",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("two\\nlines\": it holds a line break"), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!p.home().join("iterate-watch.json").exists());
}

#[test]
fn watch_in_the_foreground_refuses_an_interval_it_cannot_wait_for() {
    let p = Project::git();
    iterate(&p, &["watch", "--foreground", "--interval", "400d"])
        .code(2)
        .stderr_has("--foreground waits at most 365d between cycles, not 400d");
    assert!(!p.home().join("iterate-watch.json").exists());
}

#[test]
fn invalid_intervals_and_quiet_hours_are_usage_errors_and_nothing_is_saved() {
    let p = Project::git();
    for args in [
        &["--interval", "0"][..],
        &["--interval=-5m"],
        &["--interval", "abc"],
        &["--interval", "7m"],
        &["--interval", "5h"],
        &["--interval", "90s"],
        &["--quiet-hours", "25-08"],
        &["--quiet-hours", "8"],
        &["--quiet-hours", "22-22"],
        &["--quiet-hours", "abc"],
        &["--quiet-hours", "22:61-08"],
        &["--agent", "nosuchagent"],
        &["--cloud", "--interval", "2m"],
        &["--write"],
    ] {
        let mut all = vec!["watch"];
        all.extend_from_slice(args);
        let out = iterate(&p, &all).code(2);
        assert!(
            out.stderr.contains("e.g.") || out.stderr.contains("nearest") || out.stderr.contains("`aloop"),
            "{args:?}: {}",
            out.stderr
        );
        assert!(!p.home().join("iterate-watch.json").exists(), "{args:?} saved a schedule");
    }
    let inexact = "divides an hour (1-6, 10, 12, 15, 20 or 30m) or a day (1-4, 6, 8 or 12h), 1d or 7d";
    iterate(&p, &["watch", "--interval", "7m"])
        .code(2)
        .stderr_has("cron cannot fire exactly every 7m: use an interval that")
        .stderr_has(inexact);
    iterate(&p, &["watch", "--interval", "1h30m"])
        .code(2)
        .stderr_has("every 1h30m")
        .stderr_has("--cron \"0 9 * * 1-5\"");
    iterate(&p, &["watch", "--cron", "0 9 * * 8"])
        .code(2)
        .stderr_has("--cron: '0 9 * * 8' is not a cron expression (minute hour day month weekday): Component error: Number out of bounds; e.g. --cron \"0 9 * * 1-5\"");
    iterate(&p, &["watch", "--interval", "2h", "--cron", "0 9 * * *"])
        .code(2)
        .stderr_has("either --interval or --cron, not both");
    iterate(&p, &["watch", "--tz", "Europe/Berlin"]).code(2).stderr_has("--tz goes with --cron");
    iterate(&p, &["watch", "--cron", "0 9 * * *", "--tz", "Europe/Berlin"])
        .code(2)
        .stderr_has("cron reads the crontab in this machine's time zone, so --tz goes with --foreground");
    iterate(&p, &["watch", "--foreground", "--cron", "0 9 * * *", "--tz", "Mars/Base"])
        .code(2)
        .stderr_has("'Mars/Base' is not a time zone");
    assert!(!p.home().join("iterate-watch.json").exists());
    iterate(&p, &["watch", "--quiet-hours", "25-08"]).code(2).stderr_has("e.g. 22-08");
    // An existing schedule is left byte-identical by a bad change.
    iterate(&p, &["watch", "--interval", "1h"]).ok();
    let before = files(&p);
    iterate(&p, &["watch", "--interval", "0"]).code(2);
    iterate(&p, &["watch", "--quiet-hours", "8"]).code(2);
    assert_eq!(files(&p), before);
}

#[test]
fn watch_status_shows_quiet_state_last_run_and_next_due_time() {
    let p = Project::git();
    iterate(&p, &["watch", "--status"]).ok().stderr_has("no schedule is saved");
    assert_eq!(iterate(&p, &["watch", "--status", "--json"]).ok().json(), Value::Null);
    iterate(&p, &["watch", "--interval", "2h", "--quiet-hours", "22-08"]).ok();

    let at = |now: &str, args: &[&str]| {
        let mut all = vec!["iterate", "watch", "--status"];
        all.extend_from_slice(args);
        p.aloop(&all).env("ALOOP_NOW", now).run().ok()
    };
    let quiet = at("2026-01-01T23:30:00+01:00", &[]);
    let quiet = quiet.stdout_has("quiet hours  22:00-08:00 (quiet now").stdout_has("last run     never");
    quiet.stdout_has("next due     2026-01-02T00:00:00+01:00");
    let day = at("2026-01-01T12:10:00+01:00", &["--json"]).json();
    assert_eq!(day["quietNow"], false);
    assert_eq!(day["nextDueAt"], "2026-01-01T14:00:00+01:00");
    assert_eq!(day["config"]["interval"], "2h");
    assert!(day["lastRun"].is_null());
    assert_eq!(at("2026-01-01T07:59:00+01:00", &["--json"]).json()["quietNow"], true);
    assert_eq!(at("2026-01-01T08:00:00+01:00", &["--json"]).json()["quietNow"], false);

    // A quiet tick shows up as the last record.
    p.aloop(&["iterate", "tick"]).env("ALOOP_NOW", "2026-01-01T23:30:00+01:00").run().ok();
    at("2026-01-01T23:31:00+01:00", &[]).stdout_has("skipped (quiet hours 22:00-08:00)");
}

#[test]
fn watch_takes_a_crontab_expression_and_shows_when_it_fires_next() {
    let p = Project::git();
    // A Friday evening: the next weekday 09:00 is Monday's.
    let friday = "2026-01-02T18:30:00+01:00";
    let watch = |args: &[&str]| {
        let mut all = vec!["iterate", "watch"];
        all.extend_from_slice(args);
        p.aloop(&all).env("ALOOP_NOW", friday).run()
    };
    let line = watch(&["--cron", "0 9 * * 1-5"]).ok().stdout;
    assert!(line.starts_with("0 9 * * 1-5 cd "), "{line}");
    assert!(line.contains(" iterate tick >> "), "{line}");
    let cfg = watch_json(&p);
    assert_eq!(
        (cfg["cron"].as_str(), cfg["interval"].as_str(), cfg["tz"].as_str()),
        (Some("0 9 * * 1-5"), None, None)
    );
    let status = watch(&["--status"]).ok();
    status
        .stdout_has("schedule     cron \"0 9 * * 1-5\" (local time)\n")
        .stdout_has("next due     2026-01-05T09:00:00+01:00\n");
    // Options left out keep the saved expression; --tz reads it in another zone.
    let args = ["--foreground", "--tz", "America/New_York", "--quiet-hours", "0-23"];
    let stderr = foreground_until_ctrl_c(&p, &args, friday);
    assert!(
        stderr.contains("running a cycle cron \"0 9 * * 1-5\" (America/New_York) until Ctrl-C"),
        "{stderr}"
    );
    assert!(stderr.contains("next cycle at 2026-01-05T15:00:00+01:00"), "{stderr}");
    let status = watch(&["--status", "--json"]).ok().json();
    assert_eq!(status["config"]["tz"], "America/New_York");
    assert_eq!(status["nextDueAt"], "2026-01-05T15:00:00+01:00", "09:00 in New York");
    // An --interval replaces the expression and its zone.
    watch(&["--interval", "2h"]).ok();
    let cfg = watch_json(&p);
    assert_eq!(
        (cfg["cron"].as_str(), cfg["interval"].as_str(), cfg["tz"].as_str()),
        (None, Some("2h"), None)
    );
}

#[test]
fn watch_cloud_takes_a_cron_expression_in_utc() {
    let p = Project::git();
    p.aloop(&["iterate", "watch", "--cloud", "--cron", "30 8 * * 1-5", "--tz", "Europe/Berlin"])
        .run()
        .code(2)
        .stderr_is(
            "error: GitHub Actions reads a workflow's cron in UTC: write --cron in UTC and leave out --tz\n",
        );
    assert!(!p.home().join("iterate-watch.json").exists());
    let yaml = p
        .aloop(&["iterate", "watch", "--cloud", "--cron", "30 8 * * 1-5"])
        .env("ALOOP_NOW", "2026-01-01T12:00:00+01:00")
        .run()
        .ok()
        .stdout;
    let texts = [
        "# Schedule: cron \"30 8 * * 1-5\" (UTC); GitHub may\n",
        "    - cron: \"30 8 * * 1-5\"\n  workflow_dispatch:\n",
        "aloop iterate watch --cron '30 8 * * 1-5' --agent claude --scope all > /dev/null",
    ];
    assert_workflow_has(&p, &yaml, &texts);
    p.aloop(&["iterate", "watch", "--status"])
        .env("ALOOP_NOW", "2026-01-01T12:00:00+01:00")
        .run()
        .ok()
        .stdout_has("next due     2026-01-02T09:30:00+01:00 (GitHub may start it a few minutes late)");
}

#[test]
fn watch_stop_clears_the_schedule() {
    let p = Project::git();
    iterate(&p, &["watch", "--stop"]).ok().stderr_has("there was no schedule to stop");
    iterate(&p, &["watch", "--interval", "1h"]).ok();
    iterate(&p, &["watch", "--stop"]).ok().stderr_has("stopped the schedule").stderr_has("crontab");
    assert!(!p.home().join("iterate-watch.json").exists());
    iterate(&p, &["watch", "--status"]).ok().stderr_has("no schedule is saved");
    iterate(&p, &["tick"]).code(1).stderr_has("no schedule is saved");
}

#[test]
fn a_malformed_watch_file_is_reported_and_left_byte_identical() {
    let p = Project::git().home_file("iterate-watch.json", "{\"interval\": \"1h\",\n\"agent\": claude}\n");
    let before = files(&p);
    for args in [&["watch", "--interval", "2h"][..], &["watch", "--status"], &["watch", "--stop"], &["tick"]]
    {
        iterate(&p, args).code(1).stderr_has("iterate-watch.json:2:");
    }
    assert_eq!(files(&p), before);
}

/// Asserts that the printed workflow holds each of `texts`, writes it to
/// printed.yml and checks it with actionlint.
#[track_caller]
fn assert_workflow_has(p: &Project, yaml: &str, texts: &[&str]) {
    for text in texts {
        assert!(yaml.contains(text), "workflow lacks {text:?}\n{yaml}");
    }
    let file = p.path("printed.yml");
    std::fs::write(&file, yaml).unwrap();
    assert_actionlint_passes(&file);
}

#[test]
fn watch_cloud_prints_a_valid_github_actions_workflow() {
    let p = Project::git();
    iterate(&p, &["goals", "set", "conversion=8%"]).ok();
    let out = p
        .aloop(&[
            "iterate",
            "watch",
            "--cloud",
            "--interval",
            "2h",
            "--quiet-hours",
            "22-08",
            "--metrics",
            "metrics.json",
        ])
        .env("ALOOP_NOW", "2026-01-01T12:00:00+01:00")
        .run()
        .ok();
    let yaml = out
        .stderr_is(
            "the workflow needs the repository secret ANTHROPIC_API_KEY and the repository variable ALOOP_GIT_URL \
             (the git repository aloop is built from; or --aloop-git URL); runs open pull requests from branch \
             aloop/iterate\n",
        )
        .stdout;
    let texts = [
        "cron: \"0 */2 * * *\"",
        "# Quiet hours: 22:00-08:00 local time (UTC+01:00) are",
        "# 21:00-07:00 UTC on the runner",
        "uses: actions/checkout@v4",
        "ALOOP_GIT_URL: ${{ vars.ALOOP_GIT_URL }}\n",
        "# aloop is built from the git repository in the repository variable ALOOP_GIT_URL\n",
        "        run: cargo install --locked --git \"$ALOOP_GIT_URL\" --rev \"$ALOOP_REV\" aloop\n",
        "key: aloop-${{ runner.os }}-${{ steps.aloop-source.outputs.rev }}\n",
        "npm install -g @anthropic-ai/claude-code",
        "ANTHROPIC_API_KEY: ${{ secrets.ANTHROPIC_API_KEY }}",
        "aloop iterate goals set 'conversion=8%'",
        "--quiet-hours 21:00-07:00 --metrics metrics.json",
        "aloop iterate tick",
        "uses: peter-evans/create-pull-request@v7",
    ];
    // These blocks, indentation and all, put the schedule, the permissions
    // and the cycle where GitHub reads them; actionlint checks the schema.
    let blocks = [
        "on:\n  schedule:\n    - cron: \"0 */2 * * *\"\n  workflow_dispatch:\n",
        "permissions:\n  contents: write\n  pull-requests: write\n",
        "        run: |\n          aloop iterate watch --interval 2h",
        " --metrics metrics.json > /dev/null\n          aloop iterate tick\n",
    ];
    assert_workflow_has(&p, &yaml, &[&texts[..], &blocks[..]].concat());
    let cfg = watch_json(&p);
    assert_eq!(cfg["cloud"], true);

    assert!(!p.exists(".github/workflows/aloop-iterate.yml"), "printing writes no workflow");
    // --write puts it where GitHub looks; other agents get their own CLI and key.
    p.aloop(&["iterate", "watch", "--cloud", "--write", "--agent", "codex"])
        .env("ALOOP_NOW", "2026-01-01T12:00:00+01:00")
        .run()
        .ok()
        .stderr_has("wrote .github/workflows/aloop-iterate.yml");
    let written = p.read(".github/workflows/aloop-iterate.yml");
    assert!(
        written.contains("npm install -g @openai/codex") && written.contains("secrets.OPENAI_API_KEY"),
        "{written}"
    );
    assert!(written.contains("cron: \"0 */2 * * *\""), "the saved interval is kept");
    assert_actionlint_passes(&p.path(".github/workflows/aloop-iterate.yml"));
    iterate(&p, &["watch", "--status"]).ok().stdout_has("GitHub Actions");
}

#[test]
fn watch_cloud_builds_aloop_from_the_git_repository_named() {
    let p = Project::git();
    iterate(&p, &["watch", "--aloop-git", "https://github.com/me/aloop"])
        .code(2)
        .stderr_is("error: --aloop-git goes with --cloud: `aloop iterate watch --cloud --aloop-git URL`\n");
    iterate(&p, &["watch", "--cloud", "--aloop-git", "https://github.com/me/aloop 'x'"])
        .code(2)
        .stderr_has("error: --aloop-git may hold only letters, digits and ._~:/@%+=-");
    assert!(!p.home().join("iterate-watch.json").exists(), "nothing is saved");
    let out = iterate(&p, &["watch", "--cloud", "--aloop-git", "https://github.com/me/aloop"]).ok();
    let yaml = out
        .stderr_is("the workflow needs the repository secret ANTHROPIC_API_KEY; runs open pull requests from branch aloop/iterate\n")
        .stdout;
    let texts = [
        "# aloop is built from https://github.com/me/aloop (cargo install --locked --git),\n# cached until that repository's HEAD moves.\n",
        "env:\n  ALOOP_GIT_URL: \"https://github.com/me/aloop\"\njobs:\n",
    ];
    assert_workflow_has(&p, &yaml, &texts);
}

// --------------------------------------------------------------------- tick

#[test]
fn tick_skips_inside_quiet_hours_and_records_it() {
    let p = Project::git();
    iterate(&p, &["watch", "--interval", "1h", "--quiet-hours", "22:30-07:15"]).ok();
    let before = watch_json(&p);
    for now in ["2026-01-01T23:30:00+01:00", "2026-01-02T03:00:00-05:00", "2026-01-02T07:14:00+00:00"] {
        p.aloop(&["iterate", "tick"])
            .env("ALOOP_NOW", now)
            .run()
            .ok()
            .stderr_has("skipped (quiet hours 22:30-07:15)");
    }
    let kept = runs(&p);
    assert_eq!(kept.len(), 3);
    assert!(kept.iter().all(|r| r["status"] == "skipped" && r["reason"] == "quiet hours 22:30-07:15"));
    assert_eq!(kept[0]["startedAt"], "2026-01-01T23:30:00+01:00");
    assert_eq!(watch_json(&p), before, "a skipped cycle is not a run: lastRunAt stays");
    let out =
        p.aloop(&["iterate", "tick", "--json"]).env("ALOOP_NOW", "2026-01-01T23:00:00+01:00").run().ok();
    assert_eq!(out.json()["status"], "skipped");
}

#[test]
fn overlapping_ticks_never_run_twice() {
    let p = Project::git();
    iterate(&p, &["watch", "--interval", "1h", "--quiet-hours", "0-23"]).ok();
    // Another tick holds the lock (an flock, as aloop takes it).
    let lock = p.home().join("iterate-tick.lock");
    let mut holder = Command::new("python3")
        .args(["-c", "import fcntl, sys, time\nf = open(sys.argv[1], 'a')\nfcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(30)"])
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    p.aloop(&["iterate", "tick"])
        .env("ALOOP_NOW", "2026-01-01T10:00:00+00:00")
        .run()
        .ok()
        .stderr_has("another tick is still running");
    assert!(!p.home().join("iterate-runs.jsonl").exists(), "the overlapping tick did nothing");
    holder.kill().unwrap();
    holder.wait().unwrap();
    p.aloop(&["iterate", "tick"]).env("ALOOP_NOW", "2026-01-01T10:00:00+00:00").run().ok();
    assert_eq!(runs(&p).len(), 1);
}

#[test]
fn two_projects_keep_their_own_schedules_side_by_side() {
    let a = Project::git();
    iterate(&a, &["watch", "--interval", "1h"]).ok();
    // A second repository beside it, with the same ALOOP_HOME.
    let b_root = a.root().parent().unwrap().join("other");
    let b = a.shell(&format!(
        "mkdir -p {b} && cd {b} && git init -q && \"$ALOOP\" iterate watch --interval 2h --scope bugs",
        b = b_root.display()
    ));
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(!String::from_utf8_lossy(&b.stderr).contains("replacing"), "B's schedule replaced nothing");
    let file = home_json(&a, "iterate-watch.json");
    let b_key = b_root.canonicalize().unwrap().display().to_string();
    assert_eq!(watch_json(&a)["interval"], "1h");
    assert_eq!(file["schedules"][&b_key]["interval"], "2h");
    assert!(file["schedules"][&b_key].to_string().contains("\"scope\":\"bugs\""), "{file}");
    // The crontab line names its project.
    let line = iterate(&a, &["watch", "--interval", "1h"]).ok().stdout;
    assert!(line.contains(&format!("cd {} &&", a.root().canonicalize().unwrap().display())), "{line}");

    iterate(&a, &["watch", "--status"]).ok().stdout_has("schedule     every 1h");
    let all = iterate(&a, &["watch", "--status", "--all", "--json"]).ok().json();
    let mut projects: Vec<&str> =
        all.as_array().unwrap().iter().map(|s| s["project"].as_str().unwrap()).collect();
    projects.sort_unstable();
    let a_key = a.root().canonicalize().unwrap().display().to_string();
    let mut expected = vec![a_key.as_str(), b_key.as_str()];
    expected.sort_unstable();
    assert_eq!(projects, expected);

    // --stop in A stops A's only; a tick in A then has nothing to run.
    iterate(&a, &["watch", "--stop"]).ok().stderr_has(&format!("stopped the schedule for {a_key}"));
    let file = home_json(&a, "iterate-watch.json");
    assert!(file["schedules"].get(&a_key).is_none(), "{file}");
    assert_eq!(file["schedules"][&b_key]["interval"], "2h");
    iterate(&a, &["tick"]).code(1).stderr_has(&format!("no schedule is saved for {a_key}"));
    iterate(&a, &["watch", "--all"]).code(2).stderr_has("--all goes with --status");
}

#[test]
fn a_schedule_file_of_the_one_schedule_layout_is_read_as_its_projects() {
    let p = Project::git();
    let root = p.root().canonicalize().unwrap().display().to_string();
    let old = format!(
        "{{\"project\": \"{root}\", \"interval\": \"3h\", \"agent\": \"claude\", \"scope\": \"all\", \"cloud\": false, \"createdAt\": \"2026-01-01T00:00:00+00:00\"}}\n"
    );
    let p = p.home_file("iterate-watch.json", &old);
    iterate(&p, &["watch", "--status"]).ok().stdout_has("schedule     every 3h");
    p.file_is("../home/.aloop/iterate-watch.json", &old);
    iterate(&p, &["watch", "--quiet-hours", "22-08"]).ok();
    assert_eq!(watch_json(&p)["interval"], "3h", "moved into the new layout, options kept");
}

#[test]
fn watch_foreground_runs_cycles_until_ctrl_c() {
    let p = Project::git();
    let args = ["--foreground", "--interval", "7m", "--quiet-hours", "22-08"];
    foreground_until_ctrl_c(&p, &args, "2026-01-01T23:30:00+01:00");
    assert_eq!(runs(&p)[0]["reason"], "quiet hours 22:00-08:00");
    assert_eq!(watch_json(&p)["interval"], "7m", "--foreground takes any interval");
}

/// Runs `iterate watch ARGS` at `now` until its first cycle is recorded,
/// then presses Ctrl-C; returns its stderr.
fn foreground_until_ctrl_c(p: &Project, args: &[&str], now: &str) -> String {
    let mut all = vec!["iterate", "watch"];
    all.extend_from_slice(args);
    let child = p.aloop(&all).env("ALOOP_NOW", now).spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.home().join("iterate-runs.jsonl").exists() {
        assert!(Instant::now() < deadline, "no cycle ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    stderr
}

// ------------------------------------------------ with an agent (the fakes)

/// A project whose fake agent follows `plan` (`FAKE_AGENT_PLAN` entries).
fn with_plan(p: &Project, plan: &Value) -> (String, String) {
    let plan_file = p.home().join("../plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let log = p.home().join("../agent-log.jsonl");
    (plan_file.display().to_string(), log.display().to_string())
}

#[test]
fn without_a_terminal_or_auto_apply_the_run_is_refused() {
    let p = Project::git();
    let before = files(&p);
    iterate(&p, &["run"]).code(1).stderr_has("pass --auto-apply");
    // A "yes" on a pipe is not a person answering: still refused, at once.
    p.aloop(&["iterate", "run"])
        .stdin("y\n")
        .timeout(Duration::from_secs(20))
        .run()
        .code(1)
        .stderr_has("--auto-apply");
    assert_eq!(files(&p), before, "nothing was recorded or run");
}

#[test]
fn run_invokes_the_agent_and_records_the_diff_of_tracked_and_untracked_files() {
    let p = Project::git()
        .file("site/index.html", "<h1>Welcome</h1>\n")
        .fixture("iterate/metrics-1.json", "m.json")
        .commit("site");
    let head = p.git_cmd(&["rev-parse", "HEAD"]).trim().to_string();
    let (plan, log) = with_plan(
        &p,
        &json!([{
            "text": "Changes:\n1. site/index.html - clearer headline",
            "write": {"site/index.html": "<h1>Ship in minutes</h1>\n", "site/pricing.html": "<p>Free trial</p>\n"},
            "cost": 0.0123
        }]),
    );
    let out = p
        .aloop(&[
            "iterate",
            "run",
            "--agent",
            "claude",
            "--auto-apply",
            "--metrics",
            "m.json",
            "--scope",
            "copy",
        ])
        .env("FAKE_AGENT_PLAN", &plan)
        .env("FAKE_AGENT_LOG", &log)
        .run()
        .ok();
    out.stderr_has("applied: 2 files changed");
    let run = &runs(&p)[0];
    assert_eq!(run["status"], "applied");
    assert_eq!(run["baseCommit"], head.as_str());
    assert_eq!(run["exitCode"], 0);
    assert_eq!(run["costUsd"], 0.0123);
    // Every input token the model read (cached ones too), and its output.
    assert_eq!((run["inputTokens"].as_i64(), run["outputTokens"].as_i64()), (Some(123), Some(50)));
    let id = run["id"].as_str().unwrap();
    p.aloop(&["iterate", "show", id]).run().ok().stdout_has("\ncost     $0.0123\ntokens   123 in, 50 out\n");
    assert_eq!(run["files"], json!(["site/index.html", "site/pricing.html"]));
    let diff = run["diff"].as_str().unwrap();
    assert!(diff.contains("-<h1>Welcome</h1>") && diff.contains("+<h1>Ship in minutes</h1>"), "{diff}");
    assert!(diff.contains("+++ b/site/pricing.html") && diff.contains("+<p>Free trial</p>"), "{diff}");
    assert!(run["diffStat"].as_str().unwrap().contains("2 files changed"));
    assert!(run["output"].as_str().unwrap().contains("clearer headline"));
    // The agent got the prompt in print mode, in the project.
    let call: Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    let argv: Vec<&str> = call["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(argv.contains(&"-p"), "{argv:?}");
    assert!(call["prompt"].as_str().unwrap().contains("Scope: copy"));
    assert!(call["prompt"].as_str().unwrap().contains("headline_ctr: 0.05"));
    // The next run's prompt tells the agent what the last one did.
    p.aloop(&["iterate", "run", "--auto-apply", "--dry-run"])
        .run()
        .ok()
        .stdout_has("applied (scope copy); files: site/index.html, site/pricing.html");
}

#[test]
fn run_json_prints_only_the_record_on_stdout() {
    let p = Project::git();
    let (plan, _) = with_plan(&p, &json!([{"text": "Done.", "write": {"NOTES.md": "x\n"}}]));
    let out = p.aloop(&["iterate", "run", "--auto-apply", "--json"]).env("FAKE_AGENT_PLAN", &plan).run().ok();
    let record = out.json();
    assert_eq!(record["status"], "applied");
    assert_eq!(record["files"], json!(["NOTES.md"]));
    assert_eq!(record["id"], runs(&p)[0]["id"]);
}

#[test]
fn changing_more_files_than_the_budget_is_flagged() {
    let p = Project::git();
    let (plan, log) =
        with_plan(&p, &json!([{"text": "Done.", "write": {"a.txt": "1\n", "b.txt": "2\n", "c.txt": "3\n"}}]));
    p.aloop(&["iterate", "run", "--auto-apply", "--max-files", "2"])
        .env("FAKE_AGENT_PLAN", &plan)
        .env("FAKE_AGENT_LOG", &log)
        .run()
        .ok()
        .stderr_has("claude changed 3 files, over the budget of 2");
    let call: Value =
        serde_json::from_str(std::fs::read_to_string(&log).unwrap().lines().next().unwrap()).unwrap();
    assert!(call["prompt"].as_str().unwrap().contains("at most 2 files"), "the prompt states the budget");
    assert_eq!(runs(&p)[0]["maxFiles"], 2);
}

#[test]
fn a_failing_agent_is_recorded_as_failed() {
    let p = Project::git();
    let out =
        p.aloop(&["iterate", "run", "--auto-apply", "--json"]).env("FAKE_AGENT_MODE", "fail").run().code(1);
    let record = out.json();
    assert_eq!(record["status"], "failed");
    assert!(record["error"].is_string(), "{record}");
    assert_eq!(runs(&p)[0]["status"], "failed");
}

#[test]
fn an_agent_that_hangs_is_stopped_at_the_timeout() {
    let p = Project::git();
    let started = Instant::now();
    let out = p
        .aloop(&["iterate", "run", "--auto-apply", "--timeout", "2", "--quiet"])
        .env("FAKE_AGENT_MODE", "hang")
        .run()
        .code(1);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    out.stderr_has("timeout");
    assert_eq!(runs(&p)[0]["status"], "timeout");
}

#[test]
fn ctrl_c_during_the_agent_records_an_interrupted_run() {
    let p = Project::git();
    let log = p.home().join("../agent-log.jsonl");
    let child = p
        .aloop(&["iterate", "run", "--auto-apply"])
        .env("FAKE_AGENT_MODE", "hang")
        .env("FAKE_AGENT_LOG", &log)
        .spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !log.exists() {
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(runs(&p)[0]["status"], "interrupted");
}

#[test]
fn tick_outside_quiet_hours_runs_the_saved_schedule_and_updates_last_run() {
    let p = Project::git();
    let p = p.fixture("iterate/metrics-1.json", "m.json").commit("metrics");
    iterate(
        &p,
        &["watch", "--interval", "1h", "--quiet-hours", "22-08", "--scope", "perf", "--metrics", "m.json"],
    )
    .ok();
    let (plan, _) =
        with_plan(&p, &json!([{"text": "Cached the slow query.", "write": {"cache.txt": "on\n"}}]));
    p.aloop(&["iterate", "tick"])
        .env("ALOOP_NOW", "2026-01-01T12:00:00+01:00")
        .env("FAKE_AGENT_PLAN", &plan)
        .run()
        .ok();
    let run = &runs(&p)[0];
    assert_eq!(run["status"], "applied");
    assert_eq!(run["scope"], "perf");
    assert_eq!(run["files"], json!(["cache.txt"]));
    assert_eq!(
        run["signals"][0],
        json!({"name": "p50_latency_ms", "value": 180, "previous": null, "change": null})
    );
    assert_eq!(watch_json(&p)["lastRunAt"], "2026-01-01T12:00:00+01:00");
}

/// Runs `aloop ARGS` on a pseudo-terminal (util-linux `script`), typing
/// `input`; returns the exit code and everything the terminal showed.
pub(crate) fn on_terminal(p: &Project, args: &str, input: &str, env: &[(&str, &str)]) -> (i32, String) {
    let exe = env!("CARGO_BIN_EXE_aloop");
    let path =
        format!("{}:{}", crate::support::fakes_dir().display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &format!("{exe} {args}"), "/dev/null"])
        .current_dir(p.root())
        .env("ALOOP_HOME", p.home())
        .env("HOME", p.home().parent().unwrap())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .env_remove("ALOOP_NOW")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("script runs");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn on_a_terminal_the_run_asks_first_and_no_declines() {
    let p = Project::git();
    let log = p.home().join("../agent-log.jsonl");
    let log_text = log.display().to_string();
    let (code, shown) = on_terminal(&p, "iterate run --scope copy", "n\n", &[("FAKE_AGENT_LOG", &log_text)]);
    assert_eq!(code, 0, "{shown}");
    assert!(shown.contains("Let claude make up to 3 small changes (at most 5 files)"), "{shown}");
    assert!(shown.contains("declined; nothing was run"), "{shown}");
    assert_eq!(runs(&p)[0]["status"], "declined");
    assert!(!log.exists(), "the agent was not invoked");
}

#[test]
fn on_a_terminal_yes_runs_the_agent() {
    let p = Project::git();
    let (plan, _) = with_plan(&p, &json!([{"text": "Done.", "write": {"README.md": "# better\n"}}]));
    let (code, shown) = on_terminal(&p, "iterate run", "y\n", &[("FAKE_AGENT_PLAN", &plan)]);
    assert_eq!(code, 0, "{shown}");
    let run = &runs(&p)[0];
    assert_eq!(run["status"], "applied");
    assert_eq!(run["files"], json!(["README.md"]));
}

#[test]
fn on_a_terminal_auto_apply_does_not_ask() {
    let p = Project::git();
    let (plan, _) = with_plan(&p, &json!([{"text": "Done.", "write": {"README.md": "# better\n"}}]));
    let (code, shown) = on_terminal(&p, "iterate run --auto-apply", "", &[("FAKE_AGENT_PLAN", &plan)]);
    assert_eq!(code, 0, "{shown}");
    assert!(!shown.contains("[y/N]"), "{shown}");
    assert_eq!(runs(&p)[0]["status"], "applied");
}

#[test]
fn an_applied_run_is_a_commit_of_its_own_and_revert_takes_it_back() {
    let p = Project::git().file("site/index.html", "<h1>Welcome</h1>\n").commit("site");
    // Work of the user's own, uncommitted: not swept into the run's commit.
    std::fs::write(p.path("NOTES.md"), "mine\n").unwrap();
    let (plan, _) = with_plan(
        &p,
        &json!([{"text": "A clearer headline.", "write": {"site/index.html": "<h1>Ship</h1>\n"}}]),
    );
    p.aloop(&["iterate", "run", "--auto-apply", "--scope", "copy"]).env("FAKE_AGENT_PLAN", &plan).run().ok();
    let run = &runs(&p)[0];
    assert_eq!(run["status"], "applied");
    let sha = run["commit"].as_str().expect("the run's commit").to_string();
    assert_eq!(p.git_cmd(&["rev-parse", "HEAD"]).trim(), sha);
    assert_eq!(
        p.git_cmd(&["show", "--name-only", "--format=%s", &sha]),
        "aloop iterate (copy): A clearer headline.\n\nsite/index.html\n"
    );
    assert_eq!(p.git_cmd(&["status", "--porcelain"]), "?? NOTES.md\n");

    let id = run["id"].as_str().unwrap();
    p.aloop(&["iterate", "revert", id]).run().ok().stderr_has(&format!("reverted run {id} (commit {sha})"));
    p.file_is("site/index.html", "<h1>Welcome</h1>\n");
    assert!(p.git_cmd(&["log", "-1", "--format=%s"]).starts_with("Revert \"aloop iterate (copy)"));
    p.file_is("NOTES.md", "mine\n");

    iterate(&p, &["run", "--dry-run"]).ok();
    let dry = runs(&p).last().unwrap()["id"].as_str().unwrap().to_string();
    iterate(&p, &["revert", &dry])
        .code(1)
        .stderr_has(&format!("run {dry} has no commit to revert (status skipped)"));
}

#[test]
fn with_branch_runs_pile_up_on_iterate_scope_and_the_checkout_is_left_alone() {
    let p = Project::git().file("site/index.html", "<h1>Welcome</h1>\n").commit("site");
    std::fs::write(p.path("NOTES.md"), "mine\n").unwrap();
    let head = p.git_cmd(&["rev-parse", "HEAD"]);
    let branch = p.git_cmd(&["branch", "--show-current"]);
    let (plan, _) = with_plan(
        &p,
        &json!([
            {"text": "A clearer headline.", "write": {"site/index.html": "<h1>Ship</h1>\n"}},
            {"text": "A subtitle.", "append": {"site/index.html": "<p>fast</p>\n"}},
        ]),
    );
    let run = |p: &Project| {
        p.aloop(&["iterate", "run", "--auto-apply", "--scope", "copy", "--branch"])
            .env("FAKE_AGENT_PLAN", &plan)
            .run()
            .ok()
    };
    run(&p).stderr_has("working on branch iterate/copy in .loop/worktrees/iterate-copy");
    run(&p);
    // The checked-out branch, its files and the user's own work are untouched.
    assert_eq!(p.git_cmd(&["rev-parse", "HEAD"]), head);
    assert_eq!(p.git_cmd(&["branch", "--show-current"]), branch);
    p.file_is("site/index.html", "<h1>Welcome</h1>\n");
    assert_eq!(p.git_cmd(&["status", "--porcelain"]), "?? NOTES.md\n");
    assert!(!p.exists(".loop/worktrees/iterate-copy"), "the worktree is removed after each run");
    // The second run built on the first, on iterate/copy.
    assert_eq!(p.git_cmd(&["show", "iterate/copy:site/index.html"]), "<h1>Ship</h1>\n<p>fast</p>\n");
    assert_eq!(
        p.git_cmd(&["log", "--format=%s", "-2", "iterate/copy"]),
        "aloop iterate (copy): A subtitle.\naloop iterate (copy): A clearer headline.\n"
    );
    let records = runs(&p);
    assert_eq!(
        (records[0]["branch"].clone(), records[1]["branch"].clone()),
        (json!("iterate/copy"), json!("iterate/copy"))
    );
    assert_eq!(records[1]["commit"].as_str().unwrap(), p.git_cmd(&["rev-parse", "iterate/copy"]).trim());
    let id = records[1]["id"].as_str().unwrap();
    iterate(&p, &["revert", id]).code(1).stderr_has(&format!(
        "run {id} was committed on iterate/copy, not on {} checked out here: `git switch iterate/copy` first, then revert it there",
        branch.trim()
    ));
}

#[test]
fn watch_keeps_branch_with_the_schedule_and_refuses_it_with_cloud() {
    let p = Project::git();
    let out = iterate(&p, &["watch", "--interval", "30m", "--branch", "--json"]).ok().json();
    assert_eq!(out["config"]["branch"], true);
    // A later watch without the flag keeps it.
    let again = iterate(&p, &["watch", "--interval", "1h", "--json"]).ok().json();
    assert_eq!(again["config"]["branch"], true);
    iterate(&p, &["watch", "--cloud", "--branch"]).code(2).stderr_has(
        "--branch goes without --cloud: the workflow already opens a pull request from a branch of its own",
    );
}
