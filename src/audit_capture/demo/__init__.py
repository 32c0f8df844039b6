"""``audit-capture demo``: the sample CRM, realistic activity and the viewer.

- ``crm_app``: the sample CRM as a small Flask application, wired to the audit context
  the way a real application would be (the Flask and SQLAlchemy integrations);
- ``activity``: a month of realistic activity driven through that application by named
  admins, clients, the system and AI agents, over all four sources;
- ``history``: ``--history N``, older actions generated in SQL (``history_*.sql``), each
  marked ``{"demo": "generated history"}`` in its context;
- ``runner``: starts a throwaway PostgreSQL (or uses ``--database-url``), installs the
  audit schema and the CRM, runs the activity and serves the viewer.
"""
