"""Runs tests/float32/ in its own pytest process with JAX's x64 off: the precision users run."""

import os
import subprocess
import sys
from pathlib import Path


def test_float32_tier_passes_with_x64_off():
    tier = Path(__file__).parent / "float32"
    env = dict(os.environ, IL2RD_TEST_X64="0", JAX_ENABLE_X64="0")
    # and compiled as users compile it: without the suite's speed-up flag (tests/conftest.py)
    added = env.pop("IL2RD_TEST_XLA_FLAG", None)
    if added:
        env["XLA_FLAGS"] = env.get("XLA_FLAGS", "").replace(added, "").strip()
    env["IL2RD_TEST_KEEP_XLA_FLAGS"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", str(tier), "-q", "-p", "no:cacheprovider", "-x", "-n", "0"],
                          env=env, capture_output=True, text=True, timeout=1200)
    print(proc.stdout[-6000:], proc.stderr[-3000:])
    assert proc.returncode == 0, "the float32 tier failed (its output is printed above)"
    assert " passed" in proc.stdout and " skipped" not in proc.stdout.splitlines()[-1]
