"""Locks: one retrain or migration at a time; publishers take turns."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from facestore.errors import BusyError
from facestore.locks import file_lock, publish_lock


def test_a_held_file_lock_makes_the_second_taker_busy_at_once(tmp_path: Path) -> None:
    with (
        file_lock(tmp_path / "x.lock", "retrain"),
        pytest.raises(BusyError, match="Another facestore retrain"),
        file_lock(tmp_path / "x.lock", "retrain"),
    ):
        pass
    with file_lock(tmp_path / "x.lock", "retrain"):  # released: free again
        pass


def test_publishers_wait_for_each_other(tmp_path: Path) -> None:
    order: list[str] = []
    entered = threading.Event()
    release = threading.Event()

    def first() -> None:
        with publish_lock(tmp_path):
            entered.set()
            release.wait(30)
            order.append("first")

    thread = threading.Thread(target=first)
    thread.start()
    assert entered.wait(30)

    def second_publisher() -> None:
        with publish_lock(tmp_path):
            order.append("second")

    second = threading.Thread(target=second_publisher)
    second.start()
    second.join(0.2)
    assert second.is_alive() and order == []  # blocked behind the first publisher
    release.set()
    thread.join(30)
    second.join(30)
    assert order == ["first", "second"]
