"""``TWIN_*`` names and environments rendered from the settings model, and read back by it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from twin.settings import Settings, env_name, settings_env

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_twin_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # Whatever the developer's shell exports must not leak into what these tests rebuild.
    for name in list(os.environ):
        if name.upper().startswith("TWIN_"):
            monkeypatch.delenv(name)


def _custom() -> Settings:
    """Settings with a non-default value in every kind of field: nested sections, secrets, lists of
    secrets, paths, optional numbers, literals, booleans, floats and awkward strings."""
    return Settings(
        _env_file=None,
        home=Path("/srv/twin home"),
        database={"dsn": "postgresql://u:pw@db:5432/twin", "embedded_port": 6543, "connect_timeout_s": 2.5},
        ray={"address": "ray://head:10001", "num_cpus": 3},
        crawler={
            "allowed_networks": ["127.0.0.1/32", "10.0.0.0/8"],
            "user_agent": 'ua "quoted" {braces} [1, 2] 42',
            "obey_robots_txt": False,
            "download_delay_s": 0.25,
            "chromium_path": "/opt/chromium/chrome",
        },
        linkedin={"email": "alice@example.com", "password": "correct horse"},
        github={"token": "ghp_secret"},
        features={"runtime": "kafka", "metrics_port": 9100, "index_maintenance_interval_s": 1e-5},
        training={
            "generator": "teacher",
            "teacher_base_url": "http://teacher:8000/v1",
            "teacher_model": "big",
            "teacher_api_key": "teacher-key",
            "max_steps": 3,
            "heldout_fraction": 0.3,
            "judge": True,
            "auto_promote": False,
        },
        serving={
            "api_keys": ["k1", 'k2 "with" quotes'],
            "api_keys_file": "/run/secrets/keys",
            "engine": "transformers",
            "max_lora_rank": 64,
            "default_temperature": 0.1,
            "log_prompts": False,
        },
    )


def _rebuild(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings(_env_file=None)


def test_env_names_come_from_the_model() -> None:
    assert env_name("serving", "api_keys") == "TWIN_SERVING__API_KEYS"
    assert env_name("ray", "num_cpus") == "TWIN_RAY__NUM_CPUS"
    assert env_name("home") == "TWIN_HOME"
    assert env_name("crawler") == "TWIN_CRAWLER"  # a whole section, as JSON


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (("serving", "ray_address"), "serving has no field 'ray_address'"),
        (("features", "ray_num_cpus"), "features has no field 'ray_num_cpus'"),
        (("nope",), "Settings has no field 'nope'"),
        (("home", "x"), "home is a value, not a section"),
        ((), "needs a field path"),
    ],
)
def test_unknown_fields_have_no_name(path: tuple[str, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        env_name(*path)


def test_custom_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = _custom()
    env = original.to_env(include_secrets=True)
    assert env == settings_env(original, include_secrets=True)
    assert env["TWIN_SERVING__API_KEYS"] == json.dumps(["k1", 'k2 "with" quotes'])
    assert env["TWIN_HOME"] == "/srv/twin home"
    assert env["TWIN_CRAWLER__OBEY_ROBOTS_TXT"] == "false"
    assert "TWIN_TRAINING__MLFLOW_TRACKING_URI" not in env  # None is left out: the default is None
    assert _rebuild(monkeypatch, env) == original


def test_default_settings_round_trip_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings(_env_file=None)
    assert _rebuild(monkeypatch, original.to_env()) == original


def test_secrets_are_rendered_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    original = _custom()
    env = original.to_env()
    secrets = ["pw@", "correct horse", "ghp_secret", "teacher-key", "k1"]
    assert not [value for value in env.values() for secret in secrets if secret in value]
    assert {"TWIN_DATABASE__DSN", "TWIN_SERVING__API_KEYS", "TWIN_LINKEDIN__PASSWORD"}.isdisjoint(env)
    assert env["TWIN_LINKEDIN__EMAIL"] == "alice@example.com"  # not a secret
    rebuilt = _rebuild(monkeypatch, env)
    cleared = original.model_copy(
        update={
            "database": original.database.model_copy(update={"dsn": None}),
            "linkedin": original.linkedin.model_copy(update={"password": None}),
            "github": original.github.model_copy(update={"token": None}),
            "training": original.training.model_copy(update={"teacher_api_key": None}),
            "serving": original.serving.model_copy(update={"api_keys": []}),
        }
    )
    assert rebuilt == cleared
    assert isinstance(original.linkedin.password, SecretStr)  # the original is untouched


def test_a_child_process_rebuilds_the_same_settings(tmp_path: Path) -> None:
    # What the environment is for: a real child process, in a directory with a .env file that says
    # otherwise, reads the same settings back (compared as the child renders them).
    (tmp_path / ".env").write_text("TWIN_SERVING__PORT=1\nTWIN_RAY__NUM_CPUS=99\n")
    original = _custom()
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("TWIN_")}
    env.update(original.to_env(include_secrets=True))
    child = (
        "import json; from twin.settings import Settings; "
        "print(json.dumps(Settings().to_env(include_secrets=True)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", child],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO / "services")},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen: dict[str, Any] = json.loads(result.stdout)
    assert seen == original.to_env(include_secrets=True)


def _settings_names() -> set[str]:
    names: set[str] = set()
    for section, field in Settings.model_fields.items():
        names.add(env_name(section))
        for sub in getattr(field.annotation, "model_fields", {}):
            names.add(env_name(section, sub))
    return names


def test_nested_names_written_in_the_repository_exist() -> None:
    # Names typed by hand (docs, tests' environments, messages in layers that may not import the
    # settings) go stale silently: pydantic-settings ignores a variable nothing reads.
    known = _settings_names()
    pattern = re.compile(r"TWIN_[A-Z0-9]+__[A-Z0-9_]*[A-Z0-9]")
    stale = []
    roots = ["services", "tests", "bench", "docs", "scripts"]
    files = [REPO / "README.md", *(p for root in roots for p in (REPO / root).rglob("*") if p.is_file())]
    for path in files:
        if path.suffix not in {".py", ".sql", ".md", ".yaml", ".sh", ".toml"} or "egg-info" in str(path):
            continue
        for line_no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            stale += [
                f"{path.relative_to(REPO)}:{line_no}: {name}"
                for name in pattern.findall(line)
                if name not in known
            ]
    assert stale == []
