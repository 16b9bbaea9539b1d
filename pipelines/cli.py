"""alignpipe: run the ALIGN pipeline, compile it, or run one stage on local paths.

Every command takes the same configuration options: `--env` and `--experiment`
presets and repeated `--set key=value` overrides (see `alignpipe.config`).
Input mistakes end in one `alignpipe: error: ...` line and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys

from alignpipe.config import ENV_PRESETS, EXPERIMENT_PRESETS, Config, load_config
from alignpipe.errors import AlignPipeError, one_line
from pipelines.local import RUNNERS

log = logging.getLogger("alignpipe")


def _overrides(args: argparse.Namespace) -> list[str]:
    """`--set` items, then the `--work-dir` and `--tracking-uri` shortcuts."""
    overrides = list(args.set or [])
    if args.work_dir:
        overrides.append(f"runner.work_dir={args.work_dir}")
    if args.tracking_uri:
        overrides.append(f"tracking.tracking_uri={args.tracking_uri}")
    return overrides


def _config(args: argparse.Namespace) -> Config:
    from pipelines.local import resolve_paths

    return resolve_paths(load_config(args.env, args.experiment, _overrides(args)))


def _require_dir(path: str, what: str) -> None:
    if "://" not in path and not os.path.isdir(path):
        raise AlignPipeError(f"{what} folder {path!r} does not exist")


def cmd_run(args: argparse.Namespace) -> None:
    from pipelines.local import run_pipeline_locally
    from pipelines.summary import format_summary

    summary = run_pipeline_locally(_config(args), runner=args.runner)
    print(format_summary(summary))


def cmd_compile(args: argparse.Namespace) -> None:
    from pipelines.align_pipeline import compile_pipeline

    # Not resolved against this machine: the template's paths and store are where it runs.
    cfg = load_config(args.env, args.experiment, _overrides(args))
    print(compile_pipeline(cfg, args.out))


def cmd_demo_web(args: argparse.Namespace) -> None:
    from alignpipe.demo.demo_web import write_demo_web

    demo = write_demo_web(args.out, seed=args.seed)
    print(json.dumps(demo.to_dict(), indent=2))


def cmd_scrape(args: argparse.Namespace) -> None:
    from components import mlflow_store

    cfg = _config(args)
    if args.seed:
        cfg = cfg.replace(scrape__seed_urls=tuple(args.seed), scrape__source="crawl")
    for source, paths in (("url_list", args.url_list), ("warc", args.warc)):
        if paths:
            cfg = cfg.replace(scrape__input_paths=tuple(paths), scrape__source=source)
    if cfg.scrape.source == "crawl" and not cfg.scrape.seed_urls:
        raise AlignPipeError(
            "no input: pass --seed URL, --url-list FILE or --warc FILE"
            " (or set scrape.seed_urls / scrape.input_paths)"
        )
    mlflow_store.prepare(cfg)  # before the imports below: a new store is set up meanwhile

    from alignpipe.data.crawl import check_seeds_reachable
    from alignpipe.data.scrape import check_inputs
    from components.stages import scrape_stage

    check_inputs(cfg.scrape)
    if cfg.scrape.source == "crawl":
        check_seeds_reachable(cfg.scrape)
    print(json.dumps(scrape_stage(cfg.to_json(), "", args.out), indent=2))


def cmd_filter(args: argparse.Namespace) -> None:
    from components.stages import filter_stage

    _require_dir(args.input, "input")
    print(json.dumps(filter_stage(_config(args).to_json(), "", args.input, args.out), indent=2))


def cmd_train(args: argparse.Namespace) -> None:
    from components.stages import train_stage

    _require_dir(args.input, "input")
    print(json.dumps(train_stage(_config(args).to_json(), "", args.input, args.out), indent=2))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from components.stages import evaluate_stage

    _require_dir(args.model, "model")
    scores = evaluate_stage(_config(args).to_json(), "", args.model, report_path=args.report or "")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(scores, f, indent=2, sort_keys=True)
    print(json.dumps(scores, indent=2, sort_keys=True))


def cmd_register(args: argparse.Namespace) -> None:
    from components.stages import register_stage

    _require_dir(args.model, "model")
    if not os.path.isfile(args.metrics):
        raise AlignPipeError(f"metrics file {args.metrics!r} does not exist (write it with `evaluate --out`)")
    try:
        with open(args.metrics) as f:
            scores = json.load(f)
        challenger, champion = scores["challenger"], scores["champion"]
    except (ValueError, KeyError, TypeError):
        raise AlignPipeError(
            f"metrics file {args.metrics!r} is not `evaluate --out` JSON "
            '({"challenger": {...}, "champion": {"version", "metrics"} or null})'
        ) from None
    decision = register_stage(_config(args).to_json(), "", args.model, challenger, champion)
    print(json.dumps(decision, indent=2))


def cmd_index(args: argparse.Namespace) -> None:
    from components.stages import index_stage

    if not args.model.startswith("models:/"):
        _require_dir(args.model, "model")
    _require_dir(args.data, "data")
    print(json.dumps(index_stage(_config(args).to_json(), "", args.model, args.data, args.out), indent=2))


def _cloud_config(args: argparse.Namespace) -> Config:
    """The config of a job that runs elsewhere: no local path resolution, --project etc. applied."""
    overrides = list(args.set or [])
    for flag, key in (
        ("tracking_uri", "tracking.tracking_uri"),
        ("project", "runner.gcp_project"),
        ("region", "runner.gcp_region"),
        ("pipeline_root", "runner.pipeline_root"),
        ("service_account", "runner.service_account"),
    ):
        if getattr(args, flag):
            overrides.append(f"{key}={getattr(args, flag)}")
    return load_config(args.env, args.experiment, overrides)


def _job_spec(args: argparse.Namespace):
    from pipelines.vertex import JobSpec, key_values

    return JobSpec(
        template=args.template or "",
        display_name=args.display_name,
        parameter_values=key_values(args.param or [], "--param"),
        labels=key_values(args.label or [], "--label"),
        enable_caching=False if args.no_cache else None,
        network=args.network or "",
    )


def cmd_submit(args: argparse.Namespace) -> None:
    from pipelines import vertex

    cfg = _cloud_config(args)
    job = vertex.submit_pipeline_job(cfg, _job_spec(args), experiment=args.experiment_name or "")
    print(job.resource_name)
    print(vertex.console_url(cfg, job.resource_name))


def cmd_schedule(args: argparse.Namespace) -> None:
    from pipelines import vertex

    schedule = vertex.CronSchedule.parse(
        args.cron, args.time_zone, args.start_time or "", args.end_time or ""
    )
    cfg = _cloud_config(args)
    if args.kfp_host:
        run = vertex.schedule_kubeflow_run(
            cfg, _job_spec(args), schedule, args.kfp_host, experiment=args.experiment_name or ""
        )
        print(run.recurring_run_id)
        return
    created = vertex.schedule_pipeline_job(cfg, _job_spec(args), schedule)
    print(created.resource_name)
    print(vertex.console_url(cfg, created.resource_name))


def cmd_publish(args: argparse.Namespace) -> None:
    from pipelines import publish

    published = publish.publish_template(args.template, args.host, args.tag or [])
    print(published.name)
    print(published.version)
    for url in published.urls:
        print(url)


def cmd_serve(args: argparse.Namespace) -> None:
    from alignpipe.serving.queries import QueryLimits
    from pipelines import serving

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri  # for a models:/ URI
    caps = {"max_image_bytes": args.max_image_bytes, "max_image_pixels": args.max_image_pixels}
    limits = QueryLimits(**{key: value for key, value in caps.items() if value is not None})
    serving.serve(args.model, args.index, serving.serve_target(args.host, args.port, os.environ), limits)


def _add_job_options(p: argparse.ArgumentParser) -> None:
    """The options of `submit` and `schedule`: the template, where it runs, what each run gets."""
    p.add_argument(
        "--template",
        help="pipeline template: local YAML, gs:// URI or Artifact Registry URL "
        "(https://REGION-kfp.pkg.dev/PROJECT/REPO/NAME/TAG or .../sha256:DIGEST); "
        "default: the pipeline compiled for this config",
    )
    p.add_argument("--project", help="Google Cloud project (runner.gcp_project)")
    p.add_argument("--region", help="Vertex AI region (runner.gcp_region)")
    p.add_argument("--pipeline-root", help="gs:// folder of the pipeline's artifacts (runner.pipeline_root)")
    p.add_argument("--service-account", help="the service account the job runs as (runner.service_account)")
    p.add_argument("--display-name", default="align", help="name of the job (and schedule) in the console")
    p.add_argument(
        "--param", action="append", metavar="KEY=VALUE", help="pipeline parameter value (repeatable)"
    )
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="Vertex AI label (repeatable)")
    p.add_argument("--experiment-name", help="Vertex AI experiment (Kubeflow experiment with --kfp-host)")
    p.add_argument("--no-cache", action="store_true", help="turn caching off for every task")
    p.add_argument("--network", help="VPC network to peer with: projects/NUMBER/global/networks/NAME")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument("--env", default="local", choices=sorted(ENV_PRESETS), help="environment preset")
    group.add_argument(
        "--experiment",
        default="tiny",
        choices=sorted(EXPERIMENT_PRESETS),
        help="experiment preset (size of data, model and training)",
    )
    group.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set train.steps=100 (repeatable)",
    )
    group.add_argument("--work-dir", help="folder for the demo web, kfp artifacts and the MLflow store")
    group.add_argument("--tracking-uri", help="MLflow tracking server, e.g. http://127.0.0.1:5000")

    parser = argparse.ArgumentParser(prog="alignpipe", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, fn, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(fn=fn)
        return p

    p = add("run", cmd_run, "run the whole DAG with kfp's local runner (the demo web unless seeds are set)")
    p.add_argument(
        "--runner",
        choices=RUNNERS,
        default="subprocess",
        help="kfp's local runner: subprocess (this Python environment) or docker (every task in the "
        "project's images, runner.data_image / runner.trainer_image; `make docker-images` builds them)",
    )
    p = add("compile", cmd_compile, "compile the pipeline to a kfp YAML for Vertex AI / Kubeflow")
    p.add_argument("--out", default="align_pipeline.yaml", help="output YAML path")
    p = add("demo-web", cmd_demo_web, "write the demo mini-web and evaluation sets to a folder")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed of the generated content")
    p = add(
        "scrape", cmd_scrape, "crawl a site, or read url lists / WARC files, into (image, alt-text) pairs"
    )
    p.add_argument("--seed", action="append", metavar="URL", help="crawl from this seed URL (repeatable)")
    p.add_argument(
        "--url-list",
        action="append",
        metavar="PATH",
        help="url + caption list: .tsv/.csv/.parquet, local or gs://",
    )
    p.add_argument(
        "--warc", action="append", metavar="PATH", help="Common Crawl WARC or WAT file, local or gs://"
    )
    p.add_argument("--out", required=True, help="output folder of pair shards and manifest")
    p = add("filter", cmd_filter, "apply ALIGN's filters to scraped pairs")
    p.add_argument("--in", dest="input", required=True, help="folder of scraped pair shards")
    p.add_argument("--out", required=True, help="output folder of kept pairs and the funnel")
    p = add("train", cmd_train, "train the dual encoder on filtered pairs")
    p.add_argument("--in", dest="input", required=True, help="folder of filtered pair shards")
    p.add_argument("--out", required=True, help="output model folder")
    p = add(
        "evaluate",
        cmd_evaluate,
        "zero-shot retrieval and classification of a trained model and of the registered champion",
    )
    p.add_argument("--model", required=True, help="model folder written by train")
    p.add_argument("--out", help="write the metrics JSON (challenger and champion) here")
    p.add_argument("--report", help="write the retrieval-examples HTML page here")
    p = add("register", cmd_register, "register a model in MLflow; promote it if it beats the champion")
    p.add_argument("--model", required=True, help="model folder written by train")
    p.add_argument("--metrics", required=True, help="metrics JSON written by evaluate --out")
    p = add(
        "index",
        cmd_index,
        "embed every kept image and its alt-texts into a searchable corpus index (extends an "
        "index of the same model: only new pairs are embedded)",
    )
    p.add_argument(
        "--model",
        required=True,
        help="model folder written by train, or a registered model: models:/NAME/VERSION, models:/NAME@ALIAS",
    )
    p.add_argument("--data", required=True, help="folder of kept pair shards (the filter's output)")
    p.add_argument("--out", required=True, help="index folder: new, or an index to extend (local or gs://)")
    p = add(
        "submit",
        cmd_submit,
        "submit one pipeline job to Vertex AI Pipelines (--env vertex: Dataflow); does not wait for it",
    )
    _add_job_options(p)
    p = add(
        "schedule",
        cmd_schedule,
        "schedule the pipeline on Vertex AI Pipelines or a Kubeflow host, one run at a time",
    )
    _add_job_options(p)
    p.add_argument("--cron", required=True, help="5-field cron, e.g. '0 3 * * 1' (Mondays at 03:00)")
    p.add_argument("--time-zone", default="UTC", help="IANA time zone of the cron (default UTC)")
    p.add_argument("--start-time", help="first possible run, ISO 8601 with an offset")
    p.add_argument("--end-time", help="last possible run, ISO 8601 with an offset")
    p.add_argument(
        "--kfp-host",
        metavar="URL",
        help="a self-hosted Kubeflow Pipelines API instead of Vertex AI (its cron gets a seconds field)",
    )
    publish_help = (
        "upload a compiled pipeline to an Artifact Registry KFP repository; prints its name, "
        "its version and the URL of each tag (for `submit --template`)"
    )
    p = sub.add_parser("publish", help=publish_help, description=publish_help)
    p.set_defaults(fn=cmd_publish)
    p.add_argument("--template", required=True, help="compiled pipeline YAML (`alignpipe compile --out`)")
    p.add_argument(
        "--host",
        required=True,
        metavar="URL",
        help="the KFP repository: https://REGION-kfp.pkg.dev/PROJECT/REPO",
    )
    p.add_argument(
        "--tag",
        action="append",
        help="tag of the uploaded version, moved from any older one (repeatable; empty values are skipped)",
    )
    serve_help = (
        "serve a model (and a corpus index) over HTTP: the search page, JSON searches and "
        "Vertex AI predictions (AIP_HTTP_PORT, AIP_HEALTH_ROUTE, AIP_PREDICT_ROUTE, AIP_STORAGE_URI)"
    )
    p = sub.add_parser("serve", help=serve_help, description=serve_help)
    p.set_defaults(fn=cmd_serve)
    p.add_argument(
        "--model",
        help="model folder written by train (local or gs://), or models:/NAME/VERSION or "
        "models:/NAME@ALIAS from MLflow; default: $AIP_STORAGE_URI",
    )
    p.add_argument("--index", help="corpus index folder (without: predictions only, no search page results)")
    p.add_argument("--host", help="interface to bind (default 127.0.0.1; 0.0.0.0 under AIP_HTTP_PORT)")
    p.add_argument("--port", type=int, help="TCP port (default $AIP_HTTP_PORT or 8080)")
    p.add_argument("--tracking-uri", help="MLflow tracking server of a models:/ URI")
    p.add_argument("--max-image-bytes", type=int, help="largest query image file (default 10 MB)")
    p.add_argument("--max-image-pixels", type=int, help="most pixels of a query image (default 50 M)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Commands print JSON on stdout; MLflow would print run URLs there too.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # MLflow reports usage to its makers unless told not to; runs here talk only to the hosts the
    # config names (set MLFLOW_DISABLE_TELEMETRY=false to allow it).
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args.fn(args)
    except AlignPipeError as e:
        print(f"alignpipe: error: {one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("alignpipe: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
