"""Turns the raw results of run.sh into docs/benchmarks-trainer.md (printed on stdout)."""

import datetime
import json
import os
import platform
import re
import subprocess
import sys

results, surprise_version = sys.argv[1], sys.argv[2]


def runs(tag, kind):
    """The files of every repetition of a measurement, in order."""
    prefix = f"{tag}.{kind}."
    names = [n for n in os.listdir(results) if n.startswith(prefix) and n[len(prefix):].isdigit()]
    return [os.path.join(results, n) for n in sorted(names, key=lambda n: int(n[len(prefix):]))]


def one_time(path):
    text = open(path).read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return secs, rss_kb / 1024


def time_file(tag):
    """Median wall time and largest peak RSS over the repetitions."""
    measured = [one_time(p) for p in runs(tag, "time")]
    walls = sorted(w for w, _ in measured)
    return walls[len(walls) // 2], max(r for _, r in measured)


def walls(tag):
    return [one_time(p)[0] for p in runs(tag, "time")]


def quality(tag):
    out = json.load(open(os.path.join(results, tag + ".out")))
    if "folds" in out:
        folds = out["folds"]
        return (sum(f["rmse"] for f in folds) / len(folds), sum(f["mae"] for f in folds) / len(folds))
    return out["rmse"], out["mae"]


def rank_share(tag):
    """Ranking's share of our folds' stage times (None for Surprise, which does not rank)."""
    folds = json.load(open(os.path.join(results, tag + ".out"))).get("folds")
    if not folds or "rankSeconds" not in folds[0]:
        return None
    rank = sum(f["rankSeconds"] for f in folds)
    return rank / sum(f["fitSeconds"] + f["testSeconds"] + f["rankSeconds"] for f in folds)


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


rows = [line.split("\t") for line in open(os.path.join(results, "index")).read().splitlines()]
surprise_wall = {}
for name, impl, threads in rows:
    if impl == "surprise":
        surprise_wall[name] = time_file(f"{name}.{impl}.{threads}")[0]

mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
print("# Trainer benchmark: Surprise SVD() vs recommender-trainer\n")
print(f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
print("- Command: `benches/trainer/run.sh` (from the repository root)")
print(f"- Machine: {cpu_model()}, {os.cpu_count()} cores, {mem_gib:.0f} GiB RAM, {platform.platform()}")
print(f"- Versions: scikit-surprise {surprise_version} (PyPI wheel), Python {platform.python_version()}, {rustc}")
print("- Protocol: 5-fold CV (shuffled, seed 1), default `SVD()` (100 factors, 20 epochs); wall time and peak")
print("  RSS of the whole process from GNU time (load + CV). Ours also scores top-10 ranking per fold.")
print("- Synthetic sets: `recommender-trainer generate --rank 10 --seed 7` (100k-10k: 600 users x 10k")
print("  items, 100k ratings; 1M: 20k users x 5k items; 10M: 200k users x 20k items; the `-5k` sets keep")
print("  the 5k items of the 1M set, 20k users per million ratings).")
print("- Rows of the 100k-rating sets are the median of several runs (all wall times in the last")
print("  column); the others are single runs.")
print("- Ranking share: our folds' time ranking every sampled test user's top-10 over all items, as a")
print("  share of their fit + test + ranking time (`rankSeconds` etc. of `--json`).\n")
print("| data | implementation | threads | RMSE | MAE | wall s | peak RSS MiB | speed-up vs Surprise | ranking share | load avg before | runs (s) |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for name, impl, threads in rows:
    tag = f"{name}.{impl}.{threads}"
    wall, rss = time_file(tag)
    rmse, mae = quality(tag)
    label = {"surprise": f"Surprise {surprise_version}", "ours": "recommender-trainer",
             "ours-fit2": "recommender-trainer, `--fit-threads 2`"}[impl]
    ratio = surprise_wall.get(name)
    speed = "1.0x" if impl == "surprise" else (f"{ratio / wall:.1f}x" if ratio else "n/a")
    load = " / ".join(open(p).read().strip() for p in runs(tag, "load")) or "?"
    all_walls = ", ".join(f"{w:.2f}" for w in walls(tag))
    share = rank_share(tag)
    share = f"{100 * share:.1f}%" if share is not None else "n/a"
    print(f"| {name} | {label} | {threads} | {rmse:.4f} | {mae:.4f} | {wall:.2f} | {rss:.0f} | {speed} | {share} | {load} | {all_walls} |")
print()
print("Surprise is single-threaded; `threads` for ours is `RAYON_NUM_THREADS`: the folds are trained one per")
print("thread, except with `--fit-threads 2`, where each fit uses both threads (in blocks of ratings) and the")
print("folds run one after another. The load average column is the 1-minute load just before each run; it")
print("includes the benchmark's own previous runs, and above 2 on this 2-core machine other processes were")
print("competing for the cores.")


def sgd_table(name):
    """The example's header line, its table, and its rows as dicts."""
    path = os.path.join(results, name)
    if not os.path.exists(path):
        return None
    lines = open(path).read().splitlines()
    table = [line for line in lines if line.startswith("|")]
    head = [c.strip() for c in table[0].strip("|").split("|")]
    rows = [dict(zip(head, (c.strip() for c in line.strip("|").split("|")))) for line in table[2:]]
    return lines[0], "\n".join(table), rows


sgd_100k, sgd_10m = sgd_table("sgd-ml-100k.md"), sgd_table("sgd-10m.md")
if sgd_100k or sgd_10m:
    print("\n## The SGD step (`trainer/examples/sgd_bench.rs`)\n")
    print("Nanoseconds per update (one rating of one epoch) of the training loop alone, timed epoch by epoch;")
    print("the minimum over all epochs is the least disturbed by other processes, the on-CPU figure leaves out")
    print("the time they held the cores. The checksum is of the model's bits: the same on every vector unit")
    print("(`RECOMMENDER_NO_SIMD=1`) and the same as the kernel before issue 24 for one thread.\n")
    for table in (sgd_100k, sgd_10m):
        if table:
            print(f"{table[0]}\n\n{table[1]}\n")


def row(name, impl, threads):
    tag = f"{name}.{impl}.{threads}"
    if not runs(tag, "time"):
        return None
    return (*time_file(tag), *quality(tag))


print("\n## Against the targets\n")
if sgd_100k:
    at100 = [r for r in sgd_100k[2] if r["factors"] == "100" and r["fit threads"] == "1"]
    if at100:
        ns = float(at100[0]["ns per update (min)"])
        print(f"- SGD update at 100 factors, one thread, ml-100k: {ns:.1f} ns (target at most 30 ns): "
              f"{'met' if ns <= 30 else 'NOT met on this run'}")
if sgd_10m:
    two = [r for r in sgd_10m[2] if r["fit threads"] == "2"]
    if two:
        print(f"- One fit of 10M ratings (100 factors) on 2 threads: {two[0]['speed-up (min)']} the speed of 1 thread "
              "(reported, no target)")
s100, o100_2, o100_1 = row("ml-100k", "surprise", 1), row("ml-100k", "ours", 2), row("ml-100k", "ours", 1)
if s100 and o100_2 and o100_1:
    print(f"- ml-100k RMSE: ours {o100_2[2]:.4f} vs Surprise {s100[2]:.4f} (target: within 0.005 or better): "
          f"{'met' if o100_2[2] <= s100[2] + 0.005 else 'NOT met'}")
    print(f"- 5-fold CV speed-up on 2 threads: {s100[0] / o100_2[0]:.1f}x (target 20x): "
          f"{'met' if s100[0] / o100_2[0] >= 20 else 'NOT met on this run'}")
    print(f"- 5-fold CV speed-up on 1 thread: {s100[0] / o100_1[0]:.1f}x (target 8x): "
          f"{'met' if s100[0] / o100_1[0] >= 8 else 'NOT met on this run'}")
s10k, o10k_2 = row("synthetic-100k-10k", "surprise", 1), row("synthetic-100k-10k", "ours", 2)
if s10k and o10k_2:
    print(f"- 5-fold CV with ranking, 100k ratings x 10k items, 2 threads: {s10k[0] / o10k_2[0]:.1f}x Surprise "
          f"(target 20x): {'met' if s10k[0] / o10k_2[0] >= 20 else 'NOT met on this run'}")
for name in ("ml-100k", "synthetic-100k-10k"):
    for threads in (2, 1):
        share = rank_share(f"{name}.ours.{threads}") if row(name, "ours", threads) else None
        if share is not None:
            print(f"- Ranking share of the CV, {name}, {threads} thread(s): {100 * share:.1f}% (target at most 10%): "
                  f"{'met' if share <= 0.10 else 'NOT met on this run'}")
o10m = [r for r in (row("synthetic-10m", "ours", 2), row("synthetic-10m", "ours", 1)) if r]
if o10m:
    peak = max(r[1] for r in o10m)
    print(f"- Peak RSS for 10M ratings: {peak:.0f} MiB (target under 1024 MiB): {'met' if peak < 1024 else 'NOT met'}")
o1m = row("synthetic-1m", "ours", 1)
o10m1 = row("synthetic-10m", "ours", 1)
if o1m and o10m1:
    print(f"- Growth 1M -> 10M ratings, items 5k -> 20k (1 thread): {o10m1[0] / o1m[0]:.1f}x the time for 10x "
          "the ratings.")
series = [(m, row(name, "ours", 1)) for m, name in ((1, "synthetic-1m"), (5, "synthetic-5m-5k"), (10, "synthetic-10m-5k"))]
series = [(m, r) for m, r in series if r]
if len(series) == 3 and o1m:
    per_m = [r[0] / m for m, r in series]
    spread = max(per_m) / min(per_m)
    listed = ", ".join(f"{m}M: {r[0]:.1f} s ({r[0] / m:.2f} s per million)" for m, r in series)
    print(f"- Growth with the ratings alone (5k items, 1 thread): {listed}; the time per million ratings "
          f"varies by {100 * (spread - 1):.0f}% over a 10x range (target: linear): "
          f"{'met' if spread <= 1.25 else 'NOT met on this run'}.")
