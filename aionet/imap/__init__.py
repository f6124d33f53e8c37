"""The IMAP engine behind ``protocol: imap`` (the face is ``aionet.handlers.imap``).

* ``session``   — one connection: the read loop over the codec's ``CommandReader``, dispatch
  through the command table, catching up with other sessions' changes, IDLE, drain.
* ``commands``  — the table (command → coroutine, allowed states, catch-up rules) and the
  session-level commands (CAPABILITY, LOGIN, AUTHENTICATE, STARTTLS, ENABLE, ID, ...).
* ``mailboxes`` — SELECT/EXAMINE, CREATE, DELETE, RENAME, (UN)SUBSCRIBE, LIST, LSUB, STATUS,
  APPEND.
* ``messages``  — FETCH, STORE, SEARCH, COPY, MOVE, EXPUNGE, CLOSE, UNSELECT, CHECK.
* ``selected``  — a session's view of its selected mailbox (sequence numbers ↔ UIDs) and how
  it catches up.
* ``fetch``     — FETCH data items from the index, or from the message on the thread pool.
* ``service``   — what a listener's sessions share (store, hub, structure cache, counters).
* ``options``   — the listener's options.

The engine never imports the face; protocol syntax comes from ``aionet.proto.imap``, mail
storage from ``aionet.storage.index``, STARTTLS and the login policy from ``aionet.core``.
"""
