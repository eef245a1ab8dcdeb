"""The compute backend: local processes or a Ray cluster behind one small interface (:mod:`.compute`)."""
