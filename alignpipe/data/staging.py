"""A scrape's staging folder: resuming a run cut short, and publishing a finished one.

Work happens in `out_dir/_staging`. `prepare_staging` keeps a staging folder of the same run
(its `fingerprint`: settings and starting state) so that a rerun resumes it, and starts afresh
otherwise. Once the pipeline has finished, `plan_publish` records which files replace which
(and which state generation replaces which), and `publish` carries the plan out; a publish
cut short is finished by the next run of the same scrape.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

from apache_beam.io.filesystems import FileSystems

from alignpipe import fs
from alignpipe.config import ScrapeConfig
from alignpipe.data.scrape_state import IMAGE_PREFIX, SUFFIX, StateVersion, publish_state

log = logging.getLogger("alignpipe")
STAGING = "_staging"
REPORT_FILE = "scrape_report.json"
RUN_FILE = "_run.json"
PUBLISH_FILE = "_publish.json"
STATE = "_state"  # in the staging folder: the new state, until published
OUTPUT_GLOBS = (
    "pairs-*.tfrecord.gz",
    "manifest-*.jsonl",
    REPORT_FILE,
    "webdataset/*.tar",
    "parquet/*.parquet",
)
# The `ScrapeConfig` fields that cannot change what a finished unit holds: speed, manners and
# patience, and where the finished output is gathered afterwards. A rerun that changes only
# these resumes the unfinished run; every other field (a new one included) enters the
# fingerprint, so a changed setting never reuses stale work.
RESUMABLE_FIELDS = frozenset(
    {
        "per_host_connections",
        "min_host_delay_s",
        "max_connections",
        "connect_timeout_s",
        "read_timeout_s",
        "request_deadline_s",
        "retries",
        "retry_backoff_s",
        "max_retry_after_s",
        "processes",
        "corpus_dir",  # read when the output is published, not by the units
    }
)


def fingerprint(cfg: ScrapeConfig, state_generation: str = "") -> str:
    """Names what a run produces: its settings (every `ScrapeConfig` field but
    `RESUMABLE_FIELDS`) and the state it starts from."""
    settings = {
        f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in RESUMABLE_FIELDS
    }
    named = json.dumps({"settings": settings, "state": state_generation}, sort_keys=True)
    return hashlib.sha256(named.encode()).hexdigest()[:16]


def staged_outputs(folder: str) -> list[str]:
    return sorted(p for pattern in OUTPUT_GLOBS for p in fs.glob(fs.join(folder, pattern)))


def prepare_staging(staging: str, run_id: str) -> None:
    """Keeps a staging folder of the same run (to resume it), else starts afresh."""
    run_file = fs.join(staging, RUN_FILE)
    if fs.exists(run_file) and fs.read_json(run_file).get("fingerprint") == run_id:
        stale = fs.glob(fs.join(staging, "manifest-entries*")) + fs.glob(fs.join(staging, "*.tmp"))
        stale += fs.glob(fs.join(staging, STATE, f"{IMAGE_PREFIX}-kept*"))
        fs.delete(stale + [p for p in [fs.join(staging, REPORT_FILE)] if fs.exists(p)])
        log.info("scrape: resuming the unfinished run in %s", staging)
        return
    fs.delete_tree(staging)  # another run's units must not pass for this one's
    fs.makedirs(staging)
    fs.write_json(run_file, {"fingerprint": run_id})


def publish_pending(staging: str, run_id: str) -> bool:
    """True when a finished run of `run_id` was being published (before or after its state was)."""
    plan = fs.join(staging, PUBLISH_FILE)
    return fs.exists(plan) and run_id in fs.read_json(plan).get("run_ids", [])


def plan_publish(
    staging: str, out_dir: str, run_ids: list[str], state_dir: str = "", generation: str = "", old_state=None
) -> None:
    """Records which files replace which, so that a publish cut short can be finished.

    Args:
        staging: the staging folder of the finished run.
        out_dir: where its outputs go.
        run_ids: the run's fingerprints before and after its state is published (a rerun
            finds the new state in force once that step is done).
        state_dir: `scrape.state_dir` ("" = none).
        generation: the name of the new state generation.
        old_state: the `StateVersion` the run started from.
    """
    new = [p[len(staging) + 1 :] for p in staged_outputs(staging)]
    old = [p[len(out_dir) + 1 :] for p in staged_outputs(out_dir)]
    plan: dict[str, object] = {"run_ids": run_ids, "new": new, "old": old}
    if state_dir:
        old_state = old_state or StateVersion()
        plan["state"] = {
            "dir": state_dir,
            "generation": generation,
            "staged": fs.glob(fs.join(staging, STATE, f"*{SUFFIX}")),
            "old": {"generation": old_state.generation, "files": list(old_state.files)},
        }
    fs.write_json(fs.join(staging, PUBLISH_FILE), plan)


def publish(staging: str, out_dir: str) -> None:
    """Replaces the previous outputs of `out_dir` by the staged ones, makes the staged state
    the one in force, then drops the staging."""
    plan = fs.read_json(fs.join(staging, PUBLISH_FILE))
    stale = [fs.join(out_dir, name) for name in set(plan["old"]) - set(plan["new"])]
    fs.delete([p for p in stale if fs.exists(p)])
    for name in plan["new"]:
        source, target = fs.join(staging, name), fs.join(out_dir, name)
        if fs.exists(source):  # not yet moved by a publish that was cut short
            if fs.exists(target):
                fs.delete([target])
            fs.makedirs(target.rsplit("/", 1)[0])
            FileSystems.rename([source], [target])
    if "state" in plan:
        state = plan["state"]
        old = StateVersion(state["old"]["generation"], tuple(state["old"]["files"]))
        publish_state(state["staged"], state["dir"], state["generation"], old)
    fs.delete_tree(staging)
