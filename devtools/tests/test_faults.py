"""The system keeps its promises under faults: no double booking, no lost event, no event
applied twice, no double charge. One stack of its own, whose broker connections and
orders database connections go through relays (ticketing_devtools.chaos) the tests cut;
the shared servers themselves stay up."""

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
from kombu import Connection

from shared_lib.events.broker import dead_queue_name, queue_name
from shared_lib.events.contracts import CONSUMERS
from shared_lib.testing.rabbitmq import broker_url, throwaway_vhost
from shared_lib.testing.waiting import wait_for
from tests import system
from ticketing_devtools.backing import admin_url, endpoints, rabbitmq_url
from ticketing_devtools.catalog import service
from ticketing_devtools.chaos import TcpProxy
from ticketing_devtools.devkeys import ensure_dev_secrets
from ticketing_devtools.provision import database_url
from ticketing_devtools.status import Target, collect, queue_depths
from ticketing_devtools.testing import StackSettings, running_stack

# How long the broker stays away: long enough that every retry and reconnect path runs,
# short enough for CI.
OUTAGE_SECONDS = 10
CONVERGE_SECONDS = 60
STORM_TICKETS = 200
STORM_UPDATES = 5
BUYERS = 100
PAYERS = 20


@pytest.fixture(scope="module")
def relays():
    postgresql, rabbitmq, _ = endpoints()
    broker = TcpProxy(rabbitmq.host, rabbitmq.port).start()
    orders_db = TcpProxy(postgresql.host, postgresql.port).start()
    yield broker, orders_db
    broker.stop()
    orders_db.stop()


@pytest.fixture(scope="module")
def faulty(relays, tmp_path_factory):
    broker, orders_db = relays
    settings = StackSettings(
        db_prefix=f"ticketing_faults_{uuid.uuid4().hex[:8]}",
        # A window no test here waits out: expiry is not what these tests are about.
        env={"EXPIRATION_WINDOW_SECONDS": "600"},
    )
    orders = service("orders")
    with throwaway_vhost(rabbitmq_url(), "ticketing-faults") as vhost:
        # The admin of RABBITMQ_URL, through the relay.
        relayed = broker_url(rabbitmq_url(), host="127.0.0.1", port=broker.port, vhost=vhost)
        orders_database = database_url(
            database=orders.database(settings.db_prefix),
            role=orders.database(),
            password=ensure_dev_secrets().db_password("orders"),
            port=orders_db.port,
        )
        with running_stack(
            settings,
            broker_url=relayed,
            directory=tmp_path_factory.mktemp("faults"),
            env_overrides={"orders": {"DATABASE_URL": orders_database}},
        ) as stack:
            stack.vhost = vhost
            yield stack


# --- helpers ------------------------------------------------------------------------------


def rows(stack, name, sql, params=()):
    url = admin_url(service(name).database(stack.db_prefix))
    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchall()


def person(stack):
    return system.user(stack, "person")


def create_ticket(stack, seller, title="Fault line", price="20.00"):
    response = seller.post(
        f"{stack.url}/api/tickets", json={"title": title, "price": price}, timeout=30
    )
    assert response.status_code == 201, response.text
    return response.json()


def tickets_in(stack, name, table, ticket_ids):
    """{id: (title, price, version)} of these tickets in one service's table."""
    found = rows(
        stack,
        name,
        f"SELECT id::text, title, price, version FROM {table} WHERE id = ANY(%s)",  # noqa: S608
        [list(ticket_ids)],
    )
    return {row[0]: row[1:] for row in found}


def replica_of(stack, ticket_ids):
    return tickets_in(stack, "orders", "orders_ticketreplica", ticket_ids)


def source_of(stack, ticket_ids):
    return tickets_in(stack, "tickets", "tickets_ticket", ticket_ids)


def queues(stack):
    """{queue: (ready, unacked)} of the stack's vhost, as the status command reads it."""
    return {q.name: (q.ready, q.unacked) for q in queue_depths(stack.vhost)}


def backlog(stack, prefix):
    """Consumer queues under `prefix` still holding messages: {queue: (ready, unacked)}."""
    return {
        name: depth
        for name, depth in queues(stack).items()
        if name.startswith(prefix)
        and ".wait." not in name
        and not name.endswith(".dead")
        and depth != (0, 0)
    }


