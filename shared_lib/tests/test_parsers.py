import pytest

from shared_lib.parsers import JSON_TOO_DEEP, MAX_JSON_DEPTH
from tests.demo.models import Visit

TOO_DEEP = "JSON body nested too deeply: at most 64 levels of arrays and objects"


def only_error(message: str) -> dict:
    return {"errors": [{"message": message}]}


def nested(depth: int, *, opener: str = "[", closer: str = "]") -> bytes:
    return (opener * depth + closer * depth).encode()


def nested_objects(depth: int) -> bytes:
    return ('{"a":' * depth + "1" + "}" * depth).encode()


@pytest.fixture(params=["anonymous", "signed-in"])
def caller(request, api_client, signed_in_client):
    return api_client if request.param == "anonymous" else signed_in_client()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        nested(100_000),  # far past the interpreter's recursion limit
        nested(100_000)[:100_000],  # never closed: still too deep, not merely malformed
        nested_objects(5_000),
        nested(MAX_JSON_DEPTH + 1),  # parses fine, but deeper than the API accepts
        b'{"a": [' + nested(MAX_JSON_DEPTH) + b"]}",
    ],
    ids=["arrays-100000", "unclosed-100000", "objects-5000", "arrays-65", "mixed-66"],
)
def test_deeply_nested_json_is_a_400_and_the_view_does_not_run(caller, body):
    response = caller.generic("POST", "/api/demo/echo", body, content_type="application/json")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == only_error(TOO_DEEP)
    assert not Visit.objects.exists()


@pytest.mark.django_db
def test_json_at_the_depth_limit_is_accepted(api_client):
    body = '{"a": ' + "[" * (MAX_JSON_DEPTH - 1) + '"x"' + "]" * (MAX_JSON_DEPTH - 1) + "}"

    response = api_client.generic("POST", "/api/demo/echo", body, content_type="application/json")

    assert response.status_code == 200
    received = response.json()["received"]["a"]
    for _ in range(MAX_JSON_DEPTH - 2):
        [received] = received
    assert received == ["x"]
    assert Visit.objects.filter(view="echo").count() == 1


@pytest.mark.django_db
def test_nested_text_is_still_checked_below_the_limit(api_client):
    body = '[[{"a": ["ok", "nul\\u0000"]}]]'

    response = api_client.generic("POST", "/api/demo/echo", body, content_type="application/json")

    assert response.status_code == 400
    assert response.json() == only_error("Malformed JSON body")
    assert not Visit.objects.exists()


def test_the_depth_limit_and_its_message_agree():
    assert MAX_JSON_DEPTH == 64
    assert JSON_TOO_DEEP == TOO_DEEP
