//! The host: primitives, lookup order, eject, trust, the sandbox, limits,
//! errors and exit codes.

use std::os::unix::fs::PermissionsExt;

use crate::support::Project;

fn with_script(project: Project, name: &str) -> Project {
    project.fixture(&format!("host/{name}"), name)
}

#[test]
fn fs_json_and_tpl_primitives_work_on_real_files() {
    let p =
        with_script(Project::new(), "primitives.rhai").file(".loop/prompts/greeting.md", "Hello, {{who}}!");
    let out = p.aloop(&["exec", "./primitives.rhai"]).run().ok();
    for line in [
        "read=alpha+beta",
        "exists=true,false",
        "json.a2k=v",
        "list=[\"a.txt\", \"b.json\", \"sub\"]",
        "removed=true,false",
        "parse=3",
        "parse.values=f64,i64,f64,a\"b,true,true,3,map",
        "stringify={\"x\":[true,null]}",
        "join=a, 1, true, ||b.json/sub",
        "render=Hi Ann <b&>",
        "tpl.exists=true,false",
        "tpl=Hello, world!",
        "one    1",
    ] {
        assert!(out.stdout.contains(line), "missing {line:?} in\n{}", out.stdout);
    }
    let mode = |rel: &str| std::fs::metadata(p.path(rel)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("out/b.json"), 0o600);
    assert_eq!(mode("out/sub"), 0o700);
    assert_eq!(
        p.read("out/b.json"),
        "{\n  \"a\": [\n    1,\n    2,\n    {\n      \"k\": \"v\"\n    }\n  ],\n  \"z\": 1\n}\n"
    );
}

#[test]
fn atomic_writes_leave_no_temp_files_and_keep_key_order() {
    let p = Project::new()
        .file("state.json", "{\"zeta\": 1, \"alpha\": {\"y\": 1, \"b\": 2}}\n")
        .file("t.rhai", "let s = fs::read_json(\"state.json\");\ns.alpha.b = 3;\ns.added = 4;\nfs::write_json(\"state.json\", s);");
    p.aloop(&["exec", "t.rhai"]).run().ok();
    assert_eq!(
        p.read("state.json"),
        "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"y\": 1,\n    \"b\": 3\n  },\n  \"added\": 4\n}\n"
    );
    let names: Vec<String> = std::fs::read_dir(p.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| std::path::Path::new(n).extension().is_none_or(|ext| ext != "tmp")),
        "temp files left: {names:?}"
    );
}

/// `key_order` puts the listed keys first, in that order and at every depth,
/// and the rest sorted; `fs::write_json` still keeps an existing file's order
/// and uses the list only for keys the file lacks.
#[test]
fn key_order_lists_keys_first_and_sorts_the_rest() {
    let script = r#"let value = #{ zeta: 1, beta: #{ y: 1, id: 2 }, id: 3, alpha: 4 };
let opts = #{ key_order: ["id", "zeta", "missing", "id"] };
print(json::pretty(value, opts));
fs::write_json("new.json", value, opts);
fs::write_json("old.json", value, opts);"#;
    let p = Project::new().file("old.json", "{\"alpha\": 0, \"beta\": {\"y\": 0}}\n").file("t.rhai", script);
    let pretty = "{\n  \"id\": 3,\n  \"zeta\": 1,\n  \"alpha\": 4,\n  \"beta\": {\n    \"id\": 2,\n    \"y\": 1\n  }\n}";
    assert_eq!(p.aloop(&["exec", "t.rhai"]).run().ok().stdout, format!("{pretty}\n"));
    assert_eq!(p.read("new.json"), format!("{pretty}\n"));
    assert_eq!(
        p.read("old.json"),
        "{\n  \"alpha\": 4,\n  \"beta\": {\n    \"y\": 1,\n    \"id\": 2\n  },\n  \"id\": 3,\n  \"zeta\": 1\n}\n"
    );
}

#[test]
fn a_bad_key_order_option_is_an_error_naming_it() {
    let p = Project::new()
        .file("pretty.rhai", "json::pretty(#{}, #{ key_order: [1] });")
        .file("write.rhai", "fs::write_json(\"a.json\", #{}, #{ order: [] });");
    p.aloop(&["exec", "pretty.rhai"])
        .run()
        .code(1)
        .stderr_has("json::pretty: option 'key_order' must be an array of key names");
    p.aloop(&["exec", "write.rhai"])
        .run()
        .code(1)
        .stderr_has("fs::write_json: unknown option 'order' (the option is key_order)");
    assert!(!p.path("a.json").exists());
}

