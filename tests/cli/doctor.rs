//! `aloop doctor`: what works and what will not, in a good and in a broken
//! repository; exit 0 only when `aloop run` would start.

use serde_json::Value;

use crate::story_loop::loop_project;
use crate::support::Project;

/// The finding of `area`/`item` in `doctor --json`'s output.
fn finding<'a>(report: &'a Value, area: &str, item: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["area"] == area && f["item"] == item)
        .unwrap_or_else(|| panic!("no {area} {item} in {report}"))
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n")
}

#[test]
fn a_ready_repository_passes_and_says_what_it_found() {
    let p = loop_project("prd.json");
    // HOME is the folder that holds ALOOP_HOME.
    let credentials = p.home().parent().unwrap().join(".claude/.credentials.json");
    std::fs::create_dir_all(credentials.parent().unwrap()).unwrap();
    std::fs::write(&credentials, "{}").unwrap();
    let out = p.aloop(&["doctor", "--json"]).env("IS_SANDBOX", "1").run().ok();
    let report = out.json();
    assert_eq!(report["ready"], true, "{report}");
    assert_eq!(finding(&report, "loop", "config.json")["level"], "ok");
    assert_eq!(finding(&report, "loop", "prd.json")["detail"], "0/3 stories pass");
    let claude = finding(&report, "agents", "claude");
    assert_eq!(claude["level"], "ok");
    let detail = claude["detail"].as_str().unwrap();
    assert!(detail.ends_with("; signed in (~/.claude/.credentials.json exists)"), "{detail}");
    assert_eq!(finding(&report, "git", "work tree")["detail"], "clean");
    assert_eq!(finding(&report, "iterate", "schedule")["detail"], "none saved");
    let table = p.aloop(&["doctor"]).env("IS_SANDBOX", "1").run().ok();
    assert!(table.stdout.contains("\nok    loop     config.json"), "{}", table.stdout);
    table.stderr_is("✓ aloop run would start here\n");
}

#[test]
fn a_broken_repository_fails_naming_what_keeps_the_loop_from_starting() {
    let p = Project::git()
        .file(".loop/config.json", "{\"agent\": 5}\n")
        .file(".loop/prd.json", "{\"userStories\": [{\"id\": \"US-001\"}]}\n")
        .file(".loop/scripts/loop/run.rhai", "print(1);\n")
        .file("dirty.txt", "x");
    let out = p.aloop(&["doctor", "--json"]).env_remove("IS_SANDBOX").run().code(1);
    let report = out.json();
    assert_eq!(report["ready"], false);
    let config = finding(&report, "loop", "config.json");
    assert_eq!(config["level"], "fail");
    assert_eq!(config["detail"], "\"agent\" must be an agent name such as \"claude\", not the number 5");
    let prd = finding(&report, "loop", "prd.json");
    assert_eq!(prd["level"], "fail");
    assert!(prd["detail"].as_str().unwrap().contains("\"title\" is missing"), "{prd}");
    let script = finding(&report, "scripts", ".loop/scripts/loop/run.rhai");
    assert_eq!(script["detail"], "untrusted: it will not run until `aloop trust`");
    assert_eq!(finding(&report, "git", "work tree")["level"], "warn");
    let table = p.aloop(&["doctor"]).env_remove("IS_SANDBOX").run().code(1);
    table.stderr_is("error: aloop run would not start: loop config.json, loop prd.json\n");
}

#[test]
fn as_root_full_autonomy_for_claude_is_a_failure_with_the_ways_out() {
    let p = loop_project("prd.json");
    let run = p.aloop(&["doctor", "--json"]).env_remove("IS_SANDBOX").run();
    let report = run.json();
    let user = finding(&report, "machine", "user");
    if is_root() {
        assert_eq!(run.code, 1);
        assert_eq!(user["level"], "fail");
        assert!(user["detail"].as_str().unwrap().contains("\"sandbox\": true"), "{user}");
    } else {
        assert_eq!((run.code, user["detail"].as_str()), (0, Some("not root")));
    }
}
