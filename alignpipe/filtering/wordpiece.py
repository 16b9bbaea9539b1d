"""The WordPiece vocabulary of the kept alt-texts, learnt in the filter with Beam.

The text tower's vocabulary (ALIGN section 4.1: WordPiece, learnt from the training texts)
is keras-hub's `compute_word_piece_vocabulary(texts, vocab_size, lowercase=True,
strip_accents=True, reserved_tokens=...)` (`alignpipe.model.tokenizer.AlignTokenizer.from_texts`):
BERT's basic tokenizer splits every text into words, the words are counted, and tf-text's
`wordpiece_tokenizer_learner_lib.learn` turns the counts into the vocabulary. Counting reads
the whole corpus, days in one process at the paper's 1.8B alt-texts; here it is a Beam
combine, and `learn` runs once, on no more than it reads of the counts:

1. the largest and the smallest count of all words: the bounds of its binary search over
   the count threshold;
2. the `max_unique_chars` characters most frequent in the words of at most
   `max_token_length` characters that are not reserved tokens (ties by character);
3. of those words, the `max_input_tokens` most frequent among the ones made of those
   characters only, ties in order of first occurrence (its sort is stable over a `Counter`).

`WordPieceVocabulary` computes (1) with a max/min combiner, (2) with per-character counts,
(3) with a top-N (of the words at least as frequent as the N-th, from a histogram of the
counts), and hands `learn` the top-N words and two placeholder words, too long to be
read (longer than `max_token_length`), that carry the largest and the smallest count. So the
vocabulary is keras-hub's token for token, when the texts come with their position in the
trainer's reading order (which only decides ties at the `max_input_tokens` cut). The largest
step holds the top-N (`max_input_tokens`, 5M): the learner's own input; no step holds the texts.

`basic_words` is keras-hub's TensorFlow pre-tokenizer in pure Python. It uses Python's
`unicodedata` (Unicode 14 in Python 3.11): characters assigned since, which TensorFlow's
ICU and RE2 know, are not split or case-folded as TensorFlow does (checked over every
character by tests/filtering/test_wordpiece.py).

Example:
    >>> basic_words("Café Crème, 日本")
    ['cafe', 'creme', ',', '日', '本']
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import apache_beam as beam

# `learn`'s defaults, which keras-hub keeps (tests check them against tf-text).
MAX_INPUT_TOKENS = 5_000_000
MAX_UNIQUE_CHARS = 1000
MAX_TOKEN_LENGTH = 50
JOINER = "##"  # keras-hub's `suffix_indicator`

# keras-hub's CJK_REGEX: CJK Unified Ideographs, extensions A-E, compatibility ideographs.
_CJK_RANGES = (
    (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2B73F),
    (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF),
    (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F),
)
# Default_Ignorable_Code_Point, which NFKC_Casefold (`tf_text.case_fold_utf8`) removes.
_DEFAULT_IGNORABLE_RANGES = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
_RE2_SPACE = frozenset(" \t\n\r\f")  # RE2's \s is ASCII only: U+00A0, U+3000 are word characters


def _in(char: str, ranges: tuple[tuple[int, int], ...]) -> bool:
    code = ord(char)
    return any(low <= code <= high for low, high in ranges)


def _is_punctuation(char: str) -> bool:
    """keras-hub's PUNCTUATION_REGEX: every ASCII symbol, and Unicode category P*."""
    if char < "\x80":
        return not char.isalnum() and "!" <= char <= "~"
    return unicodedata.category(char).startswith("P")


def _is_delimiter(char: str) -> bool:
    return char in _RE2_SPACE or unicodedata.category(char) in ("Cc", "Cf")


def _case_fold(word: str) -> str:
    """NFKC_Casefold, as `tf_text.case_fold_utf8`: ignorables go first, so that what they
    separated composes ("\u1100\u3164\u1161" is one Hangul syllable)."""
    word = "".join(c for c in word if not _in(c, _DEFAULT_IGNORABLE_RANGES))
    word = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", word).casefold())
    return "".join(c for c in word if not _in(c, _DEFAULT_IGNORABLE_RANGES))


