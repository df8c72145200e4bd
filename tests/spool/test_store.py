"""The on-disk format, used directly (no gevent): round trip, sharing, refusals, layout."""

from __future__ import annotations

import os
import stat

import pytest

from ecmta.actors.mail import Body, DsnParams, MailMessage, new_id
from ecmta.actors.spool import (Exclusions, SpoolOptions, filter_context,
                                render_unlink_stats)
from ecmta.actors.spool_store import (BodyRecord, SpoolDuplicateError, SpoolLockedError,
                                      SpoolNotFoundError, SpoolReader, SpoolStore, Txn,
                                      encode_row)


def full_message(**over) -> MailMessage:
    """A message with every field away from its default."""
    fields = dict(
        id=new_id(), batch_id=new_id(), conn_id=new_id(), mailfrom="sender+tag@Example.ORG",
        rcptto="rcpt@example.com", body=Body(b"Subject: hi\r\n\r\nbody \xff\r\n"), size=4321,
        received_at=1700000000.25, protocol="smtp", peer_ip="2001:db8::1", peer_port=51515,
        listener_addr="[::1]:2525", ctx_conn={"ehlo_domain": "h\u00e9llo", "#8bitmime": "1"},
        ctx_mess={"mailfrom_string": "MAIL FROM:<x\udcff>", "n": "2"}, binding="b1",
        binding_group="g1", routing_domain="gw.example.net", priority=1,
        dsn=DsnParams(("SUCCESS", "DELAY"), "rfc822;orig@example.com", "FULL", "envid-1"),
        code="451 4.4.1 try later", attempts=3, next_attempt=1700000999.5, state="delayed",
        auth_user="bob")
    fields.update(over)
    return MailMessage(**fields)


def request(msgs, key=None):
    key = key or msgs[0].id
    rows = [encode_row(m, key, m.ctx_conn, m.ctx_mess) for m in msgs]
    return rows, [BodyRecord(key, msgs[0].body.data)]


@pytest.fixture
def store(tmp_path):
    s = SpoolStore(str(tmp_path / "spool"), mode=0o600)
    s.open()
    yield s
    s.close()


FIELDS = [f for f in MailMessage.__dataclass_fields__ if f != "body"]


def test_every_field_round_trips(store):
    msg = full_message()
    store.apply(Txn([request([msg])]))
    got, bad, _ = store.read_batch(0, 10**9, 10)
    assert bad == [] and len(got) == 1
    for name in FIELDS:
        assert getattr(got[0], name) == getattr(msg, name), name
    assert got[0].body is None                      # spool-in never loads bodies
    assert store.read_body(msg.id) == msg.body.data
    assert store.load(msg.id).dsn == msg.dsn


def test_batch_body_stored_once_and_freed_with_the_last_recipient(store):
    body = Body(b"Subject: s\r\n\r\n" + b"x" * 5000)
    msgs = [full_message(body=body, rcptto=f"r{i}@example.com") for i in range(5)]
    store.apply(Txn([request(msgs)]))
    w = store._w
    assert w.execute("SELECT count(*) FROM bodies").fetchone()[0] == 1
    assert {store.read_body(m.id) for m in msgs} == {body.data}
    res = store.apply(Txn(removes=[m.id for m in msgs[:4]]))
    assert (res.removed, res.bodies_freed) == (4, 0)
    assert store.read_body(msgs[4].id) == body.data
    res = store.apply(Txn(removes=[msgs[4].id]))
    assert (res.removed, res.bodies_freed) == (1, 1)
    assert w.execute("SELECT count(*) FROM bodies").fetchone()[0] == 0


def test_duplicate_id_refuses_only_its_own_request(store):
    first = full_message()
    store.apply(Txn([request([first])]))
    again = full_message(id=first.id)
    fresh = [full_message(), full_message()]
    res = store.apply(Txn([request([fresh[0], again]), request([fresh[1]])]))
    assert list(res.failed) == [0] and isinstance(res.failed[0], SpoolDuplicateError)
    assert first.id in str(res.failed[0])
    ids = {m.id for m in store.read_batch(0, 10**9, 100)[0]}
    assert ids == {first.id, fresh[1].id}           # request 0 left nothing behind


def test_updates_and_removes_in_one_transaction(store):
    a, b = full_message(), full_message()
    store.apply(Txn([request([a]), request([b])]))
    store.apply(Txn(updates={a.id: {"attempts": 7, "code": "452 x", "binding": "other",
                                    "next_attempt": 5.5, "state": "active"}},
                    removes=[b.id, "00/00-00000-00000000"]))
    got = store.load(a.id)
    assert (got.attempts, got.code, got.binding, got.next_attempt, got.state) == (7, "452 x", "other", 5.5, "active")
    with pytest.raises(SpoolNotFoundError):
        store.read_body(b.id)


def test_second_opener_is_refused(store):
    other = SpoolStore(store.base)
    with pytest.raises(SpoolLockedError, match=str(os.getpid())):
        other.open()


