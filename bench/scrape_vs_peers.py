#!/usr/bin/env python3
"""`alignpipe scrape` side by side with its peers on the offline mini-web, in one run.

    python bench/scrape_vs_peers.py WEB --port 8000 --out DIR [--repeat 3]

Run it through bench/scrape.sh, which makes the peers' venvs and serves WEB/www with nginx.
Each round runs, back to back, over nginx on 127.0.0.1:PORT:
  i2d-raw          img2dataset 1.47, the 5,391 local image URLs, disable_all_reencoding
  alignpipe-raw    alignpipe scrape --url-list (same parquet), original bytes kept
  i2d-kr256        img2dataset, resize keep_ratio 256
  alignpipe-kr256  alignpipe scrape --url-list, resize keep_ratio 256
  crawler          the bare aiohttp + selectolax BFS crawler (pages only, no images)
  alignpipe-crawl  alignpipe scrape --seed http://127.0.0.1:PORT/index.html (crawl + download + write)
img2dataset runs exactly as ../shared/bench/img2dataset_loopback.py runs it (its functions are
imported): 2 processes x 32 threads, webdataset, 500 samples a shard. Every run is timed under
`/usr/bin/time -v`; a sampler also sums RSS and PSS over the whole process tree, since time -v
reports only the largest single process and both tools fork workers.
The figures and the targets: scrape_targets.py.
"""

import argparse
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys
import threading
import time

from scrape_targets import check_targets, medians, print_summary

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
URL_LIST_KINDS = ("alignpipe-raw", "alignpipe-kr256")


