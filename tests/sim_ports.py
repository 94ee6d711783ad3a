"""`start_sim`: conftest's `sim_server`, tried again when the ports it probed were taken before the
simulator bound them. The probe closes its sockets before the simulator starts, so on a busy machine
another process's outbound connection can take one of those ports in between (`address already in
use`); tests that start many simulators meet that race more often than the others."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import SimServer

ATTEMPTS = 3


def start_sim(sim_server: Callable[..., SimServer], *args: str, **kwargs: Any) -> SimServer:
    for attempt in range(1, ATTEMPTS + 1):
        try:
            return sim_server(*args, **kwargs)
        except pytest.fail.Exception as e:
            if "address already in use" not in str(e) or attempt == ATTEMPTS:
                raise
    raise AssertionError("unreachable")
