"""Settings layers: environment > TOML file > <state_dir>/stack.json > defaults."""

from __future__ import annotations

import json
from pathlib import Path

from radstream.config import Settings, load_settings, stack_state_file


def _stack_json(state_dir: Path, settings: dict[str, object]) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    stack_state_file(state_dir).write_text(json.dumps({"settings": settings, "pids": {"kafka": 1}}))


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)})
    assert settings == Settings(state_dir=str(tmp_path))


def test_precedence_env_over_file_over_stack_json_over_defaults(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _stack_json(state, {"kafka": {"bootstrap": "stack:1", "partitions": 5, "consumer_group": "from-stack"},
                        "pacs": {"port": 1111, "http_port": 2222}})
    toml = tmp_path / "radstream.toml"
    toml.write_text(f'state_dir = "{state}"\n[kafka]\nbootstrap = "file:2"\npartitions = 7\n'
                    '[pacs]\nport = 3333\n')
    env = {"RADSTREAM_CONFIG": str(toml), "RADSTREAM_KAFKA_BOOTSTRAP": "env:3"}

    settings = load_settings(env=env)

    assert settings.state_dir == str(state)  # from the file; its stack.json was found
    assert settings.kafka.bootstrap == "env:3"  # env beats file and stack.json
    assert settings.kafka.partitions == 7  # file beats stack.json
    assert settings.pacs.port == 3333
    assert settings.kafka.consumer_group == "from-stack"  # stack.json beats defaults
    assert settings.pacs.http_port == 2222
    assert settings.kafka.retention_ms == Settings().kafka.retention_ms  # untouched default


def test_env_state_dir_selects_the_stack_json(tmp_path: Path) -> None:
    _stack_json(tmp_path / "a", {"kafka": {"bootstrap": "a:1"}})
    _stack_json(tmp_path / "b", {"kafka": {"bootstrap": "b:1"}})
    assert load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path / "b")}).kafka.bootstrap == "b:1"


def test_broken_stack_json_is_ignored(tmp_path: Path) -> None:
    stack_state_file(tmp_path).write_text("{not json")
    assert load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)}).kafka == Settings().kafka


def test_env_values_are_coerced_to_field_types(tmp_path: Path) -> None:
    env = {"RADSTREAM_STATE_DIR": str(tmp_path), "RADSTREAM_KAFKA_PARTITIONS": "4",
           "RADSTREAM_PACS_ACSE_TIMEOUT_S": "2.5",
           "RADSTREAM_RESEARCH_ALLOWED_CALLING_AES": " ORTHANC, PACS2 ,,",
           "RADSTREAM_RESEARCH_ALLOWED_DESTINATIONS": "RESEARCH"}
    settings = load_settings(env=env)
    assert settings.kafka.partitions == 4
    assert settings.pacs.acse_timeout_s == 2.5
    assert settings.research.allowed_calling_aes == ("ORTHANC", "PACS2")
    assert settings.research.allowed_destinations == ("RESEARCH",)


def test_toml_lists_become_tuples(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('[research]\nallowed_calling_aes = ["A", "B"]\n')
    settings = load_settings(env={"RADSTREAM_STATE_DIR": str(tmp_path)}, config_file=toml)
    assert settings.research.allowed_calling_aes == ("A", "B")


def test_replace_changes_only_the_named_fields() -> None:
    base = Settings(state_dir="/x")
    changed = base.replace(kafka={"bootstrap": "h:9"}, state_dir="/y")
    assert changed.kafka.bootstrap == "h:9" and changed.state_dir == "/y"
    assert changed.kafka.partitions == base.kafka.partitions and base.kafka.bootstrap != "h:9"


def test_the_pseudonym_key_never_shows_in_a_printed_settings_object() -> None:
    settings = Settings().replace(ingest={"pseudonym_key": "k-3f9a-never-print"})
    assert settings.ingest.pseudonym_key == "k-3f9a-never-print"
    assert "k-3f9a-never-print" not in repr(settings) and "k-3f9a-never-print" not in str(settings)
