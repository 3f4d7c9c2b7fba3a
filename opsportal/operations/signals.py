from django.dispatch import Signal

# Sent with `operation` once an operation has finished (succeeded, failed or cancelled), so
# the incident or maintenance window it belongs to can record the result on its timeline.
operation_finished = Signal()
