"""The spool service under gevent (each test runs a child process): commit, group commit,
spool-in, quarantine."""

from __future__ import annotations

import os

from ecmta.tests.spool.helpers import db, infos, ok_ids, run_child, verify_spool


def test_commit_update_load_remove_through_the_service(tmp_path):
    lines, _ = run_child("roundtrip", tmp_path / "spool")
    first, after, missing = infos(lines)
    assert first["count"] == 3
    assert first["bodies"] == 2                       # two recipients share, one has its own
    assert first["same"] is True and first["body2"] == "Subject: own\r\n\r\nedited for r2\r\n"
    m0 = first["m0"]
    assert (m0["attempts"], m0["next_attempt"], m0["code"], m0["state"]) == (2, 1234.5, "451 4.0.0 later", "delayed")
    # exclude_vctx_conn "^secret" / exclude_vctx_mess "_string$"; `#` keys survive
    assert m0["ctx_conn"] == {"ehlo_domain": "client.example", "#internal": "kept", "#secret_internal": "kept"}
    assert m0["ctx_mess"] == {"batch_size": "3"}
    assert after["count"] == 1 and after["bodies"] == 1
    assert after["unlink"]["messages"] == {"Submissions": 2, "Attempts": 2, "Failures": 0, "Successes": 2}
    assert after["unlink"]["bodies"]["Successes"] == 1
    assert missing == {"missing": "SpoolNotFoundError"}


def test_removals_wait_for_the_log_and_commits_do_not(tmp_path):
    lines, _ = run_child("logwait", tmp_path / "spool")
    info = infos(lines)[0]
    assert info["barriers"] == 1
    assert info["removed_while_held"] is False and info["count_while_held"] == 2
    assert info["commit_secs"] < info["limit"] / 2      # the commit did not wait for the log
    assert info["flush_secs"] < info["limit"] / 2 and info["full_flush_while_held"] is False
    assert info["removed"] is True and info["count_after"] == 1 and info["full_flush"] is True
    assert info["limit"] * 0.9 <= info["unanswered_secs"] < info["limit"] + 5


def test_group_commit_gathers_concurrent_commits(tmp_path):
    workers, per_worker = 50, 20
    lines, _ = run_child("group", tmp_path / "spool", {"workers": workers, "per_worker": per_worker})
    info = infos(lines)[0]
    assert info["committed"] == workers * per_worker
    # One fsync per transaction: far fewer transactions than commits.
    assert info["store_transactions"] <= workers * per_worker / 5, info
    assert len(verify_spool(tmp_path / "spool")["ids"]) == workers * per_worker


def test_spool_in_hands_back_everything_without_bodies(tmp_path):
    base = tmp_path / "spool"
    lines, _ = run_child("populate", base, {"batches": 12, "rcpts": 3, "sizes": [5000, 300000, 100]})
    committed = ok_ids(lines)
    assert len(committed) == 36
    lines, err = run_child("recover", base, {"disk_queue_drain_rate": 5})
    rec = [line.split() for line in lines if line.startswith("REC ")]
    assert sorted(r[1] for r in rec) == sorted(committed)
    assert {r[2] for r in rec} == {"nobody"}
    assert infos(lines)[-1] == {"recovered": 36, "count": 36, "unreadable": 0}
    assert "spool_in complete: 36 messages recovered, 0 unreadable" in err


def _corrupt_three(base) -> tuple[str, str, str]:
    """Damage three single-recipient messages in three different ways."""
    conn = db(base)
    rows = conn.execute("SELECT m.id, b.file FROM messages m JOIN bodies b ON b.key = m.body_key "
                        "ORDER BY m.seq").fetchall()
    in_db = [r[0] for r in rows if r[1] is None]
    in_file = [(r[0], r[1]) for r in rows if r[1]]
    bad_meta, no_body = in_db[0], in_db[1]
    conn.execute("UPDATE messages SET meta = substr(meta, 1, 40) || 'X' || substr(meta, 42) WHERE id = ?", (bad_meta,))
    conn.execute("DELETE FROM bodies WHERE key = (SELECT body_key FROM messages WHERE id = ?)", (no_body,))
    conn.close()
    os.unlink(os.path.join(base, "bodies", in_file[0][1]))
    return bad_meta, no_body, in_file[0][0]


