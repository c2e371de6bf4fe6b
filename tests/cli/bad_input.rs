//! Malformed input of every kind: each case must fail with a message that
//! names the input, a non-zero exit code, and leave every file byte-identical.

use crate::support::Project;

/// One malformed input: how to set it up, what to run, what must come back.
struct Case {
    name: &'static str,
    setup: fn(Project) -> Project,
    args: &'static [&'static str],
    code: i32,
    message: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const fn case(
    name: &'static str,
    setup: fn(Project) -> Project,
    args: &'static [&'static str],
    code: i32,
    message: &'static str,
) -> Case {
    Case { name, setup, args, code, message, env: &[] }
}

fn plain(p: Project) -> Project {
    p
}

fn script(p: Project, name: &str, text: &str) -> Project {
    p.file(name, text)
}

/// Host-level cases: the command line, scripts, state files read by
/// primitives, templates.
// One table of cases, read one at a time.
#[allow(clippy::too_many_lines)]
fn host_cases() -> Vec<Case> {
    vec![
        case("unknown flag", plain, &["--frobnicate"], 2, "--frobnicate"),
        case("exec without a target", plain, &["exec"], 2, "FILE_OR_NAME"),
        case(
            "exec pair without =",
            |p| script(p, "ok.rhai", "1;"),
            &["exec", "ok.rhai", "novalue"],
            2,
            "'novalue' is not KEY=VALUE",
        ),
        case("-C to a missing dir", plain, &["-C", "no/such/dir", "script", "list"], 2, "no/such/dir"),
        case(
            "show of an unknown script",
            plain,
            &["script", "show", "no/such"],
            1,
            "no script named 'no/such'",
        ),
        case(
            "eject of a path-like name",
            plain,
            &["script", "eject", "../../etc/passwd"],
            2,
            "not a valid script name",
        ),
        case(
            "eject of an unknown prompt",
            plain,
            &["prompt", "eject", "no/such"],
            1,
            "no bundled prompt named 'no/such'",
        ),
        case("trust with conflicting flags", plain, &["trust", "--list", "--revoke", "x"], 2, "--revoke"),
        case("an unknown choice", plain, &["iterate", "run", "--scope", "everything"], 2, "everything"),
        case("a word where a number goes", plain, &["run", "three"], 2, "three"),
        case("a number flag with text", plain, &["iterate", "run", "--max-files", "many"], 2, "many"),
        case("a missing script file", plain, &["exec", "./missing.rhai"], 1, "missing.rhai"),
        case(
            "a syntax error",
            |p| p.fixture("bad/syntax.rhai", "s.rhai"),
            &["exec", "s.rhai"],
            1,
            "s.rhai:2:1",
        ),
        case(
            "a runtime error in a function",
            |p| p.fixture("bad/runtime.rhai", "r.rhai"),
            &["exec", "r.rhai"],
            1,
            "r.rhai:1:",
        ),
        case(
            "a script that is not UTF-8",
            |p| p.fixture("bad/binary.dat", "bin.rhai"),
            &["exec", "./bin.rhai"],
            1,
            "bin.rhai: not UTF-8",
        ),
        case(
            "escape by ..",
            |p| script(p, "e.rhai", "fs::read(\"../../x\");"),
            &["exec", "e.rhai"],
            1,
            "path '../../x'",
        ),
        case(
            "escape by absolute path",
            |p| script(p, "e.rhai", "fs::write(\"/tmp/aloop-escape\", \"x\");"),
            &["exec", "e.rhai"],
            1,
            "path '/tmp/aloop-escape'",
        ),
        case(
            "escape by symlink",
            |p| {
                std::os::unix::fs::symlink("/etc", p.path("etc")).unwrap();
                script(p, "e.rhai", "fs::read(\"etc/hostname\");")
            },
            &["exec", "e.rhai"],
            1,
            "path 'etc/hostname' resolves to /etc/hostname",
        ),
        Case {
            env: &[("ALOOP_MAX_OPERATIONS", "10000")],
            ..case(
                "an endless loop",
                |p| script(p, "l.rhai", "loop { }"),
                &["exec", "l.rhai"],
                1,
                "l.rhai:1:",
            )
        },
        Case {
            env: &[("ALOOP_MAX_MEMORY_MB", "64")],
            ..case(
                "a string that grows without end",
                |p| script(p, "m.rhai", "let s = \"x\";\nloop {\n    s += s;\n}\n"),
                &["exec", "m.rhai"],
                1,
                "m.rhai:3:7: the script held more than 64 MiB in strings and lists",
            )
        },
        case(
            "deep recursion",
            |p| script(p, "d.rhai", "fn d(n) { d(n + 1) }\nd(0);"),
            &["exec", "d.rhai"],
            1,
            "d.rhai:",
        ),
        case("eval", |p| script(p, "v.rhai", "eval(\"1\");"), &["exec", "v.rhai"], 1, "'eval' is disabled"),
        case(
            "an undeclared variable",
            |p| script(p, "u.rhai", "x += 1;"),
            &["exec", "u.rhai"],
            1,
            "u.rhai:1:1",
        ),
        case(
            "an import of a missing module",
            |p| script(p, "i.rhai", "import \"no/such\" as m;"),
            &["exec", "i.rhai"],
            1,
            "no script named 'no/such'",
        ),
        case(
            "a call with the wrong types",
            |p| script(p, "t.rhai", "fs::write(1, 2);"),
            &["exec", "t.rhai"],
            1,
            "t.rhai:1:",
        ),
        case(
            "truncated JSON state",
            |p| {
                p.fixture("bad/truncated.json", "state.json").file("j.rhai", "fs::read_json(\"state.json\");")
            },
            &["exec", "j.rhai"],
            1,
            "state.json:4:0",
        ),
        case(
            "overwriting malformed JSON",
            |p| {
                p.fixture("bad/truncated.json", "state.json")
                    .file("w.rhai", "fs::write_json(\"state.json\", #{});")
            },
            &["exec", "w.rhai"],
            1,
            "refusing to overwrite a malformed file",
        ),
        case(
            "non-UTF-8 state",
            |p| p.fixture("bad/binary.dat", "state.json").file("j.rhai", "fs::read_json(\"state.json\");"),
            &["exec", "j.rhai"],
            1,
            "not UTF-8",
        ),
        case(
            "a huge state file",
            |p| {
                let big = "x".repeat(80 * 1024 * 1024);
                p.file("huge.json", &format!("\"{big}\"")).file("h.rhai", "fs::read_json(\"huge.json\");")
            },
            &["exec", "h.rhai"],
            1,
            "huge.json: too large to read (80 MiB; the limit is 64 MiB)",
        ),
        case(
            "a trust store of the wrong type",
            |p| {
                let bytes = std::fs::read(crate::support::fixture("bad/trust-wrong-type.json")).unwrap();
                p.home_file("trust.json", &String::from_utf8(bytes).unwrap())
                    .file(".loop/scripts/x.rhai", "1;")
            },
            &["exec", "x"],
            1,
            "trust.json:1:",
        ),
        case(
            "a trusted command manifest of the wrong type",
            |p| {
                let p = p.fixture("bad/commands-wrong-type.toml", ".loop/scripts/commands.toml");
                p.aloop(&["trust"]).run().ok();
                p
            },
            &["run"],
            1,
            "commands.toml: TOML parse error at line 2, column 10",
        ),
        case(
            "an unclosed template tag",
            |p| {
                p.fixture("bad/unclosed.md", ".loop/prompts/u.md")
                    .file("t.rhai", "tpl::render(\"u\", #{ items: [1] });")
            },
            &["exec", "t.rhai"],
            1,
            "u.md:",
        ),
        case(
            "a missing template variable",
            |p| {
                p.fixture("bad/missing-var.md", ".loop/prompts/m.md")
                    .file("t.rhai", "tpl::render(\"m\", #{ name: \"Ann\" });")
            },
            &["exec", "t.rhai"],
            1,
            "missing_field",
        ),
        case(
            "an unknown template",
            |p| script(p, "t.rhai", "tpl::render(\"no/such\", #{});"),
            &["exec", "t.rhai"],
            1,
            "no prompt template named 'no/such'",
        ),
        Case {
            env: &[("ALOOP_MAX_OPERATIONS", "lots")],
            ..case(
                "a limit that is not a number",
                |p| script(p, "ok.rhai", "1;"),
                &["exec", "ok.rhai"],
                2,
                "ALOOP_MAX_OPERATIONS='lots' is not a whole number",
            )
        },
        Case {
            env: &[("ALOOP_NOW", "yesterday")],
            ..case(
                "a bad clock override",
                |p| script(p, "c.rhai", "time::now();"),
                &["exec", "c.rhai"],
                1,
                "ALOOP_NOW='yesterday'",
            )
        },
    ]
}

