"""Spark batch inference: thin ``spark-submit`` entry points over ``spark_jobs.lib``."""
