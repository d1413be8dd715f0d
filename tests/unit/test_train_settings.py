"""Training settings passed through to Ultralytics: numbers only, a malformed one stops the run, warm-up defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.train_gpu import build_parser, hyp_settings, kept_weights, warmup_epochs


def test_hyp_pairs_become_numbers_and_a_malformed_one_is_an_error() -> None:
    assert hyp_settings(["cutmix=0.3", "scale=0.9", "degrees=5"]) == {"cutmix": 0.3, "scale": 0.9, "degrees": 5.0}
    assert hyp_settings([]) == {}
    for bad in ("cutmix", "cutmix=lots", "=0.3", "two words=1"):
        with pytest.raises(SystemExit, match="KEY=NUMBER"):
            hyp_settings([bad])


def test_warm_up_is_as_asked_else_one_epoch_for_a_fixed_lr_else_three() -> None:
    parse = build_parser().parse_args
    assert warmup_epochs(parse(["--pack", "p", "--out", "o"])) == 3.0
    assert warmup_epochs(parse(["--pack", "p", "--out", "o", "--lr0", "0.002"])) == 1.0
    assert warmup_epochs(parse(["--pack", "p", "--out", "o", "--lr0", "0.002", "--warmup-epochs", "0.5"])) == 0.5


def test_streetwatch_train_hands_the_warm_up_to_the_training_script(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.train_gpu
    from service.cli import build_parser as cli_parser

    seen: list[list[str]] = []
    monkeypatch.setattr(models.train_gpu, "main", lambda argv: seen.append(argv) or 0)
    base = ["train", "--data", "pack", "--out", "o", "--model", "prev.pt", "--epochs", "2", "--minutes", "0"]
    for extra, expected in (([], 3.0), (["--warmup-epochs", "0.5"], 0.5), (["--lr0", "0.002"], 1.0)):
        args = cli_parser().parse_args(base + extra)
        assert args.func(args) == 0
        assert warmup_epochs(build_parser().parse_args(seen[-1])) == expected
    assert seen[-1][seen[-1].index("--model") + 1] == "prev.pt"


def test_streetwatch_train_hands_the_resume_options_to_the_training_script(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.train_gpu
    from service.cli import build_parser as cli_parser

    seen: list[list[str]] = []
    monkeypatch.setattr(models.train_gpu, "main", lambda argv: seen.append(argv) or 0)
    args = cli_parser().parse_args(["train", "--data", "pack", "--out", "o", "--work", "w", "--resume",
                                    "--session-epochs", "3"])
    assert args.func(args) == 0
    parsed = build_parser().parse_args(seen[-1])
    assert (str(parsed.work), parsed.resume, parsed.session_epochs) == ("w", True, 3)
    args = cli_parser().parse_args(["train", "--data", "pack", "--out", "o"])
    assert args.func(args) == 0
    parsed = build_parser().parse_args(seen[-1])
    assert (parsed.work, parsed.resume, parsed.session_epochs) == (None, False, 0)


def test_resume_without_a_kept_run_is_a_clear_error(tmp_path: Path) -> None:
    from models.train_gpu import last_checkpoint

    with pytest.raises(SystemExit, match="no resumable epoch"):
        last_checkpoint(tmp_path)


def test_streetwatch_train_hands_the_thread_count_to_the_training_script(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.train_gpu
    from service.cli import build_parser as cli_parser

    seen: list[list[str]] = []
    monkeypatch.setattr(models.train_gpu, "main", lambda argv: seen.append(argv) or 0)
    for extra, expected in (([], 0), (["--threads", "2"], 2)):
        args = cli_parser().parse_args(["train", "--data", "pack", "--out", "o", *extra])
        assert args.func(args) == 0
        assert build_parser().parse_args(seen[-1]).threads == expected


def test_streetwatch_train_hands_other_settings_to_the_training_script(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.train_gpu
    from service.cli import build_parser as cli_parser

    seen: list[list[str]] = []
    monkeypatch.setattr(models.train_gpu, "main", lambda argv: seen.append(argv) or 0)
    for extra, hyp, freeze in (([], {}, 0),
                               (["--lr0", "0.002", "--hyp", "warmup_bias_lr=0.0", "--freeze", "10"],
                                {"warmup_bias_lr": 0.0}, 10)):
        args = cli_parser().parse_args(["train", "--data", "pack", "--out", "o", *extra])
        assert args.func(args) == 0
        parsed = build_parser().parse_args(seen[-1])
        assert (hyp_settings(parsed.hyp), parsed.freeze) == (hyp, freeze)


def test_a_run_keeps_its_best_epoch_or_when_asked_its_last(tmp_path: Path) -> None:
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "last.pt").write_bytes(b"")
    assert kept_weights(tmp_path, last=False).name == "last.pt"  # no best saved (stopped early)
    (tmp_path / "weights" / "best.pt").write_bytes(b"")
    assert kept_weights(tmp_path, last=False).name == "best.pt"
    assert kept_weights(tmp_path, last=True).name == "last.pt"
    assert build_parser().parse_args(["--pack", "p", "--out", "o", "--last"]).last
