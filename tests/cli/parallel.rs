//! `aloop run --parallel N`: stories worked on side by side, each in a git
//! worktree of its own, merged back in priority order; conflicts, dependsOn,
//! Ctrl-C, usage limits and budgets across the workers, and `aloop status`
//! showing them. Real git repositories and the fake agents, whose plans are
//! keyed by the worktree they run in (`by_worktree`) and who log when each
//! call started and ended (`FAKE_AGENT_TIMES`).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::overnight::{limited, overnight, project_with, NOW_UNIX};
use crate::story_loop::{json_file, loop_project, outside, passes, runs, story, with_fakes};
use crate::support::{assert_no_survivors, marker, KillOnDrop, Project, Run};

/// One agent call as the fake logged it: the story (the worktree's name),
/// and when it started and ended (unix seconds).
#[derive(Debug)]
struct Call {
    story: String,
    cwd: String,
    start: f64,
    end: Option<f64>,
}

fn times(p: &Project) -> Vec<Call> {
    let text = std::fs::read_to_string(outside(p, "times.jsonl")).unwrap_or_default();
    let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Each call is logged when it starts and again when it ends.
    let mut calls: Vec<Call> = Vec::new();
    for record in records {
        let cwd = record["cwd"].as_str().unwrap().to_string();
        let start = record["start"].as_f64().unwrap();
        if let Some(end) = record["end"].as_f64() {
            let call = calls.iter_mut().find(|c| c.cwd == cwd && (c.start - start).abs() < 1e-9).unwrap();
            call.end = Some(end);
        } else {
            let story = cwd.rsplit('/').next().unwrap().to_string();
            calls.push(Call { story, cwd, start, end: None });
        }
    }
    calls
}

/// The calls of one story, in the order they started.
fn calls_of<'a>(calls: &'a [Call], story: &str) -> Vec<&'a Call> {
    let mut of: Vec<&Call> = calls.iter().filter(|c| c.story == story).collect();
    of.sort_by(|a, b| a.start.total_cmp(&b.start));
    of
}

/// `aloop ARGS` with the fakes following a plan per worktree.
fn parallel(p: &Project, args: &[&str], plans: &Value) -> Run {
    with_fakes(p, args, &json!({ "by_worktree": plans })).env("FAKE_AGENT_TIMES", outside(p, "times.jsonl"))
}

/// A generator call that writes `file` and commits it, after `sleep` seconds.
fn builds_slowly(id: &str, file: &str, contents: &str, sleep: f64) -> Value {
    json!({"write": {file: contents}, "commit": format!("feat: {id}"), "text": format!("Implemented {id}."), "sleep": sleep})
}

fn merge_subjects(p: &Project) -> Vec<String> {
    p.git_cmd(&["log", "--merges", "--reverse", "--format=%s"]).lines().map(String::from).collect()
}

fn branches(p: &Project) -> Vec<String> {
    p.git_cmd(&["branch", "--format=%(refname:short)"]).lines().map(String::from).collect()
}

/// What is in .loop/worktrees (besides its .gitignore).
fn worktrees(p: &Project) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(p.path(".loop/worktrees")) else { return Vec::new() };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".gitignore")
        .collect();
    names.sort();
    names
}

fn notes(p: &Project, id: &str) -> String {
    story(&json_file(p, ".loop/prd.json"), id)["notes"].as_str().unwrap_or_default().to_string()
}

/// A loop project whose US-001 and US-002 both rewrite the one line of same.txt.
fn same_line_project() -> Project {
    loop_project("prd.json").file("same.txt", "zero\n").commit("add same.txt")
}

