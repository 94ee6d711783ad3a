"""The simulator's authenticators: the static token file, client certificates and anonymous."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.sim.authn import Authenticator, TokenFileError, load_token_file


def test_token_file_in_the_api_servers_format(tmp_path: Path) -> None:
    """token,user,uid,"g1,g2" rows; every user also gets system:authenticated."""
    path = tmp_path / "tokens.csv"
    path.write_text('t1,alice,u1,"team-a,devs"\nt2,bob,u2\n')
    tokens = load_token_file(path)
    assert tokens["t1"].name == "alice" and tokens["t1"].uid == "u1"
    assert tokens["t1"].groups == ("team-a", "devs", "system:authenticated")
    assert tokens["t2"].groups == ("system:authenticated",)


@pytest.mark.parametrize("content", [None, "t1,alice\n"])
def test_bad_token_files_name_the_file(tmp_path: Path, content: str | None) -> None:
    """An unreadable or short-rowed token file is an error naming the file."""
    path = tmp_path / "tokens.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(TokenFileError, match=str(path)):
        load_token_file(path)


def test_client_certificate_subject_maps_to_user_and_groups() -> None:
    """CN is the user, each O a group."""
    cert = {
        "subject": (
            (("commonName", "carol"),),
            (("organizationName", "ops"),),
            (("organizationName", "system:masters"),),
        )
    }
    user = Authenticator().from_cert(cert)
    assert user is not None and user.name == "carol"
    assert user.groups == ("ops", "system:masters", "system:authenticated")


def test_anonymous_only_when_enabled() -> None:
    """Without --anonymous there is no anonymous user; with it, system:anonymous."""
    assert Authenticator().anonymous_user() is None
    user = Authenticator(anonymous=True).anonymous_user()
    assert user is not None and user.name == "system:anonymous" and user.groups == ("system:unauthenticated",)
