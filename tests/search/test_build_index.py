"""build_index: the Beam pipeline (in-process runner) with a real SavedModel, end to end."""

from __future__ import annotations

import dataclasses
import io
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the SavedModel's WordPiece ops)
from PIL import Image

from alignpipe.errors import InputError
from alignpipe.search.build_index import build_index
from alignpipe.search.corpus_index import CorpusIndex
from tests.search.conftest import index_config, save_model, square_pairs, write_pair_shard


def _embed(model_dir: str, signature: str, name: str, values: list) -> np.ndarray:
    model = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    return model.signatures[signature](**{name: tf.constant(values)})["embeddings"].numpy()


def test_every_kept_image_is_one_item_with_its_alt_texts_and_the_models_own_vectors(model_dir, tmp_path):
    pairs = square_pairs(list(range(40, 50)))
    write_pair_shard(str(tmp_path / "kept"), 0, pairs[:11])
    write_pair_shard(str(tmp_path / "kept"), 1, pairs[11:] + pairs[:3])  # repeats: one item each
    report = build_index(index_config(), model_dir, str(tmp_path / "kept"), str(tmp_path / "index"))
    assert (report.items, report.texts, report.images_embedded, report.texts_embedded) == (10, 20, 10, 20)
    index = CorpusIndex.load(str(tmp_path / "index"))
    assert index.model_uri == model_dir and index.model_fingerprint == report.model_fingerprint
    by_sha = {item.sha256: i for i, item in enumerate(index.items)}
    assert set(by_sha) == {p.sha256 for p in pairs}
    for pair in pairs[::2]:
        item = index.items[by_sha[pair.sha256]]
        assert pair.text in item.texts and len(item.texts) == 2
    first = pairs[0]
    row = by_sha[first.sha256]
    image_vector = _embed(model_dir, "embed_image", "images", [first.image_bytes])[0]
    np.testing.assert_allclose(index.images[row], image_vector, atol=1e-5)
    text_rows = np.flatnonzero(index.text_items == row)
    texts = list(index.items[row].texts)
    text_vectors = _embed(model_dir, "embed_text", "texts", texts)
    np.testing.assert_allclose(index.texts[text_rows], text_vectors, atol=1e-5)
    with Image.open(io.BytesIO(index.thumbnail(row))) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 160
    hits = index.search_images(image_vector[None], k=3)[0]
    assert hits[0].item_id == row and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert not os.path.exists(tmp_path / "index" / "staging")


def test_a_rerun_after_more_shards_embeds_only_the_new_pairs_and_keeps_the_old_vectors(model_dir, tmp_path):
    kept, out = str(tmp_path / "kept"), str(tmp_path / "index")
    old = square_pairs(list(range(40, 48)))
    write_pair_shard(kept, 0, old)
    build_index(index_config(), model_dir, kept, out)
    before = CorpusIndex.load(out)
    new = square_pairs([60, 61, 62], texts_per_image=1)
    extra_text = old[0].__class__(**{**old[0].__dict__, "text": "one more alt-text"})
    write_pair_shard(kept, 1, new + [extra_text] + old[:4])  # 3 new images, 1 new text, 4 known pairs
    report = build_index(index_config(), model_dir, kept, out)
    assert (report.images_embedded, report.texts_embedded, report.items_kept) == (3, 4, 8)
    after = CorpusIndex.load(out)
    assert (len(after), len(after.texts)) == (11, 20)
    np.testing.assert_array_equal(after.images[:8], before.images)  # the same rows, not re-embedded
    np.testing.assert_array_equal(after.texts[:16], before.texts)
    assert [i.sha256 for i in after.items[:8]] == [i.sha256 for i in before.items]
    grown = after.items[[i.sha256 for i in after.items].index(old[0].sha256)]
    assert grown.texts[-1] == "one more alt-text"
    hit = after.search_texts(_embed(model_dir, "embed_text", "texts", ["one more alt-text"]), k=1)[0][0]
    assert hit.text == "one more alt-text" and hit.item.sha256 == old[0].sha256
    again = build_index(index_config(), model_dir, kept, out)  # nothing new
    assert (again.images_embedded, again.texts_embedded, again.items) == (0, 0, 11)


