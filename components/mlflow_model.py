"""The trained dual encoder as an MLflow pyfunc model.

`predict` takes a DataFrame with a `text` column (strings) or an `image` column
(encoded image bytes) and returns L2-normalised embeddings, float32 [N, D]. The
pyfunc wraps the exported model folder unchanged (`artifacts["model_dir"]`), so
what is registered is exactly what `evaluate` scored.
"""

from __future__ import annotations

import mlflow.pyfunc
import numpy as np

PIP_REQUIREMENTS = ["tensorflow==2.21.0", "keras==3.15.1", "keras-hub==0.32.0", "tensorflow-text==2.21.1"]


class AlignPyfuncModel(mlflow.pyfunc.PythonModel):
    """Embeds images or texts with an exported `alignpipe` dual encoder."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        from alignpipe.model.encoder import AlignEncoder

        self.encoder = AlignEncoder.load(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None) -> np.ndarray:  # noqa: ARG002
        if "text" in model_input.columns:
            return self.encoder.embed_texts([str(t) for t in model_input["text"]])
        if "image" in model_input.columns:
            return self.encoder.embed_images(list(model_input["image"]))
        raise ValueError(f"input needs a 'text' or an 'image' column; got {list(model_input.columns)}")
