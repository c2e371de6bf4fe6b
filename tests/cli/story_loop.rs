//! The story loop (`aloop init`, `plan`, `run`, `triage`, `status`): real git
//! repositories, the bundled scripts and prompts, and fake agents scripted
//! call by call with `FAKE_AGENT_PLAN`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{Output, Project, Run};

const GITIGNORE: &str = ".loop.lock\n.prd.lock\n.verdict\nruns.jsonl\nprd.draft.json\nprd.invalid.json\n";

/// A git repository with the loop set up: config.json and a prd.json from
/// `tests/fixtures/loop`, committed.
pub(crate) fn loop_project(prd_fixture: &str) -> Project {
    Project::git()
        .fixture("loop/config.json", ".loop/config.json")
        .fixture(&format!("loop/{prd_fixture}"), ".loop/prd.json")
        .file(".loop/.gitignore", GITIGNORE)
        .file(".loop/progress.md", "# Progress\n\n## Codebase Patterns\n\n---\n")
        .commit("set up the loop")
}

pub(crate) fn json_file(p: &Project, rel: &str) -> Value {
    serde_json::from_str(&p.read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid JSON: {e}"))
}

fn fixture_json(rel: &str) -> Value {
    serde_json::from_slice(&std::fs::read(crate::support::fixture(rel)).unwrap()).unwrap()
}

pub(crate) fn story<'a>(prd: &'a Value, id: &str) -> &'a Value {
    prd["userStories"].as_array().unwrap().iter().find(|s| s["id"] == id).expect("story exists")
}

/// Outside the work tree, so agents' `git add -A` never sees them.
pub(crate) fn outside(p: &Project, name: &str) -> PathBuf {
    p.root().parent().unwrap().join(name)
}

/// Writes the fake agents' per-call plan and returns its path.
pub(crate) fn plan(p: &Project, entries: &Value) -> PathBuf {
    let path = outside(p, "plan.json");
    std::fs::write(&path, serde_json::to_vec(&entries).unwrap()).unwrap();
    path
}

/// Every call the fake agents received.
pub(crate) fn calls(p: &Project) -> Vec<Value> {
    match std::fs::read_to_string(outside(p, "agents.jsonl")) {
        Ok(text) => text.lines().map(|l| serde_json::from_str(l).expect("log line is JSON")).collect(),
        Err(_) => Vec::new(),
    }
}

/// `aloop ARGS`, ready to run, with the fake agents following `entries`.
/// (`IS_SANDBOX`: like the real claude, the fake refuses full autonomy as
/// root elsewhere, and test machines often run as root.)
pub(crate) fn with_fakes(p: &Project, args: &[&str], entries: &Value) -> Run {
    let plan = plan(p, entries);
    p.aloop(args)
        .env("FAKE_AGENT_PLAN", &plan)
        .env("FAKE_AGENT_LOG", outside(p, "agents.jsonl"))
        .env("IS_SANDBOX", "1")
}

/// `aloop ARGS` with the fake agents following `entries`, run to the end.
pub(crate) fn run_with(p: &Project, args: &[&str], entries: &Value) -> Output {
    with_fakes(p, args, entries).run()
}

/// A generator call that writes a file and commits it.
pub(crate) fn builds(id: &str, file: &str) -> Value {
    json!({"write": {file: format!("work for {id}\n")}, "commit": format!("feat: {id}"), "text": format!("Implemented {id}.")})
}

pub(crate) fn passes() -> Value {
    json!({"text": "Checked the diff and ran the tests.\n<verdict>PASS</verdict>"})
}

pub(crate) fn rejects(reason: &str) -> Value {
    json!({"text": format!("<verdict>REJECT</verdict>\n<rejection_reason>{reason}</rejection_reason>")})
}

/// The story of each "Iteration i/n — ID: title" line, in order.
pub(crate) fn iteration_order(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("Iteration "))
        .filter_map(|l| l.split(" — ").nth(1)?.split(':').next())
        .collect()
}

pub(crate) fn progress_verdicts(p: &Project) -> Vec<String> {
    p.read(".loop/progress.md")
        .lines()
        .filter_map(|l| l.strip_prefix("Verdict: ").map(str::to_string))
        .collect()
}

pub(crate) fn runs(p: &Project) -> Vec<Value> {
    p.read(".loop/runs.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("runs.jsonl line is JSON"))
        .collect()
}

// ---------------------------------------------------------------- status

#[test]
fn status_prints_passed_total_and_the_next_story() {
    let p = loop_project("prd_mixed.json");
    p.aloop(&["status"])
        .run()
        .ok()
        .stdout_has("1/4 stories pass, 1 blocked")
        .stdout_has("next: US-004 — Read from stdin");
}

#[test]
fn status_json_is_one_document_with_counts_and_states() {
    let p = loop_project("prd_mixed.json");
    let doc = p.aloop(&["status", "--json"]).run().ok().json();
    assert_eq!(
        (doc["passed"].as_i64(), doc["total"].as_i64(), doc["blocked"].as_i64()),
        (Some(1), Some(4), Some(1))
    );
    assert_eq!(doc["next"]["id"], "US-004");
    let states: Vec<&str> =
        doc["stories"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["complete", "blocked", "in progress", "not started"]);
}

#[test]
fn status_without_a_prd_says_to_plan() {
    let p = Project::git();
    p.aloop(&["status"]).run().code(1).stderr_has("no .loop/prd.json").stderr_has("aloop plan");
}

// ---------------------------------------------------------------- triage

#[test]
fn triage_prints_the_table_and_writes_the_brief() {
    let p = loop_project("prd_mixed.json");
    let out = p.aloop(&["triage"]).run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("Title") && lines[0].ends_with("Notes"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("US-002  Convert rows to JSON objects  blocked      2"), "{}", out.stdout);
    assert!(out.stdout.contains("in progress  1           [REJECTED] --help exits 1"), "{}", out.stdout);
    assert!(out.stdout.contains("not started"), "{}", out.stdout);
    let brief = p.read(".loop/triage/TRIAGE_BRIEF.md");
    for part in [
        "Mode: implement",
        "Complete: 1 · In progress: 1 · Blocked: 1 · Not started: 1 · Total: 4",
        "| US-002 | Convert rows to JSON objects | blocked | 2 |",
        "- still no test for quoted fields",
        "`aloop triage --unblock US-002`",
        "`aloop run --story US-003`",
        "`aloop run` continues with **US-004**",
    ] {
        assert!(brief.contains(part), "brief lacks {part:?}:\n{brief}");
    }
    assert!(brief.contains("\nDate: 20"), "{brief}");
}

#[test]
fn triage_json_has_the_counts_and_every_storys_row() {
    let p = loop_project("prd_mixed.json");
    let triage = p.aloop(&["triage", "--json"]).run().ok().json();
    assert_eq!(
        triage["counts"],
        json!({"complete": 1, "inProgress": 1, "blocked": 1, "notStarted": 1, "total": 4})
    );
    let rows = triage["stories"].as_array().unwrap();
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[1]["id"], "US-002");
    assert_eq!(rows[1]["status"], "blocked");
    assert_eq!(rows[1]["rejections"], 2);
    assert_eq!(rows[2]["status"], "in progress");
    assert!(rows[2]["lastNote"].as_str().unwrap().starts_with("[REJECTED] --help exits 1"), "{}", rows[2]);
    assert_eq!(triage["brief"], ".loop/triage/TRIAGE_BRIEF.md");
    assert!(p.exists(".loop/triage/TRIAGE_BRIEF.md"));
}

