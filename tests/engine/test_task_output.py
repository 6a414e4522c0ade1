"""What tasks print and log becomes events of that task, in the local pool and in-process.

The pool tests run real worker processes and look at the events that reach the
executor's sinks; the in-process tests drive :func:`capture_task` directly to pin down
the rules for threads, concurrent tasks and the worker's own loggers.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import threading
import time

import pytest
from support import EventCollector, make_executor, overlapping_pair, wait_for

from triggerd.engine.capture import MAX_LINE, EventBatcher, capture_task
from triggerd.eventlog.schema import LogEvent


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "wf").mkdir()
    return tmp_path


def _executor(workdir, workers):
    collector = EventCollector()
    ex, store = make_executor(workdir, [workdir / "wf"], collector, workers=workers)
    ex.start()
    ex.collector, ex.store = collector, store
    return ex


@pytest.fixture
def executor(workdir):
    ex = _executor(workdir, 1)
    yield ex
    ex.close()
    ex.store.close()


@pytest.fixture
def executor2(workdir):
    ex = _executor(workdir, 2)
    yield ex
    ex.close()
    ex.store.close()


def write(workdir, name, body):
    (workdir / "wf" / f"{name}.py").write_text(textwrap.dedent(body))


HEADER = "from triggerd.flow import *\nimport logging, os, sys, time, threading\nimport structlog\n"


def of_task(events: list[LogEvent], task: str) -> list[LogEvent]:
    return [e for e in events if e.task == task and e.kind in ("output", "log")]


def shape(events: list[LogEvent]) -> list[tuple]:
    return [(e.kind, e.message, e.level, e.data.get("stream")) for e in events]


def test_python_task_prints_logs_and_raises(workdir, executor):
    """print, stderr writes, logging and structlog records of a raising task become its
    events, exactly and in order, bound to run, DAG, task and worker, before task.failed."""
    write(
        workdir,
        "talk",
        HEADER
        + """
log = logging.getLogger("beamline.reduce")
def talk(data, store, signal, context):
    print("first line")
    print("two", "parts", end="")
    print(" joined")
    log.info("frames %d", 42)
    log.warning("detector hot")
    log.debug("not shown at INFO")
    structlog.get_logger("beamline.sl").info("integrated", frames=42, sample="lyso")
    structlog.get_logger("beamline.sl").warning("beam dump")
    sys.stderr.write("to stderr\\n")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("caught")
    print("no newline at the end", end="")
    raise ValueError("bad pixel map")
d = Dag("d")
d.define({PythonTask("talk", talk): None})
""",
    )
    result = executor.submit("talk").wait(30)
    assert result.status == "failed"
    events = executor.collector.of(result.run_id)
    mine = of_task(events, "talk")
    assert shape(mine) == [
        ("output", "first line", "info", "stdout"),
        ("output", "two parts joined", "info", "stdout"),
        ("log", "frames 42", "info", None),
        ("log", "detector hot", "warning", None),
        ("log", "integrated", "info", None),
        ("log", "beam dump", "warning", None),
        ("output", "to stderr", "info", "stderr"),
        ("log", "caught", "error", None),
        ("output", "no newline at the end", "info", "stdout"),
    ]
    (started,) = [e for e in events if e.kind == "task.started"]
    worker = started.data["worker"]
    for event in mine:
        assert (event.run, event.workflow, event.dag, event.task) == (
            result.run_id,
            "talk",
            "d:1",
            "talk",
        )
        assert event.worker == worker and event.pid == int(worker.split("-")[1])
    logs = [e for e in mine if e.kind == "log"]
    assert [e.data["logger"] for e in logs] == ["beamline.reduce"] * 2 + ["beamline.sl"] * 2 + [
        "beamline.reduce"
    ]
    assert logs[2].data["fields"] == {"frames": 42, "sample": "lyso"}
    assert "ZeroDivisionError: division by zero" in logs[-1].data["exception"]
    kinds = [e.kind for e in events]
    assert kinds.index("task.failed") > max(events.index(e) for e in mine)
    ids = [e.id for e in mine]
    assert ids == sorted(ids)


BASH_LINES = "for i in $(seq 1 1000); do echo line $i; done; echo oops 1 >&2; echo oops 2 >&2"


def test_bash_task_lines_are_events_with_and_without_callbacks(workdir, executor):
    """1000 stdout and 2 stderr lines become output events with the command's pid, both for
    a BashTask with callbacks and captures (which still get every line) and one without."""
    write(
        workdir,
        "chatty",
        HEADER
        + f"""
