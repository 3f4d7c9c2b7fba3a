from django.urls import path

from opsportal.statuspage import views

app_name = "statuspage"

urlpatterns = [
    path("", views.index, name="index"),
    path("incidents/<int:incident_id>/", views.incident, name="incident"),
    path("history/", views.history, name="history"),
    path("feed.atom", views.feed, name="feed"),
    path("maintenance.ics", views.calendar, name="calendar"),
    path("subscribe/", views.subscribe, name="subscribe"),
    path("subscribe/confirm/<str:signed>/", views.confirm, name="confirm"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
