//! Nothing an agent starts outlives aloop: real signals to the real binary,
//! fake agents that leave their process group and session, clean up slowly,
//! or draw progress bars. Each waits for the fake's own readiness file,
//! never for a count of processes, and polls with deadlines.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{
    assert_no_survivors, fakes_dir, is_running, marker, wait_until, KillOnDrop, Project, Run,
};

/// A file beside the project's work tree (so `git add -A` never sees it).
fn outside(project: &Project, name: &str) -> PathBuf {
    project.root().parent().unwrap().join(name)
}

/// The pid a fake wrote to `path`, once it is there.
fn pid_in(path: &Path) -> u32 {
    wait_until(&format!("{}", path.display()), Duration::from_secs(60), || path.exists());
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

fn signal(child: &Child, signal: &str) {
    let _ = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status();
}

/// Waits for aloop to exit and returns its status, stdout and stderr.
fn finish(child: Child) -> (ExitStatus, String, String) {
    crate::support::finish(child, Duration::from_secs(60))
}

/// Asserts that the process is gone within a few seconds.
#[track_caller]
fn assert_gone(pid: u32, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while is_running(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    if is_running(pid) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        panic!("{what} (pid {pid}) is still running");
    }
}

/// `aloop exec` of a script that runs claude with `request`, prints the
/// result, then prints whether the process in `FAKE_AGENT_ESCAPE`'s file
/// still runs ("gone" or its /proc state), to tell what the call left.
fn agent(project: &Project, request: &str, mark: &str) -> Run {
    let check = outside(project, "left.sh");
    std::fs::write(
        &check,
        "[ -n \"$FAKE_AGENT_ESCAPE\" ] || exit 0\n\
         stat=$(cat /proc/$(cat \"$FAKE_AGENT_ESCAPE\")/stat 2>/dev/null) || { echo gone; exit 0; }\n\
         echo \"${stat##*) }\" | cut -c1\n",
    )
    .unwrap();
    std::fs::write(
        project.path("t.rhai"),
        format!(
            "let r = agent::run(\"claude\", {request});\nprint(json::stringify(r));\n\
             let left = proc::run([\"sh\", \"{}\"]).stdout;\nleft.trim();\nprint(left);\n",
            check.display()
        ),
    )
    .unwrap();
    project.aloop(&["exec", "t.rhai"]).env("ALOOP_TEST_MARKER", mark)
}

/// Paths for the fake's files: its readiness, the daemon's pid, the cleanup mark.
struct Files {
    ready: PathBuf,
    daemon: PathBuf,
    cleaned: PathBuf,
}

fn files(project: &Project) -> Files {
    Files {
        ready: outside(project, "ready"),
        daemon: outside(project, "daemon.pid"),
        cleaned: outside(project, "cleaned"),
    }
}

#[test]
fn a_daemon_the_agent_started_is_stopped_by_ctrl_c() {
    let project = Project::git();
    let mark = marker("escape-int");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    let child = agent(&project, "#{prompt: \"hi\", view: \"none\"}", &mark)
        .env("FAKE_AGENT_MODE", "hang")
        .env("FAKE_AGENT_ESCAPE", &f.daemon)
        .env("FAKE_AGENT_READY", &f.ready)
        .spawn();
    let daemon = pid_in(&f.daemon);
    pid_in(&f.ready);
    signal(&child, "INT");
    let (status, stdout, stderr) = finish(child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stdout.contains("\"status\":\"interrupted\""), "{stdout}\n{stderr}");
    assert_gone(daemon, "the daemon (setsid, double fork)");
    assert_no_survivors(&mark);
}

#[test]
fn a_daemon_the_agent_started_is_stopped_by_the_total_timeout() {
    let project = Project::git();
    let mark = marker("escape-timeout");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    let out = agent(&project, "#{prompt: \"hi\", view: \"none\", timeout: 1.5, idle_timeout: 60}", &mark)
        .env("FAKE_AGENT_MODE", "hang")
        .env("FAKE_AGENT_ESCAPE", &f.daemon)
        .run()
        .ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("\"status\":\"timeout\""), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.lines().last(), Some("gone"), "the daemon was stopped with the call");
    assert_gone(pid_in(&f.daemon), "the daemon");
    assert_no_survivors(&mark);
}

#[test]
fn a_daemon_the_agent_started_is_stopped_when_the_call_ends() {
    let project = Project::git();
    let mark = marker("escape-end");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    let out = agent(&project, "#{prompt: \"hi\", view: \"none\"}", &mark)
        .env("FAKE_AGENT_ESCAPE", &f.daemon)
        .run()
        .ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("\"status\":\"ok\""), "{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.stdout.lines().last(), Some("gone"), "the daemon was stopped with the call");
    assert_no_survivors(&mark);
}

