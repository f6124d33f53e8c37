"""The FTP quota ledger on its own: usage on disk + reserved, shared by concurrent uploads."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from aionet.ftp.quota import QuotaExceeded, QuotaLedger, usage
from tests.waiting import wait_until

ROOT = Path("/home/alice")


class Disk:
    """A stand-in for the walk: returns ``bytes``, counts its calls, may be held or fail."""

    def __init__(self, size: int = 0) -> None:
        self.size = size
        self.walks = 0
        self.gate = threading.Event()
        self.gate.set()
        self.error: OSError | None = None

    def __call__(self, root: Path) -> int:
        self.walks += 1
        self.gate.wait(5)
        if self.error is not None:
            raise self.error
        return self.size


async def test_concurrent_uploads_share_the_quota_and_a_failure_frees_at_once() -> None:
    disk = Disk(1000)
    ledger = QuotaLedger(disk)
    a = await ledger.reserve(ROOT, 5000, credit=0, start=0)
    b = await ledger.reserve(ROOT, 5000, credit=0, start=0)
    a.grow(2000)
    b.grow(1500)
    assert ledger.usage(ROOT) == (1000, 3500)
    with pytest.raises(QuotaExceeded):
        b.grow(2001)  # 1000 + 2000 + 2001 > 5000
    assert ledger.usage(ROOT) == (1000, 2000)  # b's 1500 are free already
    a.grow(4000)  # exactly the quota
    with pytest.raises(QuotaExceeded):
        a.grow(4001)
    b.release()  # idempotent: released once
    assert ledger.usage(ROOT) == (None, 0)  # nothing in flight: forgotten, walk next time
    assert disk.walks == 1


async def test_a_replacement_is_charged_its_growth_and_settled_at_commit() -> None:
    ledger = QuotaLedger(Disk(4000))  # a 3000-byte file among them
    up = await ledger.reserve(ROOT, 5000, credit=3000, start=3000)  # APPE: keeps all 3000
    up.grow(3500)
    assert up.reserved == 500 and ledger.usage(ROOT) == (4000, 500)
    other = await ledger.reserve(ROOT, 5000, credit=0, start=0)
    with pytest.raises(QuotaExceeded):
        other.grow(501)
    other = await ledger.reserve(ROOT, 5000, credit=0, start=0)
    other.grow(400)
    up.commit(3500, 3000)
    assert ledger.usage(ROOT) == (4500, 400)  # on disk now, exactly
    other.grow(500)
    with pytest.raises(QuotaExceeded):
        other.grow(501)
    with pytest.raises(QuotaExceeded):
        other.commit(500, 0)  # a failed upload stays failed
    assert ledger.usage(ROOT) == (None, 0)


async def test_commit_checks_the_credit_against_the_file_really_replaced() -> None:
    ledger = QuotaLedger(Disk(3000))  # a 3000-byte file "a"
    up = await ledger.reserve(ROOT, 5000, credit=3000, start=0)  # STOR a
    up.grow(2500)  # smaller than "a": nothing reserved
    assert up.reserved == 0
    keeper = await ledger.reserve(ROOT, 5000, credit=0, start=0)
    keeper.grow(2000)  # 3000 + 2000 = the quota
    # meanwhile "a" was deleted (the ledger still counts it on disk: an over-estimate), so the
    # upload grows the home by 2500, not by 0; 3000 + 2000 + 2500 does not fit
    with pytest.raises(QuotaExceeded):
        up.commit(2500, 0)
    assert ledger.usage(ROOT) == (3000, 2000)
    shrink = await ledger.reserve(ROOT, 5000, credit=3000, start=0)
    shrink.commit(1000, 3000)  # "a" replaced by a smaller file: room freed on disk
    assert ledger.usage(ROOT) == (1000, 2000)
    keeper.release()


async def test_over_quota_refuses_at_start_except_what_shrinks() -> None:
    ledger = QuotaLedger(Disk(6000))  # over a 5000 quota (it was lowered)
    with pytest.raises(QuotaExceeded):
        await ledger.reserve(ROOT, 5000, credit=0, start=0)  # a new file
    with pytest.raises(QuotaExceeded):
        await ledger.reserve(ROOT, 5000, credit=2000, start=2000)  # APPE to a 2000-byte file
    ok = await ledger.reserve(ROOT, 5000, credit=2000, start=0)  # STOR over it
    ok.grow(500)  # shrinking it is allowed: 6000 - 2000 + 500 <= 5000
    ok.commit(500, 2000)
    assert ledger.usage(ROOT) == (None, 0)


async def test_one_walk_for_uploads_starting_together_and_a_failed_walk_is_retried() -> None:
    disk = Disk(100)
    disk.gate.clear()
    ledger = QuotaLedger(disk)
    starting = [asyncio.create_task(ledger.reserve(ROOT, 1000, credit=0, start=0)) for _ in "ab"]
    # Both tasks run their first step in the same turn of the loop, before the thread walks.
    await wait_until(lambda: disk.walks == 1, what="the walk holding both uploads")
    disk.gate.set()
    a, b = await asyncio.gather(*starting)
    assert disk.walks == 1 and ledger.usage(ROOT) == (100, 0)
    a.release()
    b.release()
    disk.error = PermissionError(13, "denied")
    with pytest.raises(PermissionError):
        await ledger.reserve(ROOT, 1000, credit=0, start=0)
    assert ledger.usage(ROOT) == (None, 0)
    disk.error = None
    c = await ledger.reserve(ROOT, 1000, credit=0, start=0)
    assert disk.walks == 3
    c.release()


async def test_a_cancelled_start_releases_its_place() -> None:
    disk = Disk(0)
    disk.gate.clear()
    ledger = QuotaLedger(disk)
    starting = asyncio.create_task(ledger.reserve(ROOT, 1000, credit=0, start=0))
    await wait_until(lambda: disk.walks == 1, what="the upload waiting for its walk")
    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting
    assert ledger.usage(ROOT) == (None, 0)
    disk.gate.set()


def test_usage_skips_uploads_in_flight(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 10)
    (tmp_path / "g").write_bytes(b"x" * 5)
    (tmp_path / "d" / ".aionet-upload-0123456789ab-f").write_bytes(b"x" * 1000)
    assert usage(tmp_path) == 15
