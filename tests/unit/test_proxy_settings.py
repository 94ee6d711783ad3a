"""guard.yaml: the smallest file works as written; one fixture per error kind, with its exact message."""

from __future__ import annotations

from pathlib import Path

import pytest

from guard import settings
from guard.kube.errors import ConfigError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "settings"
ERROR_FILES = sorted(p.name for p in FIXTURES.glob("*.yaml"))


def expected(name: str) -> list[str]:
    return [line[len("# error: "):].rstrip("\n") for line in (FIXTURES / name).read_text().splitlines()
            if line.startswith("# error: ")]


def test_the_smallest_settings_file_of_the_design_is_accepted_as_written() -> None:
    """DESIGN.md section 7's file parses: one cluster, passthrough, token kept, policies resolved."""
    s = settings.load(FIXTURES / "valid" / "smallest.yaml")
    assert (s.listen.host, s.listen.port, s.admin and s.admin.port) == ("127.0.0.1", 7443, 7444)
    assert s.cluster.servers == ("http://127.0.0.1:6443",) and s.cluster.token == "<guard's own token>"
    assert s.forwarding == "passthrough" and s.policies == FIXTURES / "valid" / "policies/"
    assert s.redis is not None


@pytest.mark.parametrize("name", ERROR_FILES)
def test_each_bad_settings_file_reports_its_exact_errors(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every problem of the file is reported at once, each naming the file and the field path."""
    monkeypatch.chdir(FIXTURES)
    assert expected(name), f"{name} declares no `# error:` line"
    with pytest.raises(ConfigError) as caught:
        settings.load(name)
    assert sorted(caught.value.problems) == sorted(expected(name))


def test_the_token_never_appears_in_a_settings_error_or_repr() -> None:
    """A bad field next to a secret: the secret is not echoed and not in the dataclass repr."""
    raw = {"listen": "127.0.0.1:1", "clusters": [{"name": "dev", "server": "http://a:1", "token": "s3cr3t"}]}
    assert "s3cr3t" not in repr(settings.parse(raw, "g.yaml"))
    raw["clusters"][0]["token"] = ["s3cr3t"]  # type: ignore[index]
    with pytest.raises(ConfigError) as caught:
        settings.parse(raw, "g.yaml")
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.parametrize(("text", "host", "port"), [
    ("127.0.0.1:0", "127.0.0.1", 0), ("[::1]:7443", "::1", 7443), (":7443", "0.0.0.0", 7443),
])
def test_listen_addresses(text: str, host: str, port: int) -> None:
    """host:port, bracketed IPv6, and an empty host meaning every interface."""
    s = settings.parse({"listen": text, "clusters": [{"name": "d", "server": "http://a:1", "token": "t"}]},
                       "g.yaml")
    assert (s.listen.host, s.listen.port) == (host, port)


def test_command_line_overrides_replace_file_values(tmp_path: Path) -> None:
    """--listen and --admin-listen win over the file."""
    path = tmp_path / "g.yaml"
    path.write_text("listen: 127.0.0.1:1\nclusters: [{name: d, server: 'http://a:1', token: t}]\n")
    s = settings.load(path, overrides={"listen": "127.0.0.1:2", "admin": "127.0.0.1:3", "redis": None})
    assert (s.listen.port, s.admin and s.admin.port, s.redis) == (2, 3, None)
