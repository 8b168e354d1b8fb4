from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from structum_lab.config import ConfigError, ConfigProvider
from structum_lab.plugins.dynaconf import DynaconfConfigProvider

DATABASE_TOML = """\
[default]
url = "postgresql://localhost/dev"
pool_size = 5

[default.options]
pool_pre_ping = true

[staging]
url = "postgresql://staging/db"

[production]
url = "postgresql://prod/db"
pool_size = 20
"""


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path, "config/app/database.toml", DATABASE_TOML)
    return tmp_path


def discover(root: Path, *, env: str | None = None, **environ: str) -> DynaconfConfigProvider:
    return DynaconfConfigProvider(root_path=root, env=env, environ=environ).auto_discover()


def test_is_a_config_provider(project: Path) -> None:
    assert isinstance(discover(project), ConfigProvider)


@pytest.mark.parametrize(
    ("env", "environ", "expected"),
    [
        (None, {}, "development"),
        (None, {"ENV_FOR_DYNACONF": "staging"}, "staging"),
        (None, {"STRUCTUM_ENV": "production"}, "production"),
        (None, {"STRUCTUM_ENV": "production", "ENV_FOR_DYNACONF": "staging"}, "production"),
        ("staging", {"STRUCTUM_ENV": "production"}, "staging"),
        (None, {"STRUCTUM_ENV": "PRODUCTION"}, "production"),
        ("Production", {}, "production"),
    ],
)
def test_environment_selection(
    project: Path, env: str | None, environ: dict[str, str], expected: str
) -> None:
    provider = discover(project, env=env, **environ)
    assert provider.env == expected
    urls = {
        "development": "postgresql://localhost/dev",
        "staging": "postgresql://staging/db",
        "production": "postgresql://prod/db",
    }
    assert provider.get("database.url") == urls[expected]


def test_env_for_dynaconf_layers_over_default(project: Path) -> None:
    provider = discover(project, ENV_FOR_DYNACONF="staging")
    assert provider.get("database") == {
        "url": "postgresql://staging/db",
        "pool_size": 5,
        "options": {"pool_pre_ping": True},
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20", 20),
        ("1.5", 1.5),
        ("true", True),
        ("False", False),
        ("abc", "abc"),
        (
            "postgresql://u:p@h:5432/db?sslmode=require",
            "postgresql://u:p@h:5432/db?sslmode=require",
        ),
        ('"20"', "20"),
        ("[1, 2]", [1, 2]),
        ("@int 7", 7),
    ],
)
def test_environment_values_are_typed_like_toml(project: Path, raw: str, expected: Any) -> None:
    value = discover(project, STRUCTUM_DATABASE__VALUE=raw).get("database.value")
    assert value == expected
    assert type(value) is type(expected)


def test_precedence_default_env_secrets_variables(project: Path) -> None:
    write(project, "config/.secrets.toml", '[database]\nurl = "secret"\npool_size = 7\n')
    provider = discover(project, STRUCTUM_ENV="production", STRUCTUM_DATABASE__POOL_SIZE="9")
    assert provider.get("database.url") == "secret"  # secrets > [production]
    assert provider.get("database.pool_size") == 9  # variables > secrets


def test_secrets_table_per_environment(project: Path) -> None:
    write(
        project,
        "config/.secrets.toml",
        '[database]\nurl = "secret"\n\n[production.database]\nurl = "prod-secret"\n',
    )
    assert discover(project).get("database.url") == "secret"
    production = discover(project, STRUCTUM_ENV="production")
    assert production.get("database.url") == "prod-secret"
    assert not production.has("production")


def test_secrets_only_namespace(tmp_path: Path) -> None:
    write(tmp_path, "config/.secrets.toml", '[cache]\nurl = "redis://secret@h"\n')
    provider = discover(tmp_path)
    assert provider.get("cache") == {"url": "redis://secret@h"}


def test_secret_options_merge_into_file_options(project: Path) -> None:
    write(project, "config/.secrets.toml", "[database.options]\nconnect_args = { sslmode = 'x' }\n")
    assert discover(project).get("database.options") == {
        "pool_pre_ping": True,
        "connect_args": {"sslmode": "x"},
    }


