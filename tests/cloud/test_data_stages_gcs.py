"""The data stages on `gs://` against the Cloud Storage emulator: the same funnel as on a local disk.

Every output, the scrape's state and the corpus live in the emulated bucket (`gcs_bucket`), read
and written through Beam's file systems, as on Vertex AI and Dataflow; the web is a real HTTP
server on 127.0.0.1. Each run is compared with the same run on local paths.

Vertex AI's `/gcs/` mount. A pipeline task gets each artifact twice: its `uri`
(`gs://BUCKET/<pipeline root>/<project>/<job>/<task>/<name>`) and its `path`, the same object
through the task's Cloud Storage FUSE mount (`/gcs/BUCKET/...`, which kfp derives from the uri).
The data components hand Beam the `uri` (Dataflow workers have no such mount) and write the
funnel's Markdown through the `path`. No FUSE runs here: the test points kfp's mount prefix at a
local folder that stands in for `/gcs/`, calls the components' own functions with artifacts whose
uris are in the emulated bucket, and checks that Beam's outputs land in the bucket and only the
Markdown in the mount.
"""

from __future__ import annotations

import io
import json
import os
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from kfp.dsl import Dataset, Markdown, Metrics
from kfp.dsl.types import artifact_types

from alignpipe import fs
from alignpipe.config import load_config
from alignpipe.data import corpus
from alignpipe.data.records import ImageTextPair, read_tfrecords, shard_pattern
from alignpipe.data.scrape import run_scrape
from alignpipe.demo.serve import serve_folder
from alignpipe.filtering.pipeline import run_filter
from components import ops
from tests.data.test_incremental import serve_site, write_site
from tests.filtering.conftest import encode, make_scene

pytestmark = pytest.mark.large

LOOPBACK = "scrape.allowed_networks=127.0.0.1/32"
# The names of state generations and corpus snapshots carry the time and a hash of the folder.
GENERATION = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{8}")


def picture(seed: int, width: int, height: int) -> bytes:
    return encode(make_scene(seed, width, height))


# Kept, too small, too wide, an alt too short, an image with two alt-texts; page2 changes later.
SITE = {
    "index.html": """<img src="etag/a.png" alt="a busy scene of shapes">
        <img src="lm/b.png" alt="another scene with circles">
        <img src="plain/c.png" alt="logo">
        <img src="etag/wide.png" alt="a very wide banner picture">
        <img src="lm/tiny.png" alt="a tiny little picture">
        <a href="page2.html">more</a>""",
    "page2.html": """<img src="etag/a.png" alt="the same scene again captioned">
        <img src="plain/d.png" alt="a fourth scene of shapes">""",
    "etag/a.png": picture(1, 64, 64),
    "lm/b.png": picture(2, 80, 60),
    "plain/c.png": picture(3, 64, 64),
    "etag/wide.png": picture(4, 200, 40),
    "lm/tiny.png": picture(5, 24, 24),
    "plain/d.png": picture(6, 72, 48),
}
CHANGES = {  # a new image on page2 and new bytes for b (with a later modification date)
    "page2.html": SITE["page2.html"] + '<img src="etag/e.png" alt="a new scene added later">',
    "etag/e.png": picture(7, 64, 64),
    "lm/b.png": picture(8, 80, 60),
}


def pairs_of(folder: str, url: str) -> list[tuple[str, str, str]]:
    """(image URL less the site's, alt-text, sha256) of every pair in `folder`'s shards."""
    pairs = []
    for path in fs.glob(shard_pattern(folder)):
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            pairs += [ImageTextPair.from_example(r) for r in read_tfrecords(f)]
    return sorted((p.image_url.removeprefix(url), p.text, p.sha256) for p in pairs)


def listing(base: str) -> list[str]:
    """Every file under `base`, relative to it, with generation and snapshot names masked."""
    if "://" in base:
        paths = [p[len(base) + 1 :] for p in fs.glob(f"{base}/**")]
    else:
        paths = [os.path.relpath(os.path.join(d, f), base) for d, _, files in os.walk(base) for f in files]
    return sorted(GENERATION.sub("<generation>", p) for p in paths)


