"""Wiring the audit context into the frameworks an application already uses.

- ``audit_capture.integrations.sqlalchemy``: every transaction of an ``Engine`` (and so
  of its ``Session``s) starts by setting the ambient context.
- ``audit_capture.integrations.flask``: each request of a Flask application states the
  ambient context from the application's own notion of the current user.
- ``audit_capture.integrations.pool``: a pooled psycopg connection with the ambient
  context set on its transaction.
"""
