"""The emergency brake's pure parts and its verifier: what an order names, what it never sheds, how
it is bounded, and which records a replica refuses (no Redis: `ShedWatcher.offer` and `sweep`)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from guard.admission.config import AdmissionSettings
from guard.admission.controller import AdmissionController
from guard.admission.decision import AdmitAll
from guard.admission.embedded import EmbeddedStore
from guard.admission.shedding import MAX_DURATION, OrderInvalid, Shedding, ShedOrder
from guard.federation import shedding as fed
from guard.kube.identity import Identity
from guard.kube.requestinfo import classify
from guard.policy.model import Rule, Subject, TenantPolicy

NOW = 1_800_000_000.0
ALICE = Identity("alice", ("team-a",))
BOB = Identity("bob", ("team-b",))
ROOT = Identity("root", ("system:masters",))
PODS = classify("GET", "/api/v1/namespaces/team-a/pods", {})
SECRETS = classify("GET", "/api/v1/namespaces/team-a/secrets", {})
LOGS = classify("GET", "/api/v1/namespaces/team-a/pods/p/log", {})


def order(**fields: object) -> ShedOrder:
    base = ShedOrder(id="o1", clusters=("prod",), reason="incident 7", issued=NOW, expires=NOW + 600)
    return replace(base, **fields)  # type: ignore[arg-type]


def controller() -> AdmissionController:
    policies = [TenantPolicy(name=team, subjects=(Subject("Group", team),), rules=(Rule("all"),))
                for team in ("team-a", "team-b")]
    return AdmissionController.from_policies(policies, AdmissionSettings(), EmbeddedStore())


def refused(shedding: Shedding, identity: Identity, info: object = PODS, cluster: str = "prod") -> int:
    error = shedding.refusal(identity, info, cluster, controller())  # type: ignore[arg-type]
    return error.code if error is not None else 0


def test_an_order_refuses_what_it_names_on_its_clusters_only() -> None:
    shedding = Shedding(clock=lambda: NOW)
    shedding.replace([order(tenants=("team-a",), resources=("pods",))])
    assert refused(shedding, ALICE) == 429
    assert refused(shedding, ALICE, SECRETS) == 0  # another resource
    assert refused(shedding, ALICE, cluster="dev") == 0  # another cluster
    assert refused(shedding, BOB) == 0  # another tenant
    assert refused(shedding, ALICE, LOGS) == 429  # pods/log is a pods request
    assert shedding.stats.refusals == 2 and shedding.refused_by == {"o1": 2}


def test_everything_is_503_and_exempt_traffic_is_never_shed() -> None:
    shedding = Shedding(clock=lambda: NOW)
    shedding.replace([order(everything=True, clusters=("*",))])
    assert refused(shedding, ALICE) == 503 and refused(shedding, BOB, cluster="any") == 503
    assert refused(shedding, ROOT) == 0  # system:masters is exempt by default
    shedding.replace([order(users=("root",))])
    assert refused(shedding, ROOT) == 0  # even when an order names the user


def test_without_policies_the_default_exempt_rules_still_hold() -> None:
    admission = AdmitAll()
    assert admission.tenant_of(ROOT, PODS, "prod") is None
    assert admission.tenant_of(ALICE, PODS, "prod") == ""


def test_the_refusal_names_the_reason_and_retries_within_a_minute() -> None:
    error = order(users=("alice",)).refusal(NOW)
    status = error.status()
    assert error.code == 429 and "incident 7" in status["message"] and "o1" in status["message"]
    assert error.retry_after == 60
    assert order(users=("alice",)).refusal(NOW + 598).retry_after == 3


def test_an_order_ends_at_its_expiry_or_lift() -> None:
    clock = [NOW]
    shedding = Shedding(clock=lambda: clock[0])
    shedding.replace([order(users=("alice",))])
    assert refused(shedding, ALICE) == 429
    clock[0] = NOW + 600
    assert refused(shedding, ALICE) == 0
    shedding.replace([order(users=("alice",)).lift(NOW)])
    clock[0] = NOW
    assert refused(shedding, ALICE) == 0


@pytest.mark.parametrize(("fields", "field"), [
    ({"users": ()}, "everything"),  # aims at nothing
    ({"everything": True}, "everything"),  # everything and a selector
    ({"expires": NOW + MAX_DURATION + 1}, "expires"),
    ({"expires": NOW}, "expires"),
    ({"reason": " "}, "reason"),
    ({"clusters": ()}, "clusters"),
    ({"id": ""}, "id"),
])
def test_unbounded_or_unaimed_orders_are_invalid(fields: dict[str, object], field: str) -> None:
    with pytest.raises(OrderInvalid, match=field):
        replace(order(users=("alice",)), **fields).check()  # type: ignore[arg-type]


def test_the_payload_round_trips() -> None:
    original = order(tenants=("team-a",), verbs=("list",), by="ops")
    assert ShedOrder.from_payload(original.payload()) == original


def watcher(tmp_path: Path, key: Ed25519PrivateKey, clock: list[float]) -> fed.ShedWatcher:
    return fed.ShedWatcher(None, key.public_key(), Shedding(clock=lambda: clock[0]),  # type: ignore[arg-type]
                           state_dir=tmp_path, clock=lambda: clock[0])


def signed(o: ShedOrder, key: Ed25519PrivateKey) -> tuple[str, bytes, bytes]:
    return o.id, o.payload(), fed.sign(o, key)


def test_the_watcher_takes_signed_orders_and_refuses_forged_ones_once(tmp_path: Path) -> None:
    key, other, clock = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate(), [NOW]
    w = watcher(tmp_path, key, clock)
    good = order(users=("alice",))
    assert w.offer(*signed(good, key))
    forged = signed(order(id="o2", everything=True), other)
    tampered = (good.id, good.payload().replace(b'"alice"', b'"bob"'), fed.sign(good, key))
    for _ in range(3):  # re-read every second: each bad record is counted once
        assert not w.offer(*forged) and not w.offer(*tampered)
    assert not w.offer("o3", *signed(good, key)[1:])  # a good order copied under another id
    w.sweep()
    assert [o.id for o in w.shedding.orders] == ["o1"]
    assert w.shedding.stats.orders_refused == 3 and w.shedding.stats.orders_taken == 1


def test_a_lift_is_final_and_expiry_forgets(tmp_path: Path) -> None:
    key, clock = Ed25519PrivateKey.generate(), [NOW]
    w = watcher(tmp_path, key, clock)
    good = order(users=("alice",))
    w.offer(*signed(good, key))
    assert w.offer(*signed(good.lift(NOW + 1), key))
    assert not w.offer(*signed(good, key))  # the unlifted record replayed
    w.sweep()
    assert w.shedding.orders == () and w.shedding.stats.orders_lifted == 1
    w.offer(*signed(order(id="o2", users=("bob",)), key))
    clock[0] = NOW + 601
    w.sweep()
    assert w.known == {} and w.shedding.stats.orders_expired == 1


def test_orders_kept_on_disk_are_verified_again(tmp_path: Path) -> None:
    key, clock = Ed25519PrivateKey.generate(), [NOW]
    w = watcher(tmp_path, key, clock)
    w.offer(*signed(order(users=("alice",)), key))
    w._save()
    restarted = watcher(tmp_path, key, clock)
    assert restarted.load_disk() == 1 and [o.id for o in restarted.shedding.orders] == ["o1"]
    records = json.loads((tmp_path / fed.DISK_NAME).read_text())
    records[0]["payload"] = records[0]["payload"].replace("alice", "bob")
    (tmp_path / fed.DISK_NAME).write_text(json.dumps(records))
    tampered = watcher(tmp_path, key, clock)
    assert tampered.load_disk() == 0 and tampered.shedding.stats.orders_refused == 1


def test_a_validly_signed_but_unbounded_order_is_refused(tmp_path: Path) -> None:
    key, clock = Ed25519PrivateKey.generate(), [NOW]
    w = watcher(tmp_path, key, clock)
    endless = replace(order(users=("alice",)), expires=NOW + 2 * MAX_DURATION)
    assert not w.offer(*signed(endless, key))
    assert w.shedding.stats.orders_refused == 1 and w.known == {}


def test_records_that_changed_nothing_are_not_verified_on_every_re_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key, clock = Ed25519PrivateKey.generate(), [NOW]
    w = watcher(tmp_path, key, clock)
    calls = []
    real = fed.verify
    monkeypatch.setattr(fed, "verify", lambda *a: calls.append(1) or real(*a))
    good = order(users=("alice",))
    w.offer(*signed(good.lift(NOW), key))
    for _ in range(5):  # the unlifted record replayed, and an expired one, re-read every second
        w.offer(*signed(good, key))
        w.offer(*signed(order(id="old", users=("bob",), issued=NOW - 700, expires=NOW - 100), key))
    assert len(calls) == 3


@pytest.mark.parametrize(("extra", "message"), [
    (["--for", "48h", "--user", "alice"], "--for"),
    (["--for", "10m"], "give --everything or at least one of"),
    (["--for", "10m", "--everything", "--tenant", "team-a"], "not both"),
])
def test_fleet_shed_refuses_unbounded_or_unaimed_orders_before_redis(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str) -> None:
    from guard.cli import main

    code = main(["fleet", "shed", "--redis", "redis://127.0.0.1:1/0", "--signing-key", str(tmp_path / "k"),
                 "--public-key", str(tmp_path / "p"), "--cluster", "prod", "--reason", "r", *extra])
    assert code == 1 and message in capsys.readouterr().err