/// A file with a key given twice (JSON allows it; `serde_json` keeps the last
/// value) is malformed for aloop: reading it fails naming the key and its
/// position, and it is never rewritten, small objects and big ones (over 16
/// keys the order reader uses a set).
#[test]
fn a_file_with_a_repeated_key_is_refused_and_never_rewritten() {
    let big: Vec<String> = (0..20).map(|i| format!("\"k{i:02}\": {i}")).collect();
    let big = format!("{{{}, \"k03\": 99}}\n", big.join(", "));
    let p = Project::new()
        .file("small.json", "{\"a\": 0, \"a\": 5}\n")
        .file("big.json", &big)
        .file("read.rhai", "fs::read_json(ARGS.name);")
        .file("write.rhai", "fs::write_json(ARGS.name, #{ added: true });");
    for (name, error) in
        [("small.json", "small.json:1:12: key \"a\""), ("big.json", "big.json:1:216: key \"k03\"")]
    {
        for script in ["read.rhai", "write.rhai"] {
            p.aloop(&["exec", script, &format!("name={name}")]).run().code(1).stderr_has(error);
        }
    }
    assert_eq!(p.read("small.json"), "{\"a\": 0, \"a\": 5}\n");
    assert_eq!(p.read("big.json"), big);
}

#[test]
fn malformed_json_is_reported_with_line_and_column_and_never_overwritten() {
    let bad = "{\n  \"a\": 1,\n  \"b\": tru\n}\n";
    let p = Project::new()
        .file("state.json", bad)
        .file("read.rhai", "fs::read_json(\"state.json\");")
        .file("write.rhai", "fs::write_json(\"state.json\", #{ a: 2 });");
    p.aloop(&["exec", "read.rhai"])
        .run()
        .code(1)
        .stderr_has("state.json:4:0: expected ident")
        .stderr_has("read.rhai:1:");
    p.aloop(&["exec", "write.rhai"]).run().code(1).stderr_has("refusing to overwrite a malformed file");
    assert_eq!(p.read("state.json"), bad);
}

#[test]
fn git_primitives_see_tracked_and_untracked_changes() {
    let p = with_script(Project::git().file("tracked.txt", "original\n"), "git.rhai").commit("add tracked");
    // A fresh repository: git abbreviates blob ids to 7 digits.
    p.aloop(&["exec", "git.rhai"]).run().ok().stdout_is(
        r#"repo=true branch=main head_len=40
files=["new/untracked.txt", "tracked.txt"]
 new/untracked.txt | 1 +
 tracked.txt       | 2 +-
 2 files changed, 2 insertions(+), 1 deletion(-)

diff --git a/new/untracked.txt b/new/untracked.txt
new file mode 100644
index 0000000..d5a09df
--- /dev/null
+++ b/new/untracked.txt
@@ -0,0 +1 @@
+brand new
diff --git a/tracked.txt b/tracked.txt
index 4b48dee..5ea2ed4 100644
--- a/tracked.txt
+++ b/tracked.txt
@@ -1 +1 @@
-original
+changed

"#,
    );
    // The user's own index is untouched: the untracked file is still untracked.
    assert!(p.git_cmd(&["status", "--porcelain"]).contains("?? new/"));
}

#[test]
fn proc_runs_argv_with_stdin_env_and_timeout() {
    let p = with_script(Project::new(), "proc.rhai");
    p.aloop(&["exec", "proc.rhai"]).run().ok().stderr_empty().stdout_is(
        "code=3 stdout=out\nstderr=err\n\nstdin=fed through stdin\nenv=hello env\n\n\
         timed_out=true code=\nwhich=true missing=true\n",
    );
}

#[test]
fn time_follows_the_aloop_now_override() {
    let p = with_script(Project::new(), "time.rhai");
    p.aloop(&["exec", "time.rhai"]).env("ALOOP_NOW", "2026-03-04T23:45:00+01:00").run().ok().stdout_is(
        "now=2026-03-04T23:45:00+01:00 hour=23 minute=45\nunix=1772664300 parsed=1767323045\n\
         format=2026-03-05T00:45:00+01:00\n",
    );
}

