"""triggerd on Celery vs Lightflow 1.11.1: the same three workflows, one Redis, one run.

Usage: python benchmarks/celery_vs_lightflow.py [--quick] [--no-lightflow] [--repeat N]
       [--lightflow-repeat N] [--lightflow-fast-repeat N] [--concurrency N] ... (--help)

Starts its own redis-server (127.0.0.1, free port, nothing saved) and, one after the
other, each system's worker (prefork, the same concurrency) on its own Redis database:

1. a bare Celery 5 app (benchmarks/bare_celery_app.py): apply_async -> get, the floor
   for a task's overhead on Celery;
2. ``triggerd worker`` + a CeleryExecutor in this process (the runner) over
   benchmarks/workflows/;
3. Lightflow 1.11.1 in its own virtual environment (created once, cached in
   $TMPDIR/triggerd-bench-lightflow-venv), a MongoDB wire server (secantusdb, in
   $TMPDIR/triggerd-bench-mongo-venv, also created once) and
   ``lightflow worker start``, over benchmarks/lightflow_workflows/, once with its
   polling at 0.05 s and once at its default (0.5 s); benchmarks/lightflow_driver.py,
   run with that venv's python, submits and times the runs.

Prints a table, a JSON line and last ``speedup_3chain_vs_lightflow: N`` (Lightflow at
its defaults). Method and results are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
CASES = [("bench_chain3", 3), ("bench_chain20", 20), ("bench_fanout50", 52)]
LIGHTFLOW_PINS = [
    "lightflow==1.11.1",
    "celery==4.4.7",
    "kombu==4.6.11",
    "redis<4",
    "pymongo<4",
    "ruamel.yaml<0.18",
]
MONGO_PIN = "secantusdb==0.7.0b3"
# graph.workflow_polling_time, graph.dag_polling_time, signal.polling_time
LIGHTFLOW_DEFAULT_POLL = 0.5
LIGHTFLOW_FAST_POLL = 0.05
HMAC_KEY = "benchmark-key-0123456789abcdef"
DB_TRIGGERD, DB_BARE, DB_LIGHTFLOW = 0, 1, 2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, logfile: Path | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = (
                logfile.read_text(errors="replace")[-3000:] if logfile and logfile.exists() else ""
            )
            raise RuntimeError(f"{what} within {timeout:g} s\n{tail}")
        time.sleep(0.05)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def load() -> float:
    return os.getloadavg()[0]


def wait_for_quiet(max_load: float, timeout: float = 120.0) -> float:
    """Wait (once, up to ``timeout``) for the 1-minute load average to drop under ``max_load``."""
    deadline = time.monotonic() + timeout
    if load() >= max_load:
        log(f"load {load():.2f}: waiting up to {timeout:g} s for it to drop under {max_load:g}")
    while load() >= max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load()


def git_state() -> dict[str, Any]:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=HERE, capture_output=True, text=True, check=False)
        return done.stdout

    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if line
    ]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "modified": dirty}


# -- processes ---------------------------------------------------------------------------


class Processes:
    """Every process this benchmark starts, each in its own session; stopped in reverse.

    After Ctrl-C or SIGTERM (``interrupted``) a worker gets 3 s, not 20, to finish the
    task it runs (a Lightflow workflow task may poll for seconds) before SIGKILL.
    """

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen] = []
        self.interrupted = False

    def start(self, argv: list[str], logfile: Path, **kwargs: Any) -> subprocess.Popen:
        with logfile.open("ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs
            )
        self._procs.append(proc)
        return proc

    @staticmethod
    def check(proc: subprocess.Popen, logfile: Path) -> None:
        if proc.poll() is not None:
            raise RuntimeError(
                f"{proc.args[0]} exited with {proc.returncode}:\n"
                f"{logfile.read_text(errors='replace')[-3000:]}"
            )

    def stop(self, proc: subprocess.Popen, timeout: float = 20.0) -> None:
        """SIGTERM (warm shutdown), then SIGKILL to its process group if it lingers."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(3.0 if self.interrupted else timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # its session: the pool children too
                proc.wait()
        self._procs = [p for p in self._procs if p is not proc]

    def stop_all(self) -> None:
        for proc in reversed(self._procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(list(self._procs)):
            self.stop(proc)


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def _status_kb(path: str, field: str) -> int:
    with open(path) as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field))


