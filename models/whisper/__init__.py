"""Real Whisper models for the demo profile: CTranslate2 reader, converter to transformers, recognizer.

Submodules import torch/transformers; this package module imports nothing heavy.
"""
