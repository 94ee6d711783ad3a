"""The profiling and A/B tools' arithmetic: py-spy's collapsed stacks into self and inclusive shares
(idle threads and waits left out), strace -c's summary into calls per request, paired ratios."""

from __future__ import annotations

from bench.ab import pairs_table
from bench.load import LoadResult
from bench.profile import syscalls_table, tally

LOOP = "run (asyncio/runners.py:118)"
STACKS = "\n".join([
    f"process 1:guard;thread 0x1;{LOOP};_serve (guard/http/connection.py:183);"
    "write (/work/x/guard/http/connection.py:265) 30",
    f"process 1:guard;thread 0x1;{LOOP};handle (guard/proxy/pipeline.py:101) 10",
    f"process 1:guard;thread 0x1;{LOOP};epoll_pwait (libc.so.6) 50",  # waiting, not working
    "process 1:guard;thread 0x2;_worker (concurrent/futures/thread.py:81) 40",  # an idle thread
])


def test_busy_samples_are_the_event_loop_threads_outside_waits() -> None:
    total, own, through = tally(STACKS)
    assert total == 40
    assert own["http/connection.py:write"] == 30 and own["proxy/pipeline.py:handle"] == 10
    assert through["http/connection.py:_serve"] == 30 and through["runners.py:run"] == 40
    _, by_line, _ = tally(STACKS, lines=True)
    assert by_line["http/connection.py:write:265"] == 30


def test_system_calls_per_request_from_strace_summary() -> None:
    summary = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.600000          44     13626           write
 39.00    0.390000          29     13235           read
  1.00    0.010000          21       470           epoll_pwait
------ ----------- ----------- --------- --------- ----------------
100.00    1.000000          36     27331           total
"""
    text = syscalls_table(summary, 6577)
    assert "| write | 13,626 | 2.07 |" in text
    assert "| read | 13,235 | 2.01 |" in text
    assert "| all | 27,331 | 4.16 |" in text


def test_paired_ratios_take_the_median_of_each_pairs_ratio() -> None:
    def run(cpu: float, rps: float) -> LoadResult:
        return LoadResult(rps, 1.0, 2.0, int(rps), 0, 0, cpu_us=cpu)

    # the machine slows down between pairs; within each pair the new one spends 10 % less
    pairs = [(run(90, 1000), run(100, 1000)), (run(180, 500), run(200, 500)), (run(45, 2000), run(50, 2000))]
    text = pairs_table(pairs)
    assert "**0.900**" in text and "**1.000**" in text