CMD = ["sh", "-c", {BASH_LINES!r}]
seen = {{}}
def on_process(pid, data, store, signal, context):
    seen.update(pid=pid, out=[], err=[])
def on_end(returncode, out_file, err_file, data, store, signal, context):
    store.set("callbacks", {{"pid": seen["pid"], "out": seen["out"], "err": seen["err"]}})
    store.set("captured", {{"out": out_file.read().decode(), "err": err_file.read().decode()}})
with_callbacks = BashTask(
    "with_callbacks", CMD, capture_stdout=True, capture_stderr=True,
    callback_process=on_process, callback_end=on_end,
    callback_stdout=lambda line, *a: seen["out"].append(line),
    callback_stderr=lambda line, *a: seen["err"].append(line),
)
d = Dag("d")
d.define({{with_callbacks: BashTask("plain", CMD)}})
""",
    )
    result = executor.submit("chatty").wait(60)
    assert result.status == "succeeded", result.error
    events = executor.collector.of(result.run_id)
    expected_out = [f"line {i}" for i in range(1, 1001)]
    for task in ("with_callbacks", "plain"):
        mine = of_task(events, task)
        assert {(e.kind, e.level) for e in mine} == {("output", "info")}
        assert [e.message for e in mine if e.data["stream"] == "stdout"] == expected_out
        assert [e.message for e in mine if e.data["stream"] == "stderr"] == ["oops 1", "oops 2"]
        assert len({e.data["pid"] for e in mine}) == 1
        assert all((e.run, e.dag) == (result.run_id, "d:1") for e in mine)
        finished = next(
            i for i, e in enumerate(events) if e.kind == "task.succeeded" and e.task == task
        )
        assert all(events.index(e) < finished for e in mine)
    data = executor.store.snapshot(result.run_id)["data"]
    assert data["callbacks"]["out"] == [line + "\n" for line in expected_out]
    assert data["callbacks"]["err"] == ["oops 1\n", "oops 2\n"]
    assert data["captured"]["out"] == "".join(line + "\n" for line in expected_out)
    assert data["captured"]["err"] == "oops 1\noops 2\n"
    assert of_task(events, "with_callbacks")[0].data["pid"] == data["callbacks"]["pid"]


def test_two_tasks_running_at_once_keep_their_own_events(workdir, executor2):
    """Two tasks in two pool processes, overlapping in time (each waits for the other to
    start), print and log: every event is bound to the task that made it, in its order."""
    write(workdir, "pair", HEADER + overlapping_pair("task"))
    (workdir / "meet").mkdir()
    result = executor2.submit("pair", {"rendezvous": str(workdir / "meet")}).wait(60)
    assert result.status == "succeeded", result.error
    events = executor2.collector.of(result.run_id)
    for me in ("left", "right"):
        mine = of_task(events, me)
        expected = []
        for i in range(30):
            expected += [("output", f"{me} {i}"), ("log", f"{me} logged {i}")]
        assert [(e.kind, e.message) for e in mine] == expected
        assert {e.data.get("logger") for e in mine if e.kind == "log"} == {me}
    left, right = of_task(events, "left"), of_task(events, "right")
    assert left[0].pid != right[0].pid
    assert left[0].time < right[-1].time and right[0].time < left[-1].time  # they overlapped


def test_undecodable_bytes_nul_and_long_lines(workdir, executor):
    """Non-UTF-8 bytes (printed via surrogateescape, or from a command) become \\x escapes,
    a NUL stays, and a line past 64 KiB is cut with a note; nothing crashes."""
    write(
        workdir,
        "odd",
        HEADER
        + """