def test_namespace_named_after_file(tmp_path: Path) -> None:
    write(tmp_path, "config/app/primary_db.toml", '[default]\nURL = "postgresql://p/db"\n')
    provider = discover(tmp_path, STRUCTUM_PRIMARY_DB__POOL_SIZE="4")
    assert provider.get("primary_db") == {"url": "postgresql://p/db", "pool_size": 4}
    assert provider.get("PRIMARY_DB.Url") == "postgresql://p/db"


def test_variables_without_double_underscore_are_not_namespaces(project: Path) -> None:
    provider = discover(project, STRUCTUM_ENV="staging", STRUCTUM_X="1", OTHER__URL="x")
    assert not provider.has("env")
    assert not provider.has("x")
    assert not provider.has("other")


def test_nested_variable_beats_whole_table_variable(project: Path) -> None:
    provider = discover(
        project,
        STRUCTUM_DATABASE__OPTIONS__POOL_PRE_PING="false",
        STRUCTUM_DATABASE__OPTIONS="{ pool_pre_ping = true, echo_pool = true }",
    )
    assert provider.get("database.options") == {"pool_pre_ping": False, "echo_pool": True}


def test_missing_namespace_and_key(project: Path) -> None:
    provider = discover(project)
    assert provider.get("nope", {}) == {}
    with pytest.raises(KeyError):
        provider.get("nope")
    with pytest.raises(KeyError):
        provider.get("database.nope")
    assert not provider.has("nope")
    assert provider.has("database.options.pool_pre_ping")


def test_values_are_plain_and_copied(project: Path) -> None:
    provider = discover(project, STRUCTUM_DATABASE__HOSTS='["a", "b"]')
    database = provider.get("database")
    assert type(database) is dict
    assert type(database["options"]) is dict
    assert type(database["hosts"]) is list
    database["options"]["pool_pre_ping"] = False
    assert provider.get("database.options.pool_pre_ping") is True


def test_sources_name_files_sections_and_variables(project: Path) -> None:
    write(project, "config/.secrets.toml", '[database]\nurl = "secret"\n')
    provider = discover(project, STRUCTUM_ENV="production", STRUCTUM_DATABASE__URL="x")
    app = project / "config" / "app" / "database.toml"
    secrets = project / "config" / ".secrets.toml"
    assert provider.sources("database") == [
        f"{app} [default], [production]",
        f"{secrets} [database]",
        "env STRUCTUM_DATABASE__* (set: STRUCTUM_DATABASE__URL)",
    ]
    assert provider.sources("replica_db") == [
        f"{project / 'config' / 'app' / 'replica_db.toml'} (not found)",
        f"{secrets} (no [replica_db] table)",
        "env STRUCTUM_REPLICA_DB__*",
    ]


def test_sources_note_a_missing_environment_table(project: Path) -> None:
    [app, secrets, _] = discover(project).sources("database")
    assert app.endswith("database.toml [default] (no [development] table)")
    assert secrets.endswith(".secrets.toml (not found)")


