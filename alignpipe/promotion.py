"""Champion/challenger promotion: when a newly trained model replaces the champion."""

from __future__ import annotations


def challenger_wins(challenger: float, champion: float | None, higher_is_better: bool = True) -> bool:
    """Whether the challenger's score beats the current champion's.

    The first model (no champion yet) always wins; a tie keeps the champion, so
    the alias only moves on a strict improvement.

    Args:
        challenger: the new model's score on the promotion metric.
        champion: the champion's score on the same metric, or None if there is none.
        higher_is_better: False for metrics such as a loss.
    """
    if champion is None:
        return True
    return challenger > champion if higher_is_better else challenger < champion
