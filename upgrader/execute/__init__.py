"""Running a plan: the engine (``engine.py``), its Kubernetes operations (``ops.py``), the
stored plan of a run (``stored.py``), events and transcripts (``events.py``) and the
terminal display (``progress.py``)."""