#[test]
fn durations_parse_what_people_type_and_format_compactly() {
    let script = r#"
for d in ["900", "90s", "30m", "2h", "1d", "1h30m", " 2h 15min ", "1week"] { print(`${d}=${time::parse_duration(d)}`); }
for s in [0, 45, 5400, 7200, 90061, 604800] { print(`${s}=${time::format_duration(s)}`); }
for d in ["abc", "", "-5m", "1500ms"] { try { time::parse_duration(d); } catch (e) { print(e); } }
"#;
    let p = Project::new().file("d.rhai", script);
    let out = p.aloop(&["exec", "d.rhai"]).run().ok();
    let bad = "is not a duration: use seconds or numbers with units, e.g. 900, 90s, 30m, 2h, 1d or 1h30m";
    assert_eq!(
        out.stdout,
        format!(
            "900=900\n90s=90\n30m=1800\n2h=7200\n1d=86400\n1h30m=5400\n 2h 15min =8100\n1week=604800\n\
             0=0s\n45=45s\n5400=1h30m\n7200=2h\n90061=1d1h1m1s\n604800=7d\n\
             'abc' {bad}\n'' {bad}\n'-5m' {bad}\n'1500ms' is not a whole number of seconds\n"
        )
    );
}

#[test]
fn cron_next_and_format_follow_the_zone_they_are_given() {
    let script = r#"
let weekdays = "0 9 * * 1-5";
print(time::format(time::cron_next(weekdays)));
print(time::format(time::cron_next(weekdays, "UTC")));
print(time::format(time::cron_next(weekdays, "America/New_York"), "%a %d %H:%M %Z", "America/New_York"));
print(time::format(time::cron_next("@daily"), "%Y-%m-%d %H:%M"));
print(`${time::utc_offset()} ${time::format(time::unix(), "UTC%:z")} ${time::format(0, "%H:%M", "UTC")}`);
for e in ["61 * * * *", "* * * *", "0 0 30 2 *"] { try { time::cron_next(e); } catch (err) { print(err); } }
try { time::cron_next("* * * * *", "Mars/Base"); } catch (err) { print(err); }
try { time::format(0, "%Q"); } catch (err) { print(err); }
"#;
    let p = Project::new().file("c.rhai", script);
    // A Friday evening in Berlin: the next weekday 09:00 is Monday's.
    let out = p.aloop(&["exec", "c.rhai"]).env("ALOOP_NOW", "2026-01-02T18:30:00+01:00").run().ok();
    assert_eq!(
        out.stdout,
        "2026-01-05T09:00:00+01:00\n\
         2026-01-05T10:00:00+01:00\n\
         Mon 05 09:00 EST\n\
         2026-01-03 00:00\n\
         3600 UTC+01:00 00:00\n\
         '61 * * * *' is not a cron expression (minute hour day month weekday): Component error: Number out of bounds\n\
         '* * * *' is not a cron expression (minute hour day month weekday): Invalid pattern: Pattern must have 5 fields when seconds are disallowed\n\
         the cron expression '0 0 30 2 *' never fires\n\
         'Mars/Base' is not a time zone: use local, UTC or an IANA name such as Europe/Berlin\n\
         '%Q' is not a strftime format\n"
    );
}

#[test]
fn cron_next_in_a_named_zone_follows_its_daylight_saving() {
    let script = r#"
let next = time::cron_next("30 2 * * *", "Europe/Berlin");
print(time::format(next, "%Y-%m-%d %H:%M %Z", "Europe/Berlin"));
"#;
    let p = Project::new().file("c.rhai", script);
    let next_after = |now: &str| p.aloop(&["exec", "c.rhai"]).env("ALOOP_NOW", now).run().ok().stdout;
    // 29 March 2026 skips 02:00-03:00 in Berlin, so that day's 02:30 runs at
    // 03:00; the next day's 02:30 is summer time.
    assert_eq!(next_after("2026-03-28T12:00:00+01:00"), "2026-03-29 03:00 CEST\n");
    assert_eq!(next_after("2026-03-29T03:10:00+02:00"), "2026-03-30 02:30 CEST\n");
    // 25 October 2026 goes through 02:30 twice: it fires at the first only.
    assert_eq!(next_after("2026-10-24T12:00:00+02:00"), "2026-10-25 02:30 CEST\n");
    assert_eq!(next_after("2026-10-25T02:40:00+02:00"), "2026-10-26 02:30 CET\n");
}

