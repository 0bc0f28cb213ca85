"""The rate limits a request is checked against, and the project-level rule.

Limits come from the registry with each request's context; the quota book
never stores them, so an edited limit applies to the very next acquire and
meets the usage its windows already hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

DEFAULT_PROJECT_PERCENT = 70


@dataclass(frozen=True, slots=True)
class RateLimit:
    """Requests and tokens allowed per rolling 60 seconds; None is unlimited."""

    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of the three levels for one model, as they apply to one call.

    `user` is None when the model has no per-user limit; a user-attributed
    call is still counted at the user level, so a limit set later starts from
    the real usage.
    """

    enrollment: RateLimit
    project: RateLimit
    user: RateLimit | None = None


def project_limits(
    enrollment: RateLimit,
    percent: int | float | None = None,
    rpm: int | None = None,
    tpm: int | None = None,
) -> RateLimit:
    """Return a project's limits under the enrollment's.

    An absolute `rpm` or `tpm` wins for its own limit. Otherwise the project
    gets `percent` (70 unless set) of the enrollment limit, rounded down, but
    at least 1 so that a small enrollment limit never shuts projects out; no
    enrollment limit means no project limit.
    """
    share = Decimal(str(DEFAULT_PROJECT_PERCENT if percent is None else percent))
    if not 0 < share <= 100:
        raise ValueError(
            f"project limit percent must be in (0, 100], got {percent!r}: "
            "pass a percent of the enrollment limit, or absolute rpm/tpm"
        )
    return RateLimit(
        rpm=rpm if rpm is not None else _share_of(enrollment.rpm, share),
        tpm=tpm if tpm is not None else _share_of(enrollment.tpm, share),
    )


def _share_of(limit: int | None, percent: Decimal) -> int | None:
    if limit is None:
        return None
    share = (Decimal(limit) * percent / 100).to_integral_value(ROUND_FLOOR)
    return max(1, int(share))
