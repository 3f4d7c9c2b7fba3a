from django.urls import path

from incidents.views import acknowledge_link, alertmanager_webhook

app_name = "incidents"
urlpatterns = [
    path("alertmanager/", alertmanager_webhook, name="alertmanager_webhook"),
    path("<int:incident_id>/acknowledge/<str:token>/", acknowledge_link, name="acknowledge_link"),
]
