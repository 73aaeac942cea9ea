"""A fork server for the kill tests: `python -m tests.extract_zygote` imports the CLI (torch, zarr) once, then runs
each requested command in a forked child, so a test can start and SIGKILL many `dra-pipeline` processes without
paying the 2-3 s import each time.

Protocol, one line each way after the zygote's `READY`: `RUN {"args": [...], "pause_s": 0}` -> `PID n` (the
child runs `dra-pipeline ARGS`, output to /dev/null; pause_s > 0 delays zarr's group creation by that much: a slow
filesystem); `WAIT n` -> `EXIT code` (negative: killed by that signal). The zygote itself never runs torch code,
so its children start with fresh thread pools.
"""

import json
import os
import sys
import time

import zarr

import dra_pipeline.jobs.extract  # noqa: F401  (imported here once: the teachers, stages and store)
from dra_pipeline.cli import main


def child(args: list[str], pause_s: float) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    if pause_s:
        open_group = zarr.open_group

        def slow(*a, **k):
            time.sleep(pause_s)
            return open_group(*a, **k)

        zarr.open_group = slow
    try:
        main(args, prog_name="dra-pipeline", standalone_mode=True)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        code = 99
    os._exit(code)


def serve() -> None:
    print("READY", flush=True)
    for line in sys.stdin:
        verb, _, rest = line.strip().partition(" ")
        if verb == "RUN":
            request = json.loads(rest)
            pid = os.fork()
            if pid == 0:
                child(request["args"], float(request.get("pause_s", 0)))
            print(f"PID {pid}", flush=True)
        elif verb == "WAIT":
            _, status = os.waitpid(int(rest), 0)
            print(f"EXIT {os.waitstatus_to_exitcode(status)}", flush=True)


if __name__ == "__main__":
    serve()
