"""DBOS applications written exactly as DBOS documents them (``from dbos import ...``), run
against this runtime through the one-line alias module ``alias/dbos.py``; see tests/test_port.py."""
