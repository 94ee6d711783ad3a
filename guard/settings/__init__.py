"""guard.yaml: what `guard serve` runs with, read and validated all at once."""

from guard.settings.loading import load, parse
from guard.settings.model import (
    AccessLogSettings,
    Address,
    AdminSettings,
    ClusterSettings,
    LimitSettings,
    Settings,
    TLSSettings,
)

__all__ = ["AccessLogSettings", "Address", "AdminSettings", "ClusterSettings", "LimitSettings", "Settings",
           "TLSSettings", "load", "parse"]
