"""Inputs and results on disk, so nothing the API produced is ever lost.

Layout under ``SDBOT_DATA_DIR``::

    inputs/<job>.img           the prepared request image (for Re-roll and Retry)
    results/<job>/<n>.<ext>    the API's images, exactly as they came

A result directory is written completely under a temporary name, fsynced and renamed into
place, so "the directory exists" means "every image of the job is on disk" — the ledger's
crash recovery relies on that to decide between capture and release.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

_KEY = re.compile(r"[0-9A-Za-z_-]{1,64}")


@dataclass(frozen=True)
class StoredImage:
    filename: str
    data: bytes


def _check_key(job_key: str) -> str:
    # Keys become path components: refuse anything that could escape the directory.
    if not _KEY.fullmatch(job_key):
        raise ValueError(f"invalid job key {job_key!r}")
    return job_key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class ResultStore:
    def __init__(self, data_dir: Path) -> None:
        self.inputs = data_dir / "inputs"
        self.results = data_dir / "results"
        self.inputs.mkdir(parents=True, exist_ok=True)
        self.results.mkdir(parents=True, exist_ok=True)

    # --- inputs ---------------------------------------------------------------------------

    def save_input(self, job_key: str, data: bytes) -> Path:
        path = self.inputs / f"{_check_key(job_key)}.img"
        if path.exists():
            return path  # the same interaction delivered twice: same input
        # A unique temporary name: two deliveries of one interaction may race here.
        tmp = self.inputs / f".{job_key}.{secrets.token_hex(4)}.tmp"
        _write_durably(tmp, data)
        tmp.replace(path)
        return path

    def load_input(self, job_key: str) -> bytes | None:
        path = self.inputs / f"{_check_key(job_key)}.img"
        return path.read_bytes() if path.exists() else None

    # --- results --------------------------------------------------------------------------

    def result_dir(self, job_key: str) -> Path:
        return self.results / _check_key(job_key)

    def save_result(self, job_key: str, images: list[StoredImage]) -> Path:
        final = self.result_dir(job_key)
        if final.exists():
            return final  # already saved by an earlier attempt: results are immutable
        tmp = self.results / f".{job_key}.{secrets.token_hex(4)}.partial"
        tmp.mkdir()
        for image in images:
            _write_durably(tmp / image.filename, image.data)
        _fsync_dir(tmp)
        try:
            tmp.rename(final)
        except OSError:  # a concurrent save won: results are immutable, keep that one
            shutil.rmtree(tmp, ignore_errors=True)
        _fsync_dir(self.results)
        return final

    def has_result(self, job_key: str) -> bool:
        return self.result_dir(job_key).is_dir()

    def load_result(self, job_key: str) -> list[StoredImage]:
        folder = self.result_dir(job_key)
        if not folder.is_dir():
            return []
        return [
            StoredImage(p.name, p.read_bytes())
            for p in sorted(folder.iterdir(), key=lambda p: p.name)
            if p.is_file()
        ]
