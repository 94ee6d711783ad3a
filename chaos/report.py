"""The report of a chaos scenario: `summary.json`, PNG plots (matplotlib, Agg) and a
self-contained `report.html` (plots embedded, no external assets), plus the verdict table printed
on the terminal.

Files are written whole or not at all (written beside, then renamed). It never runs anything; it
only draws what the runner recorded.
"""

from __future__ import annotations

import base64
import datetime
import html
import json
import os
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from chaos.scenario import Scenario
from guard import __version__

MODES = ("direct", "guard")
TITLES = {"direct": "without guard", "guard": "with guard"}
EXPECTED = {"direct": "harm shown", "guard": "cluster protected"}
"""What each run's verdict means: the run without guard passes when the flood hurt the cluster as
intended (else the scenario proves nothing), the run with guard when guard protected it."""
VERDICT_NOTE = (
    "Each scenario runs twice. The run without guard (direct) must show the harm the flood is meant to "
    "do: its verdict passes when any of its checks shows it (a PASS there means the cluster was hurt, "
    "as intended — otherwise the comparison would prove nothing). The run with guard must keep the "
    "cluster and the well-behaved clients healthy: all of its checks must pass.")


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)


def _series(rows: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    pts = [(r["t"], r[key]) for r in rows if r.get(key) is not None]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_clients(s: Scenario, runs: Mapping[str, Any], path: Path) -> None:
    """Latency (p50, p99) and success per second of the well-behaved classes, side by side."""
    classes = [c.name for c in s.clients if c.role == "well-behaved"] or [c.name for c in s.clients[:1]]
    fig, axes = plt.subplots(2, 2, figsize=(11, 6), sharex=True, sharey="row", squeeze=False)
    for col, mode in enumerate(MODES):
        run = runs.get(mode, {})
        for name in classes:
            rows = run.get("timeline", {}).get(name, [])
            for key, style in (("p50_ms", "--"), ("p99_ms", "-")):
                axes[0][col].plot(*_series(rows, key), style, label=f"{name} {key[:3]}")
            t, ok = _series(rows, "success")
            axes[1][col].plot(t, [100 * v for v in ok], label=name)
            base = run.get("baseline", {}).get(name, {}).get("p99_ms")
            if base:
                axes[0][col].axhline(base, color="grey", lw=0.8, ls=":", label=f"{name} baseline p99")
        axes[0][col].set_title(f"{TITLES[mode]}{' — ' + run['error'] if run.get('error') else ''}")
        axes[0][col].set_yscale("symlog")
        axes[0][col].set_ylabel("latency ms")
        axes[1][col].set_ylabel("success %")
        axes[1][col].set_ylim(-2, 102)
        axes[1][col].set_xlabel("seconds into the flood")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="upper center", ncol=min(4, max(1, len(labels))),
               bbox_to_anchor=(0.5, 0.0))  # below the plots: never over a line
    _save(fig, path)


def plot_control_plane(runs: Mapping[str, Any], path: Path) -> None:
    """The simulator's in-flight requests, replicas up and crashes, without and with guard."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), sharex=True, sharey=True, squeeze=False)
    counts = [v for m in MODES for key in ("replicas_up", "sim_crashes")
              for v in _series(runs.get(m, {}).get("observed", []), key)[1]]
    top = max([1.0, *counts]) * 1.1  # both panels' right axes alike, so they compare at a glance
    lines: list[Any] = []
    for col, mode in enumerate(MODES):
        rows = runs.get(mode, {}).get("observed", [])
        ax = axes[0][col]
        lines = ax.plot(*_series(rows, "sim_inflight"), label="in-flight requests (left axis)")
        twin = ax.twinx()
        lines += twin.step(*_series(rows, "replicas_up"), color="green", where="post", label="replicas up")
        lines += twin.step(*_series(rows, "sim_crashes"), color="red", where="post", label="crashes (total)")
        twin.set_ylim(0, top)
        ax.set_title(f"api-server {TITLES[mode]}")
        ax.set_xlabel("seconds (0 = flood starts)")
    fig.legend(lines, [line.get_label() for line in lines], fontsize=7, loc="upper center", ncol=3,
               bbox_to_anchor=(0.5, 0.0))
    _save(fig, path)


def tenant_classes(s: Scenario) -> dict[str, list[str]]:
    """Which client classes each tenant of the scenario's policies holds (by the subjects' users
    and groups), so guard's per-tenant figures read in the classes' names."""
    found: dict[str, list[str]] = {}
    for doc in s.guard.policies:
        tenant = str(doc.get("metadata", {}).get("name", ""))
        subjects = doc.get("spec", {}).get("subjects", [])
        groups = {x.get("name") for x in subjects if x.get("kind") == "Group"}
        users = {str(x.get("name", "")).split("{")[0] for x in subjects if x.get("kind") == "User"}
        found[tenant] = [c.name for c in s.clients if groups & set(c.groups)
                         or any((c.user or c.name).startswith(u) for u in users if u)]
    return found


def plot_decisions(s: Scenario, runs: Mapping[str, Any], path: Path) -> None:
    """guard's admitted / queued / rejected per tenant and second."""
    rows = runs.get("guard", {}).get("observed", [])
    fig, ax = plt.subplots(figsize=(11, 3.5))
    keys = sorted({(t, d) for r in rows for t, per in r.get("decisions", {}).items() for d in per})
    classes = tenant_classes(s)
    for tenant, decision in keys:
        t = [r["t"] for r in rows]
        v = [r.get("decisions", {}).get(tenant, {}).get(decision, 0.0) for r in rows]
        named = f"{tenant} ({', '.join(classes[tenant])})" if classes.get(tenant) else tenant
        ax.plot(t, v, ls="-" if decision != "rejected" else "--", label=f"{named}: {decision}")
    ax.set_title("guard's decisions per tenant (per second)")
    ax.set_xlabel("seconds (0 = flood starts)")
    ax.set_ylabel("requests / s")
    if keys:
        ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    _save(fig, path)


