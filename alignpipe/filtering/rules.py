"""ALIGN's filtering rules (Jia et al., 2021, section 3) as pure functions.

Each rule answers one question about a pair and takes its threshold as an
argument (the values live in `FilterConfig`); a rule returning True means "drop".
`drop_reason` applies them in the fixed order of `REASONS` and names the first
one that fails, so every dropped pair is counted under exactly one reason.

The order, and why:
1. `image_undecodable`: every later image rule reads the decoded pixels or size.
2. `image_unsafe`: near a blocklisted (pornographic) image; first among the
   decodable images so that the count is a complete safety audit.
3. `image_nsfw`: an image classifier's NSFW score (`PairFacts.nsfw_score`) is
   >= `nsfw_image_threshold`; off unless `nsfw_image_scorer` names a scorer
   (`alignpipe.filtering.safety`). Right after `image_unsafe`: a blocklist hit is
   a certain match, a score a probable one, so a pair both rules would drop is
   counted under the certain one, and the two counts together still audit every
   decodable image before any other rule removes some of them.
4. `image_eval_duplicate`: near an evaluation image; early for the same reason,
   it is the test-set contamination count.
5. `image_too_small`: shorter side <= `min_image_short_side` (ALIGN keeps > 200 px).
6. `image_aspect_ratio_too_large`: long / short side >= `max_aspect_ratio` (keeps < 3).
7. `image_too_many_alts`: the image has more than `max_alts_per_image` distinct
   alt-texts in the raw corpus (ALIGN: 1000).
8. `text_unsafe`: the alt-text contains a word or phrase of the word list
   `unsafe_alt_words` (consecutive unigrams; off when no list is given). First
   among the text rules, as `image_unsafe` is among the image rules, so that its
   count audits every alt-text whose image passed; it stays after the image rules
   because image rules come before text rules.
9. `text_too_short`: fewer than `min_alt_words` unigrams (ALIGN: 3).
10. `text_too_long`: more than `max_alt_words` unigrams (ALIGN: 20).
11. `text_shared_by_too_many_images`: the alt-text belongs to more than
    `max_images_per_alt` distinct images in the raw corpus (ALIGN: 10), e.g.
    boilerplate such as "1920x1080" or "alt img".
12. `text_rare_token`: a unigram or bigram of the alt-text is outside the
    corpus vocabulary: the `rare_token_vocab_size` most frequent unigrams + bigrams
    of the raw corpus (ALIGN: 100M), less the words (unigrams) seen fewer than
    `rare_token_min_word_share` x (raw alt-texts) times (`alignpipe.filtering.vocabulary`).
Image rules come before text rules; within each, the safety rules come first, then
the per-pair rules, then the corpus-frequency rules.

Tokenization (`alt_unigrams`): the text is lowercased and split into maximal runs
of Unicode letters and digits, keeping an apostrophe between two such runs inside
the word ("don't" is one unigram); everything else (spaces, punctuation,
underscores, symbols) separates words. Bigrams are adjacent unigrams joined by one
space. `normalise_alt_text` (the key under which alt-texts are counted) is the
unigrams joined by single spaces, so "Click HERE!" and "click here" are one text.
The unsafe word list is tokenized the same way, so a listed phrase matches the
alt-texts whose unigrams contain its unigrams consecutively, whatever their case
and punctuation.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection, Iterable

from alignpipe.config import FilterConfig
from alignpipe.imaging.phash import PHashIndex, has_near_duplicate

REASONS: tuple[str, ...] = (
    "image_undecodable",
    "image_unsafe",
    "image_nsfw",
    "image_eval_duplicate",
    "image_too_small",
    "image_aspect_ratio_too_large",
    "image_too_many_alts",
    "text_unsafe",
    "text_too_short",
    "text_too_long",
    "text_shared_by_too_many_images",
    "text_rare_token",
)

# What to change when a rule drops more than expected: the config keys that loosen it.
RULE_CONFIG_HINTS: dict[str, str] = {
    "image_undecodable": "no threshold: the scraped bytes are not images (see the scrape manifest)",
    "image_unsafe": "check filter.unsafe_image_blocklist or lower filter.unsafe_image_max_hamming",
    "image_nsfw": "raise filter.nsfw_image_threshold or check filter.nsfw_image_scorer",
    "image_eval_duplicate": "check eval.retrieval_sets / eval.classification_sets (contamination.jsonl "
    "names the set and image each pair is near) or lower filter.eval_duplicate_max_hamming",
    "image_too_small": "lower filter.min_image_short_side",
    "image_aspect_ratio_too_large": "raise filter.max_aspect_ratio",
    "image_too_many_alts": "raise filter.max_alts_per_image",
    "text_unsafe": "check the word list filter.unsafe_alt_words",
    "text_too_short": "lower filter.min_alt_words",
    "text_too_long": "raise filter.max_alt_words",
    "text_shared_by_too_many_images": "raise filter.max_images_per_alt",
    "text_rare_token": "raise filter.rare_token_vocab_size or lower filter.rare_token_min_word_share",
}

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)*")


@dataclasses.dataclass(frozen=True)
class PairFacts:
    """What the rules need to know about one pair, measured over the raw corpus.

    Attributes:
        image_decodable: whether the image bytes decode to pixels.
        width: decoded width in pixels (0 when undecodable).
        height: decoded height in pixels (0 when undecodable).
        image_phash: 64-bit pHash of the decoded image (None when undecodable).
        text: the alt-text as scraped.
        alts_per_image: distinct normalised alt-texts of this image (by SHA-256).
        images_per_alt: distinct images (by SHA-256) with this normalised alt-text.
        vocabulary_tokens: the alt-text's unigrams and bigrams that are in the
            corpus vocabulary (its other tokens are rare).
        nsfw_score: the image scorer's NSFW probability in [0, 1]
            (`alignpipe.filtering.safety`); 0.0 when no scorer is configured.
    """

    image_decodable: bool
    width: int
    height: int
    image_phash: int | None
    text: str
    alts_per_image: int
    images_per_alt: int
    vocabulary_tokens: frozenset[str]
    nsfw_score: float = 0.0


@dataclasses.dataclass(frozen=True)
class UnsafeWordList:
    """Words and phrases whose presence in an alt-text drops the pair (`text_unsafe`).

    Attributes:
        phrases: each entry as its tuple of unigrams (`alt_unigrams` of the listed line).
        lengths: the distinct phrase lengths, in unigrams (derived from `phrases`).

    Example:
        >>> words = UnsafeWordList(frozenset({("foo",), ("bar", "baz")}))
        >>> words.found_in(alt_unigrams("A Bar, baz!")), words.found_in(alt_unigrams("bar qux baz"))
        (True, False)
    """

    phrases: frozenset[tuple[str, ...]] = frozenset()
    lengths: tuple[int, ...] = dataclasses.field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "lengths", tuple(sorted({len(p) for p in self.phrases})))

    def found_in(self, words: list[str]) -> bool:
        """Whether some phrase occurs as consecutive `words` (unigrams of one alt-text)."""
        return any(
            tuple(words[i : i + n]) in self.phrases for n in self.lengths for i in range(len(words) - n + 1)
        )


NO_UNSAFE_WORDS = UnsafeWordList()  # the empty list: the text_unsafe rule is off


def alt_unigrams(text: str) -> list[str]:
    """Lowercased words of an alt-text (see the module docstring for the rule)."""
    return _WORD.findall(text.lower())


def alt_unigrams_and_bigrams(text: str) -> list[str]:
    """The alt-text's unigrams, then its bigrams ("w1 w2"), in text order, repeats kept."""
    words = alt_unigrams(text)
    return words + [f"{a} {b}" for a, b in zip(words, words[1:], strict=False)]


