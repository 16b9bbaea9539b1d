"""Beam's pipeline options from the configuration: runners are options, never code paths."""

from __future__ import annotations

import typing

from alignpipe.config.validation import _check

if typing.TYPE_CHECKING:
    from alignpipe.config.schema import Config


# Beam's in-process runner. `DirectRunner` would first try to download the Prism runner
# binary from the internet on every pipeline, then fall back to this one.
IN_PROCESS_RUNNER = "apache_beam.runners.portability.fn_api_runner.FnApiRunner"


def beam_pipeline_args(cfg: Config) -> list[str]:
    """`runner.beam_args`, completed for Dataflow from `runner.*` when it is the runner.

    On Dataflow the workers run the data image (`--sdk_container_image`, built FROM the Beam
    SDK image) in `runner.gcp_project` / `gcp_region`, with temp and staging folders under
    `runner.pipeline_root`; an option already in `beam_args` wins.

    Raises:
        ConfigError: Dataflow without a project or a gs:// pipeline root.
    """
    args = list(cfg.runner.beam_args)
    if "--runner=DataflowRunner" not in args:
        return args
    r = cfg.runner
    _check(bool(r.gcp_project), "runner.gcp_project", r.gcp_project, "a Google Cloud project id for Dataflow")
    _check(r.pipeline_root.startswith("gs://"), "runner.pipeline_root", r.pipeline_root, "a gs:// folder")
    root = r.pipeline_root.rstrip("/")
    options = {
        "project": r.gcp_project,
        "region": r.gcp_region,
        "temp_location": f"{root}/dataflow/temp",
        "staging_location": f"{root}/dataflow/staging",
        "sdk_container_image": r.data_image,
        "machine_type": r.dataflow_machine_type,
        "max_num_workers": str(r.dataflow_max_workers),
        "service_account_email": r.service_account,
    }
    given = {a.split("=", 1)[0].lstrip("-") for a in args}
    return args + [f"--{k}={v}" for k, v in options.items() if v and k not in given]
