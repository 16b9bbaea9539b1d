import dataclasses
import io
import sys
import textwrap

import pytest
from PIL import Image

from alignpipe.config import FilterConfig, load_config
from alignpipe.errors import ConfigError, InputError
from alignpipe.filtering.rules import (
    REASONS,
    RULE_CONFIG_HINTS,
    PairFacts,
    UnsafeWordList,
    alt_has_unsafe_words,
    alt_unigrams_and_bigrams,
    drop_reason,
)
from alignpipe.filtering.safety import load_image_scorer, load_unsafe_words, nsfw_score

# Neutral placeholder words stand in for a real list.
WORD_LIST = """\
# placeholder list for tests
Zebra
blue  whale   # a phrase: two consecutive unigrams

  # an indented comment
don't panic
"""

CFG = FilterConfig(min_image_short_side=32, max_alts_per_image=3, max_images_per_alt=2)
SCORING = dataclasses.replace(CFG, nsfw_image_scorer="toy_scorer:score", nsfw_image_threshold=0.5)
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


def _with_text(text: str, **changes: object) -> PairFacts:
    """GOOD with another alt-text, all of whose tokens are in the vocabulary."""
    return dataclasses.replace(
        GOOD, text=text, vocabulary_tokens=frozenset(alt_unigrams_and_bigrams(text)), **changes
    )


@pytest.fixture
def word_list(tmp_path):
    path = tmp_path / "unsafe_words.txt"
    path.write_text(WORD_LIST, encoding="utf-8")
    return load_unsafe_words(str(path))


