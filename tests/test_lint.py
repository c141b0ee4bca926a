"""The code base stays ruff clean; CI runs this with the rest."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    assert ruff, "ruff is part of the test extras: ./setup.sh installs it"
    done = subprocess.run([ruff, "check", str(REPO)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
