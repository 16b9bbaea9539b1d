"""A Beam RunInference model handler that calls one signature of the exported SavedModel.

Beam 2.77's own TensorFlow handlers (`apache_beam.ml.inference.tensorflow_inference`) import
`tensorflow_hub` and load models with `tf.keras.models.load_model`, which under Keras 3 reads
`.keras` files only, not a SavedModel; this handler loads the SavedModel with
`tf.saved_model.load` and calls a named signature on each batch, so `RunInference` batches,
shares the model between a worker's threads and reports its metrics as with Beam's own handlers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from apache_beam.ml.inference.base import ModelHandler, PredictionResult


class SignatureModelHandler(ModelHandler[bytes, PredictionResult, Any]):
    """Embeds batches of encoded images or texts with one signature of a SavedModel.

    Args:
        saved_model_dir: the SavedModel folder, local or `gs://`.
        signature: the signature's name, e.g. `embed_image`.
        input_name: its one input, a tf.string `[N]` tensor, e.g. `images`.
        batch_size: the most elements per call.

    Each `PredictionResult.inference` is the element's float32 `[D]` embedding.

    Example:
        handler = KeyedModelHandler(SignatureModelHandler(path, "embed_text", "texts", 256))
        keyed_texts | RunInference(handler)  # (key, PredictionResult)
    """

    def __init__(self, saved_model_dir: str, signature: str, input_name: str, batch_size: int):
        super().__init__(min_batch_size=1, max_batch_size=batch_size)
        self._saved_model_dir = saved_model_dir
        self._signature = signature
        self._input_name = input_name

    def load_model(self) -> Any:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the WordPiece ops of embed_text)

        return tf.saved_model.load(self._saved_model_dir)

    def run_inference(
        self, batch: Sequence[bytes], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[PredictionResult]:
        import tensorflow as tf

        inputs = tf.constant([e.encode("utf-8") if isinstance(e, str) else e for e in batch], tf.string)
        embeddings = model.signatures[self._signature](**{self._input_name: inputs})["embeddings"]
        return [
            PredictionResult(element, vector, self._saved_model_dir)
            for element, vector in zip(batch, np.asarray(embeddings, np.float32), strict=True)
        ]

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(e) for e in batch)

    def get_metrics_namespace(self) -> str:
        return f"alignpipe_{self._signature}"
