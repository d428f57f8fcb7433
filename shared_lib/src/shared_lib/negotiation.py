"""Content negotiation: the API answers JSON whatever Accept a browser sends.

    REST_FRAMEWORK = {"DEFAULT_CONTENT_NEGOTIATION_CLASS": "shared_lib.negotiation.JsonFirst"}
    # GET /api/tickets  Accept: text/html,...      -> application/json
    # GET /api/tickets?format=api                   -> DRF's browsable API (HTML)

A web client that renders its pages on a server may forward the browser's own headers to
the API, so a page load asks for `text/html`. DRF's stock negotiation
would answer that with the browsable API's HTML page, and answer an Accept it cannot
satisfy (`application/xml`) with 406; clients of this API expect JSON in both cases.
"""

from __future__ import annotations

from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer
from rest_framework.request import Request


class JsonFirst(DefaultContentNegotiation):
    """DRF's negotiation, except that the browsable API is only served on request.

    - `?format=` (or a format suffix) names the renderer outright, whatever Accept says;
      `?format=api` is the browsable API, an unknown format a 404.
    - Otherwise Accept chooses among the other renderers (a view with several formats,
      like the OpenAPI schema's YAML and JSON, keeps them), and when none of them
      matches, the view's first renderer answers instead of a 406.
    """

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        requested = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
        if requested:
            # filter_renderers raises Http404 when no renderer has this format.
            chosen = self.filter_renderers(renderers, requested)[0]
            return chosen, chosen.media_type
        offered = [r for r in renderers if not isinstance(r, BrowsableAPIRenderer)] or renderers
        try:
            return super().select_renderer(request, offered, format_suffix)
        except NotAcceptable:
            return offered[0], offered[0].media_type
