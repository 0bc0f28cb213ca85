"""Turning an admitted model's endpoint into a provider ``Target``.

Source secrets arrive sealed in registry events; the router opens each one
once and keeps it in memory, keyed by its sealed form, so a rotated secret
is picked up by the next request and the old one forgotten.
"""

from __future__ import annotations

from typing import Any

from services.router.checks import Admission
from services.router.providers import Target
from shared.errors import Unavailable
from shared.secrets import SecretBox, SecretBoxError


class TargetResolver:
    """Build targets, opening sealed secrets once per source version."""

    def __init__(self, box: SecretBox | None) -> None:
        self._box = box
        self._opened: dict[str, tuple[str, str]] = {}
        self._targets: dict[tuple[str, str, str], tuple[Any, Target]] = {}

    def target(self, admission: Admission) -> Target:
        """Return the target of the admission's endpoint, cached per change."""
        source, model, endpoint = admission.source, admission.model, admission.endpoint
        key = (model["rid"], endpoint["api"], endpoint["path"])
        stamp = (source["updated_at"], model["updated_at"], source.get("sealed_secret"))
        cached = self._targets.get(key)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        built = Target(
            api=endpoint["api"],
            base_url=source["base_url"],
            path=endpoint["path"],
            provider_model=model["provider_model"],
            auth=self._auth(source),
            port=source.get("port"),
        )
        self._targets[key] = (stamp, built)
        return built

    def _auth(self, source: dict[str, Any]) -> dict[str, Any]:
        sealed = source.get("sealed_secret")
        if not sealed:
            return dict(source["auth"])
        return {**source["auth"], "secret": self._open(source["rid"], sealed)}

    def _open(self, rid: str, sealed: str) -> str:
        cached = self._opened.get(rid)
        if cached is not None and cached[0] == sealed:
            return cached[1]
        if self._box is None:
            raise Unavailable(
                "the router has no BYOM_SECRET_KEY and cannot use source secrets"
            )
        try:
            secret = self._box.open(sealed)
        except SecretBoxError as exc:
            raise Unavailable(
                f"the secret of source {rid} cannot be opened with this router's "
                "BYOM_SECRET_KEY: give the router the registry's key"
            ) from exc
        self._opened[rid] = (sealed, secret)
        return secret
