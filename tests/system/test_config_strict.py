"""A config that refuses mistakes: unknown keys name the closest valid key; `config check`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from paths import REPO_ROOT as ROOT

from gateway.cli import main
from gateway.config import ConfigError, mask_url, parse_config, url_passwords
from gateway.strategies import known_names

SECRET = "csk-secret-9d8c7b6a5f4e"


CLIENT_KEY = "client-key-5e4d3c2b1a"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"budget": {"dayly_usd": 1}},
            "budget.dayly_usd: unknown key; did you mean budget.daily_usd?",
        ),
        ({"routng": {"strategy": "always_local"}}, "routng: unknown key; did you mean routing?"),
        (
            {"speculative_decoding": {"min_confidance": 0.5}},
            "speculative_decoding.min_confidance: unknown key; "
            "did you mean speculative_decoding.min_confidence?",
        ),
        (
            {"rate_limits": {"cerebras": {"tokens_per_minut": 30000}}},
            "rate_limits.cerebras.tokens_per_minut: unknown key; "
            "did you mean rate_limits.cerebras.tokens_per_minute?",
        ),
        (
            {"models": {"cerebras": {"prices": {"input_per_milion": 1}}}},
            "models.cerebras.prices.input_per_milion: unknown key; "
            "did you mean models.cerebras.prices.input_per_million?",
        ),
        ({"models": {"lokal": {}}}, "models.lokal: unknown key; did you mean models.local?"),
        (
            {"routing": {"fallback": {"to_locl": False}}},
            "routing.fallback.to_locl: unknown key; did you mean routing.fallback.to_local?",
        ),
    ],
)
def test_a_typo_stops_the_start_naming_the_closest_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source="my.yaml", env={})
    assert f"my.yaml: {message}" in str(info.value)


def test_a_key_far_from_any_is_refused_without_a_guess() -> None:
    with pytest.raises(ConfigError, match=r"^my\.yaml: budget\.zzz: unknown key$"):
        parse_config({"budget": {"zzz": 1}}, source="my.yaml", env={})


def test_every_unknown_key_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"routng": {}, "server": {"prot": 1}}, source="c", env={})
    assert "routng" in str(info.value) and "server.prot" in str(info.value)


def test_free_values_are_not_keys() -> None:
    """Lists of names (keywords, strategies) take any strings; null keeps the default."""
    cfg = parse_config(
        {
            "routing": {
                "complexity_keywords": ["anything", "Goes"],
                "client_strategies": ["always_local"],
                "escalation": {"turns": None},
            },
            "budget": {"daily_usd": None},
        },
        env={},
    )
    assert cfg.routing.complexity_keywords == ("anything", "goes")
    assert cfg.routing.escalation.turns is None and cfg.budget.daily_usd is None


def test_an_unknown_strategy_names_the_closest() -> None:
    with pytest.raises(
        ConfigError,
        match="routing.strategy: unknown strategy 'smart_routng'; did you mean 'smart_routing'",
    ):
        parse_config({"routing": {"strategy": "smart_routng"}}, env={}, names=known_names())


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_config_check_prints_the_effective_config_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEREBRAS_API_KEY", SECRET)
    monkeypatch.setenv("GATEWAY_API_KEYS", CLIENT_KEY)
    path = write(tmp_path, {"budget": {"daily_usd": 3}, "auth": {"api_keys": ["literal-key-123"]}})
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and CLIENT_KEY not in out and "literal-key-123" not in out
    shown = yaml.safe_load(out)
    assert shown["models"]["cerebras"]["api_key"] == "*** (set)"
    assert shown["models"]["local"]["api_key"] == "(not set)"
    assert shown["auth"]["api_keys"] == "*** (2 set)"
    assert shown["budget"]["daily_usd"] == 3.0
    assert shown["routing"]["strategy"] == "smart_routing"  # defaults are shown too


REDIS_PASSWORD = "redis-pass-4c3b2a19"


ENDPOINT_PASSWORD = "endpoint-pass-8f7e6d"


def test_config_check_masks_passwords_inside_urls(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CEREBRAS_API_KEY", SECRET)
    monkeypatch.delenv("GATEWAY_REDIS_URL", raising=False)
    path = write(
        tmp_path,
        {
            "state": {"redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"},
            "models": {"local": {"endpoint": f"http://user:{ENDPOINT_PASSWORD}@127.0.0.1:9/v1"}},
            # A secret pasted where no secret belongs is masked too.
            "storage": {"log_path": f"logs/{SECRET}.log"},
        },
    )
    assert main(["config", "check", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    for secret in (REDIS_PASSWORD, ENDPOINT_PASSWORD, SECRET):
        assert secret not in out
    shown = yaml.safe_load(out)
    assert shown["state"]["redis_url"] == "redis://:***@127.0.0.1:6379/0"
    assert shown["models"]["local"]["endpoint"] == "http://user:***@127.0.0.1:9/v1"
    assert shown["models"]["cerebras"]["api_key"] == "*** (set)"
    assert shown["storage"]["log_path"] == "logs/***.log"


def test_config_check_masks_the_redis_password_given_by_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "GATEWAY_REDIS_URL", f"unix:///run/redis.sock?db=1&password={REDIS_PASSWORD}"
    )
    assert main(["config", "check", "--config", str(write(tmp_path, {}))]) == 0
    out = capsys.readouterr().out
    assert REDIS_PASSWORD not in out
    assert yaml.safe_load(out)["state"]["redis_url"] == "unix:///run/redis.sock?db=1&password=***"


def test_secrets_lists_the_passwords_inside_urls() -> None:
    config = parse_config(
        {
            "models": {"cerebras": {"api_key": SECRET, "endpoint": "https://u:p%40ss@h/v1"}},
            "state": {"redis_url": f"rediss://:{REDIS_PASSWORD}@h:6380/0"},
            "auth": {"api_keys": [CLIENT_KEY]},
        },
        env={},
    )
    assert set(config.secrets()) == {SECRET, CLIENT_KEY, "p%40ss", "p@ss", REDIS_PASSWORD}


def test_the_other_places_that_show_the_config_mask_url_passwords() -> None:
    from aiohttp import web

    from gateway.dashboard.routes import REDACTOR_KEY, setup_dashboard
    from gateway.doctor.runner import config_ok

    config = parse_config(
        {
            "models": {"local": {"endpoint": f"http://u:{ENDPOINT_PASSWORD}@127.0.0.1:9/v1"}},
            "state": {"redis_url": f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"},
        },
        env={},
    )
    assert ENDPOINT_PASSWORD not in config_ok(config).detail
    app = web.Application()
    setup_dashboard(app, config, lambda running: running)  # no request: never called
    redacted = app[REDACTOR_KEY].text(
        f"failed: redis://:{REDIS_PASSWORD}@h and {ENDPOINT_PASSWORD}"
    )
    assert REDIS_PASSWORD not in redacted and ENDPOINT_PASSWORD not in redacted


def test_config_check_without_keys_says_not_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CEREBRAS_API_KEY", raising=False)
    monkeypatch.delenv("GATEWAY_API_KEYS", raising=False)
    assert main(["config", "check", "--config", str(write(tmp_path, {}))]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["models"]["cerebras"]["api_key"] == "(not set)"
    assert shown["auth"]["api_keys"] == "(none set)"


def test_config_check_fails_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, {"budget": {"dayly_usd": 1}})
    assert main(["config", "check", "--config", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "budget.dayly_usd: unknown key; did you mean budget.daily_usd?" in captured.err


def test_config_check_accepts_the_shipped_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", "--config", str(ROOT / "conf" / "gateway.yaml")]) == 0
    assert capsys.readouterr().out.startswith(f"# {ROOT / 'conf' / 'gateway.yaml'}: valid\n")


def test_config_check_as_a_real_process(tmp_path: Path) -> None:
    env = {**os.environ, "CEREBRAS_API_KEY": SECRET, "PYTHONPATH": str(ROOT)}

    def check(config: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gateway", "config", "check", "--config", str(config)],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )

    run = check(write(tmp_path, {"routing": {"strategy": "always_local"}}))
    assert run.returncode == 0, run.stderr
    assert SECRET not in run.stdout and "*** (set)" in run.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("speculative_decoding:\n  min_confidance: 0.5\n", encoding="utf-8")
    run = check(bad)
    assert run.returncode == 2
    assert "did you mean speculative_decoding.min_confidence?" in run.stderr


def test_registry_names_are_checked_where_the_app_is_built() -> None:
    """parse_config without names leaves them to create_app's check, which names the key."""
    from gateway.http.app import check_strategy

    config = parse_config({"speculative_decoding": {"scorer": "bleu"}}, env={})
    with pytest.raises(ConfigError, match=r"speculative_decoding\.scorer: must be one of"):
        check_strategy(config)
    config = parse_config({"rate_limits": {"reactive_strategies": ["always_nowhere"]}}, env={})
    with pytest.raises(ConfigError, match=r"rate_limits\.reactive_strategies: unknown strategy"):
        check_strategy(config)


