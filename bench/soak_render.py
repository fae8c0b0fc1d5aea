"""Soak / fault test of `thactl render`: many models, many shards, SIGKILLs at random moments,
resume, then full verification.

    .venv/bin/python bench/soak_render.py [--copies 4] [--count 1500] [--shard-size 25]
        [--size 64] [--workers 2] [--kills 5] [--budget 360] [--seed 0] [--keep]

1. Builds a models folder in a temp dir (never in the repository): --copies copies of every
   model folder of ../shared/models under different names (hard links, or copies when
   hard links are impossible), so each copy is another "model source" for the splits.
2. Runs `thactl render` on it and SIGKILLs it at random moments --kills times: either the
   whole process group (main process + render workers) or ONE render worker process.
   After a single-worker kill the main process must either carry on or exit; if it makes
   no progress for --stall seconds it counts as a hang (then the group is killed too).
   Every kill is followed by a plain re-run of the same command (resume).
3. Lets the last run finish, then verifies:
   * `thactl inspect OUT --verify` exits 0;
   * its own check, independent of thactl's: every shard listed in manifest.json exists,
     opens, is complete, holds exactly the listed number of examples; per-split totals
     equal the requested counts (examples lost = requested - found, must be 0); no
     duplicate examples (sha256 over pose + morphed + posed image bytes, across all
     shards); no model in two splits; no temporary shard files left behind; the
     manifest says complete;
   * determinism: every 8th shard is rendered again from scratch without kills
     (`--part`) in another folder and must be byte-identical in poses and images.
4. Prints: examples rendered, kills survived (and of which kind), hangs, examples lost,
   duplicates, RSS (main + workers) at the start and the end of the final run, peak RSS,
   wall time. Exit status 0 only if everything holds.

The machine may be shared: timings are indicative only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
THACTL = str(Path(sys.executable).parent / "thactl")
SHARED = Path(os.environ.get("THACTL_TEST_MODELS", REPO.parent / "shared" / "models"))


# ------------------------------------------------------------------ processes

def children(pid: int) -> list[int]:
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def tree(pid: int) -> list[int]:
    todo, seen = [pid], []
    while todo:
        p = todo.pop()
        seen.append(p)
        todo += children(p)
    return seen


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def rss_mb(pids) -> float:
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def render_workers(pid: int) -> list[int]:
    return [c for c in tree(pid)[1:] if "spawn_main" in cmdline(c) or "multiprocessing" in cmdline(c)
            and "resource_tracker" not in cmdline(c)]


def progress_marker(out: Path) -> tuple:
    """Something that changes whenever the render makes progress."""
    items = []
    for p in sorted(out.rglob("*.h5")) + sorted(out.rglob("*.tmp")) + [out / "manifest.json"]:
        try:
            st = p.stat()
            items.append((p.name, st.st_size, st.st_mtime_ns))
        except OSError:
            pass
    cache = out / ".cache"
    if cache.is_dir():
        for p in cache.rglob("*"):
            try:
                items.append((p.name, p.stat().st_size, p.stat().st_mtime_ns))
            except OSError:
                pass
    return tuple(items)


# ------------------------------------------------------------------ setup

def build_models(dst: Path, copies: int) -> int:
    folders = [d for d in sorted(SHARED.iterdir()) if d.is_dir() and not d.name.startswith("_")
               and any(p.suffix.lower() in (".pmx", ".pmd") for p in d.rglob("*"))]
    n_models = 0
    for k in range(copies):
        for d in folders:
            target = dst / f"{d.name}-copy{k:02d}"
            for src in d.rglob("*"):
                if src.is_dir():
                    continue
                t = target / src.relative_to(d)
                t.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(src, t)
                except OSError:
                    shutil.copy2(src, t)
                if src.suffix.lower() in (".pmx", ".pmd"):
                    n_models += 1
    return n_models


# ------------------------------------------------------------------ verification

def verify(out: Path, requested: dict[str, int]) -> dict:
    import h5py
    import numpy as np

    from dataset.shards import ShardReader
    from dataset.errors import ShardError

    res = dict(problems=[], examples=0, duplicates=0, lost=0, shards=0)
    man = json.loads((out / "manifest.json").read_text())
    if not man.get("complete"):
        res["problems"].append("manifest not complete")
    seen: dict[bytes, str] = {}
    model_split: dict[str, str] = {}
    for split in ("train", "validation", "test"):
        info = man["splits"][split]
        found = 0
        if info["examples"] != requested[split]:
            res["problems"].append(f"{split}: manifest lists {info['examples']} examples, requested {requested[split]}")
        for sh in info["shards"]:
            p = out / sh["file"]
            res["shards"] += 1
            try:
                with ShardReader(p) as r:
                    if not r.complete:
                        res["problems"].append(f"{p}: not complete")
                    if r.num_examples != sh["examples"]:
                        res["problems"].append(f"{p}: {r.num_examples} examples, manifest {sh['examples']}")
                    for mp_ in set(r.model_path):
                        if model_split.setdefault(mp_, split) != split:
                            res["problems"].append(f"model {mp_} in {model_split[mp_]} and {split}")
                    mo = r.file["morphed_image"]
                    po = r.file["posed_image"]
                    for i in range(r.num_examples):
                        h = hashlib.sha256(r.pose[i].tobytes() + np.ascontiguousarray(mo[i]).tobytes()
                                           + np.ascontiguousarray(po[i]).tobytes()).digest()
                        if h in seen:
                            res["duplicates"] += 1
                            if res["duplicates"] <= 5:
                                res["problems"].append(f"duplicate: {p}[{i}] == {seen[h]}")
                        else:
                            seen[h] = f"{p}[{i}]"
                    found += r.num_examples
            except (ShardError, OSError) as e:
                res["problems"].append(f"{p}: {e}")
        res["examples"] += found
        res["lost"] += max(0, requested[split] - found)
        if found != requested[split]:
            res["problems"].append(f"{split}: {found} examples found, {requested[split]} requested")
    listed = {str(out / sh["file"]) for s in man["splits"].values() for sh in s["shards"]}
    on_disk = {str(p) for p in out.glob("*/shard-*.h5")}
    if on_disk - listed:
        res["problems"].append(f"shards not in the manifest: {sorted(on_disk - listed)[:3]}")
    tmps = sorted(str(p) for p in out.rglob("*.tmp"))
    res["tmp_left"] = len(tmps)
    if tmps:
        res["problems"].append(f"{len(tmps)} temporary files left: {tmps[:3]}")
    del h5py
    return res


def same_shards(a: Path, b: Path) -> tuple[int, list[str]]:
    import numpy as np

    from dataset.shards import ShardReader

    n, probs = 0, []
    for p in sorted(b.glob("*/shard-*.h5")):
        q = a / p.parent.name / p.name
        with ShardReader(p) as rb, ShardReader(q) as ra:
            n += 1
            if not np.array_equal(ra.pose, rb.pose) or ra.model_path != rb.model_path:
                probs.append(f"{q}: poses/models differ from the uninterrupted render")
                continue
            for name in ("rest_image", "morphed_image", "posed_image"):
                if not np.array_equal(ra.file[name][...], rb.file[name][...]):
                    probs.append(f"{q}: {name} differs from the uninterrupted render")
    return n, probs


# ------------------------------------------------------------------ main

def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--shard-size", type=int, default=100)
    ap.add_argument("--kill-after", type=float, nargs=2, default=(5.0, 35.0), metavar=("MIN", "MAX"),
                    help="each kill happens this many seconds (uniform) after the run start or the "
                         "previous worker kill")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--budget", type=float, default=360, help="seconds for the whole soak (best effort)")
    ap.add_argument("--stall", type=float, default=45, help="seconds without progress = hang")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temp folder")
    ap.add_argument("--no-determinism", action="store_true", help="skip the --part re-render comparison")
    return ap.parse_args(argv)


class Soak:
    """Runs one render command again and again, killing it as planned, until a run completes or no
    kill is left; counts kills, hangs and runs, and samples the RSS of the last run."""

    def __init__(self, args: argparse.Namespace, cmd: list[str], out: Path, log_path: Path,
                 rnd: random.Random):
        self.args, self.cmd, self.out, self.log_path, self.rnd = args, cmd, out, log_path, rnd
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.kills = {"group": 0, "worker": 0}
        self.hangs = 0
        self.runs = 0
        self.worker_exit: list[int] = []
        self.rss_samples: list[tuple[float, float, int]] = []   # (s since run start, MB, shards)
        self.kill_plan = []            # (kind, seconds after the run start or the last kill)
        for k in range(args.kills):
            kind = "worker" if (args.workers > 1 and k % 2 == 1) else "group"
            self.kill_plan.append((kind, rnd.uniform(args.kill_after[0], args.kill_after[1])))

    def launch(self):
        self.runs += 1
        logf = open(self.log_path, "ab")
        logf.write(f"\n==== run {self.runs} ====\n".encode())
        logf.flush()
        return subprocess.Popen(self.cmd, stdout=logf, stderr=logf, start_new_session=True, env=self.env), logf

    @staticmethod
    def kill_group(pr) -> None:
        try:
            os.killpg(pr.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        pr.wait()

    def run_all(self, deadline: float) -> int | None:
        """Render runs until one completes or no kill is left; the last run's exit status."""
        while True:
            pr, logf = self.launch()
            plan = self.kill_plan.pop(0) if self.kill_plan else None
            plan, worker_kills = self.watch(pr, plan, deadline)
            rc = pr.wait()
            logf.close()
            if worker_kills:
                self.worker_exit.append(rc)
                print(f"  run {self.runs}: main process ended with exit status {rc} after "
                      f"{worker_kills} worker kill(s)")
            if rc == 0:
                # finished: the data is complete (later planned kills are moot)
                if plan is not None:
                    print(f"  run {self.runs}: finished before the next planned kill")
                return rc
            if plan is None:            # the last run (no kill left): whatever it ended with
                return rc

    def watch(self, pr, plan, deadline: float):
        """Poll one run until it ends: sample its RSS, carry out the kills planned for it, kill it
        when it hangs or overruns; returns (the planned kill not carried out, worker kills)."""
        start = time.monotonic()
        plan_t0 = start                 # a plan's delay counts from the run start or the last kill
        last_marker, last_change = progress_marker(self.out), time.monotonic()
        worker_kills = 0
        self.rss_samples.clear()        # RSS figures are those of the last (completing) run
        while pr.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            self.sample_rss(pr, now - start)
            m = progress_marker(self.out)
            if m != last_marker:
                last_marker, last_change = m, now
            if plan is not None and now - plan_t0 >= plan[1]:
                if not self.kill(pr, plan, now - start):
                    break               # the whole group: this run is over
                worker_kills += 1
                last_change = now
                plan = self.kill_plan.pop(0) if self.kill_plan else None    # the run goes on: next kill
                plan_t0 = now
            if now - last_change > self.args.stall:
                self.hangs += 1
                print(f"  run {self.runs}: no progress for {self.args.stall:.0f} s"
                      + (" after a worker kill" if worker_kills else "") + ": HANG, killing the group")
                self.kill_group(pr)
                break
            if plan is None and now > deadline + 600:
                print("  final run exceeded the budget by 10 minutes; killing")
                self.kill_group(pr)
                break
        return plan, worker_kills

    def sample_rss(self, pr, elapsed: float) -> None:
        r = rss_mb(tree(pr.pid))
        if r > 0:
            self.rss_samples.append((elapsed, r, len(list(self.out.glob("*/shard-*.h5")))))

    def kill(self, pr, plan, elapsed: float) -> bool:
        """Carry out a planned kill: True when one render worker was killed (the run goes on), False
        when the whole process group was (a group kill, or no render worker yet: validating)."""
        ws = render_workers(pr.pid) if plan[0] == "worker" else []
        if not ws:
            self.kill_group(pr)
            self.kills["group"] += 1
            print(f"  run {self.runs}: SIGKILL process group after {elapsed:.1f} s")
            return False
        victim = self.rnd.choice(ws)
        os.kill(victim, signal.SIGKILL)
        self.kills["worker"] += 1
        print(f"  run {self.runs}: SIGKILL one render worker (pid {victim}) after {elapsed:.1f} s")
        return True


