"""`Signal`: a job's release wakes the waits on that job, not every wait on the gateway."""

from __future__ import annotations

import threading

from gateway.context import Signal


def test_a_release_wakes_the_waits_on_its_job_only() -> None:
    signal = Signal()
    woken: list[str] = []
    forget_a = signal.listen(lambda: woken.append("a"), topic="job-a")
    signal.listen(lambda: woken.append("b"), topic="job-b")
    signal.listen(lambda: woken.append("any"))

    signal.notify("job-a")
    assert sorted(woken) == ["a", "any"]

    woken.clear()
    signal.notify()  # no topic (the pool stopping): everyone
    assert sorted(woken) == ["a", "any", "b"]

    woken.clear()
    forget_a()
    forget_a()  # twice is harmless
    signal.notify("job-a")
    assert woken == ["any"]


def test_generation_waiters_see_every_notify_whatever_its_topic() -> None:
    signal = Signal()
    seen = signal.generation()
    threading.Timer(0.05, signal.notify, args=("job-x",)).start()
    signal.wait(seen, timeout=5)
    assert signal.generation() == seen + 1
