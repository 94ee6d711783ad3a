"""The simulator's protobuf codec: every built-in kind round-trips, Go's wire quirks hold, bad bodies
are errors, and content negotiation picks protobuf only when the client prefers it."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from chaos.sim import protobuf as pb
from chaos.sim import protojson, wire
from chaos.sim.kinds import TABLE

POD: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web",
        "namespace": "d",
        "labels": {"app": "web"},
        "creationTimestamp": "2025-01-02T03:04:05Z",
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "u", "controller": True}
        ],
    },
    "spec": {
        "containers": [
            {
                "name": "c",
                "image": "nginx",
                "ports": [{"containerPort": 80, "protocol": "TCP"}],
                "resources": {"limits": {"cpu": "500m", "memory": "1Gi"}},
                "livenessProbe": {"httpGet": {"path": "/", "port": "http"}},
            }
        ],
        "volumes": [{"name": "scratch", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "cm"}}],
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": 0,
    },
    "status": {
        "phase": "Running",
        "containerStatuses": [
            {"name": "c", "ready": False, "restartCount": 0, "image": "nginx", "imageID": ""}
        ],
    },
}


def test_a_pod_round_trips_with_gos_zero_value_rules() -> None:
    """Pointers keep false/0 ({} for emptyDir), inline messages stay inline, maps and IntOrString survive."""
    assert protojson.decode_object(protojson.encode_object(POD) or b"") == {
        **POD,
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": "c", "ready": False, "restartCount": 0, "image": "nginx", "imageID": ""}
            ],
        },
    }


@pytest.mark.parametrize(
    ("obj", "expected_fields"),
    [
        (
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "s"},
                "spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 81, "targetPort": "web"}]},
            },
            None,
        ),
        (
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": "s"},
                "data": {"k": "aGk="},
                "type": "Opaque",
            },
            None,
        ),
        (
            {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": "n"},
                "spec": {"holderIdentity": "n", "renewTime": "2025-01-02T03:04:05.123456Z"},
            },
            None,
        ),
        (
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "c"},
                "spec": {
                    "schedule": "* * * * *",
                    "jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}},
                },
            },
            {"apiVersion", "kind", "metadata", "spec"},
        ),
        (
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": "m",
                "reason": "NotFound",
                "details": {"name": "x", "kind": "pods"},
                "code": 404,
            },
            None,
        ),
    ],
)
def test_kinds_round_trip(obj: dict[str, Any], expected_fields: set[str] | None) -> None:
    """Services (IntOrString), Secrets (bytes maps), Leases (MicroTime), CronJobs, Status."""
    decoded = protojson.decode_object(protojson.encode_object(obj) or b"")
    if expected_fields is None:
        expected = {k: v for k, v in obj.items() if v != {}}
        assert decoded == expected
    else:
        assert set(decoded) == expected_fields


def test_every_built_in_kind_has_a_message() -> None:
    """Each kind of the 1.32 table (and its list) maps to a generated message."""
    for kind in TABLE.kinds:
        assert protojson.message_for(kind.api_version, kind.kind), kind
        if kind.stored:
            assert protojson.message_for(kind.api_version, kind.kind + "List"), kind


def test_custom_groups_stay_json() -> None:
    """A custom resource is never given a built-in message, even with a built-in's kind name."""
    assert protojson.message_for("apps.example.com/v1", "Deployment") is None
    assert protojson.encode_object({"apiVersion": "example.com/v1", "kind": "Widget"}) is None


def test_envelope_and_watch_framing() -> None:
    """Answers are `k8s\\0` + Unknown{typeMeta, raw, "", ""}; watch frames are length-prefixed, no magic."""
    body = pb.wrap("v1", "Pod", b"\x0a\x00")
    assert body.startswith(b"k8s\x00") and pb.unwrap(body) == ("v1", "Pod", b"\x0a\x00")
    frame = pb.watch_frame("ADDED", body)
    (size,) = struct.unpack(">I", frame[:4])
    event = pb.fields(frame[4:])
    assert size == len(frame) - 4 and pb.string(event, 1) == "ADDED"
    assert pb.last_bytes(pb.fields(pb.last_bytes(event, 2)), 1) == body


def test_packed_and_unpacked_repeated_scalars_both_decode() -> None:
    """proto2 writes repeated ints unpacked; a packed run is read as well."""
    unpacked = pb.varint_field(1, 5) + pb.varint_field(1, 7)
    packed = pb.length_field(1, pb.varint(5) + pb.varint(7))
    for data in (unpacked, packed):
        assert protojson.decode("core.v1.SELinuxOptions", b"") == {}
        assert protojson._repeated("int32", pb.fields(data)[1]) == [5, 7]


def test_negative_numbers_take_ten_bytes_and_come_back() -> None:
    assert len(pb.varint(-1)) == 10 and pb.signed(pb.read_varint(pb.varint(-1), 0)[0]) == -1


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not protobuf",
        b"k8s\x00\x0a\xff",
        b"k8s\x00" + pb.length_field(1, pb.length_field(2, b"Pod"))[:-1],
    ],
)
def test_malformed_bodies_are_protobuf_errors(body: bytes) -> None:
    """Truncated or foreign bytes raise ProtobufError (the api-server's 400), never anything else."""
    with pytest.raises(pb.ProtobufError):
        protojson.decode_object(body)


@pytest.mark.parametrize(
    ("accept", "protobuf"),
    [
        ("application/vnd.kubernetes.protobuf, application/json", True),
        ("application/vnd.kubernetes.protobuf,application/json", True),
        ("application/json, application/vnd.kubernetes.protobuf", False),
        ("application/json;q=0.5, application/vnd.kubernetes.protobuf", True),
        ("application/json;as=Table;v=v1;g=meta.k8s.io,application/json", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_negotiation(accept: str, protobuf: bool) -> None:
    """Protobuf only when it is the best acceptable plain encoding."""
    assert wire.wants_protobuf(accept) is protobuf
