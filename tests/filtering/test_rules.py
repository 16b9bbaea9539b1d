import dataclasses
import re

import pytest

from alignpipe.config import FilterConfig
from alignpipe.filtering import rules
from alignpipe.filtering.rules import (
    REASONS,
    PairFacts,
    UnsafeWordList,
    alt_has_rare_token,
    alt_shared_by_too_many_images,
    alt_too_long,
    alt_too_short,
    alt_unigrams,
    alt_unigrams_and_bigrams,
    alt_word_count,
    drop_reason,
    image_aspect_ratio_too_large,
    image_has_too_many_alts,
    image_is_eval_duplicate,
    image_is_unsafe,
    image_too_small,
    normalise_alt_text,
)
from alignpipe.imaging.phash import PHashIndex


def test_tokenization():
    assert alt_unigrams("A Red-Circle, on the LEFT!") == ["a", "red", "circle", "on", "the", "left"]
    assert alt_unigrams("don't stop_here 1920x1080 café") == ["don't", "stop", "here", "1920x1080", "café"]
    assert alt_unigrams("  ...  ") == []
    assert alt_unigrams_and_bigrams("Big red dog") == ["big", "red", "dog", "big red", "red dog"]
    assert alt_unigrams_and_bigrams("dog") == ["dog"]
    assert normalise_alt_text("Click   HERE!") == normalise_alt_text("click here") == "click here"


def test_normalised_text_has_the_same_tokens():
    for text in ["Don't  PANIC!!", "l'été — été", "a_b c", "Ünïcode ẞ text"]:
        assert alt_unigrams_and_bigrams(normalise_alt_text(text)) == alt_unigrams_and_bigrams(text)


def test_image_too_small_keeps_shorter_side_above_threshold():
    assert image_too_small(200, 500, 200)
    assert image_too_small(500, 200, 200)
    assert not image_too_small(201, 500, 200)
    assert image_too_small(0, 0, 200)


def test_aspect_ratio_keeps_ratio_below_threshold():
    assert image_aspect_ratio_too_large(600, 200, 3.0)
    assert image_aspect_ratio_too_large(200, 600, 3.0)
    assert not image_aspect_ratio_too_large(599, 200, 3.0)
    assert not image_aspect_ratio_too_large(300, 300, 3.0)
    assert image_aspect_ratio_too_large(300, 0, 3.0)


def test_word_count_bounds():
    assert alt_word_count("two words") == 2
    assert alt_too_short("two words", 3)
    assert not alt_too_short("three words here", 3)
    twenty = " ".join(f"w{i}" for i in range(20))
    assert not alt_too_long(twenty, 20)
    assert alt_too_long(twenty + " more", 20)


def test_frequency_rules_drop_above_the_maximum():
    assert not image_has_too_many_alts(1000, 1000)
    assert image_has_too_many_alts(1001, 1000)
    assert not alt_shared_by_too_many_images(10, 10)
    assert alt_shared_by_too_many_images(11, 10)


def test_rare_token_checks_unigrams_and_bigrams():
    vocabulary = {"red", "dog", "big", "red dog", "big red"}
    assert not alt_has_rare_token("Big red dog", vocabulary)
    assert alt_has_rare_token("red big dog", vocabulary)  # "red big" and "big dog" are rare bigrams
    assert alt_has_rare_token("red cat", vocabulary)
    assert not alt_has_rare_token("", vocabulary)


def test_hash_rules_use_hamming_distance():
    near, far = 0b0111, 2**64 - 1
    for hashes in ([0], PHashIndex([0], radius=3)):
        assert image_is_eval_duplicate(near, hashes, 3)
        assert not image_is_eval_duplicate(near, hashes, 2)
        assert not image_is_eval_duplicate(far, hashes, 3)
        assert image_is_unsafe(near, hashes, 3)
        assert not image_is_unsafe(far, hashes, 3)
    assert not image_is_unsafe(near, [], 64)


