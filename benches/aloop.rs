//! End-to-end benchmarks of the real binary (`cargo bench`), each row
//! against its floor (the least work the job needs, `floor.rs`) and, where
//! one is named, a peer; the contenders of a row run interleaved, round by
//! round, so that drift of the machine hits them alike. Wall times are
//! medians; instruction counts come from callgrind where valgrind is
//! installed (they are repeatable where wall times on a shared machine are
//! not). The table is printed as Markdown (see BENCHMARKS.md).
//!
//! - `cargo bench --bench aloop` every row; a word filters rows by name
//!   (`iteration200`, `iteration10k`, `status10k`, `status3`, `stream`,
//!   `dry-run`, `parallel`).
//! - `ALOOP_BENCH_QUICK=1`: fewer rounds and smaller inputs, for a check
//!   that every row runs.
//! - `ALOOP_BENCH_RALPH=/path/to/ralph` (ralph-orchestrator) and
//!   `ALOOP_BENCH_RALPH_SH=/path/to/ralph.sh` (snarktank/ralph): the peers,
//!   run with the same fake agents. Without them the peer column says "not
//!   measured".

mod floor;
mod parallel;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ALOOP: &str = env!("CARGO_BIN_EXE_aloop");

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor") {
        floor::main(&args[1..]);
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with('-')).cloned().unwrap_or_default();
    let bench = Bench::new();
    let mut rows = Vec::new();
    let benchmarks: [(&str, &RowsOf); 7] = [
        ("iteration200", &|b, rows| iteration_rows(b, 200, if b.quick { 8 } else { 30 }, rows)),
        ("iteration10k", &|b, rows| iteration_rows(b, 10_000, if b.quick { 2 } else { 5 }, rows)),
        ("status10k", &status10k_rows),
        ("status3", &status3_rows),
        ("stream", &stream_rows),
        ("dry-run", &dry_run_rows),
        ("parallel", &parallel::parallel_rows),
    ];
    for (name, run) in benchmarks {
        if name.contains(&filter) {
            eprintln!("bench: {name}");
            run(&bench, &mut rows);
        }
    }
    println!(
        "| row | aloop | floor | aloop ÷ floor | peer | aloop ÷ peer | target |\n| --- | --- | --- | --- | --- | --- | --- |"
    );
    for row in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.what, row.aloop, row.floor, row.vs_floor, row.peer, row.vs_peer, row.target
        );
    }
}

/// Measures a benchmark and adds its rows.
type RowsOf = dyn Fn(&Bench, &mut Vec<Row>);

/// One line of the table.
struct Row {
    what: String,
    aloop: String,
    floor: String,
    vs_floor: String,
    peer: String,
    vs_peer: String,
    target: &'static str,
}

impl Row {
    /// A row whose figures are comparable numbers (`lower_is_better` for
    /// times and instructions, not for rates): the ratios are computed here.
    fn new(
        what: impl Into<String>,
        unit: Unit,
        aloop: f64,
        floor: Option<f64>,
        peer: Peer,
        target: &'static str,
    ) -> Self {
        let ratio = |other: f64| {
            let r = if unit.lower_is_better() { aloop / other } else { other / aloop };
            format!("{r:.2}×")
        };
        let (peer_text, vs_peer) = match peer {
            Peer::Measured(name, value) => (format!("{name}: {}", unit.show(value)), ratio(value)),
            Peer::Absent(why) => (format!("not measured ({why})"), "–".into()),
            Peer::None => ("–".into(), "–".into()),
        };
        Row {
            what: what.into(),
            aloop: unit.show(aloop),
            floor: floor.map_or_else(|| "–".into(), |f| unit.show(f)),
            vs_floor: floor.map_or_else(|| "–".into(), ratio),
            peer: peer_text,
            vs_peer,
            target,
        }
    }
}

/// What a peer column holds.
enum Peer {
    Measured(&'static str, f64),
    /// A peer that could have been measured, and why it was not.
    Absent(String),
    /// No peer for this row.
    None,
}

#[derive(Clone, Copy)]
enum Unit {
    /// Seconds, shown as ms.
    Time,
    /// Instructions, shown in millions.
    Instructions,
    /// MB/s.
    Rate,
    /// Instructions per MB, shown in millions.
    PerMb,
}

impl Unit {
    fn lower_is_better(self) -> bool {
        !matches!(self, Unit::Rate)
    }

