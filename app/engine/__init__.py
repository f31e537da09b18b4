"""Scheduling and the model side of a request: the queue, the running rows and their inference worker, the
pipeline (router, route choice, guards), one request's transcription and its transcript."""
