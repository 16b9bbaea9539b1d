#!/usr/bin/env python3
"""The Beam metadata filter side by side with its in-memory pandas peer, on one synthetic corpus.

    python bench/filter_vs_pandas.py --pairs 1000000 --seed 0 --out DIR [--variants normal,hot]

Run it through bench/filter.sh. For each variant, bench/filter_corpus.py writes a corpus of
`--pairs` pair-metadata rows (16 parquet files), then two runs follow, each in its own process
under `/usr/bin/time -v`:
  beam    `run_filter_metadata` (alignpipe.filtering.pipeline) with the `local` environment's
          runner (`runner.beam_args` as configured) and the `paper` experiment's thresholds;
          writes dropped-*.jsonl and funnel.json
  pandas  `alignpipe.filtering.frame_rules` in one process: reads the parquet files, decides every
          pair, writes the dropped pairs as JSON lines (the same fields) and funnel.json
Variants: `normal` (the corpus as generated: the hottest alt-text "logo" on 2% of pairs, the
hottest image on 2%) and `hot` (both `--hot-scale` = 10x hotter, the pair count unchanged): if
the filter's memory does not depend on its largest key, the two peaks are about the same.

Checks: both funnels (counts and warnings) are identical, and so are the dropped pairs as a
multiset of (sha256, text, reason); a difference is printed and the exit status is 1.

Figures per run: wall; CPU-s of the whole process tree (the larger of time -v's user + sys and
a per-process sampler's total); cores used = CPU-s / wall; pairs/s = pairs / wall;
pairs/CPU-s = pairs / CPU-s (the rate per core busy); peak memory as time -v's largest process
RSS and, summed over the process tree every 0.2 s, RSS and PSS (bench/scrape_vs_peers.py's
TreeSampler); "foreign" CPU used meanwhile by other processes on the machine (a large figure
marks a disturbed run). Results: DIR/results.json and DIR/summary.txt.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import time

from scrape_vs_peers import TreeSampler, describe, fresh

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
TOOLS = ("beam", "pandas")
DROPPED_FIELDS = ("image_url", "page_url", "sha256", "text")


def filter_config(work_dir: str, sets: list[str]):
    from alignpipe.config import load_config

    return load_config("local", "paper", [f"runner.work_dir={work_dir}", *sets])


def run_beam(metadata: str, out: str, work_dir: str, sets: list[str]) -> dict:
    from alignpipe.filtering.pipeline import run_filter_metadata

    return run_filter_metadata(filter_config(work_dir, sets), metadata, out).to_dict()


def run_pandas(metadata: str, out: str, work_dir: str, sets: list[str]) -> dict:
    """The in-memory filter as a pandas user would run it: one process, outputs like the Beam filter's."""
    import numpy as np

    from alignpipe.filtering.frame_rules import (
        KEPT,
        RULE_COLUMNS,
        funnel_of_outcome_codes,
        in_memory_outcome_codes,
        read_metadata,
    )
    from alignpipe.filtering.funnel import FUNNEL_JSON, write_funnel_json
    from alignpipe.filtering.rules import NO_UNSAFE_WORDS, REASONS
    from alignpipe.filtering.safety import load_unsafe_words

    cfg = filter_config(work_dir, sets)
    words = load_unsafe_words(cfg.filter.unsafe_alt_words) if cfg.filter.unsafe_alt_words else NO_UNSAFE_WORDS
    columns = list(dict.fromkeys([*DROPPED_FIELDS, *RULE_COLUMNS]))
    frame = read_metadata(metadata, columns)
    codes = in_memory_outcome_codes(frame, cfg.filter, unsafe_words=words)
    dropped = frame.loc[codes != KEPT, list(DROPPED_FIELDS)]
    dropped["reason"] = np.array(REASONS, dtype=object)[codes[codes != KEPT]]
    os.makedirs(out, exist_ok=True)
    dropped.to_json(os.path.join(out, "dropped.jsonl"), orient="records", lines=True, force_ascii=False)
    report = funnel_of_outcome_codes(codes, cfg.train.batch_size)
    write_funnel_json(report, os.path.join(out, FUNNEL_JSON))
    return report.to_dict()


