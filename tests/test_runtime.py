"""malleconv.runtime.tune_allocator: applied on glibc, skipped when the user opts out."""

import os
import subprocess
import sys

import pytest

CODE = "from malleconv.runtime import tune_allocator; print(tune_allocator())"


def _run(**env_extra) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("MALLECONV_NO_MALLOC_TUNING", None)
    env.update(env_extra)
    # A child process: the setting is process-wide and must not leak into the test run.
    res = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applied_on_linux_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run() == "True"


def test_opt_out_and_user_choice_are_respected():
    assert _run(MALLECONV_NO_MALLOC_TUNING="1") == "False"
    assert _run(MALLOC_MMAP_MAX_="65536") == "False"
