"""The one atomic writer: every artifact write either lands whole or leaves nothing behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from synthetic import make_run_folder

from polaris_lib import artifacts
from polaris_lib.report import build_report
from polaris_lib.report.html import write_page


def _disk_full(monkeypatch):
    """The disk fills during the write: half the bytes land, then ENOSPC (also at the rename)."""

    def half_then_full(self, data):
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    monkeypatch.setattr(os, "replace", full)


def test_atomic_writers_leave_nothing_on_a_full_disk(tmp_path, monkeypatch):
    _disk_full(monkeypatch)
    for write in (
        lambda: artifacts.write_json(tmp_path / "a.json", {"x": 1}),
        lambda: artifacts.write_bytes(tmp_path / "b.bin", b"x" * 1000),
        lambda: artifacts.write_text(tmp_path / "c.txt", "x" * 1000, mode=0o644),
    ):
        with pytest.raises(OSError):
            write()
    assert list(tmp_path.iterdir()) == []


def test_report_page_leaves_no_tmp_on_a_full_disk(tmp_path, monkeypatch):
    """Issue 13 item 9: the report writer left a 300 KB .tmp behind."""
    (tmp_path / "report.html").write_text("old page")
    _disk_full(monkeypatch)
    with pytest.raises(OSError):
        write_page(tmp_path / "report.html", "<html>" + "x" * 300_000)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]
    assert (tmp_path / "report.html").read_text() == "old page"  # the old page is kept


def test_report_figures_are_never_left_truncated(tmp_path, monkeypatch):
    """Issue 13 item 9: with the disk full, fig_training.png was left truncated."""
    run = make_run_folder(tmp_path / "run")
    (run / artifacts.REPORT).mkdir()
    _disk_full(monkeypatch)
    with pytest.raises(OSError):
        build_report(run)
    left = sorted(p.name for p in (run / artifacts.REPORT).iterdir())
    assert left == [] and not (run / "report.html").exists()
    assert not list(run.rglob("*.tmp"))


def test_page_is_readable_by_others(tmp_path):
    path = write_page(tmp_path / "report.html", "<html></html>")
    assert path.stat().st_mode & 0o777 == 0o644 and path.read_text() == "<html></html>"


def test_torn_line_in_the_middle_of_a_log_names_the_file_and_line(tmp_path):
    path = tmp_path / "reward_log.jsonl"
    artifacts.append_jsonl(path, [{"step": 1}])
    with open(path, "a") as f:
        f.write('{"step": 2, "prob\n')  # torn, then more lines were appended after it
    artifacts.append_jsonl(path, [{"step": 3}])
    with pytest.raises(ValueError, match=r"reward_log.jsonl: line 2 of 3 is not valid JSON") as e:
        artifacts.read_jsonl(path)
    assert "delete line 2" in str(e.value)
    path.write_text('{"step": 1}\n{"step": 2, "pr')  # a torn LAST line is still tolerated
    assert artifacts.read_jsonl(path) == [{"step": 1}]
