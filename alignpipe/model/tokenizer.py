"""WordPiece tokenization of alt-texts for the BERT text tower."""

from __future__ import annotations

import keras_hub
import tensorflow as tf

from alignpipe import fs
from alignpipe.model.reserved_tokens import RESERVED_TOKENS


class AlignTokenizer:
    """Lowercased WordPiece tokens packed as `[CLS] text [SEP] [PAD]...`.

    ALIGN (section 4.1) learns a WordPiece vocabulary from its own training texts
    (100k tokens) and truncates to 64 tokens. Works on Python strings and inside
    `tf.data` pipelines alike.

    Args:
        vocabulary: tokens, index = token id; must start with `RESERVED_TOKENS`.
        sequence_length: length of every packed sequence, [CLS] and [SEP] included.

    Call:
        texts: `[batch]` strings (a list, or a tf.string tensor).

    Returns:
        dict of `token_ids` int32 `[batch, sequence_length]`, `segment_ids` int32
        (all 0) and `padding_mask` bool (False on padding).

    Example:
    ```python
    tokenizer = AlignTokenizer.from_texts(["a red circle", "two blue squares"], 1000, 24)
    tokenizer.save("vocab.txt")
    batch = tokenizer(["a red square"])  # batch["token_ids"][0, 0] == tokenizer.cls_id
    ```
    """

    def __init__(self, vocabulary: list[str], sequence_length: int):
        if tuple(vocabulary[: len(RESERVED_TOKENS)]) != RESERVED_TOKENS:
            raise ValueError(f"vocabulary must start with {RESERVED_TOKENS}")
        self.vocabulary = list(vocabulary)
        self.sequence_length = sequence_length
        self.pad_id, self.cls_id, self.sep_id = 0, 1, 2
        self._word_piece = keras_hub.tokenizers.WordPieceTokenizer(
            vocabulary=self.vocabulary, lowercase=True, strip_accents=True, oov_token="[UNK]"
        )
        self._packer = keras_hub.layers.MultiSegmentPacker(
            sequence_length=sequence_length,
            start_value=self.cls_id,
            end_value=self.sep_id,
            pad_value=self.pad_id,
        )

    @classmethod
    def from_texts(
        cls, texts: list[str] | tf.data.Dataset, vocabulary_size: int, sequence_length: int
    ) -> AlignTokenizer:
        """Learns a WordPiece vocabulary of at most `vocabulary_size` tokens.

        Args:
            texts: the training texts, a list or a `tf.data.Dataset` of scalar strings.
            vocabulary_size: upper bound on the vocabulary (reserved tokens included);
                small corpora give fewer tokens.
            sequence_length: see the class.
        """
        data = tf.data.Dataset.from_tensor_slices(list(texts)) if isinstance(texts, list) else texts
        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            data.batch(1024),
            vocabulary_size,
            lowercase=True,
            strip_accents=True,
            reserved_tokens=list(RESERVED_TOKENS),
        )
        return cls(vocabulary, sequence_length)

    @classmethod
    def load(cls, vocab_path: str, sequence_length: int) -> AlignTokenizer:
        """Reads a `vocab.txt` written by `save` (one token a line)."""
        # "\n" only: str.splitlines would also split on U+2028 / U+2029, which a token may hold.
        lines = fs.read_text(vocab_path).split("\n")
        return cls(lines[:-1] if lines and not lines[-1] else lines, sequence_length)

    def save(self, vocab_path: str) -> None:
        """Writes `vocab.txt`: one token a line, line number = token id."""
        fs.write_text(vocab_path, "".join(token + "\n" for token in self.vocabulary))

    def __call__(self, texts) -> dict[str, tf.Tensor]:
        token_ids, segment_ids = self._packer(self._word_piece(tf.convert_to_tensor(texts)))
        return {
            "token_ids": tf.cast(token_ids, tf.int32),
            "segment_ids": tf.cast(segment_ids, tf.int32),
            "padding_mask": tf.not_equal(token_ids, self.pad_id),
        }

    def detokenize(self, token_ids) -> list[str]:
        """Texts of packed `token_ids` `[batch, seq]`, special tokens dropped.

        WordPiece is lossy only in case, accents and spacing around punctuation;
        words outside the vocabulary come back as [UNK].
        """
        texts = []
        for row in tf.convert_to_tensor(token_ids).numpy().tolist():
            kept = [t for t in row if t not in (self.pad_id, self.cls_id, self.sep_id)]
            text = self._word_piece.detokenize(kept) if kept else ""
            texts.append(text.decode("utf-8") if isinstance(text, bytes) else str(text))
        return texts
