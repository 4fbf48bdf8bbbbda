"""The sweep's bookkeeping: what is retried, when, and what is forgotten."""

from adf_operator.overdue import Overdue


def test_an_object_is_due_once_it_has_waited_for_the_interval() -> None:
    overdue = Overdue(10)
    overdue.note(("ns", "a"), True, now=100)
    assert overdue.take_due(109) == []
    assert overdue.take_due(110) == [("ns", "a")]


def test_later_events_of_a_waiting_object_keep_its_first_time() -> None:
    overdue = Overdue(10)
    overdue.note(("ns", "a"), True, now=100)
    overdue.note(("ns", "a"), True, now=105)
    assert overdue.take_due(110) == [("ns", "a")]


def test_an_object_that_no_longer_waits_is_forgotten() -> None:
    overdue = Overdue(10)
    overdue.note(("ns", "a"), True, now=100)
    overdue.note(("ns", "a"), False, now=101)
    assert overdue.take_due(200) == []
    assert len(overdue) == 0


def test_a_retried_object_waits_a_whole_interval_again_and_the_oldest_comes_first() -> None:
    overdue = Overdue(10)
    overdue.note(("ns", "late"), True, now=105)
    overdue.note(("ns", "early"), True, now=100)
    assert overdue.take_due(120) == [("ns", "early"), ("ns", "late")]
    assert overdue.take_due(129) == []
    assert overdue.take_due(130) == [("ns", "early"), ("ns", "late")]