#[test]
fn stories_run_side_by_side_in_worktrees_and_merge_in_priority_order() {
    let p = loop_project("prd.json");
    let out = parallel(
        &p,
        &["run", "--parallel", "3"],
        &json!({
            "US-001": [builds_slowly("US-001", "a.txt", "a\n", 1.5), passes()],
            "US-002": [builds_slowly("US-002", "b.txt", "b\n", 1.0), passes()],
            "US-003": [builds_slowly("US-003", "c.txt", "c\n", 0.2), passes()],
        }),
    )
    .run()
    .ok();
    assert!(out
        .stderr
        .contains("  Parallel: up to 3 stories at once, each in a worktree under .loop/worktrees/"));
    assert!(
        out.stderr.contains("  working in .loop/worktrees/US-002 on branch loop/csvtool-US-002"),
        "{}",
        out.stderr
    );
    let calls = times(&p);
    let generators: Vec<&Call> =
        ["US-001", "US-002", "US-003"].iter().map(|id| calls_of(&calls, id)[0]).collect();
    let last_start = generators.iter().map(|c| c.start).fold(f64::MIN, f64::max);
    let first_end = generators.iter().map(|c| c.end.unwrap()).fold(f64::MAX, f64::min);
    assert!(last_start < first_end, "the three generators ran at the same time: {calls:?}");
    for call in &calls {
        let expected = p.root().join(".loop/worktrees").join(&call.story);
        assert_eq!(std::path::Path::new(&call.cwd), expected, "each story's agents work in its worktree");
    }
    // US-003 was done first, but merges come in priority order.
    assert_eq!(
        merge_subjects(&p),
        [
            "aloop: merge US-001 — Parse a CSV header",
            "aloop: merge US-002 — Convert rows to JSON objects",
            "aloop: merge US-003 — Print usage on --help"
        ]
    );
    for (file, contents) in [("a.txt", "a\n"), ("b.txt", "b\n"), ("c.txt", "c\n")] {
        p.file_is(file, contents);
    }
    let prd = json_file(&p, ".loop/prd.json");
    assert!(prd["userStories"].as_array().unwrap().iter().all(|s| s["passes"] == true));
    assert!(worktrees(&p).is_empty(), "finished worktrees are removed: {:?}", worktrees(&p));
    assert!(branches(&p).iter().all(|b| !b.contains("US-")), "{:?}", branches(&p));
    assert!(!p.exists(".loop/workers.json"));
    assert!(p.git_cmd(&["status", "--porcelain"]).is_empty(), "the project is left clean");
}

#[test]
fn a_conflicting_story_goes_back_to_open_and_is_redone_on_the_new_head() {
    let p = same_line_project();
    let out = parallel(
        &p,
        &["run", "9", "--parallel", "3"],
        &json!({
            "US-001": [builds_slowly("US-001", "same.txt", "one\n", 1.0), passes()],
            "US-002": [
                builds_slowly("US-002", "same.txt", "two\n", 0.0), passes(),
                builds_slowly("US-002", "same.txt", "one\ntwo\n", 0.0), passes(),
            ],
            "US-003": [builds_slowly("US-003", "c.txt", "c\n", 0.0), passes()],
        }),
    )
    .run()
    .ok();
    let conflict =
        "its work passed but merging it conflicted with US-001 (in same.txt); redo it on the new HEAD";
    assert!(out.stderr.contains(&format!("warning: US-002 NOT MERGED — {conflict}")), "{}", out.stderr);
    assert_eq!(notes(&p, "US-002"), format!("[CONFLICT] {conflict}"));
    assert_eq!(
        story(&json_file(&p, ".loop/prd.json"), "US-002")["rejections"],
        0,
        "a conflict is no rejection"
    );
    assert_eq!(calls_of(&times(&p), "US-002").len(), 4, "US-002 was done again");
    p.file_is("same.txt", "one\ntwo\n");
    p.file_is("c.txt", "c\n");
    // US-002 had not passed once its merge failed: US-003 did not wait for it.
    assert_eq!(
        merge_subjects(&p),
        [
            "aloop: merge US-001 — Parse a CSV header",
            "aloop: merge US-003 — Print usage on --help",
            "aloop: merge US-002 — Convert rows to JSON objects"
        ]
    );
    assert!(p.read(".loop/progress.md").contains("Verdict: CONFLICT"));
}

