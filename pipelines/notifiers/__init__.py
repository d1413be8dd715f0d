"""Notifiers: where a case or a warning goes out of the product (city platform, loudspeaker, SMS, ...).

Every notice goes through the case store's outbox (one table, one payload type:
:class:`~pipelines.notifiers.notice.Notice`) and is delivered by the notifier its row names, with retries,
backoff and a dead-letter state (:func:`~pipelines.notifiers.outbox.deliver_due`). A notifier kind is one
module: a config model with a ``type`` and a class with ``deliver``; :mod:`pipelines.notifiers.registry`
lists them.

- :mod:`pipelines.notifiers.webhook`: a case to the city case platform (HTTP POST of the dispatch payload).
- :mod:`pipelines.notifiers.voice`: a warning spoken on a loudspeaker (RTP G.711, a vendor HTTP API, or an
  audit folder).
- :mod:`pipelines.notifiers.sms`: a reminder texted to the shop that answers for a pavement (Kannel, or a
  provider's HTTP API).
"""