def tree_memory(pid: int) -> dict[str, float]:
    """VmRSS (and PSS, which splits the pages shared since fork) of a process and its
    descendants."""
    rss = pss = 0
    count = 0
    for p in process_tree(pid):
        try:
            rss += _status_kb(f"/proc/{p}/status", "VmRSS:")
            pss += _status_kb(f"/proc/{p}/smaps_rollup", "Pss:")
        except (OSError, StopIteration):
            continue
        count += 1
    return {
        "processes": count,
        "rss_mb": rss / 1024,
        "rss_per_process_mb": rss / 1024 / max(count, 1),
        "pss_mb": pss / 1024,
    }


def own_rss_mb() -> float:
    return _status_kb("/proc/self/status", "VmRSS:") / 1024


_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (not of their reaped children)."""
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICK


class CpuMeter:
    """CPU used by a worker tree, the submitting process and redis-server between start and stop."""

    def __init__(self, worker: int, redis_pid: int, submitter: bool = True):
        self._worker = process_tree(worker)
        self._redis = [redis_pid]
        self._submitter = submitter
        self._t0 = (cpu_seconds(self._worker), time.process_time(), cpu_seconds(self._redis))

    def per_run(self, runs: int) -> dict[str, float]:
        now = (cpu_seconds(self._worker), time.process_time(), cpu_seconds(self._redis))
        worker, submitter, redis_ = ((b - a) / runs for a, b in zip(self._t0, now, strict=True))
        out = {"worker_cpu_s": worker, "redis_cpu_s": redis_}
        if self._submitter:
            out["submitter_cpu_s"] = submitter
        return out


# -- statistics --------------------------------------------------------------------------


def summary(times: list[float]) -> dict[str, float]:
    times = sorted(times)
    n = len(times)
    return {
        "n": n,
        "p50_s": statistics.median(times),
        "p90_s": times[int(0.9 * (n - 1))],
        "p99_s": times[int(0.99 * (n - 1))],
        "min_s": times[0],
        "max_s": times[-1],
    }


# -- Redis -------------------------------------------------------------------------------


def start_redis(procs: Processes, workdir: Path) -> tuple[int, int]:
    """Port and pid of a new redis-server on 127.0.0.1 that saves nothing."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    logfile = workdir / "redis.log"
    proc = procs.start(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(logfile),
            "--dir",
            str(workdir),
        ],
        workdir / "redis.out",
    )

    def up() -> bool:
        procs.check(proc, logfile)
        return port_open(port)

    wait_until(up, 10, "redis-server did not accept connections", logfile)
    return port, proc.pid


# -- bare Celery -------------------------------------------------------------------------


