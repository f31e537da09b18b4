"""Qwen3-ASR recognizer: checkpoint loading (both released layouts), output parsing, batched recognition.

Import the submodules directly; nothing here imports torch or transformers at package import time.
"""
