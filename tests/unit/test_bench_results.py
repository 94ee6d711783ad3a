"""The benchmark's arithmetic: wrk's JSON line, medians and ratios, the issue-7 verdicts, the
extrapolation of watch memory, and the static upstream's request parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load import LoadResult, parse
from bench.memory import ListFigure, WatchPoint
from bench.results import MIB, DecisionCost, Results, Throughput, verdicts, watches_at_goal
from bench.upstream import POD_BYTES, big_list_parts, content_length


def load(rps: float, p99: float = 10.0) -> LoadResult:
    return LoadResult(rps=rps, p50_ms=1.0, p99_ms=p99, requests=int(rps), non2xx=0, socket_errors=0)


def test_wrk_done_line_becomes_exact_figures() -> None:
    """Requests over the measured duration, and latencies converted from µs to ms."""
    line = (
        '{"requests":5000,"duration_us":2000000,"non2xx":50,"socket_errors":0,'
        '"p50_us":1500,"p90_us":2000,"p99_us":9000}'
    )
    result = parse(line)
    assert result.rps == 2500
    assert (result.p50_ms, result.p99_ms) == (1.5, 9.0)
    assert result.failed_share == pytest.approx(0.01)


def test_medians_and_ratios_over_rounds() -> None:
    """A target's figure is the median of its rounds; the ratio divides medians."""
    results = Results(throughput=[
        Throughput("kubectl-proxy", "", (load(1000), load(4000), load(2000))),
        Throughput("guard-policies", "", (load(3000), load(3100), load(9000))),
        Throughput("guard-redis", "", skipped="no redis"),
    ])  # fmt: skip
    assert results.target("kubectl-proxy").rps == 2000  # type: ignore[union-attr]
    assert results.ratio("guard-policies", "kubectl-proxy") == pytest.approx(1.55)
    assert results.ratio("guard-redis", "kubectl-proxy") is None


@pytest.mark.parametrize(
    ("guard_rps", "guard_p99", "met"), [(3000, 10.0, True), (3000, 30.0, False), (2000, 5.0, False)]
)
def test_headline_target_needs_both_throughput_and_p99(guard_rps: float, guard_p99: float, met: bool) -> None:
    """At least 1.5x kubectl proxy's req/s and a p99 no worse than kubectl proxy's."""
    results = Results(throughput=[
        Throughput("kubectl-proxy", "", (load(1800, p99=20.0),)),
        Throughput("guard-policies", "", (load(guard_rps, p99=guard_p99),)),
    ])  # fmt: skip
    assert verdicts(results)[0].met is met


def test_unmeasured_targets_are_neither_met_nor_missed() -> None:
    assert all(v.met is None for v in verdicts(Results()))


def test_watch_memory_is_extrapolated_to_ten_thousand() -> None:
    """With 9,000 watches open the 10,000 figure follows the measured per-watch growth."""
    points = [
        WatchPoint(0, 0, 100 * MIB),
        WatchPoint(1000, 1000, 110 * MIB),
        WatchPoint(10000, 9000, 190 * MIB),
    ]
    assert watches_at_goal(points) == (200 * MIB, True)
    assert watches_at_goal(points[:1]) is None


def test_a_step_that_opened_no_more_watches_is_not_extrapolated_from() -> None:
    """When the proxy refuses further watches, the last step that grew is the one extrapolated."""
    points = [
        WatchPoint(0, 0, 100 * MIB),
        WatchPoint(1000, 1000, 110 * MIB),
        WatchPoint(10000, 1000, 150 * MIB),
    ]
    assert watches_at_goal(points) == (200 * MIB, True)


def test_large_list_and_decision_verdicts() -> None:
    results = Results(
        lists={"direct": ListFigure(10**8, 1e9, 0, 0), "guard": ListFigure(10**8, 4e8, 50 * MIB, 60 * MIB)},
        decision=DecisionCost(p50_us=2.0, p99_us=25.0, decisions=1000),
    )
    by_goal = {v.goal.split()[0]: v.met for v in verdicts(results)}
    assert by_goal["100"] is False  # 40 % of direct
    assert by_goal["admission"] is False  # p99 25 µs


def test_big_list_is_valid_json_of_about_the_asked_size() -> None:
    head, block, blocks, tail = big_list_parts(2_000_000)
    body = head + block * blocks + tail
    assert 1_500_000 < len(body) <= 2_000_000 + len(POD_BYTES) * 2
    assert json.loads(body)["items"][0]["kind"] == "Pod"


@pytest.mark.parametrize(("head", "length"), [
    (b"GET / HTTP/1.1\r\nHost: x", 0),
    (b"POST /x HTTP/1.1\r\nContent-Length: 42\r\nHost: x", 42),
    (b"POST /x HTTP/1.1\r\ncontent-length:7", 7),
])  # fmt: skip
def test_upstream_reads_the_body_length(head: bytes, length: int) -> None:
    assert content_length(head) == length


def test_baseline_adds_an_earlier_checkout_as_a_target(tmp_path: Path) -> None:
    """`--baseline CHECKOUT` measures that checkout's guard beside this one; a directory that is not
    a checkout of guard is refused by name."""
    from bench import cli

    parser = cli.build_parser()
    plain = cli.plan_from(parser.parse_args([]), parser)
    assert "guard-baseline" not in [t.name for t in plain.targets]
    (tmp_path / "guard").mkdir()
    (tmp_path / "guard" / "cli.py").write_text("")
    args = parser.parse_args(["--baseline", str(tmp_path), "--only", "guard-baseline,guard-policies"])
    plan = cli.plan_from(args, parser)
    assert [t.name for t in plan.targets] == ["guard-policies", "guard-baseline"]
    assert plan.baseline == tmp_path
    redis = cli.plan_from(parser.parse_args(["--baseline", str(tmp_path), "--only",
                                             "guard-redis,guard-redis-baseline"]), parser)
    assert [t.name for t in redis.targets] == ["guard-redis", "guard-redis-baseline"]
    with pytest.raises(SystemExit):
        cli.plan_from(parser.parse_args(["--baseline", str(tmp_path / "nowhere")]), parser)
