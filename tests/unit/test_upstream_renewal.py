"""Renewing guard's own token from an exec plugin or auth-provider: when, and what a failure keeps."""

from __future__ import annotations

from guard.kube.errors import ConfigError
from guard.upstream.kubeconfig import PluginToken
from guard.upstream.renewal import MARGIN, WITHOUT_EXPIRY, TokenSource
from tests.doubles import FakeClock


def test_a_token_is_renewed_a_margin_before_it_expires() -> None:
    clock = FakeClock(1000.0)
    source = TokenSource(PluginToken("a", expires=1900.0), lambda: PluginToken("b"), where="kc", clock=clock)
    assert source.due_in() == 900.0 - MARGIN
    clock.advance(2000.0)
    assert source.due_in() == 0.0  # overdue: at once


def test_a_token_without_expiry_is_renewed_periodically() -> None:
    source = TokenSource(PluginToken("a"), lambda: PluginToken("b"), where="kc")
    assert source.due_in() == WITHOUT_EXPIRY


async def test_a_failed_renewal_keeps_the_token_in_hand() -> None:
    """The plugin failing (a network blip at the cloud's token service) must not drop the token."""
    def broken() -> PluginToken:
        raise ConfigError(["kc: users[name=u].user.exec: failed: timeout"])
    source = TokenSource(PluginToken("a"), broken, where="kc")
    assert await source.renew() is False and source.token == "a" and source.renewals == 0


async def test_a_renewal_replaces_the_token() -> None:
    source = TokenSource(PluginToken("tok-first"), lambda: PluginToken("tok-second", expires=5.0), where="kc")
    assert await source.renew() is True and source.token == "tok-second" and source.renewals == 1
    assert "tok-" not in repr(source)
