"""Tests of triggerd.config: defaults, discovery, error messages that blame, dumping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from triggerd import config
from triggerd.config import Settings, find_config_file, load_settings
from triggerd.errors import ConfigError

EMBEDDED = Path(__file__).resolve().parents[1] / "config" / "triggerd.toml"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty directory, without $TRIGGERD_CONFIG or /etc config."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(config.CONFIG_ENV_VAR, raising=False)
    monkeypatch.setattr(
        config, "SEARCH_PATHS", (*config.SEARCH_PATHS[:2], tmp_path / "etc" / "triggerd.toml")
    )
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_defaults(isolated: Path) -> None:
    """Without any config file the built-in defaults apply, with paths under the cwd."""
    settings = load_settings()
    assert settings.source == "built-in defaults"
    assert settings.paths.state_dir == isolated / "var"
    assert settings.paths.workflows == [isolated / "workflows"]
    assert settings.paths.triggers == [isolated / "triggers"]
    assert settings.executor.kind == "local"
    assert settings.executor.workers == 0
    assert settings.executor.start_method == "forkserver"
    assert settings.store.backend == "sqlite"
    assert settings.store_path == isolated / "var" / "store.sqlite"
    assert settings.hmac_key_path == isolated / "var" / "hmac.key"
    assert settings.store.keep_data is False
    assert settings.security.hmac_key is None
    assert (settings.log.level, settings.log.format) == ("info", "auto")


def test_settings_are_frozen() -> None:
    """Loaded settings cannot be changed after the fact."""
    settings = load_settings()
    with pytest.raises(ValueError):
        settings.executor.workers = 3  # type: ignore[misc]


def test_embedded_config_equals_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading config/triggerd.toml gives exactly the built-in defaults as they are seen
    from the checkout's root: its paths, relative to config/, name the checkout's var/,
    workflows/ and triggers/, from wherever it is loaded."""
    from_file = load_settings(EMBEDDED)
    assert from_file.source == str(EMBEDDED)
    assert from_file.paths.state_dir == EMBEDDED.parent.parent / "var"
    monkeypatch.chdir(EMBEDDED.parent.parent)
    assert from_file.to_toml_dict() == load_settings().to_toml_dict()
    assert from_file.model_dump() == Settings().model_dump()


def test_embedded_config_documents_every_key() -> None:
    """Every setting appears in config/triggerd.toml (set or commented) after a comment line."""
    lines = EMBEDDED.read_text().splitlines()
    for section_name, field in Settings.model_fields.items():
        assert f"[{section_name}]" in lines
        for key in field.annotation.model_fields:  # type: ignore[union-attr]
            index = next(i for i, line in enumerate(lines) if re.match(rf"#? ?{key} = ", line))
            assert lines[index - 1].startswith("# "), key


