"""Surprise's SVD() cross-validated on a tab-separated ratings file; prints one JSON line.

Usage: surprise_cv.py FILE FOLDS SEED [svd|baseline]
"""

import json
import sys
import time

from surprise import SVD, BaselineOnly, Dataset, Reader
from surprise.model_selection import KFold, cross_validate


def main() -> None:
    path, folds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    algo_name = sys.argv[4] if len(sys.argv) > 4 else "svd"
    t0 = time.perf_counter()
    reader = Reader(line_format="user item rating timestamp", sep="\t", rating_scale=(1, 5))
    data = Dataset.load_from_file(path, reader=reader)
    load = time.perf_counter() - t0
    algo = SVD(random_state=seed) if algo_name == "svd" else BaselineOnly(verbose=False)
    res = cross_validate(
        algo, data, measures=["RMSE", "MAE"], cv=KFold(folds, random_state=seed, shuffle=True)
    )
    print(
        json.dumps(
            {
                "rmse": float(res["test_rmse"].mean()),
                "mae": float(res["test_mae"].mean()),
                "fit_s_per_fold": float(sum(res["fit_time"]) / folds),
                "test_s_per_fold": float(sum(res["test_time"]) / folds),
                "load_s": load,
            }
        )
    )


if __name__ == "__main__":
    main()
