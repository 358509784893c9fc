"""Video id rules. Ids become store paths, so they are checked before anything is written."""

from __future__ import annotations

import re

from affectcache.store.errors import InvalidVideoIdError

# Letters, digits, '.', '_' and '-'; not starting with '.' (no hidden files, no '..'). A leading '-'
# is allowed because CMU-MOSEI ids such as '-3g5yACwYnA' start with one.
VIDEO_ID_PATTERN = re.compile(r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]*$")
MAX_VIDEO_ID_LENGTH = 200


def validate_video_id(video_id: object) -> str:
    """Return ``video_id`` if it is a safe store key, else raise :class:`InvalidVideoIdError`."""
    if not isinstance(video_id, str):
        raise InvalidVideoIdError(f"video id must be a string, got {type(video_id).__name__}: {video_id!r}")
    if not video_id or len(video_id) > MAX_VIDEO_ID_LENGTH or not VIDEO_ID_PATTERN.match(video_id):
        raise InvalidVideoIdError(
            f"invalid video id {video_id!r}: use 1-{MAX_VIDEO_ID_LENGTH} letters, digits, '.', '_' or '-', "
            "not starting with '.' (rename the item in the manifest)")
    return video_id
