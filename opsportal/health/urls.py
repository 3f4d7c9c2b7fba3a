from django.urls import path

from opsportal.health import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/detailed", views.health_detailed, name="health-detailed"),
    path("metrics", views.prometheus_metrics, name="metrics"),
]
