"""The trained dual encoder as an MLflow pyfunc model (MLflow's "models from code").

MLflow copies this file into the logged model and runs it at load time, so it imports
nothing of this project: only MLflow, NumPy, pandas, TensorFlow and tensorflow-text.
The model's one artifact is the exported model folder (`artifacts["model_dir"]`, what
`evaluate` scored); its `saved_model/` holds both towers, the vocabulary and the image
preprocessing behind two signatures (`alignpipe.model.export`).

`predict` takes a DataFrame with a `text` column (strings) or an `image` column
(encoded image bytes) and returns L2-normalised embeddings, float32 `[N, D]`:

```python
model = mlflow.pyfunc.load_model("models:/align-dual-encoder@champion")
texts = model.predict(pd.DataFrame({"text": ["a red circle", "a blue square"]}))
images = model.predict(pd.DataFrame({"image": [open("cat.jpg", "rb").read()]}))
similarity = images @ texts.T
```
"""

from __future__ import annotations

import os

import mlflow.models
import mlflow.pyfunc
import numpy as np

BATCH_SIZE = 256


class AlignPyfuncModel(mlflow.pyfunc.PythonModel):
    """Embeds images or texts with the SavedModel of an exported dual encoder."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (registers the WordPiece ops the SavedModel uses)

        self._tf = tf
        saved = tf.saved_model.load(os.path.join(context.artifacts["model_dir"], "saved_model"))
        self._signatures = {"image": saved.signatures["embed_image"], "text": saved.signatures["embed_text"]}
        self._saved = saved  # keeps the signatures' variables alive

    def predict(self, context, model_input, params=None) -> np.ndarray:  # noqa: ARG002
        columns = [c for c in ("text", "image") if c in model_input.columns and model_input[c].notna().all()]
        if len(columns) != 1:
            raise ValueError(
                f"input needs exactly one of a 'text' or an 'image' column; got {list(model_input.columns)}"
            )
        column = columns[0]
        values = [str(v) for v in model_input[column]] if column == "text" else list(model_input[column])
        signature = self._signatures[column]
        argument = "texts" if column == "text" else "images"
        batches = [
            signature(**{argument: self._tf.constant(values[start : start + BATCH_SIZE], self._tf.string)})
            for start in range(0, len(values), BATCH_SIZE)
        ]
        if not batches:
            return np.zeros((0, 0), np.float32)
        return np.concatenate([b["embeddings"].numpy() for b in batches]).astype(np.float32)


mlflow.models.set_model(AlignPyfuncModel())