CFG = FilterConfig(
    min_image_short_side=40,
    max_aspect_ratio=3.0,
    max_alts_per_image=3,
    max_images_per_alt=2,
    min_alt_words=3,
    max_alt_words=6,
    eval_duplicate_max_hamming=2,
    unsafe_image_max_hamming=2,
    nsfw_image_scorer="toy_scorer:score",  # on; rules only read PairFacts.nsfw_score
    nsfw_image_threshold=0.5,
)
GOOD = PairFacts(
    image_decodable=True,
    width=64,
    height=64,
    image_phash=2**64 - 1,
    text="a red dog",
    alts_per_image=1,
    images_per_alt=1,
    vocabulary_tokens=frozenset(alt_unigrams_and_bigrams("a red dog")),
)
UNSAFE, EVAL = [0b0011], [0b0110]  # 2 bits apart; GOOD's hash is >= 60 bits from both
WORDS = UnsafeWordList(frozenset({("zyzzyva",)}))


def _failing(reason: str) -> dict[str, object]:
    """Changes to GOOD that make rule `reason` fail."""
    return {
        "image_undecodable": {"image_decodable": False, "image_phash": None, "width": 0, "height": 0},
        "image_unsafe": {"image_phash": 0b0011},  # also within 2 bits of EVAL
        "image_nsfw": {"nsfw_score": 0.9},
        "image_eval_duplicate": {"image_phash": 0b1110},  # 1 bit from EVAL, 3 from UNSAFE
        "image_too_small": {"width": 40},
        "image_aspect_ratio_too_large": {"width": 123, "height": 41},
        "image_too_many_alts": {"alts_per_image": 4},
        "text_unsafe": {
            "text": "a zyzzyva dog",
            "vocabulary_tokens": frozenset(alt_unigrams_and_bigrams("a zyzzyva dog")),
        },
        "text_too_short": {"text": "red dog", "vocabulary_tokens": frozenset()},
        "text_too_long": {"text": "a b c d e f g", "vocabulary_tokens": frozenset()},
        "text_shared_by_too_many_images": {"images_per_alt": 3},
        "text_rare_token": {"vocabulary_tokens": frozenset({"a", "red", "dog"})},
    }[reason]


def test_good_pair_is_kept():
    assert drop_reason(GOOD, CFG, EVAL, UNSAFE, WORDS) is None
    assert drop_reason(GOOD, CFG) is None


@pytest.mark.parametrize("reason", REASONS)
def test_each_rule_alone_names_its_reason(reason):
    assert drop_reason(dataclasses.replace(GOOD, **_failing(reason)), CFG, EVAL, UNSAFE, WORDS) == reason


@pytest.mark.parametrize("index", range(len(REASONS)))
def test_first_failing_rule_in_reasons_order_wins(index):
    """A pair failing rule i and the later rules (all that can hold together) is dropped under rule i."""
    changes: dict[str, object] = {}
    for reason in reversed(REASONS[index:]):
        if reason == "image_too_small" and "width" in changes:
            changes["height"] = 40  # keep the aspect-ratio failure (123x41) and add this one
            continue
        changes.update(_failing(reason))
    assert drop_reason(dataclasses.replace(GOOD, **changes), CFG, EVAL, UNSAFE, WORDS) == REASONS[index]


def test_hash_rules_are_off_when_empty():
    facts = dataclasses.replace(GOOD, image_phash=0b0011)
    assert drop_reason(facts, CFG, eval_hashes=(), unsafe_hashes=()) is None


def test_reasons_are_unique_and_documented():
    assert len(set(REASONS)) == len(REASONS)
    for reason in REASONS:
        assert f"`{reason}`" in rules.__doc__


def test_every_rule_names_the_config_key_that_loosens_it():
    from alignpipe.config import load_config

    assert set(rules.RULE_CONFIG_HINTS) == set(REASONS)
    keys = set(load_config("local", "paper").flat())
    for reason, hint in rules.RULE_CONFIG_HINTS.items():
        named = re.findall(r"\b(?:filter|eval)\.[a-z_]+", hint)
        assert all(key in keys for key in named), (reason, named)
        assert named or reason == "image_undecodable", reason
