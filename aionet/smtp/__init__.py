"""The SMTP engine behind ``aionet.handlers.smtp``: aiosmtpd's ``SMTP`` adapted to aionet.

* ``options``: ``SmtpOptions`` (the face registers them).
* ``service``: ``SmtpService``, what every session of a listener shares (store, sessions and
  drain, rate window, counters, ``on_message``), and ``AcceptedMessage``.
* ``engine``: ``AionetSMTP``, the aiosmtpd ``SMTP`` subclass (STARTTLS, AUTH, replies, drain).
* ``hooks``: ``SmtpHooks``, policy and durable delivery.
* ``_aiosmtpd``: every access to aiosmtpd's private names, behind small functions.

Imports go one way: ``hooks`` → ``engine`` → ``service`` → ``options``; nothing here imports
the face.
"""
