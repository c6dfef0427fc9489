#!/usr/bin/python3
"""XGBoost `hist` with native categorical splits (enable_categorical), for bench/train.ts --xgb-categorical.

Usage: /usr/bin/python3 bench/xgb-categorical.py TRAIN.csv TEST.csv --categorical a,b [--rounds 500]
    [--max-depth 6] [--eta 0.1] [--max-bin 256] [--threads 2]

Same settings as ../shared/tools/xgb-reference.py (binary:logistic), but the listed columns (integer
category codes in the CSV) become pandas categoricals. Prints one JSON line like the reference.
"""
import argparse, json, time
import pandas as pd, xgboost as xgb
from sklearn.metrics import roc_auc_score

ap = argparse.ArgumentParser()
ap.add_argument("train"); ap.add_argument("test")
ap.add_argument("--categorical", required=True)
ap.add_argument("--rounds", type=int, default=500); ap.add_argument("--max-depth", type=int, default=6)
ap.add_argument("--eta", type=float, default=0.1); ap.add_argument("--max-bin", type=int, default=256)
ap.add_argument("--threads", type=int, default=2)
a = ap.parse_args()

tr, te = pd.read_csv(a.train), pd.read_csv(a.test)
ytr, yte = tr.pop("y"), te.pop("y")
for c in a.categorical.split(","):
    cats = sorted(set(tr[c].dropna().unique()) | set(te[c].dropna().unique()))
    tr[c] = pd.Categorical(tr[c], categories=cats)
    te[c] = pd.Categorical(te[c], categories=cats)
params = {"tree_method": "hist", "nthread": a.threads, "max_depth": a.max_depth, "eta": a.eta,
          "max_bin": a.max_bin, "objective": "binary:logistic", "seed": 0}
t = time.perf_counter()
booster = xgb.train(params, xgb.DMatrix(tr, label=ytr, enable_categorical=True), num_boost_round=a.rounds)
train_s = time.perf_counter() - t
p = booster.predict(xgb.DMatrix(te, enable_categorical=True))
print(json.dumps({"rows_train": len(tr), "train_s": round(train_s, 3), "auc": roc_auc_score(yte, p)}))
