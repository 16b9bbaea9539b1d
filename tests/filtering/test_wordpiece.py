"""The filter's WordPiece vocabulary equals the trainer's (keras-hub's), token for token."""

import inspect
import random
import unicodedata
from collections import Counter

import apache_beam as beam
import pytest
import tensorflow as tf
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.util import assert_that, equal_to
from keras_hub.src.tokenizers.word_piece_tokenizer import pretokenize
from tensorflow_text.tools.wordpiece_vocab import wordpiece_tokenizer_learner_lib as learner

from alignpipe.config import IN_PROCESS_RUNNER
from alignpipe.filtering.wordpiece import (
    MAX_INPUT_TOKENS,
    MAX_TOKEN_LENGTH,
    MAX_UNIQUE_CHARS,
    WordPieceVocabulary,
    basic_words,
    count_floor,
    wordpiece_vocabulary,
)
from alignpipe.model.tokenizer import RESERVED_TOKENS, AlignTokenizer

HAND_MADE = [
    "Café Crème",
    "CAFÉ crème brûlée",
    "a,b.c!",
    "日本語 text",
    "日本語のテキスト and 中文",
    "42 apples, 7 pears; 2024-05-01",
    "the the the the cat",
    "Straße ﬁne ÅNGSTRÖM naïve",
    "don't (stop) [now] {ok} $5 #tag @you",
    "Ｆｕｌｌｗｉｄｔｈ ① … ½",
    "tab\tand\nnewline\u00a0nbsp\u3000ideographic",
    "zero\u200bwidth soft\u00adhyphen",
    "Ελληνικά ΣΊΣΥΦΟΣ русский ТЕКСТ",
    "한국어 텍스트",
    "a" * 60 + " " + "b" * 50,
]


def _pipeline() -> beam.Pipeline:
    return beam.Pipeline(options=PipelineOptions([f"--runner={IN_PROCESS_RUNNER}"]))


def _tf_words(texts: list[str]) -> list[list[str]]:
    """keras-hub's own pre-tokenizer (TensorFlow ops), as compute_word_piece_vocabulary calls it."""
    ragged = pretokenize(
        tf.constant(texts), lowercase=True, strip_accents=True, split=True, split_on_cjk=True
    )
    return [[word.decode("utf-8") for word in row] for row in ragged.to_list()]


