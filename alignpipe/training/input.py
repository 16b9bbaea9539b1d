"""tf.data input: filtered (image, alt-text) TFRecord shards -> training batches."""

from __future__ import annotations

import logging

import tensorflow as tf

from alignpipe import fs
from alignpipe.config import ModelConfig, TrainConfig
from alignpipe.data.records import COMPRESSION, FEATURE_SPEC, shard_pattern
from alignpipe.errors import InputError
from alignpipe.filtering.funnel import FUNNEL_JSON, FunnelReport, largest_drop, read_funnel_json
from alignpipe.filtering.rules import RULE_CONFIG_HINTS
from alignpipe.model.image_preprocessing import preprocess_for_train
from alignpipe.model.tokenizer import AlignTokenizer

log = logging.getLogger("alignpipe")

_PAIR_FEATURES = {key: FEATURE_SPEC[key] for key in ("image/encoded", "text")}


def pair_files(data_dir: str) -> list[str]:
    """The pair shards (`pairs-*.tfrecord.gz`) in `data_dir`, sorted.

    Raises:
        InputError: `data_dir` is empty, missing or holds no pair shards.
    """
    files = fs.glob(shard_pattern(data_dir)) if data_dir else []
    if not files:
        raise InputError(
            f"training data {data_dir!r} has no pair shards matching {shard_pattern(data_dir)!r}"
        )
    return files


def text_dataset(files: list[str]) -> tf.data.Dataset:
    """The alt-texts of every pair in `files`, in file order: scalar tf.string."""
    records = tf.data.TFRecordDataset(files, compression_type=COMPRESSION)
    text_spec = {"text": FEATURE_SPEC["text"]}
    return records.map(
        lambda record: tf.io.parse_single_example(record, text_spec)["text"],
        num_parallel_calls=tf.data.AUTOTUNE,
    )


