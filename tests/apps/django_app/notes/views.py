"""A list of notes and a form (with Django's CSRF token) that adds one."""

import os

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from notes.models import Note


def index(request: HttpRequest) -> HttpResponse:
    return render(request, "notes/index.html", {
        "notes": Note.objects.order_by("id"),
        "app_path": os.environ.get("CL_APP_PATH", ""),
    })


@require_POST
def add(request: HttpRequest) -> HttpResponse:
    text = request.POST.get("text", "").strip()
    if text:
        Note.objects.create(text=text[:200])
    return redirect("index")


@login_required
def private(request: HttpRequest) -> HttpResponse:
    """Sends visitors to LOGIN_URL (Django's default, /accounts/login/)."""
    return HttpResponse("private")