def dead_letters(stack):
    return {name: ready for name, (ready, _) in queues(stack).items() if name.endswith(".dead")}


def unsent_outbox(stack):
    return {
        name: rows(
            stack, name, "SELECT count(*) FROM shared_lib_outboxevent WHERE sent_at IS NULL"
        )[0][0]
        for name in ("tickets", "orders", "payments")
    }


def converged(stack, ticket_ids):
    source = source_of(stack, ticket_ids)
    return len(source) == len(ticket_ids) and replica_of(stack, ticket_ids) == source


# --- races --------------------------------------------------------------------------------


def test_a_hundred_buyers_of_one_ticket_make_one_order_and_twenty_payments_one_charge(faulty):
    seller = person(faulty)
    ticket = create_ticket(faulty, seller, price="75.00")
    wait_for(lambda: converged(faulty, [ticket["id"]]), timeout=CONVERGE_SECONDS)
    with ThreadPoolExecutor(16) as pool:
        buyers = list(pool.map(lambda _: person(faulty), range(BUYERS)))

    def buy(buyer):
        return buyer.post(f"{faulty.url}/api/orders", json={"ticketId": ticket["id"]}, timeout=60)

    with ThreadPoolExecutor(BUYERS) as pool:
        answers = list(pool.map(buy, buyers))

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] + [400] * (BUYERS - 1)
    losers = {a.json()["errors"][0]["message"] for a in answers if a.status_code == 400}
    assert losers == {"Ticket is already reserved"}
    assert (
        rows(
            faulty,
            "orders",
            "SELECT count(*) FROM orders_order WHERE ticket_id = %s",
            [ticket["id"]],
        )[0][0]
        == 1
    )

    winner_index = next(i for i, a in enumerate(answers) if a.status_code == 201)
    winner, order = buyers[winner_index], answers[winner_index].json()
    wait_for(
        lambda: (
            rows(
                faulty,
                "payments",
                "SELECT count(*) FROM payments_orderreplica WHERE id = %s",
                [order["id"]],
            )[0][0]
            == 1
        ),
        timeout=CONVERGE_SECONDS,
    )

    def pay(_):
        return winner.post(
            f"{faulty.url}/api/payments",
            json={"orderId": order["id"], "token": "pm_card_visa"},
            timeout=60,
        )

    with ThreadPoolExecutor(PAYERS) as pool:
        payments = list(pool.map(pay, range(PAYERS)))

    assert sorted(p.status_code for p in payments) == [201] + [400] * (PAYERS - 1)
    assert {p.json()["errors"][0]["message"] for p in payments if p.status_code == 400} == {
        "Order is already paid"
    }
    intents = requests.get(
        f"{faulty.extra_env['STRIPE_API_BASE']}/v1/payment_intents",
        params={"limit": 100},
        auth=("sk_test_local", ""),
        timeout=10,
    ).json()["data"]
    charged = [i for i in intents if i["metadata"].get("orderId") == order["id"]]
    assert [i["status"] for i in charged] == ["succeeded"]
    assert charged[0]["amount"] == 7500
    wait_for(
        lambda: buyer_sees(faulty, winner, order["id"]) == "complete", timeout=CONVERGE_SECONDS
    )


def buyer_sees(stack, buyer, order_id):
    return buyer.get(f"{stack.url}/api/orders/{order_id}", timeout=10).json()["status"]


# --- replication ----------------------------------------------------------------------------


def test_a_replication_storm_with_two_orders_workers_converges_exactly(faulty):
    second = faulty.add_worker("orders")
    try:
        seller = person(faulty)
        with ThreadPoolExecutor(8) as pool:
            tickets = list(
                pool.map(
                    lambda n: create_ticket(faulty, seller, f"Storm {n}"), range(STORM_TICKETS)
                )
            )

        def update(ticket):
            for n in range(1, STORM_UPDATES + 1):
                response = seller.put(
                    f"{faulty.url}/api/tickets/{ticket['id']}",
                    json={"title": f"{ticket['title']} v{n}", "price": f"{20 + n}.50"},
                    timeout=30,
                )
                assert response.status_code == 200, response.text

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(update, tickets))

        ids = [t["id"] for t in tickets]
        wait_for(lambda: converged(faulty, ids), timeout=CONVERGE_SECONDS * 2)
        source = source_of(faulty, ids)
        assert {version for (_, _, version) in source.values()} == {STORM_UPDATES}
        assert all(title.endswith(f" v{STORM_UPDATES}") for (title, _, _) in source.values())
        assert replica_of(faulty, ids) == source
        assert set(dead_letters(faulty).values()) <= {0}
    finally:
        faulty.supervisor.kill(second)


