"""A checkpoint directory packed into one archive and unpacked elsewhere, as it was."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from bsopt.storage.directories import DirectoryTooLarge, pack_directory, unpack_directory


def tree(path: Path) -> dict[str, bytes | str]:
    out: dict[str, bytes | str] = {}
    for p in sorted(path.rglob("*")):
        key = str(p.relative_to(path))
        out[key] = f"-> {os.readlink(p)}" if p.is_symlink() else (
            p.read_bytes() if p.is_file() else "dir")
    return out


def test_a_directory_comes_back_as_it_was_and_replaces_what_was_there(tmp_path: Path) -> None:
    source = tmp_path / "a"
    (source / "sub" / "deeper").mkdir(parents=True)
    (source / "state.pt").write_bytes(os.urandom(100_000))
    (source / "sub" / "deeper" / "log.txt").write_text("epoch 3\n")
    (source / "last").symlink_to("state.pt")
    target = tmp_path / "b"
    target.mkdir()
    (target / "stale.txt").write_text("from another attempt")
    unpack_directory(pack_directory(source), target)
    assert tree(target) == tree(source)


def test_an_empty_directory_packs_and_unpacks_empty(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    unpack_directory(pack_directory(tmp_path / "a"), tmp_path / "b")
    assert list((tmp_path / "b").iterdir()) == []


def test_too_large_a_directory_is_not_packed(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * 2000)
    with pytest.raises(DirectoryTooLarge, match="more than"):
        pack_directory(tmp_path, limit=1000)


@pytest.mark.parametrize("name, link", [("../escaped.txt", None), ("link", "/etc/passwd"),
                                        ("link", "../../escaped.txt")])
def test_an_archive_cannot_write_outside_its_directory(tmp_path: Path, name: str,
                                                       link: str | None) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        member = tarfile.TarInfo(name)
        if link:
            member.type, member.linkname = tarfile.SYMTYPE, link
            archive.addfile(member)
        else:
            member.size = 3
            archive.addfile(member, io.BytesIO(b"bad"))
    with pytest.raises(tarfile.TarError):
        unpack_directory(buffer.getvalue(), tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_an_absolute_name_lands_inside_the_directory(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        member = tarfile.TarInfo(str(tmp_path / "escaped.txt"))
        member.size = 3
        archive.addfile(member, io.BytesIO(b"bad"))
    unpack_directory(buffer.getvalue(), tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()
    assert (tmp_path / "target" / str(tmp_path / "escaped.txt").lstrip("/")).read_bytes() == b"bad"
