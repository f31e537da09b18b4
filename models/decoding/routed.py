"""One decode session over two models: base rows go to one session, robust rows to the other (the demo's
pair of Whisper models). Both advance at every step, so rows of either route join and leave freely."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any, Protocol, TypeVar

from models.recognition import DecodeSession, RecognitionItem, RowUpdate

Out = TypeVar("Out")


class _Routed(Protocol):
    robust: bool


Item = TypeVar("Item", bound=_Routed)


def per_route(items: Sequence[Item], base: Callable[[list[Item]], Sequence[Out]],
              robust: Callable[[list[Item]], Sequence[Out]]) -> list[Out]:
    """Each route's items through its own batch call (one call per route that has items); the results in
    input order. A call must answer every item it is given (list in, list of the same length out)."""
    results: dict[int, Out] = {}
    for path, call in ((False, base), (True, robust)):
        rows = [index for index, item in enumerate(items) if item.robust == path]
        if rows:
            results.update(zip(rows, call([items[i] for i in rows]), strict=True))
    return [results[index] for index in range(len(items))]


class RoutedSession:
    """Implements models.recognition.DecodeSession by splitting rows on RecognitionItem.robust."""

    def __init__(self, base: DecodeSession, robust: DecodeSession) -> None:
        self.sessions = {False: base, True: robust}

    @property
    def running(self) -> int:
        return sum(session.running for session in self.sessions.values())

    def row_bytes(self) -> int:
        return max(session.row_bytes() for session in self.sessions.values())

    @property
    def prepares_ahead(self) -> bool:
        return all(getattr(session, "prepares_ahead", False) for session in self.sessions.values())

    def prepare(self, items: Sequence[RecognitionItem]) -> list[Any]:
        """Each item prepared by its route's session (models.recognition.PreparesAhead)."""
        return per_route(items, *(self.sessions[robust].prepare for robust in (False, True)))

    def join(self, rows: Sequence[tuple[Hashable, RecognitionItem]],
             prepared: Sequence[Any] | None = None) -> list[RowUpdate]:
        updates: list[RowUpdate] = []
        joined: list[Hashable] = []
        try:
            for robust, session in self.sessions.items():
                indices = [index for index, (_, item) in enumerate(rows) if item.robust == robust]
                if indices:
                    group = [rows[index] for index in indices]
                    if prepared is None:
                        updates += session.join(group)
                    else:
                        updates += session.join(group, [prepared[index] for index in indices])
                    joined += [key for key, _ in group]
        except BaseException:
            self.cancel(joined)  # all-or-nothing: the group that did join leaves again
            raise
        return updates

    def step(self) -> list[RowUpdate]:
        return [update for session in self.sessions.values() for update in session.step()]

    def cancel(self, keys: Iterable[Hashable]) -> None:
        keys = list(keys)
        for session in self.sessions.values():
            session.cancel(keys)

    def reset(self) -> None:
        for session in self.sessions.values():
            session.reset()
