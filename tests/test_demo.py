"""The main job runs and learns; the command line works."""
import subprocess
import sys
from pathlib import Path

from rnnbook.demo import run_demo


def test_demo_learns(tmp_path, capsys):
    res = run_demo(steps=120, hidden=32, seq_len=16, batch=16, sample_every=60, sample_len=40,
                   out=str(tmp_path), progress=False, max_chars=50_000)
    assert res["last_loss"] < res["first_loss"] - 0.7, (res["first_loss"], res["last_loss"])
    assert Path(res["png"]).stat().st_size > 10_000
    assert len(res["samples"]) == 2
    out = capsys.readouterr().out
    assert "step 60" in out and "loss curve written" in out


def test_demo_gru_and_rnn_float64(tmp_path):
    for cell in ("gru", "rnn"):
        res = run_demo(cell=cell, steps=60, hidden=16, seq_len=8, batch=8, sample_every=60, sample_len=10,
                       out=str(tmp_path), progress=False, dtype="float64", max_chars=20_000)
        assert res["last_loss"] < res["first_loss"]


def test_cli_coverage_and_backends():
    out = subprocess.run([sys.executable, "-m", "rnnbook", "coverage"], capture_output=True, text=True, check=True)
    assert "| lstm | forward, backward, rtrl |" in out.stdout
    out = subprocess.run([sys.executable, "-m", "rnnbook", "backends"], capture_output=True, text=True, check=True)
    assert "numpy" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "rnnbook", "demo", "--cell", "transformer"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "invalid choice" in bad.stderr
