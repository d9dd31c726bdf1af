"""One module per top-level policy section; each declares SPEC (and optionally check())."""
