"""Behaviour of the quota book as the router sees it, one example at a time."""

from services.limiter.limits import Limits, RateLimit
from services.limiter.quota import Denial, Grant, QuotaBook, Usage

WIDE = RateLimit(rpm=1000, tpm=1_000_000)


def acquire(
    book: QuotaBook,
    now: float,
    limits: Limits,
    *,
    project: str = "p1",
    user: str | None = None,
    tokens: int = 10,
) -> Grant | Denial:
    return book.acquire(now, "m1", project, user, tokens=tokens, limits=limits)


def test_a_call_with_room_everywhere_is_granted_a_reservation() -> None:
    book = QuotaBook()

    grant = acquire(book, 5.5, Limits(WIDE, WIDE), tokens=30)

    assert grant == Grant(1, 5, "m1", "p1", None, 30)


def test_a_full_project_window_rejects_the_call_and_names_the_project_scope() -> None:
    book = QuotaBook()
    limits = Limits(WIDE, RateLimit(rpm=2))
    acquire(book, 0.0, limits)
    acquire(book, 1.0, limits)

    assert acquire(book, 2.0, limits) == Denial("project", "rpm", 59.0)


def test_the_enrollment_is_named_before_a_project_that_is_also_full() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=1), RateLimit(rpm=1))
    acquire(book, 0.0, limits)

    assert acquire(book, 1.0, limits) == Denial("enrollment", "rpm", 60.0)


def test_rpm_is_named_before_tpm_at_the_same_level() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=1, tpm=10), WIDE)
    acquire(book, 0.0, limits, tokens=10)

    assert acquire(book, 0.5, limits, tokens=10) == Denial("enrollment", "rpm", 60.5)


def test_the_wait_is_until_every_full_level_has_room_at_once() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=2), WIDE, RateLimit(rpm=1))
    acquire(book, 0.0, limits, user="u1")
    acquire(book, 10.0, limits, user="u2")

    denial = acquire(book, 20.0, limits, user="u1")

    assert denial == Denial("enrollment", "rpm", 41.0)


def test_a_call_larger_than_a_tpm_is_refused_for_good_whatever_else_is_full() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=1), RateLimit(tpm=100))
    acquire(book, 0.0, limits)

    assert acquire(book, 1.0, limits, tokens=101) == Denial("project", "tpm", None)


def test_a_denied_call_charges_no_level() -> None:
    book = QuotaBook()
    limits = Limits(WIDE, WIDE, RateLimit(tpm=50))
    acquire(book, 0.0, limits, user="u1", tokens=40)

    assert isinstance(acquire(book, 1.0, limits, user="u1", tokens=20), Denial)
    assert book.used(1.0, "enrollment", "m1", "") == Usage(1, 40)
    assert book.used(1.0, "project", "m1", "p1") == Usage(1, 40)
    assert book.used(1.0, "user", "m1", "u1") == Usage(1, 40)


def test_users_and_projects_have_windows_of_their_own() -> None:
    book = QuotaBook()
    limits = Limits(WIDE, RateLimit(rpm=1), RateLimit(rpm=1))

    assert isinstance(acquire(book, 0.0, limits, project="p1", user="u1"), Grant)
    assert isinstance(acquire(book, 0.0, limits, project="p2", user="u2"), Grant)
    assert isinstance(acquire(book, 0.0, limits, project="p2", user="u3"), Denial)


def test_settling_below_the_reservation_frees_tokens_at_once() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(tpm=100), WIDE)
    grant = acquire(book, 0.0, limits, tokens=90)
    assert isinstance(grant, Grant)

    assert book.settle(1.0, grant.reservation_id, 30)
    assert isinstance(acquire(book, 2.0, limits, tokens=70), Grant)
    assert book.used(2.0, "enrollment", "m1", "") == Usage(2, 100)


def test_settling_above_the_reservation_charges_the_real_usage_and_delays_calls() -> (
    None
):
    book = QuotaBook()
    limits = Limits(RateLimit(tpm=100), WIDE)
    grant = acquire(book, 0.0, limits, tokens=50)
    assert isinstance(grant, Grant)

    assert book.settle(1.0, grant.reservation_id, 130)
    assert book.used(1.0, "project", "m1", "p1") == Usage(1, 130)
    assert acquire(book, 2.0, limits, tokens=1) == Denial("enrollment", "tpm", 59.0)


