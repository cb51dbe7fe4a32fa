"""Run mypy over the `orthovec` package as it installs (the README's test command calls this).

The repository keeps the design's stage folders at the top (`indexer/`, `lookup/`, ...) and
setuptools maps them into `orthovec.*`; mypy cannot follow that mapping, so this lays out the
installed package shape as symlinks in `.mypy_tree/` and checks it with the project's mypy
settings (`[tool.mypy]` in pyproject.toml). Errors name the repository's files. Exit status is mypy's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = setuptools["package-dir"]
    # A fixed place (git-ignored), so mypy's incremental cache keeps naming the same files.
    tree = ROOT / ".mypy_tree"
    shutil.rmtree(tree, ignore_errors=True)
    package = tree / "orthovec"
    package.mkdir(parents=True)
    try:
        for entry in (ROOT / package_dir["orthovec"]).iterdir():
            if entry.name != "__pycache__":
                (package / entry.name).symlink_to(entry)
        for name, folder in package_dir.items():
            if name != "orthovec":
                (package / name.removeprefix("orthovec.")).symlink_to(ROOT / folder)
        command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(package)]
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        report = done.stdout + done.stderr
        for name, folder in sorted(package_dir.items(), key=lambda item: -len(item[0])):
            inside = "/".join(name.split(".")[1:])
            prefix = f"{package.relative_to(ROOT)}/{inside}/" if inside else f"{package.relative_to(ROOT)}/"
            report = report.replace(prefix, f"{folder}/")
        print(report, end="")
        return done.returncode
    finally:
        shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
