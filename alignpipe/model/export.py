"""A self-contained SavedModel of a trained dual encoder, for serving and for MLflow.

The SavedModel holds both towers, the WordPiece vocabulary and the evaluation
preprocessing, behind two signatures that need nothing of this project to run:

- `embed_image`: `images`, tf.string `[N]` of encoded image files (JPEG, PNG, GIF, BMP,
  WebP) -> `embeddings`, float32 `[N, D]`, unit norm; decoded, resized and center-cropped
  as in evaluation.
- `embed_text`: `texts`, tf.string `[N]` of UTF-8 texts -> `embeddings`, float32 `[N, D]`,
  unit norm; lowercased, WordPiece-tokenised and packed as in training.

Loading it needs TensorFlow and tensorflow-text (the WordPiece ops):
```python
import tensorflow as tf, tensorflow_text  # noqa: F401  (registers the WordPiece ops)
model = tf.saved_model.load("runs/tiny/model/saved_model")
images = model.signatures["embed_image"](images=tf.constant([open("cat.jpg", "rb").read()]))
texts = model.signatures["embed_text"](texts=tf.constant(["a cat"]))
similarity = images["embeddings"] @ tf.transpose(texts["embeddings"])
```

A model folder trained on the JAX backend gets its SavedModel from a TensorFlow process:

    KERAS_BACKEND=tensorflow python -m alignpipe.model.export MODEL_DIR
"""

from __future__ import annotations

import sys

import keras
import tensorflow as tf

from alignpipe.model.image_preprocessing import preprocess_for_eval

SAVED_MODEL_DIR = "saved_model"
IMAGE_SIGNATURE = "embed_image"
TEXT_SIGNATURE = "embed_text"


def export_saved_model(encoder, path: str) -> None:
    """Writes `encoder` (an `AlignEncoder`) as a SavedModel with the two signatures above.

    Args:
        encoder: the trained model, its tokenizer and its config.
        path: a local folder or URI (created; an existing SavedModel there is replaced).
    """
    model, tokenizer = encoder.model, encoder.tokenizer
    size, resize = encoder.config.model.image_size, encoder.config.model.image_resize
    archive = keras.export.ExportArchive()
    archive.track(model)
    # The WordPiece model lives in the tokenizer's keras-hub layers, built by a first call.
    tokenizer(["build"])
    archive.track(tokenizer._word_piece)
    archive.track(tokenizer._packer)

    def embed_image(images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels = tf.map_fn(
            lambda data: preprocess_for_eval(data, size, resize),
            images,
            fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32),
        )
        return {"embeddings": model.image_encoder(pixels, training=False)}

    def embed_text(texts: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"embeddings": model.text_encoder(tokenizer(texts), training=False)}

    archive.add_endpoint(IMAGE_SIGNATURE, embed_image, [tf.TensorSpec([None], tf.string, name="images")])
    archive.add_endpoint(TEXT_SIGNATURE, embed_text, [tf.TensorSpec([None], tf.string, name="texts")])
    archive.write_out(path, verbose=False)


def main(argv: list[str]) -> int:
    """Writes `MODEL_DIR/saved_model` from `MODEL_DIR/model.keras` (Keras on TensorFlow)."""
    from alignpipe import fs
    from alignpipe.model.encoder import AlignEncoder

    if keras.backend.backend() != "tensorflow":
        print("alignpipe.model.export: error: needs KERAS_BACKEND=tensorflow", file=sys.stderr)
        return 2
    (model_dir,) = argv
    export_saved_model(AlignEncoder.load(model_dir), fs.join(model_dir, SAVED_MODEL_DIR))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
