#!/usr/bin/python3
"""One-off (run once, 2026-12-07): manifests for the runs made before
bench/runs existed, and their results.json with cases as objects.

The series commit of an old run is recovered from git log: the last
commit before the run's start (its "measured" time); what the work tree
held beyond that commit is not known, so patches_sha256 is null, and
patches_sha256_at_series_commit hashes patches/ as committed there.
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runs import RUNS, cases_json, git, load_results, write_index, write_manifest  # noqa: E402

MOVE = "604d5e7"     # the commit that moved the folders to bench/runs

# new folder: (old path, series as README describes it, what)
OLD = {
    "2026-11-26-v1-loopback": ("bench/results.json", "v1", "the 12 patches of v1 as final that day (rerun after the last change to patch 11)"),
    "2026-11-26-v1-links": ("bench/links", "v1", "v1 before the last change to patch 11 (held-back pages count as pending)"),
    "2026-11-27-v2-loopback": ("bench/v2", "v2", "a first short run of v2 (written to /tmp, then copied to bench/v2)"),
    "2026-11-27-v2-snapshot": ("bench/snapshot", "v2", "make snapshot-bench with v2"),
    "2026-11-27-v3": ("bench/v3", "v3", "v3's first run, before patch 1's last change"),
    "2026-11-27-v3b": ("bench/v3b", "v3", "v3 with patch 1's zero pages that do not mark a page received"),
    "2026-11-27-v3b-8g": ("bench/v3b-8g", "v3", "as 2026-11-27-v3b"),
    "2026-11-27-v3b-8g-wait3s": ("bench/v3b-8g-wait3s", "v3", "as 2026-11-27-v3b, free-page-hint-wait 3 s"),
    "2026-11-27-v3b-busy": ("bench/v3b-busy", "v3", "as 2026-11-27-v3b"),
    "2026-11-27-v3c": ("bench/v3c", "v3", "v3 after its second review (before v4's patch 13)"),
    "2026-11-27-v3c-8g": ("bench/v3c-8g", "v3", "as 2026-11-27-v3c"),
    "2026-11-27-v3c-busy": ("bench/v3c-busy", "v3", "as 2026-11-27-v3c"),
    "2026-11-27-v4-10g": ("bench/v4", "v4", "v4 before its second maintainer's read"),
    "2026-11-27-v4-links": ("bench/v4-links", "v4", "v4 before its second maintainer's read"),
    "2026-11-28-v4-8g-links": ("bench/v4-8g-links", "v4", "v4 after its second maintainer's read"),
}


def patches_hash_at(commit):
    h = hashlib.sha256()
    series = git("show", f"{commit}:patches/series")
    if series is None:
        return None
    series += "\n"
    h.update(series.encode())
    for name in series.split():
        h.update(git("show", f"{commit}:patches/{name}").encode() + b"\n")
    return h.hexdigest()


def recovered(old, measured):
    commit = git("rev-list", "-1", f"--before={measured}", MOVE + "^")
    minute = measured[:16]
    same = git("log", "--format=%h %cd", "--date=iso", f"--since={minute}:00 UTC",
               f"--until={minute}:59 UTC", MOVE + "^")
    extra = ({"series_commit_ambiguous": "the run's start is known to the "
              "minute only; these commits were made in that minute and may "
              "be in it too: " + "; ".join(same.splitlines())} if same else {})
    return {**extra,
        "series_commit": commit,
        "series_commit_source": "recovered from git log: the last commit "
        f"before the run's start ({measured}); uncommitted changes of that "
        "moment are not known",
        "results_committed_in": git("log", "-1", "--format=%H", MOVE + "^",
                                    "--", old),
        "folder_before": ("bench/results.{json,md,png} (top level)" if old == "bench/results.json" else old + "/"),
        "patches_sha256": None,
        "patches_sha256_note": "not recorded by the run (bench.py recorded "
        "no provenance before 2026-12-07); see patches_sha256_at_series_commit",
        "patches_sha256_at_series_commit": patches_hash_at(commit),
    }


def machine(text):
    cpu, cores, mem, kernel = text.split(", ")
    return {"nproc": int(cores.split()[0]), "cpu": cpu,
            "mem_gib": int(mem.split()[0]), "kernel": kernel}


def what(cmd):
    a = cmd.split()
    opt = {a[i][2:]: a[i + 1] for i in range(len(a) - 1) if a[i].startswith("--")}
    if "mem" in opt:
        return f"snapshot: {opt['mem']} MiB; {opt.get('modes', '')}; {opt.get('runs')} runs"
    return (f"{opt.get('sizes')} MiB; {opt.get('workloads')}; "
            f"{opt.get('links')}; {opt.get('runs')} run(s)"
            + ("; init_on_alloc " + opt["init-on-alloc"] if "init-on-alloc" in opt else "")
            + ("; hint wait " + opt["hint-wait"] + " ms" if "hint-wait" in opt else ""))


def main():
    for name, (old, version, note) in OLD.items():
        out = os.path.join(RUNS, name)
        path = os.path.join(out, "results.json")
        saved, results = load_results(path)
        snapshot = "mode" in next(iter(next(iter(results.values()))))
        saved["cases"] = cases_json(results, ("mode", "variant") if snapshot
                                    else ("link", "workload", "mem_mib", "variant"))
        with open(path, "w") as f:
            json.dump(saved, f, indent=1)
        tool = "make snapshot-bench SNAPSHOT_ARGS" if snapshot else "make bench BENCH_ARGS"
        write_manifest(out, tool="bench/snapshot.py" if snapshot else "bench/bench.py",
                       measured=saved["measured"], series_version=version,
                       series_note=note, what=what(saved["command"]),
                       command=f"{tool}='{saved['command']}'",
                       machine=machine(saved["machine"]), accel=saved["accel"],
                       link_tcp_bits_per_s=saved.get("link_tcp_bits_per_s") or {},
                       **recovered(old, saved["measured"]))
    write_manifest(
        os.path.join(RUNS, "2026-11-28-v4-matrix"), tool="bench/bench.py --merge",
        measured="2026-11-28 02:04 UTC (merged; the runs: see sources)",
        series_version="v4", series_note="merged from three v4 runs; the "
        "first two before, the third after v4's second maintainer's read",
        what="merge: 2 and 8 GiB; idle, freed, busy; loopback, 1g, 10g; 3 runs",
        command="/usr/bin/python3 bench/bench.py --merge bench/runs/2026-11-27-v4-10g,"
        "bench/runs/2026-11-27-v4-links,bench/runs/2026-11-28-v4-8g-links "
        "--out bench/runs/2026-11-28-v4-matrix",
        command_then="bench/bench.py --merge bench/v4,bench/v4-links,bench/v4-8g-links --out bench/v4-matrix",
        sources=["2026-11-27-v4-10g", "2026-11-27-v4-links", "2026-11-28-v4-8g-links"],
        machine=machine("AMD EPYC, 2 cores, 23 GiB, Linux 6.18.44-fc-v782"),
        link_tcp_bits_per_s={}, link_rates_note="each source run's manifest",
        **{k: v for k, v in recovered("bench/v4-matrix", "2026-11-28 02:04 UTC").items()
           if k != "series_commit_ambiguous"})
    write_manifest(
        os.path.join(RUNS, "2026-11-28-v4-profile"), tool="bench/profile_migration.py",
        measured="2026-11-28 00:18 UTC (to 00:35, one migration a file)",
        series_version="v4", series_note="v4 before its second maintainer's read",
        what="profiles: idle 2 and 8 GiB, busy 2 GiB; per-thread CPU, perf",
        command="make profile PROFILE_ARGS='--workload idle|busy --mem 2048|8192 "
        "--variant V' (one per file; outputs copied from build/profile-*)",
        machine=None, machine_note="not recorded by the tool; the benchmark "
        "runs of the same night: AMD EPYC, 2 cores, 23 GiB, Linux 6.18.44-fc-v782",
        link_tcp_bits_per_s={}, link_rates_note="loopback only",
        **recovered("bench/profile-v4", "2026-11-28 00:18 UTC"))
    print(write_index())


if __name__ == "__main__":
    main()
