"""docs/running.md's settings reference names every key guard.yaml accepts: a key added to a parser
without a line in the reference fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from guard.admission import adaptive
from guard.admission import config as admission
from guard.federation import config as federation
from guard.identity import authz
from guard.identity import settings as identity
from guard.routing import config as routing
from guard.settings import loading

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = (ROOT / "docs" / "running.md").read_text().split("## Settings reference", 1)[1]


KEYS = {
    "top level": loading.TOP_KEYS,
    "clusters": loading.CLUSTER_KEYS,
    "limits": loading.LIMIT_KEYS,
    "admin": loading.ADMIN_KEYS,
    "identity": tuple(identity._KEYS),
    "impersonation bounds": tuple(identity._IMPERSONATION_KEYS),
    "admission": tuple(admission._KEYS),
    "priority level": tuple(admission._LEVEL_KEYS),
    "redis": tuple(federation._KNOWN),
    "health": routing.HEALTH_KEYS,
    "authorize": authz.AUTHORIZE_KEYS,
    "adaptive": adaptive.KEYS,
}


@pytest.mark.parametrize("section", KEYS)
def test_every_settings_key_is_in_the_reference(section: str) -> None:
    missing = sorted(k for k in KEYS[section] if not re.search(rf"\b{re.escape(k)}\b", REFERENCE))
    assert not missing, f"{section}: {missing} not in docs/running.md's settings reference"
