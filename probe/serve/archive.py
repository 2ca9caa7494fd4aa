"""The evidence archive: every measurement as one JSON line, rotated by day and size.

Files are `results-YYYY-MM-DD.N.jsonl` under a data directory. Each record is written whole and
flushed before the next, so a crash (even `kill -9`) loses no finished record; a torn last line
(a crash in the middle of a write) is skipped on read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

DEFAULT_MAX_BYTES = 64 << 20


class Archive:
    def __init__(self, directory: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._file: IO[bytes] | None = None
        self._day = ""
        self._size = 0

    def append(self, record: bytes, finished: float) -> None:
        """One record (a line of JSON, `Result.dumps`), measured at `finished`."""
        line = record + b"\n"
        size = len(line)
        day = time.strftime("%Y-%m-%d", time.gmtime(finished or time.time()))
        if self._file is None or day != self._day or self._size + size > self.max_bytes:
            self._rotate(day, size)
        assert self._file is not None
        self._file.write(line)
        self._file.flush()  # the record is the kernel's now: a killed process does not lose it
        self._size += size

    def _rotate(self, day: str, need: int) -> None:
        """Open the first file of `day` with room for `need` bytes (an empty one always has)."""
        self.close()
        self.directory.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            path = self.directory / f"results-{day}.{n}.jsonl"
            used = path.stat().st_size if path.exists() else 0
            if used == 0 or used + need <= self.max_bytes:
                break
            n += 1
        self._file = path.open("ab")
        self._day = day
        self._size = path.stat().st_size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def files(paths: Iterable[str | Path]) -> list[Path]:
    """Archive files named directly, or found in directories, in order."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob("results-*.jsonl"), key=_order) if p.is_dir() else [p])
    return out


def _order(path: Path) -> tuple[str, int]:
    stem = path.name.removeprefix("results-").removesuffix(".jsonl")
    day, _, n = stem.rpartition(".")
    return day, int(n) if n.isdigit() else 0


Skipped = Callable[[str], None]


def read(paths: Iterable[str | Path], skipped: Skipped | None = None) -> Iterator[dict[str, Any]]:
    """Every record; a line that is not a whole JSON object (a torn write, a hostile edit) is
    skipped, and `skipped` told where and why (`file:line: reason`)."""
    for path in files(paths):
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                try:
                    record = json.loads(line)
                except (ValueError, RecursionError) as exc:
                    reason = "nested too deeply" if isinstance(exc, RecursionError) else "not JSON"
                    if skipped is not None and line.strip():
                        skipped(f"{path}:{n}: {reason}")
                    continue
                if isinstance(record, dict):
                    record["_where"] = f"{path}:{n}"
                    yield record
                elif skipped is not None:
                    skipped(f"{path}:{n}: not a JSON object")
