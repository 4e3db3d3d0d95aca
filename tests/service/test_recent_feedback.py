"""The feedback a replica keeps of what users sent since training: ratings kept out of lists,
every kind a live list folds in as its rating, each item's latest event, bounded per user."""

from __future__ import annotations

from service.recent_feedback import PER_USER, Event, RecentFeedback

RATINGS = {"like": 5.0, "click": 4.0, "dislike": 1.0}


def test_ratings_are_kept_out_and_other_kinds_count_as_their_ratings() -> None:
    recent = RecentFeedback()
    recent.note(
        [
            ("u1", Event("a", "rating", 2.0, 100.0)),
            ("u1", Event("b", "like", None, 101.0)),
            ("u1", Event("c", "view", None, 102.0)),  # no rating named: left out
            ("u1", Event("d", "click", None, 50.0)),  # before the model's newest rating
            ("u2", Event("e", "dislike", None, 103.0)),
        ]
    )
    assert recent.rated("u1") == {"a"} and recent.rated("u2") == frozenset()
    assert recent.live("u1", 60.0, RATINGS) == (["a", "b"], [2.0, 5.0])
    assert recent.live("u2", 60.0, RATINGS) == (["e"], [1.0])
    assert recent.live("nobody", 0.0, RATINGS) == ([], [])


def test_an_items_latest_event_is_the_one_kept() -> None:
    recent = RecentFeedback()
    recent.note([("u1", Event("a", "click", None, 100.0))])
    recent.note([("u1", Event("a", "rating", 1.5, 120.0)), ("u1", Event("b", "like", None, 110.0))])
    # Oldest first, whatever order they were noted in.
    assert recent.live("u1", 0.0, RATINGS) == (["b", "a"], [5.0, 1.5])
    assert recent.rated("u1") == {"a"}


def test_each_user_keeps_the_newest_items_only() -> None:
    recent = RecentFeedback()
    recent.note(("u1", Event(f"i{n}", "rating", 4.0, float(n))) for n in range(PER_USER + 50))
    items, _ = recent.live("u1", -1.0, RATINGS)
    assert len(items) == PER_USER and items[0] == "i50" and items[-1] == f"i{PER_USER + 49}"


def test_the_users_who_sent_feedback_last_are_kept() -> None:
    recent = RecentFeedback(users=2)
    for user in ("u1", "u2", "u3"):
        recent.note([(user, Event("a", "rating", 4.0, 1.0))])
    assert recent.rated("u1") == frozenset() and recent.rated("u3") == {"a"}
