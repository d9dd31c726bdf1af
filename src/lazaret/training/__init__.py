"""Tools that make the models the checks load (not imported by a scan): the toxicity trainer and its metrics."""