def basic_words(text: str) -> list[str]:
    """The words of `text` as keras-hub's `pretokenize(lowercase=True, strip_accents=True)`.

    In keras-hub's order: CJK ideographs set apart by spaces; NFD, combining marks (Mn)
    dropped; split on ASCII whitespace, control and format characters, with every
    punctuation character (all ASCII symbols and Unicode P*) and CJK ideograph a word of its
    own; each word case-folded (NFKC_Casefold: "ß" -> "ss", "ﬁ" -> "fi", "…" -> "..."), which
    may leave a word empty (a lone U+3164) or holding a space (NFKC of U+00A0). TensorFlow's
    strings end at a NUL, so does the text here.

    Example:
        >>> basic_words("A,b.c! ÉTÉ")
        ['a', ',', 'b', '.', 'c', '!', 'ete']
    """
    text = text.partition("\0")[0]
    text = "".join(f" {c} " if _in(c, _CJK_RANGES) else c for c in text)
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    words: list[str] = []
    start = 0
    for end, char in enumerate(text):
        own_word = _is_punctuation(char) or _in(char, _CJK_RANGES)
        if own_word or _is_delimiter(char):
            if end > start:
                words.append(text[start:end])
            if own_word:
                words.append(char)
            start = end + 1
    if len(text) > start:
        words.append(text[start:])
    return [_case_fold(word) for word in words]


def learn_vocabulary(
    word_counts: Sequence[tuple[str, int]],
    vocab_size: int,
    reserved_tokens: Sequence[str],
    max_input_tokens: int = MAX_INPUT_TOKENS,
    max_unique_chars: int = MAX_UNIQUE_CHARS,
) -> list[str]:
    """tf-text's `learn` as keras-hub calls it, cut to `vocab_size` as keras-hub does.

    Imports TensorFlow (tf-text's package does), so only where it runs.
    """
    from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

    vocabulary = learner.learn(
        list(word_counts),
        vocab_size=vocab_size,
        reserved_tokens=list(reserved_tokens),
        max_input_tokens=max_input_tokens,
        max_token_length=MAX_TOKEN_LENGTH,
        max_unique_chars=max_unique_chars,
        include_joiner_token=True,
        joiner=JOINER,
    )
    return vocabulary[:vocab_size]