#[test]
fn proc_quote_joins_argv_for_a_posix_shell() {
    let script = r#"
print(proc::quote(["echo", "plain", "a b", "it's", "x=8%", "", "$HOME", "ünï"]));
try { proc::quote(["a\x00b"]); } catch (e) { print(e); }
try { proc::quote(["echo", 1]); } catch (e) { print(e); }
"#;
    let p = Project::new().file("q.rhai", script);
    let out = p.aloop(&["exec", "q.rhai"]).run().ok();
    assert_eq!(
        out.stdout,
        "echo plain 'a b' \"it's\" 'x=8%' '' '$HOME' 'ünï'\n\
         proc::quote: cannot quote [\"a\\0b\"] for a shell: cannot shell-quote string containing nul byte\n\
         argv[1] must be a string, not i64\n"
    );
    // What the shell makes of the line is the argv again.
    let line = "printf '[%s]' plain 'a b' \"it's\" '' '$HOME'";
    let shell = std::process::Command::new("sh").args(["-c", line]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&shell.stdout), "[plain][a b][it's][][$HOME]");
}

#[test]
fn tables_align_wide_characters_by_terminal_columns() {
    let script = r#"ui::table(["name", "status", "note"], [["日本語", "✅", "wide"], ["ascii", "ok", ()], ["🚀x", "失败", "last"]]);"#;
    let p = Project::new().file("t.rhai", script);
    let out = p.aloop(&["exec", "t.rhai"]).run().ok();
    assert_eq!(
        out.stdout,
        "name    status  note\n\
         ------  ------  ----\n\
         日本語  ✅      wide\n\
         ascii   ok\n\
         🚀x     失败    last\n"
    );
}

#[test]
fn message_colours_follow_no_color_clicolor_and_clicolor_force() {
    let p = Project::new().file("m.rhai", "ui::warn(\"careful\"); ui::success(\"done\");");
    let run = |env: &[(&str, &str)]| {
        let mut cmd = p.aloop(&["exec", "m.rhai"]).env("NO_COLOR", "").env("CLICOLOR_FORCE", "");
        for (key, value) in env {
            cmd = cmd.env(key, value);
        }
        cmd.run().ok().stderr
    };
    let plain = "warning: careful\n✓ done\n";
    assert_eq!(run(&[]), plain, "no terminal, no colours");
    assert_eq!(run(&[("CLICOLOR_FORCE", "1")]), "\x1b[33mwarning:\x1b[0m careful\n\x1b[32m✓\x1b[0m done\n");
    assert_eq!(run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]), plain, "NO_COLOR wins");
}

#[test]
fn confirm_without_a_terminal_takes_the_default_and_says_why() {
    let p = Project::new().file("c.rhai", "print(`${ui::confirm(\"Go?\")} ${ui::confirm(\"Go?\", true)}`);");
    p.aloop(&["exec", "c.rhai"])
        .run()
        .ok()
        .stderr_is(
            "note: no terminal to ask \"Go?\"; taking the default answer: no\n\
             note: no terminal to ask \"Go?\"; taking the default answer: yes\n",
        )
        .stdout_is("false true\n");
}

