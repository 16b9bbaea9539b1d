"""Downloading one work unit of images: fetch, check, hash, resize, write.

The network runs on one asyncio loop (`Fetcher`: many requests in flight, per-host
limits, robots.txt checked on every hop); decoding, hashing and resizing run beside it
in the executor given (`alignpipe.imaging.decode.describe_image`; threads, as Pillow and
hashlib release the GIL), so they never stall the network. The scrape runs one such unit
per worker process and core. Every use of every image URL ends in one outcome:

| outcome                     | meaning                                                 |
|-----------------------------|---------------------------------------------------------|
| `ok`                        | written as a pair                                       |
| `opted_out`                 | the page or the image (`X-Robots-Tag`) says noai / noimageai |
| `not_http`                  | not an http(s) URL (`data:` URLs, ...)                  |
| `off_host`                  | `scrape.image_hosts=allowed` and the host is not        |
| any `Fetcher` outcome       | `robots_disallowed`, `http_404`, `timeout`, ...          |
| any `describe_image` outcome| `not_an_image`, `too_many_pixels`, `truncated`          |
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import urllib.parse
from collections.abc import Callable
from concurrent.futures import Executor

from alignpipe.config import ScrapeConfig
from alignpipe.data.crawl import OPT_OUT, allowed_hosts, is_allowed_host
from alignpipe.data.fetch import Fetched, Fetcher, FetchPolicy
from alignpipe.data.records import ImageTextPair
from alignpipe.data.robots import RobotsCache, RobotsRules
from alignpipe.imaging.decode import ImageFacts, describe_image
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
    """Downloads the images of one unit into `write_pair` / `write_line`; counts outcomes."""

    def __init__(
        self,
        cfg: ScrapeConfig,
        pool: Executor | None,
        write_pair: PairSink,
        write_line: LineSink,
        robots_known: dict[str, RobotsRules] | None = None,
    ) -> None:
        self.cfg, self.pool = cfg, pool
        self.write_pair, self.write_line = write_pair, write_line
        self.robots_known = {} if robots_known is None else robots_known
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
                    await self._image(fetcher, robots, url, uses)
                progress.update(1)

            await asyncio.gather(*(one(url, uses) for url, uses in images))
        progress.close()

    def _lines(self, url: str, uses: list[Use], outcome: str, error: str = "") -> None:
        if not uses:
            return
        for use in uses:
            self.write_line(image_line(url, use, outcome, error))
        self.counts[f"image/{outcome}"] += len(uses)

    async def _image(self, fetcher: Fetcher, robots: RobotsCache, url: str, uses: list[Use]) -> None:
        wanted = [u for u in uses if not u.opted_out]
        self._lines(url, [u for u in uses if u.opted_out], "opted_out", "the page opts out of AI use")
        if not wanted:
            return
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self._lines(url, wanted, "not_http", url[:60])
            return
        if self.cfg.image_hosts == "allowed" and not is_allowed_host(url, self._allowed):
            self._lines(url, wanted, "off_host")
            return
        fetched = await fetcher.get(url, self.cfg.max_image_bytes, check=robots.refusal)
        if fetched.outcome != "ok":
            self._lines(url, wanted, fetched.outcome, await self._reason(robots, fetched))
            return
        if fetched.robots_tags & OPT_OUT:
            self._lines(url, wanted, "opted_out", "X-Robots-Tag: " + ", ".join(sorted(fetched.robots_tags)))
            return
        facts = await self._facts(fetched.body)
        if facts.outcome != "ok":
            self._lines(url, wanted, facts.outcome, facts.error)
            return
        data = fetched.body if facts.encoded is None else facts.encoded
        for use in wanted:
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
        self._lines(url, wanted, "ok")

    async def _facts(self, body: bytes) -> ImageFacts:
        if self.pool is None:
            return self._describe(body)
        return await asyncio.get_running_loop().run_in_executor(self.pool, self._describe, body)

    @staticmethod
    async def _reason(robots: RobotsCache, fetched: Fetched) -> str:
        if fetched.outcome in ("robots_disallowed", "robots_unavailable"):
            rules = await robots.rules(fetched.final_url)
            return rules.reason or f"robots.txt of {fetched.final_url}"
        return fetched.error
