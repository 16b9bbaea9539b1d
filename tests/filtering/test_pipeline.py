"""run_filter on a hand-built raw shard set with a known answer for every pair."""

import hashlib
import io
import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import tensorflow as tf
from PIL import Image

from alignpipe import fs
from alignpipe.config import load_config
from alignpipe.data.corpus import SNAPSHOT_JSON, write_listing
from alignpipe.data.eval_sets import evaluation_images
from alignpipe.data.records import ImageTextPair, shard_pattern
from alignpipe.errors import InputError
from alignpipe.filtering.contamination import contamination_counts
from alignpipe.filtering.pipeline import decode_image_facts, run_filter
from alignpipe.filtering.rules import REASONS, alt_unigrams_and_bigrams
from alignpipe.imaging.phash import hamming, parse_phash_hex, phash, write_blocklist
from alignpipe.model.tokenizer import AlignTokenizer
from tests.filtering.conftest import encode, make_scene

CAPTIONS = [
    f"a {c} {s} on the {p}"
    for c, s, p in [
        ("red", "circle", "left"),
        ("blue", "square", "right"),
        ("green", "star", "top"),
        ("pink", "ring", "bottom"),
        ("brown", "diamond", "left"),
        ("yellow", "circle", "right"),
        ("purple", "square", "top"),
        ("orange", "star", "bottom"),
        ("red", "ring", "right"),
    ]
]


def _pair(image_bytes: bytes, text: str, n: int, width: int = 0, height: int = 0) -> ImageTextPair:
    return ImageTextPair(
        image_bytes=image_bytes,
        image_format="png",
        width=width,
        height=height,
        sha256=hashlib.sha256(image_bytes).hexdigest(),
        text=text,
        image_url=f"http://demo.test/img/{n}.png",
        page_url=f"http://demo.test/page{n % 4}.html",
    )


