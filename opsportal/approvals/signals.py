from django.dispatch import Signal

# Sent with `approval` (an ApprovalRequest) once it is approved, rejected, expired or
# withdrawn, after its subject moved on, so a domain (an incident's timeline) can record it.
approval_decided = Signal()
