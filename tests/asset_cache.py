"""Model assets for tests: fetched once per test process through the real asset mechanism.

Set ``AFFECTCACHE_TEST_HOME`` to a folder to keep the fetched files between runs (fetched into it on
first use); otherwise they go to a temporary ``AFFECTCACHE_HOME`` removed at exit.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

from affectcache.extractors.common.assets import HOME_ENV, available_assets, fetch_asset

TEST_HOME_ENV = "AFFECTCACHE_TEST_HOME"


@functools.lru_cache(maxsize=1)
def ensure_test_assets() -> Path:
    """Point ``AFFECTCACHE_HOME`` at the test cache and fetch every registered asset into it."""
    configured = os.environ.get(TEST_HOME_ENV)
    if configured:
        home = Path(configured)
    else:
        home = Path(tempfile.mkdtemp(prefix="affectcache-test-home-"))
        atexit.register(shutil.rmtree, home, True)
    os.environ[HOME_ENV] = str(home)
    for name in available_assets():
        fetch_asset(name)
    return home
