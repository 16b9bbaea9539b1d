import numpy as np
import pytest

from alignpipe.search.corpus_index import CorpusIndex, Item


def _unit(rows):
    rows = np.asarray(rows, np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _index():
    rng = np.random.default_rng(0)
    images = _unit(rng.normal(size=(50, 8)))
    items = [
        Item(f"http://127.0.0.1/{i}.jpg", f"http://127.0.0.1/p{i}", (f"a{i}", f"b{i}"), f"{i:064x}")
        for i in range(50)
    ]
    texts = np.repeat(images, 2, axis=0)
    return CorpusIndex(images, texts, np.repeat(np.arange(50), 2), items, "models:/m/1")


def test_search_matches_exact_ranking_and_round_trips(tmp_path):
    index = _index()
    queries = _unit(np.random.default_rng(1).normal(size=(5, 8)))
    exact = np.argsort(-(queries @ index.images.T), axis=1)[:, :10]
    hits = index.search_images(queries, k=10)
    assert [[h.item_id for h in row] for row in hits] == exact.tolist()
    assert all(row[i].score >= row[i + 1].score for row in hits for i in range(9))
    index.save(str(tmp_path / "ix"))
    again = CorpusIndex.load(str(tmp_path / "ix"))
    assert again.items == index.items and again.model_uri == "models:/m/1"
    texts = again.search_texts(index.images[[3]], k=2)[0]
    assert {h.text for h in texts} == {"a3", "b3"} and {h.item_id for h in texts} == {3}


def test_bad_queries_and_folders_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="dimension 8"):
        _index().search_images(np.zeros((1, 4), np.float32), k=3)
    with pytest.raises(ValueError, match="not an index"):
        CorpusIndex.load(str(tmp_path))


def _png(width, height):
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 10)).save(out, "PNG")
    return out.getvalue()


def test_thumbnails_are_small_jpegs_kept_through_save_and_load(tmp_path):
    import io

    from PIL import Image

    from alignpipe.imaging.thumbnail import make_thumbnail

    base = _index()
    thumbnails = [make_thumbnail(_png(640, 320)) if i % 2 == 0 else None for i in range(len(base))]
    thumbnails[1] = make_thumbnail(b"not an image")  # None: no thumbnail for that item
    index = CorpusIndex(base.images, base.texts, base.text_items, base.items, "m", thumbnails)
    index.save(str(tmp_path / "ix"))
    again = CorpusIndex.load(str(tmp_path / "ix"))
    with Image.open(io.BytesIO(again.thumbnail(0))) as image:
        assert image.format == "JPEG" and image.size == (160, 80)
    assert again.thumbnail(1) is None and again.thumbnail(3) is None
    assert again.thumbnail(48) == thumbnails[48]
    with pytest.raises(IndexError, match="item 50"):
        again.thumbnail(50)


def test_from_ann_min_vectors_on_the_search_goes_through_a_saved_hnsw_graph(tmp_path):
    from tests.search.test_hnsw_graph import clustered_unit_vectors, exact_top_10, recall_at_10

    data = clustered_unit_vectors(3100, 32, 30, seed=2)
    images, queries = data[:3000], data[3000:]
    items = [Item(f"http://127.0.0.1/{i}.jpg", "", (f"t{i}",), f"{i:064x}") for i in range(3000)]
    index = CorpusIndex(images, images, np.arange(3000), items, "m", ann_min_vectors=1000)
    found = np.array([[h.item_id for h in row] for row in index.search_images(queries, k=10)])
    assert recall_at_10(found, exact_top_10(images, queries)) >= 0.95
    index.save(str(tmp_path / "ix"))
    assert (tmp_path / "ix" / "images.hnsw").exists() and (tmp_path / "ix" / "texts.hnsw").exists()
    again = CorpusIndex.load(str(tmp_path / "ix"))
    assert again.ann_min_vectors == 1000 and set(again._graphs) == {"images", "texts"}
    assert [[h.item_id for h in row] for row in again.search_images(queries, k=10)] == found.tolist()
    texts = again.search_texts(queries[:3], k=4)
    assert all(len(row) == 4 and row[0].text == f"t{row[0].item_id}" for row in texts)
    exact = CorpusIndex(images, images, np.arange(3000), items, "m", ann_min_vectors=5000)
    top = [[h.item_id for h in row] for row in exact.search_images(queries, k=10)]
    assert top == exact_top_10(images, queries).tolist() and exact._graphs == {}  # no graph below it


def test_an_extended_index_links_its_new_rows_into_the_earlier_graphs():
    from tests.search.test_hnsw_graph import clustered_unit_vectors

    data = clustered_unit_vectors(2400, 16, 20, seed=3)
    items = [Item("", "", (f"t{i}",), f"{i:064x}") for i in range(2400)]
    earlier = CorpusIndex(data[:2000], data[:2000], np.arange(2000), items[:2000], ann_min_vectors=1000)
    earlier.search_images(data[:1], k=1)  # builds the images graph
    grown = CorpusIndex(data, data, np.arange(2400), items, ann_min_vectors=1000)
    grown.extend_graphs(earlier)
    assert set(grown._graphs) == {"images"} and len(grown._graphs["images"]) == 2400
    assert [row[0].item_id for row in grown.search_images(data[2300:2310], k=1)] == list(range(2300, 2310))
