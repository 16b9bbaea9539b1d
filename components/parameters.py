"""The compiled pipeline's run parameters: what one template lets each run choose.

A template carries the config it was compiled with (`config_json`); a run may pick another
experiment preset, another input (crawl seeds, url lists or WARC files), other evaluation sets
and any `key=value` overrides. The first task resolves them into the run's config, which every
later task receives, so one published template serves every run.
"""

from __future__ import annotations

import json

from alignpipe.config import Config, with_run_parameters
from alignpipe.errors import ConfigError

# parameter -> the config key it sets (a comma-separated list, as `--set` takes it)
KEYED_PARAMETERS = {
    "source": "scrape.source",
    "seed_urls": "scrape.seed_urls",
    "input_paths": "scrape.input_paths",
    "retrieval_sets": "eval.retrieval_sets",
    "classification_sets": "eval.classification_sets",
}


def parameter_defaults(cfg: Config) -> dict[str, str]:
    """The run parameters' values that reproduce `cfg` (the template's defaults)."""
    flat = cfg.flat()
    values = {name: _text(flat[key]) for name, key in KEYED_PARAMETERS.items()}
    return {"experiment": cfg.experiment, **values, "overrides": ""}


def run_config(config_json: str, experiment: str = "", overrides: str = "", **keyed: str) -> Config:
    """The config of one run: the template's `config_json`, then `experiment`, the keyed
    parameters (`KEYED_PARAMETERS`) and `overrides` (`key=value` lines, or a JSON list of them).

    Raises:
        ConfigError: an unknown parameter, or a value the config rejects (naming it).
    """
    unknown = sorted(set(keyed) - set(KEYED_PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown pipeline parameter {unknown[0]!r}; known: {sorted(KEYED_PARAMETERS)}")
    items = [f"{KEYED_PARAMETERS[name]}={value}" for name, value in keyed.items()]
    return with_run_parameters(Config.from_json(config_json), experiment, items + _override_lines(overrides))


def _override_lines(text: str) -> list[str]:
    text = text.strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"pipeline parameter overrides is not a JSON list: {e}") from None
        return [str(item) for item in items]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _text(value: object) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, tuple) else str(value)
