"""Every file the package writes is replaced whole or not at all (issue 19, item 6): a writer that fails half way
leaves the previous file byte for byte and no temporary file; a SIGKILL during a re-save leaves a loadable file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import dualip_model as dm
from dualip_model import atomic, cli
from dualip_model.backends.dualip import checkpoint
from dualip_model.standard_form import StandardForm
from dualip_model.synthetic import matching_model, synthetic_matching

ROOT = Path(__file__).resolve().parent.parent
AVGAS = str(ROOT / "tests" / "data" / "netlib" / "avgas.mps")


class DiskFull(OSError):
    def __init__(self):
        super().__init__(28, "No space left on device")


def half_then_fail(target_arg: int = 0):
    """A stand-in writer: writes a few bytes to its target (path or file object), then fails like a full disk."""
    def writer(*args, **kwargs):
        target = args[target_arg]
        if hasattr(target, "write"):
            target.write(b"partial")
        else:
            Path(target).write_bytes(b"partial")
        raise DiskFull()
    return writer


def small_model():
    return matching_model(synthetic_matching(20, 3, 0.5, seed=4))


def writers():
    """name -> (patch target (object, attribute, position of the target argument), write(path), suffix)."""
    res = {}

    def result():
        if "r" not in res:
            res["r"] = small_model().solve("highs")
        return res["r"]

    return {
        "form-npz": ((np, "savez", 0), lambda p: small_model().compile().save(p), ".npz"),
        "form-safetensors": (("safetensors.numpy", "save_file", 1), lambda p: small_model().compile().save(p),
                             ".safetensors"),
        "checkpoint": ((np, "savez", 0), lambda p: checkpoint.save(p, {"a": torch.zeros(3)}, {"it": 1}), ".npz"),
        "to_parquet": (("pyarrow.parquet", "write_table", 1), lambda p: result().to_parquet(p), ".parquet"),
        "duals_to_parquet": (("pyarrow.parquet", "write_table", 1),
                             lambda p: result().duals_to_parquet(p, "budget"), ".parquet"),
        "cli-csv": ((pd.DataFrame, "to_csv", 1), lambda p: cli.main(["solve", AVGAS, "--out", str(p)]), ".csv"),
        "write_parquet": (("pyarrow.parquet", "write_table", 1), lambda p: dm.write_parquet(result().to_arrow(), p),
                          ".parquet"),
    }


@pytest.mark.parametrize("name", list(writers()))
def test_a_writer_failing_half_way_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, name, capsys):
    (owner, attr, position), write, suffix = writers()[name]
    if isinstance(owner, str):
        owner = pytest.importorskip(owner)
    path = tmp_path / f"out{suffix}"
    path.write_bytes(b"the previous file")
    monkeypatch.setattr(owner, attr, half_then_fail(position))
    try:
        code = write(path)
    except dm.ModelError as err:
        assert str(path) in str(err) and "No space left on device" in str(err)
    else:
        assert code == 2 and "No space left on device" in capsys.readouterr().err  # the CLI prints and exits 2
    assert path.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_write_model_and_plot_are_atomic_and_keep_the_suffix(tmp_path, capsys):
    """HiGHS and matplotlib pick the format from the name: the temporary file keeps it, the result lands whole."""
    pytest.importorskip("matplotlib")
    out = tmp_path / "m.lp"
    code = cli.main(["solve", AVGAS, "--backend", "dualip", "--max-iter", "50", "--write-model", str(out),
                     "--plot", str(tmp_path / "conv.png")])
    assert code in (0, 1), capsys.readouterr().err
    assert out.read_text().lstrip().lower().startswith(("\\", "min", "max"))  # an LP file, not MPS
    assert (tmp_path / "conv.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["conv.png", "m.lp"]


def test_atomic_write_keeps_the_mode_a_new_file_gets(tmp_path):
    with atomic.atomic_write(tmp_path / "f.txt") as tmp:
        Path(tmp).write_text("x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "f.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_an_interrupt_inside_the_writer_leaves_the_old_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic.atomic_write(path) as tmp:
            Path(tmp).write_bytes(b"new, half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


_RESAVER = textwrap.dedent("""
    import sys
    import numpy as np
    from dualip_model.synthetic import matching_model, synthetic_matching

    forms = [matching_model(synthetic_matching(4000, 40, 0.3, seed=s)).compile() for s in (1, 2)]
    path = sys.argv[1]
    forms[0].save(path)
    print("ready", flush=True)
    k = 0
    while True:
        k += 1
        forms[k % 2].save(path)
""")


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_sigkill_during_resaves_leaves_the_old_or_the_new_file(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    path = tmp_path / f"form{suffix}"
    expected = {float(matching_model(synthetic_matching(4000, 40, 0.3, seed=s)).compile().c.sum()) for s in (1, 2)}
    rng = np.random.default_rng(0)
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", _RESAVER, str(path)], stdout=subprocess.PIPE, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = StandardForm.load(path)  # never truncated: the old file or the new one
        assert float(loaded.c.sum()) in expected
        for stray in tmp_path.glob(".form*.tmp*"):  # a kill can leave only a temporary file beside it
            stray.unlink()