#[test]
fn sandbox_refuses_paths_outside_the_project_and_home() {
    let p = Project::new();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), "s").unwrap();
    std::os::unix::fs::symlink(outside.path(), p.path("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("nothing-yet"), p.path("dangling")).unwrap();
    for (script, path) in [
        ("abs.rhai", "/etc/passwd"),
        ("up.rhai", "../outside"),
        ("link.rhai", "link/secret"),
        ("sub.rhai", "a/../../outside"),
    ] {
        std::fs::write(p.path(script), format!("fs::read(\"{path}\");")).unwrap();
        p.aloop(&["exec", script])
            .run()
            .code(1)
            .stderr_has(&format!("path '{path}'"))
            .stderr_has("outside the project");
    }
    std::fs::write(p.path("dang.rhai"), "fs::write(\"dangling\", \"x\");").unwrap();
    p.aloop(&["exec", "dang.rhai"]).run().code(1).stderr_has("outside the project");
    assert!(!outside.path().join("nothing-yet").exists(), "a dangling symlink wrote outside");
    // ALOOP_HOME is the one other reachable place.
    std::fs::write(p.path("home.rhai"), "fs::write(`${CTX.home}/x.txt`, \"ok\");").unwrap();
    p.aloop(&["exec", "home.rhai"]).run().ok();
    assert_eq!(p.read_home("x.txt"), "ok");
}

#[test]
fn script_errors_show_path_line_column_and_the_source_line() {
    let p = Project::new().fixture("host/runtime_error.rhai", "bad.rhai");
    p.aloop(&["exec", "bad.rhai"]).run().code(1).stderr_is(
        r#"error: bad.rhai:3:29: Function not found: * (&str | ImmutableString | String, i64)
 3 |     let total = count + "x" * 2;
   |                             ^
  called from bad.rhai:6:1: in call to 'add'
 6 | add(1);
   | ^
"#,
    );
    let p = Project::new().file("syntax.rhai", "let a = 1;\nlet b = ;\n");
    p.aloop(&["exec", "syntax.rhai"])
        .run()
        .code(1)
        .stderr_is("error: syntax.rhai:2:9: Unexpected ';'\n 2 | let b = ;\n   |         ^\n");
}

#[test]
fn limits_stop_endless_loops_deep_recursion_and_eval() {
    let p = Project::new()
        .file("loop.rhai", "let i = 0;\nwhile true { i += 1; }\n")
        .file("deep.rhai", "fn down(n) { down(n + 1) }\ndown(0);\n")
        .file("eval.rhai", "eval(\"1 + 1\");\n")
        .file("undeclared.rhai", "print(nope);\n");
    p.aloop(&["exec", "loop.rhai"])
        .env("ALOOP_MAX_OPERATIONS", "100000")
        .run()
        .code(1)
        .stderr_has("operations");
    p.aloop(&["exec", "deep.rhai"]).run().code(1).stderr_has("deep.rhai:");
    p.aloop(&["exec", "eval.rhai"]).run().code(1).stderr_has("'eval' is disabled");
    p.aloop(&["exec", "undeclared.rhai"]).run().code(1).stderr_has("undeclared.rhai:1:7").stderr_has("nope");
}

#[test]
fn exit_codes_are_chosen_by_the_script_or_mean_usage_and_errors() {
    let p = Project::new()
        .file("seven.rhai", "exit(7);")
        .file("usage.rhai", "fail(\"--interval must be like 30m\", 2);")
        .file("throw.rhai", "throw \"went wrong\";")
        .file("args.rhai", "print(`${ARGS.name}-${ARGS.n}`);\nfn f() { global::ARGS.name }\nprint(f());");
    p.aloop(&["exec", "seven.rhai"]).run().code(7);
    p.aloop(&["exec", "usage.rhai"]).run().code(2).stderr_is("error: --interval must be like 30m\n");
    p.aloop(&["exec", "throw.rhai"])
        .run()
        .code(1)
        .stderr_is("error: throw.rhai:1:1: went wrong\n 1 | throw \"went wrong\";\n   | ^\n");
    p.aloop(&["exec", "args.rhai", "name=ann", "n=3"]).run().ok().stdout_is("ann-3\nann\n");
    p.aloop(&["exec", "args.rhai", "novalue"]).run().code(2).stderr_is("error: 'novalue' is not KEY=VALUE\n");
    p.aloop(&["--no-such-flag"]).run().code(2);
    p.aloop(&["exec", "missing-script-name"])
        .run()
        .code(1)
        .stderr_is("error: no script named 'missing-script-name' (see `aloop script list`)\n");
}

#[test]
fn locks_name_their_holder() {
    let p = Project::new()
        .file("hold.rhai", "let l = fs::lock(\".loop/x.lock\");\nprint(\"locked\");\ntime::sleep(3);")
        .file("try.rhai", "fs::lock(\".loop/x.lock\");");
    let mut holder = p.aloop(&["exec", "hold.rhai"]).spawn();
    let pid = holder.id();
    // Wait until the holder has the lock (it prints once it does).
    let mut stdout = holder.stdout.take().unwrap();
    let mut buf = [0u8; 7];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    p.aloop(&["exec", "try.rhai"]).run().code(1).stderr_has(&format!("locked by pid {pid}"));
    holder.kill().unwrap();
    holder.wait().unwrap();
    // A lock whose holder died is free again.
    p.aloop(&["exec", "try.rhai"]).run().ok();
}

#[test]
fn ctrl_c_stops_the_child_process_group_and_exits_130() {
    let p = Project::new().fixture("host/interrupted.rhai", "sleepy.rhai");
    let mark = crate::support::marker("host-ctrl-c");
    let mut child = p.aloop(&["exec", "sleepy.rhai"]).env("ALOOP_TEST_MARKER", &mark).spawn();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = [0u8; 7];
    std::io::Read::read_exact(&mut stdout, &mut buf).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    unsafe { libc_kill(child.id().cast_signed(), 2) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    // Its own processes only (by marker): another test run may have its sleeps.
    crate::support::assert_no_survivors(&mark);
    // After the first Ctrl-C the script still ran its quick commands and
    // recorded what happened before exiting.
    assert_eq!(p.read("record.txt"), "interrupted=true after=ok");
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn broken_pipe_on_stdout_is_not_an_error() {
    let p = Project::new().file("many.rhai", "for i in 0..100000 { print(`line ${i}`); }");
    let out = p.shell("\"$ALOOP\" exec many.rhai | head -1; echo \"status=${PIPESTATUS[0]}\"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("line 0\nstatus=0"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn dash_c_runs_in_another_directory() {
    let p = Project::new().file("sub/where.rhai", "print(CTX.project_root);");
    let out = p.aloop(&["-C", "sub", "exec", "where.rhai"]).run().ok();
    assert!(out.stdout.trim().ends_with("/work/sub"), "{}", out.stdout);
    p.aloop(&["-C", "nowhere", "exec", "x"]).run().code(2).stderr_has("not a directory");
}

#[test]
fn lookup_prefers_the_repository_then_the_user_then_the_bundled_copy() {
    let p = Project::new()
        .home_file("scripts/who.rhai", "print(\"user\");")
        .home_file("prompts/loop/planner.md", "user planner {{x}}")
        .file("show.rhai", "print(tpl::render(\"loop/planner\", #{ x: 1 }));");
    assert_eq!(p.aloop(&["exec", "who"]).run().ok().stdout, "user\n");
    assert_eq!(p.aloop(&["exec", "show.rhai"]).run().ok().stdout, "user planner 1\n");
    let p = p
        .file(".loop/scripts/who.rhai", "print(\"repo\");")
        .file(".loop/prompts/loop/planner.md", "repo planner");
    p.aloop(&["trust"]).run().ok();
    assert_eq!(p.aloop(&["exec", "who"]).run().ok().stdout, "repo\n");
    assert_eq!(p.aloop(&["exec", "show.rhai"]).run().ok().stdout, "repo planner\n");
    let listing = p.aloop(&["script", "list"]).run().ok().stdout;
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("who") && l.contains("repo (overrides user)") && l.contains("trusted")),
        "{listing}"
    );
    let listing = p.aloop(&["prompt", "list"]).run().ok().stdout;
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("loop/planner") && l.contains("repo (overrides user, bundled)")),
        "{listing}"
    );
    p.aloop(&["prompt", "show", "loop/planner"]).run().ok().stdout_has("repo planner");
}

