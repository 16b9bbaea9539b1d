"""Loading: defaults, then the two presets, then `key=value` overrides, validated once."""

from __future__ import annotations

import typing

from alignpipe.config.accelerators import ACCELERATORS, implied_settings
from alignpipe.config.keys import _apply, _field_type, _parse
from alignpipe.config.presets import ENV_PRESETS, EXPERIMENT_PRESETS
from alignpipe.config.schema import Config
from alignpipe.config.validation import validate
from alignpipe.errors import ConfigError


def load_config(env: str = "local", experiment: str = "tiny", overrides: typing.Iterable[str] = ()) -> Config:
    """Merges defaults, the two presets and `key=value` overrides, then validates.

    Args:
        env: a key of `ENV_PRESETS`.
        experiment: a key of `EXPERIMENT_PRESETS`.
        overrides: strings like `"train.steps=100"` or `"scrape.seed_urls=http://a/,http://b/"`;
            tuples take comma-separated items, booleans take true/false.

    Raises:
        ConfigError: naming the bad preset, key or value and what is allowed.
    """
    if env not in ENV_PRESETS:
        raise ConfigError(f"unknown environment preset {env!r}; choose one of {sorted(ENV_PRESETS)}")
    if experiment not in EXPERIMENT_PRESETS:
        raise ConfigError(
            f"unknown experiment preset {experiment!r}; choose one of {sorted(EXPERIMENT_PRESETS)}"
        )
    cfg = _with_overrides(_presets(env, experiment), overrides)
    return validate(cfg)


def _presets(env: str, experiment: str) -> Config:
    """The defaults with the two presets applied (not validated: overrides may complete them)."""
    return _with_implied(
        _apply(
            _apply(Config(env=env, experiment=experiment), ENV_PRESETS[env]), EXPERIMENT_PRESETS[experiment]
        ),
        explicit=set(),
    )


def _with_implied(cfg: Config, explicit: set[str]) -> Config:
    """`cfg` with the `train.*` settings that its custom job's accelerator implies (backend,
    strategy: `accelerators.implied_settings`), except those in `explicit`. Only where training
    runs as a custom job: elsewhere the accelerator is unused."""
    if not cfg.runner.train_in_custom_job or cfg.runner.accelerator not in ACCELERATORS:
        return cfg  # (an unknown accelerator fails validation, naming it)
    implied = {k: v for k, v in implied_settings(cfg.runner.accelerator).items() if k not in explicit}
    return _apply(cfg, implied)


def _with_overrides(cfg: Config, overrides: typing.Iterable[str]) -> Config:
    parsed: dict[str, object] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        parsed[key.strip()] = _parse(key.strip(), _field_type(cfg, key.strip()), text.strip())
    return _with_implied(_apply(cfg, parsed), explicit=set(parsed))


def with_run_parameters(cfg: Config, experiment: str = "", overrides: typing.Iterable[str] = ()) -> Config:
    """`cfg` as one pipeline run asks for it: another experiment preset and `key=value` overrides.

    The settings `cfg` made beyond its presets (those a template was compiled with) carry over
    to the new experiment preset; then the overrides apply. Used by the pipeline's first task,
    so that one compiled template serves runs on other inputs, sets and presets.

    Example:
        >>> base = load_config("local", "paper", ["train.steps=7"])
        >>> run = with_run_parameters(base, "tiny", ["eval.recall_ks=1"])
        >>> run.experiment, run.train.steps, run.model.embed_dim, run.eval.recall_ks
        ('tiny', 7, 128, (1,))
    """
    if experiment and experiment != cfg.experiment:
        if experiment not in EXPERIMENT_PRESETS:
            raise ConfigError(
                f"unknown experiment preset {experiment!r}; choose one of {sorted(EXPERIMENT_PRESETS)}"
            )
        presets = _presets(cfg.env, cfg.experiment).flat()
        own = {k: v for k, v in cfg.flat().items() if v != presets[k] and k not in ("env", "experiment")}
        cfg = _apply(_presets(cfg.env, experiment), own)
    return validate(_with_overrides(cfg, overrides))