def check_output(args: argparse.Namespace, cmd: list[str], out: Path, work: Path) -> dict:
    """`thactl inspect --verify`, the independent verification and the --part re-render comparison."""
    ins = subprocess.run([THACTL, "inspect", str(out), "--verify"], capture_output=True, text=True)
    verify_ok = ins.returncode == 0 and "verify: OK" in ins.stdout
    print(f"thactl inspect --verify: exit {ins.returncode}" + (" (verify: OK)" if verify_ok else ""))
    if not verify_ok:
        print((ins.stdout + ins.stderr)[-2000:])
    man = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else None
    requested = {s: man["splits"][s]["examples"] for s in ("train", "validation", "test")} if man else {}
    if man:
        requested["train"] = args.count          # what we asked for, not what the manifest says
    res = verify(out, requested) if man else dict(problems=["no manifest"], examples=0, duplicates=0,
                                                   lost=args.count, shards=0, tmp_left=0)
    det_n, det_probs = 0, []
    if not args.no_determinism and man:
        ref = work / "ref"
        refcmd = [c if c != str(out) else str(ref) for c in cmd] + ["--part", "1/8"]
        rr = subprocess.run(refcmd, capture_output=True, text=True)
        if rr.returncode != 0:
            det_probs.append(f"reference render failed: {rr.stderr[-300:]}")
        else:
            det_n, det_probs = same_shards(out, ref)
    return dict(verify_ok=verify_ok, requested=requested, res=res, det_n=det_n, det_probs=det_probs,
                problems=res["problems"] + det_probs)