#[test]
fn repository_scripts_run_only_once_trusted_and_an_edit_revokes_trust() {
    let p = Project::new().file(".loop/scripts/hello.rhai", "print(\"hello from the repo\");");
    p.aloop(&["exec", "hello"])
        .run()
        .code(1)
        .stderr_has(".loop/scripts/hello.rhai (untrusted)")
        .stderr_has("aloop trust");
    p.aloop(&["trust"]).run().ok().stdout_has(".loop/scripts/hello.rhai  trusted");
    p.aloop(&["exec", "hello"]).run().ok().stdout_has("hello from the repo");
    std::fs::write(p.path(".loop/scripts/hello.rhai"), "print(\"edited\");").unwrap();
    p.aloop(&["exec", "hello"]).run().code(1).stderr_has("changed since trusted");
    p.aloop(&["trust", "--list"]).run().ok().stdout_has("changed since trusted");
    // A file named explicitly is the user's own choice and needs no trust.
    p.aloop(&["exec", ".loop/scripts/hello.rhai"]).run().ok().stdout_has("edited");
    p.aloop(&["trust"]).run().ok();
    p.aloop(&["exec", "hello"]).run().ok();
    p.aloop(&["trust", "--revoke", ".loop/scripts/hello.rhai"]).run().ok().stderr_has("no longer trusted");
    p.aloop(&["exec", "hello"]).run().code(1).stderr_has("untrusted");
}

