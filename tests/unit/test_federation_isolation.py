"""The admission controller's quarantine seam: a quarantined client is charged to its tenant's
quarantine quota (or refused outright), and rejections are reported by user, never by token."""

from __future__ import annotations

from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.embedded import EmbeddedStore
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.policy.loading import load_text
from guard.policy.model import Quarantine

ALICE = Identity("alice", ("team-a",))
GET = classify("GET", "/api/v1/namespaces/a/pods/p", {})
POLICY = """apiVersion: guard.io/v1alpha1
kind: TenantPolicy
metadata: {{name: team-a}}
spec:
  subjects: [{{kind: Group, name: team-a}}]
  quarantine: {{threshold: 3, window: 10s, ttl: 60s{extra}}}
  rules:
    - {{name: all, quota: {{rate: 1/h, burst: 2}}}}
"""


class Board:
    """A fake quarantine board: who is quarantined, and every reported rejection."""

    def __init__(self, quarantined: set[str]) -> None:
        self.quarantined = quarantined
        self.reports: list[tuple[str, Quarantine, str]] = []

    def is_quarantined(self, client_key: str) -> object | None:
        return client_key if client_key in self.quarantined else None

    def report_rejection(self, client_key: str, policy: Quarantine, *, tenant: str = "") -> bool:
        self.reports.append((client_key, policy, tenant))
        return False


def controller(board: Board, extra: str = "") -> AdmissionController:
    policies, problems = load_text(POLICY.format(extra=extra), "team-a.yaml")
    assert len(policies) == 1, problems
    policy = policies[0]
    return AdmissionController.from_policies([policy], AdmissionSettings(), EmbeddedStore(), isolation=board)


async def outcomes(ctl: AdmissionController, n: int) -> list[str]:
    tickets = [await ctl.admit(ALICE, GET, "dev") for _ in range(n)]
    for ticket in tickets:
        ticket.release()
    return [t.verdict.outcome for t in tickets]


async def test_rejections_are_reported_by_user_with_the_tenants_policy() -> None:
    """Over its burst of 2, each rejection of alice is reported as `alice` with team-a's policy."""
    board = Board(set())
    assert await outcomes(controller(board), 4) == ["admitted", "admitted", "rejected", "rejected"]
    assert [(c, p.threshold, t) for c, p, t in board.reports] == [("alice", 3, "team-a")] * 2


async def test_quarantined_client_without_a_rate_is_refused_and_not_reported_again() -> None:
    """With no quarantine rate alice is refused although her rule's bucket is full."""
    board = Board({"alice"})
    ctl = controller(board)
    ticket = await ctl.admit(ALICE, GET, "dev")
    assert ticket.verdict.outcome == "rejected" and "isolated" in ticket.verdict.reason
    assert ticket.verdict.retry_after == 60
    assert board.reports == []


async def test_quarantined_client_gets_the_quarantine_quota_instead() -> None:
    """A quarantine burst of 1 admits one request, then refuses; release restores the rule's 2."""
    board = Board({"alice"})
    ctl = controller(board, ", rate: 1/h, burst: 1")
    assert await outcomes(ctl, 2) == ["admitted", "rejected"]
    board.quarantined.clear()
    assert await outcomes(ctl, 3) == ["admitted", "admitted", "rejected"]