def incremental_scrapes_and_filter(base: str, site_root) -> dict:
    """Two incremental crawls (the web changes in between) into `base`, with their state and
    corpus there too, then the filter over the corpus; returns what each step gave."""
    write_site(site_root, SITE)
    with serve_site(str(site_root)) as (url, _):
        overrides = [
            f"scrape.seed_urls={url}",
            LOOPBACK,
            "scrape.use_sitemaps=false",
            "scrape.retries=0",
            "scrape.processes=1",
            f"scrape.state_dir={fs.join(base, 'state')}",
            f"scrape.corpus_dir={fs.join(base, 'corpus')}",
        ]
        cfg = load_config("local", "tiny", overrides)
        first = run_scrape(cfg, fs.join(base, "run1"))
        write_site(site_root, CHANGES)
        stat = os.stat(site_root / "lm/b.png")
        os.utime(site_root / "lm/b.png", (stat.st_atime, stat.st_mtime + 10))
        second = run_scrape(cfg, fs.join(base, "run2"))
    funnel = run_filter(cfg, fs.join(base, "run2"), fs.join(base, "filtered"))
    return {
        "reports": [first.to_dict(), second.to_dict()],
        "pairs": [pairs_of(fs.join(base, run), url) for run in ("run1", "run2", "filtered")],
        "snapshots": [pairs_of(folder, url) for folder in corpus.input_folders(fs.join(base, "run2"))],
        "funnel": funnel.to_dict(),
        "files": listing(base),
        "filtered_stats": fs.read_json(fs.join(base, "filtered", "corpus_stats.json")),
    }