    fn show(self, v: f64) -> String {
        match self {
            Unit::Time => format!("{:.2} ms", v * 1000.0),
            Unit::Instructions => format!("{:.2} M", v / 1e6),
            Unit::Rate => format!("{v:.0} MB/s"),
            Unit::PerMb => format!("{:.1} M/MB", v / 1e6),
        }
    }
}

struct Bench {
    dir: tempfile::TempDir,
    quick: bool,
    valgrind: bool,
    ralph: Option<PathBuf>,
    ralph_sh: Option<PathBuf>,
    projects: std::cell::Cell<usize>,
}

impl Bench {
    fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("aloop-bench-").tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        // The fake `claude` of the streaming rows (it prints events.ndjson),
        // and the instant one of the iteration rows, each first on a PATH.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
        for (bin, source) in [("bin", "claude"), ("instant-bin", "instant-claude")] {
            std::fs::create_dir_all(dir.path().join(bin)).unwrap();
            std::fs::copy(fixtures.join(source), dir.path().join(bin).join("claude")).unwrap();
        }
        let valgrind = Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success());
        let named = |var: &str| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        Bench {
            dir,
            quick: std::env::var_os("ALOOP_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0"),
            valgrind,
            ralph: named("ALOOP_BENCH_RALPH"),
            ralph_sh: named("ALOOP_BENCH_RALPH_SH"),
            projects: std::cell::Cell::new(0),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The prd.json of `stories` stories, none passed.
    fn prd(stories: usize) -> String {
        let list: Vec<String> = (1..=stories)
            .map(|i| {
                format!(
                    "{{\"id\": \"US-{i:05}\", \"title\": \"Story {i}\", \"description\": \"Do thing {i}\", \
                     \"acceptanceCriteria\": [\"it works\"], \"priority\": {i}, \"passes\": false, \"notes\": \"\", \"rejections\": 0}}"
                )
            })
            .collect();
        format!(
            "{{\"project\": \"bench\", \"branchName\": \"main\", \"description\": \"\", \"userStories\": [{}]}}",
            list.join(",\n")
        )
    }

    /// A new git project with a config and `stories` stories.
    fn project(&self, stories: usize) -> PathBuf {
        let n = self.projects.get() + 1;
        self.projects.set(n);
        let root = self.dir.path().join(format!("project-{n}"));
        std::fs::create_dir_all(root.join(".loop/scripts/agents")).unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/fixtures");
        std::fs::copy(fixtures.join("instant.rhai"), root.join(".loop/scripts/agents/instant.rhai")).unwrap();
        std::fs::copy(fixtures.join("stream.rhai"), root.join("stream.rhai")).unwrap();
        std::fs::write(root.join(".loop/prd.json"), Self::prd(stories)).unwrap();
        self.run(&root, &["git", "init", "-q", "-b", "main"]);
        self.aloop(&root, &["trust"]);
        self.aloop(&root, &["init", "--agent", "instant"]);
        self.run(&root, &["git", "add", "-A"]);
        self.run(&root, &["git", "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-q", "-m", "init"]);
        root
    }

    /// A plain directory for a floor or a peer, with prd.json of `stories` stories.
    fn plain_dir(&self, stories: usize) -> PathBuf {
        let n = self.projects.get() + 1;
        self.projects.set(n);
        let dir = self.dir.path().join(format!("plain-{n}"));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("prd.json"), Self::prd(stories)).unwrap();
        std::fs::write(dir.join("progress.md"), "# Progress\n").unwrap();
        dir
    }