def normalise_alt_text(text: str) -> str:
    """The key under which alt-texts are counted: unigrams joined by single spaces."""
    return " ".join(alt_unigrams(text))


def alt_word_count(text: str) -> int:
    """Number of unigrams in an alt-text."""
    return len(alt_unigrams(text))


def image_too_small(width: int, height: int, min_short_side: int) -> bool:
    """ALIGN keeps images whose shorter side is > `min_short_side` (200 px)."""
    return min(width, height) <= min_short_side


def image_aspect_ratio_too_large(width: int, height: int, max_ratio: float) -> bool:
    """ALIGN keeps images whose long side / short side is < `max_ratio` (3)."""
    short, long = min(width, height), max(width, height)
    return short <= 0 or long / short >= max_ratio


def image_has_too_many_alts(alts_per_image: int, max_alts: int) -> bool:
    """ALIGN drops images associated with more than `max_alts` (1000) alt-texts."""
    return alts_per_image > max_alts


def alt_too_short(text: str, min_words: int) -> bool:
    """ALIGN drops alt-texts with fewer than `min_words` (3) unigrams."""
    return alt_word_count(text) < min_words


def alt_too_long(text: str, max_words: int) -> bool:
    """ALIGN drops alt-texts with more than `max_words` (20) unigrams."""
    return alt_word_count(text) > max_words


