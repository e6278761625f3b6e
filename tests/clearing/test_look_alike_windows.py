"""The time windows matching reads look-alike candidates from (clearing.matching.look_alike_windows)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from clearing.matching import LOOK_ALIKE_WINDOW, look_alike_windows

EPOCH = datetime(2026, 2, 1, tzinfo=UTC)
starts = st.lists(st.integers(min_value=0, max_value=90 * 24 * 3600).map(lambda s: EPOCH + timedelta(seconds=s)))


@given(starts)
def test_every_look_alike_time_is_covered_by_few_sorted_disjoint_windows(moments: list[datetime]) -> None:
    windows = look_alike_windows(moments)
    assert len(windows) <= 32
    assert all(low < high for low, high in windows)
    assert all(a[1] < b[0] for a, b in pairwise(windows))  # sorted, disjoint
    for moment in moments:
        for edge in (moment - LOOK_ALIKE_WINDOW, moment, moment + LOOK_ALIKE_WINDOW):
            assert any(low <= edge <= high for low, high in windows)
    assert (windows == []) == (moments == [])


def test_a_late_cdr_adds_its_own_window_instead_of_stretching_one_over_the_gap() -> None:
    batch = [EPOCH + timedelta(days=13, minutes=m) for m in range(0, 90, 3)]
    late = EPOCH + timedelta(hours=5)
    windows = look_alike_windows([*batch, late])
    assert windows == [
        (late - LOOK_ALIKE_WINDOW, late + LOOK_ALIKE_WINDOW),
        (batch[0] - LOOK_ALIKE_WINDOW, batch[-1] + LOOK_ALIKE_WINDOW),
    ]