    fn command(&self, dir: &Path, argv: &[&str]) -> Command {
        let mut cmd = Command::new(argv[0]);
        cmd.args(&argv[1..])
            .current_dir(dir)
            .env("ALOOP_HOME", self.home())
            .env("NO_COLOR", "1")
            .env(
                "PATH",
                format!("{}:{}", self.dir.path().join("bin").display(), std::env::var("PATH").unwrap()),
            )
            .env("GIT_AUTHOR_NAME", "b")
            .env("GIT_AUTHOR_EMAIL", "b@b")
            .env("GIT_COMMITTER_NAME", "b")
            .env("GIT_COMMITTER_EMAIL", "b@b")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    fn run(&self, dir: &Path, argv: &[&str]) -> String {
        let out = self.command(dir, argv).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn aloop(&self, dir: &Path, args: &[&str]) -> (i32, String, String) {
        let mut argv = vec![ALOOP];
        argv.extend_from_slice(args);
        let out = self.command(dir, &argv).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into(),
            String::from_utf8_lossy(&out.stderr).into(),
        )
    }

    /// The bench binary itself running floor program `args`.
    fn floor(&self, dir: &Path, args: &[&str]) -> Command {
        let me = std::env::current_exe().unwrap();
        let mut argv = vec![me.to_str().unwrap(), "--floor"];
        argv.extend_from_slice(args);
        self.command(dir, &argv)
    }

    /// Runs `cmd` to its end, asserting one of `codes`; returns its wall time.
    fn time(cmd: &mut Command, codes: &[i32]) -> Duration {
        let start = Instant::now();
        let out = cmd.output().unwrap();
        let elapsed = start.elapsed();
        let code = out.status.code().unwrap_or(-1);
        assert!(codes.contains(&code), "{cmd:?} exited {code}: {}", String::from_utf8_lossy(&out.stderr));
        elapsed
    }

    /// The instructions `cmd` executes (its own process, not its children),
    /// under callgrind; `None` without valgrind.
    fn instructions(&self, cmd: &Command, codes: &[i32]) -> Option<f64> {
        if !self.valgrind {
            return None;
        }
        let mut under = Command::new("valgrind");
        under
            .args(["--tool=callgrind", "--callgrind-out-file=/dev/null"])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        if let Some(dir) = cmd.get_current_dir() {
            under.current_dir(dir);
        }
        for (key, value) in cmd.get_envs() {
            match value {
                Some(value) => under.env(key, value),
                None => under.env_remove(key),
            };
        }
        let out = under.stdin(Stdio::null()).output().unwrap();
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(codes.contains(&code), "{cmd:?} under callgrind exited {code}: {stderr}");
        let collected =
            stderr.lines().find_map(|l| l.split("Collected : ").nth(1)).expect("callgrind's summary");
        Some(collected.trim().parse::<f64>().unwrap())
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A measurement that returns one sample.
type Contender<'a> = Box<dyn FnMut() -> f64 + 'a>;

/// Runs each contender once per round, in turn, for `rounds` rounds;
/// returns each one's median.
fn interleaved(rounds: usize, mut contenders: Vec<Contender>) -> Vec<f64> {
    let mut samples: Vec<Vec<f64>> = contenders.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (c, s) in contenders.iter_mut().zip(samples.iter_mut()) {
            s.push(c());
        }
    }
    samples.into_iter().map(median).collect()
}

fn peer_absent(var: &str) -> Peer {
    Peer::Absent(format!("{var} unset"))
}

/// The time of `n` spawns of the instant agent, per spawn.
fn fake_agent_time(n: usize) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        floor::spawn_instant_agent();
    }
    secs(start.elapsed()) / f64::from(u32::try_from(n).unwrap())
}

