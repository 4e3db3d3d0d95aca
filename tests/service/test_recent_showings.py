"""What users were shown and did not answer (`service.recent_showings`): a day counts once,
an answer forgives the days up to it, and memory stays bounded."""

from __future__ import annotations

from recsys.lists.rotation import DAY_S, Rotation
from service.recent_feedback import Event, RecentFeedback
from service.recent_showings import PER_USER, RecentShowings, day_of

NOW = 20_000 * DAY_S + 15 * 3600.0  # 15:00 UTC on some day


def test_days_not_lists_count_and_an_answer_forgives_them() -> None:
    showings, answers = RecentShowings(), RecentFeedback()
    rotation = Rotation(after=3)
    # Five lists today, and one on each of the two days before: three days.
    showings.note([("u", ["a", "b"], NOW - 2 * DAY_S), ("u", ["a"], NOW - DAY_S)])
    showings.note([("u", ["a", "b"], NOW - 60 * m) for m in range(5)])
    demoted = showings.demoted("u", rotation, answers, NOW)
    assert set(demoted) == {"a"}  # b: two days
    days = [day_of(NOW - d * DAY_S) for d in (2, 1, 0)]
    assert demoted["a"] == rotation.demotions({"a": days}, NOW)["a"]
    # A click on "a" yesterday forgives the days up to it; today's list still counts.
    answers.note([("u", Event("a", "click", None, NOW - DAY_S + 60))])
    assert showings.demoted("u", rotation, answers, NOW) == {}
    assert showings.demoted("someone else", rotation, answers, NOW) == {}


def test_each_user_keeps_the_items_shown_last() -> None:
    showings = RecentShowings(users=2)
    items = [f"i{n}" for n in range(PER_USER + 10)]
    for days_ago in (2, 1, 0):  # oldest first, as lists are noted
        showings.note([("u", items, NOW - days_ago * DAY_S)])
    demoted = showings.demoted("u", Rotation(after=3), RecentFeedback(), NOW)
    assert len(demoted) == PER_USER and "i0" not in demoted and items[-1] in demoted
    # Users beyond the bound are forgotten, the least recently served first.
    showings.note([("v", ["x"], NOW), ("w", ["x"], NOW)])
    assert showings.demoted("u", Rotation(after=1), RecentFeedback(), NOW) == {}
