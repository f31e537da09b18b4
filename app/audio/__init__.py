"""Audio before any model: decoding and resampling, cutting at pauses, voice activity, the speech gate."""
