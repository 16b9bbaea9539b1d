"""The scrape stage: (image, alt-text) pairs from a crawl, url lists or Common Crawl archives.

A Beam pipeline (the runner comes from `beam_pipeline_args(cfg)`; the same graph runs on
the DirectRunner and on Dataflow):

    source: crawl (one site per seed host) | url lists | WARC / WAT files
      -> pages (manifest lines) and <img> entries (image URL, alt, page)
      -> one page per (image URL, alt): the others are `duplicate_pair`, no alt `no_alt`
      -> group by image URL, joined with what earlier runs fetched (`scrape.state_dir`)
      -> work units of ~`scrape.unit_size` image URLs (by URL hash)
      -> per unit: download (async, polite, checked; conditional for known images),
         decode + hash + resize in worker processes, write the unit's files (and state
         entries), record the unit as done
      -> outcome counts -> `scrape_report.json`

Image bytes never travel through Beam: each unit writes its own files. Work happens in a
staging folder (`out_dir/_staging`); a unit is finished once its done record is written,
and a killed scrape, rerun with the same configuration, redoes only the unfinished units.
The previous output in `out_dir` stays until a run has finished: only then are the new
files moved in, and the new state (`alignpipe.data.scrape_state`) replaces the old one.
With a state, `out_dir` holds only the pairs of new or changed images: the corpus is the
union of the runs' outputs.

Outputs in `out_dir`: the unit files of `alignpipe.data.shards`; `manifest-*.jsonl`, one
JSON line per page URL met and per `<img>` use, `{"kind": "page"|"image", "url",
"page_url", "outcome", ...}` (page outcomes: `alignpipe.data.crawl`; image outcomes:
`alignpipe.data.download`, plus `no_alt` and `duplicate_pair`); `scrape_report.json`
(`ScrapeReport`), whose `outcomes` count manifest lines by `kind/outcome`.
"""

from __future__ import annotations

import collections
import dataclasses
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
from alignpipe.data import corpus, shards
from alignpipe.data.addresses import url_problem
from alignpipe.data.crawl import allowed_hosts, crawl_host, host_of, is_allowed_host
from alignpipe.data.download import UnitDownload, Use, image_line
from alignpipe.data.entries import ImageEntry, PageRecord
from alignpipe.data.scrape_state import (
    IMAGE_PREFIX,
    SUFFIX,
    ImageState,
    StateFileWriter,
    StateVersion,
    current_state,
    join_known_images,
)
from alignpipe.data.staging import (
    REPORT_FILE,
    STAGING,
    STATE,
    fingerprint,
    plan_publish,
    prepare_staging,
    publish,
    publish_pending,
)
from alignpipe.errors import InputError, user_errors_from_beam
from alignpipe.workers import process_pool

log = logging.getLogger("alignpipe")
PAGE_FAILURES = (
    "unreachable",
    "timeout",
    "not_html",
    "too_large",
    "too_many_redirects",
    "forbidden_address",
    "url_malformed",
)


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

    With `scrape.corpus_dir`, the output's shards become a snapshot of that corpus and the
    output lists every snapshot (`alignpipe.data.corpus`).

    Raises:
        InputError: no seed URLs or a malformed one (crawl), input paths that match no
            file, an input that is corrupt or holds no rows (url list) or no archived
            HTTP response (WARC / WAT), or a corrupt state in `scrape.state_dir`; the
            output in `out_dir` is then left as it was.
    """
    inputs = check_inputs(cfg.scrape)
    state_dir = cfg.scrape.state_dir
    state = current_state(state_dir) if state_dir else StateVersion()
    run_id = fingerprint(cfg.scrape, state.generation)
    staging = fs.join(out_dir, STAGING)
    start = time.monotonic()
    if not publish_pending(staging, run_id):
        prepare_staging(staging, run_id)
        # An input error met while Beam runs (a corrupt file, one without rows) ends the run
        # before anything is published: the previous output stays as it was.
        with (
            user_errors_from_beam(),
            beam.Pipeline(options=PipelineOptions(beam_pipeline_args(cfg))) as pipeline,
        ):
            build_scrape(pipeline, cfg.scrape, staging, inputs, state.files)
        generation = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + f"-{run_id[:8]}" if state_dir else ""
        run_ids = [run_id, fingerprint(cfg.scrape, generation)] if state_dir else [run_id]
        plan_publish(staging, out_dir, run_ids, state_dir, generation, state)
    publish(staging, out_dir)
    report = ScrapeReport.from_outcomes(fs.read_json(fs.join(out_dir, REPORT_FILE))["outcomes"])
    if cfg.scrape.corpus_dir:
        corpus.add_snapshot(out_dir, cfg.scrape.corpus_dir, report.pairs_written)
        corpus.write_listing(out_dir, corpus.snapshots(cfg.scrape.corpus_dir))
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
        InputError: naming the missing or malformed seeds or the patterns that match nothing.
    """
    if cfg.source == "crawl":
        if not cfg.seed_urls:
            raise InputError(
                "scrape.seed_urls is empty: give at least one http(s) URL to start crawling from"
            )
        for url in cfg.seed_urls:
            problem = url_problem(url)
            if problem is not None:
                raise InputError(f"scrape.seed_urls: {url!r} cannot be crawled: {problem.reason}")
        return []
    if not cfg.input_paths:
        raise InputError(f"scrape.source={cfg.source} needs scrape.input_paths: files or globs to read")
    paths = []
    for pattern in cfg.input_paths:
        found = fs.glob(pattern)
        if not found:
            raise InputError(f"scrape.input_paths: {pattern!r} matches no file")
        paths += found
    if cfg.source == "url_list":
        from alignpipe.data.url_lists import list_format

        for path in paths:
            list_format(path)  # an unknown format is named before any work starts
    return sorted(set(paths))