def bench_bare(
    procs: Processes, workdir: Path, redis: tuple[int, int], concurrency: int, repeat: int
) -> dict[str, Any]:
    url = f"redis://127.0.0.1:{redis[0]}/{DB_BARE}"
    # read when bare_celery_app is imported, here and in the worker
    os.environ["BENCH_BROKER_URL"] = url
    sys.path.insert(0, str(HERE))
    import bare_celery_app

    name = "bare@bench"
    logfile = workdir / "bare-worker.log"
    proc = procs.start(
        [
            str(VENV_BIN / "celery"),
            "-A",
            "bare_celery_app",
            "worker",
            "-Q",
            bare_celery_app.QUEUE,
            "-c",
            str(concurrency),
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
        ],
        logfile,
        cwd=HERE,
    )
    app, echo = bare_celery_app.app, bare_celery_app.echo
    out: dict[str, Any] = {}
    try:

        def ready() -> bool:
            procs.check(proc, logfile)
            return bool(app.control.ping(destination=[name], timeout=0.5, limit=1))

        wait_until(ready, 60, "the bare Celery worker did not answer a ping", logfile)
        log(
            f"bare Celery: {repeat} round trips, {max(5, repeat // 10)} bursts of 52 "
            f"(load {load():.2f})"
        )
        for i in range(max(20, repeat // 10)):
            assert echo.apply_async((i,)).get(timeout=10) == i
        meter = CpuMeter(proc.pid, redis[1])
        times = []
        for i in range(repeat):
            t0 = time.perf_counter()
            result = echo.apply_async((i,)).get(timeout=10)
            times.append(time.perf_counter() - t0)
            assert result == i
        out["round_trip"] = {**summary(times), **meter.per_run(repeat)}
        # The fan-out's floor: 52 tasks sent at once, then every result awaited.
        bursts = max(5, repeat // 10)
        meter = CpuMeter(proc.pid, redis[1])
        times = []
        for _ in range(bursts):
            t0 = time.perf_counter()
            results = [echo.apply_async((i,)) for i in range(52)]
            assert [r.get(timeout=10) for r in results] == list(range(52))
            times.append(time.perf_counter() - t0)
        out["burst52"] = {**summary(times), **meter.per_run(bursts)}
        out["worker_memory"] = tree_memory(proc.pid)
    finally:
        procs.stop(proc)
        app.close()
    return out


# -- triggerd ----------------------------------------------------------------------------


def triggerd_config(workdir: Path, port: int) -> Path:
    """Defaults except the executor, the broker, the paths and an inline key (log: info, JSON)."""
    path = workdir / "triggerd.toml"
    path.write_text(
        textwrap.dedent(f"""\
        [paths]
        state_dir = "{workdir / 'state'}"
        workflows = ["{HERE / 'workflows'}"]
        [executor]
        kind = "celery"
        [celery]
        broker_url = "redis://127.0.0.1:{port}/{DB_TRIGGERD}"
        [security]
        hmac_key = "{HMAC_KEY}"
        """)
    )
    return path


def bench_triggerd(
    procs: Processes,
    workdir: Path,
    redis: tuple[int, int],
    concurrency: int,
    repeat: int,
    warmup: int,
) -> dict[str, Any]:
    from triggerd.config import load_settings
    from triggerd.engine.factory import make_executor
    from triggerd.engine.protocol import celery_app

    config = triggerd_config(workdir, redis[0])
    settings = load_settings(config)
    name = "triggerd@bench"
    logfile = workdir / "triggerd-worker.log"
    proc = procs.start(
        [
            str(VENV_BIN / "triggerd"),
            "worker",
            "--config",
            str(config),
            "-Q",
            "task,dag,workflow",
            "-c",
            str(concurrency),
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
        ],
        logfile,
        cwd=workdir,
    )
    ping_app = celery_app(settings.celery, name="triggerd-bench-ping")
    executor = None
    out: dict[str, Any] = {"workflows": {}}
    try:

        def ready() -> bool:
            procs.check(proc, logfile)
            return bool(ping_app.control.ping(destination=[name], timeout=0.5, limit=1))

        wait_until(ready, 60, "the triggerd worker did not answer a ping", logfile)
        executor = make_executor(settings)
        executor.start()
        for wf, _tasks in CASES:
            log(f"triggerd: {wf}, {warmup} warm-up + {repeat} runs (load {load():.2f})")
            for _ in range(warmup):
                result = executor.submit(wf, {}).wait(60)
                assert result.ok, result.error
            meter = CpuMeter(proc.pid, redis[1])
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                result = executor.submit(wf, {}).wait(60)
                times.append(time.perf_counter() - t0)
                assert result.ok, result.error
            out["workflows"][wf] = {**summary(times), **meter.per_run(repeat)}
        out["worker_memory"] = tree_memory(proc.pid)
        out["submitter_rss_mb"] = own_rss_mb()  # the runner lives in the submitting process
    finally:
        if executor is not None:
            executor.close()
        procs.stop(proc)
        ping_app.close()
    return out


# -- Lightflow ---------------------------------------------------------------------------


def lightflow_venv(path: Path) -> Path:
    """The venv's python; created (pinned, patched for Python 3.11) when missing."""
    python = path / "bin" / "python"
    marker = path / ".triggerd-bench-ready"
    if marker.exists():
        return python
    log(f"creating the Lightflow 1.11.1 venv in {path} (once)")
    shutil.rmtree(path, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    with (path / "pip.log").open("wb") as out:
        subprocess.run(
            [str(python), "-m", "pip", "install", *LIGHTFLOW_PINS],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    # vine 1.3 imports inspect.formatargspec, which Python 3.11 removed (../shared/INFRA.md).
    five = next((path / "lib").glob("python3*/site-packages/vine/five.py"))
    text = five.read_text()
    old = "from inspect import formatargspec, getfullargspec"
    if old in text:
        five.write_text(text.replace(old, "from inspect import getfullargspec", 1))
    subprocess.run(
        [str(python), "-c", "import lightflow.queue.app, lightflow.workflows"], check=True
    )
    marker.write_text("lightflow 1.11.1\n")
    return python


def mongo_server(venv: Path) -> Path:
    """secantusdb's ``secantusd-py``, a MongoDB wire-protocol server, in a venv of its own
    (created once): it needs pymongo 4, Lightflow pymongo 3. nx-27017 does not serve
    Lightflow: it announces wire version 17 and up, which pymongo 3.13 refuses, and it
    rejects the collection name ``workflow-data``."""
    binary = venv / "bin" / "secantusd-py"
    marker = venv / ".triggerd-bench-ready"
    if not marker.exists():
        log(f"creating the MongoDB server venv (secantusdb) in {venv} (once)")
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        with (venv / "pip.log").open("wb") as out:
            subprocess.run(
                [str(venv / "bin" / "python"), "-m", "pip", "install", MONGO_PIN],
                check=True,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        marker.write_text(MONGO_PIN + "\n")
    return binary


def start_mongo(procs: Processes, workdir: Path, binary: Path) -> int:
    port = free_port()
    data = workdir / "mongo"
    data.mkdir()
    logfile = workdir / "mongo.log"
    proc = procs.start(
        [str(binary), "--host", "127.0.0.1", "--port", str(port), "--storage-path", str(data)],
        logfile,
        cwd=data,
    )

    def up() -> bool:
        procs.check(proc, logfile)
        return port_open(port)

    wait_until(up, 30, "secantusd-py did not accept connections", logfile)
    return port


def lightflow_config(
    workdir: Path, redis_port: int, mongo_port: int, concurrency: int, poll: float
) -> Path:
    """Lightflow's defaults except where the servers are, the concurrency and the polling.

    JSON is YAML: Lightflow merges this over its default configuration.
    """
    url = f"redis://127.0.0.1:{redis_port}/{DB_LIGHTFLOW}"
    config = {
        "workflows": [str(HERE / "lightflow_workflows")],
        "celery": {"broker_url": url, "result_backend": url, "worker_concurrency": concurrency},
        "signal": {
            "host": "127.0.0.1",
            "port": redis_port,
            "database": DB_LIGHTFLOW,
            "polling_time": poll,
        },
        "store": {"host": "127.0.0.1", "port": mongo_port, "database": "lightflow"},
        "graph": {"workflow_polling_time": poll, "dag_polling_time": poll},
    }
    path = workdir / f"lightflow-poll{poll:g}.cfg"
    path.write_text(json.dumps(config, indent=2))
    return path


def bench_lightflow(
    procs: Processes,
    workdir: Path,
    python: Path,
    config: Path,
    redis_pid: int,
    tag: str,
    repeat: int,
    warmup: int,
) -> dict[str, Any]:
    """One worker with this config; the driver (the Lightflow venv's python) once per workflow."""
    name = f"lightflow-{tag}@bench"
    logfile = workdir / f"lightflow-worker-{tag}.log"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "LIGHTFLOW_CONFIG")
    }
    if os.geteuid() == 0:
        env["C_FORCE_ROOT"] = "1"  # Lightflow's pickle serializer: Celery refuses root otherwise
    proc = procs.start(
        [
            str(python.parent / "lightflow"),
            "--config",
            str(config),
            "--no-color",
            "worker",
            "start",
            "-n",
            name,
            "--without-mingle",
            "--without-gossip",
        ],
        logfile,
        cwd=workdir,
        env=env,
    )
    out: dict[str, Any] = {"workflows": {}}
    try:
        for wf, _tasks in CASES:
            log(
                f"Lightflow, polling {tag}: {wf}, {warmup} warm-up + {repeat} runs "
                f"(load {load():.2f})"
            )
            driver_log = workdir / f"lightflow-driver-{tag}-{wf}.log"
            driver = procs.start(
                [
                    str(python),
                    str(HERE / "lightflow_driver.py"),
                    "--config",
                    str(config),
                    "--worker",
                    name,
                    "--repeat",
                    str(repeat),
                    "--warmup",
                    str(warmup),
                    wf,
                ],
                driver_log,
                cwd=workdir,
                env=env,
            )
            meter = None
            while driver.poll() is None:
                procs.check(proc, logfile)
                if meter is None and "measuring:" in driver_log.read_text(errors="replace"):
                    meter = CpuMeter(proc.pid, redis_pid, submitter=False)  # after the warm-up
                time.sleep(0.05)
            procs.stop(driver)
            lines = driver_log.read_text(errors="replace").splitlines()
            if driver.returncode != 0 or not lines or not lines[-1].startswith("{"):
                raise RuntimeError(
                    f"the Lightflow driver failed ({driver.returncode}):\n" + "\n".join(lines[-40:])
                )
            times = json.loads(lines[-1])["times"][wf]
            out["workflows"][wf] = {**summary(times), **(meter.per_run(repeat) if meter else {})}
            log(f"Lightflow, polling {tag}: {wf}: {', '.join(f'{t:.3f}' for t in times)} s")
        out["worker_memory"] = tree_memory(proc.pid)
        worker_log = logfile.read_text(errors="replace")
        if "Traceback" in worker_log or "[ERROR]" in worker_log:
            raise RuntimeError(f"the Lightflow worker logged an error: see {logfile}")
    finally:
        procs.stop(proc)
    return out


# -- report ------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def cpu_ms(data: dict[str, float]) -> str:
    parts = [
        f"{data[key] * 1e3:.1f}"
        for key in ("worker_cpu_s", "submitter_cpu_s", "redis_cpu_s")
        if key in data
    ]
    return " / ".join(parts)


def report(results: dict[str, Any], concurrency: int) -> None:
    td = results["triggerd"]["workflows"]
    lf = results.get("lightflow", {})
    bare = results["bare_celery"]
    rt = bare["round_trip"]
    default, fast = f"{LIGHTFLOW_DEFAULT_POLL:g} s", f"{LIGHTFLOW_FAST_POLL:g} s"
    git = results["git"]
    print()
    print(
        f"{results['date']}, {results['cpus']} CPUs, Python {results['python']}, "
        f"commit {git['commit']}"
        f"{' + ' + str(len(git['modified'])) + ' modified files' if git['modified'] else ''}; "
        f"load {results['load_at_start']:.2f} at start, "
        f"{results.get('load_at_end', float('nan')):.2f} at end"
    )
    print(
        f"submit -> run ended, median; one worker each, prefork -c {concurrency}; "
        f"Lightflow at polling {' and '.join(lf) or '(not run)'}"
    )
    head = f"{'workflow':<16}{'tasks':>6}{'triggerd p50':>14}{'p90':>10}"
    for tag in lf:
        head += f"{'Lightflow ' + tag:>18}{'speedup':>9}"
    print(head)
    speedups: dict[str, dict[str, float]] = {}
    for wf, tasks in CASES:
        line = f"{wf:<16}{tasks:>6}{ms(td[wf]['p50_s']):>14}{ms(td[wf]['p90_s']):>10}"
        for tag, data in lf.items():
            other = data["workflows"][wf]["p50_s"]
            speedups.setdefault(wf, {})[tag] = other / td[wf]["p50_s"]
            line += f"{ms(other):>18}{other / td[wf]['p50_s']:>8.0f}×"
        print(line)
    per_task = td["bench_chain20"]["p50_s"] / 20
    marginal = (td["bench_chain20"]["p50_s"] - td["bench_chain3"]["p50_s"]) / 17
    print()
    print(
        f"bare Celery round trip (apply_async -> get): p50 {ms(rt['p50_s'])}, "
        f"p99 {ms(rt['p99_s'])} (n={rt['n']}); "
        f"52 at once: p50 {ms(bare['burst52']['p50_s'])}"
    )
    print(
        f"triggerd per chained task: {ms(per_task)} (20-task chain / 20; marginal {ms(marginal)}): "
        f"{per_task / rt['p50_s']:.2f}× the bare round trip"
    )
    print()
    print(
        "CPU per run, ms: worker tree / submitter / redis-server "
        "(Lightflow: worker tree / redis-server)"
    )
    print(f"  bare Celery, one round trip: {cpu_ms(rt)}; 52 at once: {cpu_ms(bare['burst52'])}")
    for wf, tasks in CASES:
        line = f"  {wf:<16} triggerd {cpu_ms(td[wf])}"
        cpu_total = sum(
            td[wf].get(k, 0.0) for k in ("worker_cpu_s", "submitter_cpu_s", "redis_cpu_s")
        )
        line += f" ({cpu_total / tasks * 1e3:.2f} a task)"
        for tag, data in lf.items():
            line += f";  Lightflow {tag} {cpu_ms(data['workflows'][wf])}"
        print(line)
    systems = [
        ("bare Celery", bare["worker_memory"]),
        ("triggerd", results["triggerd"]["worker_memory"]),
    ]
    systems += [(f"Lightflow {tag}", data["worker_memory"]) for tag, data in lf.items()]
    print()
    print(
        f"{'worker tree, idle after its runs':<34}"
        f"{'processes':>10}{'RSS':>10}{'RSS/process':>13}{'PSS':>10}"
    )
    for label, mem in systems:
        print(
            f"{label:<34}{mem['processes']:>10}{mem['rss_mb']:>7.0f} MB"
            f"{mem['rss_per_process_mb']:>10.1f} MB{mem['pss_mb']:>7.0f} MB"
        )
    print(
        "(triggerd's runner: in the submitting process, "
        f"{results['triggerd']['submitter_rss_mb']:.0f} MB RSS here)"
    )
    results["derived"] = {
        "speedups": speedups,
        "triggerd_per_task_s": per_task,
        "triggerd_marginal_per_task_s": marginal,
        "per_task_vs_bare_round_trip": per_task / rt["p50_s"],
    }
    if lf:
        print()
        print("targets:")
        for wf, _ in CASES:
            for tag, floor in ((default, 100), (fast, 10)):
                if tag in speedups[wf]:
                    got = speedups[wf][tag]
                    print(
                        f"  {wf} vs Lightflow {tag}: {got:.0f}× (≥ {floor}×): "
                        f"{'met' if got >= floor else 'MISSED'}"
                    )
        ratio = per_task / rt["p50_s"]
        print(
            f"  per-task overhead {ratio:.2f}× a bare Celery round trip (≤ 2×): "
            f"{'met' if ratio <= 2 else 'MISSED'}"
        )
        lf_mem = (lf.get(default) or next(iter(lf.values())))["worker_memory"]
        td_mem = results["triggerd"]["worker_memory"]
        ok = td_mem["rss_per_process_mb"] <= lf_mem["rss_per_process_mb"]
        print(
            f"  worker RSS per process {td_mem['rss_per_process_mb']:.1f} MB vs Lightflow's "
            f"{lf_mem['rss_per_process_mb']:.1f} MB (≤): {'met' if ok else 'MISSED'}"
        )
    print()
    print(json.dumps(results))
    if default in speedups.get("bench_chain3", {}):
        print(f"speedup_3chain_vs_lightflow: {speedups['bench_chain3'][default]:.0f}")
    else:
        print("speedup_3chain_vs_lightflow: n/a")


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--repeat", type=int, default=30, help="measured runs per workflow, triggerd (30)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="warm-up runs per workflow, triggerd (2)"
    )
    parser.add_argument(
        "--bare-repeat", type=int, default=300, help="bare Celery round trips (300)"
    )
    parser.add_argument(
        "--lightflow-repeat",
        type=int,
        default=3,
        help="runs per workflow, Lightflow at 0.5 s polling (3)",
    )
    parser.add_argument(
        "--lightflow-fast-repeat",
        type=int,
        default=5,
        help="runs per workflow, Lightflow at 0.05 s (5)",
    )
    parser.add_argument(
        "--lightflow-warmup",
        type=int,
        default=1,
        help="warm-up runs per workflow and setting, Lightflow (1)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="every worker's -c (8: Lightflow's default)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="5 triggerd runs, 50 round trips, 1 Lightflow run, no Lightflow warm-up",
    )
    parser.add_argument("--no-lightflow", action="store_true", help="bare Celery and triggerd only")
    parser.add_argument(
        "--lightflow-venv",
        type=Path,
        default=Path(tempfile.gettempdir()) / "triggerd-bench-lightflow-venv",
    )
    parser.add_argument(
        "--mongo-venv", type=Path, default=Path(tempfile.gettempdir()) / "triggerd-bench-mongo-venv"
    )
    parser.add_argument(
        "--max-load",
        type=float,
        default=1.5,
        help="first wait (up to 120 s) for the load average to drop under this",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch directory (logs, configs)"
    )
    args = parser.parse_args()
    if args.quick:
        args.repeat, args.bare_repeat = 5, 50
        args.lightflow_repeat = args.lightflow_fast_repeat = 1
        args.lightflow_warmup = 0

    python = None if args.no_lightflow else lightflow_venv(args.lightflow_venv)
    mongo = None if args.no_lightflow else mongo_server(args.mongo_venv)
    workdir = Path(tempfile.mkdtemp(prefix="triggerd-bench-cvl-"))
    procs = Processes()

    def interrupted(signum: int, frame: Any) -> None:
        procs.interrupted = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    results: dict[str, Any] = {
        "concurrency": args.concurrency,
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "git": git_state(),
        "load_at_start": wait_for_quiet(args.max_load),
    }
    try:
        redis = start_redis(procs, workdir)
        results["bare_celery"] = bench_bare(
            procs, workdir, redis, args.concurrency, args.bare_repeat
        )
        results["triggerd"] = bench_triggerd(
            procs, workdir, redis, args.concurrency, args.repeat, args.warmup
        )
        if python is not None:
            assert mongo is not None
            mongo_port = start_mongo(procs, workdir, mongo)
            results["lightflow"] = {}
            for poll, repeat in (
                (LIGHTFLOW_FAST_POLL, args.lightflow_fast_repeat),
                (LIGHTFLOW_DEFAULT_POLL, args.lightflow_repeat),
            ):
                config = lightflow_config(workdir, redis[0], mongo_port, args.concurrency, poll)
                tag = f"{poll:g} s"
                results["lightflow"][tag] = bench_lightflow(
                    procs,
                    workdir,
                    python,
                    config,
                    redis[1],
                    tag.replace(" ", ""),
                    repeat,
                    args.lightflow_warmup,
                )
            # default setting first in the table
            results["lightflow"] = dict(reversed(list(results["lightflow"].items())))
        results["load_at_end"] = load()
    except BaseException:
        log(f"failed; logs are in {workdir}")
        args.keep = True
        raise
    finally:
        procs.stop_all()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report(results, args.concurrency)


if __name__ == "__main__":
    main()