#[test]
fn triage_unblock_clears_blocked_and_rejections_and_keeps_the_rest() {
    let p = loop_project("prd_mixed.json");
    p.aloop(&["triage", "--unblock", "US-002"]).run().ok().stderr_has("US-002 is unblocked");
    let before = fixture_json("loop/prd_mixed.json");
    let after = json_file(&p, ".loop/prd.json");
    let us2 = story(&after, "US-002");
    assert_eq!((us2["blocked"].clone(), us2["rejections"].clone()), (json!(false), json!(0)));
    assert_eq!(us2["notes"], story(&before, "US-002")["notes"], "the feedback stays");
    for id in ["US-001", "US-003", "US-004"] {
        assert_eq!(story(&after, id), story(&before, id));
    }
    let text = p.read(".loop/prd.json");
    assert!(
        text.find("\"project\"").unwrap() < text.find("\"userStories\"").unwrap(),
        "key order kept:\n{text}"
    );
    p.aloop(&["status"]).run().ok().stdout_has("next: US-002");
}

#[test]
fn triage_unblock_of_an_unknown_story_changes_nothing() {
    let p = loop_project("prd_mixed.json");
    let before = p.snapshot();
    p.aloop(&["triage", "--unblock", "US-999"])
        .run()
        .code(1)
        .stderr_has("no story \"US-999\"")
        .stderr_has("US-001, US-002");
    assert_eq!(p.snapshot(), before);
}

// ---------------------------------------------------------------- run, Step 0

#[test]
fn run_without_a_config_says_to_init() {
    let p = Project::git().fixture("loop/prd.json", ".loop/prd.json");
    let before = p.snapshot();
    p.aloop(&["run"]).run().code(1).stderr_has("no .loop/config.json").stderr_has("aloop init");
    assert_eq!(p.snapshot(), before);
}

#[test]
fn run_without_a_prd_says_to_plan() {
    let p = Project::git().fixture("loop/config.json", ".loop/config.json");
    p.aloop(&["run"]).run().code(1).stderr_has("no .loop/prd.json").stderr_has("aloop plan");
}

#[test]
fn run_refuses_a_prd_with_the_wrong_top_level_key_and_changes_nothing() {
    let p = loop_project("prd_wrong_key.json");
    let before = p.snapshot();
    let out = p.aloop(&["run"]).run().code(1);
    assert!(out.stderr.contains("found \"sprints\" but no \"userStories\""), "{}", out.stderr);
    assert_eq!(p.snapshot(), before, "nothing is fixed automatically");
    assert!(calls(&p).is_empty());
}

#[test]
fn run_names_every_bad_story_field() {
    let p = loop_project("prd_bad_stories.json");
    let before = p.snapshot();
    let out = p.aloop(&["run"]).run().code(1);
    for part in [
        "userStories[1] (US-002): \"title\" is missing",
        "userStories[1] (US-002): \"passes\" must be true or false, not the string \"no\"",
        "userStories[1] (US-002): \"priority\" must be a whole number, not the string \"high\"",
        "userStories[2]: \"id\" is missing (a non-empty string)",
        "the id \"US-001\" is used by more than one story",
    ] {
        assert!(out.stderr.contains(part), "stderr lacks {part:?}\n{}", out.stderr);
    }
    assert!(!out.stderr.contains("userStories[0]"), "{}", out.stderr);
    assert_eq!(p.snapshot(), before);
}

#[test]
fn run_reports_a_malformed_prd_with_line_and_column() {
    let p = loop_project("prd.json")
        .file(".loop/prd.json", "{\n  \"userStories\": [\n    {\"id\": \"US-001\",}\n  ]\n}\n");
    let before = p.snapshot();
    p.aloop(&["run"]).run().code(1).stderr_has(".loop/prd.json:3:").stderr_has("fix the file by hand");
    assert_eq!(p.snapshot(), before);
}

#[test]
fn run_reports_config_mistakes_by_key() {
    let p = loop_project("prd.json");
    let mut config = json_file(&p, ".loop/config.json");
    config["maxIterations"] = json!("20");
    config["scopeBudgets"]["implement"]["maxLinesToWrite"] = json!(-1);
    let p = p.file(".loop/config.json", &serde_json::to_string_pretty(&config).unwrap());
    let out = p.aloop(&["run"]).run().code(1);
    assert!(
        out.stderr.contains("\"maxIterations\" must be a whole number of at least 1, not the string \"20\""),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("\"scopeBudgets.implement.maxLinesToWrite\" must be a whole number, not the number -1"),
        "{}",
        out.stderr
    );
}

#[test]
fn run_needs_a_git_repository() {
    let p = Project::new()
        .fixture("loop/config.json", ".loop/config.json")
        .fixture("loop/prd.json", ".loop/prd.json");
    p.aloop(&["run"]).run().code(1).stderr_has("needs a git repository");
}

#[test]
fn run_refuses_an_unknown_story() {
    let p = loop_project("prd.json");
    p.aloop(&["run", "--story", "US-404"])
        .run()
        .code(1)
        .stderr_has("no story \"US-404\"")
        .stderr_has("US-001, US-002, US-003");
}

#[test]
fn run_needs_the_prompts_of_its_mode() {
    let p = loop_project("prd.json");
    let mut config = json_file(&p, ".loop/config.json");
    config["mode"] = json!("audit");
    config["scopeBudgets"]["audit"] =
        json!({"maxFilesToRead": 1, "maxLinesToWrite": 0, "maxFilesToModify": 0});
    let p = p.file(".loop/config.json", &serde_json::to_string_pretty(&config).unwrap());
    p.aloop(&["run"]).run().code(1).stderr_has("no prompt template for generator/audit, evaluator/audit");
}

// ---------------------------------------------------------------- init

#[test]
fn init_writes_config_gitignore_and_progress_and_keeps_an_existing_config() {
    let p = Project::git();
    p.aloop(&["init"]).run().ok().stderr_has("wrote .loop/config.json").stderr_has("aloop plan");
    let config = json_file(&p, ".loop/config.json");
    assert_eq!(config["agent"], "claude");
    assert_eq!(config["evaluatorAgent"], Value::Null);
    assert_eq!(config["mode"], "implement");
    assert_eq!((config["maxIterations"].as_i64(), config["evalRetries"].as_i64()), (Some(20), Some(2)));
    assert_eq!(config["skipEval"], false);
    assert_eq!(
        config["scopeBudgets"]["explore"],
        json!({"maxFilesToRead": 15, "maxLinesToWrite": 0, "maxFilesToModify": 0})
    );
    for key in ["implement", "fix"] {
        assert!(config["scopeBudgets"][key]["maxFilesToModify"].as_i64().unwrap() > 0);
    }
    assert!(config["timeouts"]["generator"].as_i64().unwrap() > 0);
    let text = p.read(".loop/config.json");
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(
        at("agent") < at("mode") && at("mode") < at("maxIterations") && at("timeouts") < at("scopeBudgets"),
        "{text}"
    );
    assert!(p.read(".loop/.gitignore").lines().any(|l| l == ".loop.lock"));
    let progress = p.read(".loop/progress.md");
    assert!(progress.starts_with("# Progress\n\n## Codebase Patterns\n"), "{progress}");

    let before = p.snapshot();
    p.aloop(&["init", "--mode", "fix"]).run().code(1).stderr_has("already exists").stderr_has("--force");
    assert_eq!(p.snapshot(), before);

    // Any adapter counts, including one of the user's own.
    let claude =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/agents/claude.rhai")).unwrap();
    let p =
        p.file(".loop/progress.md", "# Progress\n\nkept\n").home_file("scripts/agents/mine.rhai", &claude);
    p.aloop(&["init", "--force", "--mode", "fix", "--agent", "mine"]).run().ok();
    let config = json_file(&p, ".loop/config.json");
    assert_eq!((config["mode"].as_str(), config["agent"].as_str()), (Some("fix"), Some("mine")));
    assert_eq!(p.read(".loop/progress.md"), "# Progress\n\nkept\n", "an existing progress log is kept");
}

