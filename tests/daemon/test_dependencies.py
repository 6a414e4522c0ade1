"""The daemon's watch over its dependencies: an event on each change, never on none; a
Celery queue nobody consumes is down only after two checks, and up once nothing waits."""

from __future__ import annotations

import asyncio

import pytest

from triggerd.config import CelerySettings
from triggerd.daemon.dependencies import DependencyWatch
from triggerd.health import Dependency


class Notes:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    def __call__(self, kind: str, message: str, **fields: object) -> None:
        self.events.append((kind, message))


def test_each_change_of_state_is_one_event():
    notes = Notes()
    watch = DependencyWatch(notes, give_up_after=60)
    broker = Dependency("broker", "redis://h:6379/0")
    watch.check([broker.reading])  # unknown: nothing to say
    broker.up()
    watch.check([broker.reading])  # first seen up: nothing to say
    broker.down("ConnectionError: refused")
    watch.check([broker.reading])
    watch.check([broker.reading])  # still down: said once
    broker.up()
    watch.check([broker.reading])
    assert [kind for kind, _ in notes.events] == ["dependency.down", "dependency.up"]
    assert notes.events[0][1].startswith(
        "broker (redis://h:6379/0): ConnectionError: refused; work that needs it waits"
    )
    assert "give up after 60 s" in notes.events[0][1]
    assert [r.name for r in watch.down()] == []


def test_a_queue_without_a_worker_is_down_at_the_second_check_and_up_when_nothing_waits(
    monkeypatch,
):
    import triggerd.engine.celery_admin as admin

    consumed: set[str] = {"task"}
    monkeypatch.setattr(admin, "consumed_queues", lambda celery, timeout: set(consumed))
    notes = Notes()
    watch = DependencyWatch(notes, give_up_after=60, celery=CelerySettings())

    async def check(jobs: dict[str, int]) -> list[str]:
        await watch._check_queues(jobs)
        watch.check(watch.queue_readings())
        return [r.name for r in watch.down()]

    # the first miss may be a worker reconnecting
    assert asyncio.run(check({"task": 2, "gpu": 1})) == []
    assert asyncio.run(check({"task": 2, "gpu": 1})) == ["queue gpu"]
    ((kind, message),) = notes.events
    assert kind == "dependency.down" and "no worker consumes queue 'gpu' (1 jobs wait)" in message
    watch._queues.clear()  # the jobs were taken: nothing waits on any queue
    watch.check(watch.queue_readings())
    assert notes.events[-1] == ("dependency.up", "queue gpu: nothing waits for it any more")


@pytest.mark.parametrize("consumer", [True, False])
def test_a_queue_consumed_again_is_up(monkeypatch, consumer):
    import triggerd.engine.celery_admin as admin

    consumed: set[str] = set()
    monkeypatch.setattr(admin, "consumed_queues", lambda celery, timeout: set(consumed))
    watch = DependencyWatch(Notes(), give_up_after=60, celery=CelerySettings())
    for _ in range(2):
        asyncio.run(watch._check_queues({"gpu": 1}))
    assert [r.state for r in watch.queue_readings()] == ["down"]
    if consumer:
        consumed.add("gpu")
    asyncio.run(watch._check_queues({"gpu": 1}))
    assert [r.state for r in watch.queue_readings()] == ["up" if consumer else "down"]
