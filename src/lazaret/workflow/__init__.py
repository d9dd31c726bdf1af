"""After the scan: the scan-folder reader (scandir.py) that the report, review, release and gate share, and
the signing that seals a scan folder and its review log."""
