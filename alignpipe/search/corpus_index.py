"""The index of a corpus: every kept image's embedding, its alt-texts' embeddings, its metadata.

A folder (local or `gs://`) holds:

| file            | content                                                             |
|-----------------|---------------------------------------------------------------------|
| manifest.json   | `format`, `dim`, `count` (items), `texts` (text rows), `model_uri`, |
|                 | `model_fingerprint`, `ann_min_vectors`                              |
| images.npy      | float32 `[count, dim]`: unit-norm image embeddings, row i = item i  |
| texts.npy       | float32 `[texts, dim]`: unit-norm embeddings of the alt-texts       |
| text_items.npy  | int64 `[texts]`: the item each text row belongs to                  |
| items.jsonl     | one JSON object per item: `image_url`, `page_url`, `texts`, `sha256` |
| thumbnails.bin  | the items' JPEG thumbnails (longest side <= 160 px), end to end     |
| thumbnail_offsets.npy | int64 `[count + 1]`: item i's thumbnail is bytes `[o[i], o[i+1])` |
| images.hnsw, texts.hnsw | HNSW graphs of the two matrices (`HnswGraph`), from `ann_min_vectors` rows on |

Queries are unit-norm float32 vectors of the same model; the score is the cosine similarity
(the dot product of unit vectors), the quantity ALIGN's contrastive loss trains. A matrix of
fewer than `ann_min_vectors` rows is searched exactly; a larger one through its HNSW graph
(approximate: recall@10 >= 0.95 against exact search, docs/benchmarks.md).

Example:
    index = CorpusIndex.load("runs/demo/index")
    hits = index.search_images(text_embeddings, k=10)   # [queries][k] Hit, best first
    nearest_texts = index.search_texts(image_embeddings, k=5)
"""

from __future__ import annotations

import dataclasses
import io
import json

import numpy as np

from alignpipe import fs
from alignpipe.search.hnsw_graph import HnswGraph

FORMAT = 1
MANIFEST = "manifest.json"
IMAGES, TEXTS, TEXT_ITEMS, ITEMS = "images.npy", "texts.npy", "text_items.npy", "items.jsonl"
THUMBNAILS, THUMBNAIL_OFFSETS = "thumbnails.bin", "thumbnail_offsets.npy"
GRAPHS = {"images": "images.hnsw", "texts": "texts.hnsw"}
# From this many rows on a matrix is searched through its HNSW graph: below it exact search is
# about as fast (docs/benchmarks.md) and exact.
ANN_MIN_VECTORS = 20000


@dataclasses.dataclass(frozen=True)
class Item:
    """What the index knows of one kept image."""

    image_url: str
    page_url: str
    texts: tuple[str, ...]
    sha256: str


@dataclasses.dataclass(frozen=True)
class Hit:
    """One search result: the item, its row in the index and the query's score against it."""

    item_id: int
    score: float
    item: Item
    text: str | None = None  # the matched alt-text, for text searches


