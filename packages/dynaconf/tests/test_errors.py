from __future__ import annotations

from pathlib import Path

import pytest

from structum_lab.config import ConfigError
from structum_lab.plugins.dynaconf import DynaconfConfigProvider


def write(root: Path, relative: str, text: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def discover(root: Path) -> DynaconfConfigProvider:
    return DynaconfConfigProvider(root_path=root, environ={}).auto_discover()


def test_malformed_app_file_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "config/app/database.toml", '[default]\npool_size = 5\nurl = "oops\n')
    with pytest.raises(ConfigError) as caught:
        discover(tmp_path)
    error = caught.value
    assert str(path) in str(error)
    assert "line 3" in str(error)
    assert error.source == str(path)
    assert error.line == 3


def test_malformed_secrets_file_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "config/.secrets.toml", "[database]\n\n\nurl = = 1\n")
    with pytest.raises(ConfigError, match=r"\.secrets\.toml, line 4") as caught:
        discover(tmp_path)
    assert (caught.value.source, caught.value.line) == (str(path), 4)


def test_error_at_end_of_document(tmp_path: Path) -> None:
    write(tmp_path, "config/app/database.toml", "[default]\nurl =")
    with pytest.raises(ConfigError) as caught:
        discover(tmp_path)
    assert caught.value.line == 2


def test_colon_outside_an_inline_table_is_still_an_error(tmp_path: Path) -> None:
    write(tmp_path, "config/app/database.toml", '[default]\nurl: "x"\n')
    with pytest.raises(ConfigError, match="line 2"):
        discover(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    write(tmp_path, "config/app/database.toml", b'[default]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match="line 2") as caught:
        discover(tmp_path)
    assert caught.value.line == 2


def test_key_outside_environment_table(tmp_path: Path) -> None:
    path = write(tmp_path, "config/app/database.toml", '# comment\nurl = "x"\n\n[default]\n')
    with pytest.raises(ConfigError, match=r"'url' is outside an environment table") as caught:
        discover(tmp_path)
    assert (caught.value.source, caught.value.line) == (str(path), 2)


def test_key_outside_namespace_table_in_secrets(tmp_path: Path) -> None:
    write(tmp_path, "config/.secrets.toml", 'url = "postgresql://u:pw@h/db"\n')
    with pytest.raises(ConfigError, match=r"'url' is outside a namespace table") as caught:
        discover(tmp_path)
    assert "pw@h" not in str(caught.value)


def test_error_on_first_use_without_auto_discover(tmp_path: Path) -> None:
    write(tmp_path, "config/app/database.toml", "[default\n")
    provider = DynaconfConfigProvider(root_path=tmp_path, environ={})
    with pytest.raises(ConfigError, match="line 1"):
        provider.get("database", {})


@pytest.mark.parametrize(
    "text", ['[default]\nurl = "oops\n', "[default]\nurl =", "a = { 'k': 1 }\n"]
)
def test_error_position_is_the_same_with_tomli_and_tomllib(text: str) -> None:
    # Python 3.10 reads TOML with tomli (position attributes); 3.11+ with tomllib (message).
    tomli = pytest.importorskip("tomli")
    tomllib = pytest.importorskip("tomllib")
    from structum_lab.plugins.dynaconf._toml import _describe

    with pytest.raises(tomli.TOMLDecodeError) as from_tomli:
        tomli.loads(text)
    with pytest.raises(tomllib.TOMLDecodeError) as from_tomllib:
        tomllib.loads(text)
    assert _describe(from_tomli.value, text) == _describe(from_tomllib.value, text)