@pytest.mark.parametrize(
    "endpoint",
    [
        f"htp://user:{ENDPOINT_PASSWORD}@host:8080/v1",
        f"ftp://:{ENDPOINT_PASSWORD}@host/v1",
        f"htp://user:{ENDPOINT_PASSWORD}@[::1/v1",  # not even parseable
    ],
)
def test_a_bad_endpoint_is_named_without_its_password(endpoint: str) -> None:
    with pytest.raises(ConfigError, match="models.local.endpoint: not an http") as caught:
        parse_config({"models": {"local": {"endpoint": endpoint}}}, env={})
    assert ENDPOINT_PASSWORD not in str(caught.value)
    assert ":***@" in str(caught.value)


def test_an_unparseable_url_still_has_its_password_found_and_masked() -> None:
    url = f"http://u:{ENDPOINT_PASSWORD}@[::1/v1"
    assert url_passwords(url) == [ENDPOINT_PASSWORD]
    assert mask_url(url) == "http://u:***@[::1/v1"


def test_a_gateway_pointed_at_itself_does_not_start(tmp_path: Path) -> None:
    """The file names the gateway's own port, or --port makes it so: the real process stops
    before it listens, naming the key (it would otherwise call itself on every request)."""
    with socket.socket() as sock:  # a port nothing listens on: the gateway must not bind it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        storage = {"ledger_path": str(tmp_path / "ledger.db"), "log_path": str(tmp_path / "g.log")}
        points_here = {"local": {"endpoint": f"http://127.0.0.1:{port}/v1"}}
        in_file = write(
            tmp_path, {"server": {"port": port}, "models": points_here, "storage": storage}
        )
        by_flag = tmp_path / "by_flag.yaml"
        by_flag.write_text(yaml.safe_dump({"models": points_here, "storage": storage}), "utf-8")
        for args in (["--config", str(in_file)], ["--config", str(by_flag), "--port", str(port)]):
            run = subprocess.run(
                [sys.executable, "-m", "gateway", *args],
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
                check=False,
            )
            assert run.returncode == 2, (args, run.stdout, run.stderr)
            assert "models.local.endpoint: " in run.stderr and "own address" in run.stderr
            assert "listening on" not in run.stdout
