//! `aloop completions` and `aloop man`: made from the whole command tree,
//! the workflow commands of commands.toml included.

use crate::support::Project;

/// What bash's completion function offers for the words typed so far.
fn bash_completes(project: &Project, words: &[&str]) -> String {
    let line = words.join(" ");
    let script = format!(
        "source <(\"$ALOOP\" completions bash) || exit 9\n\
         COMP_WORDS=({line}); COMP_CWORD={cword}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         _aloop aloop '{current}' '{previous}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        cword = words.len() - 1,
        current = words[words.len() - 1],
        previous = words[words.len() - 2],
    );
    let out = project.shell(&script);
    assert!(out.status.success(), "bash: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn bash_completes_host_workflow_and_user_commands_and_their_flags() {
    let user = "[commands.\"nightly\"]\nscript = \"loop/run\"\nabout = \"The user's own\"\n";
    let project = Project::git().home_file("scripts/commands.toml", user);
    assert_eq!(bash_completes(&project, &["aloop", "ru"]), "run\n");
    assert_eq!(bash_completes(&project, &["aloop", "ni"]), "nightly\n");
    assert_eq!(bash_completes(&project, &["aloop", "co"]), "completions\n");
    assert_eq!(bash_completes(&project, &["aloop", "iterate", "w"]), "watch\n");
    let flags = bash_completes(&project, &["aloop", "run", "--s"]);
    assert_eq!(flags, "--skip-eval\n--story\n");
}

#[test]
fn every_shell_gets_a_script_and_an_unknown_shell_is_a_usage_error() {
    let project = Project::new();
    for (shell, start) in [
        ("bash", "_aloop() {"),
        ("zsh", "#compdef aloop"),
        ("fish", "# Print an optspec for argparse"),
        ("elvish", "\nuse builtin;"),
        ("powershell", "\nusing namespace System.Management.Automation"),
    ] {
        let out = project.aloop(&["completions", shell]).run().ok();
        assert!(out.stdout.starts_with(start), "{shell}: {}", &out.stdout[..80.min(out.stdout.len())]);
        assert!(out.stdout.contains("iterate"), "{shell} lacks the workflow commands");
    }
    project.aloop(&["completions", "tcsh"]).run().code(2).stderr_has("invalid value 'tcsh' for '<SHELL>'");
}

#[test]
fn man_prints_a_page_per_command_and_writes_them_all() {
    let project = Project::new();
    let page = project.aloop(&["man", "iterate", "watch"]).run().ok();
    let head: Vec<&str> = page.stdout.lines().skip(2).take(3).collect();
    assert_eq!(
        head,
        [
            ".TH aloop-iterate-watch 1  \"aloop 0.1.0\" ",
            ".SH NAME",
            "aloop\\-iterate\\-watch \\- Run iterate on a schedule: save the schedule and print a crontab line, a CI workflow, or run in the foreground",
        ]
    );
    assert!(page.stdout.contains("\\fB\\-\\-foreground\\fR"), "{}", page.stdout);
    project
        .aloop(&["man", "no", "such"])
        .run()
        .code(2)
        .stderr_is("error: no command `no such` (see `aloop --help`)\n");

    let dir = project.root().join("man1");
    let dir_arg = dir.display().to_string();
    let out = project.aloop(&["man", "--out-dir", &dir_arg]).run().ok();
    let mut pages: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    pages.sort();
    for expected in ["aloop.1", "aloop-run.1", "aloop-iterate-watch.1", "aloop-trust.1", "aloop-man.1"] {
        assert!(pages.iter().any(|p| p == expected), "{expected} missing from {pages:?}");
    }
    out.stderr_is(&format!("✓ {} man pages written to {{root}}/man1\n", pages.len()));
    let root_page = std::fs::read_to_string(dir.join("aloop.1")).unwrap();
    assert!(root_page.contains("aloop\\-run(1)"), "the root page lists the commands");
}
