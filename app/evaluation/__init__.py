"""Evaluation and threshold calibration: transcribe a labelled manifest through both recognition paths,
score each against its reference, and find the router threshold that gives the lowest corpus error.

Modules, in the order data flows through them:
- `manifest`  reads the user's TSV/JSONL list of (audio, reference, language).
- `runners`   transcribes every item through the base and the robust path, once each, and scores it with
              the router once, in-process on a loaded pipeline; `http_runner` does the same against a
              running service.
- `scoring`   normalises text and counts word (or character) errors.
- `calibrate` sweeps thresholds and recommends one (or a routing mode).
- `report`    writes report.json, the error-vs-threshold plot and the human summary.
- `command`   ties them together for `mega-asr-server evaluate`.

Nothing here is imported by the service; importing this package loads no model or plotting library.
"""