#[test]
fn init_rejects_an_unknown_agent_and_mode() {
    let p = Project::git();
    p.aloop(&["init", "--agent", "claud"]).run().code(2).stderr_has("no agent adapter named 'claud'");
    p.aloop(&["init", "--mode", "refactor"]).run().code(2);
    assert!(!p.exists(".loop/config.json"));
}

#[test]
fn init_with_an_untrusted_repository_adapter_writes_nothing() {
    let adapter = "fn command(req) { #{ program: \"true\", args: [] } }\nfn parse(event) { () }\n";
    let p = Project::git().file(".loop/scripts/agents/mine.rhai", adapter);
    let before = p.snapshot();
    p.aloop(&["init", "--agent", "mine"]).run().code(1).stderr_has("untrusted").stderr_has("aloop trust");
    assert_eq!(p.snapshot(), before, "no config, .gitignore or progress.md before the adapter is allowed");
    p.aloop(&["trust"]).run().ok();
    p.aloop(&["init", "--agent", "mine"]).run().ok();
    assert!(p.exists(".loop/config.json"));
}

// ---------------------------------------------------------------- run --dry-run

#[test]
fn dry_run_prints_both_prompts_and_invokes_nothing() {
    let p = loop_project("prd.json");
    let head = p.git_cmd(&["rev-parse", "HEAD"]).trim().to_string();
    let dry_run = with_fakes(&p, &["run", "--dry-run"], &json!([]));
    let before = p.snapshot();
    let out = dry_run.run().ok();
    for part in [
        "===== generator prompt — US-001, agent claude =====",
        "## Your story: US-001 — Parse a CSV header",
        "- header.txt lists the column names",
        "Iteration 1 of at most 5 · mode: **implement**",
        "Read at most **25** files",
        "\n---\n\n## Mode: implement",
        "feat: US-001 - Parse a CSV header",
        "===== generator command =====\nclaude",
        "===== evaluator prompt — US-001, agent claude =====",
        &format!("git diff {head}..HEAD"),
        "<verdict>PASS</verdict>",
    ] {
        assert!(out.stdout.contains(part), "stdout lacks {part:?}\n{}", out.stdout);
    }
    assert!(!out.stdout.contains("{{"), "every variable is filled in");
    assert!(calls(&p).is_empty(), "nothing was invoked");
    assert_eq!(p.snapshot(), before);
}

// ---------------------------------------------------------------- run

#[test]
fn run_passes_every_story_in_priority_order_and_exits_0() {
    let p = loop_project("prd.json");
    let start = p.git_cmd(&["rev-parse", "HEAD"]).trim().to_string();
    let out = run_with(
        &p,
        &["run"],
        &json!([
            builds("US-001", "a.txt"),
            passes(),
            builds("US-002", "b.txt"),
            passes(),
            builds("US-003", "c.txt"),
            passes()
        ]),
    )
    .ok();
    for part in [
        "Loop Ready",
        "Mode: implement",
        "Stories: 0/3 complete",
        "Max iterations: 5",
        "Eval: on",
        "\n  Prompts: bundled (this repository has no .loop/prompts of its own)\n",
        "Iteration 1/5 — US-001: Parse a CSV header",
        "US-001 PASSED",
        "Iteration 3/5 — US-003: Print usage on --help",
        "Loop Complete",
        "Iterations used: 3/5",
        "Stories: 3/3 complete, 0 blocked",
    ] {
        assert!(out.stderr.contains(part), "stderr lacks {part:?}\n{}", out.stderr);
    }
    let prd = json_file(&p, ".loop/prd.json");
    assert!(prd["userStories"].as_array().unwrap().iter().all(|s| s["passes"] == true));
    assert_eq!(progress_verdicts(&p), ["PASS", "PASS", "PASS"]);
    let progress = p.read(".loop/progress.md");
    assert!(progress.contains("### US-002 — Convert rows to JSON objects\nDate: 20"), "{progress}");
    assert!(progress.contains("Iteration: 2\nVerdict: PASS\n\n---\n"), "{progress}");
    let runs = runs(&p);
    let roles: Vec<&str> = runs.iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["generator", "evaluator", "generator", "evaluator", "generator", "evaluator"]);
    assert!(runs
        .iter()
        .all(|r| r["status"] == "ok" && r["agent"] == "claude" && r["duration_ms"].is_number()));
    assert_eq!(runs[2]["story"], "US-002");
    let log = p.git_cmd(&["log", "--format=%s"]);
    assert!(log.contains("feat: US-001") && log.contains("feat: US-003"), "{log}");
    let calls = calls(&p);
    assert_eq!(calls.len(), 6);
    let prompt = |i: usize| calls[i]["prompt"].as_str().unwrap().to_string();
    assert!(prompt(0).contains("## Your story: US-001"));
    assert!(
        prompt(1).contains("# You are the evaluator")
            && prompt(1).contains(&format!("git diff {start}..HEAD"))
    );
    // The loop commits its record after each verdict, in a commit of its own.
    assert_eq!(
        log.lines().collect::<Vec<_>>(),
        [
            "aloop: US-003 PASS",
            "feat: US-003",
            "aloop: US-002 PASS",
            "feat: US-002",
            "aloop: US-001 PASS",
            "feat: US-001",
            "set up the loop",
            "initial"
        ]
    );
    assert_eq!(p.git_cmd(&["status", "--porcelain"]), "", "the run leaves the tree clean");
    let after_first = p.git_cmd(&["rev-parse", "HEAD~4"]).trim().to_string();
    assert!(
        prompt(3).contains(&format!("git diff {after_first}..HEAD")),
        "the evaluator diffs from the generator's start"
    );
}

/// Priorities out of file order, a rejection, and a generator that edits
/// prd.json itself: the loop takes the lowest priority first (file order on
/// ties), keeps a rejected story next, and follows the agent's edit.
#[test]
fn run_follows_priorities_out_of_file_order_and_an_agents_edit_of_prd_json() {
    let p = loop_project("prd_unordered.json");
    let mut edited = fixture_json("loop/prd_unordered.json");
    for story in edited["userStories"].as_array_mut().unwrap() {
        if ["US-002", "US-003"].contains(&story["id"].as_str().unwrap()) {
            story["passes"] = json!(true);
        }
    }
    let edited = serde_json::to_string_pretty(&edited).unwrap();
    let out = run_with(
        &p,
        &["run"],
        &json!([
            builds("US-002", "a.txt"),
            rejects("no test reads the header"),
            builds("US-002", "b.txt"),
            passes(),
            {"write": {"c.txt": "work for US-001\n", ".loop/prd.json": edited}, "text": "Implemented US-001; US-003 was done already."},
            passes(),
            builds("US-004", "d.txt"),
            passes()
        ]),
    )
    .ok();
    let order = iteration_order(&out.stderr);
    assert_eq!(order, ["US-002", "US-002", "US-001", "US-004"], "{}", out.stderr);
    assert!(out.stderr.contains("Stories: 4/4 complete, 0 blocked"), "{}", out.stderr);
    let prd = json_file(&p, ".loop/prd.json");
    for id in ["US-001", "US-002", "US-003", "US-004"] {
        assert_eq!(story(&prd, id)["passes"], json!(true), "{id}");
    }
    assert_eq!(progress_verdicts(&p), ["REJECT", "PASS", "PASS", "PASS"]);
}

