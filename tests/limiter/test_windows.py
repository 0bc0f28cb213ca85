"""Behaviour of one rolling window and of the project-limit rule."""

import pytest

from services.limiter.limits import RateLimit, project_limits
from services.limiter.windows import RollingWindow, delay_until


def test_a_charge_is_held_for_at_least_sixty_seconds_and_at_most_sixty_one() -> None:
    window = RollingWindow()
    window.charge(100.9, 5)

    assert window.used(160.9) == 5
    assert window.used(160.999) == 5
    assert window.used(161.0) == 0


def test_room_is_the_limit_minus_what_the_window_holds() -> None:
    window = RollingWindow()
    window.charge(10.0, 7)
    window.charge(11.5, 2)

    assert window.room(12.0, 10) == 1
    assert window.room(71.0, 10) == 8
    assert window.room(72.0, 10) == 10


def test_a_refund_goes_to_the_bucket_charged_and_never_below_zero() -> None:
    window = RollingWindow()
    second = window.charge(5.2, 4)
    window.charge(6.0, 3)

    assert window.refund(second, 10) == 4
    assert window.used(6.0) == 3
    assert window.used(66.0) == 3


def test_a_refund_is_a_no_op_once_its_bucket_has_left_the_window() -> None:
    window = RollingWindow()
    second = window.charge(5.0, 4)
    window.charge(66.0, 1)

    assert window.refund(second, 4) == 0
    assert window.used(66.0) == 1


def test_retry_after_is_when_enough_of_the_oldest_charges_leave() -> None:
    window = RollingWindow()
    window.charge(0.5, 3)
    window.charge(10.2, 3)
    window.charge(20.7, 3)

    assert window.retry_after(30.0, 1, 10) == 0.0
    assert window.retry_after(30.0, 4, 10) == 31.0
    assert window.retry_after(30.0, 5, 10) == 41.0
    assert window.retry_after(30.0, 10, 10) == 51.0


def test_a_charge_larger_than_the_whole_limit_never_fits() -> None:
    window = RollingWindow()

    assert window.retry_after(0.0, 11, 10) is None


def test_a_clock_stepping_back_never_releases_charges_early() -> None:
    window = RollingWindow()
    window.charge(100.0, 1)
    window.charge(90.0, 1)

    assert window.newest == 100
    assert window.used(160.0) == 2
    assert window.used(161.0) == 0


def test_a_window_survives_a_round_trip_through_its_state() -> None:
    window = RollingWindow()
    window.charge(3.0, 2)
    window.charge(40.0, 5)
    restored = RollingWindow.from_state(window.to_state())

    assert restored.to_state() == window.to_state()
    assert restored.used(64.0) == 5


def test_the_retry_delay_lands_on_or_after_the_moment_despite_rounding() -> None:
    now = 1_700_000_000.1

    assert now + delay_until(now, 1_700_000_061.0) >= 1_700_000_061.0


def test_a_project_gets_seventy_percent_of_the_enrollment_by_default() -> None:
    assert project_limits(RateLimit(rpm=100, tpm=10_001)) == RateLimit(70, 7000)


def test_a_project_share_is_rounded_down_but_never_below_one() -> None:
    assert project_limits(RateLimit(rpm=1, tpm=3)) == RateLimit(rpm=1, tpm=2)


def test_a_project_share_follows_a_set_percent_exactly() -> None:
    assert project_limits(RateLimit(rpm=100, tpm=1000), percent=29) == RateLimit(
        29, 290
    )
    assert project_limits(RateLimit(rpm=1000), percent=12.5) == RateLimit(rpm=125)


def test_absolute_project_limits_win_over_the_percent() -> None:
    enrollment = RateLimit(rpm=100, tpm=1000)

    assert project_limits(enrollment, percent=50, tpm=900) == RateLimit(50, 900)


def test_no_enrollment_limit_means_no_project_limit() -> None:
    assert project_limits(RateLimit(tpm=1000)) == RateLimit(rpm=None, tpm=700)


@pytest.mark.parametrize("percent", [0, -5, 100.5])
def test_a_percent_outside_zero_to_a_hundred_is_refused(percent: float) -> None:
    with pytest.raises(ValueError, match="percent must be in"):
        project_limits(RateLimit(rpm=10), percent=percent)
