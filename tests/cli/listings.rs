//! `--json` on the host's listings: the same rows as the tables, as arrays
//! of objects.

use serde_json::json;

use crate::support::Project;

#[test]
fn script_list_json_has_the_tables_fields_for_scripts_and_the_manifest() {
    let p = Project::git()
        .file(".loop/scripts/loop/run.rhai", "print(1);\n")
        .file(".loop/scripts/commands.toml", "[commands.\"hello\"]\nscript = \"hello\"\n")
        .home_file("scripts/hello.rhai", "print(2);\n");
    let listed = p.aloop(&["script", "list", "--json"]).run().ok().json();
    let rows = listed.as_array().expect("an array");
    let row =
        |name: &str| rows.iter().find(|r| r["name"] == name).unwrap_or_else(|| panic!("{name}: {listed}"));
    assert_eq!(
        row("loop/run"),
        &json!({"name": "loop/run", "kind": "command", "source": "repo", "overrides": ["bundled"], "trust": "untrusted"})
    );
    assert_eq!(
        row("agents/claude"),
        &json!({"name": "agents/claude", "kind": "adapter", "source": "bundled", "overrides": [], "trust": "trusted"})
    );
    assert_eq!(row("hello")["source"], "user");
    assert_eq!(
        rows.last().unwrap(),
        &json!({"name": "commands.toml", "kind": "manifest", "source": "repo", "overrides": ["bundled"], "trust": "untrusted"})
    );
    let table = p.aloop(&["script", "list"]).run().ok();
    assert_eq!(rows.len() + 2, table.stdout.lines().count(), "one JSON object per table row");
    assert!(
        table.stdout.contains("\ncommands.toml      manifest  repo (laid over bundled)  untrusted\n"),
        "{}",
        table.stdout
    );
}

#[test]
fn prompt_list_json_has_no_trust_field() {
    let p = Project::git().file(".loop/prompts/loop/planner.md", "Plan {{SPEC}}\n");
    let listed = p.aloop(&["prompt", "list", "--json"]).run().ok().json();
    let planner = listed.as_array().unwrap().iter().find(|r| r["name"] == "loop/planner").cloned();
    assert_eq!(planner, Some(json!({"name": "loop/planner", "source": "repo", "overrides": ["bundled"]})));
}

#[test]
fn trust_json_lists_each_file_with_its_status() {
    let p = Project::git()
        .file(".loop/scripts/a.rhai", "print(1);\n")
        .file(".loop/scripts/b.rhai", "print(2);\n");
    p.aloop(&["trust", "--list", "--json"]).run().ok().stdout_is(
        "[\n  {\n    \"path\": \".loop/scripts/a.rhai\",\n    \"status\": \"untrusted\"\n  },\n  \
         {\n    \"path\": \".loop/scripts/b.rhai\",\n    \"status\": \"untrusted\"\n  }\n]\n",
    );
    let trusted = p.aloop(&["trust", "--json"]).run().ok().json();
    assert_eq!(
        trusted,
        json!([{"path": ".loop/scripts/a.rhai", "status": "trusted"}, {"path": ".loop/scripts/b.rhai", "status": "trusted"}])
    );
    p.aloop(&["trust", "--json", "--revoke", "x"]).run().code(2).stderr_has("cannot be used with");
}
