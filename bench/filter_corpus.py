#!/usr/bin/env python3
"""A synthetic raw corpus of pair metadata with web-like skew, for the filter benchmark and tests.

    python bench/filter_corpus.py OUT --pairs 1000000 --seed 0 [--files 16] [--hot-scale 10]

Writes OUT/pairs-SSSSS-of-NNNNN.parquet (the columns of `alignpipe.filtering.facts.PairMeta`;
`phash` a nullable int64 holding the 64-bit hash as signed, null for an undecodable image) and
OUT/corpus.json (the parameters and the sizes of the hottest keys). Deterministic in `--seed`.

What it holds, per pair (shares of pairs at `--hot-scale 1`):
- text: 4.5% hot boilerplate alt-texts over many images ("logo" 2%, "image" 1.5%, "Click here
  to enlarge" 1%, "1920x1080", "alt img", "product thumbnail photo"); the rest drawn from a pool
  of 0.7 x pairs captions with Zipf popularity (exponent 0.5: a few thousand captions are shared
  by more than 10 images at 1M pairs). A caption is a log-normal number of words (median 7,
  about 4% of 1-2 words, 4% of more than 20) drawn from a Zipf (exponent 1) vocabulary of
  random words, a few with apostrophes, accents or hyphens. 15% of pairs vary the case or
  punctuation of their caption (same normalised text).
- image: 2.7% hot images: a 400x300 "no image available" placeholder (2%: tens of thousands of
  distinct alts), a 1x1 spacer gif (0.5%), a 728x90 banner (0.2%); the rest drawn from a pool of
  0.6 x pairs images with Zipf popularity (exponent 0.7: about ten images over 1,000 alts at
  1M pairs). Images are 81% photos (short side log-normal around 500 px, aspect about 4:3),
  12% icons and thumbnails (16 to 200 px), 6% banners (aspect 3 to 12), 1% undecodable
  (about 1% of pairs: null phash, size 0x0).
`--hot-scale` multiplies the shares of the hottest alt-text ("logo") and the hottest image (the
placeholder) to show how the filter copes with one huge key.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

HOT_TEXTS = (  # (alt-text, share of pairs); the first is the hottest
    ("logo", 0.02),
    ("image", 0.015),
    ("Click here to enlarge", 0.01),
    ("1920x1080", 0.003),
    ("alt img", 0.003),
    ("product thumbnail photo", 0.002),
)
HOT_IMAGES = (  # (width, height, share of pairs); the first is the hottest
    (400, 300, 0.02),  # "no image available" placeholder
    (1, 1, 0.005),  # spacer gif
    (728, 90, 0.002),  # banner
)
SPECIAL_WORDS = ("don't", "café", "x-ray", "naïve", "it's", "1080p", "c++", "état")
TEXT_POOL, TEXT_ZIPF = 0.7, 0.5  # distinct captions per pair; popularity exponent
IMAGE_POOL, IMAGE_ZIPF = 0.6, 0.7  # distinct images per pair; popularity exponent
WORD_ZIPF = 1.0


def zipf_ranks(rng: np.random.Generator, n: int, size: int, exponent: float) -> np.ndarray:
    """`size` draws of ranks 0..n-1 with P(rank k) proportional to (k + 1) ** -exponent."""
    cdf = np.cumsum(np.arange(1, n + 1, dtype=np.float64) ** -exponent)
    return np.minimum(np.searchsorted(cdf, rng.random(size) * cdf[-1]), n - 1)


def random_words(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct-ish lowercase words of 2 to 10 letters, a few special spellings at the top."""
    lengths = rng.integers(2, 11, n)
    letters = rng.integers(ord("a"), ord("z") + 1, lengths.sum(), dtype=np.uint8).tobytes().decode()
    ends = np.cumsum(lengths)
    words = [letters[end - length : end] for end, length in zip(ends.tolist(), lengths.tolist(), strict=True)]
    for rank, word in enumerate(SPECIAL_WORDS):
        words[min(n - 1, 50 + 40 * rank)] = word
    return np.array(words, dtype=object)


