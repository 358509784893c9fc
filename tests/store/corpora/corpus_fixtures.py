"""Writers of tiny corpus copies in each corpus's real file format, with synthetic media beside them."""

from __future__ import annotations

import csv
import shutil
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

if TYPE_CHECKING:
    from pathlib import Path

CLIP_FPS = 10.0
CLIP_FRAMES = 8


def place_clip(template: Path, target: Path) -> Path:
    """Copy the session's tiny clip to ``target`` (copying is far cheaper than encoding)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return target


# ---- Aff-Wild2 -----------------------------------------------------------------------------------
# vidA: scientific notation, an invalid (-5) frame; the two people of video2; a validation and a test video.
AFFWILD_VALUES: dict[str, list[str]] = {
    "vidA": ["0.1,0.2", "-5.20417042793e-18,0.5", "-5,-5", "0.25,-0.75", "1e-1,2E-1", "-1,1", "0.5,0.5",
             "0.3,0.1"],
    "video2_left": ["0.1,0.1"] * 8,
    "video2_right": ["-0.2,0.4"] * 4 + ["-5,-5"] * 4,
    "vidB": ["0.0,0.0", "0.5,-0.5", "0.9,0.9", "-0.9,-0.9", "0.1,0.1", "0.2,0.2", "0.3,0.3", "0.4,0.4"],
    "vidC": ["0.5,-0.5"] * 8,
}
AFFWILD_SPLITS = {"vidA": "Train_Set", "video2_left": "Train_Set", "video2_right": "Train_Set",
                  "vidB": "Validation_Set", "vidC": "Test_Set"}


def write_affwild2(root: Path, clip: Path, *,
                   media_names: tuple[str, ...] = ("vidA", "video2", "vidB", "vidC"),
                   extra: dict[str, tuple[str, list[str]]] | None = None) -> Path:
    """``root/VA_Estimation_Challenge/<split>/<video>.txt`` plus ``root/media/<video>.mp4``."""
    files = {name: (AFFWILD_SPLITS[name], rows) for name, rows in AFFWILD_VALUES.items()}
    files.update(extra or {})
    for name, (split, rows) in files.items():
        path = root / "VA_Estimation_Challenge" / split / f"{name}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("valence,arousal\n" + "\n".join(rows) + "\n")
    for name in media_names:
        place_clip(clip, root / "media" / f"{name}.mp4")
    return root


def affwild_expected(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(valence, arousal, valid) of a fixture file as the corpus defines them."""
    pairs = [tuple(float(x) for x in row.split(",")) for row in AFFWILD_VALUES[name]]
    valid = np.array([v != -5 and a != -5 for v, a in pairs])
    return (np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), valid)


# ---- CMU-MOSEI -----------------------------------------------------------------------------------
MOSEI_LABELS = {
    "-3g5yACwYnA": ([[1.5, 1.0, 0.0, 0.0, 0.333, 0.0, 0.0], [-0.5, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]],
                    [[0.0, 0.3], [0.3, 0.7]]),
    "abc_DEF-12": ([[0.0, 0.0, 0.0, 1.666, 0.0, 0.0, 0.0]], [[0.1, 0.6]]),
}


def write_mosei_csd(root: Path, clip: Path, *, folds: bool = True, words: bool = True,
                    labels: dict[str, tuple[list[list[float]], list[list[float]]]] | None = None) -> Path:
    """CMU SDK computational sequences (HDF5) + the standard folds file + full videos."""
    import h5py

    with h5py.File(root / "CMU_MOSEI_Labels.csd", "w") as h5:
        data = h5.create_group("All Labels").create_group("data")
        h5["All Labels"].create_group("metadata")
        for vid, (feats, intervals) in (labels or MOSEI_LABELS).items():
            group = data.create_group(vid)
            group["features"] = np.asarray(feats, dtype=np.float32)
            group["intervals"] = np.asarray(intervals, dtype=np.float64)
    if words:
        with h5py.File(root / "CMU_MOSEI_TimestampedWords.csd", "w") as h5:
            data = h5.create_group("words").create_group("data")
            group = data.create_group("-3g5yACwYnA")
            group["features"] = np.array([[b"hello"], [b"sp"], [b"caf\xc3\xa9"], [b"world"]])
            group["intervals"] = np.array([[0.0, 0.1], [0.1, 0.2], [0.2, 0.28], [0.35, 0.6]])
    if folds:
        (root / "cmu_mosei_std_folds.py").write_text(
            "standard_train_fold=['-3g5yACwYnA']\n\nstandard_valid_fold=['abc_DEF-12']\n\n"
            "standard_test_fold=['zzz']\n")
    for vid in ("-3g5yACwYnA", "abc_DEF-12"):
        place_clip(clip, root / "Videos" / f"{vid}.mp4")
    return root


