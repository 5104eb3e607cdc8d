"""`python -m training`: the retraining pipeline from a checkout (see `training.pipeline`)."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

from logclust.text.masking import MaskingConfig
from training.config import DataConfig, ModelConfig, SemanticConfig, TrainConfig, from_dict
from training.distributed import cluster_from
from training.pipeline import STEPS, PipelineConfig, run
from training.tokenizer import TokenizerConfig

DEFAULT_WORK = Path("runs/work")


def _load_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def config_from(args: argparse.Namespace) -> PipelineConfig:
    """The pipeline's settings: defaults, then the TOML file, then `--epochs` and
    `--input-files`."""
    conf = _load_toml(args.config)
    train_d = dict(conf.get("train", {}))
    if args.epochs is not None:
        train_d["epochs"] = args.epochs
    data_d = dict(conf.get("data", {}))
    if args.input_files is not None:
        data_d["files"] = args.input_files
    return PipelineConfig(
        data_dir=args.data,
        out_dir=args.out,
        work_dir=args.work,
        model=from_dict(ModelConfig, conf.get("model", {})),
        train=from_dict(TrainConfig, train_d),
        tokenizer=from_dict(TokenizerConfig, conf.get("tokenizer", {})),
        semantic=from_dict(SemanticConfig, conf.get("semantic", {})),
        data=from_dict(DataConfig, data_d),
        masking=MaskingConfig.from_dict(conf["masking"]) if "masking" in conf else MaskingConfig(),
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m training", description="run the training pipeline (needs logclust[train])"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    p.add_argument("--data", type=Path, required=True, help="loghub folder or plain log files")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.add_argument(
        "--work", type=Path, default=DEFAULT_WORK, help="checkpoints, logs and caches (resumable)"
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML with [model] [train] [tokenizer] [semantic] [data] tables",
    )
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument(
        "--input-files",
        metavar="GLOB",
        help="train on these log files (a folder or glob, .gz too), streamed; overrides "
        "data.files (--data then serves calibrate and evaluate only)",
    )
    p.add_argument(
        "--steps",
        help="comma list of tokenizer,teacher,train,finetune,semantic,export,calibrate,evaluate",
    )
    p.add_argument(
        "--workers",
        help="host:port of every training worker, chief first (default: TF_CONFIG, else one)",
    )
    p.add_argument("--worker-index", type=int, help="this worker's position in --workers")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        steps = tuple(args.steps.split(",")) if args.steps else STEPS
        run(config_from(args), steps, cluster_from(args.workers, args.worker_index))
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"python -m training: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
