"""Champion/challenger promotion: when a newly trained model replaces the champion.

Both models are scored on the same evaluation sets in the same run (the evaluate stage scores
the champion too), so that a change of sets, prompts or code between runs cannot decide it.
"""

from __future__ import annotations

from collections.abc import Mapping


def promotion_score(metrics: Mapping[str, float], metric: str) -> float | None:
    """The score `metric` gives a model with these evaluation metrics.

    Args:
        metrics: `<set>/<metric>` values, as `alignpipe.evaluation.evaluate` returns them.
        metric: one set's metric (`"coco/image_to_text_r1"`), or a bare metric name
            (`"image_to_text_r1"`): its mean over every set that reports it.

    Returns:
        The score, or None when no metric matches.

    Example:
        >>> m = {"coco/image_to_text_r1": 0.5, "flickr/image_to_text_r1": 0.7, "imagenet/zero_shot_top1": 0.2}
        >>> promotion_score(m, "image_to_text_r1"), promotion_score(m, "imagenet/zero_shot_top1")
        (0.6, 0.2)
    """
    if "/" in metric:
        return float(metrics[metric]) if metric in metrics else None
    values = [float(v) for k, v in metrics.items() if k.rpartition("/")[2] == metric and "/" in k]
    return sum(values) / len(values) if values else None


def challenger_wins(
    challenger: float, champion: float | None, higher_is_better: bool = True, margin: float = 0.0
) -> bool:
    """Whether the challenger's score beats the champion's by more than `margin`.

    The first model (no champion yet) always wins; a tie keeps the champion, so the alias
    only moves on a strict improvement.

    Args:
        challenger: the new model's score on the promotion metric.
        champion: the champion's score on the same metric and sets, or None if there is none.
        higher_is_better: False for metrics such as a loss.
        margin: how much better (>= 0, in the metric's units) the challenger must be.
    """
    if champion is None:
        return True
    return challenger > champion + margin if higher_is_better else challenger < champion - margin


def chance_level(metrics: Mapping[str, float], metric: str) -> float | None:
    """The chance level of `metric` (its `*_chance` companion, as `promotion_score` reads
    `metric`), or None when the evaluation reports none."""
    return promotion_score(metrics, f"{metric}_chance")


def clears_chance(score: float, chance: float | None, min_ratio: float) -> bool:
    """Whether a score is far enough above chance for a model to be promoted at all.

    A model at chance (a collapsed one: every embedding the same) must never become the
    champion, whether or not there is one to beat. The score must exceed `min_ratio` times
    the chance level; a metric without a chance level (None) is not checked.

    Args:
        score: the model's score on the promotion metric (higher is better).
        chance: the metric's chance level on the same sets, or None.
        min_ratio: how many times chance the score must exceed (>= 1).

    Example:
        >>> clears_chance(0.05, 0.01, 2.0), clears_chance(0.015, 0.01, 2.0)
        (True, False)
    """
    return chance is None or score > min_ratio * chance