def write_mosei_csv(root: Path, clip: Path) -> Path:
    """SCD-MMPSR's ``dev_full_with_description.csv`` + full videos."""
    header = ["video_name", "text", "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise",
              "Other", "text_llm", "sum_bart-large-cnn"]
    with (root / "dev_full_with_description.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerow(["-3g5yACwYnA_0.0000_0.3000", "well, I think so", 0, 0.5, 0, 0, 0.5, 0, 0, 0, "x",
                         "y"])
        writer.writerow(["abc_DEF-12_0.1000_0.6000", "no", 1, 0, 0, 0, 0, 0, 0, 0, "x", "y"])
    for vid in ("-3g5yACwYnA", "abc_DEF-12"):
        place_clip(clip, root / "Videos" / f"{vid}.mp4")
    return root


# ---- FIv2: Python 2 pickles ----------------------------------------------------------------------
@dataclass(frozen=True)
class Py2Float64:
    """A ``numpy.float64`` as numpy 1.x under Python 2 pickled it (what the official FIv2 files hold)."""

    value: float


_SCALAR_MEMO, _DTYPE_MEMO = 250, 251  # memo slots: the scalar global and the dtype, reused as Python 2 did


def py2_pickle(obj: Any) -> bytes:
    """Protocol-2 pickle as Python 2 wrote it: ``str`` as byte strings (here UTF-8 bytes); numpy float64
    scalars (:class:`Py2Float64`) as ``numpy.core.multiarray.scalar(dtype('f8', 0, 1) + state, bytes)``."""
    memo: set[int] = set()

    def dump(value: Any) -> bytes:
        if isinstance(value, Py2Float64):
            if _SCALAR_MEMO in memo:
                head = bytes([ord("h"), _SCALAR_MEMO, ord("h"), _DTYPE_MEMO])  # BINGET x2
            else:
                memo.update({_SCALAR_MEMO, _DTYPE_MEMO})
                state = b"(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t"
                head = (b"cnumpy.core.multiarray\nscalar\nq" + bytes([_SCALAR_MEMO])
                        + b"cnumpy\ndtype\nU\x02f8K\x00K\x01\x87R" + state + b"bq" + bytes([_DTYPE_MEMO]))
            return head + b"U\x08" + struct.pack("<d", value.value) + b"\x86R"
        if isinstance(value, dict):
            body = b"".join(dump(k) + dump(v) for k, v in value.items())
            return b"}" + (b"(" + body + b"u" if value else b"")
        if isinstance(value, str):
            raw = value.encode("utf-8")
            return (b"U" + bytes([len(raw)]) if len(raw) < 256 else b"T" + struct.pack("<I", len(raw))) + raw
        if isinstance(value, float):
            return b"G" + struct.pack(">d", value)
        raise TypeError(type(value))

    return b"\x80\x02" + dump(obj) + b"."


FIV2_SCORES = {
    "train": {"LNM1i-a9q_A.005.mp4": 0.5, "zzZ-0001.002.mp4": 0.25},
    "val": {"Val_clip.001.mp4": 0.75},
}
FIV2_TRAITS = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "interview", "openness")


def write_fiv2(root: Path, clip: Path) -> Path:
    """``annotation_*.pkl`` / ``transcription_*.pkl`` (Py2 style and Py3 protocol 2) + clips."""
    import pickle

    # As released: the interview scores are numpy float64 scalars, the traits plain floats.
    ann_train = {t: {c: Py2Float64(s + 0.01 * k) if t == "interview" else s + 0.01 * k
                     for c, s in FIV2_SCORES["train"].items()}
                 for k, t in enumerate(FIV2_TRAITS)}
    (root / "annotation_training.pkl").write_bytes(py2_pickle(ann_train))
    (root / "transcription_training.pkl").write_bytes(py2_pickle(
        {"LNM1i-a9q_A.005.mp4": "Café au lait, señor", "zzZ-0001.002.mp4": "plain text"}))
    # Re-saved under Python 3 with numpy 2: numpy._core scalars, raw bytes through _codecs.encode.
    ann_val = {t: {c: np.float64(v) for c, v in FIV2_SCORES["val"].items()} for t in FIV2_TRAITS}
    (root / "annotation_validation.pkl").write_bytes(pickle.dumps(ann_val, protocol=2))
    (root / "transcription_validation.pkl").write_bytes(pickle.dumps({"Val_clip.001.mp4": "naïve ünïcode"},
                                                                     protocol=2))
    for name in ("LNM1i-a9q_A.005", "zzZ-0001.002", "Val_clip.001"):
        place_clip(clip, root / "videos" / f"{name}.mp4")
    return root


