//! JSON documents that keep their text (`fs::open_json`), shapes checked in
//! Rust (`json::check`), and the iterate run history as JSON lines.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::support::Project;

// ---------------------------------------------------------------- documents

/// A file as a person or an agent writes it: four-space indents, one story
/// on one line, keys in no sorted order, an escaped key, no final newline.
const ODD: &str = "{\n    \"zeta\": 1,\n    \"userStories\": [\n        {\"id\": \"US-1\", \"passes\": false, \"notes\": \"\"},\n        {\n            \"title\": \"Two\",\n            \"id\": \"US-2\",\n            \"passes\": false\n        }\n    ],\n    \"w\\u00e9ird\": {\"b\": 2, \"a\": 1},\n    \"empty\": {}\n}";

#[test]
fn a_change_rewrites_only_the_bytes_of_the_value_it_changes() {
    let p = Project::new().file("d.json", ODD).file(
        "t.rhai",
        r#"
let doc = fs::open_json("d.json");
print(doc.get("/userStories/1/title"));
print(doc.get("/wéird/a"));
print(type_of(doc.get("/userStories/7/id")));
doc.set("/userStories/0/passes", true);
doc.set("/userStories/0/rejections", 1);
let two = doc.get("/userStories/1");
two.passes = true;
two.blocked = true;
doc.set("/userStories/1", two);
doc.set("/wéird/b", [1, 2]);
doc.set("/empty/k", "v");
doc.save();
print(doc.value().userStories[1].blocked);
"#,
    );
    p.aloop(&["exec", "t.rhai"]).run().ok().stdout_is("Two\n1\n()\ntrue\n");
    p.file_is(
        "d.json",
        "{\n    \"zeta\": 1,\n    \"userStories\": [\n        {\"id\": \"US-1\", \"passes\": true, \"notes\": \"\", \"rejections\": 1},\n        {\n            \"title\": \"Two\",\n            \"id\": \"US-2\",\n            \"passes\": true,\n            \"blocked\": true\n        }\n    ],\n    \"w\\u00e9ird\": {\"b\": [1, 2], \"a\": 1},\n    \"empty\": {\"k\": \"v\"}\n}",
    );
}

