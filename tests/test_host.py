"""The settings of a process the compiler owns."""

from __future__ import annotations

import os
import resource
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamtensor import cli
from streamtensor.cli import main
from streamtensor.host import CLI_MEMORY_SHARE, memory_cap, use_small_pages


@pytest.fixture
def restored_pages() -> Iterator[None]:
    before = np._core.multiarray._get_madvise_hugepage()
    yield
    np._core.multiarray._set_madvise_hugepage(before)


def test_small_pages(restored_pages: None) -> None:
    np._core.multiarray._set_madvise_hugepage(True)
    use_small_pages()
    assert not np._core.multiarray._get_madvise_hugepage()


def test_the_cli_runs_on_small_pages(restored_pages: None, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    np._core.multiarray._set_madvise_hugepage(True)
    assert main(["report", str(tmp_path / "missing")]) == 2  # any command: the setting comes first
    assert "streamtensor: error:" in capsys.readouterr().err
    assert not np._core.multiarray._get_madvise_hugepage()


def test_memory_cap_turns_the_oom_killer_into_a_memory_error() -> None:
    before = resource.getrlimit(resource.RLIMIT_AS)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with memory_cap(0.25):
        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        assert 0 < soft <= 0.25 * total
        with pytest.raises(MemoryError):
            bytearray(soft)  # the whole cap at once: over it, as the address space holds more
    assert resource.getrlimit(resource.RLIMIT_AS) == before


def test_a_cli_command_runs_under_the_cap(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[int] = []
    monkeypatch.setattr(cli, "_report", lambda args: seen.append(resource.getrlimit(resource.RLIMIT_AS)[0]))
    assert main(["report", str(tmp_path)]) == 0
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert seen and 0 < seen[0] <= CLI_MEMORY_SHARE * total
