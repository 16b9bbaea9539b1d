"""What the server answers, without HTTP: searches of a corpus index and Vertex AI predictions.

| search                 | query          | results                                          |
|------------------------|----------------|--------------------------------------------------|
| `text-to-images`       | text           | the images nearest the text                      |
| `image-to-texts`       | image          | the alt-texts nearest the image                  |
| `image-to-images`      | image          | the images nearest the image                     |
| `image-text-to-images` | image and text | the images nearest their weighted sum (ALIGN §7) |

Each answer also holds the query's nearest alt-texts (`nearest_texts`) when its results are
images. Scores are cosine similarities.

Example:
    service = SearchService(QueryEmbedder.load("runs/tiny/model"), CorpusIndex.load("runs/tiny/index"))
    service.search("text-to-images", {"text": "a red circle", "k": 5})["results"][0]["image_url"]
"""

from __future__ import annotations

import dataclasses

import numpy as np

from alignpipe.errors import InputError
from alignpipe.search.corpus_index import CorpusIndex, Hit
from alignpipe.serving.embedder import QueryEmbedder, UndecodableImage
from alignpipe.serving.queries import (
    Query,
    QueryError,
    QueryLimits,
    combine,
    parse_instances,
    parse_query,
    prediction_k,
)


@dataclasses.dataclass(frozen=True)
class SearchKind:
    """What a search reads (a text, an image or both) and what it finds (`images` or `texts`)."""

    text: bool
    image: bool
    finds: str


SEARCHES = {
    "text-to-images": SearchKind(text=True, image=False, finds="images"),
    "image-to-texts": SearchKind(text=False, image=True, finds="texts"),
    "image-to-images": SearchKind(text=False, image=True, finds="images"),
    "image-text-to-images": SearchKind(text=True, image=True, finds="images"),
}
NEAREST_TEXTS = 5  # alt-texts shown beside image results


def thumbnail_route(item_id: int) -> str:
    return f"/thumbnails/{item_id}"


def hit_record(hit: Hit) -> dict[str, object]:
    """A search result as JSON: the item, its score and where its thumbnail is served."""
    return {
        "item_id": hit.item_id,
        "score": round(hit.score, 6),
        "image_url": hit.item.image_url,
        "page_url": hit.item.page_url,
        "alt_texts": list(hit.item.texts),
        "text": hit.text,
        "thumbnail": thumbnail_route(hit.item_id),
    }


class SearchService:
    """Embeds checked queries with the model and searches the index.

    Args:
        embedder: the model's query embedder.
        index: the corpus index, or None (predictions only: embeddings out).
        limits: what one request may ask.
    """

    def __init__(
        self, embedder: QueryEmbedder, index: CorpusIndex | None = None, limits: QueryLimits | None = None
    ):
        if index is not None and index.dim != embedder.dim:
            raise InputError(
                f"the index holds {index.dim}-dimensional embeddings, the model makes {embedder.dim}:"
                " build the index with this model"
            )
        self.embedder = embedder
        self.index = index
        self.limits = limits or QueryLimits()

    def info(self) -> dict[str, object]:
        """What the server holds, for the page and for health checks."""
        return {
            "dim": self.embedder.dim,
            "items": len(self.index) if self.index is not None else 0,
            "index_model": self.index.model_uri if self.index is not None else None,
            "searches": sorted(SEARCHES) if self.index is not None else [],
            "limits": dataclasses.asdict(self.limits),
        }

    def search(self, kind: str, body: dict) -> dict[str, object]:
        """Answers a search request (the module docstring's table) with its results, best first.

        Raises:
            QueryError: an unknown search, no index, or a refused query.
        """
        if kind not in SEARCHES:
            raise QueryError(f"unknown search {kind!r}: one of {', '.join(SEARCHES)}", 404)
        index = self._require_index()
        search = SEARCHES[kind]
        query = parse_query(body, self.limits, text=search.text, image=search.image)
        vector = self.query_embedding(query)[None, :]
        answer: dict[str, object] = {"search": kind}
        if search.finds == "texts":
            answer["results"] = [hit_record(h) for h in index.search_texts(vector, query.k)[0]]
            return answer
        answer["results"] = [hit_record(h) for h in index.search_images(vector, query.k)[0]]
        answer["nearest_texts"] = [hit_record(h) for h in index.search_texts(vector, NEAREST_TEXTS)[0]]
        return answer

    def query_embedding(self, query: Query) -> np.ndarray:
        """float32 `[D]`, unit norm: of the text, of the image, or their weighted sum."""
        text = self.embedder.embed_texts([query.text])[0] if query.text is not None else None
        image = self._embed_images([query.image])[0] if query.image is not None else None
        if text is not None and image is not None:
            return combine(image, text, query.image_weight, query.text_weight)
        return text if text is not None else image

    def predict(self, body: dict) -> dict[str, object]:
        """Vertex AI's prediction contract: `{"instances": [{"text": ...} | {"image": {"b64":
        ...}}]}` -> `{"predictions": [{"embedding": [D floats]}, ...]}`, one per instance, in order.
        With an index, each prediction also holds its `parameters.k` (default 10) nearest `images`.
        """
        values = parse_instances(body, self.limits)
        k = prediction_k(body, self.limits)
        embeddings = np.zeros((len(values), self.embedder.dim), np.float32)
        texts = [i for i, v in enumerate(values) if isinstance(v, str)]
        images = [i for i, v in enumerate(values) if isinstance(v, bytes)]
        if texts:
            embeddings[texts] = self.embedder.embed_texts([values[i] for i in texts])
        if images:
            embeddings[images] = self._embed_images([values[i] for i in images])
        predictions = [{"embedding": row.tolist()} for row in embeddings]
        if self.index is not None:
            for prediction, hits in zip(predictions, self.index.search_images(embeddings, k), strict=True):
                prediction["images"] = [hit_record(h) for h in hits]
        return {"predictions": predictions}

    def thumbnail(self, item_id: int) -> tuple[bytes | None, str]:
        """(a small JPEG of the item's image if the index keeps one, the image's URL).

        Raises:
            QueryError: no index, or no such item (404).
        """
        index = self._require_index()
        if not 0 <= item_id < len(index):
            raise QueryError(f"no item {item_id}: the index holds items 0 to {len(index) - 1}", 404)
        thumbnail = getattr(index, "thumbnail", None)
        return (thumbnail(item_id) if thumbnail else None), index.items[item_id].image_url

    def _embed_images(self, images: list[bytes]) -> np.ndarray:
        try:
            return self.embedder.embed_images(images)
        except UndecodableImage as e:
            raise QueryError(f"image cannot be decoded by the model: {e}") from None

    def _require_index(self) -> CorpusIndex:
        if self.index is None:
            raise QueryError("no index: the server was started without --index (predictions only)", 404)
        return self.index