/// The README's fork: a repository copy of loop/stories whose `goes_before`
/// puts the higher priority first changes the order of the whole run.
#[test]
fn a_forked_goes_before_changes_the_order_stories_run_in() {
    let p = loop_project("prd.json");
    p.aloop(&["script", "eject", "loop/stories"]).run().ok();
    let path = ".loop/scripts/loop/stories.rhai";
    let rule = "fn goes_before(story, other) { story.priority < other.priority }";
    let forked = p.read(path);
    assert!(forked.contains(rule), "the bundled rule is where the README says");
    std::fs::write(
        p.path(path),
        forked.replace(rule, "fn goes_before(story, other) { story.priority > other.priority }"),
    )
    .unwrap();
    p.aloop(&["trust"]).run().ok();
    let out = run_with(
        &p,
        &["run"],
        &json!([
            builds("US-003", "c.txt"),
            passes(),
            builds("US-002", "b.txt"),
            passes(),
            builds("US-001", "a.txt"),
            passes()
        ]),
    )
    .ok();
    let order = iteration_order(&out.stderr);
    assert_eq!(order, ["US-003", "US-002", "US-001"], "{}", out.stderr);
}

/// loop/stories from a script of one's own: recorded verdicts and an edit of
/// prd.json made behind its back are both seen by the next load.
#[test]
fn a_script_can_record_verdicts_and_then_follow_an_edit_of_prd_json() {
    let p = loop_project("prd.json").fixture("loop/record_then_reload.rhai", "mine.rhai");
    let out = p.aloop(&["exec", "mine.rhai"]).run().ok();
    assert!(out.stdout.contains("passed=2 in_progress=1 next=US-002 state=in progress"), "{}", out.stdout);
}

#[test]
fn rejections_are_recorded_and_block_the_story_after_eval_retries() {
    let p = loop_project("prd.json");
    let out = run_with(
        &p,
        &["run", "--story", "US-001"],
        &json!([
            builds("US-001", "a.txt"),
            rejects("no test reads the header"),
            builds("US-001", "b.txt"),
            rejects("header.txt\nis still empty")
        ]),
    )
    .code(3);
    out.stderr.contains("US-001 REJECTED — no test reads the header").then_some(()).expect(&out.stderr);
    for part in [
        "rejected 1 time(s) before; latest feedback: no test reads the header",
        "US-001 REJECTED — header.txt is still empty",
        "US-001 BLOCKED — rejected 2 times, needs human review",
        "every remaining story is blocked",
        "aloop triage",
    ] {
        assert!(out.stderr.contains(part), "stderr lacks {part:?}\n{}", out.stderr);
    }
    let prd = json_file(&p, ".loop/prd.json");
    let us1 = story(&prd, "US-001");
    assert_eq!(
        us1["notes"],
        "[REJECTED] no test reads the header\n[REJECTED] header.txt is still empty [BLOCKED]"
    );
    assert_eq!(
        (us1["rejections"].as_i64(), us1["blocked"].as_bool(), us1["passes"].as_bool()),
        (Some(2), Some(true), Some(false))
    );
    let fixture = fixture_json("loop/prd.json");
    for id in ["US-002", "US-003"] {
        assert_eq!(story(&prd, id), story(&fixture, id), "other stories stay exactly as they were");
    }
    let tail = |text: &str| text[text.find("\"id\": \"US-002\"").unwrap()..].to_string();
    let original = std::fs::read_to_string(crate::support::fixture("loop/prd.json")).unwrap();
    assert_eq!(tail(&p.read(".loop/prd.json")), tail(&original), "byte for byte");
    let calls = calls(&p);
    assert_eq!(calls.len(), 4, "two tries, then the story is blocked");
    assert!(
        calls[2]["prompt"].as_str().unwrap().contains("[REJECTED] no test reads the header"),
        "the generator sees the feedback"
    );
    assert_eq!(progress_verdicts(&p), ["REJECT", "REJECT"]);
}

#[test]
fn every_story_blocked_exits_3() {
    let p = loop_project("prd.json");
    let mut config = json_file(&p, ".loop/config.json");
    config["evalRetries"] = json!(1);
    let p = p.file(".loop/config.json", &serde_json::to_string_pretty(&config).unwrap());
    let out = run_with(
        &p,
        &["run"],
        &json!([
            builds("US-001", "a.txt"),
            rejects("a"),
            builds("US-002", "b.txt"),
            rejects("b"),
            builds("US-003", "c.txt"),
            rejects("c")
        ]),
    )
    .code(3);
    assert!(out.stderr.contains("Stories: 0/3 complete, 3 blocked"), "{}", out.stderr);
    p.aloop(&["status"])
        .run()
        .ok()
        .stdout_has("0/3 stories pass, 3 blocked")
        .stdout_has("blocked; see `aloop triage`");
}

#[test]
fn a_missing_verdict_is_a_rejection_and_running_out_of_iterations_exits_2() {
    let p = loop_project("prd.json");
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), {"text": "Looks fine to me."}]))
        .code(2);
    assert!(out.stderr.contains("out of iterations"), "{}", out.stderr);
    assert!(out.stderr.contains("Iterations used: 1/1"), "{}", out.stderr);
    let us1 = story(&json_file(&p, ".loop/prd.json"), "US-001").clone();
    assert_eq!(us1["rejections"], 1);
    assert!(
        us1["notes"].as_str().unwrap().starts_with("[REJECTED] the evaluator gave no <verdict>"),
        "{us1}"
    );
    assert_eq!(progress_verdicts(&p), ["REJECT"]);
}

#[test]
fn a_pass_with_stories_left_after_the_last_iteration_exits_2() {
    let p = loop_project("prd.json");
    run_with(
        &p,
        &["run", "2"],
        &json!([builds("US-001", "a.txt"), passes(), builds("US-002", "b.txt"), passes()]),
    )
    .code(2)
    .stderr_has("Stories: 2/3 complete");
    p.aloop(&["status"]).run().ok().stdout_has("2/3 stories pass").stdout_has("next: US-003");
}

#[test]
fn story_flag_works_only_on_that_story() {
    let p = loop_project("prd.json");
    run_with(&p, &["run", "--story", "US-003"], &json!([builds("US-003", "c.txt"), passes()]))
        .ok()
        .stderr_has("Max iterations: 5 (only US-003)")
        .stderr_has("US-003 passes");
    let prd = json_file(&p, ".loop/prd.json");
    assert_eq!(story(&prd, "US-003")["passes"], true);
    let fixture = fixture_json("loop/prd.json");
    for id in ["US-001", "US-002"] {
        assert_eq!(story(&prd, id), story(&fixture, id));
    }
    let calls = calls(&p);
    assert_eq!(calls.len(), 2);
    assert!(calls[0]["prompt"].as_str().unwrap().contains("## Your story: US-003 — Print usage on --help"));
}

