"""`emvnet train` on the command line: parse, load the config, choose the objective, run the trainer.

The objective is chosen here: a config with a `[distill]` table trains against its teacher
(`emvnet.training.distill`), any other with the task objective alone. The trainer takes whatever
`Objective` it is handed and knows nothing of distillation.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from emvnet.training.config import ConfigError, load_config, with_overrides
from emvnet.training.distill import distillation_objective
from emvnet.training.trainer import EXIT_INTERRUPTED, train


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `train` on the `emvnet` command's subparsers (sets `run=cmd_train`)."""
    parser = subparsers.add_parser(
        "train",
        help="train (or distill) a model from a TOML config",
        description=(
            "Train the model a TOML config describes (configs/*.toml); write checkpoints, log.jsonl, "
            "loss_curves.png and export/<name>.safetensors + .json to --out. SIGINT/SIGTERM save a "
            "checkpoint and stop; --resume continues from the last one."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="a training config (TOML)")
    parser.add_argument(
        "--out", default=None, metavar="DIR", help="output folder (default: runs/<config name>)"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the last checkpoint in DIR")
    parser.add_argument(
        "--steps", type=int, default=None, metavar="N", help="total steps (overrides run.steps)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda", "auto"), default=None, help="overrides run.device"
    )
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="overrides data.workers")
    parser.set_defaults(run=cmd_train)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    # The pre-alignment says what it decided for every frame, which helps a user reading one merge;
    # for the thousands of simulated brackets of a run it is noise around the progress bar.
    logging.getLogger("emvnet.merge.align").setLevel(logging.WARNING)
    cfg = with_overrides(load_config(args.config), args.device, args.workers)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be >= 1, got {args.steps}")
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    objective = None
    if cfg.distill is not None:
        objective = distillation_objective(cfg, out, args.resume, args.device, args.workers, args.steps)
        if objective is None:  # the teacher's training was interrupted
            return EXIT_INTERRUPTED
    result = train(cfg, out, args.resume, args.steps, objective)
    return EXIT_INTERRUPTED if result.interrupted else 0
