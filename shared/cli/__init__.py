"""The ``byom`` command line: admin and user verbs, ``byom up``, tokens."""