def test_corrupt_records_are_quarantined_and_named(tmp_path):
    base = tmp_path / "spool"
    lines, _ = run_child("populate", base, {"batches": 6, "rcpts": 1, "sizes": [5000, 5000, 300000]})
    committed = set(ok_ids(lines))
    bad = set(_corrupt_three(base))
    lines, err = run_child("recover", base, {})
    recovered = {line.split()[1] for line in lines if line.startswith("REC ")}
    assert recovered == committed - bad
    for msg_id in bad:
        assert f"message {msg_id} is unreadable" in err and "moved to quarantine" in err
    assert "metadata fails its CRC check" in err and "body record missing" in err and "missing" in err
    state = verify_spool(base)                        # what is left is clean
    assert set(state["ids"]) == committed - bad
    assert {q[0] for q in state["quarantine"]} == bad
    assert os.listdir(base / "quarantine") == []      # its file was already gone
    # A second start finds nothing wrong any more.
    lines, err = run_child("recover", base, {})
    assert infos(lines)[-1]["unreadable"] == 0


def test_unlink_on_spool_in_failure_false_leaves_records_in_place(tmp_path):
    base = tmp_path / "spool"
    lines, _ = run_child("populate", base, {"batches": 6, "rcpts": 1, "sizes": [5000, 5000, 300000]})
    bad = set(_corrupt_three(base))
    for _ in range(2):                                # skipped again at every start
        lines, err = run_child("recover", base, {"unlink_on_spool_in_failure": False})
        assert infos(lines)[-1]["unreadable"] == 3
        assert err.count("left in place until the next start") == 3
    conn = db(base)
    assert {r[0] for r in conn.execute("SELECT id FROM messages")} >= bad
    assert conn.execute("SELECT count(*) FROM quarantine").fetchone()[0] == 0


def test_unreadable_database_is_moved_aside_and_the_spool_starts_fresh(tmp_path):
    base = tmp_path / "spool"
    run_child("populate", base, {"batches": 2})
    with open(base / "spool.db", "r+b") as fh:      # destroy the header
        fh.write(b"this is not a database at all!!!" * 4)
    lines, err = run_child("recover", base, {})
    assert "spool database unreadable, moved aside to" in err
    assert infos(lines)[-1]["recovered"] == 0
    assert any(n.endswith("-spool.db") for n in os.listdir(base / "quarantine"))
    lines, _ = run_child("populate", base, {"batches": 1})  # and the new spool works
    assert len(verify_spool(base)["ids"]) == 2


def test_a_damaged_body_is_refused_and_quarantined_on_load(tmp_path):
    base = tmp_path / "spool"
    lines, _ = run_child("populate", base, {"batches": 3, "rcpts": 1})
    victim = ok_ids(lines)[1]
    conn = db(base)
    conn.execute("UPDATE bodies SET data = zeroblob(length(data)) WHERE key = ?", (victim,))
    conn.close()
    lines, err = run_child("recover", base, {"load_bodies": True})
    assert [l for l in lines if l.startswith("BODYBAD")] == [f"BODYBAD {victim} SpoolCorruptError"]
    assert sum(l.startswith("BODYOK") for l in lines) == 2
    assert f"load_body: message {victim} is unreadable" in err and "size/CRC" in err
    state = verify_spool(base)
    assert victim not in state["ids"] and [q[0] for q in state["quarantine"]] == [victim]


def test_stop_finishes_every_commit_it_accepted(tmp_path):
    base = tmp_path / "spool"
    lines, _ = run_child("stopdrain", base, {"commits": 300})
    assert not [l for l in lines if l.startswith("FAIL")]
    assert "LATE SpoolClosedError" in lines
    assert set(verify_spool(base)["ids"]) == set(ok_ids(lines))
    assert len(ok_ids(lines)) == sum(1 + i % 3 for i in range(300))