#[test]
fn a_story_that_keeps_conflicting_is_blocked_and_nothing_merged_is_lost() {
    let p = same_line_project();
    let mut config = json_file(&p, ".loop/config.json");
    config["mergeRetries"] = json!(1);
    std::fs::write(p.path(".loop/config.json"), config.to_string()).unwrap();
    let out = parallel(
        &p,
        &["run", "9", "--parallel", "2"],
        &json!({
            "US-001": [builds_slowly("US-001", "same.txt", "one\n", 1.0), passes()],
            "US-002": [builds_slowly("US-002", "same.txt", "two\n", 0.0), passes()],
            "US-003": [builds_slowly("US-003", "c.txt", "c\n", 0.0), passes()],
        }),
    )
    .run()
    .code(3);
    assert!(
        out.stderr.contains("warning: US-002 BLOCKED — merging its work conflicted 1 time(s), needs human review (aloop triage)"),
        "{}",
        out.stderr
    );
    let prd = json_file(&p, ".loop/prd.json");
    assert_eq!(story(&prd, "US-002")["blocked"], true);
    assert!(notes(&p, "US-002").ends_with(" [BLOCKED]"));
    // What passed is all on the loop branch.
    p.file_is("same.txt", "one\n");
    p.file_is("c.txt", "c\n");
    assert_eq!(
        (story(&prd, "US-001")["passes"].clone(), story(&prd, "US-003")["passes"].clone()),
        (json!(true), json!(true))
    );
}

#[test]
fn a_story_waits_in_a_parallel_run_until_what_it_depends_on_has_passed() {
    // US-001 depends on US-003.
    let p = loop_project("prd_depends.json");
    parallel(
        &p,
        &["run", "--parallel", "3", "--keep-worktrees"],
        &json!({
            "US-001": [builds_slowly("US-001", "a.txt", "a\n", 0.0), passes()],
            "US-002": [builds_slowly("US-002", "b.txt", "b\n", 1.0), passes()],
            "US-003": [builds_slowly("US-003", "c.txt", "c\n", 0.5), passes()],
        }),
    )
    .run()
    .ok();
    let calls = times(&p);
    let us001 = calls_of(&calls, "US-001")[0].start;
    let us003_done = calls_of(&calls, "US-003")[1].end.unwrap();
    assert!(us001 >= us003_done, "US-001 started only once US-003 had passed: {calls:?}");
    let us002 = calls_of(&calls, "US-002")[0];
    assert!(us002.start < us003_done, "US-002 did not wait: {calls:?}");
    // --keep-worktrees: every worktree and branch is still there.
    assert_eq!(worktrees(&p), ["US-001", "US-002", "US-003"]);
    for id in ["US-001", "US-002", "US-003"] {
        assert!(branches(&p).contains(&format!("loop/csvtool-{id}")), "{:?}", branches(&p));
    }
}

