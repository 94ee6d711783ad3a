"""The admin listener's debug pages: who may read them (`admin.debug`), and that no secret reaches
/debug/guard/config however it was given (URL user info, query parameters, secret fields)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from guard import settings
from guard.kube.errors import ConfigError
from guard.settings import AdminSettings
from guard.telemetry.admin import _debug_refusal, config_view, redact_url

BASE = {"listen": "127.0.0.1:0",
        "clusters": [{"name": "dev", "server": "http://127.0.0.1:6443", "token": "t"}]}


def _parse(**extra: object) -> settings.Settings:
    return settings.parse({**BASE, **extra}, "guard.yaml", base=Path("."))


@pytest.mark.parametrize(("redis", "secrets"), [
    ("redis://:userinfo-secret@redis.example:6379/0", ["userinfo-secret"]),
    ("redis://guard:pair-secret@redis.example/0", ["pair-secret"]),
    ("redis://redis.example/0?password=query-secret", ["query-secret"]),
    ("rediss://redis.example/0?username=u&password=q%26secret&db=1", ["q%26secret", "q&secret"]),
    ("redis://redis.example/0?token=tok-secret&auth=auth-secret", ["tok-secret", "auth-secret"]),
    ({"url": "redis://u:url-secret@redis.example/0", "password": "field-secret"},
     ["url-secret", "field-secret"]),
])
def test_no_redis_secret_reaches_the_config_page(redis: object, secrets: list[str]) -> None:
    """A Redis password given as user info, as a query parameter or as the `password` field is
    replaced by <redacted>; the host and harmless parameters stay."""
    page = json.dumps(config_view(_parse(redis=redis)))
    assert [s for s in secrets if s in page] == []
    assert "<redacted>" in page and "redis.example" in page


def test_the_clusters_token_is_redacted_and_file_paths_are_not() -> None:
    """`clusters[].token` is a secret; a `tokenFile` path is not."""
    raw = {**BASE, "clusters": [{"name": "dev", "server": "http://127.0.0.1:6443", "token": "tok-secret"}]}
    page = json.dumps(config_view(settings.parse(raw, "guard.yaml", base=Path("."))))
    assert "tok-secret" not in page and '"token": "<redacted>"' in page


@pytest.mark.parametrize(("url", "shown"), [
    ("https://api.example:6443", "https://api.example:6443"),
    ("redis://redis.example/0?db=2&password=x", "redis://redis.example/0?db=2&password=<redacted>"),
    ("redis://a:b@h:1/0", "redis://<redacted>@h:1/0"),
    ("redis://[::1]:6379/0?pwd=x", "redis://[::1]:6379/0?pwd=<redacted>"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize(("debug", "remote", "status"), [
    ("loopback", "127.0.0.1", None),
    ("loopback", "127.0.0.6", None),
    ("loopback", "::1", None),
    ("loopback", "::ffff:127.0.0.1", None),
    ("loopback", "", None),  # a unix socket: a sibling worker
    ("loopback", "192.0.2.7", 403),
    ("loopback", "::ffff:192.0.2.7", 403),
    ("loopback", "fd00::7", 403),
    ("open", "192.0.2.7", None),
    ("off", "127.0.0.1", 404),
])
def test_debug_pages_answer_whom_admin_debug_allows(debug: str, remote: str, status: int | None) -> None:
    s = _parse(admin={"address": "0.0.0.0:7444", "debug": debug})
    assert s.admin is not None
    refusal = _debug_refusal(s.admin.debug, remote)
    assert (refusal.status if refusal is not None else None) == status
    if refusal is not None:
        assert json.loads(refusal.text or "")["kind"] == "Status"


def test_admin_keeps_the_short_form_and_defaults_to_loopback() -> None:
    assert _parse(admin="0.0.0.0:7444").admin == AdminSettings(settings.Address("0.0.0.0", 7444), "loopback")
    assert _parse(admin={"address": "[::1]:7444", "debug": "open"}).admin == AdminSettings(
        settings.Address("::1", 7444), "open")


@pytest.mark.parametrize(("admin", "problem"), [
    ({"address": "0.0.0.0:7444", "debug": "public"}, "admin.debug: must be one of loopback, open, off"),
    ({"address": "0.0.0.0:7444", "debg": "open"}, "admin.debg: unknown field (did you mean debug?)"),
    ({"debug": "open"}, "admin.address: is required"),
])
def test_bad_admin_settings_are_errors(admin: object, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        _parse(admin=admin)
    assert any(problem in p for p in caught.value.problems), caught.value.problems


def test_admin_listen_on_the_command_line_keeps_debug(tmp_path: Path) -> None:
    """`--admin-listen ADDR` replaces the address of an `admin:` mapping, not its `debug`."""
    path = tmp_path / "guard.yaml"
    path.write_text(json.dumps({**BASE, "admin": {"address": "127.0.0.1:1", "debug": "open"}}))
    loaded = settings.load(path, overrides={"admin": "127.0.0.1:2"})
    assert loaded.admin == AdminSettings(settings.Address("127.0.0.1", 2), "open")
