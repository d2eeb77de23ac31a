"""Issue #17, point 3: a worker that fails is started again after a delay that doubles while
it keeps failing at once, and starts again from the first delay once it has run well."""

from __future__ import annotations

from typing import Any

from services.runtime import app


async def test_the_backoff_resets_after_the_worker_ran_well() -> None:
    now = [0.0]
    waits: list[float] = []
    runs = iter([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, app.HEALTHY_AFTER, 0.0, 0.0, None])

    async def worker(_runtime: Any) -> None:
        ran = next(runs)
        if ran is None:
            return  # done
        now[0] += ran
        raise ConnectionRefusedError("the database restarts")

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    await app._supervised(worker, None, sleep=sleep, clock=lambda: now[0])  # type: ignore[arg-type]
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0,  # failing at once: doubling, up to 5 s
                     0.2,  # it had run well for HEALTHY_AFTER: the first delay again
                     0.4, 0.8]
