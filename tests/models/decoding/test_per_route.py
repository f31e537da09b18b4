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