def _build_corpus(root: Path) -> tuple[list[tuple[ImageTextPair, str | None]], list[str]]:
    """Raw pairs with their expected outcome (None = kept), and config overrides.

    Captions of kept pairs are each used by exactly two images, so all their tokens
    occur at least twice; every dropped pair has its own caption unless the caption
    is what drops it. Thresholds: short side > 40, ratio < 3, <= 3 alts per image,
    <= 2 images per alt, 3..8 words, vocabulary = the tokens that occur >= 2 times.
    """
    seeds = iter(range(1000))
    png = lambda w=64, h=64: encode(make_scene(next(seeds), w, h))  # noqa: E731
    unique = (f"unique caption number {word} here" for word in "abcdefghijklmnopqrstuvwxyz")
    rows: list[tuple[bytes, str, str | None]] = []
    for caption in CAPTIONS[:5]:
        rows += [(png(), caption, None), (png(), caption, None)]
    rows += [(png(41, 64), CAPTIONS[5], None), (png(122, 41), CAPTIONS[5], None)]  # boundaries kept
    rows += [(png(), "a blue star", None), (png(), "a blue star", None)]  # 3 words kept
    eight = "a small red circle and a blue star"
    rows += [(png(), eight, None), (png(), eight, None)]  # 8 words kept
    for image in (png(), png()):  # images with exactly 3 alt-texts are kept
        rows += [(image, caption, None) for caption in CAPTIONS[6:9]]

    rows += [(b"not an image %d" % i, next(unique), "image_undecodable") for i in range(2)]
    rows += [(png(150, 150), next(unique), "image_undecodable")]  # over the scrape's pixel cap: not decoded
    unsafe = make_scene(next(seeds))
    write_blocklist(str(root / "blocklist.txt"), [phash(unsafe)])
    rows += [
        (encode(unsafe), next(unique), "image_unsafe"),
        (encode(unsafe, "JPEG", quality=80), next(unique), "image_unsafe"),
    ]
    (root / "retrieval").mkdir()
    (root / "classes" / "thing").mkdir(parents=True)
    test_image, train_image, class_image = (make_scene(next(seeds)) for _ in range(3))
    test_image.save(root / "retrieval" / "e1.png")
    train_image.save(root / "retrieval" / "e2.png")
    class_image.save(root / "classes" / "thing" / "e3.png")
    (root / "classes" / "classnames.txt").write_text("thing\ta thing\n")
    entries = [
        {"filename": f, "split": s, "sentences": [{"raw": "a thing"}]}
        for f, s in [("e1.png", "test"), ("e2.png", "train")]
    ]
    (root / "retrieval" / "karpathy.json").write_text(json.dumps({"images": entries}))
    rows += [
        (encode(test_image, "JPEG", quality=85), next(unique), "image_eval_duplicate"),
        (encode(train_image), next(unique), "image_eval_duplicate"),
        (encode(class_image.resize((60, 60))), next(unique), "image_eval_duplicate"),
    ]
    rows += [(png(40, 64), next(unique), "image_too_small"), (png(30, 30), next(unique), "image_too_small")]
    rows += [(png(123, 41), next(unique), "image_aspect_ratio_too_large")]
    many = png()
    rows += [(many, next(unique), "image_too_many_alts") for _ in range(4)]
    rows += [(png(), "blue star", "text_too_short")]
    rows += [(png(), "a small red circle and a blue star again", "text_too_long")]
    rows += [(png(), "click here to enlarge", "text_shared_by_too_many_images") for _ in range(3)]
    rows += [(png(), "a red zyzzyva on the left", "text_rare_token")]

    pairs = [(_pair(data, text, n), expected) for n, (data, text, expected) in enumerate(rows)]
    counts = Counter(t for pair, _ in pairs for t in alt_unigrams_and_bigrams(pair.text))
    for pair, expected in pairs:  # the fixture's own premise: kept captions have no rare token
        assert expected is not None or all(counts[t] >= 2 for t in alt_unigrams_and_bigrams(pair.text))
    overrides = [
        "filter.min_image_short_side=40",
        "filter.max_aspect_ratio=3",
        "filter.max_alts_per_image=3",
        "filter.max_images_per_alt=2",
        "filter.min_alt_words=3",
        "filter.max_alt_words=8",
        f"filter.rare_token_vocab_size={sum(1 for c in counts.values() if c >= 2)}",
        "filter.eval_duplicate_max_hamming=6",
        "filter.unsafe_image_max_hamming=6",
        "filter.num_shards=2",
        "scrape.max_image_pixels=20000",
        f"filter.unsafe_image_blocklist={root / 'blocklist.txt'}",
        f"eval.retrieval_sets=karpathy={root / 'retrieval' / 'karpathy.json'}",
        "eval.retrieval_split=test",  # the filter checks every split all the same
        f"eval.classification_sets=classes={root / 'classes'}",
    ]
    return pairs, overrides


def _write_shards(in_dir: Path, pairs: list[ImageTextPair], num_shards: int = 3) -> None:
    in_dir.mkdir(parents=True)
    for shard in range(num_shards):
        path = in_dir / f"pairs-{shard:05d}-of-{num_shards:05d}.tfrecord.gz"
        with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
            for pair in pairs[shard::num_shards]:
                writer.write(pair.to_example())


def _read_pairs(out_dir: Path, name: str = "") -> list[ImageTextPair]:
    paths = [str(out_dir / name)] if name else fs.glob(shard_pattern(str(out_dir)))
    return [ImageTextPair.from_example(r.numpy()) for r in tf.data.TFRecordDataset(paths, "GZIP")]


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _assert_trainers_vocabulary(out_dir: Path, vocab_size: int) -> None:
    """vocab.txt is the vocabulary the trainer would learn from the kept pairs, in its reading order."""
    texts = [pair.text for pair in _read_pairs(out_dir)]
    expected = AlignTokenizer.from_texts(texts, vocab_size, 16).vocabulary
    assert (out_dir / "vocab.txt").read_text(encoding="utf-8") == "".join(t + "\n" for t in expected)


