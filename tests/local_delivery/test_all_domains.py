"""maildir all_domains = true takes every domain (its own daemon)."""

from __future__ import annotations

import os

from ecmta.tests.harness import free_port
from ecmta.tests.local_delivery.helpers import MTA, message, wait_for

CONFIG = """\
spoolbase = "$home/spool"
relay_domains = ( "one.test" "two.test" )
ESMTP_Listener {
  Listen "127.0.0.1:$smtp" { }
}
maildir "everything" {
  basedir = "store"
  create_users = true
  domain_in_path = true
  all_domains = true
}
pipe_transport "never" {
  program_name = "/bin/false"
  domain = "two.test"
}
"""


def test_all_domains_delivers_every_domain_to_the_store(daemon_factory):
    d = daemon_factory(CONFIG, ports={"smtp": free_port()}, skip=("queue",))
    d.start()
    mta = MTA(d)
    for rcpt in ("u@one.test", "v@two.test"):
        code, _ = mta.send([rcpt], message(rcpt.split("@")[0]))
        assert code == 250, rcpt
    # relative basedir: under the state directory; the first stanza in config order wins
    for dom, user in (("one.test", "u"), ("two.test", "v")):
        wait_for(lambda: mta.maildir_files(os.path.join(d.home, "store", dom, user)),
                 what=f"{user}@{dom} in the store")
    assert mta.spooled() == []
