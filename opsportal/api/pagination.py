"""Cursor pagination everywhere: a page costs the same however deep it is and however many
rows there are (no COUNT over the table), and rows added meanwhile do not shift pages."""

from __future__ import annotations

from rest_framework.pagination import CursorPagination


class ApiCursorPagination(CursorPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
    ordering = "-id"