def dropped_pairs(out: str) -> collections.Counter:
    """(sha256, text, reason) of every dropped pair a run wrote, as a multiset."""
    pairs: collections.Counter = collections.Counter()
    for path in sorted(glob.glob(os.path.join(out, "dropped*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            pairs.update((r["sha256"], r["text"], r["reason"]) for r in map(json.loads, f))
    return pairs


def busy_cpu_s() -> float:
    """Machine-wide busy CPU seconds so far, all cores (/proc/stat)."""
    fields = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def parse_time_v(path: str) -> dict:
    text = open(path).read()
    field = lambda key: re.search(re.escape(key) + r":\s*(.+)", text).group(1).strip()  # noqa: E731
    parts = [float(x) for x in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
    return dict(
        wall_s=sum(p * 60**i for i, p in enumerate(reversed(parts))),
        user_s=float(field("User time (seconds)")),
        sys_s=float(field("System time (seconds)")),
        max_rss_mb=round(int(field("Maximum resident set size (kbytes)")) / 1024),
    )


def timed(name: str, cmd: list[str], out: str, pairs: int) -> dict:
    """Runs `cmd` under /usr/bin/time -v with the tree sampler; the figures, and its last JSON line."""
    tfile, log = os.path.join(out, f"time-{name}.txt"), os.path.join(out, f"log-{name}.txt")
    sampler, busy = TreeSampler(), busy_cpu_s()
    sampler.start()
    with open(log, "w") as err:
        proc = subprocess.run(
            ["/usr/bin/time", "-v", "-o", tfile, *cmd], stdout=subprocess.PIPE, stderr=err, text=True
        )
    r = dict(parse_time_v(tfile), **sampler.stop(), rc=proc.returncode)
    r["cpu_s"] = round(max(r["user_s"] + r["sys_s"], r["tree_cpu_s"]), 1)
    r["foreign_cpu_s"] = round(busy_cpu_s() - busy - r["cpu_s"], 1)
    r["cores_used"] = round(r["cpu_s"] / r["wall_s"], 2) if r["wall_s"] else 0.0
    r["pairs_per_s"] = round(pairs / r["wall_s"]) if r["wall_s"] else 0
    r["pairs_per_cpu_s"] = round(pairs / r["cpu_s"]) if r["cpu_s"] else 0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    r["funnel"] = json.loads(lines[-1]) if lines else None
    if proc.returncode:
        print(
            f"  {name} failed (rc {proc.returncode}); the end of {log}:", open(log).read()[-3000:], sep="\n"
        )
    return r


def wait_quiet() -> str:
    script = os.path.join(ROOT, "..", "shared", "bench", "wait_quiet.sh")
    if not os.path.exists(script):
        return "not checked (no ../shared/bench/wait_quiet.sh)"
    env = dict(os.environ, QUIET_TIMEOUT=os.environ.get("QUIET_TIMEOUT", "300"))
    quiet = subprocess.run([script], capture_output=True, text=True, env=env)
    return (quiet.stdout + quiet.stderr).splitlines()[0]


def run_variant(args, variant: str, hot_scale: float) -> dict:
    data = os.path.join(args.out, f"data-{variant}")
    gen = [sys.executable, os.path.join(BENCH, "filter_corpus.py"), data, "--pairs", str(args.pairs)]
    gen += ["--seed", str(args.seed), "--hot-scale", str(hot_scale)]
    corpus = json.loads(subprocess.run(gen, check=True, capture_output=True, text=True).stdout)
    print(f"{variant}: {json.dumps(corpus, ensure_ascii=False)}\n  machine: {wait_quiet()}", flush=True)
    runs, sets = {}, [a for s in args.set for a in ("--set", s)]
    for tool in args.tools.split(","):
        run_dir = fresh(os.path.join(args.out, "runs", f"{variant}-{tool}"))
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", tool, "--metadata"]
        cmd += [
            os.path.join(data, "*.parquet"),
            "--run-out",
            f"{run_dir}/out",
            "--work-dir",
            f"{run_dir}/work",
        ]
        r = runs[tool] = timed(f"{variant}-{tool}", cmd + sets, args.out, args.pairs)
        print(
            f"  {tool:6s} rc {r['rc']} wall {r['wall_s']:7.1f} s cpu {r['cpu_s']:7.1f} s "
            f"({r['cores_used']:.2f} cores) {r['pairs_per_s']:7d} pairs/s "
            f"{r['pairs_per_cpu_s']:7d} pairs/CPU-s "
            f"rss {r['max_rss_mb']} MB tree rss/pss {r['tree_rss_mb']}/{r['tree_pss_mb']} MB "
            f"foreign cpu {r['foreign_cpu_s']} s",
            flush=True,
        )
    return dict(corpus=corpus, runs=runs, checks=compare(args, variant, runs))


def compare(args, variant: str, runs: dict) -> dict:
    """Funnels and dropped pairs of the runs, checked equal; differences printed."""
    if len(runs) < 2 or any(r["rc"] or not r["funnel"] for r in runs.values()):
        return dict(funnels_equal=False, dropped_equal=False, note="a run failed or only one tool ran")
    funnels = [r["funnel"] for r in runs.values()]
    dropped = [dropped_pairs(os.path.join(args.out, "runs", f"{variant}-{t}", "out")) for t in runs]
    checks = dict(funnels_equal=funnels[0] == funnels[1], dropped_equal=dropped[0] == dropped[1])
    print(f"  funnel: {json.dumps(funnels[0])}", flush=True)
    if not checks["funnels_equal"]:
        print(
            "  FUNNELS DIFFER:", *(f"    {t}: {json.dumps(r['funnel'])}" for t, r in runs.items()), sep="\n"
        )
    if not checks["dropped_equal"]:
        only = [list((a - b).items())[:5] for a, b in ((dropped[0], dropped[1]), (dropped[1], dropped[0]))]
        print(f"  DROPPED PAIRS DIFFER: {len(dropped[0])} vs {len(dropped[1])} distinct; only in one: {only}")
    return checks


def summary(results: dict) -> str:
    lines = [
        f"filter benchmark, {results['pairs']:,} pairs, seed {results['seed']}",
        json.dumps(results["machine"]),
    ]
    lines += [
        "",
        "| variant | run | wall s | CPU-s | cores | pairs/s | pairs/CPU-s | max RSS MB | tree RSS / PSS MB |",
    ]
    lines += ["| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for variant, v in results["variants"].items():
        for tool, r in v["runs"].items():
            lines.append(
                f"| {variant} | {tool} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['cores_used']:.2f} | "
                f"{r['pairs_per_s']:,} | {r['pairs_per_cpu_s']:,} | {r['max_rss_mb']:,} | "
                f"{r['tree_rss_mb']:,} / {r['tree_pss_mb']:,} |"
            )
    lines.append("")
    for variant, v in results["variants"].items():
        c = v["corpus"]
        lines.append(
            f"{variant}: hottest image {c['hottest_image_pairs']:,} pairs, hottest alt-text "
            f"{c['hottest_text']!r} {c['hottest_text_pairs']:,} pairs; checks {json.dumps(v['checks'])}"
        )
    for tool, ratio in results.get("hot_over_normal_pss", {}).items():
        lines.append(f"{tool}: peak PSS hot / normal = {ratio}")
    return "\n".join(lines) + "\n"


def worker(args) -> None:
    run = {"beam": run_beam, "pandas": run_pandas}[args.worker]
    print(json.dumps(run(args.metadata, args.run_out, args.work_dir, args.set)), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=f"/tmp/filterbench-{time.strftime('%Y%m%d-%H%M%S')}")
    ap.add_argument("--variants", default="normal,hot", help="normal, hot, or both")
    ap.add_argument("--hot-scale", type=float, default=10.0, help="the hot variant's hottest keys, x")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--set", action="append", default=[], help="extra config override key=value")
    ap.add_argument("--keep-data", action="store_true", help="keep the corpora and the runs' outputs")
    ap.add_argument("--worker", choices=TOOLS, help=argparse.SUPPRESS)
    ap.add_argument("--metadata", help=argparse.SUPPRESS)
    ap.add_argument("--run-out", help=argparse.SUPPRESS)
    ap.add_argument("--work-dir", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    args.out = os.path.abspath(args.out)
    os.makedirs(args.out, exist_ok=True)
    results = dict(pairs=args.pairs, seed=args.seed, sets=args.set, machine=describe(""), variants={})
    print("machine:", json.dumps(results["machine"]), flush=True)
    for variant in args.variants.split(","):
        results["variants"][variant] = run_variant(args, variant, args.hot_scale if variant == "hot" else 1.0)
        if not args.keep_data:
            subprocess.run(
                ["rm", "-rf", os.path.join(args.out, f"data-{variant}"), os.path.join(args.out, "runs")]
            )
    if {"normal", "hot"} <= set(results["variants"]):
        runs = {v: results["variants"][v]["runs"] for v in ("normal", "hot")}
        results["hot_over_normal_pss"] = {
            t: round(runs["hot"][t]["tree_pss_mb"] / max(1, runs["normal"][t]["tree_pss_mb"]), 2)
            for t in runs["normal"] if t in runs["hot"]
        }  # fmt: skip
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, ensure_ascii=False)
    text = summary(results)
    with open(os.path.join(args.out, "summary.txt"), "w") as f:
        f.write(text)
    print("\n" + text + f"results in {args.out}/results.json", flush=True)
    failed = [v for v, r in results["variants"].items() if not all(r["checks"].values())]
    if failed:
        sys.exit(f"FAIL: the Beam filter and the pandas peer disagree (or a run failed) in {failed}")


if __name__ == "__main__":
    main()