/// Per iteration of the story loop over `stories` stories: aloop's wall
/// time minus its two agent spawns against the floor's, and instructions
/// per iteration (the difference of a longer and a shorter run, so start-up
/// is not counted).
fn iteration_rows(bench: &Bench, stories: usize, iterations: usize, rows: &mut Vec<Row>) {
    let rounds = if bench.quick { 1 } else { 3 };
    let per = |d: Duration, n: usize| secs(d) / f64::from(u32::try_from(n).unwrap());
    let n_arg = iterations.to_string();
    let mut contenders: Vec<Contender> = vec![
        Box::new(|| fake_agent_time(2 * iterations) * 2.0),
        Box::new(|| {
            let root = bench.project(stories);
            let mut cmd = bench.command(&root, &[ALOOP, "run", &n_arg, "--quiet"]);
            per(Bench::time(&mut cmd, &[0, 2]), iterations)
        }),
        Box::new(|| {
            let dir = bench.plain_dir(stories);
            per(Bench::time(&mut bench.floor(&dir, &["iteration", ".", &n_arg]), &[0]), iterations)
        }),
    ];
    if let Some(sh) = &bench.ralph_sh {
        let n_arg = n_arg.as_str();
        contenders.push(Box::new(move || {
            let dir = bench.plain_dir(stories);
            std::fs::write(dir.join("CLAUDE.md"), "Implement the next story.\n").unwrap();
            std::fs::copy(sh, dir.join("ralph.sh")).unwrap();
            let argv = ["bash", "ralph.sh", "--tool", "claude", "--skip-security-check", n_arg];
            let mut cmd = bench.command(&dir, &argv);
            cmd.env("PATH", instant_path(bench));
            // ralph.sh sleeps 2 s after each iteration and runs one agent per iteration.
            per(Bench::time(&mut cmd, &[0, 1]), iterations) - 2.0
        }));
    }
    let times = interleaved(rounds, contenders);
    let (fakes, aloop, floor) = (times[0], times[1], times[2]);
    let peer = match times.get(3) {
        Some(t) => Peer::Measured("ralph.sh, per call", t - fakes / 2.0),
        None => peer_absent("ALOOP_BENCH_RALPH_SH"),
    };
    let label = if stories >= 1000 { "10,000" } else { "200" };
    rows.push(Row::new(
        format!(
            "per iteration, {label} stories, minus 2 fake agent spawns of {:.2} ms (wall)",
            fakes * 500.0
        ),
        Unit::Time,
        aloop - fakes,
        Some(floor - fakes),
        peer,
        if stories >= 1000 { "≤ 1.5× floor" } else { "≤ 2× floor" },
    ));
    // Instructions: (run of k2) − (run of k1), per iteration.
    if stories >= 1000 && bench.quick {
        return;
    }
    let (k1, k2) = if stories >= 1000 {
        (1, 2)
    } else if bench.quick {
        (1, 3)
    } else {
        (2, 6)
    };
    let aloop_ir = |k: usize| {
        let root = bench.project(stories);
        bench.instructions(&bench.command(&root, &[ALOOP, "run", &k.to_string(), "--quiet"]), &[0, 2])
    };
    let floor_ir = |k: usize| {
        let dir = bench.plain_dir(stories);
        bench.instructions(&bench.floor(&dir, &["iteration", ".", &k.to_string()]), &[0])
    };
    let per_k = |f: &dyn Fn(usize) -> Option<f64>| {
        Some((f(k2)? - f(k1)?) / f64::from(u32::try_from(k2 - k1).unwrap()))
    };
    let (Some(aloop), Some(floor)) = (per_k(&aloop_ir), per_k(&floor_ir)) else { return };
    let peer = match &bench.ralph {
        Some(ralph) => {
            let ro = |k: usize| ralph_run(bench, ralph, &instant_path(bench), k, true);
            per_k(&ro).map_or_else(
                || peer_absent("valgrind"),
                |p| Peer::Measured("ralph-orchestrator, per call", p),
            )
        }
        None => peer_absent("ALOOP_BENCH_RALPH"),
    };
    let target = if stories >= 1000 { "–" } else { "≤ 1.5 M" };
    let what = format!("per iteration, {label} stories (instructions)");
    rows.push(Row::new(what, Unit::Instructions, aloop, Some(floor), peer, target));
}

/// PATH with the instant fake `claude` first.
fn instant_path(bench: &Bench) -> String {
    format!("{}:{}", bench.dir.path().join("instant-bin").display(), std::env::var("PATH").unwrap())
}

/// ralph-orchestrator: `k` iterations of a core-only loop with the claude
/// backend whose `claude` is first on `path`; its instructions (when
/// `instructions`) or else its wall time in seconds.
fn ralph_run(bench: &Bench, ralph: &Path, path: &str, k: usize, instructions: bool) -> Option<f64> {
    let dir = bench.plain_dir(1);
    let exe = ralph.to_str().unwrap();
    let mut init = bench.command(&dir, &[exe, "init", "--backend", "claude"]);
    init.env("PATH", path);
    Bench::time(&mut init, &[0]);
    let k = k.to_string();
    let mut cmd = bench.command(
        &dir,
        &[
            exe,
            "run",
            "--no-tui",
            "-q",
            "--skip-preflight",
            "--max-iterations",
            &k,
            "-p",
            "Implement the next story.",
        ],
    );
    cmd.env("PATH", path);
    if instructions {
        bench.instructions(&cmd, &[0, 1, 2])
    } else {
        Some(secs(Bench::time(&mut cmd, &[0, 1, 2])))
    }
}