def test_a_refunded_call_gives_back_its_request_and_its_tokens() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=1, tpm=100), WIDE)
    grant = acquire(book, 0.0, limits, tokens=100)
    assert isinstance(grant, Grant)

    assert book.refund(1.0, grant.reservation_id)
    assert isinstance(acquire(book, 1.0, limits, tokens=100), Grant)


def test_a_reservation_is_closed_once_settled_or_refunded() -> None:
    book = QuotaBook()
    grant = acquire(book, 0.0, Limits(WIDE, WIDE))
    assert isinstance(grant, Grant)

    assert book.settle(1.0, grant.reservation_id, 5)
    assert not book.settle(2.0, grant.reservation_id, 1)
    assert not book.refund(2.0, grant.reservation_id)
    assert book.used(2.0, "enrollment", "m1", "") == Usage(1, 5)


def test_a_reservation_never_settled_is_released_when_its_window_passes() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=1), WIDE)
    grant = acquire(book, 0.0, limits)
    assert isinstance(grant, Grant)

    assert isinstance(acquire(book, 61.0, limits), Grant)
    assert not book.settle(61.0, grant.reservation_id, 0)


def test_idle_parties_are_forgotten_once_their_charges_leave_the_window() -> None:
    book = QuotaBook()
    for user in ("u1", "u2", "u3"):
        acquire(book, 0.0, Limits(WIDE, WIDE), user=user)
    assert len(book) == 5

    acquire(book, 61.0, Limits(WIDE, WIDE), project="p2")

    assert len(book) == 2


def test_an_edited_limit_applies_at_once_and_keeps_the_usage_counted() -> None:
    book = QuotaBook()
    for second in range(5):
        acquire(book, second, Limits(RateLimit(rpm=10), WIDE))

    lowered = Limits(RateLimit(rpm=5), WIDE)

    assert acquire(book, 5.0, lowered) == Denial("enrollment", "rpm", 56.0)


def test_a_user_limit_set_later_starts_from_the_users_real_usage() -> None:
    book = QuotaBook()
    acquire(book, 0.0, Limits(WIDE, WIDE), user="u1", tokens=80)

    with_user_limit = Limits(WIDE, WIDE, RateLimit(tpm=100))

    assert acquire(book, 1.0, with_user_limit, user="u1", tokens=30) == Denial(
        "user", "tpm", 60.0
    )


def test_a_restored_book_keeps_windows_and_open_reservations() -> None:
    book = QuotaBook()
    limits = Limits(RateLimit(rpm=2, tpm=100), WIDE, RateLimit(rpm=5))
    grant = acquire(book, 0.0, limits, user="u1", tokens=60)
    acquire(book, 1.0, limits, user="u2", tokens=40)
    assert isinstance(grant, Grant)

    restored = QuotaBook.restore(book.snapshot())

    assert acquire(restored, 2.0, limits) == Denial("enrollment", "rpm", 59.0)
    assert restored.settle(3.0, grant.reservation_id, 10)
    assert restored.used(3.0, "user", "m1", "u1") == Usage(1, 10)
    assert restored.snapshot() != book.snapshot()


def test_a_replayed_grant_charges_every_level_without_checking_limits() -> None:
    book = QuotaBook()
    grant = Grant(41, 7, "m1", "p1", "u1", 25)

    assert book.apply_grant(7.5, grant)
    assert not book.apply_grant(7.5, grant)
    assert book.used(8.0, "user", "m1", "u1") == Usage(1, 25)
    assert isinstance(new := acquire(book, 8.0, Limits(WIDE, WIDE)), Grant)
    assert new.reservation_id == 42


def test_a_denied_call_from_a_new_user_leaves_nothing_behind_after_the_window() -> None:
    book = QuotaBook()
    limits = Limits(WIDE, WIDE, RateLimit(tpm=5))

    assert isinstance(acquire(book, 0.0, limits, user="u9", tokens=6), Denial)
    acquire(book, 61.0, limits, project="p2")

    assert len(book) == 2