def test_incremental_crawl_corpus_and_filter_on_gcs_match_the_local_run(gcs_bucket, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # a gs:// path taken for a local one would show up here
    local = incremental_scrapes_and_filter(str(tmp_path / "local"), tmp_path / "site-local")
    remote = incremental_scrapes_and_filter(f"{gcs_bucket}/data", tmp_path / "site-gcs")

    assert remote == local
    assert os.listdir(cwd) == []
    # the runs did what an incremental corpus does, on both
    first, second = remote["reports"]
    assert first["pairs_written"] == 7  # a twice, b, c, d, wide, tiny
    assert second["outcomes"]["image/ok"] == 2  # e is new, b changed
    assert second["outcomes"]["image/not_modified"] + second["outcomes"]["image/unchanged"] == 6  # uses
    assert len(remote["snapshots"]) == 2
    run1, run2, _ = remote["pairs"]
    assert sorted(remote["snapshots"][0] + remote["snapshots"][1]) == sorted(run1 + run2)
    dropped = {reason: n for reason, n in remote["funnel"]["dropped"].items() if n}
    assert dropped == {"image_too_small": 1, "image_aspect_ratio_too_large": 1, "text_too_short": 1}
    assert remote["funnel"]["kept_pairs"] == 6  # a twice, b old and new, d, e
    # finished runs leave no staging folder, and one state generation (the old one is deleted)
    assert not [name for name in remote["files"] if "_staging" in name]
    state = [name for name in remote["files"] if name.startswith("state/")]
    assert "state/CURRENT.json" in state
    assert {name.split("/")[1] for name in state} == {"CURRENT.json", "<generation>"}
    local_state = fs.glob(str(tmp_path / "local/state/*/images-*"))
    assert len(fs.glob(f"{gcs_bucket}/data/state/*/images-*")) == len(local_state)


def test_a_gcs_staging_folder_left_by_another_run_is_not_reused(gcs_bucket, tmp_path):
    """Object stores have no folders: a staging folder is cleared object by object, or a run
    with other settings would take the units an earlier, different run left as its own."""
    write_site(tmp_path / "site", SITE)
    out = f"{gcs_bucket}/again"
    with serve_site(str(tmp_path / "site")) as (url, _):
        base = [f"scrape.seed_urls={url}", LOOPBACK, "scrape.use_sitemaps=false", "scrape.processes=1"]
        fs.write_json(fs.join(out, "_staging", "_run.json"), {"fingerprint": "another run"})
        stale = {"counts": {"image/ok": 99}, "pairs": 99}
        for units in (1, 2):  # whatever the unit count, a stale done record for each unit
            for unit in range(units):
                name = f"unit-{unit:05d}-of-{units:05d}.json"
                fs.write_json(fs.join(out, "_staging", "_done", name), stale)
        report = run_scrape(load_config("local", "tiny", base), out)
    assert report.outcomes["image/ok"] == 7
    assert len(pairs_of(out, url)) == 7
    assert fs.glob(f"{out}/_staging/**") == []


def write_inputs(inputs: str, url_list: bytes) -> None:
    """The url list and two evaluation sets under `inputs`: a retrieval set (Karpathy JSON) and
    a classification folder whose one image the list also names (a near-copy to drop)."""
    fs.write_bytes(fs.join(inputs, "lists", "list.parquet"), url_list)
    entry = {"filename": "img.png", "split": "test", "sentences": [{"raw": "a scene for retrieval"}]}
    fs.write_json(fs.join(inputs, "eval", "retrieval", "set.json"), {"images": [entry]})
    fs.write_bytes(fs.join(inputs, "eval", "retrieval", "img.png"), picture(9, 64, 64))
    fs.write_text(fs.join(inputs, "eval", "shapes", "classnames.txt"), "square\ta square scene\n")
    fs.write_bytes(fs.join(inputs, "eval", "shapes", "square", "0.png"), OK_PNG)


def url_list_stages(base: str, inputs: str, work_dir: str, list_url: str) -> dict:
    """The scrape and filter components' own functions on the url list and evaluation sets in
    `inputs`, with artifacts whose uris are under `base` (gs:// as on Vertex AI, or local as in
    kfp's local runner)."""
    overrides = ["scrape.source=url_list", f"scrape.input_paths={inputs}/lists/*.parquet", LOOPBACK]
    overrides += ["scrape.retries=0", "scrape.processes=1", f"runner.work_dir={work_dir}"]
    overrides += [f"eval.retrieval_sets=retrieval={inputs}/eval/retrieval/set.json"]
    overrides += [f"eval.classification_sets=shapes={inputs}/eval/shapes"]
    config_json = load_config("local", "tiny", overrides).to_json()
    task = fs.join(base, "123", "align-1")
    raw = Dataset(uri=fs.join(task, "scrape_1", "pairs"))
    scrape_metrics = Metrics(uri=fs.join(task, "scrape_1", "metrics"))
    anything_new = ops.scrape(config_json, "", raw, scrape_metrics)
    kept, filter_metrics = Dataset(uri=fs.join(task, "filter-pairs_2", "pairs")), Metrics()
    funnel = Markdown(uri=fs.join(task, "filter-pairs_2", "funnel"))
    ops.filter_pairs(config_json, "", raw, kept, filter_metrics, funnel)
    return {
        "anything_new": anything_new,
        "scrape": dict(scrape_metrics.metadata),
        "filter": dict(filter_metrics.metadata),
        "pairs": pairs_of(kept.uri, list_url),
        "markdown_path": funnel.path,
    }


OK_PNG = picture(2, 64, 64)


def test_url_list_stages_in_vertex_tasks_read_and_write_the_bucket(gcs_bucket, tmp_path, monkeypatch):
    mount = tmp_path / "gcs"  # stands in for the task's /gcs/ FUSE mount of every bucket
    monkeypatch.setattr(artifact_types, "_GCS_LOCAL_MOUNT_PREFIX", f"{mount}/")
    site = {"big.png": picture(1, 300, 150), "ok.png": OK_PNG, "small.png": picture(3, 20, 20)}
    (tmp_path / "site").mkdir()
    write_site(tmp_path / "site", site)
    with serve_folder(str(tmp_path / "site")) as url:
        rows = {
            "url": [url + "big.png", url + "ok.png", url + "small.png", url + "gone.png", url + "ok.png"],
            "caption": ["a wide scene of shapes", "a square scene of shapes", "a small scene", "x", "logo"],
        }
        table = io.BytesIO()
        pq.write_table(pa.table(rows), table)
        write_inputs(str(tmp_path / "inputs"), table.getvalue())
        write_inputs(f"{gcs_bucket}/inputs", table.getvalue())
        # each its own MLflow store: a second filter run in one store would compare with the first
        root, inputs, work = str(tmp_path / "root"), str(tmp_path / "inputs"), str(tmp_path / "work-local")
        local = url_list_stages(root, inputs, work, url)
        root, inputs, work = f"{gcs_bucket}/root", f"{gcs_bucket}/inputs", str(tmp_path / "work-gcs")
        remote = url_list_stages(root, inputs, work, url)

    markdown = remote.pop("markdown_path")
    assert markdown == f"{mount}/alignpipe-test/root/123/align-1/filter-pairs_2/funnel"
    assert local.pop("markdown_path") == str(tmp_path / "root/123/align-1/filter-pairs_2/funnel")
    assert remote == local
    assert remote["scrape"]["outcome.image.ok"] == 4 and remote["scrape"]["outcome.image.http_404"] == 1
    assert remote["filter"]["input_pairs"] == 4 and remote["filter"]["kept_pairs"] == 1
    # the classification set's image, read from the bucket, drops both pairs of its copy
    assert remote["filter"]["dropped.image_eval_duplicate"] == 2
    # Beam's outputs went to the bucket; the task's mount got the Markdown only
    written = [p.relative_to(mount).as_posix() for p in mount.rglob("*") if p.is_file()]
    assert written == ["alignpipe-test/root/123/align-1/filter-pairs_2/funnel"]
    assert open(markdown).read() == open(tmp_path / "root/123/align-1/filter-pairs_2/funnel").read()
    task = f"{gcs_bucket}/root/123/align-1"
    assert fs.exists(f"{task}/scrape_1/pairs/scrape_report.json")
    assert json.loads(fs.read_text(f"{task}/filter-pairs_2/pairs/funnel.json"))["kept_pairs"] == 1