def count_pairs(files: list[str]) -> int:
    """The number of records in `files` (one pass over the data)."""
    records = tf.data.TFRecordDataset(files, compression_type=COMPRESSION)
    return int(records.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def pairs_in(data_dir: str, files: list[str]) -> tuple[int, FunnelReport | None]:
    """The number of pairs in `files`, and the funnel of the filter run that wrote them.

    The filter's `funnel.json` beside the shards holds the count (`kept_pairs`), so
    the data is not read for it; without a readable funnel the records are counted.
    """
    path = fs.join(data_dir, FUNNEL_JSON)
    if fs.exists(path):
        try:
            funnel = read_funnel_json(path)
            return funnel.kept_pairs, funnel
        except (ValueError, KeyError, TypeError):
            log.warning("%s is not a filter funnel; counting the pairs instead", path)
    return count_pairs(files), None


def check_enough_pairs(num_pairs: int, batch_size: int, data_dir: str, funnel: FunnelReport | None) -> None:
    """Fails unless there is at least one global batch of pairs, saying what to change.

    Raises:
        InputError: fewer than `batch_size` pairs; the message names `train.batch_size`
            and, given the funnel, the filter rule that dropped most and its config key.
    """
    if num_pairs >= batch_size:
        return
    fixes = [f"lower train.batch_size to at most {num_pairs}"] if num_pairs else []
    if funnel is not None:
        reason, dropped = largest_drop(funnel.dropped)
        source = f"the filter kept {funnel.kept_pairs} of {funnel.input_pairs} pairs"
        if dropped:
            source += f", and {reason} dropped the most ({dropped})"
            fixes.append(RULE_CONFIG_HINTS[reason])
    else:
        source = "no funnel.json beside the shards, the pairs were counted"
    fixes.append("add data")
    raise InputError(
        f"training data {data_dir!r} has {num_pairs} pairs, fewer than one batch "
        f"(train.batch_size={batch_size}); {source}. To fix: {'; or '.join(fixes)}"
    )


# Position of a record in the training stream: epoch * EPOCH_STRIDE + its index in that epoch's
# shuffled order; the batches carry it so that a resumed run can continue where a checkpoint was.
STREAM_POSITION = "stream_position"
EPOCH_STRIDE = 2**32


def train_dataset(
    files: list[str],
    tokenizer: AlignTokenizer,
    model: ModelConfig,
    train: TrainConfig,
    batch_size: int,
    start_position: int = 0,
    num_processes: int = 1,
    process_index: int = 0,
) -> tf.data.Dataset:
    """Endless shuffled batches for training, the same for the same seed, from any position.

    Epoch `e` reads the shards in a seeded order (`train.seed`, `e`), interleaves
    them deterministically and shuffles records in a `train.shuffle_buffer` window
    seeded the same way (the buffer drains at the end of an epoch); images are
    decoded (any format), resized to `model.image_resize`, randomly cropped to
    `model.image_size` and optionally flipped, with stateless randomness seeded by
    the record's stream position; texts are tokenized per batch. Records whose
    image cannot be decoded are skipped with a logged warning (the filter stage
    already drops them).

    Every batch is a function of the seed and its place in the stream alone, so a
    run resumed from `start_position` (one past the last record a checkpoint's
    batches used) sees exactly the batches an uninterrupted run sees. Resuming
    skips whole epochs without reading them and reads, without decoding, the
    records of the current epoch before `start_position`: at most one epoch.

    Args:
        files: pair shards, from `pair_files`.
        tokenizer: the run's tokenizer.
        model: image and text sizes.
        train: `shuffle_buffer`, `random_flip`, `seed`.
        batch_size: examples per batch (the global batch, or a replica's share).
        start_position: where to start, a `STREAM_POSITION` (0: the beginning).
        num_processes: the hosts that share the stream (JAX multi-host training): each
            reads every record but decodes only those whose index in the epoch is
            `process_index` modulo `num_processes`, so its own stream position resumes it.
        process_index: this host's index.

    Returns:
        Dataset of dicts: `images` float32 `[batch_size, image_size, image_size, 3]`
        in [0, 255], `token_ids`, `segment_ids` int32 and `padding_mask` bool
        `[batch_size, max_text_tokens]`, and `stream_position` int64 `[batch_size]`.
    """
    start_epoch, start_index = divmod(start_position, EPOCH_STRIDE)
    paths = tf.constant(files)
    cycle_length = min(len(files), 16)

    def epoch_records(epoch: tf.Tensor) -> tf.data.Dataset:
        order_seed, buffer_seed = tf.unstack(
            tf.random.experimental.stateless_split(tf.stack([tf.constant(train.seed, tf.int64), epoch]))
        )
        order = tf.random.experimental.stateless_shuffle(paths, seed=order_seed)
        records = tf.data.Dataset.from_tensor_slices(order).interleave(
            lambda path: tf.data.TFRecordDataset(path, compression_type=COMPRESSION),
            cycle_length=cycle_length,
            num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=True,
        )
        # `Dataset.shuffle` merges its seed with the graph-level one in Python, which fails
        # for a tensor seed when the global seed is 0; cleared in this function's own graph,
        # the epoch's seed alone decides (and the stream ignores `tf.random.set_seed`).
        tf.compat.v1.get_default_graph().seed = None
        records = records.shuffle(train.shuffle_buffer, seed=buffer_seed[0])
        records = records.enumerate().map(lambda index, record: (record, epoch * EPOCH_STRIDE + index))
        first = tf.where(epoch == start_epoch, tf.constant(start_index, tf.int64), 0)
        if num_processes == 1:
            return records.skip(first)
        return records.filter(
            lambda record, position: (position - epoch * EPOCH_STRIDE >= first)
            & (position % EPOCH_STRIDE % num_processes == process_index)
        )

    def decode(record: tf.Tensor, position: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        pair = tf.io.parse_single_example(record, _PAIR_FEATURES)
        seed = tf.stack([position, tf.constant(train.seed, tf.int64)])
        image = preprocess_for_train(
            pair["image/encoded"], model.image_size, model.image_resize, train.random_flip, seed
        )
        return image, pair["text"], position

    def tokenize(images: tf.Tensor, texts: tf.Tensor, positions: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"images": images, **tokenizer(texts), STREAM_POSITION: positions}

    records = tf.data.Dataset.counter(start_epoch).flat_map(epoch_records)
    pairs = records.map(decode, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors(log_warning=True)
    batches = pairs.batch(batch_size, drop_remainder=True)
    return batches.map(tokenize, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