fn with_loop(p: Project, prd_fixture: &str) -> Project {
    p.fixture("loop/config.json", ".loop/config.json").fixture(prd_fixture, ".loop/prd.json")
}

/// Workflow cases: iterate's flags and state files, the story loop's files.
fn workflow_cases() -> Vec<Case> {
    vec![
        case(
            "an interval cron cannot express",
            plain,
            &["iterate", "watch", "--interval", "7m"],
            2,
            "cron cannot fire exactly every 7m",
        ),
        case("a zero interval", plain, &["iterate", "watch", "--interval", "0"], 2, "--interval '0'"),
        case("a negative interval", plain, &["iterate", "watch", "--interval", "-5m"], 2, "--interval '-5m'"),
        case("an interval that is a word", plain, &["iterate", "watch", "--interval", "abc"], 2, "e.g. 30m"),
        case("quiet hours past 23", plain, &["iterate", "watch", "--quiet-hours", "25-08"], 2, "'25-08'"),
        case("quiet hours with no end", plain, &["iterate", "watch", "--quiet-hours", "8"], 2, "e.g. 22-08"),
        case("empty quiet hours", plain, &["iterate", "watch", "--quiet-hours", "22-22"], 2, "'22-22'"),
        case(
            "a goal key that starts with a digit",
            plain,
            &["iterate", "goals", "set", "9lives=1"],
            2,
            "'9lives=1'",
        ),
        case("a goal without a value", plain, &["iterate", "goals", "set", "conversion"], 2, "'conversion'"),
        case(
            "a timeout that is a word",
            plain,
            &["iterate", "run", "--timeout", "soon", "--dry-run"],
            2,
            "--timeout 'soon'",
        ),
        case(
            "truncated goals file",
            |p| {
                let text = std::fs::read_to_string(crate::support::fixture("bad/truncated.json")).unwrap();
                p.home_file("iterate-goals.json", &text)
            },
            &["iterate", "goals", "set", "a=1"],
            1,
            "iterate-goals.json:4:0",
        ),
        case(
            "a runs file of the wrong type",
            |p| p.home_file("iterate-runs.json", "{\"version\": 1, \"runs\": \"many\"}\n"),
            &["iterate", "runs"],
            1,
            "iterate-runs.json",
        ),
        case(
            "a prd with the wrong top-level key",
            |p| with_loop(p, "loop/prd_wrong_key.json"),
            &["run", "1"],
            1,
            "userStories",
        ),
        case(
            "stories with wrong types",
            |p| with_loop(p, "loop/prd_bad_stories.json"),
            &["status"],
            1,
            "prd.json",
        ),
        case(
            "a prd that is not UTF-8",
            |p| {
                p.fixture("loop/config.json", ".loop/config.json").fixture("bad/binary.dat", ".loop/prd.json")
            },
            &["status"],
            1,
            "not UTF-8",
        ),
        case(
            "a config of the wrong type",
            |p| p.file(".loop/config.json", "{\"agent\": 5}\n").fixture("loop/prd.json", ".loop/prd.json"),
            &["run", "1"],
            1,
            "config.json",
        ),
        case("a run without init", plain, &["run"], 1, "aloop init"),
        case(
            "zero iterations",
            |p| with_loop(p, "loop/prd.json"),
            &["run", "0"],
            2,
            "error: invalid value '0' for '[N]': must be at least 1",
        ),
        case(
            "no runs to list",
            plain,
            &["iterate", "runs", "--limit", "0"],
            2,
            "'--limit <N>': must be at least 1",
        ),
    ]
}

#[test]
fn workflow_bad_inputs_fail_clearly_and_change_nothing() {
    run_cases(workflow_cases());
}

fn run_cases(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in cases {
        let project = (case.setup)(Project::git());
        let before = project.snapshot();
        let mut run = project.aloop(case.args);
        for (k, v) in case.env {
            run = run.env(k, v);
        }
        let out = run.run();
        let after = project.snapshot();
        // Existing files must be byte-identical; the only new files allowed
        // are lock files (taken before the input was found to be bad).
        let changed: Vec<_> = after
            .iter()
            .filter(|(path, bytes)| match before.get(*path) {
                Some(old) => old != *bytes,
                None => path.extension().is_none_or(|e| e != "lock"),
            })
            .map(|(p, _)| p)
            .collect();
        if out.code != case.code
            || !out.stderr.contains(case.message)
            || !changed.is_empty()
            || before.len() > after.len()
        {
            failures.push(format!(
                "{}: exit {} (want {}), changed {changed:?}\n  want stderr containing {:?}\n  stderr: {}",
                case.name, out.code, case.code, case.message, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{} bad inputs misbehaved:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn host_bad_inputs_fail_clearly_and_change_nothing() {
    run_cases(host_cases());
}
