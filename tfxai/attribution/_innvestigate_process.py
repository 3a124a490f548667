"""The innvestigate worker's child process: how it is started, described and stopped.

The child is ``<python> -c <bootstrap> _innvestigate_worker.py <fd>`` with
``TF_USE_LEGACY_KERAS=1`` (so that ``tf.keras`` is ``tf_keras`` there), talking over one end of
a socket pair (:mod:`tfxai.attribution._innvestigate_worker` gives the protocol). The handle on
it, :class:`tfxai.attribution.innvestigate.InnvestigateWorker`, uses these helpers.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO, Any

_WORKER_FILE = Path(__file__).with_name("_innvestigate_worker.py")

# Run in the child by ``python -c``: drop the working directory from sys.path (so that nothing
# there shadows innvestigate), then run the worker file with the connection on the given fd.
_BOOT = (
    "import os, runpy, sys\n"
    "if sys.path and sys.path[0] in ('', os.getcwd()):\n"
    "    del sys.path[0]\n"
    "from multiprocessing.connection import Connection\n"
    "runpy.run_path(sys.argv[1], init_globals={'_CONN': Connection(int(sys.argv[2]))},\n"
    "               run_name='__tfxai_innvestigate_worker__')\n"
)


def _spawn(python: str, cwd: str, log: IO[bytes]) -> tuple[subprocess.Popen, Connection]:
    """Start the worker file under ``python`` in ``cwd``, its output into ``log``; return the
    process and the caller's end of the connection."""
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1"}
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [python, "-c", _BOOT, str(_WORKER_FILE), str(theirs.fileno())],
            pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, env=env, cwd=cwd,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return proc, Connection(ours.detach())

def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        text = path.read_bytes()[-limit:].decode("utf-8", "replace").strip()
    except OSError:
        return ""
    return f"; last output of the worker:\n{text}" if text else ""


def _shutdown(proc: subprocess.Popen, conn: Connection, log: Any, tmpdir: str | None) -> None:
    """Finalizer: ask the worker to exit, then terminate/kill it; remove its directory."""
    try:
        if proc.poll() is None:
            try:
                conn.send(("close",))
            except (OSError, ValueError):
                pass
            for stop, wait in ((None, 5), (proc.terminate, 5), (proc.kill, 2)):
                if stop is not None and proc.poll() is None:
                    stop()
                try:
                    proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
    finally:
        for closing in (conn.close, log.close):
            try:
                closing()
            except OSError:
                pass
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)

