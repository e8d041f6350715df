"""The model is fitted once and saved beside the store; a restart loads it. A changed configuration
or model is detected and said, never silently scored as "nothing to do"."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from restart_scenario import write_inputs


def monitor(tmp: Path, cfg: Path, stream: Path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "vigil.cli", "monitor", "--config", str(cfg), "--source", f"file:{stream}",
           "--speed", "max", "--store", str(tmp / "s.sqlite"), *extra]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_fitted_once_loaded_at_restart_and_changes_detected(tmp_path):
    cfg, nominal, stream = write_inputs(tmp_path)
    first = monitor(tmp_path, cfg, stream, "--fit", str(nominal))
    assert first.returncode == 0, first.stderr
    assert f"model fitted on {nominal} in " in first.stdout and "saved to" in first.stdout
    # The history lacks channel U: it is fitted without it, said so, and U runs on its limits.
    assert "[fit] 1 configured channels have no usable nominal history: U;" in first.stdout
    assert "U (power): warning by limits" in first.stdout
    assert (tmp_path / "s.sqlite.model").read_bytes().startswith(b"VIGIL-MODEL 1\n")

    # The same command again: the model is loaded, and the stream is said to be done already.
    again = monitor(tmp_path, cfg, stream, "--fit", str(nominal))
    assert again.returncode == 3, again.stderr  # "nothing scored" is reported
    assert "model loaded from" in again.stdout and "model fitted" not in again.stdout
    assert "resuming after t=10599.0 (2980 input items" in again.stdout
    assert "[problem] nothing scored: all 2980 records were at or before the checkpoint" in again.stdout

    # A changed configuration: the saved model no longer fits it; say so, do not score.
    cfg.write_text(cfg.read_text().replace("warning = [0.0, 10.0]", "warning = [0.0, 11.0]"))
    changed = monitor(tmp_path, cfg, stream, "--fit", str(nominal))
    assert changed.returncode == 1
    assert "under another configuration: pass --refit to fit it again" in changed.stderr
    # Refitted: now the checkpoint was written under another configuration and model.
    refit = monitor(tmp_path, cfg, stream, "--fit", str(nominal), "--refit")
    assert refit.returncode == 1
    assert "the configuration and model changed since the checkpoint" in refit.stderr
    assert "--no-resume" in refit.stderr
    fresh = monitor(tmp_path, cfg, stream, "--fit", str(nominal), "--no-resume")
    assert fresh.returncode == 0, fresh.stderr
    assert "model loaded from" in fresh.stdout and "rows=600 " in fresh.stdout


def test_limits_only_rerun_after_a_config_change_is_refused_with_a_hint(tmp_path):
    cfg, _nominal, stream = write_inputs(tmp_path)
    assert monitor(tmp_path, cfg, stream).returncode == 0
    cfg.write_text(
        cfg.read_text().replace("min_violations = 2\n[channels.U.limits]", "min_violations = 1\n[channels.U.limits]")
    )
    out = monitor(tmp_path, cfg, stream)
    assert out.returncode == 1 and "rows=" not in out.stdout
    assert "the configuration changed since the checkpoint" in out.stderr
    assert "(after 2980 records, t=10599.0)" in out.stderr


def test_fit_without_limits_skips_a_channel_the_history_lacks():
    from vigil.config import MonitorConfig
    from vigil.model import TelemetryBlock
    from vigil.monitor.fitting import fit_default

    config = MonitorConfig.from_dict({"channels": {"A": {"subsystem": "s"}, "B": {"subsystem": "s"}}})
    t = np.arange(3000.0)
    history = TelemetryBlock.from_arrays(t, np.c_[np.sin(t / 30), np.full(t.size, np.nan)], ["A", "B"])
    detector, absent = fit_default(config, history)
    assert absent == ["B"] and detector.channels_ == ("A", "B")
    scores = detector.score(TelemetryBlock.from_arrays([3000.0], [[0.1, 5.0]], ["A", "B"]))
    assert scores.level.shape == (1, 2) and scores.level[0, 1] == 0  # B: no learned check, no limits
