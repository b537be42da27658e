"""The system database's pool hands out the connection returned last (last in, first out): a lone
statement after a quiet spell, such as a recv woken by a message, runs on a warm connection (its
server process awake, its statements prepared) rather than on the one idle longest."""

from __future__ import annotations

from runtime import db


def test_the_pool_hands_out_the_connection_returned_last(db_url: str) -> None:
    pool = db.make_pool(db_url, min_size=3, max_size=3, name="lifo-test")
    try:
        conns = [pool.getconn() for _ in range(3)]
        pids = [c.info.backend_pid for c in conns]
        for conn in conns:  # returned oldest first: the last one back is conns[2]
            pool.putconn(conn)
        again = pool.getconn()
        assert again.info.backend_pid == pids[2]
        pool.putconn(again)
        # A run of lone statements keeps to that one connection; the others stay idle.
        seen = set()
        for _ in range(10):
            conn = pool.getconn()
            seen.add(conn.info.backend_pid)
            conn.execute("SELECT 1")
            pool.putconn(conn)
        assert seen == {pids[2]}
    finally:
        pool.close()
