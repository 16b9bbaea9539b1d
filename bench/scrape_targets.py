"""The scrape benchmark's figures: medians per kind of run and the issue's targets as ratios.

Pure functions over the run records that `scrape_vs_peers.py` measures (one dict per run:
`wall_s`, `cpu_s`, `max_rss_mb`, `tree_rss_mb`, `tree_pss_mb`, `rc`, `work`, `rate`,
plus what the tool reported). The machine is shared and noisy, so each ratio is taken between
runs of the same round (seconds apart) and the median over rounds is checked.
"""

import dataclasses
import statistics
from collections.abc import Callable

TOLERANCE = 0.02  # "the same work": counts within 2% of each other, else the comparison is void
MEMORY_LIMIT_MB = 500
KINDS = ("i2d-raw", "alignpipe-raw", "i2d-kr256", "alignpipe-kr256", "crawler", "alignpipe-crawl")


def same_work(a: int | None, b: int | None) -> bool:
    return bool(a and b) and abs(a - b) <= TOLERANCE * max(a, b)


def medians(rounds: list[dict]) -> dict[str, dict]:
    """Per kind of run: medians over rounds; tree memory: the max."""
    med = {}
    for kind in KINDS:
        rs = [r[kind] for r in rounds if kind in r]
        if rs:
            m = lambda f, rs=rs: statistics.median(f(r) for r in rs)  # noqa: E731
            med[kind] = dict(
                n=len(rs),
                wall_s=m(lambda r: r["wall_s"]),
                cpu_s=m(lambda r: r["cpu_s"]),
                rate=m(lambda r: r["rate"]),
                max_rss_mb=m(lambda r: r["max_rss_mb"]),
                tree_rss_mb=max(r["tree_rss_mb"] for r in rs),
                tree_pss_mb=max(r["tree_pss_mb"] for r in rs),
                work=[r["work"] for r in rs],
                rc=[r["rc"] for r in rs],
            )
    return med


def url_list_work(a: dict, i: dict) -> tuple[bool, str]:
    """alignpipe writes no pair for a url-list row without caption (outcome `image/no_alt`);
    img2dataset downloads those rows too, so compare with its successes that have a caption."""
    pairs, captioned = a["work"], i["successes_captioned"]
    note = f"pairs {pairs} vs img2dataset {captioned} captioned successes ({i['work']} in all)"
    return same_work(pairs, captioned), note


def crawl_work(a: dict, c: dict) -> tuple[bool, str]:
    """The whole scrape read the pages and the `<img>` entries that the bare crawler read."""
    rep, cr = a.get("report", {}), c.get("crawl", {})
    pages, imgs = rep.get("pages_crawled"), rep.get("images_found")
    note = f"pages {pages} vs crawler {c['work']}, <img> {imgs} vs {cr.get('triples')}"
    note += f"; pairs {rep.get('pairs_written')}"
    return same_work(pages, c["work"]) and same_work(imgs, cr.get("triples")), note


@dataclasses.dataclass(frozen=True)
class Target:
    """One target: `value` of the runs of `kinds` in one round, aggregated over the rounds."""

    name: str
    kinds: tuple[str, ...]
    value: Callable[..., float]
    op: str  # ">=" or "<="
    limit: float
    work: Callable[..., tuple[bool, str]]  # same work? and a note with the counts
    aggregate: Callable = statistics.median


def _rate_ratio(a: dict, peer: dict) -> float:
    return a["rate"] / peer["rate"]


TARGETS = (
    Target(
        name="url list, original bytes: alignpipe rate / img2dataset disable_all_reencoding rate",
        kinds=("alignpipe-raw", "i2d-raw"), value=_rate_ratio, op=">=", limit=1.0, work=url_list_work,
    ),
    Target(
        name="url list, keep_ratio 256: alignpipe rate / img2dataset rate",
        kinds=("alignpipe-kr256", "i2d-kr256"), value=_rate_ratio, op=">=", limit=1.5, work=url_list_work,
    ),
    Target(
        name="whole scrape of the mini-web: alignpipe wall / (bare crawler + img2dataset raw) wall",
        kinds=("alignpipe-crawl", "crawler", "i2d-raw"),
        value=lambda a, c, i: a["wall_s"] / (c["wall_s"] + i["wall_s"]),
        op="<=", limit=1.0, work=lambda a, c, i: crawl_work(a, c),
    ),
    # RSS summed over processes counts a shared page once per process (forked workers share most
    # of their parent's pages); PSS splits shared pages, so its sum is the RAM the scrape holds.
    # Sampled every 0.2 s, it can miss a short peak: time -v's exact peak of the largest process
    # is a floor.
    Target(
        name="whole scrape: peak memory MB (PSS summed over processes, or largest RSS if higher; max)",
        kinds=("alignpipe-crawl",), value=lambda a: max(a["tree_pss_mb"], a["max_rss_mb"]), op="<=",
        limit=MEMORY_LIMIT_MB, aggregate=max,
        work=lambda a: (True, f"PSS summed {a['tree_pss_mb']} MB, RSS summed {a['tree_rss_mb']} MB, "
                              f"largest process {a['max_rss_mb']:.0f} MB"),
    ),
)  # fmt: skip


def check_targets(rounds: list[dict]) -> list[dict]:
    """Each target over the rounds where all its runs exited 0 and did some work."""
    out = []
    for t in TARGETS:
        rs = [[r.get(k) for k in t.kinds] for r in rounds]
        rs = [runs for runs in rs if all(x and x["rc"] == 0 and x["rate"] for x in runs)]
        vals = [t.value(*runs) for runs in rs]
        v = t.aggregate(vals) if vals else None
        checks = [t.work(*runs) for runs in rs]
        ok = None if v is None else (v >= t.limit if t.op == ">=" else v <= t.limit)
        out.append(
            dict(name=t.name, value=v, per_round=vals, op=t.op, target=t.limit, ok=ok,
                 same_work=all(same for same, _ in checks), work=[note for _, note in checks])
        )  # fmt: skip
    return out


def print_summary(med: dict[str, dict], targets: list[dict], repeat: int) -> None:
    print(f"\nmedians of {repeat} rounds; rate = work / wall; rssMB: the largest process's peak (time -v);")
    print("tree RSS / PSS: summed over the process tree, peak, max of rounds")
    print("kind               n  wall_s  cpu_s  rate/s  rssMB  treeRSS  treePSS  work")
    for kind, m in med.items():
        print(
            f"{kind:16s} {m['n']:3d} {m['wall_s']:7.1f} {m['cpu_s']:6.1f} {m['rate']:7.0f} "
            f"{m['max_rss_mb']:6.0f} {m['tree_rss_mb']:8.0f} {m['tree_pss_mb']:8.0f} {m['work']} rc {m['rc']}"
        )
    print("\ntargets (ratios between runs of the same round, median over rounds):")
    for t in targets:
        verdict = "n/a (not measured)" if t["ok"] is None else ("PASS" if t["ok"] else "FAIL")
        if t["ok"] is not None and not t["same_work"]:
            verdict += ", VOID: not the same work (counts differ by more than 2%)"
        value = "-" if t["value"] is None else f"{t['value']:.2f}"
        print(f"  {value:>7s} {t['op']} {t['target']:<5} {verdict}  {t['name']}")
        if len(t["per_round"]) > 1:
            print(f"{'':18s}per round: {', '.join(f'{v:.2f}' for v in t['per_round'])}")
        for note in dict.fromkeys(t["work"]):  # distinct notes, in order
            print(f"{'':18s}{note}")
