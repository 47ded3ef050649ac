"""The job path's stage timers: nothing recorded unless turned on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway import timing


def test_stages_record_nothing_while_off_and_durations_while_on() -> None:
    recorder = timing.RECORDER
    recorder.disable()
    recorder.reset()
    with timing.stage("sandbox"):
        pass
    timing.done("admission", timing.start())
    recorder.since_time("queue", datetime.now(UTC))
    assert recorder.samples() == {}
    recorder.enable()
    try:
        with timing.stage("sandbox"):
            pass
        with timing.stage("sandbox"):
            pass
        timing.done("admission", timing.start())
        recorder.since_time("queue", datetime.now(UTC) - timedelta(seconds=1))
        samples = recorder.samples()
    finally:
        recorder.disable()
        recorder.reset()
    assert len(samples["sandbox"]) == 2 and all(s >= 0 for s in samples["sandbox"])
    assert len(samples["admission"]) == 1
    assert samples["queue"][0] >= 1.0
