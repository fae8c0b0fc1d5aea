"""`thactl serve`: the local browser app. One HTTP server (server.py), one page module per page.

A page is an object with a `prefix` (e.g. "/models") and `handle(req) -> Response | None`; it owns
every URL under its prefix and under "/api" + prefix. Pages never read or write outside the
folders and files in `ServeConfig`.
"""
