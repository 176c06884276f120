"""The settings of a process the compiler owns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from streamtensor.cli import main
from streamtensor.host import use_small_pages


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