#[test]
fn skip_eval_counts_each_generator_run_as_a_pass() {
    let p = loop_project("prd.json");
    let out = run_with(
        &p,
        &["run", "2", "--skip-eval", "--quiet"],
        &json!([builds("US-001", "a.txt"), builds("US-002", "b.txt")]),
    )
    .code(2)
    .stderr_has("Eval: off")
    .stderr_has("US-001 PASSED (evaluation skipped: recorded as unverified)");
    assert!(!out.stderr.contains("[claude]"), "--quiet hides the agents' output:\n{}", out.stderr);
    assert_eq!(calls(&p).len(), 2, "no evaluator ran");
    assert_eq!(progress_verdicts(&p), ["SKIP-EVAL", "SKIP-EVAL"]);
    let runs = runs(&p);
    assert!(runs.iter().all(|r| r["role"] == "generator"));
    // Passed, but on the generator's word only: status and triage say so.
    let prd = json_file(&p, ".loop/prd.json");
    assert_eq!(story(&prd, "US-001")["passes"], true);
    assert_eq!(
        story(&prd, "US-001")["notes"],
        "[UNVERIFIED] passed with --skip-eval: no evaluator judged it"
    );
    p.aloop(&["status"])
        .run()
        .ok()
        .stdout_has("2/3 stories pass (unverified, passed with --skip-eval: US-001, US-002)\n");
    assert_eq!(p.aloop(&["status", "--json"]).run().ok().json()["unverified"], json!(["US-001", "US-002"]));
    let triage = p.aloop(&["triage", "--json"]).run().ok().json();
    assert_eq!(triage["stories"][0]["status"], "unverified");
    assert_eq!(triage["stories"][2]["status"], "not started");
}

#[test]
fn a_false_complete_claim_is_ignored_and_evaluated() {
    let p = loop_project("prd.json");
    let out = run_with(
        &p,
        &["run", "1"],
        &json!([
            {"write": {"half.txt": "half\n"}, "text": "All done. <promise>COMPLETE</promise>"},
            rejects("nothing was built")
        ]),
    )
    .code(2);
    assert!(
        out.stderr.contains("claimed COMPLETE, but 0/3 stories pass in prd.json; going on"),
        "{}",
        out.stderr
    );
    assert_eq!(calls(&p).len(), 2, "the evaluator still ran");
    assert_eq!(story(&json_file(&p, ".loop/prd.json"), "US-001")["rejections"], 1);
}

#[test]
fn a_true_complete_claim_ends_the_loop() {
    let p = loop_project("prd.json");
    let mut done = fixture_json("loop/prd.json");
    for s in done["userStories"].as_array_mut().unwrap() {
        s["passes"] = json!(true);
    }
    let write = serde_json::to_string_pretty(&done).unwrap();
    let out = run_with(
        &p,
        &["run"],
        &json!([{"write": {".loop/prd.json": write}, "text": "<promise>COMPLETE</promise>"}]),
    )
    .ok();
    assert!(out.stderr.contains("every story complete, and prd.json agrees"), "{}", out.stderr);
    assert_eq!(calls(&p).len(), 1, "no evaluator after a true COMPLETE");
}

#[test]
fn a_failed_generator_warns_and_the_loop_goes_on() {
    let p = loop_project("prd.json");
    let out =
        run_with(&p, &["run", "2"], &json!([{"mode": "fail"}, builds("US-001", "a.txt"), passes()])).code(2);
    assert!(out.stderr.contains("the generator failed (failed"), "{}", out.stderr);
    assert!(out.stderr.contains("US-001 PASSED"), "{}", out.stderr);
    assert_eq!(progress_verdicts(&p), ["PASS"], "a failed run records no verdict");
    let runs = runs(&p);
    assert_eq!(runs[0]["status"], "failed");
    assert_eq!(runs.len(), 3);
}

#[test]
fn a_hanging_generator_times_out_and_the_loop_goes_on() {
    let p = loop_project("prd.json");
    let mut config = json_file(&p, ".loop/config.json");
    config["timeouts"] = json!({"generator": 30, "evaluator": 30, "idle": 2});
    let p = p.file(".loop/config.json", &serde_json::to_string_pretty(&config).unwrap());
    let started = Instant::now();
    let out =
        with_fakes(&p, &["run", "2"], &json!([{"mode": "silent_hang"}, builds("US-001", "a.txt"), passes()]))
            .timeout(Duration::from_secs(40))
            .run()
            .code(2);
    assert!(started.elapsed() < Duration::from_secs(25), "the idle timeout stopped the hang");
    assert!(out.stderr.contains("the generator failed (timeout"), "{}", out.stderr);
    assert_eq!(runs(&p)[0]["status"], "timeout");
    assert_eq!(story(&json_file(&p, ".loop/prd.json"), "US-001")["passes"], true);
}

#[test]
fn a_plugin_style_prompt_override_takes_effect() {
    let p = loop_project("prd.json").file(
        ".loop/prompts/generator/_base.md",
        "Custom base for {{CURRENT_STORY_ID}} ({{story.title}}) in {{MODE}} mode, at most {{MAX_FILES_TO_MODIFY}} files.\n",
    );
    run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
    let calls = calls(&p);
    let generator = calls[0]["prompt"].as_str().unwrap();
    assert!(
        generator.starts_with("Custom base for US-001 (Parse a CSV header) in implement mode, at most 10 files.\n\n---\n\n## Mode: implement"),
        "{generator}"
    );
    assert!(!generator.contains("# You are the generator"));
    assert!(
        calls[1]["prompt"].as_str().unwrap().starts_with("# You are the evaluator"),
        "the evaluator keeps the bundled prompt"
    );
}

#[test]
fn a_verdict_file_counts_when_the_reply_has_no_tags() {
    let p = loop_project("prd.json");
    run_with(
        &p,
        &["run", "1"],
        &json!([builds("US-001", "a.txt"), {"write": {".loop/.verdict": "REJECT: header.txt is empty\n"}, "text": "See the verdict file."}]),
    )
    .code(2);
    assert_eq!(story(&json_file(&p, ".loop/prd.json"), "US-001")["notes"], "[REJECTED] header.txt is empty");
    assert!(!p.exists(".loop/.verdict"), "the scratch file is removed");
}

/// Starts `aloop run` with a generator that hangs and waits until it runs.
fn start_hanging_run(p: &Project) -> std::process::Child {
    let child = with_fakes(p, &["run"], &json!([{"mode": "hang"}])).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while calls(p).is_empty() {
        assert!(Instant::now() < deadline, "the generator never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    child
}

fn interrupt(child: std::process::Child) -> std::process::Output {
    unsafe { libc::kill(child.id().cast_signed(), libc::SIGINT) };
    child.wait_with_output().unwrap()
}

#[test]
fn a_second_run_is_refused_while_one_holds_the_lock() {
    let p = loop_project("prd.json");
    let first = start_hanging_run(&p);
    let pid = first.id();
    let out = p.aloop(&["run"]).run().code(1);
    assert!(out.stderr.contains("another aloop run is working in this project"), "{}", out.stderr);
    assert!(out.stderr.contains(&format!("pid {pid}")), "{}", out.stderr);
    let first = interrupt(first);
    assert_eq!(first.status.code(), Some(130));
    p.aloop(&["run", "--dry-run"]).run().ok();
}

#[test]
fn ctrl_c_mid_generator_exits_130_and_leaves_valid_state() {
    let p = loop_project("prd.json");
    let progress = p.read(".loop/progress.md");
    let out = interrupt(start_hanging_run(&p));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted during the generator of US-001 (iteration 1/5)"), "{stderr}");
    assert!(stderr.contains("Loop Stopped"), "{stderr}");
    assert_eq!(json_file(&p, ".loop/prd.json"), fixture_json("loop/prd.json"));
    assert_eq!(p.read(".loop/progress.md"), progress);
    assert_eq!(runs(&p).last().unwrap()["status"], "interrupted");
    // The lock went with the process: the next run starts.
    run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()])).code(2);
}