def rss_summary(samples: list[tuple[float, float, int]]) -> tuple[float, float, float, list]:
    """RSS of the final run once it renders (its first new shard written) and at its end, the peak,
    and five samples across it."""
    shards0 = samples[0][2] if samples else 0
    rendering = [x for x in samples if x[2] > shards0] or samples
    rss_start = rendering[0][1] if rendering else 0
    rss_end = rendering[-1][1] if rendering else 0
    rss_peak = max((x[1] for x in samples), default=0)
    trail = [rendering[int(f * (len(rendering) - 1))] for f in (0, 0.25, 0.5, 0.75, 1)] if rendering else []
    return rss_start, rss_end, rss_peak, trail


def report(args: argparse.Namespace, soak: Soak, check: dict, t0: float) -> None:
    res, requested = check["res"], check["requested"]
    rss_start, rss_end, rss_peak, trail = rss_summary(soak.rss_samples)
    print("=" * 70)
    print(f"examples rendered (found, verified): {res['examples']} in {res['shards']} shards "
          f"(requested train {args.count} + validation {requested.get('validation')} + test {requested.get('test')})")
    print(f"kills survived: {soak.kills['group'] + soak.kills['worker']} (process group: {soak.kills['group']}, "
          f"single render worker: {soak.kills['worker']}); resumes: {soak.runs - 1}")
    print(f"hangs (no progress for {args.stall:.0f} s): {soak.hangs}")
    print(f"examples lost: {res['lost']}")
    print(f"duplicates: {res['duplicates']}")
    print(f"temporary files left: {res.get('tmp_left')}")
    print(f"determinism: {check['det_n']} shards re-rendered without kills (--part 1/8), "
          f"{'identical' if not check['det_probs'] else 'DIFFERENT'}")
    print(f"RSS (main + workers) of the final, completing run: start of rendering {rss_start:.0f} MB, "
          f"end {rss_end:.0f} MB, peak {rss_peak:.0f} MB")
    if trail:
        print("  over that run: " + ", ".join(f"{t:.0f} s {r:.0f} MB ({n} shards)" for t, r, n in trail))
    print(f"thactl inspect --verify: {'OK' if check['verify_ok'] else 'FAILED'}")
    print(f"wall time: {time.monotonic() - t0:.0f} s (machine shared; indicative only)")
    if check["problems"]:
        print(f"PROBLEMS ({len(check['problems'])}):")
        for p in check["problems"][:20]:
            print("  " + p)


