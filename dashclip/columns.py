"""Column names, defined once for every table the project reads or writes."""

# canonical catalog format (DESIGN.md, Data)
PRODUCT_ID = "product_id"
TITLE = "title"
DESCRIPTION = "description"
CATEGORY = "category"
IMAGE = "image"
COLOR = "color"
GENDER = "gender"
USAGE = "usage"
SOURCE = "source"
SPLIT_HINT = "split"  # optional: a dataset split the catalog already carries

CATALOG_REQUIRED = (PRODUCT_ID, TITLE)
CATALOG_OPTIONAL = (DESCRIPTION, CATEGORY, IMAGE, COLOR, GENDER, USAGE, SOURCE, SPLIT_HINT)
CATALOG_COLUMNS = CATALOG_REQUIRED + CATALOG_OPTIONAL
ATTRIBUTES = (COLOR, GENDER, USAGE)

# added by reading: why a row could not be read as the header describes ("" when it could);
# ingestion rejects such rows (field "row")
ROW_ERROR = "_row_error"

# columns added by ingestion
SOURCE_ROW = "source_row"  # 0-based data row in the input file
IMAGE_PATH = "image_path"  # resolved absolute path (or URL), None when there is none
IMAGE_STATUS = "image_status"  # ok | missing | none | remote
HAS_IMAGE = "has_image"
HAS_TEXT = "has_text"
IMAGE_WIDTH = "image_width"
IMAGE_HEIGHT = "image_height"
DESCRIPTION_TRUNCATED = "description_truncated"
SPLIT = "split"  # train | val | test, assigned by ingestion
CONTENT_HASH = "content_hash"

# rejects table
REJECT_FIELD = "field"
REJECT_VALUE = "value"
REJECT_REASON = "reason"

# embedding tables
EMBEDDING = "embedding"
MODEL_VERSION = "model_version"
EVENT_TIMESTAMP = "event_timestamp"

# queries and judgments
QUERY_ID = "query_id"
QUERY = "query"
LABEL = "label"