@pytest.fixture
def write_module(tmp_path, monkeypatch):
    """Writes a Python module (dotted name: inside packages) into tmp_path, importable for this test only."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> None:
        *packages, module = name.split(".")
        folder = tmp_path
        for depth, package in enumerate(packages):
            folder = folder / package
            folder.mkdir(exist_ok=True)
            (folder / "__init__.py").touch()
            written.append(".".join(packages[: depth + 1]))
        (folder / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, format="PNG")
    return buffer.getvalue()


# The word list: file format and matching.


def test_word_list_entries_are_unigram_tuples(word_list):
    assert word_list.phrases == {("zebra",), ("blue", "whale"), ("don't", "panic")}
    assert word_list.lengths == (1, 2)


@pytest.mark.parametrize(
    ("text", "unsafe"),
    [
        ("A ZEBRA at the zoo", True),  # case-insensitive
        ("zebra!", True),
        ("the Blue, WHALE swims", True),  # punctuation between the words of a phrase
        ("blue-whale poster", True),
        ("Don\u2019t panic", False),  # a typographic apostrophe is another unigram ("don’t")
        ("don't PANIC now", True),
        ("zebras and blue whales", False),  # whole unigrams only
        ("a whale, blue", False),  # a phrase's words must be consecutive, in order
        ("blue sky, whale song", False),
        ("", False),
    ],
)
def test_word_list_matches_whole_unigrams(word_list, text, unsafe):
    assert alt_has_unsafe_words(text, word_list) is unsafe


def test_word_list_is_read_as_utf8(tmp_path):
    path = tmp_path / "words.txt"
    path.write_bytes("\ufeffCaf\u00e9 cr\u00e8me\n\u0416\u0418\u0420\u0410\u0424\n".encode())
    words = load_unsafe_words(str(path))
    assert words.phrases == {("caf\u00e9", "cr\u00e8me"), ("\u0436\u0438\u0440\u0430\u0444",)}
    assert alt_has_unsafe_words("CAF\u00c9 CR\u00c8ME br\u00fbl\u00e9e", words)


def test_missing_word_list_names_the_file(tmp_path):
    path = str(tmp_path / "nowhere.txt")
    with pytest.raises(InputError, match="nowhere.txt.*does not exist"):
        load_unsafe_words(path)


def test_unreadable_word_list_names_the_file(tmp_path):
    folder = tmp_path / "a_folder.txt"
    folder.mkdir()
    with pytest.raises(InputError, match="a_folder.txt"):
        load_unsafe_words(str(folder))


def test_word_list_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(InputError, match="latin1.txt.*not UTF-8"):
        load_unsafe_words(str(path))


def test_word_list_line_without_a_word_is_an_error(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("zebra\n*** # stars\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"words.txt.*line 2: '\*\*\*' has no word"):
        load_unsafe_words(str(path))


def test_word_list_without_entries_is_an_error(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="words.txt.*has no entries"):
        load_unsafe_words(str(path))


# The rules: order, defaults, thresholds.


def test_new_reasons_sit_next_to_their_kind_and_keep_the_old_order():
    assert REASONS.index("image_nsfw") == REASONS.index("image_unsafe") + 1
    assert REASONS.index("image_nsfw") < REASONS.index("image_eval_duplicate")
    assert REASONS.index("text_unsafe") == REASONS.index("image_too_many_alts") + 1
    assert REASONS.index("text_unsafe") < REASONS.index("text_too_short")
    assert [r for r in REASONS if r not in ("image_nsfw", "text_unsafe")] == [
        "image_undecodable",
        "image_unsafe",
        "image_eval_duplicate",
        "image_too_small",
        "image_aspect_ratio_too_large",
        "image_too_many_alts",
        "text_too_short",
        "text_too_long",
        "text_shared_by_too_many_images",
        "text_rare_token",
    ]
    assert "filter.nsfw_image_threshold" in RULE_CONFIG_HINTS["image_nsfw"]
    assert "filter.unsafe_alt_words" in RULE_CONFIG_HINTS["text_unsafe"]


def test_both_rules_are_off_by_default(word_list):
    unsafe = _with_text("a zebra dog", nsfw_score=1.0)
    assert PairFacts(*dataclasses.astuple(GOOD)[:8]).nsfw_score == 0.0  # old constructors still work
    assert drop_reason(unsafe, CFG) is None
    assert drop_reason(unsafe, CFG, unsafe_words=word_list) == "text_unsafe"
    assert drop_reason(unsafe, SCORING) == "image_nsfw"


@pytest.mark.parametrize(
    ("score", "reason"), [(0.0, None), (0.49, None), (0.5, "image_nsfw"), (1.0, "image_nsfw")]
)
def test_image_nsfw_drops_at_or_above_the_threshold(score, reason):
    assert drop_reason(dataclasses.replace(GOOD, nsfw_score=score), SCORING) == reason


def test_image_unsafe_wins_over_image_nsfw_and_nsfw_over_eval_duplicates():
    facts = dataclasses.replace(GOOD, image_phash=0b0011, nsfw_score=0.9)
    assert drop_reason(facts, SCORING, eval_hashes=[0b0011], unsafe_hashes=[0b0011]) == "image_unsafe"
    assert drop_reason(facts, SCORING, eval_hashes=[0b0011]) == "image_nsfw"
    assert drop_reason(facts, CFG, eval_hashes=[0b0011]) == "image_eval_duplicate"


def test_text_unsafe_comes_after_the_image_rules_and_before_the_text_rules(word_list):
    # Too many alts, unsafe, too short and rare at once: the image rule names it.
    facts = dataclasses.replace(GOOD, text="zebra", alts_per_image=4, vocabulary_tokens=frozenset())
    assert drop_reason(facts, CFG, unsafe_words=word_list) == "image_too_many_alts"
    facts = dataclasses.replace(facts, alts_per_image=1, images_per_alt=3)
    assert drop_reason(facts, CFG, unsafe_words=word_list) == "text_unsafe"
    assert drop_reason(facts, CFG) == "text_too_short"


def test_empty_word_list_drops_nothing():
    assert not UnsafeWordList().found_in(["zebra"])
    assert drop_reason(_with_text("a zebra dog"), CFG, unsafe_words=UnsafeWordList()) is None


# The image scorer: loading it and checking its scores.


def test_scorer_from_a_module_scores_real_images(write_module):
    write_module(
        "toy_scorer",
        """
        import io
        from PIL import Image

        def score(image_bytes):
            # "Unsafe" = mostly red: a stand-in for a classifier's probability.
            red, green, blue = Image.open(io.BytesIO(image_bytes)).convert("RGB").getpixel((0, 0))
            return red / 255 * (1 - green / 255)
        """,
    )
    scorer = load_image_scorer("toy_scorer:score")
    red, grey = _png((255, 0, 0)), _png((128, 128, 128))
    assert nsfw_score(scorer, red, "toy_scorer:score") == 1.0
    assert nsfw_score(scorer, grey) == pytest.approx(0.25, abs=0.01)
    for image, reason in ((red, "image_nsfw"), (grey, None)):
        facts = dataclasses.replace(GOOD, nsfw_score=nsfw_score(scorer, image))
        assert drop_reason(facts, SCORING) == reason


def test_scorer_may_be_a_dotted_attribute_in_a_package(write_module):
    write_module(
        "toy_safety.models",
        """
        class Classifier:
            def __call__(self, image_bytes):
                return 0.75

        CLASSIFIER = Classifier()
        """,
    )
    scorer = load_image_scorer("toy_safety.models:CLASSIFIER")
    assert nsfw_score(scorer, b"any bytes") == 0.75
    assert load_image_scorer("toy_safety.models:Classifier.__call__")(scorer, b"") == 0.75


@pytest.mark.parametrize("spec", ["no_colon", ":score", "toy_scorer:", "a:b:c"])
def test_malformed_scorer_spec(spec):
    with pytest.raises(InputError, match="not of the form"):
        load_image_scorer(spec)


def test_scorer_module_that_does_not_import(write_module):
    with pytest.raises(InputError, match="'no_such_scorer_module' does not import.*ModuleNotFoundError"):
        load_image_scorer("no_such_scorer_module:score")
    write_module("broken_scorer", "raise RuntimeError('weights not found')\n")
    with pytest.raises(InputError, match="broken_scorer.*does not import.*weights not found"):
        load_image_scorer("broken_scorer:score")


def test_scorer_attribute_missing_or_not_callable(write_module):
    write_module("toy_scorer", "THRESHOLD = 0.5\n")
    with pytest.raises(InputError, match="has no attribute 'score'"):
        load_image_scorer("toy_scorer:score")
    with pytest.raises(InputError, match="is a float, not a callable"):
        load_image_scorer("toy_scorer:THRESHOLD")


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan"), "high", None])
def test_scores_outside_zero_one_are_an_error(bad):
    with pytest.raises(InputError, match=r"toy_scorer:score.*must return a float in \[0, 1\]"):
        nsfw_score(lambda image_bytes: bad, b"", "toy_scorer:score")


# Configuration.


def test_presets_keep_both_rules_off():
    for experiment in ("paper", "tiny"):
        cfg = load_config("local", experiment).filter
        assert (cfg.unsafe_alt_words, cfg.nsfw_image_scorer, cfg.nsfw_image_threshold) == ("", "", 0.5)
        assert cfg.max_stats_drift == 0.2


def test_config_keys_take_overrides():
    cfg = load_config(
        "local",
        "tiny",
        [
            "filter.unsafe_alt_words=/lists/words.txt",
            "filter.nsfw_image_scorer=my_safety.clip_nsfw:Scorer.score",
            "filter.nsfw_image_threshold=0.8",
            "filter.max_stats_drift=0.05",
        ],
    ).filter
    assert cfg.unsafe_alt_words == "/lists/words.txt"
    assert cfg.nsfw_image_scorer == "my_safety.clip_nsfw:Scorer.score"
    assert (cfg.nsfw_image_threshold, cfg.max_stats_drift) == (0.8, 0.05)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("filter.nsfw_image_scorer=my_safety/clip.py", "filter.nsfw_image_scorer='my_safety/clip.py'"),
        ("filter.nsfw_image_scorer=module_only", "package.module:callable"),
        ("filter.nsfw_image_threshold=1.5", "filter.nsfw_image_threshold=1.5.*<= 1"),
        ("filter.nsfw_image_threshold=0", "filter.nsfw_image_threshold=0.0 must be > 0"),
        ("filter.max_stats_drift=0", "filter.max_stats_drift=0.0 must be > 0"),
        ("filter.max_stats_drift=2", "filter.max_stats_drift=2.0.*<= 1"),
    ],
)
def test_bad_safety_and_drift_values_fail_at_load_time(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("local", "tiny", [override])