def main(argv=None) -> int:
    args = parse_args(argv)
    if not SHARED.is_dir():
        print(f"no models at {SHARED}", file=sys.stderr)
        return 2
    rnd = random.Random(args.seed)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="thactl-soak-"))
    models, out = work / "models", work / "out"
    n_models = build_models(models, args.copies)
    print(f"soak: {n_models} model files in {args.copies} copies of each folder under {models}")
    cmd = [THACTL, "render", "--models", str(models), "--out", str(out), "--count", str(args.count),
           "--shard-size", str(args.shard_size), "--size", str(args.size), "--workers", str(args.workers),
           "--seed", "7", "-q"]
    print("command:", " ".join(cmd))
    soak = Soak(args, cmd, out, work / "render.log", rnd)
    final_rc = soak.run_all(deadline=t0 + args.budget)
    print(f"render runs: {soak.runs}, final exit status {final_rc}, wall {time.monotonic() - t0:.0f} s")
    if final_rc != 0:
        print("last log lines:\n" + soak.log_path.read_text(errors="replace")[-1500:])
    check = check_output(args, cmd, out, work)
    report(args, soak, check, t0)
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    res = check["res"]
    ok = (final_rc == 0 and check["verify_ok"] and not check["problems"] and res["lost"] == 0
          and res["duplicates"] == 0 and soak.hangs == 0)
    print("SOAK " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
