"""airgrid's peers: the same small job done by a Faust app, a Quix Streams app and plain aiokafka.

``job`` holds the job (no framework imports: it also runs in the Quix Streams venv); the ``*_app``
modules run it as subprocesses of ``bench.run``; ``phase`` runs and checks them.
"""
