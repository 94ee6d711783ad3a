"""SPDY/3 framing as kubectl's spdystream expects it, and server-side apply's field ownership."""

from __future__ import annotations

import hashlib
import struct
import zlib
from typing import Any

import pytest

from chaos.sim import managed, spdy
from chaos.sim.status import StatusError


def test_the_header_dictionary_is_the_spdy3_one() -> None:
    """Rebuilt from its word list, byte for byte (1423 bytes, known digest)."""
    assert len(spdy.DICTIONARY) == 1423
    digest = hashlib.sha256(spdy.DICTIONARY).hexdigest()
    assert digest == "51d27341373f923f3cd88e1eb7162aeaa3723d7585ff2399201dc06498407f02"


def _syn_stream(stream: int, headers: dict[str, str], deflate: Any) -> bytes:
    block = struct.pack(">I", len(headers))
    for name, value in headers.items():
        block += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
    compressed = deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    payload = struct.pack(">IIH", stream, 0, 0) + compressed
    return struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(payload)) + payload


async def test_streams_get_replies_and_pings_come_back() -> None:
    """A client's SYN_STREAMs (headers compressed across frames) are read and answered in order."""
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    session = spdy.Session(send)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, spdy.DICTIONARY)
    data = _syn_stream(1, {"streamType": "error", "port": "80", "requestID": "0"}, deflate)
    data += _syn_stream(3, {"streamType": "data", "port": "80", "requestID": "0"}, deflate)
    ping = struct.pack(">HHI", 0x8003, spdy.PING, 4) + struct.pack(">I", 7)
    half = len(data) // 2
    await session.receive(data[:half])  # frames may arrive split anywhere
    await session.receive(data[half:] + ping)
    assert session.stream_of("data", requestid="0") == 3 and session.stream_of("error") == 1
    kinds = [struct.unpack(">HH", frame[:4])[1] for frame in sent]
    assert kinds == [spdy.SYN_REPLY, spdy.SYN_REPLY, spdy.PING] and sent[-1][-4:] == struct.pack(">I", 7)


def test_data_frames_carry_fin() -> None:
    frame = spdy.Framer().data(5, b"hi", spdy.FIN)
    assert struct.unpack(">II", frame[:8]) == (5, spdy.FIN << 24 | 2) and frame[8:] == b"hi"


DEPLOYMENT = "apps.v1.Deployment"


def _created(replicas: int, manager: str = "kubectl-create") -> dict[str, Any]:
    obj = {
        "metadata": {"name": "d"},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}},
        },
    }
    managed.record(
        None, obj, {"manager": manager, "operation": "Update", "apiVersion": "apps/v1"}, DEPLOYMENT
    )
    return obj


def test_a_creation_owns_every_field_keyed_lists_by_their_merge_key() -> None:
    fields = _created(1)["metadata"]["managedFields"][0]["fieldsV1"]
    assert fields["f:spec"]["f:replicas"] == {}
    assert 'k:{"name":"web"}' in fields["f:spec"]["f:template"]["f:spec"]["f:containers"]


@pytest.mark.parametrize(
    ("applied_replicas", "conflicts"),
    [(1, 0), (3, 1)],
)
def test_apply_conflicts_only_when_it_changes_anothers_field(applied_replicas: int, conflicts: int) -> None:
    """Applying the value a field already has co-owns it; changing it is a conflict."""
    current = _created(1)
    found = managed.conflicts(current, {"spec": {"replicas": applied_replicas}}, DEPLOYMENT, "kubectl")
    assert len(found) == conflicts


def test_conflict_status_names_manager_and_field() -> None:
    error = managed.conflict_error([("kubectl-create", "apps/v1", ("f:spec", "f:replicas"))])
    assert isinstance(error, StatusError) and error.code == 409
    assert (
        error.body["message"]
        == 'Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas'
    )
    assert error.body["details"]["causes"][0]["reason"] == "FieldManagerConflict"


def test_a_forced_apply_takes_the_field_over() -> None:
    current = _created(1)
    new = {**current, "spec": {**current["spec"], "replicas": 3}}
    entry = {"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1"}
    managed.record(current, new, entry, DEPLOYMENT, applied={"spec": {"replicas": 3}})
    owners = {e["manager"]: e["fieldsV1"] for e in new["metadata"]["managedFields"]}
    assert (
        "f:replicas" in owners["kubectl"]["f:spec"] and "f:replicas" not in owners["kubectl-create"]["f:spec"]
    )