class TreeSampler(threading.Thread):
    """Every 0.2 s: RSS and PSS summed over this process's descendants (peaks kept), and each
    one's CPU time. `/usr/bin/time -v` reports the largest process's RSS only, and misses the
    CPU of workers that nobody waits for (a forkserver's children, say)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak_rss_kb = self.peak_pss_kb = 0
        self.cpu_ticks = {}  # pid -> utime + stime last seen
        self._done = threading.Event()

    @staticmethod
    def _descendants(pid):
        out = []
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                for child in f.read().split():
                    out += [int(child)] + TreeSampler._descendants(int(child))
        return out

    def _sample(self):
        rss = pss = 0
        for pid in self._descendants(os.getpid()):
            with open(f"/proc/{pid}/stat") as f:  # fields 14, 15: utime, stime (after "(comm)")
                self.cpu_ticks[pid] = sum(int(x) for x in f.read().rsplit(")", 1)[1].split()[11:13])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                kb = {ln.split()[0]: int(ln.split()[1]) for ln in f if ln.endswith(" kB\n")}
            rss, pss = rss + kb["Rss:"], pss + kb["Pss:"]
        self.peak_rss_kb, self.peak_pss_kb = max(self.peak_rss_kb, rss), max(self.peak_pss_kb, pss)

    def run(self):
        while not self._done.wait(0.2):
            try:
                self._sample()
            except (OSError, KeyError, ValueError):  # a process ended mid-sample: skip the sample
                continue

    def stop(self):
        self._done.set()
        self.join()
        cpu_s = sum(self.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK")
        return dict(tree_rss_mb=round(self.peak_rss_kb / 1024), tree_pss_mb=round(self.peak_pss_kb / 1024),
                    tree_cpu_s=round(cpu_s, 1))  # fmt: skip


@dataclasses.dataclass
class Bench:
    web: str
    port: int
    out: str
    i2d: object  # the shared img2dataset_loopback module
    i2d_bin: str
    bench_python: str
    shared: str
    alignpipe: list  # command prefix
    alignpipe_env: dict
    loopback_sets: list  # --set scrape.allowed_networks=127.0.0.1/32, where the engine knows the key

    def timed(self, name, cmd, env=None):
        """Run cmd under /usr/bin/time -v; wall/CPU/RSS, server and foreign CPU, stdout."""
        tfile, log = os.path.join(self.out, "time.txt"), os.path.join(self.out, f"log-{name}.txt")
        c0, b0 = self.i2d.server_cpu(self.port), self.i2d.busy_cpu_s()
        with open(log, "w") as err:
            timed = ["/usr/bin/time", "-v", "-o", tfile] + cmd
            p = subprocess.run(timed, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        c1, b1 = self.i2d.server_cpu(self.port), self.i2d.busy_cpu_s()
        res = self.i2d.parse_time_v(tfile)
        res.update(rc=p.returncode, server_cpu_s=round(c1 - c0, 2))
        res["foreign_cpu_s"] = round((b1 - b0) - res["user_s"] - res["sys_s"] - res["server_cpu_s"], 1)
        return res, p.stdout

    def img2dataset(self, urls, config):
        cfg = dict(self.i2d.BASE, **self.i2d.CONFIGS[config])
        work = os.path.join(self.out, "i2d")
        r = self.i2d.run_one(self.i2d_bin, urls, work, self.port, config, cfg)
        return dict(r, work=r.get("successes", 0), successes_captioned=captioned_successes(work), config=cfg)

    def alignpipe_scrape(self, name, source_args, sets=()):
        run_dir = fresh(os.path.join(self.out, "runs", name))  # never resume a previous run
        args = ["scrape", *source_args, "--out", f"{run_dir}/out", "--work-dir", f"{run_dir}/work"]
        args += ["--experiment", "paper"]
        for s in self.loopback_sets + list(sets):
            args += ["--set", s]
        res, stdout = self.timed(name, self.alignpipe + args, env=self.alignpipe_env)
        report = last_json(stdout) or {}
        res.update(report=report, work=report.get("pairs_written", 0), args=args)
        fresh(run_dir)  # outputs are ~300 MB a run
        return res

    def crawler(self):
        crawl = os.path.join(self.shared, "crawl.py")
        cmd = [self.bench_python, crawl, "--port", str(self.port), "--truth", os.path.join(self.web, "truth")]
        res, stdout = self.timed("crawler", cmd)
        out = last_json(stdout) or {}
        return dict(res, crawl=out, work=out.get("pages", 0))

    def round(self, urls, url_list_ok):
        kr256 = ("scrape.resize_mode=keep_ratio", "scrape.image_size=256")
        steps = {
            "i2d-raw": lambda: self.img2dataset(urls, "wds-raw-t32"),
            "alignpipe-raw": lambda: self.alignpipe_scrape("alignpipe-raw", ["--url-list", urls]),
            "i2d-kr256": lambda: self.img2dataset(urls, "wds-kr256-t32"),
            "alignpipe-kr256": lambda: self.alignpipe_scrape("alignpipe-kr256", ["--url-list", urls], kr256),
            "crawler": self.crawler,
            "alignpipe-crawl": lambda: self.alignpipe_scrape(
                "alignpipe-crawl", ["--seed", f"http://127.0.0.1:{self.port}/index.html"]
            ),
        }
        runs = {}
        for kind, step in steps.items():
            if kind in URL_LIST_KINDS and not url_list_ok:
                continue
            sampler = TreeSampler()
            sampler.start()
            r = step()
            r.update(sampler.stop(), kind=kind)
            # both CPU figures can only miss some: take the larger, and move the rest to "foreign"
            cpu_s = max(r["user_s"] + r["sys_s"], r["tree_cpu_s"])
            r["foreign_cpu_s"] = round(r["foreign_cpu_s"] + r["user_s"] + r["sys_s"] - cpu_s, 1)
            r["cpu_s"] = cpu_s
            r["rate"] = r["work"] / r["wall_s"] if r["wall_s"] else 0.0
            runs[kind] = r
            print(
                f"  {kind:16s} rc {r['rc']} wall {r['wall_s']:6.1f} s cpu {r['cpu_s']:6.1f} s "
                f"rss {r['max_rss_mb']:5.0f} MB tree rss/pss {r['tree_rss_mb']}/{r['tree_pss_mb']} MB "
                f"work {r['work']} ({r['rate']:.0f}/s) server cpu {r['server_cpu_s']} s "
                f"foreign cpu {r['foreign_cpu_s']} s",
                flush=True,
            )
        return runs


def captioned_successes(work):
    """img2dataset's successes whose caption is not empty: the pairs an alt-text scrape can keep
    (alignpipe skips url-list rows without a caption, as `image/no_alt`)."""
    import pyarrow.parquet as pq

    files = glob.glob(os.path.join(work, "out", "*.parquet"))
    t = pq.read_table(files, columns=["caption", "status"]).to_pydict() if files else {"status": []}
    return sum(1 for c, s in zip(t.get("caption", []), t["status"], strict=False) if s == "success" and c)


def fresh(path):
    subprocess.run(["rm", "-rf", path], check=True)
    os.makedirs(path)
    return path


def last_json(text):
    """The JSON object a command printed last on stdout (alignpipe prints it indented)."""
    for m in reversed(list(re.finditer(r"^\{", text, re.M))):
        try:
            return json.loads(text[m.start() :])
        except ValueError:
            continue
    return None


def alignpipe_command(src, venv_python):
    """Command prefix and environment for the alignpipe under test (this checkout, or `src`)."""
    if not src:
        return [os.path.join(ROOT, ".venv", "bin", "alignpipe")], dict(os.environ)
    # an older checkout, e.g. `git archive COMMIT | tar -x -C DIR`, run with this venv's packages
    # -P: the current folder must not come before PYTHONPATH on sys.path (it may be this checkout)
    return [venv_python, "-P", "-m", "pipelines.cli"], dict(os.environ, PYTHONPATH=os.path.abspath(src))


def engine_features(cmd, env, venv_python):
    """What the engine under test supports: `--url-list`, and the `scrape.allowed_networks` key."""
    helptext = subprocess.run(cmd + ["scrape", "--help"], capture_output=True, text=True, env=env).stdout
    probe = "import alignpipe.config as c; print('allowed_networks' in c.ScrapeConfig.__dataclass_fields__)"
    knows = subprocess.run([venv_python, "-P", "-c", probe], capture_output=True, text=True, env=env).stdout
    return "--url-list" in helptext, knows.strip() == "True"


def describe(src):
    """The machine and the alignpipe measured."""
    git = lambda *a: subprocess.run(["git", "-C", ROOT, *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    if not src:
        src = git("rev-parse", "--short", "HEAD") + (
            " + uncommitted changes" if git("status", "--porcelain") else ""
        )
    cpu = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
    mem_kb = next(int(ln.split()[1]) for ln in open("/proc/meminfo") if ln.startswith("MemTotal"))
    return dict(cpus=os.cpu_count(), cpu_model=cpu[0] if cpu else "?", mem_gb=round(mem_kb / 2**20, 1),
                kernel=os.uname().release, alignpipe=src, date=time.strftime("%Y-%m-%d %H:%M"))  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("web", help="make_web_corpus.py output folder")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--out", required=True, help="results folder (results.json, runs.jsonl, logs)")
    ap.add_argument("--repeat", type=int, default=3)
    shared = os.environ.get("SHARED_BENCH", os.path.join(ROOT, "..", "shared", "bench"))
    ap.add_argument("--shared", default=shared, help="the peer runners (../shared/bench)")
    ap.add_argument(
        "--cache", default=os.environ.get("BENCH_CACHE", "/tmp/peerbench"), help="peers' venvs ($BENCH_CACHE)"
    )
    ap.add_argument(
        "--alignpipe-src",
        default=os.environ.get("ALIGNPIPE_SRC", ""),
        help="measure the alignpipe source tree in this folder instead of this checkout",
    )
    args = ap.parse_args()
    sys.path.insert(0, os.path.abspath(args.shared))
    import img2dataset_loopback as i2d  # the shared runner: same URL list, same invocation

    os.makedirs(os.path.join(args.out, "i2d"), exist_ok=True)
    venv_python = os.path.join(ROOT, ".venv", "bin", "python")
    cmd, env = alignpipe_command(args.alignpipe_src, venv_python)
    url_list_ok, knows_networks = engine_features(cmd, env, venv_python)
    bench = Bench(
        web=os.path.abspath(args.web), port=args.port, out=os.path.abspath(args.out), i2d=i2d,
        i2d_bin=os.path.join(args.cache, "venv-img2dataset", "bin"),
        bench_python=os.path.join(args.cache, "venv-bench", "bin", "python"),
        shared=os.path.abspath(args.shared), alignpipe=cmd, alignpipe_env=env,
        # the old engine has no such key (and no address checks to pass)
        loopback_sets=["scrape.allowed_networks=127.0.0.1/32"] if knows_networks else [],
    )  # fmt: skip
    urls, info = i2d.build_urls(bench.web, args.port, bench.out)
    machine = describe(args.alignpipe_src)
    print("machine:", json.dumps(machine), "\nurl list:", json.dumps(info), flush=True)
    if not url_list_ok:
        print("this alignpipe has no `scrape --url-list`: the url-list rows are not measured", flush=True)
    rounds, log = [], open(os.path.join(bench.out, "runs.jsonl"), "a")
    for i in range(args.repeat):
        quiet = subprocess.run([os.path.join(bench.shared, "wait_quiet.sh")], capture_output=True, text=True)
        print(f"round {i + 1}/{args.repeat}: {(quiet.stdout + quiet.stderr).splitlines()[0]}", flush=True)
        runs = bench.round(urls, url_list_ok)
        for r in runs.values():
            log.write(json.dumps(dict(r, round=i, quiet=quiet.returncode == 0)) + "\n")
        log.flush()
        rounds.append(runs)
    subprocess.run(["rm", "-rf", os.path.join(bench.out, "i2d", "out"), os.path.join(bench.out, "runs")])
    med, targets = medians(rounds), check_targets(rounds)
    print_summary(med, targets, args.repeat)
    results = dict(
        machine=machine, url_list=info, url_list_measured=url_list_ok, medians=med, targets=targets
    )
    with open(os.path.join(bench.out, "results.json"), "w") as f:
        json.dump(dict(results, rounds=rounds), f, indent=1)
    print(f"results in {bench.out}/results.json")


if __name__ == "__main__":
    main()
