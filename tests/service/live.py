"""A real `recsys serve` process for tests, over loopback."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.service.conftest import Served

RECSYS = str(Path(sys.executable).parent / "recsys")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    condition: Callable[[], bool],
    proc: subprocess.Popen[bytes] | None = None,
    limit: float = 60,
) -> None:
    """Poll `condition` (connection errors count as not yet) while `proc` stays alive."""
    deadline = time.monotonic() + limit
    while True:
        try:
            if condition():
                return
        except httpx.TransportError:
            pass
        assert proc is None or proc.poll() is None, "the service exited"
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.2)


@contextmanager
def running(
    served: Served, log_dir: Path, **settings: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`recsys serve` on a free port for `served`, in development mode, with extra RECSYS_*
    settings; yields (base URL, process) once /readyz answers 200, kills it afterwards."""
    port = free_port()
    workers = settings.pop("workers", "1")  # the one option that is not a RECSYS_* setting
    env = {
        **os.environ,
        "RECSYS_DATABASE_URL": served.url,
        "RECSYS_ARTIFACT_DIR": str(served.artifact_dir),
        "RECSYS_DEV_MODE": "true",
        **{f"RECSYS_{k.upper()}": v for k, v in settings.items()},
    }
    log = (log_dir / f"serve-{port}.log").open("w")
    proc = subprocess.Popen(
        [RECSYS, "serve", "--port", str(port), "--workers", workers, "--log-level", "warning"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,  # a process group: its workers go down with it
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: httpx.get(f"{base}/readyz", timeout=1).status_code == 200, proc)
        yield base, proc
    finally:
        # The whole group: killing only the server would leave --workers children running.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        log.close()
