"""The SMTP engine behind ``aionet.handlers.smtp``: aiosmtpd's ``SMTP`` adapted to aionet.

* ``engine``: ``AionetSMTP``, the aiosmtpd ``SMTP`` subclass (STARTTLS, AUTH, replies, drain).
* ``hooks``: ``SmtpHooks``, policy and durable delivery, and ``AcceptedMessage``.
* ``_aiosmtpd``: every access to aiosmtpd's private names, behind small functions.
"""