#[test]
fn an_untrusted_module_import_is_refused_too() {
    let p = Project::new()
        .file(".loop/scripts/helpers.rhai", "fn greet() { \"hi\" }")
        .file("main.rhai", "import \"helpers\" as h;\nprint(h::greet());");
    p.aloop(&["exec", "main.rhai"]).run().code(1).stderr_has("helpers.rhai (untrusted)");
    p.aloop(&["trust"]).run().ok();
    p.aloop(&["exec", "main.rhai"]).run().ok().stdout_has("hi");
}

#[test]
fn eject_copies_a_bundled_file_for_forking_and_keeps_edits_unless_forced() {
    let p = Project::new();
    p.aloop(&["prompt", "eject", "loop/planner"]).run().ok();
    let bundled =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/prompts/loop/planner.md")).unwrap();
    assert_eq!(p.read(".loop/prompts/loop/planner.md"), bundled);
    std::fs::write(p.path(".loop/prompts/loop/planner.md"), "mine").unwrap();
    p.aloop(&["prompt", "eject", "loop/planner"]).run().code(1).stderr_has("--force");
    assert_eq!(p.read(".loop/prompts/loop/planner.md"), "mine");
    p.aloop(&["prompt", "eject", "loop/planner", "--force"]).run().ok();
    assert_eq!(p.read(".loop/prompts/loop/planner.md"), bundled);
    // An ejected script is trusted as ejected, and runs from the repository.
    p.aloop(&["script", "eject", "loop/status"]).run().ok().stderr_has("trusted");
    p.aloop(&["script", "list"]).run().ok().stdout_has("repo (overrides bundled)");
    p.aloop(&["script", "eject", "no/such"]).run().code(1).stderr_has("no bundled script named 'no/such'");
}

