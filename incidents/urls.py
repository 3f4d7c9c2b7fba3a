from django.urls import path

from incidents.views import alertmanager_webhook

app_name = "incidents"
urlpatterns = [
    path("alertmanager/", alertmanager_webhook, name="alertmanager_webhook"),
]
