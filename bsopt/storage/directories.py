"""A directory as one archive: how a ``--command`` trial's checkpoint directory is kept.

The directory a training script writes its checkpoints to is on the local disk of the
machine that runs it. Packed after every reported epoch into the trial's checkpoint (in the
study's artifact store), it follows a retry to any machine, where it is unpacked before the
script starts again. Archives are uncompressed tar files (checkpoints of weights barely
compress); unpacking refuses members that would land outside the directory, links to
outside it and device files (``tarfile``'s ``data`` filter).
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path

MAX_ARCHIVE_BYTES = 1 << 30  # held in memory and in one database row: PostgreSQL's limit


class DirectoryTooLarge(Exception):
    """The directory holds more than the archive may: it is not packed."""


def directory_bytes(path: Path) -> int:
    """The total size of the regular files under ``path`` (links are not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                stat = os.lstat(os.path.join(root, name))
            except FileNotFoundError:  # removed while we walk: the script is still writing
                continue
            total += stat.st_size
    return total


def pack_directory(path: Path, limit: int = MAX_ARCHIVE_BYTES) -> bytes:
    """The tar archive of everything under ``path`` (relative names).

    Raises:
        DirectoryTooLarge: the files add up to more than ``limit`` bytes.
    """
    size = directory_bytes(path)
    if size > limit:
        raise DirectoryTooLarge(f"{path} holds {size / 2**20:.0f} MiB, more than the "
                                f"{limit / 2**20:.0f} MiB a checkpoint keeps")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in sorted(path.iterdir()):
            archive.add(entry, arcname=entry.name)
    return buffer.getvalue()


def unpack_directory(data: bytes, path: Path) -> None:
    """Make ``path`` hold exactly what the archive ``data`` holds.

    Raises:
        tarfile.TarError: the archive is damaged, or a member would escape ``path``.
    """
    clear_directory(path)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
        archive.extractall(path, filter="data")


def clear_directory(path: Path) -> None:
    """Make ``path`` an empty directory (creating it, and its parents, if needed)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)
