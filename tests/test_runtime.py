"""malleconv.runtime.tune_allocator: applied on glibc, skipped when the user opts out."""

import os
import subprocess
import sys

import pytest

CODE = "from malleconv.runtime import tune_allocator; print(tune_allocator())"
# Importing the package leaves the allocator alone; the first load_model tunes it, once.
FIRST_USE = (
    "import malleconv; assert malleconv.runtime._tuned_once is None; "
    "malleconv.load_model('mallenet-tiny', pretrained=False); "
    "malleconv.load_model('mallenet-tiny', pretrained=False); "
    "print(malleconv.runtime._tuned_once)"
)


def _run(code: str = CODE, **env_extra) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    env.pop("MALLECONV_NO_MALLOC_TUNING", None)
    env.update(env_extra)
    # A child process: the setting is process-wide and must not leak into the test run.
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_applied_on_linux_glibc():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    assert _run() == "True"
    assert _run(FIRST_USE) == "True"


def test_opt_out_and_user_choice_are_respected():
    assert _run(MALLECONV_NO_MALLOC_TUNING="1") == "False"
    assert _run(MALLOC_MMAP_MAX_="65536") == "False"
    assert _run(FIRST_USE, MALLECONV_NO_MALLOC_TUNING="1") == "False"


def test_command_line_writes_the_dataset_root_as_the_variable(monkeypatch):
    from malleconv.runtime import command_line

    monkeypatch.setenv("MALLECONV_DATA", "/data/sets/")
    argv = ["--data", "/data/sets/train/A", "/data/sets", "/data/sets2/B", "x/data/sets/C"]
    assert command_line("benchmarks/b.py", argv) == (
        "python benchmarks/b.py --data $MALLECONV_DATA/train/A $MALLECONV_DATA "
        "/data/sets2/B x/data/sets/C"
    )
    # A root the shell would need quoted stays as it is: the variable would not expand.
    monkeypatch.setenv("MALLECONV_DATA", "/my data")
    assert command_line("b.py", ["--data", "/my data/A"]) == "python b.py --data '/my data/A'"
    monkeypatch.delenv("MALLECONV_DATA")
    assert command_line("b.py", []) == "python b.py"


def test_write_report_writes_both_files_and_replaces_earlier_ones(tmp_path):
    import json

    from malleconv.runtime import write_report

    out = tmp_path / "docs" / "benchmarks"
    paths = write_report(out, "speed", {"rows": [1, 2]}, "# Speed\n\n| a |")
    assert paths == (out / "speed.json", out / "speed.md")
    assert json.loads(paths[0].read_text()) == {"rows": [1, 2]}
    assert paths[1].read_text() == "# Speed\n\n| a |\n"
    write_report(out, "speed", {"rows": []}, "# Again\n")
    assert json.loads(paths[0].read_text()) == {"rows": []}
    assert paths[1].read_text() == "# Again\n"
    assert sorted(p.name for p in out.iterdir()) == ["speed.json", "speed.md"]
