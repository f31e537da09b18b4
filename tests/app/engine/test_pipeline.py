"""Route decisions of one batch: router threshold, forced routes, config modes, language rerouting."""

from __future__ import annotations

import pytest

from app.engine.pipeline import LanguageNotSupported, Pipeline, RouteNotAvailable, SegmentJob
from tests.fakes import FakeRecognizer, FakeRouter, tone


def test_router_threshold_and_forced_routes_in_one_batch():
    recognizer = FakeRecognizer(languages_robust=None)
    pipeline = Pipeline(recognizer, FakeRouter())
    jobs = [SegmentJob(tone(1.0, 0.3), threshold=0.5), SegmentJob(tone(1.0, 0.3), threshold=0.2),
            SegmentJob(tone(1.0, 0.9), route="base"), SegmentJob(tone(1.0, 0.1), route="robust")]
    results = pipeline.run_batch(jobs)
    assert [r.route for r in results] == ["base", "robust", "base", "robust"]
    assert [r.reason for r in results] == ["router", "router", "request", "request"]
    assert len(recognizer.batches) == 1 and [i.robust for i in recognizer.batches[0]] == [False, True, False, True]
    assert results[0].router_score == pytest.approx(0.3, abs=1e-3)


def test_config_modes_ignore_the_router_but_report_its_score():
    for routing, route in (("always_robust", "robust"), ("always_base", "base")):
        pipeline = Pipeline(FakeRecognizer(languages_robust=None), FakeRouter(), routing=routing)
        result = pipeline.run_batch([SegmentJob(tone(1.0, 0.7))])[0]
        assert result.route == route and result.reason == "config" and result.router_score == pytest.approx(0.7, abs=1e-3)


def test_language_moves_an_auto_item_to_the_path_that_can_do_it():
    recognizer = FakeRecognizer(languages_base=frozenset({"en"}), languages_robust=frozenset({"en", "zh"}))
    pipeline = Pipeline(recognizer, FakeRouter())
    result = pipeline.run_batch([SegmentJob(tone(1.0, 0.1), language="zh")])[0]
    assert result.route == "robust" and result.reason == "language"
    pipeline.check_language("zh", "auto")
    with pytest.raises(LanguageNotSupported):
        pipeline.check_language("zh", "base")
    with pytest.raises(LanguageNotSupported):
        pipeline.check_language("de", "auto")


def test_unavailable_route_is_refused_at_admission():
    pipeline = Pipeline(FakeRecognizer(languages_base=frozenset()), FakeRouter(), routing="always_robust")
    with pytest.raises(RouteNotAvailable):
        pipeline.check_route("base")
    pipeline.check_route("robust")
    pipeline.check_route("auto")


def test_model_boundary_length_is_checked():
    class Broken(FakeRecognizer):
        def recognize(self, items):
            return super().recognize(items)[:-1]

    with pytest.raises(RuntimeError, match="returned 1 results for 2 inputs"):
        Pipeline(Broken(), FakeRouter()).run_batch([SegmentJob(tone(1.0)), SegmentJob(tone(1.0))])


def test_router_required_for_router_mode():
    with pytest.raises(ValueError):
        Pipeline(FakeRecognizer(), None, routing="router")
