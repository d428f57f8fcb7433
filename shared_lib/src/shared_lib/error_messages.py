"""The messages of the one error shape, for whatever answers in it: the services
(shared_lib.errors) and the gateway nginx runs in front of them (ticketing_devtools'
gateway), which must not need Django to read them.

    from shared_lib.error_messages import NOT_FOUND
    assert response.json() == {"errors": [{"message": NOT_FOUND}]}
"""

# Messages the API promises (docs/api.md); tests assert these exact strings.
NOT_AUTHORIZED = "Not authorized"
FORBIDDEN = "Forbidden"
NOT_FOUND = "Not Found"
TOO_MANY_REQUESTS = "Too many requests"
METHOD_NOT_ALLOWED = "Method not allowed"
MALFORMED_JSON = "Malformed JSON body"
UNSUPPORTED_MEDIA_TYPE = "Unsupported media type: send application/json"
NOT_ACCEPTABLE = "Not acceptable"
BODY_TOO_LARGE = "Request body too large"
BAD_REQUEST = "Bad request"
CONFLICT = "The resource was changed by someone else; reload and try again"
SERVICE_UNAVAILABLE = "Service unavailable"
INTERNAL_ERROR = "Something went wrong"
# Only the gateway answers this one: a service it waited on too long.
GATEWAY_TIMEOUT = "Gateway timeout"