// ---------------------------------------------------------------- plan

fn draft(stories: usize) -> String {
    let stories: Vec<Value> = (1..=stories)
        .map(|i| {
            json!({
                "title": format!("Story {i}"),
                "id": format!("US-00{i}"),
                "priority": i,
                "acceptanceCriteria": [format!("criterion {i}"), "Tests pass"],
                "description": format!("As a user I want {i}."),
            })
        })
        .collect();
    serde_json::to_string(&json!({"userStories": stories, "project": "csvtool", "branchName": "loop/csv", "description": "CSV to JSON."}))
        .unwrap()
}

#[test]
fn plan_turns_the_spec_into_a_valid_prd() {
    let p = Project::git().file("SPEC.md", "# csvtool\n\nConvert CSV files to JSON.\n");
    let out = run_with(
        &p,
        &["plan"],
        &json!([{"write": {".loop/prd.draft.json": draft(2)}, "text": "Wrote the draft."}]),
    )
    .ok();
    out.stderr.contains("wrote .loop/prd.json with 2 stories").then_some(()).expect(&out.stderr);
    assert!(out.stdout.contains("US-002  2         Story 2"), "{}", out.stdout);
    let prd = json_file(&p, ".loop/prd.json");
    let us1 = story(&prd, "US-001");
    assert_eq!(
        (us1["passes"].clone(), us1["notes"].clone(), us1["rejections"].clone()),
        (json!(false), json!(""), json!(0))
    );
    let text = p.read(".loop/prd.json");
    let at = |k: &str| text.find(&format!("\"{k}\"")).unwrap();
    assert!(at("project") < at("branchName") && at("branchName") < at("userStories"), "{text}");
    assert!(
        at("id") < at("title")
            && at("acceptanceCriteria") < at("priority")
            && at("passes") < at("rejections"),
        "{text}"
    );
    assert!(!p.exists(".loop/prd.draft.json"));
    let calls = calls(&p);
    let prompt = calls[0]["prompt"].as_str().unwrap();
    assert!(prompt.contains("Source: SPEC.md") && prompt.contains("Convert CSV files to JSON."), "{prompt}");
    assert!(
        prompt.contains(&format!("{}/.loop/prd.draft.json", p.root().canonicalize().unwrap().display())),
        "{prompt}"
    );
    p.aloop(&["status"]).run().ok().stdout_has("0/2 stories pass");
}

#[test]
fn plan_reads_a_spec_path_from_the_directory_it_was_typed_in() {
    let p = Project::git()
        .file("SPEC.md", "the wrong spec: the project root's\n")
        .file("docs/SPEC.md", "# csvtool\n\nThe spec in docs/.\n");
    let entries = json!([{"write": {".loop/prd.draft.json": draft(1)}}]);
    run_with(&p, &["-C", "docs", "plan", "SPEC.md"], &entries.clone()).ok();
    let prompt = calls(&p)[0]["prompt"].as_str().unwrap().to_string();
    assert!(prompt.contains("The spec in docs/."), "{prompt}");
    assert!(!prompt.contains("the wrong spec"), "{prompt}");
    run_with(&p, &["-C", "docs", "plan", "NOPE.md", "--force"], &entries)
        .code(1)
        .stderr_has(&format!("{}: no such file", p.path("docs/NOPE.md").display()));
}

#[test]
fn plan_gives_the_agent_the_errors_once_and_accepts_the_fix() {
    let p = Project::git();
    let out = run_with(
        &p,
        &["plan", "--text", "A CLI that converts CSV to JSON"],
        &json!([{"text": "```json\n{\"stories\": []}\n```"}, {"text": format!("Here it is:\n```json\n{}\n```", draft(1))}]),
    )
    .ok();
    assert!(out.stderr.contains("asking the agent to fix them"), "{}", out.stderr);
    let calls = calls(&p);
    assert_eq!(calls.len(), 2);
    let retry = calls[1]["prompt"].as_str().unwrap();
    assert!(retry.contains("## Your previous draft was rejected"), "{retry}");
    assert!(retry.contains("found \"stories\" but no \"userStories\""), "{retry}");
    assert!(retry.contains("{\"stories\": []}"), "the previous output is shown");
    assert_eq!(json_file(&p, ".loop/prd.json")["userStories"].as_array().unwrap().len(), 1);
}

#[test]
fn plan_keeps_a_still_invalid_draft_and_exits_1() {
    let p = Project::git().file("PLAN.md", "Build it.\n");
    let bad = "{\"userStories\": [{\"id\": \"US-001\", \"priority\": 1}]}";
    let out = run_with(
        &p,
        &["plan"],
        &json!([{"text": "I could not decide."}, {"write": {".loop/prd.draft.json": bad}}]),
    )
    .code(1);
    for part in [
        "userStories[0] (US-001): \"title\" is missing",
        "still invalid after a retry",
        ".loop/prd.invalid.json",
    ] {
        assert!(out.stderr.contains(part), "stderr lacks {part:?}\n{}", out.stderr);
    }
    assert_eq!(p.read(".loop/prd.invalid.json"), bad);
    assert!(!p.exists(".loop/prd.json"));
    assert_eq!(calls(&p).len(), 2, "one retry only");
}

#[test]
fn plan_does_not_replace_unfinished_stories_without_force() {
    let p = loop_project("prd.json");
    let plan = with_fakes(&p, &["plan", "--text", "x"], &json!([]));
    let before = p.snapshot();
    plan.run().code(1).stderr_has("3 unfinished stories").stderr_has("--force");
    assert!(calls(&p).is_empty());
    assert_eq!(p.snapshot(), before);
    run_with(
        &p,
        &["plan", "--text", "x", "--force"],
        &json!([{"write": {".loop/prd.draft.json": draft(1)}}]),
    )
    .ok();
    assert_eq!(json_file(&p, ".loop/prd.json")["userStories"].as_array().unwrap().len(), 1);
}

#[test]
fn plan_puts_back_a_prd_the_agent_overwrote_when_its_plan_is_invalid() {
    let p = loop_project("prd.json");
    let before = p.read(".loop/prd.json");
    let out = run_with(
        &p,
        &["plan", "--text", "x", "--force"],
        &json!([{"write": {".loop/prd.json": "{\"tasks\": []}"}}]),
    )
    .code(1);
    assert!(out.stderr.contains("changed .loop/prd.json itself; it was put back"), "{}", out.stderr);
    assert_eq!(p.read(".loop/prd.json"), before);
    assert_eq!(p.read(".loop/prd.invalid.json"), "{\"tasks\": []}");
}

