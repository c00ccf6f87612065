"""pipeline.seedpool: seeds in forked workers, one torch thread each; a failed worker loses only itself."""
import os
import signal
import threading

import pytest

from pathlib import Path

from pipeline import seedpool
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _job(folder, k, fate="ok"):
    import torch

    if fate == "raise":
        raise ValueError(f"job {k} failed")
    if fate == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    (folder / f"{k}.txt").write_text(str(torch.get_num_threads()))
    return {"k": k, "pid": os.getpid(), "threads": torch.get_num_threads()}


def test_values_in_order_from_workers_with_one_thread(tmp_path):
    values = seedpool.run_seeds(_job, [(tmp_path, k) for k in range(3)], workers=2)
    assert [v["k"] for v in values] == [0, 1, 2]
    assert all(v["pid"] != os.getpid() for v in values) and {v["threads"] for v in values} == {1}


def test_one_worker_runs_in_process(tmp_path):
    values = seedpool.run_seeds(_job, [(tmp_path, 0), (tmp_path, 1)], workers=1)
    assert {v["pid"] for v in values} == {os.getpid()}


def test_failed_and_killed_workers_lose_only_their_job(tmp_path):
    jobs = [(tmp_path, 0), (tmp_path, 1, "raise"), (tmp_path, 2, "kill"), (tmp_path, 3)]
    with pytest.raises(RuntimeError) as err:
        seedpool.run_seeds(_job, jobs, workers=2, names=["s0", "s1", "s2", "s3"])
    assert "s1: ValueError: job 1 failed" in str(err.value)
    assert "s2: worker killed by signal 9" in str(err.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.txt", "3.txt"]


def test_resolve_workers(monkeypatch):
    monkeypatch.setattr(seedpool, "cpu_cores", lambda: 2)
    assert seedpool.resolve_workers("auto", 3, "cpu", "x") == 3
    assert seedpool.resolve_workers("auto", 5, "cpu", "x") == 3
    assert seedpool.resolve_workers("auto", 1, "cpu", "x") == 1
    assert seedpool.resolve_workers("auto", 3, "cuda:0", "x") == 1
    assert seedpool.resolve_workers(2, 3, "cpu", "x") == 2
    assert seedpool.resolve_workers(2, 3, "cuda", "x") == 1
    for bad in (0, -1, "two", 1.5, True):
        with pytest.raises(ConfigError, match="detection.parallel_seeds"):
            seedpool.resolve_workers(bad, 3, "cpu", "detection.parallel_seeds")


_HELD = threading.Lock()


def _job_needing_the_lock(k):
    with _HELD:
        return k


def test_workers_of_a_threaded_process_do_not_inherit_locks_held_by_other_threads():
    """Another thread holds a lock the jobs take (as Prefect's loops, tqdm's monitor or an HTTP pool
    may at any instant): forked workers would hang on it forever; the fork-server workers run."""
    assert seedpool.start_method() == ("fork" if threading.active_count() == 1 else "forkserver")
    release = threading.Event()
    holder = threading.Thread(target=lambda: (_HELD.acquire(), release.wait(), _HELD.release()))
    holder.start()
    try:
        while not _HELD.locked():
            pass
        assert seedpool.start_method() == "forkserver"
        assert seedpool.run_seeds(_job_needing_the_lock, [(0,), (1,), (2,)], workers=2) == [0, 1, 2]
    finally:
        release.set()
        holder.join()


def test_fork_server_workers_do_not_rerun_the_main_module(tmp_path):
    """Under ``python -m <flow module>`` with threads alive, a worker must not re-import the main
    module (a flow module imports Prefect: seconds per worker), only the job's own module."""
    import subprocess
    import sys

    (tmp_path / "probe_job.py").write_text(
        "import os\ndef job(k):\n    return k, os.getpid()\n")
    (tmp_path / "probe_main.py").write_text(
        "import os, threading, time\nfrom pathlib import Path\nfrom pipeline import seedpool\nfrom probe_job import job\n"
        "Path(f'ran_{os.getpid()}').write_text('')\n"
        "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print(seedpool.run_seeds(job, [(0,), (1,)], workers=2))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "probe_main"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    workers = [pid for _, pid in eval(done.stdout)]
    ran = [int(p.name[4:]) for p in tmp_path.glob("ran_*")]
    assert len(ran) == 1 and ran[0] not in workers          # the main module ran in the parent only


def test_zygote_forks_the_workers_of_a_threaded_process(tmp_path):
    """A stage's main starts the zygote while it has one thread; once a thread holds a lock the jobs
    take, the zygote's workers still run (values in order, one thread each, not forked from the
    threaded parent), a killed or failing worker loses only its job, and the zygote ends with its
    parent."""
    import subprocess
    import sys

    (tmp_path / "probe_zygote_job.py").write_text('''
import os, signal, threading
HELD = threading.Lock()
def job(k, fate="ok"):
    import torch
    with HELD:
        if fate == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fate == "raise":
            raise ValueError(f"job {k} failed")
        return {"k": k, "ppid": os.getppid(), "threads": torch.get_num_threads()}
''')
    (tmp_path / "zygote_probe.py").write_text('''
import json, os, threading
from pipeline import seedpool
import probe_zygote_job
assert seedpool.start_zygote()
release = threading.Event()
holder = threading.Thread(target=lambda: (probe_zygote_job.HELD.acquire(), release.wait()), daemon=True)
holder.start()
while not probe_zygote_job.HELD.locked():
    pass
values = seedpool.run_seeds(probe_zygote_job.job, [(0,), (1,), (2,)], workers=2)
try:
    seedpool.run_seeds(probe_zygote_job.job, [(0,), (1, "kill"), (2, "raise")], workers=2, names=["a", "b", "c"])
except RuntimeError as err:
    failure = str(err)
print(json.dumps({"values": values, "failure": failure, "parent": os.getpid(), "zygote": seedpool._ZYGOTE.pid}))
''')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    done = subprocess.run([sys.executable, "-m", "zygote_probe"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import json

    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert [v["k"] for v in out["values"]] == [0, 1, 2] and {v["threads"] for v in out["values"]} == {1}
    assert {v["ppid"] for v in out["values"]} == {out["zygote"]} != {out["parent"]}
    assert "b: worker killed by signal 9" in out["failure"] and "c: ValueError: job 2 failed" in out["failure"]
    assert "a:" not in out["failure"]
    with pytest.raises(ProcessLookupError):     # the zygote exited with its parent
        for _ in range(100):
            os.kill(out["zygote"], 0)
            import time
            time.sleep(0.05)