#[test]
fn a_document_edited_by_someone_else_between_two_writes_is_read_again() {
    // The other writer is a separate process, as an agent would be.
    let p = Project::new().file("d.json", "{\"a\": {\"x\": 0, \"y\": 0}, \"b\": 0}\n").file(
        "t.rhai",
        r#"
let doc = fs::open_json("d.json");
doc.set("/a/x", 1);
doc.save();
proc::run(["sh", "-c", "printf '{\"b\": 5,\\n \"a\": {\"y\": 0, \"x\": 1}}\\n' > d.json"], #{});
doc.set("/a/y", 2);
doc.save();
print(json::stringify(doc.value()));
proc::run(["sh", "-c", "printf '{\"a\": {\"y\": 9, \"x\": 1}, \"b\": 5}\\n' > d.json"], #{});
doc.set("/a/y", 3);
doc.save();
"#,
    );
    let out = p.aloop(&["exec", "t.rhai"]).run().code(1);
    assert_eq!(out.stdout, "{\"a\":{\"x\":1,\"y\":2},\"b\":5}\n");
    out.stderr_has(
        "d.json: /a/y was changed by someone else since it was read; nothing was written (open the file again)",
    );
    // The second write went into the other writer's text; the third wrote nothing.
    p.file_is("d.json", "{\"a\": {\"y\": 9, \"x\": 1}, \"b\": 5}\n");

    let p = Project::new().file("d.json", "{\"a\": 1}\n").file(
        "t.rhai",
        r#"
let doc = fs::open_json("d.json");
proc::run(["sh", "-c", "printf '{\"b\": 2,\\n\"a\": 1}\\n' > d.json"], #{});
doc.set("/a", 7);
doc.save();
"#,
    );
    p.aloop(&["exec", "t.rhai"]).run().ok();
    p.file_is("d.json", "{\"b\": 2,\n\"a\": 7}\n");
}

#[test]
fn documents_refuse_malformed_files_and_keys_given_twice() {
    let p = Project::new()
        .file("twice.json", "{\n  \"a\": 1,\n  \"a\": 2\n}\n")
        .file("t.rhai", "fs::open_json(\"twice.json\");")
        .file("u.rhai", "let d = fs::open_json(\"ok.json\");\nd.set(\"/a\", 2);\nproc::run([\"sh\", \"-c\", \"printf '{,' > ok.json\"], #{});\nd.save();")
        .file("ok.json", "{\"a\": 1}\n");
    p.aloop(&["exec", "t.rhai"]).run().code(1).stderr_has("twice.json:3:5: key \"a\" is given twice");
    p.aloop(&["exec", "u.rhai"])
        .run()
        .code(1)
        .stderr_has("ok.json:1:2: ")
        .stderr_has("(refusing to overwrite a malformed file)");
    p.file_is("ok.json", "{,");
}

// ------------------------------------------------------------------- shapes

#[test]
fn json_check_names_every_problem_by_its_path() {
    let p = Project::new().file(
        "t.rhai",
        r#"
let story = #{ keys: #{
    id: "name", title: "string", passes: "bool", priority: "int", blocked: "bool?",
    rejections: #{ type: "int", min: 0, optional: true },
    tags: #{ items: "string", optional: true },
    mode: #{ one_of: ["a", "b"], optional: true },
} };
let shape = #{ keys: #{ userStories: #{ items: story, label: "id", unique: "id", item: "story" } } };
let value = #{ userStories: [
    #{ id: "US-1", title: "ok", passes: true, priority: 1, blocked: () },
    #{ id: "US-2", passes: "no", priority: 1.5, rejections: -1, tags: ["x", 2], mode: "c" },
    #{ id: "", title: "t", passes: false, priority: 2 },
    [1],
    #{ id: "US-1", title: "again", passes: false, priority: 3 },
] };
for line in json::check(value, shape) { print(line); }
print(json::check(#{ userStories: "many" }, shape));
print(json::check([], shape));
print(json::check(value.userStories[0], story));
"#,
    );
    p.aloop(&["exec", "t.rhai"]).run().ok().stdout_is(
        "userStories[1] (US-2): \"mode\" must be one of \"a\", \"b\", not the string \"c\"\n\
         userStories[1] (US-2): \"passes\" must be true or false, not the string \"no\"\n\
         userStories[1] (US-2): \"priority\" must be a whole number, not the number 1.5\n\
         userStories[1] (US-2): \"rejections\" must be a whole number of at least 0, not the number -1\n\
         userStories[1] (US-2).tags[1] must be a string, not the number 2\n\
         userStories[1] (US-2): \"title\" is missing (a string)\n\
         userStories[2]: \"id\" must be a non-empty string, not the string \"\"\n\
         userStories[3] must be an object, not an array\n\
         the id \"US-1\" is used by more than one story\n\
         [\"\\\"userStories\\\" must be an array of objects, not the string \\\"many\\\"\"]\n\
         [\"the top level must be an object, not an array\"]\n\
         []\n",
    );
}

#[test]
fn a_bad_shape_is_an_error_naming_the_mistake() {
    let p = Project::new()
        .file("t.rhai", "json::check(1, #{ keys: #{ a: \"strng\" } });")
        .file("u.rhai", "json::check(1, #{ kyes: #{} });");
    p.aloop(&["exec", "t.rhai"]).run().code(1).stderr_has(
        "json::check: unknown type \"strng\" in the shape.keys.a (types: any, bool, int, number, string, name, \
         array, object; a trailing ? makes it optional)",
    );
    p.aloop(&["exec", "u.rhai"]).run().code(1).stderr_has("json::check: unknown 'kyes' in the shape");
}

// ------------------------------------------------------------ the story loop

/// prd.json as an agent might leave it: its own layout and key order.
const PRD: &str = "{\"project\": \"x\",\n \"userStories\": [\n  {\"passes\": false, \"id\": \"US-001\", \"title\": \"One\", \"priority\": 1, \"notes\": \"\"},\n  {\"id\": \"US-002\", \"title\": \"Two\", \"priority\": 2, \"passes\": false}\n ]}\n";

fn loop_project() -> Project {
    Project::git()
        .fixture("loop/config.json", ".loop/config.json")
        .file(".loop/prd.json", PRD)
        .file(".loop/.gitignore", "*\n!.gitignore\n!prd.json\n!config.json\n")
        .file(".loop/progress.md", "# Progress\n")
        .commit("set up the loop")
}

/// `aloop ARGS` with the fake agents following `entries`.
fn run_with(p: &Project, args: &[&str], entries: &Value) -> crate::support::Output {
    let plan = p.root().parent().unwrap().join("plan.json");
    std::fs::write(&plan, serde_json::to_vec(entries).unwrap()).unwrap();
    p.aloop(args)
        .env("FAKE_AGENT_PLAN", &plan)
        .env("FAKE_AGENT_LOG", p.root().parent().unwrap().join("agents.jsonl"))
        .env("IS_SANDBOX", "1")
        .run()
}

#[test]
fn a_verdict_rewrites_only_its_story() {
    let p = loop_project();
    let entries = json!([
        {"write": {"one.txt": "1\n"}, "commit": "feat: one", "text": "Done."},
        {"text": "<verdict>REJECT</verdict><rejection_reason>no test</rejection_reason>"},
        {"write": {"two.txt": "2\n"}, "commit": "feat: more", "text": "Done."},
        {"text": "<verdict>PASS</verdict>"},
    ]);
    run_with(&p, &["run", "2"], &entries).code(2);
    p.file_is(
        ".loop/prd.json",
        "{\"project\": \"x\",\n \"userStories\": [\n  {\"passes\": true, \"id\": \"US-001\", \"title\": \"One\", \"priority\": 1, \"notes\": \"[REJECTED] no test\", \"rejections\": 1},\n  {\"id\": \"US-002\", \"title\": \"Two\", \"priority\": 2, \"passes\": false}\n ]}\n",
    );
}

// --------------------------------------------------------- the run history

/// A record like the ones `iterate run` writes.
fn record(id: &str) -> Value {
    json!({
        "id": id, "project": "/elsewhere", "startedAt": "2026-01-01T00:00:00+00:00",
        "finishedAt": "2026-01-01T00:01:00+00:00", "agent": "claude", "model": null, "scope": "all",
        "goals": {}, "signals": [], "status": "applied", "exitCode": 0, "costUsd": null,
        "diff": "", "diffStat": "", "files": ["a.txt"], "output": "", "error": null
    })
}

fn runs_json(p: &Project) -> Vec<Value> {
    p.aloop(&["iterate", "runs", "--json", "--limit", "1000"]).run().ok().json().as_array().unwrap().clone()
}

#[test]
fn an_old_iterate_runs_json_is_read_and_moved_on_the_next_run() {
    let old: Vec<Value> = (0..3).map(|i| record(&format!("old-{i}"))).collect();
    let text = json!({"version": 1, "runs": old}).to_string();
    let p = Project::git().home_file("iterate-runs.json", &text);
    let newest_first: Vec<Value> = old.iter().rev().cloned().collect();
    assert_eq!(runs_json(&p), newest_first, "read as it is");
    p.aloop(&["iterate", "show", "old-1", "--json"]).run().ok();
    assert_eq!(p.read_home("iterate-runs.json"), text, "reading changes nothing");

    p.aloop(&["iterate", "run", "--dry-run"]).run().ok();
    assert!(!p.home().join("iterate-runs.json").exists(), "moved into the history");
    let lines: Vec<Value> =
        p.read_home("iterate-runs.jsonl").lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(&lines[..3], &old[..]);
    let listed = runs_json(&p);
    assert_eq!(listed[0], lines[3]);
    assert_eq!(&listed[1..], &newest_first[..]);
}

/// Appends records `first..` to the history the way `iterate run` does,
/// printing each id once it is saved; big enough that a kill can land in
/// the middle of a write.
const APPENDER: &str = r#"
import "iterate/state" as state;
let home = CTX.home;
let pad = "";
pad.pad(2000, 'x');
let i = parse_int(ARGS.first);
loop {
    let lock = state::lock_state(state::runs_path(home));
    let history = state::run_history(home);
    let record = #{ id: `r-${i}`, project: "/p", status: "applied", diff: pad };
    state::append_run(home, history, record);
    lock.release();
    print(`r-${i}`);
    i += 1;
}
"#;

#[test]
fn the_history_is_compacted_at_100_and_loses_nothing_under_kill_9() {
    let p = Project::new().file("append.rhai", APPENDER);
    let mut next = 0usize;
    let mut lines_before = 0;
    let mut compactions = 0;
    for round in 0.. {
        if compactions >= 2 && round >= 10 {
            break;
        }
        assert!(round < 200, "no two compactions after {round} rounds");
        let mut child = p
            .aloop(&["exec", "append.rhai", &format!("first={next}")])
            .env("ALOOP_MAX_OPERATIONS", "1000000000")
            .spawn();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        std::thread::sleep(Duration::from_millis(100 + u64::from(nanos % 400)));
        child.kill().unwrap(); // SIGKILL: no chance to finish or clean up
        let out = child.wait_with_output().unwrap();
        let confirmed = next + String::from_utf8_lossy(&out.stdout).lines().count();

        let text = p.read_home("iterate-runs.jsonl");
        let lines = text.lines().count();
        assert!(lines < 201, "compacted before it holds 200 records ({lines} lines)");
        if lines < lines_before {
            compactions += 1;
        }
        lines_before = lines;
        // Every complete line is a record (a last line cut off by the kill
        // is left out by readers and cut by the next append).
        let complete = &text[..text.rfind('\n').map_or(0, |at| at + 1)];
        for line in complete.lines() {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|e| panic!("a torn record in the middle: {e}"));
        }
        // The kept records are the newest 100 (or all) of r-0..r-n, where
        // n is the last one reported saved, or the one after it (saved just
        // before the kill).
        let mut kept: Vec<usize> = runs_json(&p)
            .iter()
            .map(|run| run["id"].as_str().unwrap().trim_start_matches("r-").parse().unwrap())
            .collect();
        kept.reverse();
        let newest = kept.last().map_or(0, |n| n + 1);
        assert!(newest == confirmed || newest == confirmed + 1, "saved {newest}, reported {confirmed}");
        let expected: Vec<usize> = (newest.saturating_sub(100)..newest).collect();
        assert_eq!(kept, expected, "records were lost");
        next = newest;
    }
}

#[test]
fn a_record_cut_off_by_a_kill_is_left_out_and_cut_by_the_next_append() {
    let whole = format!("{}\n{}\n", record("a"), record("b"));
    let p = Project::git().home_file("iterate-runs.jsonl", &format!("{whole}{{\"id\": \"c\", \"proj"));
    let ids = |p: &Project| -> Vec<String> {
        runs_json(p).iter().map(|run| run["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(&p), ["b", "a"]);
    p.aloop(&["iterate", "run", "--dry-run"]).run().ok();
    let text = p.read_home("iterate-runs.jsonl");
    assert!(text.starts_with(&whole) && text.ends_with("}\n") && text.lines().count() == 3, "{text}");
    assert_eq!(ids(&p)[1..], ["b", "a"]);

    std::fs::write(p.home().join("iterate-runs.jsonl"), format!("{whole}{{\"id\": 3}}\n")).unwrap();
    p.aloop(&["iterate", "runs"]).run().code(1).stderr_has(
        "iterate-runs.jsonl: not a list of run records with an \"id\": the top level[2]: \"id\" must be a string, \
         not the number 3 (fix or remove the file; it was left as it is)",
    );
}