#[test]
fn plan_without_a_spec_says_where_it_looked() {
    let p = Project::git();
    p.aloop(&["plan"])
        .run()
        .code(1)
        .stderr_has("no spec to plan from")
        .stderr_has("SPEC.md, PRD.md, PLAN.md");
    p.aloop(&["plan", "NOPE.md"]).run().code(1).stderr_has("NOPE.md: no such file");
    p.aloop(&["plan", "SPEC.md", "--text", "x"]).run().code(2).stderr_has("not both");
}

#[test]
fn agent_flags_and_the_config_model_choose_who_runs() {
    let claude =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/agents/claude.rhai")).unwrap();
    let p = loop_project("prd.json").home_file("scripts/agents/reviewer.rhai", &claude);
    let mut config = json_file(&p, ".loop/config.json");
    config["model"] = json!("model-for-tests");
    let p = p.file(".loop/config.json", &serde_json::to_string_pretty(&config).unwrap());
    run_with(&p, &["run", "1", "--eval-agent", "reviewer"], &json!([builds("US-001", "a.txt"), passes()]))
        .code(2)
        .stderr_has("Eval: on (reviewer");
    let agents: Vec<Value> = runs(&p).iter().map(|r| r["agent"].clone()).collect();
    assert_eq!(agents, [json!("claude"), json!("reviewer")]);
    let argv: Vec<String> =
        serde_json::from_value(calls(&p)[0]["argv"].clone()).expect("the fake logs its argv");
    assert!(argv.windows(2).any(|w| w == ["--model", "model-for-tests"]), "{argv:?}");
}

#[test]
fn prd_and_progress_stay_valid_while_the_loop_runs() {
    let p = loop_project("prd.json");
    let slow = |v: Value| {
        let mut v = v;
        v["sleep"] = json!(0.3);
        v
    };
    let mut child = with_fakes(
        &p,
        &["run"],
        &json!([
            slow(builds("US-001", "a.txt")),
            slow(rejects("again")),
            slow(builds("US-001", "b.txt")),
            slow(passes()),
            slow(builds("US-002", "c.txt")),
            slow(passes()),
            slow(builds("US-003", "d.txt")),
            slow(passes())
        ]),
    )
    .spawn();
    let mut reads = 0;
    while child.try_wait().unwrap().is_none() {
        let prd: Value =
            serde_json::from_str(&p.read(".loop/prd.json")).expect("prd.json parses at every moment");
        assert_eq!(prd["userStories"].as_array().unwrap().len(), 3);
        let progress = p.read(".loop/progress.md");
        assert_eq!(progress.matches("\n### ").count(), progress.matches("\nVerdict: ").count(), "{progress}");
        reads += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(reads > 20, "the state was read while the loop ran ({reads} reads)");
    assert_eq!(progress_verdicts(&p), ["REJECT", "PASS", "PASS", "PASS"]);
}

#[test]
fn a_failed_evaluator_records_nothing_and_the_loop_goes_on() {
    let p = loop_project("prd.json");
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), {"mode": "fail"}])).code(2);
    assert!(out.stderr.contains("the evaluator failed (failed"), "{}", out.stderr);
    assert_eq!(json_file(&p, ".loop/prd.json"), fixture_json("loop/prd.json"), "a crash is not a rejection");
    assert!(progress_verdicts(&p).is_empty());
    assert_eq!(runs(&p)[1]["status"], "failed");
}

#[test]
fn a_prd_broken_by_an_agent_stops_the_loop_and_is_not_overwritten() {
    let p = loop_project("prd.json");
    let out = run_with(
        &p,
        &["run"],
        &json!([{"write": {".loop/prd.json": "{\"userStories\": [\n"}, "text": "Oops."}, passes()]),
    )
    .code(1);
    assert!(out.stderr.contains(".loop/prd.json:2:"), "{}", out.stderr);
    assert_eq!(p.read(".loop/prd.json"), "{\"userStories\": [\n");
    assert!(progress_verdicts(&p).is_empty());
}

#[test]
fn explore_and_fix_modes_use_their_prompts_and_budgets() {
    for (mode, generator, evaluator) in [
        ("explore", "/.loop/triage/US-001-analysis.md", "touches only files under"),
        ("fix", "fix: US-001 - Parse a CSV header", "There is a regression test"),
    ] {
        let p = loop_project("prd.json");
        let mut config = json_file(&p, ".loop/config.json");
        config["mode"] = json!(mode);
        let p = p.file(".loop/config.json", &serde_json::to_string_pretty(&config).unwrap());
        let out = p.aloop(&["run", "--dry-run"]).run().ok();
        let budget = config["scopeBudgets"][mode]["maxFilesToRead"].as_i64().unwrap();
        for part in [
            format!("## Mode: {mode}"),
            format!("mode: **{mode}**"),
            format!("Read at most **{budget}** files"),
            generator.to_string(),
            evaluator.to_string(),
        ] {
            assert!(out.stdout.contains(&part), "{mode}: stdout lacks {part:?}\n{}", out.stdout);
        }
    }
}

#[test]
fn plan_reads_the_spec_from_stdin_with_a_dash() {
    let p = Project::git();
    with_fakes(&p, &["plan", "-"], &json!([{"write": {".loop/prd.draft.json": draft(1)}}]))
        .stdin("# From a pipe\n\nA CLI that converts CSV to JSON.\n")
        .run()
        .ok();
    let prompt = calls(&p)[0]["prompt"].as_str().unwrap().to_string();
    assert!(
        prompt.contains("Source: standard input") && prompt.contains("A CLI that converts CSV to JSON."),
        "{prompt}"
    );
    assert!(p.exists(".loop/prd.json"));
}

