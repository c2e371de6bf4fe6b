"""Shared machinery of the fake coding agents (claude, codex, qwen, gemini).

Each fake is a thin executable that validates its argv like the real CLI
(rejecting what the real one rejects), reads the prompt, and plays a session
in the real CLI's NDJSON format. Behaviour is controlled by environment
variables, the same for all four:

FAKE_AGENT_LOG=/abs/file.jsonl
    append {"agent", "argv", "prompt", "cwd"} as one JSON line per call.
FAKE_AGENT_PLAN=/abs/plan.json
    a JSON array, one entry per call (the call number is kept in
    /abs/plan.json.calls under a lock; after the last entry the last repeats).
    Or {"by_worktree": {"US-001": [...], "US-002": [...]}}: the key that
    names the directory the agent runs in (`.../US-001`, or `.../US-001-2`
    for a second worktree) picks its own array, counted apart (for agents
    running side by side, whose calls come in no fixed order).
    Entry keys (all optional): text, write {path: content}, append
    {path: more}, commit (message; git add -A && git commit in cwd), exit,
    is_error, error, cost, sleep, hang, mode, limit (a FAKE_AGENT_LIMIT name).
FAKE_AGENT_MODE
    ok (default), fail, error_result, hang, silent_hang, garbage, huge,
    flood, ignore_term, slow_cleanup (hangs; on SIGTERM takes a second, then
    writes FAKE_AGENT_CLEANED and exits), progress (redraws "working N%\r"
    every 0.3 s for 3 s, no newline, then finishes like ok).
FAKE_AGENT_TIMES=/abs/file.jsonl
    append {"cwd", "start", "end"} (unix seconds as floats) when a call ends,
    and {"cwd", "start"} when it starts: tests see which calls overlapped.
FAKE_AGENT_READY=/abs/file
    written with the fake's pid once it is running and, for the modes that
    hang, about to wait: tests wait for it instead of counting processes.
FAKE_AGENT_ESCAPE=/abs/file
    first start a grandchild that leaves the process group and the session
    (fork, setsid, fork: a daemon) and sleeps; it writes its pid to the file
    before the fake goes on.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

MODES = {"ok", "fail", "error_result", "hang", "silent_hang", "garbage", "huge", "flood", "ignore_term",
         "slow_cleanup", "progress", "limit"}
LIMITS = os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "fixtures", "limits")


class Usage(Exception):
    """An argv the real CLI rejects: message for stderr and exit code."""

    def __init__(self, message, code=1):
        super().__init__(message)
        self.message = message
        self.code = code


def out(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def raw(data):
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def read_stdin():
    """Reads stdin to EOF, as the real CLIs do when the prompt is piped."""
    if sys.stdin is None or sys.stdin.isatty():
        return ""
    return sys.stdin.buffer.read().decode("utf-8", "replace")


def log_call(agent, argv, prompt, cwd):
    path = os.environ.get("FAKE_AGENT_LOG")
    if not path:
        return
    line = json.dumps({"agent": agent, "argv": argv, "prompt": prompt, "cwd": cwd}) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line)


def log_times(record):
    path = os.environ.get("FAKE_AGENT_TIMES")
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(json.dumps(record) + "\n")


def plan_entry(cwd):
    """The plan entry for this call (a dict), or {} without a plan."""
    path = os.environ.get("FAKE_AGENT_PLAN")
    if not path:
        return {}
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    counter_path = path + ".calls"
    if isinstance(plan, dict) and "by_worktree" in plan:
        name = os.path.basename(os.path.normpath(cwd))
        key = next((k for k in plan["by_worktree"] if name == k or name.startswith(k + "-")), None)
        if key is None:
            return {}
        plan = plan["by_worktree"][key]
        counter_path += "." + key
    if isinstance(plan, dict):
        plan = [plan]
    if not plan:
        return {}
    with open(counter_path, "a+", encoding="utf-8") as counter:
        fcntl.flock(counter, fcntl.LOCK_EX)
        counter.seek(0)
        text = counter.read().strip()
        n = int(text) if text else 0
        counter.seek(0)
        counter.truncate()
        counter.write(str(n + 1))
        counter.flush()
    return plan[min(n, len(plan) - 1)]


def write_file(path, text):
    """Writes a whole file at once (a reader never sees half of it)."""
    temp = path + ".tmp"
    with open(temp, "w", encoding="utf-8") as f:
        f.write(text)
    os.rename(temp, path)


def ready():
    path = os.environ.get("FAKE_AGENT_READY")
    if path:
        write_file(path, str(os.getpid()))


def sleep_forever():
    ready()
    while True:
        time.sleep(3600)


def escape(pidfile):
    """A daemon: fork, setsid, fork; the grandchild writes its pid and sleeps
    with its stdio on /dev/null. Returns once the pid is written."""
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            write_file(pidfile, str(os.getpid()))
            os.execvp("sleep", ["sleep", "100000"])
        os._exit(0)
    os.wait()
    deadline = time.time() + 30
    while not os.path.exists(pidfile) and time.time() < deadline:
        time.sleep(0.01)


def clean_up_slowly(_signum, _frame):
    time.sleep(1)
    write_file(os.environ["FAKE_AGENT_CLEANED"], "cleaned")
    os._exit(143)


def spawn_helper(ignore_term=False):
    """A child process in the same group, so tests can prove that the whole
    group is stopped (it inherits the environment and thus any marker)."""
    code = "import signal,time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "time.sleep(100000)\n"
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)


def git(cwd, *args):
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)


class Session:
    """Plays one session. `fmt` is the agent's event format (an object with
    init/text/tool/tool_result/result/error methods printing real events)."""

    def __init__(self, fmt, cwd):
        self.fmt = fmt
        self.cwd = cwd

    def write_files(self, files, append):
        for rel, content in (files or {}).items():
            path = os.path.join(self.cwd, rel)
            self.fmt.tool("Write", {"file_path": path, "content": content}, "write_file")
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            with open(path, "a" if append else "w", encoding="utf-8") as f:
                f.write(content)
            self.fmt.tool_result(f"The file {path} has been updated.", False)

    def commit(self, message):
        command = f"git add -A && git commit -m {json.dumps(message)}"
        self.fmt.tool("Bash", {"command": command, "description": "Commit the change"}, "run_shell_command")
        git(self.cwd, "add", "-A")
        done = git(self.cwd, "commit", "-q", "-m", message)
        self.fmt.tool_result((done.stdout + done.stderr).strip() or "committed", done.returncode != 0)

    def limit(self, name):
        """Prints what the real CLI prints when the limit case `name` stops it."""
        with open(os.path.join(LIMITS, self.fmt.agent + ".json"), encoding="utf-8") as f:
            cases = {case["name"]: case for case in json.load(f)}
        if name not in cases:
            sys.stderr.write(f"fake {self.fmt.agent}: unknown FAKE_AGENT_LIMIT {name!r} (cases: {', '.join(cases)})\n")
            return 2
        case = cases[name]
        for event in case["stdout"]:
            self.fmt.emit(dict(event))
        sys.stderr.write(case["stderr"])
        sys.stderr.flush()
        return case["exit"]

    def play(self, entry):
        mode = entry.get("mode") or os.environ.get("FAKE_AGENT_MODE") or "ok"
        if mode not in MODES:
            sys.stderr.write(f"fake {self.fmt.agent}: unknown FAKE_AGENT_MODE {mode!r}\n")
            return 2
        if os.environ.get("FAKE_AGENT_ESCAPE"):
            escape(os.environ["FAKE_AGENT_ESCAPE"])
        if entry.get("sleep"):
            time.sleep(float(entry["sleep"]))
        fmt = self.fmt
        if mode == "silent_hang":
            sleep_forever()
        if mode == "ignore_term":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            spawn_helper(ignore_term=True)
            fmt.init()
            sleep_forever()
        if mode == "fail":
            sys.stderr.write(f"fake {fmt.agent}: simulated failure (FAKE_AGENT_MODE=fail)\n")
            return 1
        if mode == "limit":
            return self.limit(entry.get("limit") or os.environ.get("FAKE_AGENT_LIMIT", ""))
        fmt.init()
        if mode == "slow_cleanup":
            signal.signal(signal.SIGTERM, clean_up_slowly)
            fmt.text("Working on it...")
            sleep_forever()
        if mode == "progress":
            ready()
            for i in range(10):
                raw(f"working {i * 10}%\r".encode())
                time.sleep(0.3)
            raw(b"\n")
        if mode == "hang":
            spawn_helper()
            fmt.text("Working on it...")
            sleep_forever()
        if mode == "garbage":
            raw(b"this is not json\n")
            raw(b"\xff\xfe invalid utf-8 \xc3\x28\n")
            raw(b'{"truncated": \n')
            raw(b"\n")
        if mode == "huge":
            fmt.text("x" * (50 * 1024 * 1024))
        if mode == "flood":
            chunk = "flood " * 170 + "\n"
            written = 0
            while written < 100 * 1024 * 1024:
                fmt.text(chunk)
                written += len(chunk) + 200
        self.write_files(entry.get("write"), False)
        self.write_files(entry.get("append"), True)
        if entry.get("commit"):
            self.commit(entry["commit"])
        text = entry.get("text", "Done.")
        if mode == "garbage":
            raw(b"\x00\x01 more garbage \xe2\x82\n")
        fmt.text(text)
        if entry.get("hang"):
            spawn_helper()
            sleep_forever()
        cost = float(entry.get("cost", 0.0123))
        error = entry.get("error")
        is_error = bool(entry.get("is_error")) or error is not None or mode == "error_result"
        if is_error:
            message = error or "API Error: simulated error result (FAKE_AGENT_MODE=error_result)"
            fmt.result(message, cost, True)
        else:
            fmt.result(text, cost, False)
        code = int(entry.get("exit", 0))
        if code != 0:
            sys.stderr.write(f"fake {fmt.agent}: exiting with code {code}\n")
        return code


def main(agent, parse_argv, make_format):
    """Runs a fake: `parse_argv(argv)` returns a dict with at least
    `prompt_from_stdin` (bool), `prompt` (str or None), `cwd`, or raises
    Usage; `make_format(options)` returns the event format."""
    argv = sys.argv[1:]
    try:
        options = parse_argv(argv)
    except Usage as e:
        log_call(agent, argv, None, os.getcwd())
        sys.stderr.write(e.message.rstrip("\n") + "\n")
        return e.code
    if options.get("version"):
        print(options["version"])
        return 0
    prompt = options.get("prompt")
    if options.get("prompt_from_stdin"):
        piped = read_stdin()
        prompt = piped if prompt is None else piped + "\n\n" + prompt
    cwd = options.get("cwd") or os.getcwd()
    log_call(agent, argv, prompt, cwd)
    check = options.get("check")
    if check:
        try:
            check(prompt, cwd)
        except Usage as e:
            sys.stderr.write(e.message.rstrip("\n") + "\n")
            return e.code
    entry = plan_entry(cwd)
    start = time.time()
    log_times({"cwd": cwd, "start": start})
    try:
        return Session(make_format(options), cwd).play(entry)
    except BrokenPipeError:
        return 1
    finally:
        log_times({"cwd": cwd, "start": start, "end": time.time()})


def run(agent, parse_argv, make_format):
    sys.exit(main(agent, parse_argv, make_format))


def yargs(argv, program, flags, valued, choices):
    """Parses argv the way yargs does for qwen and gemini: `--name value`,
    `--name=value`, unknown options rejected, choices checked. Returns
    (options by canonical name, positionals)."""
    opts, positional = {}, []
    usage = f"Usage: {program} [options] [command]"
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional += argv[i + 1:]
            break
        name, eq, inline = arg.partition("=")
        if arg.startswith("-") and len(arg) > 1:
            canonical = flags.get(name) or valued.get(name)
            if canonical is None:
                raise Usage(f"Unknown argument: {name.lstrip('-')}\n{usage}")
            if name in flags:
                opts[canonical] = True
            elif eq:
                opts[canonical] = inline
            elif i + 1 < len(argv):
                i += 1
                opts[canonical] = argv[i]
            else:
                raise Usage(f"Not enough arguments following: {canonical}\n{usage}")
            allowed = choices.get(canonical)
            if allowed and opts[canonical] not in allowed:
                given = opts[canonical]
                listed = ", ".join(f'"{c}"' for c in allowed)
                raise Usage(f'Invalid values:\n  Argument: {canonical}, Given: "{given}", Choices: {listed}\n{usage}')
        else:
            positional.append(arg)
        i += 1
    if opts.get("yolo") and "approval-mode" in opts:
        raise Usage("Cannot use both --yolo (-y) and --approval-mode together. "
                    f"Use --approval-mode=yolo instead.\n{usage}")
    return opts, positional
