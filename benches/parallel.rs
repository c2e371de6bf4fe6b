//! `aloop run --parallel`: stories side by side in worktrees, with an agent
//! whose every call takes 2 s (benches/fixtures/sleeper.rhai), so the wall
//! time is the agents' time and what parallelism saves is plain.

use std::path::{Path, PathBuf};

use super::{interleaved, secs, Bench, Peer, Row, Unit, ALOOP};

/// Seconds every agent call takes.
const CALL_SECONDS: &str = "2";

/// A project of `stories` stories whose agent is the sleeper.
fn sleeper_project(bench: &Bench, stories: usize) -> PathBuf {
    let root = bench.project(stories);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
    std::fs::copy(fixtures.join("sleeper.rhai"), root.join(".loop/scripts/agents/sleeper.rhai")).unwrap();
    let config_path = root.join(".loop/config.json");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["agent"] = "sleeper".into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    bench.aloop(&root, &["trust"]);
    bench.run(&root, &["git", "add", "-A"]);
    bench.run(&root, &["git", "commit", "-q", "-m", "sleeper"]);
    root
}

/// `aloop run` in a new sleeper project of `stories` stories with `args`;
/// its wall time in seconds and the project.
fn run(bench: &Bench, stories: usize, args: &[&str], same_line: bool) -> (f64, PathBuf) {
    let root = sleeper_project(bench, stories);
    let mut argv = vec![ALOOP, "run", "--quiet"];
    argv.extend_from_slice(args);
    let mut cmd = bench.command(&root, &argv);
    cmd.env("BENCH_CALL_SECONDS", CALL_SECONDS).env("BENCH_SAME_LINE", if same_line { "1" } else { "0" });
    (secs(Bench::time(&mut cmd, &[0, 3])), root)
}

/// How the stories of a finished run ended: (passed, blocked with a
/// conflict note, other), and whether every passed story's merge is on the
/// loop branch.
fn outcome(bench: &Bench, root: &Path) -> (usize, usize, usize, bool) {
    let prd: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join(".loop/prd.json")).unwrap()).unwrap();
    let merges = bench.run(root, &["git", "log", "--merges", "--format=%s"]);
    let (mut passed, mut blocked, mut other, mut kept) = (0, 0, 0, true);
    for story in prd["userStories"].as_array().unwrap() {
        let id = story["id"].as_str().unwrap();
        let notes = story["notes"].as_str().unwrap_or_default();
        if story["passes"] == true {
            passed += 1;
            kept &= merges.lines().any(|l| l.starts_with(&format!("aloop: merge {id} ")));
        } else if story["blocked"] == true && notes.contains("[CONFLICT]") {
            blocked += 1;
        } else {
            other += 1;
        }
    }
    (passed, blocked, other, kept)
}

pub(super) fn parallel_rows(bench: &Bench, rows: &mut Vec<Row>) {
    let rounds = if bench.quick { 1 } else { 3 };
    let times = interleaved(
        rounds,
        vec![
            Box::new(|| run(bench, 1, &[], false).0),
            Box::new(|| run(bench, 8, &["--parallel", "4"], false).0),
            Box::new(|| run(bench, 8, &["--parallel", "1"], false).0),
        ],
    );
    let (one, four, sequential) = (times[0], times[1], times[2]);
    rows.push(Row::new(
        "8 independent stories, --parallel 4, 2 s per agent call; floor: 8 ÷ 4 × one story (wall)",
        Unit::Time,
        four,
        Some(2.0 * one),
        Peer::None,
        "≤ 1.3× floor",
    ));
    rows.push(Row::new(
        "8 independent stories, --parallel 1 (today's sequential loop); floor: 8 × one story (wall)",
        Unit::Time,
        sequential,
        Some(8.0 * one),
        Peer::None,
        "= floor within noise",
    ));
    let instructions = |args: &[&str]| {
        let root = sleeper_project(bench, 8);
        let mut argv = vec![ALOOP, "run", "--quiet"];
        argv.extend_from_slice(args);
        let mut cmd = bench.command(&root, &argv);
        cmd.env("BENCH_CALL_SECONDS", CALL_SECONDS).env("BENCH_SAME_LINE", "0");
        bench.instructions(&cmd, &[0])
    };
    if let (Some(four), Some(one)) = (instructions(&["--parallel", "4"]), instructions(&["--parallel", "1"]))
    {
        let what = "8 independent stories, --parallel 4; floor: --parallel 1 (instructions of aloop itself)";
        rows.push(Row::new(what, Unit::Instructions, four, Some(one), Peer::None, "–"));
    }
    let (wall, root) = run(bench, 8, &["--parallel", "4", "40"], true);
    let (passed, blocked, other, kept) = outcome(bench, &root);
    let what = format!(
        "8 stories editing one line, --parallel 4: {passed} passed, {blocked} blocked by conflicts, {other} other; \
         every passed story's merge on the loop branch: {} (wall)",
        if kept { "yes" } else { "NO" }
    );
    rows.push(Row::new(what, Unit::Time, wall, None, Peer::None, "each passed or blocked, nothing lost"));
}