def _top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best `k` columns of each row of `scores` [Q, N], best first: (indices, scores) [Q, k]."""
    k = min(k, scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0), np.int64), np.zeros((scores.shape[0], 0), np.float32)
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    rows = np.take_along_axis(part, order, axis=1)
    return rows, np.take_along_axis(scores, rows, axis=1)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _load_npy(path: str) -> np.ndarray:
    return np.load(io.BytesIO(fs.read_bytes(path)), allow_pickle=False)


class CorpusIndex:
    """Image and alt-text embeddings of a corpus with their items, searched by cosine similarity.

    Args:
        images: float32 `[N, D]`, unit-norm image embeddings; row i belongs to `items[i]`.
        texts: float32 `[M, D]`, unit-norm alt-text embeddings.
        text_items: int64 `[M]`, the item of each text row.
        items: the N items.
        model_uri: the model the embeddings came from.
        thumbnails: the N items' JPEG thumbnails (`alignpipe.imaging.thumbnail`), None or
            empty bytes where an item has none; None: no item has one.
        model_fingerprint: a digest of the model's weights (`build_index.model_fingerprint`).
        ann_min_vectors: from this many rows on, a matrix is searched through an HNSW graph.
    """

    def __init__(
        self,
        images: np.ndarray,
        texts: np.ndarray,
        text_items: np.ndarray,
        items: list[Item],
        model_uri: str = "",
        thumbnails: list[bytes | None] | None = None,
        *,
        model_fingerprint: str = "",
        ann_min_vectors: int | None = None,
    ):
        if images.ndim != 2 or len(images) != len(items):
            raise ValueError(f"images {images.shape} do not match {len(items)} items")
        if texts.shape[1:] != images.shape[1:] or len(texts) != len(text_items):
            raise ValueError(f"texts {texts.shape} / text_items {text_items.shape} do not match images")
        self.images = np.ascontiguousarray(images, np.float32)
        self.texts = np.ascontiguousarray(texts, np.float32)
        self.text_items = np.asarray(text_items, np.int64)
        self.items = list(items)
        self.model_uri = model_uri
        self.model_fingerprint = model_fingerprint
        self.ann_min_vectors = ANN_MIN_VECTORS if ann_min_vectors is None else ann_min_vectors
        self._graphs: dict[str, HnswGraph] = {}
        if thumbnails is not None and len(thumbnails) != len(items):
            raise ValueError(f"{len(thumbnails)} thumbnails do not match {len(items)} items")
        sizes = [len(t or b"") for t in thumbnails or [b""] * len(items)]
        self._thumbnail_offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)
        self._thumbnails = b"".join(t or b"" for t in thumbnails or [])

    @property
    def dim(self) -> int:
        return int(self.images.shape[1])

    def __len__(self) -> int:
        return len(self.items)

    def thumbnail(self, item_id: int) -> bytes | None:
        """The item's JPEG thumbnail (longest side <= 160 px), or None if it has none."""
        if not 0 <= item_id < len(self.items):
            raise IndexError(f"item {item_id} is not in an index of {len(self.items)} items")
        start, end = self._thumbnail_offsets[item_id], self._thumbnail_offsets[item_id + 1]
        return self._thumbnails[start:end] if end > start else None

    def search_images(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The `k` items whose image is nearest each query [Q, D], best first."""
        rows, scores = self._search("images", self._check(queries), k)
        return [
            [Hit(int(r), float(s), self.items[int(r)]) for r, s in zip(row, score, strict=True) if r >= 0]
            for row, score in zip(rows, scores, strict=True)
        ]

    def search_texts(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """The `k` alt-texts nearest each query [Q, D], best first, with the item each belongs to."""
        rows, scores = self._search("texts", self._check(queries), k)
        return [
            [self._text_hit(int(r), float(s)) for r, s in zip(row, score, strict=True) if r >= 0]
            for row, score in zip(rows, scores, strict=True)
        ]

    def _search(self, name: str, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, scores) `[Q, k]` of matrix `name` for `queries`, best first; -1 rows: none."""
        matrix = getattr(self, name)
        if len(matrix) < max(self.ann_min_vectors, 1) or k <= 0:
            return _top_k(queries @ matrix.T, k)
        return self.graph(name).search(queries, min(k, len(matrix)))

    def extend_graphs(self, earlier: CorpusIndex) -> None:
        """Takes the HNSW graphs `earlier` has (loaded or built), linking this index's rows after
        earlier's into them: for an index whose rows begin with all of `earlier`'s, in order."""
        for name, graph in earlier._graphs.items():
            matrix = getattr(self, name)
            if len(graph) <= len(matrix):
                graph.add(matrix[len(graph) :])
                self._graphs[name] = graph

    def graph(self, name: str) -> HnswGraph:
        """The HNSW graph of `images` or `texts`, built on first use."""
        if name not in self._graphs:
            self._graphs[name] = HnswGraph.build(getattr(self, name))
        return self._graphs[name]

    def _text_hit(self, row: int, score: float) -> Hit:
        item_id = int(self.text_items[row])
        item = self.items[item_id]
        position = int(self._text_positions()[row])
        return Hit(item_id, score, item, item.texts[position] if position < len(item.texts) else None)

    def _text_positions(self) -> np.ndarray:
        """int64 `[texts]`: each text row's place among its item's texts (rows in order),
        computed once per size of the index rather than once per hit."""
        cached = getattr(self, "_positions", None)
        if cached is None or len(cached) != len(self.text_items):
            order = np.argsort(self.text_items, kind="stable")
            grouped = self.text_items[order]
            cached = np.empty(len(order), np.int64)
            cached[order] = np.arange(len(order)) - np.searchsorted(grouped, grouped, side="left")
            self._positions = cached
        return cached

    def _check(self, queries: np.ndarray) -> np.ndarray:
        queries = np.asarray(queries, np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries of shape {queries.shape} do not match the index dimension {self.dim}")
        return queries

    def save(self, path: str) -> None:
        """Writes the index folder described in the module docstring (the manifest last)."""
        fs.makedirs(path)
        fs.write_bytes(fs.join(path, IMAGES), _npy_bytes(self.images))
        fs.write_bytes(fs.join(path, TEXTS), _npy_bytes(self.texts))
        fs.write_bytes(fs.join(path, TEXT_ITEMS), _npy_bytes(self.text_items))
        fs.write_bytes(fs.join(path, THUMBNAILS), self._thumbnails)
        fs.write_bytes(fs.join(path, THUMBNAIL_OFFSETS), _npy_bytes(self._thumbnail_offsets))
        for name, file in GRAPHS.items():
            if len(getattr(self, name)) >= max(self.ann_min_vectors, 1):
                fs.write_bytes(fs.join(path, file), self.graph(name).to_bytes())
        lines = [json.dumps(dataclasses.asdict(item), ensure_ascii=False) for item in self.items]
        fs.write_text(fs.join(path, ITEMS), "".join(line + "\n" for line in lines))
        manifest = {
            "format": FORMAT,
            "dim": self.dim,
            "count": len(self.items),
            "texts": len(self.texts),
            "model_uri": self.model_uri,
            "model_fingerprint": self.model_fingerprint,
            "ann_min_vectors": self.ann_min_vectors,
        }
        fs.write_json(fs.join(path, MANIFEST), manifest)

    @classmethod
    def load(cls, path: str) -> CorpusIndex:
        """Reads an index folder; a missing or foreign folder is a ValueError naming it."""
        manifest_path = fs.join(path, MANIFEST)
        if not fs.exists(manifest_path):
            raise ValueError(f"{path}: not an index (no {MANIFEST})")
        manifest = fs.read_json(manifest_path)
        if manifest.get("format") != FORMAT:
            raise ValueError(f"{path}: index format {manifest.get('format')!r}, this version reads {FORMAT}")
        items = []
        for line in fs.read_text(fs.join(path, ITEMS)).splitlines():
            record = json.loads(line)
            record["texts"] = tuple(record["texts"])
            items.append(Item(**record))
        index = cls(
            _load_npy(fs.join(path, IMAGES)),
            _load_npy(fs.join(path, TEXTS)),
            _load_npy(fs.join(path, TEXT_ITEMS)),
            items,
            manifest.get("model_uri", ""),
            model_fingerprint=manifest.get("model_fingerprint", ""),
            ann_min_vectors=manifest.get("ann_min_vectors"),
        )
        for name, file in GRAPHS.items():
            rows = len(getattr(index, name))
            if rows >= max(index.ann_min_vectors, 1) and fs.exists(fs.join(path, file)):
                graph = HnswGraph.from_bytes(fs.read_bytes(fs.join(path, file)))
                if len(graph) == rows:  # else stale: rebuilt on first use
                    index._graphs[name] = graph
        if fs.exists(fs.join(path, THUMBNAIL_OFFSETS)):
            offsets = _load_npy(fs.join(path, THUMBNAIL_OFFSETS))
            if offsets.shape != (len(items) + 1,):
                raise ValueError(f"{path}: {THUMBNAIL_OFFSETS} {offsets.shape} does not match the items")
            index._thumbnail_offsets = offsets.astype(np.int64)
            index._thumbnails = fs.read_bytes(fs.join(path, THUMBNAILS))
        return index