def alt_shared_by_too_many_images(images_per_alt: int, max_images: int) -> bool:
    """ALIGN drops alt-texts shared by more than `max_images` (10) images."""
    return images_per_alt > max_images


def alt_has_rare_token(text: str, vocabulary: Collection[str]) -> bool:
    """Whether a unigram or bigram of `text` is not in `vocabulary`."""
    return any(token not in vocabulary for token in alt_unigrams_and_bigrams(text))


def alt_has_unsafe_words(text: str, word_list: UnsafeWordList) -> bool:
    """Whether a listed word or phrase occurs in the alt-text (case-insensitive, by unigrams)."""
    return word_list.found_in(alt_unigrams(text))


def image_is_nsfw(nsfw_score: float, threshold: float) -> bool:
    """Whether the image scorer's NSFW probability reaches `threshold`."""
    return nsfw_score >= threshold


def image_is_eval_duplicate(
    image_hash: int, eval_hashes: PHashIndex | Iterable[int], max_hamming: int
) -> bool:
    """Whether the image's pHash is within `max_hamming` bits of an evaluation image's."""
    return has_near_duplicate(image_hash, eval_hashes, max_hamming)


def image_is_unsafe(image_hash: int, blocklist: PHashIndex | Iterable[int], max_hamming: int) -> bool:
    """Whether the image's pHash is within `max_hamming` bits of a blocklisted image's."""
    return has_near_duplicate(image_hash, blocklist, max_hamming)


def drop_reason(
    facts: PairFacts,
    cfg: FilterConfig,
    eval_hashes: PHashIndex | Iterable[int] = (),
    unsafe_hashes: PHashIndex | Iterable[int] = (),
    unsafe_words: UnsafeWordList = NO_UNSAFE_WORDS,
) -> str | None:
    """The first rule of `REASONS` that the pair fails, or None to keep it.

    Args:
        facts: the pair's measurements.
        cfg: the thresholds; `image_nsfw` is off while `cfg.nsfw_image_scorer` is empty.
        eval_hashes: pHashes of every evaluation image (empty: rule off).
        unsafe_hashes: pHashes of blocklisted images (empty: rule off).
        unsafe_words: the `text_unsafe` word list (`safety.load_unsafe_words`; empty: rule off).
    """
    if not facts.image_decodable or facts.image_phash is None:
        return "image_undecodable"
    if image_is_unsafe(facts.image_phash, unsafe_hashes, cfg.unsafe_image_max_hamming):
        return "image_unsafe"
    if cfg.nsfw_image_scorer and image_is_nsfw(facts.nsfw_score, cfg.nsfw_image_threshold):
        return "image_nsfw"
    if image_is_eval_duplicate(facts.image_phash, eval_hashes, cfg.eval_duplicate_max_hamming):
        return "image_eval_duplicate"
    if image_too_small(facts.width, facts.height, cfg.min_image_short_side):
        return "image_too_small"
    if image_aspect_ratio_too_large(facts.width, facts.height, cfg.max_aspect_ratio):
        return "image_aspect_ratio_too_large"
    if image_has_too_many_alts(facts.alts_per_image, cfg.max_alts_per_image):
        return "image_too_many_alts"
    if alt_has_unsafe_words(facts.text, unsafe_words):
        return "text_unsafe"
    if alt_too_short(facts.text, cfg.min_alt_words):
        return "text_too_short"
    if alt_too_long(facts.text, cfg.max_alt_words):
        return "text_too_long"
    if alt_shared_by_too_many_images(facts.images_per_alt, cfg.max_images_per_alt):
        return "text_shared_by_too_many_images"
    if alt_has_rare_token(facts.text, facts.vocabulary_tokens):
        return "text_rare_token"
    return None
