"""The ``DBOS`` facade, in parts: DBOS's Python API is one class by contract (a DBOS app ports by
changing one import), assembled in ``runtime.dbos`` from one mixin per concern. No part holds
logic of its own: each method delegates to the engine, the system database or management."""
