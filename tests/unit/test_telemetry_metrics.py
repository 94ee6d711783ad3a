"""What /metrics shows before any request: the process, the build, and counters at 0 from the start."""

from __future__ import annotations

import platform

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from guard import __version__
from guard.telemetry.metrics import GuardMetrics


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(GuardMetrics().registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_process_figures_are_exported() -> None:
    """Memory and file descriptors: what a proxy holding thousands of watches is watched by."""
    names = {name for name, _ in _samples()}
    assert {"process_resident_memory_bytes", "process_open_fds", "process_cpu_seconds_total"} <= names


def test_build_info_names_the_version_and_python() -> None:
    labels = (("python", platform.python_version()), ("version", __version__))
    assert _samples()[("guard_build_info", labels)] == 1


def test_reload_counters_start_at_zero_so_the_first_rejection_is_an_increase() -> None:
    """A counter that first appears at 1 shows no increase() to an alert; both results start at 0."""
    samples = _samples()
    for result in ("applied", "rejected"):
        assert samples[("guard_settings_reloads_total", (("result", result),))] == 0
