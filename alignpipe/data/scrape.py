"""The scrape stage: (image, alt-text) pairs from a crawl, url lists or Common Crawl archives.

A Beam pipeline (the runner comes from `beam_pipeline_args(cfg)`; the same graph runs on
the DirectRunner and on Dataflow):

    source: crawl (one site per seed host) | url lists | WARC / WAT files
      -> pages (manifest lines) and <img> entries (image URL, alt, page)
      -> one page per (image URL, alt): the others are `duplicate_pair`, no alt `no_alt`
      -> group by image URL -> work units of ~`scrape.unit_size` image URLs (by URL hash)
      -> per unit: download (async, polite, checked), decode + hash + resize in worker
         processes, write the unit's files, record the unit as done
      -> outcome counts -> `scrape_report.json`

Image bytes never travel through Beam: each unit writes its own files. Work happens in a
staging folder (`out_dir/_staging`); a unit is finished once its done record is written,
and a killed scrape, rerun with the same configuration, redoes only the unfinished units.
The previous output in `out_dir` stays until a run has finished: only then are the new
files moved in.

Outputs in `out_dir`: the unit files of `alignpipe.data.shards`; `manifest-*.jsonl`, one
JSON line per page URL met and per `<img>` use, `{"kind": "page"|"image", "url",
"page_url", "outcome", ...}` (page outcomes: `alignpipe.data.crawl`; image outcomes:
`alignpipe.data.download`, plus `no_alt` and `duplicate_pair`); `scrape_report.json`
(`ScrapeReport`), whose `outcomes` count manifest lines by `kind/outcome`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import zlib
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue

from alignpipe import fs
from alignpipe.config import Config, ScrapeConfig, beam_pipeline_args
from alignpipe.data import shards
from alignpipe.data.crawl import allowed_hosts, crawl_host, host_of, is_allowed_host
from alignpipe.data.download import UnitDownload, Use, image_line
from alignpipe.data.entries import ImageEntry, PageRecord
from alignpipe.errors import InputError
from alignpipe.workers import process_pool

log = logging.getLogger("alignpipe")
STAGING = "_staging"
REPORT_FILE = "scrape_report.json"
RUN_FILE = "_run.json"
PUBLISH_FILE = "_publish.json"
PAGE_FAILURES = ("unreachable", "timeout", "not_html", "too_large", "too_many_redirects", "forbidden_address")
OUTPUT_GLOBS = (
    "pairs-*.tfrecord.gz",
    "manifest-*.jsonl",
    REPORT_FILE,
    "webdataset/*.tar",
    "parquet/*.parquet",
)
# Fields that change what a scrape produces; a rerun with others (speed, manners) resumes.
_FINGERPRINT_FIELDS = (
    "source seed_urls input_paths url_column caption_column allowed_hosts image_hosts use_sitemaps max_pages "
    "max_depth user_agent allowed_networks max_image_bytes max_image_pixels max_page_bytes resize_mode "
    "image_size jpeg_quality unit_size output_formats"
).split()


@dataclasses.dataclass(frozen=True)
class ScrapeReport:
    """What a scrape did; `outcomes` maps `kind/outcome` to a count of manifest lines."""

    pages_crawled: int
    pages_failed: int
    images_found: int
    pairs_written: int
    outcomes: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    @classmethod
    def from_outcomes(cls, outcomes: dict[str, int]) -> ScrapeReport:
        def total(kind: str, keep) -> int:
            return sum(n for key, n in outcomes.items() if key.startswith(kind) and keep(key.split("/")[1]))

        return cls(
            pages_crawled=outcomes.get("page/ok", 0),
            pages_failed=total("page/", lambda o: o in PAGE_FAILURES or o.startswith("http_")),
            images_found=total("image/", lambda o: True),
            pairs_written=outcomes.get("image/ok", 0),
            outcomes=dict(sorted(outcomes.items())),
        )


def run_scrape(cfg: Config, out_dir: str) -> ScrapeReport:
    """Runs (or resumes) the scrape into `out_dir` and returns its report.

    Raises:
        InputError: no seed URLs (crawl), or input paths that match no file.
    """
    inputs = check_inputs(cfg.scrape)
    staging = fs.join(out_dir, STAGING)
    start = time.monotonic()
    if not _publish_pending(staging, fingerprint(cfg.scrape)):
        _prepare_staging(staging, fingerprint(cfg.scrape))
        with beam.Pipeline(options=PipelineOptions(beam_pipeline_args(cfg))) as pipeline:
            build_scrape(pipeline, cfg.scrape, staging, inputs)
        _plan_publish(staging, out_dir)
    _publish(staging, out_dir)
    report = ScrapeReport.from_outcomes(fs.read_json(fs.join(out_dir, REPORT_FILE))["outcomes"])
    log.info(
        "scrape: %d pages crawled, %d failed, %d <img> entries, %d pairs written in %.1f s",
        report.pages_crawled,
        report.pages_failed,
        report.images_found,
        report.pairs_written,
        time.monotonic() - start,
    )
    return report


def check_inputs(cfg: ScrapeConfig) -> list[str]:
    """The input files of a `url_list` / `warc` scrape (globs expanded); [] for a crawl.

    Raises:
        InputError: naming the missing seeds or the patterns that match nothing.
    """
    if cfg.source == "crawl":
        if not cfg.seed_urls:
            raise InputError(
                "scrape.seed_urls is empty: give at least one http(s) URL to start crawling from"
            )
        return []
    if not cfg.input_paths:
        raise InputError(f"scrape.source={cfg.source} needs scrape.input_paths: files or globs to read")
    paths = []
    for pattern in cfg.input_paths:
        found = fs.glob(pattern)
        if not found:
            raise InputError(f"scrape.input_paths: {pattern!r} matches no file")
        paths += found
    return sorted(set(paths))


def fingerprint(cfg: ScrapeConfig) -> str:
    fields = {name: getattr(cfg, name) for name in _FINGERPRINT_FIELDS}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def build_scrape(pipeline: beam.Pipeline, cfg: ScrapeConfig, staging: str, inputs: list[str]) -> None:
    """Adds the scrape transforms to `pipeline` (see the module docstring)."""
    if cfg.source == "url_list":
        page_lines = page_counts = None
        entries = (
            pipeline
            | "Lists" >> beam.Create(inputs)
            | "SpreadLists" >> beam.Reshuffle()
            | "ReadLists" >> beam.FlatMap(_read_url_list, cfg.url_column, cfg.caption_column)
            | "KeyByPair" >> beam.Map(lambda e: ((e.url, e.alt), (e.page_url, e.opted_out)))
        )
    else:
        if cfg.source == "warc":
            pages = (
                pipeline
                | "Archives" >> beam.Create(inputs)
                | "SpreadArchives" >> beam.Reshuffle()
                | "ReadArchives" >> beam.FlatMap(_read_archive)
            )
        else:
            pages = (
                pipeline
                | "Seeds" >> beam.Create(sorted(set(cfg.seed_urls)))
                | "KeyByHost" >> beam.Map(lambda url: (host_of(url), url))
                | "GroupSeeds" >> beam.GroupByKey()
                | "Crawl" >> beam.ParDo(CrawlSiteFn(cfg))
            )
        split = pages | "Pages" >> beam.ParDo(PageOutputsFn()).with_outputs("lines", "counts", main="entries")
        entries, page_lines, page_counts = split.entries, split.lines, split.counts
    pairs = (
        entries
        | "GroupByPair" >> beam.GroupByKey()
        | "FirstPagePerPair" >> beam.ParDo(FirstUseFn()).with_outputs("lines", "counts", main="uses")
    )
    by_image = pairs.uses | "GroupByImage" >> beam.GroupByKey()
    num_units = (
        by_image
        | "CountImages" >> beam.combiners.Count.Globally()
        | "NumUnits" >> beam.Map(lambda n: max(1, math.ceil(n / cfg.unit_size)))
    )
    unit_counts = (
        by_image
        | "AssignUnit" >> beam.Map(assign_unit, beam.pvalue.AsSingleton(num_units))
        | "GroupByUnit" >> beam.GroupByKey()
        | "Download" >> beam.ParDo(DownloadUnitFn(cfg, staging))
    )
    lines = [pairs.lines] + ([page_lines] if page_lines is not None else [])
    counts = [pairs.counts, unit_counts] + ([page_counts] if page_counts is not None else [])
    _ = (
        lines
        | "AllLines" >> beam.Flatten()
        | "WriteManifest"
        >> beam.io.WriteToText(fs.join(staging, "manifest-entries"), file_name_suffix=".jsonl")
    )
    _ = (
        counts
        | "AllCounts" >> beam.Flatten()
        | "Sum" >> beam.CombinePerKey(sum)
        | "ToDict" >> beam.combiners.ToDict()
        | "WriteReport"
        >> beam.Map(
            lambda o: fs.write_json(fs.join(staging, REPORT_FILE), ScrapeReport.from_outcomes(o).to_dict())
        )
    )


class _ManifestFn(beam.DoFn):
    """A DoFn that writes manifest lines (tagged "lines", as JSON) and counts them by
    `kind/outcome` once per bundle (tagged "counts"): one count element per bundle and
    outcome instead of one per line keeps Beam's per-element cost off the hot path."""

    def start_bundle(self) -> None:
        self._counts: collections.Counter[str] = collections.Counter()

    def line(self, line: dict[str, object]) -> beam.pvalue.TaggedOutput:
        self._counts[f"{line['kind']}/{line['outcome']}"] += 1
        return beam.pvalue.TaggedOutput("lines", json.dumps(line, sort_keys=True))

    def finish_bundle(self):
        for key, count in self._counts.items():
            value = WindowedValue((key, count), GlobalWindow().max_timestamp(), [GlobalWindow()])
            yield beam.pvalue.TaggedOutput("counts", value)
        self._counts.clear()


