#!/usr/bin/env python3
"""The filter on raw pair shards (a scrape's output), and two such outputs compared.

    PYTHONPATH=TREE python bench/filter_shards.py run RAW OUT      # one filter run, as JSON
    python bench/filter_shards.py compare OUT_A OUT_B              # same funnel and pairs?

`run` filters RAW into OUT with `run_filter` and the `local` environment's `paper` experiment,
using the `alignpipe` that is first on `PYTHONPATH` (a worktree of another commit, to compare
two versions of the filter on the same shards), and prints which tree ran, the seconds the
filter took, the process's peak RSS and the funnel. `compare` checks that two outputs have the
same funnel, the same dropped pairs (a multiset of sha256, text, page URL, reason) and the same
kept pairs (sha256, text, page URL and a hash of the image bytes: a filter may write the
records anew), and exits 1 when they differ. docs/benchmarks.md reports the mini-web's runs.
"""

from __future__ import annotations

import collections
import glob
import hashlib
import json
import os
import resource
import sys
import time


def run(raw: str, out: str) -> None:
    import alignpipe
    from alignpipe.config import load_config
    from alignpipe.filtering.pipeline import run_filter

    cfg = load_config("local", "paper", [f"runner.work_dir={out}-work"])
    start = time.monotonic()
    report = run_filter(cfg, raw, out)
    print(
        json.dumps(
            {
                "tree": os.path.dirname(os.path.dirname(alignpipe.__file__)),
                "seconds": round(time.monotonic() - start, 1),
                "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "funnel": report.to_dict(),
            }
        )
    )


def _dropped(out: str) -> collections.Counter:
    found: collections.Counter = collections.Counter()
    for path in glob.glob(os.path.join(out, "dropped-*.jsonl")):
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                found[row["sha256"], row["text"], row["page_url"], row["reason"]] += 1
    return found


def _kept(out: str) -> collections.Counter:
    from alignpipe.data.example_proto import Example
    from alignpipe.data.records import iter_tfrecords

    found: collections.Counter = collections.Counter()
    for path in sorted(glob.glob(os.path.join(out, "pairs-*.tfrecord.gz"))):
        with open(path, "rb") as file:
            for record in iter_tfrecords(file):
                f = Example.FromString(record).features.feature
                image = hashlib.sha256(f["image/encoded"].bytes_list.value[0]).hexdigest()
                found[
                    tuple(f[k].bytes_list.value[0] for k in ("image/sha256", "text", "page/url")), image
                ] += 1
    return found


def compare(a: str, b: str) -> int:
    funnels = [json.load(open(os.path.join(out, "funnel.json"), encoding="utf-8")) for out in (a, b)]
    dropped, kept = [_dropped(out) for out in (a, b)], [_kept(out) for out in (a, b)]
    # a rule added later is in one funnel only, dropping nothing
    outcomes = [{k: v for k, v in f["dropped"].items() if v} | {"kept": f["kept_pairs"]} for f in funnels]
    checks = {
        "funnels_equal": outcomes[0] == outcomes[1],
        "dropped_equal": dropped[0] == dropped[1],
        "kept_equal": kept[0] == kept[1],
    }
    print(
        json.dumps(
            {"kept": [sum(k.values()) for k in kept], "dropped": [sum(d.values()) for d in dropped], **checks}
        )
    )
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