@pytest.mark.large
@pytest.mark.parametrize("hot_key_pairs", [10_000, 1])  # 1: every statistic via side inputs
def test_run_filter_counts_every_pair_under_its_reason(tmp_path, hot_key_pairs):
    pairs, overrides = _build_corpus(tmp_path)
    _write_shards(tmp_path / "raw", [pair for pair, _ in pairs])
    cfg = load_config("local", "tiny", [*overrides, f"filter.hot_key_pairs={hot_key_pairs}"])
    out_dir = tmp_path / "filtered"

    report = run_filter(cfg, str(tmp_path / "raw"), str(out_dir))

    expected = Counter(reason for _, reason in pairs if reason)
    assert report.dropped == {reason: expected[reason] for reason in REASONS}
    assert report.input_pairs == len(pairs) == 43
    assert report.kept_pairs == sum(1 for _, reason in pairs if reason is None) == 22
    kept = _read_pairs(out_dir)
    assert sorted(kept, key=repr) == sorted((p for p, r in pairs if r is None), key=repr)
    # one output shard per input shard, in the same order
    assert sorted(p.name for p in out_dir.glob("pairs-*")) == [
        f"pairs-0000{i}-of-00003.tfrecord.gz" for i in range(3)
    ]
    for i in range(3):
        in_order = [p for p, r in pairs[i::3] if r is None]
        assert _read_pairs(out_dir, f"pairs-0000{i}-of-00003.tfrecord.gz") == in_order
    dropped = [
        json.loads(line)
        for path in sorted(out_dir.glob("dropped-*.jsonl"))
        for line in path.read_text().splitlines()
    ]
    assert sorted((d["image_url"], d["text"], d["reason"]) for d in dropped) == sorted(
        (p.image_url, p.text, r) for p, r in pairs if r
    )
    assert set(dropped[0]) == {"image_url", "page_url", "sha256", "text", "reason"}
    contamination = _read_jsonl(out_dir / "contamination.jsonl")
    duplicates = [p.text for p, r in pairs if r == "image_eval_duplicate"]  # near e1, e2, e3 in turn
    near = [("karpathy", "e1.png"), ("karpathy", "e2.png"), ("classes", "e3.png")]
    assert sorted((c["text"], c["eval_set"], Path(c["eval_image"]).name) for c in contamination) == sorted(
        (text, *image) for text, image in zip(duplicates, near, strict=True)
    )
    assert contamination_counts(str(out_dir)) == {"classes": 1, "karpathy": 2}
    assert json.loads((out_dir / "funnel.json").read_text()) == report.to_dict()
    assert Image.open(out_dir / "funnel.png").format == "PNG"
    assert sorted(p.name for p in out_dir.iterdir() if not p.name.startswith(("pairs-", "dropped-"))) == [
        "contamination.jsonl",
        "corpus_stats.json",
        "corpus_stats.png",
        "drift_report.json",
        "funnel.json",
        "funnel.png",
        "vocab.txt",
    ]
    _assert_trainers_vocabulary(out_dir, cfg.model.vocab_size)
    stats = json.loads((out_dir / "corpus_stats.json").read_text())
    assert stats["pairs"] == 22 and stats["distinct_images"] == len({p.sha256 for p in kept})
    assert json.loads((out_dir / "drift_report.json").read_text())["baseline"] is False

    # A rerun into the same folder compares with the output it replaces: nothing moved.
    run_filter(cfg, str(tmp_path / "raw"), str(out_dir))
    drift = json.loads((out_dir / "drift_report.json").read_text())
    assert drift["baseline"] is True and drift["drifted"] is False and set(drift["distances"].values()) == {0}


