"""A generated mini-web to scrape, and evaluation sets to measure against.

`write_demo_web(out_dir, seed)` writes, deterministically (same seed, same bytes):

- `site/`: 53 public HTML pages (a home page, 4 section pages, 48 content pages in
  `shapes/`, `colours/`, `gallery/`, `blog/`) plus a `private/` section that
  `robots.txt` disallows, linked from the home page, whose 3 pages hold 120 more
  images. Images are rendered scenes of coloured shapes (`alignpipe.demo.scenes`),
  PNG or JPEG, 96 px on the shorter side or near it. Image URLs are written
  page-relative (`../images/x.png`), root-relative (`/images/x.png`), relative to a
  `<base href="/images/">` (the gallery section), and lazily loaded (`data-src`
  with a placeholder `src`).
- `eval/retrieval/dataset_demo.json` + `eval/retrieval/images/`: 100 `test` and 10
  `val` images, 5 captions each, in the Karpathy format (`eval_sets.load_retrieval_set`).
- `eval/classification/<shape>/*.png` + `classnames.txt`: 20 single-object images
  for each of the 6 shapes (`eval_sets.load_classification_set`).
- `unsafe_blocklist.txt`: the pHashes (16 hex digits a line) of the unsafe images.
- `demo_web.json`: the counts below.

What a crawl of the public site finds (the tiny preset's filters in brackets):

| category             | `<img>` entries | what it is                                             |
|----------------------|-----------------|--------------------------------------------------------|
| good                 | 3000            | 2100 images, 650 shown twice, 250 three times, each   |
|                      |                 | showing with a different describing caption           |
| boilerplate alt      | 140             | 7 alts ("logo", "alt img", "1920x1080", "click here to |
|                      |                 | enlarge", ...) on 20 images each [images per alt]      |
| small icon           | 60              | 24x24 images with good captions [shorter side]        |
| banner               | 40              | 300x40 images with good captions [aspect ratio]       |
| many alts            | 20              | one image under 20 different captions [alts per image]|
| short alt            | 100             | 1-2 word alts ("red circle") [min words]              |
| long alt             | 60              | > 20 word alts (caption + shop text) [max words]      |
| rare token           | 100             | caption + a unique junk token ("qzxv-9931") [vocab]   |
| eval near-copy       | 30              | test retrieval images re-encoded / resized, with a    |
|                      |                 | caption [pHash near-duplicate of an eval image]       |
| unsafe               | 6               | a striped pattern listed in `unsafe_blocklist.txt`    |
| site logo            | 53              | one 120x40 logo on every page [duplicate pair, aspect]|
| no alt               | 80              | 40 `<img>` without alt, 40 with `alt=""`              |
| broken image         | 25              | `src` to missing files (HTTP 404)                     |
| robots-disallowed    | 10              | images under `/private/` shown on public pages        |
| off-host image       | 10              | absolute URLs on `cdn.example.net`                    |

Links: 6 broken links (404), 8 links to other hosts, 1 link to a text file, and 1
link into `/private/`. Every rendered site image is drawn more than 8 pHash bits away
from every evaluation image (retrieval and classification), so the 30 near-copies
are the only images within the filter's 6 bits of an eval image.

Vocabulary: the alts of the written pairs hold about 860 distinct whitespace unigrams
and bigrams, about 620 of them seen at least twice; each junk token is seen once, so
a rare-token vocabulary of about 600 entries drops the rare-token alts.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import random

from PIL import Image, ImageDraw

from alignpipe import fs
from alignpipe.demo import scenes
from alignpipe.demo.demo_pages import LOGO_SRC, PLACEHOLDER_SRC, Img, site_pages

GOOD_IMAGES, SECOND_SHOWINGS, THIRD_SHOWINGS = 2100, 650, 250
BOILERPLATE_ALTS = (
    "logo",
    "image",
    "1920x1080",
    "alt img",
    "click here to enlarge",
    "image of the day",
    "view full size image",
)
IMAGES_PER_BOILERPLATE_ALT = 20
NOISE = {
    "small_icon": 60,
    "banner": 40,
    "many_alts": 20,
    "short_alt": 100,
    "long_alt": 60,
    "rare_token": 100,
    "eval_near_copy": 30,
    "unsafe": 6,
    "no_alt": 80,
    "broken_image": 25,
    "robots_disallowed_image": 10,
    "off_host_image": 10,
}
RETRIEVAL_TEST, RETRIEVAL_VAL, CAPTIONS_PER_IMAGE = 100, 10, 5
CLASSIFICATION_PER_CLASS = 20
EVAL_HASH_MARGIN = 8  # good images stay further than this from every eval image (bits)
IMAGE_SIZES = ((96, 96), (96, 96), (96, 96), (120, 96), (96, 120), (128, 80))
_LOGO_SCENE = scenes.Scene(
    (
        scenes.SceneObject("star", "orange", "large", "left"),
        scenes.SceneObject("circle", "blue", "large", "right"),
    ),
    "white",
)
_SHOP_TEXT = (
    "buy now with free shipping on all orders over fifty dollars and get the best price "
    "on high quality shape prints for kids rooms classrooms and offices"
).split()


@dataclasses.dataclass(frozen=True)
class DemoWeb:
    """Paths of a written demo web and the number of items of each kind in it."""

    root: str
    site_dir: str
    retrieval_set: str
    classification_set: str
    unsafe_image_blocklist: str
    counts: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def write_demo_web(out_dir: str, seed: int = 0) -> DemoWeb:
    """Writes the site, the evaluation sets and the unsafe blocklist into `out_dir`.

    Args:
        out_dir: folder to write into (created).
        seed: the same seed writes byte-identical files.

    Returns:
        The paths and counts; `counts` is also written to `out_dir/demo_web.json`.
    """
    from alignpipe.imaging.phash import phash, write_blocklist

    root = out_dir.rstrip("/")
    site = fs.join(root, "site")
    retrieval_json, eval_scenes, eval_hashes = _write_retrieval_set(fs.join(root, "eval", "retrieval"), seed)
    classification_hashes = _write_classification_set(fs.join(root, "eval", "classification"), seed)
    builder = _SiteBuilder(site, random.Random(f"{seed}-site"), eval_hashes + classification_hashes, phash)
    builder.add_good_images()
    builder.add_noise(eval_scenes)
    pages = site_pages(builder.entries, builder.private_entries, random.Random(f"{seed}-pages"))
    for page in pages:
        fs.write_text(fs.join(site, page.path), page.html)
    builder.files[LOGO_SRC.lstrip("/")] = scenes.encode(scenes.render(_LOGO_SCENE, (120, 40)))
    placeholder = io.BytesIO()
    Image.new("RGB", (1, 1), (255, 255, 255)).save(placeholder, format="GIF")
    builder.files[PLACEHOLDER_SRC.lstrip("/")] = placeholder.getvalue()
    for path, data in builder.files.items():
        fs.write_bytes(fs.join(site, path), data)
    fs.write_text(
        fs.join(site, "robots.txt"),
        "# Crawlers: stay out of the private section.\nUser-agent: *\nDisallow: /private/\n",
    )
    fs.write_text(fs.join(site, "files", "price-list.txt"), "circle 1.00\nsquare 2.00\n")
    blocklist = fs.join(root, "unsafe_blocklist.txt")
    write_blocklist(blocklist, builder.unsafe_hashes)
    counts = builder.counts | {
        "public_pages": sum(1 for p in pages if not p.path.startswith("private/")),
        "private_pages": sum(1 for p in pages if p.path.startswith("private/")),
        "public_img_entries": len(builder.entries)
        + sum(1 for p in pages if not p.path.startswith("private/")),
        "private_img_entries": len(builder.private_entries),
        "retrieval_test_images": RETRIEVAL_TEST,
        "classification_images": CLASSIFICATION_PER_CLASS * len(scenes.SHAPES),
    }
    fs.write_json(fs.join(root, "demo_web.json"), counts)
    return DemoWeb(root, site, retrieval_json, fs.join(root, "eval", "classification"), blocklist, counts)


def _write_retrieval_set(folder: str, seed: int) -> tuple[str, list[scenes.Scene], list[int]]:
    from alignpipe.imaging.phash import phash

    rng = random.Random(f"{seed}-retrieval")
    chosen: dict[tuple, scenes.Scene] = {}
    while len(chosen) < RETRIEVAL_TEST + RETRIEVAL_VAL:
        scene = scenes.random_scene(rng)
        chosen.setdefault(scene.layout_key(), scene)
    entries, hashes, test_scenes = [], [], []
    for i, scene in enumerate(chosen.values()):
        split = "test" if i < RETRIEVAL_TEST else "val"
        name = f"{split}-{i:03d}.png"
        image = scenes.render(scene, 96)
        fs.write_bytes(fs.join(folder, "images", name), scenes.encode(image))
        captions: list[str] = []
        while len(captions) < CAPTIONS_PER_IMAGE:
            text = scenes.caption(scene, rng)
            if text not in captions:
                captions.append(text)
        entries.append(
            {
                "filename": name,
                "filepath": "images",
                "split": split,
                "imgid": i,
                "sentences": [{"raw": c, "tokens": c.split()} for c in captions],
            }
        )
        hashes.append(phash(image))
        if split == "test":
            test_scenes.append(scene)
    path = fs.join(folder, "dataset_demo.json")
    fs.write_json(path, {"dataset": "demo", "images": entries})
    return path, test_scenes, hashes


def _write_classification_set(folder: str, seed: int) -> list[int]:
    from alignpipe.imaging.phash import phash

    rng = random.Random(f"{seed}-classification")
    hashes = []
    for shape in scenes.SHAPES:
        for i in range(CLASSIFICATION_PER_CLASS):
            scene = scenes.random_scene(rng)
            obj = scenes.SceneObject(
                shape,
                rng.choice(list(scenes.COLOURS)),
                rng.choice(list(scenes.SIZES)),
                rng.choice(list(scenes.POSITIONS)),
            )
            image = scenes.render(dataclasses.replace(scene, objects=(obj,)), 96)
            fs.write_bytes(fs.join(folder, shape, f"{i:03d}.png"), scenes.encode(image))
            hashes.append(phash(image))
    fs.write_text(fs.join(folder, "classnames.txt"), "".join(f"{s}\t{s}\n" for s in scenes.SHAPES))
    return hashes


class _SiteBuilder:
    """Draws every image of the site and the `<img>` entries that show it."""

    def __init__(self, site: str, rng: random.Random, eval_hashes: list[int], phash) -> None:
        self.rng, self.eval_hashes, self.phash = rng, eval_hashes, phash
        self.entries: list[Img] = []
        self.private_entries: list[Img] = []
        self.files: dict[str, bytes] = {}
        self.unsafe_hashes: list[int] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self._caption_uses: collections.Counter[str] = collections.Counter()
        self._names = 0

    def new_image(self, size: tuple[int, int], folder: str = "images") -> tuple[scenes.Scene, str]:
        """Draws a scene further than `EVAL_HASH_MARGIN` pHash bits from every eval image,
        stores it; returns the scene and the image's site path."""
        while True:
            scene = scenes.random_scene(self.rng)
            image = scenes.render(scene, size)
            h = self.phash(image)
            if all((h ^ e).bit_count() > EVAL_HASH_MARGIN for e in self.eval_hashes):
                return scene, self.store(image, folder)
            self.counts["rejected_near_eval"] += 1

    def store(self, image: Image.Image, folder: str = "images", image_format: str | None = None) -> str:
        image_format = image_format or ("jpeg" if self.rng.random() < 0.25 else "png")
        self._names += 1
        path = f"{folder}/{self._names:05d}.{'jpg' if image_format == 'jpeg' else 'png'}"
        self.files[path] = scenes.encode(image, image_format)
        return path

    def fresh_caption(self, scene: scenes.Scene, avoid: tuple[str, ...] = (), max_words: int = 20) -> str:
        """A caption used by at most 3 images, so frequency filters keep it."""
        while True:
            text = scenes.caption(scene, self.rng)
            if text not in avoid and self._caption_uses[text] < 3 and len(text.split()) <= max_words:
                self._caption_uses[text] += 1
                return text

    def add(self, kind: str, src: str, alt: str | None, **extra: object) -> None:
        self.entries.append(Img(kind=kind, src=src, alt=alt, **extra))
        self.counts[kind] += 1

    def add_good_images(self) -> None:
        made = 0
        while made < GOOD_IMAGES:
            scene, path = self.new_image(self.rng.choice(IMAGE_SIZES))
            showings = 1 + (made < SECOND_SHOWINGS) + (made < THIRD_SHOWINGS)
            alts: tuple[str, ...] = ()
            for _ in range(showings):
                alts += (self.fresh_caption(scene, alts),)
                self.add("good", path, alts[-1], image_id=made, lazy=self.rng.random() < 0.05)
            made += 1
        self.counts["good_images"] = made

    def add_noise(self, eval_scenes: list[scenes.Scene]) -> None:
        rng = self.rng
        for alt in BOILERPLATE_ALTS:
            for _ in range(IMAGES_PER_BOILERPLATE_ALT):
                self.add("boilerplate_alt", self.new_image((96, 96))[1], alt)
        for kind, size in (("small_icon", (24, 24)), ("banner", (300, 40))):
            for _ in range(NOISE[kind]):
                scene, path = self.new_image(size)
                self.add(kind, path, self.fresh_caption(scene))
        (scene, path), alts = self.new_image((96, 96)), ()
        for _ in range(NOISE["many_alts"]):
            alts += (self.fresh_caption(scene, alts),)
            self.add("many_alts", path, alts[-1])
        for _ in range(NOISE["short_alt"]):
            scene, path = self.new_image((96, 96))
            obj = scene.objects[0]
            alt = rng.choice((obj.shape, f"{obj.colour} {obj.shape}", f"{obj.size} {obj.shape}", obj.colour))
            self.add("short_alt", path, alt)
        for _ in range(NOISE["long_alt"]):
            scene, path = self.new_image((96, 96))
            words = self.fresh_caption(scene).split()
            start = rng.randrange(4)
            self.add("long_alt", path, " ".join(words + _SHOP_TEXT[start : start + 22 - len(words)]))
        for i in range(NOISE["rare_token"]):
            scene, path = self.new_image((96, 96))
            junk = "".join(rng.choice("bcdfghjklmnpqrstvwxz") for _ in range(4)) + f"-{1000 + 37 * i}"
            self.add("rare_token", path, f"{self.fresh_caption(scene, max_words=19)} {junk}")
        self._add_eval_near_copies(eval_scenes)
        self._add_unsafe()
        self._add_unreachable()

    def _add_eval_near_copies(self, eval_scenes: list[scenes.Scene]) -> None:
        for i, scene in enumerate(eval_scenes[: NOISE["eval_near_copy"]]):
            image = scenes.render(scene, 96)
            if i % 3 == 1:
                image = image.resize((104, 104), Image.Resampling.BICUBIC)
            elif i % 3 == 2:
                image = image.resize((88, 88), Image.Resampling.BICUBIC)
            path = self.store(image, image_format="jpeg" if i % 2 == 0 else "png")
            self.add("eval_near_copy", path, self.fresh_caption(scene))

    def _add_unsafe(self) -> None:
        for _ in range(NOISE["unsafe"]):
            image = unsafe_pattern(self.rng)
            self.unsafe_hashes.append(self.phash(image))
            self.add(
                "unsafe",
                self.store(image, image_format="png"),
                self.fresh_caption(scenes.random_scene(self.rng)),
            )

    def _add_unreachable(self) -> None:
        rng = self.rng
        for i in range(NOISE["no_alt"]):
            self.add("no_alt", self.new_image((96, 96))[1], None if i % 2 else "")
        for i in range(NOISE["broken_image"]):
            self.add(
                "broken_image", f"images/missing/{i:03d}.png", self.fresh_caption(scenes.random_scene(rng))
            )
        for _page in range(3):
            for _ in range(40):
                scene, path = self.new_image((96, 96), folder="private/img")
                self.private_entries.append(Img(kind="private", src=path, alt=self.fresh_caption(scene)))
        for entry in self.private_entries[: NOISE["robots_disallowed_image"]]:
            self.add("robots_disallowed_image", entry.src, self.fresh_caption(scenes.random_scene(rng)))
        for i in range(NOISE["off_host_image"]):
            url = f"https://cdn.example.net/img/{i:04d}.jpg"
            self.add("off_host_image", url, self.fresh_caption(scenes.random_scene(rng)))


def unsafe_pattern(rng: random.Random, size: int = 96) -> Image.Image:
    """The demo's stand-in for an unsafe image: magenta and black diagonal stripes with a
    yellow disc, at a random stripe angle and period (no shape scene looks like it)."""
    image = Image.new("RGB", (size, size), (0, 0, 0))
    draw = ImageDraw.Draw(image)
    period, angle = rng.uniform(10, 16), rng.uniform(0.3, 1.2)
    dx, dy = math.cos(angle) * 2 * size, math.sin(angle) * 2 * size
    for k in range(-2 * size, 2 * size, int(period)):
        x, y = size / 2 + k * math.sin(angle), size / 2 - k * math.cos(angle)
        draw.line((x - dx, y - dy, x + dx, y + dy), fill=(230, 0, 200), width=int(period / 2))
    r = rng.uniform(0.15, 0.3) * size
    draw.ellipse((size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r), fill=(250, 230, 0))
    return image
