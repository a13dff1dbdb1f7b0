"""Importable, testable logic behind the ``spark_jobs/*.py`` entry points."""
