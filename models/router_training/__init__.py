"""Training of the demo audio-quality router: clean speech (fixtures + Piper TTS), degradations, the seeded
training loop and the held-out report. Run with `python -m models.router_training --out DIR --seed 0`."""
