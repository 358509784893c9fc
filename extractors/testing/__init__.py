"""Demo and test scaffolding: synthetic media with a planted signal and tiny random stand-in models.

Nothing here is used to extract real features; the demo and the test suite build on it."""
