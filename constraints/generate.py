"""Write constraints/<stack>.txt: the tested environment of one stack, for every Python it supports.

    python constraints/generate.py tf221 --freeze FREEZE.txt --base 3.13 \\
        --python 3.10=/path/python3.10 --python 3.11=... --python 3.12=...

``FREEZE.txt`` is ``pip freeze --exclude-editable`` of the venv the test-suite passed in (Python
``--base``). For each other Python, pip resolves (``install --dry-run --report``, nothing is installed)
``keras_dssdn[extras]`` with the freeze as constraints; where a pinned version does not exist for that
Python (pip refuses), it resolves with the stack's direct pins (``TOP`` below) only, which picks the
newest versions that Python has. Versions that agree across all Pythons are written plainly, the
others with ``python_version`` markers. Needs network access to the package index.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Direct pins of each stack (docs/install.md says why) and the extras it installs.
TOP = {
    "tf217": (["tensorflow==2.17.1", "keras==3.15.1; python_version >= '3.11'",
               "keras==3.12.4; python_version < '3.11'", "tf-keras==2.17.0", "tensorflow-io==0.37.1",
               "tensorboard==2.17.1", "tensorflow-model-optimization==0.8.1", "keras-tuner==1.4.8",
               "numpy==1.26.4", "ai-edge-litert==2.3.0", "tflite-micro==0.dev20261023182759",
               "librosa==0.11.0", "soundfile==0.14.0", "nbmake==1.5.5"], "dev,tfio"),
    "tf221": (["tensorflow==2.21.0", "keras==3.15.1; python_version >= '3.11'",
               "keras==3.12.4; python_version < '3.11'", "tf-keras==2.21.0", "tensorboard==2.21.0",
               "tensorflow-model-optimization==0.8.1", "keras-tuner==1.4.8", "ai-edge-litert==2.3.0",
               "tflite-micro==0.dev20261023182759", "librosa==0.11.0", "soundfile==0.14.0", "nbmake==1.5.5"],
              "dev"),
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: str) -> dict:
    pins = {}
    for line in open(path, encoding="utf-8"):
        line = line.split("#")[0].strip()
        if "==" in line and not line.startswith("-"):
            name, version = line.split("==", 1)
            if norm(name) not in ("keras-dssdn",):
                pins[norm(name)] = (name.strip(), version.strip())
    return pins


def resolve(python: str, constraints: list, extras: str) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        cfile, report = os.path.join(tmp, "c.txt"), os.path.join(tmp, "report.json")
        with open(cfile, "w", encoding="utf-8") as f:
            f.write("\n".join(constraints) + "\n")
        proc = subprocess.run([python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                               "--report", report, "-c", cfile, f"{ROOT}[{extras}]"], capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"  {python}: not resolvable with these constraints ({proc.stderr.strip().splitlines()[-1][:200]})",
                  file=sys.stderr)
            return None
        items = json.load(open(report, encoding="utf-8"))["install"]
    return {norm(i["metadata"]["name"]): (i["metadata"]["name"], i["metadata"]["version"]) for i in items
            if norm(i["metadata"]["name"]) != "keras-dssdn"}


def _next(version: str) -> str:
    major, minor = version.split(".")
    return f"{major}.{int(minor) + 1}"


def _marker(chosen: list, versions: list) -> str:
    """A python_version marker for ``chosen`` among ``versions`` (both sorted)."""
    first, last = versions.index(chosen[0]), versions.index(chosen[-1])
    if len(chosen) == 1:
        return f'python_version == "{chosen[0]}"'
    if last - first + 1 != len(chosen):  # not contiguous
        return " or ".join(f'python_version == "{v}"' for v in chosen)
    parts = ([f'python_version >= "{chosen[0]}"'] if first > 0 else []) + \
        ([f'python_version < "{_next(chosen[-1])}"'] if last < len(versions) - 1 else [])
    return " and ".join(parts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stack", choices=sorted(TOP))
    ap.add_argument("--freeze", required=True, help="pip freeze of the tested venv")
    ap.add_argument("--base", required=True, help="its Python, e.g. 3.13")
    ap.add_argument("--python", action="append", default=[], help="VERSION=INTERPRETER for each other Python")
    ap.add_argument("--out", help="default constraints/<stack>.txt")
    args = ap.parse_args(argv)
    top, extras = TOP[args.stack]
    base = read_pins(args.freeze)
    per_python = {args.base: base}
    for spec in args.python:
        version, python = spec.split("=", 1)
        print(f"resolving for Python {version} ...", file=sys.stderr)
        got = resolve(python, [f"{n}=={v}" for n, v in base.values()], extras) or resolve(python, top, extras)
        if got is None:
            print(f"Python {version}: the stack does not resolve", file=sys.stderr)
            return 1
        per_python[version] = got
    versions = sorted(per_python, key=lambda v: tuple(map(int, v.split("."))))
    lines = []
    for key in sorted({k for pins in per_python.values() for k in pins}):
        by_version = {v: per_python[v].get(key) for v in versions}
        name = next(p[0] for p in by_version.values() if p)
        distinct = {p[1] if p else None for p in by_version.values()}
        if len(distinct) == 1:
            lines.append(f"{name}=={distinct.pop()}")
            continue
        groups: dict = {}
        for i, v in enumerate(versions):
            if by_version[v]:
                groups.setdefault(by_version[v][1], []).append(i)
        for pin, idx in groups.items():
            lines.append(f"{name}=={pin} ; {_marker([versions[i] for i in idx], versions)}")
    out = args.out or os.path.join(ROOT, "constraints", f"{args.stack}.txt")
    header = [f"# {args.stack}: the whole tested environment (tools/setup_env.sh installs it; docs/install.md).",
              f"# Generated by constraints/generate.py from the venv tested on Python {args.base}, resolved for "
              f"Python {', '.join(versions)}.", f"# Extras installed: {extras}."]
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(header + lines) + "\n")
    print(f"wrote {out} ({len(lines)} lines)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
