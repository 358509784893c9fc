"""Media decoding with PyAV: probing, video frames, audio, frame sampling and the decode-once memo."""