def test_discovery_order(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The explicit path wins over $TRIGGERD_CONFIG, which wins over files in the cwd."""
    etc = write(isolated / "etc" / "triggerd.toml", "")
    assert find_config_file(None) == etc
    in_config_dir = write(isolated / "config" / "triggerd.toml", "")
    assert find_config_file(None) == in_config_dir
    in_cwd = write(isolated / "triggerd.toml", "")
    assert find_config_file(None) == in_cwd
    from_env = write(isolated / "env.toml", "")
    monkeypatch.setenv("TRIGGERD_CONFIG", str(from_env))
    assert find_config_file(None) == from_env
    explicit = write(isolated / "explicit.toml", "")
    assert find_config_file(explicit) == explicit


def test_no_config_file_found() -> None:
    """With no file anywhere, discovery returns None."""
    assert find_config_file(None) is None


def test_load_uses_discovered_file(isolated: Path) -> None:
    """load_settings reads the file found in the cwd and reports it as the source."""
    write(isolated / "triggerd.toml", '[log]\nlevel = "debug"\n')
    settings = load_settings()
    assert settings.log.level == "debug"
    assert settings.source == str(isolated / "triggerd.toml")


def test_missing_explicit_file_is_named(isolated: Path) -> None:
    """A --config path that does not exist is an error naming that path."""
    with pytest.raises(ConfigError) as info:
        load_settings(Path("nope.toml"))
    assert info.value.source == str(isolated / "nope.toml")
    assert "nope.toml" in str(info.value) and "not found" in str(info.value)


def test_env_var_to_missing_file(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """$TRIGGERD_CONFIG naming a missing file is an error that says so."""
    write(isolated / "triggerd.toml", "")
    monkeypatch.setenv("TRIGGERD_CONFIG", str(isolated / "gone.toml"))
    with pytest.raises(ConfigError, match="TRIGGERD_CONFIG points to it") as info:
        find_config_file(None)
    assert "gone.toml" in str(info.value)


def test_toml_syntax_error_names_file_and_line(isolated: Path) -> None:
    """Broken TOML is reported with the file and the line of the mistake."""
    path = write(isolated / "bad.toml", '[log]\nlevel = "info"\nformat = \n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: invalid TOML")
    assert "line 3" in str(info.value)


def test_wrong_type_names_file_key_and_expectation(isolated: Path) -> None:
    """A value of the wrong type names the file, the dotted key and what was expected."""
    path = write(isolated / "t.toml", '[executor]\nworkers = "many"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: key 'executor.workers': expected an integer, got 'many'"
    assert (info.value.source, info.value.key) == (str(path), "executor.workers")
    assert "pydantic" not in str(info.value) and "http" not in str(info.value)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[executor]\nworkers = -1", "key 'executor.workers': expected a value >= 0, got -1"),
        ("[executor]\nworkers = true", "key 'executor.workers': expected an integer, got true"),
        (
            '[executor]\nkind = "k8s"',
            "key 'executor.kind': expected 'local' or 'celery', got 'k8s'",
        ),
        ("[paths]\nworkflows = [1]", "key 'paths.workflows[0]': expected a path (a string), got 1"),
        ("log = 3", "key 'log': expected a table, got 3"),
        ('[store]\nbackend = "mongodb"', "key 'store.url': required when backend = 'mongodb'"),
    ],
)
def test_value_errors_are_explained(isolated: Path, toml: str, message: str) -> None:
    """Each kind of invalid value gets a plain-words explanation at its dotted key."""
    path = write(isolated / "t.toml", toml + "\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_unknown_key_lists_allowed_keys(isolated: Path) -> None:
    """A misspelt key is reported as unknown together with the keys that are allowed."""
    path = write(isolated / "t.toml", "[executor]\nworker = 4\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"{path}: key 'executor.worker': unknown key "
        "(allowed: kind, workers, start_method, stop_grace, give_up_after)"
    )


def test_several_errors_reported_together(isolated: Path) -> None:
    """All problems of a file come in one error, one line each with file and key."""
    path = write(
        isolated / "t.toml",
        '[executor]\nworkers = "many"\nkind = "k8s"\n[log]\nlevel = "loud"\ncolour = true\n',
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert text.startswith(f"{path}: 4 problems:")
    for key in ("executor.workers", "executor.kind", "log.level", "log.colour"):
        assert f"  {path}: key '{key}': " in text


def test_relative_paths_resolved_against_the_config_files_directory(
    isolated: Path, tmp_path_factory
) -> None:
    """Relative paths in a file (given or default) are made absolute against the file's
    directory, not the caller's: `triggerctl --config X` from anywhere (or systemd's
    WorkingDirectory) means the daemon X describes."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = write(
        elsewhere / "t.toml",
        '[paths]\nstate_dir = "state"\nworkflows = ["wf", "/abs/wf", "../shared/wf"]\n'
        '[store]\npath = "db/store.sqlite"\n[security]\nhmac_key_file = "keys/hmac"\n',
    )
    settings = load_settings(path)
    assert settings.base_dir == elsewhere
    assert settings.paths.state_dir == elsewhere / "state"
    assert settings.paths.workflows == [
        elsewhere / "wf",
        Path("/abs/wf"),
        elsewhere.parent / "shared" / "wf",
    ]
    assert settings.store_path == elsewhere / "db" / "store.sqlite"
    assert settings.hmac_key_path == elsewhere / "keys" / "hmac"
    # a default, relative to the file too
    assert settings.paths.triggers == [elsewhere / "triggers"]
    assert settings.socket_path.parent == elsewhere / "state"
    # without a file: where it is started
    assert load_settings().paths.state_dir == isolated / "var"


