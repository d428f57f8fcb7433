"""The client as deployed: gunicorn with client_site.gunicorn_conf, one worker process."""

import io
from concurrent.futures import ThreadPoolExecutor

import requests

from client_site import gunicorn_conf
from shared_lib.testing.processes import free_port, gunicorn_command
from tests.conftest import url_of
from ticketing_devtools.catalog import service
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.environment import service_env
from ticketing_devtools.supervisor import Supervisor

PAGES_AT_ONCE = 4


def test_the_client_runs_every_services_gunicorn_settings_with_threads():
    from shared_lib import gunicorn_conf as shared

    assert (gunicorn_conf.worker_class, gunicorn_conf.threads) == ("gthread", 8)
    assert gunicorn_conf.on_starting is shared.on_starting  # metrics' multiprocess hooks
    assert gunicorn_conf.child_exit is shared.child_exit
    assert (gunicorn_conf.timeout, gunicorn_conf.logconfig_dict) == (
        shared.timeout,
        shared.logconfig_dict,
    )


def test_one_worker_serves_pages_while_they_wait_on_the_apis(recorder, stack):
    # `stack`: its start-up collected the static files the pages link to.
    recorder.routes["/api/tickets"] = (200, [], b"[]")
    # The API answers only once all these pages wait on it at the same time: a worker
    # that held one page through its wait would serve them in turn, and each would fail.
    recorder.answer_together({"/api/tickets"}, PAGES_AT_ONCE)
    port = free_port()
    env = {
        **service_env(service("client"), ensure_dev_secrets()),
        "API_BASE_URL": url_of(recorder),
        "WEB_CONCURRENCY": "1",
    }
    with Supervisor(log=io.StringIO()) as supervisor:
        supervisor.start(
            "client-web",
            gunicorn_command(
                "client_site.wsgi", port=port, config_module=service("client").gunicorn_conf
            ),
            cwd=service("client").directory,
            env=env,
        )
        supervisor.wait_http("client-web", f"http://127.0.0.1:{port}/readyz")

        def page(_: int) -> int:
            return requests.get(
                f"http://127.0.0.1:{port}/", headers={"Host": "localhost"}, timeout=30
            ).status_code

        with ThreadPoolExecutor(PAGES_AT_ONCE) as browsers:
            statuses = list(browsers.map(page, range(PAGES_AT_ONCE)))

    assert statuses == [200] * PAGES_AT_ONCE
    assert len(recorder.seen) == PAGES_AT_ONCE
