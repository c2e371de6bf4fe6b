//! Leaving the story loop alone overnight: usage-limit waits (sped up with
//! `ALOOP_SLEEP_SCALE`, the clock fixed with `ALOOP_NOW`), failing fast,
//! budgets, autonomy and the root check, checks, stalls, hooks, a clean tree
//! and the branch. Real git repositories and the fake agents; limits come
//! from a test adapter in `ALOOP_HOME` that wraps the claude adapter and
//! reports a `limit` event for a "LIMIT <unix|none>" reply.

use serde_json::{json, Value};

use crate::story_loop::{
    builds, calls, iteration_order, json_file, loop_project, outside, passes, progress_verdicts, rejects,
    run_with, runs, story, with_fakes,
};
use crate::support::{Output, Project, Run};

/// 2026-12-02T10:00:00Z, the fixed "now" of these tests.
const NOW: &str = "2026-12-02T10:00:00+00:00";
pub(crate) const NOW_UNIX: i64 = 1_796_205_600;

const LIMITER: &str = r#"// The claude adapter, plus a usage limit for a "LIMIT <unix|none>" reply.
import "agents/claude" as claude;

fn describe() { claude::describe() }
fn command(req) { claude::command(req) }
fn parse(event) {
    if type_of(event) == "map" && event.type == "assistant" {
        for part in event.message?.content ?? [] {
            if part.type == "text" && part.text.starts_with("LIMIT ") {
                let at = part.text.sub_string(6);
                return #{ kind: "limit", text: "You've hit your limit", resets_at: if at == "none" { () } else { parse_int(at) } };
            }
        }
    }
    claude::parse(event)
}
"#;

/// A loop project whose config says `patch` on top of the fixture's.
pub(crate) fn project_with(patch: &Value) -> Project {
    let p = loop_project("prd.json").home_file("scripts/agents/limiter.rhai", LIMITER);
    set_config(&p, patch);
    p
}

fn set_config(p: &Project, patch: &Value) {
    let mut config = json_file(p, ".loop/config.json");
    for (key, value) in patch.as_object().unwrap() {
        config[key] = value.clone();
    }
    std::fs::write(p.path(".loop/config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
}

/// A reply that hits the usage limit, resetting at `resets_at` (None: no time given).
pub(crate) fn limited(resets_at: Option<i64>) -> Value {
    let at = resets_at.map_or("none".to_string(), |t| t.to_string());
    json!({"text": format!("LIMIT {at}"), "is_error": true, "error": "You've hit your limit", "cost": 0})
}

/// `aloop ARGS` with the fakes, sleeps skipped and the clock at NOW.
pub(crate) fn overnight(p: &Project, args: &[&str], entries: &Value) -> Run {
    with_fakes(p, args, entries).env("ALOOP_SLEEP_SCALE", "0").env("ALOOP_NOW", NOW)
}

/// Starts the fakes' next plan at its first entry (the call count is kept
/// beside the plan).
fn new_plan(p: &Project) {
    let _ = std::fs::remove_file(outside(p, "plan.json.calls"));
}

/// The stderr lines that start with two spaces and `prefix`, trimmed.
fn lines_with<'a>(out: &'a Output, prefix: &str) -> Vec<&'a str> {
    out.stderr.lines().map(str::trim).filter(|l| l.starts_with(prefix)).collect()
}

// ------------------------------------------------------------ usage limits

#[test]
fn a_limit_with_a_reset_time_is_waited_out_and_the_same_step_repeated() {
    let p = project_with(&json!({"agent": "limiter"}));
    let out = overnight(
        &p,
        &["run", "1", "--story", "US-001"],
        &json!([limited(Some(NOW_UNIX + 600)), builds("US-001", "a.txt"), passes()]),
    )
    .run()
    .ok();
    assert!(
        out.stderr.contains("warning: the generator hit a usage limit: You've hit your limit"),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines_with(&out, "waiting"),
        ["waiting 11m, until 10:11 (when it resets); Ctrl-C stops"],
        "{}",
        out.stderr
    );
    assert_eq!(
        lines_with(&out, "still waiting"),
        ["still waiting: 6m left (until 10:11)", "still waiting: 1m left (until 10:11)"]
    );
    assert!(out.stderr.contains("the wait is over; running the generator of US-001 again"), "{}", out.stderr);
    assert_eq!(iteration_order(&out.stderr), ["US-001"], "no iteration was used for the limit");
    assert!(out.stderr.contains("Iterations used: 1/1"), "{}", out.stderr);
    assert!(out.stderr.contains("US-001 PASSED"), "{}", out.stderr);
    let statuses: Vec<Value> = runs(&p).iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, ["limited", "ok", "ok"]);
    assert_eq!(runs(&p)[0]["resets_at"], NOW_UNIX + 600);
    assert_eq!(story(&json_file(&p, ".loop/prd.json"), "US-001")["rejections"], 0, "no rejection counted");
    assert_eq!(calls(&p).len(), 3);
}

