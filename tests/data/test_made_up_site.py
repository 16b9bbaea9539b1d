"""The tiny preset on a clean site it was not made for: a few thousand captioned images in
the style of a real photo site (varied sizes and captions, a little boilerplate). Most
pairs survive the filters, and the tiny model trains on them."""

from __future__ import annotations

import io
import math
import random

import numpy as np
import pytest
from PIL import Image

from alignpipe.config import load_config
from alignpipe.data.scrape import run_scrape
from alignpipe.demo.serve import serve_folder
from alignpipe.filtering.pipeline import run_filter

NUM_IMAGES = 2000
SUBJECTS = (
    "heron kingfisher otter fox badger hedgehog squirrel deer hare owl falcon swan duck goose trout salmon "
    "lighthouse windmill bridge cathedral tram bicycle tractor sailboat ferry locomotive castle harbour "
    "apple pear cherry plum lemon pumpkin carrot onion mushroom sunflower tulip poppy daisy fern oak willow"
).split()
ADJECTIVES = (
    "old young small large red green golden grey white dark bright wet snowy misty quiet busy".split()
)
PLACES = (
    "river lake meadow forest hill valley beach harbour market garden field village street park orchard "
    "mountain island marsh quay square"
).split()
SCENES = (
    "a {a} {s} near the {p}",
    "the {s} in the {p} at dawn",
    "{a} {s} seen from the {p}",
    "a {s} on a {a} {p}",
)


def caption(rng: random.Random) -> str:
    return rng.choice(SCENES).format(a=rng.choice(ADJECTIVES), s=rng.choice(SUBJECTS), p=rng.choice(PLACES))


def photo(rng: random.Random) -> bytes:
    width, height = rng.randint(80, 240), rng.randint(80, 200)
    base = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 40, (height, width, 3))
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=80)
    return out.getvalue()


def made_up_site(rng: random.Random) -> dict[str, str | bytes]:
    files: dict[str, str | bytes] = {
        "robots.txt": "User-agent: *\nDisallow: /admin/\n",
        "logo.png": photo(rng),
    }
    per_page = 50
    pages = math.ceil(NUM_IMAGES / per_page)
    for p in range(pages):
        imgs = ['<img src="/logo.png" alt="logo">']  # boilerplate the filters exist for
        for i in range(p * per_page, min(NUM_IMAGES, (p + 1) * per_page)):
            files[f"photos/{i}.jpg"] = photo(rng)
            imgs.append(f'<figure><img src="/photos/{i}.jpg" alt="{caption(rng)}"></figure>')
        nav = "".join(f'<a href="page{q}.html">{q}</a>' for q in range(1, pages))  # every page lists them all
        files["index.html" if p == 0 else f"page{p}.html"] = (
            "<html><body>" + "".join(imgs) + nav + "</body></html>"
        )
    return files


@pytest.mark.large
def test_tiny_preset_keeps_most_of_a_clean_real_style_site_and_can_train(make_site, tmp_path):
    from alignpipe.training.trainer import train

    site = make_site(made_up_site(random.Random(0)))
    with serve_folder(site) as url:
        scrape = [f"scrape.seed_urls={url}", "scrape.allowed_networks=127.0.0.1/32"]
        scraped = run_scrape(load_config("local", "tiny", scrape), str(tmp_path / "raw"))
    assert scraped.pairs_written == NUM_IMAGES + 1  # and the logo once; its other uses are repeats

    cfg = load_config("local", "tiny")
    funnel = run_filter(cfg, str(tmp_path / "raw"), str(tmp_path / "kept"))
    assert funnel.kept_pairs >= 0.8 * NUM_IMAGES, funnel.to_dict()
    result = train(cfg.replace(train__steps=2), str(tmp_path / "kept"), str(tmp_path / "model"))
    assert result.num_pairs == funnel.kept_pairs and result.steps == 2
    assert all(math.isfinite(row["loss"]) for row in result.history)
