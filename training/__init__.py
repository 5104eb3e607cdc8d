"""Training and evaluation of logclust bundles (a checkout only: not in the serving wheel).

Run from the repository root: `python -m training --data ../shared/data/loghub-2k
--out models/default --work runs/default --config training/default.toml`.
Needs the `train` extra (TensorFlow, scikit-learn, SciPy, matplotlib, Drain3) and, for
distillation, `distill`.
"""
