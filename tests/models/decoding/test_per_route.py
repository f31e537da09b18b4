"""per_route: each route's items in one batch call, results back in input order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from models.decoding.routed import per_route


@dataclass(frozen=True)
class Item:
    name: str
    robust: bool


def test_one_call_per_route_and_results_in_input_order():
    items = [Item("a", False), Item("b", True), Item("c", False), Item("d", True)]
    calls = []

    def tagged(tag):
        def call(batch):
            calls.append((tag, [item.name for item in batch]))
            return [f"{tag}:{item.name}" for item in batch]
        return call

    assert per_route(items, tagged("base"), tagged("robust")) == ["base:a", "robust:b", "base:c", "robust:d"]
    assert calls == [("base", ["a", "c"]), ("robust", ["b", "d"])]


def test_a_route_without_items_is_not_called_and_a_short_answer_is_an_error():
    def refuse(batch):
        raise AssertionError("called without items")

    assert per_route([Item("a", False)], lambda batch: ["x"], refuse) == ["x"]
    with pytest.raises(ValueError):
        per_route([Item("a", False), Item("b", False)], lambda batch: ["only one"], refuse)


def test_a_routed_session_prepares_each_item_on_its_routes_session_and_joins_each_with_its_own():
    from models.decoding.routed import RoutedSession
    from models.recognition import RecognitionItem
    from tests.fakes import SteppingRecognizer, tone

    base, robust = (SteppingRecognizer(prepares_ahead=True, languages_robust=frozenset({"en"})) for _ in range(2))
    session = RoutedSession(base.open_session(4), robust.open_session(4))
    assert session.prepares_ahead
    items = [RecognitionItem(tone(2.0), robust=True), RecognitionItem(tone(1.0)), RecognitionItem(tone(3.0))]
    prepared = session.prepare(items)
    assert prepared == ["ready:robust 2.0s..", "ready:base 1.0s.", "ready:base 3.0s..."]
    session.join(list(enumerate(items)), prepared)  # each fake session checks it got its rows' own states
    assert base.prepared == [["ready:base 1.0s.", "ready:base 3.0s..."]] and robust.prepared == [["ready:robust 2.0s.."]]
    assert not RoutedSession(base.open_session(4), SteppingRecognizer().open_session(4)).prepares_ahead
