"""The `logclust` command: train, embed, label (and the sidecar commands)."""

from __future__ import annotations

import argparse
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

DEFAULT_WORK = Path("runs/work")


def _load_toml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    with path.open("rb") as f:
        return tomllib.load(f)


def cmd_train(args: argparse.Namespace) -> int:
    from logclust.config import ModelConfig, SemanticConfig, TrainConfig, from_dict
    from logclust.masking import MaskingConfig
    from logclust.pipeline import STEPS, PipelineConfig, run
    from logclust.tokenizer import TokenizerConfig

    conf = _load_toml(args.config)
    train_d = dict(conf.get("train", {}))
    if args.epochs is not None:
        train_d["epochs"] = args.epochs
    cfg = PipelineConfig(
        data_dir=args.data,
        out_dir=args.out,
        work_dir=args.work,
        model=from_dict(ModelConfig, conf.get("model", {})),
        train=from_dict(TrainConfig, train_d),
        tokenizer=from_dict(TokenizerConfig, conf.get("tokenizer", {})),
        semantic=from_dict(SemanticConfig, conf.get("semantic", {})),
        masking=MaskingConfig.from_dict(conf["masking"]) if "masking" in conf else MaskingConfig(),
    )
    steps = tuple(args.steps.split(",")) if args.steps else STEPS
    run(cfg, steps)
    return 0


def _read_input(path: Path) -> Any:
    from logclust.arrow_io import read_table

    return read_table(path)


def _write_output(table: Any, out: Path) -> None:
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out)
    print(f"wrote {table.num_rows} rows to {out}", file=sys.stderr)


def cmd_embed(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from logclust.labeler import Labeler

    table = _read_input(args.input)
    lab = Labeler.load(args.bundle, variant=args.variant)
    emb = lab.embed(table.column("body"))
    col = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), lab.dim)
    _write_output(table.append_column("embedding", col), args.output)
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    import pyarrow as pa

    from logclust.labeler import Labeler

    table = _read_input(args.input)
    lab = Labeler.load(args.bundle, variant=args.variant)
    if args.k is not None or args.fit:
        lab.fit(table.column("body"), k=args.k)
    ids = lab.label(table.column("body"))
    _write_output(table.append_column("cluster_id", pa.array(ids, pa.int32())), args.output)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="logclust", description=__doc__)
    p.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="run the training pipeline (needs logclust[train])")
    t.add_argument("--data", type=Path, required=True, help="loghub folder or plain log files")
    t.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    t.add_argument(
        "--work", type=Path, default=DEFAULT_WORK, help="checkpoints, logs and caches (resumable)"
    )
    t.add_argument(
        "--config", type=Path, help="TOML with [model] [train] [tokenizer] [semantic] tables"
    )
    t.add_argument("--epochs", type=int, help="override train.epochs")
    t.add_argument(
        "--steps", help="comma list of tokenizer,teacher,train,finetune,semantic,export,evaluate"
    )
    t.set_defaults(func=cmd_train)

    for name, func, what in (("embed", cmd_embed, "embedding"), ("label", cmd_label, "cluster_id")):
        s = sub.add_parser(name, help=f"add a {what} column to a file")
        s.add_argument(
            "--input",
            type=Path,
            required=True,
            help="text file (one record per line) or Parquet/Arrow/CSV with body",
        )
        s.add_argument("--output", type=Path, required=True, help="Parquet file to write")
        s.add_argument("--bundle", type=Path, help="bundle folder (default: shipped model)")
        s.add_argument("--variant", choices=("f32", "int8"), help="encoder variant")
        if name == "label":
            s.add_argument("--k", type=int, help="fit k clusters on the input first")
            s.add_argument(
                "--fit",
                action="store_true",
                help="fit clusters on the input with k chosen automatically",
            )
        s.set_defaults(func=func)

    try:
        from logclust.cli_service import add_service_commands
    except ImportError:
        pass
    else:
        add_service_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"logclust {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