class PageOutputsFn(_ManifestFn):
    """`PageRecord` -> its manifest line, and ((image URL, alt), (page URL, opted out)) per `<img>`."""

    def process(self, page: PageRecord):
        yield self.line(page_line(page))
        for e in page.images:
            yield (e.url, e.alt), (e.page_url, e.opted_out)


class FirstUseFn(_ManifestFn):
    """((image URL, alt), [(page URL, opted out)]) -> (image URL, `Use`) of the first page; the
    other pages, or every page when alt is empty, become `duplicate_pair` / `no_alt` lines."""

    def process(self, element: tuple[tuple[str, str], list[tuple[str, bool]]]):
        (url, alt), pages = element
        pages = sorted(pages)
        if not alt:
            for page, _ in pages:
                yield self.line(image_line(url, Use(alt, page), "no_alt"))
            return
        yield url, Use(alt, pages[0][0], opted_out=any(opted for _, opted in pages))
        for page, _ in pages[1:]:
            yield self.line(image_line(url, Use(alt, page), "duplicate_pair"))


def page_line(page: PageRecord) -> dict[str, object]:
    """The manifest line of a page URL."""
    line = {
        "kind": "page",
        "url": page.url,
        "page_url": page.referrer,
        "outcome": page.outcome,
        "depth": page.depth,
    }
    return line | ({"error": page.error} if page.error else {})


