"""Downloading one work unit of images: fetch, check, hash, resize, write.

The network runs on one asyncio loop (`Fetcher`: many requests in flight, per-host
limits, robots.txt checked on every hop); decoding, hashing and resizing run beside it
in the executor given (`alignpipe.imaging.decode.describe_image`; threads, as Pillow and
hashlib release the GIL), so they never stall the network. The scrape runs one such unit
per worker process and core.

Given what earlier runs fetched (`known`, from `scrape.state_dir`), an image URL whose uses
all have alt-texts already written is asked for conditionally (`Validators`); a new or
changed image is written as today, an unchanged one is not (the corpus of an earlier run
holds it). Every use of every image URL ends in one outcome:

| outcome                     | meaning                                                 |
|-----------------------------|---------------------------------------------------------|
| `ok`                        | written as a pair                                       |
| `not_modified`              | the server answered 304 to the earlier validators       |
| `unchanged`                 | the bytes hash to the SHA-256 written earlier, with     |
|                             | this alt-text                                           |
| `opted_out`                 | the page or the image (`X-Robots-Tag`) says noai / noimageai |
| `not_http`                  | a URL of another scheme (`data:`, `ftp:`, ...)          |
| `url_malformed`             | a URL that cannot be requested (`url_problem`: empty,   |
|                             | a bad port or IPv6 literal, a space or control          |
|                             | character, no valid host, too long, ...); no request    |
| `off_host`                  | `scrape.image_hosts=allowed` and the host is not        |
| any `Fetcher` outcome       | `robots_disallowed`, `http_404`, `timeout`, ...          |
| any `describe_image` outcome| `not_an_image`, `too_many_pixels`, `truncated`          |
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import hashlib
from collections.abc import Callable, Mapping
from concurrent.futures import Executor

from alignpipe.config import ScrapeConfig
from alignpipe.data.addresses import url_problem
from alignpipe.data.crawl import OPT_OUT, allowed_hosts, is_allowed_host
from alignpipe.data.fetch import Fetched, Fetcher, FetchPolicy, Validators
from alignpipe.data.records import ImageTextPair
from alignpipe.data.robots import RobotsCache, RobotsRules
from alignpipe.data.scrape_state import ImageState
from alignpipe.imaging.decode import describe_image
from alignpipe.progress import Progress


@dataclasses.dataclass(frozen=True)
class Use:
    """One (alt-text, page) that refers to an image URL."""

    alt: str
    page_url: str
    opted_out: bool = False


UnitImages = list[tuple[str, list[Use]]]  # (image URL, its uses)
PairSink = Callable[[ImageTextPair], None]
LineSink = Callable[[dict[str, object]], None]


def image_line(url: str, use: Use, outcome: str, error: str = "") -> dict[str, object]:
    """The manifest line of one `<img>` use."""
    line = {"kind": "image", "url": url, "alt": use.alt, "page_url": use.page_url, "outcome": outcome}
    return line | ({"error": error} if error else {})


class UnitDownload:
    """Downloads the images of one unit into `write_pair` / `write_line`; counts outcomes.

    `known` holds what earlier runs fetched, by image URL; after `run`, `states` holds the
    entry of each image URL of the unit that has one (new, refreshed, or the earlier one
    when the image could not be fetched this time).
    """

    def __init__(
        self,
        cfg: ScrapeConfig,
        pool: Executor | None,
        write_pair: PairSink,
        write_line: LineSink,
        robots_known: dict[str, RobotsRules] | None = None,
        known: Mapping[str, ImageState] | None = None,
    ) -> None:
        self.cfg, self.pool = cfg, pool
        self.write_pair, self.write_line = write_pair, write_line
        self.robots_known = {} if robots_known is None else robots_known
        self.known = {} if known is None else known
        self.states: list[ImageState] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self._allowed = allowed_hosts(cfg)
        self._describe = functools.partial(
            describe_image,
            resize_mode=cfg.resize_mode,
            image_size=cfg.image_size,
            jpeg_quality=cfg.jpeg_quality,
            max_pixels=cfg.max_image_pixels,
        )

    def run(self, images: UnitImages, desc: str) -> collections.Counter[str]:
        asyncio.run(self._run(images, desc))
        return self.counts

    async def _run(self, images: UnitImages, desc: str) -> None:
        progress = Progress(total=len(images), desc=desc, unit="img")
        async with Fetcher(FetchPolicy.from_config(self.cfg)) as fetcher:
            robots = RobotsCache(fetcher, self.cfg.user_agent, self.robots_known)
            slots = asyncio.Semaphore(self.cfg.max_connections)

            async def one(url: str, uses: list[Use]) -> None:
                async with slots:
                    state = await self._image(fetcher, robots, url, uses, self.known.get(url))
                if state is not None:
                    self.states.append(state)
                progress.update(1)

            await asyncio.gather(*(one(url, uses) for url, uses in images))
        progress.close()

    def _lines(self, url: str, uses: list[Use], outcome: str, error: str = "") -> None:
        if not uses:
            return
        for use in uses:
            self.write_line(image_line(url, use, outcome, error))
        self.counts[f"image/{outcome}"] += len(uses)

    async def _image(
        self, fetcher: Fetcher, robots: RobotsCache, url: str, uses: list[Use], known: ImageState | None
    ) -> ImageState | None:
        """Fetches one image URL for its uses; returns its state entry after this run."""
        wanted = [u for u in uses if not u.opted_out]
        self._lines(url, [u for u in uses if u.opted_out], "opted_out", "the page opts out of AI use")
        if not wanted:
            return known
        problem = url_problem(url)
        if problem is not None:
            self._lines(url, wanted, problem.outcome, problem.reason)
            return known
        if self.cfg.image_hosts == "allowed" and not is_allowed_host(url, self._allowed):
            self._lines(url, wanted, "off_host")
            return known
        # A 304 gives no bytes: only ask conditionally when every alt-text was written before.
        written = set(known.alts) if known else set()
        conditional = known is not None and all(u.alt in written for u in wanted)
        validators = Validators(known.final_url, known.etag, known.last_modified) if conditional else None
        fetched = await fetcher.get(
            url, self.cfg.max_image_bytes, check=robots.refusal, validators=validators
        )
        if fetched.outcome not in ("ok", "not_modified"):
            self._lines(url, wanted, fetched.outcome, await self._reason(robots, fetched))
            return known
        if fetched.robots_tags & OPT_OUT:
            self._lines(url, wanted, "opted_out", "X-Robots-Tag: " + ", ".join(sorted(fetched.robots_tags)))
            return known
        if fetched.outcome == "not_modified":
            assert known is not None
            self._lines(url, wanted, "not_modified")
            return _refreshed(known, fetched, known.sha256, known.alts)
        same = known is not None and await self._in_pool(_sha256, fetched.body) == known.sha256
        fresh = [u for u in wanted if not same or u.alt not in written]
        self._lines(url, [u for u in wanted if same and u.alt in written], "unchanged")
        if not fresh:
            return _refreshed(known, fetched, known.sha256, known.alts)
        facts = await self._in_pool(self._describe, fetched.body)
        if facts.outcome != "ok":
            self._lines(url, fresh, facts.outcome, facts.error)
            return known
        data = fetched.body if facts.encoded is None else facts.encoded
        for use in fresh:
            pair = ImageTextPair(
                data,
                facts.image_format,
                facts.width,
                facts.height,
                facts.sha256,
                use.alt,
                url,
                use.page_url,
                facts.original_width,
                facts.original_height,
                facts.phash,
            )
            self.write_pair(pair)
        self._lines(url, fresh, "ok")
        alts = (written if same else set()) | {u.alt for u in fresh}
        return _refreshed(known, fetched, facts.sha256, tuple(sorted(alts)))

    async def _in_pool(self, function: Callable, body: bytes):
        if self.pool is None:
            return function(body)
        return await asyncio.get_running_loop().run_in_executor(self.pool, function, body)

    @staticmethod
    async def _reason(robots: RobotsCache, fetched: Fetched) -> str:
        if fetched.outcome in ("robots_disallowed", "robots_unavailable"):
            rules = await robots.rules(fetched.final_url)
            return rules.reason or f"robots.txt of {fetched.final_url}"
        return fetched.error


def _sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _refreshed(known: ImageState | None, fetched: Fetched, sha256: str, alts: tuple[str, ...]) -> ImageState:
    """The state entry after an answer: its validators (a 304 may omit unchanged ones)."""
    etag, last_modified = fetched.etag, fetched.last_modified
    if fetched.outcome == "not_modified" and known is not None:
        etag, last_modified = etag or known.etag, last_modified or known.last_modified
    return ImageState(fetched.url, fetched.final_url, etag, last_modified, sha256, alts)
