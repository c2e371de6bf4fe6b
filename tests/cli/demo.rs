//! `aloop demo`: the whole story loop on a throwaway project with the bundled
//! recordings, no account and no network.

use crate::support::Project;

#[test]
fn the_demo_runs_three_stories_to_passing_with_a_rejection_and_a_fix() {
    let p = Project::new();
    let out = p.aloop(&["demo", "--fast", "--keep"]).run().ok();
    for text in [
        "US-001 PASSED",
        "US-002 REJECTED",
        "exit code 2",
        "US-002 PASSED",
        "US-003 PASSED",
        "3/3 stories complete",
        "all checks pass",
    ] {
        assert!(out.stderr.contains(text), "missing {text:?}:\n{}", out.stderr);
    }
    let demo_root = p.home().join("demo");
    let project = std::fs::read_dir(&demo_root).unwrap().next().unwrap().unwrap().path();
    // The recordings' paths are shown where the edits really happened.
    let edited = format!("→ Edit: {}/temp.sh", project.display());
    assert!(out.stderr.contains(&edited), "missing {edited:?}:\n{}", out.stderr);
    assert!(!out.stderr.contains("/home/dev/temp"), "{}", out.stderr);
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git").args(args).current_dir(&project).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let log = git(&["log", "--format=%s"]);
    assert_eq!(log.matches("feat: [US-").count(), 4, "{log}");
    // The runner updates .loop/ state after the agents; the code is all committed.
    assert_eq!(
        git(&["status", "--porcelain", "--", ".", ":!.loop"]),
        "",
        "the agents left uncommitted changes"
    );
    let check = std::process::Command::new("sh").arg("test.sh").current_dir(&project).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let prd: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(project.join(".loop/prd.json")).unwrap()).unwrap();
    let stories = prd["userStories"].as_array().unwrap();
    assert!(stories.iter().all(|s| s["passes"] == true));
    assert_eq!(stories[1]["rejections"], 1);
    let progress = std::fs::read_to_string(project.join(".loop/progress.md")).unwrap();
    assert!(
        progress.contains("## US-001")
            && progress.contains("Verdict: REJECT")
            && progress.contains("Verdict: PASS"),
        "{progress}"
    );
}

#[test]
fn without_keep_the_demo_removes_its_project() {
    let p = Project::new();
    p.aloop(&["demo", "--fast"]).run().ok().stderr_has("3/3 stories complete");
    assert_eq!(std::fs::read_dir(p.home().join("demo")).unwrap().count(), 0);
}