def assign_unit(
    element: tuple[str, list[Use]], num_units: int
) -> tuple[tuple[int, int], tuple[str, list[Use]]]:
    """Keys an image by its work unit: a stable hash of its URL, so a rerun forms the same units."""
    url, uses = element
    return (zlib.crc32(url.encode("utf-8")) % num_units, num_units), (
        url,
        sorted(uses, key=dataclasses.astuple),
    )


def _read_url_list(path: str, url_column: str, caption_column: str):
    from alignpipe.data.url_lists import read_url_list

    yield from read_url_list(path, url_column, caption_column)


def _read_archive(path: str):
    from alignpipe.data.common_crawl import read_archive

    yield from read_archive(path)


class CrawlSiteFn(beam.DoFn):
    """(host, seed URLs) -> a `PageRecord` per page URL; seeds outside the allowed hosts are not crawled."""

    def __init__(self, cfg: ScrapeConfig) -> None:
        self.cfg = cfg

    def process(self, element: tuple[str, list[str]]):
        host, seeds = element
        allowed = allowed_hosts(self.cfg)
        refused = [url for url in seeds if not is_allowed_host(url, allowed)]
        for url in sorted(refused):
            yield PageRecord(url, "off_host")
        if len(refused) < len(seeds):
            yield from crawl_host(host, sorted(set(seeds) - set(refused)), self.cfg)