def wordpiece_vocabulary(
    texts: Iterable[str],
    vocab_size: int,
    reserved_tokens: Sequence[str],
    max_input_tokens: int = MAX_INPUT_TOKENS,
    max_unique_chars: int = MAX_UNIQUE_CHARS,
) -> list[str]:
    """The vocabulary of `texts` in memory, as keras-hub learns it (the reference of
    `WordPieceVocabulary`): every word counted, in order of first occurrence, then `learn`.

    Texts without any word give the reserved tokens alone (keras-hub raises).
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(basic_words(text))
    if not counts:
        return list(reserved_tokens)[:vocab_size]
    return learn_vocabulary(
        list(counts.items()), vocab_size, reserved_tokens, max_input_tokens, max_unique_chars
    )


class WordPieceVocabulary(beam.PTransform):
    """(position, alt-text) pairs -> one element: the WordPiece vocabulary, a list of tokens.

    Equal to `wordpiece_vocabulary` of the texts in `position` order (see the module
    docstring); `position` is any sortable key (e.g. (shard, record)), unique per text,
    that gives the order the trainer reads the texts in.

    Args:
        vocab_size: the most tokens, reserved ones included (`model.vocab_size`).
        reserved_tokens: the first tokens (`alignpipe.model.reserved_tokens.RESERVED_TOKENS`).
        max_input_tokens: `learn`'s cap on the words it reads (tests lower it).
        max_unique_chars: `learn`'s cap on the alphabet (tests lower it).
    """

    def __init__(
        self,
        vocab_size: int,
        reserved_tokens: Sequence[str],
        max_input_tokens: int = MAX_INPUT_TOKENS,
        max_unique_chars: int = MAX_UNIQUE_CHARS,
    ):
        super().__init__()
        self.vocab_size, self.reserved_tokens = vocab_size, tuple(reserved_tokens)
        self.max_input_tokens, self.max_unique_chars = max_input_tokens, max_unique_chars

    def expand(self, texts):
        reserved = frozenset(self.reserved_tokens)
        counts = (
            texts
            | "Words" >> beam.FlatMapTuple(_words_of_text)
            | "CountWords" >> beam.CombinePerKey(_CountAndFirst())
        )
        count_range = counts | "CountRange" >> beam.CombineGlobally(_CountRange())
        readable = counts | "Readable" >> beam.Filter(
            lambda kv: len(kv[0]) <= MAX_TOKEN_LENGTH and kv[0] not in reserved
        )
        alphabet = (
            readable
            | "Characters" >> beam.FlatMap(_character_counts)
            | "CountCharacters" >> beam.CombinePerKey(sum)
            | "TopCharacters" >> beam.combiners.Top.Of(self.max_unique_chars, key=_char_rank, reverse=True)
            | "Alphabet" >> beam.Map(lambda top: frozenset(char for char, _ in top))
        )
        candidates = readable | "InAlphabet" >> beam.Filter(
            lambda kv, chars: chars.issuperset(kv[0]), beam.pvalue.AsSingleton(alphabet)
        )
        # The top-N merges on one worker: only words as frequent as the N-th go there.
        floor = (
            candidates
            | "Counts" >> beam.Map(lambda kv: kv[1][0])
            | "CountHistogram" >> beam.combiners.Count.PerElement()
            | "CountHistogramDict" >> beam.combiners.ToDict()
            | "CountFloor" >> beam.Map(count_floor, self.max_input_tokens)
        )
        return (
            candidates
            | "AboveFloor" >> beam.Filter(lambda kv, least: kv[1][0] >= least, beam.pvalue.AsSingleton(floor))
            | "TopWords" >> beam.combiners.Top.Of(self.max_input_tokens, key=_word_rank, reverse=True)
            | "Learn"
            >> beam.Map(
                _learn_from_top_words,
                beam.pvalue.AsSingleton(count_range),
                self.vocab_size,
                self.reserved_tokens,
                self.max_input_tokens,
                self.max_unique_chars,
            )
        )


def count_floor(histogram: dict[int, int], n: int) -> int:
    """The count of the n-th most frequent word, from how many words have each count (0: < n words).

    Example:
        >>> count_floor({9: 1, 5: 3, 2: 10}, 3)
        5
    """
    words = 0
    for count in sorted(histogram, reverse=True):
        words += histogram[count]
        if words >= n:
            return count
    return 0


def _learn_from_top_words(
    top_words: list,
    count_range: tuple[int, int] | None,
    vocab_size: int,
    reserved_tokens: Sequence[str],
    max_input_tokens: int,
    max_unique_chars: int,
) -> list[str]:
    """`learn` on the words it would read, and two placeholders that carry the count range."""
    if count_range is None:  # no words at all
        return list(reserved_tokens)[:vocab_size]
    placeholder = " " * (MAX_TOKEN_LENGTH + 1)  # `learn` drops it after reading its count's bounds
    word_counts = [(word, count) for word, (count, _) in top_words]
    word_counts += [(placeholder, count) for count in count_range]
    return learn_vocabulary(word_counts, vocab_size, reserved_tokens, max_input_tokens, max_unique_chars)


def _words_of_text(position, text: str) -> Iterator[tuple[str, tuple[int, tuple]]]:
    """(word, (occurrences in the text, (position, index of its first occurrence)))."""
    first: dict[str, tuple[int, int]] = {}
    for index, word in enumerate(basic_words(text)):
        count, at = first.get(word, (0, index))
        first[word] = count + 1, at
    for word, (count, at) in first.items():
        yield word, (count, (position, at))


class _CountAndFirst(beam.CombineFn):
    """(occurrences, first occurrence) values -> (their sum, the earliest)."""

    def create_accumulator(self):
        return 0, None

    def add_input(self, accumulator, value):
        return self.merge_accumulators([accumulator, value])

    def merge_accumulators(self, accumulators):
        total, first = 0, None
        for count, at in accumulators:
            total += count
            if at is not None and (first is None or at < first):
                first = at
        return total, first

    def extract_output(self, accumulator):
        return accumulator


class _CountRange(beam.CombineFn):
    """(word, (count, first)) -> (largest count, smallest count), None without words."""

    def create_accumulator(self):
        return None

    def add_input(self, accumulator, element):
        count = element[1][0]
        return self.merge_accumulators([accumulator, (count, count)])

    def merge_accumulators(self, accumulators):
        ranges = [r for r in accumulators if r is not None]
        return (max(r[0] for r in ranges), min(r[1] for r in ranges)) if ranges else None

    def extract_output(self, accumulator):
        return accumulator


def _character_counts(element) -> Iterator[tuple[str, int]]:
    """A word's characters, each weighted by the word's count (once per occurrence in it)."""
    word, (count, _) = element
    for char, times in Counter(word).items():
        yield char, times * count


def _char_rank(char_count: tuple[str, int]) -> tuple[int, str]:
    return -char_count[1], char_count[0]


def _word_rank(element) -> tuple[int, tuple]:
    word, (count, first) = element
    return -count, first