def odd(data, store, signal, context):
    print("raw \\udcff\\udcfe bytes")
    print("nul\\x00here")
    print("x" * 100_000)
d = Dag("d")
odd_bash = BashTask("odd_bash", ["sh", "-c", "printf 'caf\\\\351\\\\n'; printf 'a\\\\000b\\\\n'; \
head -c 200000 /dev/zero | tr '\\\\0' y; echo; printf 'end'"])
d.define({PythonTask("odd", odd): odd_bash})
""",
    )
    result = executor.submit("odd").wait(30)
    assert result.status == "succeeded", result.error
    events = executor.collector.of(result.run_id)
    note = " … [line truncated: {} bytes in all]"
    py = of_task(events, "odd")
    assert [e.message for e in py] == [
        "raw \\xff\\xfe bytes",
        "nul\x00here",
        "x" * MAX_LINE + note.format(100_000),
    ]
    assert py[2].data["truncated"] == 100_000
    bash = of_task(events, "odd_bash")
    assert [e.message for e in bash] == [
        "caf\\xe9",
        "a\x00b",
        "y" * MAX_LINE + note.format(200_000),
        "end",
    ]
    assert [e.data.get("truncated") for e in bash] == [None, None, 200_000, None]


def test_output_of_a_task_thread_arrives_while_the_task_waits_in_join_dags(workdir, executor):
    """A task blocked in join_dags (waiting for its reply on the pipe) does not hold back
    what its own thread prints: the test sees that line before it lets the sub-DAG end."""
    write(
        workdir,
        "waits",
        HEADER
        + """
parameters = Parameters([Option("flag")])
def spawn(data, store, signal, context):
    threading.Thread(target=lambda: (time.sleep(0.2), print("from my thread")), daemon=True).start()
    signal.join_dags([signal.start_dag("sub")])
def hold(data, store, signal, context):
    deadline = time.monotonic() + 20
    while not os.path.exists(store.get("flag")):
        assert time.monotonic() < deadline, "the test never saw the thread's line"
        time.sleep(0.01)
main = Dag("main")
main.define({PythonTask("spawn", spawn): None})
sub = Dag("sub", autostart=False)
sub.define({PythonTask("hold", hold): None})
""",
    )
    flag = workdir / "flag"
    handle = executor.submit("waits", {"flag": str(flag)})

    def line_seen():
        return [e for e in executor.collector.of(handle.run_id) if e.kind == "output"]

    wait_for(line_seen, 20, "the thread's line")
    (line,) = line_seen()
    assert (line.message, line.task, line.dag) == ("from my thread", "spawn", "main:1")
    flag.touch()
    assert handle.wait(30).status == "succeeded"


# -- in-process: the rules of attribution, and what is left behind ------------------------


def _capture(events: list[LogEvent], task: str):
    return capture_task(events.append, run="r1", workflow="wf", dag="d:1", task=task, worker="w")


def test_streams_and_handler_come_back_even_when_the_task_raises():
    """After a capture ends by an exception, sys.stdout/stderr are the ones from before and
    the root logger has its handlers from before; a partial last line still counts."""
    stdout, stderr, handlers = sys.stdout, sys.stderr, list(logging.getLogger().handlers)
    events: list[LogEvent] = []
    with pytest.raises(RuntimeError), _capture(events, "t"):
        assert sys.stdout is not stdout
        print("half", end="")
        raise RuntimeError("task failed")
    assert (sys.stdout, sys.stderr) == (stdout, stderr)
    assert logging.getLogger().handlers == handlers
    assert [(e.kind, e.message, e.task) for e in events] == [("output", "half", "t")]
    print("after the task")
    assert len(events) == 1


def test_workers_own_loggers_are_never_task_events():
    """Records of celery, kombu, billiard and triggerd.engine loggers inside a task are not
    its events; another library's record is."""
    events: list[LogEvent] = []
    with _capture(events, "t"):
        for name in (
            "celery.app.trace",
            "celery",
            "kombu.connection",
            "billiard.pool",
            "triggerd.engine.job",
        ):
            logging.getLogger(name).warning("internal")
        logging.getLogger("celerymatic").warning("a library of the task")
    assert [(e.message, e.data["logger"]) for e in events] == [
        ("a library of the task", "celerymatic")
    ]


