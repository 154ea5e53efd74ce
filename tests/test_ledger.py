"""The run's ledger (``ledger.py``): append-only JSON lines, a torn last line skipped by readers
and cut before the next append, a corrupt middle line an input error naming it."""

import json
import logging

import pytest

from lerobot_amf.errors import AMFInputError
from lerobot_amf.ledger import Ledger


def test_ledger_is_append_only_and_skips_a_torn_last_line(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("demos_pulled", round=0, demos=[{"demo_id": "x", "task": "a"}, {"demo_id": "y", "task": "b"}])
    ledger.append("round_end", round=0)
    with open(ledger.path, "a") as f:
        f.write('{"event": "demos_pulled", "round": 1, "demos": [{"demo_id"')  # crash mid-write
    state = ledger.state()
    assert state.demo_ids == {"x", "y"} and state.counts == {"a": 1, "b": 1} and state.rounds_done == 1


@pytest.mark.parametrize("torn", [
    b'{"event": "demos_pulled", "round": 1, "demos": [{"demo_id"',  # stopped mid-line
    b'{"event": "round_end", "round": 1}',  # stopped before the newline: not a record yet
    b'\x00\x00\x00\x00\n',  # zero-filled tail after a power loss
])
def test_torn_last_line_is_truncated_before_the_next_append(tmp_path, caplog, torn):
    ledger = Ledger(tmp_path)
    ledger.append("run_start", pool=["a"])
    ledger.append("round_end", round=0)
    intact = ledger.path.read_bytes()
    with open(ledger.path, "ab") as f:
        f.write(torn)
    assert Ledger(tmp_path).state().rounds_done == 1  # readers skip it
    resumed = Ledger(tmp_path)
    with caplog.at_level(logging.WARNING):
        resumed.append("selection", round=1, tasks=["a"])
    assert "torn last line" in caplog.text
    data = ledger.path.read_bytes()
    assert data.startswith(intact) and data.endswith(b"\n")
    lines = [json.loads(line) for line in data.decode().splitlines()]  # every line parses
    assert [r["event"] for r in lines] == ["run_start", "round_end", "selection"]


def test_corrupt_middle_line_is_an_input_error_naming_the_line(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.append("run_start", pool=["a"])
    ledger.append("round_end", round=0)
    ledger.append("round_end", round=1)
    lines = ledger.path.read_text().splitlines(keepends=True)
    lines[1] = '{"event": "round_end", "rou\n'
    ledger.path.write_text("".join(lines))
    with pytest.raises(AMFInputError, match=r"line 2 of 3"):
        Ledger(tmp_path).state()
    before = ledger.path.read_bytes()
    with pytest.raises(AMFInputError, match="line 2"):
        list(Ledger(tmp_path).records("run_start"))
    assert ledger.path.read_bytes() == before  # reading never rewrites it
