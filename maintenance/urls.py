from django.urls import path

from maintenance import views

app_name = "maintenance"

urlpatterns = [
    path("calendar/<str:token>.ics", views.calendar_feed, name="calendar_feed"),
]
