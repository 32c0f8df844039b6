"""Eight connections, 2,000 transactions on overlapping rows: every committed change is
in the log exactly once, nothing rolled back is, and the audit code adds no deadlock or
serialization failure."""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter

import psycopg

from audit_capture import set_context

# every test here runs against both capture modes (see conftest.py)
CAPTURE_MODES = ("generated", "generic")

THREADS = 8
TRANSACTIONS_PER_THREAD = 250
ROW_IDS = range(1, 41)  # small, so transactions fight over the same rows


def run_worker(url: str, seed: int, expected: Counter, rolled_back: set, errors: list, lock):
    rng = random.Random(seed)
    mine: Counter = Counter()
    my_rollbacks = set()
    try:
        with psycopg.connect(url) as conn:
            for n in range(TRANSACTIONS_PER_THREAD):
                request_id = f"w{seed}-{n}"
                # one row per transaction: the application itself cannot deadlock
                row_id = rng.choice(ROW_IDS)
                done = []
                set_context(
                    conn,
                    actor_id=str(seed),
                    actor_type="admin",
                    source="api",
                    request_id=request_id,
                )
                for _ in range(rng.randint(1, 3)):
                    operation = rng.choice(["insert", "update", "update", "delete"])
                    if operation == "insert":
                        cur = conn.execute(
                            "insert into clients (id, name) values (%s, %s) on conflict do nothing",
                            (row_id, f"Client {row_id}"),
                        )
                    elif operation == "update":
                        cur = conn.execute(
                            "update clients set notes = %s where id = %s",
                            (uuid.uuid4().hex, row_id),
                        )
                    else:
                        cur = conn.execute("delete from clients where id = %s", (row_id,))
                    if cur.rowcount:
                        done.append((request_id, operation, str(row_id)))
                if rng.random() < 0.2:
                    conn.rollback()
                    my_rollbacks.add(request_id)
                else:
                    conn.commit()
                    mine.update(done)
    except Exception as exc:  # any error fails the test, with its message
        errors.append(repr(exc))
    with lock:
        expected.update(mine)
        rolled_back.update(my_rollbacks)


def test_concurrent_transactions_are_logged_exactly_once(db_url, conn):
    expected: Counter = Counter()
    rolled_back: set = set()
    errors: list = []
    lock = threading.Lock()
    threads = [
        threading.Thread(
            target=run_worker, args=(db_url, seed, expected, rolled_back, errors, lock)
        )
        for seed in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    kinds = {"create": "insert", "update": "update", "delete": "delete"}
    logged = Counter(
        (request_id, kinds[action_type], resource_id)
        for request_id, action_type, resource_id in conn.execute(
            "select request_id, action_type, resource_id from audit.action_log "
            "where resource_type = 'client'"
        )
    )
    assert logged == expected
    assert sum(expected.values()) > 1000  # the workload really wrote
    assert rolled_back and not rolled_back & {request_id for request_id, _, _ in logged}
    # every action reads back as exactly its rows, and no chunk of items is orphaned
    assert (
        conn.execute(
            "select count(*) from audit.action_log l "
            "where (select count(*) from audit.action_items(l.id)) <> l.row_count"
        ).fetchone()[0]
        == 0
    )
    assert (
        conn.execute(
            "select count(*) from audit.action_item_chunk c "
            "where not exists (select from audit.action_log l where l.id = c.action_id)"
        ).fetchone()[0]
        == 0
    )
