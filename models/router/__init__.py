"""The Mega-ASR audio-quality router: network, log-mel features, checkpoints and batched scoring."""