def test_missing_or_empty_input_folder(tmp_path):
    cfg = load_config("local", "tiny")
    with pytest.raises(InputError, match="no-such-folder"):
        run_filter(cfg, str(tmp_path / "no-such-folder"), str(tmp_path / "out"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*has no pair shards"):
        run_filter(cfg, str(tmp_path / "empty"), str(tmp_path / "out"))


def test_missing_blocklist_is_an_input_error(tmp_path):
    _write_shards(tmp_path / "raw", [_pair(encode(make_scene(0)), "a red circle", 0)], num_shards=1)
    cfg = load_config("local", "tiny", [f"filter.unsafe_image_blocklist={tmp_path / 'nope.txt'}"])
    with pytest.raises(InputError, match="nope.txt"):
        run_filter(cfg, str(tmp_path / "raw"), str(tmp_path / "out"))


def test_evaluation_images_of_every_split(tmp_path):
    pairs, overrides = _build_corpus(tmp_path)
    cfg = load_config("local", "tiny", overrides)
    images = [(name, Path(path).name) for name, path in evaluation_images(cfg.eval)]
    assert images == [("classes", "e3.png"), ("karpathy", "e1.png"), ("karpathy", "e2.png")]


def test_decode_image_facts():
    data = encode(make_scene(0, 50, 30))
    decodable, width, height, image_hash = decode_image_facts(data)
    assert (decodable, width, height) == (True, 50, 30)
    assert image_hash == phash(Image.open(io.BytesIO(data)))
    assert decode_image_facts(b"garbage") == (False, 0, 0, None)
    assert decode_image_facts(data[: len(data) // 2]) == (False, 0, 0, None)  # truncated
    assert decode_image_facts(data, max_pixels=50 * 30 - 1) == (False, 50, 30, None)  # over the cap


@pytest.mark.large
def test_hash_rules_off_without_eval_sets_or_blocklist_and_old_outputs_replaced(tmp_path, caplog):
    image = make_scene(7)
    pairs = [_pair(encode(image), "a red circle on the left", 0), _pair(encode(image), "a red circle", 1)]
    _write_shards(tmp_path / "raw", pairs, num_shards=1)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    stale = ["pairs-00000-of-00005.tfrecord.gz", "dropped-00003-of-00004.jsonl", "funnel.png", "vocab.txt"]
    stale.append("contamination.jsonl")
    for name in stale:
        (out_dir / name).write_bytes(b"old")
    cfg = load_config("local", "tiny", ["filter.num_shards=1", "filter.min_image_short_side=10"])

    with caplog.at_level(logging.INFO, logger="alignpipe"):
        report = run_filter(cfg, str(tmp_path / "raw"), str(out_dir))

    assert report.input_pairs == 2 and report.kept_pairs == 2
    assert (
        "filter: no evaluation set is configured (eval.retrieval_sets, eval.classification_sets), "
        "the image_eval_duplicate rule checks nothing"
    ) in caplog.messages
    assert "filter: filter.unsafe_image_blocklist is empty, the image_unsafe rule is off" in caplog.messages
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "contamination.jsonl",
        "corpus_stats.json",
        "corpus_stats.png",
        "drift_report.json",
        "dropped-00000-of-00001.jsonl",
        "funnel.json",
        "funnel.png",
        "pairs-00000-of-00001.tfrecord.gz",
        "vocab.txt",
    ]
    assert (out_dir / "dropped-00000-of-00001.jsonl").read_text() == ""
    assert (out_dir / "contamination.jsonl").read_text() == "" and contamination_counts(str(out_dir)) == {}
    _assert_trainers_vocabulary(out_dir, cfg.model.vocab_size)
    assert Image.open(out_dir / "funnel.png").format == "PNG"
    assert sorted(_read_pairs(out_dir), key=repr) == sorted(pairs, key=repr)

    # A run that fails leaves the last good output as it was.
    before = {p.name: p.read_bytes() for p in out_dir.iterdir()}
    with open(tmp_path / "raw" / "pairs-00000-of-00001.tfrecord.gz", "wb") as f:
        f.write(b"not a TFRecord file")
    with pytest.raises(Exception):  # noqa: B017  (whatever the corrupt input raises)
        run_filter(cfg, str(tmp_path / "raw"), str(out_dir))
    assert {p.name: p.read_bytes() for p in out_dir.iterdir() if p.name != "_staging"} == before


@pytest.mark.large
def test_a_rule_dropping_most_pairs_is_warned_about_in_the_funnel(tmp_path, caplog):
    """A word share that binds on 5 alt-texts: the rare-token rule drops 3 of 5, and says so."""
    texts = ["a red circle here"] * 2 + ["a blue zyzzyva", "one green quokka", "pink axolotl two"]
    pairs = [_pair(encode(make_scene(n)), text, n) for n, text in enumerate(texts)]
    _write_shards(tmp_path / "raw", pairs, num_shards=1)
    share = ["filter.rare_token_min_word_share=0.3"]  # 1.5 occurrences: words seen once are rare
    cfg = load_config("local", "tiny", ["filter.num_shards=1", "filter.min_image_short_side=10", *share])

    with caplog.at_level(logging.WARNING, logger="alignpipe"):
        report = run_filter(cfg, str(tmp_path / "raw"), str(tmp_path / "out"))

    assert report.dropped["text_rare_token"] == 3 and report.kept_pairs == 2
    funnel = json.loads((tmp_path / "out" / "funnel.json").read_text())
    rare, too_few = funnel["warnings"]
    assert rare.startswith("filter rule text_rare_token dropped 3 of the 5 pairs that reached it (60%")
    assert "lower filter.rare_token_min_word_share" in rare
    assert too_few.startswith("the filter kept 2 of 5 pairs, fewer than one training batch")
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        f"filter: {rare}",
        f"filter: {too_few}",
    ]


@pytest.mark.large
def test_tiny_preset_on_the_demo_web(tmp_path):
    """Scrape the generated demo web over real HTTP, filter it, and check each kind of noise.

    The demo's junk-token alts ("... qzxv-1037") are kept: each junk token is seen once in
    3,557 alt-texts, as are real words on real sites of that size, so at this scale no token
    is outside the paper's top-100M vocabulary and the rare-token rule drops nothing.
    """
    from alignpipe.data.scrape import run_scrape
    from alignpipe.demo.demo_web import BOILERPLATE_ALTS, IMAGES_PER_BOILERPLATE_ALT, write_demo_web
    from alignpipe.demo.serve import serve_folder
    from alignpipe.filtering.rules import alt_word_count

    web = write_demo_web(str(tmp_path / "web"))
    with serve_folder(web.site_dir) as url:
        scrape = [
            f"scrape.seed_urls={url}",
            "scrape.allowed_networks=127.0.0.1/32",
            "scrape.image_hosts=allowed",
        ]
        run_scrape(load_config("local", "tiny", scrape), str(tmp_path / "raw"))
    cfg = load_config(
        "local",
        "tiny",
        [
            f"eval.retrieval_sets=demo={web.retrieval_set}",
            f"eval.classification_sets=demo_shapes={web.classification_set}",
            f"filter.unsafe_image_blocklist={web.unsafe_image_blocklist}",
        ],
    )

    report = run_filter(cfg, str(tmp_path / "raw"), str(tmp_path / "filtered"))

    n, dropped = web.counts, report.dropped
    short_boilerplate = sum(1 for alt in BOILERPLATE_ALTS if alt_word_count(alt) < 3)
    assert dropped["image_undecodable"] == 0
    assert dropped["image_unsafe"] == n["unsafe"]
    assert dropped["image_eval_duplicate"] == n["eval_near_copy"]
    assert dropped["image_too_small"] == n["small_icon"]
    assert dropped["image_aspect_ratio_too_large"] == n["banner"] + 1  # + the site logo, 120x40
    assert dropped["image_too_many_alts"] == n["many_alts"]
    assert dropped["text_too_short"] == n["short_alt"] + short_boilerplate * IMAGES_PER_BOILERPLATE_ALT
    assert n["long_alt"] <= dropped["text_too_long"] <= n["long_alt"] + 3  # a rare-token alt may be long too
    shared = (len(BOILERPLATE_ALTS) - short_boilerplate) * IMAGES_PER_BOILERPLATE_ALT
    assert dropped["text_shared_by_too_many_images"] == shared
    assert dropped["text_rare_token"] == 0
    rare_token_alts_too_long = dropped["text_too_long"] - n["long_alt"]
    assert report.kept_pairs == n["good"] + n["rare_token"] - rare_token_alts_too_long
    assert report.warnings == ()
    _assert_trainers_vocabulary(tmp_path / "filtered", cfg.model.vocab_size)
    _assert_contamination_report(tmp_path / "filtered", dropped["image_eval_duplicate"], cfg)
    # the demo's near-copies are of retrieval images
    sets = ["demo", "demo_shapes"]
    assert contamination_counts(str(tmp_path / "filtered"), sets) == {"demo": 30, "demo_shapes": 0}
    # The whole funnel of the demo at seed 0, pinned: the same before and after statistics
    # moved to metadata-only records and combiners.
    assert (report.input_pairs, report.kept_pairs) == (3557, 3099)
    assert {reason: count for reason, count in dropped.items() if count} == {
        "image_unsafe": 6,
        "image_eval_duplicate": 30,
        "image_too_small": 60,
        "image_aspect_ratio_too_large": 41,
        "image_too_many_alts": 20,
        "text_too_short": 180,
        "text_too_long": 61,
        "text_shared_by_too_many_images": 60,
    }


def _assert_contamination_report(out_dir: Path, eval_duplicates: int, cfg) -> None:
    """One line per pair dropped as image_eval_duplicate, naming a set and an evaluation image
    of it whose pHash is `hamming` bits, at most the limit, from the pair's."""
    report = _read_jsonl(out_dir / "contamination.jsonl")
    dropped = [d for path in out_dir.glob("dropped-*.jsonl") for d in _read_jsonl(path)]
    assert len(report) == eval_duplicates
    assert sorted((c["image_url"], c["text"]) for c in report) == sorted(
        (d["image_url"], d["text"]) for d in dropped if d["reason"] == "image_eval_duplicate"
    )
    images = set(evaluation_images(cfg.eval))
    for c in report:
        assert (c["eval_set"], c["eval_image"]) in images
        distance = hamming(parse_phash_hex(c["image_phash"]), phash(Image.open(c["eval_image"])))
        assert c["hamming"] == distance <= cfg.filter.eval_duplicate_max_hamming
    assert sum(contamination_counts(str(out_dir)).values()) == eval_duplicates


@pytest.mark.large
def test_contamination_report_names_the_set_and_image_of_each_near_copy(tmp_path, caplog):
    """Two named sets, a retrieval set over two splits and a classification set, and training
    images near an image of each; an image in both sets is reported under the smaller name."""
    flickr, shapes = tmp_path / "flickr", tmp_path / "shapes"
    (shapes / "circle").mkdir(parents=True)
    flickr.mkdir()
    test_image, val_image, class_image, shared = (make_scene(seed, 96, 96) for seed in (10, 11, 12, 13))
    for image, path in [
        (test_image, flickr / "f1.png"),
        (val_image, flickr / "f2.png"),
        (shared, flickr / "f3.png"),
        (class_image, shapes / "circle" / "s1.png"),
        (shared, shapes / "circle" / "s2.png"),
    ]:
        image.save(path)
    entries = [
        {"filename": name, "split": split, "sentences": [{"raw": "a thing"}]}
        for name, split in [("f1.png", "test"), ("f2.png", "val"), ("f3.png", "test")]
    ]
    (flickr / "dataset_flickr.json").write_text(json.dumps({"images": entries}))
    (shapes / "classnames.txt").write_text("circle\ta circle\n")
    near_copies = [
        (encode(test_image, "JPEG", quality=80), ("flickr", flickr / "f1.png")),
        (encode(val_image.resize((90, 90))), ("flickr", flickr / "f2.png")),
        (encode(class_image, "JPEG", quality=85), ("shapes", shapes / "circle" / "s1.png")),
        (encode(shared), ("flickr", flickr / "f3.png")),  # in both sets: the smaller (set, path)
    ]
    pairs = [_pair(data, f"near copy number {n} here", n) for n, (data, _) in enumerate(near_copies)]
    pairs += [_pair(encode(make_scene(20 + n, 96, 96)), "a red circle on the left", 10 + n) for n in range(2)]
    _write_shards(tmp_path / "raw", pairs, num_shards=2)
    cfg = load_config(
        "local",
        "tiny",
        [
            "filter.num_shards=1",
            f"eval.retrieval_sets=flickr={flickr / 'dataset_flickr.json'}",
            f"eval.classification_sets=shapes={shapes}",
        ],
    )

    with caplog.at_level(logging.INFO, logger="alignpipe"):
        report = run_filter(cfg, str(tmp_path / "raw"), str(tmp_path / "out"))

    assert report.dropped["image_eval_duplicate"] == 4 and report.kept_pairs == 2
    assert "filter: evaluation set flickr: 3 images to deduplicate against" in caplog.messages
    assert "filter: evaluation set shapes: 2 images to deduplicate against" in caplog.messages
    contamination = {c["image_url"]: c for c in _read_jsonl(tmp_path / "out" / "contamination.jsonl")}
    assert len(contamination) == 4
    for pair, (data, (set_name, path)) in zip(pairs, near_copies, strict=False):
        line = contamination[pair.image_url]
        image_hash = phash(Image.open(io.BytesIO(data)))
        assert (line["eval_set"], line["eval_image"]) == (set_name, str(path))
        assert line["hamming"] == hamming(image_hash, phash(Image.open(path))) <= 6
        assert line["image_phash"] == f"{image_hash:016x}"
        assert (line["page_url"], line["sha256"], line["text"]) == (pair.page_url, pair.sha256, pair.text)
    assert contamination_counts(str(tmp_path / "out"), ["flickr", "shapes", "coco"]) == {
        "coco": 0,
        "flickr": 3,
        "shapes": 1,
    }
    assert "filter: training pairs near an evaluation image, per set: {'flickr': 3, 'shapes': 1}" in (
        caplog.messages
    )


def test_contamination_counts_needs_the_filters_report(tmp_path):
    with pytest.raises(InputError, match="contamination.jsonl' does not exist"):
        contamination_counts(str(tmp_path))
    (tmp_path / "contamination.jsonl").write_text('{"eval_set": "coco"}\nnot json\n')
    with pytest.raises(InputError, match=r"contamination.jsonl:2: not a contamination record"):
        contamination_counts(str(tmp_path))


@pytest.mark.large
def test_a_scrape_listing_corpus_snapshots_is_filtered_as_their_union(tmp_path):
    pairs, overrides = _build_corpus(tmp_path)
    halves = {"snap-a": pairs[:20], "snap-b": pairs[20:]}  # shards of the same names in each
    for name, part in halves.items():
        _write_shards(tmp_path / "corpus" / name, [pair for pair, _ in part])
        (tmp_path / "corpus" / name / SNAPSHOT_JSON).write_text("{}")
    scrape_out = tmp_path / "scrape"
    scrape_out.mkdir()
    write_listing(str(scrape_out), [str(tmp_path / "corpus" / name) for name in halves])
    cfg = load_config("local", "tiny", overrides)

    report = run_filter(cfg, str(scrape_out), str(tmp_path / "filtered"))

    expected = Counter(reason for _, reason in pairs if reason)
    assert report.input_pairs == len(pairs) and report.dropped == {r: expected[r] for r in REASONS}
    assert sorted(_read_pairs(tmp_path / "filtered"), key=repr) == sorted(
        (p for p, r in pairs if r is None), key=repr
    )
