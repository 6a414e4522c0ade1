"""A Celery worker's side of outages, without a cluster: waiting for the daemon's HMAC
key, waiting for an unreachable data store, and saying so when it gives up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from triggerd.config import load_settings
from triggerd.engine.celery_worker import _hmac_key
from triggerd.engine.codec import load_or_create_key
from triggerd.engine.job import TaskJob, document_for, outcome_without_document
from triggerd.errors import BackendUnavailable
from triggerd.store import DocumentMissing


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

    key = _hmac_key(settings, sleep=sleep)
    assert len(waits) == 3 and key == settings.hmac_key_path.read_bytes()
    assert settings.hmac_key_path.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in settings.hmac_key_path.parent.iterdir()] == ["hmac.key"]  # no draft left


def test_two_processes_creating_the_key_at_once_agree_on_one(tmp_path: Path):
    path = tmp_path / "hmac.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_key(path))) for _ in range(8)]
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
    assert document_for(JOB, store, give_up_after=60, sleep=slept.append) == "document of run-1"
    assert slept == [0.5, 1.0, 2.0]


def test_a_task_that_gives_up_on_the_store_says_the_store_was_unreachable():
    with pytest.raises(BackendUnavailable) as info:
        document_for(JOB, _Store(down=1000), give_up_after=3, sleep=lambda s: None)
    outcome = outcome_without_document(info.value, "mongodb://db")
    assert outcome.outcome == "failed"
    assert outcome.message.startswith("the data store (mongodb://db) could not be reached, so the task did not run")
    assert "worker" not in outcome.message.split(":")[0]


def test_a_missing_document_fails_at_once_naming_both_stores():
    store = _Store(down=0, missing=True)
    with pytest.raises(DocumentMissing) as info:
        document_for(JOB, store, give_up_after=60, sleep=lambda s: None)
    assert store.attempts == 1
    assert "must share one data store" in outcome_without_document(info.value, "/var/store.sqlite").message
