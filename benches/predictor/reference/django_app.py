"""The old app's prediction views, as a one-file Django project (run under gunicorn)."""

import django
from django.conf import settings
from django.http import JsonResponse
from django.urls import path

settings.configure(
    DEBUG=False,
    ROOT_URLCONF=__name__,
    ALLOWED_HOSTS=["*"],
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

import svd_model  # noqa: E402

MODEL = svd_model.load()


def predict(request):
    return JsonResponse(MODEL.predict(request.GET["user"], request.GET["item"]))


def recommendations(request, user):
    return JsonResponse(MODEL.recommend(user, int(request.GET.get("n", 10))))


urlpatterns = [
    path("v1/predict", predict),
    path("v1/users/<str:user>/recommendations", recommendations),
]

from django.core.wsgi import get_wsgi_application  # noqa: E402

application = get_wsgi_application()
