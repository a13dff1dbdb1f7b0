"""Column and layout names of the tables the Spark jobs read and write (the rest are in dashclip.columns
and, for the event logs, dashclip.events)."""

from dashclip.events import CONSUMER_ID  # noqa: F401

# purchase table as the consumer_profiles command line reads it (the event logs name it event_timestamp)
TIMESTAMP = "timestamp"

# consumer profile table
N_PURCHASES = "n_purchases"

# internal columns of the jobs
ROW_OK = "_ok"  # validation: True for an accepted row, False for a reject
PID_KEY = "_pid_key"  # normalised product id, the shuffle key of validation

# table layout under an output folder; names starting with "_" are invisible to parquet readers
REJECTS_DIR = "_rejects"
STAGING_DIR = "_staging"
TRASH_DIR = "_trash"
RUNS_DIR = "_runs"
JOURNAL = "_commit.json"
LOCK = "_writer.lock"  # flock()ed by the one job writing the table (never deleted)
