"""`{% portal_result_list cl %}`: Django's `{% result_list cl %}` with the rows written by
opsportal.admin_rows (the same markup, a fraction of the CPU)."""

from django import template
from django.contrib.admin.templatetags.base import InclusionAdminNode

from opsportal import admin_rows

register = template.Library()


@register.tag(name="portal_result_list")
def portal_result_list_tag(parser, token):
    return InclusionAdminNode(
        parser,
        token,
        func=admin_rows.result_list,
        template_name="change_list_results.html",
        takes_context=False,
    )
