"""One run at a time per (asset, day): a second run waits for the first, and gives up with a clear error."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from genesys_assets.lib.day_lock import DayLockTimeout, day_lock

DAY = date(2026, 11, 2)


def test_a_second_run_of_the_day_gives_up_saying_who_holds_it_and_what_to_do(tmp_path: Path) -> None:
    with day_lock(tmp_path, "wrapup_facts", DAY) as held:
        with pytest.raises(DayLockTimeout, match="another run has been materializing wrapup_facts for 2026-11-02 "
                                                 r"for over 0.2s .*let it finish or stop it"), \
                day_lock(tmp_path, "wrapup_facts", DAY, timeout_seconds=0.2):
            pytest.fail("both runs held the day")
        with day_lock(tmp_path, "wrapup_facts", date(2026, 11, 3), timeout_seconds=0.2):
            pass  # another day is another lock
    assert held == tmp_path / "locks" / "wrapup_facts-2026-11-02.lock"
    with day_lock(tmp_path, "wrapup_facts", DAY, timeout_seconds=0.2):
        pass  # released with the first run


def test_the_runs_own_timeout_is_not_taken_for_the_locks(tmp_path: Path) -> None:
    with pytest.raises(TimeoutError) as raised, day_lock(tmp_path, "conversation_details", DAY, timeout_seconds=0.2):
        raise TimeoutError("the API did not answer")
    assert type(raised.value) is TimeoutError and str(raised.value) == "the API did not answer"
