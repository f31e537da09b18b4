"""Evaluating a running service: each item is posted twice, with route=base and route=robust.

The router score is read from the answers (the service scores every segment whatever the route; the
file's score is the highest segment score). A path that refuses the item's language (400
`unsupported_language`) gives `None` for that path. 429 answers are retried after their Retry-After.
Items are sent `concurrency` at a time so the service can batch them.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from app.evaluation.manifest import ManifestItem
from app.evaluation.runners import EvaluationError, ItemTranscripts, PathTranscript, progress_bar, where
from models.languages import UnknownLanguageError, to_code

_TRANSCRIPTIONS = "/v1/audio/transcriptions"
_MAX_RETRY_AFTER_SECONDS = 30.0


@dataclass(frozen=True)
class HttpConfig:
    concurrency: int = 4  # items in flight at once (each is two requests, one after the other)
    timeout_seconds: float = 600.0
    max_retries: int = 5  # on 429 only
    progress: bool = True


class HttpRunner:
    def __init__(self, url: str, *, api_key: str | None = None, config: HttpConfig = HttpConfig()) -> None:
        if config.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.url = url.rstrip("/")
        self.config = config
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(headers=headers, timeout=config.timeout_seconds)

    def close(self) -> None:
        self._client.close()

    def transcribe(self, items: Sequence[ManifestItem]) -> list[ItemTranscripts]:
        self._check_ready()
        pool = concurrent.futures.ThreadPoolExecutor(self.config.concurrency, thread_name_prefix="eval")
        try:
            futures = [pool.submit(self._item, item) for item in items]
            with progress_bar(len(items), "evaluating", self.config.progress) as bar:
                for future in concurrent.futures.as_completed(futures):
                    future.result()  # raises the first failure; `finally` drops what has not started
                    bar.update(1)
            return [future.result() for future in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _check_ready(self) -> None:
        try:
            answer = self._client.get(f"{self.url}/readyz")
        except httpx.HTTPError as exc:
            raise EvaluationError(f"cannot reach the service at {self.url}: {exc}") from None
        if answer.status_code != 200:
            raise EvaluationError(f"the service at {self.url} is not ready (/readyz answered "
                                  f"{answer.status_code}: {answer.text[:200]})")

    def _item(self, item: ManifestItem) -> ItemTranscripts:
        try:
            data = item.path.read_bytes()
        except OSError as exc:
            raise EvaluationError(f"{where(item)}: {exc}") from None
        answers = {route: self._post(item, data, route) for route in ("base", "robust")}
        scored = answers["base"] or answers["robust"]
        if scored is None:
            raise EvaluationError(f"{where(item)}: the service transcribes language {item.language!r} on "
                                  "neither path")
        score = scored.get("router_score")
        return ItemTranscripts(item=item, duration=float(scored["duration"]),
                               router_score=None if score is None else float(score),
                               base=_path(answers["base"]), robust=_path(answers["robust"]))

    def _post(self, item: ManifestItem, data: bytes, route: str) -> dict | None:
        fields = {"route": route, "response_format": "verbose_json"}
        if item.language:
            fields["language"] = item.language
        for attempt in range(self.config.max_retries + 1):
            try:
                answer = self._client.post(f"{self.url}{_TRANSCRIPTIONS}", data=fields,
                                           files={"file": (item.path.name, data)})
            except httpx.HTTPError as exc:
                raise EvaluationError(f"{where(item)}: request to {self.url} failed: {exc}") from None
            if answer.status_code != 429 or attempt == self.config.max_retries:
                break
            time.sleep(_retry_after(answer))  # the service says when to come back
        if answer.status_code == 400 and _error(answer).get("code") == "unsupported_language":
            return None
        if answer.status_code != 200:
            message = _error(answer).get("message") or answer.text[:200]
            raise EvaluationError(f"{where(item)}: route={route} answered {answer.status_code}: {message}")
        return answer.json()


def _retry_after(answer: httpx.Response) -> float:
    try:
        return min(_MAX_RETRY_AFTER_SECONDS, max(0.0, float(answer.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


def _error(answer: httpx.Response) -> dict:
    try:
        body = answer.json()
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _path(answer: dict | None) -> PathTranscript | None:
    if answer is None:
        return None
    return PathTranscript(text=answer.get("text") or "", language=_code(answer.get("language")))


def _code(language: str | None) -> str | None:
    """The service answers languages as English names ("english"), as OpenAI does."""
    if not language:
        return None
    try:
        return to_code(language)
    except UnknownLanguageError:
        return None