def build_scrape(
    pipeline: beam.Pipeline,
    cfg: ScrapeConfig,
    staging: str,
    inputs: list[str],
    state_files: tuple[str, ...] = (),
) -> None:
    """Adds the scrape transforms to `pipeline` (see the module docstring); `state_files`
    are those of the state in force (`scrape_state.current_state`)."""
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
    if cfg.state_dir:
        kept = fs.join(staging, STATE, f"{IMAGE_PREFIX}-kept")
        by_image = join_known_images(pipeline, pairs.uses, state_files, kept)
    else:
        by_image = (
            pairs.uses
            | "GroupByImage" >> beam.GroupByKey()
            | "NothingKnown" >> beam.MapTuple(lambda url, uses: (url, (list(uses), None)))
        )
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


UnitImage = tuple[str, list[Use], ImageState | None]  # image URL, its uses, what an earlier run fetched


def assign_unit(
    element: tuple[str, tuple[list[Use], ImageState | None]], num_units: int
) -> tuple[tuple[int, int], UnitImage]:
    """Keys an image by its work unit: a stable hash of its URL, so a rerun forms the same units."""
    url, (uses, known) = element
    unit = zlib.crc32(url.encode("utf-8")) % num_units
    return (unit, num_units), (url, sorted(uses, key=dataclasses.astuple), known)


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
    """((unit, units), [`UnitImage`]) -> ("image/<outcome>", count) pairs.

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
        images = sorted(images, key=lambda image: image[0])
        self.pending.append(
            self.pool.submit(download_unit_files, self.cfg, self.staging, unit, num_units, images)
        )

    def finish_bundle(self):
        for future in as_completed(self.pending):
            for key, count in future.result().items():
                yield WindowedValue((key, count), GlobalWindow().max_timestamp(), [GlobalWindow()])
        self.pending = []


_ROBOTS: dict = {}  # robots.txt rules a worker process has loaded, shared by its units


def download_unit_files(
    cfg: ScrapeConfig, staging: str, unit: int, num_units: int, images: list[UnitImage]
) -> dict[str, int]:
    """Downloads one unit into its files in `staging` and records it as done; returns its
    outcome counts. Runs in a worker process; a unit cut short leaves no final file."""
    name = shards.unit_name(unit, num_units)
    image_column = shards.parquet_image_column(cfg.resize_mode)
    writer = shards.UnitWriter(staging, unit, num_units, cfg.output_formats, image_column)
    manifest = fs.join(staging, f"manifest-images-{name}.jsonl")
    lines = FileSystems.create(manifest + ".tmp")
    states = None
    if cfg.state_dir:
        states = StateFileWriter(fs.join(staging, STATE, f"{IMAGE_PREFIX}-{name}{SUFFIX}"))
    describe = ThreadPoolExecutor(max(2, os.cpu_count() or 1), thread_name_prefix="describe")
    try:

        def write_line(line: dict[str, object]) -> None:
            lines.write(json.dumps(line, sort_keys=True).encode() + b"\n")

        known = {url: state for url, _, state in images if state is not None}
        download = UnitDownload(cfg, describe, writer.write, write_line, _ROBOTS, known)
        counts = download.run([(url, uses) for url, uses, _ in images], f"download unit {name}")
        for state in download.states if states else ():
            states.write(state)
    except BaseException:
        writer.abort()
        lines.close()
        if states:
            states.abort()
        raise
    finally:
        describe.shutdown()
    lines.close()
    writer.close()
    if states:
        states.close()
    FileSystems.rename([manifest + ".tmp"], [manifest])
    fs.write_json(_done_record(staging, unit, num_units), {"counts": dict(counts), "pairs": writer.count})
    return dict(counts)


def _done_record(staging: str, unit: int, num_units: int) -> str:
    return fs.join(staging, "_done", f"unit-{shards.unit_name(unit, num_units)}.json")


__all__ = ["ImageEntry", "ScrapeReport", "run_scrape", "check_inputs", "build_scrape"]
