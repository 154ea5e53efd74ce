"""Phase markers (``phases.py``): off by default, printed when asked, and read back by the
fault-injection benchmark's parser (where a run is, which phases are open)."""

import pytest

from conftest import load_faults as _faults


def test_phase_markers_tell_where_a_run_is(capfd, monkeypatch):
    from lerobot_amf.phases import ENV_VAR, phase

    faults = _faults()
    with phase("selecting"):  # off by default: prints nothing
        pass
    assert capfd.readouterr().err == ""
    monkeypatch.setenv(ENV_VAR, "1")
    with phase("pretraining"):
        with phase("writing_demos"):
            pass
    with phase("writing_demos"):
        with phase("selecting"):
            pass
    err = capfd.readouterr().err.splitlines()
    markers = faults.parse_markers(err + ["noise", "amf-phase: begin training 12.5"])
    assert faults.open_phases(markers) == ["training"]
    assert faults.open_phases(markers[:5]) == ["writing_demos"]
    occ = faults.occurrences(markers)
    assert [(o["phase"], o["index"]) for o in occ] == [("pretraining", 0), ("writing_demos", 0), ("training", 0)]
    assert occ[0]["seconds"] >= 0 and occ[-1]["seconds"] is None
    with pytest.raises(ValueError, match="unknown phase"):
        with phase("napping"):
            pass
