"""The retraining pipeline, one step at a time or all at once.

Steps: `tokenizer` (SentencePiece on masked training lines), `teacher` (distillation
targets, optional), `train` (decoder), `finetune` (distillation-heavy second stage),
`semantic` (the static semantic channel, needs the teacher), `export` (TFLite encoders,
default clusters and manifest into the bundle folder), `calibrate` (the clustering
threshold, chosen by the stream ARI of the serving clusterer on the train systems, into
the manifest), `evaluate` (REPORT.md and metrics.json). Each step reads what the earlier
ones left in `work_dir` and the bundle folder, so a step can be rerun alone, and `train`
resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from logclust.cluster import clustering
from logclust.cluster.clustering import nearest_centroid, radii_of
from logclust.cluster.config import FALLBACK_THRESHOLD
from logclust.cluster.labeler import Labeler
from logclust.cluster.threshold import threshold_cluster
from logclust.embed.bundle import write_manifest
from logclust.text.masking import Masker, MaskingConfig
from logclust.text.tokenizer import Tokenizer
from training import data as data_mod
from training import prose_words, semantic, teacher
from training.config import DataConfig, ModelConfig, SemanticConfig, TrainConfig, to_dict
from training.corpus import python_messages
from training.dataset import Example, make_examples, split
from training.distributed import ONE_WORKER, Cluster, make_strategy
from training.evaluate import evaluate
from training.evaluate.groups import calibrate_group_threshold
from training.evaluate.report import threshold_section, write_section
from training.evaluate.streaming import calibrate
from training.semantic import SemanticTable
from training.tokenizer import TokenizerConfig, train_tokenizer

if TYPE_CHECKING:  # training.train needs TensorFlow; the steps import it when they run
    from training.train import Feed

logger = logging.getLogger(__name__)

STEPS = (
    "tokenizer",
    "teacher",
    "train",
    "finetune",
    "semantic",
    "export",
    "prose_words",
    "calibrate",
    "evaluate",
)
# Steps that run on every worker of a cluster (the others write the bundle: one machine).
MULTI_WORKER_STEPS = ("teacher", "train", "finetune")
CORPUS = "python-corpus"  # source name of the corpus lines


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a run needs; written into the bundle's manifest."""

    data_dir: Path
    out_dir: Path
    work_dir: Path
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    tokenizer: TokenizerConfig = TokenizerConfig()
    masking: MaskingConfig = MaskingConfig()
    semantic: SemanticConfig = SemanticConfig()
    data: DataConfig = DataConfig()  # data.files: train on streamed files, not on data_dir


@dataclass
class Prepared:
    sources: list[str]
    train: list[Example]
    val: list[Example]
    label_names: list[str]


def prepare(cfg: PipelineConfig) -> Prepared:
    """Distinct masked training lines, split into training and validation.

    With `data.files`, these are a bounded sample of the files (tokenizer, validation,
    default clusters); `train` and `finetune` then stream the files themselves.
    """
    if cfg.data.files:
        paths = data_mod.list_log_files(cfg.data.files)
        lines = data_mod.sample_lines(paths, cfg.data.sample_lines)
        sets = {cfg.data.files: data_mod.LogSet(cfg.data.files, lines, lines)}
    else:
        sets = data_mod.load_training_lines(cfg.data_dir)
    masker = Masker(cfg.masking)
    examples, names = make_examples(sets, masker, cfg.train.include_content)
    if cfg.train.corpus_lines:
        seen = {e.text for e in examples}
        extra = masker.mask_texts(python_messages(cfg.train.corpus_lines, cfg.train.seed))
        examples += [Example(t, CORPUS, -1, 1) for t in dict.fromkeys(extra) if t not in seen]
    train, val = split(examples, cfg.train.val_fraction)
    logger.info(
        "%d distinct lines from %d sources: %d train, %d validation",
        len(examples),
        len(sets),
        len(train),
        len(val),
    )
    return Prepared(sorted(sets), train, val, names)


def step_tokenizer(cfg: PipelineConfig, prep: Prepared) -> Tokenizer:
    texts = [e.text for e in prep.train for _ in range(min(e.count, 20))]
    return train_tokenizer(
        texts, cfg.masking.placeholders, cfg.tokenizer, cfg.out_dir / "tokenizer.model"
    )


