import collections
import glob
import hashlib
import io
import os

import pytest
import tensorflow as tf
from PIL import Image

from alignpipe import fs
from alignpipe.config import load_config
from alignpipe.data.eval_sets import load_classification_set, load_retrieval_set
from alignpipe.data.html import extract_image_alts, extract_links
from alignpipe.data.records import COMPRESSION, ImageTextPair, shard_pattern
from alignpipe.data.scrape import run_scrape
from alignpipe.demo import demo_web as dw
from alignpipe.demo.serve import serve_folder
from alignpipe.imaging.phash import hamming, phash, read_blocklist

SITE_URL = "http://demo.test/"


def public_entries(site: str) -> list:
    """Every `<img>` entry of the public pages, as a crawler of the site would see them."""
    entries = []
    for path in sorted(glob.glob(os.path.join(site, "**", "*.html"), recursive=True)):
        rel = os.path.relpath(path, site)
        if rel.startswith("private"):
            continue
        page_url = SITE_URL + (rel.removesuffix("index.html"))
        with open(path, encoding="utf-8") as f:
            entries += extract_image_alts(f.read(), page_url)
    return entries


def test_counts_are_the_documented_ones(demo_web):
    counts = demo_web.counts
    assert counts["good"] == dw.GOOD_IMAGES + dw.SECOND_SHOWINGS + dw.THIRD_SHOWINGS == 3000
    assert counts["good_images"] == 2100
    assert counts["boilerplate_alt"] == len(dw.BOILERPLATE_ALTS) * dw.IMAGES_PER_BOILERPLATE_ALT == 140
    for kind, n in dw.NOISE.items():
        assert counts[kind] == n, kind
    assert counts["public_pages"] == 53 and counts["private_pages"] == 4
    assert fs.read_json(os.path.join(demo_web.root, "demo_web.json")) == counts


def test_site_holds_the_documented_noise(demo_web):
    entries = public_entries(demo_web.site_dir)
    assert len(entries) == demo_web.counts["public_img_entries"]
    alts = [e.alt for e in entries]
    assert alts.count("") == dw.NOISE["no_alt"]
    images_per_alt = collections.defaultdict(set)
    alts_per_image = collections.defaultdict(set)
    for e in entries:
        images_per_alt[e.alt].add(e.image_url)
        alts_per_image[e.image_url].add(e.alt)
    for alt in dw.BOILERPLATE_ALTS:
        assert len(images_per_alt[alt]) == dw.IMAGES_PER_BOILERPLATE_ALT
    assert sorted(len(a) for a in alts_per_image.values())[-1] == dw.NOISE["many_alts"]
    assert sorted(len(a) for a in alts_per_image.values())[-2] <= 3  # good images: up to 3 showings
    assert sum(len(a.split()) > 20 for a in alts) == dw.NOISE["long_alt"]
    assert (
        sum(1 <= len(a.split()) <= 2 for a in alts if a not in dw.BOILERPLATE_ALTS) == dw.NOISE["short_alt"]
    )
    assert sum("cdn.example.net" in e.image_url for e in entries) == dw.NOISE["off_host_image"]
    assert sum("/private/" in e.image_url for e in entries) == dw.NOISE["robots_disallowed_image"]
    missing = [e for e in entries if "/images/missing/" in e.image_url]
    assert len(missing) == dw.NOISE["broken_image"]
    for e in missing[:3]:
        assert not os.path.exists(os.path.join(demo_web.site_dir, e.image_url.removeprefix(SITE_URL)))
    with open(os.path.join(demo_web.site_dir, "robots.txt")) as f:
        assert "Disallow: /private/" in f.read()
    with open(os.path.join(demo_web.site_dir, "index.html")) as f:
        assert SITE_URL + "private/" in extract_links(f.read(), SITE_URL)


def test_eval_sets_load_and_are_distinct(demo_web):
    retrieval = load_retrieval_set(demo_web.retrieval_set)
    assert len(retrieval.image_paths) == 100 and len(retrieval.captions) == 500
    assert len(load_retrieval_set(demo_web.retrieval_set, "val").image_paths) == 10
    hashes = [phash(Image.open(p)) for p in retrieval.image_paths]
    assert len(set(hashes)) == len(hashes)
    for i in range(0, 500, 5):
        assert len(set(retrieval.captions[i : i + 5])) == 5
    classification = load_classification_set(demo_web.classification_set)
    assert classification.class_names == ("circle", "square", "triangle", "star", "ring", "diamond")
    assert collections.Counter(classification.labels) == {i: 20 for i in range(6)}


@pytest.mark.large
def test_same_seed_writes_the_same_bytes(demo_web, tmp_path):
    again = dw.write_demo_web(str(tmp_path / "again"), seed=0)

    def digests(root: str) -> dict[str, str]:
        files = sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True))
        return {
            os.path.relpath(p, root): hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in files
            if os.path.isfile(p)
        }

    assert digests(again.root) == digests(demo_web.root)
    assert sum(os.path.getsize(p) for p in glob.glob(f"{demo_web.site_dir}/**/*", recursive=True)) < 40e6


@pytest.mark.large
def test_scraping_the_demo_web_finds_the_documented_pairs(demo_web, tmp_path):
    """The full demo web through the real scrape pipeline, then the pHash facts the filters rely on."""
    counts = demo_web.counts
    with serve_folder(demo_web.site_dir) as url:
        demo = [
            f"scrape.seed_urls={url}",
            "scrape.allowed_networks=127.0.0.1/32",
            "scrape.image_hosts=allowed",
        ]
        report = run_scrape(load_config("local", "tiny", demo), str(tmp_path))
    writable = (
        "good",
        "boilerplate_alt",
        "small_icon",
        "banner",
        "many_alts",
        "short_alt",
        "long_alt",
        "rare_token",
        "eval_near_copy",
        "unsafe",
    )
    assert report.outcomes == {
        "image/ok": sum(counts[k] for k in writable) + 1,  # + the site logo, once
        "image/duplicate_pair": counts["public_pages"] - 1,  # the logo on every other page
        "image/no_alt": counts["no_alt"],
        "image/http_404": counts["broken_image"],
        "image/robots_disallowed": counts["robots_disallowed_image"],
        "image/off_host": counts["off_host_image"],
        "page/ok": counts["public_pages"],
        "page/http_404": 6,
        "page/non_page_link": 1,
        "page/off_host": 8,
        "page/robots_disallowed": 1,
    }
    assert report.images_found == counts["public_img_entries"]

    records = tf.data.TFRecordDataset(fs.glob(shard_pattern(str(tmp_path))), compression_type=COMPRESSION)
    pairs = [ImageTextPair.from_example(r) for r in records.as_numpy_iterator()]
    assert len(pairs) == report.pairs_written
    hashes = {p.image_url: phash(Image.open(io.BytesIO(p.image_bytes))) for p in pairs}
    blocklist = read_blocklist(demo_web.unsafe_image_blocklist)
    assert len(blocklist) == counts["unsafe"]
    assert sum(h in blocklist for h in hashes.values()) == counts["unsafe"]
    retrieval = load_retrieval_set(demo_web.retrieval_set)
    classification = load_classification_set(demo_web.classification_set)
    eval_hashes = [phash(Image.open(p)) for p in retrieval.image_paths + classification.image_paths]
    near = [u for u, h in hashes.items() if min(hamming(h, e) for e in eval_hashes) <= 6]
    assert len(near) == counts["eval_near_copy"]
