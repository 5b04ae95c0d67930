"""Where the dashboard keeps uploads and replay stores, and how they are always removed.

Every temporary folder the dashboard makes lives under :func:`temp_root`
(``$TMPDIR/pdm-dashboard-<uid>``, mode 0700, checked to be this user's own directory and
not a symlink): an uploaded recording in an :class:`UploadFolder` for the browser session
that uploaded it, a commissioning replay's data directory for as long as the replay runs.
They go away

* when done with: a replay's folder when the replay ends, however it ends; an upload's
  when it is replaced, refused, or its session ends (:class:`UploadFolder` removes itself
  when the session's state is dropped, Streamlit's ``server.disconnectedSessionTTL``
  after the browser left, and at interpreter exit);
* whatever happened to the process (kill -9, power loss): :func:`sweep_stale` removes
  what is older than :data:`STALE_AFTER_S` when the dashboard starts and when the
  commissioning page is first shown.

Uploads are limited to :func:`max_upload_mb` MB (``PDM_DASHBOARD_MAX_UPLOAD_MB``,
default 200), enforced by Streamlit's server (``server.maxUploadSize``, set by
``pdm-edge dashboard``) and again when the file is saved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
import weakref
from pathlib import Path

from pdm.errors import ConfigError

__all__ = ["STALE_AFTER_S", "UploadFolder", "max_upload_mb", "sweep_stale", "temp_root"]

#: Temporary folders older than this (by modification time) are left-overs: removed.
#: Longer than any replay (15 min at most) and than a working session touches its upload.
STALE_AFTER_S = 6 * 3600.0


def max_upload_mb() -> int:
    """The upload limit, MB (``PDM_DASHBOARD_MAX_UPLOAD_MB``, default 200)."""
    text = os.environ.get("PDM_DASHBOARD_MAX_UPLOAD_MB", "200")
    try:
        mb = int(text)
    except ValueError:
        mb = 0
    if not 1 <= mb <= 100_000:
        raise ConfigError(f"PDM_DASHBOARD_MAX_UPLOAD_MB: a whole number of MB ≥ 1 (got {text!r})")
    return mb


def temp_root() -> Path:
    """``$TMPDIR/pdm-dashboard-<uid>``, made private; :class:`ConfigError` if it is not
    this user's own directory (a symlink or another user's folder planted in /tmp)."""
    root = Path(tempfile.gettempdir()) / f"pdm-dashboard-{os.getuid()}"
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        st = root.lstat()
    except OSError as exc:
        raise ConfigError(f"{root}: cannot make the dashboard's temporary folder: {exc}") from exc
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
        raise ConfigError(f"{root}: not a directory of this user; remove it")
    if stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(root, 0o700)
    return root


def sweep_stale(
    root: Path | None = None, *, older_than_s: float = STALE_AFTER_S, now: float | None = None
) -> int:
    """Remove what in ``root`` (default :func:`temp_root`) was last modified more than
    ``older_than_s`` ago; returns how many entries went. Never raises for one entry."""
    try:
        root = temp_root() if root is None else root
        entries = list(root.iterdir())
    except (OSError, ConfigError):
        return 0
    limit = (time.time() if now is None else now) - older_than_s
    removed = 0
    for entry in entries:
        with contextlib.suppress(OSError):
            st = entry.lstat()
            if st.st_mtime >= limit:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
    return removed


class UploadFolder:
    """A private folder for one session's upload, removed when this object goes.

    Keep it in the session's state: when Streamlit drops the session, the folder goes
    with it (``weakref.finalize``, which also runs at interpreter exit). :meth:`touch`
    keeps a long session's folder from :func:`sweep_stale`.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="upload-", dir=root or temp_root()))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def clear(self) -> None:
        """Remove what is in the folder (a replaced or refused upload); keep the folder."""
        for entry in self.path.iterdir() if self.path.is_dir() else ():
            with contextlib.suppress(OSError):
                entry.unlink()

    def touch(self) -> None:
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def remove(self) -> None:
        self._finalizer()

    @property
    def removed(self) -> bool:
        return not self._finalizer.alive
