"""The same views on Starlette (run under uvicorn)."""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

import svd_model

MODEL = svd_model.load()


async def predict(request):
    q = request.query_params
    return JSONResponse(MODEL.predict(q["user"], q["item"]))


async def recommendations(request):
    n = int(request.query_params.get("n", 10))
    return JSONResponse(MODEL.recommend(request.path_params["user"], n))


app = Starlette(
    routes=[
        Route("/v1/predict", predict),
        Route("/v1/users/{user}/recommendations", recommendations),
    ]
)
