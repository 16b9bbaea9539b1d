import io
import random

import numpy as np
import pytest
from PIL import Image

from alignpipe.demo import scenes


def _object_mask(image: Image.Image, colour: str) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.int32)  # [H, W, 3]
    target = np.asarray(scenes.COLOURS[colour], dtype=np.int32)
    return np.abs(pixels - target).sum(axis=-1) < 30  # [H, W]


def test_demo_pairs_same_seed_same_bytes_other_seed_other_bytes():
    a = list(scenes.demo_pairs(5, seed=3, size=64))
    b = list(scenes.demo_pairs(5, seed=3, size=64))
    c = list(scenes.demo_pairs(5, seed=4, size=64))
    assert a == b
    assert a != c
    image = Image.open(io.BytesIO(a[0][0]))
    assert image.format == "PNG" and image.size == (64, 64)


def test_demo_pairs_jpeg():
    data, text = next(scenes.demo_pairs(1, seed=0, image_format="jpeg"))
    assert Image.open(io.BytesIO(data)).format == "JPEG"
    assert text


def test_captions_are_3_to_20_words_and_name_colour_and_shape():
    rng = random.Random(0)
    for _ in range(500):
        scene = scenes.random_scene(rng)
        text = scenes.caption(scene, rng)
        assert 3 <= len(text.split()) <= 20, text
        for obj in scene.objects:
            assert obj.colour in text and obj.shape in text, (text, obj)


def test_captions_vary_for_one_scene():
    rng = random.Random(1)
    scene = scenes.Scene((scenes.SceneObject("circle", "red", "large", "left"),), "white")
    assert len({scenes.caption(scene, rng) for _ in range(50)}) > 20


@pytest.mark.parametrize(
    "position,axis,side", [("left", 1, -1), ("right", 1, 1), ("top", 0, -1), ("bottom", 0, 1)]
)
def test_render_places_the_object_at_its_position(position, axis, side):
    obj = scenes.SceneObject("square", "blue", "small", position)
    image = scenes.render(scenes.Scene((obj,), "white"), 96)
    mask = _object_mask(image, "blue")
    centre = np.argwhere(mask).mean(axis=0)[axis]  # row (axis 0) or column (axis 1)
    assert side * (centre - 47.5) > 15


def test_render_object_is_big_enough_and_coloured():
    for size, low, high in (("small", 0.04, 0.15), ("large", 0.12, 0.3)):
        obj = scenes.SceneObject("circle", "green", size, "center")
        image = scenes.render(scenes.Scene((obj,), "dark", lighting=(0.5, 40.0, 1.0, 0.0)), 64)
        fraction = _object_mask(image, "green").mean()
        assert low < fraction < high, (size, fraction)


def test_counted_group_draws_that_many_objects():
    obj = scenes.SceneObject("circle", "red", "small", "top", count=3)
    image = scenes.render(scenes.Scene((obj,), "white"), 96)
    columns = _object_mask(image, "red").any(axis=0)  # [W]
    runs = np.count_nonzero(np.diff(columns.astype(int)) == 1)
    assert runs == 3


def test_render_non_square_and_all_shapes_differ():
    images = []
    for shape in scenes.SHAPES:
        obj = scenes.SceneObject(shape, "red", "large", "center")
        image = scenes.render(scenes.Scene((obj,), "white"), (120, 80))
        assert image.size == (120, 80)
        images.append(_object_mask(image, "red"))
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            differ = (images[i] != images[j]).sum() / max(images[i].sum(), images[j].sum())
            assert differ > 0.15, (scenes.SHAPES[i], scenes.SHAPES[j], differ)


def test_unknown_shape_raises():
    with pytest.raises(ValueError, match="unknown shape"):
        scenes.render(scenes.Scene((scenes.SceneObject("hexagon", "red", "large", "left"),), "white"))