def test_relative_root_path_is_shown_relative(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(project)
    provider = DynaconfConfigProvider(root_path=".", environ={})
    assert provider.sources("database")[0] == (
        f"{Path('config', 'app', 'database.toml')} [default] (no [development] table)"
    )


def test_repr_shows_root_and_env_only(project: Path) -> None:
    write(project, "config/.secrets.toml", '[database]\nurl = "postgresql://u:TOPSECRET@h/db"\n')
    provider = discover(project, STRUCTUM_DATABASE__PASSWORD="ALSOSECRET")
    text = repr(provider)
    assert text == f"DynaconfConfigProvider(root_path={str(project)!r}, env='development')"
    assert "SECRET" not in text


def test_discovers_on_first_use_and_again_on_request(project: Path) -> None:
    environ = {"STRUCTUM_DATABASE__POOL_SIZE": "1"}
    provider = DynaconfConfigProvider(root_path=project, environ=environ)
    assert provider.get("database.pool_size") == 1
    environ["STRUCTUM_DATABASE__POOL_SIZE"] = "2"
    assert provider.get("database.pool_size") == 1  # read once
    assert provider.auto_discover() is provider
    assert provider.get("database.pool_size") == 2


def test_injected_environ_replaces_os_environ(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRUCTUM_DATABASE__URL", "from-os-environ")
    assert discover(project).get("database.url") == "postgresql://localhost/dev"
    from_os = DynaconfConfigProvider(root_path=project).auto_discover()
    assert from_os.get("database.url") == "from-os-environ"


def test_dynaconf_own_variables_do_not_leak(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write(project, "other.toml", '[default]\nleaked = true\nurl = "leaked"\n')
    for name, value in {
        "SETTINGS_FILE_FOR_DYNACONF": str(other),
        "INCLUDES_FOR_DYNACONF": str(other),
        "PRELOAD_FOR_DYNACONF": str(other),
        "SECRETS_FOR_DYNACONF": str(other),
        "MERGE_ENABLED_FOR_DYNACONF": "false",
        "ENVIRONMENTS_FOR_DYNACONF": "false",
        "DEFAULT_ENV_FOR_DYNACONF": "other",
        "FORCE_ENV_FOR_DYNACONF": "staging",
        "DYNACONF_URL": "leaked",
    }.items():
        monkeypatch.setenv(name, value)
    for name in [name for name in os.environ if name.startswith("STRUCTUM_")]:
        monkeypatch.delenv(name)

    provider = DynaconfConfigProvider(root_path=project).auto_discover()
    assert provider.get("database") == {
        "url": "postgresql://localhost/dev",
        "pool_size": 5,
        "options": {"pool_pre_ping": True},
    }


def test_no_config_folder(tmp_path: Path) -> None:
    provider = discover(tmp_path)
    assert provider.get("database", {}) == {}
    assert not provider.has("database")


def test_unresolvable_token_names_the_variable_not_the_value(project: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        discover(project, STRUCTUM_DATABASE__POOL_SIZE="@int SECRETVALUE")
    assert "STRUCTUM_DATABASE__POOL_SIZE" in str(caught.value)
    assert "SECRETVALUE" not in str(caught.value)


def test_unresolvable_format_token(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"namespace 'database': cannot resolve its @ tokens"):
        discover(project, STRUCTUM_DATABASE__DSN="@format {this.NO_SUCH_KEY}")


def test_format_token_sees_merged_values(project: Path) -> None:
    provider = discover(project, STRUCTUM_DATABASE__DSN="@format {this.URL}?x=1")
    assert provider.get("database.dsn") == "postgresql://localhost/dev?x=1"


@pytest.mark.parametrize(
    ("env", "environ", "origin"),
    [
        (None, {"STRUCTUM_ENV": "prodution"}, "STRUCTUM_ENV"),
        (None, {"ENV_FOR_DYNACONF": "stagin"}, "ENV_FOR_DYNACONF"),
        ("prodution", {}, "the env argument"),
    ],
)
def test_an_environment_without_any_section_is_an_error(
    project: Path, env: str | None, environ: dict[str, str], origin: str
) -> None:
    with pytest.raises(ConfigError) as info:
        discover(project, env=env, **environ)
    message = str(info.value)
    assert f"(from {origin})" in message
    assert "sections found: [default], [production], [staging]" in message
    assert "database.toml" in message


def test_environment_sections_that_count(tmp_path: Path) -> None:
    write(tmp_path, "config/app/database.toml", '[default]\nurl = "x"\n')
    # The built-in default needs no section, named or not.
    assert discover(tmp_path).env == "development"
    assert discover(tmp_path, STRUCTUM_ENV="development").env == "development"
    # A secrets table scoped to the environment is a section of it.
    write(tmp_path, "config/.secrets.toml", '[qa.database]\nurl = "qa"\n')
    assert discover(tmp_path, STRUCTUM_ENV="qa").get("database.url") == "qa"
    # No configuration file at all (variables only): nothing to check against.
    assert discover(tmp_path / "empty", STRUCTUM_ENV="production").env == "production"
