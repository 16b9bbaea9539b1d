"""One typed configuration for the whole pipeline.

A `Config` is merged, in order, from the dataclass defaults (the paper's recipe,
docs/align.md), an environment preset (where it runs), an experiment preset (how
big it is) and explicit `key=value` overrides. It is validated once at load time
and travels as JSON, unchanged, to every component and to the trainer.

Modules: `schema` (the dataclasses), `presets`, `loading` (merge and overrides),
`validation`, `keys` (dotted keys typed by the schema), `runner_args` (Beam's options).

Example:
    >>> cfg = load_config("local", "tiny", ["train.steps=10"])
    >>> cfg.train.steps
    10
    >>> Config.from_json(cfg.to_json()) == cfg
    True
"""

from alignpipe.config.loading import load_config, with_run_parameters
from alignpipe.config.presets import ENV_PRESETS, EXPERIMENT_PRESETS
from alignpipe.config.runner_args import IN_PROCESS_RUNNER, beam_pipeline_args
from alignpipe.config.schema import (
    Config,
    EvalConfig,
    FilterConfig,
    IndexConfig,
    ModelConfig,
    RegisterConfig,
    RunnerConfig,
    ScrapeConfig,
    TrackingConfig,
    TrainConfig,
)
from alignpipe.config.validation import OUTPUT_FORMATS, named_path, validate

__all__ = [
    "ENV_PRESETS",
    "EXPERIMENT_PRESETS",
    "IN_PROCESS_RUNNER",
    "OUTPUT_FORMATS",
    "Config",
    "EvalConfig",
    "FilterConfig",
    "IndexConfig",
    "ModelConfig",
    "RegisterConfig",
    "RunnerConfig",
    "ScrapeConfig",
    "TrackingConfig",
    "TrainConfig",
    "beam_pipeline_args",
    "load_config",
    "named_path",
    "validate",
    "with_run_parameters",
]
