"""The scan graph: read -> checks -> decide -> write (pipeline.py), and what it is made of: records and
their sides, the decision step, packed shuffles, bounded combiners, masking, hashing; plus what the
launcher needs around it (the output folder and provenance). Nothing here knows a particular check."""
