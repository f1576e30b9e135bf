from django.urls import path
from notes import views

urlpatterns = [
    path("", views.index, name="index"),
    path("add/", views.add, name="add"),
    path("private/", views.private, name="private"),
]