#[test]
fn the_grace_period_waits_for_the_cli_behind_a_launcher_script() {
    // Like a version manager's shim: sh starts the real CLI and waits for it.
    let project = Project::git().file(
        "bin/claude",
        &format!("#!/bin/sh\n{}/claude \"$@\"\necho \"launcher: $?\" >&2\n", fakes_dir().display()),
    );
    let bin = project.path("bin/claude");
    std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mark = marker("launcher");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    let path = format!("{}:{}", project.path("bin").display(), std::env::var("PATH").unwrap());
    let start = Instant::now();
    let out = agent(&project, "#{prompt: \"hi\", view: \"none\", timeout: 1.5, idle_timeout: 60}", &mark)
        .env("PATH", path)
        .env("FAKE_AGENT_MODE", "slow_cleanup")
        .env("FAKE_AGENT_CLEANED", &f.cleaned)
        .run()
        .ok();
    let first = out.stdout.lines().next().unwrap_or_default();
    assert!(first.contains("\"status\":\"timeout\""), "{}\n{}", out.stdout, out.stderr);
    assert!(f.cleaned.exists(), "the CLI was killed before it cleaned up (after {:?})", start.elapsed());
    assert_no_survivors(&mark);
}

#[test]
fn a_progress_bar_without_newlines_keeps_the_agent_from_idling_out() {
    let project = Project::git();
    let mark = marker("progress");
    let _cleanup = KillOnDrop(mark.clone());
    let out = agent(&project, "#{prompt: \"hi\", view: \"none\", idle_timeout: 1, timeout: 60}", &mark)
        .env("FAKE_AGENT_MODE", "progress")
        .run()
        .ok();
    let r: Value = serde_json::from_str(out.stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", out.stdout, out.stderr));
    assert_eq!(r["status"], "ok", "{r}");
    assert_eq!(r["text"], "Done.");
    assert!(r["output_tail"].as_str().unwrap().contains("working 90%"), "{r}");
    assert_no_survivors(&mark);
}

#[test]
fn sighup_mid_generator_stops_the_agent_records_it_and_releases_the_lock() {
    let project = Project::git()
        .fixture("loop/config.json", ".loop/config.json")
        .fixture("loop/prd.json", ".loop/prd.json")
        .file(".loop/.gitignore", ".loop.lock\n.prd.lock\n.verdict\nruns.jsonl\n")
        .file(".loop/progress.md", "# Progress\n\n## Codebase Patterns\n\n---\n")
        .commit("set up the loop");
    let mark = marker("sighup");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    let child = project
        .aloop(&["run"])
        .env("FAKE_AGENT_MODE", "hang")
        .env("FAKE_AGENT_READY", &f.ready)
        .env("IS_SANDBOX", "1")
        .env("ALOOP_TEST_MARKER", &mark)
        .spawn();
    let agent = pid_in(&f.ready);
    signal(&child, "HUP");
    let (status, _, stderr) = finish(child);
    assert_eq!(status.code(), Some(129), "128 + SIGHUP\n{stderr}");
    assert!(stderr.contains("interrupted during the generator of US-001"), "{stderr}");
    assert!(stderr.contains("aloop: interrupted (SIGHUP)"), "{stderr}");
    let runs = project.read(".loop/runs.jsonl");
    let last: Value = serde_json::from_str(runs.lines().last().unwrap()).unwrap();
    assert_eq!(last["status"], "interrupted", "{runs}");
    assert_gone(agent, "the agent");
    assert_no_survivors(&mark);
    let lock = std::fs::File::open(project.path(".loop/.loop.lock")).unwrap();
    // SAFETY: flock(2) on a file this test opened.
    let free = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX | libc::LOCK_NB) };
    assert_eq!(free, 0, "the lock is released");
}

#[test]
fn sigterm_stops_the_agent_and_exits_143() {
    let project = Project::git();
    let mark = marker("sigterm");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    let child = agent(&project, "#{prompt: \"hi\", view: \"none\"}", &mark)
        .env("FAKE_AGENT_MODE", "hang")
        .env("FAKE_AGENT_READY", &f.ready)
        .spawn();
    let agent = pid_in(&f.ready);
    signal(&child, "TERM");
    let (status, stdout, stderr) = finish(child);
    assert_eq!(status.code(), Some(143), "128 + SIGTERM\n{stderr}");
    assert!(stdout.contains("\"error\":\"interrupted (SIGTERM)\""), "{stdout}");
    assert_gone(agent, "the agent");
    assert_no_survivors(&mark);
}

#[test]
fn the_agent_dies_with_aloop_when_aloop_is_killed() {
    let project = Project::git();
    let mark = marker("sigkill");
    let _cleanup = KillOnDrop(mark.clone());
    let f = files(&project);
    // silent_hang starts no helper: what pdeathsig covers is the agent itself.
    let child = agent(&project, "#{prompt: \"hi\", view: \"none\"}", &mark)
        .env("FAKE_AGENT_MODE", "silent_hang")
        .env("FAKE_AGENT_READY", &f.ready)
        .spawn();
    let agent = pid_in(&f.ready);
    signal(&child, "KILL");
    let (status, _, _) = finish(child);
    assert_eq!(status.code(), None, "killed");
    assert_gone(agent, "the agent");
    assert_no_survivors(&mark);
}

