"""The README's worked example runs as written (its files are extracted and run with pytest)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLE = re.compile(r"<!-- readme-example: (\S+) -->\s*```python\n(.*?)```", re.S)


def test_worked_example(pytester: pytest.Pytester, inner_pytest: Any) -> None:
    files = dict(EXAMPLE.findall(README.read_text(encoding="utf-8")))
    assert set(files) == {"app.py", "test_app.py"}
    for name, source in files.items():
        pytester.path.joinpath(name).write_text(source, encoding="utf-8")
    result = inner_pytest("-v")
    result.assert_outcomes(passed=6)


ROOT_README = Path(__file__).resolve().parents[3] / "README.md"


def test_root_readme_example(pytester: pytest.Pytester, inner_pytest: Any) -> None:
    files = dict(EXAMPLE.findall(ROOT_README.read_text(encoding="utf-8")))
    assert set(files) == {"test_transfer.py"}
    for name, source in files.items():
        pytester.path.joinpath(name).write_text(source, encoding="utf-8")
    result = inner_pytest("-v")
    result.assert_outcomes(passed=1)
