"""Plain Django views: what shared_lib gives views outside DRF."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET, require_POST


@require_GET
def ping(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"pong": True})


def current_user(request: HttpRequest) -> JsonResponse:
    user = request.current_user
    return JsonResponse({"currentUser": user.as_dict() if user else None})


@require_POST
def form_echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"name": request.POST.get("name")})
