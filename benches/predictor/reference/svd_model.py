"""Surprise's SVD trained on ml-100k, as the app the predictor replaces served it.

Predictions go through `algo.predict` (what the old Django views called); top-N is computed with
numpy over all items, excluding the items the user rated, unknown users ranked by item bias.
"""

import os
import sys

import numpy as np
from surprise import SVD, Dataset, Reader, dump

MODEL_VERSION = "surprise-svd"


def train(data_file: str, out: str) -> None:
    data = Dataset.load_from_file(data_file, reader=Reader("ml-100k"))
    algo = SVD(random_state=0)
    algo.fit(data.build_full_trainset())
    dump.dump(out, algo=algo)


class Reference:
    def __init__(self, path: str):
        _, algo = dump.load(path)
        ts = algo.trainset
        self.algo = algo
        self.ts = ts
        self.lo, self.hi = ts.rating_scale
        self.base = ts.global_mean + algo.bi
        self.raw_items = [ts.to_raw_iid(i) for i in range(ts.n_items)]
        self.rated = {u: np.fromiter((i for i, _ in ts.ur[u]), dtype=np.int64) for u in ts.all_users()}
        self.by_bias = np.argsort(-algo.bi, kind="stable")

    def _inner_user(self, user: str):
        try:
            return self.ts.to_inner_uid(user)
        except ValueError:
            return None

    def predict(self, user: str, item: str) -> dict:
        p = self.algo.predict(user, item)
        known_user = self._inner_user(user) is not None
        try:
            known_item = self.ts.knows_item(self.ts.to_inner_iid(item))
        except ValueError:
            known_item = False
        return {
            "model_version": MODEL_VERSION,
            "user": user,
            "item": item,
            "rating": float(p.est),
            "user_known": known_user,
            "item_known": known_item,
        }

    def recommend(self, user: str, n: int) -> dict:
        u = self._inner_user(user)
        if u is None:
            top = self.by_bias[:n]
            scores = self.ts.global_mean + self.algo.bi[top]
            cold = True
        else:
            all_scores = self.base + self.algo.bu[u] + self.algo.qi @ self.algo.pu[u]
            all_scores[self.rated[u]] = -np.inf
            top = np.argpartition(-all_scores, n)[:n]
            top = top[np.argsort(-all_scores[top])]
            scores = all_scores[top]
            cold = False
        scores = np.clip(scores, self.lo, self.hi)
        return {
            "model_version": MODEL_VERSION,
            "user": user,
            "cold_start": cold,
            "items": [{"item": self.raw_items[i], "score": float(s)} for i, s in zip(top, scores)],
        }


def load() -> Reference:
    return Reference(os.environ["BENCH_SURPRISE_MODEL"])


if __name__ == "__main__":
    train(sys.argv[1], sys.argv[2])