/// Waits until the fakes have started `n` calls.
fn wait_for_calls(p: &Project, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while times(p).len() < n {
        assert!(Instant::now() < deadline, "only {} calls started", times(p).len());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn status_shows_the_workers_and_ctrl_c_stops_them_all_keeping_unsaved_work() {
    let p = loop_project("prd.json");
    let mark = marker("parallel-int");
    let _cleanup = KillOnDrop(mark.clone());
    let prd = p.read(".loop/prd.json");
    let child = parallel(
        &p,
        &["run", "--parallel", "2"],
        &json!({
            "US-001": [{"write": {"a.txt": "half done\n"}, "hang": true}],
            "US-002": [{"mode": "hang"}],
        }),
    )
    .env("ALOOP_TEST_MARKER", &mark)
    .spawn();
    wait_for_calls(&p, 2);

    let status = p.aloop(&["status", "--json"]).run().ok().json();
    let workers = status["workers"].as_array().unwrap();
    let mut shown: Vec<(String, String, String, String)> = workers
        .iter()
        .map(|w| {
            let field = |k: &str| w[k].as_str().unwrap().to_string();
            (field("story"), field("role"), field("state"), field("worktree"))
        })
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [
            ("US-001".into(), "generator".into(), "running".into(), ".loop/worktrees/US-001".into()),
            ("US-002".into(), "generator".into(), "running".into(), ".loop/worktrees/US-002".into()),
        ]
    );
    let text = p.aloop(&["status"]).run().ok();
    assert!(text.stdout.contains("workers (2):"), "{}", text.stdout);

    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    for part in [
        "the generator of US-001 (iteration 1/5)",
        "the generator of US-002 (iteration 2/5)",
        "no verdict was recorded for them",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert!(
        stderr.contains("warning: US-001: 1 uncommitted change(s) kept in .loop/worktrees/US-001 (branch loop/csvtool-US-001)"),
        "{stderr}"
    );
    let statuses: Vec<Value> = runs(&p).iter().map(|r| r["status"].clone()).collect();
    assert_eq!(statuses, ["interrupted", "interrupted"]);
    assert_eq!(p.read(".loop/prd.json"), prd, "no verdict was recorded");
    p.file_is(".loop/worktrees/US-001/a.txt", "half done\n");
    assert_eq!(worktrees(&p), ["US-001"], "the worktree without work is removed");
    assert!(!branches(&p).contains(&"loop/csvtool-US-002".to_string()), "{:?}", branches(&p));
    assert!(!p.exists(".loop/workers.json"));
    assert_no_survivors(&mark);
    // A new run leaves the kept work alone and works beside it.
    let again = parallel(&p, &["run", "1", "--parallel", "2", "--dry-run"], &json!({})).run().ok();
    assert!(again.stdout.contains("===== generator prompt — US-001"), "{}", again.stdout);
}

#[test]
fn a_usage_limit_pauses_new_starts_until_the_running_calls_end_then_waits_once() {
    let p = project_with(&json!({"agent": "limiter", "parallel": 2}));
    let out = overnight(
        &p,
        &["run"],
        &json!({"by_worktree": {
            "US-001": [limited(Some(NOW_UNIX + 600)), builds_slowly("US-001", "a.txt", "a\n", 0.0), passes()],
            "US-002": [builds_slowly("US-002", "b.txt", "b\n", 2.0), passes()],
            "US-003": [builds_slowly("US-003", "c.txt", "c\n", 0.0), passes()],
        }}),
    )
    .run()
    .ok();
    let lines: Vec<&str> = out.stderr.lines().map(str::trim).collect();
    let at = |text: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(text))
            .unwrap_or_else(|| panic!("no {text:?} in\n{}", out.stderr))
    };
    let limit = at("warning: the generator hit a usage limit");
    let us002_generated = at("US-002 generator (limiter): ok");
    let wait = at("waiting 11m, until 10:11 (when it resets)");
    let over = at("the wait is over; running the generator of US-001, the evaluator of US-002 again");
    let us003 = at("Iteration 3/5 — US-003");
    assert!(
        limit < us002_generated && us002_generated < wait && wait < over && over < us003,
        "{}",
        out.stderr
    );
    assert_eq!(lines.iter().filter(|l| l.starts_with("waiting ")).count(), 1, "one wait for the run");
    let statuses: Vec<String> = runs(&p).iter().map(|r| r["status"].as_str().unwrap().to_string()).collect();
    assert_eq!(statuses.iter().filter(|s| *s == "limited").count(), 1);
    assert_eq!(statuses.len(), 7);
}

#[test]
fn a_budget_stops_new_stories_while_the_running_ones_finish() {
    let p = loop_project("prd.json");
    let out = parallel(
        &p,
        &["run", "--parallel", "2", "--max-cost", "0.02"],
        &json!({
            "US-001": [builds_slowly("US-001", "a.txt", "a\n", 0.0), passes()],
            "US-002": [builds_slowly("US-002", "b.txt", "b\n", 0.5), passes()],
            "US-003": [builds_slowly("US-003", "c.txt", "c\n", 0.0), passes()],
        }),
    )
    .run()
    .code(5);
    assert!(out.stderr.contains("stopping before the next call"), "{}", out.stderr);
    let prd = json_file(&p, ".loop/prd.json");
    assert_eq!(story(&prd, "US-001")["passes"], true);
    assert_eq!(story(&prd, "US-002")["passes"], true, "a running story finishes");
    assert!(calls_of(&times(&p), "US-003").is_empty(), "no new story starts");
}

#[test]
fn a_worktrees_dir_that_is_a_link_out_of_the_project_is_refused() {
    let p = loop_project("prd.json");
    let elsewhere = outside(&p, "elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, p.path(".loop/worktrees")).unwrap();
    let out = parallel(&p, &["run", "--parallel", "2"], &json!({})).run().code(1);
    assert!(out.stderr.contains(".loop/worktrees"), "{}", out.stderr);
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0, "nothing was written through the link");
    assert!(times(&p).is_empty(), "no agent ran");
}
