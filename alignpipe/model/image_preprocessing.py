"""Image decoding, resizing and cropping shared by training and inference.

ALIGN (section 4.1) resizes to 346 px and takes a random 289 px crop with a random
horizontal flip for training, and a 289 px center crop for evaluation. Here the
shorter side is resized to `image_resize` (the aspect ratio is kept) before the
`image_size` crop. Pixels stay RGB float32 in [0, 255]; the image tower rescales.
"""

from __future__ import annotations

import tensorflow as tf


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """JPEG, PNG, GIF (first frame), BMP or WebP bytes -> uint8 `[height, width, 3]`."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_shorter_side(images: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes so that the shorter side is `size`, keeping the aspect ratio.

    Args:
        images: `[height, width, 3]` or `[batch, height, width, 3]`, any dtype.
        size: target of the shorter side.

    Returns:
        float32 `[..., new_height, new_width, 3]`, values in the input's range.
    """
    shape = tf.shape(images)
    height = tf.cast(shape[-3], tf.float32)
    width = tf.cast(shape[-2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.minimum(height, width)
    new_height = tf.maximum(size, tf.cast(tf.round(height * scale), tf.int32))
    new_width = tf.maximum(size, tf.cast(tf.round(width * scale), tf.int32))
    return tf.image.resize(tf.cast(images, tf.float32), [new_height, new_width], antialias=True)


def center_crop(images: tf.Tensor, size: int) -> tf.Tensor:
    """The central `size` x `size` window of `[..., height, width, 3]` images."""
    shape = tf.shape(images)
    top = (shape[-3] - size) // 2
    left = (shape[-2] - size) // 2
    cropped = images[..., top : top + size, left : left + size, :]
    return tf.ensure_shape(cropped, images.shape[:-3].concatenate([size, size, 3]))


def preprocess_for_train(
    image_bytes: tf.Tensor,
    image_size: int,
    image_resize: int,
    random_flip: bool,
    seed: tf.Tensor | None = None,
):
    """Encoded image -> float32 `[image_size, image_size, 3]`: resize, random crop, flip.

    With `seed` (int `[2]`) crop and flip are stateless: the same for the same seed
    whatever order a parallel `Dataset.map` calls them in.
    """
    image = resize_shorter_side(decode_image(image_bytes), image_resize)
    if seed is None:
        image = tf.image.random_crop(image, [image_size, image_size, 3])
        return tf.image.random_flip_left_right(image) if random_flip else image
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed))
    image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed) if random_flip else image


def preprocess_for_eval(image_bytes: tf.Tensor, image_size: int, image_resize: int) -> tf.Tensor:
    """Encoded image -> float32 `[image_size, image_size, 3]`: resize, center crop."""
    return center_crop(resize_shorter_side(decode_image(image_bytes), image_resize), image_size)
