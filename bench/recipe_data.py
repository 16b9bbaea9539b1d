"""Builds the training and held-out data of the recipe benchmark (bench/recipe.sh).

Two data sets, each as filtered pair shards (what `alignpipe train` reads) plus a held-out
retrieval set in Karpathy JSON (what `alignpipe evaluate` reads):

- `stamps`: ../shared/datasets/make_stamps_eval.py's 950 captioned images. The train split's
  images are served over HTTP on 127.0.0.1 and go through `alignpipe scrape --url-list` and
  `alignpipe filter` like any url list; the test split (never trained on) is the held-out set,
  one English caption per image.
- `demo`: the built-in demo web, through `alignpipe demo-web`, `scrape` and `filter`; its own
  held-out retrieval and classification sets.

Usage: python bench/recipe_data.py STAMPS_DIR OUT [--experiment tiny]
Writes OUT/<set>/train (pair shards + funnel.json) and OUT/<set>/eval.json (what to evaluate on).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading

ALIGNPIPE = [sys.executable, "-m", "pipelines.cli"]


def log(*parts: object) -> None:
    print("[recipe-data]", *parts, file=sys.stderr, flush=True)


@contextlib.contextmanager
def serve(folder: str):
    """An HTTP server on 127.0.0.1 serving `folder`; yields its base URL."""
    handler = functools.partial(_QuietHandler, directory=folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


EXTRA_SETTINGS: list[str] = []  # --set KEY=VALUE given on the command line, for every stage


def stage(*args: str, experiment: str, work_dir: str) -> None:
    command = [*ALIGNPIPE, *args, "--experiment", experiment, "--work-dir", work_dir]
    command += _sets(EXTRA_SETTINGS)
    log("+", " ".join(command[2:]))
    subprocess.run(command, check=True)


def scrape_and_filter(
    out: str, source: list[str], scrape_settings: list[str], filter_settings: dict, experiment: str
) -> None:
    """`alignpipe scrape` from `source` into OUT/scraped, then `alignpipe filter` into OUT/train."""
    work = os.path.join(out, "work")
    scraped = os.path.join(out, "scraped")
    settings = ["scrape.allowed_networks=127.0.0.1/32", *scrape_settings]
    stage("scrape", *source, "--out", scraped, *_sets(settings), experiment=experiment, work_dir=work)
    stage(
        "filter",
        "--in",
        scraped,
        "--out",
        os.path.join(out, "train"),
        *_sets(f"{key}={value}" for key, value in filter_settings.items()),
        experiment=experiment,
        work_dir=work,
    )


def _sets(settings) -> list[str]:
    return [arg for setting in settings for arg in ("--set", setting)]


def stamps(stamps_dir: str, out: str, experiment: str) -> None:
    """Train split through scrape + filter; test split as a Karpathy JSON with its images."""
    rows = [json.loads(line) for line in open(os.path.join(stamps_dir, "pairs.jsonl"), encoding="utf-8")]
    os.makedirs(out, exist_ok=True)
    test_dir = os.path.join(out, "test")
    images = []
    for row in rows:
        if row["split"] != "test":
            continue
        target = os.path.join(test_dir, row["image"])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(stamps_dir, row["image"]), target)
        images.append({"filename": row["image"], "split": "test", "sentences": [{"raw": row["captions"][0]}]})
    with open(os.path.join(test_dir, "karpathy.json"), "w", encoding="utf-8") as f:
        json.dump({"images": images}, f)
    with serve(stamps_dir) as base:
        url_list = os.path.join(out, "train_urls.csv")
        with open(url_list, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["url", "caption"])
            for row in rows:
                if row["split"] == "train":
                    writer.writerow([f"{base}/{row['image']}", row["captions"][0]])
        scrape_and_filter(out, ["--url-list", url_list], [], {}, experiment)
    _write_eval(
        out, {"eval.retrieval_sets": "stamps=" + os.path.join(test_dir, "karpathy.json")}, len(images)
    )


def demo(out: str, experiment: str) -> None:
    """The demo web through scrape + filter; its held-out sets."""
    web = os.path.join(out, "web")
    os.makedirs(out, exist_ok=True)
    subprocess.run([*ALIGNPIPE, "demo-web", "--out", web], check=True, stdout=subprocess.DEVNULL)
    settings = {
        "eval.retrieval_sets": "demo=" + os.path.join(web, "eval", "retrieval", "dataset_demo.json"),
        "eval.classification_sets": "demo_shapes=" + os.path.join(web, "eval", "classification"),
        "filter.unsafe_image_blocklist": os.path.join(web, "unsafe_blocklist.txt"),
    }
    with serve(os.path.join(web, "site")) as base:
        source = ["--seed", f"{base}/index.html"]
        # The evaluation sets feed the filter's near-duplicate rule.
        scrape_and_filter(out, source, ["scrape.image_hosts=allowed"], settings, experiment)
    _write_eval(out, {k: v for k, v in settings.items() if k.startswith("eval.")}, 0)


def _write_eval(out: str, settings: dict, images: int) -> None:
    with open(os.path.join(out, "eval.json"), "w", encoding="utf-8") as f:
        json.dump(settings, f, indent=1)
    log(f"{out}: eval settings {settings}" + (f", {images} held-out images" if images else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stamps_dir", help="output folder of make_stamps_eval.py")
    parser.add_argument("out")
    parser.add_argument("--experiment", default="tiny")
    parser.add_argument("--sets", default="stamps,demo")
    parser.add_argument("--set", action="append", default=[], dest="settings", metavar="KEY=VALUE")
    args = parser.parse_args()
    EXTRA_SETTINGS.extend(args.settings)
    sets = args.sets.split(",")
    if "stamps" in sets:
        stamps(args.stamps_dir, os.path.join(args.out, "stamps"), args.experiment)
    if "demo" in sets:
        demo(os.path.join(args.out, "demo"), args.experiment)


if __name__ == "__main__":
    main()
