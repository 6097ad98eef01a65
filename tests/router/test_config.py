"""edgekit.toml, environment overrides and the policy's validation."""

from __future__ import annotations

from edgekit.tomlio import tomllib

import pytest

from edgekit.errors import BackendError, ConfigError, ContextOverflowError, RemoteTimeout
from edgekit.router import Policy
from edgekit.router.config import load_config, update_config
from edgekit.tomlio import dumps as dump_toml

TOML = """
schema_version = 1

[remote]
url = "http://127.0.0.1:9/v1"
model = "big"
api_key_env = "EDGEKIT_TEST_CONFIG_KEY"
timeout_s = 12.5
extra_body = {top_k = 40}

[policy]
threshold = 0.25
first_k = 6
ttft_budget_s = 2.0

[breaker]
failure_threshold = 5
cooldown_s = 7

[decision_log]
path = "logs/decisions.jsonl"
"""


@pytest.fixture
def clean_env(monkeypatch):
    for var in ("EDGEKIT_CONFIG", "EDGEKIT_REMOTE_URL", "EDGEKIT_REMOTE_MODEL", "EDGEKIT_REMOTE_API_KEY_ENV",
                "EDGEKIT_REMOTE_TIMEOUT", "EDGEKIT_THRESHOLD", "EDGEKIT_DECISION_LOG"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_file_then_env_then_overrides(tmp_path, clean_env, local_gguf):
    path = tmp_path / "edgekit.toml"
    path.write_text(TOML)
    cfg = load_config(path)
    assert (cfg.remote.url, cfg.remote.model, cfg.remote.timeout_s) == ("http://127.0.0.1:9/v1", "big", 12.5)
    assert (cfg.policy.threshold, cfg.policy.first_k, cfg.policy.ttft_budget_s) == (0.25, 6, 2.0)
    assert cfg.log_path() == tmp_path / "logs" / "decisions.jsonl"  # relative to the file

    clean_env.setenv("EDGEKIT_REMOTE_URL", "http://10.0.0.1:8000/v1")
    clean_env.setenv("EDGEKIT_THRESHOLD", "0.5")
    cfg = load_config(path)
    assert cfg.remote.url == "http://10.0.0.1:8000/v1" and cfg.policy.threshold == 0.5
    assert cfg.remote.model == "big"  # untouched by the environment

    cfg = load_config(path, remote={"model": "other", "url": None}, policy={"threshold": 0.1})
    assert (cfg.remote.url, cfg.remote.model, cfg.policy.threshold) == ("http://10.0.0.1:8000/v1", "other", 0.1)

    clean_env.setenv("EDGEKIT_TEST_CONFIG_KEY", "sk-from-env")
    router = load_config(path).make_router(local_gguf)
    assert router.remote.base_url == "http://10.0.0.1:8000/v1" and router.remote.extra_body == {"top_k": 40}
    assert router.breaker.failure_threshold == 5 and router.policy.first_k == 6
    assert router.log.path == tmp_path / "logs" / "decisions.jsonl" and router.log.path.is_file()
    assert "sk-from-env" not in repr(router) and router.remote.redact("key sk-from-env") == "key ***"  # the key it holds


def test_where_the_config_comes_from(tmp_path, clean_env):
    clean_env.chdir(tmp_path)
    assert load_config().source is None and not load_config().has_remote  # nothing anywhere: defaults
    (tmp_path / "edgekit.toml").write_text('[remote]\nurl = "http://127.0.0.1:1/v1"\nmodel = "m"\n')
    assert load_config().source == tmp_path / "edgekit.toml"
    other = tmp_path / "other.toml"
    other.write_text('[policy]\nthreshold = 0.9\n')
    clean_env.setenv("EDGEKIT_CONFIG", str(other))
    assert load_config().policy.threshold == 0.9 and not load_config().has_remote
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize("text,match", [
    ("[remote\nurl = 1", "not valid TOML"),
    ("[remote]\nurll = 'x'\n", "remote.urll"),
    ("[policy]\nthreshold = 2\n", "policy.threshold"),
    ("[policy]\nfallback_errors = ['ValueError']\n", "not a local failure type"),
    ("schema_version = 7\n", "schema_version 7"),
    ("[breaker]\nfailure_threshold = 0\n", "breaker.failure_threshold"),
])
def test_bad_files_are_one_line_config_errors(tmp_path, clean_env, text, match):
    path = tmp_path / "edgekit.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_bad_env_value(tmp_path, clean_env):
    clean_env.setenv("EDGEKIT_THRESHOLD", "high")
    with pytest.raises(ConfigError, match="EDGEKIT_THRESHOLD"):
        load_config(env=True)


def test_remote_without_a_model_is_refused(clean_env):
    with pytest.raises(ConfigError, match="no model"):
        load_config(remote={"url": "http://127.0.0.1:1/v1"}).make_remote()


def test_update_keeps_other_settings_and_writes_valid_toml(tmp_path):
    path = tmp_path / "edgekit.toml"
    path.write_text(TOML)
    update_config(path, "policy", {"threshold": 0.35, "quantile": 0.2})
    data = tomllib.loads(path.read_text())
    assert data["policy"] == {"threshold": 0.35, "first_k": 6, "ttft_budget_s": 2.0, "quantile": 0.2}
    assert data["remote"]["extra_body"] == {"top_k": 40} and data["breaker"]["cooldown_s"] == 7
    fresh = tmp_path / "new.toml"
    update_config(fresh, "policy", {"threshold": 0.4})
    assert load_config(fresh).policy.threshold == 0.4
    with pytest.raises(ConfigError):
        update_config(fresh, "policy", {"threshold": -1})
    assert load_config(fresh).policy.threshold == 0.4  # the bad update left the file as it was
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_dump_toml_round_trips():
    data = {"a": 1, "s": 'quote " and \\ and ünï 🦊', "t": {"f": 0.1, "b": True, "l": [1, 2], "d": {"x y": "z"}}}
    assert tomllib.loads(dump_toml(data)) == data  # emoji too: JSON's surrogate-pair escapes are not TOML


def test_policy_validation_and_types():
    with pytest.raises(ConfigError, match="threshold"):
        Policy(threshold=1.5)
    with pytest.raises(ConfigError, match="first_k"):
        Policy(first_k=0)
    with pytest.raises(ConfigError, match="unknown field 'treshold'"):
        Policy(treshold=0.2)
    p = Policy(fallback_errors=("RemoteTimeout", "MemoryError"))
    assert p.falls_back_on(MemoryError()) and p.falls_back_on(RemoteTimeout("x"))
    assert not p.falls_back_on(BackendError("x")) and not p.falls_back_on(ValueError("a bug"))
    assert not Policy().falls_back_on(ContextOverflowError("x", prompt_tokens=2, context=1))  # a user error
    assert not Policy(local_error=False).falls_back_on(BackendError("x"))
    assert Policy(first_k=4, quantile=0.0).score([0.9, 0.2, 0.8, 0.7, 0.01]) == pytest.approx(0.2)
    assert Policy().with_(threshold=0.1).threshold == 0.1


def test_router_side_modules_stay_torch_free():
    import subprocess
    import sys

    code = (
        "import sys, edgekit.router, edgekit.router.calibration, edgekit.router.remote, edgekit.cli.run, edgekit.cli.calibrate\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'optimum') if m in sys.modules)\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