/// `script list` tells the scripts a command runs from the modules they
/// import and from agent adapters; a repository script is a command when its
/// name is one that commands.toml runs.
#[test]
fn script_list_names_each_scripts_kind() {
    let p = Project::new().file(".loop/scripts/mine/helper.rhai", "fn f() { 1 }");
    let listing = p.aloop(&["script", "list"]).run().ok().stdout;
    let row = |name: &str| -> Vec<String> {
        let line = listing.lines().find(|l| l.split_whitespace().next() == Some(name));
        line.unwrap_or_else(|| panic!("no {name} in\n{listing}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(
        listing.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "KIND", "SOURCE", "TRUST"]
    );
    assert_eq!(row("loop/run"), ["loop/run", "command", "bundled", "trusted"]);
    assert_eq!(row("iterate/tick"), ["iterate/tick", "command", "bundled", "trusted"]);
    assert_eq!(row("loop/stories"), ["loop/stories", "module", "bundled", "trusted"]);
    assert_eq!(row("lib/common"), ["lib/common", "module", "bundled", "trusted"]);
    assert_eq!(row("agents/claude"), ["agents/claude", "adapter", "bundled", "trusted"]);
    assert_eq!(row("commands.toml"), ["commands.toml", "manifest", "bundled", "trusted"]);
    assert_eq!(row("mine/helper"), ["mine/helper", "module", "repo", "untrusted"]);
}

#[test]
fn check_compiles_every_script_and_template_and_reports_positions() {
    let p = Project::new();
    p.aloop(&["script", "check"]).run().ok().stderr_has("scripts compile");
    p.aloop(&["prompt", "check"]).run().ok().stderr_has("prompts compile");
    let p = p
        .home_file("scripts/broken.rhai", "let x = ;")
        .home_file("prompts/broken.md", "Hello {{#if x}} never closed");
    p.aloop(&["script", "check"]).run().code(1).stderr_has("broken.rhai:1:9");
    p.aloop(&["prompt", "check"]).run().code(1).stderr_has("broken.md:1:");
}

#[test]
fn template_errors_name_the_template_with_line_and_column() {
    let p = Project::new()
        .file(".loop/prompts/t/missing.md", "line one\nHello {{name}} and {{absent}}\n")
        .file("r.rhai", "tpl::render(\"t/missing\", #{ name: \"x\" });");
    p.aloop(&["exec", "r.rhai"]).run().code(1).stderr_has("missing.md:2:").stderr_has("absent");
}

#[test]
fn a_partial_that_includes_itself_is_an_error_naming_the_template() {
    let p = Project::new()
        .file(".loop/prompts/self.md", "{{#*inline \"item\"}}- {{> item}}{{/inline}}{{> item}}")
        .file(
            ".loop/prompts/pair.md",
            "{{#*inline \"a\"}}{{> b}}{{/inline}}{{#*inline \"b\"}}{{#if x}}{{> a}}{{/if}}{{/inline}}{{> a}}",
        )
        .file(".loop/prompts/fine.md", "{{#*inline \"a\"}}A{{/inline}}{{> a}}{{> a}}")
        .file("r.rhai", "print(tpl::render(ARGS.name, #{ x: true }));");
    let origin = |name: &str| p.path(&format!(".loop/prompts/{name}.md")).display().to_string();
    let out = p.aloop(&["exec", "r.rhai", "name=self"]).run().code(1);
    assert!(
        out.stderr.contains(&format!("{}: the partial 'item' includes itself", origin("self"))),
        "{}",
        out.stderr
    );
    let out = p.aloop(&["exec", "r.rhai", "name=pair"]).run().code(1);
    assert!(out.stderr.contains("the partial 'a' includes itself"), "{}", out.stderr);
    assert!(out.stderr.contains(" > a > b > a)"), "{}", out.stderr);
    p.aloop(&["exec", "r.rhai", "name=fine"]).run().ok().stdout_has("AA");
    let out = p.aloop(&["prompt", "check"]).run().code(1);
    assert!(
        out.stderr.contains(&format!("{}: the partial 'item' includes itself", origin("self"))),
        "{}",
        out.stderr
    );
}

/// HEAD, the branch and "is this a repository" must say what git says in
/// every repository state.
#[test]
fn git_head_branch_and_is_repo_match_git_in_every_repository_state() {
    let p = Project::new().file("h.rhai", "print(`${git::head()}|${git::branch()}|${git::is_repo()}`);");
    std::fs::create_dir_all(p.home().join("scripts")).unwrap();
    std::fs::copy(p.path("h.rhai"), p.home().join("scripts/h.rhai")).unwrap();
    let state =
        |p: &Project, dir: &str| p.aloop(&["-C", dir, "exec", "h"]).run().ok().stdout.trim().to_string();
    assert_eq!(state(&p, "."), "||false", "not a repository");
    p.git_cmd(&["init", "-q", "-b", "main"]);
    assert_eq!(state(&p, "."), "|main|true", "a branch with no commits has no HEAD");
    let p = p.commit("one");
    let rev = |p: &Project, dir: &str| p.git_cmd(&["-C", dir, "rev-parse", "HEAD"]).trim().to_string();
    assert_eq!(state(&p, "."), format!("{}|main|true", rev(&p, ".")), "loose ref");
    p.git_cmd(&["pack-refs", "--all"]);
    assert!(!p.path(".git/refs/heads/main").exists());
    assert_eq!(state(&p, "."), format!("{}|main|true", rev(&p, ".")), "packed ref");
    let p = p.commit("two");
    p.git_cmd(&["checkout", "-q", "--detach", "HEAD~1"]);
    assert_eq!(state(&p, "."), format!("{}||true", rev(&p, ".")), "detached HEAD");
    p.git_cmd(&["checkout", "-q", "-b", "feature/x", "main"]);
    assert_eq!(state(&p, "."), format!("{}|feature/x|true", rev(&p, ".")), "a branch with a slash");
    p.git_cmd(&["worktree", "add", "-q", "-b", "side", "wt", "HEAD~1"]);
    assert_eq!(state(&p, "wt"), format!("{}|side|true", rev(&p, "wt")), "linked worktree");
    assert_ne!(rev(&p, "wt"), rev(&p, "."));
    std::fs::create_dir_all(p.path("sub/dir")).unwrap();
    assert_eq!(state(&p, "sub/dir"), format!("{}|feature/x|true", rev(&p, ".")), "below the repository root");
}
