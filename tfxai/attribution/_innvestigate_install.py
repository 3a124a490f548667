"""What the innvestigate worker's Python has installed, and the pip commands that add the rest.

innvestigate 2.1.2 [Alber et al. 2019, "iNNvestigate Neural Networks!", JMLR 20(93)] needs
Keras 2 (``tf_keras`` matching TensorFlow's major.minor, for TensorFlow ≥ 2.16) in the worker's
interpreter. :func:`_run_probe` reads that interpreter's installed distributions (nothing is
imported), :func:`_missing` says what is missing and :func:`install_commands` gives the pip
commands. The cached checks built on them are in :mod:`tfxai.attribution.innvestigate`.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

#: The pip command that installs innvestigate without touching TensorFlow, Keras or numpy
#: (``--ignore-requires-python``: innvestigate 2.1.2 declares Python < 3.12 but runs there).
INSTALL_INNVESTIGATE = "pip install --no-deps --ignore-requires-python innvestigate==2.1.2"

# What the worker's Python has installed; distribution metadata only, nothing is imported.
_PROBE = (
    "import importlib.metadata as md, importlib.util as u, json, sys\n"
    "def v(*names):\n"
    "    for n in names:\n"
    "        try:\n"
    "            return md.version(n)\n"
    "        except md.PackageNotFoundError:\n"
    "            pass\n"
    "    return None\n"
    "print(json.dumps({'python': sys.version.split()[0],\n"
    "    'tensorflow': v('tensorflow', 'tensorflow-cpu', 'tensorflow-macos', 'tensorflow-intel',\n"
    "                    'tf-nightly', 'tf-nightly-cpu'),\n"
    "    'tf_keras': v('tf_keras', 'tf-keras') if u.find_spec('tf_keras') else None,\n"
    "    'innvestigate': v('innvestigate') if u.find_spec('innvestigate') else None}))\n"
)


def _minor(version: str | None) -> tuple[int, int] | None:
    try:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)
    except (ValueError, TypeError):
        return None


def install_commands(tf_version: str | None, python: str | None = None,
                     python_version: str | None = None) -> list[str]:
    """The pip commands that install the worker's optional dependencies into ``python``:
    tf_keras matching ``tf_version`` (for TensorFlow ≥ 2.16, whose ``tf.keras`` is Keras 3)
    and innvestigate 2.1.2 with ``--no-deps`` (plus ``--ignore-requires-python`` on Python
    ≥ 3.12, or when the Python version is not known)."""
    prefix = f"{python} -m " if python else ""
    cmds = []
    mm = _minor(tf_version)
    if mm is None or mm >= (2, 16):
        major, minor = mm or _minor(_local_tf_version()) or (2, 21)
        cmds.append(f'{prefix}pip install "tf_keras~={major}.{minor}.0"')
    if (_minor(python_version) or (3, 99)) >= (3, 12):
        cmds.append(f"{prefix}{INSTALL_INNVESTIGATE}")
    else:
        cmds.append(f"{prefix}pip install --no-deps innvestigate==2.1.2")
    return cmds


def _local_tf_version() -> str | None:
    try:
        import tensorflow as tf

        return str(tf.__version__)
    except ImportError:  # pragma: no cover - tfxai needs TensorFlow
        return None



def _run_probe(python: str) -> dict[str, Any]:
    try:
        out = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"cannot run {python}: {type(exc).__name__}: {exc}"}
    if out.returncode != 0:
        return {"error": f"{python} failed: {out.stderr.strip()[-500:]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _missing(python: str, info: dict[str, Any]) -> tuple[str | None, list[str]]:
    """``(None, [])`` when the worker can run with what ``info`` (:func:`_run_probe`) lists,
    else ``(reason, install commands)``."""
    if "error" in info:
        return f"the innvestigate worker's Python is unusable: {info['error']}", []
    tf_version = info.get("tensorflow")
    problems = []
    if tf_version is None:
        problems.append("TensorFlow is not installed")
        cmds = [f'{python} -m pip install "tensorflow=={_local_tf_version()}"'] if \
            _local_tf_version() else []
        cmds += install_commands(_local_tf_version(), python, info.get("python"))
    else:
        cmds = install_commands(tf_version, python, info.get("python"))
        if (_minor(tf_version) or (99, 0)) >= (2, 16):
            if info.get("tf_keras") is None:
                problems.append("tf_keras (Keras 2) is not installed")
            elif _minor(info["tf_keras"]) != _minor(tf_version):
                problems.append(f"tf_keras {info['tf_keras']} does not match TensorFlow "
                                f"{tf_version}")
    if info.get("innvestigate") is None:
        problems.append("innvestigate is not installed")
    if not problems:
        return None, []
    reason = (f"the innvestigate reference needs innvestigate 2.1.2 and Keras 2 (tf_keras) in "
              f"the worker's Python {python} (TensorFlow {tf_version or 'missing'}): "
              f"{'; '.join(problems)}. Install them with:\n  " + "\n  ".join(cmds))
    return reason, cmds