def test_a_worker_killed_mid_stream_loses_nothing_and_applies_nothing_twice(faulty):
    seller = person(faulty)
    first = [create_ticket(faulty, seller, f"Before kill {n}") for n in range(20)]
    faulty.supervisor.kill("orders-worker")  # SIGKILL, mid-stream: no shutdown at all
    later = [create_ticket(faulty, seller, f"After kill {n}") for n in range(20)]
    for ticket in later[:10]:
        response = seller.put(
            f"{faulty.url}/api/tickets/{ticket['id']}",
            json={"title": ticket["title"] + " (edited)", "price": "30"},
            timeout=30,
        )
        assert response.status_code == 200

    faulty.restart_worker("orders", kill=False)

    ids = [t["id"] for t in first + later]
    wait_for(lambda: converged(faulty, ids), timeout=CONVERGE_SECONDS)
    inbox = rows(
        faulty,
        "orders",
        "SELECT message_id, count(*) FROM shared_lib_inboxmessage GROUP BY message_id, consumer "
        "HAVING count(*) > 1",
    )
    assert inbox == []
    assert set(dead_letters(faulty).values()) <= {0}
    # Nothing stuck: the orders consumer queues drain (what the killed worker held
    # unacknowledged went back to its queue and the new worker handled it).
    wait_for(lambda: not backlog(faulty, "orders."), timeout=CONVERGE_SECONDS)


# --- a database away ----------------------------------------------------------------------


def test_with_its_database_unreachable_a_service_is_unready_the_others_serve_and_it_recovers(
    faulty, relays
):
    _, orders_db = relays
    seller, buyer = person(faulty), person(faulty)
    ticket = create_ticket(faulty, seller)
    wait_for(lambda: converged(faulty, [ticket["id"]]), timeout=CONVERGE_SECONDS)
    pid_before = next(c.process.pid for c in faulty.supervisor.children if c.name == "orders-web")

    orders_db.cut()
    try:
        ready = requests.get(f"{faulty.service_url('orders')}/readyz", timeout=10)
        assert ready.status_code == 503
        assert ready.json()["errors"] == [{"message": "Not ready: database"}]
        assert ready.json()["checks"] == {"database": "error"}
        order = buyer.post(f"{faulty.url}/api/orders", json={"ticketId": ticket["id"]}, timeout=30)
        assert order.status_code == 503
        assert order.json() == {"errors": [{"message": "Service unavailable"}]}
        assert order.headers["Retry-After"] == "2"
        # The others keep serving, writes included.
        assert (
            requests.get(f"{faulty.service_url('tickets')}/readyz", timeout=10).status_code == 200
        )
        during = create_ticket(faulty, seller, "Listed while orders was down")
        assert (
            requests.get(f"{faulty.url}/api/tickets/{during['id']}", timeout=10).status_code == 200
        )
    finally:
        orders_db.restore()

    wait_for(
        lambda: (
            requests.get(f"{faulty.service_url('orders')}/readyz", timeout=10).status_code == 200
        ),
        timeout=30,
    )
    order = buyer.post(f"{faulty.url}/api/orders", json={"ticketId": ticket["id"]}, timeout=30)
    assert order.status_code == 201, order.text
    # The event that arrived during the outage was retried, not lost.
    wait_for(lambda: converged(faulty, [during["id"]]), timeout=CONVERGE_SECONDS)
    pid_after = next(c.process.pid for c in faulty.supervisor.children if c.name == "orders-web")
    assert pid_after == pid_before  # recovered without a restart


# --- the broker away ------------------------------------------------------------------------