/// `aloop status` over 10,000 stories against reading, parsing and counting
/// them (and `jq` counting them, where installed).
fn status10k_rows(bench: &Bench, rows: &mut Vec<Row>) {
    let root = bench.project(10_000);
    let prd = root.join(".loop/prd.json");
    let prd = prd.to_str().unwrap();
    let rounds = if bench.quick { 3 } else { 11 };
    let jq = Command::new("jq").arg("--version").output().is_ok_and(|o| o.status.success());
    let mut contenders: Vec<Contender> = vec![
        Box::new(|| secs(Bench::time(&mut bench.command(&root, &[ALOOP, "status"]), &[0]))),
        Box::new(|| secs(Bench::time(&mut bench.floor(&root, &["status", prd]), &[0]))),
    ];
    if jq {
        contenders.push(Box::new(|| {
            let filter = "[.userStories[] | select(.passes)] | length";
            secs(Bench::time(&mut bench.command(&root, &["jq", filter, prd]), &[0]))
        }));
    }
    let times = interleaved(rounds, contenders);
    let peer =
        times.get(2).map_or_else(|| Peer::Absent("jq not installed".into()), |&t| Peer::Measured("jq", t));
    let what = "`aloop status`, 10,000 stories (wall)";
    rows.push(Row::new(what, Unit::Time, times[0], Some(times[1]), peer, "≤ 1.5× floor"));
    let aloop = bench.instructions(&bench.command(&root, &[ALOOP, "status"]), &[0]);
    let floor = bench.instructions(&bench.floor(&root, &["status", prd]), &[0]);
    if let (Some(aloop), Some(floor)) = (aloop, floor) {
        let what = "`aloop status`, 10,000 stories (instructions)";
        let peer = Peer::Absent("wall only".into());
        rows.push(Row::new(what, Unit::Instructions, aloop, Some(floor), peer, "≤ 1.5× floor"));
    }
}

/// `aloop status` over 3 stories against a hello-world Rust binary.
fn status3_rows(bench: &Bench, rows: &mut Vec<Row>) {
    let root = bench.project(3);
    let hello = hello_world(bench.dir.path());
    let hello = hello.to_str().unwrap();
    let rounds = if bench.quick { 20 } else { 101 };
    let times = interleaved(
        rounds,
        vec![
            Box::new(|| secs(Bench::time(&mut bench.command(&root, &[ALOOP, "status"]), &[0]))),
            Box::new(|| secs(Bench::time(&mut bench.command(&root, &[hello]), &[0]))),
        ],
    );
    let what = "`aloop status`, 3 stories; floor: hello world (wall)";
    rows.push(Row::new(what, Unit::Time, times[0], Some(times[1]), Peer::None, "≤ 2.5× hello world"));
    let aloop = bench.instructions(&bench.command(&root, &[ALOOP, "status"]), &[0]);
    let floor = bench.instructions(&bench.command(&root, &[hello]), &[0]);
    if let (Some(aloop), Some(floor)) = (aloop, floor) {
        let what = "`aloop status`, 3 stories; floor: hello world (instructions)";
        rows.push(Row::new(what, Unit::Instructions, aloop, Some(floor), Peer::None, "≤ 2.5× hello world"));
    }
}

fn hello_world(dir: &Path) -> PathBuf {
    let src = dir.join("hello.rs");
    std::fs::write(&src, "fn main() { println!(\"hello\"); }\n").unwrap();
    let exe = dir.join("hello");
    let status = Command::new("rustc").args(["-O", "-o"]).arg(&exe).arg(&src).status().unwrap();
    assert!(status.success(), "rustc builds hello world");
    exe
}

/// Writes a recording of at least the given size; returns the bytes written.
type Recording = fn(&mut dyn Write, usize) -> usize;

