"""`guard certs init` makes a chain that Python's ssl accepts on both ends, with CN/O as users/groups."""

from __future__ import annotations

import asyncio
import ssl
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from guard.identity.authn import identity_from_certificate


def certs_init(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guard.cli", "certs", "init", *args],
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "certs"
    result = certs_init(str(directory), "--host", "guard.example", "--user", "alice:dev,system:masters",
                        "--user", "bob", "--days", "30")
    assert result.returncode == 0, result.stderr
    return directory


async def handshake(pki: Path, user: str, server_name: str) -> tuple[str, dict[str, object]]:
    """Serve TLS requiring a client cert signed by the CA; connect as `user`; return what both saw."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=pki / "ca.crt")
    server_ctx.load_cert_chain(pki / "server.crt", pki / "server.key")
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    seen: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.set_result(writer.get_extra_info("ssl_object").getpeercert(binary_form=True))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cafile=pki / "ca.crt")
    client_ctx.load_cert_chain(pki / f"{user}.crt", pki / f"{user}.key")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname=server_name)
        answer = (await reader.read()).decode()
        peer = writer.get_extra_info("peercert")
        writer.close()
        identity = identity_from_certificate(await seen)
    finally:
        server.close()
        await server.wait_closed()
    return answer, {"user": identity.user, "groups": identity.groups, "server": peer["subjectAltName"]}


@pytest.mark.parametrize("server_name", ["localhost", "127.0.0.1", "guard.example"])
async def test_client_certificate_users_reach_a_tls_server(pki: Path, server_name: str) -> None:
    """The serving cert verifies for each SAN; the server reads CN as user and O as groups."""
    answer, seen = await handshake(pki, "alice", server_name)
    assert answer == "ok"
    assert seen["user"] == "alice"
    assert seen["groups"] == ("dev", "system:masters", "system:authenticated")
    assert ("DNS", "guard.example") in seen["server"]  # type: ignore[operator]


async def test_wrong_host_name_is_refused(pki: Path) -> None:
    """A name not among the SANs fails verification: the SANs are exactly what was asked for."""
    with pytest.raises(ssl.SSLCertVerificationError):
        await handshake(pki, "bob", "elsewhere.example")


def test_files_and_modes(pki: Path) -> None:
    """Keys are 0600; certificates and keys exist for the CA, the server and each user."""
    names = {p.name for p in pki.iterdir()}
    assert names == {f"{n}.{e}" for n in ("ca", "server", "alice", "bob") for e in ("crt", "key")}
    assert all(stat.S_IMODE((pki / f"{n}.key").stat().st_mode) == 0o600 for n in ("ca", "server", "alice"))


def test_existing_ca_is_not_overwritten_without_force(pki: Path) -> None:
    """A second init into the same directory refuses in one line and leaves the CA alone."""
    before = (pki / "ca.crt").read_bytes()
    result = certs_init(str(pki))
    assert result.returncode == 1
    assert "--force" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (pki / "ca.crt").read_bytes() == before


@pytest.mark.parametrize(("args", "complaint"), [
    (["--user", "a/b"], "bad --user"),
    (["--days", "0"], "bad --days"),
    (["--host", "has space"], "bad --host"),
])
def test_bad_input_is_one_line(tmp_path: Path, args: list[str], complaint: str) -> None:
    """Bad input exits 1 with one clear line and writes nothing."""
    result = certs_init(str(tmp_path / "out"), *args)
    assert result.returncode == 1
    assert complaint in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
