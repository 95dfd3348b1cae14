#!/usr/bin/python3
"""Benchmark results with their provenance: one folder per run.

Every run of bench/bench.py or bench/snapshot.py writes its own folder
bench/runs/DATE-VERSION-WHAT/ (unless --out names another) with
results.md, results.json, results.png and manifest.json: the project's
git commit, a sha256 of patches/, the command, the machine, the links'
measured rates.  bench/runs/index.md lists every run; it is written
after each run, and again by

    python3 bench/runs.py          # rewrite bench/runs/index.md

results.json keeps each case as an object, {"link": ..., "workload": ...,
"mem_mib": ..., "variant": ..., "runs": [row, ...]} (snapshot.py:
{"mode": ..., "variant": ..., "runs": [...]}); load_results() reads that
and the first format, whose cases were keyed "link|workload|mem|variant".
"""

import hashlib
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
RUNS = os.path.join(HERE, "runs")
BENCH_KEYS = ("link", "workload", "mem_mib", "variant")
SNAPSHOT_KEYS = ("mode", "variant")


# -- what produced a run -----------------------------------------------------

def patches_sha256(top=TOP):
    """sha256 over patches/series and then each patch it lists, in order."""
    h = hashlib.sha256()
    with open(os.path.join(top, "patches", "series"), "rb") as f:
        series = f.read()
    h.update(series)
    for name in series.decode().split():
        if name.startswith("#"):
            continue
        with open(os.path.join(top, "patches", name), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def git(*args, top=TOP):
    out = subprocess.run(["git", "-C", top, *args], capture_output=True,
                         text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def series_version(top=TOP):
    """"v4" from the cover letter's "[PATCH v4 00/15]"."""
    try:
        with open(os.path.join(top, "patches", "0000-cover-letter.patch")) as f:
            for line in f:
                if line.startswith("Subject:") and "[PATCH v" in line:
                    return line.split("[PATCH ", 1)[1].split()[0]
    except OSError:
        pass
    return "v0"


def machine_info():
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem,
            "kernel": f"{platform.system()} {platform.release()}"}


def provenance(top=TOP):
    """The series this tree holds now: commit, patches/ hash, version."""
    dirty = git("status", "--porcelain", "--", "patches", "base", top=top)
    changed = git("status", "--porcelain", "--untracked-files=no", top=top)
    qemu = os.path.join(top, "build", "qemu")
    tree = {"head": git("rev-parse", "HEAD", top=qemu),
            "branch": git("rev-parse", "--abbrev-ref", "HEAD", top=qemu),
            "uncommitted_changes": bool(git("status", "--porcelain",
                                            "--untracked-files=no", top=qemu))}
    return {"qemu_work_tree": tree,
            "qemu_work_tree_note": "build/qemu, whose build the run used: "
            "its commits may differ from patches/ until make export",
            "series_version": series_version(top),
            "series_commit": git("rev-parse", "HEAD", top=top),
            "series_commit_source": "git rev-parse HEAD when the run started"
            + ("; patches/ or base/ had uncommitted changes" if dirty else ""),
            "uncommitted_files": [line.split(None, 1)[1] for line in
                                  (changed or "").splitlines()],
            "patches_sha256": patches_sha256(top),
            "patches_sha256_of": "patches/series and the patches it lists, "
            "in order (bench/runs.py patches_sha256)"}


def new_run_dir(what, top=TOP):
    """bench/runs/DATE-VERSION-WHAT, made unique with -2, -3, ..."""
    base = os.path.join(RUNS, f"{time.strftime('%Y-%m-%d', time.gmtime())}"
                        f"-{series_version(top)}-{what}")
    path, n = base, 1
    while os.path.exists(path):
        n += 1
        path = f"{base}-{n}"
    return path


def write_manifest(out, new=False, **fields):
    """Write out/manifest.json: a new one, or update the one there."""
    path = os.path.join(out, "manifest.json")
    manifest = {}
    if os.path.exists(path) and not new:
        with open(path) as f:
            manifest = json.load(f)
    manifest.update(fields)
    manifest["run"] = os.path.basename(os.path.abspath(out))
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    return manifest


# -- results.json ------------------------------------------------------------

def cases_json(results, keys=BENCH_KEYS):
    """{(link, workload, mem, variant): [row, ...]} as a list of objects."""
    return [{**dict(zip(keys, k)), "runs": rows} for k, rows in results.items()]


def load_results(path):
    """A results.json and its cases as {key tuple: [row, ...]}, in either
    format (cases as objects, or the first format's "a|b|c|d" keys)."""
    with open(path) as f:
        saved = json.load(f)
    cases = saved["cases"]
    results = {}
    if isinstance(cases, dict):
        for key, rows in cases.items():
            k = key.split("|")
            if len(k) == 4:
                k[2] = int(k[2])
            results[tuple(k)] = rows
    else:
        for case in cases:
            keys = BENCH_KEYS if "link" in case else SNAPSHOT_KEYS
            results[tuple(case[k] for k in keys)] = case["runs"]
    return saved, results


# -- the index ---------------------------------------------------------------

def rates_text(rates):
    return ", ".join(f"{k} {v / 1e6:.0f} Mbit/s" for k, v in sorted(rates.items()))


def machine_text(m):
    cores = f"{m['nproc']} cores" if m.get("nproc") else None
    return ", ".join(x for x in (m.get("cpu"), cores, m.get("kernel")) if x)


def cells(row):
    """A table row whose cells may hold "|" (commands): escape those."""
    inner = row[2:-2].replace("|", "\\|").replace(" \\| ", " | ")
    return f"| {inner} |"


def write_index(runs=RUNS):
    """bench/runs/index.md: every run folder, newest first."""
    rows = []
    for name in sorted(os.listdir(runs), reverse=True):
        path = os.path.join(runs, name, "manifest.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            m = json.load(f)
        mach = m.get("machine") or {"cpu": "not recorded"}
        commit = (m.get("series_commit") or "?")[:10]
        if "recovered" in (m.get("series_commit_source") or ""):
            commit += " (from git log)"
        rows.append(cells(
            f"| [{name}]({name}/) | {m.get('measured', '?')} "
            f"| {m.get('series_version', '?')} | {commit} "
            f"| {(m.get('patches_sha256') or '-')[:12]} "
            f"| {m.get('what', '')} "
            f"| `{m.get('command', '?')}` "
            f"| {machine_text(mach)} "
            f"| {rates_text(m.get('link_tcp_bits_per_s') or {}) or '-'} |"))
    md = ("# Benchmark runs\n\n"
          "One folder per run, newest first; each has a manifest.json "
          "(what produced it) and its results.  Written by "
          "`python3 bench/runs.py` (bench.py and snapshot.py run it after "
          "each run); do not edit by hand.  \"from git log\": the run did "
          "not record its commit, the manifest names the last commit "
          "before the run started.  Commands are as they were run: the "
          "runs before 2026-12-07 name the folder they had then "
          "(manifest.json: folder_before).\n\n"
          "| run | measured | series | commit | patches/ sha256 | what "
          "| command | machine | links (TCP stream) |\n"
          "|---|---|---|---|---|---|---|---|---|\n"
          + "\n".join(rows) + "\n")
    with open(os.path.join(runs, "index.md"), "w") as f:
        f.write(md)
    return os.path.join(runs, "index.md")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    print(f"[runs] wrote {os.path.relpath(write_index(), TOP)}")
