"""The scrape stage: crawl seed hosts, download `<img>`s, write (image, alt-text) pairs.

A Beam pipeline (the runner comes from `cfg.runner.beam_args`; the same graph runs
on the DirectRunner and on Dataflow):

    seed URLs -> group by host -> crawl each host (one worker per host: politeness)
      -> extract (image URL, alt, page URL) entries
      -> drop entries without alt; keep one page per (image URL, alt)
      -> group by image URL, then by image host
      -> download each image once (robots.txt, size and time limits; a thread pool,
         or one request at a time when robots.txt sets a Crawl-delay)
      -> decode (format, width, height), SHA-256 -> `ImageTextPair` TFRecords

Outputs in `out_dir`:
- `pairs-SSSSS-of-NNNNN.tfrecord.gz`: `ImageTextPair` examples (`alignpipe.data.records`).
- `manifest-SSSSS-of-NNNNN.jsonl`: one JSON line per page URL met and per `<img>` entry,
  `{"kind": "page"|"image", "url", "page_url", "outcome", ...}`. Page outcomes are those
  of `alignpipe.data.crawl`; image outcomes are `ok` (written), `no_alt`,
  `duplicate_pair` (the same image URL and alt on another page), `off_host`,
  `not_http` (e.g. `data:` URLs), `robots_disallowed`, `robots_unavailable`,
  `http_<status>`, `unreachable`, `too_large`, `not_an_image`.
- `scrape_report.json`: `ScrapeReport.to_dict()`; `outcomes` counts manifest lines by
  `kind/outcome`, so `images_found` is the sum of the `image/*` counts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from PIL import Image

from alignpipe import fs
from alignpipe.config import Config, ScrapeConfig
from alignpipe.data.crawl import CrawlEvent, allowed_hosts, crawl_host, host_of, is_allowed_host
from alignpipe.data.download import Fetched, fetch
from alignpipe.data.html import extract_image_alts
from alignpipe.data.records import SHARD_SUFFIX, ImageTextPair, shard_pattern, shard_prefix
from alignpipe.data.robots import load_robots
from alignpipe.errors import InputError
from alignpipe.progress import Progress

log = logging.getLogger("alignpipe")
MANIFEST_PREFIX = "manifest"
MANIFEST_SUFFIX = ".jsonl"
REPORT_FILE = "scrape_report.json"
PAGE_FAILURES = ("unreachable", "not_html", "too_large")  # and every http_<status>
IMAGE_FORMATS = {"JPEG": "jpeg", "MPO": "jpeg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


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
    """Runs the scrape pipeline and returns its report (also in `out_dir/scrape_report.json`).

    Raises:
        InputError: `scrape.seed_urls` is empty.
    """
    if not cfg.scrape.seed_urls:
        raise InputError("scrape.seed_urls is empty: give at least one http(s) URL to start crawling from")
    fs.makedirs(out_dir)
    _delete_previous_outputs(out_dir)
    start = time.monotonic()
    with beam.Pipeline(options=PipelineOptions(list(cfg.runner.beam_args))) as pipeline:
        build_scrape(pipeline, cfg.scrape, out_dir)
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


def build_scrape(pipeline: beam.Pipeline, cfg: ScrapeConfig, out_dir: str) -> None:
    """Adds the scrape transforms to `pipeline` (see the module docstring)."""
    events = (
        pipeline
        | "Seeds" >> beam.Create(sorted(set(cfg.seed_urls)))
        | "KeyByHost" >> beam.Map(lambda url: (host_of(url), url))
        | "GroupSeeds" >> beam.GroupByKey()
        | "Crawl" >> beam.ParDo(CrawlHostFn(cfg))
    )
    pages_manifest = events | "PageLines" >> beam.Map(page_line)
    entries = events | "Extract" >> beam.FlatMap(image_entries)
    split = (
        entries
        | "KeyByPair" >> beam.Map(lambda e: ((e["url"], e["alt"]), e["page_url"]))
        | "GroupByPair" >> beam.GroupByKey()
        | "FirstPagePerPair" >> beam.FlatMap(first_page_per_pair).with_outputs("repeats", main="first")
    )
    first, repeats = split.first, split.repeats
    downloaded = (
        first
        | "KeyByImage" >> beam.Map(lambda e: (e["url"], (e["alt"], e["page_url"])))
        | "GroupByImage" >> beam.GroupByKey()
        | "KeyByImageHost" >> beam.Map(lambda kv: (host_of(kv[0]), (kv[0], sorted(kv[1]))))
        | "GroupByImageHost" >> beam.GroupByKey()
        | "Download" >> beam.ParDo(DownloadHostImagesFn(cfg)).with_outputs("pairs", main="manifest")
    )
    _ = downloaded.pairs | "WritePairs" >> beam.io.WriteToTFRecord(
        shard_prefix(out_dir),
        file_name_suffix=SHARD_SUFFIX,
        num_shards=cfg.num_shards,
        compression_type=CompressionTypes.GZIP,
    )
    manifest = (pages_manifest, repeats, downloaded.manifest) | "AllLines" >> beam.Flatten()
    _ = (
        manifest
        | "ToJson" >> beam.Map(lambda line: json.dumps(line, sort_keys=True))
        | "WriteManifest"
        >> beam.io.WriteToText(fs.join(out_dir, MANIFEST_PREFIX), file_name_suffix=MANIFEST_SUFFIX)
    )
    _ = (
        manifest
        | "OutcomeKey" >> beam.Map(_count_outcome)
        | "CountOutcomes" >> beam.combiners.Count.PerElement()
        | "ToDict" >> beam.combiners.ToDict()
        | "WriteReport"
        >> beam.Map(
            lambda o: fs.write_json(fs.join(out_dir, REPORT_FILE), ScrapeReport.from_outcomes(o).to_dict())
        )
    )


def page_line(event: CrawlEvent) -> dict[str, object]:
    """The manifest line of a page URL."""
    line = {
        "kind": "page",
        "url": event.url,
        "page_url": event.referrer,
        "outcome": event.outcome,
        "depth": event.depth,
    }
    return line | ({"error": event.error} if event.error else {})


def image_entries(event: CrawlEvent) -> list[dict[str, str]]:
    """The `<img>` entries of a fetched page: `{"url", "alt", "page_url"}`."""
    if event.outcome != "ok":
        return []
    found = extract_image_alts(event.html, event.final_url)
    return [{"url": f.image_url, "alt": f.alt, "page_url": event.final_url} for f in found]


def image_line(url: str, alt: str, page_url: str, outcome: str, error: str = "") -> dict[str, object]:
    """The manifest line of one `<img>` entry."""
    line = {"kind": "image", "url": url, "alt": alt, "page_url": page_url, "outcome": outcome}
    return line | ({"error": error} if error else {})


def _count_outcome(line: dict[str, object]) -> str:
    key = f"{line['kind']}/{line['outcome']}"
    beam.metrics.Metrics.counter("scrape", key.replace("/", "_")).inc()
    return key


class CrawlHostFn(beam.DoFn):
    """(host, seed URLs) -> a `CrawlEvent` per page URL; hosts outside the allowed set are not crawled."""

    def __init__(self, cfg: ScrapeConfig) -> None:
        self.cfg = cfg

    def process(self, element: tuple[str, list[str]]):
        host, seeds = element
        allowed = allowed_hosts(self.cfg)
        if not all(is_allowed_host(url, allowed) for url in seeds):
            for url in sorted(seeds):
                yield CrawlEvent(url, "", 0, "off_host")
            return
        yield from crawl_host(host, sorted(seeds), self.cfg)


def first_page_per_pair(element: tuple[tuple[str, str], list[str]]):
    """((image URL, alt), page URLs) -> the entry of the first page to download; tagged
    "repeats": manifest lines for the other pages, or for every page when alt is empty."""
    (url, alt), pages = element
    pages = sorted(pages)
    if not alt:
        for page in pages:
            yield beam.pvalue.TaggedOutput("repeats", image_line(url, alt, page, "no_alt"))
        return
    yield {"url": url, "alt": alt, "page_url": pages[0]}
    for page in pages[1:]:
        yield beam.pvalue.TaggedOutput("repeats", image_line(url, alt, page, "duplicate_pair"))


class DownloadHostImagesFn(beam.DoFn):
    """(image host, [(image URL, [(alt, page URL)])]) -> "pairs": serialized `ImageTextPair`s;
    main: a manifest line per (alt, page URL) entry."""

    def __init__(self, cfg: ScrapeConfig) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(self.cfg.download_threads, thread_name_prefix="download")
        self._last_request = 0.0  # monotonic time of the last request, when robots.txt sets a delay

    def teardown(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    def process(self, element):
        host, images = element
        allowed = allowed_hosts(self.cfg)
        rules = None
        progress = Progress(total=None, desc=f"download {host or 'non-http'}", unit="img")
        batch: list[tuple[str, list[tuple[str, str]]]] = []
        for url, uses in images:
            if not is_allowed_host(url, allowed):
                yield from self._lines(url, uses, "not_http" if not host else "off_host")
                continue
            rules = rules or load_robots(url, self.cfg.user_agent, self.cfg.request_timeout_s)
            if not rules.can_fetch(url):
                outcome = "robots_unavailable" if rules.disallow_all else "robots_disallowed"
                yield from self._lines(url, uses, outcome, rules.reason)
                continue
            batch.append((url, uses))
            if len(batch) >= 4 * self.cfg.download_threads:
                yield from self._download(batch, rules.crawl_delay_s, progress)
                batch = []
        if batch:
            yield from self._download(batch, rules.crawl_delay_s, progress)
        progress.close()

    def _download(self, batch, delay_s: float, progress: Progress):
        cfg = self.cfg

        def get(url: str) -> Fetched:
            return fetch(url, cfg.user_agent, cfg.request_timeout_s, cfg.max_image_bytes)

        if delay_s > 0:  # robots.txt asks for one request at a time
            results = []
            for url, _ in batch:
                time.sleep(max(0.0, self._last_request + delay_s - time.monotonic()))
                self._last_request = time.monotonic()
                results.append(get(url))
        else:
            results = list(self.pool.map(get, [url for url, _ in batch]))
        for (url, uses), fetched in zip(batch, results, strict=True):
            progress.update(1)
            yield from self._pairs_or_lines(url, uses, fetched)

    def _pairs_or_lines(self, url: str, uses: list[tuple[str, str]], fetched: Fetched):
        if fetched.outcome != "ok":
            yield from self._lines(url, uses, fetched.outcome, fetched.error)
            return
        try:
            described = describe_image(fetched.body)
        except ValueError as e:
            yield from self._lines(url, uses, "not_an_image", str(e))
            return
        image_format, width, height = described
        sha256 = hashlib.sha256(fetched.body).hexdigest()
        for alt, page_url in uses:
            pair = ImageTextPair(fetched.body, image_format, width, height, sha256, alt, url, page_url)
            yield beam.pvalue.TaggedOutput("pairs", pair.to_example())
            yield image_line(url, alt, page_url, "ok")

    @staticmethod
    def _lines(url: str, uses: list[tuple[str, str]], outcome: str, error: str = ""):
        for alt, page_url in uses:
            yield image_line(url, alt, page_url, outcome, error)


def describe_image(data: bytes) -> tuple[str, int, int]:
    """(format, width, height) of an image file, fully decoded to catch truncated files.

    Raises:
        ValueError: the bytes are not an image in one of `IMAGE_FORMATS`.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            kind, (width, height) = image.format, image.size
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"cannot decode image: {e}") from None
    if kind not in IMAGE_FORMATS:
        raise ValueError(f"unsupported image format {kind}")
    return IMAGE_FORMATS[kind], width, height


def _delete_previous_outputs(out_dir: str) -> None:
    """Removes the shards, manifest and report of an earlier run into the same folder."""
    old = fs.glob(shard_pattern(out_dir)) + fs.glob(fs.join(out_dir, f"{MANIFEST_PREFIX}-*{MANIFEST_SUFFIX}"))
    old += [p for p in [fs.join(out_dir, REPORT_FILE)] if fs.exists(p)]
    if old:
        FileSystems.delete(old)