#[test]
fn a_limit_without_a_reset_time_backs_off_5_then_15_minutes() {
    let p = project_with(&json!({"agent": "limiter"}));
    let out = overnight(
        &p,
        &["run", "1", "--story", "US-001", "--skip-eval"],
        &json!([limited(None), limited(None), builds("US-001", "a.txt")]),
    )
    .run()
    .ok();
    assert_eq!(
        lines_with(&out, "waiting"),
        [
            "waiting 5m, until 10:05 (no reset time given: backing off); Ctrl-C stops",
            "waiting 15m, until 10:15 (no reset time given: backing off); Ctrl-C stops"
        ],
        "{}",
        out.stderr
    );
    assert_eq!(
        lines_with(&out, "still waiting"),
        ["still waiting: 10m left (until 10:15)", "still waiting: 5m left (until 10:15)"]
    );
    assert!(
        out.stderr.contains("US-001 PASSED (evaluation skipped: recorded as unverified)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_reset_past_max_wait_minutes_stops_with_exit_4_saying_when_to_come_back() {
    let p = project_with(&json!({"agent": "limiter", "limits": {"maxWaitMinutes": 60}}));
    let out = overnight(&p, &["run"], &json!([limited(Some(NOW_UNIX + 5 * 3600))])).run().code(4);
    assert!(out.stderr.contains("Loop Stopped"), "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "warning: stopped at a usage limit (the wait of 5h1m would pass limits.maxWaitMinutes (60)); \
             it resets at 15:00: run aloop run again after that"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(calls(&p).len(), 1);
    assert!(lines_with(&out, "waiting").is_empty(), "it did not wait: {}", out.stderr);
}

#[test]
fn with_limits_wait_false_a_limit_stops_at_once() {
    let p = project_with(&json!({"agent": "limiter", "limits": {"wait": false}}));
    let out = overnight(&p, &["run"], &json!([limited(None)])).run().code(4);
    assert!(
        out.stderr.contains(
            "stopped at a usage limit (limits.wait is false); no reset time was given: try aloop run again after 10:05"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn ctrl_c_ends_a_limit_wait() {
    let p = project_with(&json!({"agent": "limiter"}));
    // The real clock, no speed-up: the wait would last 5 minutes.
    let mut child = with_fakes(&p, &["run"], &json!([limited(None)])).spawn();
    let log = outside(&p, "agents.jsonl");
    crate::support::wait_until("the limited call", std::time::Duration::from_secs(30), || {
        p.exists(".loop/runs.jsonl") && log.exists()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = i32::try_from(child.id()).unwrap();
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let start = std::time::Instant::now();
    let status = child.wait().unwrap();
    assert!(start.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
}

// ------------------------------------------------------------ failing fast

#[test]
fn two_calls_failing_the_same_way_stop_the_loop() {
    let p = project_with(&json!({}));
    let failing = json!({"is_error": true, "error": "Invalid API key · Please run /login"});
    let out = run_with(&p, &["run", "10"], &json!([failing])).code(1);
    assert_eq!(calls(&p).len(), 2, "two calls, not ten");
    assert!(
        out.stderr.contains(
            "error: 2 agent calls in a row failed the same way (failed: Invalid API key · Please run /login); \
             stopping instead of trying again (maxConsecutiveFailures 2)"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Iterations used: 2/10"), "{}", out.stderr);
}

#[test]
fn different_failures_and_successes_start_the_count_over() {
    let p = project_with(&json!({"maxConsecutiveFailures": 3}));
    let fail = |e: &str| json!({"is_error": true, "error": e});
    let out = run_with(
        &p,
        &["run", "5"],
        &json!([fail("one"), fail("two"), fail("two"), builds("US-001", "a.txt"), passes(), fail("two")]),
    )
    .code(2);
    assert_eq!(calls(&p).len(), 6, "{}", out.stderr);
    assert!(!out.stderr.contains("in a row failed"), "{}", out.stderr);
}

// ------------------------------------------------------------ budgets

#[test]
fn the_cost_budget_stops_before_the_next_call_with_exit_5() {
    let p = project_with(&json!({"budget": {"maxCostUsd": 0.05}}));
    let entries = json!([
        {"write": {"a.txt": "a"}, "commit": "feat: a", "cost": 0.04},
        rejects("not yet"),
        {"write": {"b.txt": "b"}, "commit": "feat: b", "cost": 0.04},
        rejects("not yet"),
    ]);
    let out = run_with(&p, &["run"], &entries).code(5);
    assert_eq!(calls(&p).len(), 2, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "warning: the cost budget of $0.0500 is reached ($0.0523 spent); stopping before the next call"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Spent: $0.0523, 346 tokens, "), "{}", out.stderr);
}

#[test]
fn max_cost_on_the_command_line_beats_the_config() {
    let p = project_with(&json!({"budget": {"maxCostUsd": 100}}));
    let out =
        run_with(&p, &["run", "--max-cost", "0.01"], &json!([builds("US-001", "a.txt"), passes()])).code(5);
    assert!(out.stderr.contains("the cost budget of $0.0100 is reached ($0.0246 spent)"), "{}", out.stderr);
    assert_eq!(calls(&p).len(), 2);
}

#[test]
fn the_token_budget_stops_the_loop() {
    let p = project_with(&json!({"budget": {"maxTokens": 300}}));
    let out = run_with(&p, &["run"], &json!([builds("US-001", "a.txt"), passes()])).code(5);
    assert!(out.stderr.contains("the token budget of 300 is reached (346 used)"), "{}", out.stderr);
}

#[test]
fn the_time_budget_counts_the_agents_time() {
    let p = project_with(&json!({}));
    let slow = json!({"write": {"a.txt": "a"}, "commit": "feat: a", "sleep": 1.2});
    let out = run_with(&p, &["run", "--max-time", "1s"], &json!([slow, passes()])).code(5);
    assert!(out.stderr.contains("the time budget of 1s is reached ("), "{}", out.stderr);
    assert_eq!(calls(&p).len(), 2);
    run_with(&p, &["run", "--max-time", "soon"], &json!([passes()]))
        .code(2)
        .stderr_has("--max-time must be a duration such as \"8h\" or \"90m\", not \"soon\"");
}

#[test]
fn earlier_runs_count_only_with_budget_scope_total() {
    let p = project_with(&json!({"budget": {"maxCostUsd": 0.03}}));
    run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    new_plan(&p);
    // This run alone has spent nothing yet: it starts.
    let out = run_with(&p, &["run", "1"], &json!([builds("US-002", "b.txt"), passes()])).code(2);
    new_plan(&p);
    assert!(out.stderr.contains("Iteration 1/1 — US-002"), "{}", out.stderr);
    let before = calls(&p).len();
    let out = run_with(&p, &["run", "--budget-scope", "total"], &json!([passes()])).code(5);
    assert_eq!(calls(&p).len(), before, "no call once the total is over");
    assert!(out.stderr.contains("the cost budget of $0.0300 is reached ($0.0492 spent)"), "{}", out.stderr);
    assert!(out.stderr.contains("(counting earlier runs: $0.0492, 692 tokens"), "{}", out.stderr);
}

#[test]
fn iteration_lines_loop_complete_and_status_show_what_was_spent() {
    let p = project_with(&json!({}));
    let plan = json!([builds("US-001", "a.txt"), passes(), builds("US-002", "b.txt"), passes()]);
    let out = run_with(&p, &["run", "2"], &plan).code(2);
    assert!(
        out.stderr.contains("Iteration 1/2 — US-001: Parse a CSV header (spent: 0 tokens, 0s)"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("Iteration 2/2 — US-002: Convert rows to JSON objects (spent: $0.0246, 346 tokens, "),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Spent: $0.0492, 692 tokens, "), "{}", out.stderr);
    assert!(out.stderr.contains(" in 4 agent call(s)"), "{}", out.stderr);
    p.aloop(&["status"])
        .run()
        .ok()
        .stdout_has("spent: $0.0492, 692 tokens, ")
        .stdout_has(" in 4 agent calls");
    let mut status = p.aloop(&["status", "--json"]).run().ok().json();
    let spend = status["spend"].as_object_mut().unwrap();
    let seconds = spend.remove("seconds").unwrap();
    let ms: i64 = runs(&p).iter().map(|r| r["duration_ms"].as_i64().unwrap()).sum();
    assert_eq!(seconds, ms / 1000);
    assert_eq!(
        status["spend"],
        json!({"cost_usd": 0.0492, "input_tokens": 492, "output_tokens": 200, "tokens": 692, "calls": 4})
    );
    let record = &runs(&p)[0];
    assert_eq!((record["input_tokens"].clone(), record["output_tokens"].clone()), (json!(123), json!(50)));
}

#[test]
fn a_call_without_a_cost_shows_none() {
    let p = project_with(&json!({}));
    let out = run_with(&p, &["run", "1"], &json!([{"is_error": true, "error": "boom", "cost": 0}])).code(2);
    assert!(out.stderr.contains("generator (claude): failed after 0s\n"), "{}", out.stderr);
}

// ------------------------------------------------------------ autonomy and root

#[test]
fn autonomy_is_set_per_role() {
    let p = project_with(&json!({"autonomy": {"evaluator": "read-only"}}));
    run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    let argv = |i: usize| {
        calls(&p)[i]["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(argv(0).contains(&"--dangerously-skip-permissions".to_string()), "{:?}", argv(0));
    let evaluator = argv(1);
    assert!(evaluator.windows(2).any(|w| w == ["--permission-mode", "plan"]), "{evaluator:?}");
    set_config(&p, &json!({"autonomy": {"generator": "sudo"}}));
    p.aloop(&["run"])
        .run()
        .code(1)
        .stderr_has("\"autonomy.generator\" must be one of read-only, edit, full; not the string \"sudo\"");
}

fn is_root() -> bool {
    let out = std::process::Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn full_autonomy_for_claude_as_root_needs_a_sandbox() {
    let p = project_with(&json!({}));
    let plan = json!([builds("US-001", "a.txt"), passes()]);
    // Without IS_SANDBOX in aloop's environment.
    let run = || with_fakes(&p, &["run", "1"], &plan).env("IS_SANDBOX", "");
    if is_root() {
        let out = run().run().code(1);
        assert!(
            out.stderr.contains("the generator would run Claude Code with autonomy \"full\" as root")
                && out.stderr.contains("run aloop as a normal user")
                && out.stderr.contains("set \"sandbox\": true in .loop/config.json"),
            "{}",
            out.stderr
        );
        assert!(calls(&p).is_empty(), "checked before the first call");
        // sandbox: true passes IS_SANDBOX=1 to the agent (the fake refuses root without it).
        set_config(&p, &json!({"sandbox": true}));
        run().run().code(2).stderr_has("US-001 PASSED");
    } else {
        run().run().code(2).stderr_has("US-001 PASSED");
    }
}

// ------------------------------------------------------------ checks

/// A check script in the project: passes when ok.txt exists.
fn with_check(p: &Project) {
    std::fs::write(p.path("check.sh"), "#!/bin/sh\necho checking\ntest -f ok.txt || { echo 'ok.txt is missing' >&2; exit 3; }\necho all good\n").unwrap();
    std::process::Command::new("chmod")
        .args(["+x", &p.path("check.sh").display().to_string()])
        .status()
        .unwrap();
    p.git_cmd(&["add", "check.sh"]);
    p.git_cmd(&["commit", "-q", "-m", "add a check"]);
    set_config(p, &json!({"checks": [["./check.sh"]]}));
}

#[test]
fn a_failing_check_rejects_without_the_evaluator() {
    let p = project_with(&json!({}));
    with_check(&p);
    p.aloop(&["trust"]).run().ok();
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    assert_eq!(calls(&p).len(), 1, "the evaluator was not called: {}", out.stderr);
    let notes = story(&json_file(&p, ".loop/prd.json"), "US-001")["notes"].as_str().unwrap().to_string();
    assert!(
        notes.contains(
            "[REJECTED] the check ./check.sh failed (exit 3); its output ended:\nchecking\nok.txt is missing"
        ),
        "{notes}"
    );
    assert_eq!(progress_verdicts(&p), ["REJECT"]);
}

#[test]
fn passing_checks_go_into_the_evaluators_prompt() {
    let p = project_with(&json!({}));
    with_check(&p);
    p.aloop(&["trust"]).run().ok();
    run_with(&p, &["run", "1"], &json!([builds("US-001", "ok.txt"), passes()])).code(2);
    let prompt = calls(&p)[1]["prompt"].as_str().unwrap().to_string();
    assert!(prompt.contains("## The project's checks"), "{prompt}");
    assert!(prompt.contains("$ ./check.sh\n(exit 0)\nchecking\nall good\n"), "{prompt}");
}

#[test]
fn an_untrusted_configs_checks_and_hooks_do_not_run() {
    let p = project_with(&json!({}));
    with_check(&p);
    let events = outside(&p, "events.txt");
    set_config(
        &p,
        &json!({"hooks": {"loop_complete": [["sh", "-c", format!("echo ran >> {}", events.display())]]}}),
    );
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    assert!(
        out.stderr.contains(
            "warning: ignoring the checks and hooks of .loop/config.json: it is untrusted, and a cloned config \
             must not run programs without your consent; review it, then run `aloop trust`"
        ),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("check: ./check.sh"), "{}", out.stderr);
    assert!(!events.exists(), "the hook did not run");
    // Trusted, then edited: untrusted again.
    p.aloop(&["trust"]).run().ok();
    set_config(&p, &json!({"maxIterations": 6}));
    run_with(&p, &["run", "1"], &json!([builds("US-002", "b.txt"), passes()]))
        .code(2)
        .stderr_has("it is changed since trusted");
}

// ------------------------------------------------------------ stalls

#[test]
fn a_generator_that_changes_nothing_is_rejected_without_the_evaluator() {
    let p = project_with(&json!({}));
    let out =
        run_with(&p, &["run", "3", "--story", "US-001"], &json!([{"text": "I looked around."}])).code(3);
    assert_eq!(calls(&p).len(), 2, "two stalls, no evaluator: {}", out.stderr);
    assert!(out.stderr.contains("US-001 REJECTED — the generator changed nothing"), "{}", out.stderr);
    assert!(out.stderr.contains("US-001 BLOCKED"), "{}", out.stderr);
}

#[test]
fn stall_retries_blocks_sooner_than_eval_retries() {
    let p = project_with(&json!({"evalRetries": 5, "stallRetries": 1}));
    let out = run_with(&p, &["run", "3", "--story", "US-001"], &json!([{"text": "Nothing to do."}])).code(3);
    assert_eq!(calls(&p).len(), 1, "{}", out.stderr);
    assert_eq!(story(&json_file(&p, ".loop/prd.json"), "US-001")["blocked"], true);
}

// ------------------------------------------------------------ hooks

#[test]
fn hooks_hear_every_event_in_order_and_a_failing_hook_is_only_logged() {
    let p = project_with(&json!({"evalRetries": 2}));
    let events = outside(&p, "events.txt");
    let hook = outside(&p, "hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf '%s %s ' \"$ALOOP_EVENT_EVENT\" \"$ALOOP_EVENT_STORY\" >> {e}\n\
             python3 -c 'import json,sys; print(json.load(sys.stdin)[\"event\"])' >> {e}\n",
            e = events.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod").args(["+x", &hook.display().to_string()]).status().unwrap();
    let h = json!([[hook.display().to_string()]]);
    set_config(
        &p,
        &json!({"hooks": {"story_passed": h, "story_rejected": h, "story_blocked": h, "loop_complete": h,
                           "loop_stopped": h, "budget_stop": h}}),
    );
    let mut config = json_file(&p, ".loop/config.json");
    config["hooks"]["story_passed"].as_array_mut().unwrap().insert(0, json!(["false"]));
    std::fs::write(p.path(".loop/config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    p.aloop(&["trust"]).run().ok();
    let out = run_with(
        &p,
        &["run", "3"],
        &json!([
            builds("US-001", "a.txt"),
            passes(),
            builds("US-002", "b.txt"),
            rejects("no"),
            builds("US-002", "c.txt"),
            rejects("still no")
        ]),
    )
    .code(2);
    assert!(
        out.stderr.contains("warning: the story_passed hook false failed (exit 1); going on"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(&events).unwrap(),
        "story_passed US-001 story_passed\nstory_rejected US-002 story_rejected\n\
         story_rejected US-002 story_rejected\nstory_blocked US-002 story_blocked\nloop_complete  loop_complete\n"
    );
}

// ------------------------------------------------------------ tree and branch

#[test]
fn a_dirty_tree_is_warned_about_and_refused_with_require_clean() {
    let p = project_with(&json!({}));
    std::fs::write(p.path("notes.txt"), "mine\n").unwrap();
    let out = run_with(&p, &["run", "--require-clean"], &json!([passes()])).code(1);
    assert!(
        out.stderr.contains(
            "the working tree has 1 uncommitted change(s) outside .loop/ (notes.txt); commit or stash them first (--require-clean)"
        ),
        "{}",
        out.stderr
    );
    assert!(calls(&p).is_empty());
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    assert!(
        out.stderr
            .contains("warning: the working tree has 1 uncommitted change(s) outside .loop/ (notes.txt)"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_branch_of_prd_json_is_checked_out_unless_branch_is_false() {
    let p = project_with(&json!({}));
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    assert!(
        out.stderr
            .contains("switched to a new branch loop/csvtool (from HEAD), as prd.json's branchName says"),
        "{}",
        out.stderr
    );
    assert_eq!(p.git_cmd(&["symbolic-ref", "--short", "HEAD"]).trim(), "loop/csvtool");
    let q = project_with(&json!({"branch": false}));
    let before = q.git_cmd(&["symbolic-ref", "--short", "HEAD"]);
    let out = run_with(&q, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    assert!(!out.stderr.contains("switched"), "{}", out.stderr);
    assert_eq!(q.git_cmd(&["symbolic-ref", "--short", "HEAD"]), before);
}

// ------------------------------------------------------------ config errors

#[test]
fn bad_overnight_settings_are_refused_with_the_key_named() {
    let cases = [
        (json!({"limits": {"wait": "yes"}}), "\"limits.wait\" must be true or false, not the string \"yes\""),
        (json!({"limits": {"maxWaitMinutes": -1}}), "\"limits.maxWaitMinutes\" must be a whole number of minutes, not the number -1"),
        (json!({"limits": {"forever": true}}), "\"limits.forever\" is not a setting (limits has wait and maxWaitMinutes)"),
        (json!({"budget": {"maxCostUsd": "5"}}), "\"budget.maxCostUsd\" must be a number of dollars above 0 or null, not the string \"5\""),
        (json!({"budget": {"maxRuntime": "all night"}}), "\"budget.maxRuntime\" must be a duration such as \"8h\" or \"90m\", not \"all night\""),
        (json!({"budget": {"maxTokens": 0}}), "\"budget.maxTokens\" must be a whole number of at least 1 or null, not the number 0"),
        (json!({"maxConsecutiveFailures": 0}), "\"maxConsecutiveFailures\" must be a whole number of at least 1, not the number 0"),
        (json!({"parallel": 0}), "\"parallel\" must be a whole number of at least 1, not the number 0"),
        (json!({"mergeRetries": "2"}), "\"mergeRetries\" must be a whole number of at least 1, not the string \"2\""),
        (json!({"stallRetries": "2"}), "\"stallRetries\" must be a whole number of at least 1 or null, not the string \"2\""),
        (json!({"checks": "cargo test"}), "\"checks\" must be a list of commands such as [[\"cargo\", \"test\"]], not the string \"cargo test\""),
        (json!({"checks": ["cargo test"]}), "\"checks[0]\" must be a command as an array of strings such as [\"cargo\", \"test\"] (never a shell string), not the string \"cargo test\""),
        (json!({"hooks": {"story_done": []}}), "\"hooks.story_done\" is not an event (events: story_passed, story_rejected, story_blocked, story_conflict, limit_wait, budget_stop, loop_complete, loop_stopped, run_recorded)"),
        (json!({"hooks": {"loop_complete": [[]]}}), "\"hooks.loop_complete[0]\" must be a command as an array of strings"),
        (json!({"autonomy": {"reviewer": "full"}}), "\"autonomy.reviewer\" is not a role (roles: generator, evaluator, planner)"),
        (json!({"sandbox": "yes"}), "\"sandbox\" must be true or false, not the string \"yes\""),
        (json!({"branch": "main"}), "\"branch\" must be true or false, not the string \"main\""),
    ];
    for (patch, message) in cases {
        let p = project_with(&patch);
        let before = p.snapshot();
        let out = p.aloop(&["run"]).run().code(1);
        assert!(out.stderr.contains(".loop/config.json is not a valid loop config:"), "{}", out.stderr);
        assert!(out.stderr.contains(message), "{patch}: {}", out.stderr);
        assert_eq!(p.snapshot(), before, "nothing written for {patch}");
    }
}

// ------------------------------------------------------------ iterate

/// A git project for iterate with the limiter adapter and a schedule.
fn iterate_project() -> Project {
    let p = Project::git().home_file("scripts/agents/limiter.rhai", LIMITER);
    p.aloop(&["iterate", "watch", "--interval", "1h", "--agent", "limiter"]).run().ok();
    p
}

fn iterate_with(p: &Project, args: &[&str], entries: &Value) -> Run {
    let plan = crate::story_loop::plan(p, entries);
    new_plan(p);
    p.aloop(args)
        .env("FAKE_AGENT_PLAN", &plan)
        .env("FAKE_AGENT_LOG", outside(p, "agents.jsonl"))
        .env("ALOOP_SLEEP_SCALE", "0")
        .env("ALOOP_NOW", NOW)
}

#[test]
fn iterate_tick_records_a_limit_and_the_next_tick_tries_again() {
    let p = iterate_project();
    let events = outside(&p, "events.txt");
    let hook = json!([[
        "sh",
        "-c",
        format!("printf '%s %s\\n' \"$ALOOP_EVENT_EVENT\" \"$ALOOP_EVENT_STATUS\" >> {}", events.display())
    ]]);
    let p =
        p.file(".loop/config.json", &json!({"hooks": {"run_recorded": hook}}).to_string()).commit("hooks");
    p.aloop(&["trust"]).run().ok();
    let entries = json!([limited(Some(NOW_UNIX + 3600)), {"write": {"x.txt": "x\n"}, "text": "Changed x."}]);
    let out = iterate_with(&p, &["iterate", "tick"], &entries).run().code(4);
    assert!(
        out.stderr.contains("limited: You've hit your limit, resets at 2026-12-02T11:00:00+00:00; a usage limit: the next cycle tries again"),
        "{}",
        out.stderr
    );
    assert!(lines_with(&out, "waiting").is_empty(), "a tick does not wait: {}", out.stderr);
    let status = p.aloop(&["iterate", "watch", "--status"]).env("ALOOP_NOW", NOW).run().ok();
    assert!(
        status.stdout.contains(" limited (a usage limit: the next cycle tries again)"),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("limit        You've hit your limit; resets at 2026-12-02T11:00:00+00:00: the next cycle tries again"),
        "{}",
        status.stdout
    );
    // The next tick (the plan's next entry) goes through.
    let plan = outside(&p, "plan.json");
    p.aloop(&["iterate", "tick"])
        .env("FAKE_AGENT_PLAN", &plan)
        .env("ALOOP_NOW", NOW)
        .run()
        .ok()
        .stderr_has("applied: 1 file changed");
    assert_eq!(std::fs::read_to_string(&events).unwrap(), "run_recorded limited\nrun_recorded applied\n");
}

#[test]
fn iterate_run_waits_out_a_limit_and_asks_again() {
    let p = iterate_project();
    let entries = json!([limited(None), {"write": {"x.txt": "x\n"}, "text": "Changed x."}]);
    let out =
        iterate_with(&p, &["iterate", "run", "--auto-apply", "--agent", "limiter"], &entries).run().ok();
    assert_eq!(
        lines_with(&out, "waiting"),
        ["waiting 5m, until 10:05 (no reset time given: backing off); Ctrl-C stops"],
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("the wait is over; asking limiter again"), "{}", out.stderr);
    assert!(out.stderr.contains("applied: 1 file changed"), "{}", out.stderr);
    assert_eq!(calls(&p).len(), 2);
}

#[test]
fn watch_in_the_foreground_stops_at_its_cost_budget() {
    let p = iterate_project();
    let entries = json!([{"write": {"x.txt": "x\n"}, "text": "Changed x."}, {"write": {"y.txt": "y\n"}, "text": "Changed y."}]);
    let out =
        iterate_with(&p, &["iterate", "watch", "--foreground", "--max-cost", "0.01"], &entries).run().code(5);
    assert!(
        out.stderr.contains(
            "warning: the cost budget of $0.0100 is reached ($0.0123 spent); stopping before the next cycle"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(calls(&p).len(), 1);
    p.aloop(&["iterate", "watch", "--max-cost", "1"])
        .run()
        .code(2)
        .stderr_has("--max-cost and --max-time go with --foreground");
}

// ------------------------------------------------------------ init

#[test]
fn init_suggests_the_checks_it_detects_and_trusts_the_config_it_writes() {
    let p = Project::git().file("Cargo.toml", "[package]\nname = \"x\"\n").file("go.mod", "module x\n");
    let out = p.aloop(&["init"]).run().ok();
    assert!(
        out.stderr.contains(
            "checks aloop could run after each generator call (add to \"checks\" in .loop/config.json, then `aloop trust`):\n  \
             [\"cargo\",\"test\"]    (Cargo.toml)\n  [\"go\",\"test\",\"./...\"]    (go.mod)\n"
        ),
        "{}",
        out.stderr
    );
    let config = json_file(&p, ".loop/config.json");
    assert_eq!(config["checks"], json!([]), "suggested, never added");
    assert_eq!(config["limits"], json!({"wait": true, "maxWaitMinutes": 360}));
    assert_eq!(config["autonomy"], json!({"generator": "full", "evaluator": "full", "planner": "edit"}));
    let listed = p.aloop(&["trust", "--list"]).run().ok();
    assert!(
        listed.stdout.lines().any(|l| l.contains("config.json") && l.ends_with("trusted")),
        "{}",
        listed.stdout
    );
    let ignored = p.read(".loop/.gitignore");
    for private in [".loop.lock", ".prd.lock", ".verdict", "runs.jsonl"] {
        assert!(ignored.lines().any(|l| l == private), "{ignored}");
    }
    assert!(
        !ignored.lines().any(|l| l == "prd.json" || l == "progress.md"),
        "the shared record is committed"
    );
}

#[test]
fn on_a_terminal_the_wait_is_a_live_countdown() {
    let p = iterate_project();
    let plan = crate::story_loop::plan(
        &p,
        &json!([limited(None), {"write": {"x.txt": "x\n"}, "text": "Changed x."}]),
    );
    let plan = plan.display().to_string();
    let (code, shown) = crate::iterate::on_terminal(
        &p,
        "iterate run --auto-apply --agent limiter",
        "",
        &[("FAKE_AGENT_PLAN", &plan), ("ALOOP_SLEEP_SCALE", "0"), ("ALOOP_NOW", NOW)],
    );
    assert_eq!(code, 0, "{shown}");
    let line = |left: &str| {
        format!("\r\x1b[2K  waiting for the limit to reset: {left} left (until 10:05; Ctrl-C to stop)")
    };
    for left in ["5m", "4m59s", "2m30s", "1s"] {
        assert!(shown.contains(&line(left)), "no countdown line for {left}: {shown:?}");
    }
    assert!(!shown.contains("still waiting"), "no log lines on a terminal: {shown}");
    assert!(
        shown.contains("1s left (until 10:05; Ctrl-C to stop)\r\x1b[2K"),
        "the line is cleared after: {shown:?}"
    );
    assert!(shown.contains("applied: 1 file changed"), "{shown}");
}

#[test]
fn hooks_hear_a_limit_wait_and_a_budget_stop() {
    let p = project_with(&json!({"agent": "limiter", "budget": {"maxCostUsd": 0.02}}));
    let events = outside(&p, "events.txt");
    let record = json!([["sh", "-c", format!(
        "printf '%s %s %s\\n' \"$ALOOP_EVENT_EVENT\" \"$ALOOP_EVENT_WAIT_SECONDS\" \"$ALOOP_EVENT_EXIT_CODE\" >> {}",
        events.display()
    )]]);
    set_config(&p, &json!({"hooks": {"limit_wait": record, "budget_stop": record, "loop_stopped": record}}));
    p.aloop(&["trust"]).run().ok();
    let entries = json!([limited(Some(NOW_UNIX + 120)), builds("US-001", "a.txt"), rejects("not yet")]);
    let out = overnight(&p, &["run"], &entries).run().code(5);
    assert!(out.stderr.contains("the cost budget of $0.0200 is reached ($0.0246 spent)"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(&events).unwrap(),
        "limit_wait 180 \nbudget_stop  \nloop_stopped  5\n"
    );
}

#[test]
fn a_bad_sleep_scale_is_refused_by_name() {
    let p = Project::git().file("nap.rhai", "time::sleep(1);\nprint(\"awake\");\n");
    p.aloop(&["exec", "./nap.rhai"]).env("ALOOP_SLEEP_SCALE", "0").run().ok().stdout_is("awake\n");
    p.aloop(&["exec", "./nap.rhai"])
        .env("ALOOP_SLEEP_SCALE", "fast")
        .run()
        .code(1)
        .stderr_has("ALOOP_SLEEP_SCALE='fast' is not a number between 0 and 1");
}

#[test]
fn the_record_is_committed_before_the_run_and_an_ignored_loop_dir_only_warns() {
    let p = project_with(&json!({}));
    std::fs::write(p.path(".loop/progress.md"), "# Progress\n\nedited by hand\n").unwrap();
    run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    let log = p.git_cmd(&["log", "--format=%s"]);
    assert_eq!(
        log.lines().take(3).collect::<Vec<_>>(),
        ["aloop: US-001 PASS", "feat: US-001", "aloop: the loop's record before the run"]
    );
    assert_eq!(p.git_cmd(&["status", "--porcelain"]), "");

    let q = Project::git()
        .file(".gitignore", ".loop/\n")
        .fixture("loop/config.json", ".loop/config.json")
        .fixture("loop/prd.json", ".loop/prd.json")
        .commit("ignore the loop");
    let out = run_with(&q, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    let warned = out
        .stderr
        .lines()
        .filter(|l| l.contains("will not be committed") || l.contains("could not commit"))
        .count();
    assert_eq!(warned, 1, "{}", out.stderr);
    assert!(out.stderr.contains("US-001 PASSED"), "{}", out.stderr);
    assert_eq!(q.git_cmd(&["log", "--format=%s"]).lines().next(), Some("feat: US-001"));
}

#[test]
fn a_hook_that_hangs_is_stopped_at_its_timeout_and_the_loop_goes_on() {
    let p = project_with(&json!({}));
    let mut config = json_file(&p, ".loop/config.json");
    config["timeouts"]["hooks"] = json!(1);
    config["hooks"] = json!({"story_passed": [["sleep", "30"]]});
    std::fs::write(p.path(".loop/config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    p.aloop(&["trust"]).run().ok();
    let start = std::time::Instant::now();
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    assert!(start.elapsed() < std::time::Duration::from_secs(25), "the hook did not hold the loop up");
    assert!(
        out.stderr.contains("warning: the story_passed hook sleep 30 failed (timed out after 1s); going on"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Loop Complete"), "{}", out.stderr);
}

#[test]
fn a_broken_runs_jsonl_line_is_skipped_when_adding_up() {
    let p = project_with(&json!({}));
    let line = |cost: f64| {
        json!({"status": "ok", "cost_usd": cost, "input_tokens": 10, "output_tokens": 5, "duration_ms": 2000})
            .to_string()
    };
    std::fs::write(
        p.path(".loop/runs.jsonl"),
        format!("{}\n{{\"status\": \"ok\", \"cost\n{}\n", line(0.5), line(0.25)),
    )
    .unwrap();
    p.aloop(&["status"]).run().ok().stdout_has("spent: $0.7500, 30 tokens, 4s in 2 agent calls\n");
}

#[test]
fn in_explore_mode_a_generator_that_changes_nothing_is_still_evaluated() {
    let p = project_with(&json!({"mode": "explore"}));
    let out = run_with(&p, &["run", "1"], &json!([{"text": "Explored."}, passes()])).code(2);
    assert!(!out.stderr.contains("changed nothing"), "{}", out.stderr);
    assert_eq!(calls(&p).len(), 2, "the evaluator ran");
}