def step_teacher(cfg: PipelineConfig, prep: Prepared) -> np.ndarray:
    """Teacher embeddings of the training lines, or a `(n, 1)` zero array when disabled."""
    if cfg.train.distill_weight == 0 or not teacher.available():
        if cfg.train.distill_weight:
            logger.warning("distillation disabled: install logclust[distill] for the teacher")
        return np.zeros((len(prep.train), 1), np.float32)
    return teacher.teacher_embeddings([e.text for e in prep.train], cfg.work_dir)


def resolved_model_config(cfg: PipelineConfig, tok: Tokenizer) -> ModelConfig:
    d = to_dict(cfg.model)
    d["vocab_size"] = tok.vocab_size
    return ModelConfig(**d)


def make_feed(
    cfg: PipelineConfig,
    tcfg: TrainConfig,
    tok: Tokenizer,
    prep: Prepared,
    teacher_emb: np.ndarray | None,
    cluster: Cluster,
) -> tuple[Feed, int, int]:
    """The training batches, steps per epoch and teacher width: streamed from
    `data.files` when set, else the in-memory distinct lines."""
    from training.train import MemoryFeed

    worker = (cluster.index, cluster.size)
    if not cfg.data.files:
        assert teacher_emb is not None  # `run` computes it for in-memory training
        steps = max(1, len(prep.train) // tcfg.batch_size // cluster.size)
        return MemoryFeed(tok, prep.train, teacher_emb, tcfg, worker), steps, teacher_emb.shape[1]
    from training.stream import Stream, training_stream

    if tcfg.distill_weight or tcfg.contrastive_weight:
        logger.info("streamed lines have no teacher targets nor templates: next-token only")
    paths = data_mod.list_log_files(cfg.data.files)
    ds = training_stream(paths, tok, Masker(cfg.masking), tcfg, cfg.data, worker)
    return Stream(ds, cfg.data.steps_per_epoch), cfg.data.steps_per_epoch, 1


def step_train(
    cfg: PipelineConfig,
    prep: Prepared,
    teacher_emb: np.ndarray | None,
    cluster: Cluster = ONE_WORKER,
) -> dict[str, object]:
    from training.train import Trainer, fit

    tok = Tokenizer.load(cfg.out_dir / "tokenizer.model")
    mcfg = resolved_model_config(cfg, tok)
    strategy = make_strategy(cluster)  # first: collectives are set up before any TF op
    feed, steps, teacher_dim = make_feed(cfg, cfg.train, tok, prep, teacher_emb, cluster)
    trainer = Trainer(
        mcfg,
        cfg.train,
        cfg.work_dir,
        steps,
        teacher_dim,
        strategy=strategy,
        worker=(cluster.index, cluster.size),
    )
    hist = fit(trainer, tok, feed, prep.val)
    return hist.__dict__


def finetune_dir(work_dir: Path) -> Path:
    return work_dir / "finetune"


def best_stage_dir(work_dir: Path) -> Path:
    """The folder whose `best.weights.h5` and `history.json` the bundle is made from:
    the fine-tuning stage when it ran, else the first stage."""
    ft = finetune_dir(work_dir)
    return ft if (ft / "best.weights.h5").is_file() else work_dir


def step_finetune(
    cfg: PipelineConfig,
    prep: Prepared,
    teacher_emb: np.ndarray | None,
    cluster: Cluster = ONE_WORKER,
) -> None:
    """Distillation-heavy second stage from the first stage's best weights."""
    from training.train import Trainer, fit

    t = cfg.train
    if t.finetune_epochs == 0:
        return
    tcfg = replace(
        t,
        epochs=t.finetune_epochs,
        distill_weight=t.finetune_distill_weight,
        contrastive_weight=t.finetune_contrastive_weight,
        learning_rate=t.finetune_learning_rate,
        warmup_steps=50,
    )
    tok = Tokenizer.load(cfg.out_dir / "tokenizer.model")
    strategy = make_strategy(cluster)  # first: collectives are set up before any TF op
    feed, steps, teacher_dim = make_feed(cfg, tcfg, tok, prep, teacher_emb, cluster)
    trainer = Trainer(
        resolved_model_config(cfg, tok),
        tcfg,
        finetune_dir(cfg.work_dir),
        steps,
        teacher_dim,
        init_weights=cfg.work_dir / "best.weights.h5",
        strategy=strategy,
        worker=(cluster.index, cluster.size),
    )
    fit(trainer, tok, feed, prep.val)


def step_semantic(cfg: PipelineConfig, prep: Prepared, teacher_emb: np.ndarray | None) -> None:
    """Builds the semantic channel into `work_dir/semantic.npz` (removed when disabled)."""
    path = cfg.work_dir / semantic.FILE
    path.unlink(missing_ok=True)
    if cfg.semantic.dim == 0:
        return
    if not teacher.available():
        logger.warning("semantic channel left out: install logclust[distill] for the teacher")
        return
    texts = [e.text for e in prep.train]
    # step_teacher's (n, 1) zeros stand for "no targets": then the teacher embeds them here.
    targets = None
    if teacher_emb is not None and teacher_emb.shape[0] == len(texts) and teacher_emb.shape[1] > 1:
        targets = teacher_emb
    tok = Tokenizer.load(cfg.out_dir / "tokenizer.model")

    def embed(t: Sequence[str]) -> np.ndarray:
        return teacher.teacher_embeddings(t, cfg.work_dir)

    if cfg.semantic.targets == "message":
        lines = targets if targets is not None else embed(texts)
        targets = semantic.message_targets(texts, message_map(cfg), lines, embed)
    table = semantic.build(tok, texts, embed, cfg.semantic, cfg.model.max_len, text_targets=targets)
    table.save(path)


def message_map(cfg: PipelineConfig) -> dict[str, str]:
    """Masked line -> its masked message (the loghub `Content`, the line without its
    header), for the loghub systems of `data_dir`; empty for streamed or plain files."""
    if cfg.data.files:
        return {}
    masker = Masker(cfg.masking)
    out: dict[str, str] = {}
    for ls in data_mod.load_training_lines(cfg.data_dir).values():
        if ls.content is ls.raw:
            continue
        contents = masker.mask_texts(ls.content)
        for line, message in zip(masker.mask_texts(ls.raw), contents, strict=True):
            out.setdefault(line, message)
        for message in contents:
            out.setdefault(message, message)
    return out


def step_export(cfg: PipelineConfig, prep: Prepared) -> None:
    """Best weights to TFLite, default clusters, manifest."""
    from training.export import export_tflite
    from training.model import build, count_params

    tok = Tokenizer.load(cfg.out_dir / "tokenizer.model")
    mcfg = resolved_model_config(cfg, tok)
    model = build(mcfg)
    stage = best_stage_dir(cfg.work_dir)
    model.load_weights(str(stage / "best.weights.h5"))
    sem_path = cfg.work_dir / semantic.FILE
    channel = SemanticTable.load(sem_path) if cfg.semantic.dim and sem_path.is_file() else None
    export_tflite(model, cfg.out_dir, channel, cfg.semantic.weight)
    hist = json.loads((stage / "history.json").read_text())
    manifest = {
        "embedding_dim": mcfg.d_model + (channel.table.shape[1] if channel else 0),
        "default_variant": "int8",
        "model_config": to_dict(mcfg),
        "train_config": to_dict(cfg.train),
        "tokenizer_config": to_dict(cfg.tokenizer),
        "data_config": to_dict(cfg.data),
        "masking": cfg.masking.to_dict(),
        "semantic": None
        if channel is None
        else dict(to_dict(cfg.semantic), dim=channel.table.shape[1], stats=channel.stats),
        "parameters": count_params(model),
        "training_data": {
            "sources": prep.sources,
            "distinct_train_lines": len(prep.train),
            "distinct_val_lines": len(prep.val),
            "held_out": list(data_mod.TEST_SYSTEMS),
        },
        "training": {
            "best_epoch": hist["best_epoch"],
            "best_val_acc": hist["best_val_acc"],
            "stage": "finetune" if stage != cfg.work_dir else "train",
        },
    }
    for name in ("centroids.npy", "radii.npy"):
        (cfg.out_dir / name).unlink(missing_ok=True)
    write_manifest(cfg.out_dir, dict(manifest))
    lab = Labeler.load(cfg.out_dir)
    logs = [e for e in prep.train + prep.val if e.source != CORPUS]
    texts = [e.text for e in logs]
    k = len({e.label for e in logs if e.label >= 0})
    if k:  # the train systems' templates: KMeans with k = their number
        cm = clustering.fit(lab.embed_masked(texts), k=k, seed=cfg.train.seed)
        centroids, radii = cm.centroids, cm.radii
    else:  # plain logs: by distance, as the sidecar clusters
        x = lab.embed_masked(list(dict.fromkeys(texts)))
        centroids, labels = threshold_cluster(x, FALLBACK_THRESHOLD)
        radii = radii_of(labels, nearest_centroid(x, centroids)[1], len(centroids))
    np.save(cfg.out_dir / "centroids.npy", centroids, allow_pickle=False)
    np.save(cfg.out_dir / "radii.npy", radii, allow_pickle=False)
    write_manifest(cfg.out_dir, dict(manifest, files={}))


def step_prose_words(cfg: PipelineConfig) -> None:
    """Distils the teacher's word vectors into the bundle (`training/prose_words.py`),
    before `calibrate` so that the group threshold is chosen with them; skipped, with a
    line, when the teacher is not installed."""
    if not teacher.available():
        print("prose_words: the teacher is not installed (extra `distill`); table not made")
        return
    entry = prose_words.build(cfg.out_dir)
    print(f"prose_words: {entry['tokens']} tokens x {entry['dim']} in {entry['file']}")


def step_calibrate(cfg: PipelineConfig) -> float | None:
    """Chooses the bundle's clustering threshold on the train systems (stream GA and ARI
    of the serving clusterer, `training.evaluate.streaming.calibration_score`); writes
    it, with the curve, into the manifest and the report.

    Returns:
        The threshold, or None when `data_dir` holds no ground-truth templates (the
        bundle then keeps `FALLBACK_THRESHOLD`).
    """
    sets = data_mod.load_training_lines(cfg.data_dir)
    train = {n: (s.content, s.templates) for n, s in sets.items() if s.templates}
    if not train:
        print("calibrate: no ground-truth templates in --data; threshold left uncalibrated")
        return None
    root = Path(cfg.data_dir)
    held = {
        n: (s.content, s.templates)
        for n, s in data_mod.load_loghub(
            root, [t for t in data_mod.TEST_SYSTEMS if (root / t).is_dir()]
        ).items()
        if s.templates
    }
    lab = Labeler.load(cfg.out_dir)
    result = calibrate(lab, train, held, progress=print)
    # The group level: prose topics and the probe of meaning, never a held-out system.
    group_tau, group_curve = calibrate_group_threshold(Labeler.load(cfg.out_dir))
    manifest = json.loads((cfg.out_dir / "manifest.json").read_text())
    manifest["clustering"] = {
        "threshold": result["threshold"],
        "rule": "nearest centroid within threshold, else a new cluster (Euclidean, unit vectors)",
        "calibration": result,
        "group_threshold": group_tau,
        "group_calibration": group_curve,
    }
    write_manifest(cfg.out_dir, manifest)
    write_section(cfg.out_dir / "REPORT.md", "threshold", threshold_section(manifest["clustering"]))
    print(f"calibrate: threshold {result['threshold']:g}, group threshold {group_tau:g}")
    return float(result["threshold"])


def run(cfg: PipelineConfig, steps: tuple[str, ...] = STEPS, cluster: Cluster = ONE_WORKER) -> None:
    """Runs `steps` in order; on a cluster of workers only the training steps run."""
    unknown = set(steps) - set(STEPS)
    if unknown:
        raise ValueError(f"Unknown steps; choose from {STEPS}. Received: {sorted(unknown)}")
    solo = set(steps) - set(MULTI_WORKER_STEPS)
    if cluster.size > 1 and solo:
        raise ValueError(
            f"On {cluster.size} workers only {MULTI_WORKER_STEPS} run; run the others once, "
            f"on one machine, before and after. Received: steps={sorted(solo)}"
        )
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    cfg.work_dir.mkdir(parents=True, exist_ok=True)
    prep = prepare(cfg)
    if "tokenizer" in steps:
        tok = step_tokenizer(cfg, prep)
        print(f"tokenizer: {tok.vocab_size} pieces (asked for {cfg.tokenizer.vocab_size})")
    # Streamed training uses no teacher targets: then only the semantic step needs them.
    uses_teacher = {"teacher", "semantic"} | (set() if cfg.data.files else {"train", "finetune"})
    needs_teacher = uses_teacher & set(steps)
    teacher_emb = step_teacher(cfg, prep) if needs_teacher else None
    if "train" in steps:
        step_train(cfg, prep, teacher_emb, cluster)
    if "finetune" in steps:
        step_finetune(cfg, prep, teacher_emb, cluster)
    if "semantic" in steps:
        step_semantic(cfg, prep, teacher_emb)
    if "export" in steps:
        step_export(cfg, prep)
        print(f"bundle written to {cfg.out_dir}")
    if "prose_words" in steps:
        step_prose_words(cfg)
    if "calibrate" in steps:
        step_calibrate(cfg)
    if "evaluate" in steps:
        weights = best_stage_dir(cfg.work_dir) / "best.weights.h5"
        evaluate(cfg.out_dir, cfg.data_dir, cfg.work_dir, weights, [e.text for e in prep.val])
