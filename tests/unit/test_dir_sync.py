"""``DirSync``: concurrent callers share directory fsyncs, and none returns before an fsync
that began after its call has finished (group commit without giving up durability)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from aionet.storage.durable import DirSync


class Clock:
    """A global order of events across threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.n = 0

    def tick(self) -> int:
        with self.lock:
            self.n += 1
            return self.n


def test_callers_share_fsyncs_and_each_is_covered(tmp_path: Path) -> None:
    clock = Clock()
    fsyncs: list[tuple[int, int]] = []  # (began, ended)

    def slow_fsync(path: Path | str) -> None:
        began = clock.tick()
        time.sleep(0.02)
        fsyncs.append((began, clock.tick()))

    sync = DirSync(slow_fsync)
    calls: list[tuple[int, int]] = []  # (called, returned)

    def deliver() -> None:
        called = clock.tick()  # the change was made before this
        sync.sync(tmp_path)
        calls.append((called, clock.tick()))

    threads = [threading.Thread(target=deliver) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 32
    assert sync.calls == 32 and sync.fsyncs == len(fsyncs) < 16  # shared, not one each
    for called, returned in calls:
        # Some fsync began after the call and ended before the return.
        assert any(called < began and ended < returned for began, ended in fsyncs)


def test_a_failed_fsync_fails_every_caller_it_covered(tmp_path: Path) -> None:
    failing = threading.Event()
    failing.set()
    started = threading.Event()
    release = threading.Event()

    def fsync(path: Path | str) -> None:
        started.set()
        release.wait(5)
        if failing.is_set():
            raise OSError(5, "I/O error")

    sync = DirSync(fsync)
    errors: list[BaseException | None] = []

    def call() -> None:
        try:
            sync.sync(tmp_path)
            errors.append(None)
        except OSError as exc:
            errors.append(exc)

    first = threading.Thread(target=call)
    first.start()
    started.wait(5)
    waiting = [threading.Thread(target=call) for _ in range(3)]  # arrive during the fsync
    for t in waiting:
        t.start()
    time.sleep(0.05)
    release.set()  # the first fsync fails; the three waiting share the next, which fails too
    for t in [first, *waiting]:
        t.join(5)
    assert len(errors) == 4 and all(isinstance(e, OSError) for e in errors)
    failing.clear()
    sync.sync(tmp_path)  # the next caller starts afresh


def test_the_real_directory_fsync(tmp_path: Path) -> None:
    sync = DirSync()
    (tmp_path / "f").write_text("x")
    sync.sync(tmp_path)
    assert sync.fsyncs == 1
    with pytest.raises(FileNotFoundError):
        sync.sync(tmp_path / "missing")