def test_an_index_of_another_model_is_rebuilt(model_dir, tmp_path):
    kept, out = str(tmp_path / "kept"), str(tmp_path / "index")
    write_pair_shard(kept, 0, square_pairs([40, 41, 42], texts_per_image=1))
    build_index(index_config(), model_dir, kept, out)
    other = save_model(str(tmp_path / "other"), seed=1)
    report = build_index(index_config(), other, kept, out)
    assert report.rebuilt.startswith("built by another model") and report.images_embedded == 3
    index = CorpusIndex.load(out)
    assert index.model_uri == other and len(index) == 3
    row = [i.sha256 for i in index.items].index(square_pairs([40], 1)[0].sha256)
    vector = _embed(other, "embed_image", "images", [square_pairs([40], 1)[0].image_bytes])[0]
    np.testing.assert_allclose(index.images[row], vector, atol=1e-5)


def test_an_image_that_cannot_be_decoded_is_left_out_and_counted_with_its_texts(model_dir, tmp_path):
    good = square_pairs([40, 41], texts_per_image=1)
    broken = [
        dataclasses.replace(pair, image_bytes=b"\x89PNG\r\n\x1a\n" + b"\0" * 40, sha256=f"{n:064x}")
        for n, pair in enumerate(square_pairs([50], texts_per_image=2))
    ]
    broken[1] = dataclasses.replace(broken[1], sha256=broken[0].sha256, image_bytes=broken[0].image_bytes)
    write_pair_shard(str(tmp_path / "kept"), 0, good + broken)
    report = build_index(index_config(), model_dir, str(tmp_path / "kept"), str(tmp_path / "index"))
    assert (report.items, report.images_embedded, report.texts_embedded) == (2, 2, 2)
    assert (report.undecodable_images, report.undecodable_image_texts) == (1, 2)
    assert {i.sha256 for i in CorpusIndex.load(str(tmp_path / "index")).items} == {p.sha256 for p in good}


def test_missing_and_foreign_folders_are_one_line_input_errors(model_dir, tmp_path):
    kept = str(tmp_path / "kept")
    write_pair_shard(kept, 0, square_pairs([40], texts_per_image=1))
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    cases = [
        (str(tmp_path / "nowhere"), kept, str(tmp_path / "a"), "holds no SavedModel"),
        (str(tmp_path / "foreign"), kept, str(tmp_path / "b"), "holds no SavedModel"),
        (model_dir, str(tmp_path / "nowhere"), str(tmp_path / "c"), "has no kept pair shards"),
        (model_dir, str(tmp_path / "foreign"), str(tmp_path / "d"), "has no kept pair shards"),
        (model_dir, kept, str(tmp_path / "foreign"), "holds other files and no manifest.json"),
    ]
    for model, data, out, message in cases:
        with pytest.raises(InputError, match=message) as error:
            build_index(index_config(), model, data, out)
        assert "\n" not in str(error.value)
    assert os.listdir(tmp_path / "foreign") == ["notes.txt"]  # nothing written there


@pytest.mark.parametrize("damage", ["not gzip", "cut short"])
def test_a_damaged_shard_is_one_line_error_and_the_earlier_index_stays(model_dir, tmp_path, damage):
    kept, out = str(tmp_path / "kept"), str(tmp_path / "index")
    write_pair_shard(kept, 0, square_pairs([40, 41], texts_per_image=1))
    build_index(index_config(), model_dir, kept, out)
    before = {name: (tmp_path / "index" / name).read_bytes() for name in sorted(os.listdir(out))}
    write_pair_shard(kept, 1, square_pairs([42], texts_per_image=1))
    [shard] = [p for p in sorted(os.listdir(kept)) if "00001" in p]
    data = (tmp_path / "kept" / shard).read_bytes()
    (tmp_path / "kept" / shard).write_bytes(
        b"not a shard" if damage == "not gzip" else data[: len(data) // 2]
    )
    with pytest.raises(InputError, match="a pair shard is not a complete gzip TFRecord file") as error:
        build_index(index_config(), model_dir, kept, out)
    assert "\n" not in str(error.value)
    after = {name: (tmp_path / "index" / name).read_bytes() for name in sorted(os.listdir(out))}
    assert after == before  # the earlier index whole, and no staging left behind