def test_spool_mode_applies_to_created_files(store):
    store.apply(Txn([request([full_message()])]))
    for name in ("spool.db", "spool.db-wal", "spool.db-shm"):
        assert stat.S_IMODE(os.stat(os.path.join(store.base, name)).st_mode) == 0o600, name
    rec = store.write_body_file("k1", b"x" * 10, sync=True)
    assert stat.S_IMODE(os.stat(os.path.join(store.body_dir, rec.file)).st_mode) == 0o600


def test_orphan_body_files_are_removed_at_open(tmp_path):
    s = SpoolStore(str(tmp_path / "spool"))
    s.open()
    kept = full_message()
    rec = s.write_body_file(kept.id, b"y" * 300000, sync=False)
    rows = [encode_row(kept, kept.id, {}, {})]
    s.apply(Txn([(rows, [rec])]))
    s.write_body_file("never-committed", b"z" * 10, sync=False)
    open(os.path.join(s.body_dir, "half.tmp"), "wb").close()
    s.close()
    s2 = SpoolStore(s.base)
    info = s2.open()
    assert info.orphans_removed == 2 and info.count == 1
    assert os.listdir(s2.body_dir) == [rec.file]
    assert s2.read_body(kept.id) == b"y" * 300000
    s2.close()


def test_reader_works_while_the_writer_holds_the_spool(store):
    msg = full_message()
    store.apply(Txn([request([msg])]))
    reader = SpoolReader(store.base)
    assert reader.count() == 1 and reader.body(msg.id) == msg.body.data
    store.apply(Txn([request([full_message()])]))   # the reader does not block the writer
    assert reader.count() == 2
    reader.close()


def test_force_fsync_is_on_unless_explicitly_off(tmp_path):
    assert SpoolOptions.from_config({"spoolbase": str(tmp_path)}).sync is True
    assert SpoolOptions.from_config({"spoolbase": str(tmp_path), "force_fsync": False}).sync is False
    assert SpoolOptions.from_config(None).base.endswith("spool")


def test_exclusions_never_drop_internal_keys():
    excl = Exclusions({"exclude_vctx_conn": ("^ehlo", "8bit"), "exclude_vctx_mess": ("_string$",)})
    msg = full_message()
    conn_re, mess_re = excl(msg)
    assert filter_context(msg.ctx_conn, conn_re) == {"#8bitmime": "1"}
    assert filter_context(msg.ctx_mess, mess_re) == {"n": "2"}


DOC_TABLE = """\
                   Messages    Headers    Bodies
Submissions    :        6000      6000      6000
Attempts       :        6000      6000      6000
  Failures     :           0         0         0
  Successes    :        6000      6000      6000
  Success Rate :      100.00%   100.00%   100.00%
Current Backlog:      0
Batch Backlog  :      0"""


def test_unlink_stats_layout_matches_the_page():
    row = {"Submissions": 6000, "Attempts": 6000, "Failures": 0, "Successes": 6000}
    stats = {"messages": row, "headers": row, "bodies": row, "current_backlog": 0, "batch_backlog": 0}
    assert render_unlink_stats(stats) == DOC_TABLE


def test_options_from_a_real_config_with_scope_fallback():
    loader = pytest.importorskip("ecmta.config.loader")
    cfg = loader.load_config_text(
        'spoolbase = "myspool"\nforce_fsync = false\ndisk_queue_drain_rate = 7\n'
        'spool_mode = 0600\nExclude_VCTX_Mess = ( "_string$" )\n'
        'Binding "b1" {\n  Exclude_VCTX_Mess = ( "^x" )\n}\n', allow_unbuilt=True)
    opts = SpoolOptions.from_config(cfg, "/state")
    assert (opts.base, opts.sync, opts.drain_rate, opts.mode) == ("/state/myspool", False, 7, 0o600)
    excl = Exclusions(cfg)
    ctx = {"xa": "1", "mailfrom_string": "2", "#x": "3"}
    assert filter_context(ctx, excl(full_message(binding="b1"))[1]) == {"mailfrom_string": "2", "#x": "3"}
    assert filter_context(ctx, excl(full_message(binding="other"))[1]) == {"xa": "1", "#x": "3"}
    # force_fsync not written: durable (ecmta's default), whatever the registry default says.
    assert SpoolOptions.from_config(loader.load_config_text("", allow_unbuilt=True)).sync is True


def test_refused_duplicate_never_touches_the_existing_body_file(store):
    first = full_message(body=Body(b"a" * 300000))
    rec = store.write_body_file(first.id, first.body.data, sync=False)
    store.apply(Txn([([encode_row(first, first.id, {}, {})], [rec])]))
    dup = full_message(id=first.id, body=Body(b"b" * 300000))
    rec2 = store.write_body_file(dup.id, dup.body.data, sync=False)
    res = store.apply(Txn([([encode_row(dup, dup.id, {}, {})], [rec2])]))
    assert isinstance(res.failed[0], SpoolDuplicateError)
    store.unlink_files([rec2.file])                 # what the actor does for a refused request
    assert store.read_body(first.id) == b"a" * 300000