def test_overrides_win_and_are_blamed(isolated: Path) -> None:
    """CLI overrides are merged over the file, None values are ignored, bad ones blamed."""
    path = write(isolated / "t.toml", '[log]\nlevel = "warning"\nformat = "json"\n')
    settings = load_settings(path, overrides={"log": {"level": "debug", "format": None}})
    assert (settings.log.level, settings.log.format) == ("debug", "json")
    with pytest.raises(ConfigError) as info:
        load_settings(path, overrides={"executor": {"workers": "x"}})
    assert str(info.value).startswith("command line: key 'executor.workers'")


def test_secrets_masked_in_dump(isolated: Path) -> None:
    """The dump shows the inline HMAC key and a URL password as *** and paths as strings."""
    path = write(
        isolated / "t.toml",
        '[store]\nbackend = "mongodb"\nurl = "mongodb://beam:s3cret@db:27017/triggerd"\n'
        '[security]\nhmac_key = "topsecret"\n',
    )
    settings = load_settings(path)
    assert settings.security.hmac_key is not None
    assert settings.security.hmac_key.get_secret_value() == "topsecret"
    dump = settings.to_toml_dict()
    assert dump["security"]["hmac_key"] == "***"
    assert dump["store"]["url"] == "mongodb://beam:***@db:27017/triggerd"
    assert dump["paths"]["state_dir"] == str(isolated / "var")
    assert "topsecret" not in repr(dump) + repr(settings)
    assert "s3cret" not in repr(dump)


def test_secret_value_not_echoed_in_errors(isolated: Path) -> None:
    """A mistyped inline HMAC key is reported without repeating its value."""
    path = write(isolated / "t.toml", "[security]\nhmac_key = 918273645\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: key 'security.hmac_key': expected a string"


def test_one_mongodb_address_serves_the_store_and_the_event_log(isolated: Path) -> None:
    """[mongodb] url: the store's backend becomes MongoDB and both use that server and
    database; each may still choose SQLite or its own URL."""
    url = "mongodb://beam:s3cret@db:27017/bl"
    both = load_settings(
        write(isolated / "a.toml", f'[mongodb]\nurl = "{url}"\ndatabase = "bl13"\n')
    )
    assert (both.store.backend, both.store.url, both.store.database) == ("mongodb", url, "bl13")
    assert (
        both.eventlog_on_mongodb
        and both.eventlog_target == url
        and both.eventlog.database == "bl13"
    )
    own = load_settings(
        write(
            isolated / "b.toml",
            f'[mongodb]\nurl = "{url}"\n[store]\nbackend = "sqlite"\n'
            '[eventlog]\nurl = "mongodb://logs:27017/ev"\n',
        )
    )
    assert own.store.backend == "sqlite" and own.store.url is None
    assert own.eventlog_target == "mongodb://logs:27017/ev"
    sqlite_log = load_settings(
        write(isolated / "c.toml", f'[mongodb]\nurl = "{url}"\n[eventlog]\nbackend = "sqlite"\n')
    )
    assert not sqlite_log.eventlog_on_mongodb and sqlite_log.eventlog_target == str(
        isolated / "var" / "events.sqlite"
    )


def test_a_mongodb_event_log_without_any_url_names_file_and_key(isolated: Path) -> None:
    path = write(isolated / "t.toml", '[eventlog]\nbackend = "mongodb"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert (
        str(info.value) == f"{path}: key 'eventlog': backend = 'mongodb' needs a URL: "
        "set eventlog.url or [mongodb] url"
    )


def test_config_show_holds_only_what_applies(isolated: Path) -> None:
    """The local executor shows no [celery], SQLite backends no MongoDB keys (and the
    reverse); unset sections stay out."""
    local = load_settings().to_toml_dict()
    assert "celery" not in local and "mongodb" not in local and "status_pvs" not in local
    assert local["store"] == {
        "backend": "sqlite",
        "path": str(isolated / "var" / "store.sqlite"),
        "keep_data": False,
    }
    assert local["eventlog"] == {
        "backend": "sqlite",
        "path": str(isolated / "var" / "events.sqlite"),
    }
    path = write(
        isolated / "t.toml", '[executor]\nkind = "celery"\n[mongodb]\nurl = "mongodb://u:pw@db/x"\n'
    )
    production = load_settings(path).to_toml_dict()
    assert production["celery"]["broker_url"].startswith("redis://")
    assert (
        "path" not in production["store"] and production["store"]["url"] == "mongodb://u:***@db/x"
    )
    assert (
        production["eventlog"]["backend"] == "mongodb"
        and production["eventlog"]["url"] == "mongodb://u:***@db/x"
    )
