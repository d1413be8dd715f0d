"""The command line is composed from each layer's commands; the public commands are all there."""

from __future__ import annotations

import argparse

import pytest

from service.cli import build_parser, main


def _choices(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_layer_registers_its_commands() -> None:
    top = _choices(build_parser())
    assert set(top) == {"analyze", "plates", "evaluate", "synth", "datasets", "train", "export", "serve", "speak"}
    assert set(_choices(top["evaluate"])) == {"images", "compare", "clips", "loads", "thresholds", "reviews"}
    # The datasets group gets commands from three layers: datasets, models (pack, self-label) and service
    # (from-reviews).
    assert set(_choices(top["datasets"])) == {"import", "export", "check", "merge", "mix", "paste", "materialize",
                                              "pack", "self-label", "from-reviews"}


def test_usage_errors_exit_1_at_every_level(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["nonsense"], ["datasets", "nonsense"], ["evaluate", "images"]):
        with pytest.raises(SystemExit) as err:
            main(argv)
        assert err.value.code == 1
    assert "error" in capsys.readouterr().err


def test_an_unreadable_dataset_is_one_error_line_and_exit_1(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["datasets", "import", "--format", "coco", "--src", "/nonexistent/c.json",
                 "--out", "/nonexistent/out"]) == 1
    assert "/nonexistent/c.json: not a COCO detection file" in caplog.text