class HostilePayload:
    """Unpickling this would run a shell command (it must never be)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        import os

        return (os.system, (f"touch {self.marker}",))


# ---- BAH -----------------------------------------------------------------------------------------
BAH_LINES = {
    "train.txt": ["Videos/P001/Visite_1/P001_Question_1_2023_1200_Video.mp4,1,yes, well, I am not sure,"
                  " maybe",
                  "Videos/P002/Visite_1/P002_Question_3_2023_1300_Video.mp4,0,no"],
    "val.txt": ["Videos/P003/Visite_1/P003_Question_2_2023_1400_Video.mp4,0,"],
    "test.txt": ["Videos/P004/Visite_1/P004_Question_5_2023_1500_Video.mp4,1,hmm, \"quoted\", text"],
}


def write_bah(root: Path, clip: Path, *, lines: dict[str, list[str]] | None = None) -> Path:
    """Split files, ``class_id.yaml`` and the videos they name."""
    split_dir = root / "dataset-splits" / "video-level" / "BAH_DB" / "split-0"
    split_dir.mkdir(parents=True)
    for name, rows in (lines or BAH_LINES).items():
        (split_dir / name).write_text("\n".join(rows) + "\n")
        for row in rows:
            place_clip(clip, root / row.split(",", 1)[0])
    (root / "class_id.yaml").write_text("With A-H: 1\nNo A-H: 0\n")
    return root


# ---- MELD ----------------------------------------------------------------------------------------
MELD_HEADER = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID",
               "Season",
               "Episode", "StartTime", "EndTime"]
MELD_ROWS = {
    "train": [[1, "also I was the point person on my company's transition, from the KL-5 to GR-6 system.",
               "Chandler", "neutral", "neutral", 0, 0, 8, 21, "00:16:16,059", "00:16:21,731"],
              [2, "You must've had your hands full.", "The Interviewer", "neutral", "neutral", 0, 1, 8, 21,
               "00:16:21,940", "00:16:23,442"]],
    "dev": [[1, "Oh my God, he's lost it.", "Phoebe", "sadness", "negative", 0, 0, 4, 7,
             "00:20:57,256", "00:21:00,049"]],
    "test": [[1, "Why do all you're coffee mugs have numbers on the bottom?", "Mark", "surprise", "positive",
              0, 0, 3, 19, "00:14:38,127", "00:14:40,378"]],
}
MELD_FOLDERS = {"train": "train_splits", "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}


def write_meld(root: Path, clip: Path, *, rows: dict[str, list[list[Any]]] | None = None) -> Path:
    """``*_sent_emo.csv`` tables + ``dia{D}_utt{U}.mp4`` clips in the split folders."""
    for split, table in (rows or MELD_ROWS).items():
        with (root / f"{split}_sent_emo.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(MELD_HEADER)
            writer.writerows(table)
        for row in table:
            place_clip(clip, root / MELD_FOLDERS[split] / f"dia{row[5]}_utt{row[6]}.mp4")
    return root


# ---- SEWA ----------------------------------------------------------------------------------------
def sewa_rows(n: int, seed: int) -> np.ndarray:
    """(n, 3) arousal/valence/liking values in [-1, 1]."""
    return np.random.default_rng(seed).uniform(-0.9, 0.9, size=(n, 3)).round(6)


def write_sewa(root: Path, clip: Path, *, names: tuple[str, ...] = ("Train_DE_01", "Devel_HU_02"),
               n_rows: int = 8) -> Path:
    """The release layout: ``labels/<name>.csv`` (semicolons, quoted names, 10 Hz), feature folders with
    the same file names, and ``media/<name>.mp4``."""
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        values = sewa_rows(n_rows, k)
        lines = ["name;timestamp;arousal;valence;liking"]
        lines += [f"'{name}';{i / 10:.1f};{a};{v};{li}" for i, (a, v, li) in enumerate(values)]
        (root / "labels" / f"{name}.csv").write_text("\n".join(lines) + "\n")
        place_clip(clip, root / "media" / f"{name}.mp4")
        # As released: feature folders beside labels/ with the same file names.
        for folder, header in (("visual_features_xbow", "name;frameTime;xbow_0"),
                               ("audio_features_egemaps", "name;frameTime;F0semitoneFrom27.5Hz")):
            (root / folder).mkdir(exist_ok=True)
            (root / folder / f"{name}.csv").write_text(f"{header}\n'{name}';0.0;0.5\n")
    return root


@pytest.fixture(scope="session")
def corpus_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tiny clip (8 frames at 10 fps, 64x64, with audio), copied wherever a corpus needs media."""
    from affectcache.extractors.testing.synthetic import write_test_clip

    return write_test_clip(tmp_path_factory.mktemp("corpus_clip") / "clip.mp4",
                           duration_s=CLIP_FRAMES / CLIP_FPS, fps=CLIP_FPS)