def caption_pool(rng: np.random.Generator, n: int, vocabulary_size: int) -> list[str]:
    """`n` captions: log-normal word counts (median 7), Zipf words."""
    lengths = np.clip(np.rint(np.exp(rng.normal(np.log(7), 0.6, n))), 1, 60).astype(np.int64)
    vocabulary = random_words(rng, vocabulary_size)
    words = vocabulary[zipf_ranks(rng, vocabulary_size, int(lengths.sum()), WORD_ZIPF)].tolist()
    ends = np.cumsum(lengths).tolist()
    return [" ".join(words[end - length : end]) for end, length in zip(ends, lengths.tolist(), strict=True)]


def image_pool(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Width, height, phash (signed int64) and decodability of `n` images, then the hot ones."""
    kind = rng.choice(4, n, p=[0.81, 0.12, 0.06, 0.01])  # photo, small, banner, undecodable
    short = np.where(kind == 1, rng.integers(16, 201, n), np.exp(rng.normal(np.log(500), 0.5, n)))
    short = np.where(kind == 2, rng.integers(50, 301, n), short)
    ratio = np.where(kind == 2, rng.uniform(3, 12, n), np.exp(np.abs(rng.normal(0.25, 0.2, n))))
    ratio = np.where(kind == 1, rng.uniform(1, 1.2, n), ratio)
    short = np.maximum(1, np.rint(short)).astype(np.int64)
    long = np.rint(short * ratio).astype(np.int64)
    landscape = rng.random(n) < 0.7
    width, height = np.where(landscape, long, short), np.where(landscape, short, long)
    decodable = kind != 3
    hot = np.array(HOT_IMAGES, dtype=np.float64)
    return {
        "width": np.concatenate([np.where(decodable, width, 0), hot[:, 0].astype(np.int64)]),
        "height": np.concatenate([np.where(decodable, height, 0), hot[:, 1].astype(np.int64)]),
        "phash": rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n + len(hot), endpoint=True),
        "decodable": np.concatenate([decodable, np.ones(len(hot), dtype=bool)]),
        "sha256": np.array([rng.bytes(32).hex() for _ in range(n + len(hot))], dtype=object),
    }


def hot_shares(table: tuple[tuple, ...], hot_scale: float) -> np.ndarray:
    shares = np.array([row[-1] for row in table], dtype=np.float64)
    shares[0] *= hot_scale
    return shares


def pick(rng: np.random.Generator, pairs: int, shares: np.ndarray, pool: int, exponent: float) -> np.ndarray:
    """Per pair: a hot key (pool + i, with the given shares) or a Zipf draw from the pool."""
    if shares.sum() >= 1:
        raise ValueError(f"hot shares add up to {shares.sum():.2f}; lower --hot-scale")
    keys = zipf_ranks(rng, pool, pairs, exponent)
    which = rng.choice(len(shares) + 1, pairs, p=[*shares, 1 - shares.sum()])
    return np.where(which < len(shares), pool + which, keys)


def vary(rng: np.random.Generator, texts: pa.Array) -> pa.Array:
    """15% of pairs: the caption capitalised (8%), upper-cased (3%) or with a trailing mark (4%)."""
    roll = rng.random(len(texts))
    marks = pa.array(rng.choice(np.array(["!", ".", " |", "..."], dtype=object), len(texts)))
    varied = pc.if_else(pa.array(roll < 0.08), pc.utf8_capitalize(texts), texts)
    varied = pc.if_else(pa.array((roll >= 0.08) & (roll < 0.11)), pc.utf8_upper(texts), varied)
    marked = pc.binary_join_element_wise(texts, marks, "")
    return pc.if_else(pa.array((roll >= 0.11) & (roll < 0.15)), marked, varied)


def generate(pairs: int, seed: int = 0, hot_scale: float = 1.0) -> pa.Table:
    """The corpus as one table with the columns of `PairMeta` (shard and index left to `write`)."""
    rng = np.random.default_rng(seed)
    n_texts, n_images = max(1, int(TEXT_POOL * pairs)), max(1, int(IMAGE_POOL * pairs))
    captions = caption_pool(rng, n_texts, vocabulary_size=max(1000, pairs // 5))
    texts = np.array(captions + [text for text, _ in HOT_TEXTS], dtype=object)
    images = image_pool(rng, n_images)
    text_ids = pick(rng, pairs, hot_shares(HOT_TEXTS, hot_scale), n_texts, TEXT_ZIPF)
    image_ids = pick(rng, pairs, hot_shares(HOT_IMAGES, hot_scale), n_images, IMAGE_ZIPF)
    decodable = images["decodable"][image_ids]
    ids = pa.array(image_ids).cast(pa.string())
    pages = pa.array(rng.integers(0, max(1, pairs // 5), pairs)).cast(pa.string())
    hosts = pa.array(image_ids % 997).cast(pa.string())
    return pa.table(
        {
            "sha256": pa.array(images["sha256"][image_ids], pa.string()),
            "text": vary(rng, pa.array(texts[text_ids], pa.string())),
            "width": pa.array(images["width"][image_ids], pa.int64()),
            "height": pa.array(images["height"][image_ids], pa.int64()),
            "phash": pa.array(images["phash"][image_ids], pa.int64(), mask=~decodable),
            "image_url": pc.binary_join_element_wise(
                "https://img", hosts, ".example.com/i/", ids, ".jpg", ""
            ),
            "page_url": pc.binary_join_element_wise("https://site.example.org/p/", pages, ".html", ""),
        }
    )


def write(table: pa.Table, out: str, files: int = 16) -> list[str]:
    """Splits `table` into `files` parquet files `out/pairs-SSSSS-of-NNNNN.parquet` (+ shard, index)."""
    os.makedirs(out, exist_ok=True)
    paths, bounds = [], np.linspace(0, len(table), files + 1).astype(np.int64)
    for i, (start, end) in enumerate(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True)):
        name = f"pairs-{i:05d}-of-{files:05d}"
        part = table.slice(start, end - start)
        part = part.add_column(0, "index", pa.array(np.arange(len(part)), pa.int64()))
        part = part.add_column(0, "shard", pa.array([name] * len(part), pa.string()))
        paths.append(os.path.join(out, name + ".parquet"))
        pq.write_table(part, paths[-1])
    return paths


def describe(table: pa.Table) -> dict[str, object]:
    """Sizes of the corpus and of its hottest keys (raw texts; the filter counts normalised ones)."""
    frame = table.select(["sha256", "text"]).to_pandas()
    by_image = frame.groupby("sha256")["text"]
    by_text = frame.groupby("text")["sha256"]
    hot_image, hot_text = by_image.size().idxmax(), by_text.size().idxmax()
    return {
        "pairs": len(frame),
        "distinct_images": int(frame["sha256"].nunique()),
        "distinct_raw_texts": int(frame["text"].nunique()),
        "undecodable_pairs": table["phash"].null_count,
        "hottest_image_pairs": int(by_image.size()[hot_image]),
        "hottest_image_distinct_raw_texts": int(frame.loc[frame["sha256"] == hot_image, "text"].nunique()),
        "images_over_1000_raw_texts": int((by_image.nunique() > 1000).sum()),
        "hottest_text": hot_text,
        "hottest_text_pairs": int(by_text.size()[hot_text]),
        "hottest_text_distinct_images": int(frame.loc[frame["text"] == hot_text, "sha256"].nunique()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="output folder")
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--hot-scale", type=float, default=1.0, help="x the hottest alt-text's and image's share")
    args = ap.parse_args()
    start = time.monotonic()
    table = generate(args.pairs, args.seed, args.hot_scale)
    paths = write(table, args.out, args.files)
    info = dict(
        vars(args), files=len(paths), generate_s=round(time.monotonic() - start, 1), **describe(table)
    )
    with open(os.path.join(args.out, "corpus.json"), "w") as f:
        json.dump(info, f, indent=1, ensure_ascii=False)
    print(json.dumps(info, ensure_ascii=False))


if __name__ == "__main__":
    main()
