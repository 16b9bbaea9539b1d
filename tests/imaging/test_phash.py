import io
import random

import numpy as np
import pytest
from PIL import Image

from alignpipe.errors import InputError
from alignpipe.imaging.phash import (
    PHashIndex,
    dct_2d,
    hamming,
    has_near_duplicate,
    parse_phash_hex,
    phash,
    phash_hex,
    read_blocklist,
    write_blocklist,
)
from tests.filtering.conftest import encode, make_scene


def test_dct_2d_matches_the_definition():
    x = np.random.default_rng(0).random((8, 8))
    n = np.arange(8)
    reference = np.zeros((8, 8))
    for k in range(8):
        for m in range(8):
            basis = np.outer(np.cos(np.pi * k * (2 * n + 1) / 16), np.cos(np.pi * m * (2 * n + 1) / 16))
            reference[k, m] = 4 * np.sum(x * basis)
    np.testing.assert_allclose(dct_2d(x), reference, atol=1e-9)


def test_phash_matches_the_imagehash_recipe():
    fftpack = pytest.importorskip("scipy.fftpack")
    image = make_scene(3, 80, 50)
    pixels = np.asarray(image.convert("L").resize((32, 32), Image.Resampling.LANCZOS), dtype=float)
    low = fftpack.dct(fftpack.dct(pixels, axis=0), axis=1)[:8, :8]
    bits = "".join("1" if v else "0" for v in (low > np.median(low)).flatten())
    assert phash(image) == int(bits, 2)


def test_phash_survives_jpeg_reencoding_and_resizing():
    for seed in range(8):
        image = make_scene(seed, 96, 96)
        jpeg = Image.open(io.BytesIO(encode(image, "JPEG", quality=70)))
        smaller = image.resize((86, 86), Image.Resampling.BILINEAR)
        assert hamming(phash(image), phash(jpeg)) <= 4
        assert hamming(phash(image), phash(smaller)) <= 4


def test_phash_tells_different_scenes_apart():
    hashes = [phash(make_scene(seed, 96, 96)) for seed in range(12)]
    distances = [hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) >= 14
    assert 26 <= np.mean(distances) <= 38


def test_phash_accepts_any_mode():
    image = make_scene(1)
    for mode in ("L", "RGBA", "P", "1", "I"):
        assert 0 <= phash(image.convert(mode)) < 2**64


def test_hamming_and_hex():
    assert hamming(0b1011, 0b0001) == 2
    assert hamming(0, 2**64 - 1) == 64
    assert phash_hex(0xAB) == "00000000000000ab"
    h = phash(make_scene(5))
    assert len(phash_hex(h)) == 16 and parse_phash_hex(phash_hex(h)) == h
    with pytest.raises(ValueError):
        parse_phash_hex("xyz")
    with pytest.raises(ValueError):
        parse_phash_hex("1" * 17)


def test_index_agrees_with_a_linear_scan():
    rng = random.Random(0)
    stored = [rng.getrandbits(64) for _ in range(200)]
    queries = [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in stored[:50]]
    queries += [rng.getrandbits(64) for _ in range(50)]
    for radius in (0, 1, 3, 6):
        index = PHashIndex(stored, radius)
        for d in (0, 1, 2, 3, 6, 10):
            for q in queries:
                expected = any(hamming(q, s) <= d for s in stored)
                assert index.has_within(q, d) == expected
                assert has_near_duplicate(q, stored, d) == expected


def test_nearest_and_within_agree_with_a_linear_scan():
    rng = random.Random(1)
    stored = [rng.getrandbits(64) for _ in range(200)]
    stored += [stored[0] ^ 0b11, stored[0] ^ 0b1100]  # two hashes 2 bits from stored[0]: a tie
    queries = [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in stored[:50]]
    queries += [rng.getrandbits(64) for _ in range(50)] + [stored[0]]
    for radius in (0, 1, 3, 6):
        index = PHashIndex(stored, radius)
        for d in (0, 1, 2, 3, 6, 10):
            for q in queries:
                expected = sorted((hamming(q, s), s) for s in set(stored) if hamming(q, s) <= d)
                assert index.within(q, d) == [(s, dist) for dist, s in expected]
                assert index.nearest(q, d) == (None if not expected else (expected[0][1], expected[0][0]))
    index = PHashIndex(stored, radius=2)
    tie = sorted([stored[0] ^ 0b11, stored[0] ^ 0b1100])[0]
    assert index.nearest(stored[0] ^ 0b1111, 2) == (tie, 2)  # two at distance 2: the smaller hash


def test_the_module_examples_hold():
    import doctest

    from alignpipe.imaging import phash as module

    results = doctest.testmod(module)
    assert results.attempted >= 6 and results.failed == 0


def test_blocklist_round_trip_and_errors(tmp_path):
    path = str(tmp_path / "blocklist.txt")
    write_blocklist(path, [1, 2**64 - 1])
    assert read_blocklist(path) == [1, 2**64 - 1]
    (tmp_path / "commented.txt").write_text("# unsafe images\n\n00000000000000ff  # one\n")
    assert read_blocklist(str(tmp_path / "commented.txt")) == [255]
    (tmp_path / "bad.txt").write_text("00000000000000ff\nnot-a-hash\n")
    with pytest.raises(InputError, match=r"bad.txt:2: 'not-a-hash'"):
        read_blocklist(str(tmp_path / "bad.txt"))
    with pytest.raises(InputError, match="does not exist"):
        read_blocklist(str(tmp_path / "missing.txt"))