def test_concurrent_tasks_in_threads_and_plain_threads():
    """Two captures on two threads (Celery -P threads) keep their lines apart; a plain
    thread's line belongs to a task only when it alone runs and the thread is newer."""
    events: list[LogEvent] = []
    both_running = threading.Barrier(2)
    first_may_end = threading.Event()
    plain_lines: list[str] = []

    def plain(text: str) -> None:
        thread = threading.Thread(target=print, args=(text,))
        thread.start()
        thread.join()
        plain_lines.append(text)

    def task(name: str) -> None:
        with _capture(events, name):
            both_running.wait(5)
            for i in range(50):
                print(f"{name} {i}")
            if name == "a":
                plain("while two run")  # two tasks: nobody's
                first_may_end.set()
            else:
                first_may_end.wait(5)
                time.sleep(0.1)  # "a" has ended by now
                plain("while b alone runs")  # b's: the thread is newer than b

    old = threading.Thread(
        target=lambda: (first_may_end.wait(5), time.sleep(0.05), print("old thread"))
    )
    old.start()  # alive before both tasks: never theirs
    threads = [threading.Thread(target=task, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in [*threads, old]:
        t.join(10)
    a = [e.message for e in events if e.task == "a"]
    b = [e.message for e in events if e.task == "b"]
    assert a == [f"a {i}" for i in range(50)]
    assert b == [f"b {i}" for i in range(50)] + ["while b alone runs"]
    assert plain_lines == ["while two run", "while b alone runs"]


def test_batcher_sends_in_order_within_the_delay_and_on_flush():
    """The batcher hands events on in order, within its delay even when few wait, and
    flush() sends what waits at once."""
    batches: list[list[str]] = []
    batcher = EventBatcher(
        lambda batch: batches.append([e.message for e in batch]), size=10, delay=0.05
    )
    for i in range(25):
        batcher(LogEvent(kind="output", message=str(i)))
    wait_for(lambda: sum(map(len, batches)) == 25, 2, "the batches")
    assert [m for batch in batches for m in batch] == [str(i) for i in range(25)]
    batches.clear()
    batcher(LogEvent(kind="output", message="last"))
    batcher.flush()
    assert batches == [["last"]]


def test_a_background_child_holding_the_output_does_not_hold_the_task():
    """A command that leaves a child running with its stdout (``sleep &``) ends when the
    shell does, as before its output was read for events; the line it printed is there."""
    from triggerd.flow.bash_task import BashTask

    pids: list[int] = []
    task = BashTask(
        "bg", "sleep 30 & echo started", callback_process=lambda pid, *a: pids.append(pid)
    )
    events: list[LogEvent] = []
    t0 = time.monotonic()
    try:
        with _capture(events, "bg"):
            task._run(None, None, None, None)
        assert time.monotonic() - t0 < 3
        assert [(e.message, e.data["stream"], e.data["pid"]) for e in events] == [
            ("started", "stdout", pids[0])
        ]
    finally:
        os.killpg(pids[0], signal.SIGKILL)


def test_a_forked_child_prints_without_events_and_without_hanging():
    """A process forked by the task (as multiprocessing does) prints through the inherited
    streams; its lines are not events of the task (they have no way out), and it ends."""
    events: list[LogEvent] = []
    with _capture(events, "t"):
        print("parent")
        pid = os.fork()
        if pid == 0:  # the child
            try:
                print("child")
                logging.getLogger("child").warning("child record")
                sys.stdout.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert [e.message for e in events] == ["parent"]