/// A user adapter `name` whose program is `sh -c script`, with the prompt on
/// its stdin and every stdout line as text.
fn sh_adapter(project: Project, name: &str, script: &str) -> Project {
    project.home_file(
        &format!("scripts/agents/{name}.rhai"),
        &format!(
            "fn command(req) {{ #{{ program: \"sh\", args: [\"-c\", {script:?}], stdin: req.prompt, env: #{{}} }} }}\n\
             fn parse(line) {{ #{{ kind: \"text\", text: line + \"\\n\", delta: true }} }}\n"
        ),
    )
}

/// A script that runs agent `name` with a prompt of `size` bytes and prints the result.
fn run_with_prompt_of(project: &Project, name: &str, size: usize) -> Run {
    std::fs::write(
        project.path("t.rhai"),
        format!(
            "let prompt = \"\";\nprompt.pad({size}, 'x');\n\
             let r = agent::run(\"{name}\", #{{prompt: prompt, view: \"none\", idle_timeout: 60}});\n\
             print(json::stringify(r));\n\
             let count = proc::run([\"wc\", \"-c\"], #{{stdin: prompt}}).stdout;\ncount.trim();\nprint(count);\n"
        ),
    )
    .unwrap();
    project.aloop(&["exec", "t.rhai"])
}

#[test]
fn the_prompt_reaches_stdin_whole_and_then_its_end() {
    // 4 MB is many times what a pipe holds: it goes in pieces as the agent reads.
    let project = sh_adapter(Project::git(), "counter", "wc -c");
    let out = run_with_prompt_of(&project, "counter", 4_000_000).run().ok();
    let r: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!((&r["status"], &r["text"]), (&"ok".into(), &"4000000".into()), "{r}");
    assert_eq!(out.stdout.lines().nth(1), Some("4000000"), "proc::run's stdin too:\n{}", out.stdout);
}

#[test]
fn an_agent_that_never_reads_a_large_prompt_still_ends_with_its_output() {
    let project = sh_adapter(Project::git(), "deaf", "echo started; sleep 0.2; echo done");
    let out = run_with_prompt_of(&project, "deaf", 4_000_000).run().ok();
    let r: Value = serde_json::from_str(out.stdout.lines().next().unwrap()).unwrap();
    assert_eq!((&r["status"], &r["text"]), (&"ok".into(), &"started\ndone".into()), "{r}");
}

#[test]
fn ctrl_c_stops_a_silent_agent_that_never_reads_its_prompt() {
    // Nothing comes from the agent and its stdin is full: only the signal can
    // wake aloop.
    let project = Project::git();
    let ready = outside(&project, "ready");
    let project = sh_adapter(project, "mute", &format!("echo $$ > {}; exec sleep 600", ready.display()));
    let child = run_with_prompt_of(&project, "mute", 4_000_000).spawn();
    let agent = pid_in(&ready);
    signal(&child, "INT");
    let (status, stdout, stderr) = finish(child);
    assert_eq!(status.code(), Some(130), "{stderr}");
    let r: Value = serde_json::from_str(stdout.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("{e}\n{stdout}\n{stderr}"));
    assert_eq!(r["status"], "interrupted", "{r}");
    assert_gone(agent, "the agent");
}

#[test]
#[allow(clippy::zombie_processes)] // reaped by wait4 below, for its rusage
fn waiting_for_a_pipe_held_by_a_process_out_of_sight_costs_no_cpu() {
    // The grandchild clears its environment and leaves the session before
    // anyone looks: aloop cannot find it, so it waits up to its drain limit
    // for the pipe it holds. Waiting must sleep in poll, not spin (a spin
    // burns about the whole two seconds).
    let project = Project::git().file(
        "t.rhai",
        "let r = proc::run([\"sh\", \"-c\", \"(env -i setsid sh -c 'sleep 3 &' &); echo hi\"]);\nprint(r.stdout);\n",
    );
    let child = project.aloop(&["exec", "t.rhai"]).spawn();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for this test's own child; fills the structs it owns.
    let pid = unsafe { libc::wait4(child.id().cast_signed(), &raw mut status, 0, &raw mut usage) };
    assert_eq!(pid, child.id().cast_signed());
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "status {status}");
    let cpu = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.unsigned_abs()) + Duration::from_micros(t.tv_usec.unsigned_abs())
    };
    let used = cpu(usage.ru_utime) + cpu(usage.ru_stime);
    assert!(used < Duration::from_millis(800), "aloop used {used:?} of CPU while waiting");
}