#[test]
fn the_plugins_config_fields_are_honoured_or_named_and_unknown_ones_warned_about() {
    let p = loop_project("prd.json");
    let mut config = json_file(&p, ".loop/config.json");
    let fields = config.as_object_mut().unwrap();
    fields.remove("agent");
    fields.insert("tool".into(), json!("codex"));
    fields.insert("branchPrefix".into(), json!("ralph/"));
    fields.insert("autoHooks".into(), json!(true));
    fields.insert("maxIteratons".into(), json!(3));
    let text = serde_json::to_string_pretty(&config).unwrap() + "\n";
    std::fs::write(p.path(".loop/config.json"), &text).unwrap();
    let out = p.aloop(&["run", "--dry-run"]).run().ok();
    assert!(out.stdout.contains("===== generator prompt — US-001, agent codex ====="), "{}", out.stdout);
    assert_eq!(
        out.stderr.lines().filter(|l| l.starts_with("warning: ")).collect::<Vec<_>>(),
        [
            "warning: .loop/config.json: \"autoHooks\" (the agent-loop plugin's) is not used: aloop installs no Claude Code hooks; its own \"hooks\" run commands on loop events",
            "warning: .loop/config.json: \"branchPrefix\" (the agent-loop plugin's) is not used: aloop checks out prd.json's branchName as it is (\"branch\": false keeps the current branch)",
            "warning: .loop/config.json: unknown field \"maxIteratons\" is ignored",
        ]
    );
    p.file_is(".loop/config.json", text);

    config["agent"] = json!("claude");
    std::fs::write(p.path(".loop/config.json"), serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let out = p.aloop(&["run", "--dry-run"]).run().ok();
    assert!(out.stdout.contains("agent claude ====="), "{}", out.stdout);
    out.stderr_has(
        "warning: .loop/config.json: \"tool\" (codex) is ignored: \"agent\" (claude) names the agent\n",
    );
}

#[test]
fn loop_ready_names_the_repositorys_own_prompts() {
    let p = loop_project("prd.json")
        .file(".loop/prompts/generator/_base.md", "Work on {{CURRENT_STORY_ID}}.\n")
        .commit("own prompt");
    let out = run_with(&p, &["run", "1"], &json!([builds("US-001", "a.txt"), passes()]));
    assert!(out.stderr.contains("\n  Prompts: generator/_base (repo), the rest bundled\n"), "{}", out.stderr);
}

// ---------------------------------------------------------------- dependsOn

#[test]
fn a_story_waits_for_the_stories_it_depends_on() {
    // US-001 (priority 1) depends on US-003 (priority 3).
    let p = loop_project("prd_depends.json");
    let doc = p.aloop(&["status", "--json"]).run().ok().json();
    assert_eq!(doc["ready"], json!(["US-002", "US-003"]));
    assert_eq!(doc["next"]["id"], "US-002");
    assert_eq!(doc["stories"][0]["waitingOn"], json!(["US-003"]));
    let out = run_with(
        &p,
        &["run", "3"],
        &json!([
            builds("US-002", "a.txt"),
            passes(),
            builds("US-003", "b.txt"),
            passes(),
            builds("US-001", "c.txt"),
            passes()
        ]),
    )
    .ok();
    assert_eq!(iteration_order(&out.stderr), ["US-002", "US-003", "US-001"]);
}

#[test]
fn a_story_waiting_on_a_blocked_one_ends_the_run_as_blocked() {
    let p = loop_project("prd_depends.json");
    let mut prd = json_file(&p, ".loop/prd.json");
    prd["userStories"][2]["blocked"] = json!(true);
    prd["userStories"][1]["passes"] = json!(true);
    std::fs::write(p.path(".loop/prd.json"), serde_json::to_string_pretty(&prd).unwrap()).unwrap();
    p.aloop(&["status"]).run().ok().stdout_has(
        "next: nothing runnable — the remaining stories are blocked or wait on blocked ones (dependsOn); see `aloop triage`",
    );
    with_fakes(&p, &["run"], &json!([passes()]))
        .run()
        .code(3)
        .stderr_has("every remaining story is blocked or waits on a blocked one (dependsOn)");
    assert!(calls(&p).is_empty());
}

#[test]
fn depends_on_must_name_stories_that_can_ever_start() {
    let p = loop_project("prd_depends.json");
    let mut prd = json_file(&p, ".loop/prd.json");
    prd["userStories"][1]["dependsOn"] = json!(["US-009"]);
    std::fs::write(p.path(".loop/prd.json"), serde_json::to_string_pretty(&prd).unwrap()).unwrap();
    let before = p.snapshot();
    p.aloop(&["status"]).run().code(1).stderr_has(
        "story US-002: dependsOn names \"US-009\", which is no story here (stories: US-001, US-002, US-003)",
    );
    assert_eq!(p.snapshot(), before);
    prd["userStories"][1]["dependsOn"] = json!([]);
    prd["userStories"][2]["dependsOn"] = json!(["US-001"]);
    std::fs::write(p.path(".loop/prd.json"), serde_json::to_string_pretty(&prd).unwrap()).unwrap();
    let before_cycle = p.snapshot();
    p.aloop(&["run"]).run().code(1).stderr_has(
        "stories US-001, US-003 wait on each other through dependsOn, so none of them could ever start",
    );
    assert_eq!(p.snapshot(), before_cycle);
}

// ---------------------------------------------------------------- ralph's layout

/// A repository laid out as snarktank/ralph has it: prd.json and
/// progress.txt in scripts/ralph/, and aloop's config in .loop/.
fn ralph_project() -> Project {
    Project::git()
        .fixture("loop/config.json", ".loop/config.json")
        .fixture("ralph/prd.json", "scripts/ralph/prd.json")
        .fixture("ralph/progress.txt", "scripts/ralph/progress.txt")
        .file(".loop/.gitignore", GITIGNORE)
        .commit("ralph's layout")
}

#[test]
fn run_with_prd_runs_ralphs_prd_json_where_it_lives_and_changes_only_its_verdicts() {
    let p = ralph_project();
    let original = p.read("scripts/ralph/prd.json");
    let out = run_with(
        &p,
        &["run", "1", "--prd", "scripts/ralph/prd.json"],
        &json!([builds("US-001", "tasks.txt"), passes()]),
    )
    .code(2);
    assert!(out.stderr.contains("switched to a new branch ralph/task-priority"), "{}", out.stderr);
    assert!(out.stderr.contains("US-001 PASSED"), "{}", out.stderr);
    // Only the verdict changed, byte for byte.
    let expected = original.replacen("\"passes\": false", "\"passes\": true", 1);
    p.file_is("scripts/ralph/prd.json", &expected);
    let progress = p.read("scripts/ralph/progress.txt");
    assert!(progress.starts_with("# Ralph Progress Log\nStarted: Tue Dec 1 2026\n---\n"), "{progress}");
    assert!(
        progress.contains("### US-001 — Store a priority on each task\n")
            && progress.contains("Verdict: PASS"),
        "{progress}"
    );
    assert!(!p.exists(".loop/prd.json") && !p.exists(".loop/progress.md"), "nothing is made in .loop/");
    assert_eq!(
        p.git_cmd(&["show", "--name-only", "--format=%s", "HEAD"]).trim(),
        "aloop: US-001 PASS\n\nscripts/ralph/prd.json\nscripts/ralph/progress.txt"
    );
    let generator_prompt = calls(&p)[0]["prompt"].as_str().unwrap().to_string();
    let root = p.root();
    assert!(
        generator_prompt.contains(&format!("`{}/scripts/ralph/progress.txt`", root.display())),
        "{generator_prompt}"
    );
    assert!(
        generator_prompt.contains(&format!("`{}/scripts/ralph/prd.json`", root.display())),
        "{generator_prompt}"
    );
}

#[test]
fn config_prd_points_every_command_at_a_prd_json_kept_elsewhere() {
    let p = ralph_project();
    let mut config = json_file(&p, ".loop/config.json");
    config["prd"] = json!("scripts/ralph/prd.json");
    std::fs::write(p.path(".loop/config.json"), config.to_string()).unwrap();
    p.aloop(&["status"])
        .run()
        .ok()
        .stdout_has("0/2 stories pass")
        .stdout_has("next: US-001 — Store a priority on each task");
    p.aloop(&["triage", "--json"]).run().ok();
    config["prd"] = json!("../elsewhere/prd.json");
    std::fs::write(p.path(".loop/config.json"), config.to_string()).unwrap();
    let before = p.snapshot();
    p.aloop(&["run"]).run().code(1).stderr_has(
        "\"prd\" must be a path inside the repository, relative to its root, not \"../elsewhere/prd.json\"",
    );
    assert_eq!(p.snapshot(), before);
    config["prd"] = json!("scripts/ralph/prd.json");
    std::fs::write(p.path(".loop/config.json"), config.to_string()).unwrap();
    let before = p.snapshot();
    p.aloop(&["run", "--prd", "/etc/prd.json"]).run().code(2).stderr_has(
        "--prd must be a path inside the repository, relative to its root, not \"/etc/prd.json\"",
    );
    assert_eq!(p.snapshot(), before);
}
