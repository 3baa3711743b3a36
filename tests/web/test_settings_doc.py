"""Every setting is documented in the README, and the environment reaches each one."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from web.settings import Settings, SettingsError

README = Path(__file__).parents[2] / "README.md"


def test_every_setting_is_in_the_readme_table() -> None:
    documented = set(re.findall(r"^\| `(\w+)` \|", README.read_text(), re.MULTILINE))
    declared = {f.name for f in dataclasses.fields(Settings)}
    assert declared - documented == set(), "undocumented settings"
    assert documented - declared == set(), "documented settings that do not exist"


def test_environment_and_toml_are_read(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('port = 9000\nhost = "0.0.0.0"\nallowed_origins = ["https://a.example"]\n')
    settings = Settings.from_env(
        {
            "TELECONSULT_CONFIG": str(config),
            "TELECONSULT_PORT": "9443",
            "TELECONSULT_ESCALATION_CHECK_SECONDS": "2.5",
        }
    )
    assert settings.port == 9443  # the environment wins over the file
    assert settings.host == "0.0.0.0"  # noqa: S104
    assert settings.allowed_origins == ("https://a.example",)
    assert settings.escalation_check_seconds == 2.5


@pytest.mark.parametrize(
    "env",
    [
        {"TELECONSULT_PORT": "eighty"},
        {"TELECONSULT_TLS_CERT": "/x.pem"},  # without a key
        {"TELECONSULT_DEFAULT_LOCALE": "fr"},
        {"TELECONSULT_LOGIN_MAX_FAILURES": "0"},
    ],
)
def test_bad_values_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError):
        Settings.from_env(env)


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("prot = 1\n")
    with pytest.raises(SettingsError, match="prot"):
        Settings.from_env({"TELECONSULT_CONFIG": str(config)})


async def test_each_process_takes_its_configured_share_of_postgresql_connections() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://teleconsult@db.invalid/teleconsult",
        database_pool_size=7,
        database_max_overflow=3,
    )
    db = settings.open_database()
    try:
        pool = db.engine.pool
        assert (pool.size(), pool._max_overflow) == (7, 3)  # type: ignore[attr-defined]
        assert pool._pre_ping is True  # a connection the server dropped is replaced
    finally:
        await db.close()  # nothing was connected: no network is touched
    with pytest.raises(SettingsError, match="database_pool_size"):
        Settings(database_pool_size=0)


def test_a_boolean_setting_reads_true_and_false_and_refuses_anything_else(
    tmp_path: Path,
) -> None:
    assert Settings.from_env({}).video_fec is True
    for text, value in (("false", False), ("0", False), ("off", False), ("YES", True)):
        assert Settings.from_env({"TELECONSULT_VIDEO_FEC": text}).video_fec is value
    config = tmp_path / "c.toml"
    config.write_text("video_fec = false\n")
    assert Settings.from_env({"TELECONSULT_CONFIG": str(config)}).video_fec is False
    with pytest.raises(SettingsError, match="video_fec"):
        Settings.from_env({"TELECONSULT_VIDEO_FEC": "maybe"})


def test_the_relays_hold_is_bounded_and_can_be_turned_off() -> None:
    assert Settings.from_env({}).relay_hold_max_ms == 600
    assert Settings.from_env({"TELECONSULT_RELAY_HOLD_MAX_MS": "0"}).relay_hold_max_ms == 0
    for wrong in ("-1", "10001"):
        with pytest.raises(SettingsError, match="relay_hold_max_ms"):
            Settings.from_env({"TELECONSULT_RELAY_HOLD_MAX_MS": wrong})
