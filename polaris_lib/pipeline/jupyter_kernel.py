"""Jupyter kernels that are this project's Python: papermill and JupyterLab never pick another one.

A `python3` kernel spec found first on the Jupyter path (e.g. a user-level one in
~/.local/share/jupyter) may point at a different interpreter without the kit's pinned packages;
`ensure_kernel` checks which interpreter the spec launches and repairs it before a run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def kernel_python(name: str = "python3") -> str | None:
    """The interpreter a kernel spec launches (None when no such spec exists)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(name).argv
    except NoSuchKernel:
        return None
    exe = argv[0]
    # jupyter_client substitutes sys.executable for a bare "python"/"python3"/"python3.11"
    bare = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info[:2])}
    return sys.executable if exe in bare else exe


def _same(a: str | None, b: str) -> bool:
    return a is not None and os.path.realpath(a) == os.path.realpath(b)


def install_kernel(name: str, display_name: str | None = None, user: bool = False) -> None:
    """Register this interpreter's ipykernel as kernel `name` (sys.prefix, or the user's dir)."""
    where = ["--user"] if user else ["--sys-prefix"]
    cmd = [sys.executable, "-m", "ipykernel", "install", *where, "--name", name]
    if display_name:
        cmd += ["--display-name", display_name]
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def ensure_kernel(name: str = "python3", log=print) -> str:
    """Make kernel `name` launch sys.executable; returns that interpreter or raises RuntimeError."""
    found = kernel_python(name)
    if _same(found, sys.executable):
        return sys.executable
    log(
        f"[polaris] kernel {name!r} runs {found or 'nothing'}, not {sys.executable}: re-registering"
    )
    install_kernel(name)
    if not _same(kernel_python(name), sys.executable):
        # a spec earlier on the Jupyter path shadows ours: put this environment's first
        os.environ["JUPYTER_PATH"] = os.pathsep.join(
            [str(Path(sys.prefix) / "share" / "jupyter"), os.environ.get("JUPYTER_PATH", "")]
        ).rstrip(os.pathsep)
    found = kernel_python(name)
    if not _same(found, sys.executable):
        raise RuntimeError(
            f"kernel {name!r} launches {found}, not this environment's {sys.executable}; "
            f"remove the other spec (jupyter kernelspec list) or run from the project's .venv"
        )
    return sys.executable


def register_lab_kernel(name: str = "polaris-kit", user: bool = False) -> str:
    """Register the named kernel JupyterLab shows for this project (`make lab` / `polaris kernel`)."""
    install_kernel(name, display_name=f"Python ({name})", user=user)
    found = kernel_python(name)
    if not _same(found, sys.executable):
        raise RuntimeError(f"kernel {name!r} registered but launches {found}, not {sys.executable}")
    return found
