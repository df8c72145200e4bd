"""The classic open-relay test set as data: recipient address forms a relay tester tries
(after the relay-test lists of the late 1990s: percent hack, bang paths, source routes,
quoted local parts holding "@", address literals, postmaster forms, case and trailing-dot
tricks, double "@", suffix tricks) with F = else.test (foreign), L = local.test (the one
relay domain where a config has one), R = mx.relay.test (the daemon's hostname) and its
address 127.0.0.1.

FOREIGN: forms whose mail would leave for a domain that is not ours; none may ever be
accepted. Each has the reply it must get: 550 (5.7.1 relaying denied) for a well-formed
address, 501 (5.5.2 RCPT TO syntax error) for what RFC 5321 4.1.2 does not allow (a
trailing dot, two unquoted "@", an unqualified bang path, bad literals, whitespace, NUL).
LOCAL: forms whose routing domain is L (ecmta routes by the domain after the last "@"
and never interprets "%", "!" or a source route); accepted where L is a relay domain,
and then spooled with routing domain local.test, never else.test.
MAIL_FROM_TRICKS: senders that try to borrow trust (a local sender, the null sender,
postmaster, an AUTH= parameter) with a foreign recipient.
"""

FOREIGN = [                     # (form, the reply code it must get)
    ("u@else.test", 550),
    ("u@ELSE.TEST", 550),
    ("u@Else.Test", 550),
    ("u@else.test.", 501),
    ("u@else.test..", 501),
    ("u%else.test@mx.relay.test", 550),
    ("u%else.test@[127.0.0.1]", 550),
    ("u%else.test%mx.relay.test@mx.relay.test", 550),
    ('"u@else.test"@mx.relay.test', 550),
    ('"u%else.test"@mx.relay.test', 550),
    ('"u@else.test"@[127.0.0.1]', 550),
    ("u@else.test@mx.relay.test", 501),
    ("u@else.test@[127.0.0.1]", 501),
    ("@mx.relay.test:u@else.test", 550),
    ("@[127.0.0.1]:u@else.test", 550),
    ("@local.test:u@else.test", 550),
    ("@local.test,@mx.relay.test:u@else.test", 550),
    ("else.test!u@mx.relay.test", 550),
    ("else.test!u@[127.0.0.1]", 550),
    ("u!else.test@mx.relay.test", 550),
    ("else.test!u", 501),
    ("u@else.test!local.test", 501),
    ('"else.test!u"@mx.relay.test', 550),
    ("u@[192.0.2.1]", 550),
    ("u@[IPv6:2001:db8::1]", 550),
    ("u@[127.0.0.1]", 550),
    ("u@[127.1]", 501),
    ("u@[0x7f.0.0.1]", 501),
    ("u@[2130706433]", 501),
    ("postmaster@else.test", 550),
    ("postmaster@[192.0.2.1]", 550),
    ("postmaster@mx.relay.test", 550),
    ("postmaster", 550),            # qualified with the hostname, not a relay domain here
    ("u@mx.relay.test", 550),
    ("u@localhost", 550),
    ("u@local.test.else.test", 550),
    ("u@else.test.local.test", 550),
    ("u@xlocal.test", 550),
    ("u@local.test@else.test", 501),
    ("u@else.test%local.test", 501),
    ("u@else.test:25", 501),
    ("u@else.test ", 501),
    ("u @else.test", 501),
    ('"u@else.test"', 501),
    ("<u@else.test>", 501),
    ("u@else.test>", 501),
    ("u@else.test\\", 501),
    ("u\\@else.test@mx.relay.test", 501),
    ("u@l\u043ecal.test", 550),     # Cyrillic o: another domain (with SMTPUTF8)
    ("u@local.test\x00.else.test", 501),
    ("u@local.test\t.else.test", 501),
    ("=?utf-8?q?u@else.test?=@mx.relay.test", 501),
]

LOCAL = [                       # accepted where local.test is a relay domain
    "u@local.test",
    "u@LOCAL.TEST",
    "u%else.test@local.test",
    '"u@else.test"@local.test',
    '"u%else.test"@local.test',
    "else.test!u@local.test",
    "@else.test:u@local.test",
    "postmaster@local.test",
    "PostMaster@Local.Test",
]

MAIL_FROM_TRICKS = [
    "MAIL FROM:<someone@local.test>",
    "MAIL FROM:<>",
    "MAIL FROM:<postmaster@local.test>",
    "MAIL FROM:<u@mx.relay.test>",
    "MAIL FROM:<u@[127.0.0.1]>",
    "MAIL FROM:<a@local.test> AUTH=<alice@local.test>",
]