def _random_texts(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    stems = ["cat", "Dog", "house", "café", "Über", "naïve", "日本", "中", "x9", "2024", "ÉTÉ", "run"]
    stems += ["".join(rng.choices("abcdefghijklmnopqrstuvwxyzéü", k=rng.randint(2, 9))) for _ in range(60)]
    suffixes = ["", "", "", "s", "ing", "ed", "!", ",", "'s", ".jpg"]
    return [
        " ".join(rng.choice(stems) + rng.choice(suffixes) for _ in range(rng.randint(1, 12)))
        for _ in range(n)
    ]


def test_basic_words_edge_cases():
    assert basic_words("Café Crème") == ["cafe", "creme"]
    assert basic_words("a,b.c!") == ["a", ",", "b", ".", "c", "!"]
    assert basic_words("日本語 text") == ["日", "本", "語", "text"]
    assert basic_words("") == [] and basic_words(" \t\n\r\f ") == []
    assert basic_words("$100 don't") == ["$", "100", "don", "'", "t"]
    assert basic_words("Straße ﬁne ÅNGSTRÖM") == ["strasse", "fine", "angstrom"]  # case folding
    assert basic_words("wait…") == ["wait", "..."]  # one punctuation character, folded to three
    assert basic_words("a\u200bb c\u00add") == ["a", "b", "c", "d"]  # format characters split
    assert basic_words("a\u00a0b") == ["a b"]  # RE2's \s is ASCII: one word, NFKC gives a space
    assert basic_words("\u3164") == [""]  # a Hangul filler: a word that case folding empties
    assert basic_words("ab\0cd ef") == ["ab"]  # TensorFlow's strings end at a NUL
    assert basic_words("e\u0301 \u0301") == ["e"]  # combining marks dropped, even alone
    for texts in (HAND_MADE, _random_texts(50, seed=1)):
        assert [basic_words(t) for t in texts] == _tf_words(texts)


@pytest.mark.large
def test_basic_words_equal_tensorflow_on_every_character():
    """Every character Python's Unicode database knows, inside, alone and doubled, and random mixes.

    Characters unassigned in Python 3.11's Unicode 14 are left out: TensorFlow's newer ICU and
    RE2 know some of them (the one known difference, see the module docstring).
    """
    known = [chr(c) for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Cs")]
    texts = [f"Ab{c}cD {c} x{c}{c}" for c in known]
    rng = random.Random(0)
    tricky = list(
        "aAßẞİıΣσςﬁ…\u3000\u00a0\u2028\u200b\u200d\u00ad\u3164\u0301\u0345\u1100\u1161\u11a8日Ａ①½'."
    )
    texts += [
        "".join(rng.choice(tricky if rng.random() < 0.6 else known) for _ in range(20)) for _ in range(5000)
    ]
    for start in range(0, len(texts), 20_000):
        chunk = texts[start : start + 20_000]
        mismatches = [t for t, words in zip(chunk, _tf_words(chunk), strict=True) if basic_words(t) != words]
        assert mismatches == []


def test_count_floor_keeps_every_word_tied_with_the_nth():
    histogram = {9: 1, 5: 3, 2: 10}  # counts: 9, 5, 5, 5, 2 x 10
    assert [count_floor(histogram, n) for n in (1, 2, 4, 5, 14)] == [9, 5, 5, 2, 2]
    assert count_floor(histogram, 15) == 0 and count_floor({}, 1) == 0


def test_learner_caps_are_tf_texts_defaults():
    defaults = {name: p.default for name, p in inspect.signature(learner.learn).parameters.items()}
    assert (defaults["max_input_tokens"], defaults["max_unique_chars"], defaults["max_token_length"]) == (
        MAX_INPUT_TOKENS,
        MAX_UNIQUE_CHARS,
        MAX_TOKEN_LENGTH,
    )


@pytest.mark.parametrize("vocab_size", [40, 120, 1000])
def test_in_memory_vocabulary_equals_keras_hubs(vocab_size):
    texts = HAND_MADE + _random_texts(300, seed=vocab_size)
    expected = AlignTokenizer.from_texts(texts, vocab_size, 16).vocabulary
    assert wordpiece_vocabulary(texts, vocab_size, RESERVED_TOKENS) == expected


def test_no_words_give_the_reserved_tokens():
    assert wordpiece_vocabulary(["", " \t"], 100, RESERVED_TOKENS) == list(RESERVED_TOKENS)
    assert wordpiece_vocabulary([], 3, RESERVED_TOKENS) == list(RESERVED_TOKENS[:3])


@pytest.mark.large
def test_beam_vocabulary_equals_keras_hubs():
    """Through the in-process runner, against AlignTokenizer.from_texts (keras-hub on TensorFlow)."""
    corpora = {
        "hand": HAND_MADE,
        "random": HAND_MADE + _random_texts(400, seed=7),
        "repeats": ["red red red circle", "Red Circle!", "a blue SQUARE", "日本 日本"] * 30,
        "empty": [],
        "no_words": ["", "   "],
    }
    sizes = {
        "hand": [30, 200],
        "random": [60, 150, 5000],
        "repeats": [12, 100],
        "empty": [50],
        "no_words": [50],
    }
    with _pipeline() as p:
        for name, texts in corpora.items():
            pcoll = p | f"Create_{name}" >> beam.Create(list(enumerate(texts)))
            for size in sizes[name]:
                if texts and any(basic_words(t) for t in texts):
                    expected = AlignTokenizer.from_texts(texts, size, 16).vocabulary
                else:  # keras-hub raises on no words; the filter writes the reserved tokens
                    expected = list(RESERVED_TOKENS)
                vocabulary = pcoll | f"Vocabulary_{name}_{size}" >> WordPieceVocabulary(size, RESERVED_TOKENS)
                assert_that(vocabulary, equal_to([expected]), label=f"Check_{name}_{size}")


@pytest.mark.large
def test_beam_vocabulary_where_the_learners_caps_bind():
    """A small `max_input_tokens` and alphabet, many ties, every count above `learn`'s lower
    search bound, a most frequent word too long to be read: the top-N, the alphabet and the
    search bounds all matter, and must be those of `learn` on every count."""
    rng = random.Random(3)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyzäöüß", k=rng.randint(1, 8))) for _ in range(300)]
    texts = [" ".join(rng.choices(words, k=8)) for _ in range(900)]
    texts += [" ".join(["Ünïcode" * 8] * 40)] * 30  # a 56-character word, counted 1200 times
    counts = Counter(w for t in texts for w in basic_words(t))
    assert min(counts.values()) > 10 and counts.most_common(1)[0][0] == "unicode" * 8
    caps = [(40, 12), (100, 1000), (300, 20)]  # (max_input_tokens, max_unique_chars)
    runs = [(texts, size, inputs, chars) for inputs, chars in caps for size in (30, 200)]
    # Positions, not the order of the elements, give the order of first occurrence, which
    # breaks ties at the max_input_tokens cut: the same texts read backwards learn another
    # vocabulary.
    backwards = texts[::-1]
    runs += [(backwards, 200, 100, 1000)]
    expected = [
        wordpiece_vocabulary(t, size, RESERVED_TOKENS, inputs, chars) for t, size, inputs, chars in runs
    ]
    assert expected[-1] != wordpiece_vocabulary(texts, 200, RESERVED_TOKENS, 100, 1000)
    with _pipeline() as p:
        for n, ((corpus, size, inputs, chars), vocabulary) in enumerate(zip(runs, expected, strict=True)):
            shuffled = list(enumerate(corpus))
            random.Random(n).shuffle(shuffled)
            result = (
                p
                | f"Create{n}" >> beam.Create(shuffled)
                | f"Vocabulary{n}" >> WordPieceVocabulary(size, RESERVED_TOKENS, inputs, chars)
            )
            assert_that(result, equal_to([vocabulary]), label=f"Check{n}")