/// Streaming stream-json through the bundled claude adapter, against
/// spawning the same `cat` and parsing each line with `serde_json`.
fn stream_rows(bench: &Bench, rows: &mut Vec<Row>) {
    let root = bench.project(1);
    let size = if bench.quick { 20 } else { 100 } * 1024 * 1024;
    let rounds = if bench.quick { 1 } else { 3 };
    let workloads: [(&str, Recording, &str); 2] = [
        ("≈ 220-byte events", small_events, "≥ 1.3× ro, ≤ 1.5× floor"),
        ("a recorded-like mix (2.5 KB lines)", recorded_session, "≥ 1.3× ro"),
    ];
    for (workload, events, target) in workloads {
        let path = root.join("events.ndjson");
        let write = |size: usize| {
            // Written piece by piece: a 100 MB buffer in this process would be
            // counted in the memory of the child forked from it.
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            let written = events(&mut file, size);
            file.flush().unwrap();
            // Byte counts are far below 2^52.
            #[allow(clippy::cast_precision_loss)]
            let mb = written as f64 / (1024.0 * 1024.0);
            mb
        };
        let mb = write(size);
        // The highest peak memory of the aloop process over the rounds, in MB.
        let peak = std::cell::Cell::new(0.0f64);
        let mut contenders: Vec<Contender> = vec![
            Box::new(|| {
                let start = Instant::now();
                let (code, stdout, peak_mb) =
                    run_with_peak_rss(bench.command(&root, &[ALOOP, "exec", "stream.rhai"]));
                let elapsed = start.elapsed();
                assert!(code == 0 && stdout.contains("\"status\":\"ok\""), "{stdout}");
                peak.set(peak.get().max(peak_mb));
                mb / secs(elapsed)
            }),
            Box::new(|| mb / secs(Bench::time(&mut bench.floor(&root, &["stream", "events.ndjson"]), &[0]))),
        ];
        if let Some(ralph) = &bench.ralph {
            let bin = bench.dir.path().join("bin");
            let stream_path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
            let events = path.clone();
            contenders.push(Box::new(move || mb / ralph_run_with(bench, ralph, &stream_path, &events)));
        }
        let rates = interleaved(rounds, contenders);
        let peer = rates
            .get(2)
            .map_or_else(|| peer_absent("ALOOP_BENCH_RALPH"), |&p| Peer::Measured("ralph-orchestrator", p));
        let what = format!("streaming {mb:.0} MB, {workload} (rate; peak RSS of aloop {:.1} MB)", peak.get());
        rows.push(Row::new(what, Unit::Rate, rates[0], Some(rates[1]), peer, target));
        // Instructions per MB on a smaller recording (callgrind is slow).
        let small = write(if bench.quick { 1 } else { 4 } * 1024 * 1024);
        let aloop = bench.instructions(&bench.command(&root, &[ALOOP, "exec", "stream.rhai"]), &[0]);
        let floor = bench.instructions(&bench.floor(&root, &["stream", "events.ndjson"]), &[0]);
        if let (Some(aloop), Some(floor)) = (aloop, floor) {
            let what = format!("streaming {workload} (instructions per MB)");
            let peer = Peer::Absent("wall only".into());
            rows.push(Row::new(what, Unit::PerMb, aloop / small, Some(floor / small), peer, "–"));
        }
    }
}

/// Runs a command to its end and returns its exit code, stdout and its own
/// peak resident memory in MB (from wait4, so its children do not count).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, for its rusage
fn run_with_peak_rss(mut cmd: Command) -> (i32, String, f64) {
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut text).unwrap();
        text
    });
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value to be filled in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waits for our own child; fills the structs we own.
    unsafe { libc::wait4(child.id().cast_signed(), &raw mut status, 0, &raw mut usage) };
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    // Peak sizes in kB are far below 2^52.
    #[allow(clippy::cast_precision_loss)]
    let peak_mb = usage.ru_maxrss as f64 / 1024.0;
    (code, reader.join().unwrap(), peak_mb)
}

/// One ralph-orchestrator iteration whose agent prints `events`; its wall time.
fn ralph_run_with(bench: &Bench, ralph: &Path, path: &str, events: &Path) -> f64 {
    let dir = bench.plain_dir(1);
    std::fs::copy(events, dir.join("events.ndjson")).unwrap();
    let exe = ralph.to_str().unwrap();
    let mut init = bench.command(&dir, &[exe, "init", "--backend", "claude"]);
    init.env("PATH", path);
    Bench::time(&mut init, &[0]);
    let mut cmd = bench.command(
        &dir,
        &[exe, "run", "--no-tui", "-q", "--skip-preflight", "--max-iterations", "1", "-p", "go"],
    );
    cmd.env("PATH", path);
    secs(Bench::time(&mut cmd, &[0, 1, 2]))
}