def verdict_table(summaries: Sequence[Mapping[str, Any]]) -> str:
    lines = [f"{'scenario':24} {'run':7} {'check':44} {'actual':>10}  result"]
    for summary in summaries:
        for mode, judged in summary["verdict"]["runs"].items():
            error = summary["runs"].get(mode, {}).get("error")
            if error:
                lines.append(f"{summary['scenario']:24} {mode:7} {'run failed: ' + error:55.55}  FAIL")
            for c in judged["checks"]:
                actual = "-" if c["actual"] is None else f"{c['actual']:g}"
                check = c["check"].split(": ", 1)[1]
                mark = "pass" if c["passed"] else ("fail" if judged["mode"] == "any" else "FAIL")
                lines.append(f"{summary['scenario']:24} {mode:7} {check:44} {actual:>10}  {mark}")
            summary_line = f"({EXPECTED.get(mode, mode)}: {judged['mode']} of the above)"
            lines.append(f"{'':24} {mode:7} {summary_line:44} {'':>10}  "
                         f"{'PASS' if judged['passed'] else 'FAIL'}")  # fmt: skip
    return "\n".join(lines)


def _class_table(runs: Mapping[str, Any]) -> str:
    cols = ("requests", "success", "p50_ms", "p99_ms", "throttled_429", "retry_after_mean_s", "conn_errors")
    head = "".join(f"<th>{c}</th>" for c in ("run", "phase", "class", *cols, "upstream requests"))
    rows = []
    for mode, run in runs.items():
        for phase in ("baseline", "flood"):
            for name, fig in run.get(phase, {}).items():
                up = run.get("class_upstream", {}).get(name, "") if phase == "flood" else ""
                cells = "".join(f"<td>{_cell(fig.get(c))}</td>" for c in cols)
                rows.append(
                    f"<tr><td>{mode}</td><td>{phase}</td><td>{html.escape(name)}</td>{cells}<td>{up}</td></tr>"
                )
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _cell(value: object) -> str:
    """A table cell: "-" for nothing measured, numbers rounded to what a reader compares."""
    if value is None or value == "":
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return html.escape(str(value))


def run_metadata() -> dict[str, str]:
    """When, with what and on what the report was made."""
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "guard": __version__, "python": platform.python_version(),
            "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, {platform.node()}"}


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img alt="{path.stem}" src="data:image/png;base64,{data}"></p>'


def write(s: Scenario, summary: Mapping[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    runs = summary["runs"]
    plot_clients(s, runs, out / "clients.png")
    plot_control_plane(runs, out / "control-plane.png")
    plot_decisions(s, runs, out / "decisions.png")
    meta = run_metadata()
    _atomic(out / "summary.json", json.dumps({**summary, "run": meta}, indent=1, default=str).encode())
    events = "".join(f"<li>{m}: {html.escape(e)}</li>" for m, r in runs.items() for e in r.get("events", []))
    errors = "".join(f"<li>{m}: {html.escape(r['error'])}</li>" for m, r in runs.items() if r.get("error"))
    status = "PASS" if summary["verdict"]["passed"] else "FAIL"
    body = (
        f"<h1>{html.escape(s.name)} — {status}</h1><p>{html.escape(s.description)}</p>"
        f"<p><small>{' · '.join(f'{k}: {html.escape(v)}' for k, v in meta.items())}</small></p>"
        f"<h2>Verdict</h2><p>{html.escape(VERDICT_NOTE)}</p><pre>{html.escape(verdict_table([summary]))}</pre>"
        f"{'<h2>Errors</h2><ul>' + errors + '</ul>' if errors else ''}"
        f"<h2>Well-behaved clients</h2>{_img(out / 'clients.png')}"
        f"<h2>Control plane</h2>{_img(out / 'control-plane.png')}"
        f"<h2>guard's decisions</h2>{_img(out / 'decisions.png')}"
        f"<h2>Client classes</h2>{_class_table(runs)}"
        f"<h2>Faults</h2><ul>{events or '<li>none</li>'}</ul>"
    )
    _atomic(out / "report.html", _page(f"chaos: {s.name}", body).encode())


def write_index(summaries: Sequence[Mapping[str, Any]], out: Path) -> None:
    """The suite's front page: the verdict table and a link to each scenario's report."""
    out.mkdir(parents=True, exist_ok=True)
    links = "".join(
        f'<li><a href="{html.escape(x["scenario"])}/report.html">{html.escape(x["scenario"])}</a> — '
        f"{'PASS' if x['verdict']['passed'] else 'FAIL'}</li>"
        for x in summaries
    )
    meta = " · ".join(f"{k}: {html.escape(v)}" for k, v in run_metadata().items())
    body = (f"<h1>chaos suite</h1><p><small>{meta}</small></p><ul>{links}</ul>"
            f"<p>{html.escape(VERDICT_NOTE)}</p><pre>{html.escape(verdict_table(summaries))}</pre>")
    _atomic(out / "report.html", _page("chaos suite", body).encode())
    index = [
        {"scenario": x["scenario"], "passed": x["verdict"]["passed"], "verdict": x["verdict"]}
        for x in summaries
    ]
    _atomic(out / "summary.json", json.dumps(index, indent=1).encode())


def _page(title: str, body: str) -> str:
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;font-size:12px}"
        "td,th{border:1px solid #ccc;padding:2px 6px}img{max-width:100%}"
    )
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>" \
           f"<style>{style}</style></head><body>{body}</body></html>"  # fmt: skip
