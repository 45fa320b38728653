"""The torchvision clash: a torchvision built for another torch (a CUDA build beside the CPU torch, or another
release) fails on import with ``operator torchvision::nms does not exist``, and transformers imports it while
loading any image processor. lmms-eval requires torchvision, so a plain ``pip install`` can bring one that
does not fit. :func:`check_torchvision` tells from the installed versions alone (no torch import) and says what
to do in one line.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from icu_tasks.errors import ConfigError

#: torchvision 0.N pairs with torch 2.(N - 15) (0.28 with 2.13).
MINOR_OFFSET = 15


def torchvision_clash(torch_version: str, torchvision_version: str) -> str | None:
    """Why these two releases do not fit together (None when they do): another build (``+cpu`` vs
    ``+cu130``) or another release pair. Versions without a local label (``2.13.0``) are compared by
    release only."""
    t_release, _, t_build = torch_version.partition("+")
    v_release, _, v_build = torchvision_version.partition("+")
    if t_build and v_build and t_build != v_build:
        return (
            f"torchvision {torchvision_version} is a {v_build} build, torch {torch_version} a {t_build} build"
        )
    try:
        t_minor, v_minor = int(t_release.split(".")[1]), int(v_release.split(".")[1])
    except (IndexError, ValueError):
        return None
    if v_minor != t_minor + MINOR_OFFSET:
        return f"torchvision {torchvision_version} is made for torch 2.{v_minor - MINOR_OFFSET}, not {torch_version}"
    return None


def built_version(package: str) -> str | None:
    """The version an installed package was built as, build label included (``0.28.0+cu130``): its
    ``version.py`` read as text (PyPI's wheel metadata drops the label), else its distribution's version;
    None when it is not installed. Imports nothing."""
    spec = importlib.util.find_spec(package)
    if spec is None:
        return None
    for folder in spec.submodule_search_locations or ():
        with contextlib.suppress(OSError):
            text = (Path(folder) / "version.py").read_text(encoding="utf-8")
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
            if found:
                return found.group(1)
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def check_torchvision() -> None:
    """Refuse (one-line :class:`ConfigError`) an installed torchvision that does not fit the installed torch."""
    torch_version, torchvision_version = built_version("torch"), built_version("torchvision")
    if torch_version is None or torchvision_version is None:
        return  # no torchvision: transformers uses the PIL image processors
    why = torchvision_clash(torch_version, torchvision_version)
    if why:
        raise ConfigError(
            f"{why}, so transformers cannot load image processors: run `pip uninstall -y torchvision` "
            "(ICU-Bench does not need it) or install the torchvision build made for this torch"
        )
