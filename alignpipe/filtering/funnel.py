"""The filter funnel: how many pairs came in, how many each rule dropped, how many were kept.

`funnel.json` (written by `write_funnel_json`):

    {"input_pairs": 1200, "kept_pairs": 900,
     "dropped": {"image_undecodable": 10, "image_unsafe": 0, ...},   # every reason, REASONS order
     "warnings": ["filter rule text_rare_token dropped 700 of the 1000 pairs that reached it ..."]}

A warning is recorded (and logged by the filter) for each rule that drops more than
half of the pairs that reach it, naming the rule, the counts and the config key that
loosens it, and when fewer pairs are kept than one training batch: a threshold that
does not fit the data shows up here, not as a failed training run.

`funnel.png` (written by `plot_funnel`): one horizontal bar per step, from the
input down to the kept pairs; each rule's bar shows the pairs remaining after it
and, in red, the pairs it dropped.
"""

from __future__ import annotations

import dataclasses
import io
import json

from alignpipe import fs
from alignpipe.filtering.rules import REASONS, RULE_CONFIG_HINTS

FUNNEL_JSON = "funnel.json"
MOST = 0.5  # a rule that drops more than this share of the pairs reaching it gets a warning


@dataclasses.dataclass(frozen=True)
class FunnelReport:
    """Counts of one filter run; `kept_pairs + sum(dropped) == input_pairs` always holds.

    Attributes:
        input_pairs: pairs read from the raw shards.
        kept_pairs: pairs written to the filtered shards.
        dropped: reason -> pairs dropped under it, every reason of `REASONS`, in that order.
        warnings: what the counts suggest fixing (see `funnel_warnings`); empty when none.

    Raises:
        ValueError: on construction, if the reasons are not exactly `REASONS` or the
            counts do not add up (a bug in the filter, never a property of the data).
    """

    input_pairs: int
    kept_pairs: int
    dropped: dict[str, int]
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if tuple(self.dropped) != REASONS:
            raise ValueError(f"funnel reasons {list(self.dropped)} are not {list(REASONS)}")
        total = self.kept_pairs + sum(self.dropped.values())
        if total != self.input_pairs or min(self.dropped.values(), default=0) < 0 or self.kept_pairs < 0:
            raise ValueError(
                f"funnel does not add up: {self.kept_pairs} kept + {sum(self.dropped.values())} dropped "
                f"!= {self.input_pairs} input pairs ({self.dropped})"
            )

    @classmethod
    def from_outcomes(cls, input_pairs: int, outcomes: dict[str, int], batch_size: int = 0) -> FunnelReport:
        """Builds a report from outcome counts (`"kept"` or a reason -> pairs; absent = 0).

        Args:
            input_pairs: pairs read.
            outcomes: the counts.
            batch_size: the training batch (`train.batch_size`); 0: no kept-pairs warning.

        Raises:
            ValueError: an outcome is neither "kept" nor a reason, or counts do not add up.
        """
        unknown = sorted(set(outcomes) - set(REASONS) - {"kept"})
        if unknown:
            raise ValueError(f"unknown filter outcomes {unknown}")
        dropped = {reason: int(outcomes.get(reason, 0)) for reason in REASONS}
        report = cls(input_pairs, int(outcomes.get("kept", 0)), dropped)
        warnings = funnel_warnings(input_pairs, report.kept_pairs, dropped, batch_size)
        return dataclasses.replace(report, warnings=warnings)

    def to_dict(self) -> dict[str, object]:
        return {
            "input_pairs": self.input_pairs,
            "kept_pairs": self.kept_pairs,
            "dropped": dict(self.dropped),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> FunnelReport:
        dropped = raw["dropped"]
        return cls(
            int(raw["input_pairs"]),
            int(raw["kept_pairs"]),
            {r: int(dropped[r]) for r in REASONS},
            tuple(str(w) for w in raw.get("warnings", ())),
        )


def largest_drop(dropped: dict[str, int]) -> tuple[str, int]:
    """(reason, pairs) of the rule that dropped the most pairs (the earliest rule on a tie)."""
    reason = max(REASONS, key=lambda r: dropped[r])
    return reason, dropped[reason]


def funnel_warnings(
    input_pairs: int, kept_pairs: int, dropped: dict[str, int], batch_size: int = 0
) -> tuple[str, ...]:
    """Warnings about the counts: a rule dropping most of what reaches it; too few pairs kept.

    Args:
        input_pairs: pairs read.
        kept_pairs: pairs kept.
        dropped: reason -> pairs, in `REASONS` order (the order the rules apply in).
        batch_size: the training batch; when > 0, keeping fewer pairs than that is a warning.

    Returns:
        One sentence per warning, naming the rule, the counts and the config key to change.
    """
    warnings, remaining = [], input_pairs
    for reason in REASONS:
        gone = dropped[reason]
        if gone and gone > MOST * remaining:
            warnings.append(
                f"filter rule {reason} dropped {gone} of the {remaining} pairs that reached it "
                f"({100 * gone / remaining:.0f}%; {100 * gone / input_pairs:.0f}% of all {input_pairs}); "
                f"if that is more than this data's noise: {RULE_CONFIG_HINTS[reason]}"
            )
        remaining -= gone
    if batch_size and kept_pairs < batch_size:
        reason, gone = largest_drop(dropped)
        loosen = f", or loosen the rule that dropped most, {reason} ({gone} pairs): " if gone else ""
        warnings.append(
            f"the filter kept {kept_pairs} of {input_pairs} pairs, fewer than one training batch "
            f"(train.batch_size={batch_size}), so training will not start: lower train.batch_size, "
            f"add data{loosen}{RULE_CONFIG_HINTS[reason] if gone else ''}"
        )
    return tuple(warnings)


def write_funnel_json(report: FunnelReport, path: str) -> None:
    """Writes `report.to_dict()` as JSON, reasons in `REASONS` order."""
    fs.write_text(path, json.dumps(report.to_dict(), indent=2) + "\n")


def read_funnel_json(path: str) -> FunnelReport:
    return FunnelReport.from_dict(fs.read_json(path))


def plot_funnel(report: FunnelReport, path: str) -> None:
    """Draws the funnel as a PNG: input, then the pairs left after each rule, then kept.

    Args:
        report: the counts.
        path: where to write the PNG (local path or URI).
    """
    # A bare Figure renders with the Agg canvas: no pyplot state, no GUI backend.
    from matplotlib.figure import Figure

    labels, remaining, dropped = ["input pairs"], [report.input_pairs], [0]
    for reason in REASONS:
        labels.append(reason.replace("_", " "))
        remaining.append(remaining[-1] - report.dropped[reason])
        dropped.append(report.dropped[reason])
    labels.append("kept pairs")
    remaining.append(report.kept_pairs)
    dropped.append(0)

    fig = Figure(figsize=(9, 0.45 * len(labels) + 1.4), layout="constrained")
    ax = fig.add_subplot()
    rows = range(len(labels))
    ax.barh(rows, remaining, color="#4878a8", label="pairs remaining")
    ax.barh(rows, dropped, left=remaining, color="#d1495b", label="dropped by this rule")
    scale = max(report.input_pairs, 1)
    for row, (left, gone) in enumerate(zip(remaining, dropped, strict=True)):
        note = f"{left:,} ({100 * left / scale:.1f}%)"
        if gone:
            note += f"   -{gone:,}"
        ax.text(left + gone + 0.01 * scale, row, note, va="center", fontsize=8)
    ax.set_yticks(list(rows), labels)
    ax.invert_yaxis()
    ax.set_xlim(0, scale * 1.3)
    ax.set_xlabel("image-text pairs")
    ax.set_title(f"Filter funnel: {report.kept_pairs:,} of {report.input_pairs:,} pairs kept")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    fs.write_bytes(path, buffer.getvalue())


def funnel_markdown(report: FunnelReport) -> str:
    """The funnel as a Markdown table (the kfp UI renders Markdown artifacts)."""
    rows = ["| step | dropped | remaining |", "|---|---:|---:|", f"| input pairs | | {report.input_pairs} |"]
    remaining = report.input_pairs
    for reason, count in report.dropped.items():
        remaining -= count
        rows.append(f"| {reason} | {count} | {remaining} |")
    rows.append(f"| **kept pairs** | | **{report.kept_pairs}** |")
    for warning in report.warnings:
        rows += ["", f"**Warning:** {warning}"]
    return "\n".join(rows) + "\n"