def test_a_broker_outage_loses_no_write_and_every_replica_converges_once_it_is_back(faulty, relays):
    broker, _ = relays
    seller, buyer = person(faulty), person(faulty)
    ready_before = [create_ticket(faulty, seller, f"Pre-outage {n}") for n in range(5)]
    wait_for(lambda: converged(faulty, [t["id"] for t in ready_before]), timeout=CONVERGE_SECONDS)

    broker.cut()
    created, orders = [], []
    try:
        deadline = time.monotonic() + OUTAGE_SECONDS
        n = 0
        while time.monotonic() < deadline:
            created.append(create_ticket(faulty, seller, f"During outage {n}"))
            n += 1
            time.sleep(0.3)
        for ticket in created[:5]:
            response = seller.put(
                f"{faulty.url}/api/tickets/{ticket['id']}",
                json={"title": ticket["title"] + " (edited)", "price": "21"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
        for ticket in ready_before:  # the orders replica already has these
            response = buyer.post(
                f"{faulty.url}/api/orders", json={"ticketId": ticket["id"]}, timeout=30
            )
            assert response.status_code == 201, response.text
            orders.append(response.json())
        assert any(unsent_outbox(faulty).values())  # held back, not lost
    finally:
        broker.restore()

    ids = [t["id"] for t in created]
    wait_for(lambda: converged(faulty, ids), timeout=CONVERGE_SECONDS * 2)
    wait_for(lambda: not any(unsent_outbox(faulty).values()), timeout=CONVERGE_SECONDS)
    # Each reservation applied exactly once: the ticket names its order, and its version
    # went up by exactly one.
    pre_ids = [t["id"] for t in ready_before]

    def reservations():
        return {
            row[0]: (row[1], row[2])
            for row in rows(
                faulty,
                "tickets",
                "SELECT id::text, order_id::text, version FROM tickets_ticket WHERE id = ANY(%s)",
                [pre_ids],
            )
        }

    wait_for(lambda: all(order_id for order_id, _ in reservations().values()), timeout=60)
    by_ticket = {o["ticket"]["id"]: o["id"] for o in orders}
    assert reservations() == {tid: (by_ticket[tid], 1) for tid in by_ticket}
    assert set(dead_letters(faulty).values()) <= {0}


# --- poison -------------------------------------------------------------------------------


def test_a_poison_message_in_every_consumer_queue_is_dead_lettered_replayable_and_harmless(
    faulty,
):
    every_queue = sorted(
        queue_name(consumer, subject)
        for subject, consumers in CONSUMERS.items()
        for consumer in consumers
    )
    broker_url = faulty.extra_env["RABBITMQ_URL"]
    with Connection(broker_url) as conn:
        producer = conn.Producer()
        for queue in every_queue:
            producer.publish(
                b"{not json",
                exchange="",
                routing_key=queue,
                content_type="application/json",
                message_id=str(uuid.uuid4()),
                delivery_mode=2,
            )

    wait_for(
        lambda: all(dead_letters(faulty).get(dead_queue_name(q)) == 1 for q in every_queue),
        timeout=CONVERGE_SECONDS,
    )
    # Visible in the operators' status command, every one of them...
    report = collect(Target.of_stack(faulty))
    assert report.dead_letters() == {dead_queue_name(q): 1 for q in every_queue}
    assert len(report.problems()) == len(every_queue)
    # ...and replayable per service with the dead-letter command.
    for name in ("tickets", "orders", "payments"):
        listed = faulty.manage(name, "events_deadletters", "list", "--json")
        mine = [q for q in every_queue if q.startswith(f"{name}.")]
        assert sorted(json.loads(line)["queue"] for line in listed.splitlines()) == mine
        faulty.manage(name, "events_deadletters", "replay", "--by", "ops@example.com")
    # Replayed: consumed again, and as poisonous as before, so back in the dead queue.
    wait_for(
        lambda: all(dead_letters(faulty).get(dead_queue_name(q)) == 1 for q in every_queue),
        timeout=CONVERGE_SECONDS,
    )

    # The consumers kept going: a normal purchase still flows through every service.
    seller, buyer = person(faulty), person(faulty)
    ticket = create_ticket(faulty, seller)
    order = wait_for(
        lambda: (
            [r]
            if (
                r := buyer.post(
                    f"{faulty.url}/api/orders", json={"ticketId": ticket["id"]}, timeout=30
                )
            ).status_code
            == 201
            else None
        ),
        timeout=CONVERGE_SECONDS,
    )[0].json()
    wait_for(
        lambda: (
            requests.get(f"{faulty.url}/api/tickets/{ticket['id']}", timeout=10).json()["orderId"]
            == order["id"]
        ),
        timeout=CONVERGE_SECONDS,
    )
