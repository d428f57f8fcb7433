"""Mechanisms every Ticketing service shares, written once.

from shared_lib.errors import BadRequest
from shared_lib.auth import JWTAuthentication, IsSignedIn
raise BadRequest("Title is required", field="title")
"""
