from django.urls import path

from opsportal.people import views

app_name = "people"
urlpatterns = [
    path("shifts/<str:token>.ics", views.shift_feed_view, name="shift_feed"),
]
