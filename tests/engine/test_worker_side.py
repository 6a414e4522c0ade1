"""A Celery worker's side of outages, without a cluster: waiting for the daemon's HMAC
key, waiting for an unreachable data store, and saying so when it gives up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from mongo_fixture import MongoServer

from triggerd.config import load_settings
from triggerd.engine.codec import Codec
from triggerd.engine.job import PatientDocument, TaskJob, document_for, outcome_without_document
from triggerd.engine.keys import load_or_create_key, wait_for_hmac_key
from triggerd.errors import BackendUnavailable
from triggerd.store import DocumentMissing
from triggerd.store.mongodb import MongoDataStore


def test_a_worker_started_before_the_daemon_waits_for_its_key(tmp_path: Path):
    """No key file yet: the worker waits (it never makes a key of its own) and takes the
    daemon's as soon as the daemon has written it, whole."""
    (tmp_path / "triggerd.toml").write_text(f'[paths]\nstate_dir = "{tmp_path / "state"}"\n')
    settings = load_settings(tmp_path / "triggerd.toml")
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # the daemon starts meanwhile
            load_or_create_key(settings.hmac_key_path)

    key = wait_for_hmac_key(settings, sleep=sleep)
    assert len(waits) == 3 and key == settings.hmac_key_path.read_bytes()
    assert settings.hmac_key_path.stat().st_mode & 0o777 == 0o600
    # no draft left
    assert [p.name for p in settings.hmac_key_path.parent.iterdir()] == ["hmac.key"]


def test_two_processes_creating_the_key_at_once_agree_on_one(tmp_path: Path):
    path = tmp_path / "hmac.key"
    keys: list[bytes] = []
    threads = [
        threading.Thread(target=lambda: keys.append(load_or_create_key(path))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1 and keys[0] == path.read_bytes()


class _Store:
    """A data store that is unreachable for ``down`` attempts, then answers."""

    def __init__(self, down: int, missing: bool = False):
        self.down, self.missing, self.attempts = down, missing, 0

    def open(self) -> _Store:
        return self

    def get(self, run_id: str) -> str:
        self.attempts += 1
        if self.attempts <= self.down:
            raise BackendUnavailable("the MongoDB data store at mongodb://db did not answer")
        if self.missing:
            raise DocumentMissing(f"the data store holds no document for run {run_id}")
        return f"document of {run_id}"


JOB = TaskJob("run-1", "wf", "hash", "d:1", "d", "t", "task", None)


def test_a_task_waits_for_an_unreachable_store_then_runs():
    store, slept = _Store(down=3), []
    assert (
        document_for(JOB, store, give_up_after=60, sleep=slept.append).at_once
        == "document of run-1"
    )
    assert slept == [0.5, 1.0, 2.0]


def test_a_task_that_gives_up_on_the_store_says_the_store_was_unreachable():
    with pytest.raises(BackendUnavailable) as info:
        document_for(JOB, _Store(down=1000), give_up_after=3, sleep=lambda s: None)
    outcome = outcome_without_document(info.value, "mongodb://db")
    assert outcome.outcome == "failed"
    assert outcome.message.startswith(
        "the data store (mongodb://db) could not be reached, so the task did not run"
    )
    assert "worker" not in outcome.message.split(":")[0]


def test_a_missing_document_fails_at_once_naming_both_stores():
    store = _Store(down=0, missing=True)
    with pytest.raises(DocumentMissing) as info:
        document_for(JOB, store, give_up_after=60, sleep=lambda s: None)
    assert store.attempts == 1
    assert (
        "must share one data store"
        in outcome_without_document(info.value, "/var/store.sqlite").message
    )


class _Document:
    """A run's document whose next ``fail`` calls raise ``error``."""

    def __init__(self, error: Exception, fail: int):
        self.error, self.fail, self.calls, self.items = error, fail, 0, {}

    def _call(self, result):
        self.calls += 1
        if self.calls <= self.fail:
            raise self.error
        return result()

    def get(self, key, default=None, *, section="data"):
        return self._call(lambda: self.items.get(key, default))

    def set(self, key, value, *, section="data"):
        return self._call(lambda: self.items.__setitem__(key, value) or True)

    def push(self, key, value, *, section="data"):
        return self._call(lambda: self.items.setdefault(key, []).append(value) or True)

    def extend(self, key, values, *, section="data"):
        return self._call(lambda: self.items.setdefault(key, []).extend(values) or True)


def _patient(document: _Document) -> PatientDocument:
    return PatientDocument(document, JOB, give_up_after=60, sleep=lambda s: None)


@pytest.mark.parametrize("sent", [False, True])
def test_a_tasks_reads_and_sets_wait_for_an_unreachable_store(sent):
    document = _Document(BackendUnavailable("away", unsent=not sent), fail=3)
    patient = _patient(document)
    assert patient.set("a", 1) is True and document.calls == 4
    assert patient.get("a") == 1 and document.calls == 5


def test_an_append_waits_only_while_the_store_surely_did_nothing():
    """An append that broke off after it was sent may have landed: it is not sent again
    (appending twice is worse than failing and saying so). One that had no server to
    go to is sent again when the store is back."""
    unsent = _Document(BackendUnavailable("no server", unsent=True), fail=2)
    assert _patient(unsent).push("a", 1) is True and unsent.items == {"a": [1]}
    assert _patient(unsent).extend("a", [2, 3]) is True and unsent.items == {"a": [1, 2, 3]}
    maybe = _Document(BackendUnavailable("connection reset", unsent=False), fail=1)
    with pytest.raises(BackendUnavailable, match="connection reset"):
        _patient(maybe).push("a", 1)
    assert maybe.calls == 1


def test_a_store_call_that_is_not_an_outage_fails_at_once():
    document = _Document(ValueError("not a list"), fail=1)
    with pytest.raises(ValueError):
        _patient(document).push("a", 1)
    assert document.calls == 1


def test_a_tasks_store_calls_outlast_a_mongodb_restart(tmp_path: Path):
    """The real server stopped under a running task: its read, set and append wait, then
    land once the server is back (the fault scenario's race, made certain)."""
    server = MongoServer(tmp_path)
    server.start()
    try:
        # Server selection gives up after 0.5 s: a wait longer than that is the task's own.
        with MongoDataStore(
            server.url + "&serverSelectionTimeoutMS=500", Codec(b"k" * 32)
        ) as store:
            store.add("run-1")
            document = document_for(JOB, store, give_up_after=60)
            document.set("path", "/data/a.h5")
            server.stop()
            results: dict[str, object] = {}

            def task() -> None:
                results["get"] = document.get("path")
                results["set"] = document.set("seen", True)
                results["push"] = document.push("log", "one")

            thread = threading.Thread(target=task)
            thread.start()
            thread.join(2.0)
            assert thread.is_alive(), "the task's store call returned while the server was down"
            server.start()
            thread.join(60)
            assert not thread.is_alive()
            assert results == {"get": "/data/a.h5", "set": True, "push": True}
            assert store.snapshot("run-1")["data"] == {
                "path": "/data/a.h5",
                "seen": True,
                "log": ["one"],
            }
    finally:
        server.stop()