/// `iterate run --dry-run` with 100 recorded runs, against reading the
/// records and rendering a prompt.
fn dry_run_rows(bench: &Bench, rows: &mut Vec<Row>) {
    let root = bench.project(3);
    let dry = [ALOOP, "iterate", "run", "--dry-run", "--agent", "instant"];
    for _ in 0..100 {
        Bench::time(&mut bench.command(&root, &dry), &[0]);
    }
    let home = bench.home();
    let home = home.to_str().unwrap();
    let rounds = if bench.quick { 5 } else { 21 };
    let times = interleaved(
        rounds,
        vec![
            Box::new(|| secs(Bench::time(&mut bench.command(&root, &dry), &[0]))),
            Box::new(|| secs(Bench::time(&mut bench.floor(&root, &["dry-run", home]), &[0]))),
        ],
    );
    let what = "`iterate run --dry-run`, 100 recorded runs (wall)";
    rows.push(Row::new(what, Unit::Time, times[0], Some(times[1]), Peer::None, "–"));
    let aloop = bench.instructions(&bench.command(&root, &dry), &[0]);
    let floor = bench.instructions(&bench.floor(&root, &["dry-run", home]), &[0]);
    if let (Some(aloop), Some(floor)) = (aloop, floor) {
        let what = "`iterate run --dry-run`, 100 recorded runs (instructions)";
        rows.push(Row::new(what, Unit::Instructions, aloop, Some(floor), Peer::None, "≤ 1.5× floor"));
    }
}

/// Writes at least `size` bytes of small stream-json events (a line of text,
/// a tool call) and a result; returns the bytes written.
fn small_events(out: &mut dyn Write, size: usize) -> usize {
    let text = r#"{"type":"assistant","message":{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"Reading the module and its tests to see how errors are reported before I change anything."}],"usage":{"input_tokens":1200,"output_tokens":60}},"session_id":"bench"}"#;
    let tool = r#"{"type":"assistant","message":{"id":"msg_2","type":"message","role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"cargo test --quiet","description":"Run the tests"}}]},"session_id":"bench"}"#;
    let mut written = 0;
    while written < size {
        writeln!(out, "{text}\n{tool}").unwrap();
        written += text.len() + tool.len() + 2;
    }
    written + write_result(out)
}

/// Writes at least `size` bytes of a Claude Code session with lines like real
/// ones (text, tool calls, tool results of a few KB; 2.5 KB on average).
fn recorded_session(out: &mut dyn Write, size: usize) -> usize {
    let words =
        ["the", "quick", "cargo", "test", "build", "error", "fn", "impl", "struct", "let", "mut", "warning"];
    let mut seed = 7u64;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut text = |n: u64| {
        (0..n)
            .map(|_| words[usize::try_from(next(words.len() as u64)).unwrap()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let usage = r#""usage":{"input_tokens":4,"cache_creation_input_tokens":1200,"cache_read_input_tokens":30000,"output_tokens":150}"#;
    let init = r#"{"type":"system","subtype":"init","cwd":"/w","session_id":"s","model":"m"}"#;
    writeln!(out, "{init}").unwrap();
    let mut written = init.len() + 1;
    while written < size {
        let line = match text(3).len() % 3 {
            0 => format!(
                r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"text","text":"{}"}}]}},{usage},"session_id":"s"}}"#,
                text(50)
            ),
            1 => format!(
                r#"{{"type":"assistant","message":{{"role":"assistant","content":[{{"type":"tool_use","id":"t","name":"Bash","input":{{"command":"cargo test {}"}}}}]}},{usage},"session_id":"s"}}"#,
                text(3)
            ),
            _ => format!(
                r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t","content":"{}","is_error":false}}]}},{usage},"session_id":"s"}}"#,
                text(700)
            ),
        };
        writeln!(out, "{line}").unwrap();
        written += line.len() + 1;
    }
    written + write_result(out)
}

fn write_result(out: &mut dyn Write) -> usize {
    let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"done","total_cost_usd":0.5,"usage":{"input_tokens":10,"output_tokens":10}}"#;
    writeln!(out, "{result}").unwrap();
    result.len() + 1
}