class DownloadUnitFn(beam.DoFn):
    """((unit, units), [(image URL, uses)]) -> ("image/<outcome>", count) pairs.

    Each unit is downloaded whole by one of `scrape.processes` worker processes
    (`download_unit_files`), so that a machine's cores all do network and image work; a unit
    already done is read back from its done record instead.
    """

    def __init__(self, cfg: ScrapeConfig, staging: str) -> None:
        self.cfg, self.staging = cfg, staging

    def setup(self) -> None:
        self.pool = process_pool(self.cfg.processes)

    def teardown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def start_bundle(self) -> None:
        self.pending: list[Future] = []

    def process(self, element):
        (unit, num_units), images = element
        done = _done_record(self.staging, unit, num_units)
        if fs.exists(done):
            yield from fs.read_json(done)["counts"].items()
            return
        self.pending.append(
            self.pool.submit(download_unit_files, self.cfg, self.staging, unit, num_units, sorted(images))
        )

    def finish_bundle(self):
        for future in as_completed(self.pending):
            for key, count in future.result().items():
                yield WindowedValue((key, count), GlobalWindow().max_timestamp(), [GlobalWindow()])
        self.pending = []


_ROBOTS: dict = {}  # robots.txt rules a worker process has loaded, shared by its units


def download_unit_files(
    cfg: ScrapeConfig, staging: str, unit: int, num_units: int, images: list
) -> dict[str, int]:
    """Downloads one unit into its files in `staging` and records it as done; returns its
    outcome counts. Runs in a worker process; a unit cut short leaves no final file."""
    name = shards.unit_name(unit, num_units)
    writer = shards.UnitWriter(staging, unit, num_units, cfg.output_formats)
    manifest = fs.join(staging, f"manifest-images-{name}.jsonl")
    lines = FileSystems.create(manifest + ".tmp")
    describe = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="describe")
    try:

        def write_line(line: dict[str, object]) -> None:
            lines.write(json.dumps(line, sort_keys=True).encode() + b"\n")

        download = UnitDownload(cfg, describe, writer.write, write_line, _ROBOTS)
        counts = download.run(images, f"download unit {name}")
    except BaseException:
        writer.abort()
        lines.close()
        raise
    finally:
        describe.shutdown()
    lines.close()
    writer.close()
    FileSystems.rename([manifest + ".tmp"], [manifest])
    fs.write_json(_done_record(staging, unit, num_units), {"counts": dict(counts), "pairs": writer.count})
    return dict(counts)


def _done_record(staging: str, unit: int, num_units: int) -> str:
    return fs.join(staging, "_done", f"unit-{shards.unit_name(unit, num_units)}.json")


def _staged_outputs(folder: str) -> list[str]:
    return sorted(p for pattern in OUTPUT_GLOBS for p in fs.glob(fs.join(folder, pattern)))


def _prepare_staging(staging: str, run_id: str) -> None:
    """Keeps a staging folder of the same configuration (to resume it), else starts afresh."""
    run_file = fs.join(staging, RUN_FILE)
    if fs.exists(run_file) and fs.read_json(run_file).get("fingerprint") == run_id:
        stale = fs.glob(fs.join(staging, "manifest-entries*")) + fs.glob(fs.join(staging, "*.tmp"))
        fs.delete(stale + [p for p in [fs.join(staging, REPORT_FILE)] if fs.exists(p)])
        log.info("scrape: resuming the unfinished run in %s", staging)
        return
    if fs.exists(staging):
        FileSystems.delete([staging])
    fs.makedirs(staging)
    fs.write_json(run_file, {"fingerprint": run_id})


def _publish_pending(staging: str, run_id: str) -> bool:
    plan = fs.join(staging, PUBLISH_FILE)
    return fs.exists(plan) and fs.read_json(plan).get("fingerprint") == run_id


def _plan_publish(staging: str, out_dir: str) -> None:
    """Records which files replace which, so that a publish cut short can be finished."""
    new = [p[len(staging) + 1 :] for p in _staged_outputs(staging)]
    old = [p[len(out_dir) + 1 :] for p in _staged_outputs(out_dir)]
    run_id = fs.read_json(fs.join(staging, RUN_FILE))["fingerprint"]
    fs.write_json(fs.join(staging, PUBLISH_FILE), {"fingerprint": run_id, "new": new, "old": old})


def _publish(staging: str, out_dir: str) -> None:
    """Replaces the previous outputs of `out_dir` by the staged ones, then drops the staging."""
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
    FileSystems.delete([staging])


__all__ = ["ImageEntry", "ScrapeReport", "run_scrape", "check_inputs", "build_scrape"]
