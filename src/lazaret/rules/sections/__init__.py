"""One module per top-level policy section that belongs to no check (owner, incidents, release); each declares
SPEC (and optionally check()). A check's own section is declared beside it (``checks/<check>/policy.py``, named by
the check's ``policy_schema``)."""
