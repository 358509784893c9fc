"""Helpers for tests that need damaged or unusual media files (built from synthetic clips with PyAV)."""

from __future__ import annotations

from pathlib import Path

import av


def truncate(src: str | Path, dst: str | Path, *, keep: float) -> Path:
    """Copy the first ``keep`` fraction (0..1) of ``src``'s bytes to ``dst``, like an interrupted
    download."""
    data = Path(src).read_bytes()
    out = Path(dst)
    out.write_bytes(data[: int(len(data) * keep)])
    return out


def remux(src: str | Path, dst: str | Path, *, faststart: bool) -> Path:
    """Copy ``src``'s streams into ``dst`` without re-encoding.

    With ``faststart=False`` an MP4's index (``moov``) goes to the *end* of the file, as a recorder
    writes it, so truncating the copy loses the index (the file then cannot even be opened); with
    ``faststart=True`` the index comes first, so a truncated copy opens and fails mid-decode.
    """
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(src)) as inp, av.open(str(dst), mode="w", options=options) as out:
        mapping = {s.index: out.add_stream_from_template(s)
                   for s in inp.streams if s.type in ("video", "audio")}
        for packet in inp.demux(*[inp.streams[i] for i in mapping]):
            if packet.dts is None:
                continue  # the empty flush packets demux() appends
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return Path(dst)
