"""URL routes: admin, health, metrics, and the apps' own routes."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from clinic import views

admin.site.site_header = "Clinic intake"
admin.site.site_title = "Clinic intake"
admin.site.index_title = "Front desk and scheduling"

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/", admin.site.urls),
    path("health/live", views.live, name="health-live"),
    path("health/ready", views.ready, name="health-ready"),
    path("voice/", include("voice.urls")),
    path("", include("django_prometheus.urls")),
]
